"""The layers: each holds its Parameters and calls one op from `functional`."""
from __future__ import annotations

import numpy as np

from .. import checks
from .. import functions as F
from .. import kernels as K
from . import functional as fn
from . import init
from .module import Module, Parameter


def _positive_int(value, name):
    return checks.integer(value, name, minimum=1)


class Linear(Module):
    """y = x Wᵀ + b, W of shape (out_features, in_features); Kaiming-normal init, zero bias."""

    def __init__(self, in_features, out_features, bias=True, rng=None):
        super().__init__()
        self.in_features = _positive_int(in_features, "in_features")
        self.out_features = _positive_int(out_features, "out_features")
        self.weight = init.kaiming_normal_(Parameter(np.empty((self.out_features, self.in_features),
                                                              np.float32)), rng=rng)
        self.bias = Parameter(np.zeros(self.out_features, np.float32)) if bias else None

    def forward(self, x):
        return fn.linear(x, self.weight, self.bias)

    def _output_units(self):
        return self.out_features

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


class Conv2d(Module):
    """2-D convolution, weight (out, in, kh, kw); im2col + one matmul underneath."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 rng=None):
        super().__init__()
        self.in_channels = _positive_int(in_channels, "in_channels")
        self.out_channels = _positive_int(out_channels, "out_channels")
        self.kernel_size = fn._pair(kernel_size, "kernel_size")
        self.stride = fn._pair(stride, "stride")
        self.padding = fn._pair(padding, "padding")
        fn.check_window(self.kernel_size, self.stride, self.padding)
        shape = (self.out_channels, self.in_channels, *self.kernel_size)
        self.weight = init.kaiming_normal_(Parameter(np.empty(shape, np.float32)), rng=rng)
        self.bias = Parameter(np.zeros(self.out_channels, np.float32)) if bias else None

    def forward(self, x):
        return fn.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def _output_units(self):
        return self.out_channels

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


class _BatchNorm(Module):
    """Normalise each channel with batch statistics while training, running averages in eval.

    running = (1 − momentum)·running + momentum·batch (PyTorch's convention; unbiased variance).
    """

    _ndim: int = 0

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.num_features = n = _positive_int(num_features, "num_features")
        self.eps = checks.number(eps, "eps", lo=0, lo_open=True)
        self.momentum = checks.fraction(momentum, "momentum")
        self.weight = Parameter(np.ones(n, np.float32))
        self.bias = Parameter(np.zeros(n, np.float32))
        self.register_buffer("running_mean", np.zeros(n, np.float32))
        self.register_buffer("running_var", np.ones(n, np.float32))

    def forward(self, x):
        if x.ndim != self._ndim or x.shape[1] != self.num_features:
            raise ValueError(f"x: {type(self).__name__}({self.num_features}) expects "
                             f"{self._ndim}-D input with {self.num_features} channels, got {x.shape}")
        dtype = F.promoted(x.data[:0]).dtype  # float16 input computes in float32, as elsewhere
        if self.training:
            mean, var = K.channel_stats(x.data.astype(dtype, copy=False))
            m = x.data.size // self.num_features
            self.running_mean = ((1 - self.momentum) * self.running_mean
                                 + self.momentum * mean).astype(np.float32)
            self.running_var = ((1 - self.momentum) * self.running_var
                                + self.momentum * var * m / max(m - 1, 1)).astype(np.float32)
        else:
            mean, var = self.running_mean, self.running_var
        return F.BatchNorm.apply(x, fn.masked(self.weight), fn.masked(self.bias),
                                 self.eps, mean.astype(dtype), var.astype(dtype), self.training)

    def _output_units(self):
        return self.num_features

    def extra_repr(self):
        return f"{self.num_features}"


class BatchNorm1d(_BatchNorm):
    _ndim = 2


class BatchNorm2d(_BatchNorm):
    _ndim = 4


class ReLU(Module):
    def forward(self, x):
        return fn.relu(x)


class _Pool2d(Module):
    """What max and average pooling share: a window size and a stride (default: the window)."""

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        k = fn._pair(kernel_size, "kernel_size")  # validate now, not at the first forward
        s = k if stride is None else fn._pair(stride, "stride")
        fn.check_window(k, s)
        self.kernel_size, self.stride = kernel_size, stride

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}"


class MaxPool2d(_Pool2d):
    def forward(self, x):
        return fn.max_pool2d(x, self.kernel_size, self.stride)


class AvgPool2d(_Pool2d):
    def forward(self, x):
        return fn.avg_pool2d(x, self.kernel_size, self.stride)


class AdaptiveAvgPool2d(Module):
    """Average each channel over its whole H×W map: (N, C, H, W) → (N, C, 1, 1), as ResNets do
    before their classifier. Only `output_size=1` (global pooling) is supported; it is a mean over
    two axes, so its gradient comes from the engine's `Mean` (each input gets g / (H·W))."""

    def __init__(self, output_size=1):
        super().__init__()
        if fn._pair(output_size, "output_size") != (1, 1):
            raise ValueError(f"output_size: only 1 (global average pooling) is supported, got "
                             f"{output_size!r}; use AvgPool2d for other sizes")
        self.output_size = 1

    def forward(self, x):
        x = fn._batch(x, "shape (N, C, H, W)")
        if x.ndim != 4:
            raise ValueError(f"x: expected shape (N, C, H, W), got {x.shape}")
        return x.mean(axis=(2, 3), keepdims=True)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class Flatten(Module):
    def forward(self, x):
        return fn.flatten(x)


class Dropout(Module):
    """Active only in training mode. `rng` (a seed or Generator) makes the dropped units repeatable."""

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        self.p = fn.check_dropout(p)
        self.rng = np.random.default_rng(rng)

    def forward(self, x):
        return fn.dropout(x, self.p, self.training, self.rng)

    def extra_repr(self):
        return f"p={self.p}"
