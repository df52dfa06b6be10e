"""hub/jupyter/instructor/nbgrader_config.py: on the hub, plain `nbgrader autograde` and
`nbgrader generate_feedback` (the commands, and formgrader's buttons through nbgrader's API) refuse
before they run any student code, delete what hub/grade.py wrote or render hidden tests for the
students, while the instructor's other nbgrader commands still work."""
from __future__ import annotations

import json
import subprocess
import sys

import nbformat
import pytest

from grader import samples
from grader.course import ROOT, tool_env

A = "01_cross_correlation"
INSTRUCTOR = ROOT / "hub" / "jupyter" / "instructor"

# What formgrader does when its Autograde or Generate Feedback button is clicked (nbgrader's server
# extension), with the instructor's config loaded as the hub's server loads it.
FORMGRADER = """
import json, sys
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader
from nbgrader.apps import NbGraderAPI
from nbgrader.coursedir import CourseDirectory
config = PyFileConfigLoader("nbgrader_config.py", path=sys.argv[1]).load_config()
api = NbGraderAPI(CourseDirectory(config=config), config=config)
print(json.dumps(getattr(api, sys.argv[3])(sys.argv[2], "alice")))
"""


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """An instructor's ~/convlab as the hub writes it, lesson 1 generated, and alice's submission
    (whose first cell would leave a file if it ever ran) already graded by our grader."""
    home = tmp_path_factory.mktemp("home")
    course = home / "convlab"
    course.mkdir()
    (course / "nbgrader_config.py").write_text(
        f"c = get_config()\nload_subconfig('nbgrader_config.py', path={str(INSTRUCTOR)!r})\n")
    env = tool_env(HOME=str(home))
    run = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", A, "--force"],
                         cwd=course, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    nb = samples.solved(A)
    marker = home / "student-code-ran"
    nb.cells.insert(0, nbformat.v4.new_code_cell(f"open({str(marker)!r}, 'w').write('ran')"))
    submitted = course / "submitted" / "alice" / A / f"{A}.ipynb"
    submitted.parent.mkdir(parents=True)
    nbformat.write(nb, submitted)
    ours = course / "autograded" / "alice" / A / f"{A}.ipynb"
    ours.parent.mkdir(parents=True)
    ours.write_text("graded by python -m grader autograde")
    return course, env, marker, ours


def _refused(text: str, command: str) -> bool:
    return f"`nbgrader {command}`" in text and "switched off" in text and str(ROOT / "hub" / "grade.py") in text


def _untouched(course, marker, ours) -> None:
    assert not marker.exists(), "the student's code ran"
    assert ours.read_text() == "graded by python -m grader autograde", "autograded/ was touched"
    assert not (course / "feedback").exists(), "feedback was written"


@pytest.mark.parametrize("command", ["autograde", "generate_feedback"])
def test_the_command_refuses_and_says_what_to_run(course, command):
    course, env, marker, ours = course
    run = subprocess.run([sys.executable, "-m", "nbgrader", command, A, "--force"],
                         cwd=course, env=env, capture_output=True, text=True)
    assert run.returncode != 0
    assert _refused(run.stdout + run.stderr, command), run.stdout + run.stderr
    _untouched(course, marker, ours)


@pytest.mark.parametrize("command", ["autograde", "generate_feedback"])
def test_formgraders_button_refuses(course, command):
    course, env, marker, ours = course
    run = subprocess.run([sys.executable, "-c", FORMGRADER, str(course), A, command],
                         cwd=course, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["success"] is False
    assert _refused(result.get("log", "") + result.get("error", ""), command), result
    _untouched(course, marker, ours)


def test_other_nbgrader_commands_still_work(course):
    course, env, _, _ = course
    run = subprocess.run([sys.executable, "-m", "nbgrader", "db", "student", "list"],
                         cwd=course, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (course / "release" / A / f"{A}.ipynb").is_file()
