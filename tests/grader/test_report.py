"""grader/report.py (`python -m grader report`): the class report.

Quick tests on runs written by hand (the layout autograde writes: results/ and last-run.json):
which messages count as named mistakes, anonymised examples, escaping, the comparison of the last
two runs, the command line's errors. Slow tests grade a small class of lesson 2 for real (the
solution, the untouched release, wrong answers of tests/grader/lesson_answers.py, a deleted test
cell, an answer whose exception message is markup), check the report's counts against grades.csv
and cells.csv, open the page in Chromium (screenshot in tests/grader/artifacts/) and grade again
after one student's resubmission to see the change."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from grader import __main__ as cli
from grader import integrity, report, samples
from grader.course import ROOT, tool_env

from .lesson_answers import WRONG, submission

A = "02_edge_detection"
ARTIFACTS = ROOT / "tests" / "grader" / "artifacts"
SIGN = "flipped the sign"                                   # lesson 2's named mistakes (in its tests)
VERTICAL = "returned the vertical-edge kernel [[1, -1]]"
MARKUP = "<script>alert(1)</script><img src=x onerror=alert(2)>"


# ---------------------------------------------------------------------------------------------
# runs written by hand

def _cell(gid: str, passed: bool, message: str = "", points: float = 1.0, hidden: bool = False) -> dict:
    public = "A hidden check failed (its inputs and message are not shown)." if hidden else message
    return {"grade_id": gid, "score": points if passed else 0.0, "max_score": points, "passed": passed,
            "message": "" if passed else message, "public_message": "" if passed else public}


def _sign_message() -> str:
    """The message lesson 2's value test gives the kernel with the opposite sign (its tests' text)."""
    templates = report.mistake_templates(A)
    text = next(t.text for t in templates if t.parts is None and t.text.startswith(SIGN))
    return f"AssertionError: the response of horizontal_edge_kernel() to an image is wrong: it matches what you get if you {text}."


def _result(student: str, cells: list[dict], status: str = "graded", messages=(), key: str = "") -> dict:
    return {"student_id": student, "assignment": A, "key": key or f"k-{student}", "status": status,
            "score": sum(c["score"] for c in cells), "max_score": 9.0, "messages": list(messages), "cells": cells}


def _write_run(out: Path, results: list[dict]) -> None:
    """What autograde leaves: one result file per row and last-run.json naming them."""
    rows = []
    for r in results:
        rel = f"{r['student_id']}/{r['assignment']}/{r['key']}.json"
        path = out / "results" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(r))
        rows.append({"student_id": r["student_id"], "assignment": r["assignment"], "key": r["key"], "file": rel})
    (out / "last-run.json").write_text(json.dumps(rows))


def test_a_mistake_counts_only_when_the_tests_name_it():
    """Check that a mistake is counted when its text is a string of the assignment's tests (also
    two of them, 'A, or if you B', and with the sweep's count), and never when a student's own
    exception, or an AssertionError they raise, names one the tests do not have."""
    templates = report.mistake_templates(A)
    sign = _sign_message()
    named = report.named_mistakes(sign, templates)
    assert len(named) == 1 and named[0].startswith(SIGN)
    both = sign[:-1] + f", or if you {VERTICAL}: a horizontal edge separates two rows, so the kernel must compare a pixel with the one below it."
    assert len(report.named_mistakes(both, templates)) == 2
    assert report.named_mistakes(sign[:-1] + " (3 of 5 inputs are wrong).", templates) == named
    assert report.named_mistakes("AssertionError: x is wrong: it matches what you get if you bribed the grader.", templates) == []
    assert report.named_mistakes("ValueError: " + sign.split(": ", 1)[1], templates) == []
    assert report.named_mistakes("AssertionError: it matches what you get if you sobel.", templates) == []


def test_exercises_are_answer_cells_and_the_tests_after_them():
    """Check lesson 2's exercises and lesson 6's two answers tested together (one exercise), and a
    mistake's label (its description up to the explanation)."""
    assert [(x.name, x.tests, x.max_score) for x in report.exercises(A)] == [
        ("horizontal_edge_kernel", ["horizontal_edge_kernel_value", "horizontal_edge_kernel_finds_horizontal_edges"], 2),
        ("sobel_kernels", ["sobel_kernels_shapes", "sobel_gx", "sobel_gy"], 3),
        ("edge_magnitude", ["edge_magnitude_step", "edge_magnitude_matches_pytorch", "edge_magnitude_properties"], 4)]
    assert report.exercises("06_small_cnn")[0].name == "conv_output_size, pool_output_size"
    assert report.Mistake(A, "set the jump to the stride; the jump is the product").label == "set the jump to the stride"


def test_f_string_templates_match_in_linear_time():
    """Check an f-string's template (each hole at least one character) and that a crafted message
    cannot make matching slow (a regular expression of lazy holes would backtrack for hours)."""
    t = report._Template("made an off-by-one: … fits in … positions", ("made an off-by-one: ", None, " fits in ", None, " positions"))
    assert t.fits("made an off-by-one: k fits in n - k + 1 positions")
    assert t.fits("made an off-by-one: a fits in b fits in c positions")
    assert not t.fits("made an off-by-one:  fits in n positions") and not t.fits("made an off-by-one: k fits in  positions")
    holes = report._Template("…abc……", (None, "abc", None, None))
    assert holes.fits("xabcyz") and not holes.fits("xabcy") and not holes.fits("abcyz")
    crafted = report._Template("a…b…c…d", ("a", None, "b", None, "c", None, "d"))
    started = time.monotonic()
    assert not crafted.fits("a" + "b" * 200_000 + "c" * 1000)
    assert time.monotonic() - started < 0.5


def test_examples_are_anonymised():
    assert report.anonymise("ann's kernel, not joanna's; see ann.", ["joanna", "ann"]) == \
        "a student's kernel, not a student's; see a student."
    assert report.anonymise("banner", ["ann"]) == "banner"


def _class() -> list[dict]:
    sign = _sign_message()
    ok = [_cell(g, True) for g in ("sobel_kernels_shapes", "sobel_gx", "sobel_gy")]
    return [
        _result("ann", [_cell("horizontal_edge_kernel_value", True), *ok]),
        _result("bob", [_cell("horizontal_edge_kernel_value", False, sign.replace("an image", "bob's image"), hidden=True), *ok]),
        _result("cy", [_cell("horizontal_edge_kernel_value", False, sign), *ok]),
        _result("dan", [_cell("horizontal_edge_kernel_value", False, "NotImplementedError: "),
                        *[_cell(c["grade_id"], False, "NotImplementedError: ") for c in ok]]),
        _result("<img src=x onerror=alert(1)>", [_cell("horizontal_edge_kernel_value", False, "ValueError: " + MARKUP), *ok],
                status="tampered", messages=[f"cell 3: {MARKUP}"]),
        _result("eve", [], status="invalid", messages=["not a readable notebook: " + MARKUP]),
    ]


def test_the_report_counts_and_escapes_what_students_wrote(tmp_path):
    """Check the counts of a class written by hand: the mistake made by two students (its example
    from the visible failure, anonymised), the exercises dan did not attempt, the tampered and
    invalid rows; and that every string a student controls (a student id, exception messages,
    the grader's reasons quoting them) is escaped: no markup of theirs is in the page."""
    _write_run(tmp_path, _class())
    dest, r = report.write_report(tmp_path)
    [a] = r.assignments
    assert a.scores == [4.0, 3.0, 3.0, 0.0, 3.0] and a.ran["horizontal_edge_kernel_value"] == 5
    assert a.passed["horizontal_edge_kernel_value"] == 1 and a.passed["sobel_gx"] == 4
    [m] = r.mistakes
    assert m.label == SIGN and m.students == {"bob", "cy"} and m.cells == 2
    assert not m.example_hidden and "bob" not in m.example
    assert a.not_attempted == {"horizontal_edge_kernel": ["dan"], "sobel_kernels": ["dan"], "edge_magnitude": []}
    assert [x["status"] for x in r.review] == ["tampered"] and [x["status"] for x in r.not_graded] == ["invalid"]
    page = dest.read_text()
    assert "<script" not in page and "<img src=x" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;") == 2   # the reasons
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert page.count("<img ") == page.count('<img alt="plot" src="data:image/png;base64,')


def test_who_changed_score_compares_the_last_two_runs(tmp_path):
    """Check OUT/previous-run.json's rotation: the first report has nothing to compare with; a
    report made again on the same run says the same; a new run is compared with the one before
    (score and status changes, a new student), and so is a report made again on it."""
    run1 = _class()[:4]
    _write_run(tmp_path, run1)
    assert report.write_report(tmp_path)[1].changes == {A: None}
    assert report.write_report(tmp_path)[1].changes == {A: None}
    run2 = [dict(r) for r in run1]
    run2[2] = _result("cy", [_cell("horizontal_edge_kernel_value", True)] + run1[2]["cells"][1:], key="k-cy-2")
    run2[3] = dict(run2[3], status="timeout", key="k-dan-2")
    run2.append(_result("fay", [_cell("sobel_gx", True)], key="k-fay"))
    _write_run(tmp_path, run2)
    for _ in range(2):
        _, r = report.write_report(tmp_path)
        changes = {c.student: (c.before, c.after, c.delta) for c in r.changes[A]}
        assert changes == {"cy": ((3.0, 9.0, "graded"), (4.0, 9.0, "graded"), 1.0),
                           "dan": ((0.0, 9.0, "graded"), (0.0, 9.0, "timeout"), 0.0),
                           "fay": (None, (1.0, 9.0, "graded"), 1.0)}
    _write_run(tmp_path, run2[:-1])
    _, r = report.write_report(tmp_path)
    assert [(c.student, c.before, c.after) for c in r.changes[A]] == [("fay", (1.0, 9.0, "graded"), None)]
    history = json.loads((tmp_path / report.HISTORY).read_text())
    assert set(history[A]) == {"latest", "previous"} and "fay" in history[A]["previous"]["scores"]


def test_the_command_line_says_when_there_is_no_run(tmp_path, capsys):
    assert cli.main(["report", "--out", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    assert "no autograde run found" in err and "python -m grader autograde SUBMISSIONS --out" in err
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "last-run.json").write_text('[{"file": "gone.json"}]')
    assert cli.main(["report", "--out", str(tmp_path / "out")]) == 1
    assert "cannot be read" in capsys.readouterr().err
    _write_run(tmp_path / "out", _class())
    assert cli.main(["report", "--out", str(tmp_path / "out"), "--dest", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").is_file() and not (tmp_path / "out" / report.REPORT).exists()


# ---------------------------------------------------------------------------------------------
# a class graded for real (slow: sandboxes and kernels)

def _answer(name: str) -> dict[str, str]:
    assignment, answer_id, source, *_ = WRONG[name]
    assert assignment == A
    return {answer_id: source}


def _without_a_test(nb):
    first = next(i for i, c in enumerate(nb.cells) if integrity.is_test(c))
    nb.cells = nb.cells[:first] + nb.cells[first + 1:]
    return nb


CLASS = {
    "r-ann": lambda: samples.solved(A),
    "r-bob": lambda: samples.untouched(A),
    "r-cy": lambda: submission(A, _answer("horizontal edge kernel with the opposite sign")),
    "r-dan": lambda: submission(A, _answer("horizontal edge kernel with the opposite sign")),
    "r-eve": lambda: submission(A, _answer("horizontal edge kernel: section 1's kernel")),
    "r-fay": lambda: submission(A, _answer("edge_magnitude all zeros")),
    "r-gus": lambda: submission(A, {"edge_magnitude_impl": f"def edge_magnitude(img):\n    raise ValueError({MARKUP!r})\n"}),
    "r-hal": lambda: _without_a_test(samples.solved(A)),
}


def _autograde(subs: Path, out: Path, course_config: Path) -> None:
    cmd = [sys.executable, "-m", "grader", "autograde", str(subs), "--out", str(out), "--config-dir",
           str(course_config), "--no-progress", "--workers", "2", "--timeout", "300"]
    proc = subprocess.run(cmd, cwd=ROOT, env=tool_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory, course_config):
    """The class graded once (`python -m grader autograde`), reported (`python -m grader report`);
    then r-cy resubmits the solution, the class is graded again (only r-cy's notebook runs) and
    reported again. Returns (out, the first report's page, the second report, grades.csv rows of
    the first run, cells.csv rows of the first run)."""
    tmp = tmp_path_factory.mktemp("report-class")
    subs, out = tmp / "subs", tmp / "out"
    for student, make in CLASS.items():
        path = subs / student / A / f"{A}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(make(), path)
    _autograde(subs, out, course_config)
    with open(out / "grades.csv") as f:
        grades = list(csv.DictReader(f))
    with open(out / "cells.csv") as f:
        cells = list(csv.DictReader(f))
    proc = subprocess.run([sys.executable, "-m", "grader", "report", "--out", str(out)], cwd=ROOT, env=tool_env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0 and str(out / report.REPORT) in proc.stdout, proc.stdout + proc.stderr
    first = tmp / "first-report.html"
    shutil.copyfile(out / report.REPORT, first)
    nbformat.write(samples.solved(A), subs / "r-cy" / A / f"{A}.ipynb")
    _autograde(subs, out, course_config)
    _, second = report.write_report(out)
    return out, first, second, grades, cells


@pytest.mark.slow
def test_the_reports_counts_are_the_runs(graded_class):
    """Check the first report against grades.csv and cells.csv: the score distribution, each test
    cell's pass rate, the named mistakes (the students whose messages name them, as
    lesson_answers.WRONG says they must), the exercises r-bob left, the tampered submission."""
    out, first, _, grades, cells = graded_class
    page = first.read_text()
    r = report.build(out, rotate=False)            # the second run; the first run's rows are in grades/cells
    for row in grades:
        assert row["status"] in ("graded", "tampered"), row
    scores = sorted(float(g["score"]) for g in grades)
    assert scores == sorted([9, 0, 7, 7, 7, 5, 5, 9])
    for gid in {c["grade_id"] for c in cells}:
        rows = [c for c in cells if c["grade_id"] == gid]
        passed = sum(c["passed"] == "yes" for c in rows)
        assert f"<code>{gid}</code> (" in page and f": {passed} of {len(rows)} passed (" in page.split(f"<code>{gid}</code> (", 1)[1][:40]
    sign = {c["student_id"] for c in cells if SIGN in c["message"]}
    vertical = {c["student_id"] for c in cells if "returned the vertical-edge kernel" in c["message"]}
    assert sign == {"r-cy", "r-dan"} and vertical == {"r-eve"}
    first_report_mistakes = page.split('id="mistakes"', 1)[1].split('id="not-attempted"', 1)[0]
    assert f"<td class=num>2</td><td class=num>25%</td><td>{A}</td><td><b>{SIGN}</b>" in first_report_mistakes
    assert f"<td class=num>1</td><td class=num>12%</td><td>{A}</td><td><b>returned the vertical-edge kernel [[1, -1]]</b>" \
        in first_report_mistakes
    assert "r-cy" not in first_report_mistakes and "r-dan" not in first_report_mistakes
    not_attempted = page.split('id="not-attempted"', 1)[1].split('id="review"', 1)[0]
    assert not_attempted.count("<td><small>r-bob</small></td>") == 3
    review = page.split('id="review"', 1)[1].split('id="changes"', 1)[0]
    assert "r-hal" in review and "tampered" in review and "deleted" in review
    # in the second run, r-cy has resubmitted the solution: one student fewer made the mistake
    [m] = [m for m in r.mistakes if m.label == SIGN]
    assert m.students == {"r-dan"}


@pytest.mark.slow
def test_who_changed_after_a_resubmission(graded_class):
    """Check that the second report names r-cy's change (+2, 7 -> 9) and nobody else."""
    _, first, second, _, _ = graded_class
    assert "no previous run reported yet" in first.read_text()
    assert [(c.student, c.before, c.after, c.delta) for c in second.changes[A]] == \
        [("r-cy", (7.0, 9.0, "graded"), (9.0, 9.0, "graded"), 2.0)]


@pytest.mark.slow
def test_the_page_in_chromium_runs_nothing_a_student_wrote(graded_class):
    """Open the first report in Chromium (screenshot kept in tests/grader/artifacts/): it shows
    r-gus's exception message, which is markup, as text; no script runs, no dialog opens, and
    the page has no script element, no event handler and no image but the plots."""
    from playwright.sync_api import sync_playwright
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("chromium is missing: `make hub-deps` installs it")
    _, first, _, _, cells = graded_class
    assert any(MARKUP in c["message"] for c in cells if c["student_id"] == "r-gus")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dialogs = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium),
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(first.as_uri())
            page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
            shutil.copyfile(first, ARTIFACTS / "report.html")
            counts = page.evaluate("""() => ({
                scripts: document.querySelectorAll('script').length,
                handlers: [...document.querySelectorAll('*')].filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length,
                images: document.querySelectorAll('img').length,
                plots: document.querySelectorAll('img[alt="plot"][src^="data:image/png;base64,"]').length,
                broken: [...document.querySelectorAll('img')].filter(i => !i.complete || i.naturalWidth === 0).length,
            })""")
            text = page.inner_text("body")
        finally:
            browser.close()
    assert dialogs == []
    assert counts["scripts"] == 0 and counts["handlers"] == 0 and counts["broken"] == 0
    assert counts["images"] == counts["plots"] == 2 + 3                 # total and pass rates, one per exercise
    assert "Named mistakes" in text and SIGN in text
