import math

import matplotlib
import pytest
import torch
from torch.nn import functional as F

from convlab.explorers import (
    descend,
    explore_kernel,
    explore_learning_rate,
    explore_shift_pooling,
    kernel_presets,
    shift_pooling,
    show_descent,
    show_kernel_response,
    stability_limit,
)

matplotlib.use("Agg")


def corr2d(X, K):
    return F.conv2d(X[None, None].float(), K[None, None].float())[0, 0]


def corr2d_backward(X, K, dY):
    """The autograd reference (the notebooks' exercise does this by hand)."""
    Xg, Kg = X.clone().requires_grad_(), K.clone().requires_grad_()
    corr2d(Xg, Kg).backward(dY)
    return Xg.grad, Kg.grad


def pool2d(X, k):
    return F.max_pool2d(X[None, None], k)[0, 0]


def stripes():
    X = torch.ones(6, 8)
    X[:, 2:6] = 0
    return X, corr2d(X, torch.tensor([[1.0, -1.0]]))


SOBEL = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])


# --- lesson 2 --------------------------------------------------------------------------------------

def test_presets_use_the_kernels_given_and_flip_their_signs():
    Gx, Gy = SOBEL * 2, SOBEL.T * 3          # whatever the student returned, not a stored answer
    presets = kernel_presets(Gx, Gy)
    assert torch.equal(presets["Sobel Gx (yours)"], Gx) and torch.equal(presets["−Gx (sign flipped)"], -Gx)
    assert torch.equal(presets["Sobel Gy (yours)"], Gy) and torch.equal(presets["−Gy (sign flipped)"], -Gy)
    assert presets["Laplacian"].sum() == 0 and presets["Laplacian"][1, 1] == -4
    assert torch.equal(presets["Prewitt y"], presets["Prewitt x"].T)
    with pytest.raises(ValueError, match=r"Gx must be 3×3, got shape \(2, 2\): fix sobel_kernels"):
        kernel_presets(torch.ones(2, 2), Gy)


def test_kernel_response_is_drawn_from_the_students_corr2d():
    ramp = torch.arange(6.0).repeat(5, 1)
    fig = show_kernel_response(corr2d, ramp, SOBEL)
    response = fig.axes[1].images[0].get_array()
    assert response.shape == (3, 4) and (response == 8).all()
    assert "range [8.00, 8.00]" in fig.axes[1].get_title()
    assert [t.get_text() for t in fig.axes[0].texts] == ["-1", "0", "1", "-2", "0", "2", "-1", "0", "1"]
    with pytest.raises(ValueError, match=r"corr2d returned \(1, 1\) .* valid cross-correlation gives \(3, 4\)"):
        show_kernel_response(lambda X, K: torch.zeros(1, 1), ramp, SOBEL)


def test_kernel_explorer_falls_back_to_the_start_preset(capsys):
    presets = kernel_presets(SOBEL, SOBEL.T)
    fig = explore_kernel(corr2d, torch.rand(10, 12), presets, start="Laplacian")
    assert "no live Jupyter kernel" in capsys.readouterr().out
    assert fig.axes[0].get_title() == "Laplacian"
    with pytest.raises(ValueError, match="'Kirsch' is not one of the presets"):
        explore_kernel(corr2d, torch.rand(10, 12), presets, start="Kirsch")


# --- lesson 3 --------------------------------------------------------------------------------------

def test_stability_limit_of_the_stripe_image_is_2_over_60():
    X, _ = stripes()
    assert stability_limit(X, (1, 2)) == pytest.approx(2 / 60)
    P = F.unfold(X[None, None], (2, 2))[0].T.double()
    assert stability_limit(X, (2, 2)) == pytest.approx(2 / float(torch.linalg.eigvalsh(2 * P.T @ P)[-1]))
    with pytest.raises(ValueError, match="does not fit inside X"):
        stability_limit(X, (7, 1))


def test_descent_matches_autograd_training_and_the_limit_separates_stable_from_unstable():
    X, Y = stripes()
    init = torch.tensor([[0.3, 0.5]])
    losses, path = descend(corr2d_backward, X, Y, init, lr=0.03)
    W, ref = init.clone().requires_grad_(), []
    for _ in range(10):                                 # nn.Conv2d's loop, as in lesson 3
        loss = ((corr2d(X, W) - Y) ** 2).sum()
        ref.append(loss.item())
        g, = torch.autograd.grad(loss, W)
        W = (W - 0.03 * g).detach().requires_grad_()
    assert losses == pytest.approx(ref, rel=1e-5)
    assert len(path) == 11 and torch.allclose(path[-1], W.detach())
    limit = stability_limit(X, (1, 2))
    assert descend(corr2d_backward, X, Y, init, lr=0.97 * limit, num_epochs=200)[0][-1] < 1e-3
    assert descend(corr2d_backward, X, Y, init, lr=1.03 * limit, num_epochs=200)[0][-1] > 1e3


def test_without_zero_grad_the_gradients_add_up():
    X, Y = stripes()
    init = torch.tensor([[0.3, 0.5]])
    losses, path = descend(corr2d_backward, X, Y, init, lr=0.01, num_epochs=3, zero_grad=False)
    g = [corr2d_backward(X, p, 2 * (corr2d(X, p) - Y))[1] for p in path[:3]]
    assert torch.allclose(path[1], init - 0.01 * g[0])
    assert torch.allclose(path[3], path[2] - 0.01 * (g[0] + g[1] + g[2]), atol=1e-6)


def test_a_diverging_run_is_shown_without_crashing():
    X, Y = stripes()
    losses, path = descend(corr2d_backward, X, Y, torch.tensor([[0.3, 0.5]]), lr=0.5, num_epochs=60)
    assert len(losses) == 60 and len(path) == 61 and math.isinf(losses[-1])
    fig = show_descent(corr2d_backward, X, Y, torch.tensor([[0.3, 0.5]]), lr=0.5, num_epochs=60)
    assert "diverged" in fig.axes[0].get_title() and fig.axes[2].get_title() == "unstable"


def test_descent_figure_marks_the_limit_and_explorer_falls_back(capsys):
    X, Y = stripes()
    fig = explore_learning_rate(corr2d_backward, X, Y, torch.tensor([[0.3, 0.5]]), lr=0.02,
                                target=torch.tensor([[1.0, -1.0]]))
    assert "no live Jupyter kernel" in capsys.readouterr().out
    assert [ax.get_title() for ax in fig.axes][1:] == ["the kernel's path", "stable"]
    assert any("2/λmax = 0.0333" in t.get_text() for t in fig.axes[2].texts)
    assert fig.axes[2].lines[-1].get_ydata()[0] == pytest.approx(0.02)
    with pytest.raises(ValueError, match=r"dK of the kernel's shape"):
        descend(lambda X, K, dY: (X, torch.zeros(3)), X, Y, torch.zeros(1, 2), lr=0.01)


# --- lesson 5 --------------------------------------------------------------------------------------

def test_shift_pooling_counts_equal_outputs():
    X = torch.zeros(4, 8)
    X[:, 3] = 1.0                                       # one bright column, inside the window of columns 2-3
    r = shift_pooling(pool2d, X, 1)
    assert r["fraction"] == 1.0 and r["fraction_no_pooling"] < 1.0    # shifted to column 2: same window
    r = shift_pooling(pool2d, X, 2)                     # now it moves to the window of columns 0-1
    assert r["same"].tolist() == [[False, False, True], [False, False, True]]
    assert r["fraction"] == pytest.approx(2 / 6)
    noise = torch.rand(1, 64, 64, generator=torch.Generator().manual_seed(0))[0]
    assert 0.2 < shift_pooling(pool2d, noise, 1)["fraction"] < 0.5     # about 2/6, as lesson 5 argues
    assert shift_pooling(pool2d, noise, 0)["fraction"] == 1.0
    with pytest.raises(ValueError, match="shift must be an int from 0 to 5"):
        shift_pooling(pool2d, X, 6)


def test_shift_explorer_falls_back_to_a_static_figure(capsys):
    fig = explore_shift_pooling(pool2d, torch.rand(12, 12), shift=0)
    assert "no live Jupyter kernel" in capsys.readouterr().out
    assert fig.axes[2].get_title().startswith("unchanged: 100%")
    with pytest.raises(ValueError, match="fix pool2d first"):
        shift_pooling(lambda X, k: None, torch.rand(6, 6), 1)
