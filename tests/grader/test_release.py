"""The student versions in notebooks/ are exactly what nbgrader generates from solutions/, and the
source notebooks are shaped as the grader needs (tests with docstrings and points, random inputs
from the tests' own generators)."""
from __future__ import annotations

import ast
import filecmp

import nbformat
import pytest

from grader import integrity, release
from grader.course import assignments, source_notebook, student_notebook
from grader.grading import is_instructor


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


# PyTorch's sampling functions, in-place samplers and nn.init's random initialisers: each draws from
# the global generator unless it is given `generator=`. (The weights a layer such as nn.Conv2d gets
# when a test builds one come from the global generator too: the tests use only their shapes.)
SAMPLERS = {"rand", "randn", "randint", "randperm", "rand_like", "randn_like", "randint_like", "normal",
            "bernoulli", "multinomial", "poisson", "normal_", "uniform_", "random_", "bernoulli_",
            "exponential_", "geometric_", "cauchy_", "log_normal_", "kaiming_uniform_", "kaiming_normal_",
            "xavier_uniform_", "xavier_normal_", "trunc_normal_", "orthogonal_", "sparse_"}


@pytest.mark.parametrize("assignment", assignments())
def test_instructor_cells_draw_random_inputs_from_their_own_generator(assignment):
    """Check that test and read-only cells draw random numbers only from a torch.Generator of their
    own. The global generator's state comes back from the student's kernel after every call (so
    `torch.manual_seed` before a call means what it says): a student who has read the grader can
    set it to any state, and so choose what a test drew from it afterwards."""
    for cell in nbformat.read(source_notebook(assignment), as_version=4).cells:
        if not is_instructor(cell):
            continue
        tree = integrity.parse_cell(cell.source)
        assert tree is not None, f"{assignment}/{cell.metadata['nbgrader']['grade_id']}: the cell cannot be parsed"
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SAMPLERS:
                assert any(k.arg == "generator" for k in node.keywords), (
                    f"{assignment}/{cell.metadata['nbgrader']['grade_id']}: {ast.unparse(node)} draws from the "
                    "global generator, which the student's kernel controls: pass generator=torch.Generator().manual_seed(n)")
