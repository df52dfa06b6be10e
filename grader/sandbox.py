"""Start a grading process (grader/inside/shell.py: a student kernel or an examiner) inside a bubblewrap
sandbox, watch its memory, kill it outright.

What the sandbox gives a submission (and nothing else):

* a read-only view of /usr (system libraries), the Python installation and the course's virtual
  environment, the course's helper package (convlab/) and data/;
* a private /tmp (tmpfs, size-limited) that is also the kernel's working folder (the submission
  is copied to /tmp/<assignment>);
* one small writable folder shared with the grader: the Unix socket the grader talks to it on;
* everything else read-only, the sandbox's own root included (`--remount-ro /` once the binds are
  set up): nothing can be created at the course's or any other path (/proc and /dev are the
  sandbox's own, private ones);
* no network (`--unshare-net`: only a loopback device that is down), and new pid, ipc, uts and
  cgroup namespaces; no capabilities (`setpriv --bounding-set=-all --no-new-privs`).

Not visible: the gradebook, solutions/, grader/, other submissions, the instructor's home.

Limits (enforced here, by the orchestrator, or by the trusted preamble in the kernel):

* processes: RLIMIT_NPROC. The kernel does not enforce RLIMIT_NPROC for root, so when the grader
  runs as root the sandbox runs as a fresh, unprivileged uid (a random uid >= 2**30 with no
  other processes), via bubblewrap in privileged mode and `setpriv`. As an ordinary user the
  sandbox gets its own user namespace (`--unshare-user`), where the count starts at zero.
* memory: the resident memory of the sandbox's whole process tree is polled (psutil, every
  0.1 s); over the limit, the sandbox is SIGKILLed. (RLIMIT_AS breaks PyTorch, which reserves
  large virtual ranges, so it is not used.)
* disk: /tmp is a tmpfs with a size limit; RLIMIT_FSIZE caps any single file; the shared IPC
  folder is watched and the sandbox killed if it grows.
* time: the caller kills the sandbox at its deadline (SIGKILL of bubblewrap: the pid namespace
  dies with it, `--die-with-parent` ensures this even if the grader itself is killed).

Two ways to use it:

* fork server (the default, grader/forkserver.py + grader/inside/zygote.py): each worker keeps ONE such
  sandbox for many submissions. Its main process, the trusted zygote, imports PyTorch, matplotlib,
  convlab and IPython once and forks a fresh kernel per submission (the student agent or the
  examiner's code is sent after the fork: grader/grading.py). A worker has two: one for
  student kernels, one for examiners, so the two kernels of a submission never share a pid
  namespace (nor, as root, a uid). Between two submissions every other process of the
  sandbox is SIGKILLed (from outside, then `kill(-1)` from inside the pid namespace, and checked),
  System V IPC objects and the uid's keyrings emptied, /tmp, /dev/shm and the shared folder
  emptied; if any of that fails or the zygote is dead or silent, the sandbox is thrown away and a
  new one started. Students of one worker share the sandbox's uid, one after the other, never at
  the same time. The zygote is not dumpable (no ptrace, no /proc/<pid>/mem or fd access by that
  uid), so a student's code can only signal it, which costs a new sandbox, never a grade from a
  dirty one. Memory is counted over the kernel's process tree, not the zygote.
* one sandbox per kernel (`start_shell`, `autograde --no-fork-server`): bubblewrap runs
  `python -c <grader/inside/shell.py>` and the imports happen in each kernel (3+ s of CPU each).

With `sandbox=False` (the instructor's explicit opt-out) the kernel runs as a plain child
process: memory and time limits still apply, isolation does not (no fork server then: it
relies on the pid namespace).
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from . import inside
from .course import ROOT
from .limits import FSIZE, KERNEL_DIR_LIMIT, MEMORY, NPROC, TMP_SIZE

PYTHON = Path(sys.executable)           # the venv's python (a symlink into the base install)
VENV = Path(sys.prefix)
BASE = Path(sys.base_prefix)
SHELL_SOURCE = inside.source("shell")      # the student kernel's or examiner's process (grader/inside/shell.py)
MPL_CACHE = VENV / "share" / "convlab" / "matplotlib"   # matplotlib's font list, built by `make venv`
KERNEL_DIR = "/run/kernel"              # where the IPC folder appears inside the sandbox


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create namespaces on this machine."""


def read_only_paths() -> list[Path]:
    """What the sandbox sees read-only (besides /usr): Python, the venv, convlab/, data/."""
    paths = [BASE, VENV, ROOT / "convlab", ROOT / "data"]
    return [p.resolve() for p in paths if p.exists()]


def bwrap_prefix(kernel_dir: Path, *, uid: int | None, env: dict[str, str] | None = None) -> list[str]:
    """The bubblewrap command line that runs a command in the sandbox (see the module doc)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable(_HOWTO)
    cmd = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
           "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--clearenv",
           "--ro-bind", "/usr", "/usr"]
    for link in ("bin", "lib", "lib64", "sbin"):
        if Path("/" + link).is_symlink():
            cmd += ["--symlink", os.readlink("/" + link), "/" + link]
        elif Path("/" + link).is_dir():
            cmd += ["--ro-bind", "/" + link, "/" + link]
    for etc in ("/etc/ld.so.cache", "/etc/fonts", "/etc/localtime"):
        if Path(etc).exists():
            cmd += ["--ro-bind", etc, etc]
    cmd += ["--proc", "/proc", "--dev", "/dev",
            "--size", str(TMP_SIZE), "--perms", "1777", "--tmpfs", "/tmp"]
    made: set[Path] = {Path("/"), Path("/usr"), Path("/tmp"), Path("/proc"), Path("/dev")}
    binds = [(p, p, "--ro-bind") for p in read_only_paths()] + [(kernel_dir, Path(KERNEL_DIR), "--bind")]
    read_only_mounts = [Path("/")]
    for src, dest, how in binds:
        # bubblewrap creates missing parents with mode 0700: make them 0755 so the uid can pass.
        for parent in reversed(dest.parents):
            if parent not in made:
                if parent.parent == Path("/tmp"):
                    # a course (or venv) under /tmp: its folder would sit in the writable /tmp, so
                    # it gets a tmpfs of its own, made read-only below like the root
                    cmd += ["--perms", "0755", "--tmpfs", str(parent)]
                    read_only_mounts.append(parent)
                else:
                    cmd += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
        cmd += [how, str(src), str(dest)]
        made.add(dest)
    # Everything set up so far becomes read-only: the sandbox's own root (bubblewrap's skeleton,
    # which would otherwise be writable and, under the fork server, outlive a submission) and the
    # folders made in it. Writable stay only the separate mounts: /tmp (the submission's working
    # folder) and the IPC folder shared with the grader (and bubblewrap's private /dev).
    for mount in read_only_mounts:
        cmd += ["--remount-ro", str(mount)]
    if uid is None:
        cmd += ["--unshare-user", "--disable-userns"]
    for name, value in (env or kernel_env()).items():   # --clearenv dropped everything else
        cmd += ["--setenv", name, value]
    cmd += ["--chdir", "/tmp", "--"]
    if uid is not None:
        setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
        cmd += [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    return cmd


def descendants(pid: int) -> list[psutil.Process]:
    """Every descendant of process `pid`, each listed after its parent. Read from
    /proc/<pid>/task/*/children, which costs a few reads per process; psutil's
    children(recursive=True) reads the stat file of every process on the machine, and the monitor
    asks ten times a second per kernel."""
    found, todo, seen = [], [pid], {pid}
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except FileNotFoundError:
                if not os.path.exists("/proc/self/task/%d/children" % os.getpid()):
                    return psutil.Process(pid).children(recursive=True)   # a kernel without the file
                continue
            except (OSError, ValueError):
                continue
            for kid in kids:
                if kid in seen:
                    continue
                seen.add(kid)
                try:
                    found.append(psutil.Process(kid))
                except psutil.Error:
                    continue
                todo.append(kid)
    return found


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a process and all its descendants, then reap it (for bubblewrap, its whole pid
    namespace dies with it)."""
    try:
        procs = descendants(proc.pid)
    except psutil.Error:
        procs = []
    for p in [proc, *procs]:
        try:
            p.send_signal(signal.SIGKILL) if isinstance(p, psutil.Process) else p.kill()
        except (psutil.Error, ProcessLookupError, OSError):
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def kernel_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The kernel's whole environment (the sandbox clears everything else)."""
    env = {
        "PATH": f"{VENV}/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": "/tmp/.matplotlib",
        "CONVLAB_MPL_CACHE": str(MPL_CACHE),      # the venv's font list (`make venv`), copied in
        "IPYTHONDIR": "/tmp/.ipython",
        "JUPYTER_RUNTIME_DIR": "/tmp/.jupyter",
        "JUPYTER_PREFER_ENV_PATH": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "OMP_NUM_THREADS": "1",
        # the zygote keeps these on sys.path and out of its wipes, even when they lie under /tmp
        "CONVLAB_SANDBOX_READ_ONLY": os.pathsep.join(str(p) for p in read_only_paths()),
        "CONVLAB_FAKE_DATA": os.environ.get("CONVLAB_FAKE_DATA", "1"),
    }
    env.update(extra or {})
    return env


_HOWTO = (
    "The grading sandbox needs bubblewrap (`bwrap`) with user namespaces. Install it with "
    "`sudo apt-get install -y bubblewrap` (or `make grader-deps`), or, on a machine where it "
    "cannot work, grade WITHOUT isolation by passing --no-sandbox (student code then runs with "
    "your rights: it can read the gradebook and the hidden tests)."
)


def check_sandbox() -> None:
    """Raise SandboxUnavailable with a clear message if a sandbox cannot start here."""
    with tempfile.TemporaryDirectory(prefix="convlab-check-") as tmp:
        uid = _fresh_uid() if os.geteuid() == 0 else None
        if uid is not None:
            os.chown(tmp, uid, uid)
        cmd = bwrap_prefix(Path(tmp), uid=uid) + [str(PYTHON), "-c", "import sys"]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=kernel_env())
        if proc.returncode != 0:
            raise SandboxUnavailable(f"bubblewrap failed: {proc.stderr.strip()}\n{_HOWTO}")


def _fresh_uid() -> int:
    return 2**30 + secrets.randbelow(2**30)


@dataclass
class Limits:
    memory: int = MEMORY                # bytes of resident memory (whole process tree)
    nproc: int = NPROC
    fsize: int = FSIZE


@dataclass(eq=False)  # compared (and hashed) by identity: kernels live in the monitor's set
class SandboxedKernel:
    """A kernel process (in a sandbox or not) and the folder it shares with the grader."""
    proc: subprocess.Popen
    workdir: Path                       # host folder holding the socket (the sandbox's /run/kernel)
    limits: Limits
    killed: str | None = None           # "memory", "disk", "timeout", "killed" once killed

    def alive(self) -> bool:
        return self.proc.poll() is None

    def exit_code(self) -> int | None:
        return self.proc.returncode

    def kill(self, reason: str = "killed") -> None:
        """SIGKILL everything: bubblewrap, hence its pid namespace (or the plain process tree)."""
        if self.killed is None:
            self.killed = reason
        kill_tree(self.proc)
        _MONITOR.forget(self)

    def interrupt(self) -> None:
        """SIGINT to the kernel itself (inside bubblewrap: the python process running the shell)."""
        try:
            for p in [psutil.Process(self.proc.pid), *descendants(self.proc.pid)]:
                if p.cmdline()[-2:-1] and p.cmdline()[-2].endswith("/shell.sock"):
                    p.send_signal(signal.SIGINT)
        except psutil.Error:
            pass

    def cleanup(self) -> None:
        self.kill()
        if not os.environ.get("CONVLAB_GRADER_DEBUG"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def memory(self) -> int:
        """Memory of the whole process tree (see `tree_memory`)."""
        try:
            return tree_memory([psutil.Process(self.proc.pid), *descendants(self.proc.pid)], self.limits.memory)
        except psutil.Error:
            return 0


def tree_pids(kernel: SandboxedKernel) -> set[int]:
    """The host pids of a kernel's process (bubblewrap's, or a forked kernel's) and its descendants."""
    root = kernel.proc.pid
    return {root, *(p.pid for p in descendants(root))}


def tree_memory(procs: list[psutil.Process], limit: int) -> int:
    """The sum of RSS, which counts pages shared by forked processes once per process; when that
    is over `limit`, the exact figure (sum of PSS). 0 if the processes are gone."""
    try:
        rss = sum(p.memory_info().rss for p in procs)
        if rss <= limit:
            return rss
        return sum(p.memory_full_info().pss for p in procs)
    except psutil.Error:
        return 0


def start_shell(scratch: Path, *, role: str, sandbox: bool = True,
                limits: Limits | None = None) -> tuple[SandboxedKernel, socket.socket]:
    """Start a shell (grader/inside/shell.py) of `role`, "student" or "examiner" (sandboxed unless
    `sandbox` is False), and the socket it will connect to, in a new folder under `scratch`.
    Returns at once; the shell imports PyTorch and the rest in the background."""
    workdir, uid = _new_workdir(scratch, sandbox)
    listener = listen(workdir / "shell.sock")
    inside = KERNEL_DIR if sandbox else str(workdir)
    argv = [str(PYTHON), "-c", SHELL_SOURCE, f"{inside}/shell.sock", role]
    return _spawn(scratch, workdir, uid, argv, sandbox, limits or Limits()), listener


def listen(path: Path) -> socket.socket:
    """A Unix socket for a shell to connect to (writable by the sandbox's uid; only
    the sandbox and the grader can reach the folder it is in)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o666)
    listener.listen(1)
    return listener


def _new_workdir(scratch: Path, sandbox: bool) -> tuple[Path, int | None]:
    workdir = Path(tempfile.mkdtemp(prefix="k", dir=scratch))
    uid = _fresh_uid() if sandbox and os.geteuid() == 0 else None
    if uid is not None:
        os.chown(workdir, uid, uid)
        os.chmod(workdir, 0o700)
    return workdir, uid


def _spawn(scratch: Path, workdir: Path, uid: int | None, argv: list[str], sandbox: bool,
           limits: Limits) -> SandboxedKernel:
    cmd, cwd = (bwrap_prefix(workdir, uid=uid) + argv, None) if sandbox else (argv, workdir)
    # The process's own stdout/stderr (not the cells' output, which goes over the socket) are dropped,
    # unless CONVLAB_GRADER_DEBUG is set (then a file, capped by RLIMIT_FSIZE).
    log = open(scratch / f"{workdir.name}.log", "wb") if os.environ.get("CONVLAB_GRADER_DEBUG") else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, env=kernel_env(), cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=log, stderr=log,
                            preexec_fn=lambda: _child_limits(limits), start_new_session=True)
    kernel = SandboxedKernel(proc, workdir, limits)
    _MONITOR.watch(kernel)
    return kernel


def _child_limits(limits: Limits) -> None:
    import resource
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.fsize, limits.fsize))
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def _dir_size(path: Path, cap: int) -> int:
    total = 0
    for n, entry in enumerate(os.scandir(path)):
        if n > 1000:
            return cap + 1
        try:
            if entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            pass
    return total


class _Monitor:
    """One thread polling every live kernel's memory and shared folder; kills the offenders."""

    interval = 0.1

    def __init__(self) -> None:
        self._kernels: set[SandboxedKernel] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, kernel: SandboxedKernel) -> None:
        with self._lock:
            self._kernels.add(kernel)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True, name="sandbox-monitor")
                self._thread.start()

    def forget(self, kernel: SandboxedKernel) -> None:
        with self._lock:
            self._kernels.discard(kernel)

    def _run(self) -> None:
        while True:
            with self._lock:
                kernels = list(self._kernels)
            for k in kernels:
                try:
                    if not k.alive():
                        self.forget(k)
                    elif k.memory() > k.limits.memory:
                        k.kill("memory")
                    elif _dir_size(k.workdir, KERNEL_DIR_LIMIT) > KERNEL_DIR_LIMIT:
                        k.kill("disk")
                except OSError:      # the kernel went away while being looked at
                    continue
            time.sleep(self.interval)


_MONITOR = _Monitor()
