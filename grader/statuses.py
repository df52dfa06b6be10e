"""Every status a submission can get, in one table: what it means, whose doing it is, what the
student's feedback page says, and whether instructors must review it. Everything else (the
autograder's choice of status, the feedback pages, the class report, the README's table, the
gradebook's review marks) reads it from here: a new status is one row.

>>> [s.name for s in TABLE if s.review]
['timeout', 'crashed', 'memory', 'tampered']
>>> of_death("disk"), of_death("grader"), of_death("something new")
('memory', 'error', 'crashed')
>>> death_message("timeout", timeout=60, memory=2 * 2**30)
'the notebook ran out of time (60 s for the whole notebook)'
>>> death_message("memory", timeout=60, memory=512 * 2**20)
'the notebook used more memory than allowed (512 MB)'
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Status:
    name: str
    blame: str          # whose doing: "student" (what was handed in or what its code did), "grader"
    meaning: str        # for instructors
    student_text: str   # on the student's feedback page
    review: bool        # instructors should look before feedback goes out (needs manual grade)
    cached: bool = True  # a result with this status is reused by the next run (if nothing changed)


TABLE = (
    Status("graded", "student", "ran to the end; the score is the grade", "graded", False),
    Status("timeout", "student", "ran out of time (the whole notebook, or a call that could not be interrupted)",
           "stopped: it ran out of time", True),
    Status("crashed", "student", "the kernel stopped, printed far too much, or sent what the grader refuses",
           "stopped: the kernel stopped or printed too much", True),
    Status("memory", "student", "used more memory (or disk) than allowed",
           "stopped: it used too much memory", True),
    Status("tampered", "student", "tests or the grading machinery were changed: graded with the original tests",
           "flagged: tests or the grading machinery were changed; graded with the original tests", True),
    Status("invalid", "student", "not a readable notebook, or not plain files: nothing of it was read",
           "not a readable notebook", False),
    Status("missing", "student", "no notebook of the assignment's name", "not handed in", False),
    Status("error", "grader", "not graded: the grader failed (never the student's doing); graded again next run",
           "not graded yet: the grader failed (not your fault)", False, cached=False),
)
BY_NAME = {s.name: s for s in TABLE}
NAMES = tuple(BY_NAME)
REVIEW = tuple(s.name for s in TABLE if s.review)
NOT_GRADED = ("invalid", "error")            # no test cell ran

# How a kernel died (grader/shell_client.py KernelDied reasons) -> (status, what the result says).
DEATHS = {
    "timeout": ("timeout", "the notebook ran out of time ({timeout:g} s for the whole notebook)"),
    "call_timeout": ("timeout", "a call of the student's code from a test ran out of time and could not be interrupted"),
    "memory": ("memory", "the notebook used more memory than allowed ({memory})"),
    "disk": ("memory", "the notebook wrote too much to disk"),
    "flood": ("crashed", "the notebook printed too much output"),
    "crashed": ("crashed", "the kernel stopped (sys.exit, os._exit, a crash or a killed process)"),
    "killed": ("crashed", "the kernel was stopped"),
    "grader": ("error", "the grader failed (not the submission's fault); the next run grades it again"),
}


def of_death(reason: str) -> str:
    """The status of a submission whose kernel died for `reason` (unknown reasons: crashed)."""
    return DEATHS.get(reason, ("crashed", reason))[0]


def death_message(reason: str, *, timeout: float, memory: int) -> str:
    """What the result file says about a death for `reason`, the limits filled in (`timeout` in
    seconds, `memory` in bytes)."""
    size = f"{memory / 2**30:g} GB" if memory >= 2**30 else f"{memory / 2**20:g} MB"
    return DEATHS.get(reason, ("crashed", reason))[1].format(timeout=timeout, memory=size)


def student_text(name: str) -> str:
    """The feedback page's words for status `name` (the name itself for an unknown one)."""
    return BY_NAME[name].student_text if name in BY_NAME else name
