"""Where the course's files live, and how to run nbgrader on them."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
NOTEBOOKS = ROOT / "notebooks"
CONFIG = ROOT / "grader" / "nbgrader_config.py"


def assignments() -> list[str]:
    """The assignment names, in lesson order: every solutions/<name>/<name>.ipynb."""
    return sorted(p.parent.name for p in SOLUTIONS.glob("*/*.ipynb") if p.stem == p.parent.name)


def source_notebook(assignment: str) -> Path:
    return SOLUTIONS / assignment / f"{assignment}.ipynb"


def student_notebook(assignment: str) -> Path:
    return NOTEBOOKS / assignment / f"{assignment}.ipynb"


def use_this_environment() -> None:
    """Put this Python's bin/ first on PATH, in this process: nbgrader's Gradebook runs `alembic`
    from PATH when it creates a gradebook, so the grader works when started by its full path
    (`.venv/bin/python -m grader ...`) from any directory, without an activated venv."""
    bindir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[0] != bindir:
        os.environ["PATH"] = bindir + os.pathsep + path if path else bindir


def tool_env(**extra: str) -> dict[str, str]:
    """The environment for nbgrader and kernels: this Python's bin/ first on PATH (nbgrader runs
    `alembic` from PATH), this environment's kernel preferred, the offline data stand-in on,
    figures rendered inline."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["JUPYTER_PREFER_ENV_PATH"] = "1"
    env.setdefault("CONVLAB_FAKE_DATA", "1")
    # Kernels choose matplotlib's inline backend themselves; an inherited MPLBACKEND=Agg would
    # silently drop every figure from executed notebooks.
    if env.get("MPLBACKEND", "").lower() == "agg":
        del env["MPLBACKEND"]
    env.update(extra)
    return env


def nbgrader(*args: str, config_dir: Path = CONFIG.parent) -> subprocess.CompletedProcess:
    """Run `nbgrader ARGS` with the nbgrader_config.py in `config_dir` (nbgrader reads the one in
    its working directory); raise with nbgrader's own output if it fails."""
    cmd = [sys.executable, "-m", "nbgrader", *args]
    proc = subprocess.run(cmd, cwd=config_dir, env=tool_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"`nbgrader {' '.join(args)}` failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )
    return proc
