"""Plain `nbgrader autograde` end to end, in throwaway course folders and gradebooks, for every
assignment (what formgrader's own Autograde button does): the solved notebook gets full marks and
the untouched release zero; and the untouched release, as nbgrader ran it, fails only with
NotImplementedError (the exercises not done). test_pipeline.py does the same with our grader."""
from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from grader import run_notebooks, samples
from grader.course import assignments, nbgrader

from .conftest import write_course
from .lesson_answers import forbidden_expected, forbidden_submission

# "forbidden": every answer of lesson_answers.FORBIDDEN (copies of test helpers, PyTorch's layers,
# convolution, pooling or autograd where the exercise forbids them), the solution elsewhere.
STUDENTS = {"perfect": samples.solved, "untouched": samples.untouched, "forbidden": forbidden_submission}


# nbgrader autograde runs one notebook at a time (18 here, several minutes): the assignments are
# split between two course folders graded at once, so this file is not the suite's longest.
GROUPS = 2


@pytest.fixture(scope="module")
def courses(tmp_path_factory) -> dict[str, Path]:
    """assignment -> the course folder in which plain nbgrader autograded every student on it (one
    generate_assignment and one autograde per folder: "*" is a pattern to nbgrader)."""
    names = assignments()
    groups = [names[i::GROUPS] for i in range(GROUPS)]

    def grade(group: list[str], course: Path) -> Path:
        write_course(course)
        nbgrader("generate_assignment", "*", "--force", config_dir=course)
        for assignment in group:
            for student, make in STUDENTS.items():
                path = course / "submitted" / student / assignment / f"{assignment}.ipynb"
                path.parent.mkdir(parents=True)
                nbformat.write(make(assignment), path)
        nbgrader("autograde", "*", "--force", config_dir=course)
        return course

    folders = [tmp_path_factory.mktemp("course") for _ in groups]     # (mktemp is not thread-safe)
    with ThreadPoolExecutor(GROUPS) as pool:
        made = list(pool.map(grade, groups, folders))
    return {assignment: course for group, course in zip(groups, made) for assignment in group}


@pytest.fixture(scope="module")
def gradebooks(courses):
    """assignment -> the Gradebook that holds its grades."""
    with contextlib.ExitStack() as stack:
        opened = {course: stack.enter_context(Gradebook(f"sqlite:///{course}/gradebook.db"))
                  for course in set(courses.values())}
        yield {assignment: opened[course] for assignment, course in courses.items()}


def _scores(gb: Gradebook, assignment: str, student: str) -> dict[str, tuple[float, float]]:
    nb = gb.find_submission_notebook(assignment, assignment, student)
    return {g.name: (g.score, g.max_score) for g in nb.grades}


@pytest.mark.parametrize("assignment", assignments())
def test_solution_gets_full_marks(gradebooks, assignment):
    scores = _scores(gradebooks[assignment], assignment, "perfect")
    assert scores, f"{assignment} has no graded cells"
    lost = {cell: s for cell, s in scores.items() if s[0] != s[1]}
    assert not lost, f"{assignment}: the solution loses points in {lost}"


@pytest.mark.parametrize("assignment", assignments())
def test_untouched_release_scores_zero(gradebooks, assignment):
    earned = {cell: s for cell, s in _scores(gradebooks[assignment], assignment, "untouched").items() if s[0] != 0}
    assert not earned, f"{assignment}: the untouched student version earns points in {earned}"


@pytest.mark.parametrize("assignment", assignments())
def test_forbidden_work_scores_as_in_jupyterlab(gradebooks, assignment):
    """Forbidden answers lose exactly the cells they fail when run in-process (as in JupyterLab):
    every test of their exercise (and of exercises that build on them), nothing else."""
    scores = _scores(gradebooks[assignment], assignment, "forbidden")
    expected = forbidden_expected(assignment)
    wrong = {cell: s for cell, s in scores.items() if (s[0] == s[1]) != expected[cell]}
    assert not wrong, f"{assignment}: nbgrader's scores differ from the in-process run in {wrong}"


@pytest.mark.parametrize("assignment", assignments())
def test_untouched_release_fails_only_with_not_implemented(courses, assignment):
    """The student version as released runs to the end under nbgrader; every error is the
    NotImplementedError of an exercise not done, and every graded test fails."""
    nb = nbformat.read(courses[assignment] / "autograded" / "untouched" / assignment / f"{assignment}.ipynb", as_version=4)
    problems = run_notebooks.untouched_problems(assignment, nb)
    assert not problems, "\n".join(problems)
