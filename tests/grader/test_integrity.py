"""grader/integrity.py: reading submissions, comparing them with the release, repairing them."""
from __future__ import annotations

import copy

import nbformat
import pytest

from grader import integrity, submissions

A = "01_cross_correlation"


def _ids(nb):
    return [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells if c.metadata.get("nbgrader")]


@pytest.fixture(scope="module")
def release():
    return submissions.untouched(A)


def test_untouched_and_solved_have_no_findings(release):
    for nb in (submissions.untouched(A), submissions.solved(A)):
        repaired, findings = integrity.repair(nb, release)
        assert findings == []
        assert _ids(repaired) == _ids(release)


def test_deleted_test_is_reinserted_in_place(release):
    nb = copy.deepcopy(release)
    i = _ids(nb).index("corr2d_output_shape")
    gid_cells = [c for c in nb.cells if c.metadata.get("nbgrader")]
    nb.cells.remove(gid_cells[i])
    repaired, findings = integrity.repair(nb, release)
    assert _ids(repaired) == _ids(release)
    assert any("corr2d_output_shape" in f and "deleted" in f for f in findings)


def test_edited_relabelled_duplicated_flipped(release):
    nb = copy.deepcopy(release)
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
    cells["corr2d_worked_example"].source = "pass"
    cells["corr2d_output_shape"].metadata.nbgrader["grade_id"] = "renamed"
    cells["corr2d_impl"].metadata.nbgrader.update(grade=True, solution=False, points=9)
    dup = copy.deepcopy(cells["conv2d_forward"])
    nb.cells.append(dup)
    repaired, findings = integrity.repair(nb, release)
    text = "\n".join(findings)
    assert "corr2d_worked_example: a read-only/test cell was edited" in text
    assert "'renamed'" in text and "corr2d_output_shape: test/read-only cell deleted" in text
    assert "corr2d_impl: nbgrader metadata changed" in text
    assert "duplicate of 'conv2d_forward'" in text
    # each id once; of a duplicated id nbgrader keeps the LAST cell (here the appended copy)
    assert sorted(_ids(repaired)) == sorted(_ids(release))
    assert _ids(repaired)[-1] == "conv2d_forward"
    fixed = {c.metadata.nbgrader["grade_id"]: c for c in repaired.cells if c.metadata.get("nbgrader")}
    assert fixed["corr2d_worked_example"].source != "pass"
    assert fixed["corr2d_impl"].metadata.nbgrader["solution"] is True


@pytest.mark.parametrize("content, why", [(b"", "empty"), (b"{not json", "not a valid notebook"),
                                          (b'{"cells": 3}', "not a valid notebook")])
def test_load_rejects_what_is_not_a_notebook(tmp_path, content, why):
    path = tmp_path / "x.ipynb"
    path.write_bytes(content)
    with pytest.raises(integrity.InvalidSubmission, match=why):
        integrity.load(path)


def test_load_rejects_a_directory(tmp_path):
    (tmp_path / "x.ipynb").mkdir()
    with pytest.raises(integrity.InvalidSubmission, match="directory"):
        integrity.load(tmp_path / "x.ipynb")


def test_notebook_imports():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "%matplotlib inline\nimport torch\nfrom torch import nn\nfrom torch.nn import functional as F\n"
        "import numpy as np\nimport os.path\nfrom math import *")])
    assert integrity.notebook_imports(nb) == {
        "torch": ("torch", None), "nn": ("torch", "nn"), "F": ("torch.nn", "functional"),
        "np": ("numpy", None), "os": ("os", None)}


def _tampered(release):
    """A notebook that reaches the branches of OverwriteCells: an edited locked cell, changed points,
    a flipped lock, an altered kernelspec."""
    nb = copy.deepcopy(release)
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
    cells["corr2d_worked_example"].source = "pass"
    cells["corr2d_output_shape"].metadata.nbgrader["points"] = 99
    cells["corr2d_impl"].metadata.nbgrader["locked"] = True
    nb.metadata["kernelspec"] = {"name": "evil", "display_name": "evil", "language": "python"}
    return nb


def _unknown_id(release):
    """A grade cell whose id the gradebook does not know (OverwriteCells drops the id: invalid)."""
    nb = copy.deepcopy(release)
    next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")).metadata.nbgrader["grade_id"] = "nope"
    return nb


@pytest.mark.parametrize("which", ["untouched", "solved", "tampered", "unknown_id"])
def test_sanitize_with_the_release_record_is_nbgraders_own(course_config, release, which):
    """Check that sanitize on the release record (read once per run) gives byte for byte the
    notebook nbgrader's own preprocessors give, querying the gradebook per cell."""
    db_url = f"sqlite:///{course_config}/gradebook.db"
    nb = {"untouched": lambda: submissions.untouched(A), "solved": lambda: submissions.solved(A),
          "tampered": lambda: _tampered(release), "unknown_id": lambda: _unknown_id(release)}[which]()
    record = integrity.ReleaseRecord.read(db_url, A)

    def outcome(*extra):
        try:
            return nbformat.writes(integrity.sanitize(copy.deepcopy(nb), A, "s1", db_url, *extra))
        except Exception as err:  # noqa: BLE001 - compared
            return f"{type(err).__name__}: {err}"
    assert outcome(record) == outcome()
    if which == "unknown_id":
        assert outcome(record).startswith("ValidationError")
        return
    ours = nbformat.reads(outcome(record), as_version=4)
    if which == "tampered":
        assert ours.metadata["kernelspec"]["name"] != "evil"
        fixed = {c.metadata.nbgrader.get("grade_id"): c for c in ours.cells if c.metadata.get("nbgrader")}
        assert fixed["corr2d_worked_example"].source != "pass"
        assert fixed["corr2d_output_shape"].metadata.nbgrader["points"] != 99


def test_the_release_record_answers_like_the_gradebook(course_config):
    """Check that the record finds the release's cells and raises MissingEntry for others."""
    from nbgrader.api import Gradebook, MissingEntry
    db_url = f"sqlite:///{course_config}/gradebook.db"
    record = integrity.ReleaseRecord.read(db_url, A)
    with Gradebook(db_url) as gb:
        for name in record.source:
            cell = gb.find_source_cell(name, A, A)
            assert (record.find_source_cell(name, A, A).checksum, record.find_source_cell(name, A, A).locked) \
                == (cell.checksum, cell.locked)
        assert record.find_graded_cell("corr2d_output_shape", A, A).max_score == \
            gb.find_graded_cell("corr2d_output_shape", A, A).max_score
    with pytest.raises(MissingEntry):
        record.find_source_cell("no_such_cell", A, A)
    with pytest.raises(MissingEntry):
        record.find_graded_cell("corr2d_output_shape", "another_notebook", A)


def test_metadata_validation_still_rejects_corrupt_metadata():
    """Check that nbgrader's metadata check (its schema now checked once) still fails on bad metadata."""
    from nbgrader.nbgraderformat import MetadataValidator, ValidationError
    nb = submissions.untouched(A)
    MetadataValidator().validate_nb(nb)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade"))
    cell.metadata.nbgrader["points"] = "many"
    with pytest.raises(ValidationError):
        MetadataValidator().validate_nb(nb)
