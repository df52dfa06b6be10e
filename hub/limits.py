"""Per-user memory and CPU limits on one machine, without systemd: a cgroup per user.

JupyterHub's LocalProcessSpawner starts each server as its user and enforces no limit (its
`mem_limit` and `cpu_limit` are only advice); one student's kernel could take the machine's memory.
`LimitedSpawner` is LocalProcessSpawner whose `make_preexec_fn` (its documented hook, run as root
in the new process before it becomes the user) first moves the process into the cgroup
`convlab-<user>` beside the hub's own; the server, its kernels and terminals inherit it, so the
limit is on everything the user runs. Past the memory limit the kernel's OOM killer stops a
process of that user only; the hub and everyone else keep running.

Both cgroup versions: v1 (a `memory` and a `cpu` hierarchy, as on this project's CI machines:
tested) and v2 (the unified hierarchy with the memory and cpu controllers: written to the kernel's
documented interface, not run here). Where neither can be written, `LimitedSpawner` refuses to start
a server that has a limit (a clear error in the hub's log and to the user) rather than start it
unlimited.

    CONVLAB_STUDENT_MEMORY=2G  CONVLAB_STUDENT_CPUS=1       (defaults; 0 = no limit)
    CONVLAB_STAFF_MEMORY=0     CONVLAB_STAFF_CPUS=0         (instructors grade: no limit by default)
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner

CGROUP = Path("/sys/fs/cgroup")
PERIOD_US = 100_000


@dataclass(frozen=True)
class Limits:
    memory: int = 0        # bytes; 0: none
    cpus: float = 0.0      # CPUs; 0: none

    def __bool__(self) -> bool:
        return bool(self.memory or self.cpus)


def parse_limits(memory: str, cpus: str) -> Limits:
    """'2G', '1.5' -> Limits; ValueError that says what to write."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*", memory or "0", re.I)
    if not m:
        raise ValueError(f"cannot read the memory limit {memory!r}: write e.g. 2G or 512M (0 for none)")
    factor = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}[m.group(2).upper()]
    try:
        n = float(cpus or 0)
    except ValueError:
        raise ValueError(f"cannot read the CPU limit {cpus!r}: write a number of CPUs, e.g. 1 or 0.5") from None
    return Limits(memory=int(float(m.group(1)) * factor), cpus=n)


def _own(controller: str) -> Path | None:
    """This process's cgroup folder in the v1 hierarchy of `controller`, if writable."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            folder = CGROUP / controller / path.lstrip("/")
            return folder if os.access(folder, os.W_OK) else None
    return None


def _unified() -> Path | None:
    """This process's v2 cgroup folder, if it offers the memory and cpu controllers."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            root = CGROUP if (CGROUP / "cgroup.controllers").exists() else CGROUP / "unified"
            folder = root / line[3:].lstrip("/")
            controllers = (folder / "cgroup.controllers").read_text().split() if (folder / "cgroup.controllers").exists() else []
            if {"memory", "cpu"} <= set(controllers) and os.access(folder, os.W_OK):
                return folder
    return None


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def prepare(user: str, limits: Limits) -> list[Path]:
    """The cgroup(s) `convlab-<user>` with `limits` set (made if missing); `enter` then moves a
    process in. RuntimeError, with what to do, where this machine's cgroups cannot be written."""
    name = f"convlab-{user}"
    memory, cpu = _own("memory"), _own("cpu")
    if memory is not None and (cpu is not None or not limits.cpus):
        used = [memory / name] + ([cpu / name] if limits.cpus else [])
        for folder in used:
            folder.mkdir(exist_ok=True)
        if limits.memory:
            if (memory / name / "memory.memsw.limit_in_bytes").exists():   # memory + swap: lower the
                _write(memory / name / "memory.memsw.limit_in_bytes", "-1")  # pair in the right order
            _write(memory / name / "memory.limit_in_bytes", str(limits.memory))
            if (memory / name / "memory.memsw.limit_in_bytes").exists():   # no way around it via swap
                _write(memory / name / "memory.memsw.limit_in_bytes", str(limits.memory))
        if limits.cpus:
            _write(cpu / name / "cpu.cfs_period_us", str(PERIOD_US))
            _write(cpu / name / "cpu.cfs_quota_us", str(int(limits.cpus * PERIOD_US)))
        return used
    unified = _unified()
    if unified is not None:                       # v2 (not run here: see the module docstring)
        folder = unified / name
        folder.mkdir(exist_ok=True)
        _write(folder / "memory.max", str(limits.memory) if limits.memory else "max")
        _write(folder / "memory.swap.max", "0")
        _write(folder / "cpu.max", f"{int(limits.cpus * PERIOD_US)} {PERIOD_US}" if limits.cpus else f"max {PERIOD_US}")
        return [folder]
    raise RuntimeError("per-user limits need a writable cgroup (v1 memory and cpu hierarchies, or v2 with "
                       "the memory and cpu controllers) and this machine offers none to the hub: give the "
                       "hub one, or set CONVLAB_STUDENT_MEMORY=0 CONVLAB_STUDENT_CPUS=0 to run without limits")


def enter(folders: list[Path], pid: int) -> None:
    """Move `pid` into `folders` (its children follow it)."""
    for folder in folders:
        _write(folder / "cgroup.procs", str(pid))


def release(user: str) -> None:
    """Remove `convlab-<user>` cgroups that no process uses any more (after the server stopped)."""
    name = f"convlab-{user}"
    for base in (_own("memory"), _own("cpu"), _unified()):
        try:
            if base is not None:
                (base / name).rmdir()             # only an empty cgroup can be removed: busy stays
        except OSError:
            pass


class LimitedSpawner(LocalProcessSpawner):
    """LocalProcessSpawner that starts each server inside its user's cgroup (see the module).
    `convlab_cgroups` is set by the hub's pre_spawn_hook (`prepare`); empty: no limit."""

    convlab_cgroups: list = []

    def make_preexec_fn(self, name):
        drop, folders = super().make_preexec_fn(name), list(self.convlab_cgroups)

        def preexec():
            enter(folders, os.getpid())           # as root, before the process becomes the user
            drop()
        return preexec
