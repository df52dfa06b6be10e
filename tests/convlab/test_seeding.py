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
