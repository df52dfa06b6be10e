"""Hints on demand: `convlab.hint("corr2d")` prints the next of an exercise's hints.

Each graded exercise has two or three hints, from a nudge to the plan of the code; none of them
is the answer (no hint holds an exercise's code or its result). Ask again for the next one;
`hint("corr2d", 1)` shows the first again, `hint()` lists the exercises.
"""
from __future__ import annotations

__all__ = ["hint"]

HINTS: dict[str, tuple[str, ...]] = {
    # lesson 1
    "corr2d": (
        "Start with the output: allocate it with torch.zeros at its final shape, (h - kh + 1, w - kw + 1). "
        "torch.zeros makes float32, whatever X holds.",
        "Loop over the output positions (i, j). The window of X that Y[i, j] reads starts at row i, column j "
        "and has K's shape: slice it.",
        "Multiply the window by K entry by entry (*, not @) and add everything up with .sum().",
    ),
    "convolve2d": (
        "True convolution is cross-correlation with the kernel turned by 180°: upside down AND left to right.",
        "torch.flip takes the axes to flip; you need both of them. A transpose is not a 180° turn.",
    ),
    "corr2d_multi_in": (
        "Each input channel has its own 2-D kernel: channel c of X goes with K[c].",
        "Cross-correlate each pair with your corr2d, then combine the per-channel results. Which operation "
        "combines them in a conv layer: a sum, a mean, or a stack?",
    ),
    "corr2d_multi_in_out": (
        "K[o] is a whole multi-input kernel, shape (c_in, kh, kw): it gives output channel o.",
        "Compute one corr2d_multi_in per output channel and put the results together along a NEW first axis "
        "(torch.stack, dim=0).",
    ),
    "Conv2D": (
        "A tensor becomes a learnable parameter when you wrap it in nn.Parameter and assign it to self.",
        "weight has shape kernel_size (random values), bias has shape (1,) (zeros).",
        "forward uses your corr2d with self.weight, then adds self.bias; use the parameters themselves "
        "(no .data, .item() or copies), so that gradients reach them.",
    ),
    # lesson 2
    "horizontal_edge_kernel": (
        "A horizontal edge separates two ROWS: the kernel must compare a pixel with the one below it.",
        "So the kernel has 2 rows and 1 column. Which entry is +1 follows from the convention: +1 where "
        "the pixel above is brighter than the one below.",
    ),
    "sobel_kernels": (
        "Gx smooths down the rows with [1, 2, 1] and differences along a row with [-1, 0, 1]; "
        "torch.outer(a, b) has rows a[i] * b.",
        "Gy does the same with the roles of the axes swapped: how do you swap rows and columns of a matrix?",
    ),
    "edge_magnitude": (
        "Get (Gx, Gy) from your sobel_kernels and cross-correlate the image with each (valid mode, no padding).",
        "F.conv2d wants (N, C, H, W) for the image and (C_out, C_in, kh, kw) for the kernels: add the axes "
        "with [None, None]; an integer image needs .float() first.",
        "Combine the two responses pixel by pixel as the length of the vector (gx, gy).",
    ),
    # lesson 3
    "train_kernel": (
        "Reproduce section 3's loop inside the function: nn.Conv2d(1, 1, init.shape, bias=False), its weight set "
        "to a copy of init (under torch.no_grad(), or through .data), so the caller's tensor never changes.",
        "nn.Conv2d wants (N, C, H, W): give it X[None, None] and compare with Y[None, None].",
        "Record each epoch's loss before the step, as a Python float (.item()); return a detached copy of the "
        "weight, reshaped to init's shape.",
    ),
    "corr2d_backward": (
        "Think of the forward pass window by window: Y[i, j] read one window of X, weighted by K.",
        "Each window passes dY[i, j] back: times K into its window of dX, and times that window of X into dK.",
        "Windows overlap, so contributions add up (+=). Start dX and dK as zeros of the right shapes.",
    ),
    # lesson 4
    "conv_output_size": (
        "The kernel's taps span d(k - 1) + 1 cells; padding adds p cells on EACH side.",
        "Count how many steps of size s fit into the room that is left after the first window, then add the "
        "first window itself. Use // to round down.",
    ),
    "same_padding": (
        "Set the rule's output equal to n (stride 1) and solve for p.",
        "Only an odd effective kernel size d(k - 1) + 1 splits evenly into two sides: test that first and "
        "raise ValueError (with the size in the message) when it is even.",
    ),
    "corr2d_strided": (
        "Turn ints into (height, width) pairs first, so the rest of the code handles pairs only.",
        "Build the padded input: zeros of the padded shape, with X copied into the middle (or F.pad).",
        "Output position (i, j) reads the window starting at row i·sh and column j·sw; the output shape "
        "follows lesson 4's rule.",
    ),
    # lesson 5
    "pool_output_size": (
        "It is conv_output_size's rule, with two twists: stride None means the window size, and ceil_mode.",
        "With ceil_mode, round the division up (-(-a // b) does that with ints), then drop the last window "
        "if it would start at or after n + padding.",
    ),
    "pool2d": (
        "Turn pool_size, stride and padding into pairs, and default the stride to the window size.",
        "Pad with -inf for max and with zeros for avg, into a float tensor (integer inputs too).",
        "Loop over the output; window (i, j) starts at (i·sh, j·sw); take its .max() or its .mean() (the "
        "mean over the whole window, padding included).",
    ),
    "max_pool2d_backward": (
        "Each output Y[i, j] is one entry of its window, the maximum: only that entry gets any of dY[i, j].",
        "Find the window's maximum with .flatten().argmax() (the first one, in reading order) and turn the flat "
        "index into a row and a column (divmod by the window's width).",
        "Start dX as zeros of X's shape and ADD each dY[i, j] at its window's maximum: with overlapping windows "
        "an entry can win several times.",
    ),
    # lesson 6
    "shape_table": (
        "Keep the current shape (C, H, W) in a variable and update it layer by layer.",
        "conv: out_channels, and your conv_output_size on H and on W; maxpool: the same channels and your "
        "pool_output_size; flatten: one axis of C·H·W values; relu: unchanged.",
        "Parameters: a conv has out · in · k · k weights plus one bias per output channel (if bias); a linear "
        "layer in · out plus one bias per output.",
    ),
    "receptive_field": (
        "Walk through the layers keeping two numbers: the field so far, and the jump (how many input pixels "
        "apart neighbouring units of the current layer are).",
        "A layer adds (span - 1) · jump to the field, with span d(k - 1) + 1, and then multiplies the jump by "
        "its own stride.",
    ),
}
HINTS["conv2d"] = HINTS["Conv2D"]
_shown: dict[str, int] = {}


def hint(exercise: str | None = None, level: int | None = None) -> None:
    """Print the next hint for `exercise` (a function's name, e.g. "corr2d"), or hint number `level`.

    >>> hint("convolve2d")
    Hint 1 of 2 for convolve2d: True convolution is cross-correlation with the kernel turned by 180°: upside down AND left to right.
    >>> hint("convolve2d")
    Hint 2 of 2 for convolve2d: torch.flip takes the axes to flip; you need both of them. A transpose is not a 180° turn.
    >>> hint("convolve2d")
    No more hints for convolve2d: hint('convolve2d', 1) shows the first again.
    """
    if exercise is None or exercise not in HINTS:
        names = ", ".join(n for n in HINTS if n != "conv2d")
        print((f"No hints for {exercise!r}. " if exercise is not None else "") + f"Exercises with hints: {names}.")
        return
    hints = HINTS[exercise]
    number = level if level is not None else _shown.get(exercise, 0) + 1
    if not 1 <= number <= len(hints):
        print(f"No more hints for {exercise}: hint({exercise!r}, 1) shows the first again.")
        return
    _shown[exercise] = number
    print(f"Hint {number} of {len(hints)} for {exercise}: {hints[number - 1]}")
