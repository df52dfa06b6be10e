"""hub/k8s (on paper: no cluster or registry here): what can be checked without one. The student
image copies nothing of the source, its .dockerignore admits exactly what it copies, and the spawn
hook in values.yaml gives the instructor image (with the source) to instructors only."""
from __future__ import annotations

import shlex
from pathlib import Path
from types import SimpleNamespace

import yaml
from traitlets.config import Config

from grader.course import ROOT

IMAGES = ROOT / "hub" / "k8s" / "image"
SOURCE_ONLY = ("solutions", "grader", "notebooks", "tests", ".git", "hub/grade.py", "hub/jupyter/instructor",
               "hub/k8s/jupyter/instructor")


def _copied(dockerfile: Path) -> list[str]:
    """The build-context paths a Dockerfile's COPY lines take (not --from stages)."""
    sources = []
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY "):
            words = [w for w in shlex.split(line)[1:] if not w.startswith("--")]
            sources += words[:-1]
    return sources


def test_the_student_image_copies_nothing_of_the_source():
    copied = _copied(IMAGES / "student.Dockerfile")
    assert copied and "." not in copied
    leaked = [c for c in copied if any(c == s or c.startswith(s + "/") for s in SOURCE_ONLY)]
    assert not leaked, leaked
    assert all((ROOT / c).exists() for c in copied), copied


def test_the_student_build_context_admits_exactly_what_it_copies():
    lines = [ln.strip() for ln in (IMAGES / "student.Dockerfile.dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*"                                  # everything out, then ...
    admitted = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert admitted == {c.rstrip("/") for c in _copied(IMAGES / "student.Dockerfile")}


def test_the_instructor_build_context_leaves_out_the_history():
    lines = (IMAGES / "instructor.Dockerfile.dockerignore").read_text().splitlines()
    assert ".git" in lines and ".venv" in lines


def _hook():
    values = yaml.safe_load((ROOT / "hub" / "k8s" / "values.yaml").read_text())
    c = Config()
    exec(values["hub"]["extraConfig"]["convlab-groups"], {"c": c})   # noqa: S102 - our own config
    return c.KubeSpawner.pre_spawn_hook, values["singleuser"]["image"]["name"]


def _spawn(groups: list[str]):
    hook, default = _hook()
    spawner = SimpleNamespace(image=default, environment={},
                              user=SimpleNamespace(groups=[SimpleNamespace(name=g) for g in groups]))
    hook(spawner)
    return spawner


def test_only_instructors_get_the_image_with_the_source():
    student, instructor = _spawn(["nbgrader-convlab"]), _spawn(["formgrade-convlab"])
    assert "student" in student.image and "source" not in student.environment["JUPYTER_CONFIG_PATH"]
    assert "instructor" in instructor.image
    assert instructor.environment["JUPYTER_CONFIG_PATH"].startswith("/srv/convlab/source/")
    nobody = _spawn([])                                     # neither group: the student image
    assert nobody.image == student.image
