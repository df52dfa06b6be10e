"""Back up the course's gradebook while the hub runs: `convlab-backup` (an instructor, or root's cron).

    convlab-backup                        # COURSE/backups/gradebook-20261207T064500Z.db
    convlab-backup --restore FILE         # put a backup back (the current gradebook is backed up first)
    convlab-backup --course DIR           # another course folder (default: $CONVLAB_COURSE_DIR, else ~/convlab)

A copy with SQLite's online backup API (`sqlite3.Connection.backup`): a consistent snapshot of
what was committed, taken while formgrader or a grading run may be writing (a plain `cp` of a
database being written can copy half a transaction). Each backup is checked (`PRAGMA
integrity_check`) before it gets its dated name. The folder COURSE/backups is inside the staff's
course folder (group convlab-staff, mode 2770: no student may enter it); each file is 0640 (the
staff may read it, nobody may change it by accident). Old backups are never deleted by this
command (a dated name each time; prune them by hand or with `--keep N`).

Restoring: stop grading (nobody runs `convlab-grade` or formgrader's buttons), then
`convlab-backup --restore COURSE/backups/gradebook-....db`. It first backs up the gradebook as it is
(so a restore can be undone), then copies the backup into the live gradebook with the same API:
the gradebook keeps its owner, group and mode (0660, convlab-staff) and every instructor's open
formgrader sees the restored data at its next query.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sqlite3
import sys
from pathlib import Path

GRADEBOOK = "gradebook.db"


def default_course() -> Path:
    return Path(os.environ.get("CONVLAB_COURSE_DIR") or Path("~/convlab").expanduser())


def _connect_ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)


def _check(path: Path) -> None:
    with _connect_ro(path) as db:
        result = db.execute("PRAGMA integrity_check").fetchone()[0]
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if result != "ok":
        raise SystemExit(f"error: {path} is damaged ({result})")
    if not {"student", "assignment", "submitted_assignment"} <= tables:
        raise SystemExit(f"error: {path} is not an nbgrader gradebook (no student/assignment tables)")


def backup(course: Path, when: dt.datetime | None = None) -> Path:
    """A dated, checked copy of course/gradebook.db in course/backups (made 2770 if missing)."""
    db = course / GRADEBOOK
    if not db.is_file() or db.stat().st_size == 0:
        raise SystemExit(f"error: {db} does not exist or is empty: nothing to back up")
    folder = course / "backups"
    if not folder.is_dir():
        folder.mkdir(mode=0o2770)
        folder.chmod(0o2770)              # the staff's alone (the course folder's group, setgid)
    stamp = (when or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%S%fZ")
    final = folder / f"gradebook-{stamp}.db"
    tmp = folder / f".{final.name}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
    os.close(fd)
    try:
        src, dst = _connect_ro(db), sqlite3.connect(tmp)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
        os.chmod(tmp, 0o640)
        _check(tmp)
        os.link(tmp, final)               # never replaces an existing backup
    finally:
        tmp.unlink(missing_ok=True)
    return final


def restore(course: Path, source: Path) -> Path:
    """Copy `source` (a backup) into course/gradebook.db; returns the backup of what was there."""
    _check(source)
    db = course / GRADEBOOK
    undo = backup(course)
    src, dst = _connect_ro(source), sqlite3.connect(db)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    _check(db)
    return undo


def prune(course: Path, keep: int) -> list[Path]:
    old = sorted((course / "backups").glob("gradebook-*.db"))[:-keep] if keep > 0 else []
    for path in old:
        path.unlink()
    return old


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="convlab-backup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--course", type=Path, default=None, help="the course folder (default: %(default)s)")
    parser.add_argument("--restore", type=Path, metavar="FILE", help="put this backup back")
    parser.add_argument("--keep", type=int, default=0, metavar="N",
                        help="after backing up, delete all but the N newest backups (default: keep all)")
    args = parser.parse_args(argv)
    course = (args.course or default_course()).expanduser().resolve()
    os.umask(0o007)
    try:
        if args.restore:
            undo = restore(course, args.restore.expanduser().resolve())
            print(f"restored {course / GRADEBOOK} from {args.restore}; what it held before is in {undo}")
        else:
            print(f"backed up {course / GRADEBOOK} to {backup(course)}")
            for path in prune(course, args.keep):
                print(f"deleted the old backup {path}")
    except PermissionError as err:
        print(f"convlab-backup: error: {err.filename}: permission denied (the gradebook and its backups are "
              f"the course staff's only)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
