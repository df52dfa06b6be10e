"""The class cycle on a real JupyterHub (tests/e2e/conftest.py runs it once): release lesson 1, two
students fetch and submit (solved, half-solved), the instructor collects and autogrades with
`python -m grader autograde`, feedback reaches each student without hidden tests."""
from __future__ import annotations

import html

import nbformat
import pytest
from nbgrader.api import Gradebook

from .conftest import ASSIGNMENT, HALF_SOLVED, expected_cell_scores, hidden_test_lines

pytestmark = pytest.mark.slow


def _gradebook_cells(room, student):
    db = room.home(room.instructor) / "convlab" / "gradebook.db"
    with Gradebook(f"sqlite:///{db}") as gb:
        nb = gb.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student)
        return {g.name: g.score for g in nb.grades if g.max_score}


def test_formgrader_shows_both_submissions_with_their_scores(graded_class):
    rows = {s["student"]: s for s in graded_class.formgrader_submissions}
    assert set(rows) == {graded_class.solved, graded_class.half}, rows
    full = sum(expected_cell_scores(None).values())
    half = sum(expected_cell_scores(HALF_SOLVED).values())
    assert 0 < half < full
    assert rows[graded_class.solved]["score"] == pytest.approx(full)
    assert rows[graded_class.solved]["max_score"] == pytest.approx(full)
    assert rows[graded_class.half]["score"] == pytest.approx(half)
    assert all(r["autograded"] for r in rows.values()), rows


def test_gradebook_has_the_right_score_for_every_test_cell(classroom, graded_class):
    assert _gradebook_cells(classroom, graded_class.solved) == expected_cell_scores(None)
    assert _gradebook_cells(classroom, graded_class.half) == expected_cell_scores(HALF_SOLVED)


def test_our_grader_graded_what_collect_gathered(classroom, graded_class):
    log = graded_class.grade_log
    assert "nbgrader collect" in log and "-m grader autograde" in log and "release_feedback" in log, log[-3000:]
    course = classroom.home(classroom.instructor) / "convlab"
    for student in (graded_class.solved, graded_class.half):
        assert (course / "submitted" / student / ASSIGNMENT / "timestamp.txt").is_file()
        executed = nbformat.read(course / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
        assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code")
    grades = (course / "grades.csv").read_text().splitlines()
    assert grades[0] == "student_id,assignment,score,max_score,status"
    # (test_boundaries' hostile round, if it ran first, added its attacker)
    assert {graded_class.solved, graded_class.half} <= {line.split(",")[0] for line in grades[1:]}
    assert all(line.endswith(",graded") for line in grades[1:]), grades


def test_each_student_fetched_their_own_feedback(graded_class):
    full = sum(expected_cell_scores(None).values())
    half = sum(expected_cell_scores(HALF_SOLVED).values())
    for student, score in ((graded_class.solved, full), (graded_class.half, half)):
        page = html.unescape(graded_class.feedback[student])
        assert f"Student: {student}" in page.replace("<b>", "").replace("</b>", "")
        assert f"{score:g} / {full:g}" in page, page[:2000]
    assert "NotImplementedError" in graded_class.feedback[graded_class.half]


def test_feedback_contains_no_hidden_test_text(graded_class):
    hidden = hidden_test_lines()
    for student, page in graded_class.feedback.items():
        text = html.unescape(page)
        leaked = [line for line in hidden if line in text]
        assert not leaked, f"{student}'s feedback quotes hidden tests: {leaked[:5]}"
        assert "BEGIN HIDDEN TESTS" not in text
