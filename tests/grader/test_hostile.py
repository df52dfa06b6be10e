"""A catalog of hostile and broken submissions, all graded by ONE `autograde` run (module fixture),
each with the outcome it must get. Built from lesson 1 (solved / untouched / wrong corr2d).

The attacks below get full or undeserved marks from plain `nbgrader autograde`; here they must
not. Those that patch the course's libraries or IPython where the scan can see it are flagged
(`tampered`); those written against this grader (grader/grading.py: verdicts in the examiner,
student code reached through data proxies) must gain nothing: they score at most what the honest
wrong answer scores (`NO_GAIN`). Submissions that are not plain files (a link to the solution
notebook or to a file only root may read, a linked folder, a FIFO) are `invalid` and read by
no one (`REFUSED`)."""
from __future__ import annotations

import copy
import csv
import functools
import json
import os
from pathlib import Path

import nbformat
import pytest

from grader import autograde, samples, statuses
from grader.course import ROOT, SOLUTIONS

A = "01_cross_correlation"
TIMEOUT = 20.0
CALL_TIMEOUT = 2.0
WRONG_CORR2D = (
    "def corr2d(X, K):\n"
    "    return torch.zeros(X.shape[0] - K.shape[0] + 1, X.shape[1] - K.shape[1] + 1)\n"
)


def _cell(source: str):
    return nbformat.v4.new_code_cell(source)


def _index(nb, grade_id: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _wrong():
    nb = samples.solved(A)
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

# Attack class 1: look for the grader's secret in the interpreter (there is none: no grader code
# runs here), then answer the grader's calls ourselves, with replies dressed as the grader's.
STEAL_AND_ANSWER = """
import gc, json, sys
secrets = [m for m in sys.modules if "guard" in m] + [o for o in gc.get_objects()
           if isinstance(o, dict) and "sig" in o and "changed" in o]
print("found", len(secrets), "secrets")
agent = sys.modules["_con" + "vlab_agent"]
def serve(text):
    request = json.loads(text)
    return json.dumps({"from": "grader", "message": "passed", "verdict": "pass", "id": request.get("id"),
                       "ok": True, "value": {"t": "bool", "v": True}})
agent.serve = serve
"""

# Attack class 2: a tensor subclass whose __torch_function__ says "close" and "equal" to everyone.
LYING_TENSOR = (
    "class Liar(torch.Tensor):\n"
    "    @classmethod\n"
    "    def __torch_function__(cls, func, types, args=(), kwargs=None):\n"
    "        if getattr(func, '__name__', '') in ('allclose', 'equal', 'is_floating_point'):\n"
    "            return True\n"
    "        return super().__torch_function__(func, types, args, kwargs or {})\n\n"
    "def corr2d(X, K):\n"
    "    return torch.zeros(X.shape[0] - K.shape[0] + 1, X.shape[1] - K.shape[1] + 1).as_subclass(Liar)\n"
)

# Attack class 3: a thread that keeps the checks patched (so they are patched while a test runs).
THREAD_PATCH = """
import sys, threading, time
def meddle():
    while True:
        for name in ("con" + "vlab", "con" + "vlab.checks"):
            setattr(sys.modules[name], "expect_" + "close", lambda *a, **k: None)
        setattr(sys.modules["tor" + "ch"], "all" + "close", lambda *a, **k: True)
        time.sleep(0.001)
threading.Thread(target=meddle, daemon=True).start()
"""

# Objects whose ==, bool and __array__ lie, and whose shape equals every shape.
LYING_EQ = (
    "class Same(tuple):\n"
    "    def __eq__(self, other):\n"
    "        return True\n\n"
    "class Everything:\n"
    "    shape = Same((2, 2))\n"
    "    def __eq__(self, other):\n"
    "        return True\n"
    "    def __bool__(self):\n"
    "        return True\n"
    "    def __array__(self, *args, **kwargs):\n"
    "        import numpy\n"
    "        return numpy.zeros((2, 2))\n\n"
    "def corr2d(X, K):\n"
    "    return Everything()\n"
)
HUGE_RESULT = "def corr2d(X, K):\n    return torch.zeros(1024, 2048)\n"
DEEP_RESULT = "def corr2d(X, K):\n    out = []\n    for _ in range(100000):\n        out = [out]\n    return out\n"
# A module whose parameters take forever to list when the grader's agent encodes it (and only
# then: the notebook's own cells list them too): encoding the Conv2D(...) result never ends.
SLOW_TO_ENCODE = """
    def named_parameters(self, *args, **kwargs):
        import sys
        while sys._getframe(1).f_code.co_name == "ref":
            pass
        return super().named_parameters(*args, **kwargs)
"""
# Right on the notebook's own example (a 1×2 kernel), hangs on larger ones, swallowing the grader's
# interrupt. In Conv2D's constructor, which no by-hand rule covers (the by-hand check refuses a
# corr2d or forward it cannot follow before any call is made): conv2d_parameters makes the call.
HANG_IN_CALL = """
_honest_init = Conv2D.__init__

def _hanging_init(self, kernel_size):
    import time
    while kernel_size[0] > 1:
        try:
            time.sleep(0.05)
        except KeyboardInterrupt:
            pass
    _honest_init(self, kernel_size)

Conv2D.__init__ = _hanging_init
"""
# The student kernel answers each call with the answer to the call before it.
OTHER_CALL = """
import sys
agent = sys.modules["_con" + "vlab_agent"]
honest, previous = agent.serve, []
def serve(text):
    answer = honest(text)
    previous.append(answer)
    return previous[-2] if len(previous) > 1 else answer
agent.serve = serve
"""
# The examiner's calls come over the student kernel's socket to the grader (grader/inside/shell.py),
# which the student's code can reach from inside a call: a forged answer written before the real
# one puts every later answer one call late (each then carries another call's id). In Conv2D's
# constructor, as HANG_IN_CALL, so that a call is made (the by-hand cells refuse .f_locals unrun) ...
FORGED_FRAME = """
_honest_init = Conv2D.__init__

def _forging_init(self, kernel_size):
    import json, struct, sys
    f = sys._getframe(1)
    while f is not None and "channel" not in f.f_locals:
        f = f.f_back
    junk = json.dumps({"op": "answer", "text": json.dumps({"id": "forged", "ok": True, "value": {"t": "none"}})}).encode()
    if f is not None:                     # (in a call from the examiner, not the notebook's own)
        f.f_locals["channel"].sock.sendall(struct.pack(">I", len(junk)) + junk)
    _honest_init(self, kernel_size)

Conv2D.__init__ = _forging_init
"""
# ... and a frame header announcing 2 GB is refused before anything is read.
HUGE_FRAME = FORGED_FRAME.replace("struct.pack(\">I\", len(junk)) + junk", "struct.pack(\">I\", 2**31)")
# A reply forged on the kernel's socket (found among its open files), then silence: the grader
# goes on to the tests, whose calls the kernel neither reads nor answers (nor can SIGINT stop it:
# outside a call it is blocked). Each wait has its deadline: the kernel is stopped, never the grader.
STOPS_READING = """
import json, os, socket, stat, struct, time
fd = [int(n) for n in os.listdir("/proc/self/fd") if n.isdigit() and int(n) > 2
      and os.path.exists(f"/proc/self/fd/{n}") and stat.S_ISSOCK(os.stat(f"/proc/self/fd/{n}").st_mode)][0]
reply = json.dumps({"op": "reply", "status": "ok", "execution_count": 1}).encode()
socket.socket(fileno=os.dup(fd)).sendall(struct.pack(">I", len(reply)) + reply)
time.sleep(300)
"""
# Run last: look everywhere in the student's process for the hidden tests' source (the markers
# are built at run time and kept out of the globals, so the search cannot find itself; unfreeze:
# the fork server's zygote froze the objects every kernel inherits, hiding them from get_objects).
LOOK_FOR_HIDDEN = """
def _look():
    import gc, types
    gc.unfreeze()
    markers = [m[::-1] for m in ("STSET NEDDIH NIGEB", ")4202(dees_launam")]
    texts = list(globals().get("In", [])) + [str(v) for v in list(globals().values())]
    functions = [f for f in gc.get_objects() if isinstance(f, types.FunctionType)]
    texts += [c for f in functions for c in f.__code__.co_consts if isinstance(c, str)]
    seen = any(m in t for t in texts for m in markers)
    print("HIDDEN-SEEN" if seen else "hidden tests not here", len(functions) > 1000)
_look()
"""
# Correct numbers from PyTorch's convolution where the exercise is "by hand".
BY_HAND_BYPASS = "def corr2d(X, K):\n    return F.conv2d(X[None, None].float(), K[None, None].float())[0, 0]\n"
# Zeros for any input, after zeroing the input itself: a test that computed its reference from X
# after the call would compare zeros with zeros (the tests pass copies; see also test_pipeline.py).
ZEROES_ITS_INPUT = ("def corr2d(X, K):\n    X.zero_()\n"
                    "    return torch.zeros(X.shape[0] - K.shape[0] + 1, X.shape[1] - K.shape[1] + 1)\n")

# What a student's kernel sends that the grader could not write or read (issue 23): a lone
# surrogate (UTF-8 cannot encode it: the graded notebook's write failed after the gradebook's
# commit), a display whose text/plain is a number (nbformat's validator raised), and a frame nested
# 100,000 deep on the kernel's socket (RecursionError): each gave `error`, graded again forever.
LONE_SURROGATE = 'print("\\ud800")'
NUMBER_DISPLAY = 'display({"text/plain": 0}, raw=True)'
DEEP_FRAME = """
import os, socket, stat, struct
fd = [int(n) for n in os.listdir("/proc/self/fd") if n.isdigit() and int(n) > 2
      and os.path.exists(f"/proc/self/fd/{n}") and stat.S_ISSOCK(os.stat(f"/proc/self/fd/{n}").st_mode)][0]
deep = b"[" * 100000 + b"]" * 100000
socket.socket(fileno=os.dup(fd)).sendall(struct.pack(">I", len(deep)) + deep)
"""
# ... and a notebook whose own JSON holds lone surrogates (escaped) in an answer and a cell's metadata.
SURROGATE_ANSWER = "# notes \ud800\n"


def _surrogates_in_notebook(base) -> bytes:
    nb = _edit(base, "corr2d_impl", source=SURROGATE_ANSWER + base.cells[_index(base, "corr2d_impl")].source)
    nb.cells[_index(nb, "corr2d_impl")].metadata["tags"] = ["\udc80"]
    return json.dumps(nb).encode()          # (ascii: the surrogates escaped, as a JSON writer may)


def _in_last_answer(base, source: str):
    """`base` whose last answer (conv2d_impl) ends with `source`: the tests after it still run."""
    nb = copy.deepcopy(base)
    cell = nb.cells[_index(nb, "conv2d_impl")]
    cell.source = cell.source.rstrip() + "\n\n" + source.strip() + "\n"
    return nb


# Submissions that are not plain files: links to the course's solution notebook or to a file only
# root may read (the grader may run as root), a FIFO. Each builder makes the student's folder.
SECRET = "SECRET-ONLY-ROOT-MAY-READ-0f3a"
PRINTS_ITS_FILES = ("for name in ('notes.txt', 'shadow.txt'):\n"
                    "    print(name, open(name).read()[:3000])\n")


def _plain_files_only(tmp: Path, name: str):
    """The builder of the student folder of case `name` (each makes links, a FIFO, ...)."""
    solution = SOLUTIONS / A / f"{A}.ipynb"
    student = tmp / "subs" / name
    elsewhere = tmp / "elsewhere" / name
    if name == "symlinked_student_folder":
        (elsewhere / A).mkdir(parents=True)
        nbformat.write(samples.solved(A), elsewhere / A / f"{A}.ipynb")
        student.symlink_to(elsewhere)
        return
    (student / A).mkdir(parents=True)
    if name == "symlinked_notebook":
        (student / A / f"{A}.ipynb").symlink_to(solution)
    elif name == "symlinked_assignment_folder":
        elsewhere.mkdir(parents=True)
        nbformat.write(samples.solved(A), elsewhere / f"{A}.ipynb")
        (student / A).rmdir()
        (student / A).symlink_to(elsewhere)
    elif name == "symlinked_files":
        nbformat.write(_at_end(samples.solved(A), PRINTS_ITS_FILES), student / A / f"{A}.ipynb")
        (student / A / "notes.txt").symlink_to(solution)
        secret = tmp / "root-only" / "shadow"
        secret.parent.mkdir(mode=0o700)
        secret.write_text(SECRET)
        secret.chmod(0o600)
        (student / A / "shadow.txt").symlink_to(secret)
    elif name == "fifo_beside":
        nbformat.write(samples.solved(A), student / A / f"{A}.ipynb")
        os.mkfifo(student / A / "pipe")
    elif name == "fifo_notebook":
        os.mkfifo(student / A / f"{A}.ipynb")
    elif name == "hard_linked_secret":
        # another name of a file only root may read (where the system lets anyone link to any
        # file: fs.protected_hardlinks=0): the grader, running as root, would read it for them
        nbformat.write(_at_end(samples.solved(A), PRINTS_ITS_FILES), student / A / f"{A}.ipynb")
        secret = tmp / "root-only-hard" / "shadow"
        secret.parent.mkdir(mode=0o700)
        secret.write_text(SECRET)
        secret.chmod(0o600)
        os.link(secret, student / A / "shadow.txt")


PLAIN_ONLY = "hand in plain files only; nothing of this submission was read"
# case -> the message its `invalid` row must start with
REFUSED = {
    "symlinked_notebook": f"{A}.ipynb is a symbolic link",
    "symlinked_files": "notes.txt is a symbolic link",
    "symlinked_assignment_folder": f"{A} (the assignment folder) is a symbolic link",
    "symlinked_student_folder": "the student folder symlinked_student_folder is a symbolic link",
    "fifo_beside": "pipe is a FIFO (named pipe)",
    "fifo_notebook": f"{A}.ipynb is a FIFO (named pipe)",
    "hard_linked_secret": "shadow.txt is a hard link (a file with another name elsewhere)",
}

# Active content in a student's outputs, which formgrader would render in the instructor's
# browser: HTML with an event handler, JavaScript, SVG with a script, Markdown with HTML, a
# widget's view with HTML beside it, an image whose width smuggles an attribute; and a PNG.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
ACTIVE_CONTENT = f"""
import base64
from IPython.display import HTML, SVG, Image, Javascript, Markdown, display
display(HTML('<img src=x onerror="document.title=1">'))
display(Javascript('document.title=2'))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg"><script>document.title=3</script></svg>'))
display(Markdown('<img src=x onerror="document.title=4">'))
display({{"application/vnd.jupyter.widget-view+json": {{"model_id": "m", "version_major": 2, "version_minor": 0}},
          "text/html": "<script>document.title=5</script>"}}, raw=True)
display({{"image/png": "{PNG}", "text/plain": "a picture"}}, raw=True,
        metadata={{"image/png": {{"width": "1 onerror=document.title=6", "height": 1}}}})
display(Image(data=base64.b64decode("{PNG}")))
"""


# name -> (notebook or raw bytes or "dir" or a builder of the student folder, expected status,
# wrong-answer cell that must score 0)
def _at_end(base, source: str):
    nb = copy.deepcopy(base)
    nb.cells.append(_cell(source))
    return nb


def _slow_conv2d(base):
    nb = copy.deepcopy(base)
    cell = nb.cells[_index(nb, "conv2d_impl")]
    cell.source = cell.source.rstrip() + "\n" + SLOW_TO_ENCODE
    return nb


NO_GAIN = ("stops_reading", "zeroes_its_input", "steal_and_answer", "lying_tensor", "thread_patch", "lying_eq", "huge_result", "deep_result",
           "forged_frame", "huge_frame")


# The cases whose outcome depends on the sandbox (uids, namespaces, limits, the two kernels'
# separation) rather than on the grading logic. tests/grader/test_unprivileged.py re-runs this file
# as another user with CONVLAB_HOSTILE_CASES=sandbox: only these cases, and the tests about them.
SANDBOX_CASES = ("correct", "untouched", "wrong", "deleted_test", "steal_and_answer", "hang_in_call",
                 "look_for_hidden", "keyboard_interrupt_loop", "infinite_loop", "os_exit", "memory_hog",
                 "print_flood", "fork_bomb", "snoop", "network", "malformed_json")
NEEDS_ALL_CASES = ("test_slow_call_fails_only_its_tests", "test_links_and_special_files_are_refused_unread",
                   "test_no_secret_reaches_any_output", "test_no_active_content_reaches_the_graded_notebook",
                   "test_what_a_kernel_sends_is_never_the_graders_error",
                   "test_flagged_submissions_need_a_manual_grade_in_formgrader_with_the_reason")


def catalog(tmp: Path) -> dict:
    cases = _catalog(tmp)
    if os.environ.get("CONVLAB_HOSTILE_CASES") == "sandbox":
        return {name: case for name, case in cases.items() if name in SANDBOX_CASES}
    return cases


def _catalog(tmp: Path) -> dict:
    solved, untouched, wrong = samples.solved(A), samples.untouched(A), _wrong()
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
        "steal_and_answer": (_after(wrong, "corr2d_impl", STEAL_AND_ANSWER), "graded", "corr2d_worked_example"),
        "lying_tensor": (_edit(wrong, "corr2d_impl", source=LYING_TENSOR), "graded", "corr2d_worked_example"),
        "zeroes_its_input": (_edit(wrong, "corr2d_impl", source=ZEROES_ITS_INPUT), "graded", "corr2d_worked_example"),
        "thread_patch": (_after(wrong, "corr2d_impl", THREAD_PATCH), "graded", "corr2d_worked_example"),
        "lying_eq": (_edit(wrong, "corr2d_impl", source=LYING_EQ), "graded", "corr2d_output_shape"),
        "huge_result": (_edit(wrong, "corr2d_impl", source=HUGE_RESULT), "graded", "corr2d_worked_example"),
        "deep_result": (_edit(wrong, "corr2d_impl", source=DEEP_RESULT), "graded", "corr2d_worked_example"),
        "slow_to_encode": (_slow_conv2d(solved), "graded", "conv2d_parameters"),
        "hang_in_call": (_after(solved, "conv2d_impl", HANG_IN_CALL), "timeout", "conv2d_parameters"),
        "answers_other_call": (_after(solved, "corr2d_impl", OTHER_CALL), "graded", "corr2d_worked_example"),
        "forged_frame": (_after(solved, "conv2d_impl", FORGED_FRAME), "graded", "conv2d_parameters"),
        "huge_frame": (_after(solved, "conv2d_impl", HUGE_FRAME), "crashed", "conv2d_parameters"),
        "stops_reading": (_after(solved, "corr2d_impl", STOPS_READING), "timeout", "corr2d_worked_example"),
        "by_hand_bypass": (_edit(solved, "corr2d_impl", source=BY_HAND_BYPASS), "graded", "corr2d_by_hand"),
        "look_for_hidden": (_at_end(solved, LOOK_FOR_HIDDEN), "graded", None),
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
        **{name: (functools.partial(_plain_files_only, tmp, name), "invalid", None) for name in REFUSED},
        "active_content": (_at_end(solved, ACTIVE_CONTENT), "graded", None),
        "lone_surrogate": (_in_last_answer(solved, LONE_SURROGATE), "graded", None),
        "number_display": (_in_last_answer(solved, NUMBER_DISPLAY), "graded", None),
        "deep_frame": (_in_last_answer(solved, DEEP_FRAME), "crashed", "conv2d_parameters"),
        "surrogates_in_notebook": (_surrogates_in_notebook(solved), "graded", None),
        # by hand, dodged: a top-level alias of F.conv2d called from another thread (the mode that
        # sees calls is per thread; the old check read only corr2d's own def) ...
        "by_hand_thread_alias": (_edit(solved, "corr2d_impl", source=(
            "import threading\n_c = F.conv2d\n\n"
            "def corr2d(X, K):\n    out = []\n"
            "    worker = threading.Thread(target=lambda: out.append(_c(X[None, None].float(), K[None, None].float())[0, 0]))\n"
            "    worker.start()\n    worker.join()\n    return out[0]\n")), "graded", "corr2d_by_hand"),
        # ... and a class named like an honest one (the old check read the source of its __name__),
        # whose forward switches the mode off
        "by_hand_renamed_class": (_edit(solved, "conv2d_impl", source=(
            "class Honest(nn.Module):\n    def __init__(self, kernel_size):\n        super().__init__()\n"
            "        self.weight = nn.Parameter(torch.rand(kernel_size))\n        self.bias = nn.Parameter(torch.zeros(1))\n\n"
            "    def forward(self, X):\n        return corr2d(X, self.weight) + self.bias\n\n\n"
            "class Conv2D(Honest):\n    def forward(self, X):\n        with torch._C.DisableTorchFunction():\n"
            "            return F.conv2d(X[None, None], self.weight[None, None])[0, 0] + self.bias\n\n\n"
            "Conv2D.__name__ = 'Honest'\n")), "graded", "conv2d_by_hand"),
    }


@pytest.fixture(scope="module")
def graded(tmp_path_factory, course_config):
    tmp = tmp_path_factory.mktemp("hostile")
    cases = catalog(tmp)
    for name, (content, _, _) in cases.items():
        if callable(content):
            content()
            continue
        folder = tmp / "subs" / name / A
        folder.mkdir(parents=True)
        path = folder / f"{A}.ipynb"
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content == "dir":
            path.mkdir()
        elif content == "wrong-name":
            nbformat.write(samples.solved(A), folder / "my_homework.ipynb")
        else:
            nbformat.write(content, path)
    (tmp / "subs" / "nothing_handed_in").mkdir()
    opts = autograde.Options(workers=2, timeout=TIMEOUT, memory=1536 * 2**20, out=tmp / "out",
                             config_dir=course_config, progress=False, call_timeout=CALL_TIMEOUT)
    results = autograde.autograde(tmp / "subs", opts)
    by_name = {r["student_id"]: r for r in results}
    return cases, by_name, tmp


def test_every_submission_gets_one_row(graded):
    cases, by_name, tmp = graded
    with open(tmp / "out" / "grades.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["student_id"] for r in rows) == sorted([*cases, "nothing_handed_in"])
    assert {r["status"] for r in rows} <= set(statuses.NAMES)
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


@pytest.mark.parametrize("name", [n for n in NO_GAIN if n in NAMES])
def test_attacks_on_the_examiner_gain_nothing(graded, name):
    _, by_name, _ = graded
    assert by_name[name]["score"] <= by_name["wrong"]["score"], (name, by_name[name]["cells"])


MESSAGES = {
    # the by-hand check follows corr2d into the subclass and refuses what it cannot check (the
    # examiner's own "it is a Liar" refusal: tests/grader/test_examiner.py)
    "lying_tensor": ("corr2d_worked_example", "cannot check: `super().__torch_function__` (in the code for Liar)"),
    "lying_eq": ("corr2d_output_shape", "not Everything"),
    "huge_result": ("corr2d_worked_example", "at most 4 MB"),
    "deep_result": ("corr2d_worked_example", "nested more than"),
    "slow_to_encode": ("conv2d_parameters", f"did not finish within {CALL_TIMEOUT:g} s"),
    "hang_in_call": ("conv2d_parameters", "could not be interrupted"),
    "answers_other_call": ("conv2d_parameters", "answered another request"),
    "forged_frame": ("conv2d_parameters", "answered another request"),
    "steal_and_answer": ("corr2d_worked_example", "could not reach the student's names"),
    "by_hand_bypass": ("corr2d_by_hand", "uses conv2d"),
    "by_hand_thread_alias": ("corr2d_by_hand", "starts threads or processes, which the grader cannot check"),
    "by_hand_renamed_class": ("conv2d_by_hand", "your code for Conv2D uses torch._C"),
}


@pytest.mark.parametrize("name", [n for n in MESSAGES if n in NAMES])
def test_failures_say_what_happened(graded, name):
    """A failed test names what the student's code did (the examiner's message, not a crash)."""
    _, by_name, _ = graded
    grade_id, text = MESSAGES[name]
    cell = next(c for c in by_name[name]["cells"] if c["grade_id"] == grade_id)
    assert text in cell["message"], (name, cell)


def test_slow_call_fails_only_its_tests(graded):
    """A call over its time limit is interrupted: the tests that need it fail, the others pass."""
    _, by_name, _ = graded
    cells = {c["grade_id"]: c["passed"] for c in by_name["slow_to_encode"]["cells"]}
    assert cells["corr2d_worked_example"] and cells["corr2d_multi_in_out_matches_pytorch"], cells
    assert not any(cells[g] for g in ("conv2d_parameters", "conv2d_forward", "conv2d_gradients")), cells
    # forbidden work earns nothing for its exercise (and for those built on it), the rest still passes
    bypass = {c["grade_id"]: c["passed"] for c in by_name["by_hand_bypass"]["cells"]}
    assert bypass["conv2d_parameters"] and not any(v for g, v in bypass.items() if g != "conv2d_parameters"), bypass


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


def test_hidden_tests_never_reach_the_student_kernel(graded):
    out = _outputs(graded[2], "look_for_hidden")
    assert "hidden tests not here True" in out, out[-2000:]


def test_huge_output_is_capped(graded):
    _, by_name, tmp = graded
    size = os.path.getsize(tmp / "out" / "autograded" / "print_flood" / A / f"{A}.ipynb")
    assert size < 2 * 2**20


@pytest.mark.parametrize("name", [n for n in REFUSED if n in NAMES])
def test_links_and_special_files_are_refused_unread(graded, course_config, name):
    """Check that a submission that is, or holds, a link or a FIFO is `invalid`, says which entry
    and what it is, scores 0, and reaches neither the gradebook nor autograded/ (the grader did not
    hang on the FIFO: this run finished)."""
    from nbgrader.api import Gradebook
    _, by_name, tmp = graded
    r = by_name[name]
    assert (r["status"], r["score"], r["cells"]) == ("invalid", 0, []), r
    assert r["messages"] == [f"{REFUSED[name]}: {PLAIN_ONLY}"], r["messages"]
    assert not (tmp / "out" / "autograded" / name).exists()
    with Gradebook(f"sqlite:///{course_config}/gradebook.db") as gb:
        assert name not in [s.id for s in gb.students]


def test_no_secret_reaches_any_output(graded):
    """Check that the secret behind a link (a file only root may read) is in no file the run
    wrote: autograded notebooks, result files, grades.csv, cells.csv."""
    _, by_name, tmp = graded
    leaked = [str(f) for f in (tmp / "out").rglob("*") if f.is_file() and SECRET.encode() in f.read_bytes()]
    assert not leaked, leaked


def test_no_active_content_reaches_the_graded_notebook(graded):
    """Check that the displays of a student's cell keep only text and images: no HTML,
    JavaScript, SVG, Markdown or widget data, no event handler, no smuggled image attribute; the
    PNGs are kept, the score is full."""
    _, by_name, tmp = graded
    r = by_name["active_content"]
    assert r["status"] == "graded" and r["score"] == r["max_score"] > 0, r
    nb = nbformat.read(tmp / "out" / "autograded" / "active_content" / A / f"{A}.ipynb", as_version=4)
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    kinds = {k for o in outputs for k in o.get("data", {})}
    assert kinds <= {"text/plain", "image/png", "image/jpeg"}, kinds
    text = json.dumps(outputs)
    assert "onerror" not in text and "<script" not in text and "document.title" not in text, text[-3000:]
    last = nb.cells[-1].outputs
    assert [o.data["image/png"].strip() for o in last if "image/png" in o.data] == [PNG, PNG]
    assert [dict(o.metadata) for o in last if "image/png" in o.data][0] == {"image/png": {"height": 1}}
    note = "[application/vnd.jupyter.widget-view+json, text/html output not kept: graded notebooks keep text and images only]"
    assert [o.data["text/plain"] for o in last] == [
        "<IPython.core.display.HTML object>", "<IPython.core.display.Javascript object>",
        "<IPython.core.display.SVG object>", "<IPython.core.display.Markdown object>", note, "a picture",
        "<IPython.core.display.Image object>"]


def test_what_a_kernel_sends_is_never_the_graders_error(graded):
    """Check that a lone surrogate printed or in the notebook's own JSON, and a display whose
    text/plain is a number, are graded with full marks (the surrogates written as U+FFFD, the
    number's display as a note), and that a frame nested 100,000 deep is the submission's
    `crashed`, saying what was refused, with the tests before it graded: never `error`."""
    _, by_name, tmp = graded
    for name in ("lone_surrogate", "number_display", "surrogates_in_notebook"):
        r = by_name[name]
        assert (r["status"], r["score"]) == ("graded", r["max_score"]), (name, r["messages"])
    last = nbformat.read(tmp / "out" / "autograded" / "lone_surrogate" / A / f"{A}.ipynb", as_version=4)
    assert last.cells[_index(last, "conv2d_impl")].outputs[-1].text == "\ufffd\n"
    answer = nbformat.read(tmp / "out" / "autograded" / "surrogates_in_notebook" / A / f"{A}.ipynb", as_version=4)
    assert answer.cells[_index(answer, "corr2d_impl")].source.startswith("# notes \ufffd\n")
    shown = nbformat.read(tmp / "out" / "autograded" / "number_display" / A / f"{A}.ipynb", as_version=4)
    assert "output not kept" in shown.cells[_index(shown, "conv2d_impl")].outputs[-1].data["text/plain"]
    deep = by_name["deep_frame"]
    assert "the student's kernel sent a message nested more than 64 deep" in deep["messages"], deep["messages"]
    passed = {c["grade_id"] for c in deep["cells"] if c["passed"]}
    assert "corr2d_worked_example" in passed and "conv2d_parameters" not in passed, deep["cells"]


@pytest.mark.parametrize("name, status", [("allclose", "tampered"), ("infinite_loop", "timeout")])
def test_flagged_submissions_need_a_manual_grade_in_formgrader_with_the_reason(graded, course_config, name, status):
    """Check that a flagged submission (tampered, timeout, ...) is listed by formgrader's "needs
    manual grade" (its failed cells, all of them when tampered), with the grader's reason in its
    answers' comments; an honest one (correct, wrong) is not."""
    from nbgrader.api import Gradebook
    _, by_name, _ = graded
    assert by_name[name]["status"] == status
    with Gradebook(f"sqlite:///{course_config}/gradebook.db") as gb:
        nb = gb.find_submission_notebook(A, A, name)
        flagged = {g.name for g in nb.grades if g.needs_manual_grade}
        failed = {g.name for g in nb.grades if g.auto_score is not None and g.auto_score < g.max_score}
        assert gb.find_submission(A, name).needs_manual_grade
        assert flagged == ({g.name for g in nb.grades} if status == "tampered" else failed) and failed, (flagged, failed)
        reasons = [c.auto_comment or "" for c in nb.comments]
        assert reasons and all(f"The grader flagged this submission ({status})" in r for r in reasons), reasons
        assert by_name[name]["messages"][0][:40] in reasons[0]
        for honest in ("correct", "wrong"):
            sub = gb.find_submission_notebook(A, A, honest)
            assert not any(g.needs_manual_grade for g in sub.grades), honest
            assert not any("flagged" in (c.auto_comment or "") for c in sub.comments), honest
