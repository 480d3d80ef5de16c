"""Numba kernels for the memory-bound parts of the engine.

Every kernel here is limited by memory traffic, not arithmetic: it moves data
(copy, gather, scatter-add, transpose, pooling windows) or makes one or two
fused elementwise passes where NumPy would make many (BatchNorm, ReLU's
backward). The arithmetic-heavy part of a convolution is left to a single BLAS
matrix multiply (``functions.Conv2d`` calls these in this order)::

    cols = im2col_padded(x, kh, kw, sh, sw, ph, pw)    # (N*OH*OW, C*kh*kw)
    rows = matmul_pooled(cols, weight.reshape(O, -1).T, "rows")  # (N*OH*OW, O)  <- BLAS
    out  = rows_to_nchw_bias(rows, bias, N, OH, OW)    # (N, O, OH, OW)

and the backward pass is the mirror image (``nchw_to_rows``, two matmuls,
``col2im_padded``), or, for stride 1, ``conv2d_backward_input_flipped``.
The speed tricks around the convolution (the reused buffers of
``WORKSPACE``, padding once before im2col, the flipped-kernel backward, the
2x2 max-pool fast path) live here too, each with the measurement behind it.

Design rules, all measured on the 2-core target machine (numbers in
``bench/bench_kernels.py`` and in the comments next to each loop):

* Kernels are serial ``@numba.njit(cache=True)``: the project's design notes
  measured ``parallel=True`` 2-25x slower on 2 cores, because Numba's
  threads fight OpenBLAS's.
* Each public function is a thin Python wrapper that validates its arguments
  (``ValueError`` naming the bad argument; ``TypeError`` for a dtype that is
  not float32/float64), makes the inputs C-contiguous, allocates the output
  with NumPy and calls the private ``_*_nb`` kernel, which only fills it.
* Outputs are allocated by NumPy, not inside the kernels, on purpose: NumPy
  asks the OS for huge pages on big allocations and Numba's allocator does
  not, so a kernel writing a fresh 115 MB im2col matrix it allocated itself
  spent most of its time in page faults (58 ms vs 25 ms for the same loop
  writing into an ``np.empty`` buffer; (128, 32, 30, 30) k=3, float32).
* Hot loops index 2-D/3-D reshaped views (e.g. an image as one row of
  C*Hp*Wp values) rather than fully flattened 1-D arrays with hand-computed
  offsets: the same loops ran 25-45% faster that way (im2col on
  (128, 1, 32, 32) k=5: 0.77 vs 1.34 ms; col2im on (128, 32, 30, 30) k=3:
  13 vs 20 ms). The comment at each loop gives the measured alternatives.
* float32 and float64 inputs are both supported; outputs keep the input
  dtype. Numba compiles one specialisation per dtype on first use and caches
  it on disk (``cache=True``), so later processes only load it.
* Everything still runs, slowly, as plain Python under ``NUMBA_DISABLE_JIT=1``.

``minprune.kernels_ref`` holds plain-NumPy twins with the same names and
signatures; the tests check every kernel against its twin.
"""

import sys
import threading

import numba
import numpy as np

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

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# Below this many channels the NCHW <-> rows transposes loop over channels
# outermost, at or above it over pixels outermost (see _rows_to_nchw_bias_nb).
_FEW_CHANNELS = 32


# ---------------------------------------------------------------------------
# Argument validation (plain Python; shared by the wrappers below)
# ---------------------------------------------------------------------------


def _float_array(name, a, ndim):
    """Return `a` as a C-contiguous float32/float64 array with `ndim` dims."""
    a = np.asarray(a)
    if a.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got dtype {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    return np.ascontiguousarray(a)


def _int_arg(name, value, minimum):
    """Return `value` as a Python int, checking it is an integer >= minimum."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _window_count(size_name, size, k_name, k, stride):
    """Number of valid window positions along one axis (no padding)."""
    if k > size:
        raise ValueError(f"{k_name}={k} is larger than the input {size_name}={size}")
    return (size - k) // stride + 1


# ---------------------------------------------------------------------------
# pad2d
# ---------------------------------------------------------------------------


def pad2d(x, ph, pw):
    """Zero-padded copy of x: (N, C, H, W) -> (N, C, H + 2*ph, W + 2*pw).

    x: float32/float64. Always returns a new C-contiguous array of x's dtype
    (a plain copy when ph == pw == 0).

    Not a Numba kernel, by measurement: ``np.zeros`` (lazily zeroed pages)
    plus one slice assignment beat both ``np.pad`` and every Numba loop tried
    (on (128, 32, 28, 28) float32 with ph = pw = 1: 0.7 ms vs 1.0 ms for
    np.pad and 2.3 ms for a write-once Numba loop).
    """
    x = _float_array("x", x, 4)
    ph = _int_arg("ph", ph, 0)
    pw = _int_arg("pw", pw, 0)
    N, C, H, W = x.shape
    out = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=x.dtype)
    out[:, :, ph : ph + H, pw : pw + W] = x
    return out


# ---------------------------------------------------------------------------
# im2col / col2im
# ---------------------------------------------------------------------------


@numba.njit(cache=True)
def _patch_offsets(C, Hp, Wp, kh, kw):
    """Flat offset of every patch element (c, i, j) from the patch's corner.

    Returns int64 (C*kh*kw,) with off[c*kh*kw + i*kw + j] = (c*Hp + i)*Wp + j,
    i.e. the distance inside one (C, Hp, Wp) image from xp[n, 0, h0, w0] to
    xp[n, c, h0 + i, w0 + j].
    """
    off = np.empty(C * kh * kw, dtype=np.int64)
    k = 0
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                off[k] = (c * Hp + i) * Wp + j
                k += 1
    return off


@numba.njit(cache=True)
def _im2col_nb(xp, kh, kw, sh, sw, cols):
    """Fill `cols` with every (kh, kw) window of xp, one window per row.

    xp: (N, C, Hp, Wp) float32/float64, C-contiguous, already padded.
    cols: (N*OH*OW, C*kh*kw) C-contiguous output of xp's dtype, with
    OH = (Hp-kh)//sh + 1 and OW = (Wp-kw)//sw + 1. Sets
        cols[n*OH*OW + oh*OW + ow, c*kh*kw + i*kw + j] = xp[n, c, oh*sh + i, ow*sw + j]
    and returns cols.
    """
    N, C, Hp, Wp = xp.shape
    K = C * kh * kw
    OH = (Hp - kh) // sh + 1
    OW = (Wp - kw) // sw + 1
    off = _patch_offsets(C, Hp, Wp, kh, kw)
    img = xp.reshape(N, C * Hp * Wp)  # one row per image
    patches = cols.reshape(N, OH * OW, K)  # cols split per image
    # Loop order n, oh, ow, then one run over the K patch elements through
    # the offset table: `cols` (the big array) is written strictly
    # sequentially and the reads gather from one image, which stays in L2.
    # Tried on all benchmark shapes: nested (c, i, j) loops in the same
    # order, the input-sequential order (n, c, i, j, oh, ow), a row-band
    # order (n, oh, c, i, ow, j) and this loop on flat 1-D arrays; this was
    # fastest everywhere, e.g. (128, 32, 30, 30) k=3 float32: 18 ms vs
    # 37 / 31 / 45 / 25 ms (PyTorch's unfold, 1 thread: 72 ms).
    for n in range(N):
        for oh in range(OH):
            for ow in range(OW):
                corner = oh * sh * Wp + ow * sw
                r = oh * OW + ow
                for k in range(K):
                    patches[n, r, k] = img[n, corner + off[k]]
    return cols


def im2col(xp, kh, kw, sh, sw, out=None):
    """Unfold an already-padded input into a patch matrix.

    xp: (N, C, Hp, Wp) float32/float64. kh, kw: kernel size; sh, sw: stride.
    Returns cols (N*OH*OW, C*kh*kw), OH = (Hp-kh)//sh + 1, OW = (Wp-kw)//sw + 1,
    row index n*OH*OW + oh*OW + ow, column index c*kh*kw + i*kw + j, value
    xp[n, c, oh*sh + i, ow*sw + j]. Convolution forward is then
    ``cols @ weight.reshape(O, -1).T``. `out`: optional C-contiguous array of
    that shape and xp's dtype to fill instead of allocating (every entry is
    overwritten), so a caller can reuse one big buffer across calls.
    """
    xp = _float_array("xp", xp, 4)
    kh = _int_arg("kh", kh, 1)
    kw = _int_arg("kw", kw, 1)
    sh = _int_arg("sh", sh, 1)
    sw = _int_arg("sw", sw, 1)
    N, C, Hp, Wp = xp.shape
    OH = _window_count("height", Hp, "kh", kh, sh)
    OW = _window_count("width", Wp, "kw", kw, sw)
    shape = (N * OH * OW, C * kh * kw)
    if out is None:
        out = np.empty(shape, dtype=xp.dtype)
    elif not (isinstance(out, np.ndarray) and out.shape == shape and out.dtype == xp.dtype
              and out.flags.c_contiguous and out.flags.writeable):
        raise ValueError(f"out must be a writeable C-contiguous {xp.dtype} array of shape {shape}")
    return _im2col_nb(xp, kh, kw, sh, sw, out)


@numba.njit(cache=True)
def _col2im_nb(cols, kh, kw, sh, sw, out):
    """Scatter-add a patch matrix onto a zeroed image (adjoint of _im2col_nb).

    cols: (N*OH*OW, C*kh*kw) float32/float64, C-contiguous.
    out: (N, C, Hp, Wp) C-contiguous, same dtype, all zeros on entry, with
    OH = (Hp-kh)//sh + 1 and OW = (Wp-kw)//sw + 1. Adds
        out[n, c, oh*sh + i, ow*sw + j] += cols[n*OH*OW + oh*OW + ow, c*kh*kw + i*kw + j]
    for every (oh, ow, i, j) and returns out.
    """
    N, C, Hp, Wp = out.shape
    K = C * kh * kw
    OH = (Hp - kh) // sh + 1
    OW = (Wp - kw) // sw + 1
    off = _patch_offsets(C, Hp, Wp, kh, kw)
    img = out.reshape(N, C * Hp * Wp)  # one row per image
    # Mirror of _im2col_nb: `cols` is read strictly sequentially and the
    # scatter target (one image, C*Hp*Wp elements) stays in cache. Fastest
    # on 7 of the 8 benchmark cases (float32 and float64); the input-major
    # order (n, c, i, j, oh, ow) won only on (128, 64, 16, 16) k=3 float32
    # (12.5 vs 13.1 ms) and lost elsewhere (23 vs 13 ms on
    # (128, 32, 30, 30) k=3; PyTorch's fold, 1 thread: 24 ms).
    r = 0
    for n in range(N):
        for oh in range(OH):
            for ow in range(OW):
                corner = oh * sh * Wp + ow * sw
                for k in range(K):
                    img[n, corner + off[k]] += cols[r, k]
                r += 1
    return out


def col2im(cols, N, C, Hp, Wp, kh, kw, sh, sw):
    """Adjoint of im2col: scatter-add cols (N*OH*OW, C*kh*kw) into (N, C, Hp, Wp).

    cols: float32/float64. The result is in *padded* coordinates; the caller
    crops the padding. Satisfies <im2col(x), cols> == <x, col2im(cols, ...)>.
    """
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
    out = np.zeros((N, C, Hp, Wp), dtype=cols.dtype)
    return _col2im_nb(cols, kh, kw, sh, sw, out)


# ---------------------------------------------------------------------------
# Layout changes between the matmul's (rows, O) and NCHW
# ---------------------------------------------------------------------------


@numba.njit(cache=True)
def _rows_to_nchw_bias_nb(out2d, bias, out):
    """Transpose matmul rows to NCHW and add a per-channel bias, in one pass.

    out2d: (N*OH*OW, O) float32/float64, C-contiguous.
    bias: (O,) of the same dtype, or shape (0,) meaning "no bias".
    out: (N, O, OH, OW) C-contiguous output of the same dtype. Sets
        out[n, o, oh, ow] = out2d[n*OH*OW + oh*OW + ow, o] + bias[o]
    and returns out.
    """
    N, O, OH, OW = out.shape
    P = OH * OW
    has_bias = bias.shape[0] > 0
    src = out2d.reshape(N, P, O)
    dst = out.reshape(N, O, P)
    if O < _FEW_CHANNELS:
        # Few channels: channel-outer, so each inner loop writes one long
        # contiguous output plane (the strided reads of a (P, O) block with
        # small O stay in L1). LeNet conv1 (N=128, O=6, 28x28, float32):
        # 0.10 ms vs 0.20 ms pixel-outer (PyTorch, 1 thread: 0.46 ms).
        for n in range(N):
            for o in range(O):
                b = bias[o] if has_bias else 0.0
                for p in range(P):
                    dst[n, o, p] = src[n, p, o] + b
    else:
        # Many channels: pixel-outer, so the inner loop reads one contiguous
        # row of O values: (128, 32, 28, 28) float32 1.5 ms vs 2.1 ms
        # channel-outer. Cache-blocked tilings were tried and were slower
        # than both.
        for n in range(N):
            for p in range(P):
                for o in range(O):
                    b = bias[o] if has_bias else 0.0
                    dst[n, o, p] = src[n, p, o] + b
    return out


def rows_to_nchw_bias(out2d, bias, N, OH, OW):
    """(N*OH*OW, O) matmul output -> (N, O, OH, OW) C-contiguous, plus bias.

    out2d: float32/float64. bias: None or a zero-length array means "no
    bias"; otherwise shape (O,) (cast to out2d's dtype if it differs).
    """
    out2d = _float_array("out2d", out2d, 2)
    N = _int_arg("N", N, 0)
    OH = _int_arg("OH", OH, 1)
    OW = _int_arg("OW", OW, 1)
    if out2d.shape[0] != N * OH * OW:
        raise ValueError(f"out2d must have N*OH*OW = {N * OH * OW} rows, got {out2d.shape[0]}")
    O = out2d.shape[1]
    if bias is None:
        bias = np.zeros(0, dtype=out2d.dtype)
    else:
        bias = np.ascontiguousarray(bias, dtype=out2d.dtype)
        if bias.shape not in ((O,), (0,)):
            raise ValueError(f"bias must have shape ({O},) or (0,), got {bias.shape}")
    out = np.empty((N, O, OH, OW), dtype=out2d.dtype)
    return _rows_to_nchw_bias_nb(out2d, bias, out)


@numba.njit(cache=True)
def _nchw_to_rows_nb(g, rows):
    """Transpose (N, O, OH, OW) to (N*OH*OW, O).

    g: float32/float64, C-contiguous. rows: (N*OH*OW, O) C-contiguous output
    of the same dtype. Sets rows[n*OH*OW + oh*OW + ow, o] = g[n, o, oh, ow]
    and returns rows.
    """
    N, O, OH, OW = g.shape
    P = OH * OW
    src = g.reshape(N, O, P)
    dst = rows.reshape(N, P, O)
    # Same split as _rows_to_nchw_bias_nb and for the same measured reasons:
    # long contiguous inner runs over the plane when O is small (0.09 vs
    # 0.23 ms, O=6, 28x28), over the O channels of one row when O is large
    # (1.5 vs 2.7 ms, O=32, 28x28; N=128, float32).
    if O < _FEW_CHANNELS:
        for n in range(N):
            for o in range(O):
                for p in range(P):
                    dst[n, p, o] = src[n, o, p]
    else:
        for n in range(N):
            for p in range(P):
                for o in range(O):
                    dst[n, p, o] = src[n, o, p]
    return rows


def nchw_to_rows(g):
    """(N, O, OH, OW) -> (N*OH*OW, O) C-contiguous (backward of rows_to_nchw_bias).

    g: float32/float64.
    """
    g = _float_array("g", g, 4)
    N, O, OH, OW = g.shape
    rows = np.empty((N * OH * OW, O), dtype=g.dtype)
    return _nchw_to_rows_nb(g, rows)


# ---------------------------------------------------------------------------
# Convolution: the steps functions.Conv2d calls, and the measured tricks inside them
# ---------------------------------------------------------------------------


class Workspace:
    """Big scratch arrays reused across calls instead of freshly allocated every time.

    Why: a fresh array of many MB is new memory from the OS, and the kernel must fault in and
    zero every page the first time it is written. In a conv4 training step (batch 128) that was
    53-526 ms of *system* time per step on top of ~300 ms of user time (getrusage, 2-core VM):
    the im2col matrix and the backward's dcols are 115 MB each for the 32->32 layer. Reusing
    the padded input, the im2col matrix, the matmul output and dcols took the 1-thread CPU time
    of a conv4 step from 548 to 324 ms (bench/README.md, "Engine").

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


WORKSPACE = Workspace()


def im2col_padded(x, kh, kw, sh, sw, ph, pw):
    """im2col of x zero-padded by (ph, pw) on each side: (N, C, H, W) -> (N*OH*OW, C*kh*kw).

    x: float32/float64. OH = (H + 2*ph - kh)//sh + 1, OW likewise; layout as in `im2col`.
    The padded copy and the patch matrix are WORKSPACE buffers (tags ("pad", ph, pw) and
    "cols"), so the result may be handed out again once nothing refers to it.

    Padding once, then unfolding a plain array, roughly halved im2col time for a 1-channel
    5x5 conv (DESIGN.md, "The engine"). The pad buffer is zeroed only when first allocated:
    later calls write just the interior, so its border stays 0 (`pad2d` times the copy).
    """
    x = _float_array("x", x, 4)
    kh, kw = _int_arg("kh", kh, 1), _int_arg("kw", kw, 1)
    sh, sw = _int_arg("sh", sh, 1), _int_arg("sw", sw, 1)
    ph, pw = _int_arg("ph", ph, 0), _int_arg("pw", pw, 0)
    N, C, H, W = x.shape
    OH = _window_count("height", H + 2 * ph, "kh", kh, sh)
    OW = _window_count("width", W + 2 * pw, "kw", kw, sw)
    xp = x
    if ph or pw:
        # the key holds the padding: a same-shaped buffer with another interior stays apart
        xp = WORKSPACE.get(("pad", ph, pw), (N, C, H + 2 * ph, W + 2 * pw), x.dtype, zeros=True)
        xp[:, :, ph:ph + H, pw:pw + W] = x
    return im2col(xp, kh, kw, sh, sw, out=WORKSPACE.get("cols", (N * OH * OW, C * kh * kw), x.dtype))


def matmul_pooled(a, b, tag):
    """a @ b for 2-D a (M, K) and b (K, O), written into the WORKSPACE buffer `tag`.

    The result dtype follows NumPy's promotion (float32 a with float64 b gives float64). This is
    the convolution's one BLAS call, where its multiply-adds are; the pooled output saves the
    page faults of a fresh (N*OH*OW, O) array every call (see `Workspace`).
    """
    if np.ndim(a) != 2 or np.ndim(b) != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"a and b must be 2-D with a.shape[1] == b.shape[0], "
                         f"got {np.shape(a)} and {np.shape(b)}")
    out = WORKSPACE.get(tag, (a.shape[0], b.shape[1]), np.result_type(a, b))
    return np.matmul(a, b, out=out)


def col2im_padded(cols, x_shape, kh, kw, sh, sw, ph, pw):
    """Adjoint of im2col_padded: scatter-add cols into the padded image, then drop the padding.

    cols: (N*OH*OW, C*kh*kw) float32/float64; x_shape: the unpadded (N, C, H, W). Returns
    (N, C, H, W) of cols' dtype (a view into the padded result when there is padding).
    """
    N, C, H, W = x_shape
    ph, pw = _int_arg("ph", ph, 0), _int_arg("pw", pw, 0)
    dxp = col2im(cols, N, C, H + 2 * ph, W + 2 * pw, kh, kw, sh, sw)
    return dxp[:, :, ph:ph + H, pw:pw + W]


def use_flipped_backward(w_shape, stride, padding):
    """Whether conv2d_backward_input_flipped applies (stride 1, padding < kernel) and pays (O <= C).

    It pays when the layer does not widen: conv4's 64->64 backward 41 -> 30 ms and its 32->32
    one 49 -> 42 ms against dcols + col2im_padded (bench/README.md, "Engine"), because im2col
    writes its matrix in order where col2im scatter-adds.
    """
    O, C, kh, kw = w_shape
    return tuple(stride) == (1, 1) and O <= C and padding[0] < kh and padding[1] < kw


def conv2d_backward_input_flipped(g, w, ph, pw):
    """dL/dx of a stride-1 convolution, computed as a convolution itself.

    g: (N, O, OH, OW) gradient of the output; w: (O, C, kh, kw); (ph, pw) < (kh, kw): the
    forward's padding. dL/dx is g convolved with the kernel flipped in space and its in/out
    channels swapped, padded by k-1-p; this returns it, (N, C, H, W), in the result dtype of
    g and w. The same numbers as col2im_padded(nchw_to_rows(g) @ W2d, ...), faster where
    `use_flipped_backward` says so.
    """
    g, w, ph, pw = _flipped_backward_args(g, w, ph, pw)
    N, O, OH, OW = g.shape
    C, kh, kw = w.shape[1:]
    w_flip = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (C, O, kh, kw)
    cols = im2col_padded(g, kh, kw, 1, 1, kh - 1 - ph, kw - 1 - pw)
    rows = matmul_pooled(cols, w_flip.reshape(C, -1).T, "rows")
    return rows_to_nchw_bias(rows, None, N, OH + kh - 1 - 2 * ph, OW + kw - 1 - 2 * pw)


def _flipped_backward_args(g, w, ph, pw):
    """g (N, O, OH, OW) and w (O, C, kh, kw) as float arrays, and a padding smaller than the kernel."""
    g, w = _float_array("g", g, 4), _float_array("w", w, 4)
    if w.shape[0] != g.shape[1]:
        raise ValueError(f"w must have g's {g.shape[1]} output channels first, got shape {w.shape}")
    ph, pw = _int_arg("ph", ph, 0), _int_arg("pw", pw, 0)
    if ph >= w.shape[2] or pw >= w.shape[3]:
        raise ValueError(f"ph, pw must be smaller than the kernel {w.shape[2:]}, got {(ph, pw)}")
    return g, w, ph, pw


# ---------------------------------------------------------------------------
# Max pooling
# ---------------------------------------------------------------------------


@numba.njit(cache=True)
def _maxpool2d_forward_nb(x, kh, kw, sh, sw, out, argmax):
    """Max over each (kh, kw) window of x, without padding.

    x: (N, C, H, W) float32/float64, C-contiguous.
    out: (N, C, OH, OW) output of x's dtype; argmax: (N, C, OH, OW) int32
    output; OH = (H-kh)//sh + 1, OW = (W-kw)//sw + 1. Sets out to the window
    maxima and argmax to the flat index h*W + w of each winner inside its own
    (H, W) plane. Ties pick the first element in row-major window order; a
    NaN wins (the first NaN), matching np.argmax. Returns (out, argmax).
    """
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    # Plain 4-D indexing, one window at a time: as fast as a flat-index
    # version (6.1 vs 6.5 ms) and much faster than sweeping each window
    # offset across a whole output row (11 ms), on (128, 32, 28, 28) 2x2/2
    # float32. PyTorch's max_pool2d with indices took 6.6 ms.
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                h0 = oh * sh
                for ow in range(OW):
                    w0 = ow * sw
                    best = x[n, c, h0, w0]
                    best_idx = h0 * W + w0
                    for i in range(kh):
                        for j in range(kw):
                            v = x[n, c, h0 + i, w0 + j]
                            # `best == best` is false only for NaN: once a
                            # NaN is chosen it sticks, and a NaN beats any
                            # number.
                            if best == best and (v > best or v != v):
                                best = v
                                best_idx = (h0 + i) * W + w0 + j
                    out[n, c, oh, ow] = best
                    argmax[n, c, oh, ow] = best_idx
    return out, argmax


@numba.njit(cache=True)
def _maxpool2x2_forward_nb(x, out, argmax):
    """_maxpool2d_forward_nb for the common 2x2 window with stride 2, the same results.

    Why a special case: with kh, kw known to be 2 the four comparisons are written out and
    become branch-free selects that LLVM vectorises, 5-6x faster than the general loop
    ((128, 32, 28, 28) float32: 1.1 vs 6.1 ms; PyTorch with indices: 6.6 ms). The window
    a b / c d is reduced as max(max(a, b), max(c, d)); each max keeps its left operand on ties
    and takes a NaN unless the left operand is already NaN, which is exactly "the first maximum
    (or first NaN) in row-major window order".
    """
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    planes = x.reshape(N * C, H, W)
    o = out.reshape(N * C, OH, OW)
    am = argmax.reshape(N * C, OH, OW)
    for pl in range(N * C):
        for oh in range(OH):
            top = planes[pl, 2 * oh]
            bottom = planes[pl, 2 * oh + 1]
            for ow in range(OW):
                a, b = top[2 * ow], top[2 * ow + 1]
                c, d = bottom[2 * ow], bottom[2 * ow + 1]
                right = (a == a) & ((b > a) | (b != b))       # b beats a
                ab, kab = (b, 1) if right else (a, 0)
                right = (c == c) & ((d > c) | (d != d))       # d beats c
                cd, kcd = (d, W + 1) if right else (c, W)
                lower = (ab == ab) & ((cd > ab) | (cd != cd))  # the bottom pair beats the top
                o[pl, oh, ow] = cd if lower else ab
                am[pl, oh, ow] = 2 * oh * W + 2 * ow + (kcd if lower else kab)
    return out, argmax


def maxpool2d_forward(x, kh, kw, sh, sw):
    """Max pooling without padding: (N, C, H, W) -> (out, argmax), both (N, C, OH, OW).

    x: float32/float64. OH = (H-kh)//sh + 1, OW = (W-kw)//sw + 1. argmax is
    int32, the flat index h*W + w into each (H, W) plane (not into the whole
    of x). Ties pick the lowest window position; NaN propagates.
    """
    x = _float_array("x", x, 4)
    kh = _int_arg("kh", kh, 1)
    kw = _int_arg("kw", kw, 1)
    sh = _int_arg("sh", sh, 1)
    sw = _int_arg("sw", sw, 1)
    N, C, H, W = x.shape
    OH = _window_count("H", H, "kh", kh, sh)
    OW = _window_count("W", W, "kw", kw, sw)
    out = np.empty((N, C, OH, OW), dtype=x.dtype)
    argmax = np.empty((N, C, OH, OW), dtype=np.int32)
    if kh == kw == sh == sw == 2:
        return _maxpool2x2_forward_nb(x, out, argmax)
    return _maxpool2d_forward_nb(x, kh, kw, sh, sw, out, argmax)


@numba.njit(cache=True)
def _maxpool2d_backward_nb(grad_out, argmax, grad_x):
    """Route each output gradient to the input element that won the max.

    grad_out: (N, C, OH, OW) float32/float64, C-contiguous; argmax: same
    shape, integer, flat index into each (H, W) plane; grad_x: (N, C, H, W)
    of grad_out's dtype, all zeros on entry. Adds
        grad_x[n, c].flat[argmax[n, c, oh, ow]] += grad_out[n, c, oh, ow]
    (scatter-*add*: overlapping windows that share a winner sum up) and
    returns grad_x. Raises ValueError if an index is outside [0, H*W).
    """
    N, C, H, W = grad_x.shape
    HW = H * W
    P = grad_out.shape[2] * grad_out.shape[3]
    g = grad_out.reshape(N * C, P)
    a = argmax.reshape(N * C, P)
    gx = grad_x.reshape(N * C, HW)
    # One row per (n, c) plane, so the stored plane index is used as is, with
    # no a // W, a % W split: 0.47 ms vs 2.2 ms for 4-D indexing and 0.9 ms
    # for fully flat indexing on a (128, 32, 14, 14) float32 gradient
    # (PyTorch, 1 thread: 0.73 ms).
    for plane in range(N * C):
        for q in range(P):
            idx = a[plane, q]
            # Numba does not bounds-check, so a bad index would corrupt
            # memory; this branch is never taken in practice and costs ~0.
            if idx < 0 or idx >= HW:
                raise ValueError("argmax holds an index outside [0, H*W)")
            gx[plane, idx] += g[plane, q]
    return grad_x


def maxpool2d_backward(grad_out, argmax, H, W):
    """Gradient of maxpool2d_forward: scatter-add grad_out (N, C, OH, OW) into (N, C, H, W).

    grad_out: float32/float64. argmax: the second output of
    maxpool2d_forward (integer flat index into each (H, W) plane).
    """
    grad_out = _float_array("grad_out", grad_out, 4)
    argmax = np.asarray(argmax)
    if argmax.dtype.kind not in "iu":
        raise TypeError(f"argmax must be an integer array, got dtype {argmax.dtype}")
    if argmax.shape != grad_out.shape:
        raise ValueError(f"argmax must have the shape of grad_out {grad_out.shape}, got {argmax.shape}")
    argmax = np.ascontiguousarray(argmax)
    H = _int_arg("H", H, 1)
    W = _int_arg("W", W, 1)
    N, C = grad_out.shape[:2]
    grad_x = np.zeros((N, C, H, W), dtype=grad_out.dtype)
    return _maxpool2d_backward_nb(grad_out, argmax, grad_x)


# ---------------------------------------------------------------------------
# Average pooling
# ---------------------------------------------------------------------------


@numba.njit(cache=True)
def _avgpool2d_forward_nb(x, kh, kw, sh, sw, out):
    """Mean over each (kh, kw) window of x, without padding.

    x: (N, C, H, W) float32/float64, C-contiguous. out: (N, C, OH, OW) output
    of x's dtype, OH = (H-kh)//sh + 1, OW = (W-kw)//sw + 1. Window sums are
    accumulated in float64. Returns out.
    """
    N, C = x.shape[0], x.shape[1]
    OH, OW = out.shape[2], out.shape[3]
    inv = 1.0 / (kh * kw)
    # 4-D indexing measured faster than a flat-index version here
    # (3.0 vs 3.6 ms on (128, 32, 28, 28) 2x2/2 float32; PyTorch 2.1 ms).
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                h0 = oh * sh
                for ow in range(OW):
                    w0 = ow * sw
                    acc = 0.0
                    for i in range(kh):
                        for j in range(kw):
                            acc += x[n, c, h0 + i, w0 + j]
                    out[n, c, oh, ow] = acc * inv
    return out


def avgpool2d_forward(x, kh, kw, sh, sw):
    """Average pooling without padding: (N, C, H, W) -> (N, C, OH, OW).

    x: float32/float64. OH = (H-kh)//sh + 1, OW = (W-kw)//sw + 1.
    """
    x = _float_array("x", x, 4)
    kh = _int_arg("kh", kh, 1)
    kw = _int_arg("kw", kw, 1)
    sh = _int_arg("sh", sh, 1)
    sw = _int_arg("sw", sw, 1)
    N, C, H, W = x.shape
    OH = _window_count("H", H, "kh", kh, sh)
    OW = _window_count("W", W, "kw", kw, sw)
    out = np.empty((N, C, OH, OW), dtype=x.dtype)
    return _avgpool2d_forward_nb(x, kh, kw, sh, sw, out)


@numba.njit(cache=True)
def _avgpool2d_backward_nb(grad_out, kh, kw, sh, sw, grad_x):
    """Spread each output gradient evenly over its window (scatter-add).

    grad_out: (N, C, OH, OW) float32/float64, C-contiguous. grad_x:
    (N, C, H, W) of the same dtype, all zeros on entry. Adds
        grad_x[n, c, oh*sh + i, ow*sw + j] += grad_out[n, c, oh, ow] / (kh*kw)
    and returns grad_x.
    """
    N, C, OH, OW = grad_out.shape
    inv = 1.0 / (kh * kw)
    # 4-D indexing, as in the forward (3.0 vs 4.0 ms for a flat version).
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                h0 = oh * sh
                for ow in range(OW):
                    w0 = ow * sw
                    g = grad_out[n, c, oh, ow] * inv
                    for i in range(kh):
                        for j in range(kw):
                            grad_x[n, c, h0 + i, w0 + j] += g
    return grad_x


def avgpool2d_backward(grad_out, H, W, kh, kw, sh, sw):
    """Gradient of avgpool2d_forward: (N, C, OH, OW) -> (N, C, H, W).

    grad_out: float32/float64; its spatial shape must be the (OH, OW) that
    avgpool2d_forward gives for an (H, W) input.
    """
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
    grad_x = np.zeros((N, C, H, W), dtype=grad_out.dtype)
    return _avgpool2d_backward_nb(grad_out, kh, kw, sh, sw, grad_x)


# ---------------------------------------------------------------------------
# Batch normalisation and ReLU backward: elementwise work fused into few passes
# ---------------------------------------------------------------------------
# NumPy spells BatchNorm as ~10 full passes over the activation, each with a fresh temporary
# (x - mean, * inv_std, * gamma, + beta; g * xhat, m * g, ...). On conv4 (12.8 MB per activation)
# that was 28 ms of a 220 ms training step. These kernels read x (and g) at most twice and
# write the result once; xhat is recomputed from x instead of being stored.
# Sums accumulate in float64 and may be reassociated ("reassoc"), which lets LLVM vectorise
# them; no other fast-math assumption (NaN and inf still propagate).
_SUM_MATH = {"reassoc"}


@numba.njit(cache=True, fastmath=_SUM_MATH)
def _channel_stats_nb(x, mean, var):
    """Per-channel mean and (biased) variance of x (N, C, P); two passes, float64 sums."""
    N, C, P = x.shape
    m = N * P
    for c in range(C):
        s = 0.0
        for n in range(N):
            for p in range(P):
                s += x[n, c, p]
        mu = s / m
        ss = 0.0
        for n in range(N):
            for p in range(P):
                d = x[n, c, p] - mu
                ss += d * d
        mean[c] = mu
        var[c] = ss / m
    return mean, var


def channel_stats(x):
    """Mean and biased variance of each channel of x (N, C) or (N, C, H, W), over all other axes.

    x: float32/float64. Returns (mean, var), each (C,) of x's dtype (accumulated in float64 and
    centred before squaring, so a large mean does not cancel the variance away).
    """
    x3 = _channels_view("x", x)
    mean = np.empty(x3.shape[1], dtype=x3.dtype)
    var = np.empty(x3.shape[1], dtype=x3.dtype)
    return _channel_stats_nb(x3, mean, var)


@numba.njit(cache=True)
def _batchnorm_forward_nb(x, scale, shift, out):
    """out[n, c, p] = x[n, c, p] * scale[c] + shift[c]: the whole normalisation as one multiply-add."""
    N, C, P = x.shape
    for n in range(N):
        for c in range(C):
            a = scale[c]
            b = shift[c]
            for p in range(P):
                out[n, c, p] = x[n, c, p] * a + b
    return out


def batchnorm_forward(x, mean, inv_std, gamma, beta):
    """y = γ·(x − μ)·inv_std + β per channel, for x (N, C) or (N, C, H, W).

    mean, inv_std, gamma, beta: (C,). Folded into y = x·a + b with a = γ·inv_std and
    b = β − μ·a, so x is read once and y written once. Returns y with x's shape and dtype.
    """
    x3 = _channels_view("x", x)
    mean, inv_std, gamma, beta = _per_channel(x3, mean=mean, inv_std=inv_std, gamma=gamma, beta=beta)
    scale = gamma * inv_std
    shift = beta - mean * scale
    out = np.empty(x3.shape, dtype=x3.dtype)
    return _batchnorm_forward_nb(x3, scale, shift, out).reshape(np.shape(x))


@numba.njit(cache=True, fastmath=_SUM_MATH)
def _batchnorm_backward_nb(g, x, mean, inv_std, gamma, batch_stats, dx, dgamma, dbeta):
    """Pass 1: dβ = Σg, dγ = Σg·x̂ per channel. Pass 2: dx (see batchnorm_backward)."""
    N, C, P = x.shape
    m = N * P
    for c in range(C):
        mu = mean[c]
        s = inv_std[c]
        sg = 0.0
        sgx = 0.0
        for n in range(N):
            for p in range(P):
                gv = g[n, c, p]
                sg += gv
                sgx += gv * ((x[n, c, p] - mu) * s)
        dbeta[c] = sg
        dgamma[c] = sgx
    for n in range(N):
        for c in range(C):
            mu = mean[c]
            s = inv_std[c]
            k = gamma[c] * s
            if batch_stats:
                # dx = γ·inv_std/m · (m·g − Σg − x̂·Σg·x̂)
                k = k / m
                mg = dbeta[c]
                mgx = dgamma[c]
                for p in range(P):
                    xhat = (x[n, c, p] - mu) * s
                    dx[n, c, p] = k * (m * g[n, c, p] - mg - xhat * mgx)
            else:
                for p in range(P):
                    dx[n, c, p] = k * g[n, c, p]
    return dx, dgamma, dbeta


def batchnorm_backward(g, x, mean, inv_std, gamma, batch_stats):
    """Gradients of batchnorm_forward: (dx, dγ, dβ).

    g, x: (N, C) or (N, C, H, W) of one float dtype; mean, inv_std, gamma: (C,). With
    `batch_stats` (training: μ and σ² were this batch's own, so they depend on x) the classic
    three-term formula dx = γ·inv_std/m·(m·g − Σg − x̂·Σg·x̂), m = elements per channel; without
    (eval: fixed running statistics) dx = γ·inv_std·g. dγ = Σ g·x̂, dβ = Σ g, x̂ = (x − μ)·inv_std.
    """
    g3, x3, mean, inv_std, gamma = _batchnorm_backward_args(g, x, mean, inv_std, gamma)
    C = x3.shape[1]
    dx = np.empty(x3.shape, dtype=x3.dtype)
    dgamma = np.empty(C, dtype=x3.dtype)
    dbeta = np.empty(C, dtype=x3.dtype)
    dx, dgamma, dbeta = _batchnorm_backward_nb(g3, x3, mean, inv_std, gamma, bool(batch_stats),
                                               dx, dgamma, dbeta)
    return dx.reshape(np.shape(x)), dgamma, dbeta


def _batchnorm_backward_args(g, x, mean, inv_std, gamma):
    """g and x as matching (N, C, P) arrays, then the per-channel vectors, all checked."""
    x3 = _channels_view("x", x)
    g3 = _channels_view("g", g)
    if g3.shape != x3.shape or g3.dtype != x3.dtype:
        raise ValueError(f"g must match x: shape {np.shape(x)} dtype {x3.dtype}, "
                         f"got {np.shape(g)} {g3.dtype}")
    return (g3, x3, *_per_channel(x3, mean=mean, inv_std=inv_std, gamma=gamma))


def _channels_view(name, x):
    """x (N, C) or (N, C, H, W) as a C-contiguous (N, C, P) array (P = 1 or H·W)."""
    x = np.asarray(x)
    if x.ndim not in (2, 4):
        raise ValueError(f"{name} must be 2-D (N, C) or 4-D (N, C, H, W), got shape {x.shape}")
    x = _float_array(name, x, x.ndim)
    return x.reshape(x.shape[0], x.shape[1], -1)


def _per_channel(x3, **arrays):
    """The named (C,) arrays, checked and cast to x3's dtype, in the order given."""
    C = x3.shape[1]
    out = []
    for name, a in arrays.items():
        a = np.ascontiguousarray(a, dtype=x3.dtype)
        if a.shape != (C,):
            raise ValueError(f"{name} must have shape ({C},) (one value per channel), got {a.shape}")
        out.append(a)
    return out


@numba.njit(cache=True)
def _relu_backward_nb(g, out, dx):
    for i in range(g.shape[0]):
        dx[i] = g[i] if out[i] > 0 else 0.0
    return dx


def relu_backward(g, out):
    """dx = g where the ReLU's output was positive, else 0; one pass, no boolean temporary.

    g, out: arrays of one shape and float dtype (`out` is the forward's result max(x, 0)).
    """
    g, out = _relu_backward_args(g, out)
    dx = np.empty(g.size, dtype=np.result_type(g, out))
    return _relu_backward_nb(g.reshape(-1), out.reshape(-1), dx).reshape(out.shape)


def _relu_backward_args(g, out):
    """g and out as float arrays of one shape."""
    g, out = np.asarray(g), np.asarray(out)
    if g.shape != out.shape:
        raise ValueError(f"g must have the shape of out {out.shape}, got {g.shape}")
    return _float_array("g", g, g.ndim), _float_array("out", out, out.ndim)


# ---------------------------------------------------------------------------
# N:M structured-sparsity mask
# ---------------------------------------------------------------------------


@numba.njit(cache=True)
def _nm_mask_nb(scores, n, m, mask):
    """Keep the n largest of every m consecutive scores in each row.

    scores: (R, K) float32/float64, C-contiguous, K % m == 0, no NaN.
    mask: (R, K) bool output. Sets mask[r, k] to True for exactly n entries
    of every group of m consecutive columns; ties are broken towards the
    lower column index, so the result is deterministic. Returns mask.
    """
    R, K = scores.shape
    # m is small (typically 4 or 8), so ranking each entry by counting the
    # group members that beat it (O(m^2)) is cheaper than sorting and needs
    # no scratch memory.
    for r in range(R):
        for g0 in range(0, K, m):
            for a in range(g0, g0 + m):
                sa = scores[r, a]
                rank = 0
                for b in range(g0, g0 + m):
                    sb = scores[r, b]
                    if sb > sa or (sb == sa and b < a):
                        rank += 1
                mask[r, a] = rank < n
    return mask


def nm_mask(scores2d, n, m):
    """N:M mask: in each row, keep the n largest scores of every m consecutive columns.

    scores2d: (R, K) float32/float64 with K divisible by m and no NaN;
    0 <= n <= m. Returns a bool array of the same shape with exactly n True
    per group. Ties go to the lower column index (deterministic).
    """
    scores2d = _float_array("scores2d", scores2d, 2)
    m = _int_arg("m", m, 1)
    n = _int_arg("n", n, 0)
    if n > m:
        raise ValueError(f"n must be <= m, got n={n}, m={m}")
    if scores2d.shape[1] % m != 0:
        raise ValueError(f"m={m} must divide the number of columns K={scores2d.shape[1]} of scores2d")
    if np.isnan(scores2d).any():
        raise ValueError("scores2d must not contain NaN")
    mask = np.empty(scores2d.shape, dtype=np.bool_)
    return _nm_mask_nb(scores2d, n, m, mask)
