"""convlab.hint: tiered hints for every graded exercise, none of which holds the answer."""
import re

import nbformat
import pytest

import convlab
from convlab.hints import HINTS, hint
from grader.course import assignments, source_notebook


def _exercises():
    """The functions and classes the solution cells of every lesson define."""
    names = set()
    for a in assignments():
        for cell in nbformat.read(source_notebook(a), as_version=4).cells:
            if cell.metadata.get("nbgrader", {}).get("solution"):
                names |= set(re.findall(r"^(?:def|class) (\w+)", cell.source, re.M))
    return names


def test_every_graded_exercise_has_two_or_three_hints():
    names = _exercises()
    assert names and names <= set(HINTS), sorted(names - set(HINTS))
    assert all(2 <= len(HINTS[n]) <= 3 for n in names)


@pytest.mark.parametrize("assignment", assignments())
def test_no_hint_holds_a_line_of_a_solution(assignment):
    """No hint quotes a statement of any solution (longer than a few characters)."""
    lines = set()
    for cell in nbformat.read(source_notebook(assignment), as_version=4).cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            body = cell.source.split("### BEGIN SOLUTION")[1:]
            for part in body:
                lines |= {line.strip() for line in part.split("### END SOLUTION")[0].splitlines() if len(line.strip()) > 12}
    for name, hints in HINTS.items():
        for text in hints:
            assert not any(line in text for line in lines), (name, text)


def test_hints_come_one_after_another(capsys):
    hint("corr2d", 1)
    hint("corr2d")
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Hint 1 of 3 for corr2d") and out[1].startswith("Hint 2 of 3 for corr2d")
    hint("nothing")
    assert "Exercises with hints: corr2d" in capsys.readouterr().out
    assert convlab.hint is hint
