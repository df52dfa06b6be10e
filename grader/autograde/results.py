"""What became of a submission: its status (grader/statuses.py), its graded cells and messages (the
hidden parts' only as "a hidden check failed"), recorded in order: graded notebook, gradebook,
result file."""
from __future__ import annotations

import json
import re
import time
import warnings
from pathlib import Path

import nbformat
from nbgrader import utils as nbutils
from nbgrader.api import Gradebook

from .. import statuses
from .gradebook import _save_to_gradebook, late_penalties
from .options import Job, Options
from .store import result_path, write_atomic


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
        try:
            _write_graded(job, status, _messages(job, died, opts), gb, opts)
            job.timings["record"] = time.monotonic() - t
        except Exception as err:  # noqa: BLE001 - the grader's failure, reported as such
            status, died, cells = "error", "grader", []
            job.message = f"could not record the grade: {type(err).__name__}: {err}"
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


def record_taken(job: Job, result: dict, gb: Gradebook, opts: Options) -> None:
    """Record here a result graded elsewhere for this very submission (same key: the submit-time
    grader's, hub/submit_grader.py), as `record` records its own: the graded notebook `job.nb`,
    the gradebook rows (late penalty, review marks for a flagged status), then the result file.
    Raises if any step fails, leaving no graded notebook behind."""
    dest = _write_graded(job, result["status"], result.get("messages", []), gb, opts)
    try:
        write_atomic(result_path(opts.out, job), json.dumps(result, indent=1))
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def _write_graded(job: Job, status: str, messages: list[str], gb: Gradebook, opts: Options) -> Path:
    """The graded notebook first (a write that fails leaves no row), then the gradebook's rows in
    one commit (a flagged status's reason from `messages`); on a failure of the second, the
    notebook is removed again. Returns the notebook's path."""
    dest = opts.out / "autograded" / job.student / job.assignment / f"{job.assignment}.ipynb"
    write_atomic(dest, nbformat.writes(job.nb))
    try:
        flag = (status, _reason(messages)) if status in statuses.REVIEW else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")     # SQLAlchemy chatter that nbgrader also emits
            _save_to_gradebook(job, gb, late_penalties(opts.config_dir), flag)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return dest


def _messages(job: Job, died: str | None, opts: Options) -> list[str]:
    """What the result file says happened: how the kernel died, the job's message, the findings."""
    messages = list(job.findings)
    if job.message:
        messages.insert(0, job.message)
    if died:
        messages.insert(0, statuses.death_message(died, timeout=opts.timeout, memory=opts.memory))
    return messages


def _reason(messages: list[str]) -> str:
    """A flagged submission's reason, for its gradebook comments (at most 1,000 characters)."""
    text = "; ".join(messages) or "see the grader's result file"
    return text if len(text) <= 1000 else text[:999] + "…"
