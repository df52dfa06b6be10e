"""The student versions in notebooks/ are exactly what nbgrader generates from solutions/."""
from __future__ import annotations

import filecmp

import nbformat
import pytest

from grader import release
from grader.course import assignments, source_notebook, student_notebook


def test_release_is_in_sync_with_solutions():
    problems = release.out_of_sync()
    assert not problems, "Run `make release` and commit notebooks/:\n" + "\n".join(problems)


def test_release_is_reproducible(tmp_path):
    # The sync test above already compares a fresh release of every lesson with the committed one;
    # here two fresh runs of one lesson must agree byte for byte as well.
    first = release.generate(tmp_path / "a", assignments()[:1])
    second = release.generate(tmp_path / "b", assignments()[:1])
    assert first, "nothing was generated"
    assert [p.relative_to(tmp_path / "a") for p in first] == [p.relative_to(tmp_path / "b") for p in second]
    assert all(filecmp.cmp(a, b, shallow=False) for a, b in zip(first, second))


@pytest.mark.parametrize("assignment", assignments())
def test_release_hides_solutions_and_hidden_tests(assignment):
    released = student_notebook(assignment).read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in released, f"{assignment}: the student version still contains {marker!r}"
    cells = nbformat.read(student_notebook(assignment), as_version=4).cells
    assert not any(c.get("outputs") for c in cells), f"{assignment}: the student version has outputs"
    assert not any("execution" in c.metadata for c in cells), f"{assignment}: run timestamps leaked"
    metadata = nbformat.read(student_notebook(assignment), as_version=4).metadata
    assert "widgets" not in metadata, f"{assignment}: the student version carries saved widget state"


@pytest.mark.parametrize("assignment", assignments())
def test_every_exercise_has_several_tests_with_a_docstring(assignment):
    cells = nbformat.read(source_notebook(assignment), as_version=4).cells
    tests = [c for c in cells if c.metadata.get("nbgrader", {}).get("grade")]
    solutions = [c for c in cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert len(tests) >= 2 * len(solutions), f"{assignment}: too few test cells for {len(solutions)} exercises"
    for cell in tests:
        grade_id = cell.metadata["nbgrader"]["grade_id"]
        assert cell.source.startswith('"""Check that'), f"{assignment}/{grade_id}: first line should be \"\"\"Check that …\"\"\""
        assert cell.metadata["nbgrader"]["points"] > 0, f"{assignment}/{grade_id} has no points"

