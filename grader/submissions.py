"""Make submissions for testing and benchmarking the grader: the untouched release and a fully solved one."""
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


# Wraps a student function so that its tensor argument number `which` (positional ones first, then
# keywords) is zeroed before the function runs: in place, so the caller's tensor changes too, or in
# a copy, so it does not. The function then answers for the zeroed input.
_ZEROED = '''
def _convlab_zeroed(f, which, in_place):
    import torch

    def zeroed(*args, **kwargs):
        args, kwargs = list(args), dict(kwargs)
        slots = [(args, i) for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
        slots += [(kwargs, k) for k, v in kwargs.items() if isinstance(v, torch.Tensor)]
        if which < len(slots):
            box, key = slots[which]
            if in_place:
                with torch.no_grad():
                    box[key].zero_()
            else:
                box[key] = box[key].detach().clone().zero_().requires_grad_(box[key].requires_grad)
        return f(*args, **kwargs)
    return zeroed
'''


def zeroing_an_input(assignment: str, which: int, in_place: bool) -> nbformat.NotebookNode:
    """The solved notebook whose functions answer as if their tensor argument number `which` were
    zeros, having zeroed the caller's tensor itself (`in_place`) or a copy. Against tests whose
    references are computed from the inputs as they were, the first scores no more than the second
    on any test: a test where it scores more computed its reference from what the student's code
    left in its inputs (which a student can set to anything)."""
    nb = solved(assignment)
    cells = []
    for cell in nb.cells:
        cells.append(cell)
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution"):
            names = [n.name for n in ast.parse(cell.source).body if isinstance(n, ast.FunctionDef)]
            if names:
                wraps = "\n".join(f"{n} = _convlab_zeroed({n}, {which}, {in_place})" for n in names)
                cells.append(nbformat.v4.new_code_cell(_ZEROED + wraps))
    nb.cells = cells
    return nb
