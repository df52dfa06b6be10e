"""The convlab grading tools (instructor side), built on nbgrader.

    python -m grader release           regenerate notebooks/ from solutions/ (make release)
    python -m grader run-solutions     execute solutions/ in place, storing the outputs nbval compares
    python -m grader check-students    run every student notebook; only NotImplementedError may fail
    python -m grader autograde SUBS    grade <student>/<assignment>/<assignment>.ipynb, sandboxed, in parallel
    python -m grader feedback          per-student HTML feedback (no hidden test source)
    python -m grader report            one HTML page on the class (instructors): scores, mistakes, changes
    python -m grader.bench --n N       throughput of autograde vs plain serial nbgrader autograde

Modules: course (paths and the nbgrader command line), release, execute, submissions (test
submissions), autograde (orchestration, gradebook, grades.csv), integrity (test cells vs the
release, nbgrader's sanitizing), monkeypatch (static scan for patching), forkserver and zygote
(long-lived sandboxes forking kernels), sandbox (bubblewrap, limits), kernel (the grader's side
of a sandboxed process: cells, capped outputs, calls), shell (that process: an IPython shell on a
socket, the student kernel's or the examiner's; no Jupyter kernel), examination (one submission:
the student kernel and the examiner, the relay of proxy calls), examiner (trusted, inside the
examiner: proxies and verdicts), student_agent (inside the student kernel: serves the proxies),
wire (the data that crosses), feedback, report (the class report), lms (Canvas and Moodle
exports for `nbgrader export`), bench.
"""
