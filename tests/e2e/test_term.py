"""A term on the shared test hub: a second instructor of the same course releases, collects and
grades lesson 2, in the one course folder the whole staff shares (hub/jupyterhub_config.py: the
group convlab-staff, nbgrader's groupshared), so the first instructor sees it in the same gradebook;
a manual grade and a comment given in formgrader reach the student's feedback; a student who
allocates past their memory limit is stopped and the hub stays up."""
from __future__ import annotations

import grp
import html
import pwd
import sqlite3
import stat
from pathlib import Path
from urllib.parse import quote

import pytest

from grader import samples

from .conftest import ASSIGNMENT, HALF_SOLVED, _ok, expected_cell_scores, hand_in, run_in_terminal

pytestmark = pytest.mark.slow

LESSON2 = "02_edge_detection"


def latest_feedback(room, student: str, assignment: str) -> str:
    form = {"course_id": "convlab", "assignment_id": assignment}
    _ok(room.call(student, "POST", "/assignments/fetch_feedback", form, form=True), f"{student}: fetch_feedback")
    folder = room.call(student, "GET", f"/api/contents/{assignment}/feedback")
    stamp = max(item["path"] for item in folder["content"] if item["type"] == "directory")
    return room.call(student, "GET", f"/api/contents/{quote(stamp)}/{assignment}.html?type=file&format=text")["content"]


@pytest.fixture(scope="module")
def lesson2(classroom, graded_class):
    """The second instructor releases lesson 2; the half-solved student fetches it and hands in
    the solution; the second instructor grades it with the course's command."""
    room, co, student = classroom, classroom.co_instructor, graded_class.half
    _ok(room.call(co, "POST", f"/formgrader/api/assignment/{LESSON2}/assign", {}), "generate_assignment")
    _ok(room.call(co, "POST", f"/formgrader/api/assignment/{LESSON2}/release", {}), "release_assignment")
    form = {"course_id": "convlab", "assignment_id": LESSON2}
    listing = _ok(room.call(student, "POST", "/assignments/fetch", form, form=True), f"{student}: fetch")
    assert any(a["assignment_id"] == LESSON2 and a["status"] == "fetched" for a in listing["value"]), listing
    hand_in(room, student, LESSON2, samples.solved(LESSON2))
    return student, run_in_terminal(room, co, f"convlab-grade {LESSON2}")


def test_a_second_instructor_releases_collects_and_grades_in_the_same_course(classroom, graded_class, lesson2):
    room, co, (student, log) = classroom, classroom.co_instructor, lesson2
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


def test_a_late_submission_gets_the_courses_penalty_in_the_gradebook_and_the_feedback(classroom, lesson2):
    """The instructor sets the course's late policy (COURSE/nbgrader_config.py, nbgrader's
    LateSubmissionPlugin) and lesson 2's due date (nbgrader db assignment add --duedate); the
    student hands in again, late; the grading command records nbgrader's penalty and the feedback
    page shows it."""
    room, inst, (student, _) = classroom, classroom.instructor, lesson2
    policy = room.home(inst) / "convlab" / "nbgrader_config.py"
    run_in_terminal(room, inst, """printf 'c = get_config()\\nc.LateSubmissionPlugin.penalty_method = "zero"\\n' """
                                f"> ~/convlab/nbgrader_config.py && cd ~/convlab && "
                                f"nbgrader db assignment add {LESSON2} --duedate='2020-01-01 00:00:00 UTC'")
    try:
        hand_in(room, student, LESSON2, samples.solved(LESSON2))
        log = run_in_terminal(room, inst, f"convlab-grade {LESSON2}")
    finally:
        policy.unlink(missing_ok=True)
    full = sum(expected_cell_scores(None, LESSON2).values())
    with sqlite3.connect(f"{policy.resolve().parent.as_uri()}/gradebook.db?mode=ro", uri=True) as db:
        penalties = db.execute(
            "SELECT sn.late_submission_penalty FROM submitted_notebook sn "
            "JOIN submitted_assignment sa ON sn.assignment_id = sa.id JOIN assignment a ON sa.assignment_id = a.id "
            "WHERE sa.student_id = ? AND a.name = ?", (student, LESSON2)).fetchall()
    assert penalties == [(pytest.approx(full),)], (penalties, log[-3000:])
    page = latest_feedback(room, student, LESSON2)
    assert f"Score: <b>0 / {full:g} ({full:g}, less {full:g} for handing in late)" in page, page[:3000]
    on_time = room.call(inst, "GET", f"/formgrader/api/submissions/{ASSIGNMENT}")     # lesson 1: no due date
    assert all(not s.get("late_submission_penalty") for s in on_time if s.get("autograded"))


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


def test_the_staff_back_up_the_gradebook_and_read_nbgraders_log_and_students_cannot(classroom, graded_class):
    """convlab-backup (hub/backup.py) in an instructor's terminal: a dated copy in the course's
    backups/ that the other instructor can open and no student can read; nbgrader's log
    (COURSE/nbgrader.log) holds the collect of the grading runs and is the staff's alone."""
    import re
    room, inst, co, student = classroom, classroom.instructor, classroom.co_instructor, graded_class.solved
    out = run_in_terminal(room, inst, "convlab-backup")
    copy = Path(re.search(r"to (/\S+/backups/gradebook-\d{8}T\d+Z\.db)", out).group(1))
    course = copy.parent.parent
    assert stat.S_IMODE(copy.stat().st_mode) == 0o640 and grp.getgrgid(copy.stat().st_gid).gr_name == "convlab-staff"
    out = run_in_terminal(room, co, f"python -c \"import sqlite3; print('STU' + 'DENTS', sqlite3.connect("
                                    f"'file:{copy}?mode=ro', uri=True).execute('select id from student').fetchall())\"; "
                                    "grep -c 'Collecting submission' ~/convlab/nbgrader.log")
    assert re.search(rf"STUDENTS \[.*'{graded_class.solved}'", out) and re.search(r"\r\n[1-9]\d*\r\n", out), out[-2000:]
    log = course / "nbgrader.log"
    assert stat.S_IMODE(log.stat().st_mode) == 0o660 and grp.getgrgid(log.stat().st_gid).gr_name == "convlab-staff"
    out = run_in_terminal(room, student, f"head -c 16 {copy}; echo RC1=$?; head -c 16 {log}; echo RC2=$?; "
                                         f"convlab-backup --course {course}; echo RC3=$?")
    assert "SQLite format" not in out and all(f"RC{i}=0" not in out for i in (1, 2, 3)), out[-2000:]
    assert out.count("Permission denied") >= 3, out[-2000:]


def test_the_idle_culler_is_a_hub_service_with_its_scopes_only_and_stops_idle_servers(classroom):
    """jupyterhub-idle-culler runs as a hub-managed service, as nobody; its token may list users and
    stop servers, and nothing else; one cull with its token and a 1 s limit stops every idle server
    while the hub stays up and the users' files stay. (Last in the session: it stops every server.)"""
    import subprocess
    import time

    import psutil

    from hub import local

    room = classroom
    culler = [p for p in psutil.process_iter(["cmdline", "uids"])
              if "jupyterhub_idle_culler" in " ".join(p.info["cmdline"] or [])]
    assert len(culler) == 1, culler
    assert culler[0].info["uids"].real == pwd.getpwnam("nobody").pw_uid
    assert "--timeout=3600" in culler[0].info["cmdline"]
    env = dict(item.split("=", 1) for item in Path(f"/proc/{culler[0].pid}/environ").read_text().split("\0") if "=" in item)
    token, api = env["JUPYTERHUB_API_TOKEN"], f"{room.hub.url}/hub/api"
    ready = {u["name"] for u in local.request("GET", f"{api}/users?state=ready", token)}
    assert set(room.students[:2]) <= ready
    for method, path, body in (("POST", "/users/clhubnobody", None),
                               ("POST", "/groups/formgrade-convlab/users", {"users": [room.students[0]]}),
                               ("GET", f"/users/{room.students[0]}/tokens", None)):
        with pytest.raises(local.HubError, match="HTTP 403"):
            local.request(method, f"{api}{path}", token, body)
    home = room.home(room.students[0])
    files = sorted(p.name for p in home.iterdir())
    time.sleep(2)                                     # every server idle for more than the 1 s limit
    code = ("import asyncio, logging, sys, jupyterhub_idle_culler as j; logging.basicConfig(level=logging.INFO); "
            "asyncio.run(j.cull_idle(sys.argv[1], sys.argv[2], 1, logging.getLogger('culler')))")
    proc = subprocess.run([str(local.hub_python()), "-c", code, api, token], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    deadline = time.monotonic() + 120
    while (running := [u["name"] for u in room.hub.api("GET", "/users") if u["servers"]]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not running, (running, proc.stderr[-3000:])
    assert "Culling server" in proc.stderr
    assert room.hub.api("GET", "/")["version"]                          # the hub is up
    assert sorted(p.name for p in home.iterdir()) == files             # nothing of theirs is lost
