"""`python -m grader autograde` end to end on every assignment, in a throwaway course folder and
gradebook: the solved notebook gets full marks and the untouched release zero (sandboxed, in
parallel). test_pipeline_nbgrader.py does the same with plain nbgrader. In the same run, answers
that zero one of their inputs in place gain nothing over the same answers leaving them alone."""
from __future__ import annotations

import csv
import subprocess
import sys

import nbformat
import pytest

from grader import submissions
from grader.course import ROOT, assignments, tool_env

from .test_pipeline_nbgrader import STUDENTS


@pytest.fixture(scope="module")
def our_grades(tmp_path_factory, course_config):
    """The same two students through `python -m grader autograde` (sandboxed, in parallel)."""
    tmp = tmp_path_factory.mktemp("ours")
    students = {**STUDENTS, **ZEROING}
    for assignment in assignments():
        for student, make in students.items():
            path = tmp / "subs" / student / assignment / f"{assignment}.ipynb"
            path.parent.mkdir(parents=True)
            nbformat.write(make(assignment), path)
    cmd = [sys.executable, "-m", "grader", "autograde", str(tmp / "subs"), "--out", str(tmp / "out"),
           "--config-dir", str(course_config), "--no-progress", "--timeout", "300"]
    proc = subprocess.run(cmd, cwd=ROOT, env=tool_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(tmp / "out" / "grades.csv") as f:
        grades = {(r["student_id"], r["assignment"]): r for r in csv.DictReader(f)}
    with open(tmp / "out" / "cells.csv") as f:
        cells = {(r["student_id"], r["assignment"], r["grade_id"]): r for r in csv.DictReader(f)}
    return grades, cells


# Functions answering as if their tensor argument number i were zeros (train_kernel and
# corr2d_backward take three tensors), having zeroed the caller's tensor or a copy of it.
ZEROING = {f"zeroes_{i}_{how}": (lambda a, i=i, in_place=(how == "in_place"): submissions.zeroing_an_input(a, i, in_place))
           for i in range(3) for how in ("in_place", "copy")}


@pytest.mark.parametrize("assignment", assignments())
def test_autograde_command_solution_full_untouched_zero(our_grades, assignment):
    grades, _ = our_grades
    perfect, untouched = grades[("perfect", assignment)], grades[("untouched", assignment)]
    assert perfect["status"] == "graded" and float(perfect["score"]) == float(perfect["max_score"]) > 0, perfect
    assert untouched["status"] == "graded" and float(untouched["score"]) == 0, untouched


@pytest.mark.parametrize("assignment", assignments())
def test_changing_an_input_in_place_gains_nothing(our_grades, assignment):
    """Check that every test computes its reference from the inputs as they were before the
    student's code ran (a student can leave anything in a tensor it was given): answers that zero
    an input in place score, test by test, no more than the same answers zeroing a copy."""
    _, cells = our_grades
    gains = [f"{grade_id} (input {i}): {r['score']} > {cells[(f'zeroes_{i}_copy', a, grade_id)]['score']}"
             for (student, a, grade_id), r in cells.items() if a == assignment and student.endswith("_in_place")
             for i in [int(student.split("_")[1])]
             if float(r["score"]) > float(cells[(f"zeroes_{i}_copy", a, grade_id)]["score"])]
    assert not gains, f"{assignment}: these tests compare with what the student's code left in its inputs: {gains}"
