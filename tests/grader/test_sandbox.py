"""grader/sandbox.py: what the sandbox binds, that only /tmp and the IPC folder are writable,
and that it starts and is killed. (tests/grader/test_unprivileged.py runs this file again as an
ordinary user when the tests run as root.)"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from grader import sandbox
from grader.course import ROOT


def test_bwrap_command_binds_only_what_is_needed(tmp_path):
    cmd = sandbox.bwrap_prefix(tmp_path, uid=2**30 + 5)
    binds = [(cmd[i], cmd[i + 1], cmd[i + 2]) for i, a in enumerate(cmd) if a in ("--ro-bind", "--bind")]
    sources = {Path(src) for _, src, _ in binds}
    assert ROOT / "convlab" in sources
    for secret in (ROOT / "solutions", ROOT / "grader", ROOT, Path("/root"), Path("/home")):
        assert secret not in sources
    assert [b for b in binds if b[0] == "--bind"] == [("--bind", str(tmp_path), sandbox.KERNEL_DIR)]
    for flag in ("--unshare-net", "--unshare-pid", "--die-with-parent", "--clearenv", "--no-new-privs"):
        assert flag in cmd or any(a.startswith(flag) for a in cmd)
    assert f"--reuid={2**30 + 5}" in cmd


def test_sandbox_runs_python_without_network_and_course(tmp_path):
    sandbox.check_sandbox()
    code = ("import os, socket\n"
            f"print(os.path.exists({str(ROOT / 'solutions')!r}), os.path.exists({str(ROOT / 'convlab')!r}))\n"
            "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=2); print('net')\n"
            "except OSError:\n    print('no net')\n")
    import os
    uid = sandbox._fresh_uid() if os.geteuid() == 0 else None
    if uid is not None:
        os.chown(tmp_path, uid, uid)
    cmd = sandbox.bwrap_prefix(tmp_path, uid=uid) + [str(sandbox.PYTHON), "-c", code]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.split()
    assert out == ["False", "True", "no", "net"]


def test_descendants_finds_grandchildren_and_not_the_process_itself():
    """Check that sandbox.descendants lists a process's children and their children, nothing else."""
    proc = subprocess.Popen(["sh", "-c", "sleep 30 & sh -c 'sleep 31 & wait' & wait"])
    try:
        for _ in range(100):
            found = {p.pid: p.cmdline() for p in sandbox.descendants(proc.pid)}
            if sum(cmd[:1] == ["sleep"] for cmd in found.values()) == 2:
                break
            time.sleep(0.05)
        assert proc.pid not in found
        assert sorted(cmd for cmd in found.values() if cmd[:1] == ["sleep"]) == [["sleep", "30"], ["sleep", "31"]]
        assert len(found) == 3, found          # the two sleeps and the inner sh
    finally:
        sandbox.kill_tree(proc)
    assert sandbox.descendants(proc.pid) == []


def test_kill_stops_the_whole_tree(tmp_path):
    from grader.shell_client import Shell
    k = Shell.start(tmp_path, role="student", sandbox=True, limits=sandbox.Limits())
    k.process.kill("timeout")
    assert not k.process.alive() and k.process.killed == "timeout"
    k.stop()


def _run_in_sandbox(tmp_path: Path, code: str) -> list[str]:
    uid = sandbox._fresh_uid() if os.geteuid() == 0 else None
    if uid is not None:
        os.chown(tmp_path, uid, uid)
    cmd = sandbox.bwrap_prefix(tmp_path, uid=uid) + [str(sandbox.PYTHON), "-c", code]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_only_tmp_and_the_ipc_folder_are_writable(tmp_path):
    """Student code cannot create anything at the course's paths, not even in the sandbox's own
    skeleton (which, under the fork server, would outlive the submission)."""
    read_only = ["/", str(ROOT), str(ROOT.parent), str(ROOT / "convlab"), str(sandbox.VENV), "/usr",
                 "/run", "/etc"]
    if ROOT.parent == Path("/tmp"):
        read_only.remove("/tmp")       # a course under /tmp: its folder is read-only, /tmp is not
    writable = ["/tmp", sandbox.KERNEL_DIR]
    code = ("import os\n"
            f"for d in {read_only + writable!r}:\n"
            "    for attempt in (lambda p: open(p, 'w').close(), os.mkdir):\n"
            "        p = os.path.join(d, 'pwned')\n"
            "        try:\n"
            "            attempt(p)\n"
            "            print('WROTE:' + d)\n"
            "            os.rmdir(p) if os.path.isdir(p) else os.remove(p)\n"
            "        except OSError:\n"
            "            print('refused:' + d)\n")
    out = _run_in_sandbox(tmp_path, code)
    for d in read_only:
        assert out.count(f"refused:{d}") == 2, f"the sandbox could write to {d}: {out}"
    for d in writable:
        assert out.count(f"WROTE:{d}") == 2, f"the sandbox could not write to {d}: {out}"
