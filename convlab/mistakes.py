"""Catalogues of typical mistakes that several test cells share (lesson 6's layer table and
receptive field), so that each test cell says only what it checks.

A test cell computes the right answer itself (with PyTorch's own layers, or by measuring it with
autograd) and passes it in. These functions only say which typical mistake a wrong value
reproduces, or give the values the mistakes produce; they never give the right answer: a mistake
whose value is the right one on that input is left out.

>>> conv = {"type": "conv", "out_channels": 6, "kernel_size": 5}
>>> layer_params_mistake(conv, (3, 32, 32), 450, 456)
'forgot the bias (one per output channel)'
>>> layer_shape_mistake(conv, (3, 32, 32), (1, 6, 28, 28), (6, 28, 28))
'kept a batch dimension; the shapes in the table are for one image, without it'
>>> field = receptive_field_mistakes([conv, {"type": "maxpool", "kernel_size": 2}, conv], 14)
>>> field["let the pooling stride default to 1; it defaults to the window size"], 14 in field.values()
(10, False)
"""
from __future__ import annotations

from collections.abc import Mapping

__all__ = ["layer_params_mistake", "layer_shape_mistake", "receptive_field_mistakes"]


def _named(wrong: Mapping[str, object], got: object, right: object) -> str:
    """The mistakes (descriptions) whose result is `got`, joined with 'or' ('' if none, or if `got` is right)."""
    return " — or you ".join(m for m, v in wrong.items() if v == got != right)


def layer_shape_mistake(layer: dict, shape: tuple[int, ...], got: tuple[int, ...], right: tuple[int, ...]) -> str:
    """What a wrong output shape `got` of `layer` (a dict in the format of lesson 6's `shape_table`)
    comes from, given the layer's right input `shape` and PyTorch's output shape `right`: a mistake's
    description to follow "it matches what you get if you", or '' when none gives `got`."""
    L, g, t = layer, layer.get, layer["type"]
    if got == (1, *right):
        return "kept a batch dimension; the shapes in the table are for one image, without it"
    if t == "flatten":
        return _named({"left out the channels: flatten keeps all C·H·W values": (shape[1] * shape[2],),
                       "flattened only height and width; flatten makes ONE axis of C·H·W values": (shape[0], shape[1] * shape[2])},
                      got, right)
    if t not in ("conv", "maxpool") or len(got) != 3:
        return ""
    k, p, d = L["kernel_size"], g("padding", 0), g("dilation", 1)
    s = g("stride", 1) if t == "conv" else (g("stride") or k)
    room = lambda n: n + 2 * p - d * (k - 1) - 1
    sizes = {"rounded up; the division by the stride rounds down" + (" (unless ceil_mode=True)" if t == "maxpool" else ""):
                 lambda n: -(-room(n) // s) + 1}
    if p > 0 and not g("ceil_mode", False):
        sizes["treated padding as the total; padding=p adds p cells on EACH side"] = lambda n: (room(n) - p) // s + 1
    if d > 1 and not g("ceil_mode", False):
        sizes["forgot dilation: a dilated window spans d(k - 1) + 1 cells"] = lambda n: (n + 2 * p - k) // s + 1
    if t == "maxpool" and g("stride") is None:
        sizes["let the pooling stride default to 1; it defaults to the window size"] = lambda n: room(n) + 1
    if t == "maxpool" and g("ceil_mode", False):
        del sizes["rounded up; the division by the stride rounds down (unless ceil_mode=True)"]
        sizes["rounded down; with ceil_mode=True pooling rounds up"] = lambda n: room(n) // s + 1
        sizes["rounded up but forgot the last-window rule: a window that would start in the right padding is dropped"] = \
            lambda n: -(-room(n) // s) + 1
    wrong = {m: (right[0], f(shape[1]), f(shape[2])) for m, f in sizes.items()}
    wrong["kept the input's channels; a conv layer outputs out_channels channels"] = (shape[0], *right[1:])
    wrong["swapped height and width: shapes are (channels, height, width)"] = (right[0], right[2], right[1])
    wrong["put the channels last; PyTorch's order is (channels, height, width)"] = (*right[1:], right[0])
    wrong["used the height for the width too: compute each axis from its own size"] = (right[0], right[1], right[1])
    return _named(wrong, got, right)


def layer_params_mistake(layer: dict, shape: tuple[int, ...], got: int, right: int) -> str:
    """What a wrong parameter count `got` of `layer` comes from, given its right input `shape` and
    the count of PyTorch's module, `right`: a mistake's description, or '' when none gives `got`."""
    L, t, bias = layer, layer["type"], layer.get("bias", True)
    if t in ("relu", "maxpool", "flatten"):
        return f"counted parameters for a {t} layer; it has none (0)" if got else ""
    if t == "linear":
        n, o = shape[0], L["out_features"]
        wrong = {"forgot the bias (one per output feature)": n * o,
                 "counted a bias, but this layer has bias=False": n * o + o}
    else:
        c, o, k, d = shape[0], L["out_channels"], L["kernel_size"], L.get("dilation", 1)
        span = d * (k - 1) + 1
        wrong = {"forgot the bias (one per output channel)": o * c * k * k,
                 "counted a bias, but this layer has bias=False": o * c * k * k + o,
                 "forgot the input channels: each output channel has one k×k kernel PER INPUT CHANNEL":
                     o * k * k + (o if bias else 0),
                 "forgot the input channels and the bias": o * k * k,
                 "counted k weights per kernel; a k×k kernel has k·k": o * c * k + (o if bias else 0),
                 "counted the dilated span d(k - 1) + 1; a dilated k×k kernel still has k·k weights":
                     o * c * span * span + (o if bias else 0)}
    if bias:
        wrong.pop("counted a bias, but this layer has bias=False")
    else:
        wrong.pop(next(m for m in wrong if m.startswith("forgot the bias")))
    return _named(wrong, got, right)


_FIELD_MISTAKES = {
    "no strides": "ignored the strides: after a layer of stride s, neighbouring units are s times further apart",
    "jump = stride": "set the jump to the last layer's stride; the jump is the PRODUCT of the strides so far",
    "own stride": "multiplied by a layer's own stride too; a layer's window is measured in the jump of its INPUT",
    "no dilation": "ignored dilation: a dilated window spans d(k - 1) + 1 pixels",
    "pool stride 1": "let the pooling stride default to 1; it defaults to the window size",
    "add padding": "added the padding; padding moves the windows but does not widen them",
    "sum k": "added up the kernel sizes; each layer adds (span − 1) · jump, since neighbouring windows overlap",
}


def receptive_field_mistakes(layers: list[dict], right: int) -> dict[str, int]:
    """What typical wrong formulas give for the receptive field of `layers` (conv, relu and maxpool
    dicts, as in lesson 6's `receptive_field`): description -> value, for every mistake whose value
    is not the right one, `right` (measured by the test cell)."""
    def field(mistake: str) -> int:
        """The field a formula with this one mistake gives."""
        if mistake not in _FIELD_MISTAKES:
            raise ValueError(f"unknown mistake {mistake!r}")
        size, jump = (0 if mistake == "sum k" else 1), 1
        for L in layers:
            if L["type"] == "relu":
                continue
            k, d = L["kernel_size"], (1 if mistake == "no dilation" else L.get("dilation", 1))
            s = L.get("stride", 1) if L["type"] == "conv" else (L.get("stride") or (1 if mistake == "pool stride 1" else k))
            jump *= s if mistake == "own stride" else 1
            grow = {"sum k": k, "add padding": d * (k - 1) + 2 * L.get("padding", 0)}.get(mistake, d * (k - 1))
            size += grow * (1 if mistake == "no strides" else jump)
            jump = s if mistake == "jump = stride" else jump * (1 if mistake == "own stride" else s)
        return size
    values = {description: field(mistake) for mistake, description in _FIELD_MISTAKES.items()}
    return {description: value for description, value in values.items() if value != right}
