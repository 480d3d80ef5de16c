"""Tests for minprune.sparse_kernels (Numba) against x @ W.T and minprune.sparse_kernels_ref.

Random shapes, sparsities (0, 0.5, 0.9, 0.99, 1), both float dtypes and batch sizes on both
sides of the dot/rows switch; formats round-trip exactly; N:M packing refuses what is not N:M;
bad arguments raise errors that name them, in both modules.
"""

import doctest

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import minprune.kernels_ref as kref
import minprune.sparse_kernels as nb
import minprune.sparse_kernels_ref as ref
from minprune.kernels import nm_mask

pytestmark = pytest.mark.engine

SETTINGS = settings(max_examples=30, deadline=None)
DTYPES = st.sampled_from([np.float32, np.float64])
SPARSITIES = st.sampled_from([0.0, 0.5, 0.9, 0.99, 1.0])
# Both sides of the switch between the dot kernels (small batches) and the rows kernels.
BATCHES = st.sampled_from([1, 2, nb._SMALL_BATCH - 1, nb._SMALL_BATCH, nb._SMALL_BATCH + 1, 17])
BOTH = pytest.mark.parametrize("mod", [nb, ref], ids=["numba", "numpy"])
NM_PATTERNS = st.sampled_from([(2, 4), (1, 4), (1, 2), (4, 8), (3, 4), (0, 2), (2, 2)])


def _tol(dtype):
    """Sums run in another order (and fused) than BLAS: allow float rounding, no more."""
    return {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-10}


def _randn(seed, shape, dtype):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _pruned(seed, shape, sparsity, dtype, empty_rows=0):
    """A random matrix with a `sparsity` fraction of zeros and its first `empty_rows` rows all zero."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape).astype(dtype)
    w[rng.random(shape) < sparsity] = 0
    w[:empty_rows] = 0
    return w


def _nm_sparse(seed, shape, n, m, dtype):
    """A random N:M sparse matrix, with a few more zeros so some groups hold fewer than n."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape).astype(dtype)
    w *= nm_mask(np.abs(w), n, m) if shape[1] else 1
    w[rng.random(shape) < 0.2] = 0
    return w


def _dense_conv(x, w4, bias, stride, padding):
    """Reference convolution: im2col and a dense matmul (NumPy twins only)."""
    o, c, kh, kw = w4.shape
    xp = kref.pad2d(x, *padding)
    cols = kref.im2col(xp, kh, kw, *stride)
    oh = (xp.shape[2] - kh) // stride[0] + 1
    ow = (xp.shape[3] - kw) // stride[1] + 1
    rows = cols @ w4.reshape(o, -1).T + bias
    return rows.reshape(x.shape[0], oh, ow, o).transpose(0, 3, 1, 2)


# ---------------------------------------------------------------------------
# Formats: built the same by both modules, and back to dense exactly
# ---------------------------------------------------------------------------


@SETTINGS
@given(out=st.integers(0, 9), n_in=st.integers(0, 13), sparsity=SPARSITIES, dtype=DTYPES,
       seed=st.integers(0, 2**32 - 1), empty=st.integers(0, 3))
def test_csr_round_trip_is_exact(out, n_in, sparsity, dtype, seed, empty):
    w = _pruned(seed, (out, n_in), sparsity, dtype, empty_rows=empty)
    a = nb.to_csr(w)
    back = a.to_dense()
    assert back.dtype == w.dtype
    np.testing.assert_array_equal(back, w)
    assert a.nnz == np.count_nonzero(w) and a.indices.dtype == np.int32 and a.indptr.dtype == np.int64
    b = ref.to_csr(w)
    for name in ("indptr", "indices", "values"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


@SETTINGS
@given(out=st.integers(0, 6), groups=st.integers(0, 5), pattern=NM_PATTERNS, dtype=DTYPES,
       seed=st.integers(0, 2**32 - 1))
def test_nm_round_trip_is_exact(out, groups, pattern, dtype, seed):
    n, m = pattern
    w = _nm_sparse(seed, (out, groups * m), n, m, dtype)
    a = nb.to_nm(w, n, m)
    assert a.values.shape == (out, groups * n) and a.indices.dtype == np.uint8
    np.testing.assert_array_equal(a.to_dense(), w)
    b = ref.to_nm(w, n, m)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.indices, b.indices)


@BOTH
def test_to_nm_refuses_a_matrix_that_is_not_nm_sparse(mod):
    w = np.zeros((2, 8), np.float32)
    w[1, 4:7] = 1.0  # three nonzeros in row 1's second group of four
    with pytest.raises(ValueError, match=r"w is not 2:4 sparse: row 1, inputs 4\.\.7"):
        mod.to_nm(w, 2, 4)
    assert mod.to_nm(w, 3, 4).to_dense()[1, 4:7].tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="w has 8 inputs"):
        mod.to_nm(w, 2, 3)
    with pytest.raises(ValueError, match="n <= m"):
        mod.to_nm(w, 5, 4)
    with pytest.raises(ValueError, match="w must be 2-D"):
        mod.to_nm(w.reshape(2, 2, 4), 2, 4)


@BOTH
def test_to_csr_refuses_what_is_not_a_float_matrix(mod):
    with pytest.raises(ValueError, match="w must be 2-D"):
        mod.to_csr(np.zeros((2, 3, 3, 3), np.float32))
    with pytest.raises(TypeError, match="w must be float32 or float64"):
        mod.to_csr(np.zeros((2, 3), np.int64))


def test_formats_check_their_arrays_once_and_keep_them_read_only():
    a = nb.to_csr(np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError):
        a.values[0] = 5.0
    with pytest.raises(ValueError, match="indices must lie in"):
        nb.CSR(np.array([0, 1]), np.array([3]), np.array([1.0]), (1, 3))
    with pytest.raises(ValueError, match="indptr must start at 0"):
        nb.CSR(np.array([0, 2, 1]), np.array([0, 1]), np.array([1.0, 2.0]), (2, 3))
    with pytest.raises(ValueError, match="indptr must be"):
        nb.CSR(np.array([0, 1]), np.array([0]), np.array([1.0]), (2, 3))
    with pytest.raises(TypeError, match="values must be float32"):
        nb.CSR(np.array([0, 1]), np.array([0]), np.array([1]), (1, 3))
    with pytest.raises(ValueError, match="indices are positions"):
        nb.NM(np.ones((1, 2)), np.array([[0, 4]], np.uint8), 2, 4, (1, 4))
    with pytest.raises(ValueError, match="indices must be a uint8"):
        nb.NM(np.ones((1, 2)), np.array([[0, 1]]), 2, 4, (1, 4))
    # SciPy's int32 indptr is accepted (and widened).
    b = nb.CSR(np.array([0, 1], np.int32), np.array([2], np.int32), np.array([1.0]), (1, 3))
    assert b.indptr.dtype == np.int64 and b.to_dense().tolist() == [[0.0, 0.0, 1.0]]


# ---------------------------------------------------------------------------
# Linear products
# ---------------------------------------------------------------------------


@SETTINGS
@given(out=st.integers(1, 12), n_in=st.integers(1, 40), batch=BATCHES, sparsity=SPARSITIES,
       dtype=DTYPES, seed=st.integers(0, 2**32 - 1), empty=st.integers(0, 3),
       with_bias=st.booleans())
@example(out=5, n_in=7, batch=1, sparsity=1.0, dtype=np.float32, seed=0, empty=0, with_bias=True)
@example(out=5, n_in=7, batch=9, sparsity=0.0, dtype=np.float64, seed=1, empty=0, with_bias=False)
def test_csr_linear_matches_dense_and_twin(out, n_in, batch, sparsity, dtype, seed, empty,
                                           with_bias):
    w = _pruned(seed, (out, n_in), sparsity, dtype, empty_rows=empty)
    x = _randn(seed + 1, (batch, n_in), dtype)
    bias = _randn(seed + 2, out, dtype) if with_bias else None
    expected = x @ w.T + (bias if with_bias else 0)
    got = nb.csr_linear(x, nb.to_csr(w), bias=bias)
    assert got.dtype == dtype and got.shape == (batch, out)
    np.testing.assert_allclose(got, expected, **_tol(dtype))
    np.testing.assert_allclose(ref.csr_linear(x, ref.to_csr(w), bias=bias), expected, **_tol(dtype))


@SETTINGS
@given(out=st.integers(1, 10), groups=st.integers(1, 8), pattern=NM_PATTERNS, batch=BATCHES,
       dtype=DTYPES, seed=st.integers(0, 2**32 - 1), with_bias=st.booleans())
def test_nm_linear_matches_dense_and_twin(out, groups, pattern, batch, dtype, seed, with_bias):
    n, m = pattern
    w = _nm_sparse(seed, (out, groups * m), n, m, dtype)
    x = _randn(seed + 1, (batch, groups * m), dtype)
    bias = _randn(seed + 2, out, dtype) if with_bias else None
    expected = x @ w.T + (bias if with_bias else 0)
    got = nb.nm_linear(x, nb.to_nm(w, n, m), bias=bias)
    assert got.dtype == dtype and got.shape == (batch, out)
    np.testing.assert_allclose(got, expected, **_tol(dtype))
    np.testing.assert_allclose(ref.nm_linear(x, ref.to_nm(w, n, m), bias=bias), expected,
                               **_tol(dtype))


@pytest.mark.parametrize("batch", [1, 64])
def test_realistic_layer_sizes_at_high_sparsity(batch):
    # LeNet-300-100's first layer at 90% and 2:4: long rows, many unrolled passes.
    w = _pruned(0, (300, 784), 0.9, np.float32)
    x = _randn(1, (batch, 784), np.float32)
    np.testing.assert_allclose(nb.csr_linear(x, nb.to_csr(w)), x @ w.T, rtol=1e-4, atol=1e-4)
    w24 = _nm_sparse(2, (300, 784), 2, 4, np.float32)
    np.testing.assert_allclose(nb.nm_linear(x, nb.to_nm(w24, 2, 4)), x @ w24.T,
                               rtol=1e-4, atol=1e-4)


@BOTH
def test_non_contiguous_and_transposed_inputs_give_the_same_result(mod):
    w = _pruned(3, (6, 10), 0.5, np.float64)
    a = mod.to_csr(w)
    x = _randn(4, (8, 20), np.float64)[:, ::2]  # strided columns
    expected = x @ w.T
    np.testing.assert_allclose(mod.csr_linear(x, a), expected, rtol=1e-12)
    xf = np.asfortranarray(x)
    np.testing.assert_allclose(mod.csr_linear(xf, a), expected, rtol=1e-12)
    # A layer's output feeds the next sparse layer, whatever its memory order.
    w2 = _pruned(5, (3, 6), 0.5, np.float64)
    np.testing.assert_allclose(mod.csr_linear(mod.csr_linear(x, a), mod.to_csr(w2)),
                               expected @ w2.T, rtol=1e-12)


@BOTH
def test_an_empty_batch_gives_an_empty_output(mod):
    w = _pruned(0, (4, 6), 0.5, np.float32)
    assert mod.csr_linear(np.zeros((0, 6), np.float32), mod.to_csr(w)).shape == (0, 4)
    packed = mod.to_nm(np.zeros((4, 6), np.float32), 1, 2)
    assert mod.nm_linear(np.zeros((0, 6), np.float32), packed).shape == (0, 4)


@BOTH
def test_linear_bad_arguments_are_named(mod):
    w = mod.to_csr(_pruned(0, (4, 6), 0.5, np.float32))
    x = np.zeros((2, 6), np.float32)
    with pytest.raises(ValueError, match="x must have 6 columns"):
        mod.csr_linear(np.zeros((2, 5), np.float32), w)
    with pytest.raises(ValueError, match="x must be 2-D"):
        mod.csr_linear(np.zeros(6, np.float32), w)
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        mod.csr_linear(np.zeros((2, 6), np.int32), w)
    with pytest.raises(TypeError, match="x has dtype float64 but w has float32"):
        mod.csr_linear(np.zeros((2, 6)), w)
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
        mod.csr_linear(x, w, bias=np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="w must be a CSR"):
        mod.csr_linear(x, np.zeros((4, 6), np.float32))
    with pytest.raises(TypeError, match="w must be a NM"):
        mod.nm_linear(x, w)


# ---------------------------------------------------------------------------
# Conv2d forward
# ---------------------------------------------------------------------------


@st.composite
def conv_cases(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    return {
        "N": draw(st.integers(1, 3)), "C": draw(st.integers(1, 3)), "O": draw(st.integers(1, 5)),
        "H": draw(st.integers(max(1, kh - 2 * ph), 7)), "W": draw(st.integers(max(1, kw - 2 * pw), 7)),
        "kh": kh, "kw": kw, "stride": (draw(st.integers(1, 2)), draw(st.integers(1, 2))),
        "padding": (ph, pw), "sparsity": draw(SPARSITIES), "dtype": draw(DTYPES),
        "seed": draw(st.integers(0, 2**32 - 1)), "bias": draw(st.booleans()),
    }


@SETTINGS
@given(case=conv_cases())
def test_csr_conv2d_matches_dense_and_twin(case):
    dtype, seed = case["dtype"], case["seed"]
    w4 = _pruned(seed, (case["O"], case["C"], case["kh"], case["kw"]), case["sparsity"], dtype)
    x = _randn(seed + 1, (case["N"], case["C"], case["H"], case["W"]), dtype)
    bias = _randn(seed + 2, case["O"], dtype) if case["bias"] else None
    expected = _dense_conv(x, w4, 0 if bias is None else bias, case["stride"], case["padding"])
    args = (case["kh"], case["kw"], *case["stride"], *case["padding"])
    got = nb.csr_conv2d(x, nb.to_csr(w4.reshape(case["O"], -1)), *args, bias=bias)
    assert got.dtype == dtype and got.flags.c_contiguous
    np.testing.assert_allclose(got, expected, **_tol(dtype))
    twin = ref.csr_conv2d(x, ref.to_csr(w4.reshape(case["O"], -1)), *args, bias=bias)
    np.testing.assert_allclose(twin, expected, **_tol(dtype))


@pytest.mark.parametrize("stride", [(1, 1), (2, 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nm_conv2d_matches_dense_and_twin(stride, dtype):
    w4 = _nm_sparse(0, (6, 4 * 3 * 3), 2, 4, dtype).reshape(6, 4, 3, 3)
    x = _randn(1, (2, 4, 9, 8), dtype)
    bias = _randn(2, 6, dtype)
    expected = _dense_conv(x, w4, bias, stride, (1, 1))
    for mod in (nb, ref):
        got = mod.nm_conv2d(x, mod.to_nm(w4.reshape(6, -1), 2, 4), 3, 3, *stride, 1, 1, bias=bias)
        np.testing.assert_allclose(got, expected, **_tol(dtype))


@BOTH
def test_conv_bad_arguments_are_named(mod):
    w = mod.to_csr(_pruned(0, (4, 2 * 3 * 3), 0.5, np.float32))
    x = np.zeros((1, 2, 5, 5), np.float32)
    with pytest.raises(ValueError, match="w must have C\\*kh\\*kw = 27 columns"):
        mod.csr_conv2d(np.zeros((1, 3, 5, 5), np.float32), w, 3, 3)
    with pytest.raises(ValueError, match="x must be 4-D"):
        mod.csr_conv2d(np.zeros((2, 5, 5), np.float32), w, 3, 3)
    with pytest.raises(ValueError, match="kh=3 is larger than the input height"):
        mod.csr_conv2d(np.zeros((1, 2, 2, 5), np.float32), w, 3, 3)
    with pytest.raises(ValueError, match="sh must be >= 1"):
        mod.csr_conv2d(x, w, 3, 3, sh=0)
    with pytest.raises(ValueError, match="ph must be >= 0"):
        mod.csr_conv2d(x, w, 3, 3, ph=-1)
    with pytest.raises(TypeError, match="x has dtype float64"):
        mod.csr_conv2d(x.astype(np.float64), w, 3, 3)


def test_docstring_examples_run():
    failed, tried = doctest.testmod(nb)
    assert tried >= 10 and failed == 0
