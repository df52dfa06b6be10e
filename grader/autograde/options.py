"""The run's options (`Options`), one student x assignment (`Job`), the errors that stop a run, and the
CPUs and sizes the options are made of."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from ..course import CONFIG, ROOT
from ..limits import CALL_TIMEOUT, MEMORY, NOTEBOOK_TIMEOUT


class AutogradeError(Exception):
    """The run cannot start (a wrong folder or assignment, no sandbox); the message says what to fix."""


class GraderError(Exception):
    """The grader failed on one submission through no fault of the submission (no kernel could be
    started, the fork server did not come up): that submission gets status `error`."""


@dataclass
class Options:
    workers: int = field(default_factory=lambda: usable_cpus())
    timeout: float = NOTEBOOK_TIMEOUT     # (grader/limits.py)
    memory: int = MEMORY
    out: Path = ROOT / "grader"
    sandbox: bool = True
    fork_server: bool = True             # one long-lived sandbox per worker (grader/forkserver.py)
    call_timeout: float = CALL_TIMEOUT   # seconds per call of the student's code from a test
    config_dir: Path = CONFIG.parent
    db_url: str | None = None
    progress: bool = True
    assignments: tuple[str, ...] = ()    # empty: every course assignment found in the submissions


@dataclass
class Job:
    student: str
    assignment: str
    path: Path
    key: str = ""
    status: str | None = None            # set early for invalid / missing
    message: str = ""
    nb: nbformat.NotebookNode | None = None
    findings: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)   # the grader's own work on it (main thread)
    hidden_failed: set = field(default_factory=set)   # grade ids failed in a hidden part (Examination)


# ---------------------------------------------------------------------------------------------
# configuration and the gradebook

def usable_cpus() -> int:
    """The CPUs this process may use: its affinity, capped by its cgroup's CPU quota (cgroup v2
    cpu.max or v1 cpu.cfs_quota_us, e.g. an instructor's limit on the class hub), at least 1."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_quota()
    return max(1, min(n, int(quota)) if quota else n)


def _cgroup_quota() -> float | None:
    """CPUs allowed by this process's cgroup quota (None: no quota, or no cgroup to read)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":                                  # v2: "max 100000" or "50000 100000"
            for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
                f = root / path.lstrip("/") / "cpu.max"
                if f.is_file():
                    quota, period = f.read_text().split()
                    return None if quota == "max" else int(quota) / int(period)
        elif "cpu" in controllers.split(","):                   # v1
            base = Path("/sys/fs/cgroup") / controllers / path.lstrip("/")
            try:
                quota = int((base / "cpu.cfs_quota_us").read_text())
                period = int((base / "cpu.cfs_period_us").read_text())
            except (OSError, ValueError):
                continue
            return None if quota <= 0 else quota / period
    return None


def _config(config_dir: Path):
    from traitlets.config.loader import PyFileConfigLoader
    return PyFileConfigLoader("nbgrader_config.py", path=str(config_dir)).load_config()


def course_config(config_dir: Path):
    """nbgrader's CourseDirectory as configured by config_dir/nbgrader_config.py."""
    from nbgrader.coursedir import CourseDirectory
    return CourseDirectory(config=_config(config_dir))


def parse_size(text: str) -> int:
    """'2G', '512M', '1.5GB', '1000000' -> bytes."""
    t = text.strip().upper().removesuffix("B")
    factor = 1
    for suffix, f in (("K", 2**10), ("M", 2**20), ("G", 2**30), ("T", 2**40)):
        if t.endswith(suffix):
            t, factor = t[:-1], f
            break
    try:
        value = float(t) * factor
    except ValueError:
        raise ValueError(f"cannot read the size {text!r}: use e.g. 512M or 2G") from None
    if value <= 0:
        raise ValueError(f"the size {text!r} must be positive")
    return int(value)
