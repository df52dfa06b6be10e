"""Rosters without restarts, on the shared test hub (hub/roster.py, hub/proxy.py): a CSV import adds
a student and a TA (OS accounts, names in the gradebook, hub users and groups) while another
student's server keeps running; a bad CSV changes nothing and names its lines; neither a student
nor an instructor can change the roster or use its service's token; removing a student and a TA
takes effect at once (server stopped, groups left, no more logins) and keeps their files; a
restarted hub stops nobody's server and keeps the removal."""
from __future__ import annotations

import grp
import os
import pwd
import shutil
from datetime import datetime, timezone
from pathlib import Path

import psutil
import pytest

from hub import local, runtime
from hub.exchange import entry_problem

from .conftest import convlab_roster, run_in_terminal

pytestmark = pytest.mark.slow

roster = convlab_roster


def server_pid(user: str) -> int:
    uid = pwd.getpwnam(user).pw_uid
    pids = [p.pid for p in psutil.process_iter(["uids", "cmdline"])
            if p.info["uids"] and p.info["uids"].real == uid
            and any("jupyterhub-singleuser" in part for part in p.info["cmdline"] or [])]
    assert len(pids) == 1, f"{user}: servers {pids}"
    return pids[0]


def processes(user: str) -> list[int]:
    uid = pwd.getpwnam(user).pw_uid
    return [p.pid for p in psutil.process_iter(["uids", "status"])
            if p.info["uids"] and p.info["uids"].real == uid and p.info["status"] != psutil.STATUS_ZOMBIE]


def plant_entry(room, student: str) -> tuple[Path, str]:
    """An inbound entry as nbgrader's submit makes it, the student's own, named for an assignment
    nobody collects here."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    entry = room.hub.exchange / "convlab" / "inbound" / f"{student}+zz_not_collected+{stamp}+r4nd"
    entry.mkdir()
    (entry / "timestamp.txt").write_text(stamp)
    pw = pwd.getpwnam(student)
    for path in (entry, entry / "timestamp.txt"):
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return entry, stamp


def group_members(room, group: str) -> set[str]:
    return set(room.hub.api("GET", f"/groups/{group}")["users"])


@pytest.fixture(scope="module")
def imported(classroom, tmp_path_factory):
    """A CSV in nbgrader's format with a role column: two students already in the class (now with
    names), a new student and a new TA, imported while the hub runs."""
    room = classroom
    tag = room.instructor[len("clhub"):-1]
    new, ta = f"clhub{tag}s5", f"clhub{tag}t"
    room.extra_users += [new, ta]
    solved, half = room.students[:2]
    before = server_pid(solved)
    csv = tmp_path_factory.mktemp("roster") / "class.csv"
    csv.write_text("id,first_name,last_name,email,role\n"
                   f"{solved},Ada,Lovelace,ada@example.org,student\n"
                   f"{half},Émile,Borel,,\n"
                   f"{new},Grace,Hopper,grace@example.org,student\n"
                   f"{ta},Alan,Turing,alan@example.org,TA\n", encoding="utf-8")
    proc = roster(room, "import", str(csv))
    assert proc.returncode == 0, proc.stderr
    passwords = dict(line.split(",", 1) for line in proc.stdout.split("id,password\n", 1)[1].split())
    assert set(passwords) == {new, ta}, proc.stdout
    room.passwords.update(passwords)
    return dict(new=new, ta=ta, solved=solved, half=half, pid=before, csv=csv)


def test_a_csv_import_adds_a_student_and_a_ta_while_servers_keep_running(classroom, imported):
    room, new, ta, solved = classroom, imported["new"], imported["ta"], imported["solved"]
    assert server_pid(solved) == imported["pid"]                       # nobody's server restarted
    assert room.call(solved, "GET", "/api/contents")["type"] == "directory"
    assert new in group_members(room, "nbgrader-convlab") and new not in group_members(room, "formgrade-convlab")
    assert ta in group_members(room, "formgrade-convlab") and ta not in group_members(room, "nbgrader-convlab")
    assert ta in grp.getgrnam("convlab-staff").gr_mem and new not in grp.getgrnam("convlab-staff").gr_mem
    assert new in grp.getgrnam(runtime.STUDENTS_GROUP).gr_mem and ta not in grp.getgrnam(runtime.STUDENTS_GROUP).gr_mem
    assert local.log_in(room.hub.url, new, room.passwords[new])
    assert not local.log_in(room.hub.url, new, "not-the-password")
    room.servers[new] = room.hub.start_server(new)                     # spawns with the student's tools
    env = run_in_terminal(room, new, "echo CONFIG=$JUPYTER_CONFIG_PATH")
    assert f"CONFIG={runtime.RUNTIME}/jupyter/student" in env, env
    students = {s["id"]: s for s in room.call(room.instructor, "GET", "/formgrader/api/students")}
    assert (students[solved]["first_name"], students[solved]["last_name"]) == ("Ada", "Lovelace")
    assert students[solved]["email"] == "ada@example.org"
    assert (students[imported["half"]]["first_name"], students[imported["half"]]["email"]) == ("Émile", None)
    assert (students[new]["first_name"], students[new]["last_name"]) == ("Grace", "Hopper")
    assert ta not in students                                          # staff are not gradebook students


def test_a_bad_csv_names_its_lines_and_changes_nothing(classroom, imported, tmp_path):
    room = classroom
    tag = room.instructor[len("clhub"):-1]
    fresh = f"clhub{tag}s6"
    room.extra_users.append(fresh)
    bad = tmp_path / "bad.csv"
    bad.write_text("id,first_name,last_name,email\n"
                   f"{fresh},Kurt,Gödel,kurt@example.org\n"
                   f"{imported['new']},Grace,Hopper,not-an-address\n"
                   f"{fresh},Kurt,Again,\n"
                   "Bad Name,x,y,\n"
                   "root,Super,User,\n"
                   "a,b\n", encoding="utf-8")
    before = (Path(room.hub.state / "roster.json").read_bytes(), group_members(room, "nbgrader-convlab"))
    proc = roster(room, "import", str(bad))
    assert proc.returncode == 2, proc
    for line, why in ((3, "not an address"), (4, "already on line 2"), (5, "not a valid account name"),
                      (6, "system account"), (7, "2 field(s)")):
        assert f"bad.csv line {line}: " in proc.stderr and why in proc.stderr, proc.stderr
    assert "line 2:" not in proc.stderr
    assert not local.user_exists(fresh)
    assert (Path(room.hub.state / "roster.json").read_bytes(), group_members(room, "nbgrader-convlab")) == before
    header = tmp_path / "header.csv"
    header.write_text("id,first,last_name,email\nx,y,z,\n")
    proc = roster(room, "import", str(header))
    assert proc.returncode == 2 and "header.csv line 1: the header lacks first_name" in proc.stderr
    assert "unknown column(s) first" in proc.stderr


def test_students_and_instructors_cannot_change_the_roster(classroom, imported):
    room, student = classroom, classroom.students[1]
    state = room.hub.state
    out = run_in_terminal(room, student, f"convlab-roster import {imported['csv']}; echo RC=$?; "
                                         f"cat {state}/roster-service.json; echo RC=$?")
    assert out.count("RC=0") == 0 and "Permission denied" in out, out[-2000:]
    # the student's own server token may not put anyone in a group, themselves included
    hub_api = room.hub.url + "/hub/api"
    out = run_in_terminal(room, student, (
        "python -c \"import json, os, urllib.request as u; u.urlopen(u.Request("
        f"'{hub_api}/groups/formgrade-convlab/users', data=json.dumps({{'users': ['{student}']}}).encode(), "
        "method='POST', headers={'Authorization': 'token ' + os.environ['JUPYTERHUB_API_TOKEN']})); "
        "print('ADD' + 'ED')\" 2>&1 | tail -1"))
    assert "HTTP Error 403" in out and "ADDED" not in out, out[-2000:]
    assert student not in group_members(room, "formgrade-convlab")
    out = run_in_terminal(room, room.instructor, "convlab-roster list; echo RC=$?")
    assert "only root may change the roster" in out and "RC=2" in out, out[-2000:]


@pytest.fixture(scope="module")
def removed(classroom, imported):
    """The new student (whose server runs, with a file of theirs) and the TA are removed."""
    room, new, ta = classroom, imported["new"], imported["ta"]
    for user in (new, ta):
        if user not in room.servers:
            room.servers[user] = room.hub.start_server(user)
    room.call(new, "PUT", "/api/contents/my-notes.txt", {"type": "file", "format": "text", "content": "mine"})
    assert processes(new) and processes(ta)
    proc = roster(room, "remove", new, ta)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_removal_takes_effect_at_once_and_keeps_their_files(classroom, imported, removed):
    room, new, ta = classroom, imported["new"], imported["ta"]
    for user in (new, ta):
        with pytest.raises(local.HubError, match="HTTP 404"):
            room.hub.api("GET", f"/users/{user}")                         # hub user, server, tokens gone
        assert not processes(user), f"{user} still runs {processes(user)}"
        assert not local.log_in(room.hub.url, user, room.passwords[user])
        assert user not in group_members(room, "nbgrader-convlab") | group_members(room, "formgrade-convlab")
        assert local.user_exists(user)
    assert ta not in grp.getgrnam("convlab-staff").gr_mem
    assert new not in grp.getgrnam(runtime.STUDENTS_GROUP).gr_mem
    # what the removed student hands in now (an honest entry of their own) is neither collected nor graded
    (entry, stamp), (kept, kept_stamp) = plant_entry(room, new), plant_entry(room, imported["solved"])
    try:
        assert f"{new} is not a student of the course" in (entry_problem(str(entry), new, stamp) or "")
        assert entry_problem(str(kept), imported["solved"], kept_stamp) is None   # one still on the roster
    finally:
        shutil.rmtree(entry, ignore_errors=True)
        shutil.rmtree(kept, ignore_errors=True)
    home = Path(pwd.getpwnam(new).pw_dir)
    assert (home / "my-notes.txt").read_text() == "mine"                # nothing they made is lost
    students = {s["id"] for s in room.call(room.instructor, "GET", "/formgrader/api/students")}
    assert new in students                                             # their grades stay
    assert roster(room, "remove", new).returncode == 2                 # not on the roster any more


def test_a_restarted_hub_stops_no_server_and_keeps_the_roster(classroom, imported, removed):
    room, solved, new = classroom, imported["solved"], imported["new"]
    pid = server_pid(solved)
    port = (room.hub.state / "feedback-port").read_text()
    room.hub.restart()
    assert server_pid(solved) == pid
    # the submit-time grader came back on its port: the proxy's route to it (kept across the restart) held
    assert (room.hub.state / "feedback-port").read_text() == port
    assert "Updating route for /services/convlab-feedback/" not in room.hub.log_path.read_text()
    assert room.call(solved, "GET", "/api/contents")["type"] == "directory"   # through the same proxy
    assert room.hub.api("GET", f"/users/{solved}")["servers"][""]["ready"]
    assert local.log_in(room.hub.url, solved, room.passwords[solved])
    assert not local.log_in(room.hub.url, new, room.passwords[new])           # still removed
