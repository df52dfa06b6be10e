"""`python -m grader feedback`: one HTML page per student × assignment from the autograde results.

Each test shows its points, pass/fail, the failure message (exception type and message only,
never a traceback, which would quote hidden test lines; for a failure in a hidden part only that
a hidden check failed and the mistake it named: `public_message`) and the test's VISIBLE source, taken from
the student version (notebooks/), where nbgrader has already removed the hidden tests; anything
between `### BEGIN HIDDEN TESTS` and `### END HIDDEN TESTS` is removed again for safety.
"""
from __future__ import annotations

import html
import json
import re
from pathlib import Path

import nbformat

from .autograde import LAST_RUN, write_atomic
from .course import student_notebook

HIDDEN = re.compile(r"[ \t]*### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS[ \t]*\n?", re.S)
STATUS_TEXT = {
    "graded": "graded",
    "timeout": "stopped: it ran out of time",
    "crashed": "stopped: the kernel stopped or printed too much",
    "memory": "stopped: it used too much memory",
    "tampered": "flagged: tests or the grading machinery were changed; graded with the original tests",
    "invalid": "not a readable notebook",
    "missing": "not handed in",
    "error": "not graded yet: the grader failed (not your fault)",
}


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


def render(result: dict, tests: dict[str, str]) -> str:
    e = html.escape
    rows = []
    for cell in result["cells"]:
        ok = cell["passed"]
        source = tests.get(cell["grade_id"], "")
        rows.append(
            f"<tr class={'pass' if ok else 'fail'}><td><code>{e(cell['grade_id'])}</code></td>"
            f"<td>{cell['score']:g} / {cell['max_score']:g}</td><td>{'passed' if ok else 'failed'}</td>"
            f"<td>{e(cell.get('public_message', cell['message']))}</td>"
            f"<td><details><summary>test</summary><pre>{e(source)}</pre></details></td></tr>")
    notes = "".join(f"<li>{e(m)}</li>" for m in result.get("messages", []))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{e(result['assignment'])}: {e(result['student_id'])}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}} td{{vertical-align:top;padding:.3em .6em}}
tr.pass td:nth-child(3){{color:#1a7f37}} tr.fail td:nth-child(3){{color:#c62828;font-weight:bold}}
pre{{background:#f6f8fa;padding:.5em;white-space:pre-wrap}}</style></head><body>
<h1>{e(result['assignment'])}</h1>
<p>Student: <b>{e(result['student_id'])}</b>. Score: <b>{result['score']:g} / {result['max_score']:g}</b>
({e(STATUS_TEXT.get(result['status'], result['status']))}).</p>
{f'<ul>{notes}</ul>' if notes else ''}
<table><tr><th>test</th><th>points</th><th>result</th><th>message</th><th>visible source</th></tr>
{''.join(rows)}</table>
<p>More tests (hidden) may run than the ones you saw in the notebook; their source is not shown.</p>
</body></html>
"""


def write_feedback(out: Path, dest: Path | None = None) -> tuple[list[Path], list[str]]:
    """Write dest/<student>/<assignment>.html (dest defaults to out/feedback) for the last run;
    return (the files written, "<student>/<assignment>" of the rows that run could not grade,
    status `error`: they get no page, and an older page of theirs is removed)."""
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
        write_atomic(target, render(result, tests_by_assignment[a]))
        written.append(target)
    return written, skipped
