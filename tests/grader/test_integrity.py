"""grader/integrity.py: reading submissions, comparing them with the release, repairing them."""
from __future__ import annotations

import copy
import os
import re
import shutil
import stat

import nbformat
import pytest

from grader import integrity, samples
from grader.course import SOLUTIONS

A = "01_cross_correlation"


def _ids(nb):
    return [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells if c.metadata.get("nbgrader")]


@pytest.fixture(scope="module")
def release():
    return samples.untouched(A)


def test_untouched_and_solved_have_no_findings(release):
    for nb in (samples.untouched(A), samples.solved(A)):
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


def test_load_refuses_a_link_to_the_solution_notebook(tmp_path):
    """Check that a notebook that is a symbolic link (here to the course's solution notebook,
    which grades full marks) is refused, not read (O_NOFOLLOW)."""
    path = tmp_path / f"{A}.ipynb"
    path.symlink_to(SOLUTIONS / A / f"{A}.ipynb")
    with pytest.raises(integrity.InvalidSubmission, match=f"^{A}.ipynb is a symbolic link: hand in plain files only"):
        integrity.load(path)
    with pytest.raises(OSError):
        integrity.read_plain(path, 100)


def test_load_refuses_a_fifo_without_waiting_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / "x.ipynb")
    with pytest.raises(integrity.InvalidSubmission, match=r"x.ipynb is a FIFO \(named pipe\)"):
        integrity.load(tmp_path / "x.ipynb")


def _submission(tmp_path):
    """A folder of plain files and folders: the notebook, a data file and a subfolder with one."""
    folder = tmp_path / "ann" / A
    (folder / "data").mkdir(parents=True)
    nbformat.write(samples.solved(A), folder / f"{A}.ipynb")
    (folder / "notes.txt").write_text("my notes")
    (folder / "data" / "x.csv").write_text("1,2")
    return folder


def test_refusal_accepts_plain_files_and_folders(tmp_path):
    assert integrity.refusal(_submission(tmp_path), A) is None


@pytest.mark.parametrize("where", ["notes.txt", "data/x.csv", "data", f"{A}.ipynb"])
@pytest.mark.parametrize("what", ["symbolic link", "FIFO", "socket", "character device"])
def test_refusal_names_what_is_not_a_plain_file(tmp_path, where, what):
    """Check that a link, FIFO, socket or device anywhere in a submission (the notebook, beside
    it, in a subfolder, a subfolder itself) is named, relative to the submission, with what it
    is; nothing is followed (a link to /etc/shadow is only named)."""
    if what == "character device" and os.geteuid() != 0:
        pytest.skip("only root can make a device")
    folder = _submission(tmp_path)
    entry = folder / where
    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    if what == "symbolic link":
        entry.symlink_to("/etc/shadow")
    elif what == "FIFO":
        os.mkfifo(entry)
    elif what == "socket":
        os.mknod(entry, stat.S_IFSOCK | 0o600)
    else:
        os.mknod(entry, stat.S_IFCHR | 0o600, os.makedev(1, 3))     # /dev/null
    message = integrity.refusal(folder, A)
    assert message is not None and message.startswith(f"{where} is a {what}"), message
    assert message.endswith("hand in plain files only; nothing of this submission was read")


def test_refusal_of_a_linked_folder(tmp_path):
    folder = _submission(tmp_path)
    (tmp_path / "link").symlink_to(folder)
    assert integrity.refusal(tmp_path / "link", "the folder").startswith("the folder is a symbolic link")


@pytest.mark.parametrize("where", ["notes.txt", "data/x.csv", f"{A}.ipynb"])
def test_refusal_of_a_hard_link(tmp_path, where):
    """Check that a file with another name (a hard link: to a file its owner may not even read,
    where the system lets anyone link to anything) is refused unread, wherever it is."""
    folder = _submission(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET")
    (folder / where).unlink()
    os.link(secret, folder / where)
    message = integrity.refusal(folder, A)
    assert message is not None and message.startswith(f"{where} is a hard link"), message
    if where.endswith(".ipynb"):
        with pytest.raises(integrity.InvalidSubmission, match="is a hard link"):
            integrity.load(folder / where)


def test_refusal_of_too_many_files(tmp_path):
    """Check that a submission with more than MAX_ENTRIES files and folders (in any folders) is
    refused, and one with exactly that many is not."""
    folder = _submission(tmp_path)            # 4 entries: the notebook, notes.txt, data/, data/x.csv
    many = folder / "many"
    many.mkdir()
    for i in range(integrity.MAX_ENTRIES - 5):
        (many / f"{i}.txt").write_text("")
    assert integrity.refusal(folder, A) is None
    (many / "one_more.txt").write_text("")
    message = integrity.refusal(folder, A)
    assert message is not None and f"more than {integrity.MAX_ENTRIES} files and folders" in message, message


def test_plain_files_opens_regular_files_only_and_follows_no_link(tmp_path):
    """Check that plain_files gives the regular files (by relative path, with their content) and
    skips links to files and folders, FIFOs (without blocking) and pruned folders."""
    folder = _submission(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("SECRET")
    (folder / "link.txt").symlink_to(outside / "secret.txt")
    (folder / "linked_folder").symlink_to(outside)
    os.mkfifo(folder / "pipe")
    (folder / ".ipynb_checkpoints").mkdir()
    (folder / ".ipynb_checkpoints" / "old.txt").write_text("old")
    found = {rel: os.read(fd, 100) for rel, fd in integrity.plain_files(folder, prune=(".ipynb_checkpoints",))}
    assert sorted(found) == [f"{A}.ipynb", "data/x.csv", "notes.txt"]
    assert found["notes.txt"] == b"my notes" and found["data/x.csv"] == b"1,2"


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
    nb = {"untouched": lambda: samples.untouched(A), "solved": lambda: samples.solved(A),
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
    nb = samples.untouched(A)
    MetadataValidator().validate_nb(nb)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade"))
    cell.metadata.nbgrader["points"] = "many"
    with pytest.raises(ValidationError):
        MetadataValidator().validate_nb(nb)


def _rendered(source: str) -> str:
    from nbconvert.filters import markdown2html
    return markdown2html(source)


@pytest.mark.parametrize("evil", [
    'Hi <img src=x onerror="alert(1)"> **bold**',
    "<script>alert(2)</script>",
    "[click](javascript:alert(1))",
    "[click](&#106;avascript:alert(1))",
    '<a href="JaVa&#x09;script:alert(1)">x</a>',
    '<iframe src="https://example.org"></iframe>',
    '<svg><circle onload="alert(1)"/></svg>',
    "```\nfences too: ``` <img src=x onerror=alert(1)>\n```\n<img src=y onerror=alert(2)>",
    "![missing](attachment:nowhere.png)",      # nbconvert cannot render it: formgrader's page would fail
    "![pixel](https://tracker.example/p.gif?me)",    # loads while the instructor grades
    '<img src="/hub/api/user">',                     # a request to the hub's own origin, with cookies
    "![svg](data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=)",
])
def test_a_students_active_markdown_is_shown_as_text(evil):
    """Formgrader renders markdown without a sanitizer: whatever a student's markdown renders to
    that could run (a script, a handler, a javascript: link, an iframe) makes the cell text."""
    release = samples.untouched("01_cross_correlation")
    nb = copy.deepcopy(release)
    nb.cells.append(nbformat.v4.new_markdown_cell(evil))
    cell = integrity.inert_markup(nb, release).cells[-1]
    html = _rendered(cell.source)
    assert "shows this cell as text" in cell.source and evil in cell.source   # nothing of it lost
    assert not re.search(r"<(script|img|iframe|svg)\b|<a [^>]*href=\"(?!http)", html), html


def test_plain_markdown_and_the_releases_cells_are_kept():
    release = samples.untouched("01_cross_correlation")
    nb = copy.deepcopy(release)
    fine = ("# A heading\n\n**bold**, $x^2$, a [link](https://pytorch.org), ![a plot](attachment:p.png), "
            "a < b, <b>bold</b>\n\n| a | b |\n|---|---|\n| 1 | 2 |")
    png = {"image/png": "iVBORw0KGgo="}
    raw = nbformat.v4.new_raw_cell('<img src=x onerror="alert(3)">')
    raw.metadata.update({"format": "text/html", "raw_mimetype": "text/html"})
    nb.cells += [nbformat.v4.new_markdown_cell(fine, attachments={"p.png": png}), raw]
    out = integrity.inert_markup(nb, release)
    assert out.cells[-2].source == fine
    assert "format" not in raw.metadata and "raw_mimetype" not in raw.metadata
    assert [c.source for c in out.cells[:len(release.cells)]] == [c.source for c in release.cells]
