"""`python -m grader autograde SUBMISSIONS`: grade every <student>/<assignment>/<assignment>.ipynb.

The run is a pipeline (PIPELINE, below: each step a function of one module of this package):

    discovery   which <student>/<assignment> folders there are; what is not plain files is refused
    store       result keys, the cache of earlier results, the tables and last-run.json
    kernels     where kernels come from (fork servers, or a pool of fresh sandboxes)
    prepare     the gradebook's record of each assignment; each notebook read, repaired, sanitized
    run         each submission graded by two kernels (grader/grading.py), in worker threads
    results     what became of it: status, cells, messages, the result file
    gradebook   nbgrader's rows: scores, late penalties, review marks for flagged submissions
    options     the run's options and a job (one student x assignment)

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
  assignment's source notebook and release (its tests), the grader's own code (grader/ and
  convlab/, `code_fingerprint`), the versions of the packages that run it and the limits. A
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

Status (grader/statuses.py, one table): graded | timeout | crashed | memory | tampered | invalid |
missing | error. Anything but `graded` means the score is not a plain grade (partial points earned before the failure).
Submissions are plain files: one whose student folder, assignment folder, notebook or any file or
folder beside it is a symbolic link, a hard link, a device, FIFO or socket (or more than 1,000 entries) is `invalid` at discovery, and nothing
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

import os
import shutil
import sys
from pathlib import Path

from nbgrader.api import Gradebook
from tqdm import tqdm

from ..course import use_this_environment
from ..sandbox import SandboxUnavailable, check_sandbox
from .discovery import discover, job_of, roster  # noqa: F401  (job_of: hub/grade.py)
from .kernels import _start_pools, zygote_warm
from .options import AutogradeError, Options, course_config
from .prepare import _prepare
from .results import record
from .run import SWITCH_INTERVAL, _run
from .store import _cached, job_key, write_last_run, write_tables
# the rest of the package's API, as `grader.autograde.<name>`
from .gradebook import _SaveAutoGrades, _save_to_gradebook, late_penalties  # noqa: F401
from .options import GraderError, Job, _config, parse_size, usable_cpus  # noqa: F401
from .prepare import _sanitized, ensure_assignment, ensure_gradebook, release_notebook  # noqa: F401
from .kernels import KernelPool, LAZY_IMPORTS  # noqa: F401
from .results import _cell_results, hidden_message, record_taken  # noqa: F401
from .run import execute  # noqa: F401
from .store import (CODE_FOLDERS, LAST_RUN, NOT_GRADING, PACKAGES, _UMASK, code_fingerprint,  # noqa: F401
                    result_path, write_atomic)

# The steps of a run, in order: (name, the function, what it does). `_autograde` is these calls.
PIPELINE = (
    ("discover", discover, "find the submissions; refuse what is not plain files (invalid, unread)"),
    ("key", job_key, "hash each: its files, its assignment's tests, the grader's code, the limits"),
    ("reuse", _cached, "take the results an earlier run left under the same keys"),
    ("boot", _start_pools, "start the sandboxes (fork servers), which import PyTorch meanwhile"),
    ("prepare", _prepare, "the gradebook's record of each assignment; notebooks read, checked, sanitized"),
    ("grade", _run, "each submission in two kernels: the student's code, and the examiner's verdicts"),
    ("record", record, "graded notebook, gradebook rows (late penalty, review marks), result file"),
    ("tables", write_tables, "grades.csv and cells.csv"),
    ("last run", write_last_run, "which result file each row came from (for feedback and the report)"),
)


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
        runs = _run(runnable, pools, imports, opts)     # (a generator: grading starts at the loop)
        with Gradebook(db_url) as gb:       # one connection for the run's records (main thread)
            for job in todo:                # refused or missing at discovery: recorded at once
                if job.status:
                    results[(job.student, job.assignment)] = record(job, None, {}, gb, opts, max_scores)
                    bar.update()
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
