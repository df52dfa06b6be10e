"""Execute course notebooks with nbclient: store solution outputs, check the student versions."""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from .course import assignments, source_notebook, student_notebook, tool_env

# The error an untouched exercise raises (nbgrader's stub); nothing else may fail in a student version.
EXPECTED_ERROR = "NotImplementedError"


def execute(path: Path, *, allow_errors: bool = False, timeout: int = 300) -> nbformat.NotebookNode:
    """Run every cell of the notebook at `path` (in its own folder) and return it with outputs."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=allow_errors,
                            resources={"metadata": {"path": str(Path(path).parent)}})
    client.execute(env=tool_env())
    return nb


def run_solutions(names: list[str] | None = None) -> list[Path]:
    """Execute each source notebook in place, so its stored outputs are the ones nbval compares.

    Run timestamps are dropped so that re-running changes nothing but real outputs.
    """
    done = []
    for name in names or assignments():
        path = source_notebook(name)
        nb = execute(path)
        for cell in nb.cells:
            cell.metadata.pop("execution", None)
        nbformat.write(nb, path)
        done.append(path)
    return done


def check_student_versions(names: list[str] | None = None) -> list[str]:
    """Run each student notebook as released; return the problems ([] when all is well).

    An untouched student notebook must run to the end with every error a NotImplementedError
    (the exercises not done yet), and with every graded test cell failing.
    """
    problems = []
    for name in names or assignments():
        path = student_notebook(name)
        if not path.exists():
            problems.append(f"{name}: no student version at {path} (run `make release`)")
            continue
        try:
            nb = execute(path, allow_errors=True)
        except (CellTimeoutError, DeadKernelError, CellExecutionError) as err:
            problems.append(f"{name}: the notebook did not run to the end: {type(err).__name__}: {err}")
            continue
        problems += untouched_problems(name, nb)
    return problems


def untouched_problems(name: str, nb: nbformat.NotebookNode) -> list[str]:
    """The problems of an untouched student notebook that ran (e.g. one that `nbgrader autograde`
    executed): errors other than NotImplementedError, graded tests that pass."""
    problems = []
    for n, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
        where = f"{name}, cell {n} ({cell.metadata.get('nbgrader', {}).get('grade_id', 'ungraded')})"
        for err in errors:
            if err.ename != EXPECTED_ERROR:
                problems.append(f"{where}: {err.ename}: {err.evalue} (only {EXPECTED_ERROR} may fail)")
        if cell.metadata.get("nbgrader", {}).get("grade") and not errors:
            problems.append(f"{where}: this graded test passes on the untouched notebook")
    return problems
