"""Make the course's environment runnable by every account of the hub (run as root by `make hub-deps`).

The hub starts each user's server, kernels and the instructor's grader as that user, so the
course's Python must be executable by all. A venv is a thin layer over its base interpreter; when
that interpreter is private (e.g. pyenv under /root, mode 0700, as on the course's CI machines),
other accounts cannot start it. Then this builds `.venv/hub`: a venv of the system's Python of the
same major.minor version (Debian's /usr/bin/python3.11), whose site-packages are hard links to
.venv's (no copy, no download), with the console scripts and the kernel spec pointing at it. The
hub (hub/jupyterhub_config.py) uses .venv/hub when it exists, else .venv.

    python hub/shared_env.py            # build or refresh .venv/hub when needed; print which is used
    python hub/shared_env.py --check    # exit 1 if the hub's environment is not runnable by others
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
SHARED = VENV / "hub"
PROBE_USER = "nobody"
SITE = f"lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"


def runnable_by_others(python: Path) -> bool:
    """Can an unprivileged account start this interpreter and import the course's packages?"""
    if os.geteuid() != 0:
        return True   # nothing to check as a normal user (and no hub to run)
    proc = subprocess.run(["runuser", "-u", PROBE_USER, "--", str(python), "-c", "import torch, jupyterhub, nbgrader"],
                          capture_output=True, text=True, cwd="/")
    return proc.returncode == 0


def system_python() -> Path:
    name = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for cand in (Path("/usr/bin") / name, Path("/usr/local/bin") / name):
        if cand.exists() and os.access(cand, os.X_OK) and cand.stat().st_mode & 0o001:
            return cand
    raise SystemExit(f"error: the course's Python ({sys.base_prefix}) cannot be run by other accounts, and there "
                     f"is no system {name} to build .venv/hub from: install it (Debian: apt-get install -y "
                     f"{name} {name}-venv) or create .venv from a Python all users can run "
                     f"(make clean-venv && make venv PYTHON=/path/to/{name})")


def build() -> None:
    base = system_python()
    if SHARED.exists():
        shutil.rmtree(SHARED)
    subprocess.run([str(base), "-m", "venv", "--without-pip", str(SHARED)], check=True)
    dest = SHARED / SITE
    shutil.rmtree(dest)
    # Hard links: the same files, no extra disk; .pth files (convlab's editable install) included.
    subprocess.run(["cp", "-al", str(VENV / SITE), str(dest)], check=True)
    shebang_old = f"#!{VENV / 'bin'}/"
    for script in (VENV / "bin").iterdir():
        target = SHARED / "bin" / script.name
        if target.exists() or script.is_symlink() or not script.is_file():
            continue
        try:
            text = script.read_text()
        except UnicodeDecodeError:
            continue
        if text.startswith(shebang_old):
            target.write_text(f"#!{SHARED / 'bin' / 'python'}" + text[len(text.split(chr(10))[0]):])
            target.chmod(0o755)
    if (VENV / "etc").exists():                    # the server extensions enabled in .venv
        subprocess.run(["cp", "-al", str(VENV / "etc"), str(SHARED / "etc")], check=True)
    if (VENV / "share").exists():
        subprocess.run(["cp", "-al", str(VENV / "share"), str(SHARED / "share")], check=True)
        spec = SHARED / "share" / "jupyter" / "kernels" / "python3" / "kernel.json"
        if spec.exists():
            data = json.loads(spec.read_text())
            data["argv"][0] = str(SHARED / "bin" / "python")
            spec.unlink()                      # a hard link: do not edit .venv's copy
            spec.write_text(json.dumps(data, indent=1))
    for d in [SHARED, *SHARED.rglob("*")]:
        if d.is_dir():
            d.chmod(d.stat().st_mode | 0o755)


def hub_python() -> Path:
    return SHARED / "bin" / "python" if (SHARED / "bin" / "python").exists() else VENV / "bin" / "python"


def main(argv: list[str]) -> int:
    if "--check" in argv:
        ok = runnable_by_others(hub_python())
        print(f"{hub_python()}: {'runnable' if ok else 'NOT runnable'} by other accounts")
        return 0 if ok else 1
    if os.geteuid() != 0:
        print("shared_env: not root, nothing to do (the hub needs root)")
        return 0
    if runnable_by_others(VENV / "bin" / "python"):
        if SHARED.exists():
            shutil.rmtree(SHARED)
        print(f"hub environment: {VENV} (runnable by every account)")
        return 0
    stamp = SHARED / ".built-from"
    current = str((VENV / ".installed").stat().st_mtime_ns) if (VENV / ".installed").exists() else "?"
    if not (stamp.exists() and stamp.read_text() == current and runnable_by_others(hub_python())):
        build()
        if not runnable_by_others(hub_python()):
            closed = [str(p) for p in reversed(SHARED.parents) if p.is_dir() and not os.stat(p).st_mode & 0o001]
            raise SystemExit(f"error: built {SHARED}, but another account still cannot run it"
                             + (f": other accounts cannot enter {closed[0]} (mode {oct(os.stat(closed[0]).st_mode & 0o777)});"
                                " clone the course where every account may pass (e.g. chmod o+x that folder)"
                                if closed else ""))
        stamp.write_text(current)
    print(f"hub environment: {SHARED} (hard links to {VENV}; its base Python is private)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
