"""hub/limits.py without a hub: reading limits, and a real cgroup (as root, where this machine's
cgroups can be written) that holds a process to its memory limit."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hub import limits


def test_limits_are_read_as_written():
    assert limits.parse_limits("2G", "1") == limits.Limits(2 * 2**30, 1.0)
    assert limits.parse_limits("512M", "0.5") == limits.Limits(512 * 2**20, 0.5)
    assert not limits.parse_limits("0", "0")
    with pytest.raises(ValueError, match="write e.g. 2G"):
        limits.parse_limits("two gigs", "1")
    with pytest.raises(ValueError, match="number of CPUs"):
        limits.parse_limits("2G", "all")


ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: makes a cgroup")


def _in_cgroup(folders, body: str) -> subprocess.CompletedProcess:
    """Run the Python `body` in a new process that first enters the cgroup `folders`."""
    code = ("import os; from hub import limits; from pathlib import Path; "
            f"limits.enter([Path(p) for p in {[str(f) for f in folders]!r}], os.getpid())\n" + body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


@ROOT_ONLY
def test_a_process_in_its_users_cgroup_is_stopped_past_the_limit():
    user = f"test{os.getpid()}"
    folders = limits.prepare(user, limits.Limits(memory=200 * 2**20, cpus=0.5))
    try:
        proc = _in_cgroup(folders, "b = b'x' * (600 * 2**20); print('SURVIVED')")
        assert proc.returncode == -9 and "SURVIVED" not in proc.stdout, (proc.returncode, proc.stdout, proc.stderr)
        small = _in_cgroup(folders, "b = b'x' * (20 * 2**20); print('SURVIVED')")
        assert small.returncode == 0 and "SURVIVED" in small.stdout, small.stderr
    finally:
        limits.release(user)
    assert not any(f.exists() for f in folders)


@ROOT_ONLY
def test_the_grader_sizes_its_workers_to_the_cpus_it_may_use():
    """An instructor limited to 1 CPU (on a machine with more) grades with 1 worker by default."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs a machine with 2 CPUs or more to show the cap")
    user = f"cpu{os.getpid()}"
    folders = limits.prepare(user, limits.Limits(cpus=1))
    try:
        proc = _in_cgroup(folders, "from grader.autograde import usable_cpus, Options; print(usable_cpus(), Options().workers)")
        assert proc.stdout.split() == ["1", "1"], proc.stdout + proc.stderr
        free = subprocess.run([sys.executable, "-c", "from grader.autograde import usable_cpus; print(usable_cpus())"],
                              capture_output=True, text=True)
        assert int(free.stdout) == len(os.sched_getaffinity(0))
    finally:
        limits.release(user)


@ROOT_ONLY
def test_a_busy_process_is_held_to_its_cpu_share():
    """Check that a process in a user's cgroup with a CPU limit is throttled by the kernel when it
    wants more (cpu.stat's nr_throttled counts the periods it was stopped in; no timing asserted)."""
    user = f"busy{os.getpid()}"
    folders = limits.prepare(user, limits.Limits(cpus=0.1))
    try:
        proc = _in_cgroup(folders, "import time\nt = time.monotonic()\nwhile time.monotonic() - t < 1.0: pass")
        assert proc.returncode == 0, proc.stderr
        stats = [f / "cpu.stat" for f in folders if (f / "cpu.stat").exists()]
        assert stats, f"no cpu.stat in {folders}"
        counts = dict(line.split() for line in stats[0].read_text().splitlines())
        assert int(counts["nr_throttled"]) > 0, counts
    finally:
        limits.release(user)
