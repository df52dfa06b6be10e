"""What a run keeps under --out: result files by key (the submission, its tests, the grader's code,
the packages, the limits), the earlier results a run reuses, grades.csv, cells.csv, last-run.json;
every file written atomically."""
from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import json
import os
import tempfile
from importlib import metadata
from pathlib import Path


from .. import integrity, statuses
from ..course import ROOT, source_notebook, student_notebook
from .options import Job, Options


# The code whose change re-grades everything (`code_fingerprint`), and the packages whose versions do.
CODE_FOLDERS = (ROOT / "grader", ROOT / "convlab")
NOT_GRADING = ("grader/report.py", "grader/lms.py", "grader/feedback.py", "grader/bench.py")
PACKAGES = ("torch", "numpy", "nbgrader", "nbformat", "IPython")


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
