"""Which tests are slow: `make test-fast` (pytest -m "not slow") leaves them out, `make test` runs
them all. One list, by file, so a new slow test file only needs a line here."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Files or folders (relative to the repository) whose tests start sandboxes, kernels or servers.
SLOW = [
    "tests/grader/test_sandbox.py",       # bubblewrap sandboxes
    "tests/grader/test_hostile.py",       # the catalog of attacks, one autograde run
    "tests/grader/test_forkserver.py",    # fork servers
    "tests/grader/test_pipeline.py",      # nbgrader and autograde on every assignment
    "tests/grader/test_release.py",       # nbgrader generate_assignment, every student notebook run
    "tests/grader/test_unprivileged.py",  # the sandbox and hostile tests again as another user
    "tests/e2e",                          # JupyterHub and browser, end to end
    "solutions",                          # nbval: every solution notebook runs
    "notebooks",
]


def pytest_collection_modifyitems(config, items):
    slow = pytest.mark.slow
    for item in items:
        path = Path(str(item.fspath)).resolve()
        try:
            rel = path.relative_to(ROOT).as_posix()
        except ValueError:
            continue
        if path.suffix == ".ipynb" or any(rel == s or rel.startswith(s + "/") for s in SLOW):
            item.add_marker(slow)
