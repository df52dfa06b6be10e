"""Real images for the lessons, offline: the photographs that ship with matplotlib's sample data."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import torch
from PIL import Image

__all__ = ["load_sample_image"]

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def _sample_dir() -> Path:
    return Path(matplotlib.get_data_path()) / "sample_data"


def _available() -> list[str]:
    return sorted(p.name for p in _sample_dir().iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)


def load_sample_image(name: str = "grace_hopper.jpg", max_side: int | None = None) -> torch.Tensor:
    """A photograph from matplotlib's sample data as a grayscale float32 tensor (h, w) in [0, 1].

    No download: the file ships with matplotlib (``matplotlib.cbook.get_sample_data(name)``).
    Colour is converted to luminance (0.299 R + 0.587 G + 0.114 B). With `max_side`, the image is
    shrunk (keeping its aspect ratio) so that its longer side has `max_side` pixels, which keeps
    the lessons quick; it is never enlarged.

    >>> img = load_sample_image("grace_hopper.jpg", max_side=128)
    >>> tuple(img.shape), img.dtype
    ((128, 109), torch.float32)
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a file name such as 'grace_hopper.jpg', got {type(name).__name__}")
    path = _sample_dir() / name
    if Path(name).suffix.lower() not in _IMAGE_SUFFIXES or not path.is_file():
        raise FileNotFoundError(
            f"{name!r} is not an image in matplotlib's sample data; available: {', '.join(_available())}"
        )
    if max_side is not None and (isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 1):
        raise ValueError(f"max_side must be a positive int or None, got {max_side!r}")
    with Image.open(path) as im:
        gray = im.convert("L")
        if max_side is not None and max(gray.size) > max_side:
            w, h = gray.size
            scale = max_side / max(w, h)
            new = (max(1, round(w * scale)), max(1, round(h * scale)))
            gray = gray.resize(new, Image.Resampling.LANCZOS)
        pixels = np.asarray(gray, dtype=np.float32) / 255.0
    return torch.from_numpy(pixels.copy())
