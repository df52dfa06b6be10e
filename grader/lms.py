"""Grades out to an LMS: Canvas and Moodle gradebook CSV files, as nbgrader export plugins.

From the course folder (where nbgrader_config.py is; `--to` names the file):

    nbgrader export --exporter=grader.lms.CanvasExportPlugin --to canvas-grades.csv
    nbgrader export --exporter=grader.lms.MoodleExportPlugin --to moodle-grades.csv

`--assignment` / `--student` (nbgrader's, repeatable) choose what is exported, as for nbgrader's
own CsvExportPlugin. The students are nbgrader's roster (`nbgrader db student add/import`: id,
first and last name, email, LMS user id), the assignments those of the gradebook, in name order.
A student's grade for an assignment is the gradebook's final score, as CsvExportPlugin computes
it: the submission's score (each cell's manual score where an instructor gave one, else its
autograder score) less its late-submission penalty (the sum of its notebooks'), never below 0.
The export warns about submissions that still need grading by hand (their score may change).

**Canvas** (Grades > Import). The file has Canvas's own gradebook export layout:
`Student,ID,SIS User ID,SIS Login ID,Section,<assignment>...`, then a `Points Possible` row (each
assignment's maximum under its column), then one row per student. Canvas's importer
(instructure/canvas-lms, app/models/gradebook_importer.rb) recognises the header by `Student`,
`ID`, the two SIS columns and `Section`; skips the student columns of the row whose first cell
holds "Points Possible"; finds each student by the Canvas user id in `ID`, else by `SIS User ID`
or `SIS Login ID`, else by name; and each assignment by the Canvas id in a header "Name (id)",
else by its title, else it creates a new one. So: `Student` is "Last, First" (Canvas's sortable
name; the id without names), `ID` the student's `lms_user_id` from nbgrader's roster (Canvas's
user id, where known), and the nbgrader student id goes in `SIS Login ID` (the login name, what a
hub username usually is; `CanvasExportPlugin.id_column = "SIS User ID"` to use that column
instead). A header is the assignment's name, or "name (id)" with
`CanvasExportPlugin.assignment_ids = {"01_cross_correlation": 1234, ...}` (the number in the
Canvas assignment's URL). Columns follow the documented conventions of the Canvas Community guide
"How do I import grades in the Gradebook?" and the CSV rules of Canvas's SIS import format
(developerdocs.instructure.com: header row first, RFC 4180 quoting, UTF-8).
A missing submission (a student on the roster without one) is left **blank**, as Canvas's own
export leaves an ungraded submission: the importer treats a blank over an empty cell as no change,
so Canvas's own handling of missing work (its "missing" label and its missing-submission policy)
stays in charge, and its final score counts the assignment as 0 anyway.

**Moodle** (Grade administration > Import > CSV file). Moodle's CSV import takes any header row;
on its preview page the instructor maps one column to a user field ("Map from" / "Map to":
username, ID number, email address or user id; MoodleDocs "Grade import") and each grade column to
a grade item (or to a new one, named by the header). The file has the identity columns of
Moodle's own grade export, `First name,Last name,Username,Email address` (`MoodleExportPlugin.
id_column = "ID number"` puts the nbgrader id under `ID number` instead), then one column per
assignment named by it; map `Username` to username (or `Email address` to email address).
Numbers use a decimal point, which Moodle's importer reads (unformat_float). A missing submission
gets **0**: Moodle's importer reads an empty cell (or "-") as no grade
(grade/import/csv/classes/load_data.php), and Moodle's default aggregation excludes empty grades
from the course total ("Exclude empty grades"), which would leave the missing assignment out of
the total instead of counting it as zero. `missing_score` changes either default (e.g. "0" for
Canvas, "" for Moodle).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.plugins import ExportPlugin
from traitlets import Dict, Enum, Unicode


@dataclass
class _Row:
    """One student of the roster and their final score per assignment (None: no submission)."""
    id: str
    first_name: str
    last_name: str
    email: str
    lms_user_id: str
    scores: dict[str, float | None]


def _number(x: float) -> str:
    """A score as the LMS reads it: a decimal point, at most 4 decimals, no trailing zeros."""
    return f"{round(x, 4):g}"


class _LmsExportPlugin(ExportPlugin):
    """The roster and the gradebook's final scores (late penalties, manual grades), for an LMS file."""

    default_file = "grades.csv"
    missing_score = Unicode(
        help="what a student without a submission gets (default: the LMS's convention, see grader/lms.py)"
    ).tag(config=True)

    def _selected(self, gradebook: Gradebook) -> tuple[list, list]:
        wanted_a = {str(a) for a in self.assignment}
        wanted_s = {str(s) for s in self.student}
        assignments = sorted((a for a in gradebook.assignments if not wanted_a or a.name in wanted_a),
                             key=lambda a: a.name)
        students = sorted((s for s in gradebook.students if not wanted_s or s.id in wanted_s),
                          key=lambda s: ((s.last_name or "").lower(), (s.first_name or "").lower(), s.id))
        unknown = (wanted_a - {a.name for a in gradebook.assignments}) | (wanted_s - {s.id for s in gradebook.students})
        if unknown:
            self.log.warning("Not in the gradebook, not exported: %s", ", ".join(sorted(unknown)))
        return assignments, students

    def rows(self, gradebook: Gradebook) -> tuple[list, list[_Row]]:
        """(the assignments, one row per student) with each final score as nbgrader's
        CsvExportPlugin computes it: max(0, score - late_submission_penalty); None without a
        submission."""
        assignments, students = self._selected(gradebook)
        rows, pending = [], []
        for s in students:
            scores: dict[str, float | None] = {}
            for a in assignments:
                try:
                    sub = gradebook.find_submission(a.name, s.id)
                except MissingEntry:
                    scores[a.name] = None
                    continue
                scores[a.name] = max(0.0, float(sub.score) - float(sub.late_submission_penalty or 0))
                if sub.needs_manual_grade:
                    pending.append(f"{s.id}/{a.name}")
            rows.append(_Row(s.id, s.first_name or "", s.last_name or "", s.email or "", s.lms_user_id or "", scores))
        if pending:
            self.log.warning("%d submission(s) still need grading by hand (their score may change): %s",
                             len(pending), ", ".join(pending[:20]) + (" ..." if len(pending) > 20 else ""))
        return assignments, rows

    def _cell(self, score: float | None) -> str:
        return self.missing_score if score is None else _number(score)

    def table(self, gradebook: Gradebook) -> list[list[str]]:
        """The file's rows, header first."""
        raise NotImplementedError

    def export(self, gradebook: Gradebook) -> None:
        dest = self.to or self.default_file
        self.log.info("Exporting grades to %s (%s)", dest, type(self).__name__)
        table = self.table(gradebook)
        with open(dest, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(table)


class CanvasExportPlugin(_LmsExportPlugin):
    """A Canvas gradebook import file (Grades > Import): see grader/lms.py."""

    default_file = "canvas-grades.csv"
    missing_score = Unicode("", help="what a student without a submission gets (Canvas: blank)").tag(config=True)
    id_column = Enum(["SIS Login ID", "SIS User ID"], default_value="SIS Login ID",
                     help="the Canvas column that holds the nbgrader student id").tag(config=True)
    section = Unicode("", help="the Section column's value (Canvas does not match students by it)").tag(config=True)
    assignment_ids = Dict(
        help="nbgrader assignment name -> Canvas assignment id; a column is then headed 'name (id)', which "
             "Canvas matches by id (else by title, or it creates a new assignment)").tag(config=True)

    HEADER = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]

    def table(self, gradebook: Gradebook) -> list[list[str]]:
        assignments, rows = self.rows(gradebook)
        header = self.HEADER + [f"{a.name} ({self.assignment_ids[a.name]})" if a.name in self.assignment_ids
                                else a.name for a in assignments]
        points = ["Points Possible", "", "", "", ""] + [_number(a.max_score) for a in assignments]
        table = [header, points]
        for r in rows:
            name = f"{r.last_name}, {r.first_name}" if r.last_name and r.first_name else (r.last_name or r.first_name or r.id)
            sis = [r.id, ""] if self.id_column == "SIS User ID" else ["", r.id]
            table.append([name, r.lms_user_id, *sis, self.section]
                         + [self._cell(r.scores[a.name]) for a in assignments])
        return table


class MoodleExportPlugin(_LmsExportPlugin):
    """A Moodle CSV grade import file (Grade administration > Import > CSV file): see grader/lms.py."""

    default_file = "moodle-grades.csv"
    missing_score = Unicode("0", help="what a student without a submission gets (Moodle: 0)").tag(config=True)
    id_column = Enum(["Username", "ID number"], default_value="Username",
                     help="the column that holds the nbgrader student id (map it to username or ID number)"
                     ).tag(config=True)

    def table(self, gradebook: Gradebook) -> list[list[str]]:
        assignments, rows = self.rows(gradebook)
        table = [["First name", "Last name", self.id_column, "Email address"] + [a.name for a in assignments]]
        for r in rows:
            table.append([r.first_name, r.last_name, r.id, r.email] + [self._cell(r.scores[a.name]) for a in assignments])
        return table
