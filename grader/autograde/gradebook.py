"""What nbgrader's gradebook gets for a graded submission: SaveAutoGrades' scores in one transaction,
AssignLatePenalties' penalty, and review marks (needs manual grade, the reason) when it is flagged."""
from __future__ import annotations

import functools
from pathlib import Path

import nbformat
from nbgrader import utils as nbutils
from nbgrader.api import Comment, Grade, GradeCell, Gradebook, MissingEntry, SolutionCell, TaskCell
from nbgrader.preprocessors import AssignLatePenalties, SaveAutoGrades

from .. import integrity
from .options import Job, _config


@functools.cache
def late_penalties(config_dir: Path) -> AssignLatePenalties:
    """nbgrader's AssignLatePenalties as the course configures it (its LateSubmissionPlugin and
    penalty method, e.g. `c.LateSubmissionPlugin.penalty_method = "zero"`), once per run."""
    late = AssignLatePenalties(config=_config(config_dir))
    late.init_plugin()
    return late


def _save_to_gradebook(job: Job, gb: Gradebook, late: AssignLatePenalties,
                       flag: tuple[str, str] | None = None) -> None:
    """What `nbgrader autograde` records: the student, the submission (with its timestamp), the
    scores (SaveAutoGrades'; without a notebook, for an assignment folder handed in without it, a
    zero on every graded cell and nothing to grade by hand, as nbgrader gives a missing notebook)
    and AssignLatePenalties' penalty, and for a `flag` (status, reason) the review marks
    (`_flag`), in one commit (on a failure the session is rolled back, so the next submission
    starts clean)."""
    try:
        gb.update_or_create_student(job.student)
        timestamp = _timestamp(job.path.parent)
        gb.update_or_create_submission(job.assignment, job.student, **({"timestamp": timestamp} if timestamp else {}))
        if job.nb is not None:
            _SaveAutoGrades().save(gb, job.nb, job.assignment, job.student)
        else:
            for grade in gb.find_submission_notebook(job.assignment, job.assignment, job.student).grades:
                grade.auto_score, grade.needs_manual_grade = 0, False
        _assign_late_penalty(gb, job, late)
        if flag and job.nb is not None:
            _flag(gb.find_submission_notebook(job.assignment, job.assignment, job.student), *flag)
        gb.db.commit()
    except BaseException:
        gb.db.rollback()
        raise


def _flag(notebook, status: str, reason: str) -> None:
    """Review marks on a flagged submitted notebook, where instructors work (formgrader): its
    failed autograded cells (all of its graded cells when `tampered`: nothing it scored can be
    trusted) need a manual grade, and each comment row gets the reason as its automatic comment
    (formgrader shows it in the comment box; the students' feedback pages show only the comments
    an instructor writes: grader/feedback.py)."""
    for grade in notebook.grades:
        failed = grade.auto_score is not None and grade.max_score and grade.auto_score < grade.max_score
        if status == "tampered" or failed:
            grade.needs_manual_grade = True
    note = f"The grader flagged this submission ({status}): {reason}. Check it before releasing feedback."
    for comment in notebook.comments:
        comment.auto_comment = f"{comment.auto_comment} {note}" if comment.auto_comment else note


def _assign_late_penalty(gb: Gradebook, job: Job, late: AssignLatePenalties) -> None:
    """AssignLatePenalties.preprocess on the run's session (its plugin and checks, the same rows;
    nbgrader's opens a gradebook of its own for every notebook): the notebook's penalty from how
    late the submission's timestamp is after the assignment's due date (and the student's
    extension), none when it is not late."""
    submission = gb.find_submission(job.assignment, job.student)
    notebook = gb.find_submission_notebook(job.assignment, job.assignment, job.student)
    notebook.late_submission_penalty = None
    gb.db.flush()
    if submission.total_seconds_late > 0:
        penalty = late.plugin_inst.late_submission_penalty(job.student, notebook.score, submission.total_seconds_late)
        if penalty is not None:
            notebook.late_submission_penalty = late._check_late_penalty(notebook, penalty)


class _SaveAutoGrades(SaveAutoGrades):
    """nbgrader's SaveAutoGrades (the same rows and scores) in one transaction per notebook: it
    commits after every cell, an fsync each on SQLite (~0.4 s per notebook on this machine)."""

    def save(self, gb: Gradebook, nb: nbformat.NotebookNode, assignment: str, student: str) -> None:
        """Save the notebook's scores, flushed; the caller commits (or rolls back on a failure)."""
        self.gradebook, self.notebook_id, self.assignment_id, self.student_id = (
            _SubmittedRows(gb, assignment, assignment, student), assignment, assignment, student)
        gb.db.commit = gb.db.flush                            # what SaveAutoGrades calls per cell
        try:
            for i, cell in enumerate(nb.cells):
                self.preprocess_cell(cell, {}, i)
        finally:
            del gb.db.commit
        gb.db.flush()


class _SubmittedRows:
    """The gradebook as SaveAutoGrades sees it for one submitted notebook: its grades and comments
    read in four queries, where nbgrader's find_grade and find_comment run one to two per cell
    (the same rows, found the same way: a grade cell before a task cell of the same name)."""

    def __init__(self, gb: Gradebook, notebook: str, assignment: str, student: str) -> None:
        self.db, self.where = gb.db, (assignment, notebook, student)
        sub = gb.find_submission_notebook(notebook, assignment, student).id
        self.grades: dict = {}
        self.comments: dict = {}
        for rows, row, cells in ((self.grades, Grade, (GradeCell, TaskCell)), (self.comments, Comment, (SolutionCell, TaskCell))):
            for cell in cells:
                query = self.db.query(cell.name, row).select_from(row).join(cell, cell.id == row.cell_id)
                for name, found in query.filter(row.notebook_id == sub):
                    rows.setdefault(name, found)

    def find_grade(self, name: str, notebook: str, assignment: str, student: str) -> Grade:
        if name not in self.grades:
            raise MissingEntry(f"No such grade: {assignment}/{notebook}/{name} for {student}")
        return self.grades[name]

    def find_comment(self, name: str, notebook: str, assignment: str, student: str) -> Comment:
        if name not in self.comments:
            raise MissingEntry(f"No such taskcomment: {assignment}/{notebook}/{name} for {student}")
        return self.comments[name]


def _timestamp(folder: Path):
    """nbgrader's timestamp.txt beside the notebook, if it is a regular file (no link followed)."""
    try:
        return nbutils.parse_utc(integrity.read_plain(folder / "timestamp.txt", 1000).decode().strip())
    except Exception:  # noqa: BLE001 - a missing or bad timestamp file is ignored, as nbgrader does
        return None
