"""Talk to one sandboxed grading process (grader/inside/shell.py: a student kernel or an examiner): boot
it with a trusted preamble, run cells, collect capped outputs, relay proxy calls.

No Jupyter kernel and no nbclient/nbgrader app per notebook: an IPython shell per process, on one
Unix socket the grader listens on (length-prefixed JSON frames, grader/inside/shell.py), so the grader can

* fork kernels from a warm zygote that imported PyTorch and convlab before a submission exists
  (grader/forkserver.py), and start each in ~0.05 s (a Jupyter kernel: ~0.2 s);
* run each cell against ONE deadline for the whole notebook, and kill the sandbox (not interrupt
  the kernel) when it passes, so a loop that swallows KeyboardInterrupt cannot hang grading;
* cap what it keeps of the outputs (per cell and per notebook) and refuse frames over
  MAX_MESSAGE, so a submission printing gigabytes fills neither memory, disk nor feedback;
* answer the examiner's input requests (its proxy calls, grader/grading.py) while it runs
  a test cell, and pass each to the student kernel's agent with its own deadline (`call`),
  interrupting or killing it when a call hangs.

A student kernel's frames are the student's data: its code can write anything to the socket.
Each frame is parsed as JSON (a frame that is not a UTF-8 JSON object, or is nested more than
MAX_DEPTH deep, ends the kernel: "crashed", saying what was refused), every string in it has its
lone surrogates (which UTF-8 cannot encode, so no notebook could be written with them) replaced
by U+FFFD (`repair_surrogates`), outputs are counted against the flood limit and capped, an output
nbformat would reject is dropped with a note, and a reply or answer is taken only where one is
due (the examiner checks each answer's call id). No active content crosses: a
display or result keeps only text/plain and PNG/JPEG images (base64, with a numeric width and
height), since formgrader and nbconvert render the graded notebook in the instructor's browser;
HTML, JavaScript, SVG, Markdown, LaTeX, widgets and any other type are dropped and named in a
note (`_inert`).
"""
from __future__ import annotations

import json
import re
import select
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NoReturn

from nbformat import ValidationError
from nbformat.v4 import new_output, output_from_msg

from .sandbox import Limits, SandboxedKernel, start_shell, tree_pids
from .limits import CELL_OUTPUT_CAP, FLOOD_LIMIT, MAX_DEPTH, MAX_MESSAGE, NOTEBOOK_OUTPUT_CAP

TRUNCATED = "\n[... output truncated by the grader ...]\n"
ALIVE_EVERY = 0.05               # seconds between two checks that the kernel process still lives
EXIT_GRACE = 0.3                 # after the socket closed: seconds to wait for the exit code
READ_AHEAD = 2 * MAX_MESSAGE     # bytes read from a process while the grader's frame waits to go
OUTPUTS = ("stream", "display_data", "execute_result", "error")
# What a display or result keeps: nothing that a browser opening the graded notebook (formgrader,
# nbconvert, JupyterLab) would run or render as markup; the rest is named in a note.
KEPT_MIME = ("text/plain", "image/png", "image/jpeg")
NOT_KEPT = "[{types} output not kept: graded notebooks keep text and images only]"
REJECTED = "[{kind} output not kept: not a valid notebook output ({reason})]"
_BASE64 = re.compile(r"[A-Za-z0-9+/\n\r ]*(?:=[\n\r ]*){0,2}")
_SURROGATE = re.compile("[\ud800-\udfff]")

WARM_PREAMBLE = """
def _convlab_warm():
    import resource, warnings
    resource.setrlimit(resource.RLIMIT_NPROC, ({nproc}, {nproc}))
    warnings.filterwarnings("ignore", module="matplotlib")
    import numpy, torch, torch.nn.functional, torch.testing, matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot, convlab
_convlab_warm(); del _convlab_warm
"""

class TooDeep(ValueError):
    """Data nested deeper than allowed (`repair_surrogates`)."""


class CallTimeout(Exception):
    """A call did not answer before its own deadline (the kernel was not killed)."""


class KernelDied(Exception):
    """The kernel stopped: `reason` is timeout, memory, disk, flood, or crashed."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


@dataclass
class Reply:
    status: str                      # "ok" | "error" | "aborted"
    outputs: list
    ename: str = ""
    evalue: str = ""
    execution_count: int | None = None


@dataclass
class OutputBudget:
    notebook_left: int = NOTEBOOK_OUTPUT_CAP
    received: int = 0


@dataclass
class Shell:
    """A grading process (grader/inside/shell.py), a student kernel or an examiner (`role`), connected
    to a Unix socket the grader listens on (only its own process may connect: the peer's pid is
    checked). `ready()` must succeed before `run()`; a student kernel also answers `call()`."""
    process: SandboxedKernel
    listener: socket.socket
    role: str = "examiner"
    timings: dict = field(default_factory=dict)
    on_stop: Callable[[], None] | None = None     # e.g. give a fork server back to its pool
    frames: "_Frames | None" = None
    alive_checked: float = 0.0                   # when /proc last said the process lives

    @classmethod
    def start(cls, scratch: Path, *, role: str, sandbox: bool, limits: Limits) -> "Shell":
        """A shell in its own new sandbox (or none): bubblewrap + `python -c <grader/inside/shell.py>`."""
        t0 = time.monotonic()
        proc, listener = start_shell(scratch, role=role, sandbox=sandbox, limits=limits)
        return cls.attach(proc, listener, t0, role=role)

    @classmethod
    def attach(cls, proc: SandboxedKernel, listener: socket.socket, t0: float, *, role: str = "examiner") -> "Shell":
        """The grader's side of a process that was just started (or forked, grader/forkserver.py)."""
        shell = cls(proc, listener, role)
        shell.timings["spawn"] = time.monotonic() - t0      # bubblewrap started, or shell forked
        return shell

    @property
    def what(self) -> str:
        return "the student's kernel" if self.role == "student" else "the examiner"

    # -- start -------------------------------------------------------------------------------
    def ready(self, timeout: float = 60.0) -> None:
        """Wait until the process connects and says hello, then run the warm preamble (imports).
        If either fails, it is stopped before the error is raised."""
        try:
            self._ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _ready(self, timeout: float) -> None:
        t0 = time.monotonic()
        deadline = t0 + timeout
        while self.frames is None:
            if select.select([self.listener], [], [], 0.05)[0]:
                self.frames = _accept_from(self.listener, self.process)
                continue
            try:
                self._check_alive()
            except KernelDied as died:
                raise KernelDied("crashed", f"{self.what} did not start ({died})") from None
            if time.monotonic() >= deadline:
                self.process.kill("timeout")
                raise KernelDied("crashed", f"{self.what} did not start (timeout)")
        self.listener.close()
        if self._recv(deadline).get("op") != "hello":
            raise KernelDied("crashed", f"{self.what} did not say hello")
        self.timings["kernel_start"] = time.monotonic() - t0
        t = time.monotonic()
        reply = self.run(WARM_PREAMBLE.format(nproc=self.process.limits.nproc), deadline=deadline, silent=True)
        if reply.status != "ok":
            raise KernelDied("crashed", f"the warm preamble failed: {reply.ename}: {reply.evalue}")
        self.timings["imports"] = time.monotonic() - t

    # -- frames ------------------------------------------------------------------------------
    def _send(self, msg: dict, deadline: float, kill: bool = True) -> None:
        """Send one frame, reading what the process sends meanwhile (neither side can block the
        other). A frame not sent by the deadline ends the process (half a frame leaves nothing to
        talk on): KernelDied "timeout", or "call_timeout" for a call (kill=False)."""
        try:
            sent = self.frames.send(json.dumps(msg).encode(), deadline)
        except OSError:
            self._check_alive()
            raise KernelDied("crashed", f"{self.what} closed its socket") from None
        if not sent:
            reason = "timeout" if kill else "call_timeout"
            self.process.kill(reason)
            raise KernelDied(reason, f"{self.what} did not read what the grader sent")

    def _recv(self, deadline: float, kill: bool = True) -> dict:
        """The next frame, a JSON object. At the deadline the process is killed (KernelDied
        "timeout"), or, with kill=False, CallTimeout is raised; KernelDied if it died, closed the
        socket, or sent a frame over MAX_MESSAGE ("flood") or one that is not a JSON object."""
        while True:
            try:
                frame = self.frames.take()
            except OverflowError:
                self.process.kill("flood")
                raise KernelDied("flood", f"a message over {MAX_MESSAGE // 2**20} MB") from None
            if frame is not None:
                return self._parse(frame)
            if self.process.killed or time.monotonic() - self.alive_checked >= ALIVE_EVERY:
                self._check_alive()                 # (reads /proc: at most every ALIVE_EVERY
                self.alive_checked = time.monotonic()   # while frames come, not per frame)
            left = deadline - time.monotonic()
            if left <= 0:
                if not kill:
                    raise CallTimeout()
                self.process.kill("timeout")
                raise KernelDied("timeout")
            if select.select([self.frames.sock], [], [], min(0.05, left))[0] and not self.frames.fill():
                time.sleep(EXIT_GRACE)
                self._check_alive()
                self.process.kill("crashed")
                raise KernelDied("crashed", f"{self.what} closed its socket")

    def _parse(self, frame: bytes) -> dict:
        """A frame as a JSON object, nested at most MAX_DEPTH deep, its lone surrogates repaired;
        anything else ends the process (KernelDied "crashed", saying what was refused)."""
        try:
            msg = json.loads(frame.decode("utf-8"))
            if isinstance(msg, dict):       # (a few values in an honest frame: ~2 us)
                repair_surrogates(msg, MAX_DEPTH)
        except (RecursionError, TooDeep):   # (RecursionError: json's own limit, ~1000 deep)
            self._refuse(f"a message nested more than {MAX_DEPTH} deep")
        except ValueError:                  # (not UTF-8 too: UnicodeDecodeError)
            msg = None
        if not isinstance(msg, dict):
            self._refuse("a message that is not a JSON object")
        return msg

    def _refuse(self, what: str) -> NoReturn:
        """End the process for a frame the grader will not read (KernelDied "crashed")."""
        self.process.kill("crashed")
        raise KernelDied("crashed", f"{self.what} sent {what}")

    # -- cells -------------------------------------------------------------------------------
    def run(self, code: str, *, deadline: float, silent: bool = False, budget: OutputBudget | None = None,
            on_input: Callable[[str], str] | None = None) -> Reply:
        """Execute `code`; collect its outputs (capped) until its reply. With `on_input` (the
        examiner's proxy calls), each input() prompt is answered with on_input(prompt)."""
        self.submit(code, deadline=deadline, silent=silent)
        return self.result(deadline=deadline, budget=budget, on_input=on_input)

    def submit(self, code: str, *, deadline: float, silent: bool = False) -> None:
        """Send `code` to run, without waiting (then `result()`: e.g. two kernels at once)."""
        self._send({"op": "run", "code": code, "silent": silent}, deadline)

    def result(self, *, deadline: float, budget: OutputBudget | None = None,
               on_input: Callable[[str], str] | None = None) -> Reply:
        """The outputs and reply of the code last submitted."""
        budget = budget or OutputBudget()
        outputs: list = []
        kept = [0]
        while True:
            msg = self._recv(deadline)
            op = msg.get("op")
            if op == "reply":
                return _reply(msg, outputs)
            if op == "input" and on_input is not None:
                self._send({"op": "input_reply", "value": on_input(str(msg.get("prompt", "")))}, deadline)
            elif "msg_type" in msg:
                self._collect(msg, outputs, kept, budget)

    # -- the examiner's calls of the student's code (grader/inside/student_agent.py) ----------------
    def call(self, text: str, *, deadline: float, budget: OutputBudget, kill: bool = True) -> str:
        """One request to the student agent; its answer (the call's printed output is counted)."""
        self._send({"op": "call", "text": text}, deadline, kill)
        return self.call_answer(deadline=deadline, budget=budget, kill=kill)

    def call_answer(self, *, deadline: float, budget: OutputBudget, kill: bool = True) -> str:
        """The next answer; CallTimeout (kill=False) or KernelDied at the deadline."""
        while True:
            msg = self._recv(deadline, kill)
            if msg.get("op") == "answer":
                text = msg.get("text")
                return text if isinstance(text, str) else json.dumps(text)
            if msg.get("msg_type") in OUTPUTS:
                self._count(budget, len(str(msg.get("content"))))

    def interrupt(self) -> None:
        """SIGINT to the process (KeyboardInterrupt in the call it runs)."""
        self.process.interrupt()

    def stop(self) -> None:
        """Kill the sandbox (or the forked process) outright and close the sockets."""
        self.process.cleanup()
        self.listener.close()
        if self.frames is not None:
            self.frames.close()
        if self.on_stop is not None:
            on_stop, self.on_stop = self.on_stop, None
            on_stop()

    # -- outputs -----------------------------------------------------------------------------
    def _collect(self, msg: dict, outputs: list, kept: list, budget: OutputBudget) -> None:
        """Keep one output message (capped per cell and per notebook; errors always kept; prints
        to one stream in a row make one output, as in a notebook run by Jupyter)."""
        mtype, content = msg.get("msg_type"), msg.get("content")
        if mtype == "clear_output":
            outputs.clear()
            return
        if mtype not in OUTPUTS or not isinstance(content, dict):
            return
        text = content.get("text") if mtype == "stream" else None
        size = len(text) if isinstance(text, str) else len(str(content))
        self._count(budget, size)                  # (all that came counts against a flood)
        room = min(CELL_OUTPUT_CAP - kept[0], budget.notebook_left)
        if room <= 0:
            if not (outputs and str(outputs[-1].get("text", "")).endswith(TRUNCATED)):
                outputs.append(_truncation_note())
            if mtype == "error":                   # errors are always kept (they grade)
                outputs.append(_small_error(content))
            return
        out = _output(mtype, content)
        if out is None:                            # malformed (forged): dropped
            return
        if "data" in out:                          # (what is kept of a display counts against the caps)
            size = sum(len(v) for v in out.data.values())
        if size > room:
            out = _truncate(out, room)
        kept[0] += min(size, room)
        budget.notebook_left -= min(size, room)
        last = outputs[-1] if outputs else None
        if (out.output_type == "stream" and last is not None and last.output_type == "stream"
                and last.name == out.name and not last.text.endswith(TRUNCATED)):
            last.text += out.text
        else:
            outputs.append(out)

    def _count(self, budget: OutputBudget, size: int) -> None:
        budget.received += size
        if budget.received > FLOOD_LIMIT:
            self.process.kill("flood")
            raise KernelDied("flood", f"more than {FLOOD_LIMIT // 2**20} MB of output")

    def _check_alive(self) -> None:
        p = self.process
        if p.killed:
            raise KernelDied(p.killed)
        if not p.alive():
            raise KernelDied("crashed", f"the kernel exited (code {p.exit_code()})")

def _accept_from(listener: socket.socket, process: SandboxedKernel) -> "_Frames | None":
    """The next connection on `listener` if it comes from `process` or its children (the peer's
    pid, SO_PEERCRED), else None (and that connection is closed)."""
    sock, _ = listener.accept()
    pid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
    if pid in tree_pids(process):
        return _Frames(sock)
    sock.close()
    return None


class _Frames:
    """Length-prefixed frames (4 bytes, big-endian) on a connected stream socket, which never
    blocks: `fill()` after the socket polls readable, then `take()`; `send()` with a deadline."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, bytearray()
        sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, data: bytes, deadline: float) -> bool:
        """Write one frame before `deadline` (False if it could not). What arrives meanwhile is
        read (up to READ_AHEAD), so a peer that writes while we write cannot block us."""
        view = memoryview(struct.pack(">I", len(data)) + data)
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            reading = [self.sock] if len(self.buf) < READ_AHEAD else []
            readable, writable, _ = select.select(reading, [self.sock], [], min(left, 0.05))
            if writable:
                try:
                    view = view[self.sock.send(view):]
                except BlockingIOError:
                    pass
            if readable and not self.fill():
                raise BrokenPipeError("the peer closed the socket")
        return True

    def fill(self) -> bool:
        """Read what is there; False at end of stream (or a connection reset by the peer)."""
        try:
            chunk = self.sock.recv(1 << 20)
        except BlockingIOError:
            return True
        except OSError:
            return False
        self.buf += chunk
        return bool(chunk)

    def take(self) -> bytes | None:
        """The next whole frame, or None; OverflowError for a frame over MAX_MESSAGE."""
        if len(self.buf) < 4:
            return None
        n = struct.unpack(">I", self.buf[:4])[0]
        if n > MAX_MESSAGE:
            raise OverflowError(n)
        if len(self.buf) < 4 + n:
            return None
        frame, self.buf = bytes(self.buf[4:4 + n]), self.buf[4 + n:]
        return frame

    def close(self) -> None:
        self.sock.close()


def _reply(msg: dict, outputs: list) -> Reply:
    """A cell's reply frame as a Reply (fields of the wrong type, e.g. forged, read as missing)."""
    def text(key: str) -> str:
        value = msg.get(key, "")
        return value if isinstance(value, str) else ""
    count = msg.get("execution_count")
    return Reply(status=text("status") or "error", outputs=outputs, ename=text("ename"), evalue=text("evalue"),
                 execution_count=count if type(count) is int and count >= 0 else None)


def _output(mtype: str, content: dict):
    """The notebook output of an output frame, or None if it is not one nbformat would accept.
    A display or result keeps only inert data (`_inert`): nothing a browser would run."""
    strings = lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)  # noqa: E731
    if mtype == "stream":
        ok = content.get("name") in ("stdout", "stderr") and isinstance(content.get("text"), str)
    elif mtype == "error":
        ok = (isinstance(content.get("ename"), str) and isinstance(content.get("evalue"), str)
              and strings(content.get("traceback")))
    else:
        data, metadata = content.get("data"), content.get("metadata", {})
        ok = (isinstance(data, dict) and isinstance(metadata, dict)
              and all(isinstance(k, str) and "/" in k for k in data))
        if mtype == "execute_result":
            ok = ok and type(content.get("execution_count")) in (int, type(None))
        if ok:
            content = {**content, **dict(zip(("data", "metadata"), _inert(data, metadata)))}
    if not ok:
        return None
    try:
        return output_from_msg({"header": {"msg_type": mtype}, "content": content})
    except ValidationError as err:              # e.g. a negative execution_count
        return new_output("stream", name="stdout", text=REJECTED.format(kind=mtype, reason=str(err.message)[:200]))


def _inert(data: dict, metadata: dict) -> tuple[dict, dict]:
    """What a graded notebook keeps of a display's data and metadata: text/plain (a string) and
    PNG or JPEG images (base64 strings) only, with their width and height; everything a browser
    could run or that could carry markup (HTML, JavaScript, SVG, Markdown, LaTeX, widgets,
    anything unknown) is dropped, and named in text/plain when that leaves none."""
    kept = {mime: _plain(mime, value) for mime, value in data.items() if mime in KEPT_MIME}
    kept = {mime: value for mime, value in kept.items() if value is not None}
    dropped = [mime for mime in data if mime not in kept]
    if dropped and "text/plain" not in kept:
        kept["text/plain"] = _not_kept(dropped)
    sizes = {mime: _image_size(metadata.get(mime)) for mime in kept if mime != "text/plain"}
    return kept, {mime: size for mime, size in sizes.items() if size}


def _plain(mime: str, value: object) -> str | None:
    """`value` as kept for `mime` (text/plain: a string or list of strings, joined; an image: a
    base64 string), or None if it is not one."""
    if mime == "text/plain":
        if isinstance(value, list) and all(isinstance(x, str) for x in value):
            return "".join(value)
        return value if isinstance(value, str) else None
    return value if isinstance(value, str) and _BASE64.fullmatch(value) else None


def _image_size(metadata: object) -> dict:
    """The width and height (positive numbers) of an image's metadata; nothing else of it (a
    string there ends up in an <img> tag's attributes when nbconvert renders the notebook)."""
    if not isinstance(metadata, dict):
        return {}
    return {k: v for k in ("width", "height") if type(v := metadata.get(k)) in (int, float) and 0 < v < 1e5}


def _not_kept(dropped: list[str]) -> str:
    """The text/plain that says which types of a display were dropped (the first few, shortened)."""
    names = [m[:60] for m in dropped[:4]] + ([f"{len(dropped) - 4} more"] if len(dropped) > 4 else [])
    return NOT_KEPT.format(types=", ".join(names))


def repair_surrogates(value: object, max_depth: int | None = None) -> object:
    """`value` (JSON data: dicts, lists, strings, numbers) with every lone surrogate in its strings
    and keys replaced by U+FFFD, in place; a string is returned repaired. TooDeep if it is nested
    more than `max_depth` deep (None: any depth). No recursion: any depth is walked."""
    if isinstance(value, str):
        return _repaired(value)
    pending = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        if max_depth is not None and depth > max_depth:
            raise TooDeep(f"nested more than {max_depth} deep")
        if isinstance(node, dict):
            for key in [k for k in node if isinstance(k, str) and not k.isascii() and _SURROGATE.search(k)]:
                node[_repaired(key)] = node.pop(key)
            items = node.items()
        else:
            items = enumerate(node)
        for key, item in list(items):
            if isinstance(item, str):
                if not item.isascii():
                    node[key] = _repaired(item)
            elif isinstance(item, (dict, list)):
                pending.append((item, depth + 1))
    return value


def _repaired(text: str) -> str:
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def _truncation_note():
    return new_output("stream", name="stdout", text=TRUNCATED)


def _small_error(content: dict):
    return new_output("error", ename=str(content.get("ename", ""))[:200],
                      evalue=str(content.get("evalue", ""))[:2000], traceback=[])


def _truncate(out, room: int):
    if out.output_type == "stream":
        return new_output("stream", name=out.name, text=out.text[:room] + TRUNCATED)
    if out.output_type == "error":
        return _small_error(out)
    text = str(out.get("data", {}).get("text/plain", ""))[:room]
    return new_output("stream", name="stdout", text=text + TRUNCATED)
