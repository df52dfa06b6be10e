"""grader/inside/examiner.py + grader/inside/student_agent.py in one process: the examiner's proxies talk to a
student agent through an in-process loopback instead of the grader's relay (the kernels and the
relay are tested end to end by test_hostile.py and test_pipeline.py)."""
from __future__ import annotations

import json
import sys

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from grader.inside import envelope, wire

sys.modules.setdefault("_convlab_wire", wire)
sys.modules.setdefault("_convlab_envelope", envelope)
from grader.inside import examiner, student_agent  # noqa: E402 - they find the wire module in sys.modules

import convlab  # noqa: E402

STUDENT = '''
import torch
from torch import nn
from torch.nn import functional as F

def corr2d(X, K):
    kh, kw = K.shape
    Y = torch.zeros((X.shape[0] - kh + 1, X.shape[1] - kw + 1))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i:i + kh, j:j + kw] * K).sum()
    return Y

def lazy_corr2d(X, K):
    return F.conv2d(X[None, None], K[None, None])[0, 0]

def sneaky(X, K):
    return eval("lazy_corr2d")(X, K)

def noisy():
    return torch.rand(3)

def zero_rng():
    state = torch.get_rng_state()
    state[24:24 + 4992] = 0                # the Mersenne words: every later draw is 0
    torch.set_rng_state(state)

def scale_in_place(X):
    X.mul_(2)
    X.requires_grad_(True)

def pair():
    return torch.ones(2), [1.5, "x", None]

def refuse(k):
    raise ValueError(f"even effective size {k}")

class Odd(ValueError):
    pass

def odd():
    raise Odd("a subclass")

class Mine(Exception):
    pass

def mine():
    raise Mine("not a builtin")

def stop_at(n):
    if n == 2:
        raise StopIteration
    return n

def recurse(n):
    return recurse(n + 1)

def missing():
    return {}["x"]

def asserts():
    assert False, "mine"

def out_of_range():
    return [][1]

def not_done():
    raise NotImplementedError("write it")

def out_size(n, k, stride=1):
    if n == 7:
        raise ValueError("seven")
    if n == 8:
        return liar()
    return (n - k) // stride + 1

class Liar(torch.Tensor):
    pass

def liar():
    return torch.zeros(2).as_subclass(Liar)

class Conv2D(nn.Module):
    def __init__(self, kernel_size, detach=False):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(kernel_size))
        self.bias = nn.Parameter(torch.zeros(1))
        self.detach = detach
        self.note = "hello"

    def forward(self, X):
        w = self.weight.detach() if self.detach else self.weight
        return corr2d(X, w) + self.bias
'''


class Loopback:
    """What grader/grading.py's relay does, in one process: the examiner's request goes to
    the student agent; its answer comes back wrapped as the student's. The student's side has a
    global RNG of its own (the student kernel is another process)."""

    def __init__(self, namespace, tamper=None):
        self.agent, self.tamper = student_agent.Agent(namespace), tamper
        self.rng = torch.default_generator.get_state()

    def raw_input(self, prompt):
        mine, seedings = torch.default_generator.get_state(), examiner._SEEDINGS[0]
        torch.default_generator.set_state(self.rng)
        try:
            raw = self.agent.serve(prompt)
        finally:
            self.rng = torch.default_generator.get_state()
            torch.default_generator.set_state(mine)
            examiner._SEEDINGS[0] = seedings
        return envelope.from_student(self.tamper(raw) if self.tamper else raw)


def bind(ns: dict, tamper=None, sources=(STUDENT,)):
    """The student's public names as the examiner binds them (Examiner.bind), and the link."""
    link = examiner.Link(Loopback(ns, tamper).raw_input, list(sources))
    wanted = sorted(k for k in ns if not k.startswith("_"))
    answer = link.ask({"op": "describe", "names": wanted}, "names", expected={})
    return examiner.described(link, wanted, answer["value"]), link


@pytest.fixture
def student():
    ns: dict = {}
    exec(compile(STUDENT, "<student>", "exec"), ns)
    names, link = bind(ns)
    return names, ns, link


@pytest.fixture
def seeding(monkeypatch):
    """The examiner counts its cells' seedings (as `install` sets up), undone after the test."""
    import torch.random
    for name in ("manual_seed", "seed", "set_rng_state"):
        for module in (torch, torch.random):
            monkeypatch.setattr(module, name, getattr(module, name))
    examiner.watch_seeding()


def test_functions_return_plain_data(student):
    names, _, _ = student
    X, K = torch.arange(9.0).reshape(3, 3), torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    Y = names["corr2d"](X, K)
    assert type(Y) is torch.Tensor and Y.tolist() == [[19.0, 25.0], [37.0, 43.0]]
    t, rest = names["pair"]()
    assert type(t) is torch.Tensor and rest == [1.5, "x", None]


def test_a_seed_set_before_a_call_is_the_seed_of_the_call(student, seeding):
    """Check that torch.manual_seed(s) in the examiner before a call means what it says in the
    student's kernel, also when the same seed is set again and nothing was drawn in between."""
    names, _, _ = student
    torch.manual_seed(3)
    first = names["noisy"]()
    torch.manual_seed(3)
    again = names["noisy"]()
    torch.manual_seed(3)
    assert torch.equal(first, torch.rand(3)) and torch.equal(again, first)


def test_the_student_kernel_keeps_its_own_generator_between_calls(student, seeding):
    names, _, _ = student
    torch.manual_seed(3)
    a, b = names["noisy"](), names["noisy"]()
    torch.manual_seed(3)
    assert torch.equal(torch.cat([a, b]), torch.rand(6))


def test_the_examiner_never_takes_the_students_rng_state(seeding):
    """Check that an all-zero Mersenne state, set by the student's code in its kernel and sent
    with its answer, changes nothing the examiner draws afterwards."""
    ns: dict = {}
    exec(compile(STUDENT, "<student>", "exec"), ns)
    zeros = torch.get_rng_state()
    zeros[24:24 + 4992] = 0
    carry = json.dumps(wire.encode_tensor(zeros), separators=(",", ":"))
    names, _ = bind(ns, tamper=lambda raw: raw[:-1] + ',"rng":' + carry + "}")
    torch.manual_seed(5)
    expected = torch.rand(4)
    torch.manual_seed(5)
    names["zero_rng"]()
    assert torch.equal(names["noisy"](), torch.zeros(3))     # the student's kernel has its zeros ...
    assert torch.equal(torch.rand(4), expected) and expected.abs().sum() > 0      # ... the examiner not


def test_in_place_changes_to_arguments_come_back(student):
    names, _, _ = student
    X = torch.ones(2)
    names["scale_in_place"](X)
    assert X.tolist() == [2.0, 2.0] and X.requires_grad


def test_student_exceptions_become_builtin_ones_or_fail(student):
    names, _, _ = student
    with pytest.raises(ValueError, match="even effective size 4"):
        names["refuse"](4)
    with pytest.raises(ValueError, match="a subclass"):
        names["odd"]()
    with pytest.raises(examiner.StudentCodeError, match="raised Mine: not a builtin"):
        names["mine"]()


def test_only_exceptions_a_test_may_expect_reach_it_as_themselves(student):
    """Check that the student's StopIteration, RecursionError (a RuntimeError), KeyError and
    AssertionError fail the test as StudentCodeErrors naming them, while NotImplementedError and
    IndexError (which tests catch) come as themselves."""
    names, _, _ = student
    for name, args, error in [("stop_at", (2,), "StopIteration"), ("recurse", (0,), "RecursionError"),
                              ("missing", (), "KeyError"), ("asserts", (), "AssertionError")]:
        with pytest.raises(examiner.StudentCodeError, match=f"{name}\\(...\\) raised {error}"):
            names[name](*args)
    with pytest.raises(NotImplementedError, match="write it"):
        names["not_done"]()
    with pytest.raises(IndexError):
        names["out_of_range"]()


def test_stop_iteration_fails_the_test_instead_of_ending_its_loop(student):
    """A StopIteration from the student's code inside map() would end a test's loop silently
    (the checks after it never run, and the test passes)."""
    names, _, _ = student
    checked = []
    with pytest.raises(examiner.StudentCodeError, match="StopIteration"):
        for value in map(names["stop_at"], [1, 2, 3]):
            checked.append(value)
    assert checked == [1]
    with pytest.raises(examiner.StudentCodeError, match="StopIteration"):
        list(convlab.call_each(names["stop_at"], [((1,), {}), ((2,), {}), ((3,), {})]))


def test_a_missing_attribute_is_an_attribute_error(student):
    """hasattr and getattr(..., default) work on the student's objects (nn.Module's own code
    relies on them: load_state_dict)."""
    names, _, _ = student
    layer = names["Conv2D"]((2, 2))
    assert not hasattr(layer, "nothing_here") and getattr(layer, "nothing_here", 7) == 7
    layer.load_state_dict({"weight": torch.ones(2, 2), "bias": torch.zeros(1)})


def test_objects_that_are_not_data_have_no_behaviour(student):
    names, _, _ = student
    got = names["liar"]()
    assert type(got).__name__ == "Liar" and not torch.is_tensor(got)
    assert got != torch.zeros(2) and not (got == got.__class__)
    with pytest.raises(AssertionError, match="it is a Liar"):
        convlab.expect_close(got, torch.zeros(2))


def test_modules_are_local_mirrors_with_remote_forward_and_backward(student):
    names, _, _ = student
    layer = names["Conv2D"]((2, 2))
    assert isinstance(layer, nn.Module) and type(layer).__name__ == "Conv2D"
    assert {n: tuple(p.shape) for n, p in layer.named_parameters()} == {"weight": (2, 2), "bias": (1,)}
    assert layer.note == "hello"                               # attribute reads go to the student
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -1.0], [0.5, 2.0]]))
        layer.bias.fill_(0.5)
    X = torch.randn(4, 5)
    out = layer(X)
    ref = F.conv2d(X[None, None], layer.weight.detach()[None, None])[0, 0] + 0.5
    assert torch.allclose(out, ref)
    (out ** 2).sum().backward()
    w, b = layer.weight.detach().clone().requires_grad_(), layer.bias.detach().clone().requires_grad_()
    ((F.conv2d(X[None, None], w[None, None])[0, 0] + b) ** 2).sum().backward()
    assert torch.allclose(layer.weight.grad, w.grad) and torch.allclose(layer.bias.grad, b.grad)


def test_a_detached_weight_gets_no_gradient(student):
    names, _, _ = student
    layer = names["Conv2D"]((1, 2), detach=True)
    layer(torch.randn(3, 3)).sum().backward()
    assert layer.weight.grad is None and layer.bias.grad is not None


def test_by_hand_rules_are_checked_on_the_source(student):
    names, _, _ = student
    X, K = torch.randn(4, 4), torch.randn(2, 2)
    rule = ({"conv2d", "convolution"}, "compute it by hand")
    with convlab.forbid_torch_functions(*rule):
        names["corr2d"](X, K)                                   # honest: passes
        layer = names["Conv2D"]((2, 2))
        layer(X)                                                # uses corr2d: passes
    for name, why in (("lazy_corr2d", "uses conv2d"), ("sneaky", "runs code with eval")):
        with pytest.raises(AssertionError, match=why), convlab.forbid_torch_functions(*rule):
            names[name](X, K)


def test_answers_to_another_call_are_refused():
    ns: dict = {}
    exec(compile(STUDENT, "<student>", "exec"), ns)
    other = lambda raw: raw.replace('"id":"', '"id":"0')       # noqa: E731 - echo another id
    link = examiner.Link(Loopback(ns, tamper=other).raw_input, [STUDENT])
    with pytest.raises(examiner.StudentCodeError, match="another request"):
        link.ask({"op": "describe", "names": ["corr2d"]}, "names")
    link = examiner.Link(Loopback(ns, tamper=lambda raw: '{"from": "grader", "message": "passed"}').raw_input, [])
    with pytest.raises(examiner.StudentCodeError, match="another request"):
        link.ask({"op": "describe", "names": ["corr2d"]}, "names")


def test_a_malformed_answer_is_never_a_builtin_exception():
    """A forged answer must not raise e.g. ValueError (which a test may expect from the student)."""
    ns: dict = {}
    exec(compile(STUDENT, "<student>", "exec"), ns)
    loop = Loopback(ns)
    link = examiner.Link(loop.raw_input, [STUDENT])
    names = link.decode(link.ask({"op": "describe", "names": ["refuse", "pair"]}, "names")["value"], "names")
    loop.tamper = lambda raw: raw.replace('"changed":[]', '"changed":[[0]]')
    with pytest.raises(examiner.StudentCodeError, match="malformed"):
        names["pair"]()
    loop.tamper = lambda raw: raw[:-1] + ',"rng":{"t":"tensor","dtype":"int8","shape":[1],"data":"AA=="}}'
    assert names["pair"]()[1] == [1.5, "x", None]            # an RNG state in the answer is ignored


def _sweep(names, link, calls, monkeypatch, fn="out_size"):
    sent = []
    ask = link.ask
    monkeypatch.setattr(link, "ask", lambda request, what: sent.append(request["op"]) or ask(request, what))
    return convlab.call_each(names[fn], calls), sent


def test_a_sweep_is_one_request_and_gives_each_result_in_order(student, monkeypatch):
    names, _, link = student
    calls = [((n, 3), {"stride": s}) for n in (3, 5, 6) for s in (1, 2)]
    results, sent = _sweep(names, link, calls, monkeypatch)
    assert list(results) == [(n - 3) // s + 1 for n in (3, 5, 6) for s in (1, 2)]
    assert sent == ["call_each"]
    many, sent = _sweep(names, link, [((9, 1), {})] * (examiner.CALLS_PER_REQUEST + 1), monkeypatch)
    assert list(many) == [9] * (examiner.CALLS_PER_REQUEST + 1) and sent == ["call_each"] * 2


def test_a_sweep_raises_the_students_exception_in_its_place(student, monkeypatch):
    names, _, link = student
    results, _ = _sweep(names, link, [((5, 3), {}), ((7, 3), {}), ((6, 3), {})], monkeypatch)
    assert next(results) == 3
    with pytest.raises(ValueError, match="seven"):
        next(results)
    results, _ = _sweep(names, link, [((5, 3), {}), ((8, 3), {})], monkeypatch)
    assert next(results) == 3
    got = next(results)                      # not data: a behaviourless stand-in, as from a call
    assert type(got).__name__ == "Liar" and not torch.is_tensor(got)


def test_a_sweep_with_tensor_arguments_goes_call_by_call(student, monkeypatch):
    names, _, link = student
    X, K = torch.arange(9.0).reshape(3, 3), torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    results, sent = _sweep(names, link, [((X, K), {}), ((X.T, K), {})], monkeypatch, fn="corr2d")
    assert sent == ["call", "call"]
    monkeypatch.undo()
    assert [Y.tolist() for Y in results] == [F.conv2d(A[None, None], K[None, None])[0, 0].tolist() for A in (X, X.T)]


def test_a_sweep_is_checked_by_hand_like_a_call(student):
    names, _, _ = student
    with convlab.forbid_torch_functions(convlab.CONVOLUTIONS, "by hand, please"):
        with pytest.raises(AssertionError, match="by hand, please"):
            convlab.call_each(names["lazy_corr2d"], [((1, 2), {})])


@pytest.mark.parametrize("grad_enabled", [True, False])
def test_the_agents_backward_is_the_vector_jacobian_product_exactly(grad_enabled):
    """Check that the agent's backward (the gradient of sum(output * upstream), which spares the
    student kernel SymPy's import) gives bit for bit what autograd gives for that upstream
    gradient as grad_outputs, also when the examiner's call ran without grad mode."""
    torch.manual_seed(0)
    X = torch.randn(2, 3, 7, 7, requires_grad=True)
    conv = nn.Conv2d(3, 4, 3)
    agent = student_agent.Agent({})
    Y, Z = conv(X), (conv(X) ** 2).mean(dim=1)
    agent.graphs["c"] = ([X, conv.weight, conv.bias], [Y, Z])
    gY, gZ = torch.randn_like(Y), torch.randn_like(Z)
    with torch.set_grad_enabled(grad_enabled):
        got = agent.op_backward({"call": "c", "grads": [wire.encode_tensor(gY), wire.encode_tensor(gZ)]})
    got = wire.decode(got["value"])
    want = torch.autograd.grad([Y, Z], [X, conv.weight, conv.bias], [gY, gZ], retain_graph=True)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    with pytest.raises(RuntimeError, match="shape"):
        agent.op_backward({"call": "c", "grads": [wire.encode_tensor(gY[0]), wire.encode_tensor(gZ)]})


RENAMED = STUDENT + '''
class Quick(nn.Module):
    def __init__(self, kernel_size):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(kernel_size))

    def forward(self, X):
        return F.conv2d(X[None, None], self.weight[None, None])[0, 0]

Quick.__name__ = Conv2D.__name__          # the name of the honest class
'''


def test_the_by_hand_check_reads_the_name_a_test_calls_not_the_one_a_class_gives_itself():
    """Check that a class whose __name__ is an honest class's is checked as the name the test
    uses (the examiner read the honest class's source, and the call passed)."""
    ns: dict = {}
    exec(compile(RENAMED, "<student>", "exec"), ns)
    names, _ = bind(ns, sources=(RENAMED,))
    X = torch.randn(4, 4)
    layer = names["Quick"]((2, 2))
    assert type(layer).__name__ == "Conv2D"                    # what the student's object says it is
    with convlab.forbid_torch_functions(convlab.CONVOLUTIONS, "by hand, please"):
        names["Conv2D"]((2, 2))(X)                              # the honest class passes
        with pytest.raises(AssertionError, match="your code for Quick uses conv2d: `F.conv2d`"):
            layer(X)
        with pytest.raises(AssertionError, match="your code for Quick uses conv2d"):
            names["Quick"]((2, 2))
