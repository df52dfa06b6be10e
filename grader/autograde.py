"""`python -m grader autograde SUBMISSIONS`: grade every <student>/<assignment>/<assignment>.ipynb.

One orchestrator process (this one) and N worker threads, each grading one submission at a time
with two sandboxed kernels (grader/grading.py: the student kernel runs the student's code,
the examiner runs the instructor's cells and decides every verdict; grader/sandbox.py,
grader/shell_client.py), killed, not shut down, after use. Where kernels come from (one source for
student kernels, another for examiners):

* by default, a fork server per worker (grader/forkserver.py, `ForkServerPool`): one long-lived
  bubblewrap sandbox whose trusted zygote imported PyTorch, matplotlib and convlab once and forks
  a fresh kernel per submission; after each submission every other process of that sandbox is
  killed and its writable folders wiped, or the sandbox is replaced (see grader/sandbox.py for
  the threat model). A student who kills or stops the zygote gets `crashed` (or keeps the
  grade their own, already finished kernel earned) and the next student gets a new sandbox.
* with --no-fork-server (`KernelPool`): a new sandbox and kernel per submission, started and
  warmed up (PyTorch and convlab imported) ahead of time by a small pool; slower (the imports
  are CPU-bound and paid per submission).
* with --no-sandbox: plain kernel processes (`KernelPool`), no isolation.

Outputs, all under --out (default grader/):

* results/<student>/<assignment>/<key>.json: one file per graded submission, written atomically
  (os.replace); <key> hashes the submission (the notebook and the files beside it), the
  assignment's source notebook and release (its tests), the grader's own code (grader/*.py and
  convlab/*.py, `code_fingerprint`), the versions of the packages that run it and the limits. A
  re-run skips what already has a result, and re-grades when any of those changed; a run killed at
  any moment and started again loses and duplicates nothing.
* last-run.json: which result file each row of the last run came from (the key of the last
  run, which `python -m grader feedback` uses), rebuilt with the tables.
* grades.csv (student_id,assignment,score,max_score,status) and cells.csv (one row per graded
  cell: score and failure message), rebuilt atomically from the result files.
* autograded/<student>/<assignment>/<assignment>.ipynb: the executed notebook, written first
  (atomically: a failed write leaves nothing, and no gradebook row).
* the gradebook (the config's, or --db-url): students, submissions and auto scores recorded by
  nbgrader's own SaveAutoGrades, in one transaction, before the result file is written (so a
  crash in between only means the submission is graded again). Its record of each assignment
  (what `nbgrader generate_assignment` writes, one commit per cell) is checked against the source
  notebook before use and made again when a killed run left part of it (`ensure_assignment`); what
  a kill leaves of a new gradebook is completed (`ensure_gradebook`).

Status: graded | timeout | crashed | memory | tampered | invalid | missing | error. Anything but
`graded` means the score is not a plain grade (partial points earned before the failure).
Submissions are plain files: one whose student folder, assignment folder, notebook or any file or
folder beside it is a symbolic link, device, FIFO or socket is `invalid` at discovery, and nothing
of it is read (not even to key its result), copied or run (grader/integrity.py `refusal`).
`error` is the grader's own failure, never the student's (no kernel could be started, the fork
server did not come up, the gradebook could not be read, an exception in the grader): it is not
cached (its result file is <key>.error.json, which no later run reuses), not written to the
gradebook, and graded again by the next run; `python -m grader autograde` then exits with status 3.
What a student's kernel sends cannot cause it: a frame the grader refuses is that kernel's
`crashed`, strings are repaired and invalid outputs dropped (grader/shell_client.py), and so are lone
surrogates in the notebook itself.

Library functions raise (`AutogradeError` for a run that cannot start, with what to fix); only
grader/__main__.py turns errors into exit codes.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import ctypes
import functools
import warnings
import hashlib
import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import nbformat
from nbgrader import utils as nbutils
from nbgrader.api import Comment, Grade, Gradebook, GradeCell, MissingEntry, SolutionCell, TaskCell, get_alembic_version
from nbgrader.preprocessors import AssignLatePenalties, SaveAutoGrades
from sqlalchemy import inspect, text
from sqlalchemy.exc import SQLAlchemyError
from tqdm import tqdm

from . import integrity
from .course import (CONFIG, ROOT, SOLUTIONS, nbgrader, source_notebook, student_notebook, tool_env,
                     use_this_environment)
from . import monkeypatch, statuses
from .grading import CALL_TIMEOUT, Examination, is_instructor
from .forkserver import ForkServerPool
from .shell_client import KernelDied, Shell, repair_surrogates
from .sandbox import Limits, SandboxUnavailable, check_sandbox

STATUSES = statuses.NAMES           # (the table: grader/statuses.py)
FLAGGED = statuses.REVIEW           # their failed cells need a manual grade in the gradebook (`_flag`)
# The code whose change re-grades everything (`code_fingerprint`), and the packages whose versions do.
CODE_FOLDERS = (ROOT / "grader", ROOT / "convlab")
NOT_GRADING = ("grader/report.py", "grader/lms.py", "grader/feedback.py", "grader/bench.py")
PACKAGES = ("torch", "numpy", "nbgrader", "nbformat", "IPython")


# What PyTorch imports lazily, the first time some code runs, and the code that does it: the first
# optimizer (torch.optim) and torch.use_deterministic_algorithms import TorchDynamo (~1.5 s of
# CPU). The fork servers import it once when an assignment's source uses such code, instead of
# every kernel of it; the others do without (a student's own torch.optim then pays it).
LAZY_IMPORTS = {"torch._dynamo": ("torch.optim", "use_deterministic_algorithms", "torch.compile")}


def zygote_warm(assignments: list[str]) -> tuple[str, ...]:
    """The LAZY_IMPORTS modules that the source notebooks of `assignments` need."""
    sources = [source_notebook(a).read_text() for a in assignments]
    return tuple(m for m, uses in LAZY_IMPORTS.items() if any(u in s for s in sources for u in uses))


class AutogradeError(Exception):
    """The run cannot start (a wrong folder or assignment, no sandbox); the message says what to fix."""


class GraderError(Exception):
    """The grader failed on one submission through no fault of the submission (no kernel could be
    started, the fork server did not come up): that submission gets status `error`."""


@dataclass
class Options:
    workers: int = field(default_factory=lambda: usable_cpus())
    timeout: float = 120.0
    memory: int = 2 * 2**30
    out: Path = ROOT / "grader"
    sandbox: bool = True
    fork_server: bool = True             # one long-lived sandbox per worker (grader/forkserver.py)
    call_timeout: float = CALL_TIMEOUT   # seconds per call of the student's code from a test
    config_dir: Path = CONFIG.parent
    db_url: str | None = None
    progress: bool = True
    assignments: tuple[str, ...] = ()    # empty: every course assignment found in the submissions


@dataclass
class Job:
    student: str
    assignment: str
    path: Path
    key: str = ""
    status: str | None = None            # set early for invalid / missing
    message: str = ""
    nb: nbformat.NotebookNode | None = None
    findings: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)   # the grader's own work on it (main thread)
    hidden_failed: set = field(default_factory=set)   # grade ids failed in a hidden part (Examination)


# ---------------------------------------------------------------------------------------------
# configuration and the gradebook

def usable_cpus() -> int:
    """The CPUs this process may use: its affinity, capped by its cgroup's CPU quota (cgroup v2
    cpu.max or v1 cpu.cfs_quota_us, e.g. an instructor's limit on the class hub), at least 1."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_quota()
    return max(1, min(n, int(quota)) if quota else n)


def _cgroup_quota() -> float | None:
    """CPUs allowed by this process's cgroup quota (None: no quota, or no cgroup to read)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":                                  # v2: "max 100000" or "50000 100000"
            for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
                f = root / path.lstrip("/") / "cpu.max"
                if f.is_file():
                    quota, period = f.read_text().split()
                    return None if quota == "max" else int(quota) / int(period)
        elif "cpu" in controllers.split(","):                   # v1
            base = Path("/sys/fs/cgroup") / controllers / path.lstrip("/")
            try:
                quota = int((base / "cpu.cfs_quota_us").read_text())
                period = int((base / "cpu.cfs_period_us").read_text())
            except (OSError, ValueError):
                continue
            return None if quota <= 0 else quota / period
    return None


def _config(config_dir: Path):
    from traitlets.config.loader import PyFileConfigLoader
    return PyFileConfigLoader("nbgrader_config.py", path=str(config_dir)).load_config()


def course_config(config_dir: Path):
    """nbgrader's CourseDirectory as configured by config_dir/nbgrader_config.py."""
    from nbgrader.coursedir import CourseDirectory
    return CourseDirectory(config=_config(config_dir))


@functools.cache
def late_penalties(config_dir: Path) -> AssignLatePenalties:
    """nbgrader's AssignLatePenalties as the course configures it (its LateSubmissionPlugin and
    penalty method, e.g. `c.LateSubmissionPlugin.penalty_method = "zero"`), once per run."""
    late = AssignLatePenalties(config=_config(config_dir))
    late.init_plugin()
    return late


def ensure_assignment(assignment: str, db_url: str, config_dir: Path, source: nbformat.NotebookNode,
                      release: nbformat.NotebookNode) -> integrity.ReleaseRecord:
    """The gradebook's record of the assignment, checked before use. nbgrader generate_assignment
    makes it (into a throwaway release folder) when it is missing or lacks any nbgrader cell of the
    `source` notebook: nbgrader commits it cell by cell, so a run killed meanwhile leaves a part,
    which `--force` replaces (a notebook without submissions). The `release` must then sanitize
    against it, as every submission will. AutogradeError when it cannot be made right."""
    ensure_gradebook(db_url)
    record = _release_record(db_url, assignment)
    missing = record.missing(source) if record else ["the notebook"]
    if missing and record and record.submissions:
        raise AutogradeError(
            f"the gradebook's record of {assignment} lacks {_few(missing)} of solutions/{assignment}, and "
            f"has {record.submissions} submissions, so nbgrader cannot record it again: remove the assignment "
            f"from the gradebook (nbgrader db assignment remove {assignment} --force) or use another (--db-url)")
    if missing:
        _generate(assignment, db_url, config_dir)
        record = _release_record(db_url, assignment)
        missing = record.missing(source) if record else ["the notebook"]
        if missing:
            raise AutogradeError(f"nbgrader generate_assignment left the gradebook's record of {assignment} "
                                 f"without {_few(missing)}")
    try:
        integrity.sanitize(copy.deepcopy(release), assignment, "(release)", db_url, record)
    except Exception as err:  # noqa: BLE001 - whatever it is, no submission could be read with it
        raise AutogradeError(f"the release of {assignment} (notebooks/{assignment}) does not fit the gradebook's "
                             f"record of it ({type(err).__name__}: {err}); run `make release`") from None
    return record


def _release_record(db_url: str, assignment: str) -> integrity.ReleaseRecord | None:
    try:
        return integrity.ReleaseRecord.read(db_url, assignment)
    except MissingEntry:
        return None


def _few(items: list[str]) -> str:
    return ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")


def ensure_gradebook(db_url: str) -> None:
    """Create the gradebook if it is missing (nbgrader's Gradebook), and finish one that a run
    killed while creating it left: nbgrader creates the tables one statement at a time and the
    version table (alembic's, which `nbgrader db upgrade` reads) last, and never adds that table
    to a gradebook that has any other."""
    with Gradebook(db_url) as gb:
        if "alembic_version" in inspect(gb.engine).get_table_names():
            if gb.db.execute(text("SELECT count(*) FROM alembic_version")).scalar():
                return
        else:
            gb.db.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL);"))
        gb.db.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": get_alembic_version()})
        gb.db.commit()


PR_SET_PDEATHSIG = 1


def _generate(assignment: str, db_url: str, config_dir: Path) -> None:
    """nbgrader generate_assignment --force into the gradebook (a throwaway release folder), as
    `course.nbgrader` runs it, in a process killed with this one: one that outlived a killed run
    would go on writing the record while the next run repairs it."""
    libc, parent = ctypes.CDLL(None, use_errno=True), os.getpid()

    def die_with_parent() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    with tempfile.TemporaryDirectory() as tmp:
        args = ["generate_assignment", assignment, "--force", "--log-level=WARN",
                f"--CourseDirectory.release_directory={tmp}", f"--CourseDirectory.db_url={db_url}"]
        proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=config_dir, env=tool_env(),
                              capture_output=True, text=True, preexec_fn=die_with_parent)
    if proc.returncode != 0:
        raise AutogradeError(f"`nbgrader {' '.join(args[:2])}` failed (exit {proc.returncode}):\n"
                             f"{proc.stdout}{proc.stderr}")


def release_notebook(assignment: str, db_url: str, config_dir: Path) -> nbformat.NotebookNode:
    """The student version (what students received): notebooks/<a>/<a>.ipynb (kept in sync with
    solutions/ by `make release` and its test), else generated from solutions/ by nbgrader."""
    committed = student_notebook(assignment)
    if committed.is_file():
        return nbformat.read(committed, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        nbgrader("generate_assignment", assignment, "--force", "--no-db", "--log-level=WARN",
                 f"--CourseDirectory.release_directory={tmp}", config_dir=config_dir)
        return nbformat.read(Path(tmp) / assignment / f"{assignment}.ipynb", as_version=4)


# ---------------------------------------------------------------------------------------------
# discovery

def roster(submissions: Path, wanted: tuple[str, ...] = ()) -> list[str]:
    """The assignments to grade: `wanted`, or else every course assignment that at least one
    student folder has (so grading lesson 1 does not report lessons 2-5 as missing). Student
    folders are looked into only if they are folders, not links to one; their entries by lstat."""
    course = sorted(p.parent.name for p in SOLUTIONS.glob("*/*.ipynb") if p.stem == p.parent.name)
    unknown = sorted(set(wanted) - set(course))
    if unknown:
        raise AutogradeError(f"{', '.join(unknown)} not an assignment of this course "
                             f"(solutions/ has {', '.join(course)})")
    if wanted:
        return sorted(wanted)
    found = {a for a in course for s in _entries(submissions) if s.is_dir(follow_symlinks=False)
             and os.path.lexists(Path(s.path) / a)}
    return sorted(found)


def _entries(folder: Path) -> list[os.DirEntry]:
    """The entries of `folder` whose names do not start with a dot, in name order."""
    with os.scandir(folder) as it:
        return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)


def discover(submissions: Path, assignments: list[str]) -> tuple[list[Job], list[str]]:
    """One job per student folder × assignment; warnings for what is ignored. Nothing is
    followed: a student folder that is a link, device, FIFO or socket gets `invalid` jobs, and so
    does a submission with one anywhere in its folder (`integrity.refusal`); plain files at the
    top are ignored, as before."""
    jobs, warnings = [], []
    for entry in _entries(submissions):
        student, student_dir = entry.name, Path(entry.path)
        if not _text(student):
            warnings.append(f"{student.encode('utf-8', 'replace').decode()!r}: a folder name that is not "
                            "UTF-8 text cannot be a student id (nbgrader's gradebook and grades.csv need one): "
                            "ignored; rename it to the student's id")
            continue
        kind = integrity.special(entry.stat(follow_symlinks=False).st_mode)
        if kind:
            message = f"the student folder {student} is {kind}: {integrity.PLAIN_ONLY}"
            jobs += [Job(student, a, student_dir / a / f"{a}.ipynb", status="invalid", message=message)
                     for a in assignments]
            continue
        if not entry.is_dir(follow_symlinks=False):
            continue
        for extra in _entries(student_dir):
            if extra.name not in assignments and (extra.is_dir(follow_symlinks=False) or extra.is_symlink()):
                warnings.append(f"{student}/{extra.name}: not an assignment of this course, ignored")
        jobs += [_job(student, student_dir, a) for a in assignments]
    return jobs, warnings


def _text(name: str) -> bool:
    """Is a file name (surrogate-escaped bytes where it was not UTF-8) plain UTF-8 text?"""
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _job(student: str, student_dir: Path, a: str) -> Job:
    """The job of one student folder (a real folder) × assignment: `invalid` when the assignment
    folder is, or holds, anything but plain files and folders; `missing` without the notebook."""
    folder = student_dir / a
    job = Job(student, a, folder / f"{a}.ipynb")
    mode = os.lstat(folder).st_mode if os.path.lexists(folder) else stat.S_IFREG    # (a file: missing)
    is_dir = stat.S_ISDIR(mode)
    refused = integrity.refusal(folder, f"{a} (the assignment folder)") if is_dir or integrity.special(mode) else None
    if refused:
        job.status, job.message = "invalid", refused
    elif not os.path.lexists(job.path):
        others = sorted(e.name for e in _entries(folder) if e.name.endswith(".ipynb")) if is_dir else []
        job.status = "missing"
        job.message = f"no {a}/{a}.ipynb" + (f" (found {', '.join(others)}: wrong file name)" if others else "")
    return job


@functools.cache
def code_fingerprint(folders: tuple[Path, ...] = CODE_FOLDERS) -> str:
    """A hash of the grader's own code: every *.py (and nbgrader/nbval config) under `folders`
    (grader/inside/ included), by relative path and content, but for the tools that only read
    results (NOT_GRADING: editing the class report re-grades nothing), and the versions of the
    packages in PACKAGES. Computed once per process (the code does not change while it runs)."""
    h = hashlib.sha256()
    for folder in folders:
        for f in sorted(folder.rglob("*")):
            rel = f.relative_to(folder).as_posix()
            if f.is_file() and f.suffix in (".py", ".cfg") and f"{folder.name}/{rel}" not in NOT_GRADING:
                h.update(f"{folder.name}/{rel}\0".encode())
                h.update(hashlib.sha256(f.read_bytes()).digest())
    for package in PACKAGES:
        try:
            h.update(f"{package}=={metadata.version(package)}\0".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{package} missing\0".encode())
    return h.hexdigest()


def job_key(job: Job, opts: Options) -> str:
    """The submission, the assignment's tests (source notebook and release), the grader's code and
    the limits: a result is reused only when none of them changed. A job that discovery already
    gave a status (missing, invalid) is keyed by its message: nothing of it is read; the others
    by every regular file of the submission's folder (`integrity.plain_files`: no link followed)."""
    h = hashlib.sha256()
    h.update(f"{code_fingerprint()}|{opts.timeout}|{opts.call_timeout}|{opts.memory}|{opts.sandbox}|{job.status}".encode())
    h.update(source_notebook(job.assignment).read_bytes())
    release = student_notebook(job.assignment)
    h.update(release.read_bytes() if release.is_file() else b"<generated release>")
    if job.status is None:
        for rel, fd in integrity.plain_files(job.path.parent):
            h.update(f"{rel}\0".encode())
            h.update(_file_hash(fd))
    else:
        h.update(b"<not read>" + job.message.encode())
    return h.hexdigest()[:24]


def _file_hash(fd: int) -> bytes:
    """The SHA-256 of what is left to read from `fd` (not closed)."""
    h = hashlib.sha256()
    while chunk := os.read(fd, 1 << 20):
        h.update(chunk)
    return h.digest()


def result_path(out: Path, job: Job, status: str = "") -> Path:
    """Where the result of `job` is kept; a result with status `error` gets its own name, which no
    later run reuses (so it is graded again)."""
    suffix = ".error.json" if status == "error" else ".json"
    return out / "results" / job.student / job.assignment / f"{job.key}{suffix}"


LAST_RUN = "last-run.json"


def write_last_run(out: Path, jobs: list[Job], results: list[dict]) -> None:
    """last-run.json: the result file of every row of this run (what feedback shows)."""
    rows = [{"student_id": j.student, "assignment": j.assignment, "key": j.key,
             "file": str(result_path(out, j, r["status"]).relative_to(out / "results"))}
            for j, r in zip(jobs, results)]
    write_atomic(out / LAST_RUN, json.dumps(rows, indent=1))


_UMASK = os.umask(0o022)       # this process's umask, read once (setting it is process-wide)
os.umask(_UMASK)


def write_atomic(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` through a temporary file beside it, replaced in one step: a
    reader sees the old file or the new one, never a part; a failed write leaves no trace."""
    data = text.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)        # as a plain open() would (mkstemp makes it 0600): on
        with os.fdopen(fd, "wb") as f:        # the hub the staff group shares the course folder
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# ---------------------------------------------------------------------------------------------
# kernels

class KernelPool:
    """Kernels started and warmed up ahead of time: `spares` boots in flight at most, and never
    more than the jobs that still need one."""

    def __init__(self, scratch: Path, opts: Options, needed: int, role: str) -> None:
        self.scratch, self.opts, self.role = scratch, opts, role
        self.limits = Limits(memory=opts.memory)
        self.spares = opts.workers
        self.remaining = needed
        self.lock = threading.Lock()
        self.booting: deque[Future] = deque()
        self.boot = ThreadPoolExecutor(max_workers=max(2, opts.workers), thread_name_prefix="boot")
        self._top_up()

    def _start(self) -> Shell:
        k = Shell.start(self.scratch, role=self.role, sandbox=self.opts.sandbox, limits=self.limits)
        k.ready()
        return k

    def _top_up(self) -> None:
        while len(self.booting) < min(self.spares, self.remaining):
            self.booting.append(self.boot.submit(self._start))
            self.remaining -= 1

    def acquire(self) -> Shell:
        with self.lock:
            if not self.booting:
                self.remaining += 1
                self._top_up()
            fut = self.booting.popleft()
            self._top_up()
        try:
            return fut.result()
        except KernelDied:
            return self._start()          # one retry, synchronously

    def close(self) -> None:
        with self.lock:
            self.remaining = 0
            pending = list(self.booting)
            self.booting.clear()
        for fut in pending:
            try:
                fut.result().stop()
            except BaseException:
                pass
        self.boot.shutdown(wait=True)


# ---------------------------------------------------------------------------------------------
# grading one submission (worker thread)

def execute(job: Job, student: Shell, examiner: Shell, imports: dict, opts: Options) -> tuple[str | None, dict]:
    """Grade the sanitized notebook with two kernels (grader/grading.py: the student's code in
    `student`, the instructor's cells and every verdict in `examiner`). Fills the cells' outputs in
    job.nb; returns (death reason or None, timings)."""
    exam = Examination(job, student, examiner, imports, timeout=opts.timeout, sandbox=opts.sandbox,
                       call_timeout=opts.call_timeout)
    job.findings.extend(monkeypatch.findings([(f"cell {i}", c.source) for i, c in enumerate(job.nb.cells)
                                              if c.cell_type == "code" and not is_instructor(c)]))
    died = None
    try:
        exam.run()
    except KernelDied as err:
        died = err.reason
        if err.detail:
            job.message = (job.message + "; " if job.message else "") + err.detail[:500]
        message = statuses.death_message(died, timeout=opts.timeout, memory=_size(opts.memory))
        for cell in exam.cells[exam.position:]:
            if integrity.is_test(cell) and not any(o.output_type == "error" for o in cell.get("outputs", [])):
                cell.outputs = list(cell.get("outputs", [])) + [_error("GraderStopped", f"not graded: {message}")]
    finally:
        exam.stop()
    return died, exam.timings


def _error(ename: str, evalue: str):
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def _size(n: int) -> str:
    return f"{n / 2**30:g} GB" if n >= 2**30 else f"{n / 2**20:g} MB"


# ---------------------------------------------------------------------------------------------
# recording (main thread)

def _cell_results(nb, hidden_failed: set = frozenset()) -> list[dict]:
    """Each graded cell's score and failure message (for the instructor: cells.csv, formgrader),
    and the message the student may see (`public_message`: for a failure in a hidden part, only
    that a hidden check failed and the mistake it names, never its inputs, expected values or
    the student's own message)."""
    rows = []
    for cell in nb.cells:
        md = cell.metadata.get("nbgrader", {})
        if not md.get("grade"):
            continue
        score, max_score = nbutils.determine_grade(cell, None)
        message = ""
        for o in cell.get("outputs", []):
            if o.output_type == "error":
                message = f"{o.ename}: {o.evalue}"[:2000]
                break
            if o.output_type == "stream" and o.name == "stderr":
                message = f"wrote to stderr: {o.text[:500]}"
        public = hidden_message(message) if md["grade_id"] in hidden_failed else message
        rows.append({"grade_id": md["grade_id"], "score": float(score or 0), "max_score": float(max_score),
                     "passed": bool(score is not None and score >= max_score), "message": message,
                     "public_message": public})
    return rows


NAMED_MISTAKE = re.compile(r"it matches what you get if you (.{1,300}?)\.$", re.S)


def hidden_message(message: str) -> str:
    """What a student is told of a failure in a hidden part: that it failed, and the mistake the
    check named (convlab.expect_close / expect_equal: "... it matches what you get if you X."),
    if it named one; the rest (inputs, expected values, their own exception) stays hidden."""
    named = NAMED_MISTAKE.search(message)
    if named and message.startswith("AssertionError:"):
        return f"A hidden check failed: your answer matches what you get if you {named.group(1)}."
    return "A hidden check failed (its inputs and message are not shown)."


def record(job: Job, died: str | None, timings: dict, gb: Gradebook, opts: Options, max_scores: dict) -> dict:
    """Write the autograded notebook, then save grades to the gradebook (nbgrader's
    SaveAutoGrades), then the result file. A grader error (`died == "grader"`) goes to neither the
    gradebook nor the autograded notebooks, and its result file is never reused. If writing or
    saving fails (the student's data cannot make either fail: grader/shell_client.py repairs it), the
    submission gets status `error` (the grader's failure), nothing of it stays recorded, and the
    run goes on."""
    cells = _cell_results(job.nb, job.hidden_failed) if job.nb is not None and died != "grader" else []
    if job.status in ("invalid", "missing", "error"):
        status = job.status
    elif died:
        status = statuses.of_death(died)
    elif job.findings:
        status = "tampered"
    else:
        status = "graded"
    t = time.monotonic()
    if job.nb is not None and status != "error":
        dest = opts.out / "autograded" / job.student / job.assignment / f"{job.assignment}.ipynb"
        written = False
        try:
            write_atomic(dest, nbformat.writes(job.nb))     # first: a write that fails leaves no row
            written = True
            flag = (status, _reason(job, died, opts)) if status in FLAGGED else None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")     # SQLAlchemy chatter that nbgrader also emits
                _save_to_gradebook(job, gb, late_penalties(opts.config_dir), flag)
            job.timings["record"] = time.monotonic() - t
        except Exception as err:  # noqa: BLE001 - the grader's failure, reported as such
            status, died, cells = "error", "grader", []
            job.message = f"could not record the grade: {type(err).__name__}: {err}"
            if written:
                dest.unlink(missing_ok=True)
    elif status == "missing" and job.path.parent.is_dir() and not job.path.parent.is_symlink():
        try:                                        # the folder, without the notebook: a zero
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _save_to_gradebook(job, gb, late_penalties(opts.config_dir))
        except Exception as err:  # noqa: BLE001 - the grader's failure, reported as such
            status, died = "error", "grader"
            job.message = f"could not record the missing notebook's zero: {type(err).__name__}: {err}"
    result = {
        "student_id": job.student, "assignment": job.assignment, "key": job.key,
        "status": status,
        "score": sum(c["score"] for c in cells),
        "max_score": sum(c["max_score"] for c in cells) if cells else max_scores[job.assignment],
        "messages": _messages(job, died, opts), "cells": cells, "timings": {**timings, **job.timings},
    }
    write_atomic(result_path(opts.out, job, status), json.dumps(result, indent=1))
    return result


def _messages(job: Job, died: str | None, opts: Options) -> list[str]:
    """What the result file says happened: how the kernel died, the job's message, the findings."""
    messages = list(job.findings)
    if job.message:
        messages.insert(0, job.message)
    if died:
        messages.insert(0, statuses.death_message(died, timeout=opts.timeout, memory=_size(opts.memory)))
    return messages


def _reason(job: Job, died: str | None, opts: Options) -> str:
    """The flagged submission's reason, for its gradebook comments (at most 1,000 characters)."""
    text = "; ".join(_messages(job, died, opts)) or "see the grader's result file"
    return text if len(text) <= 1000 else text[:999] + "…"


def _save_to_gradebook(job: Job, gb: Gradebook, late: AssignLatePenalties,
                       flag: tuple[str, str] | None = None) -> None:
    """What `nbgrader autograde` records: the student, the submission (with its timestamp), the
    scores (SaveAutoGrades'; without a notebook, for an assignment folder handed in without it, a
    zero on every graded cell and nothing to grade by hand, as nbgrader gives a missing notebook)
    and AssignLatePenalties' penalty, and for a `flag` (status, reason) the review marks
    (`_flag`), in one commit (on a failure the session is rolled back, so the next submission
    starts clean)."""
    try:
        gb.update_or_create_student(job.student)
        timestamp = _timestamp(job.path.parent)
        gb.update_or_create_submission(job.assignment, job.student, **({"timestamp": timestamp} if timestamp else {}))
        if job.nb is not None:
            _SaveAutoGrades().save(gb, job.nb, job.assignment, job.student)
        else:
            for grade in gb.find_submission_notebook(job.assignment, job.assignment, job.student).grades:
                grade.auto_score, grade.needs_manual_grade = 0, False
        _assign_late_penalty(gb, job, late)
        if flag and job.nb is not None:
            _flag(gb.find_submission_notebook(job.assignment, job.assignment, job.student), *flag)
        gb.db.commit()
    except BaseException:
        gb.db.rollback()
        raise


def _flag(notebook, status: str, reason: str) -> None:
    """Review marks on a flagged submitted notebook, where instructors work (formgrader): its
    failed autograded cells (all of its graded cells when `tampered`: nothing it scored can be
    trusted) need a manual grade, and each comment row gets the reason as its automatic comment
    (formgrader shows it in the comment box; the students' feedback pages show only the comments
    an instructor writes: grader/feedback.py)."""
    for grade in notebook.grades:
        failed = grade.auto_score is not None and grade.max_score and grade.auto_score < grade.max_score
        if status == "tampered" or failed:
            grade.needs_manual_grade = True
    note = f"The grader flagged this submission ({status}): {reason}. Check it before releasing feedback."
    for comment in notebook.comments:
        comment.auto_comment = f"{comment.auto_comment} {note}" if comment.auto_comment else note


def _assign_late_penalty(gb: Gradebook, job: Job, late: AssignLatePenalties) -> None:
    """AssignLatePenalties.preprocess on the run's session (its plugin and checks, the same rows;
    nbgrader's opens a gradebook of its own for every notebook): the notebook's penalty from how
    late the submission's timestamp is after the assignment's due date (and the student's
    extension), none when it is not late."""
    submission = gb.find_submission(job.assignment, job.student)
    notebook = gb.find_submission_notebook(job.assignment, job.assignment, job.student)
    notebook.late_submission_penalty = None
    gb.db.flush()
    if submission.total_seconds_late > 0:
        penalty = late.plugin_inst.late_submission_penalty(job.student, notebook.score, submission.total_seconds_late)
        if penalty is not None:
            notebook.late_submission_penalty = late._check_late_penalty(notebook, penalty)


class _SaveAutoGrades(SaveAutoGrades):
    """nbgrader's SaveAutoGrades (the same rows and scores) in one transaction per notebook: it
    commits after every cell, an fsync each on SQLite (~0.4 s per notebook on this machine)."""

    def save(self, gb: Gradebook, nb: nbformat.NotebookNode, assignment: str, student: str) -> None:
        """Save the notebook's scores, flushed; the caller commits (or rolls back on a failure)."""
        self.gradebook, self.notebook_id, self.assignment_id, self.student_id = (
            _SubmittedRows(gb, assignment, assignment, student), assignment, assignment, student)
        gb.db.commit = gb.db.flush                            # what SaveAutoGrades calls per cell
        try:
            for i, cell in enumerate(nb.cells):
                self.preprocess_cell(cell, {}, i)
        finally:
            del gb.db.commit
        gb.db.flush()


class _SubmittedRows:
    """The gradebook as SaveAutoGrades sees it for one submitted notebook: its grades and comments
    read in four queries, where nbgrader's find_grade and find_comment run one to two per cell
    (the same rows, found the same way: a grade cell before a task cell of the same name)."""

    def __init__(self, gb: Gradebook, notebook: str, assignment: str, student: str) -> None:
        self.db, self.where = gb.db, (assignment, notebook, student)
        sub = gb.find_submission_notebook(notebook, assignment, student).id
        self.grades: dict = {}
        self.comments: dict = {}
        for rows, row, cells in ((self.grades, Grade, (GradeCell, TaskCell)), (self.comments, Comment, (SolutionCell, TaskCell))):
            for cell in cells:
                query = self.db.query(cell.name, row).select_from(row).join(cell, cell.id == row.cell_id)
                for name, found in query.filter(row.notebook_id == sub):
                    rows.setdefault(name, found)

    def find_grade(self, name: str, notebook: str, assignment: str, student: str) -> Grade:
        if name not in self.grades:
            raise MissingEntry(f"No such grade: {assignment}/{notebook}/{name} for {student}")
        return self.grades[name]

    def find_comment(self, name: str, notebook: str, assignment: str, student: str) -> Comment:
        if name not in self.comments:
            raise MissingEntry(f"No such taskcomment: {assignment}/{notebook}/{name} for {student}")
        return self.comments[name]


def _timestamp(folder: Path):
    """nbgrader's timestamp.txt beside the notebook, if it is a regular file (no link followed)."""
    try:
        return nbutils.parse_utc(integrity.read_plain(folder / "timestamp.txt", 1000).decode().strip())
    except Exception:  # noqa: BLE001 - a missing or bad timestamp file is ignored, as nbgrader does
        return None


def write_tables(out: Path, results: list[dict]) -> None:
    """grades.csv and cells.csv, rebuilt atomically from the result files of this run."""
    results = sorted(results, key=lambda r: (r["student_id"], r["assignment"]))
    g = io.StringIO()
    w = csv.writer(g, lineterminator="\n")
    w.writerow(["student_id", "assignment", "score", "max_score", "status"])
    for r in results:
        w.writerow([r["student_id"], r["assignment"], f"{r['score']:g}", f"{r['max_score']:g}", r["status"]])
    c = io.StringIO()
    w = csv.writer(c, lineterminator="\n")
    w.writerow(["student_id", "assignment", "grade_id", "score", "max_score", "passed", "message"])
    for r in results:
        for cell in r["cells"]:
            w.writerow([r["student_id"], r["assignment"], cell["grade_id"], f"{cell['score']:g}",
                        f"{cell['max_score']:g}", "yes" if cell["passed"] else "no", cell["message"]])
    write_atomic(out / "grades.csv", g.getvalue())
    write_atomic(out / "cells.csv", c.getvalue())


# ---------------------------------------------------------------------------------------------
# the whole run

# The worker threads mostly wait for kernel messages and must answer each at once (a test makes
# dozens of proxy calls), while the main thread reads and records submissions (nbgrader, SQLAlchemy:
# pure Python). Python hands the GIL to a woken thread only every switch interval (5 ms by
# default); 0.5 ms makes the run ~10% faster (grader/bench.py).
SWITCH_INTERVAL = 0.0005


def autograde(submissions: Path, opts: Options) -> list[dict]:
    """Grade every submission under `submissions`; return one result per student × assignment.
    Raises AutogradeError when the run cannot start."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL))
    try:
        return _autograde(Path(submissions), opts)
    finally:
        sys.setswitchinterval(interval)


def _autograde(submissions: Path, opts: Options) -> list[dict]:
    use_this_environment()          # nbgrader's Gradebook runs `alembic` from PATH
    if not submissions.is_dir():
        raise AutogradeError(f"{submissions} is not a folder of <student>/<assignment>/<assignment>.ipynb")
    if opts.sandbox:
        try:
            check_sandbox()
        except SandboxUnavailable as err:
            raise AutogradeError(str(err)) from None
    coursedir = course_config(opts.config_dir)
    db_url = opts.db_url or coursedir.db_url
    opts.out = Path(opts.out)
    opts.out.mkdir(parents=True, exist_ok=True)
    assignments = roster(submissions, opts.assignments)
    jobs, warnings = discover(submissions, assignments)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    for job in jobs:
        job.key = job_key(job, opts)

    results, todo = _cached(jobs, opts)

    # the sandboxes boot (imports, seconds of CPU) while the submissions are read and checked
    to_run = sum(not j.status for j in todo)
    warm = zygote_warm(sorted({j.assignment for j in todo if not j.status}))
    scratch, pools = _start_pools(opts, to_run, warm) if to_run else (None, [])
    bar = tqdm(total=len(jobs), initial=len(results), unit="nb", desc="autograde",
               disable=not opts.progress, file=sys.stderr, dynamic_ncols=True)
    runs = None
    try:
        runnable, imports, max_scores = _prepare(todo, db_url, opts, assignments)
        with Gradebook(db_url) as gb:       # one connection for the run's records (main thread)
            for job in todo:
                if job.status:
                    results[(job.student, job.assignment)] = record(job, None, {}, gb, opts, max_scores)
                    bar.update()
            runs = _run(runnable, pools, imports, opts)
            for job, died, timings in runs:
                results[(job.student, job.assignment)] = record(job, died, timings, gb, opts, max_scores)
                bar.update()
    finally:
        if runs is not None:
            runs.close()                    # waits for the workers, before their kernels go
        for pool in pools:
            pool.close()
        if scratch is not None and os.environ.get("CONVLAB_GRADER_DEBUG"):
            print(f"kept the kernels' logs in {scratch}", file=sys.stderr)
        elif scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    bar.close()
    ordered = [results[(j.student, j.assignment)] for j in jobs]
    write_tables(opts.out, ordered)
    write_last_run(opts.out, jobs, ordered)
    return ordered


def _cached(jobs: list[Job], opts: Options) -> tuple[dict, list[Job]]:
    """The results an earlier run left for these very jobs (by key), and the jobs still to grade."""
    results: dict[tuple[str, str], dict] = {}
    todo = []
    for job in jobs:
        path = result_path(opts.out, job)
        if path.exists():
            try:
                cached = json.loads(path.read_text())
                if statuses.BY_NAME.get(cached.get("status"), statuses.BY_NAME["error"]).cached:
                    results[(job.student, job.assignment)] = cached
                    continue
            except ValueError:
                pass
        todo.append(job)
    return results, todo


def _start_pools(opts: Options, needed: int, warm: tuple[str, ...]) -> tuple[Path, list]:
    """A scratch folder and the two sources of kernels (both IPython shells, grader/inside/shell.py): one
    for student kernels, one for examiners."""
    scratch = Path(tempfile.mkdtemp(prefix="convlab-grader-"))
    os.chmod(scratch, 0o711)
    if opts.sandbox and opts.fork_server:
        return scratch, [ForkServerPool(scratch, workers=opts.workers, limits=Limits(memory=opts.memory),
                                        warm=warm, role=role) for role in ("student", "examiner")]
    return scratch, [KernelPool(scratch, opts, needed, role) for role in ("student", "examiner")]


def _prepare(todo: list[Job], db_url: str, opts: Options, assignments: list[str]):
    """(runnable jobs, each assignment's imports, each assignment's max score): the submissions
    read, checked and sanitized (main thread: it reads the gradebook); the others get a status:
    `invalid` for what is wrong with the notebook (cached: the student's), `error` for a failure
    to read the gradebook (never cached: the run's)."""
    used = sorted({j.assignment for j in todo})
    releases, records, imports, max_scores = {}, {}, {}, {}
    for a in assignments:
        src = nbformat.read(source_notebook(a), as_version=4)
        max_scores[a] = sum(float(c.metadata["nbgrader"].get("points", 0)) for c in src.cells
                            if c.metadata.get("nbgrader", {}).get("grade"))
        if a in used:
            releases[a] = release_notebook(a, db_url, opts.config_dir)
            records[a] = ensure_assignment(a, db_url, opts.config_dir, src, releases[a])
            imports[a] = integrity.notebook_imports(src)
    runnable = []
    for job in todo:
        if job.status:
            continue
        t = time.monotonic()
        try:
            job.nb = _sanitized(job, releases[job.assignment], records[job.assignment], db_url)
            job.timings["prepare"] = time.monotonic() - t
            runnable.append(job)
        except integrity.InvalidSubmission as err:
            job.status, job.message = "invalid", str(err)
        except (MissingEntry, SQLAlchemyError) as err:  # the gradebook's (checked complete: should not be)
            job.status, job.message = "error", f"the gradebook could not be read for it: {type(err).__name__}: {err}"
        except Exception as err:  # noqa: BLE001 - nbgrader refusing the notebook
            job.status, job.message = "invalid", f"nbgrader could not read it: {type(err).__name__}: {err}"
    return runnable, imports, max_scores


def _sanitized(job: Job, release: nbformat.NotebookNode, record: integrity.ReleaseRecord,
               db_url: str) -> nbformat.NotebookNode:
    """The submission as it will run: read (lone surrogates in its strings, which no notebook
    can be written with, replaced by U+FFFD), its nbgrader cells restored (job.findings: what
    was wrong), sanitized by nbgrader against `record`, its markup made inert."""
    nb = repair_surrogates(integrity.load(job.path))
    nb, job.findings = integrity.repair(nb, release)
    nb = integrity.sanitize(nb, job.assignment, job.student, db_url, record)
    return integrity.inert_markup(nb, release)


def _run(runnable: list[Job], pools: list, imports: dict, opts: Options):
    """Grade `runnable` in opts.workers threads, each job with a student kernel and an examiner
    from `pools`; yields (job, death reason or None, timings) as each finishes."""
    def work(job: Job):
        try:
            with ThreadPoolExecutor(max_workers=1) as side:     # both kernels start at once
                pending = side.submit(pools[1].acquire)
                try:
                    student = pools[0].acquire()
                except BaseException:
                    pending.add_done_callback(lambda f: f.exception() or f.result().stop())
                    raise
                try:
                    examiner = pending.result()
                except BaseException:
                    student.stop()
                    raise
        except Exception as err:  # noqa: BLE001 - no student code has run: the grader's fault
            raise GraderError(f"no kernel could be started for it ({type(err).__name__}: {err})") from err
        return execute(job, student, examiner, imports[job.assignment], opts)

    with ThreadPoolExecutor(max_workers=opts.workers, thread_name_prefix="grade") as ex:
        futures = {ex.submit(work, job): job for job in runnable}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                job = futures[fut]
                try:
                    died, timings = fut.result()
                except Exception as err:  # noqa: BLE001 - the grader's failure, not the student's
                    died, timings = "grader", {}
                    detail = str(err) if isinstance(err, GraderError) else f"{type(err).__name__}: {err}"
                    job.message = (job.message + "; " if job.message else "") + f"grader error: {detail}"
                yield job, died, timings


def parse_size(text: str) -> int:
    """'2G', '512M', '1.5GB', '1000000' -> bytes."""
    t = text.strip().upper().removesuffix("B")
    factor = 1
    for suffix, f in (("K", 2**10), ("M", 2**20), ("G", 2**30), ("T", 2**40)):
        if t.endswith(suffix):
            t, factor = t[:-1], f
            break
    try:
        value = float(t) * factor
    except ValueError:
        raise ValueError(f"cannot read the size {text!r}: use e.g. 512M or 2G") from None
    if value <= 0:
        raise ValueError(f"the size {text!r} must be positive")
    return int(value)
