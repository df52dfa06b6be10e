"""Command line of the grading tools: `python -m grader --help`."""
from __future__ import annotations

import argparse
import sys

from . import execute, release


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("release", help="regenerate notebooks/ from solutions/")
    p.add_argument("assignments", nargs="*", help="assignment names (default: all)")
    p = sub.add_parser("run-solutions", help="execute solutions/ in place, storing outputs for nbval")
    p.add_argument("assignments", nargs="*", help="assignment names (default: all)")
    p = sub.add_parser("check-students", help="run the student notebooks: only NotImplementedError may fail")
    p.add_argument("assignments", nargs="*", help="assignment names (default: all)")
    args = parser.parse_args(argv)

    names = args.assignments or None
    if args.command == "release":
        written = release.release(names)
        print("\n".join(f"wrote {w}" for w in written) or "notebooks/ already up to date")
    elif args.command == "run-solutions":
        for path in execute.run_solutions(names):
            print(f"executed {path}")
    elif args.command == "check-students":
        problems = execute.check_student_versions(names)
        print("\n".join(problems) or "every student notebook fails only where it should")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
