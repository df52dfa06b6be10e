"""Command line of the grading tools: `python -m grader --help`.

Exit codes of `autograde`: 0 every submission got a grade row; 1 the run could not start (the
message says why); 3 some submissions were not graded because the grader failed (status
`error`): run the same command again.
"""
from __future__ import annotations

import argparse
import sys

from pathlib import Path

from . import autograde, feedback, release, report, run_notebooks
from .course import CONFIG, use_this_environment

EXIT_CANNOT_RUN = 1      # the run could not start (the message says what to fix)
EXIT_NOT_GRADED = 3      # some submissions were not graded: the grader failed (status error)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    use_this_environment()
    if args.command == "autograde":
        return _autograde(args, parser)
    if args.command == "feedback":
        return _feedback(args)
    if args.command == "report":
        return _report(args)
    names = getattr(args, "assignments", None) or None
    if args.command == "release":
        written = release.release(names)
        print("\n".join(f"wrote {w}" for w in written) or "notebooks/ already up to date")
    elif args.command == "run-solutions":
        for path in run_notebooks.run_solutions(names):
            print(f"executed {path}")
    elif args.command == "check-students":
        problems = run_notebooks.check_student_versions(names)
        print("\n".join(problems) or "every student notebook fails only where it should")
        return 1 if problems else 0
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m grader", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("release", help="regenerate notebooks/ from solutions/")
    p.add_argument("assignments", nargs="*", help="assignment names (default: all)")
    p = sub.add_parser("run-solutions", help="execute solutions/ in place, storing outputs for nbval")
    p.add_argument("assignments", nargs="*", help="assignment names (default: all)")
    p = sub.add_parser("check-students", help="run the student notebooks: only NotImplementedError may fail")
    p.add_argument("assignments", nargs="*", help="assignment names (default: all)")
    p = sub.add_parser("autograde", help="grade a folder of submissions, sandboxed and in parallel")
    p.add_argument("submissions", type=Path, help="folder laid out <student_id>/<assignment>/<assignment>.ipynb")
    p.add_argument("--workers", type=int, default=autograde.usable_cpus(),
                   help="submissions graded at once (default: the CPUs this process may use: its "
                        "affinity and cgroup quota, %(default)s here)")
    p.add_argument("--timeout", type=float, default=autograde.Options.timeout,
                   help="seconds for a whole notebook (default: %(default)s)")
    p.add_argument("--call-timeout", type=float, default=autograde.Options.call_timeout,
                   help="seconds for one call of the student's code from a test; a call over it is "
                        "interrupted and its test fails (default: %(default)s)")
    p.add_argument("--memory-limit", default="2G", help="memory per submission, e.g. 1G, 512M (default: 2G)")
    p.add_argument("--out", type=Path, default=autograde.Options.out,
                   help="where grades.csv, cells.csv, results/ and autograded/ go (default: grader/)")
    p.add_argument("--db-url", default=None, help="gradebook (default: the one in nbgrader_config.py)")
    p.add_argument("--config-dir", type=Path, default=CONFIG.parent,
                   help="folder of the nbgrader_config.py to use (default: grader/)")
    p.add_argument("--no-sandbox", action="store_true",
                   help="run student code WITHOUT isolation (only where bubblewrap cannot work)")
    p.add_argument("--no-fork-server", action="store_true",
                   help="start a new sandbox and kernel (and import PyTorch) for every submission "
                        "instead of forking kernels from one long-lived sandbox per worker (slower)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--assignment", action="append", default=[], metavar="NAME",
                   help="grade this assignment (repeatable); students without it get status missing "
                        "(default: every course assignment found in SUBMISSIONS)")
    p = sub.add_parser("feedback", help="per-student HTML feedback from the last autograde run")
    p.add_argument("--out", type=Path, default=autograde.Options.out,
                   help="the --out folder of `autograde` (default: grader/)")
    p.add_argument("--dest", type=Path, default=None,
                   help="where <student>/<assignment>.html go (default: OUT/feedback)")
    p.add_argument("--db-url", default=None,
                   help="the gradebook: pages show its final scores, manual grades, comments, late penalty")
    p = sub.add_parser("report", help="one HTML page on the class from the last autograde run (instructors only)")
    p.add_argument("--out", type=Path, default=autograde.Options.out,
                   help="the --out folder of `autograde` (default: grader/)")
    p.add_argument("--dest", type=Path, default=None, help="the page to write (default: OUT/report.html)")
    return parser


def _report(args: argparse.Namespace) -> int:
    try:
        dest, _ = report.write_report(args.out, args.dest)
    except feedback.NoResults as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    print(f"wrote {dest}")
    return 0


def _autograde(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        memory = autograde.parse_size(args.memory_limit)
    except ValueError as err:
        parser.error(str(err))
    if args.workers < 1 or args.timeout <= 0 or args.call_timeout <= 0:
        parser.error("--workers must be >= 1, --timeout and --call-timeout > 0")
    if args.no_sandbox:
        print("warning: --no-sandbox: student code runs with your rights, unisolated", file=sys.stderr)
    opts = autograde.Options(workers=args.workers, timeout=args.timeout, memory=memory, out=args.out,
                             call_timeout=args.call_timeout,
                             sandbox=not args.no_sandbox,
                             fork_server=not args.no_fork_server, config_dir=args.config_dir,
                             db_url=args.db_url, progress=not args.no_progress,
                             assignments=tuple(args.assignment))
    try:
        results = autograde.autograde(args.submissions, opts)
    except autograde.AutogradeError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    counts = {}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    print(f"{len(results)} rows written to {opts.out / 'grades.csv'}: "
          + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    if counts.get("error"):
        failed = [r for r in results if r["status"] == "error"]
        print(f"error: {len(failed)} submission(s) NOT graded because the grader failed (status error, "
              "not the students' fault); run the same command again to grade them:", file=sys.stderr)
        for r in failed[:10]:
            print(f"  {r['student_id']}/{r['assignment']}: {'; '.join(r['messages'])[:300]}", file=sys.stderr)
        if len(failed) > 10:
            print(f"  ... and {len(failed) - 10} more (status error in grades.csv)", file=sys.stderr)
        return EXIT_NOT_GRADED
    return 0


def _feedback(args: argparse.Namespace) -> int:
    try:
        written, skipped = feedback.write_feedback(args.out, args.dest, args.db_url)
    except feedback.NoResults as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    print(f"wrote {len(written)} feedback files" + (f" under {written[0].parent.parent}" if written else ""))
    if skipped:
        print(f"warning: no feedback for {len(skipped)} submission(s) the last run could not grade "
              f"(status error): {', '.join(skipped[:10])}; run autograde again, then feedback",
              file=sys.stderr)
        return EXIT_NOT_GRADED
    return 0


if __name__ == "__main__":
    sys.exit(main())
