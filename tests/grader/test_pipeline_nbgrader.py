"""Plain `nbgrader autograde` end to end, in a throwaway course folder and gradebook, for every
assignment (what formgrader's own Autograde button does): the solved notebook gets full marks and
the untouched release zero; and the untouched release, as nbgrader ran it, fails only with
NotImplementedError (the exercises not done). test_pipeline.py does the same with our grader."""
from __future__ import annotations

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


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A course folder in which plain nbgrader autograded both students on every assignment
    (one generate_assignment and one autograde for all of them: "*" is a pattern to nbgrader)."""
    course = tmp_path_factory.mktemp("course")
    write_course(course)
    nbgrader("generate_assignment", "*", "--force", config_dir=course)
    for assignment in assignments():
        for student, make in STUDENTS.items():
            path = course / "submitted" / student / assignment / f"{assignment}.ipynb"
            path.parent.mkdir(parents=True)
            nbformat.write(make(assignment), path)
    nbgrader("autograde", "*", "--force", config_dir=course)
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
def test_forbidden_work_scores_as_in_jupyterlab(gradebook, assignment):
    """Forbidden answers lose exactly the cells they fail when run in-process (as in JupyterLab):
    every test of their exercise (and of exercises that build on them), nothing else."""
    scores = _scores(gradebook, assignment, "forbidden")
    expected = forbidden_expected(assignment)
    wrong = {cell: s for cell, s in scores.items() if (s[0] == s[1]) != expected[cell]}
    assert not wrong, f"{assignment}: nbgrader's scores differ from the in-process run in {wrong}"


@pytest.mark.parametrize("assignment", assignments())
def test_untouched_release_fails_only_with_not_implemented(course, assignment):
    """The student version as released runs to the end under nbgrader; every error is the
    NotImplementedError of an exercise not done, and every graded test fails."""
    nb = nbformat.read(course / "autograded" / "untouched" / assignment / f"{assignment}.ipynb", as_version=4)
    problems = run_notebooks.untouched_problems(assignment, nb)
    assert not problems, "\n".join(problems)
