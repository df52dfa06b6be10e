"""`make hub`: the one-machine hub on localhost with a demo instructor and two demo students.

Creates the OS accounts clhub-instructor, clhub-student1 and clhub-student2 with fresh passwords
(printed), starts JupyterHub (the installed course's hub/jupyterhub_config.py, see hub/runtime.py) and waits; Ctrl-C stops the hub and
removes the accounts and their homes again. State (hub database, exchange) lives in a temporary
folder that is removed too. Needs root.

    python -m hub.demo [--port 8000] [--keep-users]
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from . import local

INSTRUCTOR = "clhub-instructor"
STUDENTS = ["clhub-student1", "clhub-student2"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hub.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=int(os.environ.get("CONVLAB_HUB_PORT", "8000")))
    parser.add_argument("--keep-users", action="store_true", help="do not remove the demo accounts at the end")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    missing = local.missing_tools()
    if missing:
        print("cannot start the hub:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2
    try:
        port = args.port
        with local.socket.socket() as s:
            s.bind(("127.0.0.1", port))
    except OSError:
        port = local.free_port()
        print(f"port {args.port} is busy; using {port}")
    users = [INSTRUCTOR, *STUDENTS]
    passwords = {u: secrets.token_urlsafe(9) for u in users}
    base = Path(tempfile.mkdtemp(prefix="clhub-demo-"))
    base.chmod(0o755)
    hub = local.LocalHub(state=base / "state", instructors=[INSTRUCTOR], students=STUDENTS,
                         exchange=base / "exchange", port=port)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        for user in users:
            local.create_user(user, passwords[user])
        hub.start()
        print(f"\nconvlab hub running at {hub.url}  (log: {hub.log_path})\n")
        for user in users:
            role = "instructor" if user == INSTRUCTOR else "student"
            print(f"  {role:10}  user {user:18} password {passwords[user]}")
        print(f"""
The cycle: as {INSTRUCTOR}, Nbgrader > Formgrader: Generate and Release 01_cross_correlation.
As a student: Nbgrader > Assignment List: Fetch, open, work, Validate, Submit.
As {INSTRUCTOR}, in a terminal:  convlab-grade 01_cross_correlation
(collect, autograde with our grader, release feedback); formgrader shows the scores; students
click Fetch Feedback. Ctrl-C stops the hub and removes the demo accounts.
""", flush=True)
        while hub.proc.poll() is None:
            time.sleep(1)
        print(f"the hub stopped (exit {hub.proc.returncode}):\n{hub.log_tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping the hub ...")
        return 0
    finally:
        hub.stop()
        if not args.keep_users:
            for user in users:
                local.delete_user(user)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
