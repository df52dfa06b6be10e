"""The convlab grading tools (instructor side), built on nbgrader.

    python -m grader release           regenerate notebooks/ from solutions/ (make release)
    python -m grader run-solutions     execute solutions/ in place, storing the outputs nbval compares
    python -m grader check-students    run every student notebook; only NotImplementedError may fail
    python -m grader autograde SUBS    grade <student>/<assignment>/<assignment>.ipynb, sandboxed, in parallel
    python -m grader feedback          per-student HTML feedback (no hidden test source)
    python -m grader report            one HTML page on the class (instructors): scores, mistakes, changes
    python -m grader.bench --n N       throughput of autograde vs plain serial nbgrader autograde

Where things are (trusted: runs as the instructor, or root; inside: runs in a sandbox):

    trusted, the run        autograde (the pipeline: PIPELINE, its steps in order), grading (one
                            submission: the student kernel and the examiner, the relay of calls),
                            shell_client (the grader's side of a sandboxed shell: cells, capped
                            outputs, calls), forkserver and sandbox (bubblewrap, limits, zygotes)
    trusted, the rules      statuses (every status, one table), integrity (plain files, test cells
                            vs the release, nbgrader's sanitizing, inert markup), monkeypatch
                            (static scan for patching)
    trusted, around it      course (paths, nbgrader's command line), release, run_notebooks
                            (execute solutions/, check student versions), samples (made-up
                            submissions for tests and the benchmark), feedback, report (the class
                            report), lms (Canvas and Moodle exports for `nbgrader export`), bench,
                            nbgrader_config
    inside/ (sandboxed)     shell, zygote, wire, envelope, student_agent, examiner: shipped as
                            source, never imported by the trusted grader (grader/inside/__init__.py)
"""
