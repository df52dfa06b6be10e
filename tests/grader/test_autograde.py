"""grader/autograde/: discovery, sizes, result files, tables, idempotence and restart, the
cache key, grader errors (status `error`), and the command line's exit codes."""
from __future__ import annotations

import warnings

import contextlib
import csv
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

from grader import __main__ as cli
from grader import autograde, feedback, integrity, samples
from grader.course import ROOT, SOLUTIONS

A = "01_cross_correlation"


@pytest.mark.parametrize("text, value", [("2G", 2 * 2**30), ("512M", 512 * 2**20), ("1.5GB", int(1.5 * 2**30)),
                                         ("1000", 1000)])
def test_parse_size(text, value):
    assert autograde.parse_size(text) == value


@pytest.mark.parametrize("text", ["lots", "-1G", "0"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError, match="size"):
        autograde.parse_size(text)


def test_discover_marks_missing_and_wrong_names(tmp_path):
    (tmp_path / "ann" / A).mkdir(parents=True)
    nbformat.write(samples.untouched(A), tmp_path / "ann" / A / f"{A}.ipynb")
    (tmp_path / "bob" / A).mkdir(parents=True)
    nbformat.write(samples.untouched(A), tmp_path / "bob" / A / "homework.ipynb")
    (tmp_path / "cy" / "not_a_lesson").mkdir(parents=True)
    jobs, warnings = autograde.discover(tmp_path, [A])
    by = {j.student: j for j in jobs}
    assert by["ann"].status is None
    assert by["bob"].status == "missing" and "homework.ipynb" in by["bob"].message
    assert by["cy"].status == "missing"
    assert any("not_a_lesson" in w for w in warnings)


PLAIN_ONLY = "hand in plain files only; nothing of this submission was read"


def _linked_submissions(tmp_path):
    """Students whose submissions are, or hold, links and special files (and one honest one):
    the links point to the course's solution notebook or to a file outside the submissions."""
    subs, outside = tmp_path / "subs", tmp_path / "outside"
    solution = SOLUTIONS / A / f"{A}.ipynb"
    (outside / A).mkdir(parents=True)
    nbformat.write(samples.solved(A), outside / A / f"{A}.ipynb")
    (outside / "secret.txt").write_text("SECRET")
    for student in ("ann", "bob", "cy", "fay", "gus"):
        (subs / student / A).mkdir(parents=True)
        if student != "ann":
            nbformat.write(samples.untouched(A), subs / student / A / f"{A}.ipynb")
    (subs / "ann" / A / f"{A}.ipynb").symlink_to(solution)
    (subs / "bob" / A / "notes.txt").symlink_to(solution)
    os.mkfifo(subs / "cy" / A / "pipe")
    (subs / "dan").mkdir()
    (subs / "dan" / A).symlink_to(outside / A)
    (subs / "eve").symlink_to(outside)
    (subs / "fay" / A / "data").mkdir()
    (subs / "fay" / A / "data" / "x.csv").write_text("1,2")
    (subs / "gus" / A / "data").mkdir()
    (subs / "gus" / A / "data" / "shadow.txt").symlink_to(outside / "secret.txt")
    return subs, outside


def test_discover_refuses_links_and_special_files(tmp_path):
    """Check that a submission whose notebook, files beside it (at any depth), assignment folder
    or student folder is a symbolic link or FIFO is `invalid`, with the entry and what it is
    named (relative to the submission), and that plain files and folders are fine."""
    subs, _ = _linked_submissions(tmp_path)
    assert autograde.roster(subs) == [A]
    jobs, _ = autograde.discover(subs, [A])
    by = {j.student: (j.status, j.message) for j in jobs}
    assert by == {
        "ann": ("invalid", f"{A}.ipynb is a symbolic link: {PLAIN_ONLY}"),
        "bob": ("invalid", f"notes.txt is a symbolic link: {PLAIN_ONLY}"),
        "cy": ("invalid", f"pipe is a FIFO (named pipe): {PLAIN_ONLY}"),
        "dan": ("invalid", f"{A} (the assignment folder) is a symbolic link: {PLAIN_ONLY}"),
        "eve": ("invalid", f"the student folder eve is a symbolic link: {PLAIN_ONLY}"),
        "fay": (None, ""),
        "gus": ("invalid", f"data/shadow.txt is a symbolic link: {PLAIN_ONLY}"),
    }


def test_job_key_reads_nothing_through_a_link(tmp_path):
    """Check that the key of a refused submission does not depend on what its links point to
    (nothing is read through them), and that an honest one's follows its files."""
    subs, outside = _linked_submissions(tmp_path)
    opts = autograde.Options()
    jobs = {j.student: j for j in autograde.discover(subs, [A])[0]}
    keys = {s: autograde.job_key(j, opts) for s, j in jobs.items()}
    (outside / "secret.txt").write_text("ANOTHER SECRET")
    nbformat.write(samples.untouched(A), outside / A / f"{A}.ipynb")
    assert {s: autograde.job_key(j, opts) for s, j in jobs.items()} == keys
    (subs / "fay" / A / "data" / "x.csv").write_text("3,4")
    assert autograde.job_key(jobs["fay"], opts) != keys["fay"]


def test_roster_is_the_assignments_found_unless_named(tmp_path):
    (tmp_path / "ann" / A).mkdir(parents=True)
    (tmp_path / "bob" / "02_edge_detection").mkdir(parents=True)
    (tmp_path / "bob" / "not_a_lesson").mkdir(parents=True)
    assert autograde.roster(tmp_path) == [A, "02_edge_detection"]
    assert autograde.roster(tmp_path, ("03_learning_a_kernel",)) == ["03_learning_a_kernel"]
    with pytest.raises(autograde.AutogradeError, match="lesson_99 not an assignment of this course"):
        autograde.roster(tmp_path, ("lesson_99",))


def test_job_key_follows_content(tmp_path):
    path = tmp_path / "ann" / A / f"{A}.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(samples.untouched(A), path)
    opts = autograde.Options()
    job = autograde.Job("ann", A, path)
    k1 = autograde.job_key(job, opts)
    assert autograde.job_key(job, opts) == k1
    nbformat.write(samples.solved(A), path)
    assert autograde.job_key(job, opts) != k1
    (path.parent / "data.txt").write_text("extra")
    assert autograde.job_key(job, opts) != k1


def test_write_tables(tmp_path):
    results = [{"student_id": "b", "assignment": A, "score": 1.0, "max_score": 3.0, "status": "timeout",
                "cells": [{"grade_id": "t1", "score": 1.0, "max_score": 1.0, "passed": True, "message": ""},
                          {"grade_id": "t2", "score": 0.0, "max_score": 2.0, "passed": False, "message": "GraderStopped: x, y"}]},
               {"student_id": "a", "assignment": A, "score": 0.0, "max_score": 3.0, "status": "missing", "cells": []}]
    autograde.write_tables(tmp_path, results)
    rows = list(csv.DictReader(open(tmp_path / "grades.csv")))
    assert [(r["student_id"], r["score"], r["status"]) for r in rows] == [("a", "0", "missing"), ("b", "1", "timeout")]
    cells = list(csv.DictReader(open(tmp_path / "cells.csv")))
    assert cells[1]["message"] == "GraderStopped: x, y" and cells[1]["passed"] == "no"


@pytest.mark.slow
def test_rerun_is_idempotent_and_restart_completes(tmp_path, course_config):
    """Grade two students; delete one result (as if killed before writing it) and leave a stray
    temporary file (killed while writing): the re-run grades only the missing one, and the
    tables have exactly one row each."""
    subs = tmp_path / "subs"
    for student, nb in (("ann", samples.untouched(A)), ("bob", nbformat.v4.new_notebook())):
        path = subs / student / A / f"{A}.ipynb"
        path.parent.mkdir(parents=True)
        if student == "bob":
            path.write_text("{broken")
        else:
            nbformat.write(nb, path)
    opts = autograde.Options(workers=1, timeout=120, out=tmp_path / "out", config_dir=course_config, progress=False)
    first = autograde.autograde(subs, opts)
    files = sorted((tmp_path / "out" / "results").rglob("*.json"))
    assert len(files) == 2
    mtimes = {f: f.stat().st_mtime_ns for f in files}
    bob = next(f for f in files if "bob" in f.parts)
    bob.unlink()
    (bob.parent / ".tmp-partial").write_text("{half")
    second = autograde.autograde(subs, opts)
    assert [(r["student_id"], r["status"], r["score"]) for r in first] == \
           [(r["student_id"], r["status"], r["score"]) for r in second]
    ann = next(f for f in files if "ann" in f.parts)
    assert ann.stat().st_mtime_ns == mtimes[ann]          # not graded again
    rows = list(csv.DictReader(open(tmp_path / "out" / "grades.csv")))
    assert sorted((r["student_id"], r["status"]) for r in rows) == [("ann", "graded"), ("bob", "invalid")]
    assert json.loads(ann.read_text())["status"] == "graded"


def _job(tmp_path, nb=None):
    path = tmp_path / "ann" / A / f"{A}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb or samples.untouched(A), path)
    return autograde.Job("ann", A, path)


def test_job_key_follows_the_tests_and_the_grader_code(tmp_path, monkeypatch):
    job, opts = _job(tmp_path), autograde.Options()
    k1 = autograde.job_key(job, opts)
    # a changed test (the source notebook)
    source = tmp_path / "source.ipynb"
    source.write_bytes(autograde.store.source_notebook(A).read_bytes() + b" ")
    monkeypatch.setattr(autograde.store, "source_notebook", lambda a: source)
    assert autograde.job_key(job, opts) != k1
    monkeypatch.undo()
    assert autograde.job_key(job, opts) == k1
    # changed grader code
    monkeypatch.setattr(autograde.store, "code_fingerprint", lambda: "another grader")
    assert autograde.job_key(job, opts) != k1


def test_code_fingerprint_covers_every_module(tmp_path):
    grader, convlab = tmp_path / "grader", tmp_path / "convlab"
    for folder in (grader, convlab):
        folder.mkdir()
        (folder / "a.py").write_text("x = 1\n")
    (grader / "notes.txt").write_text("not code")
    f0 = autograde.code_fingerprint((grader, convlab))
    (grader / "notes.txt").write_text("still not code")
    assert autograde.code_fingerprint.__wrapped__((grader, convlab)) == f0
    (convlab / "a.py").write_text("x = 2\n")
    f1 = autograde.code_fingerprint.__wrapped__((grader, convlab))
    assert f1 != f0
    (grader / "b.py").write_text("")
    f2 = autograde.code_fingerprint.__wrapped__((grader, convlab))
    assert f2 not in (f0, f1)
    (grader / "inside").mkdir()                 # the code shipped into the sandboxes counts
    (grader / "inside" / "shell.py").write_text("y = 1\n")
    f3 = autograde.code_fingerprint.__wrapped__((grader, convlab))
    assert f3 not in (f0, f1, f2)
    for tool in autograde.NOT_GRADING:          # the tools that only read results do not
        (tmp_path / tool).write_text("# a new class report\n")
    assert autograde.code_fingerprint.__wrapped__((grader, convlab)) == f3
    # the real one hashes this repository's grader/ and convlab/
    assert autograde.CODE_FOLDERS == (ROOT / "grader", ROOT / "convlab")


class _BrokenPool:
    """A fork server pool whose sandboxes never come up (the grader's fault, not the student's)."""

    def __init__(self, *args, **kwargs):
        pass

    def acquire(self):
        raise RuntimeError("the zygote did not start cleanly: simulated")

    def close(self):
        pass


def _wrong_answer():
    """Lesson 1 solved but for corr2d, which answers zeros (some tests fail)."""
    nb = samples.solved(A)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "corr2d_impl")
    cell.source = ("def corr2d(X, K):\n"
                   "    return torch.zeros(X.shape[0] - K.shape[0] + 1, X.shape[1] - K.shape[1] + 1)\n")
    return nb


def _without_a_test(nb):
    """`nb` with its first test cell deleted (tampered: the grader puts it back)."""
    nb.cells = [c for i, c in enumerate(nb.cells) if i != next(k for k, x in enumerate(nb.cells) if integrity.is_test(x))]
    return nb


def _subs(tmp_path, **notebooks):
    subs = tmp_path / "subs"
    for student, content in notebooks.items():
        path = subs / student / A / f"{A}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else nbformat.write(content, path)
    return subs


@pytest.mark.slow
def test_a_grader_failure_is_an_error_never_cached_and_graded_next_run(tmp_path, course_config, monkeypatch):
    """A fork server that cannot start: status `error` (not the student's `crashed`), nothing in
    the gradebook, exit code 3; the next run grades it (with a working pool), the invalid
    submission beside it is reused from the cache."""
    subs = _subs(tmp_path, erin=samples.untouched(A), bob=b"{broken")
    out = tmp_path / "out"
    argv = ["autograde", str(subs), "--out", str(out), "--config-dir", str(course_config),
            "--workers", "1", "--no-progress", "--no-sandbox"]
    monkeypatch.setattr(autograde.kernels, "KernelPool", _BrokenPool)
    assert cli.main(argv) == cli.EXIT_NOT_GRADED
    rows = {r["student_id"]: r for r in csv.DictReader(open(out / "grades.csv"))}
    assert (rows["erin"]["status"], rows["bob"]["status"]) == ("error", "invalid")
    erin = out / "results" / "erin" / A
    [error_file] = erin.iterdir()
    assert error_file.name.endswith(".error.json")
    result = json.loads(error_file.read_text())
    assert "the grader failed" in result["messages"][0] and "simulated" in " ".join(result["messages"])
    assert not (out / "autograded" / "erin").exists()
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course_config}/gradebook.db") as gb:
        assert "erin" not in [s.id for s in gb.students]
    pages, skipped = feedback.write_feedback(out)
    assert skipped == [f"erin/{A}"] and [p.parent.name for p in pages] == ["bob"]

    bob = next((out / "results" / "bob" / A).iterdir())
    bob_mtime = bob.stat().st_mtime_ns
    monkeypatch.undo()
    assert cli.main(argv) == 0
    rows = {r["student_id"]: r for r in csv.DictReader(open(out / "grades.csv"))}
    assert (rows["erin"]["status"], rows["bob"]["status"]) == ("graded", "invalid")
    assert bob.stat().st_mtime_ns == bob_mtime          # the student's own failure stays cached
    assert sorted(f.name.endswith(".error.json") for f in erin.iterdir()) == [False, True]


def test_an_exception_in_the_grader_is_an_error(tmp_path, course_config, monkeypatch):
    subs = _subs(tmp_path, ann=samples.untouched(A))

    class Pool(_BrokenPool):
        def acquire(self):
            return object()

    def execute(job, student, examiner, imports, opts):
        raise KeyError("a bug in the grader")

    monkeypatch.setattr(autograde.kernels, "ForkServerPool", Pool)
    monkeypatch.setattr(autograde, "check_sandbox", lambda: None)
    monkeypatch.setattr(autograde.run, "execute", execute)
    opts = autograde.Options(workers=1, out=tmp_path / "out", config_dir=course_config, progress=False)
    [r] = autograde.autograde(subs, opts)
    assert r["status"] == "error" and "KeyError" in " ".join(r["messages"])


def test_library_errors_are_exceptions_and_the_cli_exit_code_says_so(tmp_path, capsys):
    opts = autograde.Options(out=tmp_path / "out", progress=False, sandbox=False)
    with pytest.raises(autograde.AutogradeError, match="is not a folder"):
        autograde.autograde(tmp_path / "nowhere", opts)
    assert cli.main(["autograde", str(tmp_path / "nowhere"), "--no-sandbox", "--out", str(tmp_path)]) == 1
    assert "is not a folder" in capsys.readouterr().err
    assert cli.main(["feedback", "--out", str(tmp_path / "empty")]) == 1
    assert "no autograde run found" in capsys.readouterr().err


def test_feedback_follows_the_last_run_not_the_newest_file(tmp_path, course_config):
    """A student hands in A, then B, then goes back to A: the third run reuses A's cached result
    (an older file than B's), and the feedback must be A's, as in grades.csv."""
    first, second = b"{broken", b""
    subs = _subs(tmp_path, ann=first)
    opts = autograde.Options(workers=1, out=tmp_path / "out", config_dir=course_config, progress=False,
                             sandbox=False)
    path = subs / "ann" / A / f"{A}.ipynb"
    messages = []
    for content in (first, second, first):
        path.write_bytes(content)
        [r] = autograde.autograde(subs, opts)
        messages.append(r["messages"])
        [page], _ = feedback.write_feedback(opts.out)
        assert all(m.replace("'", "&#x27;") in page.read_text() for m in r["messages"])
    assert messages[0] == messages[2] != messages[1]
    assert len(list((opts.out / "results" / "ann" / A).glob("*.json"))) == 2


@pytest.mark.slow
def test_the_grader_works_started_by_full_path_from_anywhere(tmp_path, course_config):
    """`.venv/bin/python -m grader autograde` with a new gradebook, from another directory and a
    PATH without the venv: nbgrader's Gradebook must still find `alembic`."""
    subs = _subs(tmp_path, ann=b"{broken")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = "/usr/bin:/bin"
    env["PYTHONPATH"] = str(ROOT)        # the grader package (installed editable too, but be explicit)
    db = tmp_path / "new.db"
    proc = subprocess.run([sys.executable, "-m", "grader", "autograde", str(subs), "--no-sandbox",
                           "--no-progress", "--db-url", f"sqlite:///{db}", "--config-dir", str(course_config),
                           "--out", str(tmp_path / "out")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert db.is_file() and "1 invalid" in proc.stdout


@pytest.mark.slow
def test_a_temporary_folder_too_deep_for_unix_sockets_still_grades(tmp_path, course_config):
    """A $TMPDIR whose path leaves no room for the kernels' Unix sockets (107 bytes; pytest's own
    under xdist is close): the sandboxed kernels start, the scratch folder going to /tmp."""
    deep = tmp_path / ("t" * 70)
    deep.mkdir()
    subs = _subs(tmp_path, ann=samples.solved(A))
    env = dict(os.environ, TMPDIR=str(deep))
    proc = subprocess.run([sys.executable, "-m", "grader", "autograde", str(subs), "--no-progress", "--workers", "1",
                           "--config-dir", str(course_config), "--out", str(tmp_path / "out")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "1 graded" in proc.stdout
    assert autograde.kernels.scratch_parent() == tempfile.gettempdir()     # a short one is kept


def test_fork_servers_import_torchdynamo_only_for_assignments_that_use_it():
    """Check that zygote_warm asks for TorchDynamo where the lesson trains with torch.optim
    (lesson 6) and not for lesson 1, which never imports it."""
    assert autograde.zygote_warm(["06_small_cnn"]) == ("torch._dynamo",)
    assert autograde.zygote_warm(["01_cross_correlation"]) == ()
    assert autograde.zygote_warm(["01_cross_correlation", "06_small_cnn"]) == ("torch._dynamo",)


def test_a_failed_save_leaves_the_runs_gradebook_usable(tmp_path, course_config):
    """Check that when saving one submission's grades fails (status error), none of its scores
    stay in the run's shared gradebook session, and the next submission's grades are saved."""
    from nbgrader.api import Gradebook
    from grader import integrity
    db_url = f"sqlite:///{course_config}/gradebook.db"
    opts = autograde.Options(out=tmp_path / "out", config_dir=course_config, progress=False)
    record = integrity.ReleaseRecord.read(db_url, A)
    jobs = {}
    for student in ("broken_save", "good_save"):
        path = tmp_path / "subs" / student / A / f"{A}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(samples.solved(A), path)
        job = autograde.Job(student, A, path)
        job.nb = integrity.sanitize(samples.solved(A), A, student, db_url, record)
        jobs[student] = job
    bad = [c for c in jobs["broken_save"].nb.cells if c.metadata.get("nbgrader", {}).get("grade")][-1]
    bad.metadata.nbgrader["grade_id"] = "not_in_the_gradebook"     # SaveAutoGrades: MissingEntry, after
                                                                    # the other cells' scores were written
    with Gradebook(db_url) as gb:
        results = {s: autograde.record(j, None, {}, gb, opts, {A: 19}) for s, j in jobs.items()}
    assert results["broken_save"]["status"] == "error"
    assert any("could not record the grade" in m for m in results["broken_save"]["messages"])
    assert results["good_save"]["status"] == "graded"
    with Gradebook(db_url) as gb:
        saved = gb.find_submission_notebook(A, A, "good_save")
        assert saved.score == results["good_save"]["score"] > 0
        broken = gb.find_submission_notebook(A, A, "broken_save")
        assert [g.auto_score for g in broken.grades] == [None] * len(broken.grades)   # none of its scores


def test_saving_grades_writes_what_nbgraders_saveautogrades_writes(tmp_path, course_config):
    """Check that our SaveAutoGrades (each submission's rows read in a few queries, one commit)
    writes the same auto scores, review flags and comments as nbgrader's own, cell by cell: on a
    notebook with passed, failed and errored tests, answered and untouched solution cells."""
    from nbgrader.api import Gradebook
    from nbgrader.preprocessors import SaveAutoGrades
    from nbformat.v4 import new_output
    from grader import integrity
    db_url = f"sqlite:///{course_config}/gradebook.db"
    record = integrity.ReleaseRecord.read(db_url, A)
    nb = integrity.sanitize(samples.untouched(A), A, "x", db_url, record)
    tests = [c for c in nb.cells if integrity.is_test(c)]
    tests[0].outputs = [new_output("error", ename="AssertionError", evalue="no", traceback=[])]
    tests[1].outputs = [new_output("stream", name="stdout", text="fine\n")]
    answer = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution"))
    answer.source = "def corr2d(X, K):\n    return X\n"
    with Gradebook(db_url) as gb, warnings.catch_warnings():
        warnings.simplefilter("ignore")             # SQLAlchemy's, about nbgrader's own session use
        for student in ("ours", "nbgraders"):
            gb.update_or_create_student(student)
            gb.update_or_create_submission(A, student)
        autograde._SaveAutoGrades().save(gb, nb, A, "ours")
        theirs = SaveAutoGrades()
        theirs.gradebook, theirs.notebook_id, theirs.assignment_id, theirs.student_id = gb, A, A, "nbgraders"
        for i, cell in enumerate(nb.cells):
            theirs.preprocess_cell(cell, {}, i)

        def rows(student):
            sub = gb.find_submission_notebook(A, A, student)
            return (sorted((g.name, g.auto_score, g.needs_manual_grade) for g in sub.grades),
                    sorted((c.name, c.auto_comment) for c in sub.comments))
        assert rows("ours") == rows("nbgraders")
        grades, comments = rows("ours")
        assert {s for _, s, _ in grades} >= {0.0} and any(s for _, s, _ in grades)      # failed and passed
        assert {c for _, c in comments} == {None, "No response."}                      # answered and untouched


# Runs a module as `python -m` would, killed (os._exit, as by kill -9: nothing flushed, no
# rollback) just before its SQL statement number `at` (argv[1]; 0: never, and each statement's
# start is printed).
KILLED_AT_STATEMENT = """
import os, runpy, sys
from sqlalchemy import event
from sqlalchemy.engine import Engine
at, count = int(sys.argv[1]), [0]

@event.listens_for(Engine, "before_cursor_execute")
def _statement(conn, cursor, statement, *args):
    count[0] += 1
    if count[0] == at:
        os._exit(9)
    if not at:
        print("SQL:", " ".join(statement.split())[:60])

sys.argv = sys.argv[2:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def _generate_killed_at(statement: int, course, db_url: str, tmp_path) -> subprocess.CompletedProcess:
    """`nbgrader generate_assignment` as the grader runs it (creating the gradebook first, as the
    grader's own Gradebook does when it is missing), killed before its SQL statement number
    `statement`."""
    from grader.course import tool_env
    args = ["nbgrader", "generate_assignment", A, "--force", "--log-level=WARN",
            f"--CourseDirectory.release_directory={tmp_path / 'release'}", f"--CourseDirectory.db_url={db_url}"]
    return subprocess.run([sys.executable, "-c", KILLED_AT_STATEMENT, str(statement), *args], cwd=course,
                          env=tool_env(), capture_output=True, text=True, timeout=300)


def _fake_execute(job, student, examiner, imports, opts):
    """Verdicts without kernels, from the notebook alone: every test fails while an answer still
    raises NotImplementedError (the untouched release), else passes."""
    untouched = any("NotImplementedError" in c.source for c in job.nb.cells
                    if c.metadata.get("nbgrader", {}).get("solution"))
    for cell in job.nb.cells:
        if integrity.is_test(cell):
            cell.outputs = [nbformat.v4.new_output("error", ename="AssertionError", evalue="no", traceback=[])] \
                if untouched else []
    return None, {}


def _gradebook_dump(db_url: str) -> dict:
    """What a gradebook holds, without nbgrader's random ids: its schema, the number of rows of
    every table, alembic's version, each notebook's record and each submission's grades."""
    from nbgrader.api import Gradebook
    from sqlalchemy import create_engine, text
    engine = create_engine(db_url)
    with engine.connect() as c:
        schema = sorted(tuple(r) for r in c.execute(text("SELECT type, name, sql FROM sqlite_master")))
        rows = {name: c.execute(text(f"SELECT count(*) FROM {name}")).scalar() for t, name, _ in schema if t == "table"}
        version = c.execute(text("SELECT version_num FROM alembic_version")).all() if "alembic_version" in rows else None
    engine.dispose()
    with Gradebook(db_url) as gb:
        notebooks = {(a.name, n.name): (n.kernelspec, sorted((c.name, c.max_score, c.cell_type) for c in n.grade_cells),
                                        sorted(c.name for c in n.solution_cells), sorted(c.name for c in n.task_cells),
                                        sorted((c.name, c.cell_type, c.locked, c.source, c.checksum) for c in n.source_cells))
                     for a in gb.assignments for n in a.notebooks}
        grades = {(s.student.id, s.assignment.name): sorted(
            (g.name, g.auto_score, g.manual_score, g.needs_manual_grade) for n in s.notebooks for g in n.grades)
            for a in gb.assignments for s in a.submissions}
    return {"schema": schema, "rows": rows, "version": version, "notebooks": notebooks, "grades": grades}


def _kill_points(statements: list[str]) -> list[int]:
    """Where to kill nbgrader generate_assignment, by the numbers of its SQL `statements`: among
    the gradebook's tables, before alembic's version, the assignment, the notebook, the 4th grade
    cell, the first solution cell, the 9th and the last source cell."""
    def before(start: str, n: int = 1) -> int:
        return [i + 1 for i, s in enumerate(statements) if s.startswith(start)][n - 1 if n > 0 else n]
    return [before("CREATE TABLE") + 3, before("INSERT INTO alembic_version"), before("INSERT INTO assignment"),
            before("INSERT INTO notebook"), before("INSERT INTO grade_cells", 4), before("INSERT INTO solution_cells"),
            before("INSERT INTO source_cell", 9), before("INSERT INTO source_cell", -1)]


def _rows_left(db: Path) -> dict:
    """The number of rows of each table of the gradebook file `db` (none: {}), read with SQLite
    only (nbgrader's Gradebook would finish creating it; SQLite rolls back what was not committed)."""
    if not db.exists():
        return {}
    with contextlib.closing(sqlite3.connect(db)) as c:
        tables = [name for (name,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {name: c.execute(f"SELECT count(*) FROM {name}").fetchone()[0] for name in tables}


def _kill_course(tmp_path, name: str):
    """A throwaway course (config, no gradebook yet) and its gradebook's URL."""
    from tests.grader.conftest import write_course
    course = tmp_path / name
    course.mkdir()
    write_course(course)
    return course, f"sqlite:///{course}/gradebook.db"


def _graded_without_kernels(subs, course, db_url: str, out, monkeypatch) -> tuple[list, str, dict]:
    """(results, cells.csv, the gradebook) of an autograde run whose verdicts come from
    `_fake_execute`."""
    monkeypatch.setattr(autograde.kernels, "ForkServerPool", _BrokenPool)
    monkeypatch.setattr(autograde, "check_sandbox", lambda: None)
    monkeypatch.setattr(autograde.run, "execute", _fake_execute)
    monkeypatch.setattr(_BrokenPool, "acquire", lambda self: object())
    opts = autograde.Options(workers=1, out=out, config_dir=course, db_url=db_url, progress=False)
    results = autograde.autograde(subs, opts)
    monkeypatch.undo()
    rows = [(r["student_id"], r["status"], r["score"], r["max_score"], r["messages"]) for r in results]
    return rows, (out / "cells.csv").read_text(), _gradebook_dump(db_url)


@pytest.mark.slow
def test_a_kill_while_the_gradebook_and_the_release_record_are_made_changes_nothing(tmp_path, monkeypatch):
    """Check that whatever a kill -9 leaves of a new gradebook and of the assignment's record in
    it (nbgrader creates the tables one by one, then commits the record cell by cell), the next
    run gives the same grades, cells and gradebook (schema, rows, record, grades) as a run on a
    new gradebook: at kill points among the tables, before alembic's version, before the
    notebook, among the grade, solution and source cells. (It gave every submission `invalid`,
    cached, and left the record partial.)"""
    subs = _subs(tmp_path, solved=samples.solved(A), untouched=samples.untouched(A),
                 tampered=_without_a_test(samples.untouched(A)))
    course, db_url = _kill_course(tmp_path, "uninterrupted")
    expected = _graded_without_kernels(subs, course, db_url, tmp_path / "out-uninterrupted", monkeypatch)
    assert [r[:3] for r in expected[0]] == [("solved", "graded", 23), ("tampered", "tampered", 0), ("untouched", "graded", 0)]
    statements = [line[5:] for line in _generate_killed_at(0, *_kill_course(tmp_path, "count"), tmp_path)
                  .stdout.splitlines() if line.startswith("SQL: ")]
    partial = 0
    for at in _kill_points(statements):
        course, db_url = _kill_course(tmp_path, f"killed-at-{at}")
        assert _generate_killed_at(at, course, db_url, tmp_path).returncode == 9
        left = _rows_left(course / "gradebook.db")
        partial += 0 < left.get("source_cell", 0) < expected[2]["rows"]["source_cell"]
        got = _graded_without_kernels(subs, course, db_url, tmp_path / f"out-{at}", monkeypatch)
        assert got[0] == expected[0], (at, got[0])
        assert got[1] == expected[1], at
        assert got[2] == expected[2], (at, {k: v for k, v in got[2].items() if v != expected[2][k]})
    assert partial >= 2         # (the kill points did leave partial records)


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch):
    """Check that write_atomic, when the text cannot be encoded (a lone surrogate) or the disk
    fails while writing, leaves the file as it was and no temporary file beside it."""
    target = tmp_path / "out" / "x.json"
    autograde.write_atomic(target, "old")
    with pytest.raises(UnicodeEncodeError):
        autograde.write_atomic(target, "new \ud800")

    def fsync(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="No space"):
        autograde.write_atomic(target, "new")
    assert target.read_text() == "old" and [p.name for p in target.parent.iterdir()] == ["x.json"]


def test_the_graded_notebook_is_written_before_the_gradebook_commits(tmp_path, course_config):
    """Check that a submission whose graded notebook cannot be written (here: a lone surrogate
    that nothing repaired) gets `error` with nothing recorded: no gradebook row (they were
    committed first), no notebook, no temporary file; and that one whose gradebook save fails
    after its notebook was written has that notebook removed."""
    from nbgrader.api import Gradebook
    db_url = f"sqlite:///{course_config}/gradebook.db"
    opts = autograde.Options(out=tmp_path / "out", config_dir=course_config, progress=False)
    record = integrity.ReleaseRecord.read(db_url, A)
    jobs = []
    for student in ("unwritable_notebook", "unsaved_grades"):
        path = tmp_path / "subs" / student / A / f"{A}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(samples.solved(A), path)
        job = autograde.Job(student, A, path)
        job.nb = integrity.sanitize(samples.solved(A), A, student, db_url, record)
        jobs.append(job)
    jobs[0].nb.cells[-1].source += "\n# \ud800"
    [c for c in jobs[1].nb.cells if integrity.is_test(c)][-1].metadata.nbgrader["grade_id"] = "not_in_the_gradebook"
    with Gradebook(db_url) as gb:
        results = [autograde.record(job, None, {}, gb, opts, {A: 23}) for job in jobs]
    assert [r["status"] for r in results] == ["error", "error"]
    assert "UnicodeEncodeError" in results[0]["messages"][1] and "MissingEntry" in results[1]["messages"][1]
    with Gradebook(db_url) as gb:
        assert "unwritable_notebook" not in [s.id for s in gb.students]
    for job in jobs:
        folder = opts.out / "autograded" / job.student / A
        assert not folder.exists() or list(folder.iterdir()) == [], list(folder.iterdir())


def test_lone_surrogates_in_a_submitted_notebook_are_repaired(tmp_path, course_config):
    """Check that a notebook whose JSON holds lone surrogates (escaped: valid JSON, but no UTF-8
    writer can write them back) in an answer, a markdown cell and a cell's metadata is read with
    U+FFFD in their place, and can be written, sanitized and saved (nbgrader's checksum of an
    answer encodes it as UTF-8)."""
    from nbgrader.api import Gradebook
    db_url = f"sqlite:///{course_config}/gradebook.db"
    nb = samples.solved(A)
    answer = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution"))
    answer.source += "\n# \ud800"
    nb.cells.append(nbformat.v4.new_markdown_cell("x \udc00"))
    nb.cells[-1].metadata["k\udfff"] = ["v\ud801"]
    [path] = [p / A / f"{A}.ipynb" for p in _subs(tmp_path, ann=json.dumps(nb).encode()).iterdir()]
    job = autograde.Job("ann", A, path)
    release = nbformat.read(autograde.store.student_notebook(A), as_version=4)
    sanitized = autograde._sanitized(job, release, integrity.ReleaseRecord.read(db_url, A), db_url)
    text = nbformat.writes(sanitized)
    text.encode("utf-8")
    assert "# \ufffd" in text and "x \ufffd" in text and '"k\ufffd": [' in text and "v\ufffd" in text
    job.nb = sanitized
    with Gradebook(db_url) as gb, warnings.catch_warnings():
        warnings.simplefilter("ignore")             # SQLAlchemy's, about nbgrader's own session use
        autograde._save_to_gradebook(job, gb, autograde.late_penalties(course_config))


def test_a_gradebook_failure_while_reading_a_submission_is_an_error_not_cached(tmp_path, course_config, monkeypatch):
    """Check that a submission the gradebook (not its notebook) kept from being read gets
    `error` (graded again by the next run), where nbgrader refusing the notebook is `invalid`."""
    from nbgrader.api import MissingEntry
    subs = _subs(tmp_path, ann=samples.untouched(A))
    opts = autograde.Options(workers=1, out=tmp_path / "out", config_dir=course_config, progress=False, sandbox=False)

    def sanitized(job, release, record, db_url):
        raise MissingEntry("No such source cell")
    monkeypatch.setattr(autograde.prepare, "_sanitized", sanitized)
    [r] = autograde.autograde(subs, opts)
    assert r["status"] == "error" and "the gradebook could not be read" in r["messages"][0], r
    assert [p.name.endswith(".error.json") for p in (opts.out / "results" / "ann" / A).iterdir()] == [True]


def test_an_incomplete_release_record_is_made_again_unless_it_has_submissions(tmp_path):
    """Check that ensure_assignment makes again a record that lacks cells of the source notebook
    (what a kill leaves: nbgrader commits it cell by cell), and refuses, saying what to do, when
    that record has submissions (nbgrader cannot add cells to it then)."""
    from nbgrader.api import Gradebook
    course, db_url = _kill_course(tmp_path, "course")
    source = nbformat.read(autograde.store.source_notebook(A), as_version=4)
    release = nbformat.read(autograde.store.student_notebook(A), as_version=4)
    complete = autograde.ensure_assignment(A, db_url, course, source, release)
    assert complete.missing(source) == [] and not complete.submissions
    expected = _gradebook_dump(db_url)
    drop = "DELETE FROM source_cell WHERE rowid IN (SELECT rowid FROM source_cell ORDER BY name LIMIT 5)"
    with contextlib.closing(sqlite3.connect(course / "gradebook.db")) as c, c:
        c.execute(drop)
    assert len(integrity.ReleaseRecord.read(db_url, A).missing(source)) == 5
    assert autograde.ensure_assignment(A, db_url, course, source, release).missing(source) == []
    assert _gradebook_dump(db_url) == expected
    with Gradebook(db_url) as gb:
        gb.add_student("ann")
        gb.add_submission(A, "ann")
    with contextlib.closing(sqlite3.connect(course / "gradebook.db")) as c, c:
        c.execute(drop)
    with pytest.raises(autograde.AutogradeError, match="has 1 submissions, so nbgrader cannot record it again"):
        autograde.ensure_assignment(A, db_url, course, source, release)


def _killed_when(argv: list[str], ready, timeout: float = 300) -> bool:
    """Run the grader's command line `argv` and kill -9 it (its process only, as `kill -9 PID`
    does) as soon as `ready()`; False if it finished first."""
    proc = subprocess.Popen([sys.executable, "-m", "grader", *argv], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if ready():
                    proc.kill()
                    return proc.wait() == -9
            except sqlite3.Error:           # (the gradebook being written)
                pass
            time.sleep(0.005)
        return False
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_autograde_killed_at_any_moment_then_run_again_grades_as_one_run(tmp_path):
    """Check that `python -m grader autograde` killed with kill -9 as soon as its new gradebook
    exists, then again while nbgrader writes the assignment's record (its notebook in: that
    nbgrader is killed with it, the record stays partial), then again when the first result is
    written, then run to the end, gives the same grades.csv, cells.csv and gradebook as one
    uninterrupted run. (Kills like these left every submission `invalid`, cached, and the record
    partial.)"""
    subs = _subs(tmp_path, solved=samples.solved(A), untouched=samples.untouched(A),
                 tampered=_without_a_test(samples.untouched(A)), wrong=_wrong_answer())
    runs = {}
    for name in ("uninterrupted", "killed"):
        course, db_url = _kill_course(tmp_path, name)
        argv = ["autograde", str(subs), "--out", str(tmp_path / f"out-{name}"), "--db-url", db_url,
                "--config-dir", str(course), "--workers", "2", "--timeout", "120", "--no-progress"]
        db, results = course / "gradebook.db", tmp_path / f"out-{name}" / "results"
        if name == "killed":
            assert _killed_when(argv, db.exists)
            assert _killed_when(argv, lambda: _rows_left(db).get("notebook", 0) > 0)
            left = _rows_left(db)
            time.sleep(1)                   # (nbgrader, writing the record, was killed with it)
            assert _rows_left(db) == left and left["source_cell"] < 23, left
            assert _killed_when(argv, lambda: any(results.rglob("*.json")))
        assert subprocess.run([sys.executable, "-m", "grader", *argv], cwd=ROOT, capture_output=True,
                              timeout=600).returncode == 0
        runs[name] = [(tmp_path / f"out-{name}" / table).read_text() for table in ("grades.csv", "cells.csv")]
        runs[name].append(_gradebook_dump(db_url))
    assert runs["killed"] == runs["uninterrupted"]
    assert "solved,01_cross_correlation,23,23,graded" in runs["killed"][0]


def test_written_files_follow_the_umask_as_a_plain_open_would(tmp_path):
    """Check that write_atomic's files get the process's umask, not mkstemp's 0600: on the hub the
    staff group shares the course folder (umask 002), and another instructor must read results."""
    target = tmp_path / "shared.json"
    autograde.write_atomic(target, "{}")
    assert target.stat().st_mode & 0o777 == 0o666 & ~autograde._UMASK


@pytest.mark.slow
def test_late_submissions_get_the_courses_penalty_as_nbgrader_gives_it(tmp_path, monkeypatch):
    """Check that a submission whose timestamp is after the assignment's due date gets the penalty
    the course's LateSubmissionPlugin gives (here 'zero': the penalty is the score), one on time
    gets none, and each equals what nbgrader's own AssignLatePenalties records on the same
    gradebook; the feedback page then shows the final score."""
    from datetime import datetime
    from nbgrader.api import Gradebook
    from nbgrader.preprocessors import AssignLatePenalties
    subs = _subs(tmp_path, late=samples.solved(A), ontime=samples.solved(A))
    (subs / "late" / A / "timestamp.txt").write_text("2026-03-02 09:00:00.000000 UTC")
    (subs / "ontime" / A / "timestamp.txt").write_text("2026-02-28 09:00:00.000000 UTC")
    course, db_url = _kill_course(tmp_path, "late")
    with (course / "nbgrader_config.py").open("a") as f:
        f.write("c.LateSubmissionPlugin.penalty_method = 'zero'\n")
    from grader.course import use_this_environment
    use_this_environment()                          # nbgrader runs alembic from PATH
    with Gradebook(db_url) as gb:
        gb.add_assignment(A, duedate=datetime(2026, 3, 1, 12, 0))
    autograde.late_penalties.cache_clear()
    rows, _, _ = _graded_without_kernels(subs, course, db_url, tmp_path / "out", monkeypatch)
    assert [r[:3] for r in rows] == [("late", "graded", 23), ("ontime", "graded", 23)]

    def penalties():
        with Gradebook(db_url) as gb:
            return {s: gb.find_submission_notebook(A, A, s).late_submission_penalty for s in ("late", "ontime")}

    ours = penalties()
    assert ours == {"late": 23, "ontime": None}
    theirs = AssignLatePenalties(config=autograde._config(course))
    for student in ("late", "ontime"):
        theirs.preprocess(nbformat.v4.new_notebook(), {"nbgrader": {"notebook": A, "assignment": A,
                                                                   "student": student, "db_url": db_url}})
    assert penalties() == ours


def test_the_bench_and_the_cli_build_their_options():
    """Check that `python -m grader.bench` and `python -m grader autograde` parse their options
    (their defaults come from autograde; one broke the bench when a default became a factory)."""
    import subprocess
    import sys
    for module in (["grader.bench"], ["grader", "autograde"]):
        proc = subprocess.run([sys.executable, "-m", *module, "--help"], capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == 0 and "--workers" in proc.stdout, proc.stderr


def test_a_student_folder_whose_name_is_not_utf8_is_skipped_with_a_warning(tmp_path):
    """Check that a folder name of bytes that are not UTF-8 (an LMS zip can carry one) is
    skipped with a warning that says what to do, and the other students are still found (it
    made the whole run fail in write_tables)."""
    subs = _subs(tmp_path, ann=samples.untouched(A))
    os.mkdir(os.path.join(os.fsencode(subs), b"bad\xff"))
    jobs, warnings = autograde.discover(subs, [A])
    assert [j.student for j in jobs] == ["ann"]
    assert any("not UTF-8" in w and "rename it" in w for w in warnings), warnings


@pytest.mark.slow
def test_a_missing_notebook_gets_a_zero_in_the_gradebook_as_nbgrader_gives_it(tmp_path, monkeypatch):
    """Check that a student who handed in the assignment's folder without its notebook (a wrong
    file name) gets `missing` and, in the gradebook, the submission with a zero for every graded
    cell and nothing to grade by hand (what `nbgrader autograde` records for a missing notebook);
    a student with no folder for the assignment gets no submission at all."""
    from nbgrader.api import Gradebook, MissingEntry
    subs = _subs(tmp_path, ann=samples.solved(A))
    wrong = subs / "bob" / A
    wrong.mkdir(parents=True)
    nbformat.write(samples.solved(A), wrong / "my_lesson.ipynb")
    (wrong / "timestamp.txt").write_text("2026-03-02 09:00:00.000000 UTC")
    (subs / "cy" / "another_folder").mkdir(parents=True)
    course, db_url = _kill_course(tmp_path, "missing")
    rows, _, _ = _graded_without_kernels(subs, course, db_url, tmp_path / "out", monkeypatch)
    assert [r[:3] for r in rows] == [("ann", "graded", 23), ("bob", "missing", 0), ("cy", "missing", 0)]
    with Gradebook(db_url) as gb:
        bob = gb.find_submission_notebook(A, A, "bob")
        assert bob.grades and all(g.auto_score == 0 and not g.needs_manual_grade for g in bob.grades)
        assert gb.find_submission(A, "bob").score == 0 and str(gb.find_submission(A, "bob").timestamp).startswith("2026-03-02")
        with pytest.raises(MissingEntry):
            gb.find_submission(A, "cy")
