"""Where the kernels come from: a fork server per worker (grader/forkserver.py) or a pool of fresh
sandboxed (or plain) kernels, started while the submissions are prepared."""
from __future__ import annotations

import os
import tempfile
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ..course import source_notebook
from ..forkserver import ForkServerPool
from ..sandbox import Limits
from ..shell_client import KernelDied, Shell
from .options import Options


# What PyTorch imports lazily, the first time some code runs, and the code that does it: the first
# optimizer (torch.optim) and torch.use_deterministic_algorithms import TorchDynamo (~1.5 s of
# CPU). The fork servers import it once when an assignment's source uses such code, instead of
# every kernel of it; the others do without (a student's own torch.optim then pays it).
LAZY_IMPORTS = {"torch._dynamo": ("torch.optim", "use_deterministic_algorithms", "torch.compile")}


def zygote_warm(assignments: list[str]) -> tuple[str, ...]:
    """The LAZY_IMPORTS modules that the source notebooks of `assignments` need."""
    sources = [source_notebook(a).read_text() for a in assignments]
    return tuple(m for m, uses in LAZY_IMPORTS.items() if any(u in s for s in sources for u in uses))


# ---------------------------------------------------------------------------------------------
# kernels

class KernelPool:
    """Kernels started and warmed up ahead of time: `spares` boots in flight at most, and never
    more than the jobs that still need one."""

    def __init__(self, scratch: Path, opts: Options, needed: int, role: str) -> None:
        self.scratch, self.opts, self.role = scratch, opts, role
        self.limits = Limits(memory=opts.memory)
        self.spares = opts.workers
        self.remaining = needed
        self.lock = threading.Lock()
        self.booting: deque[Future] = deque()
        self.boot = ThreadPoolExecutor(max_workers=max(2, opts.workers), thread_name_prefix="boot")
        self._top_up()

    def _start(self) -> Shell:
        k = Shell.start(self.scratch, role=self.role, sandbox=self.opts.sandbox, limits=self.limits)
        k.ready()
        return k

    def _top_up(self) -> None:
        while len(self.booting) < min(self.spares, self.remaining):
            self.booting.append(self.boot.submit(self._start))
            self.remaining -= 1

    def acquire(self) -> Shell:
        with self.lock:
            if not self.booting:
                self.remaining += 1
                self._top_up()
            fut = self.booting.popleft()
            self._top_up()
        try:
            return fut.result()
        except KernelDied:
            return self._start()          # one retry, synchronously

    def close(self) -> None:
        with self.lock:
            self.remaining = 0
            pending = list(self.booting)
            self.booting.clear()
        for fut in pending:
            try:
                fut.result().stop()
            except BaseException:
                pass
        self.boot.shutdown(wait=True)


# The kernels' Unix sockets lie three folders below the scratch folder's parent (forkserver.py,
# sandbox.py: <parent>/convlab-grader-XXXXXXXX/zXXXXXXXX/x<n>.sock), and Linux takes at most 107
# bytes for a socket's path: a temporary folder with a longer path than this (a deep $TMPDIR, e.g.
# pytest's) would leave every kernel unstarted.
_SOCKET_PATH_MAX, _BELOW_PARENT = 107, len("/convlab-grader-XXXXXXXX/zXXXXXXXX/x1000000.sock")


def scratch_parent() -> str:
    """Where the grader's scratch folder goes: the temporary folder ($TMPDIR), unless its path is
    too long for the sockets inside, then /tmp.

    >>> len(scratch_parent()) + _BELOW_PARENT <= _SOCKET_PATH_MAX
    True
    """
    tmp = tempfile.gettempdir()
    return tmp if len(os.fsencode(tmp)) + _BELOW_PARENT <= _SOCKET_PATH_MAX else "/tmp"


def _start_pools(opts: Options, needed: int, warm: tuple[str, ...]) -> tuple[Path, list]:
    """A scratch folder and the two sources of kernels (both IPython shells, grader/inside/shell.py): one
    for student kernels, one for examiners."""
    scratch = Path(tempfile.mkdtemp(prefix="convlab-grader-", dir=scratch_parent()))
    os.chmod(scratch, 0o711)
    if opts.sandbox and opts.fork_server:
        return scratch, [ForkServerPool(scratch, workers=opts.workers, limits=Limits(memory=opts.memory),
                                        warm=warm, role=role) for role in ("student", "examiner")]
    return scratch, [KernelPool(scratch, opts, needed, role) for role in ("student", "examiner")]
