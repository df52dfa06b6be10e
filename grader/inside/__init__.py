"""Code that runs inside a sandbox: never imported by the trusted grader, only shipped as source.

Everything in this folder runs in a process a student's code can reach (the student kernel, or the
examiner beside it in the same sandbox), so nothing here is trusted with a verdict the student
could change: verdicts are made in the examiner, whose only contact with the student's process is
the data that crosses the wire. The grader sends these files as source text (`source`) and each
process runs them under a private module name (`_convlab_<name>`), where they find each other in
`sys.modules`:

* `shell`: the IPython shell of a student kernel or an examiner (it talks to the grader over a
  socket: grader/shell_client.py is the trusted side);
* `zygote`: a fork server's main process, which imports PyTorch once and forks shells;
* `wire`: the data format of what crosses between the two processes (plain values only);
* `student_agent`: inside the student's kernel, answers the examiner's requests (data proxies);
* `examiner`: runs the test cells against proxies of the student's names; the verdicts;
* `envelope`: the framing of a request and its answer (ids, who said what) on top of `wire`.

Tests import them as `grader.inside.<name>` (after putting `wire` where the others look for it).

>>> sorted(MODULES)
['envelope', 'examiner', 'shell', 'student_agent', 'wire', 'zygote']
>>> "def encode" in source("wire")
True
"""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
MODULES = ("shell", "zygote", "wire", "envelope", "student_agent", "examiner")


def source(name: str) -> str:
    """The source text of the inside module `name` (one of MODULES), to ship into a sandbox.

    >>> source("nope")
    Traceback (most recent call last):
    ...
    ValueError: no inside module 'nope' (one of shell, zygote, wire, envelope, student_agent, examiner)
    """
    if name not in MODULES:
        raise ValueError(f"no inside module {name!r} (one of {', '.join(MODULES)})")
    return (HERE / f"{name}.py").read_text()
