"""Runs INSIDE a sandbox (its source is sent by the grader): the process of a student kernel or
of an examiner.

Not a Jupyter kernel: an IPython shell (the same cell semantics, displays and tracebacks as in a
kernel) that serves ONE client, the grader, over a Unix socket the grader listens on, with
length-prefixed JSON frames (4 bytes, big-endian, then UTF-8 JSON). A kernel's ZeroMQ sockets,
signed messages, five channels and busy/idle status cost ~0.15 s to start and ~5 ms per cell; and
signatures protect nothing here: the examiner runs no student code, and in a student kernel the
student's code could sign anything with the key it holds. So the grader trusts no frame of a
student kernel: each is data, capped and checked (grader/shell_client.py).

    grader  -> {"op": "run", "code", "silent"}
    shell   -> {"msg_type": "stream" | "display_data" | "execute_result" | "error" | "clear_output",
                "content": {...}}                   (each output, as a kernel's iopub message)
    shell   -> {"op": "input", "prompt"}            (examiner: input(), its proxy calls)
    grader  -> {"op": "input_reply", "value"}
    shell   -> {"op": "reply", "status", "execution_count", "ename", "evalue"}
    grader  -> {"op": "call", "text"}               (student: one of the examiner's proxy calls,
    shell   -> {"op": "answer", "text"}              answered by grader/inside/student_agent.py)

`main(path, role)` connects, says {"op": "hello"}, then serves until the grader closes the socket.
The role is "examiner" or "student": a student's input() raises StdinNotImplementedError, as in
a kernel whose frontend allows no input, and SIGINT (the grader's way to stop a call over its time
limit) is blocked except while a call runs, so it can only interrupt the student's code, never a
frame half read or written. `exit()` in a cell ends the process after its reply.
"""
import base64
import builtins
import io
import json
import os
import signal
import socket
import struct
import sys
import threading

MAX_FRAME = 8 * 2**20            # the grader's limit too (grader/shell_client.py MAX_MESSAGE)
STREAM_CHUNK = 64 * 1024         # characters of print output sent at once (so floods are counted)


class Channel:
    """Frames over a connected stream socket."""

    def __init__(self, sock):
        self.sock = sock
        self.lock = threading.Lock()      # (a thread of the cell's may print while we send)

    def send(self, msg):
        data = json.dumps(msg).encode()
        if len(data) > MAX_FRAME:
            data = json.dumps({"msg_type": "error", "content": {
                "ename": "GraderError", "evalue": f"an output of {len(data) // 2**20} MB was dropped",
                "traceback": []}}).encode()
        with self.lock:
            self.sock.sendall(struct.pack(">I", len(data)) + data)

    def recv(self):
        n = struct.unpack(">I", self._exact(4))[0]
        if n > MAX_FRAME:
            raise SystemExit("a frame over the limit")
        return json.loads(self._exact(n))

    def _exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise SystemExit(0)          # the grader closed the socket: done
            buf += chunk
        return bytes(buf)


class Outputs:
    """The current cell's outputs, sent as they come (prints merged per stream)."""

    def __init__(self, channel):
        self.channel = channel
        self.name, self.text, self.size = None, [], 0
        self.lock = threading.RLock()

    def stream(self, name, text):
        with self.lock:
            if self.name != name:
                self.flush()
                self.name = name
            for start in range(0, len(text), STREAM_CHUNK):     # a huge print: frames under the limit
                piece = text[start:start + STREAM_CHUNK]
                self.text.append(piece)
                self.size += len(piece)
                if self.size >= STREAM_CHUNK:
                    name = self.name
                    self.flush()
                    self.name = name

    def flush(self):
        with self.lock:
            if self.text:
                self.channel.send({"msg_type": "stream", "content": {"name": self.name, "text": "".join(self.text)}})
            self.name, self.text, self.size = None, [], 0

    def send(self, msg_type, content):
        with self.lock:
            self.flush()
            self.channel.send({"msg_type": msg_type, "content": content})


class Stream(io.TextIOBase):
    encoding = "utf-8"

    def __init__(self, outputs, name):
        self.outputs, self.name = outputs, name

    def writable(self):
        return True

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if text:
            self.outputs.stream(self.name, text)
        return len(text)


def _jsonable(data):
    """A mimebundle as JSON: bytes (e.g. PNG) base64-encoded, as ipykernel does."""
    return {k: base64.b64encode(v).decode("ascii") if isinstance(v, bytes) else v for k, v in data.items()}


def _shell(outputs):
    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    class Publisher(DisplayPublisher):
        def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs):
            outputs.send("display_data", {"data": _jsonable(data), "metadata": metadata or {},
                                          "transient": transient or {}})

        def clear_output(self, wait=False):
            outputs.send("clear_output", {"wait": wait})

    class Hook(DisplayHook):
        def start_displayhook(self):
            self.bundle = None

        def write_output_prompt(self):
            pass

        def write_format_data(self, format_dict, md_dict=None):
            self.bundle = (format_dict, md_dict or {})

        def finish_displayhook(self):
            if self.bundle and self.bundle[0]:
                outputs.send("execute_result", {"data": _jsonable(self.bundle[0]), "metadata": self.bundle[1],
                                                "execution_count": self.prompt_count})

    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config, display_pub_class=Publisher, displayhook_class=Hook)

    def showtraceback(etype, evalue, stb):
        outputs.send("error", {"ename": str(etype.__name__), "evalue": str(evalue), "traceback": stb})
    shell._showtraceback = showtraceback
    shell.ask_exit = lambda: setattr(shell, "exit_now", True)     # exit(), as in a kernel's shell
    return shell


def main(path, role="examiner"):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    channel = Channel(sock)
    outputs = Outputs(channel)
    sys.stdout, sys.stderr = Stream(outputs, "stdout"), Stream(outputs, "stderr")
    shell = _shell(outputs)
    if role == "student":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        builtins.input = _no_input
    else:
        builtins.input = lambda prompt="": _ask(channel, outputs, prompt)
    channel.send({"op": "hello"})
    while True:
        request = channel.recv()
        if request.get("op") == "run":
            channel.send(_run(shell, outputs, request))
            if shell.exit_now:                    # exit() in the cell: as a kernel, the process ends
                os._exit(0)
        elif request.get("op") == "call" and role == "student":
            channel.send({"op": "answer", "text": _call(outputs, str(request.get("text", "")))})
        else:
            raise SystemExit("unknown request")


def _ask(channel, outputs, prompt):
    """input() in the examiner: the prompt goes to the grader (a proxy call), its answer back."""
    outputs.flush()
    channel.send({"op": "input", "prompt": str(prompt)})
    answer = channel.recv()
    if answer.get("op") != "input_reply":
        raise SystemExit("the grader answered an input request with something else")
    return str(answer.get("value", ""))


def _no_input(prompt=""):
    from IPython.core.error import StdinNotImplementedError
    raise StdinNotImplementedError("raw_input was called, but this frontend does not support input requests.")


def _call(outputs, text):
    """One of the examiner's calls, answered by the student agent (grader/inside/student_agent.py), with
    SIGINT unblocked while it runs; a SIGINT that arrives just after it is discarded."""
    agent = sys.modules.get("_convlab_agent")
    if agent is None:
        return "error: no student agent"
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        answer = agent.serve(text)
    except BaseException as err:  # noqa: BLE001 - the grader hears it, the shell goes on
        answer = f"error: {type(err).__name__}: {err}"
    finally:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    if signal.SIGINT in signal.sigpending():
        signal.sigwait({signal.SIGINT})            # meant for the call that just ended
    outputs.flush()
    return answer if isinstance(answer, str) else "error: the agent's answer is not text"


def _run(shell, outputs, request):
    silent = bool(request.get("silent"))
    result = shell.run_cell(request.get("code", ""), store_history=not silent, silent=silent)
    outputs.flush()
    error = result.error_before_exec or result.error_in_exec
    reply = {"op": "reply", "status": "ok", "execution_count": shell.execution_count - 1,
             "ename": "", "evalue": ""}
    if error is not None or not result.success:
        reply.update(status="error", ename=type(error).__name__ if error else "Error", evalue=str(error or ""))
    outputs.flush()
    return reply


if __name__ == "__main__":
    main(*sys.argv[1:3])
