"""convlab: the helper package of the convlab course.

Infrastructure only (seeding, plotting and animation, student-facing checks, data);
the graded answers live in the notebooks, never here.

>>> import convlab
>>> convlab.seed_everything(0)
"""
from .checks import CONVOLUTIONS, POOLING, expect_close, expect_equal, forbid_torch_functions
from .data import CIFAR10_CLASSES, Cifar10Data, CorruptDataError, data_dir, load_cifar10
from .images import load_sample_image
from .plotting import (
    animate_corr2d,
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
    "CIFAR10_CLASSES",
    "CONVOLUTIONS",
    "Cifar10Data",
    "CorruptDataError",
    "POOLING",
    "animate_corr2d",
    "data_dir",
    "expect_close",
    "expect_equal",
    "explore_conv_windows",
    "forbid_torch_functions",
    "load_cifar10",
    "load_sample_image",
    "seed_everything",
    "show_conv_windows",
    "show_corr2d",
    "show_heatmaps",
    "show_image_grids",
    "show_kernel_path",
    "show_kernels",
    "show_losses",
]
