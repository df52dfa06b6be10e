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


# expect_equal: exact answers (ints, shapes, strings).
from convlab.checks import CONVOLUTIONS, POOLING, expect_equal  # noqa: E402


def test_equal_values_pass():
    expect_equal(4, 4, what="size(8)")
    expect_equal((2, 3), (2, 3), what="the shape")
    expect_equal(torch.Size([2, 3]), (2, 3), what="the shape")


def test_a_mistake_is_named_only_when_the_answer_reproduces_it():
    mistakes = {"forgot the + 1": 3, "rounded up": 5}
    with pytest.raises(AssertionError) as info:
        expect_equal(3, 4, what="size(8)", likely_mistakes=mistakes, rule="Use the rule.")
    assert str(info.value) == "size(8) is 3, but it should be 4: it matches what you get if you forgot the + 1."
    with pytest.raises(AssertionError) as info:
        expect_equal(7, 4, what="size(8)", likely_mistakes=mistakes, rule="Use the rule.")
    assert str(info.value) == "size(8) is 7, but it should be 4. Use the rule."   # no guess


def test_a_mistake_that_gives_the_right_value_is_never_named():
    with pytest.raises(AssertionError) as info:
        expect_equal(5, 4, what="f()", likely_mistakes={"did A": 4, "did B": 6})
    assert "did" not in str(info.value)
    expect_equal(4, 4, what="f()", likely_mistakes={"did A": 4})


@pytest.mark.parametrize("actual, fragment", [
    (4.0, "is 4.0, a float: the value is right, but it should be the int 4"),
    (4.5, "is 4.5, a float, but it should be the int 4."),
    (None, "is None (did you forget to `return` it?), but it should be the int 4."),
    (True, "is True, a bool, but it should be the int 4."),
    ("4", "is '4', a str, but it should be the int 4."),
    (torch.tensor(4), "is a torch.Tensor (tensor(4)), but it should be the int 4."),
])
def test_an_int_answer_must_be_an_int(actual, fragment):
    with pytest.raises(AssertionError) as info:
        expect_equal(actual, 4, what="size(8)", likely_mistakes={"used /": 4.0})
    assert fragment in str(info.value)
    assert "used /" not in str(info.value)


def test_a_float_that_equals_a_mistake_is_still_a_type_error_first():
    with pytest.raises(AssertionError, match="a float, but it should be the int 4"):
        expect_equal(3.0, 4, what="size(8)", likely_mistakes={"forgot the + 1": 3})


def test_only_plain_values_are_compared():
    class Liar:
        def __eq__(self, other):
            return True
    with pytest.raises(AssertionError):
        expect_equal(Liar(), "yes", what="f()")
    with pytest.raises(AssertionError):
        expect_equal([1, Liar()], [1, 2], what="f()")
    with pytest.raises(AssertionError, match=r"is \(3, 2\), but it should be \(2, 3\)\.$"):
        expect_equal((3, 2), (2, 3), what="the shape", likely_mistakes={"kept a column": (2,)})


def test_function_sets_name_what_the_lessons_forbid():
    x = torch.ones(1, 1, 4, 4)
    with forbid_torch_functions(CONVOLUTIONS, "by hand"):
        with pytest.raises(AssertionError, match="conv_transpose2d"):
            torch.nn.functional.conv_transpose2d(x, torch.ones(1, 1, 2, 2))
    with forbid_torch_functions(POOLING, "by hand"):
        for call in (lambda: torch.nn.MaxPool2d(2)(x), lambda: torch.nn.AvgPool2d(2)(x),
                     lambda: torch.nn.functional.max_pool2d(x, 2, return_indices=True),
                     lambda: torch.nn.AdaptiveAvgPool2d(1)(x)):
            with pytest.raises(AssertionError, match="by hand"):
                call()
        assert x.amax().item() == 1.0   # a max by hand is fine


def test_every_mistake_that_gives_the_answer_is_named():
    with pytest.raises(AssertionError) as info:
        expect_equal(3, 2, what="f()", likely_mistakes={"did A": 3, "did B": 4, "did C": 3})
    assert str(info.value) == "f() is 3, but it should be 2: it matches what you get if you did A, or if you did C."
    with pytest.raises(AssertionError) as info:
        expect_close(torch.tensor([3.0]), torch.tensor([1.0]),
                     likely_mistakes={"did A": torch.tensor([3.0]), "did B": torch.tensor([3.0])})
    assert str(info.value).endswith("if you did A, or if you did B.")


# Issue 24: messages that never guess.
def test_a_mistake_whose_result_is_all_zeros_is_never_named():
    """An all-zero answer is told so, not that it "kept only the last window" (whose result here is zero)."""
    with pytest.raises(AssertionError) as info:
        expect_close(torch.zeros(2, 2), torch.ones(2, 2), what="dK",
                     likely_mistakes={"kept only the last window": torch.zeros(2, 2)})
    assert str(info.value) == "dK is wrong: your result is all zeros (at index (0, 0) it should be 1)."


def test_a_mistake_whose_result_is_an_input_unchanged_is_never_named():
    X = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(AssertionError) as info:
        expect_close(X.clone(), X * 2, what="f(X)", likely_mistakes={"used a 1×1 window": X.clone()}, inputs={"X": X})
    assert str(info.value).startswith("f(X) is wrong: your result is X unchanged (at index")
    with pytest.raises(AssertionError, match="matches what you get if you doubled it twice"):   # others still named
        expect_close(X * 4, X * 2, likely_mistakes={"doubled it twice": X * 4}, inputs={"X": X})


def test_a_sweep_names_only_the_mistake_that_every_wrong_input_reproduces():
    """Lesson 5: an answer that ignores dilation equals "the stride default" mistake at one input of the
    sweep; it is named for what it does at every wrong input."""
    from convlab.checks import expect_equal_each
    def cases(answer):
        out = []
        for n, d in [(6, 1), (6, 2), (9, 2), (7, 3)]:
            right = (n - d * 2 - 1) // 2 + 1
            out.append((f"size({n}, d={d})", answer(n, d), right,
                        {"ignored dilation": (n - 3) // 2 + 1, "coincides at (6, 2)": 2 if (n, d) == (6, 2) else -1}))
        return out
    with pytest.raises(AssertionError) as info:
        expect_equal_each(cases(lambda n, d: (n - 3) // 2 + 1))
    assert str(info.value) == ("size(6, d=2) is 2, but it should be 1: it matches what you get if you ignored "
                               "dilation (3 of 4 inputs are wrong).")
    with pytest.raises(AssertionError) as info:     # right where d = 1, and 2 at (6, 2), 2 elsewhere: no single mistake
        expect_equal_each(cases(lambda n, d: (n - d * 2 - 1) // 2 + 1 if d == 1 else 2), rule="The rule.")
    assert str(info.value) == "size(6, d=2) is 2, but it should be 1 (3 of 4 inputs are wrong). The rule."
    expect_equal_each(cases(lambda n, d: (n - d * 2 - 1) // 2 + 1))
    with pytest.raises(AssertionError, match="a float"):
        expect_equal_each([("size(4)", 2.0, 2, {})])


def test_by_hand_checks_every_call_and_keeps_sweeps():
    from convlab.checks import by_hand, call_each
    conv = lambda x: torch.nn.functional.conv2d(x, torch.ones(1, 1, 1, 1))
    wrapped = by_hand(conv, CONVOLUTIONS, "do it by hand")
    for _ in range(2):
        with pytest.raises(AssertionError, match="do it by hand"):
            wrapped(torch.ones(1, 1, 2, 2))
    assert torch.equal(torch.nn.functional.conv2d(torch.ones(1, 1, 1, 1), torch.ones(1, 1, 1, 1)), torch.ones(1, 1, 1, 1))
    honest = by_hand(lambda n, k=1: n - k + 1, CONVOLUTIONS, "by hand")
    assert list(call_each(honest, [((5,), {"k": 2}), ((3,), {})])) == [4, 3]
    results = call_each(by_hand(lambda n: torch.nn.functional.conv1d(torch.ones(1, 1, n), torch.ones(1, 1, 1)).shape[-1]
                                if n > 2 else n, CONVOLUTIONS, "by hand"), [((1,), {}), ((5,), {})])
    assert next(results) == 1
    with pytest.raises(AssertionError, match="by hand"):
        next(results)


def test_layers_forbid_building_and_running_layers():
    from convlab.checks import LAYERS
    for make in (lambda: torch.nn.Conv2d(1, 1, 3), lambda: torch.nn.Linear(2, 2),
                 lambda: torch.nn.MaxPool2d(2)(torch.ones(1, 1, 2, 2)), lambda: torch.nn.functional.linear(torch.ones(2), torch.ones(1, 2))):
        with pytest.raises(AssertionError, match="without layers"), forbid_torch_functions(LAYERS, "without layers"):
            make()


# The routes the sets name since issue 23: a test's own run (JupyterLab) catches what the grader does.
from convlab.checks import AUTOGRAD, forbidden_now  # noqa: E402


@pytest.mark.parametrize("route, name", [
    (lambda x, w: torch.ops.aten.convolution_backward(
        torch.ones(1, 1, 3, 3), x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [True, True, False]),
     "convolution_backward"),
    (lambda x, w: torch.nn.grad.conv2d_weight(x, w.shape, torch.ones(1, 1, 3, 3)), "convolution_backward"),
    (lambda x, w: torch.nn.grad.conv2d_input(x.shape, w, torch.ones(1, 1, 3, 3)), "convolution_backward"),
    (lambda x, w: torch.nn.functional.conv_transpose2d(x, w), "conv_transpose2d"),
    (lambda x, w: torch.nn.ConvTranspose2d(1, 1, 2)(x), "conv_transpose2d"),
    (lambda x, w: torch.nn.LazyConvTranspose2d(1, 2)(x), "conv_transpose2d"),
    (lambda x, w: torch.ops.aten.convolution(x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1), "convolution"),
])
def test_the_convolutions_include_their_backward_and_transpose(route, name):
    x, w = torch.ones(1, 1, 4, 4), torch.ones(1, 1, 2, 2)
    with forbid_torch_functions(CONVOLUTIONS, "by hand"):
        with pytest.raises(AssertionError, match=f"it called torch.{name}"):
            route(x, w)


def test_forbidding_autograd_forbids_forward_mode_too():
    """A block that forbids "backward" or "grad" (lesson 3's corr2d_backward) forbids every
    route to a gradient: forward-mode AD (dual numbers, torch.func.jvp, jacfwd) too."""
    import torch.autograd.forward_ad as fwAD
    x = torch.ones(3)

    def dual():
        with fwAD.dual_level():
            return fwAD.unpack_dual(fwAD.make_dual(x, x) * 2)
    for route in (dual, lambda: torch.func.jvp(lambda a: a * a, (x,), (x,)),
                  lambda: torch.func.jacfwd(lambda a: a * a)(x)):
        with forbid_torch_functions(CONVOLUTIONS | {"backward", "grad"}, "by hand"):
            with pytest.raises(AssertionError, match=r"by hand \(it called torch._make_dual\)"):
                route()
    with forbid_torch_functions({"grad"}, "no autograd"):
        assert forbidden_now()[0][0] == AUTOGRAD
    with forbid_torch_functions(CONVOLUTIONS, "by hand"):
        assert forbidden_now()[0][0] == CONVOLUTIONS           # nothing implied without autograd
        torch.func.jvp(lambda a: a * a, (x,), (x,))
