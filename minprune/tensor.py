"""Tensor: a NumPy array, its gradient, and the Function that made it.

Every operator below only calls `SomeFunction.apply`; the maths lives in `functions.py`.
"""
from __future__ import annotations

import numpy as np

from . import autograd
from . import functions as F

_FLOATS = (np.float16, np.float32, np.float64)


class Tensor:
    """`.data` (ndarray, float32 by default), `.grad` (ndarray or None), `.requires_grad`."""

    __array_priority__ = 100  # make `ndarray + Tensor` call Tensor.__radd__

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        arr = np.asarray(data.data if isinstance(data, Tensor) else data)
        if dtype is not None:
            arr = arr.astype(dtype, copy=False)
        elif arr.dtype not in _FLOATS or not isinstance(data, (Tensor, np.ndarray, np.generic)):
            # Python numbers and lists become float32; only float *arrays* keep their precision.
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"data: expected a numeric array, got dtype {arr.dtype}")
            arr = arr.astype(np.float32)
        if requires_grad and arr.dtype.kind != "f":
            raise TypeError("requires_grad: only floating-point tensors can require gradients")
        self.data: np.ndarray = arr
        self.grad: np.ndarray | None = None
        self.requires_grad = bool(requires_grad)
        self._ctx = self._op = None
        self._parents: tuple = ()

    # --- basic properties -------------------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    dtype = property(lambda self: self.data.dtype)
    T = property(lambda self: self.transpose())

    def __repr__(self):
        extra = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({np.array2string(self.data, precision=4, threshold=20)}{extra})"

    def __len__(self):
        return len(self.data)

    def numpy(self) -> np.ndarray:
        return self.data

    def item(self) -> float:
        return self.data.item()

    def detach(self) -> Tensor:
        """Same data, cut from the graph."""
        return Tensor(self.data)

    def backward(self, grad=None):
        autograd.backward(self, grad)

    def zero_grad(self):
        self.grad = None

    # --- operators: each one is a Function ----------------------------------------------------
    def __add__(self, o):
        return F.Add.apply(self, _t(o))

    def __radd__(self, o):
        return F.Add.apply(_t(o), self)

    def __sub__(self, o):
        return F.Sub.apply(self, _t(o))

    def __rsub__(self, o):
        return F.Sub.apply(_t(o), self)

    def __mul__(self, o):
        return F.Mul.apply(self, _t(o))

    def __rmul__(self, o):
        return F.Mul.apply(_t(o), self)

    def __truediv__(self, o):
        return F.Div.apply(self, _t(o))

    def __rtruediv__(self, o):
        return F.Div.apply(_t(o), self)

    def __neg__(self):
        return F.Neg.apply(self)

    def __pow__(self, exponent):
        if not isinstance(exponent, (int, float)):
            raise TypeError(f"exponent: expected an int or float, got {type(exponent).__name__}")
        return F.Pow.apply(self, float(exponent))

    def __matmul__(self, o):
        return F.MatMul.apply(self, _t(o))

    def __rmatmul__(self, o):
        return F.MatMul.apply(_t(o), self)

    def __getitem__(self, index):
        if isinstance(index, Tensor):
            index = index.data.astype(np.int64)
        return F.GetItem.apply(self, index)

    def sum(self, axis=None, keepdims=False):
        return F.Sum.apply(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        return F.Mean.apply(self, axis, keepdims)

    def max(self, axis=None, keepdims=False):
        return F.Max.apply(self, axis, keepdims)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return F.Reshape.apply(self, shape)

    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return F.Transpose.apply(self, axes or None)

    def exp(self):
        return F.Exp.apply(self)

    def log(self):
        return F.Log.apply(self)

    def relu(self):
        return F.ReLU.apply(self)

    def log_softmax(self, axis=-1):
        return F.LogSoftmax.apply(self, axis)


def _t(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(np.asarray(x, dtype=np.float32))


def tensor(data, requires_grad: bool = False, dtype=None) -> Tensor:
    """Make a Tensor (float32 unless `data` is already a float array or `dtype` says otherwise)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)
