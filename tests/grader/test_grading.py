"""grader/grading.py: which cells run where, and what the examiner binds (without kernels;
end to end: test_pipeline.py and test_hostile.py)."""
from __future__ import annotations

import ast
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

from grader import grading, integrity, samples
from grader.inside import wire
from grader.course import assignments, source_notebook
from grader.grading import EXTRA_FILES_LIMIT, Examination, is_instructor, wanted_names

A = "01_cross_correlation"


def test_the_examiner_binds_the_students_answers_of_lesson_1():
    nb = nbformat.read(source_notebook("01_cross_correlation"), as_version=4)
    imports = integrity.notebook_imports(nb)
    assert wanted_names(nb, imports) == ["Conv2D", "convolve2d", "corr2d", "corr2d_multi_in", "corr2d_multi_in_out"]


@pytest.mark.parametrize("assignment", assignments())
def test_student_cells_do_not_need_what_test_cells_define(assignment):
    """Test cells run only in the examiner when grading, so no other cell may use a name that only a
    test cell defines (it would work in JupyterLab and fail when graded)."""
    nb = nbformat.read(source_notebook(assignment), as_version=4)
    from_tests, elsewhere = set(), set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tree = ast.parse("\n".join(l for l in cell.source.splitlines() if not l.lstrip().startswith(("%", "!"))))
        stores = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
        stores |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        stores |= {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)}     # a function's own parameters
        if integrity.is_test(cell):
            from_tests |= stores
            continue
        loads = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        assert not (loads & from_tests) - elsewhere - stores, (
            f"{assignment}: a cell uses {sorted((loads & from_tests) - elsewhere - stores)}, defined only in test cells:\n"
            f"{cell.source[:200]}")
        elsewhere |= stores


@pytest.mark.parametrize("assignment", assignments())
def test_every_wanted_name_is_defined_by_an_answer_cell(assignment):
    """What the tests call must come from the student's answers (solution cells), so that the
    examiner never depends on a plain cell the student may have changed for anything else."""
    nb = nbformat.read(source_notebook(assignment), as_version=4)
    defined = set()
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution"):
            tree = ast.parse(cell.source)
            defined |= {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    assert set(wanted_names(nb, integrity.notebook_imports(nb))) <= defined
    assert any(is_instructor(c) for c in nb.cells)


WANTED = {
    "01_cross_correlation": ["Conv2D", "convolve2d", "corr2d", "corr2d_multi_in", "corr2d_multi_in_out"],
    "02_edge_detection": ["edge_magnitude", "horizontal_edge_kernel", "sobel_kernels"],
    "03_learning_a_kernel": ["corr2d_backward", "train_kernel"],
    "04_padding_and_stride": ["conv_output_size", "corr2d_strided", "same_padding"],
    "05_max_pooling_cifar10": ["max_pool2d_backward", "pool2d", "pool_output_size"],
    "06_small_cnn": ["conv_output_size", "pool_output_size", "receptive_field", "shape_table"],
}


@pytest.mark.parametrize("assignment", assignments())
def test_the_students_names_are_the_answers_the_tests_use(assignment):
    """Check the names bound to the student's objects, for the source notebook, the release and
    a submission whose answer cells define more (the answers are read from the source alone)."""
    nb = nbformat.read(source_notebook(assignment), as_version=4)
    imports = integrity.notebook_imports(nb)
    assert wanted_names(nb, imports) == WANTED[assignment]
    submitted = samples.solved(assignment)
    for cell in submitted.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source += "\nexpect_close = gen = Xt = print\nfrom convlab import *\n"
    assert wanted_names(submitted, imports) == wanted_names(samples.untouched(assignment), imports) == WANTED[assignment]


def _read_only(source: str, grade_id: str):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": False, "solution": False, "locked": True, "grade_id": grade_id,
                                 "schema_version": 3}
    return cell


def test_a_read_only_cell_hands_no_checker_to_the_student():
    """Check that names a read-only cell gets by a star import or a magic (invisible to a parser)
    and then uses are the examiner's own, never bound to the student's objects: the old rule
    ("used but not bound by an instructor cell") handed them to the student."""
    nb = nbformat.read(source_notebook(A), as_version=4)
    imports = integrity.notebook_imports(nb)
    nb.cells[1:1] = [_read_only("from convlab.checks import *\n%run instructor_helpers.py", "star_and_magic"),
                     _read_only("expect_close(corr2d(X, K), X)\nassert_by_hand(Conv2D)\n", "uses_them")]
    assert wanted_names(nb, imports) == WANTED[A]


def test_the_students_names_fail_closed_for_a_notebook_of_no_assignment():
    nb = nbformat.read(source_notebook(A), as_version=4)
    nb.cells = [c for c in nb.cells if not integrity.is_test(c) or c.metadata.nbgrader.grade_id != "corr2d_by_hand"]
    with pytest.raises(LookupError, match="no assignment"):
        wanted_names(nb, integrity.notebook_imports(nb))


def test_exceptions_the_tests_catch_reach_them_as_themselves():
    """Check that every exception class a test or read-only cell catches (try/except around the
    student's code) is one the examiner lets through as itself (grader/inside/examiner.py EXPECTED_ERRORS):
    otherwise an honest answer that raises it would score less than under plain nbgrader."""
    from grader.inside import envelope
    sys.modules.setdefault("_convlab_wire", wire)
    sys.modules.setdefault("_convlab_envelope", envelope)
    from grader.inside import examiner
    caught = set()
    for assignment in assignments():
        nb = nbformat.read(source_notebook(assignment), as_version=4)
        for cell in (c for c in nb.cells if c.cell_type == "code" and is_instructor(c)):
            for handler in ast.walk(integrity.parse_cell(cell.source)):
                if isinstance(handler, ast.ExceptHandler) and handler.type is not None:
                    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
                    caught |= {t.id for t in types if isinstance(t, ast.Name)}
    assert caught <= set(examiner.EXPECTED_ERRORS), caught
    assert {"NotImplementedError", "ValueError", "RuntimeError", "IndexError"} <= caught


def _tree(folder: Path) -> dict[str, str]:
    return {str(f.relative_to(folder)): f.read_text()[:40] for f in sorted(folder.rglob("*")) if f.is_file()}


def _copied_in(tmp_path, monkeypatch, student_files: dict[str, str | None]) -> dict[str, str]:
    """What Examination._files puts in the student kernel's folder for a submission with
    `student_files` beside its notebook (None: a symbolic link to a secret outside), where the
    assignment (a test-only copy of solutions/) has its own data files."""
    solutions = tmp_path / "solutions"
    (solutions / A / "data").mkdir(parents=True)
    (solutions / A / f"{A}.ipynb").write_text("{}")
    (solutions / A / "data" / "kernel.txt").write_text("the assignment's kernel")
    (solutions / A / "weights.txt").write_text("the assignment's weights")
    monkeypatch.setattr(grading, "SOLUTIONS", solutions)
    (tmp_path / "secret.txt").write_text("SECRET")
    folder = tmp_path / "subs" / "ann" / A
    folder.mkdir(parents=True)
    (folder / f"{A}.ipynb").write_text("{}")
    for rel, content in student_files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            (folder / rel).symlink_to(tmp_path / "secret.txt")
        else:
            (folder / rel).write_text(content)
    exam = Examination.__new__(Examination)
    exam.job, exam.sandbox = SimpleNamespace(assignment=A, path=folder / f"{A}.ipynb"), True
    kernel = SimpleNamespace(process=SimpleNamespace(workdir=tmp_path / "kernel"))
    (tmp_path / "kernel").mkdir()
    assert exam._files(kernel, include_student=True) == "/run/kernel/in"
    return _tree(tmp_path / "kernel" / "in")


def test_a_students_file_never_replaces_the_assignments(tmp_path, monkeypatch):
    """Check that a student's file at the path of one of the assignment's files (or where the
    assignment has a folder, or under a path that is the assignment's file) is not copied: the
    assignment's file is there, unchanged; the student's other files are copied."""
    files = _copied_in(tmp_path, monkeypatch, {"data/kernel.txt": "the student's kernel",
                                               "weights.txt/x": "under the assignment's file",
                                               "notes.txt": "my notes"})
    assert files == {"data/kernel.txt": "the assignment's kernel", "notes.txt": "my notes",
                     "weights.txt": "the assignment's weights"}


def test_a_students_large_files_never_push_out_the_assignments(tmp_path, monkeypatch):
    """Check that the assignment's files are copied however much the student hands in (the
    student's files have a budget of their own, EXTRA_FILES_LIMIT)."""
    big = "x" * (EXTRA_FILES_LIMIT // 2 + 1)
    files = _copied_in(tmp_path, monkeypatch, {"a1.bin": big, "a2.bin": big, "b.txt": "late"})
    assert files["data/kernel.txt"] == "the assignment's kernel" and files["weights.txt"] == "the assignment's weights"
    assert "a1.bin" in files and "a2.bin" not in files


def test_files_are_never_copied_through_a_link(tmp_path, monkeypatch):
    """Check the second wall behind discovery: a link beside the notebook (to a secret only root
    may read) is not copied into the student's sandbox, at any depth."""
    files = _copied_in(tmp_path, monkeypatch, {"shadow.txt": None, "sub/shadow.txt": None, "ok.txt": "fine"})
    assert "SECRET" not in str(files) and set(files) == {"ok.txt", "data/kernel.txt", "weights.txt"}


def test_copy_plain_files_writes_no_file_through_a_link_in_its_destination(tmp_path):
    """Check that a link already in the destination is not written through (O_EXCL|O_NOFOLLOW)."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("new")
    (tmp_path / "dest").mkdir()
    (tmp_path / "target.txt").write_text("untouched")
    (tmp_path / "dest" / "a.txt").symlink_to(tmp_path / "target.txt")
    assert grading.copy_plain_files(tmp_path / "src", tmp_path / "dest") == []
    assert (tmp_path / "target.txt").read_text() == "untouched" and os.path.islink(tmp_path / "dest" / "a.txt")
