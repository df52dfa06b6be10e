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
    "tests/grader/test_pipeline.py",      # our autograde on every assignment
    "tests/grader/test_pipeline_nbgrader.py",  # plain nbgrader autograde on every assignment
    "tests/grader/test_release.py",       # nbgrader generate_assignment, every student notebook run
    "tests/grader/test_unprivileged.py",  # the sandbox and hostile tests again as another user
    "tests/e2e",                          # JupyterHub and browser, end to end
    "tests/hub/test_proxy.py",            # configurable-http-proxy with TLS
    "tests/hub/test_backup.py",           # nbgrader gradebooks (alembic)
    "tests/hub/test_ngshare_exchange.py", # JupyterHub and ngshare, nbgrader's exchange commands
    "solutions",                          # nbval: every solution notebook runs
    "notebooks",
]


# With pytest-xdist (`make test` uses 3 workers: TEST_WORKERS), each file's tests run in one worker (its module
# fixtures are built once) and these folders' tests in one worker (their session fixtures, e.g. the
# one JupyterHub of tests/e2e, are built once). xdist_group marks cannot do this: pytest-xdist 3.8
# does not apply them with pytest 9.
SHARED = ("tests/e2e/",)
# The longest of them, longest first (in `make test`, about 6.5, 3-4 (two nbgrader runs at once),
# 3, 2, 2, 1.5, 1 min): started first, so that the workers finish together. The rest follow in
# their usual order. (Per-file figures: make test PYTEST_ARGS=--junitxml=FILE, then sum by file.)
LONGEST = ("tests/e2e/", "tests/grader/test_pipeline_nbgrader.py", "tests/grader/test_autograde.py",
           "tests/grader/test_pipeline.py", "tests/grader/test_forkserver.py", "tests/grader/test_hostile.py",
           "tests/grader/test_unprivileged.py")


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

    config.option.loadscopereorder = False        # keep the order pytest_collection_modifyitems made
    return ByFileAndSharedFolder(config, log)


def _rank(rel: str | None) -> int:
    return next((i for i, prefix in enumerate(LONGEST) if rel and rel.startswith(prefix)), len(LONGEST))


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: _rank(_rel(item)))       # stable: each file keeps its own order
    slow = pytest.mark.slow
    for item in items:
        rel = _rel(item)
        if rel is not None and (rel.endswith(".ipynb") or any(rel == s or rel.startswith(s + "/") for s in SLOW)):
            item.add_marker(slow)
