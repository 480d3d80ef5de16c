"""Checkers of lesson 02 — layers and convolution (`lessons/02_layers_and_convolution.ipynb`)."""
from __future__ import annotations

import numpy as np

from .. import kernels as K
from .. import nn
from ..autograd import no_grad
from ..tensor import Tensor
from .core import (
    as_int,
    correct,
    fail,
    require_callable,
)


def _real_conv_shape(x_shape, out_channels, kernel, stride, padding) -> tuple:
    """The output shape minprune's convolution actually produces (run on zeros)."""
    w = np.zeros((out_channels, x_shape[1], *kernel), np.float32)
    with no_grad():
        out = nn.functional.conv2d(Tensor(np.zeros(x_shape, np.float32)), Tensor(w),
                                   stride=stride, padding=padding)
    return out.shape


def check_conv_output_shape(fn) -> None:
    """`fn(size, kernel_size, stride, padding) -> int`: output size of a convolution along one axis.

    Compared with the output of minprune's real convolution for many sizes, kernels, strides and
    paddings.
    """
    require_callable(fn, "fn")
    checked = 0
    for size in (5, 7, 8, 12, 28):
        for k in (1, 2, 3, 5):
            for stride in (1, 2, 3):
                for padding in (0, 1, 2):
                    if size + 2 * padding < k:
                        continue
                    want = _real_conv_shape((1, 1, size, size), 1, (k, k), stride, padding)[2]
                    got = as_int(fn(size, k, stride, padding),
                                 f"fn(size={size}, kernel_size={k}, stride={stride}, "
                                 f"padding={padding})")
                    if got != want:
                        fail(f"size={size}, kernel_size={k}, stride={stride}, padding={padding}: "
                             f"the real convolution gives {want}, your formula gives {got}.",
                             "padding adds to both sides (2·padding), the kernel must fit "
                             "entirely, and the window moves `stride` pixels: "
                             "(size + 2·padding − kernel_size) // stride + 1.")
                    checked += 1
    correct(f"your formula matches the real convolution on {checked} configurations")


def check_im2col_shape(fn) -> None:
    """`fn(x_shape, kernel_size, stride, padding) -> (rows, cols)`: shape of the im2col matrix.

    x_shape is (N, C, H, W); kernel_size, stride and padding are (h, w) pairs. The answer is compared
    with the shape of `minprune.kernels.im2col` applied to the padded input.
    """
    require_callable(fn, "fn")
    configs = [((1, 1, 28, 28), (5, 5), (1, 1), (2, 2)),
               ((2, 6, 14, 14), (5, 5), (1, 1), (0, 0)),
               ((4, 3, 9, 7), (3, 2), (2, 1), (1, 0)),
               ((3, 8, 10, 10), (1, 1), (1, 1), (0, 0)),
               ((2, 2, 11, 13), (3, 3), (2, 3), (1, 2))]
    for x_shape, (kh, kw), (sh, sw), (ph, pw) in configs:
        xp = K.pad2d(np.zeros(x_shape, np.float32), ph, pw)
        want = K.im2col(xp, kh, kw, sh, sw).shape
        answer = fn(x_shape, (kh, kw), (sh, sw), (ph, pw))
        if not isinstance(answer, (tuple, list)) or len(answer) != 2:
            fail(f"fn should return a pair (rows, cols), got {answer!r}.")
        got = tuple(as_int(v, name) for v, name in zip(answer, ("rows", "cols")))
        if got != want:
            hint = ("one row per output pixel of every image: N·OH·OW rows; one column per "
                    "weight of a filter: C·kh·kw columns.")
            if got == want[::-1]:
                hint = "rows and columns are swapped: rows are patches (N·OH·OW), columns C·kh·kw."
            fail(f"x_shape={x_shape}, kernel={(kh, kw)}, stride={(sh, sw)}, padding={(ph, pw)}: "
                 f"im2col gives shape {want}, you said {got}.", hint)
    correct("your shapes match minprune.kernels.im2col")


def check_conv_macs(fn) -> None:
    """`fn(layer, input_shape) -> int`: multiply-adds one example costs in `layer`.

    layer is an `nn.Conv2d` (input_shape (C, H, W)) or an `nn.Linear` (input_shape (in_features,)).
    A convolution does C·kh·kw multiply-adds for each output value, and has O·OH·OW output values;
    biases are additions only and are not counted.
    """
    require_callable(fn, "fn")
    cases = [(nn.Conv2d(1, 6, 5, padding=2), (1, 28, 28)), (nn.Conv2d(6, 16, 5), (6, 14, 14)),
             (nn.Conv2d(3, 8, 3, stride=2, padding=1), (3, 15, 15)),
             (nn.Conv2d(4, 2, (3, 1), bias=False), (4, 9, 6)),
             (nn.Linear(400, 120), (400,)), (nn.Linear(84, 10, bias=False), (84,))]
    for layer, input_shape in cases:
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
            fail(f"{layer!r} on input {input_shape}: expected {want:,} multiply-adds, got {got:,}.",
                 hint)
    correct("multiply-add counts agree for Conv2d and Linear layers")
