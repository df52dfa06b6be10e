"""`python -m grader autograde` end to end on every assignment, in a throwaway course folder and
gradebook: the solved notebook gets full marks and the untouched release zero (sandboxed, in
parallel). test_pipeline_nbgrader.py does the same with plain nbgrader. In the same run, right
answers that then change one of their inputs fail only the tests that check the inputs are left alone."""
from __future__ import annotations

import csv
import subprocess
import sys

import nbformat
import pytest

from grader import samples
from grader.course import ROOT, assignments, tool_env

from .lesson_answers import FORBIDDEN, forbidden_expected
from .test_pipeline_nbgrader import STUDENTS


@pytest.fixture(scope="module")
def our_grades(tmp_path_factory, course_config):
    """The same two students, and the answers that change an input (CHANGING), through
    `python -m grader autograde` (sandboxed, in parallel): (grades.csv rows, cells.csv rows)."""
    tmp = tmp_path_factory.mktemp("ours")
    students = {**STUDENTS, **CHANGING}
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


# Right answers that then zero their tensor argument number i in place (train_kernel and
# corr2d_backward take three tensors).
CHANGING = {f"changes_input_{i}": (lambda a, i=i: samples.changing_an_input(a, i)) for i in range(3)}


@pytest.mark.parametrize("assignment", assignments())
def test_autograde_command_solution_full_untouched_zero(our_grades, assignment):
    grades, _ = our_grades
    perfect, untouched = grades[("perfect", assignment)], grades[("untouched", assignment)]
    assert perfect["status"] == "graded" and float(perfect["score"]) == float(perfect["max_score"]) > 0, perfect
    assert untouched["status"] == "graded" and float(untouched["score"]) == 0, untouched


@pytest.mark.parametrize("assignment", assignments())
def test_tests_compare_with_the_inputs_as_they_were(our_grades, assignment):
    """Check that every test computes its reference from the inputs as they were before the
    student's code ran (a student can leave anything in a tensor it was given, e.g. zeros, and
    answer zeros): right answers that then zero one of their inputs fail only the tests that check
    that inputs are left alone ("must not modify")."""
    _, cells = our_grades
    rows = [r for (student, a, _), r in cells.items() if a == assignment and student.startswith("changes_input_")]
    assert rows, f"{assignment}: no graded cells for the submissions that change an input"
    wrong = [f"{r['student_id']}: {r['grade_id']}: {r['message'][:200]}" for r in rows
             if r["passed"] != "yes" and "modif" not in r["message"]]
    assert not wrong, f"{assignment}: these tests compare with what the student's code left in its inputs: {wrong}"


def test_the_inputs_really_change(our_grades):
    """Check that the submissions above do change their inputs: lesson 1's corr2d_integer_input,
    which checks that X and K are left alone, fails the ones changing X (input 0) and K (input 1)."""
    _, cells = our_grades
    for i in (0, 1):
        r = cells[(f"changes_input_{i}", "01_cross_correlation", "corr2d_integer_input")]
        assert r["passed"] == "no" and "must not modify" in r["message"], r


@pytest.mark.parametrize("assignment", assignments())
def test_forbidden_work_scores_as_in_jupyterlab(our_grades, assignment):
    """Answers that copy a test helper or call what their exercise forbids (lesson_answers.FORBIDDEN)
    pass and fail, cell by cell, exactly as when run in-process (as in JupyterLab), and so as in
    plain nbgrader (test_pipeline_nbgrader.py checks the same expectation): no points for the
    exercises they break, and the forbidden cells fail saying what is forbidden."""
    _, cells = our_grades
    expected = forbidden_expected(assignment)
    rows = {gid: r for (student, a, gid), r in cells.items() if student == "forbidden" and a == assignment}
    assert set(rows) == set(expected), (assignment, sorted(rows), sorted(expected))
    wrong = {gid: r["message"][:200] for gid, r in rows.items() if (r["passed"] == "yes") != expected[gid]}
    assert not wrong, f"{assignment}: our grader differs from the in-process run in {wrong}"
    for a, _, _, tests, fragment in FORBIDDEN.values():
        if a == assignment:
            for gid in tests:
                assert rows[gid]["passed"] == "no" and float(rows[gid]["score"]) == 0, rows[gid]
