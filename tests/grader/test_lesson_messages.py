"""Issue 24: points only for the work asked, and messages that never guess. Each answer of
lesson_answers.py runs against the test cells of its exercise in-process (as in JupyterLab)."""
from __future__ import annotations

import pytest

from .lesson_answers import FORBIDDEN, WRONG, run_test_cell


@pytest.mark.parametrize("name", FORBIDDEN)
def test_forbidden_work_fails_every_test_of_its_exercise(name):
    """An answer that copies a visible test helper or calls PyTorch's layers, convolution, pooling or
    autograd where the exercise forbids it fails every test of that exercise, saying why."""
    assignment, answer_id, source, tests, fragment = FORBIDDEN[name]
    for test_id in tests:
        message = run_test_cell(assignment, {answer_id: source}, test_id)
        assert message is not None, f"{name}: {test_id} passed"
        assert fragment in message, f"{name}: {test_id}: {message}"


@pytest.mark.parametrize("assignment", sorted({a for a, *_ in FORBIDDEN.values()}))
def test_the_solutions_pass_those_tests(assignment):
    """The same cells pass with the solution (the by-hand checks do not fail honest answers)."""
    for a, _, _, tests, _ in FORBIDDEN.values():
        if a == assignment:
            for test_id in tests:
                assert run_test_cell(assignment, {}, test_id) is None, test_id


@pytest.mark.parametrize("name", WRONG)
def test_a_wrong_answer_is_told_what_it_did_and_nothing_it_did_not(name):
    assignment, answer_id, source, test_id, must, must_not = WRONG[name]
    message = run_test_cell(assignment, {answer_id: source}, test_id)
    assert message is not None, f"{name}: {test_id} passed"
    assert must in message, message
    for wrong in must_not:
        assert wrong not in message, message
