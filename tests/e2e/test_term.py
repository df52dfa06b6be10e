"""A term on the shared test hub: a second instructor of the same course releases, collects and
grades lesson 2, in the one course folder the whole staff shares (hub/jupyterhub_config.py: the
group convlab-staff, nbgrader's groupshared), so the first instructor sees it in the same gradebook;
a manual grade and a comment given in formgrader reach the student's feedback; a student who
allocates past their memory limit is stopped and the hub stays up."""
from __future__ import annotations

import grp
import html
import json
import pwd
import stat
from pathlib import Path
from urllib.parse import quote

import nbformat
import pytest

from grader import submissions

from .conftest import ASSIGNMENT, HALF_SOLVED, _ok, expected_cell_scores, run_in_terminal

pytestmark = pytest.mark.slow

LESSON2 = "02_edge_detection"


def test_a_second_instructor_releases_collects_and_grades_in_the_same_course(classroom, graded_class):
    room, co, student = classroom, classroom.co_instructor, graded_class.half
    _ok(room.call(co, "POST", f"/formgrader/api/assignment/{LESSON2}/assign", {}), "generate_assignment")
    _ok(room.call(co, "POST", f"/formgrader/api/assignment/{LESSON2}/release", {}), "release_assignment")
    form = {"course_id": "convlab", "assignment_id": LESSON2}
    listing = _ok(room.call(student, "POST", "/assignments/fetch", form, form=True), f"{student}: fetch")
    assert any(a["assignment_id"] == LESSON2 and a["status"] == "fetched" for a in listing["value"]), listing
    room.call(student, "PUT", f"/api/contents/{LESSON2}/{LESSON2}.ipynb",
              {"type": "notebook", "format": "json", "content": json.loads(nbformat.writes(submissions.solved(LESSON2)))})
    _ok(room.call(student, "POST", "/assignments/submit", form, form=True), f"{student}: submit")
    log = run_in_terminal(room, co, f"convlab-grade {LESSON2}")
    assert "Collecting submission" in log, log[-3000:]

    full = sum(expected_cell_scores(None, LESSON2).values())
    seen_by_first = room.call(room.instructor, "GET", f"/formgrader/api/submissions/{LESSON2}")
    row = next(s for s in seen_by_first if s["student"] == student)
    assert row["autograded"] and row["score"] == pytest.approx(full), row
    seen_by_co = {s["student"] for s in room.call(co, "GET", f"/formgrader/api/submissions/{ASSIGNMENT}")}
    assert {graded_class.solved, graded_class.half} <= seen_by_co

    gradebook = room.home(room.instructor) / "convlab" / "gradebook.db"
    st = gradebook.stat()
    assert grp.getgrgid(st.st_gid).gr_name == "convlab-staff" and st.st_mode & stat.S_IWGRP
    course = gradebook.resolve().parent                     # the shared course folder: staff only
    assert course.stat().st_mode & 0o7777 == 0o2770, oct(course.stat().st_mode)


def test_a_manual_grade_and_comment_from_formgrader_reach_the_students_feedback(classroom, graded_class):
    room, inst, student = classroom, classroom.instructor, graded_class.half
    rows = room.call(inst, "GET", f"/formgrader/api/submitted_notebooks/{ASSIGNMENT}/{ASSIGNMENT}")
    sub_id = next(r["id"] for r in rows if r["student"] == student)
    grades = room.call(inst, "GET", f"/formgrader/api/grades?submission_id={sub_id}")
    grade = next(g for g in grades if g["auto_score"] == 0 and g["max_score"])
    room.call(inst, "PUT", f"/formgrader/api/grade/{grade['id']}", {"manual_score": grade["max_score"]})
    comment = room.call(inst, "GET", f"/formgrader/api/comments?submission_id={sub_id}")[0]
    remark = "Close: look at how the channels are summed again (a remark from formgrader)."
    room.call(inst, "PUT", f"/formgrader/api/comment/{comment['id']}", {"manual_comment": remark})

    run_in_terminal(room, inst, f"convlab-grade {ASSIGNMENT} --no-collect")
    form = {"course_id": "convlab", "assignment_id": ASSIGNMENT}
    _ok(room.call(student, "POST", "/assignments/fetch_feedback", form, form=True), f"{student}: fetch_feedback")
    folder = room.call(student, "GET", f"/api/contents/{ASSIGNMENT}/feedback")
    stamp = next(item["path"] for item in folder["content"] if item["type"] == "directory")
    page = room.call(student, "GET", f"/api/contents/{quote(stamp)}/{ASSIGNMENT}.html?type=file&format=text")["content"]
    text = html.unescape(page)
    assert remark in text, text[-3000:]
    assert "(set by your instructor)" in page
    half = sum(expected_cell_scores(HALF_SOLVED).values()) + grade["max_score"]
    assert f"Score: <b>{half:g} / " in page, page[:3000]


def test_a_student_past_the_memory_limit_is_stopped_and_the_hub_stays_up(classroom):
    """Every process of a student runs in their cgroup (hub/limits.py); allocating past the limit
    (3 GB for the test hub) stops that process only."""
    import psutil
    room, student = classroom, classroom.students[3]
    uid = pwd.getpwnam(student).pw_uid
    procs = [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid]
    assert procs
    for proc in procs:
        groups = Path(f"/proc/{proc.pid}/cgroup").read_text()
        assert f"/convlab-{student}" in groups, groups
    out = run_in_terminal(room, student, "python -c \"b = b'x' * (5 * 2**30); print('SURV' + 'IVED')\"; echo OOM-EXIT=$?")
    assert "SURVIVED" not in out and "OOM-EXIT=137" in out, out[-2000:]
    assert room.hub.api("GET", f"/users/{student}")["servers"][""]["ready"]
    assert room.call(student, "GET", "/api/contents")["type"] == "directory"     # their server is up
