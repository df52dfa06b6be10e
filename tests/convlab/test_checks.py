import pytest
import torch

from convlab.checks import expect_close, forbid_torch_functions


def test_close_tensors_pass():
    expect_close(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 2.0 + 1e-7]]))


def test_integer_expected_accepts_float_actual():
    expect_close(torch.tensor([3.0]), torch.tensor([3]))


@pytest.mark.parametrize("actual, fragment", [
    (None, "did you forget to `return` it?"),
    ([[1.0, 2.0]], "should be a torch.Tensor, but it is a list"),
    (torch.tensor([[1, 2]]), "has dtype torch.int64"),
    (torch.tensor([1.0, 2.0]), "has shape (2,), but it should have shape (1, 2). shape help"),
    (torch.tensor([[1.0, 5.0]]), "at index (0, 1) it is 5 but should be 2 (1 of 2 entries differ)"),
])
def test_messages_say_what_is_wrong(actual, fragment):
    with pytest.raises(AssertionError) as info:
        expect_close(actual, torch.tensor([[1.0, 2.0]]), what="f(x)", shape_hint="shape help")
    assert fragment in str(info.value)


def test_likely_mistake_is_named_for_values_and_shapes():
    expected = torch.tensor([[1.0, 2.0]])
    mistakes = {"swapped them": torch.tensor([[2.0, 1.0]]), "kept a column": torch.tensor([1.0])}
    with pytest.raises(AssertionError, match="matches what you get if you swapped them"):
        expect_close(torch.tensor([[2.0, 1.0]]), expected, likely_mistakes=mistakes)
    with pytest.raises(AssertionError, match="matches what you get if you kept a column"):
        expect_close(torch.tensor([1.0]), expected, likely_mistakes=mistakes)


def test_a_mistake_that_gives_the_right_answer_is_not_blamed():
    expected = torch.tensor([1.0, 1.0])
    expect_close(expected.clone(), expected, likely_mistakes={"reversed it": expected.flip(0)})


def test_nan_is_reported_not_passed():
    with pytest.raises(AssertionError, match="index \\(1,\\)"):
        expect_close(torch.tensor([1.0, float("nan")]), torch.tensor([1.0, 2.0]))


def test_patching_torch_allclose_does_not_fool_it(monkeypatch):
    monkeypatch.setattr(torch, "allclose", lambda *a, **k: True)
    with pytest.raises(AssertionError):
        expect_close(torch.tensor([0.0]), torch.tensor([1.0]))


def test_expected_must_be_a_tensor():
    with pytest.raises(TypeError, match="expected must be a torch.Tensor"):
        expect_close(torch.tensor([1.0]), [1.0])


def test_forbid_catches_every_route_to_a_function():
    x, w = torch.ones(1, 1, 3, 3), torch.ones(1, 1, 2, 2)
    conv2d = torch.nn.functional.conv2d   # an alias imported under another name
    with forbid_torch_functions({"conv2d"}, "by hand please"):
        for call in (lambda: conv2d(x, w), lambda: torch.conv2d(x, w),
                     lambda: torch.nn.Conv2d(1, 1, 2)(x)):
            with pytest.raises(AssertionError, match=r"by hand please \(it called torch.conv2d\)"):
                call()
        assert (x * 2).sum().item() == 18.0   # other functions still work


def test_forbid_ends_with_the_block():
    with forbid_torch_functions({"conv2d"}, "no"):
        pass
    assert torch.conv2d(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2)).item() == 4.0
