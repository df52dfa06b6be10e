"""One submission, graded by two kernels: the student kernel runs the student's code, the examiner
decides (the grader's side of grader/inside/examiner.py and grader/inside/student_agent.py).

The cells run in notebook order:

* the student's cells (answers and everything not locked) run in the student kernel only;
* read-only cells run in the student kernel (the student's code may use what they define) and
  then in the examiner;
* test cells, visible and hidden, run in the examiner only: no test's source reaches the
  student's process (its code sees only the arguments of the calls a test makes, hidden ones
  included, and the feedback shows none of a hidden part's), and their outputs (the verdicts)
  come from the examiner alone.

Before each instructor cell the examiner binds the names those cells use but do not define to
what the student kernel has (`Examiner.bind`). While an instructor cell runs, each proxy call
is an input request from the examiner; `relay` sends it to the student kernel's agent, with a
time limit per call (`call_timeout`: the call is interrupted, and if that does not stop it the
student kernel is killed), and answers the
examiner with {"from": "student", "raw": <the student's answer>} or, when the grader itself has
something to say (time limit, dead kernel), {"from": "grader", "message": ...}: the student's
answer is carried as a string the examiner decodes strictly, so it can never pass for the
grader's word. The examiner checks that each answer carries its call's id. Each call is one
frame to the student kernel's shell and one answer frame back (grader/inside/shell.py), ~1 ms.
"""
from __future__ import annotations

import ast
import functools
import os
import re
import time
from pathlib import Path

from . import inside, integrity
from .inside import envelope
from .course import SOLUTIONS, assignments, source_notebook
from .shell_client import CallTimeout, KernelDied, OutputBudget, Reply, Shell
from .limits import CALL_TIMEOUT, EXTRA_FILES_LIMIT, INTERRUPT_GRACE

# What each kernel is booted with (grader/inside/: run there, never imported here), in order.
STUDENT_MODULES = [("_convlab_wire", inside.source("wire")), ("_convlab_envelope", inside.source("envelope")),
                   ("_convlab_student_agent", inside.source("student_agent"))]
EXAMINER_MODULES = [("_convlab_wire", inside.source("wire")), ("_convlab_envelope", inside.source("envelope")),
                    ("_convlab_examiner_src", inside.source("examiner"))]

BOOT = """
def _convlab_boot():
    import os, sys, types
    get_ipython().user_ns.pop("_convlab_boot", None)
    for name, source in {modules!r}:
        module = types.ModuleType(name)
        sys.modules[name] = module
        exec(compile(source, "<" + name + ">", "exec"), module.__dict__)
    import shutil
    shutil.copytree({files!r}, {workdir!r}, dirs_exist_ok=True)
    os.chdir({workdir!r})
    sys.path.insert(0, {workdir!r})
    {install}


_convlab_boot()
"""
STUDENT_INSTALL = 'sys.modules["_convlab_student_agent"].install(get_ipython())'
EXAMINER_INSTALL = 'sys.modules["_convlab_examiner_src"].install(get_ipython(), {imports!r}, {wanted!r}, {sources!r})'
BIND = "__import__('sys').modules['_convlab_examiner'].bind()"


class _GraderSays(Exception):
    """What the grader answers the examiner instead of the student's answer."""


def is_instructor(cell) -> bool:
    """Test cells and read-only cells: the release's code, run in the examiner."""
    md = cell.metadata.get("nbgrader", {}) if cell.cell_type == "code" else {}
    return integrity.is_test(cell) or bool(md.get("locked"))


def wanted_names(nb, imports: dict) -> list[str]:
    """The student's names, which the examiner binds to proxies: those the source notebook's
    answer cells (nbgrader `solution: true` in solutions/<a>/<a>.ipynb) define at the top level
    (def, class, assignment, import) and the instructor's cells (tests and read-only cells) use,
    less the notebook's imports and what the instructor's cells bind themselves. Fail closed:
    nothing a submission or a read-only cell does (a star import, a magic, an answer cell that
    defines more) adds a name. `nb` (a graded notebook, or the source itself) only tells which
    assignment it is, by its test cells; LookupError if it is none of the course's."""
    answers = _answer_cells().get(frozenset(_test_ids(nb)))
    if answers is None:
        raise LookupError("the grader found no assignment with this notebook's test cells, so it cannot "
                          "tell which names are the student's")
    instructor = tuple(c.source for c in nb.cells if is_instructor(c))
    return list(_wanted(instructor, answers, tuple(sorted(imports))))


def _test_ids(nb) -> list[str]:
    return [c.metadata["nbgrader"].get("grade_id") for c in nb.cells if integrity.is_test(c)]


@functools.lru_cache(maxsize=1)
def _answer_cells() -> dict[frozenset, tuple[str, ...]]:
    """Each course assignment's answer cells (sources), by the grade ids of its test cells."""
    import nbformat
    out = {}
    for a in assignments():
        src = nbformat.read(source_notebook(a), as_version=4)
        out[frozenset(_test_ids(src))] = tuple(c.source for c in src.cells if c.cell_type == "code"
                                               and c.metadata.get("nbgrader", {}).get("solution"))
    return out


@functools.lru_cache(maxsize=64)
def _wanted(instructor: tuple[str, ...], answers: tuple[str, ...], imports: tuple[str, ...]) -> tuple[str, ...]:
    """(the same cells in every submission of an assignment: parsed once)"""
    defined, used, bound = set(), set(), set(imports)
    for source in answers:
        defined |= _top_level_names(integrity.parse_cell(source))
    for source in instructor:
        tree = integrity.parse_cell(source)
        used |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} if tree else set()
        bound |= _top_level_names(tree)
    return tuple(sorted((defined & used) - bound))


def _top_level_names(tree: ast.Module | None) -> set[str]:
    """The names a cell binds in the notebook's namespace (not inside its functions or classes)."""
    names, stack = set(), list(tree.body) if tree is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            continue
        if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            continue
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            names.add(node.id)
        elif isinstance(node, ast.alias) and node.name != "*":
            names.add((node.asname or node.name).split(".")[0])
        stack.extend(ast.iter_child_nodes(node))
    return names


HIDDEN_PART = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS[^\n]*\n(.*?)^[ \t]*### END HIDDEN TESTS[^\n]*(?:\n|$)",
                         re.S | re.M)


def steps(source: str) -> list[tuple[str, bool]]:
    """A test cell as the examiner runs it: (code, hidden) parts in order, split at nbgrader's
    hidden-test markers, so that a failure can be told to come from a hidden part (whose inputs,
    expected values and messages the student's feedback never shows). The parts run one after the
    other in one namespace and stop at the first failure, which scores the cell as one run would.
    One part, hidden if the cell has hidden tests, when a part would not run on its own."""
    parts, at = [], 0
    for m in HIDDEN_PART.finditer(source):
        parts += [(source[at:m.start()], False), (m.group(1), True)]
        at = m.end()
    parts = [(code, hidden) for code, hidden in parts + [(source[at:], False)] if code.strip()]
    if len(parts) > 1 and any(integrity.parse_cell(code) is None for code, _ in parts):
        return [(source, any(hidden for _, hidden in parts))]
    return parts or [(source, False)]


class Examination:
    """The two kernels of one submission and the cells between them."""

    def __init__(self, job, student: Shell, examiner: Shell, imports: dict, *, timeout: float,
                 sandbox: bool, call_timeout: float = CALL_TIMEOUT) -> None:
        self.job, self.student, self.examiner, self.imports = job, student, examiner, imports
        self.sandbox, self.call_timeout = sandbox, call_timeout
        self.t0 = time.monotonic()
        self.deadline = self.t0 + timeout
        self.budget = OutputBudget()
        self.cells = [c for c in job.nb.cells if c.cell_type == "code"]
        self.position = 0
        self.bound: Reply | None = None      # the last bind, valid until a student cell runs
        self.student_died: KernelDied | None = None
        self.hidden_failed: set[str] = job.hidden_failed     # test cells that failed in a hidden part
        self.timings = {**student.timings, "examiner_start": examiner.timings.get("kernel_start", 0.0)
                        + examiner.timings.get("imports", 0.0),
                        "student": 0.0, "examiner": 0.0, "round_trips": 0.0, "calls": 0}

    # -- the notebook ------------------------------------------------------------------------
    def run(self) -> None:
        """Every code cell, in order; outputs go into the job's notebook. KernelDied if a kernel
        stopped (self.position is then the first cell not graded); KernelDied("grader") if that
        happened before any student code ran (the grader's failure, graded again next run)."""
        try:
            self._boot()
        except KernelDied as err:
            raise KernelDied("grader", f"before any student code ran: {err}") from None
        self.timings["setup"] = time.monotonic() - self.t0
        for self.position, cell in enumerate(self.cells):
            cell.outputs = []
            if integrity.is_test(cell):
                self._examine(cell, cell.outputs)
            elif is_instructor(cell):
                self._in_student(cell)
                self._examine(cell, [])
            else:
                self._in_student(cell)
            if self.student_died is not None:
                self.position += 1
                raise self.student_died

    def _in_student(self, cell) -> None:
        t = time.monotonic()
        reply = self.student.run(cell.source, deadline=self.deadline, budget=self.budget)
        cell.outputs, cell.execution_count = reply.outputs, reply.execution_count
        self.bound = None
        self.timings["student"] += time.monotonic() - t

    def _examine(self, cell, outputs: list) -> None:
        """Bind the student's names (again only if a student cell ran since), then run the cell in
        the examiner; a test's outputs are its verdict (an error output fails it)."""
        t, relayed = time.monotonic(), self.timings["round_trips"]
        if self.bound is None:
            self.bound = self.examiner.run(BIND, deadline=self.deadline, silent=True, budget=self.budget,
                                           on_input=self.relay)
        bind = self.bound
        if bind.status != "ok":
            outputs.append(error_output(bind.ename or "GraderError", f"the grader could not reach the student's "
                                  f"names, so this cell was not run: {bind.evalue}"))
        else:
            for code, hidden in (steps(cell.source) if integrity.is_test(cell) else [(cell.source, False)]):
                reply = self.examiner.run(code, deadline=self.deadline, budget=self.budget, on_input=self.relay)
                outputs.extend(reply.outputs)
                if integrity.is_test(cell):
                    cell.execution_count = reply.execution_count
                if reply.status != "ok" and not any(o.output_type == "error" for o in outputs):
                    outputs.append(error_output(reply.ename or "Error", reply.evalue))
                if reply.status != "ok":
                    if hidden:
                        self.hidden_failed.add(cell.metadata["nbgrader"]["grade_id"])
                    break
        self.timings["examiner"] += time.monotonic() - t - (self.timings["round_trips"] - relayed)

    # -- proxy calls -------------------------------------------------------------------------
    def relay(self, prompt: str) -> str:
        """Answer one input request of the examiner (a proxy call) with the student's answer."""
        t = time.monotonic()
        self.timings["calls"] += 1
        try:
            return envelope.from_student(self._ask_student(prompt))
        except _GraderSays as said:
            return envelope.from_grader(str(said))
        finally:
            self.timings["round_trips"] += time.monotonic() - t

    def _ask_student(self, prompt: str) -> str:
        if self.student_died is not None:
            raise _GraderSays("not run: the student's kernel has stopped")
        end = min(self.deadline, time.monotonic() + self.call_timeout)
        try:
            return self.student.call(prompt, deadline=end, budget=self.budget, kill=end >= self.deadline)
        except CallTimeout:
            return self._interrupt()
        except KernelDied as died:
            self.student_died = died
            raise _GraderSays(f"the student's kernel stopped during the call ({died.reason})") from None

    def _interrupt(self) -> str:
        """A call over its time limit: interrupt it; kill the student kernel if that fails."""
        self.student.interrupt()
        end = min(self.deadline, time.monotonic() + INTERRUPT_GRACE)
        try:
            self.student.call_answer(deadline=end, budget=self.budget, kill=False)
        except CallTimeout:
            self.student.process.kill("call_timeout")
            self.student_died = KernelDied("call_timeout", f"a call took longer than {self.call_timeout:g} s "
                                           "and could not be interrupted")
            raise _GraderSays(f"did not finish within {self.call_timeout:g} s (the time each call may "
                              "take) and could not be interrupted: the student's kernel was stopped") from None
        except KernelDied as died:
            self.student_died = died
            raise _GraderSays(f"the student's kernel stopped during the call ({died.reason})") from None
        raise _GraderSays(f"did not finish within {self.call_timeout:g} s (the time each call may take); "
                          "it was interrupted")

    # -- setup -------------------------------------------------------------------------------
    def _boot(self) -> None:
        """Copy the files in, install the student agent and the examiner (both at once)."""
        sources = [c.source for c in self.cells if not is_instructor(c)]
        examiner = EXAMINER_INSTALL.format(imports=self.imports, wanted=wanted_names(self.job.nb, self.imports),
                                           sources=sources)
        boots = [(self.student, STUDENT_MODULES, STUDENT_INSTALL), (self.examiner, EXAMINER_MODULES, examiner)]
        for kernel, modules, install in boots:
            files = self._files(kernel, include_student=kernel is self.student)
            kernel.submit(BOOT.format(modules=modules, files=files, workdir=self._workdir(kernel), install=install),
                          deadline=self.deadline, silent=True)
        for kernel, _, _ in boots:
            reply = kernel.result(deadline=self.deadline)
            if reply.status != "ok":
                raise KernelDied("crashed", f"the trusted preamble failed: {reply.ename}: {reply.evalue}")

    def _workdir(self, kernel: Shell) -> str:
        a = self.job.assignment
        return f"/tmp/{a}" if self.sandbox else str(kernel.process.workdir / a)

    def _files(self, kernel: Shell, *, include_student: bool) -> str:
        """Copy the assignment's own files (solutions/<a>/ but its notebooks), then the files
        beside the submitted notebook (student kernel only, at most EXTRA_FILES_LIMIT bytes, never
        one at a path the assignment's files use) into the kernel's shared folder; return that
        folder as the kernel sees it. Only regular files are read, none through a link."""
        dest = kernel.process.workdir / "in"
        dest.mkdir(exist_ok=True)
        copy_plain_files(SOLUTIONS / self.job.assignment, dest)
        if include_student:
            copy_plain_files(self.job.path.parent, dest, limit=EXTRA_FILES_LIMIT)
        return "/run/kernel/in" if self.sandbox else str(dest)

    def stop(self) -> None:
        t = time.monotonic()
        for kernel in (self.student, self.examiner):
            kernel.stop()
        self.timings["teardown"] = time.monotonic() - t
        self.timings["cells"] = self.timings["student"] + self.timings["examiner"] + self.timings["round_trips"]


def copy_plain_files(src: Path, dest: Path, *, limit: int | None = None) -> list[str]:
    """Copy the regular files under `src` (`integrity.plain_files`: no link followed; notebooks
    and .ipynb_checkpoints left out) to the same relative paths under `dest`, in name order, until
    `limit` bytes (None: all); a file whose path, or a folder of it, already exists in `dest` is
    skipped (what is there wins). The relative paths copied."""
    copied, total = [], 0
    for rel, fd in integrity.plain_files(src, prune=(".ipynb_checkpoints",)):
        if rel.endswith(".ipynb"):
            continue
        size = os.fstat(fd).st_size
        total += size
        if limit is not None and total > limit:
            break
        if _copy_new(fd, size, dest / rel):
            copied.append(rel)
    return copied


def _copy_new(fd: int, size: int, target: Path) -> bool:
    """Write the first `size` bytes of `fd` to `target`, a new file (False, nothing written, if
    that path or one of its folders is taken by anything else, or cannot be created)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError:                    # FileExistsError, NotADirectoryError: the path is taken
        return False
    with os.fdopen(out, "wb") as f:
        while size > 0 and (chunk := os.read(fd, min(size, 1 << 20))):
            f.write(chunk)
            size -= len(chunk)
    return True


def error_output(ename: str, evalue: str):
    """An error output as a failed cell shows it (also the autograder's "not graded" note)."""
    import nbformat
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])
