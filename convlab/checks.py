"""Student-facing checks: comparisons whose failure messages say what is wrong, and which mistake
the answer reproduces when it reproduces one.

Test cells compute the right answer (usually with PyTorch itself) and, where it helps, the
answers that typical mistakes produce on the same input. `expect_close` (tensors) and
`expect_equal` (numbers, shapes, other plain values) compare, and name a mistake only when the
answer is exactly what that mistake gives; otherwise the message says what is wrong (the value,
the input, the rule) without a guess. `forbid_torch_functions` with `CONVOLUTIONS` or `POOLING`
checks that a "by hand" exercise is done by hand.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["AUTOGRAD", "CONVOLUTIONS", "LAYERS", "POOLING", "by_hand", "call_each", "expect_close", "expect_equal",
           "expect_equal_each", "forbid_torch_functions", "forbidden_now"]

#: PyTorch's convolution functions (every route to them: F.conv2d, torch.conv2d, nn.Conv2d, the raw
#: operators under torch.ops.aten, their backward and the backends they dispatch to, torch.nn.grad's
#: conv2d_weight/conv2d_input). An exercise done "by hand" may not call them.
CONVOLUTIONS = frozenset({
    "conv1d", "conv2d", "conv3d", "convolution", "_convolution", "_convolution_mode",
    "convolution_overrideable", "convolution_backward", "convolution_backward_overrideable", "conv_tbc",
    "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "conv1d_input", "conv1d_weight", "conv2d_input", "conv2d_weight", "conv3d_input", "conv3d_weight",
    "cudnn_convolution", "cudnn_convolution_transpose", "cudnn_convolution_relu", "cudnn_convolution_add_relu",
    "miopen_convolution", "miopen_convolution_transpose", "miopen_depthwise_convolution",
    "miopen_convolution_relu", "miopen_convolution_add_relu", "mkldnn_convolution", "_mps_convolution",
    "_mps_convolution_transpose", "_nnpack_spatial_convolution", "_slow_conv2d_forward", "_slow_conv2d_backward",
    "slow_conv3d", "slow_conv_dilated2d", "slow_conv_dilated3d", "slow_conv_transpose2d",
    "slow_conv_transpose3d", "thnn_conv2d", "_conv_depthwise2d", "conv_depthwise3d",
})
#: PyTorch's pooling functions (F.max_pool2d, nn.MaxPool2d, F.avg_pool2d, their raw operators, ...).
POOLING = frozenset({
    "max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices", "max_pool2d_with_indices",
    "max_pool3d_with_indices", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_max_pool1d",
    "adaptive_max_pool2d", "adaptive_max_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
    "adaptive_avg_pool3d", "_adaptive_avg_pool2d", "_adaptive_avg_pool3d", "lp_pool1d", "lp_pool2d", "lp_pool3d",
    "fractional_max_pool2d", "fractional_max_pool3d", "mkldnn_max_pool2d", "mkldnn_max_pool3d",
    "quantized_max_pool1d", "quantized_max_pool2d", "quantized_max_pool3d",
})
#: PyTorch's automatic differentiation, reverse and forward mode: Tensor.backward, torch.autograd.grad,
#: torch.func's transforms, torch.autograd.functional, forward_ad's dual numbers (`_make_dual` is
#: what jvp, jacfwd and linearize call). A block that forbids "backward" or "grad" forbids them all.
AUTOGRAD = frozenset({
    "backward", "grad", "grad_and_value", "vjp", "jvp", "jacrev", "jacfwd", "jacobian", "hessian", "hvp",
    "vhp", "linearize", "make_dual", "unpack_dual", "_make_dual", "_unpack_dual",
})

#: Building or running PyTorch's layers: its convolution and pooling, nn.Linear's (and nn.Bilinear's)
#: forward pass and the initialisation every nn.Conv2d and nn.Linear runs when it is built. An
#: exercise that predicts shapes or sizes "without building or running any layer" may not call them.
LAYERS = CONVOLUTIONS | POOLING | frozenset({"linear", "bilinear", "kaiming_uniform_", "kaiming_normal_"})

# Taken at import time (before any student code runs), so reassigning `torch.allclose` and friends
# in a notebook does not change how answers are judged.
_allclose = torch.allclose
_is_tensor = torch.is_tensor
_float64 = torch.float64


def expect_close(
    actual: object,
    expected: torch.Tensor,
    *,
    what: str = "the result",
    likely_mistakes: Mapping[str, torch.Tensor] | None = None,
    shape_hint: str = "",
    require_float: bool = True,
    inputs: Mapping[str, torch.Tensor] | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-4,
) -> None:
    """Raise an AssertionError explaining how `actual` differs from `expected`; pass silently if close.

    `likely_mistakes` maps a description ("flipped the kernel") to the tensor that mistake would
    produce on this input; the message names a mistake only when `actual` reproduces its result
    (every such mistake, when several give the same result), and otherwise says where and by how
    much `actual` is wrong. A mistake whose result is trivial here (all zeros, or one of `inputs`,
    which maps names to the tensors the answer was given, unchanged) is never named: many other
    answers give that too. The message then says "your result is all zeros" (or "is X unchanged").

    >>> expect_close(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0]))
    >>> expect_close(torch.tensor([2.0, 1.0]), torch.tensor([1.0, 2.0]), what="f(x)",
    ...              likely_mistakes={"reversed the order": torch.tensor([2.0, 1.0])})
    Traceback (most recent call last):
    ...
    AssertionError: f(x) is wrong: it matches what you get if you reversed the order.
    >>> expect_close(torch.zeros(2), torch.tensor([1.0, 2.0]), what="f(x)",
    ...              likely_mistakes={"kept only the last term": torch.zeros(2)})
    Traceback (most recent call last):
    ...
    AssertionError: f(x) is wrong: your result is all zeros (at index (1,) it should be 2).
    """
    if not _is_tensor(expected):
        raise TypeError(f"expected must be a torch.Tensor, got {type(expected).__name__}")
    if not _is_tensor(actual):
        raise AssertionError(
            f"{what} should be a torch.Tensor, but it is a {type(actual).__name__}"
            + (" (did you forget to `return` it?)" if actual is None else "")
            + ". Build the output as a tensor (e.g. with torch.zeros) and return it."
        )
    if require_float and not actual.is_floating_point():
        raise AssertionError(
            f"{what} has dtype {actual.dtype}, but it should be a floating-point tensor (also when "
            "the inputs hold integers). Create it as floats (e.g. torch.zeros(..., "
            "dtype=torch.float32), or 1.0 rather than 1) or convert it with .float()."
        )
    given = {name: t for name, t in (inputs or {}).items() if _is_tensor(t)}
    mistake = _matching_mistake(actual, {m: v for m, v in (likely_mistakes or {}).items()
                                         if not _trivial(v, given, atol, rtol)}, atol, rtol)
    if tuple(actual.shape) != tuple(expected.shape):
        if mistake:
            raise AssertionError(f"{what} is wrong: it matches what you get if you {mistake}.")
        raise AssertionError(
            f"{what} has shape {tuple(actual.shape)}, but it should have shape "
            f"{tuple(expected.shape)}. {shape_hint}".rstrip()
        )
    a = actual.detach().to(_float64)
    e = expected.detach().to(_float64)
    if _allclose(a, e, atol=atol, rtol=rtol, equal_nan=True):
        return
    if mistake:
        raise AssertionError(f"{what} is wrong: it matches what you get if you {mistake}.")
    diff = (a - e).abs().nan_to_num(nan=float("inf"))
    index = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
    if a.numel() and not a.any():
        raise AssertionError(f"{what} is wrong: your result is all zeros (at index {index} it should be "
                             f"{e[index].item():.4g}).")
    unchanged = [name for name, t in given.items() if _same(a, t, atol, rtol)]
    if unchanged:
        raise AssertionError(f"{what} is wrong: your result is {unchanged[0]} unchanged (at index {index} it should "
                             f"be {e[index].item():.4g}).")
    raise AssertionError(
        f"{what} is wrong: at index {index} it is {a[index].item():.4g} but should be "
        f"{e[index].item():.4g} ({int((diff > atol + rtol * e.abs()).sum())} of {e.numel()} "
        "entries differ)."
    )


def expect_equal(
    actual: object,
    expected: object,
    *,
    what: str,
    likely_mistakes: Mapping[str, object] | None = None,
    rule: str = "",
) -> None:
    """Raise an AssertionError saying how `actual` differs from `expected`; pass silently if equal.

    For exact answers: ints (a Python `int` is required when `expected` is one; a bool or a float
    is not accepted), strings, shapes (tuples) and other plain values. `likely_mistakes` maps a
    description ("forgot the + 1") to the value that mistake gives on this input; the message
    names a mistake only when `actual` equals its value (and differs from `expected`); when
    several mistakes give that value, it names each.
    Otherwise it says what `actual` is and what it should be, followed by `rule` (how the right
    value is defined) when given.

    >>> expect_equal(4, 4, what="size(8)")
    >>> expect_equal(3, 4, what="size(8)", likely_mistakes={"forgot the + 1": 3})
    Traceback (most recent call last):
    ...
    AssertionError: size(8) is 3, but it should be 4: it matches what you get if you forgot the + 1.
    >>> expect_equal(5, 4, what="size(8)", likely_mistakes={"forgot the + 1": 3}, rule="Halve n.")
    Traceback (most recent call last):
    ...
    AssertionError: size(8) is 5, but it should be 4. Halve n.
    """
    if type(expected) is int and type(actual) is not int:
        if actual is None:
            problem = "None (did you forget to `return` it?)"
        elif type(actual) is float and actual == expected:
            raise AssertionError(
                f"{what} is {actual!r}, a float: the value is right, but it should be the int "
                f"{expected!r}. Compute with ints (// floors them exactly) rather than / or "
                "math.floor of a float.")
        elif _is_tensor(actual):
            problem = f"a torch.Tensor ({actual!r})"
        else:
            problem = f"{actual!r}, a {type(actual).__name__}"
        raise AssertionError(f"{what} is {problem}, but it should be the int {expected!r}.")
    if _plain_equal(actual, expected):
        return
    mistake = _describe([description for description, wrong in (likely_mistakes or {}).items()
                         if _plain_equal(actual, wrong) and not _plain_equal(wrong, expected)])
    if mistake:
        raise AssertionError(
            f"{what} is {actual!r}, but it should be {expected!r}: it matches what you get if you "
            f"{mistake}.")
    raise AssertionError(f"{what} is {actual!r}, but it should be {expected!r}." + (f" {rule}" if rule else ""))


def expect_equal_each(cases: Iterable[tuple[str, object, object, Mapping[str, object] | None]], *, rule: str = "") -> None:
    """`expect_equal` over a sweep of inputs: `cases` holds `(what, actual, expected, likely_mistakes)`.

    Every case is compared before anything is reported. The message describes the first wrong case
    and says how many are wrong; it names a mistake only when the answer reproduces that mistake's
    value on **every** wrong case (a mistake that merely coincides with the answer on one input,
    where two mistakes give the same value, is not named).

    >>> wrong = lambda n: {"forgot the + 1": n // 2, "halved twice": n // 4}
    >>> expect_equal_each([(f"size({n})", n // 2, n // 2 + 1, wrong(n)) for n in (2, 3, 8)])
    Traceback (most recent call last):
    ...
    AssertionError: size(2) is 1, but it should be 2: it matches what you get if you forgot the + 1 (3 of 3 inputs are wrong).
    >>> expect_equal_each([(f"size({n})", 1, n // 2 + 1, wrong(n)) for n in (2, 3, 8)])
    Traceback (most recent call last):
    ...
    AssertionError: size(2) is 1, but it should be 2 (3 of 3 inputs are wrong).
    """
    cases = list(cases)
    failing = []
    for what, actual, expected, mistakes in cases:
        try:
            expect_equal(actual, expected, what=what)
        except AssertionError as err:
            failing.append((what, actual, expected, mistakes or {}, err))
    if not failing:
        return
    what, actual, expected, _, err = failing[0]
    named = _describe([m for m in failing[0][3]
                       if all(m in ms and _plain_equal(a, ms[m]) and not _plain_equal(ms[m], e)
                              for _, a, e, ms, _ in failing)])
    count = f" ({len(failing)} of {len(cases)} inputs are wrong)"
    if type(expected) is int and type(actual) is not int:
        raise AssertionError(f"{str(err).rstrip('.')}{count}.")
    if named:
        raise AssertionError(f"{what} is {actual!r}, but it should be {expected!r}: it matches what you get if you "
                             f"{named}{count}.")
    raise AssertionError(f"{what} is {actual!r}, but it should be {expected!r}{count}." + (f" {rule}" if rule else ""))


_PLAIN = (int, float, bool, str, type(None))


def _plain_equal(a: object, b: object) -> bool:
    """Equality of plain values (numbers, strings, None, tuples and lists of these) that never lets
    another kind of object (a tensor, a student's class) decide what equal means."""
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_plain_equal(x, y) for x, y in zip(a, b))
    if type(a) not in _PLAIN or type(b) not in _PLAIN or (type(a) is bool) != (type(b) is bool):
        return False
    return a == b


def _same(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float) -> bool:
    return tuple(a.shape) == tuple(b.shape) and _allclose(a.detach().to(_float64), b.detach().to(_float64),
                                                          atol=atol, rtol=rtol)


def _trivial(value: object, given: Mapping[str, torch.Tensor], atol: float, rtol: float) -> bool:
    """Whether a mistake's result is one that many answers give: all zeros, or an input unchanged."""
    if not _is_tensor(value):
        return False
    return (value.numel() > 0 and not value.detach().any()) or any(_same(value, t, atol, rtol) for t in given.values())


def _matching_mistake(
    actual: torch.Tensor, likely_mistakes: Mapping[str, torch.Tensor], atol: float, rtol: float
) -> str | None:
    """The descriptions of the likely mistakes whose result `actual` reproduces, joined; or None."""
    a = actual.detach().to(_float64)
    return _describe([
        description for description, wrong in likely_mistakes.items()
        if tuple(wrong.shape) == tuple(a.shape)
        and _allclose(a, wrong.detach().to(_float64), atol=atol, rtol=rtol)
    ])


def _describe(descriptions: list[str]) -> str | None:
    """'A' for one matching mistake; 'A, or if you B' when several give the same result here."""
    return ", or if you ".join(descriptions) or None


@contextmanager
def forbid_torch_functions(names: set[str] | frozenset[str], message: str) -> Iterator[None]:
    """Within the block, calling a PyTorch function named in `names` raises AssertionError(message).

    It sees every route to the function (`F.conv2d`, `torch.conv2d`, `nn.Conv2d`, an alias
    imported under another name) in this thread, so a test can check that an exercise is done by
    hand. Forbidding "backward" or "grad" forbids all of `AUTOGRAD` (forward mode too). When
    grading, the grader also reads the code of the function called in the block (see the README).

    >>> with forbid_torch_functions({"conv2d"}, "compute it by hand"):
    ...     torch.nn.functional.conv2d(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 1, 1))
    Traceback (most recent call last):
    ...
    AssertionError: compute it by hand (it called torch.conv2d)
    """
    rule = (_with_implied(frozenset(names)), message)
    _ACTIVE.append(rule)
    try:
        with _Forbid(*rule):
            yield
    finally:
        _ACTIVE.remove(rule)


_ACTIVE: list[tuple[frozenset[str], str]] = []


def _with_implied(names: frozenset[str]) -> frozenset[str]:
    """`names`, and every route to autograd when it forbids "backward" or "grad"."""
    return names | AUTOGRAD if names & {"backward", "grad"} else names


def call_each(fn: Callable, calls: Iterable[tuple[tuple, dict]]) -> Iterator:
    """Make the calls `fn(*args, **kwargs)` for each `(args, kwargs)` in `calls`, in order, now;
    return an iterator over their results. If a call raises, the calls after it are not made and
    the iterator raises that exception in its place, after the results before it: a test that
    loops over the results reports what a loop over the calls would, in the same order.

    Tests use it for sweeps of many small calls: the grader sends a sweep of your function's
    calls to your kernel in one message instead of one message per call.

    >>> def halve(n, *, up=False):
    ...     return (n + up) // 2
    >>> list(call_each(halve, [((7,), {}), ((7,), {"up": True})]))
    [3, 4]
    >>> results = call_each(halve, [((8,), {}), (("8",), {})])
    >>> next(results)
    4
    >>> next(results)
    Traceback (most recent call last):
    ...
    TypeError: can only concatenate str (not "bool") to str
    """
    calls = [(tuple(args), dict(kwargs)) for args, kwargs in calls]
    remote = getattr(type(fn), "_convlab_call_each", None)      # the grader's proxy, or by_hand's wrapper
    if remote is not None:
        return remote(fn, calls)
    results, error = [], None
    for args, kwargs in calls:
        try:
            results.append(fn(*args, **kwargs))
        except Exception as err:  # noqa: BLE001 - raised again in its place
            error = err
            break
    return _replay(results, error)


def _replay(results: list, error: BaseException | None) -> Iterator:
    yield from results
    if error is not None:
        raise error


def by_hand(fn: Callable, names: set[str] | frozenset[str], message: str) -> Callable:
    """`fn`, made to run every call inside `forbid_torch_functions(names, message)`.

    Tests of a "by hand" exercise call the student's function through it, so that **every**
    graded call is checked, not one test of the exercise: an answer that calls what the exercise
    forbids fails all of them. Sweeps through `call_each` keep their one message when graded.

    >>> conv = by_hand(torch.nn.functional.conv2d, {"conv2d"}, "compute it by hand")
    >>> conv(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 1, 1))
    Traceback (most recent call last):
    ...
    AssertionError: compute it by hand (it called torch.conv2d)
    """
    return _ByHand(fn, frozenset(names), message)


class _ByHand:
    def __init__(self, fn: Callable, names: frozenset[str], message: str) -> None:
        self._fn, self._names, self._message = fn, names, message
        self.__name__ = getattr(fn, "__name__", "function")

    def __call__(self, *args, **kwargs):
        with forbid_torch_functions(self._names, self._message):
            return self._fn(*args, **kwargs)

    def _convlab_call_each(self, calls):
        """convlab.call_each(this, calls): the calls made now, inside the block, in one sweep."""
        results, error = [], None
        with forbid_torch_functions(self._names, self._message):
            try:
                results.extend(call_each(self._fn, calls))
            except Exception as err:  # noqa: BLE001 - raised again in its place
                error = err
        return _replay(results, error)

    def __repr__(self) -> str:
        return f"<{self.__name__}, by hand>"


def forbidden_now() -> list[tuple[frozenset[str], str]]:
    """The (names, message) of every `forbid_torch_functions` block being executed, outermost
    first. The grader's examiner (grader/inside/examiner.py) sends them with each call of the student's
    code and checks that code's source for those names.

    >>> with forbid_torch_functions({"conv2d"}, "by hand"):
    ...     forbidden_now()
    [(frozenset({'conv2d'}), 'by hand')]
    """
    return list(_ACTIVE)


class _Forbid(TorchFunctionMode):
    def __init__(self, names: frozenset[str], message: str) -> None:
        super().__init__()
        self.names, self.message = names, message

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.names:
            raise AssertionError(f"{self.message} (it called torch.{name})")
        return func(*args, **(kwargs or {}))
