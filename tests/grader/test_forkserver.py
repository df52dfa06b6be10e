"""grader/forkserver.py + grader/inside/zygote.py: kernels forked from one long-lived sandbox per worker.

Cross-student leakage on ONE worker: what student A leaves behind (a background process that
attacks whoever comes next, files in /tmp, /dev/shm and the shared folder, System V shared
memory) must be gone before student B's kernel exists; a student who kills or stops the zygote
only costs a new sandbox, and the next students are graded normally. Every test is bounded in
time (kernel deadlines, pipe timeouts, the autograde --timeout)."""
from __future__ import annotations

import copy
import os
import time

import nbformat
import pytest

from grader import autograde, samples, sandbox
from grader.forkserver import ForkServer, ForkServerPool
from grader.shell_client import KernelDied, OutputBudget, Shell

A = "01_cross_correlation"

# A daemon (double fork + setsid, SIGTERM/SIGHUP/SIGINT ignored) that, for 60 s, keeps planting
# files everywhere writable, shadows a module in the next student's working folder and copies the
# next kernel's socket. It kills nothing: if it survived, the next kernel
# would start normally (nothing would trigger a new sandbox) and the next student would see it.
LEAVER = r"""
import glob, os, shutil, signal, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(s, signal.SIG_IGN)
        start = time.time()
        while time.time() - start < 60:
            for path in ("/tmp/planted_by_a", "/dev/shm/planted_by_a", "/run/kernel/planted_by_a"):
                try:
                    open(path, "w").write("answers for the next student")
                except OSError:
                    pass
            try:
                os.makedirs("/tmp/01_cross_correlation", exist_ok=True)
                open("/tmp/01_cross_correlation/convlab.py", "w").write("raise SystemExit")
                for conn in glob.glob("/run/kernel/connection-*.json"):
                    shutil.copy(conn, "/tmp/stolen_connection")
            except OSError:
                pass
            time.sleep(0.02)
        os._exit(0)
    os._exit(0)
os.wait()
time.sleep(0.3)
print("daemon left running")
"""

# What student B sees: other processes and anything planted.
LOOK = r"""
import os
seen = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
mine = {os.getpid(), os.getppid(), 1}
print("OTHERS", [p for p in seen if p not in mine])
for path in ("/tmp/planted_by_a", "/dev/shm/planted_by_a", "/run/kernel/planted_by_a",
             "/tmp/01_cross_correlation/convlab.py", "/tmp/stolen_connection"):
    print("PLANTED" if os.path.exists(path) else "absent", path)
"""

KILL_ZYGOTE = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nimport time\ntime.sleep(5)"
STOP_ZYGOTE = "import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)"


def _index(nb, grade_id: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _after(base, grade_id: str, source: str):
    nb = copy.deepcopy(base)
    nb.cells.insert(_index(nb, grade_id) + 1, nbformat.v4.new_code_cell(source))
    return nb


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory, course_config):
    """Students graded in this (alphabetical) order by ONE worker, hence one fork server."""
    tmp = tmp_path_factory.mktemp("forkserver")
    solved = samples.solved(A)
    cases = {
        "a_leaver": _after(solved, "corr2d_impl", LEAVER),
        "b_victim": _after(solved, "corr2d_impl", LOOK),
        "c_zygote_killer": _after(solved, "corr2d_impl", KILL_ZYGOTE),
        "d_after_kill": _after(solved, "corr2d_impl", LOOK),
        "e_zygote_stopper": _after(solved, "corr2d_impl", STOP_ZYGOTE),
        "f_after_stop": _after(solved, "corr2d_impl", LOOK),
    }
    for name, nb in cases.items():
        path = tmp / "subs" / name / A / f"{A}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
    opts = autograde.Options(workers=1, timeout=30, out=tmp / "out", config_dir=course_config,
                             progress=False)
    results = {r["student_id"]: r for r in autograde.autograde(tmp / "subs", opts)}
    return results, tmp


def _outputs(tmp, name: str) -> str:
    """The stdout of the notebook's cells (what LEAVER and LOOK print)."""
    nb = nbformat.read(tmp / "out" / "autograded" / name / A / f"{A}.ipynb", as_version=4)
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", [])
                   if o.get("output_type") == "stream")


def test_leftover_process_and_files_of_a_do_not_reach_b(one_worker):
    results, tmp = one_worker
    assert "daemon left running" in _outputs(tmp, "a_leaver")
    b = results["b_victim"]
    assert b["status"] == "graded" and b["score"] == b["max_score"] > 0, b["messages"]
    out = _outputs(tmp, "b_victim")
    assert "OTHERS []" in out and "PLANTED" not in out, out


def test_killing_the_zygote_only_costs_a_new_sandbox(one_worker):
    results, tmp = one_worker
    assert results["c_zygote_killer"]["status"] == "crashed"
    d = results["d_after_kill"]
    assert d["status"] == "graded" and d["score"] == d["max_score"] > 0, d["messages"]
    assert "OTHERS []" in _outputs(tmp, "d_after_kill")


def test_stopping_the_zygote_only_costs_a_new_sandbox(one_worker):
    results, tmp = one_worker
    # its own kernel was forked before the SIGSTOP and ran to the end: a plain grade, or a crash
    assert results["e_zygote_stopper"]["status"] in ("graded", "crashed")
    f = results["f_after_stop"]
    assert f["status"] == "graded" and f["score"] == f["max_score"] > 0, f["messages"]
    assert "OTHERS []" in _outputs(tmp, "f_after_stop")


@pytest.fixture
def server(tmp_path):
    os.chmod(tmp_path, 0o711)
    s = ForkServer(tmp_path, role="student", limits=sandbox.Limits())
    yield s
    s.close()


def _kernel(server) -> Shell:
    k = Shell.attach(*server.fork(), time.monotonic(), role=server.role)
    k.ready(timeout=30)
    return k


def _run(k: Shell, code: str) -> str:
    reply = k.run(code, deadline=time.monotonic() + 20)
    assert reply.status == "ok", (reply.ename, reply.evalue)
    return "".join(o.get("text", "") for o in reply.outputs)


def test_zygote_alone_kills_and_wipes_everything(server):
    """reset() by the zygote alone (the kernel is not killed from outside first)."""
    k = _kernel(server)
    _run(k, LEAVER.replace("< 60", "< 30") + "\nimport ctypes\nlibc = ctypes.CDLL(None)\n"
            "print('shm', libc.shmget(1234, 4096, 0o1600))\n")
    assert server.kernel.alive()
    server.reset()
    assert not server.kernel.alive()
    k2 = _kernel(server)
    out = _run(k2, LOOK + "print('sysv', open('/proc/sysvipc/shm').read().count('\\n'))")
    assert "OTHERS []" in out and "PLANTED" not in out and "sysv 1" in out, out
    k2.stop()
    k.frames.close()


def test_a_forked_kernel_has_a_fresh_pythons_signal_handlers(server):
    """Check that a forked kernel ignores SIGPIPE and SIGXFSZ, as Python does at startup: a write
    to a socket the grader already closed raises BrokenPipeError instead of killing the kernel."""
    k = _kernel(server)
    out = _run(k, "import signal, socket\n"
                  "print([signal.getsignal(s) == signal.SIG_IGN for s in (signal.SIGPIPE, signal.SIGXFSZ)])\n"
                  "a, b = socket.socketpair()\nb.close()\n"
                  "try:\n    a.sendall(b'x' * 100000)\nexcept BrokenPipeError:\n    print('BrokenPipeError')\n")
    assert out.split() == ["[True,", "True]", "BrokenPipeError"], out
    k.stop()


KEYS = r"""
import ctypes, platform
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
ADD_KEY, KEYCTL = {"x86_64": (248, 250), "aarch64": (217, 219)}[platform.machine()]
def search(ring):   # KEYCTL_SEARCH
    return libc.syscall(ctypes.c_long(KEYCTL), ctypes.c_long(10), ctypes.c_long(ring), b"user", b"answers", ctypes.c_long(0))
"""


def test_keys_left_by_a_are_gone_for_b(server):
    """Kernel keyrings outlive processes: the user (-4), user-session (-5) and session (-3) ones."""
    k = _kernel(server)
    out = _run(k, KEYS + "for ring in (-3, -4, -5):\n"
                      "    print('added', libc.syscall(ctypes.c_long(ADD_KEY), b'user', b'answers', b'x', ctypes.c_long(1), ctypes.c_long(ring)) > 0)\n"
                      "print('found', [search(r) > 0 for r in (-3, -4, -5)])")
    assert out.count("added True") == 3 and "found [True, True, True]" in out, out
    k.stop()
    server.reset()
    k2 = _kernel(server)
    out = _run(k2, KEYS + "print('found', [search(r) > 0 for r in (-3, -4, -5)])")
    assert "found [False, False, False]" in out, out
    k2.stop()


def test_zygote_is_not_dumpable_nor_traceable(server):
    k = _kernel(server)
    out = _run(k, r"""
import ctypes, os
z = os.getppid()
for path in (f"/proc/{z}/mem", f"/proc/{z}/environ", f"/proc/{z}/fd/0"):
    try:
        open(path, "rb").read(1)
        print("OPENED", path)
    except OSError as err:
        print("refused", path, type(err).__name__)
try:
    print("LISTED", os.listdir(f"/proc/{z}/fd"))
except OSError:
    print("refused fd listing")
libc = ctypes.CDLL(None, use_errno=True)
print("ptrace", libc.ptrace(16, z, None, None), ctypes.get_errno())   # PTRACE_ATTACH
print("self ok", os.getuid() == os.stat(f"/proc/{os.getpid()}").st_uid)
""")
    assert "OPENED" not in out and "LISTED" not in out and "refused fd listing" in out, out
    assert "ptrace -1 1" in out, out                                    # EPERM
    k.stop()


def test_memory_counts_the_kernel_not_the_zygote(server):
    k = _kernel(server)
    base = k.process.memory()
    _run(k, "import torch\nhog = torch.ones(64, 1024, 1024)\nhog += 1")
    grown = k.process.memory()
    assert grown - base > 200 * 2**20                  # 256 MB of float32 counted
    zygote = server.zygote.memory_info().rss
    assert zygote > 100 * 2**20 and k.process.proc.pid != server.zygote.pid
    assert server.zygote not in k.process._tree()
    k.stop()


def test_pool_replaces_a_dead_server(tmp_path):
    os.chmod(tmp_path, 0o711)
    pool = ForkServerPool(tmp_path, workers=1, limits=sandbox.Limits(), role="student")
    try:
        k = pool.acquire()
        first = k.process.server
        k.submit("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)", deadline=time.monotonic() + 10)
        deadline = time.monotonic() + 20
        while first.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not first.alive()
        k.stop()
        k2 = pool.acquire()
        assert k2.process.server is not first and not first.alive()
        assert _run(k2, "print(6 * 7)").strip() == "42"
        k2.stop()
    finally:
        pool.close()


@pytest.mark.parametrize("how", [{"fork_server": False}, {"sandbox": False}], ids=["per-kernel", "no-sandbox"])
def test_other_kernel_paths_still_grade(tmp_path, course_config, how):
    """--no-fork-server (a new sandbox per submission) and --no-sandbox keep working."""
    solved = samples.solved(A)
    cases = {"correct": solved, "untouched": samples.untouched(A),
             "exits": _after(solved, "corr2d_impl", "import os\nos._exit(0)")}
    for name, nb in cases.items():
        path = tmp_path / "subs" / name / A / f"{A}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
    opts = autograde.Options(workers=2, timeout=30, out=tmp_path / "out", config_dir=course_config,
                             progress=False, **how)
    r = {x["student_id"]: x for x in autograde.autograde(tmp_path / "subs", opts)}
    assert r["correct"]["status"] == "graded" and r["correct"]["score"] == r["correct"]["max_score"] > 0
    assert r["untouched"]["status"] == "graded" and r["untouched"]["score"] == 0
    assert r["exits"]["status"] == "crashed"


def test_wipe_spares_the_read_only_course_paths_under_tmp(tmp_path, monkeypatch):
    """A course cloned under /tmp has its read-only binds inside the sandbox's private /tmp: the
    zygote's wipe between students must remove everything else and leave those alone."""
    from grader.inside import zygote

    course = tmp_path / "course"
    (course / ".venv" / "lib").mkdir(parents=True)
    (course / ".venv" / "lib" / "site.py").write_text("")
    (course / "convlab").mkdir()
    (course / "planted.py").write_text("left by a student")
    (tmp_path / "answers.txt").write_text("left by a student")
    (tmp_path / "deep" / "er").mkdir(parents=True)
    monkeypatch.setattr(zygote, "READ_ONLY", (str(course / ".venv"), str(course / "convlab")))
    assert zygote._wipe(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["course"]
    assert sorted(p.name for p in course.iterdir()) == [".venv", "convlab"]
    assert (course / ".venv" / "lib" / "site.py").exists()


def test_sandbox_env_names_the_read_only_paths():
    names = sandbox.kernel_env()["CONVLAB_SANDBOX_READ_ONLY"].split(os.pathsep)
    assert names == [str(p) for p in sandbox.read_only_paths()] and names


def test_the_zygote_imports_what_the_pool_asks_for(tmp_path):
    """Check that CONVLAB_ZYGOTE_WARM reaches the sandboxed zygote (bubblewrap clears the
    environment): a module asked for is already imported in a forked kernel."""
    os.chmod(tmp_path, 0o711)
    s = ForkServer(tmp_path, role="student", limits=sandbox.Limits(), warm=("mailbox",))
    try:
        k = _kernel(s)
        assert _run(k, "import sys; print('mailbox' in sys.modules, 'imaplib' in sys.modules)").split() == ["True", "False"]
        k.stop()
    finally:
        s.close()


def test_an_examiner_zygote_forks_shells(tmp_path):
    """A fork server for examiners forks the IPython shell of grader/inside/shell.py (no Jupyter
    kernel): cells run, with outputs, input() answered by the grader, and errors; it imported
    SymPy for the examiner's failed comparisons (a student zygote does not)."""
    os.chmod(tmp_path, 0o711)
    s = ForkServer(tmp_path, role="examiner", limits=sandbox.Limits())
    try:
        shell = Shell.attach(*s.fork(), time.monotonic())
        shell.ready(timeout=30)
        deadline = time.monotonic() + 20
        reply = shell.run("print('in', input('q?')); 6 * 7", deadline=deadline, on_input=lambda p: p + "!")
        assert reply.status == "ok" and reply.execution_count == 1
        assert [o.output_type for o in reply.outputs] == ["stream", "execute_result"]
        assert reply.outputs[0].text == "in q?!\n" and reply.outputs[1].data["text/plain"] == "42"
        reply = shell.run("import sys; assert 'ipykernel' not in sys.modules and 'sympy' in sys.modules",
                          deadline=deadline)
        assert reply.status == "ok", reply.evalue
        reply = shell.run("raise ValueError('no')", deadline=deadline)
        assert (reply.status, reply.ename, reply.evalue) == ("error", "ValueError", "no")
        assert reply.outputs[-1].output_type == "error" and reply.outputs[-1].traceback
        shell.stop()
    finally:
        s.close()


def test_a_student_zygote_forks_student_kernels(server):
    """A student kernel is the same IPython shell (no Jupyter kernel, no SymPy imported), whose
    input() raises as in a kernel whose frontend allows no input, and which answers the
    examiner's calls through the agent; `exit()` ends it after its reply."""
    k = _kernel(server)
    deadline = time.monotonic() + 20
    assert _run(k, "import sys; print('ipykernel' in sys.modules, 'sympy' in sys.modules)").split() == ["False", "False"]
    reply = k.run("input('q?')", deadline=deadline)
    assert (reply.status, reply.ename) == ("error", "StdinNotImplementedError")
    assert k.call("hello", deadline=deadline, budget=OutputBudget()) == "error: no student agent"
    _run(k, "import sys\nclass Echo:\n    def serve(self, text):\n        print('counted, not kept')\n"
            "        return text[::-1]\nsys.modules['_convlab_agent'] = Echo()")
    budget = OutputBudget()
    assert k.call("olleh", deadline=deadline, budget=budget) == "hello" and budget.received > 0
    assert k.run("exit()", deadline=deadline).status == "ok"
    with pytest.raises(KernelDied) as died:
        k.run("1", deadline=deadline)
    assert died.value.reason == "crashed"
    k.stop()


def test_a_forked_kernel_collects_garbage_but_not_the_zygotes_imports(server):
    """Check that the collector, off while the zygote imported, is on again in a forked kernel
    (its cycles are freed), and that the imported modules' objects are frozen out of its reach."""
    k = _kernel(server)
    out = _run(k, "import gc\nclass Cycle:\n    pass\na = Cycle(); a.me = a; del a\n"
                  "print(gc.isenabled(), gc.get_freeze_count() > 100_000, gc.collect() >= 1)")
    assert out.split() == ["True", "True", "True"], out
    k.stop()


def test_the_zygotes_traceback_highlighting_is_stack_datas():
    """Check that the zygote's `_pygmented_with_ranges` (one lexer class, not one per frame) gives
    exactly stack_data's highlighting, executing-node ranges included."""
    import stack_data
    from pygments.formatters.terminal256 import Terminal256Formatter
    from pygments.styles import get_style_by_name
    from stack_data.utils import _pygmented_with_ranges as theirs

    from grader.inside import zygote

    formatter = Terminal256Formatter(style=stack_data.style_with_executing_node(get_style_by_name("default"), "bg:ansired"))
    code = "def corr2d(X, K):\n    h, w = K.shape\n    return X[i:i + h, j:j + w] * K  # the window\n"
    for ranges in ([], [(0, 3)], [(37, 60), (61, 62)], [(0, len(code))]):
        assert zygote._pygmented_with_ranges(formatter, code, ranges) == theirs(formatter, code, ranges)
    assert zygote._pygmented_with_ranges(formatter, code, [(37, 60)]) != theirs(formatter, code, [])


def test_a_forked_kernels_tracebacks_compile_no_lexer(server):
    """Check that a kernel's tracebacks (through a convlab helper, as in a demo cell calling an
    unfinished function) compile no pygments token tables: the zygote warmed them, and stack_data
    no longer makes a lexer class per frame."""
    k = _kernel(server)
    _run(k, "import pygments.lexer, torch, convlab\ncompiled = []\nmeta = pygments.lexer.RegexLexerMeta\n"
            "original = meta.process_tokendef\n"
            "meta.process_tokendef = lambda cls, *a: compiled.append(cls) or original(cls, *a)\n"
            "def corr2d(X, K):\n    raise NotImplementedError('write corr2d')")
    for cell in ("convlab.show_corr2d(corr2d, torch.ones(3, 3), torch.ones(2, 2))", "corr2d(1, 2)"):
        reply = k.run(cell, deadline=time.monotonic() + 20)
        assert reply.ename == "NotImplementedError" and "\x1b[" in "".join(reply.outputs[-1].traceback)
    assert _run(k, "print(len(compiled))").strip() == "0"
    k.stop()
