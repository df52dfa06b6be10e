"""Shared fixtures: a throwaway nbgrader course (config + gradebook) that reuses solutions/."""
from __future__ import annotations

import pytest

from grader.course import CONFIG, SOLUTIONS, nbgrader


def write_course(course) -> None:
    """nbgrader_config.py in `course`: the course's config, with its own root and gradebook."""
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


@pytest.fixture(scope="session")
def course_config(tmp_path_factory):
    """The folder of a throwaway nbgrader_config.py (gradebook inside it, which knows every
    assignment: one nbgrader run for all, instead of one per assignment when a test first grades it)."""
    course = tmp_path_factory.mktemp("grader-course")
    write_course(course)
    nbgrader("generate_assignment", "*", "--force", "--log-level=WARN",
             f"--CourseDirectory.release_directory={course / 'generated'}", config_dir=course)
    return course
