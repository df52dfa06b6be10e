"""grader/examination.py: which cells run where, and what the examiner binds (without kernels;
end to end: test_pipeline.py and test_hostile.py)."""
from __future__ import annotations

import ast

import nbformat
import pytest

from grader import integrity
from grader.course import assignments, source_notebook
from grader.examination import is_instructor, wanted_names


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
