"""The proxy protocol's data format: the only thing that crosses from the student kernel to the
examiner (grader/inside/examiner.py), and the arguments that go the other way.

Self-contained (json, base64, re, torch): its source is sent into both kernels by
grader/grading.py (grader/ is not visible inside the sandboxes) and imported by the grader's
tests. A value is a JSON object:

    None                 {"t": "none"}
    bool, int, float     {"t": "bool", "v": true}  {"t": "int", "v": "12"}  {"t": "float", "v": "0.5"}
    str                  {"t": "str", "v": "..."}
    tuple, list          {"t": "tuple" | "list", "v": [value, ...]}
    dict                 {"t": "dict", "v": [[key, value], ...]}  (keys: None, bool, int, float, str)
    torch.Tensor         {"t": "tensor", "dtype": "float32", "shape": [2, 3], "data": base64, "grad": false}
    anything else        {"t": "ref", "id": 3, "type": "Conv2D", "kind": "module" | "class" | "callable" | "object",
                          "params": [[name, tensor], ...]}        (a handle on an object that stays where it lives)

`encode` accepts only these exact types (a subclass of torch.Tensor, int, str, ... is not data: it
becomes a ref, which the examiner turns into an object without behaviour). `decode` is strict: no
pickle, no torch.load, no object construction beyond plain tensors and builtin containers, and
limits on size (MAX_BYTES of tensor data, MAX_STR per string, MAX_NODES values) and nesting
(MAX_DEPTH). Anything outside them raises WireError, which fails the test that asked for it.
"""
import base64
import json
import re

import torch

MAX_DEPTH = 24
MAX_NODES = 200_000
MAX_BYTES = 4 * 2**20          # tensor data per message
MAX_STR = 2**20                # characters per string
MAX_MESSAGE = 6 * 2**20        # characters of JSON per message (the grader's frame limit is 8 MB)
MAX_DIMS = 8

DTYPES = {name: getattr(torch, name) for name in (
    "float16", "bfloat16", "float32", "float64", "complex64", "complex128",
    "uint8", "int8", "int16", "int32", "int64", "bool")}
DTYPE_NAMES = {dt: name for name, dt in DTYPES.items()}
_INT = re.compile(r"-?[0-9]{1,4300}")
_FLOAT = re.compile(r"-?(inf|nan|[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?)")
_KEY_TYPES = (type(None), bool, int, float, str)


class WireError(ValueError):
    """A message that is not valid protocol data (too big, too deep, malformed)."""


def encode_tensor(t):
    """A tensor (exactly torch.Tensor or nn.Parameter) as wire data: dtype, shape, raw bytes."""
    if t.dtype not in DTYPE_NAMES:
        raise WireError(f"a tensor of dtype {t.dtype} cannot be sent")
    if t.numel() * t.element_size() > MAX_BYTES:
        raise WireError(f"a tensor of shape {tuple(t.shape)} is {t.numel() * t.element_size() / 2**20:.1f} MB "
                        f"(at most {MAX_BYTES // 2**20} MB can be sent)")
    flat = t.detach().cpu().contiguous().reshape(-1)
    raw = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
    return {"t": "tensor", "dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape),
            "data": base64.b64encode(raw).decode("ascii"), "grad": bool(t.requires_grad)}


def encode(value, ref=None, _depth=0):
    """`value` as wire data; objects that are not data go to `ref(obj) -> dict` (or WireError)."""
    if _depth > MAX_DEPTH:
        raise WireError(f"nested more than {MAX_DEPTH} levels deep")
    kind = type(value)
    if value is None:
        return {"t": "none"}
    if kind is bool:
        return {"t": "bool", "v": value}
    if kind is int:
        if abs(value).bit_length() > 14000:
            raise WireError("an int with more than 4300 digits")
        return {"t": "int", "v": str(value)}
    if kind is float:
        return {"t": "float", "v": repr(value)}
    if kind is str:
        if len(value) > MAX_STR:
            raise WireError(f"a string of {len(value)} characters (limit {MAX_STR})")
        return {"t": "str", "v": value}
    if kind in (tuple, list):
        return {"t": kind.__name__, "v": [encode(v, ref, _depth + 1) for v in value]}
    if kind is dict:
        items = []
        for k, v in value.items():
            if type(k) not in _KEY_TYPES:
                raise WireError(f"a dict key of type {type(k).__name__}")
            items.append([encode(k, ref, _depth + 1), encode(v, ref, _depth + 1)])
        return {"t": "dict", "v": items}
    if kind is torch.Tensor or kind is torch.nn.Parameter:
        return encode_tensor(value)
    if ref is None:
        raise WireError(f"a {kind.__name__} is not data")
    return ref(value)


def dumps(message) -> str:
    return json.dumps(message, separators=(",", ":"), allow_nan=False)


def loads(text):
    """Parse one message (a JSON object) within the limits."""
    if not isinstance(text, str) or len(text) > MAX_MESSAGE:
        raise WireError("the message is not a string of at most "
                        f"{MAX_MESSAGE // 2**20} MB")
    try:
        message = json.loads(text)
    except (ValueError, RecursionError, MemoryError) as err:
        raise WireError(f"the message is not valid JSON ({type(err).__name__})") from None
    if not isinstance(message, dict):
        raise WireError("the message is not a JSON object")
    return message


class _Budget:
    def __init__(self):
        self.nodes = 0
        self.bytes = 0


def decode(data, ref=None, _budget=None, _depth=0):
    """Wire data -> plain Python values and tensors (refs go to `ref(dict)`); WireError if invalid."""
    budget = _budget or _Budget()
    budget.nodes += 1
    if budget.nodes > MAX_NODES:
        raise WireError(f"more than {MAX_NODES} values")
    if _depth > MAX_DEPTH:
        raise WireError(f"nested more than {MAX_DEPTH} levels deep")
    if not isinstance(data, dict) or not isinstance(data.get("t"), str):
        raise WireError("a value without a type tag")
    t, v = data["t"], data.get("v")
    if t == "none":
        return None
    if t == "bool" and type(v) is bool:
        return v
    if t == "int" and isinstance(v, str) and _INT.fullmatch(v):
        return int(v)
    if t == "float" and isinstance(v, str) and _FLOAT.fullmatch(v):
        return float(v)
    if t == "str" and isinstance(v, str) and len(v) <= MAX_STR:
        return v
    if t in ("tuple", "list") and isinstance(v, list):
        items = [decode(x, ref, budget, _depth + 1) for x in v]
        return tuple(items) if t == "tuple" else items
    if t == "dict" and isinstance(v, list):
        out = {}
        for pair in v:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise WireError("a malformed dict entry")
            key = decode(pair[0], None, budget, _depth + 1)
            if type(key) not in _KEY_TYPES:
                raise WireError("a dict key that is not a number, string, bool or None")
            out[key] = decode(pair[1], ref, budget, _depth + 1)
        return out
    if t == "tensor":
        return _decode_tensor(data, budget)
    if t == "ref" and ref is not None and type(data.get("id")) is int:
        return ref(data)
    raise WireError(f"an invalid value of type {t[:40]!r}")


def _decode_tensor(data, budget):
    dtype, shape, raw = DTYPES.get(data.get("dtype")), data.get("shape"), data.get("data")
    if dtype is None or not isinstance(shape, list) or len(shape) > MAX_DIMS or not isinstance(raw, str):
        raise WireError("a malformed tensor")
    if not all(type(n) is int and 0 <= n <= 2**31 for n in shape):
        raise WireError("a tensor with an invalid shape")
    numel = 1
    for n in shape:
        numel *= n
    size = numel * torch.empty((), dtype=dtype).element_size()
    budget.bytes += size
    if budget.bytes > MAX_BYTES or len(raw) > 4 * (MAX_BYTES // 3 + 1):
        raise WireError(f"more than {MAX_BYTES // 2**20} MB of tensor data")
    try:
        buf = base64.b64decode(raw, validate=True)
    except ValueError:
        raise WireError("tensor data that is not base64") from None
    if len(buf) != size:
        raise WireError(f"a tensor of shape {tuple(shape)} with {len(buf)} bytes instead of {size}")
    if numel == 0:
        out = torch.empty(shape, dtype=dtype)
    else:
        raw8 = torch.frombuffer(bytearray(buf), dtype=torch.uint8)
        out = (raw8 != 0 if dtype is torch.bool else raw8.view(dtype)).reshape(shape).clone()
    if data.get("grad") is True and out.is_floating_point():
        out.requires_grad_(True)
    return out


def tensors(value, _depth=0):
    """The tensors in a value (tuples, lists and dict values, depth first), in the order both
    sides of the protocol number them."""
    kind = type(value)
    if kind is torch.Tensor or kind is torch.nn.Parameter:
        return [value]
    if _depth > MAX_DEPTH:
        return []
    if kind in (tuple, list):
        return [t for v in value for t in tensors(v, _depth + 1)]
    if kind is dict:
        return [t for v in value.values() for t in tensors(v, _depth + 1)]
    return []


def replace_tensors(value, new, _depth=0):
    """`value` with its tensors (in `tensors` order) taken from the iterator `new`."""
    kind = type(value)
    if kind is torch.Tensor or kind is torch.nn.Parameter:
        return next(new)
    if _depth > MAX_DEPTH:
        return value
    if kind in (tuple, list):
        return kind(replace_tensors(v, new, _depth + 1) for v in value)
    if kind is dict:
        return {k: replace_tensors(v, new, _depth + 1) for k, v in value.items()}
    return value
