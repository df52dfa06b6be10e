"""grader/shell_client.py: what the grader makes of a sandboxed student kernel's frames (grader/inside/shell.py),
which the student's code can write itself. Output is counted and capped; a flood, a frame over
MAX_MESSAGE or one that is not JSON ends the kernel at once (not at the deadline); forged
outputs and replies of the wrong shape are read as data, never trusted; an exit is a crash."""
from __future__ import annotations

import json
import time

import nbformat
import pytest

from grader import sandbox
from grader.shell_client import (CELL_OUTPUT_CAP, FLOOD_LIMIT, MAX_DEPTH, MAX_MESSAGE, TRUNCATED, KernelDied, OutputBudget,
                           Shell)

# the student kernel's socket to the grader, as a student's cell can find it (its only socket)
SOCKET = ("import json, os, socket, stat, struct\n"
          "fd = [int(n) for n in os.listdir('/proc/self/fd') if n.isdigit() and int(n) > 2\n"
          "      and os.path.exists(f'/proc/self/fd/{n}') and stat.S_ISSOCK(os.stat(f'/proc/self/fd/{n}').st_mode)][0]\n"
          "sock = socket.socket(fileno=os.dup(fd))\n"
          "def frame(data):\n    sock.sendall(struct.pack('>I', len(data)) + data)\n")


@pytest.fixture
def kernel(tmp_path):
    k = Shell.start(tmp_path, role="student", sandbox=True, limits=sandbox.Limits())
    k.ready()
    yield k
    k.stop()


def _death(kernel, code: str, seconds: float = 60) -> tuple[KernelDied, float]:
    t0 = time.monotonic()
    with pytest.raises(KernelDied) as died:
        kernel.run(code, deadline=t0 + seconds)
    return died.value, time.monotonic() - t0


def test_a_print_larger_than_a_frame_is_received_and_capped(kernel):
    reply = kernel.run(f"print('x' * {MAX_MESSAGE + 2**20})", deadline=time.monotonic() + 60)
    assert reply.status == "ok" and kernel.process.alive()
    assert reply.outputs[0]["text"].endswith(TRUNCATED)
    assert len(reply.outputs[0]["text"]) == CELL_OUTPUT_CAP + len(TRUNCATED)


def test_a_print_flood_is_stopped_not_waited_for(kernel):
    died, took = _death(kernel, f"while True:\n    print('x' * {2**20})")
    assert died.reason == "flood", died
    assert f"{FLOOD_LIMIT // 2**20} MB" in died.detail
    assert took < 30, f"the flood was seen only after {took:.0f} s"
    assert kernel.process.killed == "flood" and not kernel.process.alive()


def test_a_frame_over_the_limit_is_a_flood(kernel):
    died, _ = _death(kernel, SOCKET + f"frame(b'x' * {MAX_MESSAGE + 1})\nimport time\ntime.sleep(60)")
    assert died.reason == "flood" and "a message over" in died.detail, died
    assert not kernel.process.alive()


def test_a_frame_that_is_not_json_is_a_crash(kernel):
    died, _ = _death(kernel, SOCKET + "frame(b'[1, 2')\nimport time\ntime.sleep(60)")
    assert died.reason == "crashed" and "not a JSON object" in died.detail, died
    assert not kernel.process.alive()


def test_forged_outputs_of_the_wrong_shape_are_dropped(kernel):
    forged = [{"msg_type": "stream", "content": {"name": 5, "text": "forged"}},
              {"msg_type": "display_data", "content": {"data": "forged"}},
              {"msg_type": "error", "content": {"ename": "E", "evalue": "v", "traceback": "not a list"}},
              {"msg_type": "stream", "content": "forged"}]
    code = SOCKET + "".join(f"frame(json.dumps({f!r}).encode())\n" for f in forged) + "print('real')"
    reply = kernel.run(code, deadline=time.monotonic() + 30)
    assert reply.status == "ok"
    assert [(o.output_type, o.get("text")) for o in reply.outputs] == [("stream", "real\n")]


def test_a_forged_reply_is_read_as_data(kernel):
    forged = {"op": "reply", "status": 3, "execution_count": "9", "ename": None}
    reply = kernel.run(SOCKET + f"frame(json.dumps({forged!r}).encode())\nimport time\ntime.sleep(0.5)",
                       deadline=time.monotonic() + 30)
    assert (reply.status, reply.execution_count, reply.ename) == ("error", None, "")
    assert kernel.process.alive()


def test_a_kernel_that_exits_is_a_crash_not_a_flood(kernel):
    died, _ = _death(kernel, "import os; os._exit(3)")
    assert died.reason == "crashed", died
    assert "code" in died.detail


def test_a_kernel_that_stops_reading_cannot_block_the_grader(kernel):
    """Check that a student kernel that forges its reply, then neither reads nor answers, cannot
    hang the grader on a request larger than the socket's buffer: it is stopped at the call's
    deadline (a frame half sent leaves nothing to talk on)."""
    reply = kernel.run(SOCKET + "frame(json.dumps({'op': 'reply', 'status': 'ok'}).encode())\n"
                       "import time\ntime.sleep(120)", deadline=time.monotonic() + 30)
    assert reply.status == "ok"                       # the forged reply
    t0 = time.monotonic()
    with pytest.raises(KernelDied) as died:
        kernel.call("x" * 4_000_000, deadline=t0 + 3, budget=OutputBudget(), kill=False)
    assert died.value.reason == "call_timeout" and time.monotonic() - t0 < 10, died.value
    assert not kernel.process.alive()


def test_a_frame_nested_too_deeply_is_refused_as_a_crash(kernel, tmp_path):
    """Check that a frame nested 100,000 deep (past json's own recursion limit) or 100 deep (past
    the grader's MAX_DEPTH) ends the kernel as `crashed`, saying what was refused, instead of
    raising RecursionError in the grader."""
    died, took = _death(kernel, SOCKET + "frame(b'[' * 100000 + b']' * 100000)\nimport time\ntime.sleep(60)")
    assert died.reason == "crashed" and f"nested more than {MAX_DEPTH} deep" in died.detail, died
    assert took < 30 and not kernel.process.alive()
    other = Shell.start(tmp_path, role="student", sandbox=True, limits=sandbox.Limits())
    try:
        other.ready()
        deep = "{'msg_type': 'stream', 'content': {'name': 'stdout', 'text': 'x', 'x': " + "[" * 100 + "]" * 100 + "}}"
        died, _ = _death(other, SOCKET + f"frame(json.dumps({deep}).encode())\nimport time\ntime.sleep(60)")
        assert died.reason == "crashed" and "nested more than" in died.detail, died
    finally:
        other.stop()


AGENT = ("import sys, types\n"
         "agent = types.ModuleType('_convlab_agent')\n"
         "agent.serve = lambda text: '\\ud800' + text\n"
         "sys.modules['_convlab_agent'] = agent\n")


def test_lone_surrogates_are_repaired_wherever_the_kernel_sends_them(kernel):
    """Check that lone surrogates (which UTF-8 cannot encode: the graded notebook could not be
    written) in printed text, an error's value and traceback, a display's text/plain and
    mime type, a reply and a call's answer reach the grader as U+FFFD, and the notebook holding
    those outputs can be written."""
    code = ("print('a\\ud800b')\n"
            "display({'text/plain': 'c\\udfff', 'text/x-\\udc00': 'd'}, raw=True)\n"
            "raise ValueError('e\\udc80f')\n")
    reply = kernel.run(code, deadline=time.monotonic() + 30)
    texts = json.dumps([dict(o) for o in reply.outputs], ensure_ascii=False)
    assert "\ufffd" in texts and not any(0xD800 <= ord(c) <= 0xDFFF for c in texts)
    stream, display, error = reply.outputs
    assert stream.text == "a\ufffdb\n" and display.data["text/plain"] == "c\ufffd"
    assert (error.ename, error.evalue, reply.evalue) == ("ValueError", "e\ufffdf", "e\ufffdf")
    assert any("\ufffd" in line for line in error.traceback)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=reply.outputs)])
    nbformat.writes(nb).encode("utf-8")
    assert kernel.run(AGENT, deadline=time.monotonic() + 30).status == "ok"
    answer = kernel.call("call", deadline=time.monotonic() + 30, budget=OutputBudget())
    assert answer == "\ufffdcall"


def test_outputs_and_replies_nbformat_would_reject_are_dropped_with_a_note(kernel):
    """Check that a forged result with a negative execution count (nbformat's validator raised
    inside the grader) becomes a note, and a reply's negative count is read as none."""
    forged = [{"msg_type": "execute_result", "content": {"data": {"text/plain": "x"}, "metadata": {},
                                                          "execution_count": -5}},
              {"op": "reply", "status": "ok", "execution_count": -3}]
    code = SOCKET + "".join(f"frame(json.dumps({f!r}).encode())\n" for f in forged) + "import time\ntime.sleep(0.5)"
    reply = kernel.run(code, deadline=time.monotonic() + 30)
    assert reply.execution_count is None and kernel.process.alive()
    [note] = reply.outputs
    assert note.output_type == "stream" and note.text.startswith("[execute_result output not kept: not a valid"), note
