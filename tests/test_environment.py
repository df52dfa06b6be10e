"""The install files agree with each other and with what is installed.

requirements.in (direct needs) -> requirements.txt (the lock, `make lock`) -> .venv (`make venv`);
pyproject.toml declares the same direct needs; environment.yml (conda) installs the lock.
"""
from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def _direct() -> dict[str, Requirement]:
    """requirements.in: name -> requirement."""
    reqs = {}
    for line in (ROOT / "requirements.in").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            reqs[canonicalize_name(req.name)] = req
    return reqs


def _lock(path: Path = ROOT / "requirements.txt") -> list[tuple[str, Version, Marker | None, str]]:
    """A requirements file of exact pins (the lock, by default): (name, pinned version, marker,
    `# via` note) for every line."""
    pins = []
    for line in path.read_text().splitlines():
        spec, _, note = line.partition("#")
        spec = spec.strip()
        if not spec:
            continue
        req = Requirement(spec)
        [pin] = list(req.specifier)
        assert pin.operator == "==", f"{path.name}: {line!r} is not pinned with =="
        pins.append((canonicalize_name(req.name), Version(pin.version), req.marker, note))
    return pins


def _pinned_here() -> dict[str, Version]:
    """The lock's pins that apply to this machine and Python."""
    return {name: version for name, version, marker, _ in _lock() if marker is None or marker.evaluate()}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_direct_need_is_locked_at_a_version_it_allows():
    locked: dict[str, list[Version]] = {}
    for name, version, _, note in _lock():
        locked.setdefault(name, []).append(version)
    for name, req in _direct().items():
        assert name in locked, f"{name} is in requirements.in but not in requirements.txt: run `make lock`"
        for version in locked[name]:
            assert req.specifier.contains(version, prereleases=True), (
                f"requirements.txt pins {name}=={version}, which requirements.in ({req}) excludes: "
                "run `make lock`")


def test_the_lock_lists_no_stale_direct_needs():
    direct = set(_direct())
    marked = {name for name, _, _, note in _lock() if "-r requirements.in" in note}
    assert marked == direct, (f"requirements.txt is not compiled from this requirements.in "
                              f"(only in the lock: {sorted(marked - direct)}, only in requirements.in: "
                              f"{sorted(direct - marked)}): run `make lock`")


def test_the_lock_is_universal_cuda_only_on_linux():
    """A `pip freeze` of one machine would pin CUDA wheels for everyone; the lock must mark them."""
    cuda = [(name, marker) for name, _, marker, _ in _lock() if re.match(r"(nvidia-|cuda-|triton)", name)]
    assert cuda, "torch's CUDA dependencies are expected in the lock (for Linux)"
    for name, marker in cuda:
        assert marker is not None, f"{name} is in the lock without a marker: macOS would try to install it"
        for python in ("3.11.2", "3.13.0"):
            mac = {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64",
                   "python_full_version": python, "python_version": python[:4]}
            assert not marker.evaluate(mac), f"{name} would be installed on macOS ({marker})"


def test_pyproject_declares_the_direct_needs_like_requirements_in():
    project = _pyproject()["project"]
    declared = list(project["dependencies"])
    for group, items in project["optional-dependencies"].items():
        declared += [i for i in items if not i.startswith("convlab")]
    direct = _direct()
    for item in declared:
        req = Requirement(item)
        name = canonicalize_name(req.name)
        assert name in direct, f"pyproject.toml declares {item!r}, which requirements.in lacks"
        assert req.specifier == direct[name].specifier, (
            f"pyproject.toml says {item!r} but requirements.in says {direct[name]}")
    names = {canonicalize_name(Requirement(i).name) for i in declared}
    imported = {"torch", "torchvision", "numpy", "pillow", "matplotlib", "matplotlib-inline", "ipython",
                "ipywidgets", "nbgrader", "nbclient", "nbformat", "ipykernel", "jupyter-client", "pyzmq",
                "traitlets", "psutil", "tqdm"}
    assert imported <= names, f"imported directly but not declared: {sorted(imported - names)}"
    assert {"convlab", "grader"} <= set(_pyproject()["tool"]["setuptools"]["packages"])


@pytest.mark.parametrize("package", sorted(_direct()))
def test_direct_needs_are_installed_at_the_locked_version(package):
    pins = _pinned_here()
    if package not in pins:
        pytest.skip(f"{package} is not for this platform")
    installed = Version(metadata.version(package))
    # compare public versions: `make venv TORCH=cpu` installs e.g. 2.14.1+cpu for a pinned 2.14.1
    assert Version(installed.public) == pins[package], (
        f"{package} {installed} is installed but requirements.txt pins {pins[package]}; "
        "re-run `make venv` (delete .venv/.installed first)")


def _lower(spec: str) -> str:
    return re.search(r">=\s*(\d+\.\d+)", spec).group(1)


def test_the_python_versions_agree():
    """environment.yml, pyproject.toml, the lock's compile command and the Makefile's check all
    say the same lowest Python (and the README says it too)."""
    env = (ROOT / "environment.yml").read_text()
    assert re.search(r"^\s*- -r requirements\.txt\s*$", env, re.M), "environment.yml must install requirements.txt"
    assert re.search(r"^\s*- -e \.\s*$", env, re.M), "environment.yml must install convlab (-e .)"
    python = re.search(r"^\s*- python\s*([<>=,.\d\s]+)$", env, re.M)
    assert python, "environment.yml must give the Python versions (python>=X.Y,<X.Z)"
    lowest = _lower(_pyproject()["project"]["requires-python"])
    assert _lower(python.group(1)) == lowest
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(rf"pip compile .*--python-version {re.escape(lowest)}\b", makefile)
    assert f"v < ({lowest.replace('.', ', ')})" in makefile
    assert f"Python {lowest}" in (ROOT / "README.md").read_text()


def test_the_slow_optional_packages_are_left_out():
    """The Makefile's LOCK_OMIT packages (rfc3987-syntax builds ~20 parsers when jsonschema, hence
    nbformat and Jupyter Server, is imported) are neither in the lock nor in `make`'s venv, and
    jsonschema, which would use them, works without them."""
    omitted = re.search(r"^LOCK_OMIT\s*:=\s*(.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert omitted, "the Makefile no longer says which packages the lock leaves out (LOCK_OMIT)"
    names = {canonicalize_name(n) for n in omitted.group(1).split()}
    assert "rfc3987-syntax" in names
    assert not names & {name for name, *_ in _lock()}, "requirements.txt pins a LOCK_OMIT package: run `make lock`"
    if Path(sys.prefix).resolve() == (ROOT / ".venv").resolve():
        present = {n for n in names if importlib.util.find_spec(n.replace("-", "_")) is not None}
        assert not present, f"{sorted(present)} installed in .venv: re-run `make venv` (delete .venv/.installed first)"
    import jsonschema
    jsonschema.validate({"a": "x"}, {"properties": {"a": {"format": "iri"}}},
                        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
