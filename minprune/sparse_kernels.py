"""Sparse kernels: products with pruned weights stored without their zeros.

A pruned layer is only faster if its kernel skips the zeros. Two storage formats:

* **CSR** (compressed sparse rows) for unstructured sparsity: the nonzeros of W (out, in) row
  by row, as ``values`` and their column ``indices`` (int32), with ``indptr[o]:indptr[o+1]``
  the slice of row o. A Conv2d weight is the (O, C·kh·kw) matrix ``weight.reshape(O, -1)``.
* **N:M** for structured sparsity (2:4 and friends): in every group of m consecutive inputs
  at most n weights are nonzero, so each row keeps exactly in/m·n values and, per value, its
  position inside its group (uint8) -- 1 byte of index per value instead of CSR's 4, no indptr.

The products are ``y = x @ Wᵀ + b`` (Linear, x (batch, in)) and the Conv2d forward. Each
output row o of W is one independent loop over its nonzeros, in one of two orders:

* **dot** (batch < ``_SMALL_BATCH`` = 8): y[b, o] = Σ_k values[k]·x[b, indices[k]], one
  running sum per output. With reassociation allowed (``fastmath``), LLVM vectorises this sum
  with AVX-512 gathers; on 784→300, 95% sparse, batch 1, float32: 3.5 µs, against 6.6 µs for
  four scalar sums and 7.0 µs for SciPy's CSR. Each row's values and indices are taken as
  slices indexed from 0: indexed by k = indptr[o] ... directly, Numba's negative-index check
  stayed in the loop (k could be negative, as far as LLVM knows) and the kernel ran 1.8x slower.
* **rows** (larger batches): y[:, o] = Σ_k values[k]·xᵀ[indices[k], :]: with x transposed once,
  every nonzero scales one contiguous row of the batch, a loop LLVM vectorises. Four nonzeros
  are added per pass, so y's row is loaded and stored once per four multiply-adds. On
  784→300, 95% sparse, batch 128: 0.09 ms, against 0.14 ms one nonzero per pass and 1.0 ms for
  the dot order (8 nonzeros per pass: 3-7% more, not worth the code). The kernel writes yᵀ
  (out, batch); it is returned transposed, i.e. as a Fortran-ordered (batch, out) array,
  because copying it to C order cost 0.11 ms of 0.41 ms (1024×1024, 95%), and a following
  sparse layer reads that layout without a copy. The switch at batch 8: dot's time grows with
  the batch (it reads W once per sample), rows' barely; they cross between 8 and 12 at 90-95%
  and between 4 and 8 at 50% (784→300, 1024×1024, 3136→256).

A convolution is W (O, C·kh·kw) times the patch matrix of each image, but that matrix is never
built for stride 1: its row (c, i, j) is the padded image shifted by i rows and j columns, so
each nonzero adds a shifted copy of one input plane to its output plane (**direct sparse
convolution**). Outputs are computed over the padded width Wp (a shift is then one flat offset,
(c·Hp + i)·Wp + j, and each nonzero one contiguous run of (OH-1)·Wp + OW values) and cropped to
OW. conv4's 32→32 layer, 28×28, batch 128, 90% sparse: 7.7 ms direct against 18.5 ms building
each image's patch matrix first (and 46 ms for the dense im2col + one-thread BLAS). Other
strides build the (C·kh·kw, OH·OW) patch matrix of one image at a time (it stays in cache) and
run the same rows kernel on it. The output is NCHW, bias included: no layout pass.

Measured and not kept (2-core Xeon with AVX-512, other jobs running, so ±30%):

* ``parallel=True`` with ``prange`` over output rows (Numba's workqueue layer; no BLAS inside):
  2x faster where there is a lot of work (1024×1024, 50%, batch 128: 3.2 → 1.6 ms) but each
  parallel region costs ~40 µs to start, so it lost at batch 1 (0.011 → 0.056 ms at 95%) and,
  next to a BLAS call, gained little even at batch 128 and 90-95% (0.37 vs 0.37 ms,
  1.55 vs 1.39 ms). Picking a threading layer is also a process-wide choice a library should not
  make for its user. Kernels stay serial, like ``minprune.kernels``.
* **ELL** (every row padded to the longest row, no indptr): 1.1-1.4x faster than the first,
  scalar CSR dot kernel at batch 1 (a fixed trip count per row) but about 2x slower than the
  vectorised one above (1024×1024, 90%: 42 vs 22 µs), and 0-20% slower than CSR at batch 128
  (the padding is multiplied too). One format less to read.
* uint16 column indices: ≤ 10% faster than int32, only at batch 1.

Small things that were measured: the kernels read int32 indices through a uint32 view, so
Numba skips its negative-index check on x[indices[k]] (8.1 → 6.6 µs at batch 1 before the dot
kernel was vectorised); the rows kernels use ``fastmath={"contract"}`` (fused multiply-add).
N:M at batch 1 is about as fast as CSR at 50% (its 1-byte positions are read through a
group-start table); at larger batches it runs the CSR rows kernel on expanded column indices,
which costs one O(nnz) pass (~45 µs of ~950 µs for 784→300, batch 128).

Contracts as in ``minprune.kernels``: serial ``@numba.njit(cache=True)`` kernels behind thin
wrappers that validate arguments (``ValueError`` naming the argument; ``TypeError`` for a dtype
that is not float32/float64 or differs between x and W), float32 and float64, outputs allocated
by NumPy, everything runnable under ``NUMBA_DISABLE_JIT=1``. ``CSR`` and ``NM`` check their
arrays once, when built, so a product only checks its input. ``minprune.sparse_kernels_ref``
holds plain-NumPy twins that the tests compare against.
"""

from dataclasses import dataclass

import numba
import numpy as np

from .kernels import _FLOAT_DTYPES, _int_arg, _patch_offsets, _window_count, pad2d

__all__ = [
    "CSR",
    "NM",
    "to_csr",
    "to_nm",
    "csr_linear",
    "nm_linear",
    "csr_conv2d",
    "nm_conv2d",
]

# Below this batch size Linear uses the dot order, from it on the rows order (module docstring).
# E.g. 1024×1024, 90%: dot 85 / 170 / 255 µs at batch 4 / 8 / 12, rows 173 / 193 / 214 µs.
_SMALL_BATCH = 8

# Fused multiply-add (both) and reassociated sums (the dot kernels, so LLVM can vectorise them):
# results differ from x @ Wᵀ by rounding only, as BLAS's own do. No other fast-math assumption.
_CONTRACT = {"contract"}
_SUM_MATH = {"contract", "reassoc"}


# ---------------------------------------------------------------------------
# The formats
# ---------------------------------------------------------------------------


def _readonly(a):
    """A read-only view of `a`: a format's arrays must not change after they were checked."""
    view = a.view()
    view.flags.writeable = False
    return view


def _shape2(shape):
    """`shape` as a tuple of two non-negative ints."""
    if not (isinstance(shape, tuple) and len(shape) == 2
            and all(isinstance(s, (int, np.integer)) and s >= 0 for s in shape)):
        raise ValueError(f"shape must be a tuple (out, in) of two ints >= 0, got {shape!r}")
    return int(shape[0]), int(shape[1])


def _values(values, shape):
    """values as a C-contiguous float32/float64 array of `shape`."""
    values = np.asarray(values)
    if values.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"values must be float32 or float64, got dtype {values.dtype}")
    if values.shape != shape:
        raise ValueError(f"values must have shape {shape}, got {values.shape}")
    return np.ascontiguousarray(values)


@dataclass(frozen=True)
class CSR:
    """A matrix of `shape` (out, in) by its nonzeros, row by row (compressed sparse rows).

    Row o holds ``values[indptr[o]:indptr[o+1]]`` at columns ``indices[indptr[o]:indptr[o+1]]``.
    indptr: int64 (out+1,); indices: int32 (int64 if in ≥ 2³¹); values: float32/float64. The
    arrays are checked once here and kept read-only. SciPy's layout, so
    ``scipy.sparse.csr_matrix((a.values, a.indices, a.indptr), a.shape)`` is the same matrix.

    >>> a = to_csr(np.array([[0., 2., 0.], [0., 0., 0.], [1., 0., 3.]], dtype=np.float32))
    >>> a.indptr.tolist(), a.indices.tolist(), a.values.tolist(), a.nnz
    ([0, 1, 1, 3], [1, 0, 2], [2.0, 1.0, 3.0], 3)
    """

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    shape: tuple

    def __post_init__(self):
        out, n_in = _shape2(self.shape)
        indptr = np.asarray(self.indptr)
        if indptr.dtype.kind not in "iu" or indptr.shape != (out + 1,):
            raise ValueError(f"indptr must be an integer array of shape ({out + 1},), "
                             f"got {indptr.dtype} {indptr.shape}")
        indptr = indptr.astype(np.int64)
        if indptr[0] != 0 or (np.diff(indptr) < 0).any():
            raise ValueError("indptr must start at 0 and never decrease")
        nnz = int(indptr[-1])
        indices = np.asarray(self.indices)
        if indices.dtype.kind not in "iu" or indices.shape != (nnz,):
            raise ValueError(f"indices must be an integer array of shape ({nnz},) (indptr[-1]), "
                             f"got {indices.dtype} {indices.shape}")
        if nnz and (indices.min() < 0 or indices.max() >= n_in):
            raise ValueError(f"indices must lie in [0, {n_in}) (the number of columns)")
        indices = indices.astype(_index_dtype(n_in))
        values = _values(self.values, (nnz,))
        for name, a in (("indptr", indptr), ("indices", indices), ("values", values)):
            object.__setattr__(self, name, _readonly(a))
        object.__setattr__(self, "shape", (out, n_in))

    @property
    def nnz(self):
        """Number of stored values."""
        return int(self.values.shape[0])

    @property
    def dtype(self):
        return self.values.dtype

    def to_dense(self):
        """The (out, in) array this CSR stands for (stored zeros and duplicates are summed in)."""
        dense = np.zeros(self.shape, dtype=self.values.dtype)
        rows = np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))
        np.add.at(dense, (rows, self.indices), self.values)
        return dense


def _index_dtype(n_columns):
    """int32 column indices while they fit, int64 beyond (as SciPy)."""
    return np.int32 if n_columns <= np.iinfo(np.int32).max else np.int64


def _float_matrix(name, w):
    """`w` as a float32/float64 2-D array (not copied if it already is one)."""
    w = np.asarray(w)
    if w.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got dtype {w.dtype}")
    if w.ndim != 2:
        raise ValueError(f"{name} must be 2-D (out, in), got shape {w.shape}; reshape a Conv2d "
                         f"weight (O, C, kh, kw) to (O, C*kh*kw) first")
    return w


def to_csr(w):
    """The nonzeros of a 2-D float array `w` (out, in) as a ``CSR``; ``to_dense()`` gives `w` back.

    >>> w = np.array([[0., 5.], [6., 0.]])
    >>> a = to_csr(w)
    >>> a.shape, a.nnz, bool((a.to_dense() == w).all())
    ((2, 2), 2, True)
    """
    w = _float_matrix("w", w)
    rows, cols = np.nonzero(w)  # row-major order: rows come out sorted, columns sorted per row
    indptr = np.zeros(w.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=w.shape[0]), out=indptr[1:])
    return CSR(indptr, cols.astype(_index_dtype(w.shape[1])), w[rows, cols], w.shape)


@dataclass(frozen=True)
class NM:
    """An N:M sparse matrix of `shape` (out, in): at most n nonzeros in each group of m inputs.

    Row o, group g (inputs g·m ... g·m + m-1) keeps n values ``values[o, g*n:(g+1)*n]`` at
    positions ``indices[o, g*n:(g+1)*n]`` (uint8, 0 ≤ index < m) inside the group. values:
    float32/float64 (out, in/m·n). A group with fewer than n nonzeros stores zeros. The arrays
    are checked once here and kept read-only.

    >>> a = to_nm(np.array([[0., 2., 0., 3.], [4., 0., 0., 0.]]), 2, 4)
    >>> a.values.tolist(), a.indices.tolist()
    ([[2.0, 3.0], [4.0, 0.0]], [[1, 3], [0, 1]])
    """

    values: np.ndarray
    indices: np.ndarray
    n: int
    m: int
    shape: tuple

    def __post_init__(self):
        out, n_in = _shape2(self.shape)
        m = _int_arg("m", self.m, 1)
        n = _int_arg("n", self.n, 0)
        if n > m or m > 256:
            raise ValueError(f"need 0 <= n <= m <= 256 (uint8 positions), got n={n}, m={m}")
        if n_in % m:
            raise ValueError(f"m={m} must divide the number of inputs {n_in}")
        packed = (out, n_in // m * n)
        values = _values(self.values, packed)
        indices = np.asarray(self.indices)
        if indices.dtype != np.uint8 or indices.shape != packed:
            raise ValueError(f"indices must be a uint8 array of shape {packed}, "
                             f"got {indices.dtype} {indices.shape}")
        if indices.size and indices.max() >= m:
            raise ValueError(f"indices are positions inside a group and must be < m={m}")
        object.__setattr__(self, "values", _readonly(values))
        object.__setattr__(self, "indices", _readonly(np.ascontiguousarray(indices)))
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "m", m)
        object.__setattr__(self, "shape", (out, n_in))

    @property
    def dtype(self):
        return self.values.dtype

    def group_starts(self):
        """First input of each stored value's group, (t // n)·m for t < in/m·n (uint32)."""
        return (np.arange(self.values.shape[1], dtype=np.uint32) // max(self.n, 1)) * self.m

    def columns(self):
        """Column index of every stored value, (out, in/m·n) uint32: group start + position."""
        return self.group_starts() + self.indices

    def to_dense(self):
        """The (out, in) array this N:M matrix stands for."""
        dense = np.zeros(self.shape, dtype=self.values.dtype)
        rows = np.arange(self.shape[0])[:, None]
        np.add.at(dense, (rows, self.columns()), self.values)
        return dense


def to_nm(w, n, m):
    """Pack a 2-D float array `w` (out, in) that is N:M sparse along its inputs into an ``NM``.

    Every group of m consecutive inputs of a row (the reduction dimension of x @ Wᵀ) may hold
    at most n nonzeros; otherwise, or if m does not divide `in`, a ValueError names `w`.
    A group with fewer than n nonzeros is filled up with zeros taken from its first free
    positions; each group's n positions are stored in increasing order. ``to_dense()`` gives `w`
    back exactly.

    >>> w = np.array([[1., 0., 0., 2., 0., 0., 3., 0.]], dtype=np.float32)
    >>> a = to_nm(w, 2, 4)
    >>> a.values.tolist(), a.indices.tolist()
    ([[1.0, 2.0, 0.0, 3.0]], [[0, 3, 0, 2]])
    """
    w = _float_matrix("w", w)
    m = _int_arg("m", m, 1)
    n = _int_arg("n", n, 0)
    if n > m or m > 256:
        raise ValueError(f"need 0 <= n <= m <= 256 (uint8 positions), got n={n}, m={m}")
    out, n_in = w.shape
    if n_in % m:
        raise ValueError(f"w has {n_in} inputs (columns), which m={m} does not divide")
    groups = w.reshape(out, n_in // m, m)
    nonzero = groups != 0
    counts = nonzero.sum(axis=2)
    if (counts > n).any():
        o, g = np.argwhere(counts > n)[0]
        raise ValueError(f"w is not {n}:{m} sparse: row {o}, inputs {g * m}..{g * m + m - 1} "
                         f"hold {counts[o, g]} nonzeros (at most {n} allowed)")
    # A stable sort on "is zero" puts each group's nonzeros first, in column order, then its
    # zeros in column order; the first n positions are the ones to keep.
    keep = np.sort(np.argsort(~nonzero, axis=2, kind="stable")[:, :, :n], axis=2)
    packed = (out, n_in // m * n)
    values = np.take_along_axis(groups, keep, axis=2).reshape(packed)
    return NM(values, keep.astype(np.uint8).reshape(packed), n, m, (out, n_in))


# ---------------------------------------------------------------------------
# The kernels
# ---------------------------------------------------------------------------


@numba.njit(cache=True, fastmath=_CONTRACT)
def _add_scaled_rows(y, src, offsets, cols, values):
    """y += Σ_k values[k] · src[s : s + len(y)], with s = offsets[cols[k]], for all k.

    y, src: 1-D, C-contiguous; cols, values: one row of W. `offsets` maps a column of W to
    where its row of the dense operand starts inside `src` (Linear: column j meets row j of xᵀ).
    """
    L = y.shape[0]
    nnz = values.shape[0]
    k = 0
    # Four nonzeros per pass: y is loaded and stored once per four multiply-adds.
    while k + 4 <= nnz:
        v0, v1, v2, v3 = values[k], values[k + 1], values[k + 2], values[k + 3]
        s0, s1 = offsets[cols[k]], offsets[cols[k + 1]]
        s2, s3 = offsets[cols[k + 2]], offsets[cols[k + 3]]
        r0, r1, r2, r3 = src[s0:s0 + L], src[s1:s1 + L], src[s2:s2 + L], src[s3:s3 + L]
        for p in range(L):
            y[p] += (v0 * r0[p] + v1 * r1[p]) + (v2 * r2[p] + v3 * r3[p])
        k += 4
    while k < nnz:
        v0 = values[k]
        s0 = offsets[cols[k]]
        r0 = src[s0:s0 + L]
        for p in range(L):
            y[p] += v0 * r0[p]
        k += 1


@numba.njit(cache=True, fastmath=_CONTRACT)
def _csr_rows_nb(indptr, cols, values, bias, src, offsets, out):
    """The rows order: out[o, :] = bias[o] + Σ_k values[k] · src[offsets[cols[k]] : ... + L].

    out: (O, L) C-contiguous; bias: (O,) or (0,) for none. Returns out.
    """
    has_bias = bias.shape[0] > 0
    for o in range(out.shape[0]):
        y = out[o]
        y[:] = bias[o] if has_bias else 0.0
        k0, k1 = indptr[o], indptr[o + 1]
        _add_scaled_rows(y, src, offsets, cols[k0:k1], values[k0:k1])
    return out


@numba.njit(cache=True, fastmath=_SUM_MATH)
def _csr_dot_nb(x, indptr, cols, values, bias, y):
    """The dot order: y[b, o] = bias[o] + Σ_k values[k] · x[b, cols[k]]. Returns y (B, O)."""
    has_bias = bias.shape[0] > 0
    zero = y.dtype.type(0)
    for b in range(x.shape[0]):
        xb = x[b]
        for o in range(y.shape[1]):
            # Slices of the row, indexed from 0 (see the module docstring for why).
            row_values = values[indptr[o]:indptr[o + 1]]
            row_cols = cols[indptr[o]:indptr[o + 1]]
            acc = bias[o] if has_bias else zero
            for t in range(row_values.shape[0]):
                acc += row_values[t] * xb[row_cols[t]]
            y[b, o] = acc
    return y


@numba.njit(cache=True, fastmath=_SUM_MATH)
def _nm_dot_nb(x, values, positions, group_start, bias, y):
    """The dot order for N:M: y[b, o] = bias[o] + Σ_t values[o, t] · x[b, group_start[t] + positions[o, t]].

    group_start[t] = (t // n)·m, the first input of value t's group: the same for every row,
    so it is a small table (in/m·n entries) instead of a division per value.
    """
    has_bias = bias.shape[0] > 0
    zero = y.dtype.type(0)
    for b in range(x.shape[0]):
        xb = x[b]
        for o in range(y.shape[1]):
            row_values, row_positions = values[o], positions[o]
            acc = bias[o] if has_bias else zero
            for t in range(row_values.shape[0]):
                acc += row_values[t] * xb[group_start[t] + row_positions[t]]
            y[b, o] = acc
    return y


@numba.njit(cache=True)
def _patches_nb(img, kh, kw, sh, sw, OH, OW, patches):
    """The patch matrix of one image, transposed: patches[(c·kh + i)·kw + j, oh·OW + ow] =
    img[c, oh·sh + i, ow·sw + j]. img: (C, Hp, Wp). Returns patches (C·kh·kw, OH·OW)."""
    C = img.shape[0]
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                row = patches[(c * kh + i) * kw + j]
                for oh in range(OH):
                    for ow in range(OW):
                        row[oh * OW + ow] = img[c, oh * sh + i, ow * sw + j]
    return patches


@numba.njit(cache=True, fastmath=_CONTRACT)
def _sparse_conv_nb(xp, indptr, cols, values, bias, kh, kw, sh, sw, out, scratch):
    """out[n] = W · patches(xp[n]) + bias for each image n; W in CSR arrays over (O, C·kh·kw).

    xp: (N, C, Hp, Wp) padded input; out: (N, O, OH, OW). Stride 1: `scratch` (O, L) with
    L = (OH-1)·Wp + OW holds the outputs over the padded width, then cropped. Other strides:
    `scratch` (C·kh·kw, OH·OW) holds one image's patch matrix. Returns out.
    """
    N, C, Hp, Wp = xp.shape
    O, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    if sh == 1 and sw == 1:
        # Patch element (c, i, j) of the output at (oh, ow) is image element
        # (c·Hp + i)·Wp + j + (oh·Wp + ow): a fixed offset per weight column, so one
        # contiguous run of the flat image per nonzero.
        offsets = _patch_offsets(C, Hp, Wp, kh, kw)
        flat = xp.reshape(N, C * Hp * Wp)
        for n in range(N):
            _csr_rows_nb(indptr, cols, values, bias, flat[n], offsets, scratch)
            for o in range(O):
                for oh in range(OH):
                    for ow in range(OW):
                        out[n, o, oh, ow] = scratch[o, oh * Wp + ow]
    else:
        P = OH * OW
        offsets = np.arange(C * kh * kw) * P  # row k of the patch matrix starts at k·P
        for n in range(N):
            _patches_nb(xp[n], kh, kw, sh, sw, OH, OW, scratch)
            _csr_rows_nb(indptr, cols, values, bias, scratch.reshape(-1), offsets,
                         out[n].reshape(O, P))
    return out


# ---------------------------------------------------------------------------
# The products (argument checks, then one kernel)
# ---------------------------------------------------------------------------


def _check_sparse(name, w, kind):
    if not isinstance(w, kind):
        raise TypeError(f"{name} must be a {kind.__name__} (see to_{kind.__name__.lower()}), "
                        f"got {type(w).__name__}")


def _input(x, w, ndim, what):
    """x as a float array of `ndim` dims and W's dtype (any memory order)."""
    x = np.asarray(x)
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"x must be float32 or float64, got dtype {x.dtype}")
    if x.dtype != w.dtype:
        raise TypeError(f"x has dtype {x.dtype} but w has {w.dtype}; convert one of them")
    if x.ndim != ndim:
        raise ValueError(f"x must be {ndim}-D {what}, got shape {x.shape}")
    return x


def _bias(bias, w):
    """bias as a contiguous (out,) array of W's dtype, or (0,) meaning none."""
    if bias is None:
        return np.zeros(0, dtype=w.dtype)
    bias = np.ascontiguousarray(bias, dtype=w.dtype)
    if bias.shape != (w.shape[0],):
        raise ValueError(f"bias must have shape ({w.shape[0]},) (one per output), got {bias.shape}")
    return bias


def _linear_x(x, w):
    x = _input(x, w, 2, "(batch, in)")
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"x must have {w.shape[1]} columns (w's inputs), got shape {x.shape}")
    return x


def _unsigned(indices):
    """The same index bits as unsigned: Numba then skips its negative-index check (all ≥ 0)."""
    return indices.view(np.uint32 if indices.dtype == np.int32 else np.uint64)


def _rows_product(x, indptr, cols, values, bias, out_features):
    """x @ Wᵀ + bias by the rows order: (W · xᵀ)ᵀ, returned as a Fortran-ordered view."""
    xT = np.ascontiguousarray(x.T)  # free when x is itself a transposed C array
    B = x.shape[0]
    offsets = np.arange(x.shape[1], dtype=np.int64) * B  # row j of xᵀ starts at j·B
    yT = np.empty((out_features, B), dtype=x.dtype)
    _csr_rows_nb(indptr, cols, values, bias, xT.reshape(-1), offsets, yT)
    return yT.T


def csr_linear(x, w, bias=None):
    """y = x @ Wᵀ + bias for a CSR `w` (out, in) and x (batch, in) of the same float dtype.

    Batch < 8 uses the dot order and returns a C-ordered y; larger batches use the rows order
    and return y as the transpose of a C-ordered (out, batch) array (see the module docstring).

    >>> w = np.array([[0., 2., 0.], [1., 0., 3.]], dtype=np.float32)
    >>> x = np.array([[1., 1., 1.], [1., 2., 3.]], dtype=np.float32)
    >>> csr_linear(x, to_csr(w), bias=np.array([0.5, 0.], dtype=np.float32)).tolist()
    [[2.5, 4.0], [4.5, 10.0]]
    """
    _check_sparse("w", w, CSR)
    x = _linear_x(x, w)
    bias = _bias(bias, w)
    cols = _unsigned(w.indices)
    if x.shape[0] < _SMALL_BATCH:
        y = np.empty((x.shape[0], w.shape[0]), dtype=x.dtype)
        return _csr_dot_nb(np.ascontiguousarray(x), w.indptr, cols, w.values, bias, y)
    return _rows_product(x, w.indptr, cols, w.values, bias, w.shape[0])


def _nm_as_csr_arrays(w):
    """(indptr, columns, values) of an NM matrix, for the kernels shared with CSR (O(nnz))."""
    per_row = w.values.shape[1]
    indptr = np.arange(w.shape[0] + 1, dtype=np.int64) * per_row
    # read-only like CSR's arrays, so Numba compiles one specialisation for both
    return indptr, _readonly(w.columns().reshape(-1)), w.values.reshape(-1)


def nm_linear(x, w, bias=None):
    """y = x @ Wᵀ + bias for an N:M packed `w` (out, in) and x (batch, in) of the same dtype.

    Batch < 8: a dot kernel reading the uint8 positions directly. Larger batches: the CSR rows
    kernel on the expanded column indices (one O(nnz) pass, small next to the O(nnz·batch)
    product); y as in ``csr_linear``.

    >>> w = np.array([[1., 0., 0., 2.]], dtype=np.float32)
    >>> nm_linear(np.ones((1, 4), np.float32), to_nm(w, 2, 4)).tolist()
    [[3.0]]
    """
    _check_sparse("w", w, NM)
    x = _linear_x(x, w)
    bias = _bias(bias, w)
    if x.shape[0] < _SMALL_BATCH:
        y = np.empty((x.shape[0], w.shape[0]), dtype=x.dtype)
        return _nm_dot_nb(np.ascontiguousarray(x), w.values, w.indices, w.group_starts(), bias, y)
    indptr, cols, values = _nm_as_csr_arrays(w)
    return _rows_product(x, indptr, cols, values, bias, w.shape[0])


def _conv(x, w, indptr, cols, values, kh, kw, sh, sw, ph, pw, bias):
    x = _input(x, w, 4, "(N, C, H, W)")
    kh, kw = _int_arg("kh", kh, 1), _int_arg("kw", kw, 1)
    sh, sw = _int_arg("sh", sh, 1), _int_arg("sw", sw, 1)
    ph, pw = _int_arg("ph", ph, 0), _int_arg("pw", pw, 0)
    N, C, H, W = x.shape
    if w.shape[1] != C * kh * kw:
        raise ValueError(f"w must have C*kh*kw = {C * kh * kw} columns for x {x.shape} and a "
                         f"{kh}x{kw} kernel, got shape {w.shape}")
    bias = _bias(bias, w)
    xp = pad2d(x, ph, pw)  # always a fresh C-contiguous copy
    OH = _window_count("height", H + 2 * ph, "kh", kh, sh)
    OW = _window_count("width", W + 2 * pw, "kw", kw, sw)
    if (sh, sw) == (1, 1):
        scratch = np.empty((w.shape[0], (OH - 1) * (W + 2 * pw) + OW), dtype=x.dtype)
    else:
        scratch = np.empty((C * kh * kw, OH * OW), dtype=x.dtype)
    out = np.empty((N, w.shape[0], OH, OW), dtype=x.dtype)
    return _sparse_conv_nb(xp, indptr, cols, values, bias, kh, kw, sh, sw, out, scratch)


def csr_conv2d(x, w, kh, kw, sh=1, sw=1, ph=0, pw=0, bias=None):
    """Conv2d forward with a CSR weight: x (N, C, H, W) → (N, O, OH, OW), C-contiguous.

    w: ``to_csr(weight.reshape(O, -1))``, shape (O, C·kh·kw), x's dtype. Stride (sh, sw),
    zero padding (ph, pw), optional bias (O,). Same result as im2col + ``cols @ W2dᵀ``.

    >>> w = np.zeros((1, 1, 3, 3), np.float32); w[0, 0, 1, 1] = 2.0   # 2 × the centre pixel
    >>> x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    >>> csr_conv2d(x, to_csr(w.reshape(1, -1)), 3, 3, ph=1, pw=1)[0, 0].tolist()
    [[0.0, 2.0, 4.0], [6.0, 8.0, 10.0], [12.0, 14.0, 16.0]]
    """
    _check_sparse("w", w, CSR)
    return _conv(x, w, w.indptr, _unsigned(w.indices), w.values, kh, kw, sh, sw, ph, pw, bias)


def nm_conv2d(x, w, kh, kw, sh=1, sw=1, ph=0, pw=0, bias=None):
    """Conv2d forward with an N:M weight ``to_nm(weight.reshape(O, -1), n, m)``; as csr_conv2d.

    The N:M groups run along C·kh·kw (the reduction dimension). Uses the CSR kernel on the
    expanded column indices.

    >>> w = np.zeros((1, 1, 2, 2), np.float32); w[0, 0, 0, 0] = 1.0; w[0, 0, 1, 1] = 1.0
    >>> x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    >>> nm_conv2d(x, to_nm(w.reshape(1, -1), 2, 4), 2, 2)[0, 0].tolist()
    [[4.0, 6.0], [10.0, 12.0]]
    """
    _check_sparse("w", w, NM)
    indptr, cols, values = _nm_as_csr_arrays(w)
    return _conv(x, w, indptr, cols, values, kh, kw, sh, sw, ph, pw, bias)
