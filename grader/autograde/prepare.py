"""Before grading: the gradebook's record of each assignment (made, checked, repaired after a kill)
and each submission read, checked against the release and sanitized as nbgrader does."""
from __future__ import annotations

import copy
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook, MissingEntry, get_alembic_version
from sqlalchemy import inspect, text
from sqlalchemy.exc import SQLAlchemyError

from .. import integrity
from ..course import nbgrader, source_notebook, student_notebook, tool_env
from ..shell_client import repair_surrogates
from .options import AutogradeError, Job, Options


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
