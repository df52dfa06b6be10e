"""Grading on Kubernetes as a Job (hub/k8s/grading.py; on paper: no cluster here): what its pod is
given and denied, and its own command run on this machine on a course folder laid out as the
course volume is, then the instructor's two steps around it (hub/grade.py --collect-only,
--release-only)."""
from __future__ import annotations

import os
import subprocess
import sys

import nbformat
import pytest
import yaml
from nbgrader.api import Gradebook

from grader import samples
from grader.course import ROOT
from hub import grade
from hub.k8s import grading

ASSIGNMENT = "01_cross_correlation"
IMAGE = "registry.example.org/convlab/instructor:2026.12"


def _pod(**kw) -> dict:
    return grading.job(ASSIGNMENT, IMAGE, **kw)["spec"]["template"]


def test_the_job_pod_gets_no_token_no_secret_and_no_service_addresses():
    """Check that the grading pod has no service-account token, secret, hub token or service links."""
    pod = _pod()["spec"]
    account = next(d for d in grading.setup() if d["kind"] == "ServiceAccount")
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is False and account["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    (container,) = pod["containers"]
    assert "envFrom" not in container
    names = [e["name"] for e in container["env"]]
    assert not [n for n in names if any(w in n.upper() for w in ("TOKEN", "SECRET", "PASSWORD", "JUPYTERHUB"))]
    assert all("valueFrom" not in e for e in container["env"])
    assert not [v for v in pod["volumes"] if set(v) & {"secret", "projected", "hostPath"}]


def test_the_network_policy_cuts_the_job_pod_off():
    """Check that the NetworkPolicy selects the grading pod and allows nothing in or out."""
    policy = next(d for d in grading.setup() if d["kind"] == "NetworkPolicy")
    labels = _pod()["metadata"]["labels"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector and selector.items() <= labels.items()
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in policy["spec"] and "egress" not in policy["spec"]
    # and it is not one of the pods the chart's own policies let reach the hub
    assert not [k for k in labels if k.startswith("hub.jupyter.org/")]


def test_the_job_grades_in_the_sandbox_unprivileged_and_bounded():
    """Check that the Job never passes --no-sandbox, runs as the image's user with no capabilities, and ends."""
    job = grading.job(ASSIGNMENT, IMAGE, runtime_class="gvisor")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "--no-sandbox" not in container["command"] and "--no-release" in container["command"]
    assert "--no-collect" in container["command"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    assert container["resources"]["limits"]["memory"] and container["resources"]["limits"]["cpu"]
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] > 0
    assert pod["runtimeClassName"] == "gvisor" and "runtimeClassName" not in _pod()["spec"]


def test_the_job_mounts_the_staffs_course_volume_where_the_command_grades():
    """Check that the Job's course is the volume setup makes and the staff mount (values.yaml), at --course."""
    pod = _pod()["spec"]
    (claim,) = [d for d in grading.setup() if d["kind"] == "PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    (course,) = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert course["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    hook = yaml.safe_load((ROOT / "hub" / "k8s" / "values.yaml").read_text())["hub"]["extraConfig"]["convlab-groups"]
    assert f'"claimName": "{claim["metadata"]["name"]}"' in hook
    (container,) = pod["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == course["name"]]
    command = container["command"]
    assert command[command.index("--course") + 1] == mount["mountPath"]


@pytest.mark.parametrize("assignment, image, message", [
    ("07_transformers", IMAGE, "is not an assignment"),
    ("../solutions", IMAGE, "is not an assignment"),
    (ASSIGNMENT, "", "give the instructor image"),
    (ASSIGNMENT, "x y", "give the instructor image"),
])
def test_a_wrong_assignment_or_image_is_refused_with_what_to_give(assignment, image, message):
    """Check that the Job is not rendered for an unknown assignment or a malformed image."""
    with pytest.raises(ValueError, match=message):
        grading.job(assignment, image)
    proc = subprocess.run([sys.executable, "-m", "hub.k8s.grading", "job", assignment, "--image", image],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and message in proc.stderr and not proc.stdout


def test_the_rendered_manifests_are_what_kubectl_reads():
    """Check that the command prints YAML documents of the Job and of the setup."""
    out = subprocess.run([sys.executable, "-m", "hub.k8s.grading", "job", ASSIGNMENT, "--image", IMAGE],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    (job,) = yaml.safe_load_all(out)
    assert job == grading.job(ASSIGNMENT, IMAGE)
    out = subprocess.run([sys.executable, "-m", "hub.k8s.grading", "setup"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert [d["kind"] for d in yaml.safe_load_all(out)] == ["PersistentVolumeClaim", "ServiceAccount", "NetworkPolicy"]


def _course(tmp_path, student="alice"):
    home = tmp_path / "home"
    course = home / "convlab"
    sub = course / "submitted" / student / ASSIGNMENT
    sub.mkdir(parents=True)
    nbformat.write(samples.solved(ASSIGNMENT), sub / f"{ASSIGNMENT}.ipynb")
    (sub / "timestamp.txt").write_text("2026-12-01 10:00:00.000000 UTC")
    return home, course


def test_the_jobs_own_command_grades_the_course_volume(tmp_path):
    """Check that the Job's command, with only the Job's environment, grades a collected submission
    into the gradebook and writes its feedback, releasing nothing."""
    home, course = _course(tmp_path)
    (container,) = _pod()["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["HOME"] == grading.HOME
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {grading.HOME, grading.COURSE, "/tmp"} <= mounts

    def here(word: str) -> str:            # the image's paths -> this machine's
        for image_path, local in ((grading.COURSE, course), (grading.HOME, home), (grading.SOURCE, ROOT)):
            if word == image_path or word.startswith(image_path + "/"):
                return str(local) + word[len(image_path):]
        return word

    command = [sys.executable if w == "python" else here(w) for w in container["command"]]
    env = {**{k: here(v) for k, v in env.items()},
           "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}/usr/bin:/bin"}
    proc = subprocess.run(command, cwd=here(container["workingDir"]), env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        submission = gb.find_submission(ASSIGNMENT, "alice")
        assert submission.max_score > 0 and submission.score == submission.max_score
    assert (course / "feedback" / "alice" / ASSIGNMENT / f"{ASSIGNMENT}.html").is_file()
    assert "release_feedback" not in proc.stdout


def _steps(monkeypatch, argv) -> list[list[str]]:
    ran = []
    monkeypatch.setattr(grade, "run", lambda cmd, cwd: ran.append(cmd))
    grade.main(argv)
    return [cmd[2:4] for cmd in ran]


def test_the_instructors_steps_around_the_job(tmp_path, monkeypatch):
    """Check that --collect-only only collects and --release-only only releases written feedback."""
    _, course = _course(tmp_path)
    assert _steps(monkeypatch, [ASSIGNMENT, "--course", str(course), "--collect-only"]) == [["nbgrader", "collect"]]
    with pytest.raises(SystemExit, match="no feedback for 01_cross_correlation"):
        _steps(monkeypatch, [ASSIGNMENT, "--course", str(course), "--release-only"])
    page = course / "feedback" / "alice" / ASSIGNMENT / f"{ASSIGNMENT}.html"
    page.parent.mkdir(parents=True)
    page.write_text("<p>feedback</p>")
    assert _steps(monkeypatch, [ASSIGNMENT, "--course", str(course), "--release-only"]) == \
        [["nbgrader", "release_feedback"]]
    with pytest.raises(SystemExit):
        _steps(monkeypatch, [ASSIGNMENT, "--course", str(course), "--collect-only", "--release-only"])
