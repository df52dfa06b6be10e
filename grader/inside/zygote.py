"""The fork server's "zygote": trusted code that runs as the main process of a long-lived sandbox
(never imported by the grader: grader/forkserver.py passes this file's source to `python -c`
inside bubblewrap, since grader/ is not visible in the sandbox).

It imports what every grading process needs (IPython, PyTorch, matplotlib with Agg, convlab, the
shell of grader/inside/shell.py, whose source it gets in CONVLAB_SHELL_SOURCE, and the modules named in
CONVLAB_ZYGOTE_WARM, e.g. torch._dynamo) and shows a kernel's first tracebacks in a throwaway
shell (`_first_calls`) ONCE, then, per request read from its private pipe (fd 0 at start, moved
to a private descriptor; answers go to a private copy of fd 1), forks one shell of its role
(CONVLAB_ZYGOTE_ROLE: "student" kernels or "examiner"s) that connects to the grader's socket:

    {"op": "fork", "shell": "/run/kernel/x3.sock"}                 -> {"ok": true, "pid": N}
    {"op": "reset"}                                                -> {"ok": true}

`reset` (also run once before the first fork) SIGKILLs every other process of the sandbox's pid
namespace (`kill(-1, SIGKILL)`: everything this uid may signal except pid 1 and the zygote; the
zygote is a child subreaper, so every orphan is re-parented to it and reaped), checks /proc until
none is left, removes the System V IPC objects, empties the uid's keyrings (keys outlive processes)
and wipes /tmp and /dev/shm, checking they are empty. Any failure answers {"ok": false}: the grader
then discards the whole sandbox.

Hardening: the zygote is not dumpable (`PR_SET_DUMPABLE` 0: a process of the same uid without
CAP_SYS_PTRACE cannot ptrace it, read /proc/<pid>/mem or open its /proc/<pid>/fd, so it cannot
reach the pipes), starts no thread (it checks /proc/self/task before every fork), keeps '' and
the working folder out of sys.path, and does nothing else. A student process can still signal it
(same uid); the grader notices a dead or silent zygote and starts a new sandbox.

The forked child: new session, a fresh Python process's signal handlers (SIGINT raises
KeyboardInterrupt, SIGPIPE and SIGXFSZ ignored, the rest default), PR_SET_PDEATHSIG (SIGKILL when the zygote
dies), dumpable again (like any kernel), a new session keyring, stdin/stdout/stderr on /dev/null,
the pipes closed, the garbage collector on again (off in the zygote: no collection during its
imports, whose objects are then frozen), NumPy's and PyTorch's random generators reseeded (else
every kernel would share the zygote's state), cwd /tmp, then the shell's main loop on the socket
the grader named.
"""
import ctypes
import functools
import gc
import json
import os
import signal
import sys

PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 1, 4, 36
ROLE = os.environ.get("CONVLAB_ZYGOTE_ROLE", "student")


def _prctl(option, value):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option})")


def _private_pipes():
    """Move the request/answer pipes off fds 0/1 (so nothing printed by an import can corrupt
    the protocol) and put /dev/null on 0, 1, 2."""
    req = os.fdopen(os.dup(0), "rb", buffering=0)
    ans = os.fdopen(os.dup(1), "wb", buffering=0)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    return req, ans


def _warm():
    import warnings
    warnings.filterwarnings("ignore", module="matplotlib")
    _font_cache()
    import numpy, torch, torch.nn.functional, torch.testing, matplotlib  # noqa: F401,E401
    matplotlib.use("Agg")
    import matplotlib.pyplot, convlab, IPython  # noqa: F401,E401
    _shell_module()
    _one_lexer_class()
    if ROLE == "examiner":
        # SymPy: torch.testing imports it on the first failed comparison (every examiner that
        # shows a failed test), autograd on a backward with grad_outputs (the reference answers'
        # gradients). Student kernels need neither: the agent's backward does without it.
        import torch.fx.experimental.symbolic_shapes  # noqa: F401
    import importlib
    for name in os.environ.get("CONVLAB_ZYGOTE_WARM", "").split(","):
        if name:
            importlib.import_module(name)
    _first_calls(ROLE == "examiner")


def _font_cache():
    """Matplotlib's font list, built once for the venv (`make venv`: CONVLAB_MPL_CACHE), copied
    into this sandbox's fresh MPLCONFIGDIR: without it every zygote scans the fonts (~0.2 s)."""
    import glob
    import shutil
    source, target = os.environ.get("CONVLAB_MPL_CACHE"), os.environ.get("MPLCONFIGDIR")
    if not (source and target):
        return
    os.makedirs(target, exist_ok=True)
    for path in glob.glob(os.path.join(source, "fontlist-*.json")):
        shutil.copyfile(path, os.path.join(target, os.path.basename(path)))


def _pygmented_with_ranges(formatter, code, ranges):
    """stack_data's function of that name (0.6.3) with one lexer class for every call: it makes
    a new subclass of pygments' Python lexer each time, whose token tables pygments then compiles
    again (~5 ms for each frame of each traceback). Same tokens, same output."""
    import pygments
    lexer = _ranges_lexer()(stripnl=False)
    lexer.ranges = ranges
    try:
        highlighted = pygments.highlight(code, lexer, formatter)
    except Exception:  # noqa: BLE001 - as stack_data: code without highlighting, not a crash
        highlighted = code
    return highlighted.splitlines()


@functools.lru_cache(maxsize=None)
def _ranges_lexer():
    """The lexer class of `_pygmented_with_ranges`, made once: pygments' Python lexer, with the
    tokens inside the lexer's `ranges` (the executing node) marked as stack_data marks them."""
    from pygments.lexers import get_lexer_by_name

    class RangesLexer(type(get_lexer_by_name("python3"))):
        def get_tokens(self, text):
            length = 0
            for ttype, value in super().get_tokens(text):
                if any(start <= length < end for start, end in self.ranges):
                    ttype = ttype.ExecutingNode
                length += len(value)
                yield ttype, value
    return RangesLexer


def _one_lexer_class():
    """Kernels' tracebacks use `_pygmented_with_ranges`, where stack_data is the version it copies."""
    import stack_data
    import stack_data.core
    if stack_data.__version__ == "0.6.3":
        stack_data.core._pygmented_with_ranges = _pygmented_with_ranges


def _first_calls(examiner):
    """A kernel's first tracebacks, paid once here: failing cells run in a throwaway shell made by
    grader/inside/shell.py's own `_shell`, so exactly what a kernel's shell uses is warmed (IPython's
    completer and magics modules, the pygments lexer and terminal formatter of its colour theme,
    whose token tables are compiled on first use, stack_data's parse of the convlab file the
    traceback goes through, inspect's file -> module map). The instance is then cleared: each
    kernel makes its own, with nothing run in it. Students' errors go through convlab/plotting.py
    (a demo cell calling their unfinished function); examiners' failed tests through
    convlab/checks.py (a failed comparison imports SymPy, which student zygotes do without)."""
    from IPython.core.interactiveshell import InteractiveShell

    class Discard:
        def send(self, msg_type, content):
            pass

        def flush(self):
            pass

    shell = sys.modules["_convlab_shell"]._shell(Discard())
    shell.run_cell("import torch, convlab\n"
                   "def f(X, K):\n    raise NotImplementedError('warm')")
    shell.run_cell("convlab.expect_close(torch.zeros(1), torch.ones(1))" if examiner else
                   "convlab.show_corr2d(f, torch.ones(2, 2), torch.ones(1, 1))")
    InteractiveShell.clear_instance()


def _threads():
    return len(os.listdir("/proc/self/task"))


def _others():
    me = os.getpid()
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, me)]


def _reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


# The course's read-only binds (Python, the venv, convlab/, data/). When the course itself lives
# under /tmp they appear inside the private /tmp: they stay on sys.path and are never wiped.
READ_ONLY = tuple(p for p in os.environ.get("CONVLAB_SANDBOX_READ_ONLY", "").split(os.pathsep) if p)


def _in_read_only(path):
    """Whether `path` is one of the read-only binds or inside one."""
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in READ_ONLY)


def _leads_to_read_only(path):
    """Whether `path` is a folder the sandbox made to hold a read-only bind (e.g. /tmp/course)."""
    return any(r.startswith(path.rstrip("/") + "/") for r in READ_ONLY)


def _wipe(folder):
    """Remove everything in `folder` (also what its owner made unreadable) except the read-only
    binds and the folders that hold them; True when nothing else is left."""
    def chmod_all(path):
        for root, dirs, _files in os.walk(path, topdown=True, onerror=lambda e: None):
            for d in dirs:
                try:
                    os.chmod(os.path.join(root, d), 0o700, follow_symlinks=False)
                except OSError:
                    pass
    import shutil
    try:
        names = os.listdir(folder)
    except OSError:
        return not os.path.isdir(folder)
    clean = True
    for name in names:
        path = os.path.join(folder, name)
        is_dir = os.path.isdir(path) and not os.path.islink(path)
        if _in_read_only(path):
            continue
        if is_dir and _leads_to_read_only(path):
            clean = _wipe(path) and clean
        elif is_dir:
            try:
                os.chmod(path, 0o700)
            except OSError:
                pass
            chmod_all(path)
            shutil.rmtree(path, ignore_errors=True)
            clean = clean and not os.path.lexists(path)
        else:
            try:
                os.unlink(path)
            except OSError:
                pass
            clean = clean and not os.path.lexists(path)
    return clean


def _sysv_clean():
    libc = ctypes.CDLL(None, use_errno=True)
    IPC_RMID = 0
    for kind, rm in (("shm", lambda i: libc.shmctl(i, IPC_RMID, None)),
                     ("sem", lambda i: libc.semctl(i, 0, IPC_RMID)),
                     ("msg", lambda i: libc.msgctl(i, IPC_RMID, None))):
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            rm(int(row.split()[1]))
    left = 0
    for kind in ("shm", "sem", "msg"):
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                left += len(f.read().splitlines()[1:])
        except OSError:
            pass
    return left == 0


# keyctl(2): keys outlive processes (the user and user-session keyrings belong to the uid, which
# the students of one sandbox share), so they are a channel between students: cleared on reset.
KEYCTL = {"x86_64": 250, "aarch64": 219}
KEYCTL_JOIN_SESSION_KEYRING, KEYCTL_CLEAR, KEYCTL_READ, KEYCTL_GET_PERSISTENT = 1, 7, 11, 22
KEY_SPEC_PROCESS_KEYRING, KEY_SPEC_SESSION_KEYRING = -2, -3
KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING = -4, -5


def _keyctl(*args):
    import platform
    nr = KEYCTL.get(platform.machine())
    if nr is None:
        raise OSError("keyctl: unknown architecture")   # fail closed: reset reports failure
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])


def _keys_clean():
    """Empty the uid's keyrings (user, user-session, persistent, the zygote's session); True when
    they are empty (or the kernel has no keyrings at all)."""
    try:
        rings = [KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING, KEY_SPEC_SESSION_KEYRING]
        persistent = _keyctl(KEYCTL_GET_PERSISTENT, -1, KEY_SPEC_PROCESS_KEYRING)
        if persistent > 0:
            rings.append(persistent)
        for ring in rings:
            _keyctl(KEYCTL_CLEAR, ring)
        return all(_keyctl(KEYCTL_READ, ring, None, 0) <= 0 for ring in rings)
    except OSError:
        return False


def reset():
    """Kill every other process of the sandbox, wipe /tmp and /dev/shm; True when clean."""
    import time
    for _ in range(200):
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _reap()
        if not _others():
            break
        time.sleep(0.01)
    else:
        return False
    return _sysv_clean() and _keys_clean() and _wipe("/tmp") and _wipe("/dev/shm")


def _shell_module():
    """grader/inside/shell.py (its source in the environment), loaded as a module."""
    import types
    module = types.ModuleType("_convlab_shell")
    exec(compile(os.environ["CONVLAB_SHELL_SOURCE"], "<convlab_shell>", "exec"), module.__dict__)
    sys.modules[module.__name__] = module
    import IPython.core.interactiveshell, IPython.core.displayhook, IPython.core.displaypub  # noqa: F401,E401
    import IPython.core.error  # noqa: F401 - a student input() raises its StdinNotImplementedError


def child(shell):
    """The forked process: the shell of this zygote's role, on the socket `shell`."""
    os.setsid()
    for sig in range(1, signal.NSIG):
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):    # as Python sets them at startup: a write to a
        signal.signal(sig, signal.SIG_IGN)          # closed socket raises BrokenPipeError (not a kill)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != ZYGOTE_PID:          # the zygote died between fork and prctl
        os._exit(1)
    _prctl(PR_SET_DUMPABLE, 1)
    gc.enable()
    _keyctl(KEYCTL_JOIN_SESSION_KEYRING, None)     # its own session keyring, not the zygote's
    import numpy, torch                     # fresh random states, as in a new process (`random`
    numpy.random.seed()                     # reseeds itself after fork)
    torch.seed()
    os.chdir("/tmp")
    sys.path.insert(0, "")                  # like a kernel started in its cwd
    sys.argv = ["convlab_shell"]
    sys.modules["_convlab_shell"].main(shell, ROLE)
    os._exit(0)


def main():
    global ZYGOTE_PID
    req, ans = _private_pipes()
    if (os.getpid(), os.getppid()) != (2, 1):
        # kill(-1) is only safe as the command of a fresh pid namespace (bubblewrap's init is 1)
        ans.write(b'{"ok": false, "error": "not the main process of a new pid namespace"}\n')
        return 1
    _prctl(PR_SET_DUMPABLE, 0)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    ZYGOTE_PID = os.getpid()
    os.chdir("/")
    sys.path[:] = [p for p in sys.path if p not in ("", ".", "/tmp")
                   and (not p.startswith("/tmp/") or _in_read_only(p))]
    signal.signal(signal.SIGINT, signal.SIG_DFL)     # a signal from a student kills, no handler

    def say(**msg):
        ans.write((json.dumps(msg) + "\n").encode())

    gc.disable()                            # no collection while importing (enabled in each child)
    try:
        _warm()
    except BaseException as err:  # noqa: BLE001 - reported to the grader, which gives up on it
        say(ok=False, error=f"warm imports failed: {type(err).__name__}: {err}")
        return 1
    # Every kernel inherits the imported modules' ~10^6 objects: frozen (out of the collector's
    # reach), a kernel's full collections do not scan them all again (about 0.4 s per submission)
    # nor copy the pages they live on (copy-on-write). The imports' own few cycles are frozen with
    # them: a collection first would cost ~0.2 s of each zygote's start for a few MB.
    gc.freeze()
    say(ok=reset() and _threads() == 1, pid=ZYGOTE_PID, threads=_threads())
    buf = b""
    while True:
        chunk = req.read(65536)
        if not chunk:
            return 0                        # the grader closed the pipe: done
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            msg = json.loads(line)
            if msg["op"] == "reset":
                say(ok=reset())
            elif msg["op"] == "fork":
                if _threads() != 1 or _others():
                    say(ok=False, error="not clean: threads or processes left")
                    continue
                pid = os.fork()
                if pid == 0:
                    try:
                        req.close()
                        ans.close()
                        child(str(msg["shell"]))
                    finally:
                        os._exit(1)
                say(ok=True, pid=pid)
            else:
                say(ok=False, error="unknown op")


ZYGOTE_PID = 0

if __name__ == "__main__":
    sys.exit(main())
