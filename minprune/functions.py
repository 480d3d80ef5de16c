"""Every differentiable operation, forward and backward side by side.

Each class is one op: `forward(ctx, ...)` computes on ndarrays and saves what backward needs,
`backward(ctx, grad)` returns the gradient for each Tensor input (same order as in `apply`).
Read one op at a time: the chain rule for that op is all there is.
"""
from __future__ import annotations

import numpy as np

from . import kernels as K
from .autograd import Function


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


class Conv2d(Function):
    """Convolution as im2col + one matmul: out = cols @ W2dᵀ, W2d = W reshaped to (O, C·kh·kw).

    `cols` holds every (kh, kw) patch of the padded input as a row, so the multiply-adds are a
    single BLAS call of shape (N·OH·OW, C·kh·kw) × (C·kh·kw, O); the Numba kernels around it only
    move memory. Backward is the same picture transposed: dW = gᵀ·cols, dcols = g·W2d, then
    col2im folds dcols back onto the input. The kernels reuse their big buffers and, for stride
    1, may take a faster route to dx: see `kernels.py` for what each trick measured.
    """

    @staticmethod
    def forward(ctx, x, w, b, stride, padding):
        (sh, sw), (ph, pw) = stride, padding
        x = promoted(x)
        n, _, h, wd = x.shape
        o, _, kh, kw = w.shape
        oh, ow = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
        cols = K.im2col_padded(x, kh, kw, sh, sw, ph, pw)          # (N·OH·OW, C·kh·kw)
        rows = K.matmul_pooled(cols, w.reshape(o, -1).T, "rows")  # (N·OH·OW, O): all the FLOPs
        ctx.save(cols, w, x.shape, stride, padding, b is not None)
        return K.rows_to_nchw_bias(rows, b, n, oh, ow)             # (N, O, OH, OW), plus bias

    @staticmethod
    def backward(ctx, g):
        cols, w, x_shape, (sh, sw), (ph, pw), has_b = ctx.saved
        o, _, kh, kw = w.shape
        g2d = K.nchw_to_rows(g)                                   # (N·OH·OW, O)
        dw = (g2d.T @ cols).reshape(w.shape)
        dx = None
        if ctx.needs_grad[0]:  # the first layer's input needs no gradient: skip it
            if K.use_flipped_backward(w.shape, (sh, sw), (ph, pw)):
                dx = K.conv2d_backward_input_flipped(g, w, ph, pw)  # the same dx, faster
            else:
                dcols = K.matmul_pooled(g2d, w.reshape(o, -1), "dcols")
                dx = K.col2im_padded(dcols, x_shape, kh, kw, sh, sw, ph, pw)
        # the bias gradient sums g over batch and space on the NCHW array, whose planes are
        # contiguous: a narrow (N·OH·OW, O) column sum of g2d ran 10x slower
        return (dx, dw, g.sum(axis=(0, 2, 3))) if has_b else (dx, dw)


class MaxPool2d(Function):
    @staticmethod
    def forward(ctx, x, kernel, stride):
        x = promoted(x)
        out, argmax = K.maxpool2d_forward(x, kernel[0], kernel[1], stride[0], stride[1])
        ctx.save(argmax, x.shape)
        return out

    @staticmethod
    def backward(ctx, g):
        argmax, shape = ctx.saved
        return K.maxpool2d_backward(g, argmax, shape[2], shape[3])


class AvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, kernel, stride):
        ctx.save(x.shape, kernel, stride)
        return K.avgpool2d_forward(promoted(x), kernel[0], kernel[1], stride[0], stride[1])

    @staticmethod
    def backward(ctx, g):
        shape, (kh, kw), (sh, sw) = ctx.saved
        return K.avgpool2d_backward(g, shape[2], shape[3], kh, kw, sh, sw)


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
