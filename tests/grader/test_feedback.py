"""grader/feedback.py: per-student HTML never shows hidden tests."""
from __future__ import annotations

import json

import nbformat

from grader import feedback
from grader.course import source_notebook, student_notebook

A = "01_cross_correlation"


def _hidden_lines() -> list[str]:
    lines = []
    for cell in nbformat.read(source_notebook(A), as_version=4).cells:
        src = cell.source
        while "### BEGIN HIDDEN TESTS" in src:
            start = src.index("### BEGIN HIDDEN TESTS")
            end = src.index("### END HIDDEN TESTS", start)
            lines += [l.strip() for l in src[start:end].splitlines()[1:] if len(l.strip()) > 12]
            src = src[end + 1:]
    return lines


def test_visible_source_strips_hidden_tests():
    src = "a = 1\n    ### BEGIN HIDDEN TESTS\nsecret()\n    ### END HIDDEN TESTS\nb = 2\n"
    assert feedback.visible_source(src) == "a = 1\nb = 2\n"


def test_feedback_shows_results_but_never_hidden_tests(tmp_path):
    released = nbformat.writes(nbformat.read(student_notebook(A), as_version=4))
    hidden = [l for l in _hidden_lines() if l not in released]     # lines only the hidden part has
    assert hidden, "lesson 1 has hidden tests"
    cells = [{"grade_id": "corr2d_worked_example", "score": 0, "max_score": 1, "passed": False,
              "message": "AssertionError: corr2d(X, K) is wrong <b>"},
             {"grade_id": "corr2d_matches_pytorch", "score": 2, "max_score": 2, "passed": True, "message": ""}]
    result = {"student_id": "ann", "assignment": A, "key": "k", "status": "tampered", "score": 2,
              "max_score": 3, "messages": ["edited a test"], "cells": cells, "timings": {}}
    (tmp_path / "results" / "ann" / A).mkdir(parents=True)
    (tmp_path / "results" / "ann" / A / "k.json").write_text(json.dumps(result))
    (tmp_path / "last-run.json").write_text(json.dumps(
        [{"student_id": "ann", "assignment": A, "key": "k", "file": f"ann/{A}/k.json"}]))
    [page], skipped = feedback.write_feedback(tmp_path)
    assert skipped == []
    html = page.read_text()
    assert "failed" in html and "passed" in html and "&lt;b&gt;" in html and "2 / 3" in html
    assert "Check that corr2d reproduces the worked example" in html      # visible test source
    leaked = [l for l in hidden if l in html]
    assert not leaked, f"hidden test lines in the feedback: {leaked[:3]}"


def test_feedback_escapes_everything_a_student_controls(tmp_path):
    """Check that the page shows a student's id, the messages (e.g. a refused submission names the
    student's own file) and failure messages as text: no tag of theirs reaches the page."""
    attacks = ['<script>document.title=1</script>', '<img src=x onerror="document.title=2">',
               "<svg onload=document.title=3>"]
    student = "<svg onload=alert(4)>"
    cells = [{"grade_id": "corr2d_worked_example", "score": 0, "max_score": 1, "passed": False,
              "message": f"AssertionError: {attacks[1]}"}]
    result = {"student_id": student, "assignment": A, "key": "k", "status": "invalid", "score": 0,
              "max_score": 1, "messages": [f"{attacks[0]}.txt is a symbolic link", attacks[2]], "cells": cells,
              "timings": {}}
    (tmp_path / "results" / student / A).mkdir(parents=True)
    (tmp_path / "results" / student / A / "k.json").write_text(json.dumps(result))
    (tmp_path / "last-run.json").write_text(json.dumps(
        [{"student_id": student, "assignment": A, "key": "k", "file": f"{student}/{A}/k.json"}]))
    [page], _ = feedback.write_feedback(tmp_path)
    html = page.read_text()
    for tag in ("<script>", "<img", "<svg"):
        assert tag not in html, tag
    assert "&lt;script&gt;document.title=1&lt;/script&gt;.txt is a symbolic link" in html
    assert "&lt;svg onload=alert(4)&gt;" in html and "onerror=&quot;document.title=2&quot;" in html


def test_the_page_shows_the_gradebooks_final_word(course_config, tmp_path):
    """What instructors add in formgrader reaches the student: a manual grade replaces the
    autograder's (and says so), their comment is shown, and so is nbgrader's late penalty."""
    import shutil
    from nbgrader.api import Gradebook
    from grader.feedback import from_gradebook, render
    db = tmp_path / "gradebook.db"
    shutil.copyfile(course_config / "gradebook.db", db)
    a, student = "01_cross_correlation", "reviewed<b>"
    with Gradebook(f"sqlite:///{db}") as gb:
        gb.update_or_create_student(student)
        sub = gb.add_submission(a, student)
        nb = gb.find_submission_notebook(a, a, student)
        grade = next(g for g in nb.grades if g.name == "corr2d_worked_example")
        grade.auto_score, grade.manual_score = 0.0, 1.0
        comment = next(c for c in nb.comments)
        comment.manual_comment = "Nice loop <script>x</script>"
        nb.late_submission_penalty = 2.0
        gb.db.commit()
        total, most = float(sub.score), float(sub.max_score)
    result = {"student_id": student, "assignment": a, "status": "graded", "score": 0.0, "max_score": most,
              "messages": [], "cells": [{"grade_id": "corr2d_worked_example", "score": 0.0, "max_score": 1.0,
                                         "passed": False, "message": "AssertionError: no", "public_message": "no"}]}
    graded = from_gradebook(f"sqlite:///{db}", student, a)
    page = render(result, {}, graded)
    assert graded.cells["corr2d_worked_example"] == (1.0, True)
    assert "1 / 1 <small>(set by your instructor)</small>" in page
    assert "Nice loop &lt;script&gt;x&lt;/script&gt;" in page and "<script>" not in page
    assert f"{total - 2:g} / {most:g} ({total:g}, less 2 for handing in late)" in page
    assert from_gradebook(f"sqlite:///{db}", "nobody-here", a) is None
    assert "set by your instructor" not in render(result, {})        # without the gradebook: as before
