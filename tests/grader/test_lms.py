"""grader/lms.py: the Canvas and Moodle gradebook files, through `nbgrader export --exporter=...` on
a gradebook with a roster (names, emails, LMS ids), auto scores, a manual grade, a late penalty
and missing work; each file checked against the column format its LMS documents."""
from __future__ import annotations

import csv
import re
import shutil
import warnings

import pytest
from nbgrader.api import Gradebook

from grader import lms
from grader.course import nbgrader, use_this_environment

from .conftest import write_course

A1, A2 = "01_cross_correlation", "02_edge_detection"
# id -> (first name, last name, email, Canvas user id)
ROSTER = {
    "ann": ("Ann", "Lee", "ann@example.edu", "1001"),
    "bob": ("Bob", "O'Hara, Jr.", "bob@example.edu", "1002"),     # a comma and a quote in a name
    "cy": ("", "", "", ""),                                        # made by autograde: only an id
}


@pytest.fixture(scope="module")
def gradebook(tmp_path_factory, course_config):
    """A course of its own (the session's gradebook copied: it knows every assignment; without the
    students other tests graded into it) with the roster, and: ann's A1 every cell right but one, which an instructor graded by hand to half
    marks, and A2 handed in late with a penalty of 2; bob's A1 all wrong (0); cy's A1 all right;
    bob and cy have no A2. Returns (course folder, db_url, the expected final scores)."""
    use_this_environment()
    course = tmp_path_factory.mktemp("lms-course")
    write_course(course)
    shutil.copyfile(course_config / "gradebook.db", course / "gradebook.db")
    db_url = f"sqlite:///{course}/gradebook.db"
    expected: dict[tuple[str, str], float | None] = {}
    with Gradebook(db_url) as gb:
        for student in list(gb.students):       # what other tests of the session graded into it
            gb.remove_student(student.id)
        for sid, (first, last, email, lms_id) in ROSTER.items():
            gb.add_student(sid, first_name=first or None, last_name=last or None, email=email or None,
                           lms_user_id=lms_id or None)
        for sid, assignment in (("ann", A1), ("ann", A2), ("bob", A1), ("cy", A1)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")         # SQLAlchemy chatter that nbgrader emits
                gb.add_submission(assignment, sid, timestamp="2026-03-02 09:00:00 UTC")
            nb = gb.find_submission_notebook(assignment, assignment, sid)
            for i, grade in enumerate(sorted(nb.grades, key=lambda g: g.name)):
                grade.auto_score = 0.0 if sid == "bob" else grade.max_score
                if sid == "ann" and assignment == A1 and i == 0:
                    grade.auto_score, grade.manual_score = 0.0, grade.max_score / 2     # graded by hand
            if sid == "ann" and assignment == A2:
                nb.late_submission_penalty = 2.0
            gb.db.commit()
        for sid in ROSTER:
            for a in (A1, A2):
                try:
                    sub = gb.find_submission(a, sid)
                except Exception:  # noqa: BLE001 - MissingEntry: no submission
                    expected[(sid, a)] = None
                    continue
                nb = gb.find_submission_notebook(a, a, sid)
                total = sum(g.manual_score if g.manual_score is not None else g.auto_score for g in nb.grades)
                expected[(sid, a)] = max(0.0, total - (nb.late_submission_penalty or 0))
                assert sub.score == pytest.approx(total)
        max_scores = {a.name: a.max_score for a in gb.assignments}
    assert expected[("ann", A1)] < max_scores[A1] and expected[("ann", A2)] == max_scores[A2] - 2
    return course, db_url, expected, max_scores


def _export(course, exporter: str, dest, *args: str) -> list[list[str]]:
    nbgrader("export", f"--exporter=grader.lms.{exporter}", f"--to={dest}", *args, config_dir=course)
    with open(dest, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def _canvas_header_ok(row: list[str]) -> int:
    """The number of student columns Canvas's importer finds in this header, or 0 if it rejects it
    (the checks of canvas-lms app/models/gradebook_importer.rb: header?, update_column_count)."""
    if not (len(row) > 3 and re.search("Student", row[0]) and re.search("ID", row[1])):
        return 0
    columns = 3
    if re.search(r"SIS\s+Login\s+ID", row[2]):
        columns += 1
    elif re.search(r"SIS\s+User\s+ID", row[2]) and re.search(r"SIS\s+Login\s+ID", row[3]):
        columns += 2
    return columns if re.search("Section", row[columns - 1]) else 0


def test_canvas_file_follows_canvas_import_format(gradebook, tmp_path):
    """Check the header Canvas recognises (five student columns, then one per assignment), the
    Points Possible row, each student's name, Canvas user id and login id, and the final scores:
    the manual grade counted, the late penalty taken off, missing work blank."""
    course, _, expected, max_scores = gradebook
    rows = _export(course, "CanvasExportPlugin", tmp_path / "canvas.csv")
    header, points, students = rows[0], rows[1], rows[2:]
    assert header[:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    assert _canvas_header_ok(header) == 5
    assignments = header[5:]
    assert assignments == sorted(max_scores)
    assert re.search("Points Possible", points[0]) and points[1:5] == ["", "", "", ""]
    assert [float(p) for p in points[5:]] == [max_scores[a] for a in assignments]
    by_login = {r[3]: r for r in students}
    assert set(by_login) == set(ROSTER)
    assert by_login["ann"][:5] == ["Lee, Ann", "1001", "", "ann", ""]
    assert by_login["bob"][0] == "O'Hara, Jr., Bob" and by_login["cy"][:2] == ["cy", ""]
    for sid, row in by_login.items():
        for a, cell in zip(assignments, row[5:]):
            want = expected.get((sid, a))
            assert (cell == "") if want is None else (float(cell) == pytest.approx(want)), (sid, a, cell, want)
    assert by_login["ann"][5 + assignments.index(A2)] == f"{max_scores[A2] - 2:g}"


def test_moodle_file_has_an_identity_column_and_one_column_per_assignment(gradebook, tmp_path):
    """Check Moodle's columns (first and last name, the id to map to username, email, then one
    column per assignment named by it) and the final scores, missing work 0."""
    course, _, expected, max_scores = gradebook
    rows = _export(course, "MoodleExportPlugin", tmp_path / "moodle.csv")
    header, students = rows[0], rows[1:]
    assert header[:4] == ["First name", "Last name", "Username", "Email address"]
    assignments = header[4:]
    assert assignments == sorted(max_scores)
    by_id = {r[2]: r for r in students}
    assert by_id["ann"][:4] == ["Ann", "Lee", "ann", "ann@example.edu"]
    assert by_id["bob"][1] == "O'Hara, Jr."
    for sid, row in by_id.items():
        for a, cell in zip(assignments, row[4:]):
            want = expected.get((sid, a))
            assert float(cell) == pytest.approx(0.0 if want is None else want), (sid, a, cell)
            assert re.fullmatch(r"\d+(\.\d+)?", cell), cell          # a decimal point, no thousands


def test_options_choose_columns_assignments_and_missing_scores(gradebook, tmp_path):
    """Check the plugins' options in-process: Canvas ids in headers ('name (id)', what Canvas
    matches by id), the SIS User ID column, only some assignments and students (nbgrader's
    --assignment / --student), and another score for missing work."""
    _, db_url, _, _ = gradebook
    with Gradebook(db_url) as gb:
        canvas = lms.CanvasExportPlugin(assignment_ids={A1: 4321}, id_column="SIS User ID", section="S1",
                                        assignment=[A1, A2], student=["ann", "cy"], missing_score="0")
        table = canvas.table(gb)
        assert table[0][5:] == [f"{A1} (4321)", A2]
        assert [r[2:5] for r in table[2:]] == [["cy", "", "S1"], ["ann", "", "S1"]]    # by last name, then id
        assert table[2][6] == "0"
        moodle = lms.MoodleExportPlugin(id_column="ID number", assignment=[A2], missing_score="")
        table = moodle.table(gb)
        assert table[0] == ["First name", "Last name", "ID number", "Email address", A2]
        assert {r[2]: r[4] for r in table[1:]}["bob"] == ""
