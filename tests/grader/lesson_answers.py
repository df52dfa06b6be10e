"""Wrong and forbidden answers to the lessons' exercises, and what the tests must say to each
(issue 24). `run_test_cells` runs a solution notebook's test cells against answers in-process,
as JupyterLab would run them in the student's kernel: the imports, every answer (the solution's,
or the wrong one given), the read-only helper cells and the test cells (hidden parts included),
in order. tests/grader/test_pipeline*.py grade the same answers (`submission`) with our grader
and plain nbgrader, which must agree with this run cell by cell.

Each WRONG entry: (assignment, answer cell's grade_id, answer source, test cell's grade_id,
a fragment the failure message must hold, fragments it must not hold)."""
from __future__ import annotations

import functools

import nbformat

from grader.course import source_notebook

# Answers that copy a visible test helper or call what the exercise forbids: no points for them.
FORBIDDEN = {
    "shape_table copies modules_table": (
        "06_small_cnn", "shape_table_impl", '''
def shape_table(input_shape, layers):
    x, rows = torch.zeros(1, *input_shape), []
    for L in layers:
        g = L.get
        make = {"relu": nn.ReLU, "flatten": nn.Flatten,
                "conv": lambda: nn.Conv2d(x.shape[1], L["out_channels"], L["kernel_size"], g("stride", 1),
                                          g("padding", 0), g("dilation", 1), bias=g("bias", True)),
                "maxpool": lambda: nn.MaxPool2d(L["kernel_size"], g("stride"), g("padding", 0), g("dilation", 1),
                                                ceil_mode=g("ceil_mode", False)),
                "linear": lambda: nn.Linear(x.shape[1], L["out_features"], bias=g("bias", True))}
        module = make[L["type"]]()
        with torch.no_grad():
            x = module(x)
        rows.append((L["type"], tuple(x.shape[1:]), sum(p.numel() for p in module.parameters())))
    return rows
''', ["shape_table_lenet", "shape_table_parameters", "shape_table_padding_stride_dilation", "shape_table_pooling"],
        "without building or running any layer"),
    "receptive_field copies measured_field": (
        "06_small_cnn", "receptive_field_impl", '''
def receptive_field(layers):
    n = 64
    while True:
        x = torch.ones(1, 1, n, requires_grad=True)
        y = x
        for L in layers:
            if L["type"] == "relu":
                continue
            k, d = L["kernel_size"], L.get("dilation", 1)
            s = L.get("stride", 1) if L["type"] == "conv" else (L.get("stride") or k)
            y = F.conv1d(y, torch.ones(1, 1, k), stride=s, padding=L.get("padding", 0), dilation=d)
        if y is x:
            return 1
        y[0, 0, y.shape[-1] // 2].backward()
        seen = x.grad[0, 0].nonzero().flatten()
        if seen.min() > 0 and seen.max() < n - 1:
            return int(seen.max() - seen.min() + 1)
        n *= 2
''', ["receptive_field_worked_examples", "receptive_field_strides_and_pooling", "receptive_field_dilation"],
        "without running any layer or autograd"),
    "corr2d_backward copies autograd_backward": (
        "03_learning_a_kernel", "corr2d_backward_impl", '''
def corr2d_backward(X, K, dY):
    Xg, Kg = X.detach().clone().requires_grad_(), K.detach().clone().requires_grad_()
    F.conv2d(Xg[None, None], Kg[None, None])[0, 0].backward(dY)
    return Xg.grad, Kg.grad
''', ["corr2d_backward_worked_example", "corr2d_backward_dK", "corr2d_backward_dX", "corr2d_backward_by_hand"],
        "by hand, without PyTorch's convolution or autograd"),
    "corr2d calls F.conv2d": (
        "01_cross_correlation", "corr2d_impl", '''
def corr2d(X, K):
    return F.conv2d(X[None, None].float(), K[None, None].float())[0, 0]
''', ["corr2d_worked_example", "corr2d_output_shape", "corr2d_matches_pytorch", "corr2d_integer_input", "corr2d_by_hand"],
        "not call PyTorch's convolution"),
    "corr2d_strided calls F.conv2d": (
        "04_padding_and_stride", "corr2d_strided_impl", '''
def corr2d_strided(X, K, padding=0, stride=1):
    return F.conv2d(X[None, None].float(), K[None, None].float(), padding=padding, stride=stride)[0, 0]
''', ["corr2d_strided_worked_example", "corr2d_strided_pairs", "corr2d_strided_matches_pytorch", "corr2d_strided_by_hand"],
        "not call PyTorch's convolution"),
    "conv_output_size calls the explorer's window count": (
        "04_padding_and_stride", "conv_output_size_impl", '''
from convlab.plotting import _outputs_by_pytorch

def conv_output_size(n, kernel_size, padding=0, stride=1, dilation=1):
    return _outputs_by_pytorch(n, kernel_size, padding, stride, dilation, False)
''', ["conv_output_size_seed_examples", "conv_output_size_padding_stride", "conv_output_size_dilation",
      "conv_output_size_int"], "not run a layer"),
    "pool2d calls F.max_pool2d": (
        "05_max_pooling_cifar10", "pool2d_impl", '''
def pool2d(X, pool_size, stride=None, padding=0, mode="max"):
    if mode not in ("max", "avg"):
        raise ValueError(mode)
    f = F.max_pool2d if mode == "max" else F.avg_pool2d
    return f(X[None, None].float(), pool_size, stride, padding)[0, 0]
''', ["pool2d_worked_example", "pool2d_stride_and_pairs", "pool2d_average", "pool2d_padding", "pool2d_by_hand"],
        "not call PyTorch's pooling"),
    "convolve2d calls F.conv2d": (
        "01_cross_correlation", "convolve2d_impl", '''
def convolve2d(X, K):
    return F.conv2d(X[None, None].float(), K.flip(0, 1)[None, None].float())[0, 0]
''', ["convolve2d_flips_kernel", "convolve2d_shape_and_dtype", "convolve2d_by_hand"],
        "not call PyTorch's convolution"),
    "corr2d_multi_in calls F.conv2d": (
        "01_cross_correlation", "corr2d_multi_in_impl", '''
def corr2d_multi_in(X, K):
    return F.conv2d(X[None].float(), K[None].float())[0, 0]
''', ["corr2d_multi_in_example", "corr2d_multi_in_matches_pytorch", "corr2d_multi_in_by_hand"],
        "not call PyTorch's convolution"),
    "corr2d_multi_in_out calls F.conv2d": (
        "01_cross_correlation", "corr2d_multi_in_out_impl", '''
def corr2d_multi_in_out(X, K):
    return F.conv2d(X[None].float(), K.float())[0]
''', ["corr2d_multi_in_out_shape", "corr2d_multi_in_out_matches_pytorch", "corr2d_multi_in_out_by_hand"],
        "not call PyTorch's convolution"),
    "Conv2D.forward calls F.conv2d": (
        "01_cross_correlation", "conv2d_impl", '''
class Conv2D(nn.Module):
    def __init__(self, kernel_size):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(kernel_size))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, X):
        return F.conv2d(X[None, None], self.weight[None, None])[0, 0] + self.bias
''', ["conv2d_forward", "conv2d_gradients", "conv2d_by_hand"], "not call PyTorch's convolution"),  # (its parameters are honest)
    "same_padding runs convolutions until the size is kept": (
        "04_padding_and_stride", "same_padding_impl", '''
def same_padding(kernel_size, dilation=1):
    for p in range(dilation * kernel_size):
        if nn.Conv1d(1, 1, kernel_size, padding=p, dilation=dilation)(torch.zeros(1, 1, 40)).shape[-1] == 40:
            return p
    raise ValueError(f"the effective kernel size {dilation * (kernel_size - 1) + 1} is even")
''', ["same_padding_keeps_size", "same_padding_even_kernels"], "not run"),
    "pool_output_size runs a pooling layer": (
        "05_max_pooling_cifar10", "pool_output_size_impl", '''
def pool_output_size(n, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    pool = nn.MaxPool1d(kernel_size, stride, padding, dilation, ceil_mode=ceil_mode)
    return pool(torch.zeros(1, 1, n)).shape[-1]
''', ["pool_output_size_default_stride", "pool_output_size_floor", "pool_output_size_ceil_mode"], "not run a"),
    "max_pool2d_backward unpools PyTorch's indices": (
        "05_max_pooling_cifar10", "max_pool2d_backward_impl", '''
def max_pool2d_backward(X, dY, pool_size, stride=None):
    _, indices = F.max_pool2d(X[None, None], pool_size, stride, return_indices=True)
    return nn.MaxUnpool2d(pool_size, stride)(dY[None, None], indices, output_size=X.shape)[0, 0]
''', ["max_pool2d_backward_worked_example", "max_pool2d_backward_matches_autograd", "max_pool2d_backward_ties",
      "max_pool2d_backward_leaves_inputs"], "without PyTorch's pooling, unpooling or autograd"),
}

# Wrong answers whose message must name (or not name) a mistake: (assignment, answer id, source,
# test id, must hold, must not hold).
WRONG = {
    "dK all zeros": ("03_learning_a_kernel", "corr2d_backward_impl", '''
def corr2d_backward(X, K, dY):
    return torch.zeros(X.shape), torch.zeros(K.shape)
''', "corr2d_backward_worked_example", "your result is all zeros", ["last window"]),
    "dX scattered with the kernel flipped": ("03_learning_a_kernel", "corr2d_backward_impl", '''
def corr2d_backward(X, K, dY):
    kh, kw = K.shape
    dX, dK = torch.zeros(X.shape), torch.zeros(K.shape)
    for i in range(dY.shape[0]):
        for j in range(dY.shape[1]):
            dX[i:i + kh, j:j + kw] += dY[i, j] * K.flip(0, 1)
            dK += dY[i, j] * X[i:i + kh, j:j + kw]
    return dX, dK
''', "corr2d_backward_dX", "turned the kernel the wrong way", ["did not flip"]),
    "dX assigned, not accumulated": ("03_learning_a_kernel", "corr2d_backward_impl", '''
def corr2d_backward(X, K, dY):
    kh, kw = K.shape
    dX, dK = torch.zeros(X.shape), torch.zeros(K.shape)
    for i in range(dY.shape[0]):
        for j in range(dY.shape[1]):
            dX[i:i + kh, j:j + kw] = dY[i, j] * K
            dK += dY[i, j] * X[i:i + kh, j:j + kw]
    return dX, dK
''', "corr2d_backward_dX", "assigned each window of dX instead of adding to it", []),
    "receptive field: jump = stride": ("06_small_cnn", "receptive_field_impl", '''
def receptive_field(layers):
    size, jump = 1, 1
    for layer in layers:
        if layer["type"] == "relu":
            continue
        k, d = layer["kernel_size"], layer.get("dilation", 1)
        stride = layer.get("stride", 1) if layer["type"] == "conv" else (layer.get("stride") or k)
        size += d * (k - 1) * jump
        jump = stride
    return size
''', "receptive_field_worked_examples", "set the jump to the last layer's stride", ["default to 1", "added up the kernel"]),
    "edge_magnitude all zeros": ("02_edge_detection", "edge_magnitude_impl", '''
def edge_magnitude(img):
    return torch.zeros(img.shape[0] - 2, img.shape[1] - 2)
''', "edge_magnitude_step", "your result is all zeros", ["only Gy"]),
    "horizontal edge kernel with the opposite sign": ("02_edge_detection", "horizontal_edge_kernel_impl", '''
def horizontal_edge_kernel():
    return torch.tensor([[-1.0], [1.0]])
''', "horizontal_edge_kernel_value", "flipped the sign", []),
    "horizontal edge kernel: section 1's kernel": ("02_edge_detection", "horizontal_edge_kernel_impl", '''
def horizontal_edge_kernel():
    return torch.tensor([[1.0, -1.0]])
''', "horizontal_edge_kernel_value", "returned the vertical-edge kernel", []),
    "max pool backward spread like average pooling": ("05_max_pooling_cifar10", "max_pool2d_backward_impl", '''
def max_pool2d_backward(X, dY, pool_size, stride=None):
    s = pool_size if stride is None else stride
    dX = torch.zeros(X.shape)
    for i in range(dY.shape[0]):
        for j in range(dY.shape[1]):
            window = X[i * s:i * s + pool_size, j * s:j * s + pool_size]
            dX[i * s:i * s + pool_size, j * s:j * s + pool_size] += dY[i, j] / pool_size ** 2
    return dX
''', "max_pool2d_backward_worked_example", "spread dY evenly", []),
    "max pool backward assigned, not accumulated": ("05_max_pooling_cifar10", "max_pool2d_backward_impl", '''
def max_pool2d_backward(X, dY, pool_size, stride=None):
    s = pool_size if stride is None else stride
    dX = torch.zeros(X.shape)
    for i in range(dY.shape[0]):
        for j in range(dY.shape[1]):
            window = X[i * s:i * s + pool_size, j * s:j * s + pool_size]
            a, b = divmod(int(window.flatten().argmax()), pool_size)
            dX[i * s + a, j * s + b] = dY[i, j]
    return dX
''', "max_pool2d_backward_matches_autograd", "assigned the gradient", []),
    "max pool backward to the last tied maximum": ("05_max_pooling_cifar10", "max_pool2d_backward_impl", '''
def max_pool2d_backward(X, dY, pool_size, stride=None):
    s = pool_size if stride is None else stride
    dX = torch.zeros(X.shape)
    for i in range(dY.shape[0]):
        for j in range(dY.shape[1]):
            window = X[i * s:i * s + pool_size, j * s:j * s + pool_size]
            flat = window.flatten()
            a, b = divmod(len(flat) - 1 - int(flat.flip(0).argmax()), pool_size)
            dX[i * s + a, j * s + b] += dY[i, j]
    return dX
''', "max_pool2d_backward_ties", "LAST maximum", []),
    "max pool backward all zeros": ("05_max_pooling_cifar10", "max_pool2d_backward_impl", '''
def max_pool2d_backward(X, dY, pool_size, stride=None):
    return torch.zeros(X.shape)
''', "max_pool2d_backward_worked_example", "your result is all zeros", []),
    "pool_output_size ignores dilation": ("05_max_pooling_cifar10", "pool_output_size_impl", '''
def pool_output_size(n, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    stride = kernel_size if stride is None else stride
    room = n + 2 * padding - kernel_size
    if not ceil_mode:
        return room // stride + 1
    out = -(-room // stride) + 1
    if (out - 1) * stride >= n + padding:
        out -= 1
    return out
''', "pool_output_size_floor", "ignored dilation", ["stride default", "let the stride default"]),
}


def run_test_cells(assignment: str, answers: dict[str, str]) -> dict[str, str | None]:
    """Every test cell's failure message (None where it passes), in order, when the answer cells in
    `answers` (grade_id -> source) replace the solution's: the imports, the answers and the
    read-only cells run in one namespace, in the notebook's order, as in JupyterLab (no demos,
    no training); a test cell runs with its hidden part."""
    nb = nbformat.read(source_notebook(assignment), as_version=4)
    ns: dict = {}
    code = [c for c in nb.cells if c.cell_type == "code"]
    exec(compile(code[0].source, "imports", "exec"), ns)            # the first code cell: the imports
    results: dict[str, str | None] = {}
    for cell in code:
        meta = cell.metadata.get("nbgrader", {})
        gid = meta.get("grade_id")
        if meta.get("solution"):
            exec(compile(answers.get(gid, _solution(cell.source)), gid, "exec"), ns)
        elif meta.get("grade"):
            try:
                exec(compile(cell.source, gid, "exec"), ns)
                results[gid] = None
            except AssertionError as err:
                results[gid] = str(err)
            except Exception as err:  # noqa: BLE001 - a test that errors fails, as when graded
                results[gid] = f"{type(err).__name__}: {err}"
        elif meta.get("locked"):
            exec(compile(cell.source, gid, "exec"), ns)
    return results


def run_test_cell(assignment: str, answers: dict[str, str], test_id: str) -> str | None:
    """The failure message of test cell `test_id` (None if it passes); see run_test_cells."""
    results = run_test_cells(assignment, answers)
    if test_id not in results:
        raise KeyError(f"{assignment} has no test cell {test_id}")
    return results[test_id]


@functools.lru_cache(maxsize=None)
def forbidden_expected(assignment: str) -> dict[str, bool]:
    """Which test cells pass (True) with FORBIDDEN's answers of `assignment`, run in-process."""
    return {gid: message is None for gid, message in run_test_cells(assignment, forbidden_answers(assignment)).items()}


def forbidden_submission(assignment: str) -> nbformat.NotebookNode:
    """The solved notebook with every FORBIDDEN answer of `assignment` (the solution where none)."""
    return submission(assignment, forbidden_answers(assignment))


def forbidden_answers(assignment: str) -> dict[str, str]:
    """Every FORBIDDEN answer of `assignment`, together (answer grade_id -> source)."""
    return {answer_id: source for a, answer_id, source, _, _ in FORBIDDEN.values() if a == assignment}


def _solution(source: str) -> str:
    return "\n".join(line for line in source.splitlines() if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line)


def submission(assignment: str, answers: dict[str, str]) -> nbformat.NotebookNode:
    """The solved student notebook with the answer cells in `answers` replaced (for the graders)."""
    from grader import samples
    nb = samples.solved(assignment)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
    return nb
