"""Every exercise checker accepts a correct answer and rejects a wrong one with a hint."""
import numpy as np
import pytest
from checking import accepts as _accepts
from checking import rejects as _rejects

import minprune as mp
import minprune.exercises as ex

pytestmark = pytest.mark.engine



# --- lesson 01 -------------------------------------------------------------------------------
def test_mul_backward(capsys):
    _accepts(ex.check_mul_backward, lambda a, b, g: (g * b, g * a), capsys=capsys)
    _rejects(ex.check_mul_backward, lambda a, b, g: (g * a, g * b), match="wrong input")
    _rejects(ex.check_mul_backward, lambda a, b, g: (b, a), match="incoming gradient")
    _rejects(ex.check_mul_backward, lambda a, b, g: g * b, match="pair")
    _rejects(ex.check_mul_backward, lambda a, b, g: None, match="pair")


_central = ex._numeric_grad  # a correct central-difference answer


def _forward_diff(f, x, eps=1e-6):
    grad, base = np.zeros_like(x), f(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        grad[i] = (f(x) - base) / eps
        x[i] = old
    return grad


def _mutating(f, x, eps=1e-6):
    grad = _central(f, x.copy(), eps)
    x += eps
    return grad


def test_grad_check(capsys):
    _accepts(ex.check_grad_check, _central, capsys=capsys)
    _rejects(ex.check_grad_check, _forward_diff, match="one-sided")
    _rejects(ex.check_grad_check, _mutating, match="changed its input")
    _rejects(ex.check_grad_check, lambda f, x, eps: np.zeros_like(x))


def test_unbroadcast(capsys):
    _accepts(ex.check_unbroadcast, mp.functions.unbroadcast, capsys=capsys)
    _rejects(ex.check_unbroadcast, lambda g, shape: g, match="shape")

    def averaging(g, shape):
        return np.broadcast_to(g.mean(), shape) if shape == () else \
            mp.functions.unbroadcast(g, shape) / (g.size / max(np.prod(shape), 1))
    _rejects(ex.check_unbroadcast, averaging, match="averaged")


# --- lesson 02 -------------------------------------------------------------------------------
def test_conv_output_shape(capsys):
    _accepts(ex.check_conv_output_shape, lambda n, k, s, p: (n + 2 * p - k) // s + 1, capsys=capsys)
    _rejects(ex.check_conv_output_shape, lambda n, k, s, p: (n + p - k) // s + 1, match="real")
    _rejects(ex.check_conv_output_shape, lambda n, k, s, p: (n + 2 * p - k) / s + 1, match="//")


def _im2col_shape(x_shape, kernel, stride, padding):
    n, c, h, w = x_shape
    oh = (h + 2 * padding[0] - kernel[0]) // stride[0] + 1
    ow = (w + 2 * padding[1] - kernel[1]) // stride[1] + 1
    return n * oh * ow, c * kernel[0] * kernel[1]


def test_im2col_shape(capsys):
    _accepts(ex.check_im2col_shape, _im2col_shape, capsys=capsys)
    _rejects(ex.check_im2col_shape, lambda *a: _im2col_shape(*a)[::-1], match="swapped")
    _rejects(ex.check_im2col_shape, lambda xs, k, s, p: _im2col_shape(xs, k, s, (0, 0)))


def _macs(layer, input_shape):
    if isinstance(layer, mp.nn.Linear):
        return layer.in_features * layer.out_features
    _, h, w = input_shape
    pixels = _im2col_shape((1, 1, h, w), layer.kernel_size, layer.stride, layer.padding)[0]
    return layer.weight.size * pixels  # every weight is used once per output pixel


def test_conv_macs(capsys):
    _accepts(ex.check_conv_macs, _macs, capsys=capsys)
    _rejects(ex.check_conv_macs, lambda layer, s: 2 * _macs(layer, s), match="FLOPs")
    _rejects(ex.check_conv_macs, lambda layer, s: layer.weight.size, match="number of weights")


# --- lesson 03 -------------------------------------------------------------------------------
def test_count_parameters(capsys):
    _accepts(ex.check_count_parameters, lambda m: sum(p.size for p in m.parameters()), capsys=capsys)
    _rejects(ex.check_count_parameters,
             lambda m: sum(p.size for n, p in m.named_parameters() if n.endswith("weight")),
             match="only the weights")


def _accuracy(model, x, y):
    model.eval()
    with mp.no_grad():
        pred = model(mp.tensor(x)).data.argmax(axis=1)
    model.train()
    return float(np.mean(pred == y))


def test_accuracy(capsys):
    _accepts(ex.check_accuracy, _accuracy, capsys=capsys)
    _rejects(ex.check_accuracy, lambda m, x, y: 100 * _accuracy(m, x, y), match="percentage")
    _rejects(ex.check_accuracy, lambda m, x, y: 0.5)


def _weights(model):
    return np.concatenate([m.weight.data.ravel() for m in model.modules()
                           if isinstance(m, (mp.nn.Conv2d, mp.nn.Linear))])


def test_weight_fraction(capsys):
    model = mp.models.lenet5()
    right = lambda m, t: float(np.mean(np.abs(_weights(m)) < t))  # noqa: E731
    _accepts(ex.check_weight_fraction, right, model, capsys=capsys)
    _accepts(ex.check_weight_fraction, right(model, 0.05), model, 0.05, capsys=capsys)
    _rejects(ex.check_weight_fraction, right(model, 0.05), model, 0.01)
    _rejects(ex.check_weight_fraction, lambda m, t: 1 - right(m, t), model, match="at or above")
    _rejects(ex.check_weight_fraction, lambda m, t: 100 * right(m, t), model, match="percentage")
    everything = lambda m, t: float(np.mean(np.abs(np.concatenate(  # noqa: E731
        [p.data.ravel() for p in m.parameters()])) < t))
    _rejects(ex.check_weight_fraction, everything, model, match="biases")


def test_every_checker_is_exported():
    for name in ex.__all__:
        assert callable(getattr(ex, name)) and name.startswith("check_")
