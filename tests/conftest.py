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


# With pytest-xdist (`make test PYTEST_ARGS="-n 2"`), each file's tests run in one worker (its module
# fixtures are built once) and these folders' tests in one worker (their session fixtures, e.g. the
# one JupyterHub of tests/e2e, are built once). xdist_group marks cannot do this: pytest-xdist 3.8
# does not apply them with pytest 9.
SHARED = ("tests/e2e/",)


def _rel(item) -> str | None:
    try:
        return Path(str(item.fspath)).resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return None


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadFileScheduling

    class ByFileAndSharedFolder(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return next((folder for folder in SHARED if scope.startswith(folder)), scope)

    return ByFileAndSharedFolder(config, log)


def pytest_collection_modifyitems(config, items):
    slow = pytest.mark.slow
    for item in items:
        rel = _rel(item)
        if rel is not None and (rel.endswith(".ipynb") or any(rel == s or rel.startswith(s + "/") for s in SLOW)):
            item.add_marker(slow)
