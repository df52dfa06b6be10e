"""grader/monkeypatch.py: the static scan that flags patching of the course's libraries."""
from __future__ import annotations

import pytest

from grader import monkeypatch

FLAGGED = {
    "import torch\ntorch.allclose = lambda *a, **k: True": "torch.allclose",
    "import torch.testing\ntorch.testing.assert_close = None": "torch.testing.assert_close",
    "import builtins\nbuiltins.AssertionError = KeyError": "builtins.AssertionError",
    "import sys\nsys.modules['torch'] = None": "sys.modules[...]",
    "get_ipython().set_custom_exc((BaseException,), print)": "get_ipython().set_custom_exc",
    "get_ipython().ast_transformers.append(None)": "get_ipython().ast_transformers",
    "def corr2d(X, K):\n    import convlab\n    convlab.expect_close = print\n    return X": "convlab.expect_close",
    "from convlab import checks as c\nc.expect_close = print": "convlab.checks.expect_close",
    "import torch\nsetattr(torch, 'allclose', print)": "torch (with setattr)",
    "import convlab\ndel convlab.expect_close": "convlab.expect_close",
    "import sys\nsys.modules['_convlab_agent'].serve = print": "the grader's agent (_convlab_agent)",
}
HONEST = [
    "import torch\nX = torch.ones(3)\nX.requires_grad = True",
    "import torch\ntorch.backends.cudnn.deterministic = True",
    "get_ipython().run_line_magic('matplotlib', 'inline')",
    "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.rcParams['figure.dpi'] = 80",
    "class Conv2D(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.weight = 1",
    "def broken(:",
]


@pytest.mark.parametrize("source", list(FLAGGED))
def test_patches_are_flagged(source):
    found = monkeypatch.findings([("cell 1", "import torch"), ("cell 7", source)])
    assert len(found) == 1 and FLAGGED[source] in found[0] and found[0].startswith("cell 7: "), found


@pytest.mark.parametrize("source", HONEST)
def test_honest_code_is_not_flagged(source):
    assert monkeypatch.findings([("cell 1", "import torch\nfrom torch import nn"), ("cell 2", source)]) == []
