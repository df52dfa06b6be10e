"""hub/k8s's exchange run on this machine, no cluster: ngshare_exchange 0.5.3 (nbgrader's plugin in
the users' images) on the lock's nbgrader and jupyter_core (its metadata's jupyter_core<4.11.2 is not
needed), with hub/k8s/jupyter/*/nbgrader_config.py as shipped (only the exchange URL is this
machine's), against ngshare 0.6.0 (the server, a JupyterHub service in its own pod) on the lock's
JupyterHub and tornado but SQLAlchemy 1.4, as in the ngshare chart's image: on SQLAlchemy 2 it loses
releases and submissions (the last test). Both from `make k8s-exchange-deps` (.venv/k8s-exchange).

A real JupyterHub (no proxy, no spawner) holds the users, their groups and their tokens, with the
roles of hub/k8s/values.yaml; ngshare asks it whose token a request carries. So what must fail is
refused for who the user is, not for the name the client claims (JUPYTERHUB_USER)."""
from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import nbformat
import pytest
import requests
import yaml
from traitlets.config import Config

from grader.course import ROOT
from hub.local import free_port

EXTRA = ROOT / ".venv" / "k8s-exchange"          # `make k8s-exchange-deps` (pip --target, --no-deps)
CLIENT = EXTRA / "client"                         # ngshare_exchange, on the lock (as in the images)
SERVER = EXTRA / "server"                         # ngshare, on SQLAlchemy 1.4 (as in its chart's image)
K8S = ROOT / "hub" / "k8s"
COURSE = "convlab"
ASSIGNMENT = "ps0"
INSTRUCTOR, STUDENTS, OUTSIDER, ADMIN = "teacher", ("alice", "bob"), "mallory", "convlab-admin"
# The pods' JUPYTER_CONFIG_PATH (values.yaml's spawn hook; the student image's copies of these folders).
CONFIG_PATH = {"instructor": [K8S / "jupyter" / "instructor", ROOT / "hub" / "jupyter" / "instructor"],
               "student": [K8S / "jupyter" / "student", ROOT / "hub" / "jupyter" / "student"]}
# Loaded last (first on the path): this machine's ngshare instead of proxy-public, set as configureExchange
# sets it; nothing else of the shipped configs is changed.
LOCAL_URL = """from ngshare_exchange import Exchange
Exchange._ngshare_url = {url!r}
"""

HUB_CONFIG = """from jupyterhub.proxy import Proxy


class NoProxy(Proxy):
    # Nothing is routed: the exchange's clients reach ngshare, and ngshare the hub's API, directly.
    should_start = False

    async def add_route(self, routespec, target, data):
        pass

    async def delete_route(self, routespec):
        pass

    async def get_all_routes(self):
        return {{}}


c.JupyterHub.proxy_class = NoProxy
c.JupyterHub.authenticator_class = "null"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite:///jupyterhub.sqlite"
c.JupyterHub.cookie_secret = bytes.fromhex({cookie!r})
c.JupyterHub.services = {services!r}
c.JupyterHub.load_roles = {roles!r}
c.JupyterHub.load_groups = {groups!r}
"""


def _wait(url: str, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:3]} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(url, timeout=2).ok:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class Site:
    """The hub, ngshare and one home per user, in a temporary folder."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []
        self.hub_api = ""
        self.ngshare = ""
        self.tokens: dict[str, str] = {}
        self.ng_token = ""

    def start(self, name: str, argv: list[str], env: dict, cwd: Path) -> subprocess.Popen:
        log = self.tmp / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs.append(proc)
        return proc

    def start_ngshare(self, name: str, pythonpath: Path, port: int, prefix: str) -> None:
        """ngshare as its chart runs it: a hub service, with the environment the hub gives one."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "PYTHON"))}
        env.update(PYTHONPATH=str(pythonpath), JUPYTERHUB_API_URL=self.hub_api, JUPYTERHUB_API_TOKEN=self.ng_token,
                   JUPYTERHUB_CLIENT_ID="service-ngshare", JUPYTERHUB_SERVICE_PREFIX=prefix + "/",
                   JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{port}")
        proc = self.start(name, [sys.executable, "-m", "ngshare", "--admins", ADMIN, "--database",
                                 f"sqlite:///{self.tmp}/{name}.sqlite", "--storage", str(self.tmp / name)],
                          env, self.tmp)
        _wait(f"http://127.0.0.1:{port}/healthz", proc, self.tmp / f"{name}.log")

    def home(self, user: str) -> Path:
        home = self.tmp / "home" / user
        home.mkdir(parents=True, exist_ok=True)
        return home

    def env(self, user: str, role: str, *, claim: str | None = None) -> dict:
        """A pod's environment: USER's token, CLAIM (default USER) as JUPYTERHUB_USER, ROLE's config."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "PYTHON"))}
        local = self.tmp / "local-url"
        env.update(HOME=str(self.home(user)), USER=claim or user, JUPYTERHUB_USER=claim or user,
                   JUPYTERHUB_API_TOKEN=self.tokens[user], JUPYTERHUB_API_URL=self.hub_api,
                   JUPYTER_CONFIG_PATH=os.pathsep.join(map(str, [local, *CONFIG_PATH[role]])),
                   PYTHONPATH=str(CLIENT), PATH=os.pathsep.join([str(Path(sys.executable).parent),
                                                                 env.get("PATH", "")]))
        return env

    def run(self, user: str, role: str, *argv: str, claim: str | None = None, check: bool = True,
            module: str = "nbgrader", cwd: Path | None = None) -> subprocess.CompletedProcess:
        """`python -m MODULE ARGV` in USER's pod (cwd: their home); CHECK: it must succeed."""
        done = subprocess.run([sys.executable, "-m", module, *argv], env=self.env(user, role, claim=claim),
                              cwd=cwd or self.home(user), capture_output=True, text=True, timeout=120)
        if check and done.returncode:
            raise AssertionError(f"{user}: {module} {' '.join(argv)} exited {done.returncode}:\n"
                                 f"{done.stdout}\n{done.stderr}")
        return done

    def api(self, user: str, method: str, path: str, **kwargs) -> requests.Response:
        """ngshare's REST API with USER's token."""
        return requests.request(method, self.ngshare + path, timeout=10,
                                headers={"Authorization": f"token {self.tokens[user]}"}, **kwargs)


def _shipped_url(role: str) -> str:
    """The ngshare URL hub/k8s/jupyter/ROLE/nbgrader_config.py gives configureExchange."""
    urls = []
    fake = SimpleNamespace(configureExchange=lambda c, url=None: urls.append(url),
                           ExchangeSubmit=object, ExchangeReleaseAssignment=object)
    saved = sys.modules.get("ngshare_exchange")
    sys.modules["ngshare_exchange"] = fake
    try:
        path = K8S / "jupyter" / role / "nbgrader_config.py"
        exec(compile(path.read_text(), str(path), "exec"), {"get_config": Config})  # noqa: S102 - ours
    finally:
        if saved is None:
            del sys.modules["ngshare_exchange"]
        else:
            sys.modules["ngshare_exchange"] = saved
    assert len(urls) == 1, urls
    return urls[0]


def _roles() -> list[dict]:
    """values.yaml's roles (user, server), and one for this test's token issuer."""
    values = yaml.safe_load((K8S / "values.yaml").read_text())
    roles = [{"name": name, **role} for name, role in values["hub"]["loadRoles"].items()]
    return roles + [{"name": "token-issuer", "services": ["convlab-test"],
                     "scopes": ["admin:users", "tokens", "read:users:groups", "users:activity",
                                "access:servers", "access:services"]}]


@pytest.fixture(scope="module")
def site():
    if not (SERVER / "ngshare").is_dir() or not (CLIENT / "ngshare_exchange").is_dir():
        pytest.fail(f"ngshare and ngshare_exchange are not in {EXTRA}: run `make k8s-exchange-deps`")
    tmp = Path(tempfile.mkdtemp(prefix="convlab-ngshare-"))
    s = Site(tmp)
    try:
        hub_port, ng_port = free_port(), free_port()
        s.hub_api = f"http://127.0.0.1:{hub_port}/hub/api"
        prefix = urlparse(_shipped_url("student")).path      # /services/ngshare, as the proxy routes it
        s.ngshare = f"http://127.0.0.1:{ng_port}{prefix}"
        s.ng_token, issuer = secrets.token_hex(32), secrets.token_hex(32)
        (tmp / "hub").mkdir()
        (tmp / "hub" / "jupyterhub_config.py").write_text(HUB_CONFIG.format(
            hub_port=hub_port, cookie=secrets.token_hex(32), roles=_roles(),
            services=[{"name": "ngshare", "url": f"http://127.0.0.1:{ng_port}", "api_token": s.ng_token,
                       "oauth_no_confirm": True},
                      {"name": "convlab-test", "api_token": issuer}],
            groups={"formgrade-convlab": {"users": [INSTRUCTOR]},
                    "nbgrader-convlab": {"users": [*STUDENTS, OUTSIDER]}}))
        base = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "PYTHON"))}
        hub = s.start("hub", [sys.executable, "-m", "jupyterhub", "-f", "jupyterhub_config.py"], base,
                      tmp / "hub")
        _wait(s.hub_api + "/", hub, tmp / "hub.log")
        s.start_ngshare("ngshare", SERVER, ng_port, prefix)
        # Every user's token as their pod's server gets it: the scopes of values.yaml's server role.
        server_scopes = next(r["scopes"] for r in _roles() if r["name"] == "server")
        issue = {"Authorization": f"token {issuer}"}
        for user in (INSTRUCTOR, *STUDENTS, OUTSIDER, ADMIN):
            requests.post(f"{s.hub_api}/users/{user}", headers=issue, timeout=10)
            r = requests.post(f"{s.hub_api}/users/{user}/tokens", headers=issue, timeout=10,
                              json={"scopes": server_scopes, "note": "server"})
            assert r.ok, r.text
            s.tokens[user] = r.json()["token"]
        (tmp / "local-url").mkdir()
        (tmp / "local-url" / "nbgrader_config.py").write_text(LOCAL_URL.format(url=s.ngshare))
        yield s
    finally:
        for proc in reversed(s.procs):
            _stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def _notebook(path: Path, source: str) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)]), path)
    return path.read_bytes()


def _each(function, items) -> list:
    with ThreadPoolExecutor(len(items)) as pool:
        return list(pool.map(function, items))


@pytest.fixture(scope="module")
def course(site):
    """The course made as values.yaml says (by ngshare's admin), then one round trip through ngshare."""
    cm = "ngshare_exchange.course_management"
    site.run(ADMIN, "student", "create_course", COURSE, INSTRUCTOR, module=cm)
    roster = site.home(ADMIN) / "students.csv"
    roster.write_text("student_id,first_name,last_name,email\n" + "".join(f"{s},,,\n" for s in STUDENTS))
    site.run(ADMIN, "student", "add_students", COURSE, str(roster), "--no-gb", module=cm)

    t = {"root": site.home(INSTRUCTOR) / "convlab"}        # the course folder (hub/jupyter/instructor)
    t["released"] = _notebook(t["root"] / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", "answer = None")
    site.run(INSTRUCTOR, "instructor", "release_assignment", ASSIGNMENT)

    def student_side(student):
        t[student, "list"] = site.run(student, "student", "list").stderr
        site.run(student, "student", "fetch_assignment", ASSIGNMENT)
        t[student, "fetched"] = (site.home(student) / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_bytes()
        t[student, "submitted"] = _notebook(site.home(student) / ASSIGNMENT / f"{ASSIGNMENT}.ipynb",
                                            f"answer = {student!r}")
        site.run(student, "student", "submit", ASSIGNMENT)
    _each(student_side, STUDENTS)
    t["inbound"] = site.run(INSTRUCTOR, "instructor", "list", "--inbound").stderr
    site.run(INSTRUCTOR, "instructor", "collect", ASSIGNMENT)
    # Feedback where nbgrader generate_feedback (on the hub: hub/grade.py) puts it, with the submission's time.
    for student in STUDENTS:
        feedback = t["root"] / "feedback" / student / ASSIGNMENT
        feedback.mkdir(parents=True)
        t[student, "timestamp"] = (t["root"] / "submitted" / student / ASSIGNMENT / "timestamp.txt").read_text()
        (feedback / "timestamp.txt").write_text(t[student, "timestamp"])
        t[student, "feedback"] = f"<html><body>{student}: 1 / 1</body></html>".encode()
        (feedback / f"{ASSIGNMENT}.html").write_bytes(t[student, "feedback"])
    site.run(INSTRUCTOR, "instructor", "release_feedback", ASSIGNMENT)
    _each(lambda student: site.run(student, "student", "fetch_feedback", ASSIGNMENT), STUDENTS)
    return t


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_an_assignment_goes_round_trip(site, course):
    """release, list, fetch, submit, list --inbound, collect, release_feedback, fetch_feedback."""
    for student in STUDENTS:
        assert f"{COURSE} {ASSIGNMENT}" in course[student, "list"]
        assert course[student, "fetched"] == course["released"]
        assert f"{COURSE} {student} {ASSIGNMENT} {course[student, 'timestamp']}" in course["inbound"]
        collected = course["root"] / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        assert collected.read_bytes() == course[student, "submitted"]
        fetched = _files(site.home(student) / ASSIGNMENT / "feedback")
        assert [p.relative_to(site.home(student)) for p in fetched] == [
            Path(ASSIGNMENT, "feedback", course[student, "timestamp"], f"{ASSIGNMENT}.html")]
        assert fetched[0].read_bytes() == course[student, "feedback"]
    assert course["alice", "submitted"] != course["bob", "submitted"]


def _refused(response: requests.Response) -> bool:
    return response.status_code == 403 and response.json() == {"success": False, "message": "Permission denied"}


# ngshare's refusal as ngshare_exchange logs it (which then exits 0 from list, fetch_assignment and
# fetch_feedback; release_assignment and submit fail through the shipped configs' Checked* classes).
DENIED = "returned failure: Permission denied"


def test_a_student_cannot_release_or_collect(site, course):
    """A student with the instructor's config, as herself or claiming the instructor: ngshare refuses."""
    _notebook(site.home("alice") / "convlab" / "release" / "ps9" / "ps9.ipynb", "planted = True")
    runs = _each(lambda argv: site.run("alice", "instructor", *argv[1:], claim=argv[0], check=False),
                 [(claim, *argv) for claim in ("alice", INSTRUCTOR)
                  for argv in (("release_assignment", "ps9"), ("collect", ASSIGNMENT))])
    for run in runs:
        assert DENIED in run.stderr, run.stderr
    assert all("Not released" in run.stderr for run in runs if run.args[3] == "release_assignment")
    assert all(run.returncode for run in runs)
    assert not (site.home("alice") / "convlab" / "submitted").exists()
    assert site.api(INSTRUCTOR, "GET", f"/assignments/{COURSE}").json()["assignments"] == [ASSIGNMENT]
    assert _refused(site.api("alice", "POST", f"/assignment/{COURSE}/ps9", data={"files": "[]"}))
    assert _refused(site.api("alice", "GET", f"/submissions/{COURSE}/{ASSIGNMENT}"))


def test_a_student_cannot_get_anothers_submission_or_feedback(site, course):
    """bob, with alice's name and her cached submission: ngshare gives him neither her work nor her feedback."""
    cache = Path(".local", "share", "jupyter", "nbgrader_cache", COURSE)
    shutil.copytree(site.home("alice") / cache, site.home("bob") / cache, dirs_exist_ok=True)
    attempt = site.home("bob") / "attempt"
    attempt.mkdir()
    fetch = site.run("bob", "student", "fetch_feedback", ASSIGNMENT, claim="alice", cwd=attempt, check=False)
    assert DENIED in fetch.stderr and _files(attempt) == [], fetch.stderr
    when = {"timestamp": course["alice", "timestamp"]}
    for path in (f"/feedback/{COURSE}/{ASSIGNMENT}/alice", f"/submission/{COURSE}/{ASSIGNMENT}/alice",
                 f"/submissions/{COURSE}/{ASSIGNMENT}/alice", f"/submissions/{COURSE}/{ASSIGNMENT}"):
        assert _refused(site.api("bob", "GET", path, params=when)), path
        assert site.api(INSTRUCTOR, "GET", path, params=when).json()["success"], path
    feedback = site.api("alice", "GET", f"/feedback/{COURSE}/{ASSIGNMENT}/alice", params=when).json()["files"]
    assert [base64.b64decode(f["content"]) for f in feedback] == [course["alice", "feedback"]]
    work = site.api(INSTRUCTOR, "GET", f"/submission/{COURSE}/{ASSIGNMENT}/alice").json()["files"]
    assert [base64.b64decode(f["content"]) for f in work] == [course["alice", "submitted"]]


def test_a_user_off_the_roster_cannot_fetch_or_submit(site, course):
    """mallory (in the hub's nbgrader-convlab group, not on ngshare's roster): no fetch, no submission."""
    listed, fetched = _each(lambda argv: site.run(OUTSIDER, "student", *argv, check=False),
                            [("list",), ("fetch_assignment", ASSIGNMENT)])
    assert DENIED in listed.stderr and f"{COURSE} {ASSIGNMENT}" not in listed.stderr, listed.stderr
    assert DENIED in fetched.stderr and not (site.home(OUTSIDER) / ASSIGNMENT).exists(), fetched.stderr
    _notebook(site.home(OUTSIDER) / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", "answer = 'mallory'")
    submit = site.run(OUTSIDER, "student", "submit", ASSIGNMENT, check=False)
    assert f"/submission/{COURSE}/{ASSIGNMENT} {DENIED}" in submit.stderr, submit.stderr
    assert submit.returncode and "Not submitted" in submit.stderr, submit.stderr
    assert _refused(site.api(OUTSIDER, "POST", f"/submission/{COURSE}/{ASSIGNMENT}", data={"files": "[]"}))
    submissions = site.api(INSTRUCTOR, "GET", f"/submissions/{COURSE}/{ASSIGNMENT}").json()["submissions"]
    assert sorted(s["student_id"] for s in submissions) == sorted(STUDENTS)


def test_both_configs_reach_the_ngshare_service_of_values_yaml():
    """Students' and instructors' exchange URL: the proxy's route to values.yaml's ngshare service."""
    values = yaml.safe_load((K8S / "values.yaml").read_text())
    (name, service), = values["hub"]["services"].items()
    url = urlparse(_shipped_url("student"))
    assert _shipped_url("instructor") == url.geturl()
    # Z2JH's proxy service (proxy-public, port 80) routes /services/<name> to the service's url
    assert (url.scheme, url.netloc, url.path) == ("http", "proxy-public", f"/services/{name}")
    # which is the ngshare chart's service: its release name (values.yaml's helm install) and port 8080
    assert service["url"] == "http://ngshare:8080" and name == "ngshare"
    assert "helm install ngshare ngshare/ngshare" in (K8S / "values.yaml").read_text()


def test_ngshare_on_the_locks_sqlalchemy_loses_a_release(site):
    """Why ngshare's server gets SQLAlchemy 1.4 and is never installed from the lock: ngshare 0.6.0
    adds a new release or submission to its database only through SQLAlchemy 1.x's backref cascade,
    which SQLAlchemy 2 removed, so on the lock's SQLAlchemy it answers success and stores nothing.
    (If this fails, ngshare keeps releases on SQLAlchemy 2: the pin can go.)"""
    alone = site.tmp / "ngshare-alone"                       # ngshare without the server's SQLAlchemy 1.4
    alone.mkdir()
    (alone / "ngshare").symlink_to(SERVER / "ngshare")
    port = free_port()
    site.start_ngshare("ngshare-lock", alone, port, "/services/ngshare-lock")
    api = f"http://127.0.0.1:{port}/services/ngshare-lock"
    head = {user: {"Authorization": f"token {site.tokens[user]}"} for user in (ADMIN, INSTRUCTOR)}
    made = requests.post(f"{api}/course/{COURSE}", headers=head[ADMIN], data={"instructors": f'["{INSTRUCTOR}"]'})
    files = [{"path": "a.txt", "content": base64.encodebytes(b"a").decode()}]
    released = requests.post(f"{api}/assignment/{COURSE}/{ASSIGNMENT}", headers=head[INSTRUCTOR],
                             data={"files": json.dumps(files)})
    assert made.json()["success"] and released.json()["success"], (made.text, released.text)
    listed = requests.get(f"{api}/assignments/{COURSE}", headers=head[INSTRUCTOR]).json()
    assert listed["assignments"] == [], listed               # "success", and nothing kept
