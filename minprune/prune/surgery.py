"""Surgery: turn structured sparsity into a smaller dense network.

A pruned filter is still there: its weights are zeros that every forward pass multiplies. Only
when the unit is cut out — its row of weights, its bias, its BatchNorm entries, *and* the input
channel of the next layer that read it — does the network get cheaper to run. `compact` does
that cutting; `measured_speedup` times the result, to set beside `theoretical_speedup`
(unstructured zeros scattered inside filters leave nothing to cut, so they measure ~1×).

Which output units of a layer can go (between it and the next Conv2d/Linear):
- units whose output is exactly 0 for every input: zero weights and zero bias, or silenced by an
  `output_mask`, and — when a BatchNorm follows — mapped to 0 by it too (β = 0 and γ·μ = 0), or
  with both BatchNorm γ and β zero (what pruning a filter leaves: `masks.mask_dead_units`);
- units the next layer never reads (all its weights on that input channel are zero: channel
  pruning of the next layer).
A unit that outputs a nonzero constant (zero weights, nonzero bias) stays: removing it would
change the next layer's output. The last layer's outputs (the logits) always stay.

Scope: networks that are chains — a Sequential, or `models.Classifier` (features then
classifier), of Conv2d, Linear, BatchNorm1d/2d, ReLU, MaxPool2d, AvgPool2d, Flatten, Dropout.
"""
from __future__ import annotations

import copy
import time

import numpy as np

from .. import checks, nn
from ..autograd import no_grad
from ..models import Classifier
from ..tensor import Tensor
from .masks import PRUNABLE_TYPES, check_input_shape

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_PASS_THROUGH = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.Flatten, nn.Dropout)


def _chain(model):
    """The leaf modules of `model` in execution order; ValueError if it is not a supported chain."""
    containers = (nn.Sequential, Classifier)  # both run their children in order
    if not isinstance(model, containers) or any(
            not isinstance(m, containers) for m in model.modules() if m._modules):
        raise ValueError("model: compact() handles chains of layers (a Sequential or a "
                         f"models.Classifier), got {type(model).__name__}")
    leaves = [m for m in model.modules() if not isinstance(m, containers)]
    odd = sorted({type(m).__name__ for m in leaves
                  if not isinstance(m, PRUNABLE_TYPES + _BATCHNORMS + _PASS_THROUGH)})
    if odd:
        raise ValueError(f"model: compact() does not know how to cut through {odd}; it handles "
                         "Conv2d, Linear, BatchNorm1d/2d, ReLU, MaxPool2d, AvgPool2d, Flatten, Dropout")
    return leaves


def _zero_output(layer) -> np.ndarray:
    """Units of a Conv2d/Linear whose output is exactly 0 whatever the input."""
    w = layer.weight.data.reshape(layer.weight.shape[0], -1)
    zero = ~w.any(axis=1)
    if layer.bias is not None:
        zero &= layer.bias.data == 0
    if layer.output_mask is not None:
        zero |= ~layer.output_mask
    return zero


def _through_batchnorm(zero, bn) -> np.ndarray:
    """Which channels are 0 after `bn`, given which were 0 before it (eval and train mode)."""
    gamma, beta, mean = bn.weight.data, bn.bias.data, bn.running_mean
    stays_zero = (beta == 0) & ((gamma == 0) | (mean == 0))  # BN(0) = β − γ·μ/σ (eval), β (train)
    silenced = (gamma == 0) & (beta == 0)                     # BN(anything) = 0
    out = (zero & stays_zero) | silenced
    if bn.output_mask is not None:
        out |= ~bn.output_mask
    return out


def _unread_inputs(layer, n_units) -> np.ndarray:
    """Which of the previous layer's `n_units` outputs `layer` never reads (all weights on it 0)."""
    w = layer.weight.data
    per_unit = w.shape[1] // n_units  # 1, or H·W after a Flatten of a conv's output
    w = np.moveaxis(w, 1, 0).reshape(n_units, per_unit, -1)
    return ~w.any(axis=(1, 2))


def _keep(param, index, axis):
    """Replace a Parameter by its slice along `axis` (mask sliced alike); None stays None."""
    if param is None:
        return None
    new = nn.Parameter(np.ascontiguousarray(np.take(param.data, index, axis=axis)))
    new.set_mask(None if param.mask is None else np.take(param.mask, index, axis=axis))
    return new


def _cut_outputs(layer, keep):
    idx = np.flatnonzero(keep)
    layer.weight = _keep(layer.weight, idx, 0)
    layer.bias = _keep(layer.bias, idx, 0)
    if isinstance(layer, nn.Conv2d):
        layer.out_channels = idx.size
    else:
        layer.out_features = idx.size
    if layer.output_mask is not None:  # after the new size: the mask is checked against it
        layer.output_mask = layer.output_mask[idx].copy()


def _cut_batchnorm(bn, keep):
    idx = np.flatnonzero(keep)
    bn.weight, bn.bias = _keep(bn.weight, idx, 0), _keep(bn.bias, idx, 0)
    bn.running_mean = bn.running_mean[idx].copy()
    bn.running_var = bn.running_var[idx].copy()
    bn.num_features = idx.size
    if bn.output_mask is not None:
        bn.output_mask = bn.output_mask[idx].copy()


def _cut_inputs(layer, keep):
    per_unit = layer.weight.shape[1] // keep.size
    idx = np.flatnonzero(np.repeat(keep, per_unit))  # a Flatten spreads each channel over H·W
    layer.weight = _keep(layer.weight, idx, 1)
    if isinstance(layer, nn.Conv2d):
        layer.in_channels = idx.size
    else:
        layer.in_features = idx.size


def compact(model):
    """A smaller dense copy of `model` with dead and unread units cut out; same outputs.

    Cost: one pass over the weights. The copy keeps the layer names (`features.0`, ...) and the
    masks of what remains (unstructured zeros inside kept units stay masked). Its `arch` is
    dropped: `nn.load` cannot rebuild a compacted shape from the model name, so load a saved
    compact model into `compact(<the same pruned model>)`.
    """
    small = copy.deepcopy(model)
    leaves = _chain(small)
    layers = [i for i, m in enumerate(leaves) if isinstance(m, PRUNABLE_TYPES)]
    for a, b in zip(layers, layers[1:]):
        producer, consumer = leaves[a], leaves[b]
        zero = _zero_output(producer)
        between = leaves[a + 1:b]
        for m in between:
            if isinstance(m, _BATCHNORMS):
                zero = _through_batchnorm(zero, m)
            elif m.output_mask is not None:
                zero |= ~m.output_mask
        drop = zero | _unread_inputs(consumer, zero.size)
        if drop.all():  # keep one unit so every layer still has a shape; it carries only zeros
            drop[np.argmax(~zero)] = False
        keep = ~drop
        if keep.all():
            continue
        _cut_outputs(producer, keep)
        for m in between:
            if isinstance(m, _BATCHNORMS):
                _cut_batchnorm(m, keep)
            elif m.output_mask is not None:
                m.output_mask = m.output_mask[keep].copy()
        _cut_inputs(consumer, keep)
    object.__setattr__(small, "arch", None)
    return small


def measured_speedup(model, input_shape, compacted=None, batch_size=128, repeats=10, seed=0):
    """Wall-clock time of `model`'s inference forward / that of `compact(model)`, best of `repeats`.

    Measured on this machine, batch `batch_size`, eval mode, random inputs of `input_shape`
    (no batch dimension). Compare with `theoretical_speedup`: the ratio of multiply-adds.
    """
    input_shape = check_input_shape(input_shape)
    batch_size = checks.integer(batch_size, "batch_size", minimum=1)
    repeats = checks.integer(repeats, "repeats", minimum=1)
    small = compact(model) if compacted is None else compacted
    x = Tensor(np.random.default_rng(seed).standard_normal((batch_size, *input_shape))
               .astype(np.float32))

    def best_time(net):
        was_training = net.training
        net.eval()
        with no_grad():
            net(x)  # warm-up: Numba compilation, buffers
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                net(x)
                times.append(time.perf_counter() - t0)
        net.train(was_training)
        return min(times)

    return best_time(model) / best_time(small)
