"""The instructor's grading step on the hub: collect, autograde with our grader, release feedback.

    /opt/convlab/python/bin/python /opt/convlab/staff/hub/grade.py 01_cross_correlation
    ... grade.py 01_cross_correlation --no-collect --no-release   # just (re)grade
    ... grade.py 01_cross_correlation --collect-only / --release-only   # Kubernetes: the Job
                                                    # grades between the two (hub/k8s/grading.py)

Run it as the instructor (in a JupyterLab terminal on the hub), with the course's Python, from the
staff copy the hub runs (hub/runtime.py). The course folder is ~/convlab (--course to change), the
one formgrader shows (on the hub, a link to the staff's shared course: any instructor may run this); the nbgrader config is hub/jupyter/instructor (the instructor's server's):

1. `nbgrader collect --update ASSIGNMENT`: the exchange's latest submissions into submitted/ (a
   resubmission, or late work, replaces what an earlier run collected), laid out
   <student>/<assignment>/<assignment>.ipynb, exactly what `python -m grader autograde` reads;
   only entries that are what they claim (hub/exchange.py: the student's own, plain files, handed
   in when their timestamp says); the others are named in the log and not collected;
2. `python -m grader autograde submitted --assignment ASSIGNMENT --out COURSE`: sandboxed grading;
   it updates COURSE/gradebook.db as `nbgrader autograde` would and writes the executed notebooks
   to COURSE/autograded/ (nbgrader's folder, so formgrader opens them), grades.csv and cells.csv;
3. `python -m grader feedback`: one page per student (the gradebook's final scores with manual
   grades, comments and late penalties; failure messages, visible tests only, never hidden test
   text), put where nbgrader expects it
   (feedback/<student>/<assignment>/<assignment>.html with the submission's timestamp and secret),
   then `nbgrader release_feedback ASSIGNMENT`; students get it with *Fetch Feedback*;
(1b.) What the service grading at submit time (hub/submit_grader.py) already graded is reused:
   a submission collected exactly as that service graded it (the same files, tests, grader code
   and limits: the result's key, computed by the grader's own `job_key`) takes its result and
   graded notebook from CONVLAB_FEEDBACK_DIR (--submit-results; the staff may read it, students
   may not), recorded here in order as the grader records its own (graded notebook, this
   gradebook's rows with late penalty and review marks, result file), so step 2 finds it and
   grades only the rest. Off with --no-reuse, or with options for the grader after `--` (the
   keys would differ);
4. `python -m grader report --out COURSE`: COURSE/report.html, the class report (scores, named
   mistakes, submissions to review, who changed score since the previous run), for instructors
   only, written before the feedback is released (a failure to write it is only a warning).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "hub" / "jupyter" / "instructor"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))          # the grader's own functions (adopt)


def run(cmd: list[str], cwd: Path) -> None:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # nbgrader runs alembic
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join([str(CONFIG), *filter(None, [env.get("JUPYTER_CONFIG_PATH")])])
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=cwd, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"error: `{' '.join(cmd)}` failed (exit {proc.returncode}); see its output above")


def place_feedback(pages: Path, course: Path, assignment: str) -> list[Path]:
    """pages/<student>/<assignment>.html → course/feedback/<student>/<assignment>/<assignment>.html,
    with the submission's timestamp.txt and submission_secret.txt (nbgrader release_feedback needs
    both to address the page to the submission it belongs to)."""
    placed = []
    for page in sorted(pages.glob(f"*/{assignment}.html")):
        student = page.parent.name
        submitted = course / "submitted" / student / assignment
        if not (submitted / "timestamp.txt").is_file():
            print(f"warning: {student}: no submitted/{student}/{assignment}/timestamp.txt; feedback not released",
                  file=sys.stderr)
            continue
        dest = course / "feedback" / student / assignment
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("timestamp.txt", "submission_secret.txt"):
            if (submitted / name).is_file():
                shutil.copyfile(submitted / name, dest / name)
        shutil.copyfile(page, dest / f"{assignment}.html")
        placed.append(dest / f"{assignment}.html")
    return placed


def adopt(submitted: Path, course: Path, assignment: str, shared: Path, db_url: str) -> list[str]:
    """Take the submit-time grader's results (`shared`/out) for the submissions in `submitted`
    that it graded exactly as they are (same key), recording each here as the grader records its
    own (`grader.autograde.record_taken`: graded notebook, then gradebook rows, then the result
    file). Returns the students whose
    result was taken; anything that does not fit is left to the grading run."""
    import json

    import nbformat
    from nbgrader.api import Gradebook

    from grader import statuses
    from grader.autograde import Options, job_key, job_of, record_taken, result_path
    taken: list[str] = []
    if not (shared / "out" / "results").is_dir() or not submitted.is_dir():
        return taken
    opts = Options(out=course, config_dir=CONFIG, db_url=db_url)     # as step 2 runs (no options after --)
    with Gradebook(db_url) as gb:
        for student_dir in sorted(p for p in submitted.iterdir() if p.is_dir() and not p.is_symlink()):
            job = job_of(student_dir.name, student_dir, assignment)
            if job.status:
                continue
            try:
                job.key = job_key(job, opts)
                if result_path(course, job).exists():
                    continue                                        # graded here already
                result = json.loads(result_path(shared / "out", job).read_text())
                notebook = shared / "out" / "by-key" / job.student / assignment / f"{job.key}.ipynb"
                status = statuses.BY_NAME.get(result.get("status"))
                if (result.get("key") != job.key or status is None or not status.cached
                        or status.name in statuses.NOT_GRADED or not notebook.is_file()):
                    continue
                job.nb = nbformat.read(notebook, as_version=4)
            except (OSError, ValueError):
                continue
            try:
                record_taken(job, result, gb, opts)
                taken.append(job.student)
            except Exception as err:  # noqa: BLE001 - not reused: step 2 grades it
                print(f"warning: {job.student}: the result graded at submit time was not reused "
                      f"({type(err).__name__}: {err}); grading it", file=sys.stderr)
    return taken


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hub/grade.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("assignment", help="e.g. 01_cross_correlation (a folder of solutions/)")
    parser.add_argument("--course", type=Path, default=Path("~/convlab").expanduser(),
                        help="the instructor's course folder (default: ~/convlab)")
    parser.add_argument("--student", action="append", default=[], metavar="ID",
                        help="collect only this student's submission (repeatable); the others keep theirs, "
                             "and their results are reused (they are keyed by content)")
    parser.add_argument("--no-collect", action="store_true", help="grade what submitted/ already holds")
    parser.add_argument("--no-release", action="store_true", help="write feedback but do not release it")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--collect-only", action="store_true",
                      help="collect, and stop (grading elsewhere: a Kubernetes Job, hub/k8s/grading.py)")
    only.add_argument("--release-only", action="store_true",
                      help="release the feedback written by an earlier run (e.g. the Kubernetes Job's)")
    parser.add_argument("--submit-results", type=Path, default=os.environ.get("CONVLAB_FEEDBACK_DIR") or None,
                        help="the submit-time grader's folder, whose results are reused (default: $CONVLAB_FEEDBACK_DIR)")
    parser.add_argument("--no-reuse", action="store_true", help="grade everything again (reuse nothing graded at submit time)")
    parser.epilog = "After --: more options for python -m grader autograde (e.g. -- --workers 1)."
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args, extra = parser.parse_args(argv[:cut]), argv[cut + 1:]
    course = args.course.expanduser().resolve()
    course.mkdir(mode=0o700, parents=True, exist_ok=True)
    where = [f"--CourseDirectory.root={course}", f"--CourseDirectory.db_url=sqlite:///{course / 'gradebook.db'}"]
    if not (ROOT / "solutions" / args.assignment).is_dir():
        parser.error(f"{args.assignment} is not an assignment (solutions/ has "
                     f"{', '.join(sorted(p.name for p in (ROOT / 'solutions').iterdir() if p.is_dir()))})")
    py = sys.executable
    if args.release_only:
        if not any((course / "feedback").glob(f"*/{args.assignment}/{args.assignment}.html")):
            raise SystemExit(f"error: no feedback for {args.assignment} under {course / 'feedback'}: "
                             "grade first (hub/grade.py, or the Kubernetes Job)")
        run([py, "-m", "nbgrader", "release_feedback", args.assignment, *where], cwd=course)
        return 0

    if not args.no_collect:   # --update: a submission newer than the one collected replaces it
        for who in args.student or [None]:
            run([py, "-m", "nbgrader", "collect", args.assignment, "--update", *where,
                 *([f"--student={who}"] if who else [])], cwd=course)
    if not (course / "submitted").is_dir():
        raise SystemExit(f"error: {course}/submitted does not exist: nothing was collected yet")
    if args.collect_only:
        return 0
    if args.submit_results and not args.no_reuse and not extra:
        try:
            taken = adopt(course / "submitted", course, args.assignment, Path(args.submit_results),
                          f"sqlite:///{course / 'gradebook.db'}")
            print(f"reused {len(taken)} result(s) graded at submit time" + (f": {', '.join(taken)}" if taken else ""),
                  flush=True)
        except Exception as err:  # noqa: BLE001 - reuse is an optimisation: grade everything instead
            print(f"warning: results graded at submit time not reused ({type(err).__name__}: {err})", file=sys.stderr)
    run([py, "-m", "grader", "autograde", str(course / "submitted"), "--assignment", args.assignment,
         "--config-dir", str(CONFIG), "--db-url", f"sqlite:///{course / 'gradebook.db'}", "--out", str(course),
         "--no-progress", *extra], cwd=ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        run([py, "-m", "grader", "feedback", "--out", str(course), "--dest", tmp,
             "--db-url", f"sqlite:///{course / 'gradebook.db'}"], cwd=ROOT)
        placed = place_feedback(Path(tmp), course, args.assignment)
    print(f"feedback for {len(placed)} student(s) under {course / 'feedback'}")
    try:                      # the class report: a failure to write it never holds the feedback back
        run([py, "-m", "grader", "report", "--out", str(course)], cwd=ROOT)
        print(f"class report (instructors only): {course / 'report.html'}")
    except SystemExit as err:
        print(f"warning: no class report: {err}", file=sys.stderr)
    if not args.no_release and placed:
        run([py, "-m", "nbgrader", "release_feedback", args.assignment, *where], cwd=course)
    return 0


if __name__ == "__main__":
    sys.exit(main())
