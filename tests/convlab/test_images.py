import matplotlib.cbook
import numpy as np
import pytest
import torch
from PIL import Image

from convlab.images import load_sample_image


def test_grace_hopper_is_grayscale_float_in_unit_range():
    img = load_sample_image("grace_hopper.jpg")
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as im:
        width, height = im.size
        luma = np.asarray(im.convert("L"), dtype=np.float32) / 255
    assert img.dtype == torch.float32 and tuple(img.shape) == (height, width)
    assert 0.0 <= img.min() and img.max() <= 1.0 and img.std() > 0.1
    assert torch.equal(img, torch.from_numpy(luma))


def test_max_side_shrinks_keeping_the_aspect_ratio():
    full = load_sample_image("grace_hopper.jpg")
    small = load_sample_image("grace_hopper.jpg", max_side=128)
    assert max(small.shape) == 128
    assert small.shape[1] / small.shape[0] == pytest.approx(full.shape[1] / full.shape[0], rel=0.02)
    assert abs(small.mean() - full.mean()) < 0.02, "shrinking keeps the overall brightness"


def test_max_side_never_enlarges_and_is_deterministic():
    full = load_sample_image("grace_hopper.jpg")
    assert torch.equal(load_sample_image("grace_hopper.jpg", max_side=10_000), full)
    assert torch.equal(load_sample_image(max_side=64), load_sample_image(max_side=64))


@pytest.mark.parametrize("name", ["no_such_photo.jpg", "Stocks.csv"])
def test_unknown_or_non_image_names_list_the_available_images(name):
    with pytest.raises(FileNotFoundError, match=r"not an image in matplotlib's sample data; available: .*grace_hopper\.jpg"):
        load_sample_image(name)


@pytest.mark.parametrize("max_side", [0, -3, 2.5, True])
def test_bad_max_side_is_explained(max_side):
    with pytest.raises(ValueError, match="max_side must be a positive int or None"):
        load_sample_image("grace_hopper.jpg", max_side=max_side)
