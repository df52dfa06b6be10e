"""grader/autograde.py: discovery, sizes, result files, tables, idempotence and restart."""
from __future__ import annotations

import csv
import json

import nbformat
import pytest

from grader import autograde, submissions

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
    nbformat.write(submissions.untouched(A), tmp_path / "ann" / A / f"{A}.ipynb")
    (tmp_path / "bob" / A).mkdir(parents=True)
    nbformat.write(submissions.untouched(A), tmp_path / "bob" / A / "homework.ipynb")
    (tmp_path / "cy" / "not_a_lesson").mkdir(parents=True)
    jobs, warnings = autograde.discover(tmp_path, [A])
    by = {j.student: j for j in jobs}
    assert by["ann"].status is None
    assert by["bob"].status == "missing" and "homework.ipynb" in by["bob"].message
    assert by["cy"].status == "missing"
    assert any("not_a_lesson" in w for w in warnings)


def test_roster_is_the_assignments_found_unless_named(tmp_path):
    (tmp_path / "ann" / A).mkdir(parents=True)
    (tmp_path / "bob" / "02_edge_detection").mkdir(parents=True)
    (tmp_path / "bob" / "not_a_lesson").mkdir(parents=True)
    assert autograde.roster(tmp_path) == [A, "02_edge_detection"]
    assert autograde.roster(tmp_path, ("03_learning_a_kernel",)) == ["03_learning_a_kernel"]
    with pytest.raises(SystemExit, match="lesson_99 not an assignment of this course"):
        autograde.roster(tmp_path, ("lesson_99",))


def test_job_key_follows_content(tmp_path):
    path = tmp_path / "ann" / A / f"{A}.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(submissions.untouched(A), path)
    opts = autograde.Options()
    job = autograde.Job("ann", A, path)
    k1 = autograde.job_key(job, opts)
    assert autograde.job_key(job, opts) == k1
    nbformat.write(submissions.solved(A), path)
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


def test_rerun_is_idempotent_and_restart_completes(tmp_path, course_config):
    """Grade two students; delete one result (as if killed before writing it) and leave a stray
    temporary file (killed while writing): the re-run grades only the missing one, and the
    tables have exactly one row each."""
    subs = tmp_path / "subs"
    for student, nb in (("ann", submissions.untouched(A)), ("bob", nbformat.v4.new_notebook())):
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
