"""Grading at submit time on the shared hub (hub/submit_grader.py, the service convlab-feedback).

The students of `graded_class` hand in through the hub's API; the service, running as
convlab-grader, grades each submission on its own and serves each student their visible results at
/services/convlab-feedback/ (JupyterHub OAuth). Checked: the right visible results, no hidden test
text, another student's page refused, a burst of ten submissions all graded in the order they
arrived (one batch after another, no student twice), the queue visible to the instructor only.
Times are recorded in artifacts/submit-grading.json, never asserted."""
from __future__ import annotations

import http.cookiejar
import json
import os
import pwd
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone

import pytest

from hub import local
from .conftest import ASSIGNMENT, HALF_SOLVED, convlab_roster, expected_cell_scores, hidden_test_lines

pytestmark = pytest.mark.slow

SERVICE = "/services/convlab-feedback/"
WAIT = 300          # s: at most this long for grading (stated; the benchmark reports typical times)


def _token(room, user: str) -> str:
    return room.hub.api("POST", f"/users/{user}/tokens", {"note": "submit-grading test"})["token"]


def _get(room, token: str, path: str = "") -> str:
    return local.request("GET", f"{room.hub.url}{SERVICE}{path}", token, timeout=60)


def _status(room, token: str) -> list[dict]:
    reply = _get(room, token, "api/status")
    return (json.loads(reply) if isinstance(reply, str) else reply)["jobs"]


def _wait_done(room, token: str, students: set[str], timeout: float = WAIT, answers: list | None = None) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = time.monotonic()
        found = _status(room, token)
        if answers is not None:
            answers.append(time.monotonic() - t)       # how fast the hub and the service answer meanwhile
        jobs = [j for j in found if j["student"] in students and j["assignment"] == ASSIGNMENT]
        done = {j["student"] for j in jobs if j["state"] in ("done", "failed")}
        if done >= students:
            return jobs
        time.sleep(2)
    raise AssertionError(f"not graded within {timeout} s: {students - done}; jobs: {jobs}")


def _stamp(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f %Z").replace(tzinfo=timezone.utc).timestamp()


def _login_and_open(room, user: str) -> str:
    """Log in with the password form and open the service's page, following the OAuth redirects
    with one cookie jar, as a browser does."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(f"{room.hub.url}/hub/login", timeout=30).read()
    xsrf = next(c.value for c in jar if c.name == "_xsrf")
    form = urllib.parse.urlencode({"username": user, "password": room.passwords[user], "_xsrf": xsrf}).encode()

    class NoFollow(urllib.request.HTTPRedirectHandler):      # the login's redirect would start a server
        def redirect_request(self, *a, **k):
            return None
    no_follow = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoFollow)
    try:
        no_follow.open(f"{room.hub.url}/hub/login?_xsrf={urllib.parse.quote(xsrf)}", data=form, timeout=60)
    except urllib.error.HTTPError as err:
        assert err.code in (302, 303), err
    with opener.open(f"{room.hub.url}/hub/home", timeout=60) as resp:    # the hub's Services menu links it
        assert f'href="{SERVICE}"' in resp.read().decode()
    with opener.open(f"{room.hub.url}{SERVICE}", timeout=60) as resp:
        assert SERVICE in resp.url, resp.url
        return resp.read().decode()


def test_a_student_reads_their_visible_results_and_nothing_hidden_and_not_anothers(classroom, graded_class, artifacts):
    room = classroom
    solved, half = graded_class.solved, graded_class.half
    tokens = {u: _token(room, u) for u in (solved, half, room.instructor)}
    jobs = _wait_done(room, tokens[room.instructor], {solved, half})
    by_student = {j["student"]: j for j in jobs if j["state"] in ("done", "failed")}
    assert {by_student[s]["state"] for s in (solved, half)} == {"done"}, jobs
    latency = {s: by_student[s]["done_at"] - _stamp(by_student[s]["timestamp"]) for s in (solved, half)}

    page = _get(room, tokens[half])
    (artifacts / "submit-grading-half.html").write_text(page)
    assert f"<b>{half}</b>" in page and solved not in page
    expected = expected_cell_scores(HALF_SOLVED)
    for gid, points in expected.items():
        row = re.search(rf"<tr><td><code>{re.escape(gid)}</code></td><td class=(pass|fail)>", page)
        assert row, f"{gid} is not on the page"
        assert row.group(1) == ("pass" if points else "fail"), f"{gid}: {row.group(1)}"
    assert "NotImplementedError" in page                 # the unanswered exercises' visible message
    n_hidden = len(re.findall(r"not shown until feedback is released</td>", page))
    assert n_hidden and f"{n_hidden} hidden checks not shown until feedback is released" in page
    for line in hidden_test_lines():
        assert line not in page, f"hidden test text on the page: {line}"
    assert "A hidden check failed" not in page
    assert "<script" not in page

    mine = _get(room, tokens[solved])
    assert f"Visible tests: {len(expected)} of {len(expected)} test cells passed" in mine

    with pytest.raises(local.HubError, match="HTTP 403"):
        _get(room, tokens[half], f"student/{solved}")
    assert solved not in json.dumps(_status(room, tokens[half]))    # the status API: only their own
    try:                                                 # no login: the hub's login page, or refused
        anonymous = str(local.request("GET", f"{room.hub.url}{SERVICE}", "not-a-token", timeout=30))
    except local.HubError as err:
        anonymous = str(err)
    assert half not in anonymous and "Visible tests" not in anonymous
    assert "<b>{}</b>".format(half) in _get(room, tokens[room.instructor], f"student/{half}")

    oauth_page = _login_and_open(room, half)             # the way a student opens it: password, OAuth
    assert f"<b>{half}</b>" in oauth_page and solved not in oauth_page
    # and from their JupyterLab: Help > "Submission results", opening that page in a new tab
    menus = json.dumps(room.call(half, "GET", "/lab/api/settings/@jupyterlab/mainmenu-extension:plugin"))
    assert '"command": "help:open"' in menus and f'"url": "{SERVICE}"' in menus, menus[:2000]
    assert "Submission results (graded at submit time)" in menus
    queue = _get(room, tokens[room.instructor])
    assert "the queue" in queue and solved in queue and half in queue
    (artifacts / "submit-grading.json").write_text(json.dumps({"submit_to_feedback_s": latency}, indent=1))


def test_ten_submissions_at_once_are_all_graded_in_fair_order(classroom, graded_class, artifacts):
    """Ten students (accounts made here and put on the roster with convlab-roster, owning their
    entries as nbgrader's submit makes them) hand in the solved notebook in the same second; all are
    graded, in turn, each once. Their entries are removed afterwards (the instructor's later collects
    must not see them)."""
    room = classroom
    tag = room.instructor[:-1]
    students = [f"{tag}b{i}" for i in range(10)]
    inbound = room.hub.exchange / "convlab" / "inbound"
    solved_entry = next(p for p in sorted(inbound.iterdir()) if p.name.startswith(f"{graded_class.solved}+{ASSIGNMENT}+"))
    planted = []
    try:
        for s in students:
            local.create_user(s, "x" + os.urandom(8).hex())
            room.extra_users.append(s)
        csv = room.hub.state.parent / "burst.csv"           # only the course's students hand in
        csv.write_text("id,first_name,last_name,email\n" + "".join(f"{s},Burst,{i},\n" for i, s in enumerate(students)))
        added = convlab_roster(room, "import", str(csv))
        assert added.returncode == 0, added.stderr
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
        for s in students:                            # what PrivateSubmit leaves: 0750, files 0644
            pw = pwd.getpwnam(s)
            entry = inbound / f"{s}+{ASSIGNMENT}+{stamp}+burst"
            tmp = inbound / f".{s}-partial"
            tmp.mkdir(mode=0o777)
            shutil.copyfile(solved_entry / f"{ASSIGNMENT}.ipynb", tmp / f"{ASSIGNMENT}.ipynb")
            (tmp / "timestamp.txt").write_text(stamp)
            for p in (tmp, *tmp.iterdir()):
                os.chown(p, pw.pw_uid, -1)
                p.chmod(0o644 if p.is_file() else 0o777)
            tmp.rename(entry)
            planted.append(entry)
        for entry in planted:                          # all complete within the same moment
            entry.chmod(0o750)
        t0 = time.time()
        token = _token(room, room.instructor)
        answers = []
        jobs = _wait_done(room, token, set(students), answers=answers)
        took = time.time() - t0
        mine = [j for j in jobs if j["entry"].endswith("+burst")]
        assert sorted(j["student"] for j in mine) == students, mine                 # each once
        assert {j["state"] for j in mine} == {"done"} and {j["status"] for j in mine} == {"graded"}, mine
        assert all(j["score"] == j["max_score"] > 0 for j in mine), mine
        order = sorted(mine, key=lambda j: (j["started"], students.index(j["student"])))
        assert [j["student"] for j in order] == students       # in turn: as they arrived (by name, same second)
        (artifacts / "submit-grading-burst.json").write_text(json.dumps(
            {"burst": len(students), "all_graded_s": took, "slowest_status_answer_s": max(answers),
             "per_student_s": {j["student"]: j["done_at"] - t0 for j in mine}}, indent=1))
        _the_instructors_grading_reuses_them(room, students, planted, {j["student"]: j["result"] for j in mine})
    finally:
        for entry in planted:
            shutil.rmtree(entry, ignore_errors=True)
        for p in inbound.glob(".*-partial"):
            shutil.rmtree(p, ignore_errors=True)


def _the_instructors_grading_reuses_them(room, students, entries, result_files):
    """hub/grade.py's reuse, on a scratch copy of the staff's course (the shared one must not get
    these students): the ten entries collected as nbgrader's collect lays them out, the course's
    gradebook copied; `adopt` takes the ten results graded at submit time, and the grading run that
    follows grades none of them again (each result file stays byte for byte the service's)."""
    import subprocess
    import tempfile
    from pathlib import Path

    from nbgrader.api import Gradebook

    shared = room.hub.state.parent / "submit-grading"
    course = Path(tempfile.mkdtemp(prefix="clhub-reuse-"))
    try:
        for s, entry in zip(students, entries):
            shutil.copytree(entry, course / "submitted" / s / ASSIGNMENT)
        shutil.copyfile(room.hub.state.parent / "course" / "gradebook.db", course / "gradebook.db")
        db = f"sqlite:///{course / 'gradebook.db'}"
        code = ("import sys; from pathlib import Path; from hub.grade import adopt; "
                "print('TAKEN', ','.join(adopt(Path(sys.argv[1]) / 'submitted', Path(sys.argv[1]), sys.argv[2], "
                "Path(sys.argv[3]), sys.argv[4])))")
        proc = subprocess.run([str(local.hub_python()), "-c", code, str(course), ASSIGNMENT, str(shared), db],
                              cwd=local.STAFF, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        taken = proc.stdout.split("TAKEN ", 1)[1].strip().split(",")
        assert sorted(taken) == students, (proc.stdout, proc.stderr[-3000:])
        proc = subprocess.run([str(local.hub_python()), "-m", "grader", "autograde", str(course / "submitted"),
                               "--assignment", ASSIGNMENT, "--config-dir", str(local.STAFF / "hub" / "jupyter" / "instructor"),
                               "--db-url", db, "--out", str(course), "--no-progress"],
                              cwd=local.STAFF, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        for s in students:
            ours = (course / "results" / result_files[s]).read_bytes()
            assert ours == (shared / "out" / "results" / result_files[s]).read_bytes(), f"{s} was graded again"
            assert (course / "autograded" / s / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file()
        with Gradebook(db) as gb:
            scores = {s: gb.find_submission(ASSIGNMENT, s) for s in students}
            assert all(sub.score == sub.max_score > 0 for sub in scores.values())
    finally:
        shutil.rmtree(course, ignore_errors=True)


def test_a_forged_entry_is_logged_and_never_graded(classroom, hostile_round):
    """The hostile round's entry planted (from a terminal) in the name of a student who handed in
    nothing: once it has settled, the service names it in the hub's log and grades nothing of it;
    neither is the attacker's entry holding a link graded."""
    room = classroom
    victim = hostile_round.forged_for
    line = f"NOT graded (forged or changed after it was handed in?): {victim}+{ASSIGNMENT}+"
    deadline = time.monotonic() + 150          # the entry settles for 60 s (it is not submit's 0750)
    while line not in room.hub.log_path.read_text(errors="replace") and time.monotonic() < deadline:
        time.sleep(2)
    log = room.hub.log_path.read_text(errors="replace")
    assert line in log, log[-3000:]
    assert f"belongs to {hostile_round.attacker}" in log.split(line, 1)[1].splitlines()[0]
    jobs = _status(room, _token(room, room.instructor))
    assert not [j for j in jobs if j["student"] == victim or j["entry"].endswith("+linked")], jobs
