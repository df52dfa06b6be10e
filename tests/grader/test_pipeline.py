"""End to end, in a throwaway course folder and gradebook, for every assignment: the solved notebook
autogrades to full marks and the untouched release to zero, both with plain `nbgrader autograde`
and with `python -m grader autograde`; and the untouched release, as nbgrader ran it, fails only
with NotImplementedError (the exercises not done)."""
from __future__ import annotations

import csv
import subprocess
import sys

import nbformat
import pytest
from nbgrader.api import Gradebook

from grader import execute, submissions
from grader.course import ROOT, assignments, nbgrader, tool_env

from .conftest import write_course

STUDENTS = {"perfect": submissions.solved, "untouched": submissions.untouched}


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A course folder in which plain nbgrader autograded both students on every assignment."""
    course = tmp_path_factory.mktemp("course")
    write_course(course)
    for assignment in assignments():
        nbgrader("generate_assignment", assignment, "--force", config_dir=course)
        for student, make in STUDENTS.items():
            path = course / "submitted" / student / assignment / f"{assignment}.ipynb"
            path.parent.mkdir(parents=True)
            nbformat.write(make(assignment), path)
        nbgrader("autograde", assignment, "--force", config_dir=course)
    return course


@pytest.fixture(scope="module")
def gradebook(course):
    with Gradebook(f"sqlite:///{course}/gradebook.db") as gb:
        yield gb


def _scores(gb: Gradebook, assignment: str, student: str) -> dict[str, tuple[float, float]]:
    nb = gb.find_submission_notebook(assignment, assignment, student)
    return {g.name: (g.score, g.max_score) for g in nb.grades}


@pytest.mark.parametrize("assignment", assignments())
def test_solution_gets_full_marks(gradebook, assignment):
    scores = _scores(gradebook, assignment, "perfect")
    assert scores, f"{assignment} has no graded cells"
    lost = {cell: s for cell, s in scores.items() if s[0] != s[1]}
    assert not lost, f"{assignment}: the solution loses points in {lost}"


@pytest.mark.parametrize("assignment", assignments())
def test_untouched_release_scores_zero(gradebook, assignment):
    earned = {cell: s for cell, s in _scores(gradebook, assignment, "untouched").items() if s[0] != 0}
    assert not earned, f"{assignment}: the untouched student version earns points in {earned}"


@pytest.mark.parametrize("assignment", assignments())
def test_untouched_release_fails_only_with_not_implemented(course, assignment):
    """The student version as released runs to the end under nbgrader; every error is the
    NotImplementedError of an exercise not done, and every graded test fails."""
    nb = nbformat.read(course / "autograded" / "untouched" / assignment / f"{assignment}.ipynb", as_version=4)
    problems = execute.untouched_problems(assignment, nb)
    assert not problems, "\n".join(problems)


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
