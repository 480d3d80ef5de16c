"""Checkers of lesson 02 (layers and convolution): reference answers pass the self-check and hidden
variants; typical mistakes fail with their hint; the library's convolution arithmetic is blocked; a
replayed answer fails a hidden variant."""
import numpy as np
import pytest
from checking import accepts, blocked, fails, fails_hidden, passes_hidden, replay_of

import minprune as mp
import minprune.exercises as ex
from minprune.course import notebooks as N

pytestmark = pytest.mark.course


def _size(n, k, s=1, p=0):
    return (n + 2 * p - k) // s + 1


def _im2col_shape(x_shape, kernel, stride, padding):
    n, c, h, w = x_shape
    return (n * _size(h, kernel[0], stride[0], padding[0]) * _size(w, kernel[1], stride[1], padding[1]),
            c * kernel[0] * kernel[1])


def _macs(layer, input_shape):
    if isinstance(layer, mp.nn.Linear):
        return layer.in_features * layer.out_features
    _, h, w = input_shape
    pixels = _im2col_shape((1, 1, h, w), layer.kernel_size, layer.stride, layer.padding)[0]
    return layer.weight.size * pixels  # every weight is used once per output pixel


# --- 02.1 output size ---------------------------------------------------------------------------
def test_conv_output_shape_reference(capsys):
    answer = N.reference_answer("02.1")
    accepts(ex.check_conv_output_shape, answer, capsys=capsys)
    passes_hidden(ex.check_conv_output_shape, answer)
    accepts(ex.check_conv_output_shape, _size, capsys=capsys)


def test_conv_output_shape_mistakes():
    fails(ex.check_conv_output_shape, lambda n, k, s, p: (n + p - k) // s + 1, "both sides")
    fails(ex.check_conv_output_shape, lambda n, k, s, p: (n + 2 * p - k) / s + 1, "//")
    fails(ex.check_conv_output_shape, lambda n, k, s, p: (n + 2 * p - k) // s, r"\+ 1")
    fails(ex.check_conv_output_shape, lambda n, k, s, p: -(-(n + 2 * p - k) // s) + 1, "round down")
    fails(ex.check_conv_output_shape, lambda n, k, s, p: None, "return")


def test_conv_output_shape_through_the_library_is_blocked():
    def by_running_a_conv(n, k, s, p):
        x = mp.tensor(np.zeros((1, 1, n, n), np.float32))
        w = mp.tensor(np.zeros((1, 1, k, k), np.float32))
        return mp.nn.functional.conv2d(x, w, stride=s, padding=p).shape[2]

    def by_im2col(n, k, s, p):
        xp = mp.kernels.pad2d(np.zeros((1, 1, n, n), np.float32), p, p)
        return int(np.sqrt(mp.kernels.im2col(xp, k, k, s, s).shape[0]))

    def by_the_layer(n, k, s, p):
        with mp.no_grad():
            return mp.nn.Conv2d(1, 1, k, stride=s, padding=p)(
                mp.tensor(np.zeros((1, 1, n, n), np.float32))).shape[2]

    for answer in (by_running_a_conv, by_im2col, by_the_layer):
        blocked(ex.check_conv_output_shape, answer)
    blocked(ex.check_conv_output_shape,
            lambda n, k, s, p: mp.kernels._window_count("size", n + 2 * p, "k", k, s))


def test_conv_output_shape_replayed_fails_hidden():
    fails_hidden(ex.check_conv_output_shape, replay_of(ex.check_conv_output_shape, _size))


# --- 02.2 im2col shape --------------------------------------------------------------------------
def test_im2col_shape_reference(capsys):
    answer = N.reference_answer("02.2")
    accepts(ex.check_im2col_shape, answer, capsys=capsys)
    passes_hidden(ex.check_im2col_shape, answer)
    accepts(ex.check_im2col_shape, _im2col_shape, capsys=capsys)


def test_im2col_shape_mistakes():
    fails(ex.check_im2col_shape, lambda *a: _im2col_shape(*a)[::-1], "swapped")
    fails(ex.check_im2col_shape, lambda xs, k, s, p: _im2col_shape(xs, k, s, (0, 0)), "im2col matrix")
    fails(ex.check_im2col_shape, lambda xs, k, s, p: _im2col_shape((1, *xs[1:]), k, s, p),
          "every.* image")
    fails(ex.check_im2col_shape, lambda xs, k, s, p: _im2col_shape((xs[0], 1, *xs[2:]), k, s, p),
          "every input channel")
    fails(ex.check_im2col_shape, lambda xs, k, s, p: _im2col_shape(xs, k[::-1], s, p), "im2col matrix")
    fails(ex.check_im2col_shape, lambda *a: _im2col_shape(*a)[0], "pair")


def test_im2col_shape_through_the_library_is_blocked():
    def by_im2col(x_shape, kernel, stride, padding):
        xp = mp.kernels_ref.pad2d(np.zeros(x_shape, np.float32), *padding)
        return mp.kernels_ref.im2col(xp, *kernel, *stride).shape

    blocked(ex.check_im2col_shape, by_im2col)


def test_im2col_shape_replayed_fails_hidden():
    fails_hidden(ex.check_im2col_shape, replay_of(ex.check_im2col_shape, _im2col_shape))


# --- 02.3 multiply-adds -------------------------------------------------------------------------
def test_conv_macs_reference(capsys):
    answer = N.reference_answer("02.3")
    accepts(ex.check_conv_macs, answer, capsys=capsys)
    passes_hidden(ex.check_conv_macs, answer)
    accepts(ex.check_conv_macs, _macs, capsys=capsys)


def test_conv_macs_mistakes():
    fails(ex.check_conv_macs, lambda layer, s: 2 * _macs(layer, s), "FLOPs")
    fails(ex.check_conv_macs, lambda layer, s: layer.weight.size, "number of weights")

    def with_bias(layer, s):
        n = _macs(layer, s)
        return n + (n // layer.weight.size) * (layer.bias.size if layer.bias is not None else 0)

    def input_size(layer, s):
        return _macs(layer, s) if isinstance(layer, mp.nn.Linear) else layer.weight.size * s[1] * s[2]

    fails(ex.check_conv_macs, with_bias, "bias")
    fails(ex.check_conv_macs, input_size, "OH × OW")


def test_conv_macs_through_the_library_is_blocked():
    blocked(ex.check_conv_macs, lambda layer, s: mp.prune.flops(mp.nn.Sequential(layer), s))

    def by_layer_costs(layer, s):
        return mp.prune.layer_costs(mp.nn.Sequential(layer), s)[0]["dense_macs"]

    blocked(ex.check_conv_macs, by_layer_costs)


def test_conv_macs_replayed_fails_hidden():
    fails_hidden(ex.check_conv_macs, replay_of(ex.check_conv_macs, _macs))


# --- half-right answers: right on some configurations, wrong on others ---------------------------
def test_conv_output_shape_half_right_fails():
    # (size + 2p − k + 1) // stride is right for stride 1 (and some strides), wrong for others
    fails(ex.check_conv_output_shape, lambda n, k, s, p: (n + 2 * p - k + 1) // s,
          "the real convolution gives")
    assert _size(5, 3, 2, 0) == 2 and _size(6, 3, 2, 0) == 2 and _size(28, 5, 1, 2) == 28   # by hand


def test_im2col_shape_half_right_fails():
    # the vertical stride used for both axes: right whenever the two strides are equal
    fails(ex.check_im2col_shape, lambda xs, k, s, p: _im2col_shape(xs, k, (s[0], s[0]), p),
          "im2col matrix has shape")
    assert _im2col_shape((2, 2, 11, 13), (3, 3), (2, 3), (1, 2)) == (2 * 6 * 5, 18)   # by hand


def test_conv_macs_half_right_fails():
    def stride_ignored(layer, s):   # right for Linear and stride-1 convolutions only
        if isinstance(layer, mp.nn.Linear):
            return _macs(layer, s)
        (kh, kw), (ph, pw) = layer.kernel_size, layer.padding
        return layer.weight.size * _size(s[1], kh, 1, ph) * _size(s[2], kw, 1, pw)

    fails(ex.check_conv_macs, stride_ignored, "multiply-adds")
    # LeNet-5's second convolution by hand: 16 filters of 6·5·5 weights on a 10×10 output
    assert _macs(mp.nn.Conv2d(6, 16, 5), (6, 14, 14)) == 16 * 10 * 10 * 6 * 5 * 5
