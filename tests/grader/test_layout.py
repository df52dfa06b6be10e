"""The grader's layout shows its trust boundary, and its tables are the only ones.

* grader/inside/ holds the code that runs inside a sandbox (shipped as source, never imported by
  the trusted grader, except `envelope`, whose wrapping the grader does itself);
* every status comes from grader/statuses.py: the autograder, the feedback pages, the class
  report and the README's table agree with it;
* the doctests of the modules that hold the tables run (make test collects tests/, not grader/).
"""
from __future__ import annotations

import ast
import doctest
import re
from pathlib import Path

import pytest

import grader
from grader import autograde, inside, report, statuses
from grader.course import ROOT

GRADER = ROOT / "grader"
TRUSTED = sorted(p for p in GRADER.glob("*.py"))


def _imports(path: Path) -> set[str]:
    """The modules `path` imports, absolute (grader.x for `from . import x` / `from .x import`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = "grader" + (f".{base}" if base else "")
            found |= {f"{base}.{a.name}" for a in node.names} | {base}
    return found


@pytest.mark.parametrize("path", TRUSTED, ids=lambda p: p.name)
def test_trusted_code_imports_nothing_from_inside_but_the_envelope(path):
    """Check that no trusted module imports a module that runs in a sandbox (their names are only
    shipped as source, grader.inside.source): only the envelope, which the grader wraps answers in."""
    inside_imports = {m for m in _imports(path) if m.startswith("grader.inside.")}
    assert inside_imports <= {"grader.inside.envelope"}, (path.name, inside_imports)


def test_inside_holds_exactly_its_modules_and_they_import_no_grader_code():
    """Check that grader/inside/ is the list inside.MODULES says, and that none of its modules
    imports the grader (grader/ is not visible inside a sandbox: they find each other in
    sys.modules under private names)."""
    files = {p.stem for p in (GRADER / "inside").glob("*.py")} - {"__init__"}
    assert files == set(inside.MODULES)
    for name in inside.MODULES:
        grader_imports = {m for m in _imports(GRADER / "inside" / f"{name}.py") if m.split(".")[0] == "grader"}
        assert not grader_imports, (name, grader_imports)
        assert inside.source(name) == (GRADER / "inside" / f"{name}.py").read_text()


def test_every_status_comes_from_the_table():
    """Check that the autograder's statuses, the report's review list and the README's status
    table are the table's, in its order, and that the feedback pages have words for each."""
    assert set(report.REVIEW) == {s.name for s in statuses.TABLE if s.review}
    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `([a-z]+)` \|", readme, re.M)
    assert tuple(rows) == statuses.NAMES, rows
    for s in statuses.TABLE:
        assert statuses.student_text(s.name) and statuses.student_text(s.name) != s.name or s.name == "graded"
    assert [s.name for s in statuses.TABLE if not s.cached] == ["error"]
    for reason, (status, _) in statuses.DEATHS.items():
        assert status in statuses.NAMES, reason


def test_no_module_keeps_its_own_status_table():
    """Check that outside grader/statuses.py no module spells out a list of several status names
    (a second table that a new status would have to be added to)."""
    names = set(statuses.NAMES) - {"missing", "error"}     # words used in other senses too
    for path in [p for p in GRADER.rglob("*.py") if p.name != "statuses.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)):
                items = node.keys if isinstance(node, ast.Dict) else node.elts
                found = {i.value for i in items if isinstance(i, ast.Constant) and i.value in names}
                assert len(found) < 3, (path.relative_to(ROOT), node.lineno, sorted(found))


@pytest.mark.parametrize("module", ["grader.statuses", "grader.limits", "grader.inside", "grader.inside.envelope"])
def test_doctests(module):
    """Check the examples in the docstrings of the modules that hold the layout's tables."""
    import importlib
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result


def test_the_package_map_names_every_module():
    """Check that grader/__init__.py's map of the package names every module and folder in it."""
    text = grader.__doc__ or ""
    missing = [p.stem for p in TRUSTED if p.stem not in ("__init__", "__main__") and p.stem not in text]
    assert not missing and "inside" in text, missing


def test_the_pipeline_is_what_a_run_does_in_that_order():
    """Check that autograde.PIPELINE names the functions `_autograde` calls, in the order it first
    calls them (the declaration a newcomer reads is the run, not a comment about it)."""
    import inspect
    tree = ast.parse(inspect.getsource(autograde._autograde).lstrip())
    steps = {fn.__name__: name for name, fn, _ in autograde.PIPELINE}
    called = []
    for node in sorted((n for n in ast.walk(tree) if isinstance(n, ast.Call)), key=lambda n: (n.lineno, n.col_offset)):
        if isinstance(node.func, ast.Name) and node.func.id in steps and steps[node.func.id] not in called:
            called.append(steps[node.func.id])
    assert called == [name for name, _, _ in autograde.PIPELINE], called


def test_each_module_of_the_autograde_package_is_in_its_map():
    """Check that the autograde package's docstring names each of its modules."""
    modules = {p.stem for p in (GRADER / "autograde").glob("*.py")} - {"__init__"}
    doc = autograde.__doc__ or ""
    assert modules and all(re.search(rf"^\s+{m}\s", doc, re.M) for m in modules), modules


def test_the_limits_inside_agree_with_the_graders():
    """Check that the sizes the sandboxed code keeps its own copies of (it cannot import
    grader/limits.py) agree with the trusted limits: a frame the shell may send is one the grader
    reads, and an answer the wire allows fits in a frame."""
    from grader import limits
    shell, wire = inside.source("shell"), inside.source("wire")
    frame = eval(re.search(r"^MAX_FRAME = (.+?)\s+#", shell, re.M).group(1))
    message = eval(re.search(r"^MAX_MESSAGE = (.+?)\s+#", wire, re.M).group(1))
    assert frame == limits.MAX_MESSAGE and message < limits.MAX_MESSAGE


def test_each_limit_is_defined_once():
    """Check that no trusted module assigns a name grader/limits.py defines (it imports it)."""
    from grader import limits
    names = {n for n in vars(limits) if n.isupper()}
    for path in [p for p in GRADER.rglob("*.py") if p.name != "limits.py" and "inside" not in p.parts]:
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign):
                assigned = {t.id for t in node.targets if isinstance(t, ast.Name)}
                assert not assigned & names, (path.relative_to(ROOT), assigned & names)
