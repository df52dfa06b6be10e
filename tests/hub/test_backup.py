"""hub/backup.py: a gradebook backed up while another connection writes to it (only what was
committed is in the backup), its modes, restoring it, and refusing what is not a gradebook."""
from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import stat
import sys

import pytest
from nbgrader.api import Gradebook

from hub import backup

PATH = os.environ.get("PATH", "")


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """An nbgrader gradebook with one student (made once: nbgrader runs alembic)."""
    path = tmp_path_factory.mktemp("template") / "gradebook.db"
    os.environ["PATH"] = f"{os.path.dirname(sys.executable)}:{PATH}"
    try:
        with Gradebook(f"sqlite:///{path}") as gb:
            gb.add_student("ada", first_name="Ada", last_name="Lovelace")
    finally:
        os.environ["PATH"] = PATH
    return path


@pytest.fixture
def course(tmp_path, template):
    shutil.copyfile(template, tmp_path / "gradebook.db")
    return tmp_path


def _students(db) -> set[str]:
    with sqlite3.connect(db) as con:
        return {r[0] for r in con.execute("SELECT id FROM student")}


def test_a_backup_holds_what_was_committed_even_while_someone_writes(course):
    writer = sqlite3.connect(course / "gradebook.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")                              # a grading run, mid-transaction
    writer.execute("INSERT INTO student (id) VALUES ('uncommitted')")
    try:
        made = backup.backup(course)
    finally:
        writer.execute("COMMIT")
        writer.close()
    assert made.parent == course / "backups" and made.name.startswith("gradebook-20")
    assert _students(made) == {"ada"}
    assert _students(course / "gradebook.db") == {"ada", "uncommitted"}
    assert stat.S_IMODE(made.stat().st_mode) == 0o640
    assert stat.S_IMODE(made.parent.stat().st_mode) == 0o2770
    assert [p.name for p in made.parent.iterdir()] == [made.name]         # no temporary file left


def test_backups_are_dated_and_never_replaced(course):
    t = dt.datetime(2026, 12, 7, 6, 45, tzinfo=dt.timezone.utc)
    first = backup.backup(course, when=t)
    assert first.name == "gradebook-20261207T064500000000Z.db"
    with pytest.raises(FileExistsError):
        backup.backup(course, when=t)
    assert _students(first) == {"ada"}


def test_a_restore_puts_the_backup_back_and_keeps_what_it_replaced(course):
    saved = backup.backup(course, when=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    db = course / "gradebook.db"
    os.chmod(db, 0o660)
    with sqlite3.connect(db) as con:
        con.execute("DELETE FROM student")                                # an accident
    undo = backup.restore(course, saved)
    assert _students(db) == {"ada"} and _students(undo) == set()
    assert stat.S_IMODE(db.stat().st_mode) == 0o660                       # the gradebook keeps its mode


def test_what_is_not_a_gradebook_is_refused(course, tmp_path):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE x (y)")
    before = _students(course / "gradebook.db")
    with pytest.raises(SystemExit, match="not an nbgrader gradebook"):
        backup.restore(course, other)
    assert _students(course / "gradebook.db") == before
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit, match="nothing to back up"):
        backup.backup(empty)


def test_keep_prunes_the_oldest(course):
    for day in (1, 2, 3):
        backup.backup(course, when=dt.datetime(2026, 1, day, tzinfo=dt.timezone.utc))
    gone = backup.prune(course, 2)
    assert [p.name[:18] for p in gone] == ["gradebook-20260101"]
    assert len(list((course / "backups").iterdir())) == 2
