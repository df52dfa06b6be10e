"""Student-facing checks: comparisons whose failure messages say what the mistake probably is.

Test cells compute the right answer (usually with PyTorch itself) and, where it helps, the
answers that typical mistakes produce. `expect_close` then tells the student which one they got.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["expect_close", "forbid_torch_functions", "forbidden_now"]

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
    atol: float = 1e-4,
    rtol: float = 1e-4,
) -> None:
    """Raise an AssertionError explaining how `actual` differs from `expected`; pass silently if close.

    `likely_mistakes` maps a description ("flipped the kernel") to the tensor that mistake would
    produce; when `actual` matches one of them, the message names it.

    >>> expect_close(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0]))
    >>> expect_close(torch.tensor([2.0, 1.0]), torch.tensor([1.0, 2.0]), what="f(x)",
    ...              likely_mistakes={"reversed the order": torch.tensor([2.0, 1.0])})
    Traceback (most recent call last):
    ...
    AssertionError: f(x) is wrong: it matches what you get if you reversed the order.
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
            f"{what} has dtype {actual.dtype}, but it should be a floating-point tensor even for "
            "integer inputs. Create the output with torch.zeros(..., dtype=torch.float32) or "
            "convert with .float()."
        )
    mistake = _matching_mistake(actual, likely_mistakes or {}, atol, rtol)
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
    raise AssertionError(
        f"{what} is wrong: at index {index} it is {a[index].item():.4g} but should be "
        f"{e[index].item():.4g} ({int((diff > atol + rtol * e.abs()).sum())} of {e.numel()} "
        "entries differ)."
    )


def _matching_mistake(
    actual: torch.Tensor, likely_mistakes: Mapping[str, torch.Tensor], atol: float, rtol: float
) -> str | None:
    """The description of the first likely mistake whose result `actual` reproduces, if any."""
    a = actual.detach().to(_float64)
    for description, wrong in likely_mistakes.items():
        if tuple(wrong.shape) == tuple(a.shape) and _allclose(
            a, wrong.detach().to(_float64), atol=atol, rtol=rtol
        ):
            return description
    return None


@contextmanager
def forbid_torch_functions(names: set[str] | frozenset[str], message: str) -> Iterator[None]:
    """Within the block, calling a PyTorch function named in `names` raises AssertionError(message).

    It sees every route to the function (`F.conv2d`, `torch.conv2d`, `nn.Conv2d`, an alias
    imported under another name), so a test can check that an exercise is done by hand.

    >>> with forbid_torch_functions({"conv2d"}, "compute it by hand"):
    ...     torch.nn.functional.conv2d(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 1, 1))
    Traceback (most recent call last):
    ...
    AssertionError: compute it by hand (it called torch.conv2d)
    """
    rule = (frozenset(names), message)
    _ACTIVE.append(rule)
    try:
        with _Forbid(*rule):
            yield
    finally:
        _ACTIVE.remove(rule)


_ACTIVE: list[tuple[frozenset[str], str]] = []


def forbidden_now() -> list[tuple[frozenset[str], str]]:
    """The (names, message) of every `forbid_torch_functions` block being executed, outermost
    first. The grader's examiner (grader/examiner.py) sends them with each call of the student's
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
