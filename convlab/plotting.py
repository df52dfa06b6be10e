"""Figures and animations: the sliding window of cross-correlation, heatmaps of kernels and responses."""
from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from matplotlib import animation
from matplotlib.colors import TwoSlopeNorm
from matplotlib.patches import Rectangle

__all__ = ["animate_corr2d", "animate_pool2d", "explore_conv_windows", "show_conv_windows", "show_corr2d", "show_heatmaps",
           "show_image_grids", "show_kernel_path", "show_kernels", "show_losses"]

Corr2d = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _show(shown):
    """Show a helper's picture where the helper is called, and return it.

    In IPython or Jupyter the picture is displayed at once, so a call in the middle of a cell or in
    a loop shows it there; the returned object then displays as nothing, so a cell that ends with
    the call shows it once, not twice. Figures are closed first (pyplot would otherwise show them
    again at the end of the cell). Elsewhere (a script, a doctest) nothing is displayed: keep the
    returned Figure and call its `.savefig(path)`.
    """
    if isinstance(shown, plt.Figure):
        plt.close(shown)
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return shown
    if get_ipython() is None:
        return shown
    display(shown)
    shown._ipython_display_ = _already_shown   # IPython's displayhook asks the object first
    return shown


def _already_shown() -> None:
    """Displaying a picture that a helper already showed shows nothing."""


def _ipython():
    """The running IPython shell, or None (a script, a doctest, no IPython installed)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _in_jupyter_kernel() -> bool:
    """True in a Jupyter kernel (JupyterLab, nbclient, nbval), which a frontend can watch."""
    return getattr(_ipython(), "kernel", None) is not None


def _unwatched() -> bool:
    """True in an IPython shell that is not a Jupyter kernel (the grader runs notebooks in one):
    nothing there can play an animation, so its frames are not drawn. A script or a doctest
    still gets the whole HTML."""
    shell = _ipython()
    return shell is not None and getattr(shell, "kernel", None) is None


def _not_drawn(what: str, frames: int):
    from IPython.display import HTML

    class _Note(HTML):
        """The note as HTML and as plain text (graded notebooks keep only the text)."""

        def __repr__(self) -> str:
            return text

    text = (f"{what}: {frames} frames, not drawn here (this is not a Jupyter kernel: the grader runs "
            "notebooks without one). Run the cell in JupyterLab to watch it.")
    return _show(_Note(f"<p><em>{text}</em></p>"))


def show_corr2d(corr2d: Corr2d, X: torch.Tensor, K: torch.Tensor, step: tuple[int, int] = (0, 0)):
    """Draw one step of cross-correlation computed by *your* `corr2d`: the window on X, the
    kernel K, the output filled in up to `step`, and the arithmetic of the current entry.

    In Jupyter the figure is shown where you call this (in a loop too); it is also returned.

    >>> def corr2d(X, K):   # yours from lesson 1; PyTorch's own stands in for it here
    ...     return torch.nn.functional.conv2d(X[None, None], K[None, None])[0, 0]
    >>> fig = show_corr2d(corr2d, torch.arange(9.).reshape(3, 3), torch.arange(4.).reshape(2, 2), step=(0, 1))
    >>> fig.get_suptitle()
    'Y[0, 1] = 1×0 + 2×1 + 4×2 + 5×3 = 25'
    """
    X, K, Y = _run_corr2d(corr2d, X, K)
    i, j = step
    if not (0 <= i < Y.shape[0] and 0 <= j < Y.shape[1]):
        raise ValueError(f"step {step} is outside the output of shape {tuple(Y.shape)}")
    fig, axes = _corr2d_figure(X, K)
    _corr2d_stepper(fig, axes, X, K, Y)(i, j)
    return _show(fig)


def animate_corr2d(
    corr2d: Corr2d,
    X: torch.Tensor,
    K: torch.Tensor,
    interval: int = 900,
    steps: Iterable[tuple[int, int]] | None = None,
):
    r"""Animate cross-correlation step by step with *your* `corr2d`, as HTML for JupyterLab.

    The window slides over X row by row; each frame shows which inputs meet which kernel
    weights and the output entry they produce. `steps` limits the frames to some positions.
    In Jupyter the animation (with play controls) is shown where you call this; the HTML is
    also returned. In an IPython shell that is not a Jupyter kernel (the grader's), your corr2d
    still runs but the frames are not drawn: a note says so.

    >>> def corr2d(X, K):   # yours from lesson 1; PyTorch's own stands in for it here
    ...     return torch.nn.functional.conv2d(X[None, None], K[None, None])[0, 0]
    >>> html = animate_corr2d(corr2d, torch.arange(9.).reshape(3, 3), torch.ones(2, 2))
    >>> import re; len(re.findall(r"frames\[\d+\] = ", html.data))     # a frame per output entry
    4
    """
    from IPython.display import HTML

    X, K, Y = _run_corr2d(corr2d, X, K)
    positions = list(steps) if steps is not None else [
        (i, j) for i in range(Y.shape[0]) for j in range(Y.shape[1])
    ]
    if _unwatched():
        return _not_drawn("The animation of your corr2d", len(positions))
    fig, axes = _corr2d_figure(X, K)
    return _show(HTML(_animate(fig, _corr2d_stepper(fig, axes, X, K, Y), positions, interval)))


def show_heatmaps(
    matrices: Sequence[torch.Tensor],
    titles: Sequence[str] | None = None,
    *,
    diverging: bool = True,
    annotate: bool = False,
    size: float = 3.0,
):
    """Show 2-D tensors side by side. With `diverging`, a red-blue colormap centred on zero, so
    positive and negative responses are told apart at a glance. In Jupyter the figure is shown
    where you call this (in a loop too); it is also returned.

    >>> fig = show_heatmaps([torch.eye(3), torch.tensor([[1.0, -1.0]])], ["image", "kernel"])
    >>> [ax.get_title() for ax in fig.axes[:2]]
    ['image', 'kernel']
    """
    mats = [_as_2d(m, f"matrices[{n}]") for n, m in enumerate(matrices)]
    if titles is not None and len(titles) != len(mats):
        raise ValueError(f"got {len(mats)} matrices but {len(titles)} titles")
    fig, axes = plt.subplots(1, len(mats), figsize=(size * len(mats), size), squeeze=False)
    for n, (ax, m) in enumerate(zip(axes[0], mats)):
        if diverging:
            bound = max(float(m.abs().max()), 1e-12)
            im = ax.imshow(m.numpy(), cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -bound, bound))
        else:
            im = ax.imshow(m.numpy(), cmap="gray")
        if annotate:
            _annotate(ax, m, diverging)
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            ax.set_title(titles[n])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return _show(fig)


def show_losses(
    losses: Sequence[float] | Mapping[str, Sequence[float]],
    *,
    log: bool = True,
    title: str = "training loss",
    size: float = 3.5,
    xlabel: str = "epoch",
    markers: bool = True,
):
    """Plot loss against epoch (1, 2, ...), on a log scale by default. Pass a dict
    {label: losses} to compare several runs in one plot. For a loss per training step, pass
    `xlabel="step"` (and `markers=False` for long runs: a plain line per run).

    Non-finite losses (a run that diverged) are left out of the curve, and the title says so.
    In Jupyter the figure is shown where you call this (in a loop too); it is also returned.

    >>> fig = show_losses([6.4, 2.9, 1.2, 0.6])
    >>> fig.axes[0].get_yscale()
    'log'
    >>> fig = show_losses({"lr = 0.03": [6.4, 2.9, 1.2], "lr = 3": [6.4, 80.0, float("inf")]})
    >>> fig.axes[0].get_title()
    'training loss (lr = 3: some values not finite or ≤ 0, not drawn)'
    """
    runs = dict(losses) if isinstance(losses, Mapping) else {"": losses}
    if not runs:
        raise ValueError("show_losses needs at least one run of losses")
    fig, ax = plt.subplots(figsize=(size * 1.5, size))
    diverged = []
    for label, run in runs.items():
        values = _as_floats(run, f"losses[{label!r}]" if label else "losses")
        finite = [(n, v) for n, v in enumerate(values, start=1) if math.isfinite(v) and (v > 0 or not log)]
        if len(finite) < len(values):
            diverged.append(label or "the run")
        ax.plot([n for n, _ in finite], [v for _, v in finite], marker="o" if markers else None, markersize=3,
                linewidth=1.5 if markers else 1.0, label=label or None)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss" + (" (log scale)" if log else ""))
    ax.set_title(title + (f" ({', '.join(diverged)}: some values not finite{' or ≤ 0' if log else ''}, not drawn)"
                          if diverged else ""), fontsize=10)
    if any(runs):
        ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return _show(fig)


def show_kernel_path(
    path: Sequence[torch.Tensor] | torch.Tensor,
    target: torch.Tensor | Sequence[float] | None = None,
    *,
    labels: tuple[str, str] = ("K[0, 0]", "K[0, 1]"),
    size: float = 3.5,
):
    """Draw how a two-entry kernel moves during training: one point per epoch in the plane of
    its two weights, from the start (circle) to the end (square), with the target as a star.

    `path` is a sequence of kernels with two entries each (e.g. 1×2 kernels), or a tensor of
    shape (steps, 2). In Jupyter the figure is shown where you call this; it is also returned.

    >>> fig = show_kernel_path([torch.tensor([[0.2, 0.4]]), torch.tensor([[0.9, -0.8]])], target=[1.0, -1.0])
    >>> [line.get_label() for line in fig.axes[0].lines]
    ['kernel per epoch', 'start', 'end', 'target']
    """
    if torch.is_tensor(path):
        points = path.detach().float().reshape(len(path), -1) if path.dim() else path.reshape(1, -1)
    else:
        points = torch.stack([torch.as_tensor(k).detach().float().reshape(-1) for k in path]) if len(path) else None
    if points is None or points.shape[-1] != 2:
        got = "an empty path" if points is None else f"kernels with {points.shape[-1]} entries"
        raise ValueError(f"show_kernel_path draws kernels with exactly 2 entries (e.g. 1×2), got {got}")
    fig, ax = plt.subplots(figsize=(size, size))
    ax.plot(points[:, 0], points[:, 1], "-o", color="#1f77b4", markersize=3, label="kernel per epoch")
    ax.plot(points[0, 0], points[0, 1], "o", color="#2ca02c", markersize=9, label="start")
    ax.plot(points[-1, 0], points[-1, 1], "s", color="#d62728", markersize=8, label="end")
    if target is not None:
        t = torch.as_tensor(target, dtype=torch.float32).reshape(-1)
        if t.numel() != 2:
            raise ValueError(f"target must have 2 entries like the kernel, got {t.numel()}")
        ax.plot(t[0], t[1], "*", color="black", markersize=14, label="target")
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("the kernel during training", fontsize=10)
    fig.tight_layout()
    return _show(fig)


def show_kernels(
    kernels: torch.Tensor | Sequence[torch.Tensor],
    titles: Sequence[str] | None = None,
    *,
    ncols: int = 8,
    size: float = 1.5,
):
    """Show convolution kernels as a grid of small pictures, `ncols` per row.

    * A tensor of shape (N, 3, kh, kw), such as the weight of an `nn.Conv2d` on colour images:
      each kernel as a colour picture, its three input channels as red, green and blue, scaled on
      its own so that 0 is mid-grey and its largest |weight| full intensity.
    * A tensor (N, kh, kw), or a sequence of 2-D tensors (their sizes may differ, e.g. learned
      5×5 kernels beside 3×3 Sobel kernels): each as a heatmap, red positive and blue negative,
      centred on zero, on its own scale.

    >>> conv = torch.nn.Conv2d(3, 6, kernel_size=5)
    >>> fig = show_kernels(conv.weight.detach())            # six 5×5 colour kernels, one row
    >>> len([ax for ax in fig.axes if ax.axison])
    6
    >>> Gx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    >>> fig = show_kernels([*conv.weight.detach().sum(1), Gx], ncols=7)   # heatmaps, mixed sizes
    """
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive int, got {ncols!r}")
    if torch.is_tensor(kernels):
        if kernels.dim() == 4 and kernels.shape[1] != 3:
            raise ValueError(
                f"kernels of shape {tuple(kernels.shape)} have {kernels.shape[1]} input channels; colour "
                "pictures need 3. Pass one 2-D kernel per picture instead, e.g. kernels[:, 0] or kernels.sum(1)")
        if kernels.dim() not in (3, 4):
            raise ValueError(f"kernels must have shape (N, 3, kh, kw) or (N, kh, kw), got {tuple(kernels.shape)}")
        kernels = list(kernels)
    kernels = [k.detach().float().cpu() if torch.is_tensor(k) else k for k in kernels]
    for n, k in enumerate(kernels):
        if not torch.is_tensor(k) or not (k.dim() == 2 or (k.dim() == 3 and k.shape[0] == 3)):
            got = tuple(k.shape) if torch.is_tensor(k) else type(k).__name__
            raise ValueError(f"kernels[{n}] must be a 2-D tensor (kh, kw) or a colour kernel (3, kh, kw), got {got}")
    if not kernels:
        raise ValueError("show_kernels needs at least one kernel")
    if titles is not None and len(titles) != len(kernels):
        raise ValueError(f"got {len(kernels)} kernels but {len(titles)} titles")
    rows = math.ceil(len(kernels) / ncols)
    cols = min(ncols, len(kernels))
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows + 0.25 * rows), squeeze=False)
    for n, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if n >= len(kernels):
            ax.axis("off")
            continue
        k = kernels[n]
        bound = max(float(k.abs().max()), 1e-12)
        if k.dim() == 3:
            ax.imshow((0.5 + 0.5 * k / bound).permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
        else:
            ax.imshow(k.numpy(), cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -bound, bound), interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[n], fontsize=8)
    fig.tight_layout()
    return _show(fig)


def _annotate(ax, M: torch.Tensor, diverging: bool = True) -> None:
    """Write each entry's value on its cell (for small matrices such as kernels), in a colour
    that stays readable on the cell's background."""
    h, w = M.shape
    if h * w > 400:
        raise ValueError(f"annotate=True writes every entry; a {h}×{w} matrix has too many (at most 400)")
    bound = max(float(M.abs().max()), 1e-12)
    lo, hi = float(M.min()), float(M.max())
    for r in range(h):
        for c in range(w):
            v = float(M[r, c])
            dark = abs(v) > 0.6 * bound if diverging else v < lo + 0.4 * (hi - lo)
            ax.text(c, r, _fmt(v), ha="center", va="center", fontsize=9,
                    color="white" if dark else "black")


def _as_floats(values: object, name: str) -> list[float]:
    if torch.is_tensor(values):
        values = values.detach().reshape(-1).tolist()
    try:
        out = [float(v) for v in values]  # type: ignore[union-attr]
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a sequence of numbers, got {type(values).__name__}") from err
    if not out:
        raise ValueError(f"{name} is empty: there is nothing to plot")
    return out


def _run_corr2d(corr2d: Corr2d, X: torch.Tensor, K: torch.Tensor):
    """Call the student's function and check its output's shape before anything is drawn."""
    X = _as_2d(X, "X")
    K = _as_2d(K, "K")
    if K.shape[0] > X.shape[0] or K.shape[1] > X.shape[1]:
        raise ValueError(f"the kernel K {tuple(K.shape)} must fit inside X {tuple(X.shape)}")
    Y = corr2d(X, K)
    want = (X.shape[0] - K.shape[0] + 1, X.shape[1] - K.shape[1] + 1)
    if not torch.is_tensor(Y) or tuple(Y.shape) != want:
        got = tuple(Y.shape) if torch.is_tensor(Y) else type(Y).__name__
        raise ValueError(
            f"corr2d returned {got} for X {tuple(X.shape)} and K {tuple(K.shape)}; a valid "
            f"cross-correlation has shape {want}. Fix corr2d first (its tests say how)."
        )
    return X, K, Y.detach().float()


def _as_2d(t: object, name: str) -> torch.Tensor:
    if not torch.is_tensor(t):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D (height, width), got shape {tuple(t.shape)}")
    return t.detach().float().cpu()


def _corr2d_figure(X: torch.Tensor, K: torch.Tensor):
    widths = [X.shape[1], K.shape[1], X.shape[1] - K.shape[1] + 1]
    fig, axes = plt.subplots(
        1, 3, figsize=(1.0 + 0.55 * sum(widths) + 1.5, 0.6 * X.shape[0] + 1.3),
        gridspec_kw={"width_ratios": widths},
    )
    return fig, axes


def _fmt(v: float) -> str:
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.2f}"


def _grid(ax, M: torch.Tensor, title: str, color="#dfe8f5") -> list[tuple[Rectangle, plt.Text]]:
    """Draw M as a grid of numbered cells, once; return its cells (row-major) to update later."""
    h, w = M.shape
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    cells = []
    for r in range(h):
        for c in range(w):
            cell = ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, facecolor=color, edgecolor="#555555",
                                          linewidth=1))
            cells.append((cell, ax.text(c, r, _fmt(float(M[r, c])), ha="center", va="center", fontsize=11)))
    ax.set_title(title, fontsize=11)
    return cells


def _fill_up_to(cells: list, n: int, color: str) -> None:
    """Show the first n cells of a grid (the output computed so far); blank the rest."""
    for k, (cell, label) in enumerate(cells):
        cell.set_facecolor(color if k < n else "white")
        label.set_visible(k < n)


def _marker(ax, xy: tuple[float, float], w: float, h: float) -> Rectangle:
    return ax.add_patch(Rectangle(xy, w, h, fill=False, edgecolor="#d62728", linewidth=3))


def _animate(fig, step: Callable[[int, int], None], positions: list, interval: int) -> str:
    """The HTML (with play controls) of `step(i, j)` at each position: the artists are drawn once
    and only moved or relabelled per frame, and each frame is drawn once, for its PNG (what
    FuncAnimation.to_jshtml writes, without the extra redraw it makes of every frame)."""
    writer = animation.HTMLWriter(fps=1000 / interval, embed_frames=True, default_mode="once")
    dpi = plt.rcParams["savefig.dpi"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "animation.html")
        with writer.saving(fig, str(path), fig.dpi if dpi == "figure" else dpi):
            for i, j in positions:
                step(i, j)
                writer.grab_frame()
        html = path.read_text()
    plt.close(fig)
    return html


def _corr2d_stepper(fig, axes, X, K, Y) -> Callable[[int, int], None]:
    """Draw X, K and Y once; return step(i, j), which shows the window at output (i, j)."""
    kh, kw = K.shape
    _grid(axes[0], X, "input X")
    _grid(axes[1], K, "kernel K", color="#fde2c8")
    out = _grid(axes[2], Y, "output Y", color="#d5efd5")
    window, current = _marker(axes[0], (-0.5, -0.5), kw, kh), _marker(axes[2], (-0.5, -0.5), 1, 1)
    title = fig.suptitle("", fontsize=12)

    def step(i: int, j: int) -> None:
        _fill_up_to(out, i * Y.shape[1] + j + 1, "#d5efd5")
        window.set_xy((j - 0.5, i - 0.5))
        current.set_xy((j - 0.5, i - 0.5))
        terms = [f"{_fmt(float(X[i + a, j + b]))}×{_fmt(float(K[a, b]))}"
                 for a in range(kh) for b in range(kw)]
        if len(terms) > 6:
            terms = terms[:3] + ["…"] + terms[-2:]
        title.set_text(f"Y[{i}, {j}] = " + " + ".join(terms) + f" = {_fmt(float(Y[i, j]))}")
    return step


# --- pooling: the same sliding window, with a maximum instead of weights (lesson 5) -----------------

def animate_pool2d(
    pool2d: Callable,
    X: torch.Tensor,
    pool_size: int = 2,
    stride: int | None = None,
    interval: int = 900,
    steps: Iterable[tuple[int, int]] | None = None,
):
    r"""Animate max pooling step by step with *your* `pool2d(X, pool_size, stride)`, as HTML for
    JupyterLab: the window (stride defaulting to its size) slides over X, the winning entry is
    circled, and the output fills in. `steps` limits the frames to some positions. As with
    `animate_corr2d`, the frames are not drawn outside a Jupyter kernel in IPython (the grader's).

    >>> def pool2d(X, pool_size, stride=None):   # yours from lesson 5; PyTorch's own stands in for it
    ...     return torch.nn.functional.max_pool2d(X[None, None], pool_size, stride)[0, 0]
    >>> html = animate_pool2d(pool2d, torch.arange(16.).reshape(4, 4), 2)   # in a notebook: play controls
    >>> import re; len(re.findall(r"frames\[\d+\] = ", html.data))       # a frame per output entry
    4
    """
    from IPython.display import HTML

    X = _as_2d(X, "X")
    k, s = pool_size, pool_size if stride is None else stride
    if not (isinstance(k, int) and isinstance(s, int) and 1 <= k <= min(X.shape) and s >= 1):
        raise ValueError(f"pool_size must be an int from 1 to {min(X.shape)} and stride an int >= 1, "
                         f"got pool_size={pool_size!r}, stride={stride!r}")
    Y = pool2d(X, k, s)
    want = ((X.shape[0] - k) // s + 1, (X.shape[1] - k) // s + 1)
    if not torch.is_tensor(Y) or tuple(Y.shape) != want:
        got = tuple(Y.shape) if torch.is_tensor(Y) else type(Y).__name__
        raise ValueError(f"pool2d returned {got} for X {tuple(X.shape)}, pool_size={k}, stride={s}; "
                         f"max pooling gives shape {want}. Fix pool2d first (its tests say how).")
    Y = Y.detach().float()
    positions = list(steps) if steps is not None else [(i, j) for i in range(want[0]) for j in range(want[1])]
    if _unwatched():
        return _not_drawn("The animation of your pool2d", len(positions))
    fig, axes = plt.subplots(1, 2, figsize=(1.0 + 0.55 * (X.shape[1] + want[1]) + 1.5, 0.6 * X.shape[0] + 1.3),
                             gridspec_kw={"width_ratios": [X.shape[1], want[1]]})
    return _show(HTML(_animate(fig, _pool2d_stepper(fig, axes, X, Y, k, s), positions, interval)))


def _pool2d_stepper(fig, axes, X, Y, k: int, s: int) -> Callable[[int, int], None]:
    """Draw X and Y once; return step(i, j), which shows window (i, j) and circles its maximum."""
    _grid(axes[0], X, "input X")
    out = _grid(axes[1], Y, "output Y", color="#d5efd5")
    window, current = _marker(axes[0], (-0.5, -0.5), k, k), _marker(axes[1], (-0.5, -0.5), 1, 1)
    winner = axes[0].add_patch(plt.Circle((0, 0), 0.42, fill=False, edgecolor="#d62728", linewidth=2))
    title = fig.suptitle("", fontsize=12)

    def step(i: int, j: int) -> None:
        _fill_up_to(out, i * Y.shape[1] + j + 1, "#d5efd5")
        r0, c0 = i * s, j * s
        values = X[r0:r0 + k, c0:c0 + k]
        a, b = divmod(int(values.argmax()), k)
        window.set_xy((c0 - 0.5, r0 - 0.5))
        winner.set_center((c0 + b, r0 + a))
        current.set_xy((j - 0.5, i - 0.5))
        shown = ", ".join(_fmt(float(v)) for v in values.reshape(-1))
        title.set_text(f"Y[{i}, {j}] = max({shown}) = {_fmt(float(Y[i, j]))}")
    return step


# --- padding, stride, dilation: which input cells each output sees (lessons 4 and 5) ---------------

def _outputs_by_pytorch(n: int, k: int, p: int, s: int, d: int, ceil_mode: bool) -> int | None:
    """How many windows PyTorch itself gives along one axis: it runs F.conv1d (or, with ceil_mode,
    F.max_pool1d) on an empty "meta" tensor, which computes shapes only. 0 when the window does
    not fit; None when PyTorch refuses the setting (pooling padding above half the window).

    Deliberately not a formula: the lessons' size exercises ask for the formula, by hand, and a
    graded call of theirs runs where PyTorch's convolution and pooling are forbidden."""
    x = torch.empty(1, 1, n, device="meta")
    try:
        if ceil_mode:
            if p > k // 2:
                return None
            return int(torch.nn.functional.max_pool1d(x, k, s, p, d, ceil_mode=True).shape[-1])
        return int(torch.nn.functional.conv1d(x, torch.empty(1, 1, k, device="meta"), stride=s, padding=p, dilation=d).shape[-1])
    except RuntimeError:
        return 0


def show_conv_windows(n: int, kernel_size: int, padding: int = 0, stride: int = 1,
                      dilation: int = 1, ceil_mode: bool = False, size: float = 0.42):
    """Draw, along one axis, which input cells each output of a conv or pooling window sees.

    Top row: the input (blue, indexed 0 … n−1) between `padding` cells on each side (grey).
    One row per output: the cells its window covers (orange), `dilation` apart, each window
    `stride` cells after the previous. With `ceil_mode` (pooling), a last window may hang over
    the end (dashed cells, ignored) if it starts inside the input or the left padding.
    In Jupyter the figure is shown where you call this (in a loop too); it is also returned.

    >>> fig = show_conv_windows(7, 3, padding=1, stride=2)
    >>> fig.axes[0].get_title()
    'n=7, kernel=3, padding=1, stride=2, dilation=1  →  4 outputs'
    """
    for name, v, low in [("n", n, 1), ("kernel_size", kernel_size, 1), ("padding", padding, 0),
                         ("stride", stride, 1), ("dilation", dilation, 1)]:
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise ValueError(f"{name} must be an int >= {low}, got {v!r}")
    k, p, s, d = kernel_size, padding, stride, dilation
    counted = _outputs_by_pytorch(n, k, p, s, d, ceil_mode)
    out = counted or 0
    starts = [i * s for i in range(out)]                     # in padded coordinates
    right = max([n + 2 * p] + [st + d * (k - 1) + 1 for st in starts])
    rows = 1 + max(out, 1)
    fig, ax = plt.subplots(figsize=(max(size * right + 1.4, 6.5), size * rows + 0.9))
    ax.set_xlim(-1.6, right)
    ax.set_ylim(rows + 0.1, -0.7)
    ax.set_aspect("equal")
    ax.axis("off")
    for c in range(right):
        inside = c < n + 2 * p
        is_pad = c < p or n + p <= c < n + 2 * p
        color = "#dddddd" if is_pad else ("#cfe0f5" if inside else "white")
        ax.add_patch(Rectangle((c, 0), 1, 0.9, facecolor=color, edgecolor="#555555",
                               linestyle="-" if inside else "--", linewidth=1))
        label = "pad" if is_pad else (str(c - p) if inside else "")
        ax.text(c + 0.5, 0.45, label, ha="center", va="center", fontsize=7 if is_pad else 9)
    ax.text(-0.2, 0.45, "input", ha="right", va="center", fontsize=9)
    for i, st in enumerate(starts):
        y = 1 + i
        ax.add_patch(Rectangle((st, y + 0.05), d * (k - 1) + 1, 0.8, fill=False,
                               edgecolor="#999999", linewidth=0.8))
        for t in range(k):
            c = st + t * d
            off = c >= n + 2 * p
            ax.add_patch(Rectangle((c, y + 0.05), 1, 0.8, facecolor="white" if off else "#f5a04a",
                                   edgecolor="#d62728" if off else "#a0522d",
                                   linestyle="--" if off else "-", linewidth=1))
        ax.text(-0.2, y + 0.45, f"out[{i}]", ha="right", va="center", fontsize=9)
    if counted is None:
        ax.text(0, 1.45, "PyTorch's pooling refuses a padding above half the window", fontsize=10, color="#d62728")
    elif out == 0:
        ax.text(0, 1.45, "the window does not fit: no output", fontsize=10, color="#d62728")
    mode = ", ceil_mode" if ceil_mode else ""
    ax.set_title(f"n={n}, kernel={k}, padding={p}, stride={s}, dilation={d}{mode}  →  {out} outputs",
                 fontsize=11)
    fig.tight_layout()
    return _show(fig)


def explore_conv_windows(n: int = 7, kernel_size: int = 3, padding: int = 0, stride: int = 1,
                         dilation: int = 1, ceil_mode: bool = False):
    """Sliders for n, kernel size, padding, stride and dilation (and a ceil_mode box) redrawing
    `show_conv_windows` as you move them. Needs a live Jupyter kernel with ipywidgets; anywhere
    else (a script, an exported page) it says so and returns the static figure for the values given.

    >>> fig = explore_conv_windows(7, 3, padding=1)   # in JupyterLab: sliders and a figure that follows them
    (no live Jupyter kernel with ipywidgets: showing a static figure; open the notebook in JupyterLab to get the sliders)
    >>> fig.axes[0].get_title()
    'n=7, kernel=3, padding=1, stride=1, dilation=1  →  7 outputs'
    """
    try:
        import ipywidgets as widgets
        from IPython import get_ipython

        live = getattr(get_ipython(), "kernel", None) is not None
    except ImportError:
        live = False
    if not live:
        print("(no live Jupyter kernel with ipywidgets: showing a static figure; open the notebook "
              "in JupyterLab to get the sliders)")
        return show_conv_windows(n, kernel_size, padding, stride, dilation, ceil_mode)
    from IPython.display import display

    def draw(n, kernel_size, padding, stride, dilation, ceil_mode):
        display(show_conv_windows(n, kernel_size, padding, stride, dilation, ceil_mode))

    slider = lambda v, lo, hi, name: widgets.IntSlider(value=v, min=lo, max=hi, description=name,
                                                       continuous_update=False)
    return widgets.interactive(
        draw, n=slider(n, 1, 16, "n"), kernel_size=slider(kernel_size, 1, 7, "kernel"),
        padding=slider(padding, 0, 3, "padding"), stride=slider(stride, 1, 4, "stride"),
        dilation=slider(dilation, 1, 3, "dilation"),
        ceil_mode=widgets.Checkbox(value=ceil_mode, description="ceil_mode (pooling)"))


# --- image batches (lesson 5) ----------------------------------------------------------------------

def show_image_grids(batches: Sequence[torch.Tensor], titles: Sequence[str] | None = None,
                     labels: Sequence[int] | torch.Tensor | None = None,
                     classes: Sequence[str] | None = None, *, nrow: int = 8, size: float = 5.0):
    """Show image batches (each B×3×H×W, values in [0, 1]) side by side as grids made with
    torchvision.utils.make_grid, every grid the same size on screen so tile (r, c) of one is tile
    (r, c) of the others. With `labels` and `classes`, each tile is captioned with its class name.
    In Jupyter the figure is shown where you call this (in a loop too); it is also returned.

    >>> X = torch.rand(4, 3, 32, 32)
    >>> fig = show_image_grids([X, torch.nn.MaxPool2d(2)(X)], ["input", "max-pooled"],
    ...                        labels=[3, 8, 8, 0], classes=["airplane", "", "", "cat", "", "", "", "", "ship"])
    >>> fig.axes[1].get_title(), [t.get_text() for t in fig.axes[1].texts]
    ('max-pooled  (4×3×16×16)', ['cat', 'ship', 'ship', 'airplane'])
    """
    from torchvision.utils import make_grid

    if titles is not None and len(titles) != len(batches):
        raise ValueError(f"got {len(batches)} batches but {len(titles)} titles")
    first = None
    for b, X in enumerate(batches):
        if not torch.is_tensor(X) or X.dim() != 4 or X.shape[1] not in (1, 3):
            got = tuple(X.shape) if torch.is_tensor(X) else type(X).__name__
            raise ValueError(f"batches[{b}] must be a tensor of shape (B, 3, H, W) or (B, 1, H, W), got {got}")
        if first is not None and X.shape[0] != first:
            raise ValueError(f"batches[{b}] has {X.shape[0]} images but batches[0] has {first}")
        first = X.shape[0]
    if labels is not None and len(labels) != first:
        raise ValueError(f"{len(labels)} labels for batches of {first} images")
    fig, axes = plt.subplots(1, len(batches), figsize=(size * len(batches), size + 0.4), squeeze=False)
    for b, (ax, X) in enumerate(zip(axes[0], batches)):
        X = X.detach().float().cpu().clamp(0, 1)
        pad = 1
        grid = make_grid(X, nrow=nrow, padding=pad, pad_value=1.0)
        ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        h, w = X.shape[-2:]
        if titles is not None:
            ax.set_title(f"{titles[b]}  ({X.shape[0]}×{X.shape[1]}×{h}×{w})", fontsize=11)
        if labels is not None and classes is not None:
            for idx, label in enumerate(labels):
                r, c = divmod(idx, nrow)
                ax.text(pad + c * (w + pad), pad + r * (h + pad), classes[int(label)], fontsize=5.5,
                        color="white", va="top", ha="left",
                        bbox={"facecolor": "black", "alpha": 0.55, "pad": 0.6, "linewidth": 0})
    fig.tight_layout()
    return _show(fig)
