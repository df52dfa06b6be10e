"""Grading at submit time on the class hub: a JupyterHub managed service, `convlab-feedback`.

    /opt/convlab/python/bin/python -m hub.submit_grader          # as the hub starts it (cwd: staff/)
    python -m hub.submit_grader --bench [--burst 24]              # time from submit to feedback

What it does
    Every POLL seconds it lists the exchange's `<exchange>/convlab/inbound/` (3773
    root:convlab-staff; nbgrader's submit, `PrivateSubmit`, leaves each entry 0750
    student:convlab-staff). An entry is taken once it is complete (PrivateSubmit's 0750 is the
    last thing submit does; an entry made otherwise, once unchanged for 60 s) and is the newest of
    its student x assignment; it must pass
    `hub.exchange.entry_problem` (the student's own plain files, handed in when its name says): a
    forged or changed entry is logged and ignored. The entry is copied (plain files only, no link
    followed, owner checked on the open file) into WORK/inbox/batch-N/<student>/<assignment>/,
    and the grader grades it in its sandbox (`python -m grader autograde`, the CLI, in a process
    of its own) with its own --out (WORK/out) and its own scratch gradebook (WORK/gradebook.db):
    the instructor's gradebook is written only by the instructor's grading run (hub/grade.py).

Who runs it
    The hub starts it as the system account `convlab-grader` (primary group convlab-staff, so it
    may read the inbound entries and the staff copy of the course, and no student's home); never as
    root, never as a student. Its grading sandboxes are bubblewrap's unprivileged ones (user
    namespaces), as for any instructor who grades without root.

The queue (`FairQueue`)
    * one job per student x assignment: a newer submission replaces the one still waiting (it
      keeps its place);
    * at most one job of a student grades at a time, and a student's jobs start at least
      INTERVAL seconds apart (CONVLAB_FEEDBACK_INTERVAL, default 30: a student who hands in ten
      times a minute is graded twice);
    * round robin between students: each batch takes the next job of each student in turn, so a
      deadline rush of 200 students is graded in the order they first handed in, one each;
    * the grader runs at a lower CPU priority than the students' servers (nice CONVLAB_FEEDBACK_NICE,
      10): in a deadline rush, the students' own work stays responsive and feedback waits;
    * one batch at a time (WORKERS grader worker threads, CONVLAB_FEEDBACK_WORKERS, default 1;
      BATCH jobs per batch, CONVLAB_FEEDBACK_BATCH, default 16: the sandboxes boot once per batch,
      about 4.5 s, and each result is shown as soon as the grader wrote it, not at the batch's end).
    A grading failure never touches the submission: nbgrader's submit has already finished, and
    this service only reads the exchange.

The page (`/services/convlab-feedback/`, JupyterHub OAuth)
    A student sees their own latest submission of each assignment: its state (waiting, grading,
    graded) and, once graded, every test cell's VISIBLE result and message at once. Hidden checks
    are not shown before the instructor releases feedback: "n hidden checks not shown until
    feedback is released" (CONVLAB_FEEDBACK_HIDDEN=count, the default), or with
    CONVLAB_FEEDBACK_HIDDEN=named only that a hidden check failed and the mistake it named (the
    grader's `public_message`, as on the feedback pages); never a hidden test's text, inputs or
    expected values, and no score (it would tell the hidden checks' outcome). Everything from a
    submission is escaped. `/student/<name>` is that student's page: a student may open only
    their own (403). Instructors (hub group formgrade-convlab) see the queue: every job, waiting,
    running, done or failed, per student.
"""
from __future__ import annotations

import argparse
import asyncio
import html
import json
import os
import re
import secrets
import shutil
import signal
import stat
import sys
import tempfile
import time
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from grader.limits import MAX_ENTRIES, MAX_NOTEBOOK_BYTES  # noqa: E402
from hub.roster import COURSE_ID, INSTRUCTOR_GROUP  # noqa: E402

SERVICE = "convlab-feedback"
ACCOUNT = "convlab-grader"
MAX_FILES = MAX_ENTRIES           # more files than the grader would read (it refuses the entry anyway)
MAX_BYTES = MAX_NOTEBOOK_BYTES    # an entry larger than a notebook may be is not copied (the grader keeps 8 MB beside)
IGNORE = (".ipynb_checkpoints", "__pycache__", "feedback")   # what nbgrader's collect leaves out too (and *.pyc)
ENTRY = re.compile(r"^(?P<student>[^+]+)\+(?P<assignment>[^+]+)\+(?P<timestamp>[^+]+)(\+(?P<random>.*))?$")


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


# --------------------------------------------------------------------------------------------
# the queue (no I/O: tests/hub/test_submit_grader.py)

@dataclass
class Job:
    student: str
    assignment: str
    entry: str                        # the inbound folder's name
    timestamp: str                    # when nbgrader says it was handed in
    seen: float                       # when this service saw it (monotonic clock of the queue)
    state: str = "waiting"            # waiting | running | done | failed | replaced
    started: float | None = None
    finished: float | None = None
    result: str | None = None         # the result file (relative to WORK/out/results)
    status: str | None = None         # the grader's status (graded, timeout, ...)
    score: float | None = None
    max_score: float | None = None
    error: str = ""
    seen_at: float = field(default_factory=time.time)   # wall clock, for people and the tests
    done_at: float | None = None


class FairQueue:
    """Waiting jobs, one per student x assignment, handed out round robin between students, one
    running job per student, a student's jobs started at least `interval` seconds apart."""

    def __init__(self, interval: float = 30.0):
        self.interval = interval
        self.waiting: dict[str, OrderedDict[str, Job]] = {}   # student -> assignment -> job
        self.turn: deque[str] = deque()                         # students with waiting jobs, in turn
        self.running: set[str] = set()
        self.last_start: dict[str, float] = {}

    def offer(self, job: Job) -> Job | None:
        """Queue `job`; return the waiting job it replaces (same student and assignment), if any."""
        mine = self.waiting.setdefault(job.student, OrderedDict())
        old = mine.get(job.assignment)
        mine[job.assignment] = job                  # (a replacement keeps the old one's place)
        if job.student not in self.turn:
            self.turn.append(job.student)
        if old is not None:
            old.state = "replaced"
        return old

    def ready_at(self, student: str) -> float:
        return self.last_start.get(student, float("-inf")) + self.interval

    def take(self, now: float, limit: int) -> list[Job]:
        """Up to `limit` jobs to start now: going round the students in turn, each student not
        running and not started within `interval` gives its oldest waiting job and goes to the back."""
        batch: list[Job] = []
        for _ in range(len(self.turn)):
            if len(batch) >= limit:
                break
            student = self.turn[0]
            self.turn.rotate(-1)
            if student in self.running or now < self.ready_at(student):
                continue
            mine = self.waiting[student]
            _, job = mine.popitem(last=False)
            if not mine:
                del self.waiting[student]
                self.turn.remove(student)
            self.running.add(student)
            self.last_start[student] = now
            job.state, job.started = "running", now
            batch.append(job)
        return batch

    def finish(self, job: Job, now: float, state: str = "done") -> None:
        self.running.discard(job.student)
        job.state, job.finished, job.done_at = state, now, time.time()

    def next_ready(self, now: float) -> float | None:
        """When the next waiting job may start (None: nothing waits, or all wait on running jobs)."""
        times = [max(now, self.ready_at(s)) for s in self.turn if s not in self.running]
        return min(times) if times else None

    def __len__(self) -> int:
        return sum(len(m) for m in self.waiting.values())


# --------------------------------------------------------------------------------------------
# the exchange: complete entries, verified, copied as plain files

def complete_entries(inbound: Path, settle: float = 60.0, now: float | None = None) -> dict[tuple[str, str], tuple[str, str]]:
    """(student, assignment) -> (entry name, timestamp) of the newest complete entry of each:
    a folder whose name nbgrader gives and whose mode PrivateSubmit set last (0750), or, made
    some other way (a terminal), unchanged for `settle` seconds (its checks then say whose it is)."""
    from nbgrader.utils import parse_utc
    newest: dict[tuple[str, str], tuple[str, str, object]] = {}
    try:
        names = os.listdir(inbound)
    except OSError:
        return {}
    for name in names:
        m = ENTRY.match(name)
        if not m:
            continue
        try:
            st = os.lstat(inbound / name)
            when = parse_utc(m["timestamp"])
        except (OSError, ValueError, TypeError):
            continue
        settled = (time.time() if now is None else now) - st.st_ctime > settle
        if not stat.S_ISDIR(st.st_mode) or (stat.S_IMODE(st.st_mode) != 0o750 and not settled):
            continue                                  # not a folder, or nbgrader is still writing it
        key = (m["student"], m["assignment"])
        if key not in newest or when > newest[key][2]:
            newest[key] = (name, m["timestamp"], when)
    return {k: (v[0], v[1]) for k, v in newest.items()}


class Refused(Exception):
    pass


def copy_entry(src: Path, dest: Path, uid: int | None) -> None:
    """Copy the inbound entry `src` into `dest` (made here): plain files and folders only, each
    file opened without following links and checked on the open descriptor (a regular file, one
    name, owned by `uid` unless None): the student owns the entry and may change it meanwhile."""
    count, size = 0, 0
    dest.mkdir(parents=True)
    for folder, dirs, files in os.walk(src):
        rel = Path(folder).relative_to(src)
        dirs[:] = [d for d in dirs if d not in IGNORE]
        for d in dirs:
            st = os.lstat(Path(folder) / d)
            if not stat.S_ISDIR(st.st_mode):
                raise Refused(f"{rel / d} is not a plain folder")
            (dest / rel / d).mkdir()
        for name in files:
            if name.endswith(".pyc"):
                continue
            count += 1
            if count > MAX_FILES:
                raise Refused(f"more than {MAX_FILES} files")
            fd = os.open(Path(folder) / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or (uid is not None and st.st_uid != uid):
                    raise Refused(f"{rel / name} is not a plain file of the student's")
                size += st.st_size
                if size > MAX_BYTES:
                    raise Refused(f"larger than {MAX_BYTES // 2**20} MB")
                with open(dest / rel / name, "xb") as out:
                    while chunk := os.read(fd, 1 << 20):
                        out.write(chunk)
            finally:
                os.close(fd)


# --------------------------------------------------------------------------------------------
# the service: poll, queue, grade in batches

@dataclass
class Settings:
    exchange: Path
    work: Path
    interval: float = 30.0
    poll: float = 2.0
    workers: int = 1
    batch: int = 16
    hidden: str = "count"             # count | named
    nice: int = 10                    # the grader's CPU priority below the students' servers
    verify: bool = True               # entry_problem and owner checks (off only in --bench)

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(exchange=Path(os.environ.get("CONVLAB_EXCHANGE", "/srv/nbgrader/exchange")),
                   work=Path(os.environ.get("CONVLAB_FEEDBACK_DIR", "/srv/convlab/submit-grading")),
                   interval=_env_float("CONVLAB_FEEDBACK_INTERVAL", 30.0),
                   poll=_env_float("CONVLAB_FEEDBACK_POLL", 2.0),
                   workers=max(1, int(_env_float("CONVLAB_FEEDBACK_WORKERS", 1))),
                   batch=max(1, int(_env_float("CONVLAB_FEEDBACK_BATCH", 16))),
                   hidden="named" if os.environ.get("CONVLAB_FEEDBACK_HIDDEN") == "named" else "count",
                   nice=int(_env_float("CONVLAB_FEEDBACK_NICE", 10)))


def log(*args) -> None:
    print(time.strftime("%H:%M:%S"), "convlab-feedback:", *args, file=sys.stderr, flush=True)


class Grader:
    """Watches the inbound folder and grades what arrives, a batch at a time."""

    def __init__(self, settings: Settings, clock=time.monotonic):
        self.s = settings
        self.clock = clock
        self.queue = FairQueue(settings.interval)
        self.jobs: list[Job] = []                        # every job, in the order seen
        self.taken: dict[tuple[str, str], str] = {}      # (student, assignment) -> entry taken
        self.latest_done: dict[tuple[str, str], Job] = {}
        self.refused: set[str] = set()
        self.batches = 0
        self.proc: asyncio.subprocess.Process | None = None
        self.out = settings.work / "out"
        self.inbox = settings.work / "inbox"

    @property
    def inbound(self) -> Path:
        return self.s.exchange / COURSE_ID / "inbound"

    # -- intake --
    def scan(self) -> int:
        """Queue every new complete entry that passes the checks; return how many were queued."""
        from hub.exchange import entry_problem
        queued = 0
        for (student, assignment), (name, timestamp) in sorted(complete_entries(self.inbound).items()):
            if self.taken.get((student, assignment)) == name or name in self.refused:
                continue
            path = self.inbound / name
            if self.s.verify:
                try:
                    problem = entry_problem(str(path), student, timestamp)
                except (OSError, ValueError) as err:
                    problem = f"unreadable: {err}"
                if problem:
                    self.refused.add(name)
                    log(f"NOT graded (forged or changed after it was handed in?): {name}: {problem}")
                    continue
            job = Job(student, assignment, name, timestamp, seen=self.clock())
            self.taken[(student, assignment)] = name
            self.jobs.append(job)
            old = self.queue.offer(job)
            if old:
                log(f"{student}/{assignment}: {name} replaces {old.entry}, which was still waiting")
            queued += 1
        return queued

    # -- grading --
    def _prepare(self, batch: list[Job], folder: Path) -> list[Job]:
        """Copy each job's entry to folder/<student>/<assignment>/; the jobs whose copy failed are
        marked failed (and not graded)."""
        import pwd
        ok = []
        for job in batch:
            try:
                uid = pwd.getpwnam(job.student).pw_uid if self.s.verify else None
                copy_entry(self.inbound / job.entry, folder / job.student / job.assignment, uid)
                ok.append(job)
            except (Refused, OSError, KeyError) as err:
                job.error = f"not graded: the submission could not be read as plain files ({err})"
                self.queue.finish(job, self.clock(), "failed")
                log(f"{job.student}/{job.assignment}: {job.entry}: {job.error}")
        return ok

    def command(self, folder: Path, assignments: list[str]) -> list[str]:
        return [sys.executable, "-m", "grader", "autograde", str(folder), "--out", str(self.out),
                "--db-url", f"sqlite:///{self.s.work / 'gradebook.db'}", "--workers", str(self.s.workers),
                "--no-progress", *[f"--assignment={a}" for a in assignments]]

    async def grade(self, batch: list[Job]) -> None:
        self.batches += 1
        folder = self.inbox / f"batch-{self.batches:05d}-{secrets.token_hex(3)}"
        runnable = self._prepare(batch, folder)
        if not runnable:
            shutil.rmtree(folder, ignore_errors=True)
            return
        cmd = self.command(folder, sorted({j.assignment for j in runnable}))
        t0, since = time.monotonic(), time.time()
        with open(self.s.work / "grader.log", "ab") as logf:
            logf.write(f"\n# batch {self.batches}: {', '.join(f'{j.student}/{j.assignment}' for j in runnable)}\n".encode())
            logf.flush()
            self.proc = await asyncio.create_subprocess_exec(*cmd, cwd=str(ROOT), stdout=logf, stderr=logf,
                                                             start_new_session=True, env=_grader_env(),
                                                             preexec_fn=lambda: os.nice(self.s.nice))
            waiting = asyncio.ensure_future(self.proc.wait())
            while not (await asyncio.wait({waiting}, timeout=0.5))[0]:
                self._early(runnable, since)       # each result as soon as the grader wrote it
            code = waiting.result()
            self.proc = None
        rows = {}
        try:
            for row in json.loads((self.out / "last-run.json").read_text()):
                rows[(row["student_id"], row["assignment"])] = row["file"]
        except (OSError, ValueError):
            pass
        now = self.clock()
        for job in runnable:
            if job.state != "running":
                continue                                   # done while the batch ran
            file = rows.get((job.student, job.assignment)) if code in (0, 3) else None
            result = _read_json(self.out / "results" / file) if file else None
            if result is None or result.get("status") == "error":
                job.error = "not graded: the grader failed (not your fault; your submission is handed in)"
                self.queue.finish(job, now, "failed")
                log(f"{job.student}/{job.assignment}: grading failed (exit {code}); see {self.s.work / 'grader.log'}")
                continue
            self._done(job, file, result)
        shutil.rmtree(folder, ignore_errors=True)
        log(f"batch {self.batches}: {len(runnable)} graded in {time.monotonic() - t0:.1f} s (exit {code})")
        self.save()

    def _done(self, job: Job, file: str, result: dict) -> None:
        job.result, job.status = file, result["status"]
        job.score, job.max_score = result["score"], result["max_score"]
        self._keep_notebook(job, result)
        self.queue.finish(job, self.clock(), "done")
        key = (job.student, job.assignment)
        prev = self.latest_done.get(key)
        if prev is None or self.jobs.index(prev) < self.jobs.index(job):
            self.latest_done[key] = job

    def _early(self, jobs: list[Job], since: float) -> None:
        """The jobs of the running batch whose result file the grader has written (each result is
        written last, after the graded notebook and the gradebook): a job per student x
        assignment per batch, so the file written since the batch began is that job's."""
        for job in jobs:
            if job.state != "running":
                continue
            folder = self.out / "results" / job.student / job.assignment
            try:
                files = [(p.stat().st_mtime, p) for p in folder.glob("*.json") if not p.name.endswith(".error.json")]
            except OSError:
                continue
            files = [f for f in files if f[0] >= since]
            if not files:
                continue
            path = max(files)[1]
            result = _read_json(path)
            if result is not None and result.get("status") != "error" and "cells" in result:
                self._done(job, path.relative_to(self.out / "results").as_posix(), result)

    def _keep_notebook(self, job: Job, result: dict) -> None:
        """out/by-key/<student>/<assignment>/<key>.ipynb: the graded notebook of exactly this
        result (out/autograded/ holds the student's latest only), for hub/grade.py to reuse."""
        graded = self.out / "autograded" / job.student / job.assignment / f"{job.assignment}.ipynb"
        if not graded.is_file() or not re.fullmatch(r"[0-9a-f]+", str(result.get("key", ""))):
            return
        dest = self.out / "by-key" / job.student / job.assignment / f"{result['key']}.ipynb"
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".tmp-{dest.name}")
        shutil.copyfile(graded, tmp)
        os.replace(tmp, dest)

    def save(self) -> None:
        """WORK/state.json: every job (for instructors and the benchmark)."""
        from grader.autograde import write_atomic
        write_atomic(self.s.work / "state.json", json.dumps([asdict(j) for j in self.jobs], indent=1))

    def load(self) -> None:
        """Take up WORK/state.json (a restarted hub restarts this service): graded jobs stay
        graded, jobs that were waiting or running wait again, in their old order (the queue's
        clock is the system's monotonic one: it goes on across restarts, not across reboots)."""
        saved = _read_json(self.s.work / "state.json")
        if not isinstance(saved, list):
            return
        for row in saved:
            try:
                job = Job(**row)
            except TypeError:
                continue
            self.jobs.append(job)
            if job.state == "replaced":
                continue
            self.taken[(job.student, job.assignment)] = job.entry
            if job.state in ("waiting", "running"):
                job.state, job.started = "waiting", None
                self.queue.offer(job)
            elif job.state == "done":
                self.latest_done[(job.student, job.assignment)] = job

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        self.s.work.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.inbox, ignore_errors=True)
        self.load()
        while not stop.is_set():
            try:
                if self.scan():
                    self.save()
            except Exception as err:  # noqa: BLE001 - the service keeps serving
                log(f"scan failed: {type(err).__name__}: {err}")
            batch = self.queue.take(self.clock(), self.s.batch)
            if batch:
                try:
                    await self.grade(batch)
                except Exception as err:  # noqa: BLE001 - a failure never blocks the next batch
                    for job in batch:
                        if job.state == "running":
                            job.error = f"not graded: the grader failed ({type(err).__name__})"
                            self.queue.finish(job, self.clock(), "failed")
                    log(f"batch failed: {type(err).__name__}: {err}")
                    self.save()
                continue
            try:
                await asyncio.wait_for(stop.wait(), self.s.poll)
            except asyncio.TimeoutError:
                pass

    def kill(self) -> None:
        """Stop a grading run in progress (its whole process group: the sandboxes too)."""
        if self.proc is not None and self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass

    # -- what the pages read --
    def student_view(self, student: str) -> list[tuple[Job, Job | None]]:
        """Per assignment: the latest job of `student`, and the latest graded one if that differs."""
        latest: dict[str, Job] = {}
        for job in self.jobs:
            if job.student == student and job.state != "replaced":
                latest[job.assignment] = job
        return [(job, self.latest_done.get((student, a))) for a, job in sorted(latest.items())]


def _grader_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    for secret in ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN", "JUPYTERHUB_CLIENT_ID"):
        env.pop(secret, None)     # the grader needs no hub credential
    return env


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# the pages

_hidden_cells: dict[str, set[str]] = {}
_visible_tests: dict[str, dict[str, str]] = {}


def hidden_cells(assignment: str) -> set[str]:
    """The grade ids of the test cells that have a hidden part (from the source notebook)."""
    if assignment not in _hidden_cells:
        import nbformat
        from grader.course import source_notebook
        from grader.grading import HIDDEN_PART
        found = set()
        try:
            for cell in nbformat.read(source_notebook(assignment), as_version=4).cells:
                md = cell.metadata.get("nbgrader", {})
                if md.get("grade") and HIDDEN_PART.search(cell.source):
                    found.add(md["grade_id"])
        except (OSError, ValueError):
            pass
        _hidden_cells[assignment] = found
    return _hidden_cells[assignment]


def visible_tests(assignment: str) -> dict[str, str]:
    """grade id -> the test's visible source, from the released student notebook."""
    if assignment not in _visible_tests:
        import nbformat
        from grader.course import student_notebook
        from grader.feedback import visible_source
        tests = {}
        try:
            for cell in nbformat.read(student_notebook(assignment), as_version=4).cells:
                md = cell.metadata.get("nbgrader", {})
                if md.get("grade") and not md.get("solution"):
                    tests[md["grade_id"]] = visible_source(cell.source)
        except (OSError, ValueError):
            pass
        _visible_tests[assignment] = tests
    return _visible_tests[assignment]


STYLE = ("body{font-family:sans-serif;max-width:64em;margin:2em auto} td,th{vertical-align:top;padding:.3em .6em;"
         "text-align:left} .pass{color:#1a7f37} .fail{color:#c62828;font-weight:bold} .hidden{color:#666}"
         " pre{background:#f6f8fa;padding:.5em;white-space:pre-wrap}")


def page(title: str, body: str, refresh: bool = False) -> str:
    e = html.escape
    meta = '<meta http-equiv="refresh" content="5">' if refresh else ""
    return (f'<!doctype html><html><head><meta charset="utf-8">{meta}<title>{e(title)}</title>'
            f"<style>{STYLE}</style></head><body>{body}</body></html>\n")


def render_result(result: dict, hidden_mode: str = "count") -> str:
    """One graded submission as the student may see it before feedback is released: visible
    results and messages; hidden parts only counted (or, `named`, the grader's public message)."""
    from grader import statuses
    e = html.escape
    a = result["assignment"]
    with_hidden = hidden_cells(a)
    sources = visible_tests(a)
    rows, shown, passed, n_hidden = [], 0, 0, 0
    for cell in result.get("cells", []):
        gid = cell["grade_id"]
        hidden_failed = cell.get("public_message", cell["message"]) != cell["message"]
        visible_ok = cell["passed"] or hidden_failed      # (a hidden part runs only after the visible one passed)
        message = "" if visible_ok else cell["message"]
        shown += 1
        passed += visible_ok
        hidden = ""
        if gid in with_hidden:
            n_hidden += 1
            if hidden_mode == "named":
                hidden = e(cell["public_message"]) if hidden_failed else "hidden checks passed"
            else:
                hidden = "not shown until feedback is released"
        rows.append(f"<tr><td><code>{e(gid)}</code></td>"
                    f"<td class={'pass' if visible_ok else 'fail'}>{'passed' if visible_ok else 'failed'}</td>"
                    f"<td>{e(message)}</td><td class=hidden>{hidden}</td>"
                    f"<td><details><summary>test</summary><pre>{e(sources.get(gid, ''))}</pre></details></td></tr>")
    notes = "".join(f"<li>{e(m)}</li>" for m in result.get("messages", []))
    summary = f"Visible tests: {passed} of {shown} test cells passed."
    if n_hidden and hidden_mode == "count":
        summary += f" {n_hidden} hidden checks not shown until feedback is released."
    table = ("<table><tr><th>test</th><th>visible tests</th><th>message</th><th>hidden checks</th>"
             f"<th>visible source</th></tr>{''.join(rows)}</table>") if rows else ""
    return (f"<p>Status: <b>{e(statuses.student_text(result['status']))}</b>. {e(summary)}</p>"
            f"{f'<ul>{notes}</ul>' if notes else ''}{table}")


def student_page(grader: Grader, student: str) -> str:
    e = html.escape
    parts = [f"<h1>Your submissions, graded on submit</h1><p>Student: <b>{e(student)}</b>. This is the "
             "autograder's first look at your latest submission; your grade is what your instructor "
             "releases (hidden tests, manual grades, late penalties).</p>"]
    view = grader.student_view(student)
    if not view:
        parts.append("<p>No submission yet: submit an assignment in the Assignments tab, then reload.</p>")
    pending = False
    for job, done in view:
        parts.append(f"<h2>{e(job.assignment)}</h2><p>Submitted {e(job.timestamp)}: <b>{e(_state_text(job))}</b></p>")
        pending |= job.state in ("waiting", "running")
        if job.state == "failed":
            parts.append(f"<p>{e(job.error)}</p>")
        if done is not None:
            result = _read_json(grader.out / "results" / done.result) if done.result else None
            if result is not None:
                if done is not job:
                    parts.append(f"<p>Your previous submission ({e(done.timestamp)}):</p>")
                parts.append(render_result(result, grader.s.hidden))
    return page(f"{student}: graded on submit", "".join(parts), refresh=pending)


def _state_text(job: Job) -> str:
    return {"waiting": "waiting to be graded", "running": "being graded", "done": "graded",
            "failed": "not graded (the grader failed, not your fault; it is handed in)"}.get(job.state, job.state)


def queue_page(grader: Grader) -> str:
    e = html.escape
    now = grader.clock()
    counts = {s: sum(j.state == s for j in grader.jobs) for s in ("waiting", "running", "done", "failed", "replaced")}
    rows = []
    for job in reversed(grader.jobs):
        waited = (job.started or now) - job.seen
        took = (job.finished - job.started) if job.finished and job.started else None
        result = f"{job.status} {job.score:g}/{job.max_score:g}" if job.status else e(job.error)
        rows.append(f"<tr><td>{e(job.student)}</td><td>{e(job.assignment)}</td><td>{e(job.timestamp)}</td>"
                    f"<td class=state-{e(job.state)}>{e(job.state)}</td><td>{waited:.1f} s</td>"
                    f"<td>{'' if took is None else f'{took:.1f} s'}</td><td>{e(result)}</td>"
                    f"<td><a href=\"student/{e(job.student)}\">page</a></td></tr>")
    body = (f"<h1>Grading on submit: the queue</h1><p>{', '.join(f'{n} {s}' for s, n in counts.items())}; "
            f"{len(grader.refused)} inbound entries refused (see the hub's log). One batch of at most "
            f"{grader.s.batch} at a time, {grader.s.workers} worker(s); a student's jobs at least "
            f"{grader.s.interval:g} s apart.</p><table><tr><th>student</th><th>assignment</th><th>submitted</th>"
            f"<th>state</th><th>waited</th><th>graded in</th><th>result</th><th></th></tr>{''.join(rows)}</table>")
    return page("grading on submit: queue", body, refresh=True)


def make_app(grader: Grader, prefix: str):
    from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
    from jupyterhub.utils import url_path_join
    from tornado import web

    class Base(HubOAuthenticated, web.RequestHandler):
        def instructor(self, user: dict) -> bool:
            return INSTRUCTOR_GROUP in (user.get("groups") or [])

        def set_default_headers(self):
            self.set_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
            self.set_header("X-Content-Type-Options", "nosniff")
            self.set_header("Cache-Control", "no-store")

    class Home(Base):
        @web.authenticated
        def get(self):
            user = self.get_current_user()
            if self.instructor(user):
                self.finish(queue_page(grader))
            else:
                self.finish(student_page(grader, user["name"]))

    class Student(Base):
        @web.authenticated
        def get(self, name: str):
            user = self.get_current_user()
            if name != user["name"] and not self.instructor(user):
                raise web.HTTPError(403)
            self.finish(student_page(grader, name))

    class Status(Base):
        """The caller's own jobs as JSON (states and the grader's status; no cell text)."""
        @web.authenticated
        def get(self):
            user = self.get_current_user()
            everyone = self.instructor(user)
            jobs = [{k: v for k, v in asdict(j).items() if k in ("student", "assignment", "entry", "state", "status")
                     or everyone} for j in grader.jobs if everyone or j.student == user["name"]]
            self.finish({"jobs": jobs})

    return web.Application([
        (prefix, Home),
        (url_path_join(prefix, "student/([^/]+)"), Student),
        (url_path_join(prefix, "api/status"), Status),
        (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
    ], cookie_secret=secrets.token_bytes(32))


async def serve() -> None:
    from urllib.parse import urlparse
    settings = Settings.from_env()
    grader = Grader(settings)
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{SERVICE}/")
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10102"))
    app = make_app(grader, prefix)
    app.listen(url.port, url.hostname)
    log(f"serving {prefix} on {url.hostname}:{url.port} as uid {os.getuid()}; grading {grader.inbound} "
        f"into {settings.work} (a student's jobs {settings.interval:g} s apart, batches of {settings.batch})")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await grader.run(stop)
    finally:
        grader.kill()


# --------------------------------------------------------------------------------------------
# the benchmark: time from an entry in inbound to its result, without a hub

def bench(burst: int) -> int:
    """One submission, then a burst of `burst` by distinct students, each the solved lesson 1, in
    a scratch exchange, graded by this service's own loop (without the ownership checks, which
    need real accounts). Prints submit-to-feedback seconds (seen: within POLL of submitting)."""
    import nbformat
    from grader import samples as subs
    assignment = "01_cross_correlation"
    nb = nbformat.writes(subs.solved(assignment))
    with tempfile.TemporaryDirectory(prefix="convlab-feedback-bench-") as tmp:
        base = Path(tmp)
        settings = Settings(exchange=base / "exchange", work=base / "work", interval=0.0, poll=0.2,
                            workers=int(_env_float("CONVLAB_FEEDBACK_WORKERS", 1)),
                            batch=int(_env_float("CONVLAB_FEEDBACK_BATCH", 16)), verify=False)
        inbound = settings.exchange / COURSE_ID / "inbound"
        inbound.mkdir(parents=True)

        def submit(student: str, salt: int) -> None:
            from datetime import datetime, timezone
            ts = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
            entry = inbound / f"{student}+{assignment}+{ts}+{secrets.token_hex(4)}"
            entry.mkdir(parents=True)
            (entry / f"{assignment}.ipynb").write_text(nb)
            (entry / "timestamp.txt").write_text(ts)
            (entry / "salt.txt").write_text(str(salt))   # a new key: graded, not taken from the cache
            entry.chmod(0o750)

        async def rounds() -> None:
            grader = Grader(settings)
            stop = asyncio.Event()
            task = asyncio.create_task(grader.run(stop))
            salt = time.time_ns()
            for label, students in (("one submission", ["bench-one"]),
                                    (f"burst of {burst}", [f"bench-{i:02d}" for i in range(burst)])):
                t0 = time.monotonic()
                for s in students:
                    submit(s, salt)
                while len([j for j in grader.jobs if j.state in ("done", "failed") and j.student in students]) < len(students):
                    await asyncio.sleep(0.1)
                mine = [j for j in grader.jobs if j.student in students]
                lat = sorted(j.finished - t0 for j in mine)
                failed = sum(j.state == "failed" for j in mine)
                print(f"{label}: submit to feedback {lat[0]:.1f} s first, {lat[len(lat) // 2]:.1f} s median, "
                      f"{lat[-1]:.1f} s last ({failed} failed; {grader.batches} batches so far)", flush=True)
            stop.set()
            await task

        asyncio.run(rounds())
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hub.submit_grader", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench", action="store_true", help="time submit to feedback (no hub needed)")
    p.add_argument("--burst", type=int, default=24, help="the burst's size for --bench (24)")
    args = p.parse_args(argv)
    if args.bench:
        return bench(args.burst)
    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
