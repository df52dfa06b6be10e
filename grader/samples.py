"""Sample submissions for testing and benchmarking the grader (not a course file: nothing here is
handed to students): the untouched release, a fully solved one, and ones that change an input."""
from __future__ import annotations

import ast
import copy

import nbformat

from .course import source_notebook, student_notebook


def untouched(assignment: str) -> nbformat.NotebookNode:
    """The student version exactly as released."""
    return nbformat.read(student_notebook(assignment), as_version=4)


def solved(assignment: str) -> nbformat.NotebookNode:
    """The student version with every solution cell answered as in solutions/ (what a perfect
    student hands in: the hidden tests are not there, only the answers)."""
    answers = {
        cell.metadata["nbgrader"]["grade_id"]: cell.source
        for cell in nbformat.read(source_notebook(assignment), as_version=4).cells
        if cell.metadata.get("nbgrader", {}).get("solution")
    }
    nb = copy.deepcopy(untouched(assignment))
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution"):
            if grade_id not in answers:
                raise KeyError(f"{assignment}: solution cell {grade_id!r} of the release is not in solutions/")
            cell.source = answers[grade_id]
    return nb


# Wraps a student function so that, after answering a call from outside the student's functions
# (a test's, not one of theirs calling another, whose answer must stay right), it zeroes its tensor
# argument number `which` (positional ones first, then keywords) in place: the caller's tensor changes.
_CHANGES_AN_INPUT = '''
_convlab_depth = [0]


def _convlab_changes_an_input(f, which):
    import torch

    def changes_an_input(*args, **kwargs):
        _convlab_depth[0] += 1
        try:
            result = f(*args, **kwargs)
        finally:
            _convlab_depth[0] -= 1
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        if _convlab_depth[0] == 0 and which < len(tensors):
            with torch.no_grad():
                tensors[which].zero_()
        return result
    return changes_an_input
'''


def changing_an_input(assignment: str, which: int) -> nbformat.NotebookNode:
    """The solved notebook whose functions, having answered correctly, zero their tensor argument
    number `which` in place. Every test should pass it except those that check that the function
    leaves its inputs alone: a test that fails it otherwise computed its reference from what the
    student's code left in its inputs, which a student can set to anything (e.g. zeros, and answer
    zeros)."""
    nb = solved(assignment)
    cells, helper = [], _CHANGES_AN_INPUT          # the helper goes into the first wrapping cell only
    for cell in nb.cells:
        cells.append(cell)
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution"):
            names = [n.name for n in ast.parse(cell.source).body if isinstance(n, ast.FunctionDef)]
            if names:
                wraps = "\n".join(f"{n} = _convlab_changes_an_input({n}, {which})" for n in names)
                cells.append(nbformat.v4.new_code_cell(helper + wraps))
                helper = ""
    nb.cells = cells
    return nb
