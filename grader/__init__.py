"""The convlab grading tools (instructor side), built on nbgrader.

    python -m grader release           regenerate notebooks/ from solutions/ (make release)
    python -m grader run-solutions     execute solutions/ in place, storing the outputs nbval compares
    python -m grader check-students    run every student notebook; only NotImplementedError may fail

Modules: course (paths and the nbgrader command line), release, execute.
"""
