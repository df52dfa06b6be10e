"""The class hub's boundaries, tried as a student with a shell on the class machine would (real
accounts on the shared test hub): each test does what must fail.

* a student's terminal reads their own work, the release and their feedback, and nothing else:
  not the clone's or the staff copy's solutions/, not .git, not the instructor's gradebook or
  autograded/, not another student's home or nbgrader cache, not the hub's state;
* every home is private, whatever mode the account was created with;
* a submission planted in another student's name, and one holding a link to the solutions, are
  not collected, and the instructor's grading log says why;
* HTML with an onerror handler, Javascript, a <script> in markdown and a raw HTML cell handed in
  by a student run nothing when the instructor opens the submission in formgrader (Chromium);
* a link planted at the instructor's old config path gets nothing written behind it by root;
* a student can neither list the exchange's inbound folder nor rename, remove or change another's
  submission in it (sticky bit; submissions 0750).
"""
from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook, MissingEntry

from grader.course import ROOT, student_notebook
from hub import local, runtime

from .conftest import ASSIGNMENT, HALF_SOLVED, XSS_MARK, Shots, expected_cell_scores, login, run_in_terminal

pytestmark = pytest.mark.slow

PROBE = r"""
import json, os, sys
seen = {}
for p in sys.argv[1:]:
    try:
        if os.path.isdir(p):
            os.listdir(p)
        else:
            open(p, "rb").read(1)
        seen[p] = "read"
    except PermissionError:
        seen[p] = "denied"
    except FileNotFoundError:
        seen[p] = "missing"
print("PROBE" + json.dumps(seen))
"""


def _probe(room, user: str, paths: list[Path]) -> dict[str, str]:
    """What `user`'s own terminal can read of `paths` (read / denied / missing)."""
    script = Path(tempfile.mkdtemp(prefix="clprobe-")) / "probe.py"
    script.write_text(PROBE)
    script.parent.chmod(0o755)
    script.chmod(0o644)
    try:
        out = run_in_terminal(room, user, f"{local.hub_python()} {script} " + " ".join(f"'{p}'" for p in paths))
    finally:
        shutil.rmtree(script.parent)
    found = re.search(r"PROBE(\{[^\n]*\})", out.replace("\r", ""))
    assert found, f"the probe printed nothing:\n{out[-3000:]}"
    return json.loads(found.group(1))


def test_a_students_terminal_reads_only_their_own_work_the_release_and_feedback(classroom, graded_class):
    room = classroom
    me, other = graded_class.half, graded_class.solved
    inst = room.home(room.instructor)
    nb = f"{ASSIGNMENT}/{ASSIGNMENT}.ipynb"
    forbidden = [
        ROOT / "solutions" / nb, ROOT / ".git" / "HEAD", ROOT,
        runtime.staff_dir() / "solutions" / nb, runtime.staff_dir() / "hub" / "jupyterhub_config.py",
        runtime.staff_dir(),
        inst / "convlab" / "gradebook.db", inst / "convlab" / "autograded" / other / nb, inst,
        room.home(other) / nb, room.home(other) / ".local" / "share" / "jupyter" / "nbgrader_cache", room.home(other),
        room.hub.state / "jupyterhub.sqlite", room.hub.state / "jupyterhub_cookie_secret",
        room.hub.state.parent / "course" / "gradebook.db",     # the staff's shared course folder
    ]
    feedback = next((room.home(me) / ASSIGNMENT / "feedback").iterdir())
    allowed = [room.home(me) / nb, room.hub.exchange / "convlab" / "outbound" / nb,
               feedback / f"{ASSIGNMENT}.html"]
    for path in forbidden + allowed:      # as root: each is there, so "denied" means denied
        assert path.exists(), f"{path} should exist by now"
    seen = _probe(room, me, forbidden + allowed)
    readable = [p for p in map(str, forbidden) if seen[p] != "denied"]
    assert not readable, f"a student could read: {readable} (keep the clone private: make hub-deps does)"
    assert all(seen[str(p)] == "read" for p in allowed), seen


def test_a_students_environment_names_nothing_of_the_staffs(classroom, graded_class):
    out = run_in_terminal(classroom, graded_class.half, "env")
    assert str(runtime.staff_dir()) not in out and str(ROOT) not in out, out
    assert f"JUPYTER_CONFIG_PATH={runtime.RUNTIME / 'jupyter' / 'student'}" in out, out


def test_every_home_is_private(classroom):
    """useradd made them 0755 here (Debian's UMASK 022); the hub closes them before a server starts."""
    for user in [classroom.instructor, classroom.co_instructor, *classroom.students]:
        mode = classroom.home(user).stat().st_mode & 0o777
        assert mode & 0o077 == 0, f"{user}'s home is {mode:o}"


def test_a_submission_in_another_students_name_is_not_collected(classroom, hostile_round):
    course = classroom.home(classroom.instructor) / "convlab"
    victim, attacker = hostile_round.forged_for, hostile_round.attacker
    assert not (course / "submitted" / victim).exists()
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        with pytest.raises(MissingEntry):
            gb.find_submission(ASSIGNMENT, victim)
    assert "NOT collected" in hostile_round.grade_log
    assert f"names {victim} but belongs to {attacker}" in hostile_round.grade_log, hostile_round.grade_log[-3000:]


def test_a_submission_holding_a_link_is_not_collected(classroom, hostile_round):
    course = classroom.home(classroom.instructor) / "convlab"
    attacker = hostile_round.attacker
    assert "notes.txt is not a plain file" in hostile_round.grade_log, hostile_round.grade_log[-3000:]
    collected = course / "submitted" / attacker / ASSIGNMENT
    assert sorted(p.name for p in collected.iterdir()) == sorted(
        [f"{ASSIGNMENT}.ipynb", "timestamp.txt", "submission_secret.txt"]), list(collected.iterdir())
    # the attacker's real submission (before the planted one) was graded in its place
    grades = (course / "grades.csv").read_text().splitlines()
    row = next(line for line in grades if line.startswith(attacker + ","))
    assert row.endswith(",graded") and float(row.split(",")[2]) == sum(expected_cell_scores(None).values()), row


def test_no_active_content_in_the_graded_notebook(classroom, hostile_round):
    path = (classroom.home(classroom.instructor) / "convlab" / "autograded" / hostile_round.attacker / ASSIGNMENT
            / f"{ASSIGNMENT}.ipynb")
    nb = nbformat.read(path, as_version=4)
    kinds = {k for c in nb.cells for o in c.get("outputs", []) for k in o.get("data", {})}
    assert kinds <= {"text/plain", "image/png", "image/jpeg"}, kinds
    from nbconvert.filters import markdown2html
    ours = {c.source for c in nbformat.read(student_notebook(ASSIGNMENT), as_version=4).cells}
    rendered = "".join(markdown2html(c.source) for c in nb.cells if c.cell_type == "markdown" and c.source not in ours)
    assert "An innocent remark" in rendered
    assert not re.search(r"<(img|script)\b|<[^>]*\bonerror=|href=\"javascript", rendered, re.I), rendered[-3000:]
    assert not any({"format", "raw_mimetype"} & set(c.metadata) for c in nb.cells if c.cell_type == "raw")


def test_student_html_and_scripts_run_nothing_in_formgrader(browser, classroom, hostile_round, artifacts):
    room, inst = classroom, classroom.instructor
    rows = room.call(inst, "GET", f"/formgrader/api/submitted_notebooks/{ASSIGNMENT}/{ASSIGNMENT}")
    sub = next(r for r in rows if r["student"] == hostile_round.attacker)
    shots = Shots(artifacts, "hostile")
    context, page = login(browser, room, inst, shots)
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    try:
        page.goto(f"{room.hub.url}/user/{inst}/formgrader/submissions/{sub['id']}/?index=0")
        page.get_by_text("An innocent remark").first.wait_for()
        page.wait_for_timeout(2000)          # time for anything that would run or load
        shots(page, "formgrader-submission")
        assert XSS_MARK not in page.title(), page.title()
        leaks = [u for u in requests if "/leak-" in u]
        assert not leaks, f"the student's content made the instructor's browser request {leaks}"
        assert page.locator("[onerror]").count() == 0
    except Exception:
        shots(page, "FAILED")
        raise
    finally:
        context.close()


def test_a_link_at_the_instructors_config_path_gets_nothing_written(classroom, graded_class):
    """The hub used to write ~/convlab/nbgrader_config.py as root at every spawn, following a link
    the instructor could plant there (to a file under /etc, say)."""
    room, inst = classroom, classroom.instructor
    target_dir = Path(tempfile.mkdtemp(prefix="clhub-target-"))
    target = target_dir / f"root-written-{secrets.token_hex(3)}"
    link = room.home(inst) / "convlab" / "nbgrader_config.py"
    link.unlink(missing_ok=True)
    link.symlink_to(target)
    pw = pwd.getpwnam(inst)
    os.lchown(link, pw.pw_uid, pw.pw_gid)
    try:
        room.hub.api("DELETE", f"/users/{inst}/server")
        deadline = time.monotonic() + 60
        while room.hub.api("GET", f"/users/{inst}").get("servers") and time.monotonic() < deadline:
            time.sleep(0.5)
        room.servers[inst] = room.hub.start_server(inst)
        assert not target.exists() and not target.is_symlink(), f"root wrote {target} through the link"
        assert link.is_symlink()              # left as the instructor made it
    finally:
        link.unlink(missing_ok=True)
        shutil.rmtree(target_dir, ignore_errors=True)


def test_grading_one_other_student_leaves_a_resubmission_uncollected(classroom, resubmission):
    """Check that `convlab-grade A --student OTHER` collects nobody else: a resubmission waiting
    in the exchange keeps its student's earlier grade, until they are graded themselves."""
    assert resubmission.row_after_other == resubmission.row_before, (resubmission.row_before, resubmission.row_after_other)
    assert f"--student={resubmission.student}" not in resubmission.other_log
    assert "Updating submission" not in resubmission.other_log, resubmission.other_log[-3000:]


def test_a_resubmission_after_grading_is_collected_and_graded(classroom, resubmission):
    """(Last in this file: it changes the attacker's grade, which the tests above read.) Collected
    with `--student` (the instructor's command regrades one student)."""
    course = classroom.home(classroom.instructor) / "convlab"
    student = resubmission.student
    half = sum(expected_cell_scores(HALF_SOLVED).values())
    assert "Updating submission" in resubmission.grade_log, resubmission.grade_log[-3000:]
    row = next(line for line in (course / "grades.csv").read_text().splitlines() if line.startswith(student + ","))
    assert float(row.split(",")[2]) == half and row.endswith(",graded"), row
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        assert gb.find_submission(ASSIGNMENT, student).score == pytest.approx(half)


REMOVE_ANOTHERS = r"""
import json, os, shutil, sys
entry = sys.argv[1]
tried = {}
for what, act in (("rename", lambda: os.rename(entry, entry + "x")),
                  ("remove", lambda: shutil.rmtree(entry)),
                  ("list", lambda: os.listdir(os.path.dirname(entry)))):
    try:
        act()
        tried[what] = "done"
    except PermissionError:
        tried[what] = "denied"
print(json.dumps(tried))
"""


def test_a_student_cannot_remove_or_rename_anothers_submission(classroom, graded_class):
    """Check that in the exchange's inbound folder a student (who knows the name of another's
    submission) can neither rename nor remove it (the sticky bit), nor change or delete what is in
    it (nbgrader makes it 0777; the students' PrivateSubmit 0750), nor list the folder."""
    import subprocess
    inbound = classroom.hub.exchange / "convlab" / "inbound"
    victim, attacker = classroom.students[0], classroom.students[3]
    entries = sorted(p for p in inbound.iterdir() if p.name.startswith(f"{victim}+"))
    assert entries, f"no submission of {victim} in {inbound}"
    assert inbound.stat().st_mode & 0o7777 == 0o3773, oct(inbound.stat().st_mode)
    before = {str(p.relative_to(entries[-1])): oct(p.stat().st_mode) for p in entries[-1].rglob("*")}
    assert before, f"{entries[-1]} is empty"
    out = subprocess.run(["runuser", "-u", attacker, "--", str(local.hub_python()), "-c", REMOVE_ANOTHERS,
                          str(entries[-1])], capture_output=True, text=True, timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"rename": "denied", "remove": "denied", "list": "denied"}, out.stdout
    after = {str(p.relative_to(entries[-1])): oct(p.stat().st_mode) for p in entries[-1].rglob("*")}
    assert after == before, (before, after)
