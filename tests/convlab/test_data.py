"""load_cifar10 on data made here in the real CIFAR-10 file format (pickled batches in
cifar-10-batches-py/, packed as cifar-10-python.tar.gz), with torchvision's md5 lists pointed at
these files and the network cut off, so nothing is downloaded."""
from __future__ import annotations

import hashlib
import pickle
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.utils as tv_utils
from torchvision.datasets import CIFAR10

import convlab
from convlab.data import CIFAR10_CLASSES, CorruptDataError, data_dir, load_cifar10, make_cifar10_stand_in
from convlab import data

PER_BATCH = 6
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _batch(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {  # the keys and layout of the real files: rows of 3072 = R plane, G plane, B plane
        "batch_label": f"batch {seed}",
        "labels": [int(v) for v in rng.integers(0, 10, PER_BATCH)],
        "data": rng.integers(0, 256, (PER_BATCH, 3072), dtype=np.uint8),
        "filenames": [f"img_{seed}_{i}.png" for i in range(PER_BATCH)],
    }


@pytest.fixture
def fake_cifar(tmp_path, monkeypatch):
    """A CIFAR-10 source in the real format: source/cifar-10-batches-py/* and source/cifar-10-python.tar.gz,
    with torchvision's expected md5s patched to match. The network raises URLError."""
    source = tmp_path / "source"
    folder = source / CIFAR10.base_folder
    folder.mkdir(parents=True)
    batches = {}
    for seed, name in enumerate(TRAIN_FILES + ["test_batch"]):
        batches[name] = _batch(seed)
        with open(folder / name, "wb") as f:
            pickle.dump(batches[name], f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"num_cases_per_batch": PER_BATCH, "label_names": list(CIFAR10_CLASSES),
                     "num_vis": 3072}, f, protocol=2)
    archive = source / CIFAR10.filename
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=CIFAR10.base_folder)
    monkeypatch.setattr(CIFAR10, "train_list", [[n, _md5(folder / n)] for n in TRAIN_FILES])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", _md5(folder / "test_batch")]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": _md5(folder / "batches.meta")})
    monkeypatch.setattr(CIFAR10, "tgz_md5", _md5(archive))
    calls = []

    def offline(*args, **kwargs):
        calls.append(args)
        raise urllib.error.URLError("no network in this test")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.delenv("CONVLAB_FAKE_DATA", raising=False)
    monkeypatch.delenv("CONVLAB_DATA_DIR", raising=False)
    return {"source": source, "folder": folder, "archive": archive, "batches": batches, "calls": calls}


def _install(fake, root: Path, *, folder: bool = True, archive: bool = False) -> Path:
    import shutil

    root.mkdir(parents=True, exist_ok=True)
    if folder:
        shutil.copytree(fake["folder"], root / CIFAR10.base_folder)
    if archive:
        shutil.copy(fake["archive"], root / CIFAR10.filename)
    return root


def _expected_images(batch: dict) -> np.ndarray:
    return batch["data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def test_real_format_is_loaded_with_labels_and_pixels_in_place(fake_cifar, tmp_path):
    root = _install(fake_cifar, tmp_path / "data")
    test = load_cifar10(train=False, root=root)
    assert not test.is_stand_in and "real images" in test.description and "STAND-IN" not in test.description
    assert np.array_equal(test.data, _expected_images(fake_cifar["batches"]["test_batch"]))
    assert test.targets == fake_cifar["batches"]["test_batch"]["labels"]
    assert test.classes == list(CIFAR10_CLASSES)
    image, label = test[2]
    assert image.dtype == torch.float32 and image.shape == (3, 32, 32)
    assert torch.equal(image, torch.from_numpy(_expected_images(fake_cifar["batches"]["test_batch"])[2]).permute(2, 0, 1) / 255)
    assert label == test.targets[2]
    train = load_cifar10(train=True, root=root)
    assert len(train) == 5 * PER_BATCH and not train.is_stand_in
    assert fake_cifar["calls"] == [], "nothing should be downloaded when the data is there"


def test_transforms_are_applied_like_torchvision(fake_cifar, tmp_path):
    root = _install(fake_cifar, tmp_path / "data")
    ds = load_cifar10(root=root, transform=lambda img: img.size, target_transform=lambda t: -t)
    assert ds[0] == ((32, 32), -ds.targets[0])


def test_download_path_fetches_verifies_and_extracts_the_archive(fake_cifar, tmp_path, monkeypatch):
    import shutil

    fetched = []

    def fake_urlretrieve(url, filename, chunk_size=0):
        fetched.append(url)
        shutil.copy(fake_cifar["archive"], filename)

    monkeypatch.setattr(tv_utils, "_get_redirect_url", lambda url, max_hops=3: url)
    monkeypatch.setattr(tv_utils, "_urlretrieve", fake_urlretrieve)
    root = tmp_path / "fresh"
    ds = load_cifar10(root=root)
    assert fetched == [CIFAR10.url]
    assert not ds.is_stand_in and (root / CIFAR10.filename).exists()
    assert np.array_equal(ds.data, _expected_images(fake_cifar["batches"]["test_batch"]))


def test_offline_without_data_falls_back_to_the_stand_in_and_says_so(fake_cifar, tmp_path):
    with pytest.warns(UserWarning, match="STAND-IN DATA, NOT CIFAR-10"):
        ds = load_cifar10(root=tmp_path / "empty")
    assert ds.is_stand_in
    assert "downloading it failed (URLError" in ds.description
    assert fake_cifar["calls"], "the loader should have tried to download"
    with pytest.warns(UserWarning, match="download=False"):
        assert load_cifar10(root=tmp_path / "empty2", download=False).is_stand_in


def test_fake_data_env_forces_the_stand_in_even_with_real_data(fake_cifar, tmp_path, monkeypatch):
    root = _install(fake_cifar, tmp_path / "data")
    monkeypatch.setenv("CONVLAB_FAKE_DATA", "1")
    ds = load_cifar10(root=root)
    assert ds.is_stand_in and "CONVLAB_FAKE_DATA=1 is set" in ds.description
    monkeypatch.setenv("CONVLAB_FAKE_DATA", "0")
    assert not load_cifar10(root=root).is_stand_in


def test_data_dir_is_the_repository_data_folder_unless_overridden(fake_cifar, tmp_path, monkeypatch):
    assert data_dir() == Path(convlab.__file__).resolve().parent.parent / "data"
    root = _install(fake_cifar, tmp_path / "elsewhere")
    monkeypatch.setenv("CONVLAB_DATA_DIR", str(root))
    assert data_dir() == root
    assert not load_cifar10().is_stand_in


def test_truncated_batch_says_what_to_delete(fake_cifar, tmp_path):
    root = _install(fake_cifar, tmp_path / "data")
    batch = root / CIFAR10.base_folder / "test_batch"
    batch.write_bytes(batch.read_bytes()[:1000])          # a truncated pickle: md5 no longer matches
    with pytest.raises(CorruptDataError) as info:
        load_cifar10(root=root)
    msg = str(info.value)
    assert "cifar-10-batches-py/test_batch is corrupt (md5" in msg
    assert f"rm -rf {root / CIFAR10.base_folder}" in msg
    assert "load_cifar10()" in msg and "CONVLAB_FAKE_DATA=1" in msg
    with pytest.raises(CorruptDataError, match="test_batch is corrupt"):
        load_cifar10(root=root, download=False)


def test_missing_batch_with_an_intact_archive_is_repaired_offline(fake_cifar, tmp_path):
    root = _install(fake_cifar, tmp_path / "data", archive=True)
    (root / CIFAR10.base_folder / "data_batch_3").unlink()   # an interrupted extraction
    ds = load_cifar10(train=True, root=root)
    assert not ds.is_stand_in and len(ds) == 5 * PER_BATCH
    assert fake_cifar["calls"] == []


def test_partial_archive_download_says_to_delete_the_archive(fake_cifar, tmp_path):
    root = _install(fake_cifar, tmp_path / "data", folder=False, archive=True)
    archive = root / CIFAR10.filename
    archive.write_bytes(archive.read_bytes()[:200])        # a download cut off half way
    with pytest.raises(CorruptDataError) as info:
        load_cifar10(root=root)
    msg = str(info.value)
    assert "cifar-10-python.tar.gz is corrupt or a partial download" in msg
    assert f"rm -rf {archive}" in msg
    assert "URLError" in msg, "the message should say why repairing it failed"


def test_bad_pickle_with_matching_md5_is_reported_as_corrupt(fake_cifar, tmp_path, monkeypatch):
    root = _install(fake_cifar, tmp_path / "data")
    batch = root / CIFAR10.base_folder / "test_batch"
    batch.write_bytes(batch.read_bytes()[:500])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", _md5(batch)]])
    with pytest.raises(CorruptDataError, match="rm -rf"):
        load_cifar10(root=root)


def test_stand_in_has_cifar10_shapes_dtype_and_classes():
    ds = make_cifar10_stand_in(train=False, size=50)
    assert ds.is_stand_in and "STAND-IN DATA, NOT CIFAR-10" in ds.description
    assert ds.data.dtype == np.uint8 and ds.data.shape == (50, 32, 32, 3)
    assert ds.classes == list(CIFAR10_CLASSES) and len(ds.classes) == 10
    assert sorted(set(ds.targets)) == list(range(10)) and all(ds.targets.count(c) == 5 for c in range(10))
    image, label = ds[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1 and 0 <= label < 10
    assert len(make_cifar10_stand_in()) == 1000 and len(make_cifar10_stand_in(train=True, size=30)) == 30


def test_stand_in_is_deterministic_and_leaves_global_randomness_alone():
    torch.manual_seed(5)
    np.random.seed(5)
    before = (torch.rand(1), np.random.rand())
    torch.manual_seed(5)
    np.random.seed(5)
    a = make_cifar10_stand_in(size=40)
    assert (torch.rand(1), np.random.rand()) == before
    b = make_cifar10_stand_in(size=40)
    assert np.array_equal(a.data, b.data) and a.targets == b.targets
    assert not np.array_equal(a.data, make_cifar10_stand_in(train=True, size=40).data)


def nearest_mean_accuracy():
    """Accuracy on 300 test images of a nearest-class-mean classifier on 8×8 thumbnails, fitted on 1,000
    training images of the stand-in."""
    train, test = make_cifar10_stand_in(train=True, size=1000), make_cifar10_stand_in(size=300)
    thumbs = lambda ds: torch.nn.functional.avg_pool2d(
        torch.from_numpy(ds.data).permute(0, 3, 1, 2).float() / 255, 4).flatten(1)
    Xtr, ytr, Xte, yte = thumbs(train), torch.tensor(train.targets), thumbs(test), torch.tensor(test.targets)
    means = torch.stack([Xtr[ytr == c].mean(0) for c in range(10)])
    return (torch.cdist(Xte, means).argmin(1) == yte).float().mean().item()


def test_stand_in_classes_look_different(monkeypatch):
    """Each class is a drawing of its own (not noise): the drawings alone (no shift, scale, other
    scenes, clutter, contrast, brightness, label noise; a little noise), a nearest-class-mean
    classifier on 8×8 thumbnails, fitted on the training stand-in, labels most test images correctly."""
    monkeypatch.setattr(data, "_HARDNESS", {
        "shift": 0.0, "scale": (1.0, 1.0), "other_scene": 0.0, "clutter": 0.0, "contrast": (1.0, 1.0),
        "brightness": 0.0, "noise": (0.03, 0.03), "wrong_drawing": 0.0})
    accuracy = nearest_mean_accuracy()
    assert accuracy > 0.6, f"nearest-mean accuracy {accuracy:.2f}: the classes hardly differ"


def test_stand_in_is_not_told_apart_by_colour_and_layout_alone():
    """As made (placement, other scenes, clutter, noise, wrong labels), the same classifier is far from
    its accuracy on the drawings alone, yet well above chance (10%): lesson 6's network has to learn
    shapes, and cannot learn everything."""
    accuracy = nearest_mean_accuracy()
    assert 0.25 < accuracy < 0.6, f"nearest-mean accuracy {accuracy:.2f}"


def test_bad_stand_in_size_is_refused():
    with pytest.raises(ValueError, match="positive number of images"):
        make_cifar10_stand_in(size=0)
