"""Make submissions for testing and benchmarking the grader: the untouched release and a fully solved one."""
from __future__ import annotations

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
