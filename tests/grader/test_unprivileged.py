"""The sandbox and hostile tests again, as an ordinary user: the path most instructors take
(bubblewrap with its own user namespace), which a root CI run would otherwise never cover. Of the
hostile catalog only the cases that test the sandbox run again (test_hostile.SANDBOX_CASES).

As root, the test creates a throwaway OS user (clsetup<hex>), runs tests/grader/test_sandbox.py
and tests/grader/test_hostile.py as that user, and removes the user. The repository, the venv and
the Python it was made from must be readable by that user; where one of their parent folders is
not (e.g. a clone under /root, mode 0700), the run happens in a private mount namespace in which
that folder is made passable (a 0755 tmpfs holding bind mounts of its original entries): nothing
on the real disk changes. As an ordinary user, `make test` runs those files directly, so this
test skips.
"""
from __future__ import annotations

import os
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from grader.course import ROOT


FILES = ["tests/grader/test_sandbox.py", "tests/grader/test_hostile.py"]
# the hostile catalog's sandbox cases only (the grading logic does not depend on the user)
HOSTILE_SUBSET = {"CONVLAB_HOSTILE_CASES": "sandbox"}

# Run as root inside `unshare --mount`: make every folder on the way to the given paths passable
# for other users, then become the user and run the command.
EXPOSE = r"""
import os, subprocess, sys, tempfile
from pathlib import Path

uid, gid, stashes, paths = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4].split(os.pathsep)
cmd = sys.argv[5:]

def run(*args):
    subprocess.run(args, check=True)

for p in map(Path, paths):
    for folder in [*reversed(p.parents), p]:
        if not folder.is_dir() or os.stat(folder).st_mode & 0o001:
            continue
        stash = tempfile.mkdtemp(dir=stashes)
        run("mount", "--bind", str(folder), stash)
        entries = os.listdir(stash)
        run("mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(folder))
        for name in entries:
            src, dest = os.path.join(stash, name), folder / name
            if os.path.islink(src):
                os.symlink(os.readlink(src), dest)
                continue
            if os.path.isdir(src):
                dest.mkdir()
            else:
                dest.touch()
            run("mount", "--bind", src, str(dest))
os.execv("/usr/bin/setpriv", ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups",
                              "--", *cmd])
"""


def _unreadable(paths: list[Path]) -> list[str]:
    """Files of the repository that another user could not read (besides their folders)."""
    bad = []
    for base in paths:
        for f in [base, *base.rglob("*")] if base.is_dir() else [base]:
            if ".venv" in f.parts or f.is_symlink():
                continue
            mode = f.stat().st_mode
            need = stat.S_IROTH | (stat.S_IXOTH if f.is_dir() else 0)
            if mode & need != need:
                bad.append(str(f))
    return bad


@pytest.mark.skipif(os.geteuid() != 0, reason="not root: the sandbox and hostile tests already run as "
                    "this unprivileged user, so this root-only re-run as a throwaway user is not needed")
def test_sandbox_and_hostile_tests_pass_as_an_unprivileged_user():
    for tool in ("useradd", "userdel", "unshare", "mount"):
        assert shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists(), f"{tool} is needed to run as another user"
    name = "clsetup" + secrets.token_hex(4)
    subprocess.run(["useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                    "--user-group", name], check=True, capture_output=True)
    work = Path(tempfile.mkdtemp(prefix="clsetup-run-"))
    try:
        pw = __import__("pwd").getpwnam(name)
        unreadable = _unreadable([ROOT / d for d in ("convlab", "grader", "solutions", "notebooks", "tests")])
        assert not unreadable, (f"other users cannot read {unreadable[:5]}: clone the repository with "
                                "umask 022 so that the test user (and the sandbox) can read it")
        os.chown(work, pw.pw_uid, pw.pw_gid)
        stashes = work / "stashes"          # the original folders, bound here (root only)
        stashes.mkdir(mode=0o700)
        python = Path(sys.executable)
        exposed = [ROOT, Path(sys.prefix), Path(sys.base_prefix).resolve(), python.resolve().parent]
        env = {"PATH": f"{python.parent}:/usr/bin:/bin", "HOME": str(work), "LANG": "C.UTF-8",
               "CONVLAB_FAKE_DATA": "1", "PYTHONDONTWRITEBYTECODE": "1", "JUPYTER_PREFER_ENV_PATH": "1"}
        from tests.grader.test_hostile import NEEDS_ALL_CASES
        env.update(HOSTILE_SUBSET)
        cmd = [str(python), "-m", "pytest", *FILES, "-p", "no:cacheprovider", "-q", "-rs",
               "-k", " and ".join(f"not {t}" for t in NEEDS_ALL_CASES), f"--basetemp={work / 'pytest'}"]
        proc = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", EXPOSE,
             str(pw.pw_uid), str(pw.pw_gid), str(stashes), os.pathsep.join(map(str, exposed)), *cmd],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        summary = proc.stdout[-4000:] + proc.stderr[-2000:]
        assert proc.returncode == 0, f"as the unprivileged user {name}:\n{summary}"
        assert " passed" in proc.stdout and "skipped" not in proc.stdout, summary
    finally:
        for p in psutil.process_iter(["uids"]):
            try:
                if p.info["uids"] and p.info["uids"].real == pw.pw_uid:
                    p.kill()
            except (psutil.Error, NameError):
                pass
        subprocess.run(["userdel", "--force", name], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
