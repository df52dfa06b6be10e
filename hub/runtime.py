"""Install the course for the class hub into a prefix of its own (run as root by `make hub-deps`).

The hub must never need the course's clone: its `solutions/` (the hidden tests) and `.git` (which
holds them too) are for the teaching staff only, and the clone may sit where no other account may
enter (`/root/convlab`). So `make hub-deps` installs what the hub runs into RUNTIME (default
/opt/convlab, or $CONVLAB_RUNTIME):

    RUNTIME/                 0755 root   what every account may read
      python/                the course's Python: a venv of the system's python3.X whose
                             site-packages are hard links to .venv's (no copy, no download), with
                             the `convlab` package copied in (not an editable link to the clone);
                             the students' servers and kernels and the instructor's grader run it
      node/                  configurable-http-proxy (hard links to .venv/node)
      jupyter/student/       the students' Jupyter config folder (JUPYTER_CONFIG_PATH)
      data/                  the course's data folder (CONVLAB_DATA_DIR): read-only for students
      staff/                 0750 root:convlab-staff: the course's files as git tracks them
                             (solutions/, grader/, hub/, notebooks/, convlab/, ...), no .git; the
                             hub's config, the instructors' Jupyter config and `hub/grade.py` run
                             from here

The students' environment names nothing under staff/. Instructors are put in the Unix group
`convlab-staff` by the hub at every start (`python -m hub.runtime --staff alice,bob`, or the hub's
config calling `set_staff`): exactly the instructors of its roster.

    python -m hub.runtime            # install or refresh RUNTIME from this clone; close the clone
    python -m hub.runtime --check    # exit 1 unless another account can run RUNTIME's Python
"""
from __future__ import annotations

import grp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
RUNTIME = Path(os.environ.get("CONVLAB_RUNTIME", "/opt/convlab"))
STAFF_GROUP = "convlab-staff"
STUDENTS_GROUP = "convlab-students"     # the roster's students (set_students): whose hand-ins count
PROBE_USER = "nobody"
SITE = f"lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
# what of the clone the staff copy leaves out besides what git ignores (.venv, results, ...)
NOT_STAFF = (".git", ".ci", "tests")


def python(runtime: Path = RUNTIME) -> Path:
    """The Python the students' servers and kernels and the instructor's grader run."""
    return runtime / "python" / "bin" / "python"


def staff_dir(runtime: Path = RUNTIME) -> Path:
    """The staff's copy of the course (hub config, grade.py, solutions/): group convlab-staff."""
    return runtime / "staff"


def runnable_by_others(interpreter: Path, imports: str = "torch, jupyterhub, nbgrader, convlab") -> bool:
    """Can an unprivileged account start `interpreter` and import the course's packages?"""
    if os.geteuid() != 0:
        return True   # nothing to check as a normal user (and no hub to run)
    proc = subprocess.run(["runuser", "-u", PROBE_USER, "--", str(interpreter), "-c", f"import {imports}"],
                          capture_output=True, text=True, cwd="/")
    return proc.returncode == 0


def _system_python() -> Path:
    """A python3.X (this one's version) that every account may run: Debian's, or /usr/local's."""
    name = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for cand in (Path("/usr/bin") / name, Path("/usr/local/bin") / name, Path(sys.base_prefix) / "bin" / name):
        if cand.exists() and os.access(cand, os.X_OK) and runnable_by_others(cand, "sys"):
            return cand
    raise SystemExit(f"error: no {name} that every account may run (the course's own, {sys.base_prefix}, is "
                     f"private): install one (Debian: apt-get install -y {name} {name}-venv) or make .venv "
                     f"from one (make clean-venv && make venv PYTHON=/path/to/{name})")


def _link_tree(src: Path, dest: Path) -> None:
    """dest as hard links to src's files (one disk, no copy); a real copy across file systems."""
    if subprocess.run(["cp", "-al", str(src), str(dest)], capture_output=True).returncode != 0:
        shutil.rmtree(dest, ignore_errors=True)
        subprocess.run(["cp", "-a", str(src), str(dest)], check=True)


def _match_interpreter(interpreter: Path) -> None:
    """The lock's packages for this interpreter: the system's Python can be an older patch release
    than .venv's (Debian 12: 3.11.2), and the lock picks some versions by it (soupsieve 4 needs
    3.11.5; with 4 on 3.11.2 nbconvert's HTML export, so formgrader, fails). pip changes only what
    differs; it unlinks the hard links it replaces (never .venv's files)."""
    lock = VENV / "requirements-cpu.txt" if (VENV / "requirements-cpu.txt").exists() else ROOT / "requirements.txt"
    subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "--python", str(interpreter), "install", "--quiet",
                    "--no-deps", "--requirement", str(lock)], check=True)


def _build_python(dest: Path) -> None:
    """A venv at `dest` (built in a sibling folder, then swapped in) runnable by every account."""
    tmp = dest.with_name(dest.name + ".new")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run([str(_system_python()), "-m", "venv", "--without-pip", str(tmp)], check=True)
    shutil.rmtree(tmp / SITE)
    _link_tree(VENV / SITE, tmp / SITE)
    _match_interpreter(tmp / "bin" / "python")
    for name in os.listdir(tmp / SITE):     # the editable install points into the clone: unlink it
        if name.startswith(("__editable__", "__editable___convlab")) or name.startswith("convlab-"):
            path = tmp / SITE / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    shebangs = (f"#!{VENV / 'bin'}/", f"#!{VENV.resolve() / 'bin'}/")   # .venv may be a link
    for script in (VENV / "bin").iterdir():
        target = tmp / "bin" / script.name
        if target.exists() or script.is_symlink() or not script.is_file():
            continue
        try:
            text = script.read_text()
        except UnicodeDecodeError:
            continue
        if text.startswith(shebangs):
            target.write_text(f"#!{dest / 'bin' / 'python'}" + text[len(text.split(chr(10))[0]):])
            target.chmod(0o755)
    for folder in ("etc", "share"):         # the server extensions enabled; kernel spec; fonts list
        if (VENV / folder).exists():
            _link_tree(VENV / folder, tmp / folder)
    spec = tmp / "share" / "jupyter" / "kernels" / "python3" / "kernel.json"
    if spec.exists():
        data = json.loads(spec.read_text())
        data["argv"][0] = str(dest / "bin" / "python")
        spec.unlink()                       # a hard link: never edit .venv's copy
        spec.write_text(json.dumps(data, indent=1))
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)


def _tracked_files() -> list[str]:
    """The clone's files as git tracks them (working-tree content), or every file if no git."""
    proc = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                          capture_output=True)
    if proc.returncode == 0:
        names = [n for n in proc.stdout.decode().split("\0") if n]
    else:
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file() and ".venv" not in p.parts]
    return [n for n in names if n.split("/")[0] not in NOT_STAFF and (ROOT / n).is_file()]


def stale(runtime: Path = RUNTIME) -> list[str]:
    """The clone's files whose staff copy differs or is missing (`make hub-deps` refreshes them)."""
    staff = staff_dir(runtime)
    return [n for n in _tracked_files()
            if not (staff / n).is_file() or (staff / n).read_bytes() != (ROOT / n).read_bytes()]


def _copy_files(names: list[str], dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".new")
    shutil.rmtree(tmp, ignore_errors=True)
    for name in names:
        target = tmp / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target, follow_symlinks=False)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)


def _refresh_course(runtime: Path) -> None:
    """What changes with the clone's files: convlab in site-packages, the student config, data/,
    the staff copy (private to the staff group)."""
    site = runtime / "python" / SITE / "convlab"
    shutil.rmtree(site, ignore_errors=True)
    shutil.copytree(ROOT / "convlab", site, ignore=shutil.ignore_patterns("__pycache__"))
    jupyter = runtime / "jupyter" / "student"
    shutil.rmtree(jupyter, ignore_errors=True)
    shutil.copytree(ROOT / "hub" / "jupyter" / "student", jupyter, ignore=shutil.ignore_patterns("__pycache__"))
    grade = runtime / "python" / "bin" / "convlab-grade"     # the instructors' command (on their PATH)
    grade.write_text(f"#!/bin/sh\n# The instructor's grading step on the class hub: {staff_dir(runtime)}/hub/grade.py\n"
                     f"exec {python(runtime)} {staff_dir(runtime) / 'hub' / 'grade.py'} \"$@\"\n")
    grade.chmod(0o755)
    # root's (convlab-roster, convlab-proxy) and the staff's (convlab-backup) commands
    for name, script in (("convlab-roster", "roster.py"), ("convlab-proxy", "proxy.py"), ("convlab-backup", "backup.py")):
        cmd = runtime / "python" / "bin" / name
        cmd.write_text(f"#!/bin/sh\n# The class hub's {script}: {staff_dir(runtime)}/hub/{script}\n"
                       f"exec {python(runtime)} {staff_dir(runtime) / 'hub' / script} \"$@\"\n")
        cmd.chmod(0o755)
    data = runtime / "data"
    if not data.exists():
        _link_tree(ROOT / "data", data)
    _ensure_group()
    staff = staff_dir(runtime)
    _copy_files(_tracked_files(), staff)
    subprocess.run([str(python(runtime)), "-m", "compileall", "-q", str(staff / "grader"), str(staff / "hub"),
                    str(staff / "convlab"), str(site)], check=True, capture_output=True)
    gid = grp.getgrnam(STAFF_GROUP).gr_gid
    for path in [staff, *staff.rglob("*")]:
        os.chown(path, 0, gid, follow_symlinks=False)
        if not path.is_symlink():
            path.chmod(0o750 if path.is_dir() or path.stat().st_mode & 0o100 else 0o640)


def _ensure_group(name: str = STAFF_GROUP) -> None:
    try:
        grp.getgrnam(name)
    except KeyError:
        subprocess.run(["groupadd", "--system", name], check=True, capture_output=True)


def _set_members(group: str, members: list[str]) -> None:
    """The system group `group` (made if missing) holds exactly `members`."""
    _ensure_group(group)
    subprocess.run(["gpasswd", "--members", ",".join(members), group], check=True, capture_output=True)


def set_staff(members: list[str]) -> None:
    """The Unix group convlab-staff holds exactly `members` (the hub's instructors): who may read
    the staff copy (solutions, hidden tests). Someone removed from the roster loses it at once."""
    _set_members(STAFF_GROUP, members)


def set_students(members: list[str]) -> None:
    """The Unix group convlab-students holds exactly `members` (the hub's students): whose
    submissions are collected and graded (hub/exchange.py). It gives no right to any file; someone
    removed from the roster leaves it at once, and what they hand in afterwards is refused."""
    _set_members(STUDENTS_GROUP, members)


def install(runtime: Path = RUNTIME) -> None:
    """Build (or refresh) RUNTIME from this clone: the Python only when .venv changed."""
    runtime.mkdir(parents=True, exist_ok=True)
    runtime.chmod(0o755)
    stamp = runtime / "python" / ".built-from"
    current = f"{VENV}:{(VENV / '.installed').stat().st_mtime_ns if (VENV / '.installed').exists() else '?'}"
    if not (stamp.exists() and stamp.read_text() == current and runnable_by_others(python(runtime), "torch")):
        _build_python(runtime / "python")
        stamp.write_text(current)
    if (VENV / "node").exists():
        shutil.rmtree(runtime / "node", ignore_errors=True)
        _link_tree(VENV / "node", runtime / "node")
    _refresh_course(runtime)
    for d in [runtime / "python", *(runtime / "python").rglob("*")]:
        if d.is_dir() and not d.is_symlink():
            d.chmod(d.stat().st_mode | 0o755)
    if not runnable_by_others(python(runtime)):
        raise SystemExit(f"error: installed {runtime}, but another account cannot run {python(runtime)}: "
                         f"is {runtime} or a folder above it closed to other accounts?")


def close_clone(root: Path = ROOT) -> None:
    """The clone holds solutions/ and .git, and the hub never needs it: no other account may enter
    it (only its top folder's mode changes: group and others lose every bit)."""
    mode = root.stat().st_mode
    if mode & 0o077:
        root.chmod(mode & ~0o077)
        print(f"hub.runtime: made {root} private ({mode & 0o777:o} -> {mode & 0o700:o}): it holds solutions/ "
              f"and .git; the hub runs from {RUNTIME}", file=sys.stderr)


def main(argv: list[str]) -> int:
    if "--check" in argv:
        ok = runnable_by_others(python())
        print(f"{python()}: {'runnable' if ok else 'NOT runnable'} by other accounts")
        return 0 if ok else 1
    if os.geteuid() != 0:
        print("hub.runtime: not root, nothing to do (the hub needs root)")
        return 0
    if "--staff" in argv:
        set_staff([n for n in argv[argv.index("--staff") + 1].split(",") if n])
        return 0
    install()
    close_clone()
    print(f"hub runtime: {RUNTIME} (students: {python()}; staff only: {staff_dir()})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
