"""Explorers: ipywidgets controls over a plain, tested function, with a static fallback.

Each explorer has three layers: a plain function that computes what is shown (tested in
tests/convlab/test_explorers.py), a `show_*` function that draws one static figure of it, and an
`explore_*` function that puts widgets in front of `show_*` in a live Jupyter kernel, or prints a
note and returns the static figure anywhere else (nbval, a script, an exported page). None of
them holds a graded answer: they take *your* functions (`corr2d`, `corr2d_backward`, `pool2d`) and
kernels as arguments.

In lesson 3, for example: `explore_learning_rate(corr2d_backward, X, Y, K_init[0, 0], target=K)`.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import matplotlib.pyplot as plt
import torch
from matplotlib.colors import TwoSlopeNorm
from torch.nn import functional as F

from .plotting import _in_jupyter_kernel, _show

__all__ = [
    "descend",
    "explore_kernel",
    "explore_learning_rate",
    "explore_shift_pooling",
    "kernel_presets",
    "shift_pooling",
    "show_descent",
    "show_kernel_response",
    "show_shift_pooling",
    "stability_limit",
]

_FALLBACK = ("(no live Jupyter kernel with ipywidgets: showing a static figure for the values given; "
             "open the notebook in JupyterLab to get the controls)")


def _live() -> bool:
    """True in a live Jupyter kernel with ipywidgets installed (where widgets can be shown)."""
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return _in_jupyter_kernel()


def _tensor2d(t: object, name: str) -> torch.Tensor:
    if not torch.is_tensor(t):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D (height, width), got shape {tuple(t.shape)}")
    return t.detach().float().cpu()


def _diverging(ax, M: torch.Tensor, title: str) -> None:
    bound = max(float(M.abs().max()), 1e-12)
    ax.imshow(M.numpy(), cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -bound, bound))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)


# --- lesson 2: a 3×3 kernel applied to the photograph --------------------------------------------

def kernel_presets(Gx: torch.Tensor, Gy: torch.Tensor) -> dict[str, torch.Tensor]:
    """Named 3×3 kernels for `explore_kernel`: *your* Sobel kernels (Gx, Gy) and their sign
    flips, Prewitt's, the Laplacian, and two that are not edge detectors (identity, box blur).

    >>> Gx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])   # yours: sobel_kernels()
    >>> presets = kernel_presets(Gx, Gx.T)
    >>> list(presets)[:3], presets["−Gx (sign flipped)"][1].tolist()
    (['Sobel Gx (yours)', '−Gx (sign flipped)', 'Sobel Gy (yours)'], [2.0, -0.0, -2.0])
    """
    Gx, Gy = _tensor2d(Gx, "Gx"), _tensor2d(Gy, "Gy")
    for name, G in (("Gx", Gx), ("Gy", Gy)):
        if tuple(G.shape) != (3, 3):
            raise ValueError(f"{name} must be 3×3, got shape {tuple(G.shape)}: fix sobel_kernels first")
    prewitt = torch.tensor([[-1.0, 0.0, 1.0]] * 3)
    identity = torch.zeros(3, 3)
    identity[1, 1] = 1.0
    return {
        "Sobel Gx (yours)": Gx, "−Gx (sign flipped)": -Gx,
        "Sobel Gy (yours)": Gy, "−Gy (sign flipped)": -Gy,
        "Prewitt x": prewitt, "Prewitt y": prewitt.T.clone(),
        "Laplacian": torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]),
        "identity": identity, "box blur": torch.full((3, 3), 1 / 9),
    }


def show_kernel_response(corr2d: Callable, img: torch.Tensor, K: torch.Tensor, title: str = "kernel K"):
    """The kernel K (annotated) beside its response `corr2d(img, K)` computed by *your* corr2d,
    red where positive, blue where negative. Returns the matplotlib Figure.

    >>> def corr2d(X, K):   # yours from lesson 1; PyTorch's own stands in for it here
    ...     return torch.nn.functional.conv2d(X[None, None], K[None, None])[0, 0]
    >>> img = torch.zeros(8, 8); img[:, 4:] = 1                       # a vertical edge
    >>> fig = show_kernel_response(corr2d, img, torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]))
    >>> fig.axes[1].get_title()
    'response: sum 0.00 of weights, range [-1.00, 1.00]'
    """
    img, K = _tensor2d(img, "img"), _tensor2d(K, "K")
    R = corr2d(img, K)
    want = (img.shape[0] - K.shape[0] + 1, img.shape[1] - K.shape[1] + 1)
    if not torch.is_tensor(R) or tuple(R.shape) != want:
        got = tuple(R.shape) if torch.is_tensor(R) else type(R).__name__
        raise ValueError(f"corr2d returned {got} for an image {tuple(img.shape)} and a kernel {tuple(K.shape)}; "
                         f"valid cross-correlation gives {want}")
    R = R.detach().float()
    fig, (ax_k, ax_r) = plt.subplots(1, 2, figsize=(8, 4), gridspec_kw={"width_ratios": [1, 2.2]})
    _diverging(ax_k, K, title)
    for (r, c), v in zip(((r, c) for r in range(K.shape[0]) for c in range(K.shape[1])), K.reshape(-1).tolist()):
        ax_k.text(c, r, f"{v:.0f}" if float(v).is_integer() else f"{v:.2f}", ha="center", va="center", fontsize=11)
    _diverging(ax_r, R, f"response: sum {float(K.sum()):.2f} of weights, range [{float(R.min()):.2f}, {float(R.max()):.2f}]")
    fig.tight_layout()
    return _show(fig)


def explore_kernel(corr2d: Callable, img: torch.Tensor, presets: Mapping[str, torch.Tensor],
                   start: str | None = None):
    """An editable 3×3 kernel (nine number boxes), a preset menu and a "flip sign" button; the
    response of the photograph to the kernel (by `corr2d`) is redrawn whenever it changes.
    Without a live kernel: prints a note and returns the static figure of the `start` preset.

    >>> def corr2d(X, K):   # yours from lesson 1; PyTorch's own stands in for it here
    ...     return torch.nn.functional.conv2d(X[None, None], K[None, None])[0, 0]
    >>> Gx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])   # yours: sobel_kernels()
    >>> img = torch.zeros(8, 8); img[:, 4:] = 1
    >>> fig = explore_kernel(corr2d, img, kernel_presets(Gx, Gx.T))   # in JupyterLab: the editable kernel
    (no live Jupyter kernel with ipywidgets: showing a static figure for the values given; open the notebook in JupyterLab to get the controls)
    """
    if not presets:
        raise ValueError("explore_kernel needs at least one preset kernel (see convlab.kernel_presets)")
    start = start if start is not None else next(iter(presets))
    if start not in presets:
        raise ValueError(f"start {start!r} is not one of the presets: {list(presets)}")
    if not _live():
        print(_FALLBACK)
        return show_kernel_response(corr2d, img, presets[start], start)
    import ipywidgets as widgets
    from IPython.display import display

    boxes = [widgets.FloatText(layout=widgets.Layout(width="70px")) for _ in range(9)]
    menu = widgets.Dropdown(options=list(presets), value=start, description="preset")
    flip = widgets.Button(description="flip sign")
    out = widgets.Output()
    state = {"busy": False}

    def redraw(*_):
        if state["busy"]:
            return
        K = torch.tensor([b.value for b in boxes], dtype=torch.float32).reshape(3, 3)
        with out:
            out.clear_output(wait=True)
            display(show_kernel_response(corr2d, img, K))

    def load(K: torch.Tensor):
        state["busy"] = True
        for b, v in zip(boxes, _tensor2d(K, "K").reshape(-1).tolist()):
            b.value = v
        state["busy"] = False
        redraw()

    menu.observe(lambda change: load(presets[change["new"]]), names="value")
    flip.on_click(lambda _: load(-torch.tensor([b.value for b in boxes]).reshape(3, 3)))
    for b in boxes:
        b.observe(redraw, names="value")
    load(presets[start])
    grid = widgets.GridBox(boxes, layout=widgets.Layout(grid_template_columns="repeat(3, 75px)"))
    return widgets.VBox([widgets.HBox([menu, flip]), grid, out])


# --- lesson 3: the learning rate, zero_grad and the stability limit -------------------------------

def stability_limit(X: torch.Tensor, kernel_shape: tuple[int, int]) -> float:
    """2 / λmax for the summed squared loss L(W) = Σ (X ⋆ W − Y)² over kernels of `kernel_shape`:
    the largest learning rate for which plain gradient descent converges. The Hessian of L is
    H = 2 PᵀP, P holding one window of X per row; λmax is its largest eigenvalue.

    >>> X = torch.ones(6, 8); X[:, 2:6] = 0                 # the stripe image of lesson 3
    >>> stability_limit(X, (1, 2))
    0.0333...
    """
    X = _tensor2d(X, "X").double()
    kh, kw = kernel_shape
    if kh > X.shape[0] or kw > X.shape[1]:
        raise ValueError(f"a kernel of shape {tuple(kernel_shape)} does not fit inside X {tuple(X.shape)}")
    P = F.unfold(X[None, None], (kh, kw))[0].T          # (windows, kh * kw)
    lam = float(torch.linalg.eigvalsh(2 * P.T @ P)[-1])
    return math.inf if lam <= 0 else 2.0 / lam


def descend(corr2d_backward: Callable, X: torch.Tensor, Y: torch.Tensor, init: torch.Tensor,
            lr: float, num_epochs: int = 10, zero_grad: bool = True) -> tuple[list[float], list[torch.Tensor]]:
    """Gradient descent on L(W) = Σ (X ⋆ W − Y)² from `init`, the gradient dK taken from *your*
    `corr2d_backward(X, W, dY)` with dY = 2 (X ⋆ W − Y). With `zero_grad=False` the gradients add up
    from step to step, as when `zero_grad()` is forgotten.

    Returns (losses, path): the loss of each epoch (before its step; inf once the run has diverged,
    its kernel beyond 1e12) and the
    kernels visited, init first (num_epochs + 1 of them).

    >>> def corr2d_backward(X, K, dY):   # yours from lesson 3; autograd stands in for it here
    ...     X, K = X.clone().requires_grad_(), K.clone().requires_grad_()
    ...     torch.nn.functional.conv2d(X[None, None], K[None, None])[0, 0].backward(dY)
    ...     return X.grad, K.grad
    >>> X = torch.ones(6, 8); X[:, 2:6] = 0                 # lesson 3's stripes
    >>> Y = torch.nn.functional.conv2d(X[None, None], torch.tensor([[[[1.0, -1.0]]]]))[0, 0]
    >>> losses, path = descend(corr2d_backward, X, Y, torch.zeros(1, 2), lr=0.03)
    >>> len(losses), len(path), losses[-1] < losses[0]
    (10, 11, True)
    """
    X, Y, W = _tensor2d(X, "X"), _tensor2d(Y, "Y"), _tensor2d(init, "init").clone()
    want = (X.shape[0] - W.shape[0] + 1, X.shape[1] - W.shape[1] + 1)
    if tuple(Y.shape) != want:
        raise ValueError(f"Y has shape {tuple(Y.shape)}, but X {tuple(X.shape)} and a kernel {tuple(W.shape)} give {want}")
    losses, path, grad = [], [W.clone()], torch.zeros_like(W)
    for _ in range(num_epochs):
        R = F.conv2d(X[None, None], W[None, None])[0, 0] - Y
        loss = float((R ** 2).sum())
        if not math.isfinite(loss) or W.abs().max() > 1e12:
            losses.append(math.inf)               # diverged: stop moving, keep one point per epoch
            path.append(W.clone())
            continue
        losses.append(loss)
        result = corr2d_backward(X, W.clone(), 2 * R)
        if not (isinstance(result, (tuple, list)) and len(result) == 2 and torch.is_tensor(result[1])
                and tuple(result[1].shape) == tuple(W.shape)):
            raise ValueError("corr2d_backward should return (dX, dK) with dK of the kernel's shape: "
                             "fix it first (its tests say how)")
        g = result[1].detach().float()
        grad = grad + g if not zero_grad else g
        W = W - lr * grad
        path.append(W.clone())
    return losses, path


def show_descent(corr2d_backward: Callable, X: torch.Tensor, Y: torch.Tensor, init: torch.Tensor,
                 lr: float, num_epochs: int = 10, zero_grad: bool = True, target: torch.Tensor | None = None):
    """One figure of `descend`: the loss per epoch (log scale), the kernel's path in the plane of
    its two weights (1×2 or 2×1 kernels), and the learning rate against the limit 2/λmax.

    >>> def corr2d_backward(X, K, dY):   # yours from lesson 3; autograd stands in for it here
    ...     X, K = X.clone().requires_grad_(), K.clone().requires_grad_()
    ...     torch.nn.functional.conv2d(X[None, None], K[None, None])[0, 0].backward(dY)
    ...     return X.grad, K.grad
    >>> X = torch.ones(6, 8); X[:, 2:6] = 0                 # lesson 3's stripes
    >>> Y = torch.nn.functional.conv2d(X[None, None], torch.tensor([[[[1.0, -1.0]]]]))[0, 0]
    >>> fig = show_descent(corr2d_backward, X, Y, torch.zeros(1, 2), lr=0.04)   # above 2/60: diverges
    """
    losses, path = descend(corr2d_backward, X, Y, init, lr, num_epochs, zero_grad)
    limit = stability_limit(X, tuple(init.shape))
    two = init.numel() == 2
    fig, axes = plt.subplots(1, 3 if two else 2, figsize=(12 if two else 8, 3.6),
                             gridspec_kw={"width_ratios": [3, 3, 1.4] if two else [3, 1.4]})
    ax_loss, ax_lr = axes[0], axes[-1]
    finite = [(n, v) for n, v in enumerate(losses, start=1) if math.isfinite(v) and v > 0]
    ax_loss.plot([n for n, _ in finite], [v for _, v in finite], "-o", markersize=3)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss (log scale)")
    ax_loss.grid(True, which="both", alpha=0.3)
    last = "diverged (overflow)" if not math.isfinite(losses[-1]) else f"{losses[-1]:.3g}" if losses else "—"
    ax_loss.set_title(f"loss, lr = {lr:.4g}{'' if zero_grad else ', no zero_grad'}: last {last}", fontsize=10)
    if two:
        ax = axes[1]
        pts = torch.stack([p.reshape(2) for p in path])
        pts = pts[torch.isfinite(pts).all(1) & (pts.abs().max(1).values < 1e6)]
        ax.plot(pts[:, 0], pts[:, 1], "-o", markersize=3, color="#1f77b4")
        ax.plot(pts[0, 0], pts[0, 1], "o", color="#2ca02c", markersize=9, label="start")
        ax.plot(pts[-1, 0], pts[-1, 1], "s", color="#d62728", markersize=8, label="end")
        if target is not None:
            t = _tensor2d(target.reshape(1, -1), "target").reshape(-1)
            ax.plot(t[0], t[1], "*", color="black", markersize=14, label="target")
        ax.set_xlabel("W[0]")
        ax.set_ylabel("W[1]")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("the kernel's path", fontsize=10)
    top = max(2 * limit, 1.2 * lr) if math.isfinite(limit) else 1.2 * lr
    ax_lr.axhspan(0, limit, color="#d5efd5")
    ax_lr.axhspan(limit, top, color="#f8d0d0")
    ax_lr.axhline(limit, color="black", linestyle="--")
    ax_lr.text(0.5, limit, f"2/λmax = {limit:.4f}", ha="center", va="bottom", fontsize=8)
    ax_lr.plot([0.5], [lr], "D", color="#d62728", markersize=8)
    ax_lr.set_xlim(0, 1)
    ax_lr.set_ylim(0, top)
    ax_lr.set_xticks([])
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_title("stable" if lr < limit else "unstable", fontsize=10)
    fig.tight_layout()
    return _show(fig)


def explore_learning_rate(corr2d_backward: Callable, X: torch.Tensor, Y: torch.Tensor, init: torch.Tensor,
                          lr: float = 3e-2, num_epochs: int = 10, zero_grad: bool = True,
                          target: torch.Tensor | None = None):
    """A learning-rate slider and a zero_grad box redrawing `show_descent`. Without a live kernel:
    prints a note and returns the static figure for the values given.

    >>> def corr2d_backward(X, K, dY):   # yours from lesson 3; autograd stands in for it here
    ...     X, K = X.clone().requires_grad_(), K.clone().requires_grad_()
    ...     torch.nn.functional.conv2d(X[None, None], K[None, None])[0, 0].backward(dY)
    ...     return X.grad, K.grad
    >>> X = torch.ones(6, 8); X[:, 2:6] = 0                 # lesson 3's stripes
    >>> Y = torch.nn.functional.conv2d(X[None, None], torch.tensor([[[[1.0, -1.0]]]]))[0, 0]
    >>> fig = explore_learning_rate(corr2d_backward, X, Y, torch.zeros(1, 2))
    (no live Jupyter kernel with ipywidgets: showing a static figure for the values given; open the notebook in JupyterLab to get the controls)
    """
    if not _live():
        print(_FALLBACK)
        return show_descent(corr2d_backward, X, Y, init, lr, num_epochs, zero_grad, target)
    import ipywidgets as widgets
    from IPython.display import display

    def draw(lr, zero_grad, num_epochs):
        display(show_descent(corr2d_backward, X, Y, init, lr, num_epochs, zero_grad, target))

    return widgets.interactive(
        draw,
        lr=widgets.FloatSlider(value=lr, min=0.0, max=0.06, step=0.001, readout_format=".3f",
                               description="lr", continuous_update=False),
        zero_grad=widgets.Checkbox(value=zero_grad, description="zero_grad() every epoch"),
        num_epochs=widgets.IntSlider(value=num_epochs, min=1, max=40, description="epochs",
                                     continuous_update=False))


# --- lesson 5: what a shift does after pooling ---------------------------------------------------

def shift_pooling(pool2d: Callable, X: torch.Tensor, shift: int, pool_size: int = 2) -> dict:
    """Shift X left by `shift` pixels and compare, pixel for pixel, before and after *your*
    `pool2d(·, pool_size)` (max pooling): which outputs stay exactly the same?

    The shifted image is X[:, shift:], compared with X[:, :w - shift] (same size).
    Returns a dict: "pooled" and "pooled_shifted" (the two outputs), "same" (a bool mask of the
    outputs that are equal), "fraction" (the share of equal outputs) and "fraction_no_pooling"
    (the same share for the images themselves).

    >>> def pool2d(X, pool_size):   # yours from lesson 5; PyTorch's own stands in for it here
    ...     return torch.nn.functional.max_pool2d(X[None, None], pool_size)[0, 0]
    >>> X = torch.rand(24, 24, generator=torch.Generator().manual_seed(0))
    >>> r = shift_pooling(pool2d, X, 1)
    >>> r["fraction"] > r["fraction_no_pooling"]             # pooling keeps more outputs unchanged
    True
    """
    X = _tensor2d(X, "X")
    if not isinstance(shift, int) or not 0 <= shift < X.shape[1] - pool_size:
        raise ValueError(f"shift must be an int from 0 to {X.shape[1] - pool_size - 1} for an image of width "
                         f"{X.shape[1]} and {pool_size}×{pool_size} windows, got {shift!r}")
    w = X.shape[1] - shift
    original, shifted = X[:, :w], X[:, shift:]
    pooled, pooled_shifted = pool2d(original, pool_size), pool2d(shifted, pool_size)
    for name, P in (("pool2d(original)", pooled), ("pool2d(shifted)", pooled_shifted)):
        if not torch.is_tensor(P) or P.dim() != 2:
            raise ValueError(f"{name} should be a 2-D tensor, got "
                             f"{tuple(P.shape) if torch.is_tensor(P) else type(P).__name__}: fix pool2d first")
    same = pooled.detach() == pooled_shifted.detach()
    return {"pooled": pooled.detach(), "pooled_shifted": pooled_shifted.detach(), "same": same,
            "fraction": float(same.float().mean()),
            "fraction_no_pooling": float((original == shifted).float().mean())}


def show_shift_pooling(pool2d: Callable, X: torch.Tensor, shift: int, pool_size: int = 2):
    """One figure of `shift_pooling`: the pooled image, the pooled shifted image, and where they
    agree (white: equal, red: changed). Returns the matplotlib Figure.

    >>> def pool2d(X, pool_size):   # yours from lesson 5; PyTorch's own stands in for it here
    ...     return torch.nn.functional.max_pool2d(X[None, None], pool_size)[0, 0]
    >>> X = torch.rand(24, 24, generator=torch.Generator().manual_seed(0))
    >>> fig = show_shift_pooling(pool2d, X, 1)
    """
    r = shift_pooling(pool2d, X, shift, pool_size)
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
    vmin, vmax = float(X.min()), float(X.max())
    axes[0].imshow(r["pooled"].numpy(), cmap="gray", vmin=vmin, vmax=vmax)
    axes[0].set_title(f"max pool {pool_size}×{pool_size}", fontsize=10)
    axes[1].imshow(r["pooled_shifted"].numpy(), cmap="gray", vmin=vmin, vmax=vmax)
    axes[1].set_title(f"after a shift of {shift} px", fontsize=10)
    axes[2].imshow((~r["same"]).float().numpy(), cmap="Reds", vmin=0, vmax=1)
    axes[2].set_title(f"unchanged: {r['fraction']:.0%} (no pooling: {r['fraction_no_pooling']:.0%})", fontsize=10)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return _show(fig)


def explore_shift_pooling(pool2d: Callable, X: torch.Tensor, shift: int = 1, pool_size: int = 2):
    """A shift slider and a window-size slider redrawing `show_shift_pooling`. Without a live
    kernel: prints a note and returns the static figure for the values given.

    >>> def pool2d(X, pool_size):   # yours from lesson 5; PyTorch's own stands in for it here
    ...     return torch.nn.functional.max_pool2d(X[None, None], pool_size)[0, 0]
    >>> X = torch.rand(24, 24, generator=torch.Generator().manual_seed(0))
    >>> fig = explore_shift_pooling(pool2d, X)
    (no live Jupyter kernel with ipywidgets: showing a static figure for the values given; open the notebook in JupyterLab to get the controls)
    """
    if not _live():
        print(_FALLBACK)
        return show_shift_pooling(pool2d, X, shift, pool_size)
    import ipywidgets as widgets
    from IPython.display import display

    def draw(shift, pool_size):
        display(show_shift_pooling(pool2d, X, shift, pool_size))

    return widgets.interactive(
        draw, shift=widgets.IntSlider(value=shift, min=0, max=6, description="shift (px)", continuous_update=False),
        pool_size=widgets.IntSlider(value=pool_size, min=2, max=5, description="window", continuous_update=False))
