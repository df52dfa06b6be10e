"""Runs INSIDE the examiner's sandbox (its source is sent by the grader): the examiner's process.

Not a Jupyter kernel: an IPython shell (the same cell semantics, displays and tracebacks as in a
kernel) that serves ONE client, the grader, over a Unix socket the grader listens on, with
length-prefixed JSON frames (4 bytes, big-endian, then UTF-8 JSON). No student code ever runs
here, so this protocol needs no signatures; a kernel's (ZeroMQ sockets, HMAC-signed messages,
five channels, busy/idle status) cost ~5 ms per cell and ~1 ms per proxy call.

    grader  -> {"op": "run", "code", "silent", "user_expressions"}
    shell   -> {"msg_type": "stream" | "display_data" | "execute_result" | "error" | "clear_output",
                "content": {...}}                   (each output, as a kernel's iopub message)
    shell   -> {"op": "input", "prompt"}            (input(): the examiner's proxy calls)
    grader  -> {"op": "input_reply", "value"}
    shell   -> {"op": "reply", "status", "execution_count", "ename", "evalue", "user_expressions"}

`main(path)` connects, says {"op": "hello"}, then serves until the grader closes the socket.
"""
import base64
import builtins
import io
import json
import socket
import struct
import sys

MAX_FRAME = 8 * 2**20            # the grader's limit too (grader/kernel.py MAX_MESSAGE)
STREAM_CHUNK = 64 * 1024         # characters of print output sent at once (so floods are counted)


class Channel:
    """Frames over a connected stream socket."""

    def __init__(self, sock):
        self.sock = sock

    def send(self, msg):
        data = json.dumps(msg).encode()
        if len(data) > MAX_FRAME:
            data = json.dumps({"msg_type": "error", "content": {
                "ename": "GraderError", "evalue": f"an output of {len(data) // 2**20} MB was dropped",
                "traceback": []}}).encode()
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
        self.name, self.text = None, []

    def stream(self, name, text):
        if self.name != name:
            self.flush()
            self.name = name
        self.text.append(text)
        if sum(map(len, self.text)) >= STREAM_CHUNK:
            self.flush()

    def flush(self):
        if self.text:
            self.channel.send({"msg_type": "stream", "content": {"name": self.name, "text": "".join(self.text)}})
        self.name, self.text = None, []

    def send(self, msg_type, content):
        self.flush()
        self.channel.send({"msg_type": msg_type, "content": content})


class Stream(io.TextIOBase):
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
    return shell


def main(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    channel = Channel(sock)
    outputs = Outputs(channel)
    sys.stdout, sys.stderr = Stream(outputs, "stdout"), Stream(outputs, "stderr")
    shell = _shell(outputs)

    def ask(prompt=""):
        outputs.flush()
        channel.send({"op": "input", "prompt": str(prompt)})
        answer = channel.recv()
        if answer.get("op") != "input_reply":
            raise SystemExit("the grader answered an input request with something else")
        return str(answer.get("value", ""))
    builtins.input = ask

    channel.send({"op": "hello"})
    while True:
        request = channel.recv()
        if request.get("op") != "run":
            raise SystemExit("unknown request")
        channel.send(_run(shell, outputs, request))


def _run(shell, outputs, request):
    silent = bool(request.get("silent"))
    result = shell.run_cell(request.get("code", ""), store_history=not silent, silent=silent)
    outputs.flush()
    error = result.error_before_exec or result.error_in_exec
    reply = {"op": "reply", "status": "ok", "execution_count": shell.execution_count - 1,
             "ename": "", "evalue": "", "user_expressions": {}}
    if error is not None or not result.success:
        reply.update(status="error", ename=type(error).__name__ if error else "Error", evalue=str(error or ""))
    else:
        reply["user_expressions"] = shell.user_expressions(request.get("user_expressions") or {})
    outputs.flush()
    return reply


if __name__ == "__main__":
    main(sys.argv[1])
