"""A catalog of hostile and broken submissions, all graded by ONE `autograde` run (module fixture),
each with the outcome it must get. Built from lesson 1 (solved / untouched / wrong corr2d).

The attacks below get full or undeserved marks from plain `nbgrader autograde`; here they must
not, and the submission must be flagged."""
from __future__ import annotations

import copy
import csv
import json
import os
from pathlib import Path

import nbformat
import pytest

from grader import autograde, submissions
from grader.course import ROOT, SOLUTIONS

A = "01_cross_correlation"
TIMEOUT = 20.0
WRONG_CORR2D = (
    "def corr2d(X, K):\n"
    "    return torch.zeros(X.shape[0] - K.shape[0] + 1, X.shape[1] - K.shape[1] + 1)\n"
)


def _cell(source: str):
    return nbformat.v4.new_code_cell(source)


def _index(nb, grade_id: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _wrong():
    nb = submissions.solved(A)
    nb.cells[_index(nb, "corr2d_impl")].source = WRONG_CORR2D
    return nb


def _after(base, grade_id: str, source: str):
    nb = copy.deepcopy(base)
    nb.cells.insert(_index(nb, grade_id) + 1, _cell(source))
    return nb


def _edit(base, cell_id: str, **changes):
    nb = copy.deepcopy(base)
    cell = nb.cells[_index(nb, cell_id)]
    for k, v in changes.items():
        if k == "source":
            cell.source = v
        else:
            cell.metadata.nbgrader[k] = v
    return nb


def _delete(base, grade_id: str):
    nb = copy.deepcopy(base)
    del nb.cells[_index(nb, grade_id)]
    return nb


def _duplicate(base, grade_id: str):
    nb = copy.deepcopy(base)
    i = _index(nb, grade_id)
    fake = copy.deepcopy(nb.cells[i])
    fake.source = "pass"
    nb.cells.insert(i + 1, fake)
    return nb


SNOOP = f"""
import os
targets = [{str(SOLUTIONS / A / (A + ".ipynb"))!r}, {str(ROOT / "grader" / "gradebook.db")!r},
           {str(ROOT / "grader" / "nbgrader_config.py")!r}, "OTHER_STUDENT", "/root/.bashrc", "/etc/passwd"]
for t in targets:
    try:
        open(t).read(10)
        print("LEAK", t)
    except OSError:
        print("blocked", t)
for d in [{str(ROOT / "grader")!r}, {str(ROOT)!r}, "/work"]:
    try:
        open(os.path.join(d, "pwned.txt"), "w").write("x")
        print("LEAK write", d)
    except OSError:
        print("blocked write", d)
"""

NETWORK = """
import socket
for host in [("pypi.org", 443), ("1.1.1.1", 53), ("127.0.0.1", 22)]:
    try:
        socket.create_connection(host, timeout=3)
        print("NET-OK", host)
    except OSError as err:
        print("no network", host, err)
"""

FORK_BOMB = """
import os, time
n = 0
try:
    for n in range(2000):
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
except OSError as err:
    print("fork refused after", n, "children")
"""

AST_BLANK = """
import ast
class Blank(ast.NodeTransformer):
    def visit_Module(self, node):
        return ast.Module(body=[], type_ignores=[])
get_ipython().ast_transformers.append(Blank())
"""

PATCH_DURING_TEST = (
    "def corr2d(X, K):\n"
    "    import convlab, torch\n"
    "    convlab.expect_close = lambda *a, **k: None\n"
    "    torch.allclose = lambda *a, **k: True\n"
    "    return torch.zeros(X.shape[0] - K.shape[0] + 1, X.shape[1] - K.shape[1] + 1)\n"
)

FAKE_TORCH = """
import sys, types
fake = types.ModuleType("torch")
fake.__dict__.update(torch.__dict__)
fake.allclose = lambda *a, **k: True
sys.modules["torch"] = fake
torch = fake
"""

KI_LOOP = """
import time
while True:
    try:
        time.sleep(0.5)
    except KeyboardInterrupt:
        pass
"""

# name -> (notebook or raw bytes or "dir", expected status, wrong-answer cell that must score 0)
def catalog(tmp: Path) -> dict:
    solved, untouched, wrong = submissions.solved(A), submissions.untouched(A), _wrong()
    other = str(tmp / "subs" / "correct" / A / f"{A}.ipynb")
    return {
        "correct": (solved, "graded", None),
        "untouched": (untouched, "graded", None),
        "wrong": (wrong, "graded", "corr2d_worked_example"),
        "allclose": (_after(wrong, "corr2d_impl", "torch.allclose = lambda *a, **k: True"), "tampered", "corr2d_worked_example"),
        "assert_close": (_after(wrong, "corr2d_impl", "import torch.testing\ntorch.testing.assert_close = lambda *a, **k: None"), "tampered", "corr2d_worked_example"),
        "expect_close": (_after(wrong, "corr2d_impl", "import convlab.checks\nconvlab.expect_close = lambda *a, **k: None\nconvlab.checks.expect_close = lambda *a, **k: None"), "tampered", "corr2d_worked_example"),
        "assertion_error": (_after(wrong, "corr2d_impl", "import builtins\nclass Quiet(Exception):\n    pass\nbuiltins.AssertionError = Quiet"), "tampered", "corr2d_worked_example"),
        "fake_torch_module": (_after(wrong, "corr2d_impl", FAKE_TORCH), "tampered", "corr2d_worked_example"),
        "custom_exc": (_after(wrong, "corr2d_impl", "get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)"), "tampered", "corr2d_worked_example"),
        "patch_during_test": (_edit(wrong, "corr2d_impl", source=PATCH_DURING_TEST), "tampered", "corr2d_worked_example"),
        "input_transformer": (_after(untouched, "corr2d_impl", "get_ipython().input_transformers_cleanup.append(lambda lines: [])"), "tampered", "corr2d_worked_example"),
        "ast_transformer": (_after(untouched, "corr2d_impl", AST_BLANK), "tampered", "corr2d_worked_example"),
        "deleted_test": (_delete(untouched, "corr2d_output_shape"), "tampered", "corr2d_output_shape"),
        "edited_test": (_edit(untouched, "corr2d_worked_example", source="pass"), "tampered", "corr2d_worked_example"),
        "relabelled_test": (_edit(_edit(untouched, "corr2d_worked_example", source="pass"), "corr2d_worked_example", grade_id="mine"), "tampered", "corr2d_worked_example"),
        "duplicated_id": (_duplicate(untouched, "corr2d_worked_example"), "tampered", "corr2d_worked_example"),
        "solution_as_test": (_edit(untouched, "corr2d_impl", grade=True, solution=False, points=50, locked=True), "tampered", "corr2d_worked_example"),
        "no_cells": (nbformat.v4.new_notebook(), "tampered", "corr2d_worked_example"),
        "keyboard_interrupt_loop": (_after(solved, "corr2d_impl", KI_LOOP), "timeout", "corr2d_worked_example"),
        "infinite_loop": (_after(solved, "corr2d_impl", "while True:\n    pass"), "timeout", "corr2d_worked_example"),
        "os_exit": (_after(solved, "corr2d_impl", "import os\nos._exit(0)"), "crashed", "corr2d_worked_example"),
        "exit": (_after(solved, "corr2d_impl", "exit()"), "crashed", "corr2d_worked_example"),
        "memory_hog": (_after(solved, "corr2d_impl", "hog = torch.ones(1024, 1024, 1024)"), "memory", "corr2d_worked_example"),
        # stopped either by the output limit or by the memory its unsent output takes
        "print_flood": (_after(solved, "corr2d_impl", "for _ in range(2048):\n    print('x' * 2**20)"), ("crashed", "memory"), "corr2d_worked_example"),
        "fork_bomb": (_after(solved, "corr2d_impl", FORK_BOMB), "graded", None),
        "snoop": (_after(solved, "corr2d_impl", SNOOP.replace("OTHER_STUDENT", other)), "graded", None),
        "network": (_after(solved, "corr2d_impl", NETWORK), "graded", None),
        "malformed_json": (b'{"cells": [', "invalid", None),
        "empty_file": (b"", "invalid", None),
        "directory": ("dir", "invalid", None),
        "wrong_file_name": ("wrong-name", "missing", None),
    }


@pytest.fixture(scope="module")
def graded(tmp_path_factory, course_config):
    tmp = tmp_path_factory.mktemp("hostile")
    cases = catalog(tmp)
    for name, (content, _, _) in cases.items():
        folder = tmp / "subs" / name / A
        folder.mkdir(parents=True)
        path = folder / f"{A}.ipynb"
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content == "dir":
            path.mkdir()
        elif content == "wrong-name":
            nbformat.write(submissions.solved(A), folder / "my_homework.ipynb")
        else:
            nbformat.write(content, path)
    (tmp / "subs" / "nothing_handed_in").mkdir()
    opts = autograde.Options(workers=2, timeout=TIMEOUT, memory=1536 * 2**20, out=tmp / "out",
                             config_dir=course_config, progress=False)
    results = autograde.autograde(tmp / "subs", opts)
    by_name = {r["student_id"]: r for r in results}
    return cases, by_name, tmp


def test_every_submission_gets_one_row(graded):
    cases, by_name, tmp = graded
    with open(tmp / "out" / "grades.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["student_id"] for r in rows) == sorted([*cases, "nothing_handed_in"])
    assert {r["status"] for r in rows} <= set(autograde.STATUSES)
    assert by_name["nothing_handed_in"]["status"] == "missing"


NAMES = list(catalog(Path("/nonexistent")))


@pytest.mark.parametrize("name", NAMES)
def test_outcome(graded, name):
    cases, by_name, _ = graded
    _, expected, failing_cell = cases[name]
    r = by_name[name]
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert r["status"] in expected, f"{name}: {r['status']} {r['messages']}"
    if "graded" not in expected:
        assert r["score"] < r["max_score"], f"{name} got full marks with status {expected}"
    if failing_cell:
        cell = next(c for c in r["cells"] if c["grade_id"] == failing_cell)
        assert cell["score"] == 0 and cell["message"], f"{name}: {failing_cell} should fail: {cell}"


def test_correct_and_untouched_scores(graded):
    _, by_name, _ = graded
    assert by_name["correct"]["score"] == by_name["correct"]["max_score"] > 0
    assert by_name["untouched"]["score"] == 0
    assert 0 < by_name["wrong"]["score"] < by_name["wrong"]["max_score"]
    assert by_name["deleted_test"]["score"] == 0


def _outputs(tmp: Path, name: str) -> str:
    nb = nbformat.read(tmp / "out" / "autograded" / name / A / f"{A}.ipynb", as_version=4)
    return json.dumps([c.get("outputs", []) for c in nb.cells])


def test_sandbox_hides_the_course_and_other_students(graded):
    _, _, tmp = graded
    out = _outputs(tmp, "snoop")
    assert "blocked" in out and "LEAK" not in out
    assert not (ROOT / "grader" / "pwned.txt").exists()


def test_no_network(graded):
    out = _outputs(graded[2], "network")
    assert "no network" in out and "NET-OK" not in out


def test_fork_bomb_is_bounded(graded):
    out = _outputs(graded[2], "fork_bomb")
    assert "fork refused after" in out


def test_huge_output_is_capped(graded):
    _, by_name, tmp = graded
    size = os.path.getsize(tmp / "out" / "autograded" / "print_flood" / A / f"{A}.ipynb")
    assert size < 2 * 2**20
