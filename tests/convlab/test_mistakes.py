"""convlab.mistakes: the catalogues lesson 6's test cells share name the mistakes they describe and
never hand out a right answer."""
from __future__ import annotations

import itertools

import torch

from convlab.mistakes import layer_params_mistake, layer_shape_mistake, receptive_field_mistakes

conv = lambda k, **kw: {"type": "conv", "out_channels": 4, "kernel_size": k, **kw}
pool = lambda k, **kw: {"type": "maxpool", "kernel_size": k, **kw}


def test_shape_mistakes_are_named_only_for_the_shape_they_give():
    L = conv(3, padding=1, stride=2)
    assert layer_shape_mistake(L, (3, 9, 7), (4, 5, 4), (4, 5, 4)) == ""                # right: nothing to name
    assert layer_shape_mistake(L, (3, 9, 7), (4, 4, 5), (4, 5, 4)) == "swapped height and width: shapes are (channels, height, width)"
    assert layer_shape_mistake(L, (3, 9, 7), (3, 5, 4), (4, 5, 4)).startswith("kept the input's channels")
    assert layer_shape_mistake(L, (3, 9, 7), (4, 4, 3), (4, 5, 4)).startswith("treated padding as the total")
    assert layer_shape_mistake(L, (3, 9, 7), (4, 9, 9), (4, 5, 4)) == ""                # no known mistake gives it
    assert layer_shape_mistake(pool(2), (3, 9, 7), (3, 8, 6), (3, 4, 3)).startswith("let the pooling stride default to 1")
    assert layer_shape_mistake({"type": "flatten"}, (3, 4, 5), (20,), (60,)).startswith("left out the channels")


def test_params_mistakes_follow_bias():
    assert layer_params_mistake(conv(3), (2, 8, 8), 72, 76) == "forgot the bias (one per output channel)"
    assert layer_params_mistake(conv(3, bias=False), (2, 8, 8), 76, 72) == "counted a bias, but this layer has bias=False"
    assert layer_params_mistake(conv(3, bias=False), (2, 8, 8), 36, 72).startswith("forgot the input channels")
    assert layer_params_mistake({"type": "relu"}, (2, 8, 8), 0, 0) == ""
    assert layer_params_mistake({"type": "maxpool", "kernel_size": 2}, (2, 8, 8), 4, 0).startswith("counted parameters")
    assert layer_params_mistake({"type": "linear", "out_features": 3}, (10,), 30, 33) == "forgot the bias (one per output feature)"


def test_receptive_field_mistakes_never_include_the_right_value():
    """The field is measured independently here (one unit's input window, by autograd on 1-D
    all-one convolutions); whatever the layers, no catalogued mistake gives that value."""
    def measured(layers):
        x = torch.ones(1, 1, 400, requires_grad=True)
        y = x
        for L in layers:
            k, d = L["kernel_size"], L.get("dilation", 1)
            s = L.get("stride", 1) if L["type"] == "conv" else (L.get("stride") or k)
            y = torch.nn.functional.conv1d(y, torch.ones(1, 1, k), stride=s, padding=L.get("padding", 0), dilation=d)
        y[0, 0, y.shape[-1] // 2].backward()
        seen = x.grad[0, 0].nonzero().flatten()
        return int(seen.max() - seen.min() + 1)

    menus = [conv(3), conv(5, padding=2), conv(3, stride=2), conv(3, dilation=2), pool(2), pool(3, stride=1), pool(2, dilation=2)]
    for layers in itertools.product(menus, repeat=3):
        right = measured(list(layers))
        mistakes = receptive_field_mistakes(list(layers), right)
        assert right not in mistakes.values(), (layers, mistakes)
    assert receptive_field_mistakes([conv(3), conv(3, stride=2), conv(3)], 1 + 2 + 2 + 2 * 2) == {
        "ignored the strides: after a layer of stride s, neighbouring units are s times further apart": 1 + 2 + 2 + 2,
        "multiplied by a layer's own stride too; a layer's window is measured in the jump of its INPUT": 1 + 2 + 2 * 2 + 2 * 2,
        "added up the kernel sizes; each layer adds (span − 1) · jump, since neighbouring windows overlap": 3 + 3 + 3 * 2}
