"""One real JupyterHub for all end-to-end tests (session-scoped), and the class cycle run on it once.

`classroom`: OS accounts (names start with `clhub`, removed afterwards), an exchange folder, the
hub from hub/jupyterhub_config.py on a free localhost port, every user's server started through
the hub's REST API. `graded_class`: lesson 1 released, fetched, submitted (solved / half-solved),
collected, autograded with `python -m grader autograde`, feedback released and fetched, all
through the hub's REST API and the users' own servers (nbgrader's server extensions, the contents
API, a terminal for the instructor's grading command). Everything started is stopped, even on
failure. As a non-root user every test here is skipped (it must create OS accounts).
"""
from __future__ import annotations

import copy
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import nbformat
import pytest

from grader import samples
from grader.course import ROOT, source_notebook, student_notebook
from hub import local

ASSIGNMENT = "01_cross_correlation"
EXPLORER = "04_padding_and_stride"
ARTIFACTS = ROOT / "tests" / "e2e" / "artifacts"
HALF_SOLVED = ("corr2d_impl", "convolve2d_impl")   # the exercises the half-solved student answered
GRADE_COMMAND = f"convlab-grade {ASSIGNMENT}"        # as hub/README.md gives it


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: starts real services (JupyterHub, a browser); minutes, not seconds")


def pytest_terminal_summary(terminalreporter):
    if ARTIFACTS.exists() and any(ARTIFACTS.iterdir()):
        terminalreporter.write_line(f"e2e screenshots and hub logs: {ARTIFACTS}")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


# --- the class: accounts, hub, servers ------------------------------------------------------------

@dataclass
class Classroom:
    hub: local.LocalHub
    instructor: str
    students: list[str]          # [solved, half-solved, browser learner, attacker]
    co_instructor: str           # a second instructor of the same course
    passwords: dict[str, str]
    servers: dict[str, str] = field(default_factory=dict)   # user -> server base URL
    extra_users: list[str] = field(default_factory=list)    # accounts tests made (removed at the end)

    def call(self, user: str, method: str, path: str, body=None, form: bool = False, timeout: float = 120):
        """A request to `user`'s own server (through the proxy), as the admin service."""
        return local.request(method, f"{self.servers[user]}{path}", self.hub.token, body, timeout=timeout, form=form)

    def home(self, user: str) -> Path:
        import pwd
        return Path(pwd.getpwnam(user).pw_dir)


@pytest.fixture(scope="session")
def classroom(request):
    if os.geteuid() != 0:
        pytest.skip("the e2e tests create OS accounts and run JupyterHub's spawner: run them as root "
                    "(sudo make test); as root `make test` installs everything they need")
    artifacts = request.getfixturevalue("artifacts")
    missing = local.missing_tools()
    assert not missing, "the hub cannot run here: " + "; ".join(missing)
    tag = secrets.token_hex(2)
    instructor, co_instructor = f"clhub{tag}i", f"clhub{tag}j"
    students = [f"clhub{tag}s{i}" for i in (1, 2, 3, 4)]
    passwords = {u: secrets.token_urlsafe(12) for u in [instructor, co_instructor, *students]}
    base = Path(tempfile.mkdtemp(prefix="clhub-"))
    base.chmod(0o755)
    hub = local.LocalHub(state=base / "state", instructors=[instructor, co_instructor], students=students,
                         exchange=base / "exchange", log_path=artifacts / "jupyterhub.log")
    room = None
    try:
        for user, password in passwords.items():
            local.create_user(user, password)
        hub.start()
        room = Classroom(hub, instructor, students, co_instructor, passwords)
        with ThreadPoolExecutor(len(passwords)) as pool:   # all servers start at once
            urls = pool.map(hub.start_server, passwords)
        room.servers.update(zip(passwords, urls))
        yield room
    finally:
        hub.stop()
        for user in [*passwords, *(room.extra_users if room else [])]:
            local.delete_user(user)
        shutil.rmtree(base, ignore_errors=True)


# --- notebooks the students hand in ---------------------------------------------------------------

def half_solved(assignment: str = ASSIGNMENT) -> nbformat.NotebookNode:
    """The student version with only the HALF_SOLVED exercises answered (as in solutions/)."""
    solved = {c.metadata["nbgrader"]["grade_id"]: c.source for c in samples.solved(assignment).cells
              if c.metadata.get("nbgrader", {}).get("solution")}
    nb = copy.deepcopy(samples.untouched(assignment))
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") in HALF_SOLVED:
            cell.source = solved[cell.metadata["nbgrader"]["grade_id"]]
    return nb


def expected_cell_scores(answered: tuple[str, ...] | None, assignment: str = ASSIGNMENT) -> dict[str, float]:
    """grade_id -> points each test cell should earn: the tests of an exercise follow its solution
    cell (up to the next one); they earn full points when that exercise is answered (None: all)."""
    scores, current = {}, None
    for cell in nbformat.read(source_notebook(assignment), as_version=4).cells:
        md = cell.metadata.get("nbgrader", {})
        if md.get("solution"):
            current = md["grade_id"]
        elif md.get("grade"):
            full = answered is None or current in answered
            scores[md["grade_id"]] = float(md["points"]) if full else 0.0
    return scores


def hidden_test_lines(assignment: str = ASSIGNMENT) -> list[str]:
    """The lines of the hidden tests that are not also in the student version."""
    visible = nbformat.read(student_notebook(assignment), as_version=4)
    visible_text = "\n".join(c.source for c in visible.cells)
    lines = []
    for cell in nbformat.read(source_notebook(assignment), as_version=4).cells:
        for block in re.findall(r"### BEGIN HIDDEN TESTS(.*?)### END HIDDEN TESTS", cell.source, re.S):
            lines += [ln.strip() for ln in block.splitlines()
                      if len(ln.strip()) >= 12 and ln.strip() not in visible_text]
    assert lines, f"{assignment} has no hidden tests to look for"
    return lines


# --- a browser -----------------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions"]
TIMEOUT = 120_000   # ms: kernels import PyTorch on a busy 2-core machine


@pytest.fixture(scope="module")
def browser(classroom):
    """Debian's chromium driven by Playwright (one per test module)."""
    from playwright.sync_api import sync_playwright
    assert CHROMIUM.exists(), "chromium is missing: run `make hub-deps` (apt-get install chromium)"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Shots:
    def __init__(self, folder: Path, prefix: str):
        self.folder, self.prefix, self.n = folder, prefix, 0

    def __call__(self, page, name: str) -> None:
        self.n += 1
        page.screenshot(path=str(self.folder / f"{self.prefix}-{self.n:02d}-{name}.png"))


def login(browser, room, user: str, shots: Shots):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(TIMEOUT)
    page = context.new_page()
    page.goto(f"{room.hub.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", room.passwords[user])
    shots(page, "login")
    page.click("#login_submit")
    page.wait_for_url(f"**/user/{user}/lab**")
    page.wait_for_selector("#jp-main-dock-panel")
    page.get_by_role("menuitem", name="Nbgrader").wait_for()   # the lab and its extensions are up
    return context, page



# --- the instructor's terminal --------------------------------------------------------------------

def convlab_roster(room: Classroom, *args: str) -> subprocess.CompletedProcess:
    """convlab-roster (hub/roster.py from the staff copy) as root on the hub's machine."""
    return subprocess.run([str(local.hub_python()), str(local.STAFF / "hub" / "roster.py"), *args],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, CONVLAB_HUB_STATE=str(room.hub.state)))


def run_in_terminal(room: Classroom, user: str, command: str, timeout: float = 600) -> str:
    """Run `command` in a JupyterLab terminal of `user`'s server (terminado's websocket); return
    its output; fail if it exits non-zero."""
    import websocket

    name = room.call(user, "POST", "/api/terminals", {})["name"]
    url = room.servers[user].replace("http://", "ws://") + f"/terminals/websocket/{name}"
    ws = websocket.create_connection(url, header=[f"Authorization: token {room.hub.token}"], timeout=30)
    marker = re.compile(r"CLHUB-EXIT-(\d+)")
    out = []
    try:
        ws.send(json.dumps(["stdin", f"{command}; echo CLHUB-EXIT-$((0+$?))\r"]))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ws.settimeout(max(1.0, deadline - time.monotonic()))
            msg = json.loads(ws.recv())
            if msg[0] == "stdout":
                out.append(msg[1])
                m = marker.search("".join(out))
                if m:
                    text = "".join(out)
                    assert m.group(1) == "0", f"`{command}` failed (exit {m.group(1)}):\n{text[-6000:]}"
                    return text
        raise AssertionError(f"`{command}` did not finish within {timeout:g} s:\n{''.join(out)[-6000:]}")
    finally:
        ws.close()
        try:
            room.call(user, "DELETE", f"/api/terminals/{name}")
        except local.HubError:
            pass


# --- the class cycle ------------------------------------------------------------------------------

@dataclass
class GradedClass:
    solved: str
    half: str
    formgrader_submissions: list[dict]
    feedback: dict[str, str]             # student -> fetched feedback HTML
    grade_log: str
    seconds: dict[str, float]


def _ok(reply, what: str):
    assert isinstance(reply, (dict, list)), f"{what}: unexpected reply {reply!r}"
    if isinstance(reply, dict) and "success" in reply:
        assert reply["success"], f"{what} failed: {reply.get('error') or reply.get('log') or reply}"
    return reply


def hand_in(room, student: str, assignment: str, nb: nbformat.NotebookNode, what: str = "submit") -> None:
    """`student` saves `nb` as the assignment's notebook in their server and submits it (nbgrader's
    Assignments panel: its /assignments/submit)."""
    room.call(student, "PUT", f"/api/contents/{assignment}/{assignment}.ipynb",
              {"type": "notebook", "format": "json", "content": json.loads(nbformat.writes(nb))})
    _ok(room.call(student, "POST", "/assignments/submit",
                  {"course_id": "convlab", "assignment_id": assignment}, form=True), f"{student}: {what}")


@pytest.fixture(scope="session")
def graded_class(classroom, artifacts) -> GradedClass:
    room, inst = classroom, classroom.instructor
    solved, half, learner, _ = room.students
    t0 = time.monotonic()
    seconds = {}
    form = {"course_id": "convlab", "assignment_id": ASSIGNMENT}

    # instructor: generate (gradebook) and release, as formgrader's buttons do
    _ok(room.call(inst, "POST", f"/formgrader/api/assignment/{ASSIGNMENT}/assign", {}), "generate_assignment")
    _ok(room.call(inst, "POST", f"/formgrader/api/assignment/{ASSIGNMENT}/release", {}), "release_assignment")
    seconds["release"] = time.monotonic() - t0

    # two students fetch and hand in (the third fetches in the browser test)
    for student in (solved, half):
        listing = room.call(student, "POST", "/assignments/fetch", form, form=True)
        _ok(listing, f"{student}: fetch")
        fetched = [a for a in listing["value"] if a["assignment_id"] == ASSIGNMENT and a["status"] == "fetched"]
        assert fetched, f"{student}: {ASSIGNMENT} not fetched: {listing}"
    for student, nb in ((solved, samples.solved(ASSIGNMENT)), (half, half_solved())):
        hand_in(room, student, ASSIGNMENT, nb)
    seconds["fetch+submit"] = time.monotonic() - t0

    # instructor: collect, autograde with our grader, release feedback: hub/README's command, typed
    # as written into a terminal (whose PATH must be the course's)
    log = run_in_terminal(room, inst, GRADE_COMMAND)
    (artifacts / "grade.log").write_text(log)
    seconds["collect+autograde+feedback"] = time.monotonic() - t0

    subs = room.call(inst, "GET", f"/formgrader/api/submissions/{ASSIGNMENT}")

    feedback = {}
    for student in (solved, half):
        _ok(room.call(student, "POST", "/assignments/fetch_feedback", form, form=True), f"{student}: fetch_feedback")
        folder = room.call(student, "GET", f"/api/contents/{ASSIGNMENT}/feedback")
        stamps = [item["path"] for item in folder["content"] if item["type"] == "directory"]
        assert len(stamps) == 1, f"{student}: expected one feedback folder, found {folder['content']}"
        page = room.call(student, "GET", f"/api/contents/{quote(stamps[0])}/{ASSIGNMENT}.html?type=file&format=text")
        feedback[student] = page["content"]
        (artifacts / f"feedback-{student}.html").write_text(page["content"])
    seconds["fetch_feedback"] = time.monotonic() - t0
    (artifacts / "cycle-seconds.json").write_text(json.dumps(seconds, indent=1))
    return GradedClass(solved, half, subs, feedback, log, seconds)


# --- a second round: what a hostile student hands in and plants -----------------------------------

XSS_MARK = "pwned"


def hostile_notebook() -> nbformat.NotebookNode:
    """Lesson 1 solved, plus what would run in the instructor's browser if it crossed: HTML with an
    onerror handler and Javascript from a code cell, the same in a markdown cell and a raw HTML cell.
    Each would set the page's title and request a /leak-... URL."""
    nb = copy.deepcopy(samples.solved(ASSIGNMENT))
    img = lambda where: f'<img src="/leak-{where}" onerror="document.title=\'{XSS_MARK}-{where}\'">'  # noqa: E731
    nb.cells.append(nbformat.v4.new_code_cell(
        "from IPython.display import HTML, Javascript, display\n"
        f"display(HTML({img('html')!r}))\n"
        f"display(Javascript(\"document.title = '{XSS_MARK}-js'; fetch('/leak-js')\"))"))
    nb.cells.append(nbformat.v4.new_markdown_cell(
        f"An innocent remark. {img('markdown')} <script>document.title='{XSS_MARK}-script'; fetch('/leak-script')</script> "
        f"[a link](javascript:document.title='{XSS_MARK}-link')"))
    raw = nbformat.v4.new_raw_cell(img("raw"))
    raw.metadata["raw_mimetype"] = "text/html"
    raw.metadata["format"] = "text/html"
    nb.cells.append(raw)
    return nb


@dataclass
class HostileRound:
    attacker: str
    forged_for: str          # the student in whose name the attacker planted a submission
    grade_log: str


@pytest.fixture(scope="session")
def hostile_round(classroom, graded_class, artifacts) -> HostileRound:
    """After the first round: the attacker fetches and submits `hostile_notebook()`, then, from a
    terminal (a student's shell), plants in the exchange's inbound folder a submission in the
    browser learner's name (who handed in nothing) and a later one of their own holding a link to
    the staff's solution notebook; the instructor runs the grading command again."""
    room = classroom
    learner, attacker = room.students[2], room.students[3]
    form = {"course_id": "convlab", "assignment_id": ASSIGNMENT}
    _ok(room.call(attacker, "POST", "/assignments/fetch", form, form=True), f"{attacker}: fetch")
    hand_in(room, attacker, ASSIGNMENT, hostile_notebook())
    time.sleep(1.1)          # the planted entries are later than the real one
    inbound = room.hub.exchange / "convlab" / "inbound"
    solution = local.STAFF / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    plant = (
        'TS="$(date -u +"%Y-%m-%d %H:%M:%S.%6N UTC")"; '
        f'F="{inbound}/{learner}+{ASSIGNMENT}+$TS+forged"; '
        f'mkdir "$F" && cp ~/{ASSIGNMENT}/{ASSIGNMENT}.ipynb "$F/" && printf %s "$TS" > "$F/timestamp.txt"; '
        f'L="{inbound}/{attacker}+{ASSIGNMENT}+$TS+linked"; '
        f'mkdir "$L" && cp ~/{ASSIGNMENT}/{ASSIGNMENT}.ipynb "$L/" && ln -s {solution} "$L/notes.txt" '
        '&& printf %s "$TS" > "$L/timestamp.txt"')
    run_in_terminal(room, attacker, plant)
    log = run_in_terminal(room, room.instructor, GRADE_COMMAND)
    (artifacts / "grade-hostile-round.log").write_text(log)
    return HostileRound(attacker, learner, log)


@dataclass
class Resubmission:
    student: str
    grade_log: str
    row_before: str             # the student's grades.csv row before handing in again
    row_after_other: str        # ... after a grading run collecting another student only
    other_log: str


@pytest.fixture(scope="session")
def resubmission(classroom, hostile_round) -> Resubmission:
    """After the hostile round was graded, the attacker hands in again (the half-solved notebook);
    the instructor regrades another student only (`--student`), then the attacker only."""
    room, student = classroom, hostile_round.attacker
    grades = room.home(room.instructor) / "convlab" / "grades.csv"

    def row() -> str:
        return next(line for line in grades.read_text().splitlines() if line.startswith(student + ","))
    before = row()
    hand_in(room, student, ASSIGNMENT, half_solved(), "submit again")
    other_log = run_in_terminal(room, room.instructor, f"{GRADE_COMMAND} --student {room.students[0]}")
    after_other = row()
    log = run_in_terminal(room, room.instructor, f"{GRADE_COMMAND} --student {student}")
    return Resubmission(student, log, before, after_other, other_log)
