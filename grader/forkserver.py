"""Fork servers: one long-lived sandbox per worker whose trusted main process (the zygote,
grader/inside/zygote.py) has imported PyTorch, matplotlib, convlab and IPython once, and forks a fresh
kernel for each submission, so the ~3 s of CPU-bound imports are paid once per worker instead of
once per submission.

Same sandbox as the per-kernel path (grader/sandbox.py `bwrap_prefix`: no network, read-only
binds, private /tmp, fresh unprivileged uid when root, no capabilities, --die-with-parent), same
protocol (grader/shell_client.py: frames over a Unix socket in the shared folder, one deadline, output
caps). autograde uses two pools, one forking student kernels and one forking examiners
(grader/grading.py), so the two never share a sandbox.

Between two submissions on the same worker (`ForkServerPool._release`, `ForkServer.reset`), in this order:

1. the grader SIGKILLs the kernel's process tree from outside (as it does today);
2. the zygote SIGKILLs every other process of the sandbox (pid namespace), reaps them, checks none
   is left, removes System V IPC objects, empties the uid's keyrings and /tmp and /dev/shm
   (grader/inside/zygote.py);
3. the grader empties the shared IPC folder (the socket, the submission's files).

If any step fails, times out (`RESET_TIMEOUT`), or the zygote died or does not answer (a student
process can signal it: same uid), the whole sandbox is SIGKILLed and a new one started for the
next submission: a submission never runs in a sandbox that was not verified clean.

Memory: `ForkedKernel.memory()` counts the kernel's process tree (every process of the sandbox
except the zygote and bubblewrap), so the zygote's own memory is not charged to the student; a
forked kernel's RSS includes the imported libraries it shares with the zygote, as a kernel that
imported them itself would.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psutil

from . import inside, sandbox
from .shell_client import KernelDied, Shell
from .sandbox import KERNEL_DIR, PYTHON, Limits, SandboxedKernel, SandboxUnavailable
from .limits import FORK_TIMEOUT, RESET_TIMEOUT, START_TIMEOUT

ZYGOTE_SOURCE = inside.source("zygote")     # grader/inside/zygote.py


class ForkServerDied(RuntimeError):
    """The zygote died, did not answer in time, or could not clean its sandbox."""


def _nspid(pid: int) -> int | None:
    """The pid of host process `pid` in its innermost pid namespace."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None


class ForkServer:
    """One sandbox running one zygote; forks one kernel at a time (not thread-safe: one worker)."""

    def __init__(self, scratch: Path, *, role: str, limits: Limits, warm: tuple[str, ...] = ()) -> None:
        self.limits = limits
        self.workdir = Path(tempfile.mkdtemp(prefix="z", dir=scratch))   # shared IPC folder
        self.scratch = scratch
        self.uid = sandbox._fresh_uid() if os.geteuid() == 0 else None
        if self.uid is not None:
            os.chown(self.workdir, self.uid, self.uid)
        os.chmod(self.workdir, 0o700)
        self.forks = 0
        self.kernel: ForkedKernel | None = None
        log = (open(scratch / f"{self.workdir.name}.log", "wb") if os.environ.get("CONVLAB_GRADER_DEBUG")
               else subprocess.DEVNULL)
        self.role = role                     # what it forks: "student" kernels or "examiner"s
        env = sandbox.kernel_env({"CONVLAB_ZYGOTE_WARM": ",".join(warm), "CONVLAB_ZYGOTE_ROLE": role,
                                  "CONVLAB_SHELL_SOURCE": sandbox.SHELL_SOURCE})        # (bubblewrap clears the rest: passed with --setenv)
        cmd = sandbox.bwrap_prefix(self.workdir, uid=self.uid, env=env) + [str(PYTHON), "-c", ZYGOTE_SOURCE]
        self.proc = subprocess.Popen(cmd, env=env,
                                     stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=log,
                                     preexec_fn=lambda: sandbox._child_limits(limits),
                                     start_new_session=True)
        self._buf = b""
        try:
            hello = self._answer(START_TIMEOUT)
            if not hello.get("ok"):
                raise ForkServerDied(f"the zygote did not start cleanly: {hello}")
            self.zygote = self._host_pid(hello["pid"])
        except BaseException:
            self.close()
            raise

    # -- the pipe ---------------------------------------------------------------------------
    def _answer(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ForkServerDied("the zygote did not answer in time")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise ForkServerDied(f"the zygote exited (code {self.proc.poll()})")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def _ask(self, timeout: float, **msg) -> dict:
        if self.proc.poll() is not None:
            raise ForkServerDied(f"the sandbox exited (code {self.proc.returncode})")
        try:
            self.proc.stdin.write((json.dumps(msg) + "\n").encode())
            self.proc.stdin.flush()
        except OSError as err:
            raise ForkServerDied(f"the zygote's pipe is closed ({err})") from None
        return self._answer(timeout)

    def _host_pid(self, ns_pid: int) -> psutil.Process:
        """The host process (a descendant of bubblewrap) whose pid in the sandbox is ns_pid."""
        for p in sandbox.descendants(self.proc.pid):
            if _nspid(p.pid) == ns_pid:
                return p
        raise ForkServerDied(f"no process {ns_pid} in the sandbox")

    # -- the life cycle ---------------------------------------------------------------------
    def alive(self) -> bool:
        return self.proc.poll() is None

    def fork(self) -> tuple["ForkedKernel", "socket.socket"]:
        """Have the zygote fork a shell (grader/inside/shell.py) of its role that connects to a new
        socket in the shared folder; the process and the listening socket."""
        self.forks += 1
        n = self.forks
        listener = sandbox.listen(self.workdir / f"x{n}.sock")
        try:
            answer = self._ask(FORK_TIMEOUT, op="fork", shell=f"{KERNEL_DIR}/x{n}.sock")
            if not answer.get("ok"):
                raise ForkServerDied(f"the zygote refused to fork: {answer}")
            self.kernel = ForkedKernel(self._host_pid(answer["pid"]), self.workdir, self.limits, server=self)
        except BaseException:
            listener.close()
            raise
        sandbox._MONITOR.watch(self.kernel)
        return self.kernel, listener

    def reset(self) -> None:
        """Make the sandbox as clean as a new one, or raise ForkServerDied."""
        answer = self._ask(RESET_TIMEOUT, op="reset")
        if not answer.get("ok"):
            raise ForkServerDied(f"the zygote could not clean the sandbox: {answer}")
        for entry in os.scandir(self.workdir):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
        if any(os.scandir(self.workdir)):
            raise ForkServerDied("the shared folder could not be emptied")

    def close(self) -> None:
        """SIGKILL the whole sandbox (bubblewrap: its pid namespace dies with it)."""
        sandbox.kill_tree(self.proc)
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        if not os.environ.get("CONVLAB_GRADER_DEBUG"):
            shutil.rmtree(self.workdir, ignore_errors=True)


class ForkedKernel(SandboxedKernel):
    """A kernel forked by a zygote: `proc` is its host psutil.Process (a child of the zygote)."""

    def __init__(self, proc: psutil.Process, workdir: Path, limits: Limits, *, server: ForkServer) -> None:
        super().__init__(proc, workdir, limits)     # type: ignore[arg-type]
        self.server = server
        self.returncode: int | None = None

    def alive(self) -> bool:
        try:
            return self.proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def exit_code(self) -> int | None:
        return None

    def _tree(self) -> list[psutil.Process]:
        """Every process of the sandbox but the zygote (its ancestors are not its children)."""
        if self.server.zygote.is_running():          # (is_running also catches a reused pid)
            return sandbox.descendants(self.server.zygote.pid)
        if self.proc.is_running():
            return [self.proc, *sandbox.descendants(self.proc.pid)]
        return []

    def kill(self, reason: str = "killed") -> None:
        if self.killed is None:
            self.killed = reason
        for p in self._tree():
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        sandbox._MONITOR.forget(self)

    def interrupt(self) -> None:
        try:
            self.proc.send_signal(signal.SIGINT)
        except psutil.Error:
            pass

    def cleanup(self) -> None:
        self.kill()
        self.server.kernel = None

    def memory(self) -> int:
        """Memory of the kernel's process tree, not the zygote's (see `sandbox.tree_memory`)."""
        return sandbox.tree_memory(self._tree(), self.limits.memory)


class ForkServerPool:
    """One fork server per worker. `acquire()` gives a ready kernel forked from a clean server;
    `Shell.stop()` gives the server back (cleaned, or replaced by a new one if cleaning fails).
    `warm`: modules the zygotes import besides their own list (e.g. torch._dynamo); `role`: what
    they fork, "student" kernels or "examiner"s (both grader/inside/shell.py)."""

    def __init__(self, scratch: Path, *, workers: int, limits: Limits, warm: tuple[str, ...] = (),
                 role: str) -> None:
        from concurrent.futures import ThreadPoolExecutor
        import queue
        self.scratch, self.limits, self.warm, self.role = scratch, limits, warm, role
        self.free: "queue.Queue[ForkServer | None]" = queue.Queue()
        self.lock = threading.Lock()
        self.servers: set[ForkServer] = set()
        self.closed = False
        self._boot = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="zygote")
        for _ in range(workers):
            self._boot.submit(self._start_into_free)

    def _start(self) -> ForkServer:
        server = ForkServer(self.scratch, role=self.role, limits=self.limits, warm=self.warm)
        with self.lock:
            if self.closed:
                server.close()
                raise ForkServerDied("the pool is closed")
            self.servers.add(server)
        return server

    def _start_into_free(self) -> None:
        try:
            self.free.put(self._start())
        except BaseException:  # noqa: BLE001 - the worker that takes None starts one itself
            self.free.put(None)

    def _discard(self, server: ForkServer) -> None:
        server.close()
        with self.lock:
            self.servers.discard(server)

    def acquire(self):
        """A ready shell (grader/shell_client.py's Shell) on a clean fork server."""
        waited = time.monotonic()
        server = self.free.get()            # at the start of a run: until a zygote has imported
        waited = time.monotonic() - waited
        for attempt in range(2):
            try:
                if server is None or not server.alive():
                    if server is not None:
                        self._discard(server)
                    server = self._start()
                t0 = time.monotonic()
                k = Shell.attach(*server.fork(), t0, role=self.role)
                k.timings["server_wait"] = waited
                k.on_stop = lambda s=server: self._release(s)
                k.ready()
                return k
            except (ForkServerDied, SandboxUnavailable, KernelDied, psutil.Error, OSError):
                if server is not None:
                    self._discard(server)
                server = None
                if attempt == 1:
                    self.free.put(None)
                    raise KernelDied("crashed", "the fork server could not start a kernel") from None
        raise AssertionError("unreachable")

    def _release(self, server: ForkServer) -> None:
        """After a submission: clean the server and make it available, or replace it."""
        try:
            if not server.alive():
                raise ForkServerDied("the sandbox exited")
            server.reset()
        except (ForkServerDied, OSError, ValueError):
            self._discard(server)
            self._boot.submit(self._start_into_free)
            return
        self.free.put(server)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            servers = list(self.servers)
            self.servers.clear()
        self._boot.shutdown(wait=True)
        for s in servers:
            s.close()
        with self.lock:
            late, self.servers = list(self.servers), set()
        for s in late:
            s.close()
