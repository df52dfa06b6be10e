"""`python -m grader.bench --n N`: our autograde vs plain serial `nbgrader autograde`, same machine.

Generates N synthetic submissions of an assignment (correct, wrong, untouched and crashing ones,
in a fixed mix) in a temporary course with its own gradebook, grades them with both, and prints
each throughput, the ratio, and where our time goes (mean per submission: kernel start, imports,
the student kernel's cells, the examiner's cells, the proxy round trips between them, teardown,
and the grader's own work in its main thread: reading, checking and sanitizing the notebook before
the workers start, saving the grades and files after). By default our autograde uses fork servers (grader/forkserver.py: the
imports are paid once per worker, when its sandbox starts); --per-kernel-too also times the
per-kernel sandboxes (`autograde --no-fork-server`). Figures only: nothing here asserts timings.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from . import autograde, samples
from .course import CONFIG, SOLUTIONS, assignments, nbgrader

WRONG = "def {name}(*args, **kwargs):\n    return torch.zeros(1)\n"


def synthetic(assignment: str, n: int) -> list[tuple[str, nbformat.NotebookNode]]:
    """n (student id, notebook): 50% correct, 20% wrong answers, 20% untouched, 10% crashing."""
    solved, untouched = samples.solved(assignment), samples.untouched(assignment)
    wrong = copy.deepcopy(solved)
    for cell in wrong.cells:
        if cell.metadata.get("nbgrader", {}).get("solution") and cell.source.startswith("def "):
            name = cell.source[4:].split("(")[0]
            cell.source = WRONG.format(name=name)
            break
    crashing = copy.deepcopy(solved)
    crashing.cells.insert(len(crashing.cells) // 2, nbformat.v4.new_code_cell("import os\nos._exit(1)"))
    kinds = ["correct"] * 5 + ["wrong"] * 2 + ["untouched"] * 2 + ["crashing"]
    by_kind = {"correct": solved, "wrong": wrong, "untouched": untouched, "crashing": crashing}
    return [(f"s{i:04d}_{kinds[i % 10]}", by_kind[kinds[i % 10]]) for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader.bench", description=__doc__)
    parser.add_argument("--n", type=int, default=24, help="number of submissions (default: 24)")
    parser.add_argument("--assignment", default=None, help="default: the first assignment")
    parser.add_argument("--workers", type=int, default=autograde.usable_cpus())
    parser.add_argument("--skip-nbgrader", action="store_true", help="only time our autograde")
    parser.add_argument("--per-kernel-too", action="store_true",
                        help="also time our autograde with one new sandbox per submission (--no-fork-server)")
    args = parser.parse_args(argv)
    a = args.assignment or assignments()[0]
    subs = synthetic(a, args.n)

    with tempfile.TemporaryDirectory(prefix="convlab-bench-") as tmp:
        tmp = Path(tmp)
        course = tmp / "course"
        course.mkdir()
        (course / "nbgrader_config.py").write_text(
            f"c = get_config()\nload_subconfig({CONFIG.name!r}, path={str(CONFIG.parent)!r})\n"
            f"c.CourseDirectory.root = {str(course)!r}\n"
            f"c.CourseDirectory.source_directory = {str(SOLUTIONS)!r}\n"
            f"c.CourseDirectory.release_directory = 'release'\n"
            f"c.CourseDirectory.submitted_directory = 'submitted'\n"
            f"c.CourseDirectory.autograded_directory = 'autograded'\n"
            f"c.CourseDirectory.db_url = 'sqlite:///{course}/gradebook.db'\n")
        nbgrader("generate_assignment", a, "--force", "--log-level=WARN", config_dir=course)
        for student, nb in subs:
            for root in (course / "submitted", tmp / "subs"):
                path = root / student / a / f"{a}.ipynb"
                path.parent.mkdir(parents=True, exist_ok=True)
                nbformat.write(nb, path)

        print(f"{args.n} submissions of {a} ({os.cpu_count()} cores)")
        nb_rate = None
        if not args.skip_nbgrader:
            t = time.monotonic()
            try:
                nbgrader("autograde", a, "--force", "--log-level=ERROR", config_dir=course)
            except RuntimeError as err:        # a crashing submission makes nbgrader exit non-zero
                lines = [l for l in str(err).splitlines() if "rror" in l]
                print(f"  (nbgrader exited with an error: {lines[-1][:200] if lines else str(err)[:200]})")
            nb_time = time.monotonic() - t
            nb_rate = args.n / nb_time
            print(f"nbgrader autograde (serial): {nb_time:7.1f} s  {nb_rate:6.3f} submissions/s "
                  f"({nb_time / args.n:.2f} s each)")

        modes = [("fork server", True)] + ([("one sandbox per submission", False)] if args.per_kernel_too else [])
        for label, fork_server in modes:
            try:
                _ours(args, tmp, course, label, fork_server, nb_rate)
            except autograde.AutogradeError as err:
                print(f"error: {err}", file=sys.stderr)
                return 1
    return 0


def _ours(args, tmp: Path, course: Path, label: str, fork_server: bool, nb_rate: float | None) -> None:
    opts = autograde.Options(workers=args.workers, out=tmp / f"out-{int(fork_server)}", config_dir=course,
                             progress=False, timeout=120, fork_server=fork_server)
    t = time.monotonic()
    results = autograde.autograde(tmp / "subs", opts)
    our_time = time.monotonic() - t
    our_rate = args.n / our_time
    print(f"python -m grader autograde ({args.workers} workers, {label}): {our_time:7.1f} s  "
          f"{our_rate:6.3f} submissions/s ({our_time / args.n:.2f} s each)")
    if nb_rate:
        print(f"ratio: {our_rate / nb_rate:.1f}x nbgrader's throughput")
    statuses: dict[str, int] = {}
    for r in results:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    print("statuses:", ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
    if statuses.get("error"):
        print(f"warning: {statuses['error']} submissions were not graded (status error: the grader "
              "failed), so these figures understate the real cost")
    timings = [r["timings"] for r in results if r.get("timings")]
    if fork_server:
        print("where our time goes (mean per submission; the imports are done once per fork server, "
              "when it starts: the first submissions wait for that):")
    else:
        print("where our time goes (mean per submission, in a worker or a booting kernel; "
              "the spares boot while others are graded):")
    for key, label in (("server_wait", "waiting for a fork server"),
                       ("spawn", "fork" if fork_server else "sandbox spawn"), ("kernel_start", "kernel start"),
                       ("imports", "warm preamble (imports)"),
                       ("examiner_start", "examiner start (in parallel)"),
                       ("setup", "files + agents"), ("student", "student kernel: its cells"),
                       ("examiner", "examiner: instructor cells"), ("round_trips", "proxy round trips"),
                       ("teardown", "teardown (kill + reset)"),
                       ("prepare", "grader: read, check, sanitize"), ("record", "grader: gradebook + files")):
        values = [t[key] for t in timings if key in t]
        if values:
            print(f"  {label:30s} {statistics.mean(values):6.2f} s")
    calls = [t["calls"] for t in timings if "calls" in t]
    trips = [t["round_trips"] for t in timings if "round_trips" in t]
    if calls and sum(calls):
        print(f"  {statistics.mean(calls):.0f} proxy calls per submission, {1000 * sum(trips) / sum(calls):.1f} ms each")
    cpu = sum(statistics.mean([t.get(k, 0) for t in timings])
              for k in ("kernel_start", "imports", "examiner_start", "setup", "cells"))
    print(f"  ~CPU per submission {cpu:.2f} s over {args.workers} workers -> at best "
          f"{args.workers / cpu if cpu else 0:.2f} submissions/s on this machine")


if __name__ == "__main__":
    raise SystemExit(main())
