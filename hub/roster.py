"""The class roster on the running hub, without restarting it (run as root): `convlab-roster`.

    convlab-roster import students.csv     # add or update: OS accounts, gradebook, hub users, groups
    convlab-roster remove bob carol        # take people off the course at once (their files stay)
    convlab-roster list

The CSV is nbgrader's student format, `id,first_name,last_name,email` (the header line names the
columns, in any order), with an optional `role` column: `student` (the default, also when the
column is absent or the cell empty), `instructor` or `ta` (a TA is an instructor here: the same
group and tools). So one file can hold the whole staff and class, or a course keeps its
students' file and a small staff file and imports both.

What `import` does, for each row: the OS account (`useradd`, a random initial password printed
once as `id,password` for accounts it creates; an existing account is used as it is, and one this
tool locked on removal is unlocked), the gradebook's student with their names and email (so
formgrader shows them; instructors are not gradebook students), the hub user and its group
(`nbgrader-convlab` or `formgrade-convlab`, through the hub's REST API with the roster service's
token: no restart), the Unix groups `convlab-staff` (exactly the instructors: who may read the
staff copy) and `convlab-students` (exactly the students: whose hand-ins are collected and
graded, hub/exchange.py), and the roster file
the hub checks at every login and spawn (ROSTER_FILE). The whole file is read and checked first:
any bad row stops the import with every problem named by its line, and nothing is changed. The
hub must answer (with a valid token) before anything is changed. Each step is idempotent: if the
machine fails half-way through a good file (a full disk, the hub stopped meanwhile), running the
same import again completes it.

What `remove` does: the roster file first (the person can no longer log in or start a server),
then the hub user is deleted (their server stopped, their tokens and sessions revoked, their
group memberships gone), every remaining process of theirs killed, the OS account's password
locked and the Unix group convlab-staff (a TA) or convlab-students left: what a removed student
hands in afterwards is neither collected nor graded. Their home, their submissions in the
exchange and their grades in the gradebook are kept; importing them again gives the account back.

Only root may run it: it creates OS accounts, and the service's token (SERVICE_FILE, written by the
hub at each start) and the roster file are root's alone in the hub's state folder.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import pwd
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent      # (run by path as convlab-roster: hub.runtime from here)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

COURSE_ID = "convlab"
INSTRUCTOR_GROUP = f"formgrade-{COURSE_ID}"
STUDENT_GROUP = f"nbgrader-{COURSE_ID}"
SERVICE = "convlab-roster"
ROLES = {"student": "student", "instructor": "instructor", "ta": "instructor"}
COLUMNS = ("id", "first_name", "last_name", "email")
NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
FIRST_UID = 1000          # accounts below this are the system's: never taken into a class


def state_dir() -> Path:
    return Path(os.environ.get("CONVLAB_HUB_STATE", "/srv/jupyterhub"))


def roster_file(state: Path | None = None) -> Path:
    return (state or state_dir()) / "roster.json"


def service_file(state: Path | None = None) -> Path:
    return (state or state_dir()) / "roster-service.json"


class RosterError(Exception):
    """What is wrong, for the person running the command; nothing was changed."""


# --- the roster file: who may log in, and as what --------------------------------------------------

def read(state: Path | None = None) -> dict:
    """{"users": {id: "student"|"instructor"}, "removed": [ids this tool locked]}; {} if none."""
    try:
        data = json.loads(roster_file(state).read_text())
    except FileNotFoundError:
        return {}
    return {"users": dict(data.get("users", {})), "removed": list(data.get("removed", []))}


def write(data: dict, state: Path | None = None) -> None:
    """Atomically, root's alone (0600)."""
    path = roster_file(state)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"users": dict(sorted(data.get("users", {}).items())),
                   "removed": sorted(set(data.get("removed", [])))}, f, indent=1)
    os.replace(tmp, path)


def role_of(name: str, state: Path | None = None) -> str | None:
    """'student', 'instructor', or None (not on the roster: may not log in or start a server)."""
    return read(state).get("users", {}).get(name)


def seed(instructors: list[str], students: list[str], state: Path | None = None) -> dict:
    """The hub's first start: the roster from its environment. Later starts keep the file (what
    imports and removals made of it); the environment is then ignored."""
    data = read(state)
    if not data:
        data = {"users": {**{s: "student" for s in students}, **{i: "instructor" for i in instructors}},
                "removed": []}
        write(data, state)
    return data


def members(data: dict, role: str) -> list[str]:
    return sorted(n for n, r in data.get("users", {}).items() if r == role)


def write_service(state: Path, api_url: str, token: str, course_dir: Path) -> None:
    """The hub, at each start: where this tool reaches it, with which token (root's alone)."""
    path = service_file(state)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"api_url": api_url, "token": token, "course_dir": str(course_dir)}, f)
    os.replace(tmp, path)


def _authenticator():
    from jupyterhub.auth import PAMAuthenticator

    class RosterAuthenticator(PAMAuthenticator):
        """PAM logins of the people on the roster file as it is at the moment they log in."""

        def check_allowed(self, username, authentication=None):
            return role_of(username) is not None

    return RosterAuthenticator


def __getattr__(name):          # the hub's config names it; the command line needs no JupyterHub
    if name == "RosterAuthenticator":
        return _authenticator()
    raise AttributeError(name)


# --- the CSV --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Person:
    id: str
    first_name: str | None
    last_name: str | None
    email: str | None
    role: str            # "student" or "instructor"
    line: int


def parse_csv(raw: bytes, source: str = "roster") -> list[Person]:
    """Every row of an nbgrader-format roster, or RosterError naming each bad line and why."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise RosterError(f"{source} line {line}: not UTF-8 text (byte {raw[err.start]:#x}): save the file as UTF-8") from None
    rows = list(csv.reader(io.StringIO(text, newline="")))
    problems: list[str] = []
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise RosterError(f"{source} line 1: no header: the first line must name the columns "
                          f"{','.join(COLUMNS)} (and optionally role)")
    header = [h.strip().lower() for h in rows[0]]
    missing = [c for c in COLUMNS if c not in header]
    unknown = [h for h in header if h not in (*COLUMNS, "role")]
    dupes = sorted({h for h in header if header.count(h) > 1})
    if missing or unknown or dupes:
        raise RosterError(f"{source} line 1: the header " + "; ".join(filter(None, [
            missing and f"lacks {', '.join(missing)}", unknown and f"has unknown column(s) {', '.join(unknown)}",
            dupes and f"repeats {', '.join(dupes)}"])) + f" (expected {','.join(COLUMNS)}[,role])")
    people, seen = [], {}
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader)
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue                                     # blank lines are allowed
        if len(row) != len(header):
            problems.append(f"{source} line {line}: {len(row)} field(s), the header has {len(header)}")
            continue
        cells = {h: v.strip() for h, v in zip(header, row)}
        pid, email, role = cells["id"], cells["email"], (cells.get("role") or "student").lower()
        why = []
        if not NAME.fullmatch(pid):
            why.append(f"id {pid!r} is not a valid account name (lower-case letters, digits, _ and -, "
                       "starting with a letter or _, at most 32)")
        elif pid in seen:
            why.append(f"id {pid!r} already on line {seen[pid]}")
        else:
            try:
                if pwd.getpwnam(pid).pw_uid < FIRST_UID:
                    why.append(f"id {pid!r} is a system account (uid {pwd.getpwnam(pid).pw_uid}), not a person")
            except KeyError:
                pass
        if email and not EMAIL.fullmatch(email):
            why.append(f"email {email!r} is not an address")
        if role not in ROLES:
            why.append(f"role {cells.get('role')!r} is not one of {', '.join(ROLES)}")
        if why:
            problems.append(f"{source} line {line}: " + "; ".join(why))
            continue
        seen[pid] = line
        people.append(Person(pid, cells["first_name"] or None, cells["last_name"] or None, email or None,
                             ROLES[role], line))
    if problems:
        raise RosterError("\n".join(problems))
    if not people:
        raise RosterError(f"{source}: no one to import (only a header)")
    return people


# --- the hub's REST API, as the roster service ------------------------------------------------------

class Hub:
    def __init__(self, state: Path | None = None):
        try:
            info = json.loads(service_file(state).read_text())
        except FileNotFoundError:
            raise RosterError(f"{service_file(state)} is missing: the hub writes it when it starts (is "
                              f"CONVLAB_HUB_STATE the hub's state folder, and has the hub started?)") from None
        except PermissionError:
            raise RosterError(f"{service_file(state)}: permission denied: only root may change the roster") from None
        self.url, self.token, self.course_dir = info["api_url"].rstrip("/"), info["token"], Path(info["course_dir"])

    def call(self, method: str, path: str, body=None, ok=(200, 201, 204)):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                text = resp.read().decode()
                return json.loads(text) if text else None
        except urllib.error.HTTPError as err:
            if err.code in ok:
                return None
            raise RosterError(f"the hub refused {method} {path}: HTTP {err.code} "
                              f"{err.read().decode(errors='replace')[:500]}") from None
        except (urllib.error.URLError, OSError) as err:
            raise RosterError(f"the hub does not answer at {self.url} ({err}): start it first; nothing was "
                              "changed by this step") from None

    def check(self) -> None:
        """Before changing anything: the hub answers and the token may manage users and groups."""
        me = self.call("GET", "/user")
        if not me or me.get("name") != SERVICE:
            raise RosterError(f"the hub's token in {service_file()} is not the {SERVICE} service's")

    def user(self, name: str) -> dict | None:
        try:
            return self.call("GET", f"/users/{name}")
        except RosterError as err:
            if "HTTP 404" in str(err):
                return None
            raise


# --- applying ---------------------------------------------------------------------------------------

def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise RosterError(f"`{' '.join(cmd[:2])} ...` failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def _account(person: Person, removed: set[str]) -> str | None:
    """The OS account exists afterwards; returns the initial password of one made now."""
    try:
        pwd.getpwnam(person.id)
    except KeyError:
        password = secrets.token_urlsafe(12)
        comment = " ".join(filter(None, [person.first_name, person.last_name])).replace(":", " ")
        _run(["useradd", "--create-home", "--shell", "/bin/bash", "--comment", comment, person.id])
        _run(["chpasswd"], input=f"{person.id}:{password}\n")
        return password
    if person.id in removed:
        _run(["usermod", "--unlock", person.id])
    return None


def set_groups(data: dict) -> None:
    """The Unix groups the roster decides: convlab-staff (who may read the staff copy) and
    convlab-students (whose hand-ins are collected), each exactly the roster's people of that role."""
    from hub import runtime
    try:
        runtime.set_staff(members(data, "instructor"))
        runtime.set_students(members(data, "student"))
    except subprocess.CalledProcessError as err:
        raise RosterError(f"`{' '.join(err.cmd[:2])} ...` failed: {(err.stderr or b'').decode().strip()}") from err


def _gradebook(course_dir: Path, students: list[Person]) -> None:
    from nbgrader.api import Gradebook
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # alembic
    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}", course_id=COURSE_ID) as gb:
        for s in students:
            gb.update_or_create_student(s.id, first_name=s.first_name, last_name=s.last_name, email=s.email)


def _require_root() -> None:
    if os.geteuid() != 0:
        raise RosterError("only root may change the roster (it creates OS accounts and uses the hub's "
                          "roster service)")


def import_people(people: list[Person], state: Path | None = None, out=sys.stdout) -> dict[str, str]:
    """Apply a parsed roster; returns {id: initial password} of the accounts made."""
    _require_root()
    hub = Hub(state)
    hub.check()
    data = read(state) or {"users": {}, "removed": []}
    removed = set(data["removed"])
    _gradebook(hub.course_dir, [p for p in people if p.role == "student"])   # 1. names in the gradebook
    made = {}
    for p in people:                                         # 2. accounts
        password = _account(p, removed)
        if password:
            made[p.id] = password
    for p in people:                                         # 3. the roster file: may log in
        data["users"][p.id] = p.role
        removed.discard(p.id)
    data["removed"] = sorted(removed)
    write(data, state)
    for p in people:                                         # 4. hub users and groups, now
        if hub.user(p.id) is None:
            hub.call("POST", f"/users/{p.id}")
        group, other = ((INSTRUCTOR_GROUP, STUDENT_GROUP) if p.role == "instructor"
                        else (STUDENT_GROUP, INSTRUCTOR_GROUP))
        hub.call("POST", f"/groups/{group}/users", {"users": [p.id]})
        hub.call("DELETE", f"/groups/{other}/users", {"users": [p.id]}, ok=(200, 204, 404))
    set_groups(data)                                        # 5. who may read the staff copy; whose hand-ins count
    for p in people:
        print(f"{p.role:10} {p.id}" + (" (new account)" if p.id in made else ""), file=out)
    return made


def _kill_processes(name: str) -> None:
    try:
        uid = pwd.getpwnam(name).pw_uid
    except KeyError:
        return
    for _ in range(50):
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and _uid_of(int(p)) == uid]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def _uid_of(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def remove_people(names: list[str], state: Path | None = None, out=sys.stdout) -> None:
    _require_root()
    data = read(state)
    unknown = [n for n in names if n not in data.get("users", {})]
    if unknown:
        raise RosterError(f"not on the roster: {', '.join(unknown)} (nothing was changed)")
    hub = Hub(state)
    hub.check()
    for n in names:                                          # 1. no more logins or spawns
        del data["users"][n]
    data["removed"] = sorted(set(data["removed"]) | set(names))
    write(data, state)
    for n in names:                                          # 2. server stopped, tokens and groups gone
        if hub.user(n) is not None:
            hub.call("DELETE", f"/users/{n}")
        _kill_processes(n)                                   # 3. nothing of theirs keeps running
        try:
            pwd.getpwnam(n)
            _run(["usermod", "--lock", n])                   # 4. no password login elsewhere either
        except KeyError:
            pass                                             # (the account is gone already)
        print(f"removed    {n} (home, submissions and grades kept)", file=out)
    set_groups(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="convlab-roster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    imp = sub.add_parser("import", help="add or update the people of an nbgrader-format CSV")
    imp.add_argument("csv", type=Path)
    rm = sub.add_parser("remove", help="take people off the course at once (their files are kept)")
    rm.add_argument("ids", nargs="+")
    sub.add_parser("list", help="who is on the roster, and as what")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "import":
            try:
                raw = args.csv.read_bytes()
            except OSError as err:
                raise RosterError(f"cannot read {args.csv}: {err.strerror}") from None
            people = parse_csv(raw, str(args.csv))
            made = import_people(people)
            if made:
                print("initial passwords of the new accounts (give each person theirs):\nid,password")
                for name, password in made.items():
                    print(f"{name},{password}")
        elif args.cmd == "remove":
            remove_people(args.ids)
        else:
            _require_root()
            for name, role in read().get("users", {}).items():
                print(f"{role:10} {name}")
    except RosterError as err:
        print(f"convlab-roster: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
