"""convlab: the helper package of the convlab course.

Infrastructure only (seeding, plotting and animation, student-facing checks, data and images);
the graded answers live in the notebooks, never here.

>>> import convlab
>>> convlab.seed_everything(0)
"""
from .checks import expect_close, forbid_torch_functions
from .images import load_sample_image
from .plotting import animate_corr2d, show_corr2d, show_heatmaps, show_kernel_path, show_losses
from .seeding import seed_everything

__all__ = [
    "animate_corr2d",
    "expect_close",
    "forbid_torch_functions",
    "load_sample_image",
    "seed_everything",
    "show_corr2d",
    "show_heatmaps",
    "show_kernel_path",
    "show_losses",
]
