"""Trusted code that runs INSIDE the examiner (its source is sent by grader/grading.py):
the proxies through which the instructor's test cells reach the student's code.

The examiner is a second process per submission (an IPython shell, grader/inside/shell.py), in
its own sandbox (another pid namespace and, as root, another uid than the student kernel's), in
which no student code ever runs: it executes
the release's read-only and test cells, computes the reference answers and the verdicts. Each
name that the source notebook's answer cells define and the instructor's cells use (`corr2d`,
`Conv2D`, `train_kernel`: grader/grading.py `wanted_names`) is bound, before every instructor
cell, to what the student kernel has under that name:

* data (tensors, numbers, strings, None, tuples/lists/dicts of these) as a local copy, decoded
  by grader/inside/wire.py;
* a function or class as a proxy: calling it sends the arguments to the student kernel, runs the
  student's code there, and brings the result back as data; tensor arguments the call modified in
  place are updated here too;
* an nn.Module instance as a local `RemoteModule` (a real nn.Module) holding local copies of its
  parameters: calling it sends them first, and autograd works through a vector-Jacobian round
  trip (`_Remote`: backward sends the upstream gradients, the student kernel returns the
  gradients of the inputs and parameters), so `layer.weight.grad` is filled as in one process;
* any other object as a `RemoteObject` (a class named like the student's, with no behaviour:
  attribute reads are forwarded, ==, bool, len and the rest are object's defaults).

Every proxy remembers the name it came through (its origin: `Conv2D` for the layer that
`Conv2D((3, 2))` made), which the "by hand" check reads; the name the student's objects give
themselves (`__name__`, the class's) is only shown in messages.

The global random-number generator: the student kernel keeps its own across calls (as one
process would); a call carries the examiner's state only when the examiner's cells seeded the
generator or drew from it since the previous call (so `torch.manual_seed(s)` before a call means
what it says). The examiner never takes a state from the student's answer: its own draws are its
own (the tests draw their inputs from generators of their own anyway).

Every request carries a fresh call id that the answer must echo; an answer to another call, one
that is not valid wire data, or an error the grader reports (a call over its time limit, a
student kernel that died) raises in the test, which then fails with that message. An exception
of the student's code reaches the test as itself only if it is one a test may expect
(`EXPECTED_ERRORS`); any other is a StudentCodeError naming it.

"By hand" exercises: inside `convlab.forbid_torch_functions(names, message)`, a call is (a) run in
the student kernel under the same mode (a learning aid there, which sees this thread only) and
(b) checked here (`ByHand`): the grader reads the student's cells, resolves what the called
name's code refers to (aliases, assignments, imports, decorators, the student's other functions
and classes, attributes of torch/F/nn looked up on the real modules), and fails the test if any
of it is a forbidden function, or is code it cannot follow (threads and processes, code run from
strings, names made at run time, modules it does not know), naming what to remove.
"""
import ast
import builtins
import functools
import re
import sys
import types

import torch

wire = sys.modules["_convlab_wire"]
envelope = sys.modules["_convlab_envelope"]
#: The exceptions of the student's code that reach a test as themselves: those the tests in
#: solutions/ catch (NotImplementedError: an exercise not done; ValueError: an argument refused on
#: purpose; RuntimeError, IndexError: a shape that does not fit) and TypeError (an argument of the
#: wrong kind). Any other is a StudentCodeError: StopIteration would end a `for` over a `map`
#: silently, RecursionError would pass for a RuntimeError, AssertionError for a test's own verdict.
EXPECTED_ERRORS = {c.__name__: c for c in (IndexError, NotImplementedError, RuntimeError, TypeError, ValueError)}
#: Reading an attribute may also raise AttributeError (hasattr and getattr(..., default) rely on it).
ATTRIBUTE_ERRORS = {**EXPECTED_ERRORS, "AttributeError": AttributeError}
CALLS_PER_REQUEST = 100          # calls of a convlab.call_each sweep sent in one request


class StudentCodeError(Exception):
    """The student's code could not answer: it raised an exception no test expects, ran out of
    time, killed its kernel, or answered with something that is not data."""


class Link:
    """The examiner's end of the proxy protocol (requests go through the grader)."""

    def __init__(self, raw_input, sources, namespace=None):
        self.raw_input = raw_input
        self.by_hand = ByHand(sources, namespace if namespace is not None else {})
        self.rng_mark = _rng_mark()

    def ask(self, request, what, expected=EXPECTED_ERRORS):
        """Send `request` (through the grader) and open its answer (grader/inside/envelope.py)."""
        request = envelope.request(request)
        try:
            return envelope.opened(self.raw_input(wire.dumps(request)), request, what, loads=wire.loads)
        except envelope.Refused as err:
            raise StudentCodeError(str(err)) from None
        except envelope.Failed as err:
            raise _student_exception(err.answer, what, expected) from None

    def decode(self, data, what, origin=None):
        """Wire data -> values and proxies (which remember `origin`, the name they came through).
        Any flaw is a StudentCodeError, never a builtin exception a test could mistake for one
        raised by the student's code on purpose."""
        try:
            return wire.decode(data, lambda ref: self.proxy(ref, origin))
        except StudentCodeError:
            raise
        except Exception as err:  # noqa: BLE001 - WireError, or a malformed ref
            raise StudentCodeError(f"{what} returned something the grader cannot take as data: {err}") from None

    def proxy(self, ref, origin=None):
        """A local stand-in for a student object (`ref` from wire data)."""
        kind, name = ref.get("kind"), _identifier(ref.get("type"))
        if kind == "module":
            return RemoteModule.make(self, ref, name, origin)
        if kind == "class":
            return RemoteClass(self, ref["id"], name, origin)
        if kind == "callable":
            return RemoteCallable(self, ref["id"], name, origin)
        return type(name, (RemoteObject,), {})(self, ref["id"], name, origin)

    # -- calls ---------------------------------------------------------------------------------
    def call(self, target, name, args, kwargs, params=None, origin=None):
        what = f"{name}(...)"
        params = params or {}
        forbid = _forbidden_now()
        if forbid:
            self.by_hand.check(origin, forbid)
        leaves = wire.tensors([list(args), dict(kwargs)])
        graph = torch.is_grad_enabled() and any(t.requires_grad for t in [*leaves, *params.values()])
        request = {"op": "call", "target": target, "args": [self.encode(a) for a in args],
                   "kwargs": [[self.encode(k), self.encode(v)] for k, v in kwargs.items()],
                   "params": [[n, wire.encode_tensor(p)] for n, p in params.items()],
                   "graph": graph, **self.state(forbid)}
        answer = self.ask(request, what)
        try:
            self._take_changes(answer.get("changed"), leaves, what)
        except StudentCodeError:
            raise
        except Exception as err:  # noqa: BLE001 - a malformed answer, never the student's exception
            raise StudentCodeError(f"{what} answered with a malformed message ({type(err).__name__})") from None
        result = self.decode(answer.get("value"), what, origin)
        if not graph:
            return result
        inputs = [t for t in leaves if t.requires_grad] + list(params.values())
        outs = [t for t in wire.tensors(result) if t.is_floating_point()]
        if not outs:
            return result
        attached = iter(_Remote.apply(self, request["id"], what, outs, *inputs))
        return wire.replace_tensors(result, (next(attached) if t.is_floating_point() else t
                                             for t in wire.tensors(result)))

    def call_each(self, target, name, calls, origin=None):
        """`convlab.call_each` on a student function: the calls go to the student kernel in
        requests of up to CALLS_PER_REQUEST calls (each request has the time limit of one call),
        which stop at the first exception. Calls with tensor arguments go one by one (`call`):
        in-place changes and autograd need a round trip each."""
        if any(wire.tensors([list(a), dict(k)]) for a, k in calls):
            import convlab.checks
            return convlab.checks.call_each(lambda *a, **k: self.call(target, name, a, k, origin=origin), calls)
        what = f"{name}(...)"
        forbid = _forbidden_now()
        if forbid:
            self.by_hand.check(origin, forbid)
        values, error = [], None
        for start in range(0, len(calls), CALLS_PER_REQUEST):
            chunk = calls[start:start + CALLS_PER_REQUEST]
            request = {"op": "call_each", "target": target,
                       "calls": [[[self.encode(a) for a in args], [[self.encode(k), self.encode(v)] for k, v in kwargs.items()]]
                                 for args, kwargs in chunk], **self.state(forbid)}
            answer = self.ask(request, what)
            got = answer.get("values")
            if not isinstance(got, list) or len(got) > len(chunk):
                raise StudentCodeError(f"{what} answered a sweep of {len(chunk)} calls with a malformed message")
            values += got
            if answer.get("error") is not None:
                error = answer["error"]
                break
            if len(got) != len(chunk):
                raise StudentCodeError(f"{what} answered {len(got)} of a sweep of {len(chunk)} calls")
        return _replay(values, error, self, name, origin)

    def state(self, forbid):
        """What travels with a call: grad mode, the by-hand blocks, and the examiner's RNG state if
        its cells seeded or drew from the global generator since the previous call (otherwise the
        student kernel goes on with its own, as one process would)."""
        out = {"grad_enabled": torch.is_grad_enabled(), "forbid": [[sorted(n), m] for n, m in forbid]}
        mark = _rng_mark()
        if mark[1] != self.rng_mark[1] or not torch.equal(mark[0], self.rng_mark[0]):
            out["rng"] = wire.encode_tensor(mark[0])
        self.rng_mark = mark
        return out

    def encode(self, value):
        try:
            return wire.encode(value, _local_ref)
        except wire.WireError as err:
            raise TypeError(f"the grader cannot pass this argument to the student's code: {err}") from None

    def _take_changes(self, changed, leaves, what):
        for i, data in changed if isinstance(changed, list) else []:
            if type(i) is not int or not 0 <= i < len(leaves):
                raise StudentCodeError(f"{what} reported a change to an argument it was not given")
            new, old = self.decode(data, what), leaves[i]
            with torch.no_grad():
                if new.shape == old.shape and new.dtype == old.dtype:
                    old.copy_(new)
                else:
                    old.data = new.detach()
            if new.requires_grad and not old.requires_grad and old.is_leaf:
                old.requires_grad_(True)

    def backward(self, call_id, what, grads, inputs):
        """The gradients of a call's inputs (`inputs`: their (shape, dtype)) for upstream `grads`."""
        request = {"op": "backward", "call": call_id,
                   "grads": [wire.encode_tensor(g) if g is not None else {"t": "none"} for g in grads]}
        got = self.decode(self.ask(request, f"backward() through {what}").get("value"), what)
        if not (isinstance(got, list) and len(got) == len(inputs) and all(
                g is None or (type(g) is torch.Tensor and (g.shape, g.dtype) == spec)
                for g, spec in zip(got, inputs))):
            raise StudentCodeError(f"backward() through {what} did not answer with one gradient per "
                                   "input, of the input's shape and dtype")
        return [g.detach() if g is not None else None for g in got]

    def getattr(self, target, name, owner, origin=None):
        answer = self.ask({"op": "getattr", "target": target, "name": name}, f"{owner}.{name}", ATTRIBUTE_ERRORS)
        return self.decode(answer.get("value"), f"{owner}.{name}", origin)


def _replay(encoded, error, link, name, origin):
    """The results of a sweep, decoded one by one (so a malformed answer fails where it occurs),
    then the student agent's error answer, if any, as the exception in its place."""
    for data in encoded:
        yield link.decode(data, f"{name}(...)", origin)
    if error is not None:
        raise _student_exception(error if isinstance(error, dict) else {}, f"{name}(...)", EXPECTED_ERRORS)


class _Remote(torch.autograd.Function):
    """Attaches a remote call's outputs to the local autograd graph: backward is a round trip."""

    @staticmethod
    def forward(ctx, link, call_id, what, outputs, *inputs):
        ctx.link, ctx.call_id, ctx.what = link, call_id, what
        ctx.inputs = [(x.shape, x.dtype) for x in inputs]
        return tuple(o.detach().clone() for o in outputs)

    @staticmethod
    def backward(ctx, *grads):
        got = ctx.link.backward(ctx.call_id, ctx.what, grads, ctx.inputs)
        return (None, None, None, None, *got)


def _local_ref(value):
    ref = getattr(type(value), "_convlab_ref", None)
    if ref is None:
        raise wire.WireError(f"a {type(value).__name__} is not data")
    return {"t": "ref", "id": ref(value)}


class RemoteCallable:
    """A student function: calling it runs the student's code in the student kernel."""
    _convlab_ref = staticmethod(lambda self: self._id)

    def __init__(self, link, ref_id, name, origin=None):
        self._link, self._id, self.__name__, self._origin = link, ref_id, name, origin

    def __call__(self, *args, **kwargs):
        return self._link.call(self._id, self.__name__, args, kwargs, origin=self._origin)

    def _convlab_call_each(self, calls):
        """convlab.call_each(this, calls): see Link.call_each."""
        return self._link.call_each(self._id, self.__name__, calls, origin=self._origin)

    def __repr__(self):
        return f"<student function {self.__name__}>"


class RemoteClass(RemoteCallable):
    """A student class: calling it creates the object in the student kernel."""

    def __repr__(self):
        return f"<student class {self.__name__}>"


class RemoteObject:
    """A student object that is not data: attribute reads are forwarded; nothing else works."""
    _convlab_ref = staticmethod(lambda self: object.__getattribute__(self, "_id"))

    def __init__(self, link, ref_id, name, origin=None):
        object.__setattr__(self, "_link", link)
        object.__setattr__(self, "_id", ref_id)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_origin", origin)

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return self._link.getattr(self._id, attr, self._name, self._origin)

    def __repr__(self):
        return f"<{self._name} object returned by the student's code>"


class RemoteModule(torch.nn.Module):
    """A student nn.Module: local copies of its parameters; forward runs in the student kernel."""
    _convlab_ref = staticmethod(lambda self: self.__dict__["_remote_id"])

    @classmethod
    def make(cls, link, ref, name, origin=None):
        module = type(name, (cls,), {})()
        module.__dict__.update(_link=link, _remote_id=ref["id"], _remote_name=name, _origin=origin)
        for pname, data in ref.get("params") or []:
            value = link.decode(data, f"{name}'s parameter {pname}")
            if not isinstance(pname, str) or type(value) is not torch.Tensor or not re.fullmatch(r"\w+(\.\w+)*", pname):
                raise StudentCodeError(f"{name} has a parameter the grader cannot copy ({pname!r})")
            owner, *path = [module, *pname.split(".")]
            for part in path[:-1]:
                if part not in owner._modules:
                    owner._modules[part] = torch.nn.Module()
                owner = owner._modules[part]
            owner._parameters[path[-1]] = torch.nn.Parameter(value.detach(), requires_grad=value.requires_grad)
        return module

    def forward(self, *args, **kwargs):
        d = self.__dict__
        return d["_link"].call(d["_remote_id"], d["_remote_name"], args, kwargs,
                               params=dict(self.named_parameters()), origin=d["_origin"])

    def __getattr__(self, attr):
        try:
            return super().__getattr__(attr)
        except AttributeError:
            d = self.__dict__
            if attr.startswith("__") or "_link" not in d:
                raise
            return d["_link"].getattr(d["_remote_id"], attr, d["_remote_name"], d["_origin"])


def _student_exception(answer, what, expected):
    """The local exception for an error the student's code raised: the exception itself if its
    most derived builtin class is in `expected`, else a StudentCodeError naming it."""
    message = str(answer.get("message", ""))[:4000]
    error = _identifier(answer.get("error"))
    bases = answer.get("bases") if isinstance(answer.get("bases"), list) else []
    builtin = next((b for b in bases if isinstance(b, str) and isinstance(vars(builtins).get(b), type)
                    and issubclass(vars(builtins)[b], BaseException)), None)
    if builtin in expected:
        return expected[builtin](message)
    if error == "WireError":
        return StudentCodeError(f"{what} returned something the grader cannot take as data: {message}")
    if builtin in ("KeyboardInterrupt", "SystemExit") or error in ("KeyboardInterrupt", "SystemExit"):
        return StudentCodeError(f"{what} was stopped ({error}{': ' + message if message else ''})")
    return StudentCodeError(f"{what} raised {error}: {message}")


def _identifier(name):
    name = re.sub(r"\W", "_", name if isinstance(name, str) else "")[:60]
    return name if name and not name[0].isdigit() else "object"


def _forbidden_now():
    import convlab.checks
    return convlab.checks.forbidden_now()


# -- the global RNG: the examiner's cells' seeding is counted ------------------------------------
_SEEDINGS = [0]


def _rng_mark():
    """The examiner's global RNG state and how many times its cells have seeded it so far."""
    return torch.get_rng_state(), _SEEDINGS[0]


def _counted(fn):
    @functools.wraps(fn)
    def seeding(*args, **kwargs):
        _SEEDINGS[0] += 1
        return fn(*args, **kwargs)
    seeding._convlab_counted = True
    return seeding


def watch_seeding():
    """Count every seeding of the examiner's global generator (torch.manual_seed, torch.seed,
    torch.set_rng_state, also as torch.random's), so that seeding it again with the same seed
    before a call is carried to the student kernel although the state is the same as before."""
    import torch.random
    for name in ("manual_seed", "seed", "set_rng_state"):
        fn = getattr(torch.random, name)
        if not getattr(fn, "_convlab_counted", False):
            fn = _counted(fn)
        for module in (torch, torch.random):
            setattr(module, name, fn)


# -- "by hand": what the names in the student's code refer to ------------------------------------
#: Modules whose functions the check looks up and judges (anything else a checked function uses
#: cannot be checked: another module may run code the grader does not see).
FOLLOWED_MODULES = frozenset({
    "torch", "numpy", "math", "cmath", "itertools", "functools", "operator", "collections", "typing",
    "dataclasses", "copy", "numbers", "fractions", "decimal", "statistics", "string", "re", "enum", "abc",
    "warnings", "time", "random", "builtins", "convlab"})
#: Parts of those that run code elsewhere or change how calls are seen (another thread or process,
#: compilers, the torch-function modes themselves).
UNFOLLOWED = ("torch.multiprocessing", "torch.utils.data", "torch.utils.cpp_extension", "torch.overrides",
              "torch.library", "torch.jit", "torch.futures", "torch.hub", "torch.package", "torch.distributed",
              "torch.compile", "torch.compiler", "torch.fx", "operator.attrgetter", "operator.methodcaller")
#: Another thread or process, anywhere in the notebook: the mode that sees calls is per thread.
CONCURRENCY = ("threading", "_thread", "multiprocessing", "concurrent", "subprocess", "asyncio", "pty",
               "torch.multiprocessing", "torch.jit.fork", "torch.jit._fork", "os.fork", "os.forkpty", "os.system",
               "os.popen", "os.spawn", "os.exec", "os.posix_spawn")
#: Builtins that run code from strings or reach a namespace by name.
CODE_FROM_STRINGS = {"exec": "runs code with exec", "eval": "runs code with eval", "compile": "runs code with compile",
                     "__import__": "imports modules with __import__"}
NAMESPACES = {"globals": "reaches names with globals()", "vars": "reaches names with vars()",
              "locals": "reaches names with locals()"}
UNFOLLOWED_BUILTINS = {**CODE_FROM_STRINGS, **NAMESPACES, "breakpoint": "calls breakpoint()",
                       "open": "reads or writes files", "input": "reads input",
                       "getattr": "gets attributes by name", "setattr": "sets attributes by name",
                       "delattr": "deletes attributes by name"}
#: Attributes that reach code, namespaces or frames rather than values.
UNFOLLOWED_ATTRIBUTES = frozenset({
    "__dict__", "__globals__", "__builtins__", "__code__", "__closure__", "__subclasses__", "__getattribute__",
    "__getattr__", "__setattr__", "__delattr__", "__wrapped__", "__func__", "__self__", "__defaults__",
    "__kwdefaults__", "__import__", "__loader__", "__spec__", "__mro__", "__bases__", "__base__", "__reduce__",
    "__reduce_ex__", "__torch_function__", "__torch_dispatch__", "__annotations__", "f_globals", "f_locals",
    "f_builtins", "f_back", "f_code", "gi_frame", "cr_frame", "ag_frame", "tb_frame", "__traceback__"})
NAMESPACE_ATTRIBUTES = frozenset({"__globals__", "__builtins__", "f_globals", "f_locals", "f_builtins"})
#: Attributes whose rewriting changes a function's code or an object's type, wherever it happens.
CODE_ATTRIBUTES = frozenset({"__code__", "__defaults__", "__kwdefaults__", "__closure__", "__globals__",
                             "__dict__", "__class__", "__bases__", "__builtins__"})
#: Magics that bind nothing the check needs to see, and cell magics whose body is this kernel's Python.
QUIET_MAGICS = frozenset({
    "matplotlib", "config", "pip", "conda", "env", "who", "whos", "who_ls", "timeit", "precision", "pprint",
    "xmode", "lsmagic", "magic", "history", "pwd", "ls", "cd", "pinfo", "pinfo2", "pdoc", "pdef", "psource",
    "pfile", "page", "quickref", "reset", "reset_selective", "colors", "doctest_mode", "automagic", "autocall",
    "clear", "time", "prun"})
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun"})
OTHER_CELL_MAGICS = frozenset({
    "bash", "sh", "script", "html", "HTML", "javascript", "js", "latex", "markdown", "svg", "writefile", "file",
    "perl", "ruby", "python", "python2", "python3", "pypy", "sx", "system"})
MUTATORS = frozenset({"append", "extend", "insert", "update", "setdefault", "add", "put", "put_nowait",
                      "__setitem__", "__setattr__", "appendleft", "extendleft"})
MAX_CELLS = 2000                  # cells and code from magics/strings read, at most
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


class ByHand:
    """The by-hand check of one submission's cells (read once, when first needed)."""

    def __init__(self, sources, namespace):
        self.sources, self.ns = list(sources), namespace
        self.notebook = None
        self.found = {}

    def check(self, origin, forbid):
        """AssertionError (saying what to remove) if the student's code for `origin` uses a
        function `forbid` names, or code the grader cannot follow."""
        banned = frozenset(_norm(n) for names, _ in forbid for n in names)
        message = forbid[-1][1]
        if (origin, banned) not in self.found:
            try:
                self.found[origin, banned] = self._find(origin, banned)
            except RecursionError:
                self.found[origin, banned] = "is nested too deeply for the grader to read"
        finding = self.found[origin, banned]
        if finding:
            raise AssertionError(f"{message} ({finding})")

    def _find(self, origin, banned):
        if self.notebook is None:
            self.notebook = Notebook(self.sources)
        nb = self.notebook
        if nb.unfollowable:
            what, node = nb.unfollowable[0]
            return f"your notebook {what}, which the grader cannot check: `{_snippet(node)}`; remove it"
        if not isinstance(origin, str) or origin not in nb.bindings:
            return (f"the grader found no definition of {origin} in your cells, so it cannot check how it is "
                    "computed: define it with def or class in a code cell")
        reader = _Reader(nb, self.ns, banned)
        todo, seen = [origin], set()
        while todo:
            name = todo.pop(0)
            if name in seen:
                continue
            seen.add(name)
            for kind, first, second in nb.parts_of(name):     # (target, node) of an import, else (node, scope)
                finding = reader.imported(first, second) if kind == "import" else reader.read(first, second, todo)
                if finding:
                    phrase, where = finding
                    inside = ("" if name == origin and kind == "code" else
                              f" (in code that changes {name})" if kind == "change" else f" (in the code for {name})")
                    return f"your code for {origin} {phrase}: `{_snippet(where)}`{inside}; remove it"
        return None


class _Scope:
    """Where a name is looked up: the module, a function (a lambda, a comprehension), a class body."""

    def __init__(self, kind, node=None, parent=None):
        self.kind, self.node, self.parent = kind, node, parent
        self.names, self.globals = _bound_in(node, kind) if node is not None else (set(), set())
        self.self_name = None                    # a method's first parameter (self, cls)
        if kind == "function" and parent is not None and parent.kind == "class" and not isinstance(node, ast.Lambda):
            args = [*node.args.posonlyargs, *node.args.args]
            static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list)
            self.self_name = args[0].arg if args and not static else None

    def is_local(self, name):
        """Whether `name` here is a local (or a class-body name, or a closure's), not a global."""
        scope, here = self, True
        while scope.kind != "module":
            if name in scope.globals:
                return False
            if name in scope.names and (scope.kind != "class" or here):
                return True
            scope, here = scope.parent, False
        return False

    def declares_global(self, name):
        scope = self
        while scope.kind != "module":
            if name in scope.globals:
                return True
            scope = scope.parent
        return False

    def owner(self):
        """The class whose method this is (for `self.x`), or None."""
        return self.parent.node if self.self_name else None


def _bound_in(node, kind):
    """(the names a scope binds, the names it declares global)."""
    if kind == "comprehension":
        return {n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)}, set()
    names, declared, nonlocal_ = set(), set(), set()
    if kind == "function":
        a = node.args
        names |= {x.arg for x in [*a.posonlyargs, *a.args, a.vararg, *a.kwonlyargs, a.kwarg] if x}
    stack = list(node.body) if isinstance(node.body, list) else [node.body]
    while stack:
        n = stack.pop()
        if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load):
            names.add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(n.name)
            stack.extend(_evaluated_outside(n))
            continue
        elif isinstance(n, ast.Lambda):
            stack.extend(_evaluated_outside(n))
            continue
        elif isinstance(n, _COMPREHENSIONS):
            names |= {w.target.id for w in _walk_plain(n) if isinstance(w, ast.NamedExpr)}
            stack.append(n.generators[0].iter)
            continue
        elif isinstance(n, ast.alias) and n.name != "*":
            names.add((n.asname or n.name).split(".")[0])
        elif isinstance(n, ast.ExceptHandler) and n.name:
            names.add(n.name)
        elif isinstance(n, (ast.MatchAs, ast.MatchStar)) and n.name:
            names.add(n.name)
        elif isinstance(n, ast.MatchMapping) and n.rest:
            names.add(n.rest)
        elif isinstance(n, ast.Global):
            declared.update(n.names)
        elif isinstance(n, ast.Nonlocal):
            nonlocal_.update(n.names)
        stack.extend(ast.iter_child_nodes(n))
    return names - declared - nonlocal_, declared


def _walk_plain(node):
    """The nodes under `node`, without entering functions or lambdas."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        if not isinstance(n, _FUNCTIONS) or n is node:
            stack.extend(ast.iter_child_nodes(n))


def _evaluated_outside(node):
    """The parts of a def, lambda or class evaluated where it stands: decorators, defaults,
    annotations, bases."""
    if isinstance(node, ast.ClassDef):
        return [*node.decorator_list, *node.bases, *node.keywords]
    a = node.args
    every = [*a.posonlyargs, *a.args, a.vararg, *a.kwonlyargs, a.kwarg]
    out = [*getattr(node, "decorator_list", []), *a.defaults, *[d for d in a.kw_defaults if d]]
    out += [x.annotation for x in every if x is not None and x.annotation is not None]
    return out + ([node.returns] if getattr(node, "returns", None) is not None else [])


def _walk(roots, skip):
    """(node, scope, statement) for every node under `roots` ((node, scope) pairs), parents first,
    with the scope it is in; nodes whose id is in `skip` (which may grow meanwhile) are left out."""
    stack = [(n, s, n) for n, s in reversed(roots)]
    while stack:
        node, scope, stmt = stack.pop()
        if id(node) in skip:
            continue
        stmt = node if isinstance(node, ast.stmt) else stmt
        yield node, scope, stmt
        stack.extend((c, s, stmt) for c, s in reversed(_children(node, scope)))


def _children(node, scope):
    if isinstance(node, (*_FUNCTIONS, ast.ClassDef)):
        inner = _Scope("class" if isinstance(node, ast.ClassDef) else "function", node, scope)
        body = node.body if isinstance(node.body, list) else [node.body]
        return [(n, scope) for n in _evaluated_outside(node)] + [(n, inner) for n in body]
    if isinstance(node, _COMPREHENSIONS):
        inner = _Scope("comprehension", node, scope)
        out = []
        for i, g in enumerate(node.generators):
            out += [(g.iter, scope if i == 0 else inner), (g.target, inner), *[(c, inner) for c in g.ifs]]
        return out + [(e, inner) for e in ([node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt])]
    return [(c, scope) for c in ast.iter_child_nodes(node)]


class Notebook:
    """The student's cells as the by-hand check reads them, as the kernel runs them (IPython's
    transformations applied; the Python of `%time` lines, `%%time` cells and exec/eval of constant
    strings read too): each name's bindings (at the top level, or through `global`), the code that
    changes what a name holds (`N.x = ...`, `N[k] = ...`, `setattr(N, ...)`, `N.append(...)`,
    in-place tensor methods), the top-level star imports, and what in the notebook keeps the check
    from following any of it (`unfollowable`: threads or processes, code run from strings it cannot
    read, magics that run code, namespaces reached by name, modules of the student's own)."""

    def __init__(self, sources):
        self.module = _Scope("module")
        self.bindings, self.changes, self.stars, self.unfollowable = {}, {}, [], []
        self.uses, self.chains = [], []          # globals loaded; attribute chains on globals
        self.calls, self.param_changes = [], {}  # calls of globals; params each def stores into
        pending, read = list(sources), 0
        while pending and read < MAX_CELLS:
            tree = _parse_cell(pending.pop(0))
            read += 1
            if tree is not None:
                self._read(tree, pending)
        if pending:
            self.unfollowable.append(("holds more code than the grader reads", ast.Constant("...")))
        self._judge_uses()
        self._calls_that_change()

    def parts_of(self, name):
        """What the check reads for `name`: ("import", target, node) for each import that binds
        it, ("code", node, scope) for the rest of its bindings, ("change", node, scope) for the
        code that changes what it holds."""
        return [*self.bindings.get(name, []), *(("change", n, s) for n, s in self.changes.get(name, []))]

    def _read(self, tree, pending):
        handled = set()
        for node, scope, stmt in _walk([(s, self.module) for s in tree.body], set()):
            if id(node) in handled:
                continue
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self._bind(node.name, scope, node, scope)
            elif isinstance(node, ast.Name):
                self._name(node, scope, stmt)
            elif isinstance(node, ast.NamedExpr):
                self._bind(node.target.id, _binding_scope(scope), node.value, scope)
                handled.add(id(node.target))
            elif isinstance(node, ast.ExceptHandler) and node.name:
                self._bind(node.name, scope, node.type or ast.Constant(None), scope)
            elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
                self._bind(node.name, scope, _value_of(stmt, node), scope)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                self._import(node, scope)
            elif isinstance(node, ast.Attribute):
                self._attribute(node, scope, stmt, handled)
            elif isinstance(node, ast.Subscript) and not isinstance(node.ctx, ast.Load):
                self._changed(_root(node), node, scope, stmt)
            elif isinstance(node, ast.Call):
                self._call(node, scope, pending, handled)

    def _bind(self, name, scope, code, code_scope):
        if code is not None and (scope.kind == "module" or scope.declares_global(name)):
            self.bindings.setdefault(name, []).append(("code", code, code_scope))

    def _name(self, node, scope, stmt):
        if isinstance(node.ctx, ast.Load):
            if not scope.is_local(node.id):
                self.uses.append((node.id, node))
        elif isinstance(node.ctx, ast.Store):
            self._bind(node.id, scope, _value_of(stmt, node), scope)

    def _import(self, node, scope):
        for alias in node.names:
            if isinstance(node, ast.ImportFrom):
                if node.level or not node.module:
                    self.unfollowable.append(("imports a module of its own (a relative import)", node))
                    continue
                full, target, bound = f"{node.module}.{alias.name}", (node.module, alias.name), alias.asname or alias.name
                if alias.name == "*":
                    self._imported(node.module, node)
                    if scope.kind == "module":
                        self.stars.append(node.module)
                    continue
            else:
                full, bound = alias.name, alias.asname or alias.name.split(".")[0]
                target = (alias.name, None) if alias.asname else (alias.name.split(".")[0], None)
            self._imported(full, node)
            if scope.kind == "module" or scope.declares_global(bound):
                self.bindings.setdefault(bound, []).append(("import", target, node))

    def _imported(self, full, node):
        """What an import says about the whole notebook."""
        top = full.split(".")[0]
        if _under(full, CONCURRENCY):
            self.unfollowable.append(("starts threads or processes", node))
        elif top in ("importlib", "__main__", "runpy", "ctypes", "code", "codeop"):
            self.unfollowable.append((f"uses {top}, which can make or change names the grader does not see", node))
        elif not _installed(top):
            self.unfollowable.append((f"imports {top}, a module of its own", node))

    def _attribute(self, node, scope, stmt, handled):
        root, attrs, inner = _chain(node)
        handled.update(map(id, inner))
        for attr in NAMESPACE_ATTRIBUTES.intersection(attrs):
            self.unfollowable.append((f"reaches names through .{attr}", node))
        if not isinstance(node.ctx, ast.Load) and node.attr in CODE_ATTRIBUTES:
            self.unfollowable.append((f"rewrites .{node.attr}", node))
        if isinstance(root, ast.Name) and not scope.is_local(root.id):
            handled.add(id(root))
            self.uses.append((root.id, root))
            self.chains.append((root.id, attrs, node))
        if not isinstance(node.ctx, ast.Load):
            self._changed(_root(node), node, scope, stmt)

    def _changed(self, root, node, scope, stmt):
        """`node` (a store into, or a call that changes, what `root` holds) changes the global
        `root`, or the parameter `root` of the function it is in (then so does each call of it)."""
        if not isinstance(root, ast.Name):
            return
        if not scope.is_local(root.id):
            value = node if isinstance(node, ast.Call) else _value_of(stmt, None)
            if value is not None:
                self.changes.setdefault(root.id, []).append((value, scope))
            return
        while scope.kind != "module" and not (scope.kind == "function" and root.id in scope.names):
            scope = scope.parent
        if scope.kind == "function" and not isinstance(scope.node, ast.Lambda):
            self.param_changes.setdefault(id(scope.node), set()).add(root.id)

    def _call(self, node, scope, pending, handled):
        f = node.func
        magic = _magic(node)
        if magic is not None:
            handled.add(id(f.value.func))
            if magic[0] == "code":
                pending.append(magic[1])
            elif magic[0] == "unfollowable":
                self.unfollowable.append((magic[1], node))
        elif isinstance(f, ast.Name) and not scope.is_local(f.id):
            text = _constant_str(node.args[0]) if node.args else None
            if f.id in CODE_FROM_STRINGS and text is not None:
                handled.add(id(f))          # a constant string: its code is read like a cell's
                if f.id == "__import__":
                    self._imported(text, node)
                else:
                    pending.append(text)
            elif f.id in ("setattr", "delattr") and node.args:
                name = _constant_str(node.args[1]) if len(node.args) > 1 else None
                if name is None or name in CODE_ATTRIBUTES:
                    self.unfollowable.append((f"sets attributes with {f.id} by a name the grader cannot follow", node))
                self._changed(_root(node.args[0]), node, scope, None)
            else:
                self.calls.append((node, scope))
        elif isinstance(f, ast.Attribute) and (f.attr in MUTATORS or (f.attr.endswith("_") and not f.attr.endswith("__"))):
            self._changed(_root(f.value), node, scope, None)

    def _judge_uses(self):
        """The names and attribute chains that keep the check from following the notebook."""
        for name, node in self.uses:
            what = {**CODE_FROM_STRINGS, **NAMESPACES, "get_ipython": "runs IPython commands with get_ipython()",
                    "__builtins__": "reaches names through __builtins__"}.get(name)
            if what and name not in self.bindings:
                self.unfollowable.append((what, node))
        for root, attrs, node in self.chains:
            path = ".".join([self._canonical(root), *attrs])
            if _under(path, CONCURRENCY):
                self.unfollowable.append(("starts threads or processes", node))
            elif _under(path, ("sys.modules", "sys._getframe", "inspect.currentframe", "inspect.stack")):
                self.unfollowable.append((f"reaches names through {path}", node))

    def _calls_that_change(self):
        """A call that passes a global to a student function that stores into that parameter
        (`def patch(cls, fn): cls.forward = fn`, then `patch(Conv2D, evil)`) changes the global."""
        for call, scope in self.calls:
            for kind, fn, _ in self.bindings.get(call.func.id, []):
                changed = self.param_changes.get(id(fn)) if kind == "code" and isinstance(fn, ast.FunctionDef) else None
                if not changed:
                    continue
                params = [a.arg for a in [*fn.args.posonlyargs, *fn.args.args]]
                given = [*zip(params, call.args), *((k.arg, k.value) for k in call.keywords)]
                for param, arg in given:
                    root = _root(arg)
                    if param in changed and root is not None and not scope.is_local(root.id):
                        self.changes.setdefault(root.id, []).append((call, scope))

    def _canonical(self, root):
        """The module a global stands for when only imports bind it (`np` -> numpy), else itself."""
        bindings = self.bindings.get(root, [])
        if bindings and all(b[0] == "import" for b in bindings):
            module, attr = bindings[-1][1]
            return f"{module}.{attr}" if attr else module
        return root


class _Reader:
    """Reads the code of the student's names for one rule: what each name in it refers to."""

    def __init__(self, notebook, namespace, banned):
        self.nb, self.ns, self.banned = notebook, namespace, banned
        self.members_of = {}

    def read(self, node, scope, todo):
        """The first (phrase, node) in `node` that the rule forbids or the grader cannot follow;
        the student's names it uses go on `todo` (their code is read in turn)."""
        handled = set()
        for n, sc, _ in _walk([(node, scope)], set()):
            if id(n) not in handled:
                finding = self._node(n, sc, todo, handled)
                if finding:
                    return finding
        return None

    def imported(self, target, node):
        """(phrase, node) if an import binding of a followed name is forbidden or unfollowable."""
        obj, path, phrase = self._target(*target)
        return (phrase, node) if phrase else self._resolve(obj, path, [], node)

    def _node(self, n, sc, todo, handled):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
            return None if self._local(n.id, sc) else self._global(n.id, [], n, todo)
        if isinstance(n, ast.Attribute):
            root, attrs, inner = _chain(n)
            handled.update(map(id, inner))
            if isinstance(root, ast.Name):
                handled.add(id(root))
                return self._chain(root, attrs, n, sc, todo)
            return self._names(attrs, n)
        if (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("getattr", "setattr", "delattr", "hasattr")
                and not sc.is_local(n.func.id) and n.func.id not in self.nb.bindings):
            handled.add(id(n.func))
            return self._by_name(n, sc, todo, handled)
        if isinstance(n, (ast.Import, ast.ImportFrom)):
            for alias in n.names:
                module = n.module if isinstance(n, ast.ImportFrom) else alias.name
                attr = alias.name if isinstance(n, ast.ImportFrom) else None
                if isinstance(n, ast.ImportFrom) and (n.level or alias.name == "*" or not module):
                    return "imports in a way the grader cannot check", n
                finding = self.imported((module, attr), n)
                if finding:
                    return finding
        return None

    def _local(self, name, sc):
        """Whether `name` is a local here; a class body's own name is looked up in the notebook's
        globals too (`_c = _c` in a class body reads the global `_c`), so it counts as global."""
        return sc.is_local(name) and not (sc.kind == "class" and name in self.nb.bindings)

    def _chain(self, root, attrs, node, sc, todo):
        if self._local(root.id, sc):
            owner = _self_owner(sc, root.id)
            own = owner is not None and attrs[0] in self._members(owner)
            return self._names(attrs[1:] if own else attrs, node)
        return self._global(root.id, attrs, node, todo)

    def _global(self, name, attrs, node, todo):
        """What the global `name` (with `attrs` read on it) refers to: the student's own (read in
        turn), a builtin, a star import's, a read-only cell's (the examiner's namespace), or nothing
        the grader can see."""
        bindings = self.nb.bindings.get(name)
        if bindings:
            todo.append(name)
            for _, target, _ in (b for b in bindings if b[0] == "import"):
                obj, path, phrase = self._target(*target)
                finding = (phrase, node) if phrase else self._resolve(obj, path, attrs, node)
                if finding:
                    return finding
            code = [b[1] for b in bindings if b[0] == "code"]
            if code and attrs:
                own = all(isinstance(c, ast.ClassDef) and attrs[0] in self._members(c) for c in code)
                return self._names(attrs[1:] if own else attrs, node)
            return None
        if name in UNFOLLOWED_BUILTINS:
            return f"{UNFOLLOWED_BUILTINS[name]}, which the grader cannot check", node
        if name in vars(builtins):
            return self._resolve(vars(builtins)[name], name, attrs, node)
        for module in self.nb.stars:
            obj = _module(module)
            if obj is None:
                return f"uses {name}, which may come from `from {module} import *`, which the grader cannot check", node
            if hasattr(obj, name):
                return self._resolve(getattr(obj, name), f"{module}.{name}", attrs, node)
        value = self.ns.get(name, _MISSING)
        if value is not _MISSING and not isinstance(value, (RemoteCallable, RemoteObject, RemoteModule)):
            return self._resolve(value, name, attrs, node)
        return (f"uses {name}, which none of your cells defines (a name made at run time or by a magic), so "
                "the grader cannot check it"), node

    def _by_name(self, call, sc, todo, handled):
        """getattr(obj, "name") read as obj.name; with a name computed at run time, unfollowable."""
        fn = call.func.id
        name = _constant_str(call.args[1]) if len(call.args) >= 2 else None
        if name is None:
            return None if fn == "hasattr" else (f"{UNFOLLOWED_BUILTINS[fn]} (`{fn}` with a name computed at run "
                                                 "time), which the grader cannot check", call)
        root, attrs, inner = _chain(ast.Attribute(value=call.args[0], attr=name, ctx=ast.Load()))
        if isinstance(root, ast.Name):
            handled.add(id(root))
            handled.update(map(id, inner))
            return self._chain(root, attrs, call, sc, todo)
        return self._names([name], call)

    def _target(self, module, attr):
        """(object, path, None) for what an import binds, or (None, path, phrase) if unfollowable."""
        obj = _module(module)
        if obj is None:
            return None, module, f"uses the module {module}, which the grader cannot check"
        if attr is None:
            return obj, module, None
        path = f"{module}.{attr}"
        if _private(attr) or attr in UNFOLLOWED_ATTRIBUTES or _under(path, UNFOLLOWED):
            return None, path, f"uses {path}, which the grader cannot check"
        try:
            return getattr(obj, attr), path, None
        except AttributeError:
            sub = _module(path)
            return (sub, path, None) if sub is not None else (None, path, f"uses {path}, which the grader cannot find")

    def _resolve(self, obj, path, attrs, node):
        """Look `attrs` up on the real object (a module, a builtin, a read-only cell's), judging
        each step: (phrase, node) for the first one forbidden or unfollowable, else None."""
        phrase = self._judge(obj, path)
        for attr in attrs:
            if phrase:
                break
            step = f"{path}.{attr}"
            if _private(attr) or attr in UNFOLLOWED_ATTRIBUTES or _under(step, UNFOLLOWED):
                return f"uses {step}, which the grader cannot check", node
            try:
                obj = getattr(obj, attr)
            except Exception:  # noqa: BLE001 - not there: set at run time, where the grader cannot see it
                return f"uses {step}, which the grader cannot find (made at run time?), so it cannot check it", node
            path, phrase = step, self._judge(obj, step)
        return (phrase, node) if phrase else None

    def _judge(self, obj, path):
        """Why the object `path` names is forbidden ("uses conv2d") or unfollowable, or None."""
        if isinstance(obj, types.ModuleType):
            name = obj.__name__
            if name.split(".")[0] not in FOLLOWED_MODULES or _under(name, UNFOLLOWED) or _under(name, CONCURRENCY):
                return f"uses the module {name}, which the grader cannot check"
            return None
        if _under(path, UNFOLLOWED):
            return f"uses {path}, which the grader cannot check"
        for name, what in UNFOLLOWED_BUILTINS.items():
            if obj is getattr(builtins, name, None):
                return f"{what}, which the grader cannot check"
        module = getattr(obj, "__module__", None)
        if isinstance(module, str) and (_under(module, CONCURRENCY) or _under(module, UNFOLLOWED)):
            return f"uses {path} (from {module}), which the grader cannot check"
        hit = self._hit(obj)
        if hit:
            return f"uses {hit}"
        if isinstance(obj, types.FunctionType) and obj.__module__ == "__main__":     # a read-only cell's
            hit = next((n for n in _code_names(obj.__code__) if _norm(n) in self.banned), None)
            if hit:
                return f"uses {path}, which calls {hit}"
        return None

    def _hit(self, obj):
        """The forbidden name `obj` goes by (its __name__, a class's or its bases', an object's
        class's), or None."""
        names = [getattr(obj, "__name__", None)]
        names += [c.__name__ for c in (obj if isinstance(obj, type) else type(obj)).__mro__]
        if isinstance(obj, functools.partial):
            names.append(getattr(obj.func, "__name__", None))
        names = [n.split(".")[0] for n in names if isinstance(n, str)]
        return next((n for n in names if _norm(n) in self.banned), None)

    def _names(self, attrs, node):
        """Attributes of something the grader cannot look up (a local, a call's result): judged by
        name."""
        for attr in attrs:
            if attr in UNFOLLOWED_ATTRIBUTES:
                return f"uses .{attr}, which the grader cannot check", node
            if _norm(attr) in self.banned:
                return f"uses {attr}", node
        return None

    def _members(self, classdef, depth=0):
        """The names a student class defines: its body's, `self.x = ...` in its methods, its
        student bases'."""
        if id(classdef) not in self.members_of:
            names = set(_bound_in(classdef, "class")[0])
            for fn in (n for n in classdef.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
                first = [*fn.args.posonlyargs, *fn.args.args][:1]
                names |= {t.attr for t in ast.walk(fn) if first and isinstance(t, ast.Attribute)
                          and not isinstance(t.ctx, ast.Load) and isinstance(t.value, ast.Name) and t.value.id == first[0].arg}
            for base in classdef.bases:
                for b in self.nb.bindings.get(base.id, []) if isinstance(base, ast.Name) and depth < 20 else []:
                    if b[0] == "code" and isinstance(b[1], ast.ClassDef) and b[1] is not classdef:
                        names |= self._members(b[1], depth + 1)
            self.members_of[id(classdef)] = names
        return self.members_of[id(classdef)]


_MISSING = object()


def _self_owner(scope, name):
    """The student class whose method's first parameter `name` is, where it is used, or None."""
    while scope.kind != "module":
        if scope.kind == "function" and name in scope.names:
            return scope.owner() if scope.self_name == name else None
        scope = scope.parent
    return None


def _binding_scope(scope):
    while scope.kind == "comprehension":
        scope = scope.parent
    return scope


def _value_of(stmt, name_node):
    """The part of statement `stmt` whose value a name it binds takes (None: nothing to read)."""
    if isinstance(stmt, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
        return stmt.value
    if isinstance(stmt, (ast.For, ast.AsyncFor)):
        return stmt.iter
    if isinstance(stmt, (ast.With, ast.AsyncWith)):
        for item in stmt.items:
            if item.optional_vars is not None and any(n is name_node for n in ast.walk(item.optional_vars)):
                return item.context_expr
        return ast.Tuple(elts=[i.context_expr for i in stmt.items], ctx=ast.Load())
    if isinstance(stmt, ast.Match):
        return stmt.subject
    if isinstance(stmt, ast.Delete):
        return None
    return stmt


def _chain(node):
    """(the root expression, the attribute names from the root out, the Attribute nodes under `node`)."""
    attrs, inner, base = [node.attr], [], node.value
    while isinstance(base, ast.Attribute):
        attrs.append(base.attr)
        inner.append(base)
        base = base.value
    return base, attrs[::-1], inner


def _root(expr):
    """The name an attribute or item chain starts from (`N` of `N.a[k].b`), or None."""
    while isinstance(expr, (ast.Attribute, ast.Subscript)):
        expr = expr.value
    return expr if isinstance(expr, ast.Name) else None


def _magic(call):
    """A magic as IPython turns it into code (`get_ipython().run_line_magic(name, line)`, ...):
    ("code", its Python) for %time and %%time-like cells, ("quiet", None) for magics that bind
    nothing, ("unfollowable", why) for the rest; None for a call that is not a magic."""
    f = call.func
    if not (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Call) and isinstance(f.value.func, ast.Name)
            and f.value.func.id == "get_ipython" and not f.value.args):
        return None
    args = [_constant_str(a) for a in call.args]
    if f.attr in ("system", "getoutput"):
        return "quiet", None
    if f.attr == "run_line_magic" and len(args) == 2 and None not in args:
        if args[0] == "time":
            return "code", args[1]
        if args[0] in QUIET_MAGICS:
            return "quiet", None
    if f.attr == "run_cell_magic" and len(args) == 3 and None not in args:
        if args[0] in PYTHON_CELL_MAGICS:
            return "code", args[2]
        if args[0] in OTHER_CELL_MAGICS:
            return "quiet", None
    name = args[0] if args and args[0] else None
    return "unfollowable", (f"runs the magic %{name}" if name else "runs IPython commands with get_ipython()")


def _constant_str(node):
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _code_names(code):
    """The global and attribute names a code object and the code objects in it use."""
    stack, seen = [code], 0
    while stack and seen < 1000:
        c = stack.pop()
        seen += 1
        yield from c.co_names
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))


def _under(path, prefixes):
    return any(path == p or path.startswith(p + ".") for p in prefixes)


def _private(attr):
    return attr.startswith("_") and not (attr.startswith("__") and attr.endswith("__"))


def _norm(name):
    return name.lower().replace("_", "")


def _snippet(node):
    try:
        text = ast.unparse(node)
    except Exception:  # noqa: BLE001 - too deep, or a node made by the check itself
        text = "..."
    text = " ".join(text.split())
    return text if len(text) <= 100 else text[:97] + "..."


@functools.lru_cache(maxsize=1)
def _transformer():
    from IPython.core.inputtransformer2 import TransformerManager
    return TransformerManager()


def _parse_cell(source):
    """A cell's syntax tree as the kernel runs it (IPython's transformations: magics become
    get_ipython() calls), or None if it is not Python (then the kernel runs none of it either)."""
    if not isinstance(source, str):
        return None
    try:
        source = _transformer().transform_cell(source)
    except Exception:  # noqa: BLE001 - then IPython runs it as it is
        pass
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return None


@functools.lru_cache(maxsize=256)
def _module(name):
    """The module `name` if the check follows it (FOLLOWED_MODULES, not UNFOLLOWED), else None."""
    if name.split(".")[0] not in FOLLOWED_MODULES or _under(name, UNFOLLOWED) or _under(name, CONCURRENCY):
        return None
    import importlib
    try:
        return importlib.import_module(name)
    except Exception:  # noqa: BLE001 - not a module here
        return None


@functools.lru_cache(maxsize=256)
def _installed(top):
    """Whether `top` is a module of this Python (not a file of the student's beside the notebook)."""
    if top in sys.builtin_module_names or top in sys.modules:
        return True
    import importlib.util
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


class Examiner:
    """The examiner kernel's state: what to bind before each instructor cell."""

    def __init__(self, shell, imports, wanted, sources):
        self.shell, self.wanted, self.bound = shell, list(wanted), set()
        # input(): the examiner's shell (grader/inside/shell.py) sends it to the grader
        self.link = Link(__import__("builtins").input, sources, shell.user_ns)
        shell.run_line_magic("xmode", "Plain")       # a test's traceback: no slow context rendering
        import importlib
        for alias, (module, attr) in imports.items():
            try:
                value = importlib.import_module(module)
                shell.user_ns[alias] = getattr(value, attr) if attr else value
            except (ImportError, AttributeError):
                pass

    def bind(self):
        """Bind every wanted name to what the student kernel has under it (or unbind it); nothing
        else is ever bound to the student's objects."""
        if not self.wanted:
            return
        answer = self.link.ask({"op": "describe", "names": self.wanted}, "the student's names", expected={})
        found = described(self.link, self.wanted, answer.get("value"))
        ns = self.shell.user_ns
        for name in self.wanted:
            if name in found:
                ns[name] = found[name]
                self.bound.add(name)
            elif name in self.bound:
                ns.pop(name, None)
                self.bound.discard(name)


def described(link, wanted, value):
    """The student's answer to `describe`: {wanted name: value}, each proxy remembering the name
    it came through (what the by-hand check reads); a function or class is shown by that name too."""
    if not (isinstance(value, dict) and value.get("t") == "dict" and isinstance(value.get("v"), list)):
        raise StudentCodeError("the student's kernel did not list its names")
    found = {}
    for pair in value["v"]:
        key = link.decode(pair[0] if isinstance(pair, list) and len(pair) == 2 else None, "the student's names")
        if not isinstance(key, str) or key not in wanted or key in found:
            raise StudentCodeError("the student's kernel listed a name the grader did not ask for")
        found[key] = link.decode(pair[1], f"the student's {key}", origin=key)
        if type(found[key]) in (RemoteCallable, RemoteClass):
            found[key].__name__ = key
    return found


def install(shell, imports, wanted, sources):
    watch_seeding()
    torch.manual_seed(0)
    sys.modules["_convlab_examiner"] = Examiner(shell, imports, wanted, sources)
