"""Talk to one sandboxed kernel: boot it with a trusted preamble, run cells, collect capped outputs.
(`Kernel`: a Jupyter kernel, the student's; `Shell`: the examiner's IPython shell, same interface.)

No nbclient/nbgrader app per notebook: the grader speaks the Jupyter protocol itself (a
jupyter_client BlockingKernelClient over IPC sockets), so it can

* start kernels ahead of time and import PyTorch and convlab in them before a submission exists
  (the "warm" preamble; trusted code, run before any student code);
* run each cell against ONE deadline for the whole notebook, and kill the sandbox (not interrupt
  the kernel) when it passes, so a loop that swallows KeyboardInterrupt cannot hang grading;
* cap what it keeps of the outputs (per cell and per notebook) and refuse huge messages
  (ZMQ_MAXMSGSIZE), so a submission printing gigabytes fills neither memory, disk nor feedback;
* answer the examiner's input requests (its proxy calls, grader/examination.py) while it runs
  a test cell, and pass each to the student kernel's agent with its own deadline, over a socket
  the agent serves between two student cells (`open_calls`/`call`/`close_calls`), interrupting
  or killing it when a call hangs.
"""
from __future__ import annotations

import json
import os
import queue
import select
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import zmq
import zmq.utils.monitor
from jupyter_client.blocking.client import BlockingKernelClient
from nbformat.v4 import output_from_msg

from .sandbox import Limits, SandboxedKernel, start_kernel, start_shell, tree_pids

MAX_MESSAGE = 8 * 2**20          # a larger iopub/shell message drops the connection: the grader sees
                                 # the disconnect (a socket monitor) and stops the kernel as a flood
CELL_OUTPUT_CAP = 100_000        # characters of output kept per cell
NOTEBOOK_OUTPUT_CAP = 500_000    # ... and per notebook
FLOOD_LIMIT = 16 * 2**20         # bytes of output received before the grader stops the kernel
                                 # (10x the largest lesson's outputs; a flood is stopped in seconds)
TRUNCATED = "\n[... output truncated by the grader ...]\n"
ALIVE_EVERY = 0.05               # seconds between two checks that the kernel process still lives
EXIT_GRACE = 0.3                 # after a disconnect: seconds to wait for an exit (a crash, not a flood)

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
    user_expressions: dict
    ename: str = ""
    evalue: str = ""
    execution_count: int | None = None


@dataclass
class OutputBudget:
    notebook_left: int = NOTEBOOK_OUTPUT_CAP
    received: int = 0


class _Collecting:
    """What Kernel and Shell share: waiting for the process to start, the warm preamble, output
    caps and the flood limit (`self.process` is theirs)."""
    process: SandboxedKernel

    def _collect(self, msg: dict, outputs: list, kept: list, budget: OutputBudget) -> None:
        """Keep one output message (capped per cell and per notebook; errors always kept)."""
        mtype, content = msg["msg_type"], msg["content"]
        if mtype == "clear_output":
            outputs.clear()
            return
        if mtype not in ("stream", "display_data", "execute_result", "error"):
            return
        size = len(str(content))
        self._count(budget, size)
        room = min(CELL_OUTPUT_CAP - kept[0], budget.notebook_left)
        if room <= 0:
            if not (outputs and outputs[-1].get("text") == TRUNCATED):
                outputs.append(_truncation_note())
            if mtype == "error":                   # errors are always kept (they grade)
                outputs.append(_small_error(content))
            return
        out = output_from_msg(msg)
        if size > room:
            out = _truncate(out, room)
        kept[0] += min(size, room)
        budget.notebook_left -= min(size, room)
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

    def ready(self, timeout: float = 60.0) -> None:
        """Wait until the process answers, then run the warm preamble (imports). If either fails,
        it is stopped before the error is raised."""
        try:
            self._ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_until(self, started: Callable[[], bool], deadline: float, what: str) -> None:
        """Call `started()` (one short wait for a sign of life) until it is true; KernelDied
        ("crashed") if the process dies or the deadline passes first."""
        while not started():
            try:
                self._check_alive()
            except KernelDied as died:
                raise KernelDied("crashed", f"{what} did not start ({died})") from None
            if time.monotonic() >= deadline:
                self.process.kill("timeout")
                raise KernelDied("crashed", f"{what} did not start (timeout)")

    def _warm(self, deadline: float) -> None:
        t = time.monotonic()
        reply = self.run(WARM_PREAMBLE.format(nproc=self.process.limits.nproc), deadline=deadline, silent=True)
        if reply.status != "ok":
            raise KernelDied("crashed", f"the warm preamble failed: {reply.ename}: {reply.evalue}")
        self.timings["imports"] = time.monotonic() - t


@dataclass
class Kernel(_Collecting):
    """A started kernel plus its client. `ready()` must succeed before `run()`."""
    process: SandboxedKernel
    client: BlockingKernelClient
    timings: dict = field(default_factory=dict)
    calls: "_Frames | None" = None                 # the socket of a series of proxy calls
    calls_msg: str = ""
    monitors: list = field(default_factory=list)   # socket monitors: a dropped connection means
                                                   # an oversized message (or an exit)
    on_stop: Callable[[], None] | None = None     # e.g. give a fork server back to its pool

    @classmethod
    def start(cls, scratch: Path, *, sandbox: bool, limits: Limits) -> "Kernel":
        """A kernel in its own new sandbox (or none): bubblewrap + `python -m ipykernel_launcher`."""
        t0 = time.monotonic()
        return cls.attach(start_kernel(scratch, sandbox=sandbox, limits=limits), t0)

    @classmethod
    def attach(cls, proc: SandboxedKernel, t0: float) -> "Kernel":
        """A client for a kernel process that was just started (or forked, grader/forkserver.py)."""
        ctx = zmq.Context()
        ctx.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
        ctx.setsockopt(zmq.LINGER, 0)
        client = BlockingKernelClient(context=ctx)
        client.load_connection_info(proc.connection)
        client.start_channels(hb=False)
        monitors = [channel.socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
                    for channel in (client.shell_channel, client.iopub_channel)]
        k = cls(proc, client, monitors=monitors)
        k.timings["spawn"] = time.monotonic() - t0      # bubblewrap started, or kernel forked
        return k

    def _ready(self, timeout: float) -> None:
        t0 = time.monotonic()
        # Ready means: a kernel_info reply on shell AND a message on iopub. A kernel that comes up
        # fast (a forked one) may answer before our iopub subscription is connected, and PUB
        # drops what no subscriber gets: without the second condition a later "idle" is lost.
        seen = {"reply": False, "iopub": False}

        def started() -> bool:
            msg_id = self.client.kernel_info()
            step = time.monotonic() + 0.25
            while time.monotonic() < step and not all(seen.values()):
                for channel in (self.client.shell_channel, self.client.iopub_channel):
                    try:
                        msg = channel.get_msg(timeout=0.02)
                    except (queue.Empty, ValueError, KeyError, TypeError):
                        continue
                    if channel is self.client.iopub_channel:
                        seen["iopub"] = True
                    elif msg["parent_header"].get("msg_id") == msg_id:
                        seen["reply"] = True
            return all(seen.values())
        self._wait_until(started, t0 + timeout, "the kernel")
        self.drain_iopub()
        self.timings["kernel_start"] = time.monotonic() - t0
        self._warm(t0 + timeout)

    def drain_iopub(self) -> None:
        while True:
            try:
                self.client.iopub_channel.get_msg(timeout=0)
            except queue.Empty:
                return

    def _next(self, channels: list, deadline: float, kill: bool = True, fd: int | None = None):
        """(channel, message): the next message on any of `channels`, or (fd, None) when `fd` (a
        plain socket) is readable first. At the deadline the kernel is killed (KernelDied
        "timeout"), or, with kill=False, CallTimeout is raised."""
        poller = zmq.Poller()
        for channel in channels:
            poller.register(channel.socket, zmq.POLLIN)
        if fd is not None:
            poller.register(fd, zmq.POLLIN)
        for monitor in self.monitors:
            poller.register(monitor, zmq.POLLIN)
        checked = 0.0
        while True:
            if self.process.killed or time.monotonic() - checked >= ALIVE_EVERY:
                self._check_alive()                 # (reads /proc: not for every message)
                checked = time.monotonic()
            left = deadline - time.monotonic()
            if left <= 0:
                if not kill:
                    raise CallTimeout()
                self.process.kill("timeout")
                raise KernelDied("timeout")
            ready = dict(poller.poll(int(min(0.05, left) * 1000) + 1))
            if any(monitor in ready for monitor in self.monitors):
                self._disconnected(ready)
            if fd is not None and fd in ready:
                return fd, None
            for channel in channels:
                if channel.socket in ready:
                    try:
                        return channel, channel.get_msg(timeout=0)
                    except (queue.Empty, ValueError, KeyError, TypeError):
                        # a message with a bad signature or shape (e.g. from a forked student
                        # process writing to an inherited socket): ignored, like any
                        # unauthenticated message
                        continue

    def _disconnected(self, ready: dict) -> None:
        """A monitor fired. A connection that drops while the kernel lives means it sent a message
        over MAX_MESSAGE (a flood batched into huge messages, or a forged huge reply): kill it.
        A kernel that exits drops its connections too: that is a crash, not a flood."""
        dropped = False
        for monitor in self.monitors:
            if monitor in ready:
                event = zmq.utils.monitor.recv_monitor_message(monitor, zmq.NOBLOCK)
                dropped |= event["event"] == zmq.EVENT_DISCONNECTED
        if not dropped:
            return
        until = time.monotonic() + EXIT_GRACE
        while time.monotonic() < until:
            self._check_alive()
            time.sleep(0.02)
        self.process.kill("flood")
        raise KernelDied("flood", f"its connection dropped while it ran (a message over "
                                    f"{MAX_MESSAGE // 2**20} MB, e.g. from a print flood)")

    def run(self, code: str, *, deadline: float, user_expressions: dict | None = None,
            silent: bool = False, budget: OutputBudget | None = None,
            on_input: Callable[[str], str] | None = None) -> Reply:
        """Execute `code`; collect its outputs (capped) until the kernel is idle again. With
        `on_input`, the code may ask for input (the examiner's proxy calls): each prompt is
        answered with on_input(prompt)."""
        budget = budget or OutputBudget()
        msg_id = self.client.execute(code, silent=silent, store_history=not silent,
                                     user_expressions=user_expressions or {},
                                     allow_stdin=on_input is not None, stop_on_error=False)
        c = self.client
        channels = [c.iopub_channel, c.shell_channel] + ([c.stdin_channel] if on_input else [])
        outputs: list = []
        kept = [0]
        reply = None
        idle = False
        while reply is None or not idle:
            channel, msg = self._next(channels, deadline)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if channel is c.shell_channel:
                reply = msg
            elif channel is c.stdin_channel:
                if msg["msg_type"] == "input_request":
                    c.input(on_input(msg["content"].get("prompt", "")))
            elif msg["msg_type"] == "status":
                idle = msg["content"].get("execution_state") == "idle"
            else:
                self._collect(msg, outputs, kept, budget)
        content = reply["content"]
        return Reply(status=content.get("status", "error"), outputs=outputs,
                     user_expressions=content.get("user_expressions") or {},
                     ename=content.get("ename", ""), evalue=content.get("evalue", ""),
                     execution_count=content.get("execution_count"))

    def answer(self, msg_id: str, *, deadline: float, budget: OutputBudget, kill: bool = True) -> dict:
        """The content of the shell reply to message `msg_id` (printed output is counted, not kept).
        CallTimeout (kill=False) or KernelDied at the deadline."""
        c = self.client
        while True:
            channel, msg = self._next([c.shell_channel, c.iopub_channel], deadline, kill)
            if channel is c.iopub_channel:
                if msg["msg_type"] in ("stream", "display_data", "execute_result", "error"):
                    self._count(budget, len(str(msg["content"])))
            elif msg["parent_header"].get("msg_id") == msg_id:
                return msg["content"]

    # -- a series of proxy calls over a socket (grader/student_agent.py `serve_calls`) ---------
    def open_calls(self, listener: socket.socket, inside: str, *, deadline: float) -> None:
        """Have the student agent serve requests over the socket `listener` (at `inside` as the
        kernel sees it) until `close_calls`. KernelDied if it does not connect in time."""
        msg = self.client.session.msg("convlab_request", {"serve": inside})
        self.client.shell_channel.send(msg)
        self.calls_msg = msg["header"]["msg_id"]
        c = self.client
        try:
            while True:
                channel, reply = self._next([c.shell_channel, c.iopub_channel], deadline, fd=listener.fileno())
                if channel == listener.fileno():
                    self.calls = _accept_from(listener, self.process)
                    if self.calls is not None:
                        return
                elif channel is c.shell_channel and reply["parent_header"].get("msg_id") == self.calls_msg:
                    self.process.kill("crashed")
                    raise KernelDied("crashed", f"the student's kernel did not serve the calls: "
                                                f"{str(reply['content'].get('text'))[:200]}")
        finally:
            listener.close()

    def call(self, text: str, *, deadline: float, budget: OutputBudget, kill: bool = True) -> str:
        """One request over the calls socket; its answer (the call's printed output is counted)."""
        self.calls.send(text.encode())
        return self.call_answer(deadline=deadline, budget=budget, kill=kill)

    def call_answer(self, *, deadline: float, budget: OutputBudget, kill: bool = True) -> str:
        """The next answer on the calls socket; CallTimeout (kill=False) or KernelDied at the
        deadline, KernelDied if the student's side closed the socket or sent a frame too large."""
        c = self.client
        while True:
            try:
                frame = self.calls.take()
            except OverflowError:
                self.process.kill("flood")
                raise KernelDied("flood", f"an answer over {MAX_MESSAGE // 2**20} MB") from None
            if frame is not None:
                return frame.decode(errors="replace")
            channel, msg = self._next([c.iopub_channel], deadline, kill, fd=self.calls.fileno())
            if msg is None:
                if not self.calls.fill():
                    self.process.kill("crashed")
                    raise KernelDied("crashed", "the student's kernel stopped answering the calls")
            elif msg["msg_type"] in ("stream", "display_data", "execute_result", "error"):
                self._count(budget, len(str(msg["content"])))

    def close_calls(self, *, deadline: float, budget: OutputBudget) -> None:
        """End the series: the agent returns to the kernel, which is then idle again."""
        calls, self.calls = self.calls, None
        try:
            calls.send(b"")
        except OSError:
            pass
        calls.close()
        self.answer(self.calls_msg, deadline=deadline, budget=budget)

    def interrupt(self) -> None:
        """SIGINT to the kernel process (KeyboardInterrupt in the code it runs)."""
        self.process.interrupt()

    def stop(self) -> None:
        """Kill the sandbox outright (no graceful shutdown) and close the sockets."""
        self.process.cleanup()
        if self.calls is not None:
            self.calls.close()
            self.calls = None
        try:
            for monitor in self.monitors:
                monitor.close(linger=0)
            self.client.stop_channels()
            self.client.context.destroy(linger=0)
        except Exception:
            pass
        if self.on_stop is not None:
            on_stop, self.on_stop = self.on_stop, None
            on_stop()


@dataclass
class Shell(_Collecting):
    """The examiner's process (grader/examiner_shell.py): an IPython shell that connects to a Unix
    socket the grader listens on. The same `ready`/`run`/`stop` as Kernel, for the examiner's
    cells; no ZeroMQ and no signatures (no student code runs in it, and only its own process may
    connect: the peer's pid is checked), which saves ~5 ms per cell and ~1 ms per proxy call."""
    process: SandboxedKernel
    listener: socket.socket
    timings: dict = field(default_factory=dict)
    on_stop: Callable[[], None] | None = None
    frames: _Frames | None = None

    @classmethod
    def start(cls, scratch: Path, *, sandbox: bool, limits: Limits) -> "Shell":
        """A shell in its own new sandbox (or none): bubblewrap + `python -c <examiner_shell.py>`."""
        t0 = time.monotonic()
        proc, listener = start_shell(scratch, sandbox=sandbox, limits=limits)
        return cls.attach(proc, listener, t0)

    @classmethod
    def attach(cls, proc: SandboxedKernel, listener: socket.socket, t0: float) -> "Shell":
        shell = cls(proc, listener)
        shell.timings["spawn"] = time.monotonic() - t0
        return shell

    def _ready(self, timeout: float) -> None:
        """Accept the shell's connection (from its own process only), its hello, then the warm preamble."""
        t0 = time.monotonic()
        deadline = t0 + timeout

        def started() -> bool:
            if select.select([self.listener], [], [], 0.05)[0]:
                self.frames = _accept_from(self.listener, self.process)
            return self.frames is not None
        self._wait_until(started, deadline, "the examiner")
        self.listener.close()
        if self._recv(deadline).get("op") != "hello":
            raise KernelDied("crashed", "the examiner did not say hello")
        self.timings["kernel_start"] = time.monotonic() - t0
        self._warm(deadline)

    def _send(self, msg: dict) -> None:
        try:
            self.frames.send(json.dumps(msg).encode())
        except OSError:
            self._check_alive()
            raise KernelDied("crashed", "the examiner closed its socket") from None

    def _recv(self, deadline: float) -> dict:
        """The next frame; KernelDied at the deadline (the shell is killed) or if it died."""
        checked = 0.0
        while True:
            try:
                frame = self.frames.take()
            except OverflowError:
                self.process.kill("flood")
                raise KernelDied("flood", f"a message over {MAX_MESSAGE // 2**20} MB") from None
            if frame is not None:
                return json.loads(frame)
            if self.process.killed or time.monotonic() - checked >= ALIVE_EVERY:
                self._check_alive()
                checked = time.monotonic()
            left = deadline - time.monotonic()
            if left <= 0:
                self.process.kill("timeout")
                raise KernelDied("timeout")
            if select.select([self.frames.sock], [], [], min(0.05, left))[0] and not self.frames.fill():
                time.sleep(EXIT_GRACE)
                self._check_alive()
                raise KernelDied("crashed", "the examiner closed its socket")

    def run(self, code: str, *, deadline: float, user_expressions: dict | None = None,
            silent: bool = False, budget: OutputBudget | None = None,
            on_input: Callable[[str], str] | None = None) -> Reply:
        """Execute `code` (as Kernel.run): its outputs, capped; input() is answered by on_input."""
        budget = budget or OutputBudget()
        self._send({"op": "run", "code": code, "silent": silent, "user_expressions": user_expressions or {}})
        outputs: list = []
        kept = [0]
        while True:
            msg = self._recv(deadline)
            if msg.get("op") == "reply":
                return Reply(status=msg.get("status", "error"), outputs=outputs,
                             user_expressions=msg.get("user_expressions") or {}, ename=msg.get("ename", ""),
                             evalue=msg.get("evalue", ""), execution_count=msg.get("execution_count"))
            if msg.get("op") == "input":
                value = on_input(msg.get("prompt", "")) if on_input else ""
                self._send({"op": "input_reply", "value": value})
            elif "msg_type" in msg:
                self._collect({"header": {"msg_type": msg["msg_type"]}, **msg}, outputs, kept, budget)

    def stop(self) -> None:
        """Kill the sandbox (or the forked process) and close the sockets."""
        self.process.cleanup()
        self.listener.close()
        if self.frames is not None:
            self.frames.close()
        if self.on_stop is not None:
            on_stop, self.on_stop = self.on_stop, None
            on_stop()


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
    """Length-prefixed frames (4 bytes, big-endian) on a connected stream socket, read without
    blocking: `fill()` after the socket polls readable, then `take()`."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, bytearray()

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, data: bytes) -> None:
        self.sock.sendall(struct.pack(">I", len(data)) + data)

    def fill(self) -> bool:
        """Read what is there; False at end of stream."""
        chunk = self.sock.recv(1 << 20)
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


def _truncation_note():
    from nbformat.v4 import new_output
    return new_output("stream", name="stdout", text=TRUNCATED)


def _small_error(content: dict):
    from nbformat.v4 import new_output
    return new_output("error", ename=str(content.get("ename", ""))[:200],
                      evalue=str(content.get("evalue", ""))[:2000], traceback=[])


def _truncate(out, room: int):
    from nbformat.v4 import new_output
    if out.output_type == "stream":
        return new_output("stream", name=out.name, text=out.text[:room] + TRUNCATED)
    if out.output_type == "error":
        return _small_error(out)
    text = str(out.get("data", {}).get("text/plain", ""))[:room]
    return new_output("stream", name="stdout", text=text + TRUNCATED)
