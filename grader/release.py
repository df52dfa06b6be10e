"""Generate the student versions (notebooks/) from the source notebooks (solutions/) with nbgrader."""
from __future__ import annotations

import filecmp
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .course import NOTEBOOKS, ROOT, assignments, nbgrader

BACKUPS = ROOT / "grader" / "release-backups"


def generate(out_dir: Path, names: list[str] | None = None) -> list[Path]:
    """Write the student version of each assignment to out_dir/<assignment>/; return the files.

    Uses `nbgrader generate_assignment --no-db --force`: the release does not touch the gradebook
    and is byte-for-byte reproducible.
    """
    out_dir = Path(out_dir).resolve()
    for name in names or assignments():
        nbgrader("generate_assignment", name, "--no-db", "--force", "--log-level=WARN",
                 f"--CourseDirectory.release_directory={out_dir}")
    return sorted(p for p in out_dir.rglob("*") if p.is_file())


def out_of_sync(names: list[str] | None = None) -> list[str]:
    """Files of notebooks/ that differ from a fresh release (missing ones included); [] when in sync."""
    with tempfile.TemporaryDirectory() as tmp:
        problems = []
        for fresh in generate(Path(tmp), names):
            rel = fresh.relative_to(tmp)
            committed = NOTEBOOKS / rel
            if not committed.exists():
                problems.append(f"notebooks/{rel} is missing")
            elif not filecmp.cmp(fresh, committed, shallow=False):
                problems.append(f"notebooks/{rel} differs from what solutions/ generates")
        return problems


def release(names: list[str] | None = None) -> list[str]:
    """Regenerate notebooks/ in place; return what was written.

    A student notebook with changes that are not committed (someone's work) is copied to
    grader/release-backups/<time>/ before it is replaced, so nothing anyone wrote is lost.
    """
    written = []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with tempfile.TemporaryDirectory() as tmp:
        for fresh in generate(Path(tmp), names):
            rel = fresh.relative_to(tmp)
            target = NOTEBOOKS / rel
            if target.exists() and filecmp.cmp(fresh, target, shallow=False):
                continue
            if target.exists() and not _same_as_committed(target):
                backup = BACKUPS / stamp / rel
                backup.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(target, backup)
                print(f"kept a copy of the uncommitted notebooks/{rel} in {backup.relative_to(ROOT)}")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fresh, target)
            written.append(f"notebooks/{rel}")
    return written


def _same_as_committed(path: Path) -> bool:
    """Whether the file is exactly as git's HEAD has it (False if git can't tell)."""
    rel = path.resolve().relative_to(ROOT).as_posix()
    proc = subprocess.run(["git", "show", f"HEAD:{rel}"], cwd=ROOT, capture_output=True)
    return proc.returncode == 0 and proc.stdout == path.read_bytes()
