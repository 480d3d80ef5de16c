"""Every differentiable operation, forward and backward side by side.

Each class is one op: `forward(ctx, ...)` computes on ndarrays and saves what backward needs,
`backward(ctx, grad)` returns the gradient for each Tensor input (same order as in `apply`).
Read one op at a time: the chain rule for that op is all there is.
"""
from __future__ import annotations

import sys
import threading

import numpy as np

from . import kernels as K
from .autograd import Context, Function


def promoted(a: np.ndarray) -> np.ndarray:
    """`a` in a precision the kernels compute in: float16 (or any smaller float) becomes float32,
    as NumPy's own promotion does in a Linear layer's float16 @ float32 matmul."""
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.result_type(a, np.float32))


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum `grad` back to `shape`: the adjoint of NumPy broadcasting."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


# --- arithmetic ---------------------------------------------------------------------------------
class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save(a.shape, b.shape)
        return a + b

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.saved
        return unbroadcast(g, sa), unbroadcast(g, sb)


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save(a.shape, b.shape)
        return a - b

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.saved
        return unbroadcast(g, sa), unbroadcast(-g, sb)


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        return unbroadcast(g * b, a.shape), unbroadcast(g * a, b.shape)


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save(a, b)
        return a / b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        return unbroadcast(g / b, a.shape), unbroadcast(-g * a / (b * b), b.shape)


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return -g


class Pow(Function):
    """a ** p for a constant exponent p: d/da = p · a^(p-1)."""

    @staticmethod
    def forward(ctx, a, p):
        ctx.save(a, p)
        return a ** np.asarray(p, dtype=a.dtype)

    @staticmethod
    def backward(ctx, g):
        a, p = ctx.saved
        return g * p * a ** np.asarray(p - 1, dtype=a.dtype)


class MatMul(Function):
    """a @ b (2-D, or batched with broadcasting): dA = g @ bᵀ, dB = aᵀ @ g."""

    @staticmethod
    def forward(ctx, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError("matmul: operands must have at least 1 dimension")
        ctx.save(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        a2 = a[None, :] if a.ndim == 1 else a  # treat vectors as 1×n / n×1 matrices
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g[..., None] if b.ndim == 1 else g  # re-insert the axes matmul dropped for vectors
        g2 = g2[..., None, :] if a.ndim == 1 else g2
        da = unbroadcast(g2 @ np.swapaxes(b2, -1, -2), a2.shape).reshape(a.shape)
        db = unbroadcast(np.swapaxes(a2, -1, -2) @ g2, b2.shape).reshape(b.shape)
        return da, db


# --- reductions and shape -----------------------------------------------------------------------
def _expand(g, shape, axis, keepdims):
    """Re-insert reduced axes so `g` broadcasts against the input of a reduction."""
    if axis is not None and not keepdims:
        axes = (axis,) if isinstance(axis, int) else axis
        g = np.expand_dims(g, tuple(a % len(shape) for a in axes))
    return g


class Sum(Function):
    @staticmethod
    def forward(ctx, a, axis, keepdims):
        ctx.save(a.shape, axis, keepdims)
        return np.asarray(a.sum(axis=axis, keepdims=keepdims))

    @staticmethod
    def backward(ctx, g):
        shape, axis, keepdims = ctx.saved
        return np.broadcast_to(_expand(g, shape, axis, keepdims), shape).copy()


class Mean(Function):
    @staticmethod
    def forward(ctx, a, axis, keepdims):
        out = np.asarray(a.mean(axis=axis, keepdims=keepdims))
        ctx.save(a.shape, axis, keepdims, a.size // max(out.size, 1))
        return out

    @staticmethod
    def backward(ctx, g):
        shape, axis, keepdims, count = ctx.saved
        return np.broadcast_to(_expand(g, shape, axis, keepdims) / count, shape).copy()


class Max(Function):
    """Gradient flows to the maximal entries (shared equally between ties)."""

    @staticmethod
    def forward(ctx, a, axis, keepdims):
        out = np.asarray(a.max(axis=axis, keepdims=keepdims))
        ctx.save(a, out, axis, keepdims)
        return out

    @staticmethod
    def backward(ctx, g):
        a, out, axis, keepdims = ctx.saved
        hit = a == _expand(out, a.shape, axis, keepdims)
        share = hit / hit.sum(axis=axis, keepdims=True)
        return (_expand(g, a.shape, axis, keepdims) * share).astype(a.dtype)


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.save(a.shape)
        return a.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.saved[0])


class Transpose(Function):
    @staticmethod
    def forward(ctx, a, axes):
        ctx.save(axes)
        return np.transpose(a, axes)

    @staticmethod
    def backward(ctx, g):
        (axes,) = ctx.saved
        return np.transpose(g, None if axes is None else np.argsort(axes))


class GetItem(Function):
    """a[index]: backward scatters the gradient back (adding where an index repeats)."""

    @staticmethod
    def forward(ctx, a, index):
        ctx.save(a.shape, a.dtype, index)
        return a[index]

    @staticmethod
    def backward(ctx, g):
        shape, dtype, index = ctx.saved
        out = np.zeros(shape, dtype=dtype)
        np.add.at(out, index, g)
        return out


# --- elementwise --------------------------------------------------------------------------------
class Exp(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.exp(a)
        ctx.save(out)
        return out

    @staticmethod
    def backward(ctx, g):
        return g * ctx.saved[0]


class Log(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save(a)
        return np.log(a)

    @staticmethod
    def backward(ctx, g):
        return g / ctx.saved[0]


class ReLU(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.maximum(promoted(a), 0)
        ctx.save(out)
        return out

    @staticmethod
    def backward(ctx, g):
        return K.relu_backward(g, ctx.saved[0])


class Masked(Function):
    """w where the boolean mask is True, else 0: pruned weights give 0 and get gradient 0.

    A selection, not w · mask: NaN · 0 is NaN, and a pruned weight must be 0 whatever it holds.
    The mask may broadcast against w (an output mask of shape (1, C, 1, 1) on activations)."""

    @staticmethod
    def forward(ctx, w, mask):
        ctx.save(mask)
        return np.where(mask, w, w.dtype.type(0))

    @staticmethod
    def backward(ctx, g):
        return np.where(ctx.saved[0], g, g.dtype.type(0))


# --- losses -------------------------------------------------------------------------------------
def _log_softmax(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)  # subtract the max: exp never overflows
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


class LogSoftmax(Function):
    @staticmethod
    def forward(ctx, a, axis):
        out = _log_softmax(a, axis)
        ctx.save(out, axis)
        return out

    @staticmethod
    def backward(ctx, g):
        out, axis = ctx.saved
        return g - np.exp(out) * g.sum(axis=axis, keepdims=True)


class CrossEntropy(Function):
    """mean_i [ logsumexp(z_i) − z_i[y_i] ]; gradient (softmax(z) − onehot(y)) / N. Stable for |z|≈1e4."""

    @staticmethod
    def forward(ctx, logits, targets):
        n = logits.shape[0]
        logp = _log_softmax(logits, axis=1)
        ctx.save(logp, targets)
        return np.asarray(-logp[np.arange(n), targets].mean(), dtype=logits.dtype)

    @staticmethod
    def backward(ctx, g):
        logp, targets = ctx.saved
        grad = np.exp(logp)
        grad[np.arange(len(targets)), targets] -= 1
        return grad * (g / len(targets))


# --- layers -------------------------------------------------------------------------------------
class Linear(Function):
    """y = x Wᵀ + b with W of shape (out, in), as in PyTorch."""

    @staticmethod
    def forward(ctx, x, w, b=None):
        ctx.save(x, w, b is not None)
        out = x @ w.T
        if b is not None:
            out += b
        return out

    @staticmethod
    def backward(ctx, g):
        x, w, has_b = ctx.saved
        dx = g @ w if ctx.needs_grad[0] else None
        dw = g.T @ x
        return (dx, dw, g.sum(axis=0)) if has_b else (dx, dw)


class _Workspace:
    """Big scratch arrays reused across calls instead of freshly allocated every time.

    Why: a fresh array of many MB is new memory from the OS, and the kernel must fault in and
    zero every page the first time it is written. In a conv4 training step (batch 128) that was
    50-500 ms of *system* time per step on top of ~300 ms of user time (getrusage, 2-core VM):
    the im2col matrix and the backward's dcols are 115 MB each for the 32→32 layer.

    Safe by reference counting: `get` hands out a pooled array only when the pool holds the
    sole reference to it (no Tensor, saved context or view still uses it). So an im2col matrix
    saved for a backward that has not run yet is never overwritten, however forwards and
    backwards interleave; a second array is allocated instead. Two per key cover `fit` (the
    previous step's graph is still alive while the next forward runs). Only arrays of at least
    `min_bytes` are pooled, at most `per_key` per (tag, shape, dtype) and `max_bytes` in all.

    Thread-safe: the check "only the pool holds it" and handing the array out happen under one
    lock, so two threads training at once never receive the same buffer.
    """

    def __init__(self, min_bytes=1 << 20, max_bytes=1 << 30, per_key=2):
        self.min_bytes, self.max_bytes, self.per_key = min_bytes, max_bytes, per_key
        self.pool: dict = {}
        self.nbytes = 0
        self.lock = threading.Lock()

    def get(self, tag, shape, dtype, zeros=False):
        """An array of `shape`; its contents are garbage from an earlier use (all zeros when
        freshly allocated with `zeros=True`: the pad buffer relies on its border staying 0)."""
        dtype = np.dtype(dtype)
        size = int(np.prod(shape)) * dtype.itemsize
        new = np.zeros if zeros else np.empty
        if size < self.min_bytes:
            return new(shape, dtype)
        with self.lock:
            bufs = self.pool.setdefault((tag, tuple(shape), dtype), [])
            for i in range(len(bufs)):
                if sys.getrefcount(bufs[i]) == 2:  # the list's reference and getrefcount's argument
                    return bufs[i]
            buf = new(shape, dtype)
            if len(bufs) < self.per_key and self.nbytes + size <= self.max_bytes:
                bufs.append(buf)
                self.nbytes += size
            return buf

    def clear(self):
        with self.lock:
            self.pool.clear()
            self.nbytes = 0


WORKSPACE = _Workspace()


class Conv2d(Function):
    """Convolution as im2col + one matmul.

    The Numba kernels only move memory (pad, unfold into rows of patches, fold back); the
    multiply-adds are a single BLAS call `cols @ W2dᵀ` of shape (N·OH·OW, C·kh·kw) × (C·kh·kw, O).
    Backward is the same picture transposed: dW = gᵀ·cols, dcols = g·W2d, then col2im (or, for
    stride 1, dx as a convolution of g with the flipped kernel: see backward). The padded input,
    `cols`, the matmul's output and `dcols` come from WORKSPACE (see there).
    """

    @staticmethod
    def forward(ctx, x, w, b, stride, padding):
        (sh, sw), (ph, pw) = stride, padding
        x = promoted(x)
        n, c, h, wd = x.shape
        o, _, kh, kw = w.shape
        if ph or pw:
            # Only the interior is ever written, so the zero border of a reused buffer stays 0;
            # the key includes the padding, so a same-shaped buffer with another interior is apart.
            xp = WORKSPACE.get(("pad", ph, pw), (n, c, h + 2 * ph, wd + 2 * pw), x.dtype, zeros=True)
            xp[:, :, ph:ph + h, pw:pw + wd] = x
        else:
            xp = np.ascontiguousarray(x)
        hp, wp = xp.shape[2:]
        oh, ow = (hp - kh) // sh + 1, (wp - kw) // sw + 1
        cols = K.im2col(xp, kh, kw, sh, sw,
                        out=WORKSPACE.get("cols", (n * oh * ow, c * kh * kw), x.dtype))
        w2d = w.reshape(o, -1)
        # the product's dtype follows NumPy's promotion (float32 x with float64 w stays float64)
        rows = np.matmul(cols, w2d.T, out=WORKSPACE.get("rows", (n * oh * ow, o),
                                                          np.result_type(cols, w2d)))
        bias = b if b is not None else np.zeros(0, dtype=x.dtype)
        out = K.rows_to_nchw_bias(rows, bias, n, oh, ow)
        ctx.save(cols, w2d, w.shape, (n, c, hp, wp), (sh, sw), (ph, pw), b is not None)
        return out

    @staticmethod
    def backward(ctx, g):
        cols, w2d, wshape, (n, c, hp, wp), (sh, sw), (ph, pw), has_b = ctx.saved
        g2d = K.nchw_to_rows(np.ascontiguousarray(g))
        dw = (g2d.T @ cols).reshape(wshape)
        dx = None
        o, _, kh, kw = wshape
        if ctx.needs_grad[0]:  # the first layer's input needs no gradient: skip it
            if (sh, sw) == (1, 1) and o <= c and ph < kh and pw < kw:
                # With stride 1, dL/dx is itself a convolution: of g with the kernel flipped in
                # space and its in/out channels swapped, padded by k-1-p. When O ≤ C that beats
                # dcols + col2im: im2col writes its matrix in order where col2im scatter-adds
                # (conv4 64→64 backward 41 → 32 ms).
                w_flip = w2d.reshape(wshape)[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
                dx = Conv2d.forward(Context(), g, np.ascontiguousarray(w_flip), None, (1, 1),
                                    (kh - 1 - ph, kw - 1 - pw))
            else:
                dcols = np.matmul(g2d, w2d, out=WORKSPACE.get("dcols", cols.shape,
                                                              np.result_type(g2d, w2d)))
                dxp = K.col2im(dcols, n, c, hp, wp, kh, kw, sh, sw)
                dx = dxp[:, :, ph:hp - ph, pw:wp - pw] if (ph or pw) else dxp
        # the bias gradient sums g over batch and space: on the NCHW array, whose planes are
        # contiguous, not on g2d (a narrow (N·OH·OW, O) column sum ran 10x slower)
        return (dx, dw, g.sum(axis=(0, 2, 3))) if has_b else (dx, dw)


class MaxPool2d(Function):
    @staticmethod
    def forward(ctx, x, kernel, stride):
        x = np.ascontiguousarray(promoted(x))
        out, argmax = K.maxpool2d_forward(x, kernel[0], kernel[1], stride[0], stride[1])
        ctx.save(argmax, x.shape)
        return out

    @staticmethod
    def backward(ctx, g):
        argmax, shape = ctx.saved
        return K.maxpool2d_backward(np.ascontiguousarray(g), argmax, shape[2], shape[3])


class AvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, kernel, stride):
        ctx.save(x.shape, kernel, stride)
        x = np.ascontiguousarray(promoted(x))
        return K.avgpool2d_forward(x, kernel[0], kernel[1], stride[0], stride[1])

    @staticmethod
    def backward(ctx, g):
        shape, (kh, kw), (sh, sw) = ctx.saved
        return K.avgpool2d_backward(np.ascontiguousarray(g), shape[2], shape[3], kh, kw, sh, sw)


class BatchNorm(Function):
    """y = γ·x̂ + β with x̂ = (x − μ)/√(σ² + ε) per channel, for x (N, C) or (N, C, H, W).

    The module passes μ, σ²: in training the batch's own (`batch_stats=True`, so the gradient also
    flows through them: the classic three-term formula in `kernels.batchnorm_backward`), in eval
    the running averages. The arithmetic is two fused Numba kernels; x̂ is recomputed from x in
    backward rather than stored (one activation-sized array less per layer).
    """

    @staticmethod
    def forward(ctx, x, gamma, beta, eps, mean, var, batch_stats):
        x = x.astype(np.result_type(x, gamma), copy=False)  # float64 γ (HVPs) promotes, as NumPy would
        inv_std = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
        ctx.save(x, mean, inv_std, gamma, batch_stats)
        return K.batchnorm_forward(x, mean, inv_std, gamma, beta)

    @staticmethod
    def backward(ctx, g):
        x, mean, inv_std, gamma, batch_stats = ctx.saved
        return K.batchnorm_backward(g, x, mean, inv_std, gamma, batch_stats)
