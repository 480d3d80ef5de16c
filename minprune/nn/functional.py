"""Stateless versions of the layers: `cross_entropy`, `conv2d`, `linear`, ... on Tensors."""
from __future__ import annotations

import numpy as np

from .. import functions as F
from ..tensor import Tensor, _t


def _pair(value, name):
    if isinstance(value, int):
        value = (value, value)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, (int, np.integer)) for v in value)):
        raise TypeError(f"{name}: expected an int or a pair of ints, got {value!r}")
    return tuple(int(v) for v in value)


def masked(param: Tensor) -> Tensor:
    """The weight a layer should compute with: `param ⊙ mask` when pruned, else `param` itself."""
    mask = getattr(param, "mask", None)
    return param if mask is None else F.Masked.apply(param, mask)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    x = _t(x)
    if x.ndim != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"x: expected shape (N, {weight.shape[1]}), got {x.shape}")
    # the bias is masked too: a pruned neuron's bias stays 0 and gets no gradient
    return F.Linear.apply(x, masked(weight), masked(bias)) if bias is not None else \
        F.Linear.apply(x, masked(weight))


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0) -> Tensor:
    x = _t(x)
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    if min(stride) < 1 or min(padding) < 0:
        raise ValueError(f"stride/padding: need stride ≥ 1 and padding ≥ 0, got {stride}, {padding}")
    if x.ndim != 4 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"x: expected shape (N, {weight.shape[1]}, H, W), got {x.shape}")
    kh, kw = weight.shape[2:]
    if x.shape[2] + 2 * padding[0] < kh or x.shape[3] + 2 * padding[1] < kw:
        raise ValueError(f"x: spatial size {x.shape[2:]} (padding {padding}) is smaller than the "
                         f"kernel {(kh, kw)}")
    return F.Conv2d.apply(x, masked(weight), None if bias is None else masked(bias), stride, padding)


def _pool(fn, x, kernel_size, stride):
    x = _t(x)
    k = _pair(kernel_size, "kernel_size")
    s = k if stride is None else _pair(stride, "stride")
    if min(k) < 1 or min(s) < 1:
        raise ValueError(f"kernel_size/stride: must be ≥ 1, got {k}, {s}")
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
    if not 0.0 <= p < 1.0:
        raise ValueError(f"p: dropout probability must be in [0, 1), got {p}")
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
    if logits.ndim != 2:
        raise ValueError(f"logits: expected shape (N, classes), got {logits.shape}")
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
    x = _t(x)
    return x.reshape(x.shape[0], -1)
