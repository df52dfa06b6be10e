"""End to end with nbgrader itself: in a throwaway course folder and gradebook, the solved notebook
autogrades to full marks and the untouched release to zero, for every assignment."""
from __future__ import annotations

import nbformat
import pytest
from nbgrader.api import Gradebook

from grader import submissions
from grader.course import CONFIG, SOLUTIONS, assignments, nbgrader

STUDENTS = {"perfect": submissions.solved, "untouched": submissions.untouched}


@pytest.fixture(scope="module")
def gradebook(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    (course / "nbgrader_config.py").write_text(
        f"c = get_config()\n"
        f"load_subconfig({CONFIG.name!r}, path={str(CONFIG.parent)!r})\n"
        f"c.CourseDirectory.root = {str(course)!r}\n"
        f"c.CourseDirectory.source_directory = {str(SOLUTIONS)!r}\n"
        f"c.CourseDirectory.release_directory = 'release'\n"
        f"c.CourseDirectory.submitted_directory = 'submitted'\n"
        f"c.CourseDirectory.autograded_directory = 'autograded'\n"
        f"c.CourseDirectory.db_url = 'sqlite:///{course}/gradebook.db'\n"
    )
    for assignment in assignments():
        nbgrader("generate_assignment", assignment, "--force", config_dir=course)
        for student, make in STUDENTS.items():
            path = course / "submitted" / student / assignment / f"{assignment}.ipynb"
            path.parent.mkdir(parents=True)
            nbformat.write(make(assignment), path)
        nbgrader("autograde", assignment, "--force", config_dir=course)
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
