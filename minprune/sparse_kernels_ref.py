"""Plain-NumPy reference twins of ``minprune.sparse_kernels``.

Same names, signatures, argument checks and results (to float rounding) as the Numba kernels,
written the most direct way so they are easy to check by eye: a format is built row by row,
and a product lets every stored nonzero (o, j, v) add v · x[:, j] to output column o. No
SciPy. The tests compare every kernel against its twin and both against ``x @ W.T``.

The formats ``CSR`` and ``NM`` are the kernels' own classes: they are data, checked once when
built, not an algorithm to re-implement. Unlike the kernels, the twins always return
C-ordered arrays.
"""

import numpy as np

from . import kernels_ref
from .sparse_kernels import (  # noqa: F401  (CSR and NM are part of this module's API too)
    CSR,
    NM,
    _bias,
    _check_sparse,
    _float_matrix,
    _index_dtype,
    _input,
    _int_arg,
    _linear_x,
)

__all__ = ["CSR", "NM", "to_csr", "to_nm", "csr_linear", "nm_linear", "csr_conv2d", "nm_conv2d"]


def to_csr(w):
    """The nonzeros of `w` (out, in) row by row: the textbook construction."""
    w = _float_matrix("w", w)
    indptr, indices, values = [0], [], []
    for row in w:
        cols = np.flatnonzero(row)
        indices.extend(cols)
        values.extend(row[cols])
        indptr.append(len(indices))
    return CSR(np.array(indptr, dtype=np.int64), np.array(indices, dtype=_index_dtype(w.shape[1])),
               np.array(values, dtype=w.dtype), w.shape)


def to_nm(w, n, m):
    """Pack `w` (out, in) group by group: each group's nonzeros, then its first zeros, n in all."""
    w = _float_matrix("w", w)
    m = _int_arg("m", m, 1)
    n = _int_arg("n", n, 0)
    if n > m or m > 256:
        raise ValueError(f"need 0 <= n <= m <= 256 (uint8 positions), got n={n}, m={m}")
    out, n_in = w.shape
    if n_in % m:
        raise ValueError(f"w has {n_in} inputs (columns), which m={m} does not divide")
    values = np.zeros((out, n_in // m * n), dtype=w.dtype)
    positions = np.zeros(values.shape, dtype=np.uint8)
    for o in range(out):
        for g in range(n_in // m):
            group = w[o, g * m:(g + 1) * m]
            nonzero = [p for p in range(m) if group[p] != 0]
            if len(nonzero) > n:
                raise ValueError(f"w is not {n}:{m} sparse: row {o}, inputs {g * m}..{g * m + m - 1} "
                                 f"hold {len(nonzero)} nonzeros (at most {n} allowed)")
            free = [p for p in range(m) if group[p] == 0]
            keep = sorted(nonzero + free[:n - len(nonzero)])
            values[o, g * n:(g + 1) * n] = group[keep]
            positions[o, g * n:(g + 1) * n] = keep
    return NM(values, positions, n, m, (out, n_in))


def _scatter_product(x, rows, cols, values, bias, out_features):
    """y[:, o] = bias[o] + Σ over stored (o, j, v) of v · x[:, j], in float64, then x's dtype."""
    y = np.zeros((out_features, x.shape[0]))
    np.add.at(y, rows, (x[:, cols].astype(np.float64) * values).T)
    if bias.size:
        y += bias[:, None]
    return np.ascontiguousarray(y.T.astype(x.dtype))


def _csr_triples(w):
    return np.repeat(np.arange(w.shape[0]), np.diff(w.indptr)), w.indices, w.values


def _nm_triples(w):
    rows = np.repeat(np.arange(w.shape[0]), w.values.shape[1])
    return rows, w.columns().reshape(-1), w.values.reshape(-1)


def csr_linear(x, w, bias=None):
    """y = x @ Wᵀ + bias, W a CSR (out, in), x (batch, in)."""
    _check_sparse("w", w, CSR)
    x = _linear_x(x, w)
    return _scatter_product(x, *_csr_triples(w), _bias(bias, w), w.shape[0])


def nm_linear(x, w, bias=None):
    """y = x @ Wᵀ + bias, W an N:M packed (out, in), x (batch, in)."""
    _check_sparse("w", w, NM)
    x = _linear_x(x, w)
    return _scatter_product(x, *_nm_triples(w), _bias(bias, w), w.shape[0])


def _conv(x, w, triples, kh, kw, sh, sw, ph, pw, bias):
    """im2col, the scatter product, back to NCHW."""
    x = _input(x, w, 4, "(N, C, H, W)")
    kh, kw = _int_arg("kh", kh, 1), _int_arg("kw", kw, 1)
    sh, sw = _int_arg("sh", sh, 1), _int_arg("sw", sw, 1)
    N, C = x.shape[:2]
    if w.shape[1] != C * kh * kw:
        raise ValueError(f"w must have C*kh*kw = {C * kh * kw} columns for x {x.shape} and a "
                         f"{kh}x{kw} kernel, got shape {w.shape}")
    bias = _bias(bias, w)
    xp = kernels_ref.pad2d(x, ph, pw)
    cols = kernels_ref.im2col(xp, kh, kw, sh, sw)  # (N*OH*OW, C*kh*kw)
    OH = (xp.shape[2] - kh) // sh + 1
    OW = (xp.shape[3] - kw) // sw + 1
    rows = _scatter_product(cols, *triples, bias, w.shape[0])  # (N*OH*OW, O)
    return np.ascontiguousarray(rows.reshape(N, OH, OW, -1).transpose(0, 3, 1, 2))


def csr_conv2d(x, w, kh, kw, sh=1, sw=1, ph=0, pw=0, bias=None):
    """Conv2d forward with a CSR weight (O, C·kh·kw): im2col, then the product."""
    _check_sparse("w", w, CSR)
    return _conv(x, w, _csr_triples(w), kh, kw, sh, sw, ph, pw, bias)


def nm_conv2d(x, w, kh, kw, sh=1, sw=1, ph=0, pw=0, bias=None):
    """Conv2d forward with an N:M weight (O, C·kh·kw): im2col, then the product."""
    _check_sparse("w", w, NM)
    return _conv(x, w, _nm_triples(w), kh, kw, sh, sw, ph, pw, bias)
