"""The install files agree: environment.yml (conda) installs exactly the pinned requirements.txt."""
from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DIRECT = ["torch", "torchvision", "jupyterlab", "matplotlib", "nbgrader", "pytest", "nbval",
          "ipywidgets", "tqdm", "nbclient", "nbformat", "ipykernel"]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"requirements.txt: {line!r} is not pinned with =="
            pins[name.lower().replace("_", "-")] = version
    return pins


@pytest.mark.parametrize("package", DIRECT)
def test_direct_needs_are_pinned_and_installed(package):
    pins = _pins()
    assert package in pins, f"{package} is missing from requirements.txt"
    assert metadata.version(package) == pins[package], (
        f"{package} {metadata.version(package)} is installed but requirements.txt pins {pins[package]}; "
        "re-run `make venv` (delete .venv/.installed first)")


def test_environment_yml_installs_the_requirements_and_this_python():
    text = (ROOT / "environment.yml").read_text()
    assert re.search(r"^\s*- -r requirements\.txt\s*$", text, re.M), "environment.yml must install requirements.txt"
    assert re.search(r"^\s*- -e \.\s*$", text, re.M), "environment.yml must install convlab (-e .)"
    python = re.search(r"^\s*- python=(\d+\.\d+)\s*$", text, re.M)
    assert python, "environment.yml must pin python=X.Y"
    assert python.group(1) == f"{sys.version_info.major}.{sys.version_info.minor}"
