"""Plain-NumPy reference twins of ``minprune.kernels``.

Same function names, signatures, argument checks and results as the Numba
kernels, written with vectorised NumPy so they are easy to read and verify.
The tests compare every kernel against its twin; the benchmark
(``bench/bench_kernels.py``) shows how much slower these are.

Conventions shared with ``minprune.kernels``:

* Inputs are float32 or float64 (anything else is a ``TypeError``); outputs
  keep the input dtype and are C-contiguous.
* Bad shapes or sizes raise ``ValueError`` naming the argument.
* im2col layout: row ``n*OH*OW + oh*OW + ow``, column ``c*kh*kw + i*kw + j``.
* maxpool argmax: int32 flat index ``h*W + w`` into each (H, W) plane.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "pad2d",
    "im2col",
    "col2im",
    "rows_to_nchw_bias",
    "nchw_to_rows",
    "im2col_padded",
    "matmul_pooled",
    "col2im_padded",
    "conv2d_backward_input_flipped",
    "maxpool2d_forward",
    "maxpool2d_backward",
    "avgpool2d_forward",
    "avgpool2d_backward",
    "nm_mask",
    "channel_stats",
    "batchnorm_forward",
    "batchnorm_backward",
    "relu_backward",
]

# The argument checks are the kernels' own, so both raise exactly the same errors.
from .kernels import (  # noqa: E402
    _batchnorm_backward_args,
    _channels_view,
    _flipped_backward_args,
    _float_array,
    _int_arg,
    _per_channel,
    _relu_backward_args,
    _window_count,
)


def _windows(x, kh, kw, sh, sw):
    """Strided view (N, C, OH, OW, kh, kw) of every pooling/conv window of x."""
    return sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]


def pad2d(x, ph, pw):
    """Zero-padded copy of x: (N, C, H, W) -> (N, C, H + 2*ph, W + 2*pw)."""
    x = _float_array("x", x, 4)
    ph = _int_arg("ph", ph, 0)
    pw = _int_arg("pw", pw, 0)
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def im2col(xp, kh, kw, sh, sw, out=None):
    """Patch matrix (N*OH*OW, C*kh*kw) of the already-padded xp (N, C, Hp, Wp); fills `out` if given."""
    xp = _float_array("xp", xp, 4)
    kh = _int_arg("kh", kh, 1)
    kw = _int_arg("kw", kw, 1)
    sh = _int_arg("sh", sh, 1)
    sw = _int_arg("sw", sw, 1)
    _window_count("height", xp.shape[2], "kh", kh, sh)
    _window_count("width", xp.shape[3], "kw", kw, sw)
    win = _windows(xp, kh, kw, sh, sw)  # (N, C, OH, OW, kh, kw)
    N, C, OH, OW = win.shape[:4]
    # Rows are (n, oh, ow), columns (c, i, j): move C next to the kernel axes.
    # reshape of the non-contiguous transpose makes the C-contiguous copy.
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(N * OH * OW, C * kh * kw)
    if out is None:
        return cols
    if not (isinstance(out, np.ndarray) and out.shape == cols.shape and out.dtype == xp.dtype
            and out.flags.c_contiguous and out.flags.writeable):
        raise ValueError(f"out must be a writeable C-contiguous {xp.dtype} array of shape {cols.shape}")
    out[...] = cols
    return out


def col2im(cols, N, C, Hp, Wp, kh, kw, sh, sw):
    """Adjoint of im2col: scatter-add cols (N*OH*OW, C*kh*kw) into (N, C, Hp, Wp)."""
    cols = _float_array("cols", cols, 2)
    N = _int_arg("N", N, 0)
    C = _int_arg("C", C, 0)
    Hp = _int_arg("Hp", Hp, 1)
    Wp = _int_arg("Wp", Wp, 1)
    kh = _int_arg("kh", kh, 1)
    kw = _int_arg("kw", kw, 1)
    sh = _int_arg("sh", sh, 1)
    sw = _int_arg("sw", sw, 1)
    OH = _window_count("Hp", Hp, "kh", kh, sh)
    OW = _window_count("Wp", Wp, "kw", kw, sw)
    expected = (N * OH * OW, C * kh * kw)
    if cols.shape != expected:
        raise ValueError(f"cols must have shape {expected}, got {cols.shape}")
    c6 = cols.reshape(N, OH, OW, C, kh, kw).transpose(0, 3, 1, 2, 4, 5)
    out = np.zeros((N, C, Hp, Wp), dtype=cols.dtype)
    # One strided slice per kernel offset (i, j): the slices for a fixed
    # offset never overlap, so plain += is a correct scatter-add.
    for i in range(kh):
        for j in range(kw):
            out[:, :, i : i + sh * (OH - 1) + 1 : sh, j : j + sw * (OW - 1) + 1 : sw] += c6[..., i, j]
    return out


def rows_to_nchw_bias(out2d, bias, N, OH, OW):
    """(N*OH*OW, O) -> (N, O, OH, OW) contiguous, plus bias (None or (0,) = no bias)."""
    out2d = _float_array("out2d", out2d, 2)
    N = _int_arg("N", N, 0)
    OH = _int_arg("OH", OH, 1)
    OW = _int_arg("OW", OW, 1)
    if out2d.shape[0] != N * OH * OW:
        raise ValueError(f"out2d must have N*OH*OW = {N * OH * OW} rows, got {out2d.shape[0]}")
    O = out2d.shape[1]
    if bias is not None:
        bias = np.ascontiguousarray(bias, dtype=out2d.dtype)
        if bias.shape not in ((O,), (0,)):
            raise ValueError(f"bias must have shape ({O},) or (0,), got {bias.shape}")
    nchw = out2d.reshape(N, OH, OW, O).transpose(0, 3, 1, 2)
    # ufuncs keep the input's (transposed) memory order, so give them a
    # C-contiguous output buffer explicitly.
    out = np.empty((N, O, OH, OW), dtype=out2d.dtype)
    if bias is None or bias.size == 0:
        out[...] = nchw
        return out
    np.add(nchw, bias[:, None, None], out=out)
    return out


def nchw_to_rows(g):
    """(N, O, OH, OW) -> (N*OH*OW, O) contiguous."""
    g = _float_array("g", g, 4)
    N, O, OH, OW = g.shape
    return np.ascontiguousarray(g.transpose(0, 2, 3, 1).reshape(N * OH * OW, O))


def im2col_padded(x, kh, kw, sh, sw, ph, pw):
    """Patch matrix of x zero-padded by (ph, pw): im2col of pad2d, in fresh arrays."""
    return im2col(pad2d(x, ph, pw), kh, kw, sh, sw)


def matmul_pooled(a, b, tag):
    """a @ b for 2-D a and b (`tag` names the kernel's reused buffer; unused here)."""
    if np.ndim(a) != 2 or np.ndim(b) != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"a and b must be 2-D with a.shape[1] == b.shape[0], "
                         f"got {np.shape(a)} and {np.shape(b)}")
    return a @ b


def col2im_padded(cols, x_shape, kh, kw, sh, sw, ph, pw):
    """col2im onto the padded (N, C, H + 2*ph, W + 2*pw), then the (H, W) interior."""
    N, C, H, W = x_shape
    ph = _int_arg("ph", ph, 0)
    pw = _int_arg("pw", pw, 0)
    return col2im(cols, N, C, H + 2 * ph, W + 2 * pw, kh, kw, sh, sw)[:, :, ph : ph + H, pw : pw + W]


def conv2d_backward_input_flipped(g, w, ph, pw):
    """dL/dx of a stride-1 convolution the textbook way: col2im of dcols = g2d @ W2d."""
    g, w, ph, pw = _flipped_backward_args(g, w, ph, pw)
    N, O, OH, OW = g.shape
    C, kh, kw = w.shape[1:]
    dcols = nchw_to_rows(g) @ w.reshape(O, -1)
    x_shape = (N, C, OH + kh - 1 - 2 * ph, OW + kw - 1 - 2 * pw)
    return np.ascontiguousarray(col2im_padded(dcols, x_shape, kh, kw, 1, 1, ph, pw))


def maxpool2d_forward(x, kh, kw, sh, sw):
    """Max pooling without padding -> (out, argmax int32 flat index into each (H, W) plane)."""
    x = _float_array("x", x, 4)
    kh = _int_arg("kh", kh, 1)
    kw = _int_arg("kw", kw, 1)
    sh = _int_arg("sh", sh, 1)
    sw = _int_arg("sw", sw, 1)
    _window_count("H", x.shape[2], "kh", kh, sh)
    _window_count("W", x.shape[3], "kw", kw, sw)
    W = x.shape[3]
    win = _windows(x, kh, kw, sh, sw)
    N, C, OH, OW = win.shape[:4]
    flat = win.reshape(N, C, OH, OW, kh * kw)
    # np.argmax returns the first maximum (and the first NaN, if any), which
    # is the tie rule the kernel documents.
    k = flat.argmax(axis=-1)
    out = np.take_along_axis(flat, k[..., None], axis=-1)[..., 0]
    oh = np.arange(OH)[:, None]
    ow = np.arange(OW)[None, :]
    argmax = (oh * sh + k // kw) * W + ow * sw + k % kw
    return np.ascontiguousarray(out), argmax.astype(np.int32)


def maxpool2d_backward(grad_out, argmax, H, W):
    """Scatter-add grad_out (N, C, OH, OW) to the argmax positions of (N, C, H, W)."""
    grad_out = _float_array("grad_out", grad_out, 4)
    argmax = np.asarray(argmax)
    if argmax.dtype.kind not in "iu":
        raise TypeError(f"argmax must be an integer array, got dtype {argmax.dtype}")
    if argmax.shape != grad_out.shape:
        raise ValueError(f"argmax must have the shape of grad_out {grad_out.shape}, got {argmax.shape}")
    H = _int_arg("H", H, 1)
    W = _int_arg("W", W, 1)
    if argmax.size and (argmax.min() < 0 or argmax.max() >= H * W):
        raise ValueError("argmax holds an index outside [0, H*W)")
    N, C = grad_out.shape[:2]
    grad_x = np.zeros((N * C, H * W), dtype=grad_out.dtype)
    plane = np.arange(N * C)[:, None]
    # np.add.at (unlike fancy-index +=) accumulates repeated indices, which
    # happen when overlapping windows share a winner.
    np.add.at(grad_x, (plane, argmax.reshape(N * C, -1)), grad_out.reshape(N * C, -1))
    return grad_x.reshape(N, C, H, W)


def avgpool2d_forward(x, kh, kw, sh, sw):
    """Average pooling without padding: (N, C, H, W) -> (N, C, OH, OW)."""
    x = _float_array("x", x, 4)
    kh = _int_arg("kh", kh, 1)
    kw = _int_arg("kw", kw, 1)
    sh = _int_arg("sh", sh, 1)
    sw = _int_arg("sw", sw, 1)
    _window_count("H", x.shape[2], "kh", kh, sh)
    _window_count("W", x.shape[3], "kw", kw, sw)
    return _windows(x, kh, kw, sh, sw).mean(axis=(-2, -1))


def avgpool2d_backward(grad_out, H, W, kh, kw, sh, sw):
    """Gradient of avgpool2d_forward: (N, C, OH, OW) -> (N, C, H, W)."""
    grad_out = _float_array("grad_out", grad_out, 4)
    H = _int_arg("H", H, 1)
    W = _int_arg("W", W, 1)
    kh = _int_arg("kh", kh, 1)
    kw = _int_arg("kw", kw, 1)
    sh = _int_arg("sh", sh, 1)
    sw = _int_arg("sw", sw, 1)
    OH = _window_count("H", H, "kh", kh, sh)
    OW = _window_count("W", W, "kw", kw, sw)
    if grad_out.shape[2:] != (OH, OW):
        raise ValueError(
            f"grad_out must have spatial shape {(OH, OW)} for H={H}, W={W}, got {grad_out.shape[2:]}"
        )
    N, C = grad_out.shape[:2]
    g = grad_out / (kh * kw)
    grad_x = np.zeros((N, C, H, W), dtype=grad_out.dtype)
    for i in range(kh):
        for j in range(kw):
            grad_x[:, :, i : i + sh * (OH - 1) + 1 : sh, j : j + sw * (OW - 1) + 1 : sw] += g
    return grad_x


def nm_mask(scores2d, n, m):
    """Bool mask keeping the n largest of every m consecutive scores per row (ties: lower index)."""
    scores2d = _float_array("scores2d", scores2d, 2)
    m = _int_arg("m", m, 1)
    n = _int_arg("n", n, 0)
    if n > m:
        raise ValueError(f"n must be <= m, got n={n}, m={m}")
    R, K = scores2d.shape
    if K % m != 0:
        raise ValueError(f"m={m} must divide the number of columns K={K} of scores2d")
    if np.isnan(scores2d).any():
        raise ValueError("scores2d must not contain NaN")
    groups = scores2d.reshape(R, K // m, m)
    # A stable sort of the negated scores orders each group from largest to
    # smallest and keeps equal scores in index order: the tie rule.
    order = np.argsort(-groups, axis=-1, kind="stable")
    mask = np.zeros(groups.shape, dtype=bool)
    np.put_along_axis(mask, order[..., :n], True, axis=-1)
    return mask.reshape(R, K)


def channel_stats(x):
    x3 = _channels_view("x", x)
    return (x3.mean(axis=(0, 2), dtype=np.float64).astype(x3.dtype),
            x3.var(axis=(0, 2), dtype=np.float64).astype(x3.dtype))


def batchnorm_forward(x, mean, inv_std, gamma, beta):
    x3 = _channels_view("x", x)
    mean, inv_std, gamma, beta = _per_channel(x3, mean=mean, inv_std=inv_std, gamma=gamma, beta=beta)
    xhat = (x3 - mean[:, None]) * inv_std[:, None]
    return (xhat * gamma[:, None] + beta[:, None]).reshape(np.shape(x))


def batchnorm_backward(g, x, mean, inv_std, gamma, batch_stats):
    g3, x3, mean, inv_std, gamma = _batchnorm_backward_args(g, x, mean, inv_std, gamma)
    xhat = (x3 - mean[:, None]) * inv_std[:, None]
    dgamma = (g3 * xhat).sum(axis=(0, 2), dtype=np.float64)
    dbeta = g3.sum(axis=(0, 2), dtype=np.float64)
    scale = (gamma * inv_std)[:, None]
    if batch_stats:
        m = g3.shape[0] * g3.shape[2]
        dx = scale / m * (m * g3 - dbeta[:, None] - xhat * dgamma[:, None])
    else:
        dx = scale * g3
    return (dx.astype(x3.dtype).reshape(np.shape(x)), dgamma.astype(x3.dtype), dbeta.astype(x3.dtype))


def relu_backward(g, out):
    g, out = _relu_backward_args(g, out)
    return np.where(out > 0, g, 0).astype(np.result_type(g, out))
