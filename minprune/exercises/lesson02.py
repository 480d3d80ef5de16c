"""Checkers of lesson 02 — layers and convolution (`lessons/02_layers_and_convolution.ipynb`)."""
from __future__ import annotations

import numpy as np

from .. import nn
from ..autograd import no_grad
from ..tensor import Tensor
from .core import as_int, correct, exercise, fail, require_callable, rng_for

# Everything in minprune that works out a convolution's output size or its im2col matrix: while a
# student's answer runs, these refuse (02.1 and 02.2 ask for exactly that arithmetic).
_CONV_SHAPES = ["minprune.functions.Conv2d.forward", "minprune.kernels.im2col",
                "minprune.kernels_ref.im2col", "minprune.kernels._window_count"]


def _real_conv_shape(x_shape, out_channels, kernel, stride, padding) -> tuple:
    """The output shape minprune's convolution actually produces (run on zeros)."""
    w = np.zeros((out_channels, x_shape[1], *kernel), np.float32)
    with no_grad():
        out = nn.functional.conv2d(Tensor(np.zeros(x_shape, np.float32)), Tensor(w),
                                   stride=stride, padding=padding)
    return out.shape


def _output_size_cases(variant) -> list[tuple]:
    """(size, kernel_size, stride, padding) along one axis: the self-check's grid, or about sixty
    configurations drawn at random for a hidden variant (the kernel always fits)."""
    if variant is None:
        return [(size, k, stride, padding)
                for size in (5, 7, 8, 12, 28) for k in (1, 2, 3, 5)
                for stride in (1, 2, 3) for padding in (0, 1, 2) if size + 2 * padding >= k]
    rng = rng_for(variant, 20)
    cases = []
    while len(cases) < 60:
        size, k = int(rng.integers(3, 41)), int(rng.integers(1, 8))
        stride, padding = int(rng.integers(1, 5)), int(rng.integers(0, 4))
        if size + 2 * padding >= k:
            cases.append((size, k, stride, padding))
    return cases


@exercise("02.1", blocks=_CONV_SHAPES)
def check_conv_output_shape(fn, variant=None) -> None:
    """`fn(size, kernel_size, stride, padding) -> int`: output size of a convolution along one axis.

    Compared with the output of minprune's real convolution for many sizes, kernels, strides and
    paddings.
    """
    require_callable(fn, "fn")
    cases = _output_size_cases(variant)
    for size, k, stride, padding in cases:
        want = _real_conv_shape((1, 1, size, size), 1, (k, k), stride, padding)[2]
        got = as_int(fn(size, k, stride, padding),
                     f"fn(size={size}, kernel_size={k}, stride={stride}, padding={padding})")
        if got != want:
            hint = ("padding adds to both sides (2·padding), the kernel must fit entirely, and "
                    "the window moves `stride` pixels: (size + 2·padding − kernel_size) // stride + 1.")
            if got == (size + padding - k) // stride + 1:
                hint = "padding is added on both sides of the input: size + 2·padding."
            elif got == (size + 2 * padding - k) // stride:
                hint = "count the first window too: ... // stride + 1."
            elif got == -(-(size + 2 * padding - k) // stride) + 1:
                hint = ("a window that would stick out past the padded input does not count: "
                        "round down (floor division //), not up.")
            fail(f"size={size}, kernel_size={k}, stride={stride}, padding={padding}: "
                 f"the real convolution gives {want}, your formula gives {got}.", hint)
    correct(f"your formula matches the real convolution on {len(cases)} configurations")


def _im2col_cases(variant) -> list[tuple]:
    """(x_shape, kernel, stride, padding) with (h, w) pairs; hidden variants draw non-square ones."""
    if variant is None:
        return [((1, 1, 28, 28), (5, 5), (1, 1), (2, 2)),
                ((2, 6, 14, 14), (5, 5), (1, 1), (0, 0)),
                ((4, 3, 9, 7), (3, 2), (2, 1), (1, 0)),
                ((3, 8, 10, 10), (1, 1), (1, 1), (0, 0)),
                ((2, 2, 11, 13), (3, 3), (2, 3), (1, 2))]
    rng = rng_for(variant, 21)
    cases = []
    while len(cases) < 8:
        n, c = int(rng.integers(1, 5)), int(rng.integers(1, 9))
        h, w = (int(v) for v in rng.integers(4, 20, 2))
        kernel = tuple(int(v) for v in rng.integers(1, 6, 2))
        stride = tuple(int(v) for v in rng.integers(1, 4, 2))
        padding = tuple(int(v) for v in rng.integers(0, 3, 2))
        if h + 2 * padding[0] >= kernel[0] and w + 2 * padding[1] >= kernel[1]:
            cases.append(((n, c, h, w), kernel, stride, padding))
    return cases


@exercise("02.2", blocks=_CONV_SHAPES)
def check_im2col_shape(fn, variant=None) -> None:
    """`fn(x_shape, kernel_size, stride, padding) -> (rows, cols)`: shape of the im2col matrix.

    x_shape is (N, C, H, W); kernel_size, stride and padding are (h, w) pairs. The answer is compared
    with the shape of the im2col matrix minprune's convolution builds for the padded input.
    """
    require_callable(fn, "fn")
    from .. import kernels as K

    for x_shape, (kh, kw), (sh, sw), (ph, pw) in _im2col_cases(variant):
        xp = K.pad2d(np.zeros(x_shape, np.float32), ph, pw)
        want = K.im2col(xp, kh, kw, sh, sw).shape
        answer = fn(x_shape, (kh, kw), (sh, sw), (ph, pw))
        if not isinstance(answer, (tuple, list)) or len(answer) != 2:
            fail(f"fn should return a pair (rows, cols), got {answer!r}.",
                 "return both numbers: `return rows, cols`.")
        got = tuple(as_int(v, name) for v, name in zip(answer, ("rows", "cols")))
        if got != want:
            hint = ("one row per output pixel of every image: N·OH·OW rows; one column per "
                    "weight of a filter: C·kh·kw columns.")
            n, c = x_shape[:2]
            if got == want[::-1]:
                hint = "rows and columns are swapped: rows are patches (N·OH·OW), columns C·kh·kw."
            elif got[1] == want[1] and got[0] * n == want[0]:
                hint = "there is one row per output pixel of *every* image: multiply by N."
            elif got[0] == want[0] and got[1] * c == want[1]:
                hint = "a patch spans every input channel: C·kh·kw columns."
            fail(f"x_shape={x_shape}, kernel={(kh, kw)}, stride={(sh, sw)}, padding={(ph, pw)}: "
                 f"the im2col matrix has shape {want}, you said {got}.", hint)
    correct("your shapes match the im2col matrix of the real convolution")


def _macs_cases(variant) -> list[tuple]:
    """(layer, input shape) pairs: the self-check's six, or random Conv2d and Linear layers."""
    if variant is None:
        return [(nn.Conv2d(1, 6, 5, padding=2), (1, 28, 28)), (nn.Conv2d(6, 16, 5), (6, 14, 14)),
                (nn.Conv2d(3, 8, 3, stride=2, padding=1), (3, 15, 15)),
                (nn.Conv2d(4, 2, (3, 1), bias=False), (4, 9, 6)),
                (nn.Linear(400, 120), (400,)), (nn.Linear(84, 10, bias=False), (84,))]
    rng = rng_for(variant, 22)
    cases = []
    for i in range(6):
        c, o = int(rng.integers(1, 9)), int(rng.integers(1, 17))
        kernel = tuple(int(v) for v in rng.integers(1, 6, 2))
        stride = tuple(int(v) for v in rng.integers(1, 3, 2))
        padding = tuple(int(v) for v in rng.integers(0, 3, 2))
        h, w = (int(v) for v in rng.integers(max(kernel) + 2, 24, 2))
        cases.append((nn.Conv2d(c, o, kernel, stride=stride, padding=padding,
                                bias=bool(i % 2), rng=rng), (c, h, w)))
    for i in range(2):
        n_in, n_out = (int(v) for v in rng.integers(2, 300, 2))
        cases.append((nn.Linear(n_in, n_out, bias=bool(i % 2), rng=rng), (n_in,)))
    return cases


@exercise("02.3", blocks=_CONV_SHAPES + ["minprune.prune.metrics.layer_costs",
                                         "minprune.prune.metrics.flops",
                                         "minprune.prune.metrics.theoretical_speedup",
                                         "minprune.prune.metrics.report"])
def check_conv_macs(fn, variant=None) -> None:
    """`fn(layer, input_shape) -> int`: multiply-adds one example costs in `layer`.

    layer is an `nn.Conv2d` (input_shape (C, H, W)) or an `nn.Linear` (input_shape (in_features,)).
    A convolution does C·kh·kw multiply-adds for each output value, and has O·OH·OW output values;
    biases are additions only and are not counted.
    """
    require_callable(fn, "fn")
    for layer, input_shape in _macs_cases(variant):
        if isinstance(layer, nn.Conv2d):
            out = _real_conv_shape((1, *input_shape), layer.out_channels, layer.kernel_size,
                                   layer.stride, layer.padding)
            per_output = layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1]
            want = int(np.prod(out[1:])) * per_output
        else:
            want = layer.in_features * layer.out_features
        got = as_int(fn(layer, input_shape), f"fn({layer!r}, {input_shape})")
        if got != want:
            hint = ("each output value costs one multiply-add per weight of its filter: "
                    "(O·OH·OW)·(C·kh·kw) for Conv2d, in·out for Linear.")
            if got == 2 * want:
                hint = "you counted FLOPs (a multiply and an add); a multiply-add counts once."
            elif isinstance(layer, nn.Conv2d) and got == layer.weight.size:
                hint = "that is the number of weights; each is used once per output pixel (OH·OW)."
            elif layer.bias is not None and got == want + layer.bias.size * (want // layer.weight.size):
                hint = "the bias adds, it does not multiply: leave it out of the count."
            elif isinstance(layer, nn.Conv2d) and got == layer.weight.size * int(
                    np.prod(input_shape[1:])):
                hint = ("the output is OH × OW, not H × W: padding, kernel size and stride change "
                        "it (exercise 1).")
            fail(f"{layer!r} on input {input_shape}: expected {want:,} multiply-adds, got {got:,}.",
                 hint)
    correct("multiply-add counts agree for Conv2d and Linear layers")
