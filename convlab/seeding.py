"""Reproducible randomness: one call seeds every generator a lesson uses."""
from __future__ import annotations

import random
import sys

import numpy as np
import torch

__all__ = ["seed_everything"]


def seed_everything(seed: int = 0) -> None:
    """Seed Python's, NumPy's and PyTorch's random generators and make PyTorch deterministic.

    Every lesson calls this first, so its printed numbers and figures are the same on every run.

    >>> seed_everything(0); a = torch.rand(2)
    >>> seed_everything(0); bool((a == torch.rand(2)).all())
    True
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}: {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    # torch.use_deterministic_algorithms(True, warn_only=True), minus its import of TorchInductor
    # (torch.compile's compiler, ~1.5 s, only to set its own flag; the course never compiles)
    if "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch._C._set_deterministic_algorithms(True, warn_only=True)
