"""`python -m grader feedback`: one HTML page per student × assignment from the autograde results.

With the gradebook (`--db-url`), the page shows its final word: manual grades replace the
autograder's (marked as set by the instructor), the instructors' comments, and the late penalty
nbgrader recorded. Each test shows its points, pass/fail, the failure message (exception type and message only,
never a traceback, which would quote hidden test lines; for a failure in a hidden part only that
a hidden check failed and the mistake it named: `public_message`) and the test's VISIBLE source, taken from
the student version (notebooks/), where nbgrader has already removed the hidden tests; anything
between `### BEGIN HIDDEN TESTS` and `### END HIDDEN TESTS` is removed again for safety.
"""
from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .autograde import LAST_RUN, write_atomic
from . import statuses
from .course import student_notebook

HIDDEN = re.compile(r"[ \t]*### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS[ \t]*\n?", re.S)


class NoResults(Exception):
    """There is no autograde run to give feedback on (the message says what to run)."""


def visible_source(source: str) -> str:
    return HIDDEN.sub("", source)


def latest_results(out: Path) -> list[dict]:
    """The result of each student × assignment in the last autograde run: the files that
    OUT/last-run.json names (the key of that run, so a student who went back to an earlier
    submission gets the feedback of that one, as in grades.csv)."""
    base = Path(out) / "results"
    manifest = Path(out) / LAST_RUN
    if not manifest.is_file():
        raise NoResults(f"no autograde run found in {out} (no {LAST_RUN}): "
                        f"run `python -m grader autograde SUBMISSIONS --out {out}` first")
    return [json.loads((base / row["file"]).read_text()) for row in json.loads(manifest.read_text())]


@dataclass
class Graded:
    """What the gradebook holds of one submission once instructors reviewed it: the final score
    (manual grades replace the autograder's), the late penalty, each cell's score and whether a
    person set it, and the instructors' comments (by cell name)."""
    score: float
    max_score: float
    penalty: float
    cells: dict[str, tuple[float, bool]]
    comments: dict[str, str]


def from_gradebook(db_url: str, student: str, assignment: str) -> Graded | None:
    """The gradebook's view of a submission (None if the gradebook has no such submission)."""
    from nbgrader.api import Gradebook, MissingEntry
    with Gradebook(db_url) as gb:
        try:
            sub = gb.find_submission(assignment, student)
            nb = gb.find_submission_notebook(assignment, assignment, student)
        except MissingEntry:
            return None
        return Graded(score=float(sub.score), max_score=float(sub.max_score),
                      penalty=float(sub.late_submission_penalty or 0),
                      cells={g.name: (float(g.score or 0), g.manual_score is not None) for g in nb.grades},
                      comments={c.name: c.comment for c in nb.comments if c.manual_comment})


def _score_line(result: dict, graded: Graded | None) -> str:
    if graded is None:
        return f"{result['score']:g} / {result['max_score']:g}"
    if graded.penalty:
        return (f"{graded.score - graded.penalty:g} / {graded.max_score:g} "
                f"({graded.score:g}, less {graded.penalty:g} for handing in late)")
    return f"{graded.score:g} / {graded.max_score:g}"


def render(result: dict, tests: dict[str, str], graded: Graded | None = None) -> str:
    """The page of one submission: the autograder's results, and, with `graded`, the gradebook's
    final word (manual grades, comments, late penalty) where instructors gave one."""
    e = html.escape
    rows = []
    for cell in result["cells"]:
        ok = cell["passed"]
        source = tests.get(cell["grade_id"], "")
        score, manual = graded.cells.get(cell["grade_id"], (cell["score"], False)) if graded else (cell["score"], False)
        who = " <small>(set by your instructor)</small>" if manual else ""
        rows.append(
            f"<tr class={'pass' if ok else 'fail'}><td><code>{e(cell['grade_id'])}</code></td>"
            f"<td>{score:g} / {cell['max_score']:g}{who}</td><td>{'passed' if ok else 'failed'}</td>"
            f"<td>{e(cell.get('public_message', cell['message']))}</td>"
            f"<td><details><summary>test</summary><pre>{e(source)}</pre></details></td></tr>")
    notes = "".join(f"<li>{e(m)}</li>" for m in result.get("messages", []))
    comments = "".join(f"<li><code>{e(name)}</code>: {e(text)}</li>"
                       for name, text in (graded.comments.items() if graded else ()))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{e(result['assignment'])}: {e(result['student_id'])}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}} td{{vertical-align:top;padding:.3em .6em}}
tr.pass td:nth-child(3){{color:#1a7f37}} tr.fail td:nth-child(3){{color:#c62828;font-weight:bold}}
pre{{background:#f6f8fa;padding:.5em;white-space:pre-wrap}}</style></head><body>
<h1>{e(result['assignment'])}</h1>
<p>Student: <b>{e(result['student_id'])}</b>. Score: <b>{e(_score_line(result, graded))}</b>
({e(statuses.student_text(result['status']))}).</p>
{f'<ul>{notes}</ul>' if notes else ''}
{f'<h2>Comments from your instructor</h2><ul>{comments}</ul>' if comments else ''}
<table><tr><th>test</th><th>points</th><th>result</th><th>message</th><th>visible source</th></tr>
{''.join(rows)}</table>
<p>More tests (hidden) may run than the ones you saw in the notebook; their source is not shown.</p>
</body></html>
"""


def write_feedback(out: Path, dest: Path | None = None, db_url: str | None = None) -> tuple[list[Path], list[str]]:
    """Write dest/<student>/<assignment>.html (dest defaults to out/feedback) for the last run;
    return (the files written, "<student>/<assignment>" of the rows that run could not grade,
    status `error`: they get no page, and an older page of theirs is removed). With `db_url`, each
    page shows the gradebook's final scores, manual grades, comments and late penalty."""
    out = Path(out)
    dest = Path(dest) if dest else out / "feedback"
    tests_by_assignment: dict[str, dict[str, str]] = {}
    written, skipped = [], []
    for result in latest_results(out):
        a = result["assignment"]
        if result["status"] == "error":
            skipped.append(f"{result['student_id']}/{a}")
            (dest / result["student_id"] / f"{a}.html").unlink(missing_ok=True)
            continue
        if a not in tests_by_assignment:
            tests = {}
            path = student_notebook(a)
            if path.exists():
                for cell in nbformat.read(path, as_version=4).cells:
                    md = cell.metadata.get("nbgrader", {})
                    if md.get("grade") and not md.get("solution"):
                        tests[md["grade_id"]] = visible_source(cell.source)
            tests_by_assignment[a] = tests
        target = dest / result["student_id"] / f"{a}.html"
        graded = from_gradebook(db_url, result["student_id"], a) if db_url else None
        write_atomic(target, render(result, tests_by_assignment[a], graded))
        written.append(target)
    return written, skipped
