"""Which submissions there are: <student>/<assignment>/<assignment>.ipynb under the submissions
folder; a folder that is not plain files is `invalid` here, unread (grader/integrity.py `refusal`)."""
from __future__ import annotations

import os
import stat
from pathlib import Path

from .. import integrity
from ..course import SOLUTIONS
from .options import AutogradeError, Job


# ---------------------------------------------------------------------------------------------
# discovery

def roster(submissions: Path, wanted: tuple[str, ...] = ()) -> list[str]:
    """The assignments to grade: `wanted`, or else every course assignment that at least one
    student folder has (so grading lesson 1 does not report lessons 2-5 as missing). Student
    folders are looked into only if they are folders, not links to one; their entries by lstat."""
    course = sorted(p.parent.name for p in SOLUTIONS.glob("*/*.ipynb") if p.stem == p.parent.name)
    unknown = sorted(set(wanted) - set(course))
    if unknown:
        raise AutogradeError(f"{', '.join(unknown)} not an assignment of this course "
                             f"(solutions/ has {', '.join(course)})")
    if wanted:
        return sorted(wanted)
    found = {a for a in course for s in _entries(submissions) if s.is_dir(follow_symlinks=False)
             and os.path.lexists(Path(s.path) / a)}
    return sorted(found)


def _entries(folder: Path) -> list[os.DirEntry]:
    """The entries of `folder` whose names do not start with a dot, in name order."""
    with os.scandir(folder) as it:
        return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)


def discover(submissions: Path, assignments: list[str]) -> tuple[list[Job], list[str]]:
    """One job per student folder × assignment; warnings for what is ignored. Nothing is
    followed: a student folder that is a link, device, FIFO or socket gets `invalid` jobs, and so
    does a submission with one anywhere in its folder (`integrity.refusal`); plain files at the
    top are ignored, as before."""
    jobs, warnings = [], []
    for entry in _entries(submissions):
        student, student_dir = entry.name, Path(entry.path)
        if not _text(student):
            warnings.append(f"{student.encode('utf-8', 'replace').decode()!r}: a folder name that is not "
                            "UTF-8 text cannot be a student id (nbgrader's gradebook and grades.csv need one): "
                            "ignored; rename it to the student's id")
            continue
        kind = integrity.special(entry.stat(follow_symlinks=False).st_mode)
        if kind:
            message = f"the student folder {student} is {kind}: {integrity.PLAIN_ONLY}"
            jobs += [Job(student, a, student_dir / a / f"{a}.ipynb", status="invalid", message=message)
                     for a in assignments]
            continue
        if not entry.is_dir(follow_symlinks=False):
            continue
        for extra in _entries(student_dir):
            if extra.name not in assignments and (extra.is_dir(follow_symlinks=False) or extra.is_symlink()):
                warnings.append(f"{student}/{extra.name}: not an assignment of this course, ignored")
        jobs += [job_of(student, student_dir, a) for a in assignments]
    return jobs, warnings


def _text(name: str) -> bool:
    """Is a file name (surrogate-escaped bytes where it was not UTF-8) plain UTF-8 text?"""
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def job_of(student: str, student_dir: Path, a: str) -> Job:
    """The job of one student folder (a real folder) × assignment: `invalid` when the assignment
    folder is, or holds, anything but plain files and folders; `missing` without the notebook
    (hub/grade.py builds the jobs of the submissions it takes from the submit-time grader with it)."""
    folder = student_dir / a
    job = Job(student, a, folder / f"{a}.ipynb")
    mode = os.lstat(folder).st_mode if os.path.lexists(folder) else stat.S_IFREG    # (a file: missing)
    is_dir = stat.S_ISDIR(mode)
    refused = integrity.refusal(folder, f"{a} (the assignment folder)") if is_dir or integrity.special(mode) else None
    if refused:
        job.status, job.message = "invalid", refused
    elif not os.path.lexists(job.path):
        others = sorted(e.name for e in _entries(folder) if e.name.endswith(".ipynb")) if is_dir else []
        job.status = "missing"
        job.message = f"no {a}/{a}.ipynb" + (f" (found {', '.join(others)}: wrong file name)" if others else "")
    return job
