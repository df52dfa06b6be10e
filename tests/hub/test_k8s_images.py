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
    spawner = SimpleNamespace(image=default, environment={}, volumes=[], volume_mounts=[],
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


def test_only_the_staff_mount_the_shared_course():
    """Instructors and TAs mount the course volume the grading Job mounts (one gradebook); students do not."""
    from hub.k8s import grading
    student, instructor = _spawn(["nbgrader-convlab"]), _spawn(["formgrade-convlab"])
    assert not student.volumes and not student.volume_mounts and "CONVLAB_COURSE_DIR" not in student.environment
    claims = [v["persistentVolumeClaim"]["claimName"] for v in instructor.volumes]
    assert claims == [grading.COURSE_CLAIM]
    (mount,) = instructor.volume_mounts
    assert mount["mountPath"] == instructor.environment["CONVLAB_COURSE_DIR"]
    assert mount["name"] == instructor.volumes[0]["name"]


def _values() -> dict:
    return yaml.safe_load((ROOT / "hub" / "k8s" / "values.yaml").read_text())


def _groups_from(auth_state):
    c = Config()
    exec(_values()["hub"]["extraConfig"]["convlab-oauth-groups"], {"c": c})   # noqa: S102 - our own config
    return c.GenericOAuthenticator.auth_state_groups_key(auth_state)


def test_oauth_fills_the_course_groups_from_the_identity_providers_claim():
    """(On paper: OAuthenticator is not installed here; what is checked is our mapping and settings.)"""
    oauth = _values()["hub"]["config"]["GenericOAuthenticator"]
    assert oauth["manage_groups"] is True
    assert set(oauth["allowed_groups"]) == {"formgrade-convlab", "nbgrader-convlab"}
    assert _groups_from({"oauth_user": {"groups": ["convlab-staff", "physics"]}}) == ["formgrade-convlab"]
    assert _groups_from({"oauth_user": {"groups": ["convlab-students"]}}) == ["nbgrader-convlab"]
    assert _groups_from({"oauth_user": {"groups": "convlab-students"}}) == ["nbgrader-convlab"]
    assert _groups_from({"oauth_user": {"groups": ["physics"]}}) == []           # not in the course
    assert _groups_from({"oauth_user": {}}) == [] and _groups_from(None) == []
    # the groups it fills are the ones the spawn hook and nbgrader's JupyterHubAuthPlugin read
    assert "instructor" in _spawn(_groups_from({"oauth_user": {"groups": ["convlab-staff"]}})).image


def test_the_pod_security_context_keeps_the_charts_fsgroup():
    """KubeSpawner's make_pod sets fsGroup from fs_gid, then updates it with pod_security_context;
    singleuser.extraPodConfig.securityContext would replace the whole pod securityContext."""
    values = _values()
    assert "securityContext" not in (values["singleuser"].get("extraPodConfig") or {})
    psc = values["hub"]["config"]["KubeSpawner"]["pod_security_context"]
    assert "fsGroup" not in psc and psc["seccompProfile"] == {"type": "Unconfined"}
    assert values["singleuser"]["fsGid"] == 100
