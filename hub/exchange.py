"""`nbgrader collect` that collects only what a student really handed in, when they handed it in.

nbgrader's file exchange lets every account write into `<exchange>/<course>/inbound/` (by design)
and takes the student and the time from the folder's name, `<student>+<assignment>+<timestamp>+<random>`:
its collect only logs "cheating attempt?" when the folder's owner is someone else, and copies the
folder with `shutil.copytree`, which follows symbolic links as the instructor. `VerifiedCollect`
(set as `ExchangeFactory.collect` in the instructor's nbgrader config) refuses an inbound entry,
and says so in the log at ERROR level, when

* it is not a plain folder owned by the student its name names, or that account is not one of
  the course's students (the Unix group convlab-students, which the hub keeps exactly the
  roster's students: an account of another course, or a student removed from this one, may write
  into inbound/ like anyone but hands in nothing);
* anything in it is not a plain file or folder owned by that student (a link, a FIFO, a device);
* its timestamp is not when it was handed in: later than the folder's change time, or earlier
  than the last change of anything in it by more than SUBMIT_SECONDS (nobody can set a change
  time back: a folder renamed, or a file written after the deadline, shows), or different from its
  own timestamp.txt.

Refused entries are left where they are (the instructor may look at them) and never collected; a
student's latest *valid* submission is collected instead. The checks run on the exchange as the
instructor sees it; a test plants each forgery (tests/e2e/test_boundaries.py).
"""
from __future__ import annotations

import grp
import os
import pwd
import stat
from datetime import timezone

from nbgrader.exchange.default.collect import ExchangeCollect
from nbgrader.utils import parse_utc

from hub.runtime import STUDENTS_GROUP

SUBMIT_SECONDS = 120     # how long after its timestamp nbgrader's submit may still be writing it
CLOCK_SLACK = 5          # a timestamp may be this much after the folder's change time
REFUSED = "\0refused:"   # the "student" of a refused record: a group of its own, dropped after selection


class VerifiedCollect(ExchangeCollect):
    """nbgrader's collect, on the inbound entries that pass `entry_problem` only."""

    def _path_to_record(self, path: str) -> dict:
        record = super()._path_to_record(path)
        problem = entry_problem(path, record["username"], record["timestamp"])
        if problem:
            self.log.error("NOT collected (forged or changed after it was handed in?): %s: %s",
                           os.path.basename(path), problem)
            record = dict(record, username=REFUSED + record["filename"])
        return record

    def init_src(self) -> None:
        super().init_src()
        self.src_records = [r for r in self.src_records if not r["username"].startswith(REFUSED)]


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def course_students() -> frozenset[str] | None:
    """The course's students: the members of the Unix group convlab-students, which the hub (at
    every start) and convlab-roster keep exactly the roster's students; None where there is no such
    group (not the class hub, e.g. `make instructor-lab`: no roster to check against)."""
    try:
        return frozenset(grp.getgrnam(STUDENTS_GROUP).gr_mem)
    except KeyError:
        return None


_READ = object()


def entry_problem(path: str, student: str, timestamp, students=_READ) -> str | None:
    """Why the inbound folder `path` is not `student`'s submission from `timestamp`, or None.
    `students`: the course's students (default: `course_students()`; None: no roster check)."""
    top = os.lstat(path)
    if not stat.S_ISDIR(top.st_mode):
        return "not a folder"
    if _owner(top.st_uid) != student:
        return f"it names {student} but belongs to {_owner(top.st_uid)}"
    students = course_students() if students is _READ else students
    if students is not None and student not in students:
        return f"{student} is not a student of the course (not in the Unix group {STUDENTS_GROUP})"
    stamp = parse_utc(timestamp).replace(tzinfo=timezone.utc).timestamp()   # naive UTC -> epoch
    last = top.st_ctime
    for folder, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(folder, name)
            st = os.lstat(full)
            rel = os.path.relpath(full, path)
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                return f"{rel} is not a plain file (a link, FIFO or device)"
            if _owner(st.st_uid) != student:
                return f"{rel} belongs to {_owner(st.st_uid)}, not {student}"
            last = max(last, st.st_ctime)
    if stamp > top.st_ctime + CLOCK_SLACK:
        return f"its timestamp {timestamp} is later than when the folder was made"
    if last - stamp > SUBMIT_SECONDS:
        return f"its timestamp {timestamp} is {last - stamp:.0f} s before its last change"
    text = _read_small(os.path.join(path, "timestamp.txt"))
    if text is not None and _parsed(text) != parse_utc(timestamp):
        return f"its timestamp.txt ({text[:40]!r}) differs from its name's timestamp"
    return None


def _read_small(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    with os.fdopen(fd) as f:
        return f.read(200).strip()


def _parsed(text: str):
    try:
        return parse_utc(text)
    except Exception:  # noqa: BLE001 - unreadable: differs
        return None
