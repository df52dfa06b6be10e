"""grader/kernel.py: how a sandboxed kernel's end is named. A message over MAX_MESSAGE drops the
connection (ZeroMQ's MAXMSGSIZE), so it is never received or counted: the grader must see the
drop and call it a flood, not wait for the deadline; a kernel that exits is a crash."""
from __future__ import annotations

import time

import pytest

from grader import sandbox
from grader.kernel import CELL_OUTPUT_CAP, MAX_MESSAGE, TRUNCATED, Kernel, KernelDied


@pytest.fixture
def kernel(tmp_path):
    k = Kernel.start(tmp_path, sandbox=True, limits=sandbox.Limits())
    k.ready()
    yield k
    k.stop()


def _death(kernel, code: str, seconds: float = 60) -> tuple[KernelDied, float]:
    t0 = time.monotonic()
    with pytest.raises(KernelDied) as died:
        kernel.run(code, deadline=t0 + seconds)
    return died.value, time.monotonic() - t0


def test_one_oversized_message_is_a_flood_not_a_timeout(kernel):
    died, took = _death(kernel, f"print('x' * {MAX_MESSAGE + 2**20})")
    assert died.reason == "flood", died
    assert "dropped" in died.detail
    assert took < 30, f"the flood was seen only after {took:.0f} s"
    assert kernel.process.killed == "flood" and not kernel.process.alive()


def test_a_kernel_that_exits_is_a_crash_not_a_flood(kernel):
    died, _ = _death(kernel, "import os; os._exit(3)")
    assert died.reason == "crashed", died
    assert "code" in died.detail


def test_a_large_message_under_the_limit_is_received_and_capped(kernel):
    reply = kernel.run(f"print('x' * {MAX_MESSAGE // 2})", deadline=time.monotonic() + 60)
    assert reply.status == "ok" and kernel.process.alive()
    assert reply.outputs[0]["text"].endswith(TRUNCATED)
    assert len(reply.outputs[0]["text"]) == CELL_OUTPUT_CAP + len(TRUNCATED)
