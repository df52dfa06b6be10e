"""hub/submit_grader.py without a hub: the fair queue (replacement, round robin, one job per student,
the rate limit), which inbound entries are taken and how they are copied, and the student's page
(visible results only, hidden checks counted, everything escaped). The service on the real hub:
tests/e2e/test_submit_grading.py."""
from __future__ import annotations

import os
import time
import pwd
from pathlib import Path

import pytest

from hub.submit_grader import FairQueue, Grader, Job, Refused, Settings, complete_entries, copy_entry, render_result

A = "01_cross_correlation"


def job(student: str, assignment: str = A, n: int = 0) -> Job:
    return Job(student, assignment, f"{student}+{assignment}+ts{n}+r", f"ts{n}", seen=0.0)


def test_a_newer_submission_replaces_the_waiting_one_and_keeps_its_place():
    q = FairQueue(interval=0)
    first, other, newer = job("ann", n=1), job("bob"), job("ann", n=2)
    q.offer(first)
    q.offer(other)
    assert q.offer(newer) is first and first.state == "replaced"
    assert len(q) == 2
    assert q.take(now=0, limit=10) == [newer, other]      # ann keeps her turn


def test_round_robin_between_students_one_job_each_per_turn():
    q = FairQueue(interval=0)
    for n, a in enumerate(("a1", "a2", "a3")):            # ann hands in three assignments first
        q.offer(job("ann", a, n))
    q.offer(job("bob"))
    q.offer(job("cat"))
    batch = q.take(now=0, limit=10)
    assert [(j.student, j.assignment) for j in batch] == [("ann", "a1"), ("bob", A), ("cat", A)]
    assert q.take(now=0, limit=10) == []                  # ann's next waits for her running job
    for j in batch:
        q.finish(j, now=1)
    assert [j.assignment for j in q.take(now=1, limit=10)] == ["a2"]


def test_the_batch_limit_and_the_turn_order_carry_over():
    q = FairQueue(interval=0)
    for s in ("s1", "s2", "s3", "s4", "s5"):
        q.offer(job(s))
    first = q.take(now=0, limit=2)
    assert [j.student for j in first] == ["s1", "s2"]
    assert [j.student for j in q.take(now=0, limit=2)] == ["s3", "s4"]


def test_a_students_jobs_start_at_least_the_interval_apart():
    q = FairQueue(interval=30)
    a = job("ann", "a1")
    q.offer(a)
    assert q.take(now=100, limit=5) == [a]
    q.finish(a, now=101)
    b = job("ann", "a2")
    q.offer(b)
    q.offer(job("bob"))
    assert [j.student for j in q.take(now=102, limit=5)] == ["bob"]   # others do not wait for ann
    assert q.next_ready(now=103) == 130
    assert q.take(now=129.9, limit=5) == []
    assert q.take(now=130, limit=5) == [b]


def test_a_failure_frees_the_student(tmp_path):
    q = FairQueue(interval=0)
    a = job("ann")
    q.offer(a)
    q.take(now=0, limit=1)
    q.finish(a, now=1, state="failed")
    b = job("ann", n=2)
    q.offer(b)
    assert q.take(now=1, limit=1) == [b]


def _entry(inbound: Path, name: str, mode: int = 0o750) -> Path:
    folder = inbound / name
    folder.mkdir(parents=True)
    (folder / f"{A}.ipynb").write_text("{}")
    (folder / "timestamp.txt").write_text(name.split("+")[2])
    folder.chmod(mode)
    return folder


def test_only_complete_entries_are_taken_and_the_newest_of_each(tmp_path):
    _entry(tmp_path, f"ann+{A}+2026-01-01 10:00:00.000000 UTC+r1")
    _entry(tmp_path, f"ann+{A}+2026-01-01 11:00:00.000000 UTC+r2")
    _entry(tmp_path, f"bob+{A}+2026-01-01 12:00:00.000000 UTC+r3", mode=0o777)   # submit still writing
    (tmp_path / "not-an-entry").mkdir()
    (tmp_path / f"cat+{A}+2026-01-01 10:00:00.000000 UTC+r4").write_text("a file")
    assert complete_entries(tmp_path) == {("ann", A): (f"ann+{A}+2026-01-01 11:00:00.000000 UTC+r2",
                                                      "2026-01-01 11:00:00.000000 UTC")}
    import time
    later = complete_entries(tmp_path, now=time.time() + 61)     # made another way, then left alone
    assert later[("bob", A)][0] == f"bob+{A}+2026-01-01 12:00:00.000000 UTC+r3"


def test_the_copy_takes_plain_files_only(tmp_path):
    src = _entry(tmp_path / "in", f"ann+{A}+2026-01-01 10:00:00.000000 UTC+r1")
    src.chmod(0o755)
    (src / "data").mkdir()
    (src / "data" / "x.txt").write_text("x")
    (src / ".ipynb_checkpoints").mkdir()
    copy_entry(src, tmp_path / "out" / "ann" / A, uid=None)
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")) == [
        "ann", f"ann/{A}", f"ann/{A}/{A}.ipynb", f"ann/{A}/data", f"ann/{A}/data/x.txt", f"ann/{A}/timestamp.txt"]
    (src / "link").symlink_to("/etc/passwd")
    with pytest.raises(OSError):
        copy_entry(src, tmp_path / "out2", uid=None)
    (src / "link").unlink()
    os.link(src / "data" / "x.txt", src / "second-name")
    with pytest.raises(Refused, match="plain file"):
        copy_entry(src, tmp_path / "out3", uid=None)
    (src / "second-name").unlink()
    with pytest.raises(Refused, match="plain file"):   # someone else's file
        copy_entry(src, tmp_path / "out4", uid=os.getuid() + 1)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: files owned by another account")
def test_a_forged_entry_is_not_queued(tmp_path, monkeypatch):
    """An entry in another's name, or of an account off the roster, is refused; a student's own is queued once."""
    from hub import exchange
    roster = {"daemon"}                                    # the course's students (the hub's Unix group)
    monkeypatch.setattr(exchange, "course_students", lambda: frozenset(roster))
    inbound = tmp_path / "exchange" / "convlab" / "inbound"
    _entry(inbound, f"daemon+{A}+2026-01-01 10:00:00.000000 UTC+r1")   # named daemon, owned by root
    g = Grader(Settings(exchange=tmp_path / "exchange", work=tmp_path / "work"))
    assert g.scan() == 0 and len(g.refused) == 1 and not g.jobs
    nobody = pwd.getpwnam("nobody")
    from datetime import datetime, timezone
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    real = _entry(inbound, f"nobody+{A}+{stamp}+r2")
    for p in (real, *real.iterdir()):
        os.chown(p, nobody.pw_uid, nobody.pw_gid)
    assert g.scan() == 0 and real.name in g.refused          # nobody's own, but nobody is not a student
    time.sleep(0.01)                                        # a later hand-in: the newest entry
    real2 = _entry(inbound, f"nobody+{A}+{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M:%S.%f UTC')}+r3")
    for p in (real2, *real2.iterdir()):
        os.chown(p, nobody.pw_uid, nobody.pw_gid)
    roster.add("nobody")                                   # on the roster now
    assert g.scan() == 1 and g.jobs[0].student == "nobody" and g.jobs[0].entry == real2.name
    assert g.scan() == 0                                   # taken once


def _result(cells, status="graded", messages=()):
    return {"student_id": "ann", "assignment": A, "status": status, "score": 0, "max_score": 0,
            "messages": list(messages), "cells": cells}


def test_the_page_shows_visible_results_and_counts_the_hidden_checks():
    from hub.submit_grader import hidden_cells
    hidden = sorted(hidden_cells(A))
    assert hidden, "lesson 1 has test cells with hidden parts"
    secret = "AssertionError: corr2d(X=tensor([[9., 9.]]), K=...) expected 42.5"
    cells = [
        {"grade_id": hidden[0], "score": 0, "max_score": 1, "passed": False, "message": secret,
         "public_message": "A hidden check failed (its inputs and message are not shown)."},
        {"grade_id": hidden[1], "score": 0, "max_score": 1, "passed": False,
         "message": "NotImplementedError: <script>alert(1)</script>",
         "public_message": "NotImplementedError: <script>alert(1)</script>"},
    ]
    page = render_result(_result(cells, messages=["<b>note</b>"]))
    assert "42.5" not in page and "tensor([[9." not in page and "A hidden check failed" not in page
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;note" in page
    assert "2 hidden checks not shown until feedback is released" in page
    assert page.count(">passed<") == 1 and page.count(">failed<") == 1   # the hidden failure: visible part passed
    named = render_result(_result(cells), hidden_mode="named")
    assert "A hidden check failed (its inputs" in named and "42.5" not in named


def test_a_restarted_service_keeps_what_it_graded_and_what_waited(tmp_path):
    from dataclasses import asdict
    done, waiting, old = job("ann"), job("bob"), job("cat", n=1)
    done.state, done.result = "done", "ann/x.json"
    old.state = "replaced"
    running = job("dan")
    running.state = "running"
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "state.json").write_text(
        __import__("json").dumps([asdict(j) for j in (done, old, waiting, running)]))
    g = Grader(Settings(exchange=tmp_path / "exchange", work=tmp_path / "work", interval=0))
    g.load()
    assert [j.student for j in g.jobs] == ["ann", "cat", "bob", "dan"]
    assert g.latest_done[("ann", A)].result == "ann/x.json"
    assert g.taken == {("ann", A): done.entry, ("bob", A): waiting.entry, ("dan", A): running.entry}
    assert [j.student for j in g.queue.take(now=0, limit=5)] == ["bob", "dan"]
