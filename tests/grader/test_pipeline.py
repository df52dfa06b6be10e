"""`python -m grader autograde` end to end on every assignment, in a throwaway course folder and
gradebook: the solved notebook gets full marks and the untouched release zero (sandboxed, in
parallel). test_pipeline_nbgrader.py does the same with plain nbgrader."""
from __future__ import annotations

import csv
import subprocess
import sys

import nbformat
import pytest

from grader.course import ROOT, assignments, tool_env

from .test_pipeline_nbgrader import STUDENTS


@pytest.fixture(scope="module")
def our_grades(tmp_path_factory, course_config):
    """The same two students through `python -m grader autograde` (sandboxed, in parallel)."""
    tmp = tmp_path_factory.mktemp("ours")
    for assignment in assignments():
        for student, make in STUDENTS.items():
            path = tmp / "subs" / student / assignment / f"{assignment}.ipynb"
            path.parent.mkdir(parents=True)
            nbformat.write(make(assignment), path)
    cmd = [sys.executable, "-m", "grader", "autograde", str(tmp / "subs"), "--out", str(tmp / "out"),
           "--config-dir", str(course_config), "--no-progress", "--timeout", "300"]
    proc = subprocess.run(cmd, cwd=ROOT, env=tool_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(tmp / "out" / "grades.csv") as f:
        return {(r["student_id"], r["assignment"]): r for r in csv.DictReader(f)}


@pytest.mark.parametrize("assignment", assignments())
def test_autograde_command_solution_full_untouched_zero(our_grades, assignment):
    perfect, untouched = our_grades[("perfect", assignment)], our_grades[("untouched", assignment)]
    assert perfect["status"] == "graded" and float(perfect["score"]) == float(perfect["max_score"]) > 0, perfect
    assert untouched["status"] == "graded" and float(untouched["score"]) == 0, untouched
