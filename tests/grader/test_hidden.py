"""Hidden cases stay hidden: the hidden part of a test cell runs as its own step (grader/grading.py
`steps`), and a failure there reaches the student's feedback only as "a hidden check failed" plus
the mistake the check named, never its inputs, expected values or the student's own exception
message; the instructor still sees everything (cells.csv, the graded notebook)."""
from __future__ import annotations

import copy
import json
import re
import subprocess
import sys

import nbformat
import pytest

from grader import samples
from grader.autograde import _cell_results, hidden_message
from grader.course import ROOT, tool_env
from grader.grading import steps

A = "01_cross_correlation"


def test_a_test_cell_runs_as_its_visible_and_hidden_parts_in_order():
    source = ("x = 1\nassert x == 1\n### BEGIN HIDDEN TESTS\nassert x + 1 == 2\n### END HIDDEN TESTS\n"
              "y = 2\n### BEGIN HIDDEN TESTS\nassert y == 2\n### END HIDDEN TESTS\n")
    assert steps(source) == [("x = 1\nassert x == 1\n", False), ("assert x + 1 == 2\n", True),
                             ("y = 2\n", False), ("assert y == 2\n", True)]
    assert steps("assert True\n") == [("assert True\n", False)]


def test_a_cell_whose_parts_would_not_run_alone_is_one_hidden_step():
    source = "for i in range(3):\n### BEGIN HIDDEN TESTS\n    assert i < 3\n### END HIDDEN TESTS\n"
    assert steps(source) == [(source, True)]


def test_every_lessons_hidden_parts_run_alone():
    """Today's test cells split cleanly (else their failures would all read as hidden)."""
    from grader.course import assignments, source_notebook
    for a in assignments():
        for cell in nbformat.read(source_notebook(a), as_version=4).cells:
            if "### BEGIN HIDDEN TESTS" in cell.source:
                assert len(steps(cell.source)) > 1, (a, cell.metadata["nbgrader"]["grade_id"])


def test_a_hidden_failure_names_only_the_mistake():
    named = "AssertionError: corr2d(X, K) for [[9, 9]] is wrong: it matches what you get if you flipped the kernel."
    assert hidden_message(named) == "A hidden check failed: your answer matches what you get if you flipped the kernel."
    for secret in ("AssertionError: corr2d(X, K) for [[9, 9]] is wrong at [0, 1]: 3.0 instead of 4.0",
                   "ValueError: LEAK [[1.0, 2.0]]",
                   "StudentCodeError: corr2d raised X: it matches what you get if you flipped the kernel."):
        public = hidden_message(secret)
        assert "9" not in public and "LEAK" not in public and "flipped" not in public, public


def test_cell_results_keep_the_whole_message_for_the_instructor():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("")])
    cell = nb.cells[0]
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": "t", "points": 2, "solution": False, "locked": True}
    cell.outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="LEAK 42", traceback=[])]
    shown, hidden = _cell_results(nb)[0], _cell_results(nb, {"t"})[0]
    assert shown["message"] == shown["public_message"] == "ValueError: LEAK 42"
    assert hidden["message"] == "ValueError: LEAK 42" and "LEAK" not in hidden["public_message"]
    assert hidden["score"] == 0 and not hidden["passed"]


# A corr2d that knows the worked example by heart and, on any other input, raises with the input
# in its message: it passes the visible part of corr2d_worked_example and fails its hidden part.
MEMORISED = '''
import torch

def corr2d(X, K):
    if X.shape == (3, 3) and torch.equal(X, torch.arange(9.0).reshape(3, 3)):
        return torch.tensor([[19.0, 25.0], [37.0, 43.0]])
    raise ValueError("LEAK " + str(X.tolist()))
'''


@pytest.fixture(scope="module")
def graded(tmp_path_factory, course_config):
    tmp = tmp_path_factory.mktemp("hidden")
    nb = copy.deepcopy(samples.solved(A))
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "corr2d_impl")
    cell.source = MEMORISED
    path = tmp / "subs" / "memoriser" / A / f"{A}.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, path)
    out = tmp / "out"
    for args in (["autograde", str(tmp / "subs"), "--config-dir", str(course_config), "--no-progress"],
                 ["feedback"]):
        proc = subprocess.run([sys.executable, "-m", "grader", *args, "--out", str(out)], cwd=ROOT,
                              env=tool_env(), capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    run = json.loads((out / "last-run.json").read_text())[0]
    result = json.loads((out / "results" / run["file"]).read_text())
    return result, (out / "feedback" / "memoriser" / f"{A}.html").read_text()


@pytest.mark.slow
def test_a_hidden_failure_reaches_the_feedback_as_a_hidden_failure(graded):
    result, page = graded
    cell = next(c for c in result["cells"] if c["grade_id"] == "corr2d_worked_example")
    assert not cell["passed"] and "LEAK" in cell["message"]                 # the instructor's view
    assert cell["public_message"] == "A hidden check failed (its inputs and message are not shown)."
    row = page.split("corr2d_worked_example", 1)[1].split("</tr>", 1)[0]
    message = re.findall(r"<td>(.*?)</td>", row, re.S)[2]          # points, result, message, source
    assert "A hidden check failed" in message and "LEAK" not in row and "Xh" not in row, row
