"""Datasets: CIFAR-10 from torchvision, with an offline stand-in when the real data can't be had.

`load_cifar10()` puts CIFAR-10 in the repository's data/ folder (torchvision downloads it on first
use and checks every file's md5). Without internet (this course's CI, a train, a locked-down lab)
and without a copy on disk, it returns a small deterministic *stand-in* instead: synthetic 32×32
colour images, one simple drawing per class, with CIFAR-10's shapes, dtype and class names. The
result always says which it is (`is_stand_in`, `description`). CONVLAB_FAKE_DATA=1 forces the
stand-in (tests and stored notebook outputs use it); CONVLAB_DATA_DIR moves the data folder.
"""
from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["CIFAR10_CLASSES", "Cifar10Data", "CorruptDataError", "data_dir", "load_cifar10",
           "make_cifar10_stand_in"]

#: CIFAR-10's class names, in label order (label 3 is "cat").
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)

FAKE_DATA_ENV = "CONVLAB_FAKE_DATA"
DATA_DIR_ENV = "CONVLAB_DATA_DIR"


class CorruptDataError(RuntimeError):
    """A dataset on disk is incomplete or corrupt; the message says what to delete and how to retry."""


class Cifar10Data(Dataset):
    """CIFAR-10 images and labels, real or stand-in, laid out like `torchvision.datasets.CIFAR10`.

    Attributes: `data` (uint8 array N×32×32×3, HWC as in torchvision), `targets` (list of int),
    `classes` (the 10 names), `train`, `is_stand_in`, `description` (a sentence saying which data
    this is, and for a stand-in why and how to get the real thing). Items are `(image, label)`
    with `image = transform(PIL image)`; the default transform gives a float32 tensor 3×32×32 in [0, 1].

    >>> cifar = load_cifar10(train=False)
    >>> image, label = cifar[0]
    >>> image.shape, image.dtype, cifar.classes[label] in CIFAR10_CLASSES
    (torch.Size([3, 32, 32]), torch.float32, True)
    """

    def __init__(self, data: np.ndarray, targets: list[int], *, train: bool, is_stand_in: bool,
                 description: str, transform: Callable | None = None,
                 target_transform: Callable | None = None) -> None:
        if data.dtype != np.uint8 or data.ndim != 4 or data.shape[1:] != (32, 32, 3):
            raise ValueError(f"CIFAR-10 data must be uint8 of shape (N, 32, 32, 3), got {data.dtype} "
                             f"{data.shape}")
        if len(targets) != len(data):
            raise ValueError(f"{len(data)} images but {len(targets)} labels")
        self.data = data
        self.targets = [int(t) for t in targets]
        self.classes = list(CIFAR10_CLASSES)
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.train = train
        self.is_stand_in = is_stand_in
        self.description = description
        self.transform = transform
        self.target_transform = target_transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        from PIL import Image

        image, target = Image.fromarray(self.data[index]), self.targets[index]
        if self.transform is not None:
            image = self.transform(image)
        else:
            image = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).float().div(255)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        kind = "STAND-IN" if self.is_stand_in else "real"
        return f"Cifar10Data({kind}, {split}, {len(self)} images)\n{self.description}"


def data_dir() -> Path:
    """The course's data folder: $CONVLAB_DATA_DIR if set, else data/ next to the convlab package.

    >>> data_dir().name
    'data'
    """
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override).expanduser().resolve()
    return Path(__file__).resolve().parent.parent / "data"


def load_cifar10(
    train: bool = False,
    root: str | os.PathLike | None = None,
    download: bool = True,
    transform: Callable | None = None,
    target_transform: Callable | None = None,
    stand_in_size: int | None = None,
) -> Cifar10Data:
    """The CIFAR-10 test set (or training set, `train=True`), real if possible, else a stand-in.

    The real data lives in `root` (default: `data_dir()`), where torchvision downloads it (170 MB)
    on first use when `download` is true and checks every file's md5. When it is not there and
    can't be downloaded, or when CONVLAB_FAKE_DATA=1, a deterministic synthetic stand-in of
    `stand_in_size` images (default 1000 test / 5000 train) is made instead, with a warning;
    `.is_stand_in` and `.description` say which you got. Files that are there but incomplete or
    corrupt raise `CorruptDataError`, which says what to delete.

    >>> cifar = load_cifar10()
    >>> cifar.data.shape[1:], len(cifar.classes)
    ((32, 32, 3), 10)
    >>> cifar.description.startswith("STAND-IN DATA" if cifar.is_stand_in else "CIFAR-10 test set: 10,000 real")
    True
    """
    if os.environ.get(FAKE_DATA_ENV, "").strip() not in ("", "0"):
        return make_cifar10_stand_in(
            train, stand_in_size, f"{FAKE_DATA_ENV}={os.environ[FAKE_DATA_ENV]} is set",
            transform, target_transform)
    root = Path(root).expanduser().resolve() if root is not None else data_dir()
    from torchvision.datasets import CIFAR10

    folder, archive = root / CIFAR10.base_folder, root / CIFAR10.filename
    bad = _bad_files(root)
    if bad and not download:
        if folder.exists() or archive.exists():
            raise CorruptDataError(_corrupt_message(root, bad))
        return make_cifar10_stand_in(
            train, stand_in_size, f"CIFAR-10 is not in {root} and download=False", transform,
            target_transform, warn=True)
    if bad:
        root.mkdir(parents=True, exist_ok=True)
        try:
            # Re-extracts from a verified archive if there is one, else downloads (md5-checked).
            CIFAR10(str(root), train=train, download=True)
        except Exception as err:  # noqa: BLE001  (no network shows up as many exception types)
            bad = _bad_files(root)
            if bad and (folder.exists() or archive.exists()):
                raise CorruptDataError(_corrupt_message(root, bad, err)) from err
            if bad:
                return make_cifar10_stand_in(
                    train, stand_in_size,
                    f"CIFAR-10 is not in {root} and downloading it failed "
                    f"({type(err).__name__}: {err})", transform, target_transform, warn=True)
        bad = _bad_files(root)
        if bad:
            raise CorruptDataError(_corrupt_message(root, bad))
    try:
        real = CIFAR10(str(root), train=train, download=False)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError) as err:
        raise CorruptDataError(_corrupt_message(root, [f"{folder.name}: {err}"], err)) from err
    split = "training" if train else "test"
    if list(real.classes) != list(CIFAR10_CLASSES):
        raise CorruptDataError(_corrupt_message(
            root, [f"{folder.name}/batches.meta: unexpected class names {real.classes}"]))
    return Cifar10Data(
        np.ascontiguousarray(real.data), list(real.targets), train=train, is_stand_in=False,
        description=f"CIFAR-10 {split} set: {len(real.data):,} real images from {folder}",
        transform=transform, target_transform=target_transform)


def make_cifar10_stand_in(
    train: bool = False,
    size: int | None = None,
    reason: str = "asked for",
    transform: Callable | None = None,
    target_transform: Callable | None = None,
    *,
    warn: bool = False,
) -> Cifar10Data:
    """A deterministic synthetic stand-in for CIFAR-10: `size` 32×32 RGB uint8 images, balanced over
    the 10 classes, each a simple coloured drawing of its class (a plane, a car, a green frog ...)
    with random position, size, colours, scene, clutter and noise, and one label in ten wrong (the
    image shows another class), so that a small network neither gets all of it right nor does as
    well on new images as on those it trained on. Train and test differ.

    >>> make_cifar10_stand_in(size=20).data.shape
    (20, 32, 32, 3)
    """
    size = (5000 if train else 1000) if size is None else size
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"the stand-in needs a positive number of images, got {size!r}")
    data, targets = _draw_stand_in(size, seed=1 if train else 0)
    split = "training" if train else "test"
    description = (
        f"STAND-IN DATA, NOT CIFAR-10: {size:,} synthetic 32×32 colour images (a simple drawing per "
        f"class) with CIFAR-10's shapes, dtype and class names, in place of the {split} set. "
        f"Why: {reason}. For the real data, unset {FAKE_DATA_ENV} and run load_cifar10() once with "
        "internet access (it downloads 170 MB into data/; see data/README.md)."
    )
    if warn:
        warnings.warn(description, stacklevel=3)
    return Cifar10Data(data, targets, train=train, is_stand_in=True, description=description,
                       transform=transform, target_transform=target_transform)


# --- integrity -----------------------------------------------------------------------------------

def _bad_files(root: Path) -> list[str]:
    """What is missing or fails torchvision's md5 check in root/cifar-10-batches-py ([] if all is well)."""
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import calculate_md5

    folder = root / CIFAR10.base_folder
    bad = []
    expected = [*CIFAR10.train_list, *CIFAR10.test_list, [CIFAR10.meta["filename"], CIFAR10.meta["md5"]]]
    for name, md5 in expected:
        path = folder / name
        if not path.is_file():
            bad.append(f"{folder.name}/{name} is missing")
        elif (got := calculate_md5(str(path))) != md5:
            bad.append(f"{folder.name}/{name} is corrupt (md5 {got}, expected {md5})")
    return bad


def _corrupt_message(root: Path, bad: list[str], err: BaseException | None = None) -> str:
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import check_integrity

    folder, archive = root / CIFAR10.base_folder, root / CIFAR10.filename
    delete = [str(folder)] if folder.exists() else []
    if archive.exists():
        if check_integrity(str(archive), CIFAR10.tgz_md5):
            keep = f"The archive {archive} is intact; it will be extracted again."
        else:
            delete.append(str(archive))
            bad = [f"{archive.name} is corrupt or a partial download (md5 check failed)", *bad]
            keep = ""
    else:
        keep = ""
    shown = bad[:6] + ([f"... and {len(bad) - 6} more"] if len(bad) > 6 else [])
    cause = f"\n(the attempt to repair it failed with {type(err).__name__}: {err})" if err else ""
    return (
        f"The CIFAR-10 files in {root} are incomplete or corrupt:\n  - " + "\n  - ".join(shown)
        + f"{cause}\nDelete them and download again:\n    rm -rf {' '.join(delete) or str(folder)}\n"
        f"then run convlab.load_cifar10() with internet access (170 MB from {CIFAR10.url}). "
        f"{keep}Without internet, set {FAKE_DATA_ENV}=1 to use the synthetic stand-in instead."
    ).rstrip()


# --- the stand-in --------------------------------------------------------------------------------

#: What makes the stand-in hard (see `_draw_stand_in`): the largest shift in pixels, the range of
#: scales, the share of images on another class's scene, of images with a stray blob, the range of
#: contrasts, the largest change of brightness, the range of the noise's standard deviation, and the
#: share of images whose drawing is not their label's. Tests set them to check the drawings alone.
_HARDNESS = {"shift": 5.0, "scale": (0.75, 1.2), "other_scene": 0.5, "clutter": 0.6,
             "contrast": (0.7, 1.15), "brightness": 0.1, "noise": (0.03, 0.12), "wrong_drawing": 0.1}


def _draw_stand_in(size: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """`size` images, balanced over the classes, from a generator of their own (global randomness is untouched).

    Each image is its label's drawing, moved (up to ±5 pixels), scaled (0.75-1.2), maybe mirrored; on
    its class's usual scene half of the time and on a random class's scene otherwise (so colour
    alone does not give the class away); often with a stray blob of colour (clutter); with a random
    contrast, brightness and amount of per-pixel noise. One image in ten shows another class's
    drawing than its label says (label noise, as in any hand-labelled set): no classifier can get
    those right, and a network that learns them by heart does better on its training images than
    on new ones. Labels stay balanced: the drawing is changed, not the label.
    """
    h = _HARDNESS
    rng = np.random.default_rng(seed)
    targets = rng.permutation(np.arange(size) % len(CIFAR10_CLASSES))
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    data = np.empty((size, 32, 32, 3), dtype=np.uint8)
    for i, label in enumerate(targets):
        drawn = label if rng.random() >= h["wrong_drawing"] else (label + rng.integers(1, 10)) % 10
        scene = drawn if rng.random() >= h["other_scene"] else rng.integers(10)
        scale = rng.uniform(*h["scale"])
        dy, dx = rng.uniform(-h["shift"], h["shift"], size=2)
        Y = (yy - 15.5 - dy) / scale + 15.5
        X = (xx - 15.5 - dx) / scale + 15.5
        if rng.random() < 0.5:
            X = 31 - X
        canvas = _Canvas(Y, X, rng)
        canvas.background(*_SCENES[scene])
        if rng.random() < h["clutter"]:         # a stray blob, placed in the image's own coordinates
            cy, cx = rng.uniform(0, 32, size=2)
            ry, rx = rng.uniform(1.5, 5, size=2)
            canvas.img[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = rng.uniform(0, 1, 3)
        img = _DRAWINGS[drawn](canvas)
        img = (img - 0.5) * rng.uniform(*h["contrast"]) + 0.5 + rng.uniform(-h["brightness"], h["brightness"])
        img = img + rng.normal(0.0, rng.uniform(*h["noise"]), size=img.shape)
        data[i] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return data, [int(t) for t in targets]


class _Canvas:
    """Shapes in image coordinates (row Y, column X, already shifted, scaled and maybe mirrored)."""

    def __init__(self, Y: np.ndarray, X: np.ndarray, rng: np.random.Generator) -> None:
        self.Y, self.X, self.rng = Y, X, rng
        self.img = np.zeros((32, 32, 3), dtype=np.float32)

    def colour(self, rgb, jitter: float = 0.08) -> np.ndarray:
        return np.clip(np.asarray(rgb, np.float32) + self.rng.uniform(-jitter, jitter, 3), 0, 1)

    def background(self, top, bottom, horizon: float | None = None) -> None:
        top, bottom = self.colour(top), self.colour(bottom)
        if horizon is None:
            t = (np.arange(32, dtype=np.float32) / 31)[:, None, None]
        else:  # two regions (sky | ground) with a soft edge at row `horizon`
            t = (1 / (1 + np.exp(-(np.arange(32, dtype=np.float32) - horizon) * 1.5)))[:, None, None]
        self.img[:] = top * (1 - t) + bottom * t

    def ellipse(self, cy, cx, ry, rx, rgb) -> None:
        self._paint(((self.Y - cy) / ry) ** 2 + ((self.X - cx) / rx) ** 2 <= 1, rgb)

    def rect(self, y0, y1, x0, x1, rgb) -> None:
        self._paint((self.Y >= y0) & (self.Y < y1) & (self.X >= x0) & (self.X < x1), rgb)

    def triangle(self, apex_y, apex_x, base_y, half_width, rgb) -> None:
        t = (self.Y - apex_y) / (base_y - apex_y)
        self._paint((t >= 0) & (t <= 1) & (np.abs(self.X - apex_x) <= t * half_width), rgb)

    def _paint(self, mask: np.ndarray, rgb) -> None:
        self.img[mask] = rgb if isinstance(rgb, np.ndarray) else self.colour(rgb)


def _airplane(c: _Canvas) -> np.ndarray:
    body = c.colour((0.88, 0.88, 0.9))
    c.ellipse(16, 16, 2.6, 12, body)
    c.ellipse(16, 14, 11, 2.8, body)
    c.ellipse(12, 26, 4.5, 1.6, body)
    return c.img


def _automobile(c: _Canvas) -> np.ndarray:
    paint = c.colour([(0.8, 0.1, 0.1), (0.1, 0.25, 0.75), (0.95, 0.8, 0.1)][c.rng.integers(3)])
    c.rect(15, 23, 4, 28, paint)
    c.rect(9, 15, 9, 22, paint)
    c.rect(10, 14, 11, 20, (0.65, 0.85, 0.95))
    for x in (9, 23):
        c.ellipse(23, x, 3.6, 3.6, (0.08, 0.08, 0.08))
    return c.img


def _bird(c: _Canvas) -> np.ndarray:
    c.rect(22, 24, 2, 30, (0.4, 0.25, 0.1))
    feathers = c.colour([(0.55, 0.35, 0.2), (0.2, 0.35, 0.8), (0.85, 0.2, 0.15)][c.rng.integers(3)])
    c.ellipse(16, 15, 5, 7.5, feathers)
    c.ellipse(10, 21, 3.6, 3.6, feathers)
    c.triangle(10, 28, 10.1, 0.1, (0.95, 0.6, 0.1))
    c.rect(9, 11, 23, 28, (0.95, 0.6, 0.1))
    c.ellipse(9.5, 21.5, 0.9, 0.9, (0.0, 0.0, 0.0))
    return c.img


def _cat(c: _Canvas) -> np.ndarray:
    fur = c.colour([(0.9, 0.55, 0.2), (0.5, 0.5, 0.5), (0.2, 0.18, 0.15)][c.rng.integers(3)])
    c.triangle(3, 9, 12, 4.5, fur)
    c.triangle(3, 23, 12, 4.5, fur)
    c.ellipse(18, 16, 9, 10, fur)
    for x in (12, 20):
        c.ellipse(16, x, 1.8, 1.3, (0.4, 0.8, 0.2))
    c.triangle(20, 16, 22, 1.5, (0.9, 0.5, 0.55))
    return c.img


def _deer(c: _Canvas) -> np.ndarray:
    coat = c.colour((0.6, 0.38, 0.18))
    for x in (9, 12, 20, 23):
        c.rect(17, 28, x, x + 1.6, coat)
    c.ellipse(16, 16, 5, 9.5, coat)
    c.rect(6, 14, 23, 26, coat)
    c.ellipse(6, 26, 2.5, 3.8, coat)
    c.rect(0, 5, 22, 23, (0.35, 0.25, 0.15))
    c.rect(0, 5, 27, 28, (0.35, 0.25, 0.15))
    return c.img


def _dog(c: _Canvas) -> np.ndarray:
    fur = c.colour([(0.6, 0.4, 0.2), (0.95, 0.9, 0.8), (0.3, 0.2, 0.12)][c.rng.integers(3)])
    c.ellipse(16, 16, 10, 8.5, fur)
    ears = c.colour(fur * 0.6, jitter=0.02)
    c.ellipse(14, 7, 7, 3, ears)
    c.ellipse(14, 25, 7, 3, ears)
    c.ellipse(21, 16, 3.5, 4.5, (0.9, 0.85, 0.75))
    c.ellipse(19.5, 16, 1.6, 2.2, (0.05, 0.05, 0.05))
    for x in (12.5, 19.5):
        c.ellipse(13, x, 1.3, 1.3, (0.05, 0.05, 0.05))
    return c.img


def _frog(c: _Canvas) -> np.ndarray:
    skin = c.colour((0.35, 0.78, 0.2))
    c.ellipse(19, 16, 8, 12, skin)
    for x in (10, 22):
        c.ellipse(11, x, 3.2, 3.2, skin)
        c.ellipse(10.5, x, 1.7, 1.7, (0.95, 0.85, 0.1))
        c.ellipse(10.5, x, 0.8, 0.8, (0.0, 0.0, 0.0))
    return c.img


def _horse(c: _Canvas) -> np.ndarray:
    coat = c.colour([(0.35, 0.2, 0.1), (0.1, 0.08, 0.07), (0.85, 0.82, 0.78)][c.rng.integers(3)])
    for x in (7, 10, 20, 23):
        c.rect(17, 30, x, x + 1.8, coat)
    c.ellipse(16, 15, 5.5, 10, coat)
    c.rect(5, 15, 21, 25, coat)
    c.ellipse(6, 26, 2.3, 4.5, coat)
    c.rect(4, 14, 20, 21, (0.1, 0.06, 0.04))
    return c.img


def _ship(c: _Canvas) -> np.ndarray:
    hull = c.colour([(0.85, 0.85, 0.88), (0.55, 0.1, 0.1), (0.15, 0.15, 0.2)][c.rng.integers(3)])
    c.triangle(30, 16, 15, 16, hull)       # an upside-down triangle cut off below: a hull
    c.rect(21, 32, 0, 32, c.colour((0.08, 0.28, 0.58), jitter=0.03))
    c.rect(10, 16, 10, 21, (0.9, 0.9, 0.9))
    c.rect(6, 10, 16, 18, (0.2, 0.2, 0.2))
    return c.img


def _truck(c: _Canvas) -> np.ndarray:
    c.rect(5, 22, 2, 21, c.colour([(0.9, 0.9, 0.9), (0.2, 0.45, 0.2), (0.9, 0.45, 0.1)][c.rng.integers(3)]))
    cab = c.colour((0.75, 0.1, 0.1))
    c.rect(11, 22, 22, 30, cab)
    c.rect(12, 16, 24, 29, (0.65, 0.85, 0.95))
    for x in (7, 15, 25):
        c.ellipse(23, x, 3.2, 3.2, (0.08, 0.08, 0.08))
    return c.img


_DRAWINGS = (_airplane, _automobile, _bird, _cat, _deer, _dog, _frog, _horse, _ship, _truck)
#: Each class's usual scene: `_Canvas.background`'s top colour, bottom colour and horizon (a row,
#: or None for a smooth gradient), in class order.
_SCENES: tuple[tuple, ...] = (
    ((0.35, 0.6, 0.92), (0.8, 0.9, 1.0), None),                    # airplane
    ((0.72, 0.78, 0.85), (0.33, 0.33, 0.35), 22),                  # automobile
    ((0.55, 0.75, 0.95), (0.65, 0.8, 0.6), None),                  # bird
    ((0.85, 0.78, 0.65), (0.55, 0.45, 0.35), None),                # cat
    ((0.25, 0.45, 0.2), (0.5, 0.42, 0.25), 21),                    # deer
    ((0.6, 0.8, 0.95), (0.35, 0.65, 0.25), 20),                    # dog
    ((0.12, 0.28, 0.12), (0.3, 0.38, 0.18), None),                 # frog
    ((0.6, 0.78, 0.95), (0.4, 0.62, 0.25), 19),                    # horse
    ((0.65, 0.82, 0.95), (0.08, 0.28, 0.58), 20),                  # ship
    ((0.72, 0.78, 0.85), (0.33, 0.33, 0.35), 22),                  # truck
)
