"""Grading itself: each runnable submission in two kernels (grader/grading.py), in worker threads,
whose deaths become statuses (grader/statuses.py)."""
from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from .. import integrity, monkeypatch, statuses
from ..grading import Examination, error_output, is_instructor
from ..shell_client import KernelDied, Shell
from .options import GraderError, Job, Options


# ---------------------------------------------------------------------------------------------
# grading one submission (worker thread)

def execute(job: Job, student: Shell, examiner: Shell, imports: dict, opts: Options) -> tuple[str | None, dict]:
    """Grade the sanitized notebook with two kernels (grader/grading.py: the student's code in
    `student`, the instructor's cells and every verdict in `examiner`). Fills the cells' outputs in
    job.nb; returns (death reason or None, timings)."""
    exam = Examination(job, student, examiner, imports, timeout=opts.timeout, sandbox=opts.sandbox,
                       call_timeout=opts.call_timeout)
    job.findings.extend(monkeypatch.findings([(f"cell {i}", c.source) for i, c in enumerate(job.nb.cells)
                                              if c.cell_type == "code" and not is_instructor(c)]))
    died = None
    try:
        exam.run()
    except KernelDied as err:
        died = err.reason
        if err.detail:
            job.message = (job.message + "; " if job.message else "") + err.detail[:500]
        message = statuses.death_message(died, timeout=opts.timeout, memory=opts.memory)
        for cell in exam.cells[exam.position:]:
            if integrity.is_test(cell) and not any(o.output_type == "error" for o in cell.get("outputs", [])):
                cell.outputs = list(cell.get("outputs", [])) + [error_output("GraderStopped", f"not graded: {message}")]
    finally:
        exam.stop()
    return died, exam.timings


# ---------------------------------------------------------------------------------------------
# the whole run

# The worker threads mostly wait for kernel messages and must answer each at once (a test makes
# dozens of proxy calls), while the main thread reads and records submissions (nbgrader, SQLAlchemy:
# pure Python). Python hands the GIL to a woken thread only every switch interval (5 ms by
# default); 0.5 ms makes the run ~10% faster (grader/bench.py).
SWITCH_INTERVAL = 0.0005


def _run(runnable: list[Job], pools: list, imports: dict, opts: Options):
    """Grade `runnable` in opts.workers threads, each job with a student kernel and an examiner
    from `pools`; yields (job, death reason or None, timings) as each finishes."""
    def work(job: Job):
        try:
            with ThreadPoolExecutor(max_workers=1) as side:     # both kernels start at once
                pending = side.submit(pools[1].acquire)
                try:
                    student = pools[0].acquire()
                except BaseException:
                    pending.add_done_callback(lambda f: f.exception() or f.result().stop())
                    raise
                try:
                    examiner = pending.result()
                except BaseException:
                    student.stop()
                    raise
        except Exception as err:  # noqa: BLE001 - no student code has run: the grader's fault
            raise GraderError(f"no kernel could be started for it ({type(err).__name__}: {err})") from err
        return execute(job, student, examiner, imports[job.assignment], opts)

    with ThreadPoolExecutor(max_workers=opts.workers, thread_name_prefix="grade") as ex:
        futures = {ex.submit(work, job): job for job in runnable}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                job = futures[fut]
                try:
                    died, timings = fut.result()
                except Exception as err:  # noqa: BLE001 - the grader's failure, not the student's
                    died, timings = "grader", {}
                    detail = str(err) if isinstance(err, GraderError) else f"{type(err).__name__}: {err}"
                    job.message = (job.message + "; " if job.message else "") + f"grader error: {detail}"
                yield job, died, timings
