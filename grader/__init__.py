"""The convlab grading tools (instructor side), built on nbgrader.

    python -m grader release           regenerate notebooks/ from solutions/ (make release)
    python -m grader run-solutions     execute solutions/ in place, storing the outputs nbval compares
    python -m grader check-students    run every student notebook; only NotImplementedError may fail
    python -m grader autograde SUBS    grade <student>/<assignment>/<assignment>.ipynb, sandboxed, in parallel
    python -m grader feedback          per-student HTML feedback (no hidden test source)
    python -m grader.bench --n N       throughput of autograde vs plain serial nbgrader autograde

Modules: course (paths and the nbgrader command line), release, execute, submissions (test
submissions), autograde (orchestration, gradebook, grades.csv), integrity (test cells vs the
release, nbgrader's sanitizing), sandbox (bubblewrap, limits), forkserver and zygote (one
long-lived sandbox per worker forking a kernel per submission), kernel (the Jupyter protocol),
guard (trusted code run inside each kernel), feedback, bench.
"""
