import itertools
import re

import matplotlib
import pytest
import torch

from convlab.plotting import (
    _outputs_by_pytorch,
    animate_corr2d,
    explore_conv_windows,
    show_conv_windows,
    show_corr2d,
    show_heatmaps,
    show_image_grids,
    show_kernel_path,
    show_kernels,
    show_losses,
)

matplotlib.use("Agg")


def reference_corr2d(X, K):
    return torch.nn.functional.conv2d(X[None, None].float(), K[None, None].float())[0, 0]


X = torch.arange(9.0).reshape(3, 3)
K = torch.arange(4.0).reshape(2, 2)


def test_static_step_shows_the_arithmetic_of_that_entry():
    fig = show_corr2d(reference_corr2d, X, K, step=(0, 1))
    assert fig._suptitle.get_text() == "Y[0, 1] = 1×0 + 2×1 + 4×2 + 5×3 = 25"
    assert [ax.get_title() for ax in fig.axes] == ["input X", "kernel K", "output Y"]
    texts = [t.get_text() for t in fig.axes[2].texts if t.get_visible()]
    assert texts == ["19", "25"], "only the entries computed so far are shown"


def test_animation_has_one_frame_per_output_entry():
    def frames(html):
        return len(re.findall(r"frames\[\d+\] = ", html))
    assert frames(animate_corr2d(reference_corr2d, X, K).data) == 4
    assert frames(animate_corr2d(reference_corr2d, X, torch.ones(1, 1)).data) == 9
    assert frames(animate_corr2d(reference_corr2d, X, K, steps=[(1, 1)]).data) == 1


def test_step_outside_output_is_a_clear_error():
    with pytest.raises(ValueError, match=r"step \(2, 0\) is outside the output of shape \(2, 2\)"):
        show_corr2d(reference_corr2d, X, K, step=(2, 0))


def test_wrong_output_shape_of_students_function_is_explained():
    def off_by_one(X, K):
        return torch.zeros(X.shape[0] - K.shape[0], X.shape[1] - K.shape[1])
    with pytest.raises(ValueError, match=r"corr2d returned \(1, 1\) for X \(3, 3\) and K \(2, 2\).*shape \(2, 2\)"):
        show_corr2d(off_by_one, X, K)


def test_students_not_implemented_error_passes_through():
    def stub(X, K):
        raise NotImplementedError()
    with pytest.raises(NotImplementedError):
        animate_corr2d(stub, X, K)


@pytest.mark.parametrize("bad, message", [
    (torch.ones(2, 3, 3), r"X must be 2-D \(height, width\), got shape \(2, 3, 3\)"),
    ([[1, 2], [3, 4]], "X must be a torch.Tensor, got list"),
])
def test_bad_inputs_are_explained(bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        show_corr2d(reference_corr2d, bad, K)


def test_kernel_larger_than_input_is_explained():
    with pytest.raises(ValueError, match=r"kernel K \(4, 1\) must fit inside X \(3, 3\)"):
        show_corr2d(reference_corr2d, X, torch.ones(4, 1))


def test_heatmaps_are_centred_on_zero():
    fig = show_heatmaps([torch.tensor([[-1.0, 3.0]]), torch.ones(2, 2)], ["a", "b"])
    norm = fig.axes[0].images[0].norm
    assert (norm.vmin, norm.vcenter, norm.vmax) == (-3.0, 0.0, 3.0)
    assert [ax.get_title() for ax in fig.axes[:2]] == ["a", "b"]


def test_heatmaps_titles_must_match():
    with pytest.raises(ValueError, match="got 2 matrices but 1 titles"):
        show_heatmaps([torch.ones(2, 2), torch.ones(2, 2)], ["only one"])


# --- show_conv_windows / explore_conv_windows / show_image_grids ---------------------------------



def test_window_count_agrees_with_pytorch_conv_and_pooling():
    """The explorer's count of windows is PyTorch's, over a sweep: nn.Conv1d's without ceil_mode,
    nn.MaxPool1d's with it, also where the window is longer than the padded input (n=1, k=2 with
    ceil_mode gives one output; the formula it replaced said none)."""
    checked = 0
    for n, k, p, s, d in itertools.product(range(1, 12), range(1, 6), range(0, 3), range(1, 4), range(1, 3)):
        x = torch.zeros(1, 1, n)
        try:
            conv = torch.nn.functional.conv1d(x, torch.zeros(1, 1, k), padding=p, stride=s, dilation=d).shape[-1]
        except RuntimeError:
            conv = 0
        assert _outputs_by_pytorch(n, k, p, s, d, False) == conv, (n, k, p, s, d)
        if p <= k // 2:
            try:
                pool = torch.nn.functional.max_pool1d(x, k, s, p, d, ceil_mode=True).shape[-1]
            except RuntimeError:
                pool = 0
            assert _outputs_by_pytorch(n, k, p, s, d, True) == pool, (n, k, p, s, d, True)
            checked += 1
        else:
            assert _outputs_by_pytorch(n, k, p, s, d, True) is None
    assert checked > 500
    assert _outputs_by_pytorch(1, 2, 0, 2, 1, True) == 1 == torch.nn.MaxPool1d(2, ceil_mode=True)(torch.zeros(1, 1, 1)).shape[-1]
    assert _outputs_by_pytorch(2, 3, 0, 1, 1, False) == 0


def test_window_count_is_no_answer_to_the_size_exercises():
    """It asks PyTorch's convolution and pooling, so a size exercise that calls it fails its by-hand check."""
    from convlab.checks import LAYERS, forbid_torch_functions
    for ceil in (False, True):
        with pytest.raises(AssertionError, match="by hand"), forbid_torch_functions(LAYERS, "by hand"):
            _outputs_by_pytorch(7, 3, 1, 2, 1, ceil)


def test_conv_windows_title_gives_the_output_count():
    fig = show_conv_windows(7, 3, padding=1, stride=2)
    assert "→  4 outputs" in fig.axes[0].get_title()
    assert "→  2 outputs" in show_conv_windows(5, 3, stride=3, ceil_mode=True).axes[0].get_title()
    with pytest.raises(ValueError, match="stride must be an int >= 1"):
        show_conv_windows(5, 3, stride=0)


def test_explorer_outside_a_kernel_prints_and_returns_the_static_figure(capsys):
    fig = explore_conv_windows(6, 3, padding=1)
    assert "no live Jupyter kernel" in capsys.readouterr().out
    assert "→  6 outputs" in fig.axes[0].get_title()


def test_image_grids_check_shapes_and_caption_tiles():
    X = torch.rand(6, 3, 8, 8)
    fig = show_image_grids([X, X[:, :, ::2, ::2]], ["in", "out"], labels=[0, 1, 2, 3, 4, 5],
                           classes=list("abcdef"), nrow=3)
    assert [t.get_text() for t in fig.axes[0].texts] == list("abcdef")
    assert "6×3×4×4" in fig.axes[1].get_title()
    with pytest.raises(ValueError, match=r"shape \(B, 3, H, W\)"):
        show_image_grids([torch.rand(3, 8, 8)])
    with pytest.raises(ValueError, match="has 2 images but batches\\[0\\] has 6"):
        show_image_grids([X, X[:2]])
def test_heatmaps_can_annotate_every_entry():
    fig = show_heatmaps([torch.tensor([[1.0, -1.0]]), torch.tensor([[0.5], [2.0]])], diverging=False, annotate=True)
    assert [t.get_text() for t in fig.axes[0].texts] == ["1", "-1"]
    assert [t.get_text() for t in fig.axes[1].texts] == ["0.50", "2"]


def test_annotating_a_large_matrix_is_refused():
    with pytest.raises(ValueError, match="a 30×30 matrix has too many"):
        show_heatmaps([torch.ones(30, 30)], annotate=True)


def test_losses_are_plotted_per_epoch_on_a_log_scale():
    fig = show_losses([4.0, 2.0, 1.0])
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    x, y = ax.lines[0].get_data()
    assert list(x) == [1, 2, 3] and list(y) == [4.0, 2.0, 1.0]


def test_several_runs_get_a_legend_and_diverged_values_are_left_out():
    fig = show_losses({"good": torch.tensor([3.0, 1.0]), "bad": [1.0, float("inf"), float("nan")]}, log=False)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["good", "bad"]
    assert list(ax.lines[1].get_data()[1]) == [1.0]
    assert "bad: some values not finite" in ax.get_title()


def test_losses_per_step_get_that_label_and_plain_lines():
    fig = show_losses(list(range(1, 301)), xlabel="step", markers=False)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "step"
    assert ax.lines[0].get_marker() in (None, "None", "")
    assert show_losses([2.0, 1.0]).axes[0].lines[0].get_marker() == "o"


@pytest.mark.parametrize("bad, error, message", [
    ([], ValueError, "losses is empty"),
    ({}, ValueError, "at least one run"),
    ("abc", TypeError, "must be a sequence of numbers"),
])
def test_bad_losses_are_explained(bad, error, message):
    with pytest.raises(error, match=message):
        show_losses(bad)


def test_kernel_path_runs_from_start_to_end_with_the_target():
    path = [torch.tensor([[0.0, 0.5]]), torch.tensor([[0.5, -0.5]]), torch.tensor([[0.9, -0.9]])]
    fig = show_kernel_path(path, target=torch.tensor([[1.0, -1.0]]))
    ax = fig.axes[0]
    x, y = ax.lines[0].get_data()
    assert list(x) == pytest.approx([0.0, 0.5, 0.9]) and list(y) == pytest.approx([0.5, -0.5, -0.9])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["kernel per epoch", "start", "end", "target"]
    assert show_kernel_path(torch.stack([p.reshape(2) for p in path])).axes[0].lines[0].get_data()[0].tolist() == pytest.approx([0.0, 0.5, 0.9])


@pytest.mark.parametrize("path, target, message", [
    ([torch.ones(3, 3)], None, "exactly 2 entries .* got kernels with 9 entries"),
    ([], None, "got an empty path"),
    ([torch.ones(1, 2)], [1.0, 2.0, 3.0], "target must have 2 entries"),
])
def test_bad_kernel_paths_are_explained(path, target, message):
    with pytest.raises(ValueError, match=message):
        show_kernel_path(path, target=target)


@pytest.mark.slow
def test_helpers_show_their_picture_where_they_are_called_in_a_kernel():
    """In Jupyter, a show_* call in the middle of a cell or in a loop shows its figure there (in
    order with the printed text), and a cell ending with the call shows it once, not twice."""
    import nbformat
    from nbclient import NotebookClient

    loop = ("import torch, convlab\n"
            "for lr in (0.1, 0.2):\n"
            "    print('lr', lr)\n"
            "    convlab.show_losses([1.0, lr])\n"
            "convlab.show_heatmaps([torch.eye(2)])\n"
            "print('end')")
    last = "convlab.show_conv_windows(5, 3)"
    kept = "fig = convlab.show_kernel_path([[0.0, 0.0], [1.0, -1.0]])\nfig.axes[0].get_title()"
    anim = "html = convlab.animate_corr2d(lambda X, K: torch.zeros(1, 1), torch.ones(2, 2), torch.ones(2, 2))"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in (loop, last, kept, anim)])
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()

    def kinds(cell):
        out = []
        for o in cell.outputs:
            if o.output_type == "stream":
                out += [line for line in o.text.splitlines()]
            else:
                out.append((o.output_type, "image/png" in o.get("data", {}), "text/html" in o.get("data", {})))
        return out

    figure = ("display_data", True, False)
    assert kinds(nb.cells[0]) == ["lr 0.1", figure, "lr 0.2", figure, figure, "end"]
    assert kinds(nb.cells[1]) == [figure]
    assert kinds(nb.cells[2]) == [figure, ("execute_result", False, False)]
    assert nb.cells[2].outputs[1].data["text/plain"] == "'the kernel during training'"
    assert kinds(nb.cells[3]) == [("display_data", False, True)]


def test_colour_kernels_are_drawn_with_zero_as_mid_grey():
    K = torch.zeros(5, 3, 2, 2)
    K[0, 0, 0, 0] = 2.0          # kernel 0: one strongly positive red weight
    K[0, 2, 1, 1] = -1.0         # and a negative blue one
    fig = show_kernels(K, [f"k{i}" for i in range(5)], ncols=3)
    visible = [ax for ax in fig.axes if ax.axison]
    assert len(visible) == 5 and len(fig.axes) == 6           # 2 rows of 3, the last cell empty
    assert [ax.get_title() for ax in visible] == ["k0", "k1", "k2", "k3", "k4"]
    img = visible[0].images[0].get_array()
    assert img.shape == (2, 2, 3)
    assert img[0, 0, 0] == pytest.approx(1.0) and img[1, 1, 2] == pytest.approx(0.25)
    assert img[0, 1].tolist() == pytest.approx([0.5, 0.5, 0.5])
    assert (visible[1].images[0].get_array() == 0.5).all()          # an all-zero kernel is plain grey


def test_2d_kernels_of_different_sizes_are_heatmaps_centred_on_zero():
    fig = show_kernels([torch.tensor([[1.0, -3.0], [0.0, 2.0]]), torch.ones(3, 3)], ncols=8)
    assert len(fig.axes) == 2
    norm = fig.axes[0].images[0].norm
    assert (norm.vmin, norm.vcenter, norm.vmax) == (-3.0, 0.0, 3.0)
    assert fig.axes[1].images[0].get_array().shape == (3, 3)


@pytest.mark.parametrize("bad, kwargs, message", [
    (torch.ones(4, 6, 5, 5), {}, "have 6 input channels; colour pictures need 3"),
    (torch.ones(5, 5), {}, r"must have shape \(N, 3, kh, kw\) or \(N, kh, kw\)"),
    ([torch.ones(2, 2), torch.ones(2)], {}, r"kernels\[1\] must be a 2-D tensor"),
    ([], {}, "at least one kernel"),
    ([torch.ones(2, 2)], {"titles": ["a", "b"]}, "1 kernels but 2 titles"),
    ([torch.ones(2, 2)], {"ncols": 0}, "ncols must be a positive int"),
])
def test_bad_kernels_are_explained(bad, kwargs, message):
    with pytest.raises(ValueError, match=message):
        show_kernels(bad, **kwargs)


def reference_pool2d(X, k, s=None):
    return torch.nn.functional.max_pool2d(X[None, None], k, s)[0, 0]


def test_pool_animation_has_one_frame_per_window_and_shows_the_maximum():
    from convlab.plotting import animate_pool2d
    X4 = torch.tensor([[7.0, 3, 5, 2], [8, 7, 1, 6], [4, 9, 3, 9], [0, 8, 4, 5]])
    html = animate_pool2d(reference_pool2d, X4, 2).data
    assert len(re.findall(r"frames\[\d+\] = ", html)) == 4
    assert len(re.findall(r"frames\[\d+\] = ", animate_pool2d(reference_pool2d, X4, 2, stride=1).data)) == 9
    assert len(re.findall(r"frames\[\d+\] = ", animate_pool2d(reference_pool2d, X4, 2, steps=[(1, 1)]).data)) == 1
    with pytest.raises(ValueError, match=r"pool2d returned \(1, 1\) .* max pooling gives shape \(2, 2\)"):
        animate_pool2d(lambda X, k, s: torch.zeros(1, 1), X4, 2)
    with pytest.raises(ValueError, match="pool_size must be an int from 1 to 4"):
        animate_pool2d(reference_pool2d, X4, 5)


def test_animations_are_not_drawn_in_an_ipython_shell_without_a_kernel():
    """The grader runs notebooks in an IPython shell that is not a Jupyter kernel (nothing there
    can play an animation): the student's function still runs, its errors still show, and a note
    replaces the frames."""
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    try:
        shell.user_ns.update(convlab_plotting=__import__("convlab.plotting").plotting, torch=torch,
                             corr2d=reference_corr2d, pool2d=reference_pool2d, X=X, K=K)
        note = shell.run_cell("convlab_plotting.animate_corr2d(corr2d, X, K)").result
        assert "frames[" not in note.data and "4 frames, not drawn here" in note.data
        # graded notebooks keep text only (grader/shell_client.py): the note is there as text too
        del note._ipython_display_                 # (shown once already; format it again)
        assert "4 frames, not drawn here" in shell.display_formatter.format(note)[0]["text/plain"]
        html = shell.run_cell("convlab_plotting.animate_pool2d(pool2d, torch.ones(4, 4), 2, stride=1)").result.data
        assert "frames[" not in html and "9 frames, not drawn here" in html
        failed = shell.run_cell("convlab_plotting.animate_corr2d(lambda X, K: torch.zeros(1, 1), X, K)")
        assert isinstance(failed.error_in_exec, ValueError)
        assert "corr2d returned (1, 1)" in str(failed.error_in_exec)
    finally:
        InteractiveShell.clear_instance()
