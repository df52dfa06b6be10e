"""hub/exchange.py: which inbound entries `nbgrader collect` may take, tried with each forgery a
student with a shell can make (the end-to-end test plants some of them on the real hub).

As root (to own files as other accounts: the system users `nobody` and `daemon` stand in for two
students); skipped otherwise."""
from __future__ import annotations

import os
import pwd
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hub.exchange import entry_problem

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: files owned by other accounts (chown)")

ALICE, MALLORY = "nobody", "daemon"
CLASS = frozenset({ALICE, MALLORY})         # the course's students, as the hub's Unix group would give them


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def _entry(inbound: Path, student: str, owner: str, when: datetime | None = None) -> tuple[Path, str]:
    """An inbound folder as nbgrader's submit makes it, owned by `owner`, named for `student`."""
    stamp = _stamp(when or datetime.now(timezone.utc))
    folder = inbound / f"{student}+lesson+{stamp}+r4nd"
    folder.mkdir()
    (folder / "lesson.ipynb").write_text("{}")
    (folder / "timestamp.txt").write_text(stamp)
    pw = pwd.getpwnam(owner)
    for path in (folder, *folder.iterdir()):
        os.chown(path, pw.pw_uid, pw.pw_gid, follow_symlinks=False)
    return folder, stamp


@pytest.fixture
def inbound(tmp_path):
    return tmp_path


def test_an_honest_entry_is_collected(inbound):
    folder, stamp = _entry(inbound, ALICE, ALICE)
    assert entry_problem(str(folder), ALICE, stamp, CLASS) is None


def test_an_entry_in_another_students_name_is_refused(inbound):
    folder, stamp = _entry(inbound, ALICE, MALLORY)
    problem = entry_problem(str(folder), ALICE, stamp, CLASS)
    assert problem and f"names {ALICE} but belongs to {MALLORY}" in problem


def test_a_link_inside_is_refused_and_not_followed(inbound, tmp_path_factory):
    secret = tmp_path_factory.mktemp("secret") / "solutions.ipynb"
    secret.write_text("the hidden tests")
    folder, stamp = _entry(inbound, ALICE, ALICE)
    (folder / "notes.txt").symlink_to(secret)
    os.chown(folder / "notes.txt", pwd.getpwnam(ALICE).pw_uid, -1, follow_symlinks=False)
    problem = entry_problem(str(folder), ALICE, stamp, CLASS)
    assert problem and "notes.txt is not a plain file" in problem


def test_a_fifo_inside_is_refused(inbound):
    folder, stamp = _entry(inbound, ALICE, ALICE)
    os.mkfifo(folder / "pipe")
    os.chown(folder / "pipe", pwd.getpwnam(ALICE).pw_uid, -1)
    assert "pipe is not a plain file" in (entry_problem(str(folder), ALICE, stamp, CLASS) or "")


def test_a_file_of_someone_else_inside_is_refused(inbound):
    folder, stamp = _entry(inbound, ALICE, ALICE)
    (folder / "copied.txt").write_text("x")          # owned by root
    assert "copied.txt belongs to root" in (entry_problem(str(folder), ALICE, stamp, CLASS) or "")


def test_an_entry_that_is_a_link_is_refused(inbound, tmp_path_factory):
    real, stamp = _entry(tmp_path_factory.mktemp("elsewhere"), ALICE, ALICE)
    link = inbound / real.name
    link.symlink_to(real)
    assert entry_problem(str(link), ALICE, stamp, CLASS) == "not a folder"


def test_a_backdated_entry_is_refused(inbound):
    """A timestamp from before the deadline on a folder made after it."""
    folder, stamp = _entry(inbound, ALICE, ALICE, when=datetime.now(timezone.utc) - timedelta(hours=3))
    problem = entry_problem(str(folder), ALICE, stamp, CLASS)
    assert problem and "before its last change" in problem


def test_a_file_changed_after_handing_in_is_refused(inbound, monkeypatch):
    """The student owns their inbound folder: rewriting the notebook later shows in its change time
    (nobody can set a change time back). The window is shortened to 1 s for the test."""
    import hub.exchange
    monkeypatch.setattr(hub.exchange, "SUBMIT_SECONDS", 1)
    folder, stamp = _entry(inbound, ALICE, ALICE)
    assert entry_problem(str(folder), ALICE, stamp, CLASS) is None
    time.sleep(1.5)
    (folder / "lesson.ipynb").write_text('{"the": "answer after the deadline"}')
    problem = entry_problem(str(folder), ALICE, stamp, CLASS)
    assert problem and "before its last change" in problem


def test_a_timestamp_in_the_future_is_refused(inbound):
    folder, stamp = _entry(inbound, ALICE, ALICE, when=datetime.now(timezone.utc) + timedelta(days=30))
    problem = entry_problem(str(folder), ALICE, stamp, CLASS)
    assert problem and "later than when the folder was made" in problem


def test_a_timestamp_file_that_disagrees_with_the_name_is_refused(inbound):
    folder, stamp = _entry(inbound, ALICE, ALICE)
    (folder / "timestamp.txt").write_text(_stamp(datetime.now(timezone.utc) - timedelta(minutes=1)))
    assert "timestamp.txt" in (entry_problem(str(folder), ALICE, stamp, CLASS) or "")


def test_a_slow_honest_copy_is_still_collected(inbound):
    """nbgrader's submit stamps the time first, then copies: a few seconds later is fine."""
    folder, stamp = _entry(inbound, ALICE, ALICE, when=datetime.now(timezone.utc) - timedelta(seconds=3))
    time.sleep(0.01)
    assert entry_problem(str(folder), ALICE, stamp, CLASS) is None


def test_an_entry_of_an_account_not_on_the_roster_is_refused(inbound):
    """An account of another course, or a removed student: their own honest folder hands in nothing."""
    folder, stamp = _entry(inbound, ALICE, ALICE)
    problem = entry_problem(str(folder), ALICE, stamp, frozenset({MALLORY}))
    assert problem and f"{ALICE} is not a student of the course" in problem
    assert entry_problem(str(folder), ALICE, stamp, frozenset({ALICE})) is None


@pytest.fixture
def students_group(monkeypatch):
    """A Unix group of its own standing in for convlab-students (removed afterwards, whatever happens)."""
    from hub import exchange, runtime
    name = f"convlab-test-{os.getpid()}"
    monkeypatch.setattr(runtime, "STUDENTS_GROUP", name)
    monkeypatch.setattr(exchange, "STUDENTS_GROUP", name)
    try:
        yield name
    finally:
        subprocess.run(["groupdel", name], capture_output=True)


def test_the_roster_is_read_from_the_unix_group_the_hub_keeps(inbound, students_group):
    """Check that set_students decides whose entries pass, and a student taken off is refused at once."""
    from hub import exchange, runtime
    folder, stamp = _entry(inbound, ALICE, ALICE)
    assert exchange.course_students() is None           # no such group (not the class hub): no roster check
    runtime.set_students([ALICE])
    assert exchange.course_students() == {ALICE}
    assert entry_problem(str(folder), ALICE, stamp) is None
    runtime.set_students([MALLORY])                      # ALICE removed from the roster
    assert "not a student of the course" in (entry_problem(str(folder), ALICE, stamp) or "")
