"""Runs INSIDE the student kernel (its source is sent by grader/grading.py): serves the
examiner's requests on the student's objects and answers with wire data (grader/inside/wire.py) only.
The grader sends each request between two student cells as a "call" frame, which the kernel's
shell (grader/inside/shell.py `_call`) passes to `Agent.serve`, and sends back its answer.

Trusted by nobody: the student's code runs in the same process and can replace or bypass every
line of it. All that achieves is other data in the answers, which the examiner decodes strictly
and judges like any answer; a student who rewrites this agent to return the right numbers has
computed the right numbers. Requests (one JSON object each, `id` echoed in the answer):

    describe {names}                       -> {name: value or ref} for the names that exist
    call     {target, args, kwargs, params, rng?, grad_enabled, graph, forbid}
             -> {value, changed}           (the call's result, the arguments it modified in place)
    call_each {target, calls, rng?, grad_enabled, forbid}
             -> {values, error}            (a sweep of calls with plain-data arguments, made in
                                            order up to the first exception, which is `error`)
    getattr  {target, name}                -> value or ref
    backward {call, grads}                 -> the gradients of that call's inputs (a vector-Jacobian
                                              product through the graph the call kept)
Errors answer {"ok": false, "error": <class name>, "bases": <builtin classes in its MRO>, "message"}
(the frames: grader/inside/envelope.py).
The global RNG is this kernel's own across calls (as in one process); a request carries `rng`
only when the examiner's cells seeded it (or drew from theirs) since the previous call, and the
call then starts from that state. No state is sent back: the examiner never takes one.
"""
import contextlib
import sys

import torch

wire = sys.modules["_convlab_wire"]
envelope = sys.modules["_convlab_envelope"]
KEPT_GRAPHS = 16


class Agent:
    def __init__(self, namespace):
        self.ns = namespace
        self.objects, self.ids, self.graphs = {}, {}, {}

    # -- refs ---------------------------------------------------------------------------------
    def ref(self, obj):
        if id(obj) not in self.ids:
            self.ids[id(obj)] = len(self.objects) + 1
            self.objects[len(self.objects) + 1] = obj
        out = {"t": "ref", "id": self.ids[id(obj)], "type": type(obj).__name__, "kind": "object"}
        if isinstance(obj, torch.nn.Module):
            out["kind"] = "module"
            out["params"] = [[n, wire.encode_tensor(p)] for n, p in obj.named_parameters()]
        elif isinstance(obj, type):
            out["kind"], out["type"] = "class", obj.__name__
        elif callable(obj):
            out["kind"], out["type"] = "callable", str(getattr(obj, "__name__", out["type"]))
        return out

    def deref(self, data):
        return self.objects[data["id"]]

    # -- requests -----------------------------------------------------------------------------
    def serve(self, text):
        request = {}
        try:
            request = wire.loads(text)
            text = envelope.answer(request, getattr(self, "op_" + request["op"])(request), wire.dumps)
            if len(text) > wire.MAX_MESSAGE:
                raise wire.WireError(f"the answer is {len(text) / 2**20:.1f} MB of data (at most "
                                     f"{wire.MAX_MESSAGE // 2**20} MB can be sent): return a smaller result")
            return text
        except BaseException as err:  # noqa: BLE001 - every failure is an answer
            return envelope.failure(request if isinstance(request, dict) else {}, err, wire.dumps,
                                    lambda e: isinstance(e, wire.WireError))

    def op_describe(self, request):
        found = {n: self.ns[n] for n in request["names"] if n in self.ns}
        return {"value": wire.encode(found, self.ref)}

    def op_getattr(self, request):
        return {"value": wire.encode(getattr(self.objects[request["target"]], request["name"]), self.ref)}

    def op_call(self, request):
        fn = self.objects[request["target"]]
        args = wire.decode({"t": "list", "v": request["args"]}, self.deref)
        kwargs = wire.decode({"t": "dict", "v": request["kwargs"]}, self.deref)
        leaves = wire.tensors([args, kwargs])
        before = [(t.detach().clone(), t.requires_grad) for t in leaves]
        params = self._set_params(fn, request.get("params") or [])
        with _as_asked(request):
            result = fn(*args, **kwargs)
        if request.get("graph"):
            inputs = [t for t in leaves if t.requires_grad] + params
            self.graphs[request["id"]] = (inputs, wire.tensors(result))
            for old in list(self.graphs)[:-KEPT_GRAPHS]:
                del self.graphs[old]
        changed = [[i, wire.encode_tensor(t)] for i, (t, (b, g)) in enumerate(zip(leaves, before))
                   if t.requires_grad != g or t.shape != b.shape or t.dtype != b.dtype
                   or not torch.equal(t.detach(), b)]
        return {"value": wire.encode(result, self.ref), "changed": changed}

    def op_call_each(self, request):
        """A sweep of calls of one function (no tensor arguments): the encoded results up to the
        first exception, which is answered as `error` (the calls after it are not made)."""
        fn = self.objects[request["target"]]
        values, error = [], None
        with _as_asked(request):
            for args, kwargs in request["calls"]:
                args = wire.decode({"t": "list", "v": args}, self.deref)
                kwargs = wire.decode({"t": "dict", "v": kwargs}, self.deref)
                try:
                    values.append(wire.encode(fn(*args, **kwargs), self.ref))
                except Exception as err:  # noqa: BLE001 - the examiner raises it in its place
                    error = envelope.exception(err, lambda e: isinstance(e, wire.WireError))
                    break
        return {"values": values, "error": error}

    def _set_params(self, module, sent):
        """The examiner's copy of a module's parameters, written into the student's module."""
        if not sent:
            return []
        own = dict(module.named_parameters())
        out = []
        with torch.no_grad():
            for name, data in sent:
                value, p = wire.decode(data), own[name]
                if p.shape == value.shape and p.dtype == value.dtype:
                    p.copy_(value)
                else:
                    p.data = value.detach()
                p.requires_grad_(value.requires_grad)
                out.append(p)
        return out

    def op_backward(self, request):
        inputs, outputs = self.graphs[request["call"]]
        grads = [wire.decode(g) for g in request["grads"]]
        pairs = [(o, g) for o, g in zip(outputs, grads) if g is not None and o.requires_grad]
        if not pairs:
            raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
        for o, g in pairs:
            if o.shape != g.shape:
                raise RuntimeError(f"a gradient of shape {tuple(g.shape)} was sent for an output of shape {tuple(o.shape)}")
        if any(o.is_complex() for o, _ in pairs):
            got = torch.autograd.grad([o for o, _ in pairs], inputs, [g for _, g in pairs],
                                      allow_unused=True, retain_graph=True)
        else:   # the gradient of sum(o * g): the same numbers as g as grad_outputs (what reaches o
                # is exactly 1 * g), without grad_outputs' check that imports SymPy (~0.3 s)
            with torch.enable_grad():
                total = sum((o * g).sum() for o, g in pairs)
            got = torch.autograd.grad(total, inputs, allow_unused=True, retain_graph=True)
        return {"value": wire.encode(list(got))}


@contextlib.contextmanager
def _as_asked(request):
    """Run the student's code in the state the examiner sent: its RNG state (if it sent one: its
    cells seeded the generator), its grad mode, and under its `forbid_torch_functions` blocks."""
    if request.get("rng") is not None:
        torch.set_rng_state(wire.decode(request["rng"]))
    with contextlib.ExitStack() as stack:
        for names, message in request.get("forbid") or []:
            import convlab.checks
            stack.enter_context(convlab.checks.forbid_torch_functions(set(names), message))
        with torch.set_grad_enabled(bool(request.get("grad_enabled"))):
            yield


def install(shell):
    """The agent, where the kernel's shell finds it (sys.modules["_convlab_agent"])."""
    sys.modules["_convlab_agent"] = Agent(shell.user_ns)


__all__ = ["Agent", "install"]
