"""grader/inside/wire.py: the strict data format between the student kernel and the examiner."""
from __future__ import annotations

import json

import pytest
import torch

from grader.inside import wire


@pytest.mark.parametrize("value", [
    None, True, False, 0, -7, 10**40, 0.5, float("inf"), -0.0, "", "héllo", (1, "a"), [1, [2, [3]]],
    {"a": 1, 2: (None, 1.5)}, (torch.arange(6.0).reshape(2, 3), [torch.tensor(3, dtype=torch.int64)]),
    torch.zeros(0, 3), torch.tensor([True, False]), torch.randn(2, 2, dtype=torch.float64),
])
def test_round_trip(value):
    back = wire.decode(json.loads(wire.dumps(wire.encode(value))))
    if isinstance(value, torch.Tensor):
        assert type(back) is torch.Tensor and back.dtype == value.dtype and torch.equal(back, value)
    else:
        assert repr(back) == repr(value) or _same(back, value)


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return type(a) is torch.Tensor and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b and type(a) is type(b)


def test_only_exact_types_are_data():
    class Liar(torch.Tensor):
        pass

    class Quiet(int):
        pass

    for value in (torch.zeros(2).as_subclass(Liar), Quiet(3), object(), lambda: 1):
        with pytest.raises(wire.WireError):
            wire.encode(value)
    assert wire.encode(Quiet(3), ref=lambda o: {"t": "ref", "id": 1, "type": type(o).__name__})["t"] == "ref"


def test_requires_grad_travels():
    t = torch.ones(2, requires_grad=True)
    back = wire.decode(wire.encode(t))
    assert back.requires_grad and back.is_leaf


@pytest.mark.parametrize("data, message", [
    ({"t": "tensor", "dtype": "float32", "shape": [2, 2], "data": "AAAA", "grad": False}, "bytes instead of"),
    ({"t": "tensor", "dtype": "object", "shape": [1], "data": "", "grad": False}, "malformed tensor"),
    ({"t": "tensor", "dtype": "float32", "shape": [-1], "data": "", "grad": False}, "invalid shape"),
    ({"t": "tensor", "dtype": "float32", "shape": [2**20, 2], "data": "", "grad": False}, "MB of tensor data"),
    ({"t": "int", "v": "1e5"}, "invalid value"),
    ({"t": "float", "v": "__import__('os')"}, "invalid value"),
    ({"t": "pickle", "v": "gASV"}, "invalid value"),
    ({"t": "ref", "id": 1}, "invalid value"),           # no refs where none are expected
    ({"t": "dict", "v": [[{"t": "list", "v": []}, {"t": "none"}]]}, "dict key"),
    ("just a string", "type tag"),
])
def test_decode_refuses(data, message):
    with pytest.raises(wire.WireError, match=message):
        wire.decode(data)


def test_nesting_and_size_limits():
    deep: list = []
    for _ in range(wire.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(wire.WireError, match="nested"):
        wire.encode(deep)
    data = {"t": "none"}
    for _ in range(wire.MAX_DEPTH + 5):
        data = {"t": "list", "v": [data]}
    with pytest.raises(wire.WireError, match="nested"):
        wire.decode(data)
    with pytest.raises(wire.WireError, match="values"):
        wire.decode({"t": "list", "v": [{"t": "none"}] * (wire.MAX_NODES + 1)})
    with pytest.raises(wire.WireError, match="MB"):
        wire.encode(torch.zeros(wire.MAX_BYTES // 4 + 1))
    with pytest.raises(wire.WireError, match="JSON"):
        wire.loads("[" * 100_000 + "]" * 100_000)


def test_bool_tensors_are_normalised():
    raw = {"t": "tensor", "dtype": "bool", "shape": [2], "data": "AgA=", "grad": False}    # bytes 2, 0
    assert wire.decode(raw).tolist() == [True, False]
