"""A static scan of the student's cells for code that patches the course's libraries or IPython.

Since verdicts are computed in the examiner (grader/inside/examiner.py), patching PyTorch, convlab,
builtins or the kernel's machinery in the student kernel cannot change a grade: such code is
pointless there, and almost always an attempt at what used to work against in-process graders.
So it is flagged (the submission is `tampered`: graded as usual, to be reviewed by hand), from
the source, by the grader (nothing runs). What is flagged, in any student cell:

* assigning or deleting an attribute of an imported library module (`torch.allclose = ...`,
  `convlab.checks.expect_close = ...`, `builtins.AssertionError = ...`), also with
  setattr/delattr, or an entry of `sys.modules` / a module's `__dict__`;
* reaching into IPython's machinery through `get_ipython()` (input and AST transformers, custom
  exception handlers, events, ...), other than running a magic;
* naming the grader's agent in the student kernel (`_convlab_agent`, grader/inside/student_agent.py).

A student can hide such code from this scan (exec of a built string); it still changes nothing.
"""
from __future__ import annotations

import ast

from .integrity import parse_cell

LIBRARIES = {"torch", "numpy", "convlab", "builtins", "sys", "IPython", "ipykernel", "matplotlib",
             "importlib", "types", "gc", "inspect", "unittest", "nbformat", "jupyter_client", "zmq"}
ALLOWED_PATHS = ("torch.backends.", "matplotlib.rcParams", "numpy.random.seed")
IPYTHON_OK = {"run_line_magic", "run_cell_magic", "magic", "system", "getoutput"}


def findings(cells: list[tuple[str, str]]) -> list[str]:
    """One message per patching statement found in the student's cells, given as (label, source)
    pairs (e.g. ("cell 12", "torch.allclose = ...")), in order."""
    trees = []
    for n, source in cells:
        tree = parse_cell(source)
        if tree is not None:
            trees.append((n, tree))
    modules = {"torch": "torch", "convlab": "convlab"}
    for _, tree in trees:
        modules.update(_module_names(tree))
    out = []
    for n, tree in trees:
        for what in _patches(tree, modules):
            out.append(f"{n}: patches {what} (this cannot change a verdict, which the "
                       "examiner computes, but is flagged for review)")
    return out[:20]


def _module_names(tree) -> dict[str, str]:
    """alias -> the library path it names, for imports of the course's libraries."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in LIBRARIES:
                    names[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in LIBRARIES:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _path(node, modules) -> str | None:
    """'torch.testing.assert_close' for an attribute chain rooted at a library alias."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id in modules and parts:
        return ".".join([modules[node.id], *reversed(parts)])
    return None


def _patches(tree, modules):
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.Delete)):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for t in targets:
            path = _path(t, modules)
            if path and not path.startswith(ALLOWED_PATHS):
                yield path
            if isinstance(t, ast.Subscript):
                inner = _path(t.value, modules) or ""
                if inner.endswith(("sys.modules", "__dict__")):
                    yield f"{inner}[...]"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args:
            if node.func.id in ("setattr", "delattr"):
                root = node.args[0]
                if isinstance(root, ast.Name) and root.id in modules:
                    yield f"{modules[root.id]} (with {node.func.id})"
                elif _path(root, modules):
                    yield f"{_path(root, modules)} (with {node.func.id})"
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else (
            node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else "")
        if name.startswith("_convlab"):
            yield f"the grader's agent ({name[:40]})"
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Name) and node.value.func.id == "get_ipython"
                and node.attr not in IPYTHON_OK):
            yield f"IPython's machinery (get_ipython().{node.attr})"
