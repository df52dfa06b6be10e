import random

import numpy as np
import pytest
import torch

from convlab.seeding import seed_everything


def test_same_seed_same_numbers_everywhere():
    seed_everything(3)
    first = (random.random(), np.random.rand(), torch.rand(3))
    seed_everything(3)
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[:2] == second[:2] and torch.equal(first[2], second[2])


def test_different_seeds_differ():
    seed_everything(1)
    a = torch.rand(4)
    seed_everything(2)
    assert not torch.equal(a, torch.rand(4))


@pytest.mark.parametrize("bad", ["0", 1.5, True, None])
def test_seed_must_be_an_int(bad):
    with pytest.raises(TypeError, match="seed must be an int"):
        seed_everything(bad)


def test_deterministic_mode_is_on_without_importing_torchinductor():
    """Check that seed_everything turns on PyTorch's deterministic mode (warn only) and, in a fresh
    process, does not import TorchInductor (~1.5 s at every lesson's start)."""
    import subprocess
    import sys
    code = ("import sys, torch; from convlab.seeding import seed_everything; seed_everything(0); "
            "print(torch.are_deterministic_algorithms_enabled(), "
            "torch.is_deterministic_algorithms_warn_only_enabled(), 'torch._inductor' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True", "False"]
