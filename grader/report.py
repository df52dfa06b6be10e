"""`python -m grader report`: one HTML page on the whole class, from the last autograde run.

It reads what `python -m grader autograde --out OUT` wrote (OUT/last-run.json and the result
files it names, OUT/results/...) and the course's source notebooks (solutions/: which test cells
belong to which exercise, and the tests' own text), and writes OUT/report.html (`--dest` to
change), a single file: its plots are PNG images embedded as `data:` URIs, it has no JavaScript,
and its Content-Security-Policy forbids scripts and any fetch, so it can be mailed or opened from
a course folder as it is. For each assignment:

* the distribution of the total score and, per exercise (the test cells after an answer cell,
  up to the next answer cell), the distribution of its score and the pass rate of each test cell;
* the named mistakes ("it matches what you get if you flipped the sign", convlab.expect_close /
  expect_equal / expect_equal_each), counted over the class (submissions, and failing test cells)
  and ranked, each with one example message. A mistake is counted only when its description is
  text of the tests: a string of the assignment's test or read-only cells (hidden tests
  included) or of the course package they call (convlab/*.py, e.g. convlab/mistakes.py's
  catalogues), an f-string counting as its template: a student's own exception message can make a
  real mistake more frequent, never invent one. Examples are anonymised (every student id of
  the class is replaced) and taken from a visible test when one shows the mistake;
* the exercises not attempted (a test failed with the `NotImplementedError` of the release's
  answer cell);
* the submissions to review (status tampered, crashed, timeout, memory) and those not graded
  (invalid, error), with the grader's reasons;
* who changed score, and by how much, between the last two runs: the report keeps each
  assignment's scores of the run it last reported, and of the run before it, in
  OUT/previous-run.json (rotated when the run it reports differs from the last one it saw; a
  report made again on the same run compares with the same previous run), so after a change to
  the tests or to the grader the instructor sees what changed before releasing anything.

The page is for instructors only: its example messages may come from hidden tests. Every string
that comes from a submission (student ids, messages, values) is escaped with html.escape.
"""
from __future__ import annotations

import ast
import base64
import functools
import hashlib
import html
import io
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import nbformat

from . import statuses
from .autograde import write_atomic
from .course import ROOT, source_notebook
from .feedback import NoResults, latest_results

REPORT = "report.html"
HISTORY = "previous-run.json"
REVIEW, NOT_GRADED = statuses.REVIEW, statuses.NOT_GRADED      # (grader/statuses.py)
WITH_CELLS = ("graded", *REVIEW)            # the statuses whose test cells ran (all or some)
_MISTAKE = re.compile(r"it matches what you get if you (.+?)(?: \(\d+ of \d+ inputs are wrong\))?\.$", re.S)
_SEVERAL = re.compile(r", or if you | — or you ")   # convlab.checks' and convlab.mistakes' joins
_NOT_ATTEMPTED = "NotImplementedError"
_MIN_LITERAL = 12       # a mistake's text, or an f-string template's fixed text, is at least this long


# ---------------------------------------------------------------------------------------------
# the course: exercises and the text of its tests

@dataclass
class Exercise:
    """An answer cell (or consecutive ones) and the test cells after it, up to the next answer cell."""
    name: str                               # the functions the answer defines, else its grade_id
    answer_id: str
    tests: list[str] = field(default_factory=list)
    points: dict[str, float] = field(default_factory=dict)

    @property
    def max_score(self) -> float:
        return sum(self.points.values())


def exercises(assignment: str) -> list[Exercise]:
    """The exercises of `assignment`, in order, from its source notebook (answer cells with no test
    between them form one exercise; test cells before the first answer cell, one named by the
    assignment)."""
    found: list[Exercise] = []
    for cell in _source_cells(assignment):
        md = cell.metadata.get("nbgrader", {})
        if md.get("solution") and not md.get("grade"):
            name = _defined_names(cell.source) or md["grade_id"]
            if found and not found[-1].tests and found[-1].answer_id:     # answers tested together
                found[-1].name += f", {name}"
                continue
            if any(x.name == name for x in found):        # two answers defining the same function
                name = f"{name} ({md['grade_id']})"
            found.append(Exercise(name, md["grade_id"]))
        elif md.get("grade"):
            if not found:
                found.append(Exercise(assignment, ""))
            found[-1].tests.append(md["grade_id"])
            found[-1].points[md["grade_id"]] = float(md.get("points", 0))
    return [x for x in found if x.tests]


def _source_cells(assignment: str) -> list:
    """The cells of the assignment's source notebook (none if the course no longer has it)."""
    path = source_notebook(assignment)
    return nbformat.read(path, as_version=4).cells if path.is_file() else []


def _defined_names(source: str) -> str:
    """The functions and classes a cell defines, joined ('' if it cannot be parsed)."""
    try:
        tree = ast.parse(_python(source))
    except SyntaxError:
        return ""
    return ", ".join(n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)))


def _python(source: str) -> str:
    """A cell's source as Python (IPython magics translated), as the kernel would run it."""
    from IPython.core.inputtransformer2 import TransformerManager
    try:
        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - a cell IPython cannot read: parse it as it is
        return source


@dataclass(frozen=True)
class _Template:
    """A string of the tests that may describe a mistake: a constant, or an f-string's pattern."""
    text: str                               # as shown: the constant, or the f-string with … holes
    parts: tuple[str | None, ...] | None = None   # an f-string's fixed parts, None for each hole

    def fits(self, text: str) -> bool:
        """Whether `text` is what this f-string can give (each hole at least one character):
        glob-style matching, the fixed parts leftmost first, in linear time (a regular expression
        of lazy holes backtracks exponentially on a crafted message)."""
        parts, pos, holes = self.parts or (), 0, 0
        for i, part in enumerate(parts):
            if part is None:
                holes += 1
                continue
            if i == 0:
                if not text.startswith(part):
                    return False
                pos = len(part)
            elif i == len(parts) - 1:
                if not text.endswith(part) or len(text) - len(part) < pos + holes:
                    return False
                pos = len(text)
            else:
                found = text.find(part, pos + holes)
                if found < 0:
                    return False
                pos = found + len(part)
            holes = 0
        return len(text) - pos >= holes if holes else pos == len(text)


def mistake_templates(assignment: str) -> list[_Template]:
    """Every string of the instructor's cells of the source notebook (test and read-only cells,
    hidden tests included) and of the course package the tests call (convlab/*.py: the
    catalogues of mistakes that several tests share): the only texts a counted mistake may have."""
    out: list[_Template] = []
    for cell in _source_cells(assignment):
        md = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or md.get("solution") or not (md.get("grade") or md.get("locked")):
            continue
        try:
            out += _strings(ast.parse(_python(cell.source)))
        except SyntaxError:
            continue
    return out + _package_templates()


@functools.cache
def _package_templates() -> list[_Template]:
    found: list[_Template] = []
    for module in sorted((ROOT / "convlab").glob("*.py")):
        try:
            found += _strings(ast.parse(module.read_text(encoding="utf-8")))
        except (OSError, SyntaxError, ValueError):
            continue
    return found


def _strings(tree: ast.AST) -> list[_Template]:
    """The string constants of `tree`, and its f-strings as templates (when their fixed text is at
    least _MIN_LITERAL characters)."""
    out: list[_Template] = []
    in_fstrings = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in in_fstrings:
            out.append(_Template(node.value))
        elif isinstance(node, ast.JoinedStr):
            fixed = [v.value if isinstance(v, ast.Constant) else None for v in node.values]
            if len("".join(f for f in fixed if f)) >= _MIN_LITERAL:
                out.append(_Template("".join(f if f is not None else "…" for f in fixed), tuple(fixed)))
    return out


def named_mistakes(message: str, templates: list[_Template]) -> list[str]:
    """The mistakes a failure message names (convlab's "it matches what you get if you X."), each
    as the text of the tests that describes it; mistakes whose text is not in the tests are not
    returned. Several mistakes that give the same result are named "A, or if you B" (or
    "A — or you B")."""
    if not message.startswith("AssertionError:"):
        return []
    found = _MISTAKE.search(message)
    if not found:
        return []
    description = found.group(1)
    for parts in ([description], _SEVERAL.split(description)):
        named = [_template_of(p, templates) for p in parts]
        if all(named):
            return list(dict.fromkeys(named))
    return []


def _template_of(description: str, templates: list[_Template]) -> str | None:
    """The text of the tests that `description` is: a string constant of at least _MIN_LITERAL
    characters, or an f-string's template; None if it is neither."""
    for t in templates:
        if t.parts is None and description == t.text and len(description) >= _MIN_LITERAL:
            return description
    for t in templates:
        if t.parts is not None and t.fits(description):
            return t.text
    return None


# ---------------------------------------------------------------------------------------------
# the analysis

@dataclass
class Mistake:
    """A named mistake in one assignment: who made it, where, and one example message."""
    assignment: str
    description: str
    students: set[str] = field(default_factory=set)
    cells: int = 0
    tests: Counter = field(default_factory=Counter)
    example: str = ""
    example_hidden: bool = True

    @property
    def label(self) -> str:
        """The mistake's name: its description up to the first explanation (': ...' or '; ...')."""
        return re.split(r": |; ", self.description, maxsplit=1)[0]


@dataclass
class AssignmentReport:
    name: str
    exercises: list[Exercise]
    max_score: float
    scores: list[float]                     # total score of each submission whose tests ran
    statuses: Counter
    exercise_scores: dict[str, list[float]]
    passed: Counter                         # grade_id -> submissions that passed it
    ran: Counter                            # grade_id -> submissions that have it
    not_attempted: dict[str, list[str]]     # exercise name -> student ids


@dataclass
class Change:
    student: str
    assignment: str
    before: tuple[float, float, str] | None  # (score, max_score, status); None: not in that run
    after: tuple[float, float, str] | None

    @property
    def delta(self) -> float:
        return (self.after[0] if self.after else 0.0) - (self.before[0] if self.before else 0.0)


@dataclass
class ClassReport:
    out: Path
    assignments: list[AssignmentReport]
    mistakes: list[Mistake]
    review: list[dict]
    not_graded: list[dict]
    changes: dict[str, list[Change] | None]  # assignment -> changes (None: no previous run)
    previous_time: dict[str, str]
    students: int


def analyse(results: list[dict]) -> tuple[list[AssignmentReport], list[Mistake]]:
    """Per assignment, its scores, pass rates and exercises not attempted; and the named mistakes
    of the class, ranked (most students first)."""
    ids = sorted({r["student_id"] for r in results}, key=len, reverse=True)
    by_assignment: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        by_assignment[r["assignment"]].append(r)
    reports, mistakes = [], {}
    for a in sorted(by_assignment):
        rows = by_assignment[a]
        found = exercises(a)
        exercise_of = {t: x for x in found for t in x.tests}
        templates = mistake_templates(a)
        report = AssignmentReport(
            a, found, max((r["max_score"] for r in rows), default=0.0), [], Counter(r["status"] for r in rows),
            {x.name: [] for x in found}, Counter(), Counter(), {x.name: [] for x in found})
        for r in rows:
            if r["status"] not in WITH_CELLS or not r["cells"]:
                continue
            report.scores.append(float(r["score"]))
            per_exercise: dict[str, float] = defaultdict(float)
            skipped = set()
            for cell in r["cells"]:
                gid, x = cell["grade_id"], exercise_of.get(cell["grade_id"])
                report.ran[gid] += 1
                report.passed[gid] += bool(cell["passed"])
                if x is not None:
                    per_exercise[x.name] += float(cell["score"])
                    if cell["message"].startswith(_NOT_ATTEMPTED):
                        skipped.add(x.name)
                for description in named_mistakes(cell["message"], templates):
                    m = mistakes.setdefault((a, description), Mistake(a, description))
                    m.students.add(r["student_id"])
                    m.cells += 1
                    m.tests[gid] += 1
                    hidden = cell.get("public_message", cell["message"]) != cell["message"]
                    if not m.example or (m.example_hidden and not hidden):
                        m.example, m.example_hidden = anonymise(cell["message"], ids), hidden
            for x in found:
                report.exercise_scores[x.name].append(per_exercise.get(x.name, 0.0))
            for name in sorted(skipped):
                report.not_attempted[name].append(r["student_id"])
        reports.append(report)
    ranked = sorted(mistakes.values(), key=lambda m: (-len(m.students), -m.cells, m.assignment, m.description))
    return reports, ranked


def anonymise(message: str, student_ids: list[str]) -> str:
    """`message` with every student id of the class (as a whole word) replaced by 'a student'."""
    for sid in student_ids:                 # longest first, so no id is replaced inside another
        message = re.sub(rf"(?<![\w.@-]){re.escape(sid)}(?![\w@-])", "a student", message)
    return message


# ---------------------------------------------------------------------------------------------
# the last two runs

def _snapshot(rows: list[dict]) -> dict:
    scores = {r["student_id"]: [float(r["score"]), float(r["max_score"]), r["status"]] for r in rows}
    identity = json.dumps(sorted((r["student_id"], r.get("key", ""), r["status"], r["score"]) for r in rows))
    return {"run": hashlib.sha256(identity.encode()).hexdigest()[:24],
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "scores": scores}


def compare_runs(out: Path, results: list[dict], *, rotate: bool = True
                 ) -> tuple[dict[str, list[Change] | None], dict[str, str]]:
    """Per assignment of `results` (the last run), the changes of score or status since the run
    before it (None when there is none yet), and when that run was first reported. With `rotate`,
    OUT/previous-run.json then records this run as the latest (the one before becomes the previous)."""
    path = Path(out) / HISTORY
    try:
        history = json.loads(path.read_text()) if path.is_file() else {}
        if not isinstance(history, dict):
            history = {}
    except ValueError:
        history = {}
    by_assignment: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        by_assignment[r["assignment"]].append(r)
    changes: dict[str, list[Change] | None] = {}
    times: dict[str, str] = {}
    for a, rows in sorted(by_assignment.items()):
        now = _snapshot(rows)
        entry = history.get(a) if isinstance(history.get(a), dict) else None
        if entry is None or "latest" not in entry:
            previous, history[a] = None, {"latest": now, "previous": None}
        elif entry["latest"].get("run") == now["run"]:
            previous = entry.get("previous")
        else:
            previous, history[a] = entry["latest"], {"latest": now, "previous": entry["latest"]}
        if previous is None:
            changes[a] = None
            continue
        times[a] = previous.get("time", "")
        before = previous.get("scores", {})
        found = []
        for student in sorted(set(before) | set(now["scores"])):
            b, n = before.get(student), now["scores"].get(student)
            if b is None or n is None or b[0] != n[0] or b[2] != n[2]:
                found.append(Change(student, a, tuple(b) if b else None, tuple(n) if n else None))
        changes[a] = sorted(found, key=lambda c: (-abs(c.delta), c.student))
    if rotate:
        write_atomic(path, json.dumps(history, indent=1))
    return changes, times


# ---------------------------------------------------------------------------------------------
# the page

def build(out: Path, *, rotate: bool = True) -> ClassReport:
    """Everything the page shows, from the last autograde run in `out`."""
    try:
        results = latest_results(out)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise NoResults(f"the last autograde run in {out} cannot be read ({type(err).__name__}: {err}): "
                        f"run `python -m grader autograde SUBMISSIONS --out {out}` again") from None
    assignments, mistakes = analyse(results)
    changes, times = compare_runs(out, results, rotate=rotate)
    review = [r for r in results if r["status"] in REVIEW]
    not_graded = [r for r in results if r["status"] in NOT_GRADED]
    return ClassReport(Path(out), assignments, mistakes, review, not_graded, changes, times,
                       len({r["student_id"] for r in results}))


def write_report(out: Path, dest: Path | None = None, *, rotate: bool = True) -> tuple[Path, ClassReport]:
    """Write the page (default OUT/report.html) for the last autograde run in `out`; return its path
    and what it shows. NoResults when `out` holds no autograde run."""
    report = build(out, rotate=rotate)
    dest = Path(dest) if dest else Path(out) / REPORT
    write_atomic(dest, render(report))
    return dest, report


def _png(fig) -> str:
    """A matplotlib figure as an <img> with a data: URI (no file, no script)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _figure(width: float, height: float):
    from matplotlib.figure import Figure       # no pyplot: no global state, no GUI backend
    fig = Figure(figsize=(width, height))
    return fig, fig.add_subplot()


def _histogram(values: list[float], max_score: float, title: str, width: float = 6, height: float = 2.2) -> str:
    fig, ax = _figure(width, height)
    counts = Counter(values)
    xs = sorted(set(counts) | {0.0, float(max_score)})
    ax.bar(xs, [counts.get(x, 0) for x in xs], width=max(max_score, 1) / 40 + 0.35, color="#4477aa")
    ax.set_xlabel("score")
    ax.set_ylabel("submissions")
    ax.set_title(title, fontsize=10)
    ax.set_xlim(-0.6, max_score + 0.6)
    ax.yaxis.get_major_locator().set_params(integer=True)
    return _png(fig)


def _pass_rates(report: AssignmentReport) -> str:
    tests = [(x.name, t) for x in report.exercises for t in x.tests]
    fig, ax = _figure(6.5, 0.28 * len(tests) + 0.8)
    rates = [100 * report.passed[t] / report.ran[t] if report.ran[t] else 0 for _, t in tests]
    colors = ["#228833" if r >= 75 else "#ccbb44" if r >= 40 else "#ee6677" for r in rates]
    ax.barh(range(len(tests)), rates, color=colors)
    ax.set_yticks(range(len(tests)), [t for _, t in tests], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of submissions passing")
    ax.set_title(f"{report.name}: pass rate of each test cell", fontsize=10)
    return _png(fig)


def _fmt(x: float) -> str:
    return f"{x:g}"


def _change_row(c: Change) -> str:
    e = html.escape
    before = f"{_fmt(c.before[0])} / {_fmt(c.before[1])} ({e(c.before[2])})" if c.before else "(not in that run)"
    after = f"{_fmt(c.after[0])} / {_fmt(c.after[1])} ({e(c.after[2])})" if c.after else "(not in this run)"
    sign = "+" if c.delta > 0 else ""
    return (f"<tr><td>{e(c.student)}</td><td>{e(c.assignment)}</td><td>{before}</td><td>{after}</td>"
            f"<td class=num>{sign}{_fmt(c.delta)}</td></tr>")


def render(report: ClassReport) -> str:
    """The page: plain HTML and CSS, images as data: URIs, every submission-derived string escaped."""
    e = html.escape
    parts = [f"<h1>Class report</h1><p>{report.students} students; the last autograde run in "
             f"<code>{e(str(report.out))}</code>, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. "
             "For instructors only: example messages may come from hidden tests.</p>"]
    parts.append("<nav><ul>" + "".join(f'<li><a href="#{e(a.name)}">{e(a.name)}</a></li>' for a in report.assignments)
                 + '<li><a href="#mistakes">named mistakes</a></li><li><a href="#not-attempted">not attempted</a></li>'
                 '<li><a href="#review">to review</a></li>'
                 '<li><a href="#changes">changes since the previous run</a></li></ul></nav>')

    for a in report.assignments:
        statuses = ", ".join(f"{n} {e(s)}" for s, n in sorted(a.statuses.items()))
        mean = sum(a.scores) / len(a.scores) if a.scores else 0
        parts.append(f'<h2 id="{e(a.name)}">{e(a.name)}</h2><p>{sum(a.statuses.values())} rows: {statuses}. '
                     f"Tests ran for {len(a.scores)} submissions; mean score {mean:.2f} / {_fmt(a.max_score)}.</p>")
        if a.scores:
            parts.append(_histogram(a.scores, a.max_score, f"{a.name}: total score"))
            parts.append(_pass_rates(a))
        rows = []
        for x in a.exercises:
            scores = a.exercise_scores[x.name]
            skipped = a.not_attempted[x.name]
            tests = "".join(
                f"<li><code>{e(t)}</code> ({_fmt(x.points[t])} pt): {a.passed[t]} of {a.ran[t]} passed"
                f" ({100 * a.passed[t] / a.ran[t] if a.ran[t] else 0:.0f}%)</li>" for t in x.tests)
            plot = _histogram(scores, x.max_score, x.name, 3.2, 1.6) if scores else ""
            who = (f"<details><summary>{len(skipped)} not attempted</summary>{e(', '.join(skipped))}</details>"
                   if skipped else "0 not attempted")
            rows.append(f"<tr><td><b>{e(x.name)}</b><br><small>{_fmt(x.max_score)} points</small></td>"
                        f"<td>{plot}</td><td><ul>{tests}</ul>{who}</td></tr>")
        parts.append("<h3>Exercises</h3><table><tr><th>exercise</th><th>score distribution</th>"
                     f"<th>test cells, pass rates, not attempted</th></tr>{''.join(rows)}</table>")

    parts.append('<h2 id="mistakes">Named mistakes, most frequent first</h2>')
    if report.mistakes:
        totals = {a.name: len(a.scores) for a in report.assignments}
        rows = "".join(
            f"<tr><td class=num>{len(m.students)}</td><td class=num>"
            f"{100 * len(m.students) / max(totals.get(m.assignment, 0), 1):.0f}%</td>"
            f"<td>{e(m.assignment)}</td><td><b>{e(m.label)}</b>"
            f"{'<br><small>' + e(m.description) + '</small>' if m.label != m.description else ''}</td>"
            f"<td>{', '.join(f'<code>{e(t)}</code> ×{n}' for t, n in m.tests.most_common())}</td>"
            f"<td><small>{'(a hidden test) ' if m.example_hidden else ''}{e(m.example)}</small></td></tr>"
            for m in report.mistakes)
        parts.append("<table><tr><th>students</th><th>of the graded</th><th>assignment</th><th>mistake</th>"
                     f"<th>test cells (failures)</th><th>example (anonymised)</th></tr>{rows}</table>")
    else:
        parts.append("<p>No test named a mistake.</p>")

    parts.append('<h2 id="not-attempted">Exercises not attempted</h2>')
    rows = "".join(f"<tr><td>{e(a.name)}</td><td>{e(x.name)}</td><td class=num>{len(a.not_attempted[x.name])}</td>"
                   f"<td class=num>{100 * len(a.not_attempted[x.name]) / len(a.scores):.0f}%</td>"
                   f"<td><small>{e(', '.join(a.not_attempted[x.name]))}</small></td></tr>"
                   for a in report.assignments for x in a.exercises if a.not_attempted[x.name])
    parts.append("<p>A test of the exercise failed with the release's <code>NotImplementedError</code>.</p>"
                 "<table><tr><th>assignment</th><th>exercise</th><th>submissions</th><th>of the graded</th>"
                 f"<th>students</th></tr>{rows}</table>" if rows else "<p>Every exercise was attempted.</p>")

    parts.append('<h2 id="review">Submissions to review</h2>')
    if report.review:
        rows = "".join(f"<tr><td>{e(r['student_id'])}</td><td>{e(r['assignment'])}</td><td>{e(r['status'])}</td>"
                       f"<td>{_fmt(r['score'])} / {_fmt(r['max_score'])}</td>"
                       f"<td><ul>{''.join(f'<li>{e(m)}</li>' for m in r['messages'])}</ul></td></tr>"
                       for r in report.review)
        parts.append("<p>Flagged tampered, crashed, timeout or memory: the score is what was earned before "
                     "things went wrong, or with the original tests.</p><table><tr><th>student</th>"
                     f"<th>assignment</th><th>status</th><th>score</th><th>why</th></tr>{rows}</table>")
    else:
        parts.append("<p>None.</p>")
    if report.not_graded:
        rows = "".join(f"<tr><td>{e(r['student_id'])}</td><td>{e(r['assignment'])}</td><td>{e(r['status'])}</td>"
                       f"<td><ul>{''.join(f'<li>{e(m)}</li>' for m in r['messages'])}</ul></td></tr>"
                       for r in report.not_graded)
        parts.append("<h3>Not graded</h3><p><code>invalid</code>: not a readable notebook or not plain files; "
                     "<code>error</code>: the grader failed (run autograde again).</p><table><tr><th>student</th>"
                     f"<th>assignment</th><th>status</th><th>why</th></tr>{rows}</table>")

    parts.append('<h2 id="changes">Who changed score since the previous run</h2>')
    for a in report.assignments:
        changes = report.changes.get(a.name)
        if changes is None:
            parts.append(f"<p>{e(a.name)}: no previous run reported yet (the next report compares with this one).</p>")
        elif not changes:
            parts.append(f"<p>{e(a.name)}: no score or status changed since the run reported "
                         f"{e(report.previous_time.get(a.name, ''))}.</p>")
        else:
            parts.append(f"<h3>{e(a.name)}: {len(changes)} changed since the run reported "
                         f"{e(report.previous_time.get(a.name, ''))}</h3><table><tr><th>student</th>"
                         "<th>assignment</th><th>before</th><th>now</th><th>change</th></tr>"
                         + "".join(_change_row(c) for c in changes) + "</table>")
    body = "\n".join(parts)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>Class report</title>
<style>body{{font-family:sans-serif;max-width:72em;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:.5em 0 1.5em}} td,th{{vertical-align:top;padding:.3em .6em;border-bottom:1px solid #ddd;text-align:left}}
td.num{{text-align:right}} ul{{margin:0;padding-left:1.2em}} nav ul{{display:flex;flex-wrap:wrap;gap:1.5em;list-style:none;padding:0}}
small{{color:#444}} code{{background:#f6f8fa}}</style></head><body>
{body}
</body></html>
"""
