"""grader/inside/examiner.py's by-hand check (`ByHand`) on the student's source alone: what it lets pass
(the solutions and the other honest answers the tests grade, locals, parameters and the class's
own name that look like a forbidden function) and the dodges it fails, each with a message that
says what to remove. Through the proxies (the name a test calls, not `__name__`):
test_examiner.py; end to end: the hostile catalog (test_hostile.py) and test_pipeline.py."""
from __future__ import annotations

import ast
import sys

import nbformat
import pytest

from grader.inside import envelope, wire

sys.modules.setdefault("_convlab_wire", wire)
sys.modules.setdefault("_convlab_envelope", envelope)
from grader import integrity, samples  # noqa: E402
from grader.inside import examiner  # noqa: E402 - examiner finds wire and envelope in sys.modules
from grader.course import assignments, source_notebook  # noqa: E402
from grader.grading import is_instructor, wanted_names  # noqa: E402

import convlab  # noqa: E402

HEAD = "import torch\nfrom torch import nn\nfrom torch.nn import functional as F\n"
LESSON_3 = convlab.CONVOLUTIONS | {"backward", "grad"}          # what corr2d_backward_by_hand forbids
CORR2D = '''
def corr2d(X, K):
    kh, kw = K.shape
    Y = torch.zeros((X.shape[0] - kh + 1, X.shape[1] - kw + 1))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i:i + kh, j:j + kw] * K).sum()
    return Y
'''


def rules(names, message="do it by hand"):
    """What `convlab.forbidden_now()` gives inside `forbid_torch_functions(names, message)`."""
    with convlab.forbid_torch_functions(names, message):
        return convlab.checks.forbidden_now()


def finding(cells, name, names=convlab.CONVOLUTIONS, namespace=None):
    """The by-hand failure message for calling `name` of a notebook of `cells`, or None."""
    by_hand = examiner.ByHand([HEAD, *([cells] if isinstance(cells, str) else cells)], namespace or {})
    try:
        by_hand.check(name, rules(names))
    except AssertionError as err:
        return str(err)
    return None


# -- honest code passes --------------------------------------------------------------------------
def by_hand_tests(assignment):
    """(grade id, names, the student's name called) of every forbid_torch_functions block in the
    assignment's tests (a name assigned from a call of a student's class stands for that class)."""
    nb = nbformat.read(source_notebook(assignment), as_version=4)
    wanted, out = set(wanted_names(nb, integrity.notebook_imports(nb))), []
    for cell in (c for c in nb.cells if integrity.is_test(c)):
        tree = integrity.parse_cell(cell.source)
        made = {t.id: n.value.func.id for n in ast.walk(tree) if isinstance(n, ast.Assign)
                and isinstance(n.value, ast.Call) and isinstance(n.value.func, ast.Name) for t in n.targets
                if isinstance(t, ast.Name)}
        for block in (n for n in ast.walk(tree) if isinstance(n, ast.With)):
            call = block.items[0].context_expr
            if isinstance(call, ast.Call) and ast.unparse(call.func).endswith("forbid_torch_functions"):
                names = eval(ast.unparse(call.args[0]), {"convlab": convlab})
                used = {made.get(n.id, n.id) for s in block.body for n in ast.walk(s) if isinstance(n, ast.Name)}
                out += [(cell.metadata.nbgrader.grade_id, names, name) for name in sorted(used & wanted)]
    return out


def student_cells(nb):
    return [c.source for c in nb.cells if c.cell_type == "code" and not is_instructor(c)]


HONEST = {f"{a}/{variant}": (a, make) for a in assignments() for variant, make in
          [("solved", samples.solved), *((f"changes_input_{i}", lambda a, i=i: samples.changing_an_input(a, i))
                                             for i in range(3))]}


@pytest.mark.parametrize("case", sorted(HONEST))
def test_the_answers_the_tests_grade_pass_every_by_hand_test(case):
    """Check that the solutions, and the right answers that then change an input (test_pipeline.py
    grades them: a wrapper rebinds each answer), pass every by-hand test of their lesson."""
    assignment, make = HONEST[case]
    cells = student_cells(make(assignment))
    for grade_id, names, name in by_hand_tests(assignment):
        by_hand = examiner.ByHand(cells, {})
        by_hand.check(name, rules(names))             # raises AssertionError if it fails
    assert by_hand_tests("01_cross_correlation") and by_hand_tests("03_learning_a_kernel")


HONEST_LOOKALIKES = {
    "a local named grad": ('''
def corr2d_backward(X, K, dY):
    kh, kw = K.shape
    grad = torch.zeros(X.shape)
    dK = torch.zeros(K.shape)
    for i in range(dY.shape[0]):
        for j in range(dY.shape[1]):
            grad[i:i + kh, j:j + kw] += dY[i, j] * K
            dK += dY[i, j] * X[i:i + kh, j:j + kw]
    return grad, dK
''', "corr2d_backward", LESSON_3),
    "super(Conv2D, self)": (CORR2D + '''
class Conv2D(nn.Module):
    def __init__(self, kernel_size):
        super(Conv2D, self).__init__()
        self.weight = nn.Parameter(torch.rand(kernel_size))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, X):
        return corr2d(X, self.weight) + self.bias
''', "Conv2D", convlab.CONVOLUTIONS),
    "a local named convolution": (CORR2D.replace("Y", "convolution"), "corr2d", convlab.CONVOLUTIONS),
    "parameters and comprehension variables named like forbidden functions": ('''
def corr2d_backward(X, K, dY, grad=None, backward=1):
    dX = torch.stack([sum(g for g in [dY.sum() * 0]) for grad in range(1)]) if grad else torch.zeros(X.shape)
    return dX, (lambda jvp: jvp)(torch.zeros(K.shape))
''', "corr2d_backward", LESSON_3),
    "an own helper named conv2d, and own methods": ('''
def conv2d(X, K):
    return torch.stack([(X[i:i + K.shape[0]] * K).sum() for i in range(X.shape[0] - K.shape[0] + 1)])

class Conv2D(nn.Module):
    conv2d = staticmethod(conv2d)

    def __init__(self):
        super().__init__()
        self.convolution = conv2d

    def forward(self, X):
        return self.conv2d(X, X) + self.convolution(X, X) + Conv2D.conv2d(X, X)
''', "Conv2D", convlab.CONVOLUTIONS),
    "PyTorch's convolution elsewhere, to compare, timing and plotting magics": (CORR2D + '''
%matplotlib inline
X, K = torch.ones(4, 4), torch.ones(2, 2)
print(torch.allclose(corr2d(X, K), F.conv2d(X[None, None], K[None, None])[0, 0]))
%timeit corr2d(X, K)
%time Y = corr2d(X, K)
''', "corr2d", convlab.CONVOLUTIONS),
    "decorators, numpy, math and a broken scratch cell": ([CORR2D.replace("def corr2d", '''
@torch.no_grad()
@functools.lru_cache(maxsize=None)
def unused():
    return np.zeros(3), math.prod([2, 3])

def corr2d''', 1), "import functools, math\nimport numpy as np", "def broken(:\n    pass"],
        "corr2d", convlab.CONVOLUTIONS),
    "a helper that compares it with PyTorch's": (CORR2D + '''
def check(f, ref, results=[]):
    X, K = torch.ones(4, 4), torch.ones(2, 2)
    results.append(torch.allclose(f(X, K), ref(X, K)))

check(corr2d, lambda X, K: F.conv2d(X[None, None], K[None, None])[0, 0])
''', "corr2d", convlab.CONVOLUTIONS),
    "max by hand in pooling": ('''
def pool2d(X, k):
    Y = torch.full((X.shape[0] // k, X.shape[1] // k), float("-inf"))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = X[i * k:(i + 1) * k, j * k:(j + 1) * k].max()
    return Y
''', "pool2d", convlab.POOLING),
}


@pytest.mark.parametrize("case", sorted(HONEST_LOOKALIKES))
def test_honest_code_that_looks_forbidden_passes(case):
    """Check that locals, parameters, the class's own name, the student's own functions and
    methods named like a forbidden function, and PyTorch's convolution outside the checked code
    are not flagged (the student's own run of the test passes them too)."""
    cells, name, names = HONEST_LOOKALIKES[case]
    assert finding(cells, name, names) is None


# -- dodges fail, saying what to remove ----------------------------------------------------------
THREAD = '''
import threading
_c = F.conv2d

def corr2d(X, K):
    out = []
    t = threading.Thread(target=lambda: out.append(_c(X[None, None], K[None, None])[0, 0]))
    t.start()
    t.join()
    return out[0]
'''
DODGES = {
    # the one-liners
    "a top-level alias called from a thread": (THREAD, "corr2d", None, "starts threads or processes"),
    "a top-level alias": ("_c = F.conv2d\ndef corr2d(X, K):\n    return _c(X[None, None], K[None, None])[0, 0]",
                          "corr2d", None, "uses conv2d: `F.conv2d` (in the code for _c)"),
    "convolution_backward from torch.ops": ('''
def corr2d_backward(X, K, dY):
    dX, dK, _ = torch.ops.aten.convolution_backward(dY[None, None], X[None, None], K[None, None], None,
                                                    [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [True, True, False])
    return dX[0, 0], dK[0, 0]
''', "corr2d_backward", LESSON_3, "uses convolution_backward"),
    "forward mode: torch.func.jvp": ('''
def corr2d_backward(X, K, dY):
    from torch.func import jvp
    return jvp(lambda x: x, (X,), (dY,))
''', "corr2d_backward", LESSON_3, "uses jvp"),
    # more routes
    "torch.nn.grad": ("def corr2d_backward(X, K, dY):\n    return torch.nn.grad.conv2d_weight(X, K.shape, dY)",
                      "corr2d_backward", LESSON_3, "uses conv2d_weight"),
    "forward_ad's dual numbers": ("import torch.autograd.forward_ad as fwAD\n"
                                  "def corr2d_backward(X, K, dY):\n    return fwAD.make_dual(X, dY)",
                                  "corr2d_backward", LESSON_3, "uses make_dual"),
    "autograd.functional": ("def corr2d_backward(X, K, dY):\n    return torch.autograd.functional.jacobian(len, X)",
                            "corr2d_backward", LESSON_3, "uses jacobian"),
    ".backward() on a tensor": ("def corr2d_backward(X, K, dY):\n    Y = (X * 2).sum()\n    Y.backward()\n    return X.grad, K",
                                "corr2d_backward", LESSON_3, "uses backward"),
    "an import under another name": ("from torch.nn.functional import conv2d as c2\n"
                                     "def corr2d(X, K):\n    return c2(X[None, None], K[None, None])[0, 0]",
                                     "corr2d", None, "uses conv2d: `c2`"),
    "a star import": ("from torch.nn.functional import *\ndef corr2d(X, K):\n    return conv2d(X, K)",
                      "corr2d", None, "uses conv2d"),
    "a default argument": ("def corr2d(X, K, c=F.conv2d):\n    return c(X, K)", "corr2d", None, "uses conv2d"),
    "a decorator that replaces the function": ("@lambda f: F.conv2d\ndef corr2d(X, K):\n    return X",
                                               "corr2d", None, "uses conv2d"),
    "a lazy module": ("def corr2d(X, K):\n    return nn.LazyConv2d(1, K.shape)(X)", "corr2d", None, "uses Conv2d"),
    "a forbidden base class": (CORR2D + "class Conv2D(nn.Conv2d):\n    pass", "Conv2D", None, "uses Conv2d"),
    "getattr with a constant": ("def corr2d(X, K):\n    return getattr(F, 'conv2d')(X, K)", "corr2d", None, "uses conv2d"),
    "getattr with a computed name": ("def corr2d(X, K):\n    return getattr(F, 'conv' + '2d')(X, K)",
                                     "corr2d", None, "a name computed at run time"),
    "a method patched in at the top level": (CORR2D + '''
class Conv2D(nn.Module):
    def forward(self, X):
        return corr2d(X, X)

Conv2D.forward = lambda self, X: F.conv2d(X[None, None], X[None, None])[0, 0]
''', "Conv2D", None, "uses conv2d"),
    "a class body reading a global of its own name": ("_c = F.conv2d\nclass Conv2D(nn.Module):\n    _c = _c\n"
                                                      "    def forward(self, X):\n        return self._c(X, X)",
                                                      "Conv2D", None, "uses conv2d: `F.conv2d` (in the code for _c)"),
    "a class attribute": ("class H:\n    c = staticmethod(F.conv2d)\ndef corr2d(X, K):\n    return H.c(X, K)",
                          "corr2d", None, "uses conv2d"),
    "a global table filled later": ("ops = {}\nops['c'] = F.conv2d\ndef corr2d(X, K):\n    return ops['c'](X, K)",
                                    "corr2d", None, "uses conv2d"),
    "a global list filled by another function": ('''
_out = []
def worker(X, K):
    _out.append(F.conv2d(X, K))
def corr2d(X, K):
    return _out.pop()
''', "corr2d", None, "uses conv2d"),
    "a name set through global": ("def setup():\n    global _c\n    _c = F.conv2d\nsetup()\n"
                                  "def corr2d(X, K):\n    return _c(X, K)", "corr2d", None, "uses conv2d"),
    "exec of a constant": (["def corr2d(X, K):\n    return X", "exec('def corr2d(X, K):\\n    return F.conv2d(X, K)')"],
                           "corr2d", None, "uses conv2d"),
    "exec of a computed string": ([CORR2D, "exec('corr2d = ' + 'F.conv2d')"], "corr2d", None, "runs code with exec"),
    "eval in the function": ("def corr2d(X, K):\n    return eval('F.conv2d')(X, K)", "corr2d", None, "runs code with eval"),
    "%time binds an alias": (["%time _c = F.conv2d", "def corr2d(X, K):\n    return _c(X, K)"], "corr2d", None, "uses conv2d"),
    "a %%time cell redefines it": ([CORR2D, "%%time\ndef corr2d(X, K):\n    return F.conv2d(X, K)"],
                                   "corr2d", None, "uses conv2d"),
    "%run": ([CORR2D, "%run helpers.py"], "corr2d", None, "runs the magic %run"),
    "globals()": ([CORR2D, "globals()['corr2d'] = F.conv2d"], "corr2d", None, "reaches names with globals()"),
    "a name made at run time": (["import builtins\nbuiltins.conv = F.conv2d", "def corr2d(X, K):\n    return conv(X, K)"],
                                "corr2d", None, "none of your cells defines"),
    "a module of the student's own": ([CORR2D, "import my_helpers_beside_the_notebook"], "corr2d", None,
                                      "a module of its own"),
    "torch's private parts": ("def corr2d(X, K):\n    return torch._C._nn.im2col(X, K.shape, 1, 0, 1)",
                              "corr2d", None, "torch._C"),
    "switching the mode off": ("def corr2d(X, K):\n    with torch.overrides._pop_mode_temporarily():\n        return X",
                               "corr2d", None, "torch.overrides"),
    "a frame's globals": ([CORR2D, "import sys\nsys._getframe().f_globals['corr2d'] = F.conv2d"], "corr2d", None,
                          "reaches names through .f_globals"),
    "a process": ([CORR2D, "import os\nif os.fork() == 0:\n    pass"], "corr2d", None, "starts threads or processes"),
    "a function that patches its parameter": (CORR2D + '''
class Conv2D(nn.Module):
    def forward(self, X):
        return corr2d(X, X)

def quick(self, X):
    return F.conv2d(X[None, None], X[None, None])[0, 0]

def patch(cls, fn):
    cls.forward = fn

patch(Conv2D, quick)
''', "Conv2D", None, "uses conv2d: `F.conv2d` (in the code for quick)"),
    "a __code__ swap": ([CORR2D, "def quick(X, K):\n    return F.conv2d(X, K)\n"
                                 "def patch(f, g):\n    f.__code__ = g.__code__\npatch(corr2d, quick)"],
                        "corr2d", None, "rewrites .__code__"),
    "setattr by a computed name": ([CORR2D, "def quick(X, K):\n    return F.conv2d(X, K)\n"
                                            "setattr(corr2d, '__co' + 'de__', quick.__code__)"],
                                   "corr2d", None, "by a name the grader cannot follow"),
    "pooling by PyTorch": ("def pool2d(X, k):\n    return nn.MaxPool2d(k)(X[None])[0]", "pool2d", convlab.POOLING,
                           "uses MaxPool2d"),
    "no definition at all": ("x = 1", "corr2d", None, "found no definition of corr2d"),
}


@pytest.mark.parametrize("case", sorted(DODGES))
def test_dodges_fail_saying_what_to_remove(case):
    cells, name, names, says = DODGES[case]
    message = finding(cells, name, names or convlab.CONVOLUTIONS)
    assert message is not None, f"{case}: passed"
    assert says in message and message.startswith("do it by hand ("), message
    assert "remove it" in message or "define it" in message, message


def test_a_read_only_cells_helper_is_read_too():
    """A helper a read-only cell defines (in the examiner's namespace too), e.g. lesson 3's
    autograd_backward, computes with F.conv2d: using it is not by hand."""
    namespace = {"__name__": "__main__", "F": convlab.checks.torch.nn.functional}
    exec("def autograd_backward(X, K, dY):\n    return F.conv2d(X, K)", namespace)
    cells = "def corr2d_backward(X, K, dY):\n    return autograd_backward(X, K, dY)"
    assert "uses autograd_backward, which calls conv2d" in finding(cells, "corr2d_backward", LESSON_3, namespace)
    assert finding(cells.replace("autograd_backward", "nowhere_defined"), "corr2d_backward", LESSON_3,
                   namespace) is not None
    namespace["reference_layer"] = convlab.checks.torch.nn.Conv2d(1, 1, 2)
    cells = "def corr2d(X, K):\n    return reference_layer(X[None, None])[0, 0]"
    assert "uses Conv2d: `reference_layer`" in finding(cells, "corr2d", namespace=namespace)


def test_every_check_of_a_notebook_is_read_once():
    """The cells are parsed at the first by-hand check, then each (name, rule) is remembered."""
    by_hand = examiner.ByHand([HEAD, CORR2D], {})
    for _ in range(3):
        by_hand.check("corr2d", rules(convlab.CONVOLUTIONS))
    assert by_hand.notebook is not None and len(by_hand.found) == 1
