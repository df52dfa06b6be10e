"""convlab: the helper package of the convlab course.

Infrastructure only (seeding, plotting and animation, interactive explorers, student-facing
checks, data);
the graded answers live in the notebooks, never here.

>>> import convlab
>>> convlab.seed_everything(0)
"""
from .checks import (
    AUTOGRAD,
    CONVOLUTIONS,
    LAYERS,
    POOLING,
    by_hand,
    call_each,
    expect_close,
    expect_equal,
    expect_equal_each,
    forbid_torch_functions,
)
from .data import CIFAR10_CLASSES, Cifar10Data, CorruptDataError, data_dir, load_cifar10
from .explorers import (
    descend,
    explore_kernel,
    explore_learning_rate,
    explore_shift_pooling,
    kernel_presets,
    shift_pooling,
    show_descent,
    show_kernel_response,
    show_shift_pooling,
    stability_limit,
)
from .hints import hint
from .images import load_sample_image
from .mistakes import layer_params_mistake, layer_shape_mistake, receptive_field_mistakes
from .plotting import (
    animate_corr2d,
    animate_pool2d,
    explore_conv_windows,
    show_conv_windows,
    show_corr2d,
    show_heatmaps,
    show_image_grids,
    show_kernel_path,
    show_kernels,
    show_losses,
)
from .seeding import seed_everything

__all__ = [
    "AUTOGRAD",
    "CIFAR10_CLASSES",
    "CONVOLUTIONS",
    "LAYERS",
    "POOLING",
    "Cifar10Data",
    "CorruptDataError",
    "animate_corr2d",
    "animate_pool2d",
    "by_hand",
    "call_each",
    "data_dir",
    "descend",
    "expect_close",
    "expect_equal",
    "expect_equal_each",
    "explore_conv_windows",
    "explore_kernel",
    "explore_learning_rate",
    "explore_shift_pooling",
    "forbid_torch_functions",
    "hint",
    "kernel_presets",
    "layer_params_mistake",
    "layer_shape_mistake",
    "load_cifar10",
    "load_sample_image",
    "receptive_field_mistakes",
    "seed_everything",
    "shift_pooling",
    "show_conv_windows",
    "show_corr2d",
    "show_descent",
    "show_heatmaps",
    "show_image_grids",
    "show_kernel_path",
    "show_kernels",
    "show_kernel_response",
    "show_losses",
    "show_shift_pooling",
    "stability_limit",
]
