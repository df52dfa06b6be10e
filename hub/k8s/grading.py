"""Grading on Kubernetes in a Job of its own, not in the instructor's pod (which holds the
instructor's hub token and reaches the hub and ngshare). ON PAPER: there is no cluster here;
tests/hub/test_k8s_grading.py checks the manifests and runs the Job's own command on this machine.

    python -m hub.k8s.grading setup | kubectl apply -n NAMESPACE -f -                 # once a term
    python -m hub.k8s.grading job 01_cross_correlation \\
        --image REGISTRY/convlab/instructor:TAG | kubectl create -n NAMESPACE -f -     # each grading

An assignment is graded in three steps:

1. the instructor, in their pod: `python /srv/convlab/source/hub/grade.py A --collect-only`
   (ngshare needs the instructor's token: collecting stays in the pod that has it);
2. the Job: `hub/grade.py A --no-collect --no-release` on the course volume: grading (with the
   grader's bubblewrap sandboxes), the gradebook, the feedback pages and the class report;
3. the instructor: `python /srv/convlab/source/hub/grade.py A --release-only`.

What the Job's pod has, and what it has not:
* the course volume (`convlab-course`, ReadWriteMany: the one every instructor's and TA's pod
  mounts, so the staff share one gradebook) at ~/convlab, the path it has in their pods;
* no service-account token (`automountServiceAccountToken: false`, a service account without
  roles), no services' addresses in its environment (`enableServiceLinks: false`), no secret and
  no hub token in its environment;
* no network: the `convlab-grading` NetworkPolicy (from `setup`) selects it and allows nothing in
  or out (not even DNS; it needs a network plugin that enforces policies), and it lacks the label
  the chart's hub policy admits (`hub.jupyter.org/network-access-hub`);
* student code in the grader's sandboxes, as on one machine (bubblewrap needs user namespaces:
  seccomp `Unconfined`, as the instructors' pods); `--runtime-class` (gVisor, Kata) puts the
  whole pod in a runtime that isolates it from the node as well. The Job never grades with
  --no-sandbox: without the sandboxes, students' code would share the pod with the solutions and
  the gradebook.

Who creates Jobs: the course's operator (anyone who may `kubectl create` in the namespace), not
the instructors' pods: a right to create a Job is a right to run a pod that mounts the hub's secret.
"""
from __future__ import annotations

import argparse
import re
import sys

import yaml

from grader.course import assignments

NAME = "convlab-grading"
COURSE_CLAIM = "convlab-course"
HOME = "/home/jovyan"
COURSE = f"{HOME}/convlab"
SOURCE = "/srv/convlab/source"
LABELS = {"app.kubernetes.io/name": "convlab", "app.kubernetes.io/component": "grading"}


def setup(storage_class: str | None = None, size: str = "20Gi") -> list[dict]:
    """What the Jobs need, applied once: the course volume, a service account without token or
    roles, and the NetworkPolicy that cuts the grading pods off."""
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": COURSE_CLAIM, "labels": {"app.kubernetes.io/name": "convlab"}},
             "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": size}}}}
    if storage_class:
        claim["spec"]["storageClassName"] = storage_class
    account = {"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": NAME, "labels": dict(LABELS)},
               "automountServiceAccountToken": False}
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": NAME, "labels": dict(LABELS)},
              "spec": {"podSelector": {"matchLabels": dict(LABELS)},
                       "policyTypes": ["Ingress", "Egress"]}}       # no rules: nothing in, nothing out
    return [claim, account, policy]


def job(assignment: str, image: str, *, runtime_class: str | None = None, cpus: int = 2,
        memory: str = "6Gi", deadline: int = 3600) -> dict:
    """The Job grading `assignment` on the course volume.

    >>> j = job("01_cross_correlation", "registry.example.org/convlab/instructor:2026.12")
    >>> j["metadata"]["generateName"], j["spec"]["template"]["spec"]["automountServiceAccountToken"]
    ('convlab-grade-01-cross-correlation-', False)
    """
    known = assignments()
    if assignment not in known:
        raise ValueError(f"{assignment!r} is not an assignment: solutions/ has {', '.join(known)}")
    if not image or any(c.isspace() for c in image):
        raise ValueError(f"--image {image!r}: give the instructor image, e.g. REGISTRY/convlab/instructor:TAG")
    slug = re.sub(r"[^a-z0-9]+", "-", assignment.lower()).strip("-")
    pod = {
        "restartPolicy": "Never",
        "serviceAccountName": NAME,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"runAsUser": 1000, "runAsGroup": 100, "runAsNonRoot": True, "fsGroup": 100,
                            "seccompProfile": {"type": "Unconfined"}},   # bubblewrap: user namespaces
        "containers": [{
            "name": "grader",
            "image": image,
            "workingDir": SOURCE,
            "command": ["python", f"{SOURCE}/hub/grade.py", assignment, "--course", COURSE,
                        "--no-collect", "--no-release", "--no-reuse"],
            "env": [{"name": "HOME", "value": HOME}, {"name": "TMPDIR", "value": "/tmp"},
                    {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
            "resources": {"requests": {"cpu": "1", "memory": "2Gi"},
                          "limits": {"cpu": str(cpus), "memory": memory}},
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": [{"name": "home", "mountPath": HOME}, {"name": "tmp", "mountPath": "/tmp"},
                             {"name": "course", "mountPath": COURSE}],
        }],
        "volumes": [{"name": "home", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}},
                    {"name": "course", "persistentVolumeClaim": {"claimName": COURSE_CLAIM}}],
    }
    if runtime_class:
        pod["runtimeClassName"] = runtime_class
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"generateName": f"convlab-grade-{slug}-", "labels": {**LABELS, "convlab/assignment": slug}},
            "spec": {"backoffLimit": 0, "activeDeadlineSeconds": deadline, "ttlSecondsAfterFinished": 7 * 24 * 3600,
                     "template": {"metadata": {"labels": dict(LABELS)}, "spec": pod}}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hub.k8s.grading", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("setup", help="the course volume, the grading service account and network policy")
    s.add_argument("--storage-class", help="a ReadWriteMany storage class (e.g. an NFS or CephFS one)")
    s.add_argument("--size", default="20Gi")
    j = sub.add_parser("job", help="the Job grading one assignment")
    j.add_argument("assignment")
    j.add_argument("--image", required=True, help="the instructor image (hub/k8s/image/instructor.Dockerfile)")
    j.add_argument("--runtime-class", help="a RuntimeClass that isolates the pod (e.g. gvisor, kata)")
    j.add_argument("--cpus", type=int, default=2)
    j.add_argument("--memory", default="6Gi")
    args = parser.parse_args(argv)
    try:
        docs = (setup(args.storage_class, args.size) if args.what == "setup" else
                [job(args.assignment, args.image, runtime_class=args.runtime_class, cpus=args.cpus,
                     memory=args.memory)])
    except ValueError as err:
        parser.error(str(err))
    sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
