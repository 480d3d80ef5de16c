"""Stateless versions of the layers: `cross_entropy`, `conv2d`, `linear`, ... on Tensors."""
from __future__ import annotations

import numpy as np

from .. import checks
from .. import functions as F
from ..tensor import Tensor, _t


def _pair(value, name):
    """An int or a pair of ints (NumPy ints too) → a pair of Python ints."""
    if not isinstance(value, (tuple, list)):
        value = (value, value)
    if len(value) != 2:
        raise TypeError(f"{name}: expected an int or a pair of ints, got {value!r}")
    return tuple(checks.integer(v, name) for v in value)


def check_window(kernel_size, stride, padding=(0, 0)):
    """Pairs of ints already: kernel_size ≥ 1, stride ≥ 1, padding ≥ 0, or a ValueError."""
    for name, pair, least in (("kernel_size", kernel_size, 1), ("stride", stride, 1),
                              ("padding", padding, 0)):
        if min(pair) < least:
            raise ValueError(f"{name}: must be ≥ {least}, got {pair}")


def check_dropout(p) -> float:
    return checks.number(p, "p", lo=0, hi=1, hi_open=True)


def _batch(x, expected):
    """`x` as a Tensor with at least one example (layers refuse an empty batch: it would give
    NaN means downstream, or nothing to learn from, without saying so)."""
    x = _t(x)
    if x.ndim and x.shape[0] == 0:
        raise ValueError(f"x: an empty batch (shape {x.shape}); expected {expected} with N ≥ 1")
    return x


def masked(param: Tensor) -> Tensor:
    """The weight a layer should compute with: `param ⊙ mask` when pruned, else `param` itself."""
    mask = getattr(param, "mask", None)
    return param if mask is None else F.Masked.apply(param, mask)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    x = _batch(x, f"shape (N, {weight.shape[1]})")
    if x.ndim != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"x: expected shape (N, {weight.shape[1]}), got {x.shape}")
    # the bias is masked too: a pruned neuron's bias stays 0 and gets no gradient
    return F.Linear.apply(x, masked(weight), masked(bias)) if bias is not None else \
        F.Linear.apply(x, masked(weight))


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0) -> Tensor:
    x = _batch(x, f"shape (N, {weight.shape[1]}, H, W)")
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    check_window(weight.shape[2:], stride, padding)
    if x.ndim != 4 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"x: expected shape (N, {weight.shape[1]}, H, W), got {x.shape}")
    kh, kw = weight.shape[2:]
    if x.shape[2] + 2 * padding[0] < kh or x.shape[3] + 2 * padding[1] < kw:
        raise ValueError(f"x: spatial size {x.shape[2:]} (padding {padding}) is smaller than the "
                         f"kernel {(kh, kw)}")
    return F.Conv2d.apply(x, masked(weight), None if bias is None else masked(bias), stride, padding)


def _pool(fn, x, kernel_size, stride):
    x = _batch(x, "shape (N, C, H, W)")
    k = _pair(kernel_size, "kernel_size")
    s = k if stride is None else _pair(stride, "stride")
    check_window(k, s)
    if x.ndim != 4 or x.shape[2] < k[0] or x.shape[3] < k[1]:
        raise ValueError(f"x: expected (N, C, H, W) with H, W ≥ kernel {k}, got {x.shape}")
    return fn.apply(x, k, s)


def max_pool2d(x, kernel_size, stride=None):
    return _pool(F.MaxPool2d, x, kernel_size, stride)


def avg_pool2d(x, kernel_size, stride=None):
    return _pool(F.AvgPool2d, x, kernel_size, stride)


def relu(x):
    return F.ReLU.apply(_t(x))


def log_softmax(x, axis=-1):
    return F.LogSoftmax.apply(_t(x), axis)


def dropout(x, p=0.5, training=True, rng=None):
    """Inverted dropout: zero each unit with probability p, scale survivors by 1/(1-p)."""
    p = check_dropout(p)
    x = _t(x)
    if not training or p == 0.0:
        return x
    rng = rng if rng is not None else np.random.default_rng()
    keep = (rng.random(x.shape) >= p).astype(x.dtype) / (1.0 - p)
    return x * Tensor(keep, dtype=x.dtype)


def cross_entropy(logits: Tensor, targets) -> Tensor:
    """Mean negative log-likelihood of integer `targets` under softmax(`logits`)."""
    logits = _t(logits)
    y = np.asarray(targets.data if isinstance(targets, Tensor) else targets)
    if logits.ndim != 2 or logits.shape[0] == 0:
        raise ValueError(f"logits: expected shape (N, classes) with N ≥ 1, got {logits.shape}")
    if y.shape != (logits.shape[0],):
        raise ValueError(f"targets: expected shape ({logits.shape[0]},), got {y.shape}")
    if y.dtype.kind not in "iu":
        if y.dtype.kind == "f" and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise TypeError(f"targets: expected integer class labels, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= logits.shape[1]):
        raise ValueError(f"targets: labels must be in [0, {logits.shape[1]}), got "
                         f"[{y.min()}, {y.max()}]")
    return F.CrossEntropy.apply(logits, y.astype(np.int64))


def flatten(x):
    x = _batch(x, "shape (N, ...)")
    return x.reshape(x.shape[0], -1)
