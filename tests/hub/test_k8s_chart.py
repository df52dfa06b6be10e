"""hub/k8s against the Zero to JupyterHub chart it is written for (tests/hub/z2jh-4.4.0: the chart's
values schema and defaults, and the versions its hub runs; no cluster or helm here), and the image's
install line resolved with uv against the lock, as the student image runs it (PyPI is needed)."""
from __future__ import annotations

import copy
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from grader.course import ROOT
from tests.test_environment import _lock

CHART_DIR = Path(__file__).with_name("z2jh-4.4.0")
VALUES = ROOT / "hub" / "k8s" / "values.yaml"
IMAGE = ROOT / "hub" / "k8s" / "image"
UV = Path(sys.executable).with_name("uv")


def _chart() -> dict:
    return yaml.safe_load((CHART_DIR / "CHART").read_text())


def _coalesce(defaults: dict, values: dict) -> dict:
    """Helm's merge of a chart's defaults with the user's values: maps merge key by key, anything
    else replaces, null removes the default."""
    out = dict(defaults)
    for key, value in values.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _coalesce(out[key], value)
        else:
            out[key] = value
    return out


def _errors(values: dict) -> list[str]:
    """What helm would refuse: the merged values against the chart's values.schema.json."""
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    merged = _coalesce(yaml.safe_load((CHART_DIR / "values.yaml").read_text()), values)
    return [f"{'.'.join(map(str, e.path))}: {e.message}"
            for e in jsonschema.Draft7Validator(schema).iter_errors(merged)]


def _values() -> dict:
    return yaml.safe_load(VALUES.read_text())


def test_the_values_are_valid_for_the_chart():
    """Check that values.yaml, merged with the chart's defaults, passes the chart's schema."""
    assert _errors(_values()) == []


@pytest.mark.parametrize("path, value, expected", [
    ("singleuser.imagee", {"name": "x"}, "'imagee' was unexpected"),        # a misspelt key
    ("singleuser.cpu.limit", "two", "'two' is not of type"),               # a wrong type
    ("cull.timeout", "1h", "'1h' is not of type"),
    ("hub.networkPolicy.egressAllowRules.everything", True, "'everything' was unexpected"),
])
def test_the_check_catches_a_mistake_in_our_values(path, value, expected):
    """Check that the schema check refuses our own values with one mistake put in."""
    values = copy.deepcopy(_values())
    *parents, last = path.split(".")
    node = values
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    errors = _errors(values)
    assert any(expected in e for e in errors), errors


def test_the_instructions_install_the_chart_checked_here():
    """Check that values.yaml's helm command pins the chart version whose schema is checked."""
    text = VALUES.read_text()
    installs = re.findall(r"helm upgrade --install \S+ jupyterhub/jupyterhub --version (\S+)", text)
    assert installs == [str(_chart()["chart"])]


def test_service_tokens_use_the_key_the_chart_reads():
    """Check that no service's token is given as `api_token` (the chart's jupyterhub_config.py drops
    it and sets the token from `hub.services.NAME.apiToken`) and the instructions set apiToken."""
    services = _values()["hub"]["services"]
    assert services and all("api_token" not in s for s in services.values())
    text = VALUES.read_text()
    assert "--set hub.services.ngshare.apiToken=" in text and "services.ngshare.api_token=" not in text


def _pins(path: Path, python: str = "3.11.14") -> dict[str, str]:
    """name -> exact version, from a requirements file of pins (tests/test_environment.py reads
    them), those whose markers hold on Linux x86_64 with this Python."""
    where = {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
             "os_name": "posix", "implementation_name": "cpython", "platform_python_implementation": "CPython",
             "python_full_version": python, "python_version": ".".join(python.split(".")[:2])}
    return {name: str(version) for name, version, marker, _ in _lock(path) if marker is None or marker.evaluate(where)}


def test_the_image_runs_the_chart_hubs_jupyterhub_major():
    """Check that the image's JupyterHub has the major version of the chart's hub (the lock's 6.x is the
    one-machine hub's)."""
    image, chart = _pins(IMAGE / "overrides.txt")["jupyterhub"], str(_chart()["jupyterhub"])
    assert image.split(".")[0] == chart.split(".")[0], (image, chart)


def _install_line() -> tuple[list[str], str, str]:
    """The student image's `uv pip install` of the lock: its arguments with the image's paths
    mapped back to the repository's files (through the Dockerfile's COPY lines), uv's version and
    the image's Python."""
    text = (IMAGE / "student.Dockerfile").read_text().replace("\\\n", " ")
    copies: dict[str, Path] = {}
    for line in text.splitlines():
        if line.startswith("COPY "):
            *sources, dest = [w for w in shlex.split(line)[1:] if not w.startswith("--")]
            for src in sources:
                copies[dest.rstrip("/") + "/" + Path(src).name if dest.endswith("/") else dest] = ROOT / src
    (python,) = re.findall(r"^FROM python:(\d+\.\d+\.\d+)-", text, re.M)
    (uv_version,) = re.findall(r"pip install --no-cache-dir uv==(\S+)", text)
    (run,) = [ln for ln in text.splitlines() if "uv pip install" in ln and "--requirement" in ln]
    words = shlex.split(run.split("uv pip install", 1)[1].split("&&")[0])
    args = [str(copies[w]) if w in copies else w for w in words if w not in ("--system", "--no-cache")]
    return args, uv_version, python


def test_the_image_installs_from_the_files_checked_here():
    """Check that the image installs the lock with the two files of hub/k8s/image, with the lock's uv."""
    args, uv_version, _ = _install_line()
    files = [Path(a) for a in args if a.startswith("/")]
    assert files == [ROOT / "requirements.txt", IMAGE / "requirements.in", IMAGE / "overrides.txt"]
    assert args[args.index(str(IMAGE / "overrides.txt")) - 1] == "--override"
    assert uv_version == _pins(ROOT / "requirements.txt")["uv"]


def _resolve(args: list[str], python: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(UV), "pip", "install", "--dry-run", "--target", str(tmp_path / "t"),
                           "--python-version", python, "--python-platform", "x86_64-manylinux_2_28", *args],
                          capture_output=True, text=True, timeout=600)


def test_the_image_install_line_resolves_against_the_lock(tmp_path):
    """Check that the image's install line resolves (uv, from PyPI), keeping every version of the lock
    but the overridden ones, with the chart hub's JupyterHub and the exchange."""
    args, _, python = _install_line()
    proc = _resolve(args, python, tmp_path)
    assert proc.returncode == 0, proc.stderr
    chosen = dict(re.findall(r"^ \+ (\S+)==(\S+)$", proc.stderr + proc.stdout, re.M))
    overrides = _pins(IMAGE / "overrides.txt")
    changed = {n: (v, chosen.get(n)) for n, v in _pins(ROOT / "requirements.txt", python).items()
               if n not in overrides and chosen.get(n) != v}
    assert not changed, changed                                # the lock, as locked
    assert chosen["jupyterhub"] == str(_chart()["jupyterhub"])
    assert chosen["ngshare-exchange"] == _pins(IMAGE / "requirements.in")["ngshare-exchange"]
    assert chosen["jupyter-core"] == overrides["jupyter-core"]


def test_without_its_overrides_the_install_line_does_not_resolve(tmp_path):
    """Check that the override is what makes it resolve: ngshare_exchange's jupyter_core pin against the lock's."""
    args, _, python = _install_line()
    cut = args.index("--override")
    proc = _resolve(args[:cut] + args[cut + 2:], python, tmp_path)
    assert proc.returncode != 0
    assert "ngshare-exchange" in proc.stderr and "jupyter-core<4.11.2" in proc.stderr, proc.stderr
