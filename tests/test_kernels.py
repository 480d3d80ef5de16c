"""Tests for minprune.kernels (Numba) against minprune.kernels_ref (NumPy twins).

Each kernel is checked against its twin on random small shapes (hypothesis),
plus the algebraic properties the autograd code relies on: im2col/col2im and
pooling forward/backward are adjoint pairs, max-pool gradients match finite
differences, N:M masks keep exactly n per group with deterministic ties.
Bad arguments must raise ValueError (TypeError for dtypes) in both modules.

The suite also runs, slowly, under NUMBA_DISABLE_JIT=1.
"""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import minprune.kernels as nb
import minprune.kernels_ref as ref

pytestmark = pytest.mark.engine

# The first call of each kernel may compile it (seconds), so no deadline.
SETTINGS = settings(max_examples=40, deadline=None)
DTYPES = st.sampled_from([np.float32, np.float64])
BOTH = pytest.mark.parametrize("mod", [nb, ref], ids=["numba", "numpy"])


def _tol(dtype):
    """Tolerances for results whose summation order may differ."""
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


def _randn(seed, shape, dtype):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@st.composite
def window_cases(draw):
    """A random (N, C, H, W) input with a kernel that fits and strides 1-3."""
    kh = draw(st.integers(1, 5))
    kw = draw(st.integers(1, 5))
    return {
        "N": draw(st.integers(1, 3)),
        "C": draw(st.integers(1, 3)),
        "H": draw(st.integers(kh, kh + 6)),
        "W": draw(st.integers(kw, kw + 6)),
        "kh": kh,
        "kw": kw,
        "sh": draw(st.integers(1, 3)),
        "sw": draw(st.integers(1, 3)),
        "dtype": draw(DTYPES),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def _out_hw(case):
    OH = (case["H"] - case["kh"]) // case["sh"] + 1
    OW = (case["W"] - case["kw"]) // case["sw"] + 1
    return OH, OW


def _x(case):
    return _randn(case["seed"], (case["N"], case["C"], case["H"], case["W"]), case["dtype"])


def _k(case):
    return case["kh"], case["kw"], case["sh"], case["sw"]


def _assert_array(actual, expected, **tol):
    """Same dtype, shape, C-contiguous, and equal (to `tol` if given)."""
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    assert actual.flags.c_contiguous
    if tol:
        np.testing.assert_allclose(actual, expected, **tol)
    else:
        np.testing.assert_array_equal(actual, expected)


# ---------------------------------------------------------------------------
# pad2d, im2col, col2im
# ---------------------------------------------------------------------------


@SETTINGS
@given(
    n=st.integers(1, 3),
    c=st.integers(1, 3),
    h=st.integers(1, 7),
    w=st.integers(1, 7),
    ph=st.integers(0, 3),
    pw=st.integers(0, 3),
    dtype=DTYPES,
    seed=st.integers(0, 2**32 - 1),
)
def test_pad2d_matches_twin(n, c, h, w, ph, pw, dtype, seed):
    x = _randn(seed, (n, c, h, w), dtype)
    out = nb.pad2d(x, ph, pw)
    _assert_array(out, ref.pad2d(x, ph, pw))
    assert out.shape == (n, c, h + 2 * ph, w + 2 * pw)
    # A copy, never a view of x.
    assert not np.shares_memory(out, x)


@pytest.mark.parametrize("mod", [nb, ref])
def test_im2col_fills_a_reused_out_buffer(mod):
    x = _randn(3, (2, 3, 6, 5), np.float32)
    out = np.full((2 * 4 * 3, 3 * 3 * 3), np.nan, np.float32)  # garbage from an earlier use
    got = mod.im2col(x, 3, 3, 1, 1, out=out)
    assert got is out
    _assert_array(out, ref.im2col(x, 3, 3, 1, 1))
    with pytest.raises(ValueError, match="out"):
        mod.im2col(x, 3, 3, 1, 1, out=np.empty((24, 26), np.float32))
    with pytest.raises(ValueError, match="out"):
        mod.im2col(x, 3, 3, 1, 1, out=np.empty((24, 27), np.float64))


@SETTINGS
@given(case=window_cases())
def test_im2col_matches_twin(case):
    x = _x(case)
    cols = nb.im2col(x, *_k(case))
    _assert_array(cols, ref.im2col(x, *_k(case)))
    OH, OW = _out_hw(case)
    assert cols.shape == (case["N"] * OH * OW, case["C"] * case["kh"] * case["kw"])


def test_im2col_layout_by_hand():
    # Check the documented index formula directly, independently of the twin.
    x = np.arange(2 * 3 * 7 * 6, dtype=np.float64).reshape(2, 3, 7, 6)
    kh, kw, sh, sw = 3, 2, 2, 3
    OH, OW = (7 - kh) // sh + 1, (6 - kw) // sw + 1
    cols = nb.im2col(x, kh, kw, sh, sw)
    for n in range(2):
        for oh in range(OH):
            for ow in range(OW):
                for c in range(3):
                    for i in range(kh):
                        for j in range(kw):
                            r = n * OH * OW + oh * OW + ow
                            k = c * kh * kw + i * kw + j
                            assert cols[r, k] == x[n, c, oh * sh + i, ow * sw + j]


@SETTINGS
@given(case=window_cases())
def test_col2im_matches_twin(case):
    OH, OW = _out_hw(case)
    N, C, H, W = case["N"], case["C"], case["H"], case["W"]
    cols = _randn(case["seed"], (N * OH * OW, C * case["kh"] * case["kw"]), case["dtype"])
    args = (N, C, H, W, *_k(case))
    _assert_array(nb.col2im(cols, *args), ref.col2im(cols, *args), **_tol(case["dtype"]))


@SETTINGS
@given(case=window_cases())
def test_im2col_col2im_adjoint(case):
    # <im2col(x), c> == <x, col2im(c)>: col2im is exactly the transpose of
    # the linear map im2col, which is what the conv backward pass needs.
    case = dict(case, dtype=np.float64)
    x = _x(case)
    cols = nb.im2col(x, *_k(case))
    c = _randn(case["seed"] + 1, cols.shape, np.float64)
    back = nb.col2im(c, case["N"], case["C"], case["H"], case["W"], *_k(case))
    np.testing.assert_allclose(np.vdot(cols, c), np.vdot(x, back), rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------
# rows_to_nchw_bias, nchw_to_rows
# ---------------------------------------------------------------------------


@SETTINGS
@given(
    n=st.integers(1, 3),
    # Up to 40 channels covers both loop orders (the switch is at 32).
    o=st.integers(1, 40),
    oh=st.integers(1, 5),
    ow=st.integers(1, 5),
    bias_kind=st.sampled_from(["none", "empty", "full", "other_dtype"]),
    dtype=DTYPES,
    seed=st.integers(0, 2**32 - 1),
)
# Pin both loop orders (the kernel switches at 32 channels).
@example(n=2, o=3, oh=3, ow=2, bias_kind="full", dtype=np.float32, seed=0)
@example(n=2, o=33, oh=3, ow=2, bias_kind="full", dtype=np.float64, seed=0)
def test_rows_to_nchw_bias_matches_twin(n, o, oh, ow, bias_kind, dtype, seed):
    out2d = _randn(seed, (n * oh * ow, o), dtype)
    bias = {
        "none": None,
        "empty": np.zeros(0, dtype=dtype),
        "full": _randn(seed + 1, (o,), dtype),
        "other_dtype": _randn(seed + 1, (o,), np.float64 if dtype == np.float32 else np.float32),
    }[bias_kind]
    got = nb.rows_to_nchw_bias(out2d, bias, n, oh, ow)
    _assert_array(got, ref.rows_to_nchw_bias(out2d, bias, n, oh, ow))
    expected = out2d.reshape(n, oh, ow, o).transpose(0, 3, 1, 2)
    if bias is not None and bias.size:
        expected = expected + bias.astype(dtype)[:, None, None]
    np.testing.assert_array_equal(got, expected)


@SETTINGS
@given(
    n=st.integers(1, 3),
    o=st.integers(1, 40),
    oh=st.integers(1, 5),
    ow=st.integers(1, 5),
    dtype=DTYPES,
    seed=st.integers(0, 2**32 - 1),
)
@example(n=2, o=3, oh=3, ow=2, dtype=np.float32, seed=0)
@example(n=2, o=33, oh=3, ow=2, dtype=np.float64, seed=0)
def test_nchw_to_rows_matches_twin_and_inverts(n, o, oh, ow, dtype, seed):
    g = _randn(seed, (n, o, oh, ow), dtype)
    rows = nb.nchw_to_rows(g)
    _assert_array(rows, ref.nchw_to_rows(g))
    assert rows.shape == (n * oh * ow, o)
    # Without bias the two layout changes are inverses of each other.
    np.testing.assert_array_equal(nb.rows_to_nchw_bias(rows, None, n, oh, ow), g)


# ---------------------------------------------------------------------------
# Convolution steps: padded im2col, pooled matmul, col2im_padded, flipped backward
# ---------------------------------------------------------------------------


@SETTINGS
@given(case=window_cases(), ph=st.integers(0, 2), pw=st.integers(0, 2))
def test_im2col_padded_and_col2im_padded_match_twins_and_are_adjoint(case, ph, pw):
    x = _x(case)
    args = (*_k(case), ph, pw)
    cols = nb.im2col_padded(x, *args)
    _assert_array(cols, ref.im2col_padded(x, *args))
    c = _randn(case["seed"] + 1, cols.shape, case["dtype"])
    back = nb.col2im_padded(c, x.shape, *args)
    np.testing.assert_allclose(back, ref.col2im_padded(c, x.shape, *args), **_tol(case["dtype"]))
    assert back.shape == x.shape and back.dtype == x.dtype
    np.testing.assert_allclose(np.vdot(cols, c), np.vdot(x, back), rtol=1e-4)


@BOTH
@pytest.mark.parametrize("dtypes", [(np.float32, np.float32), (np.float32, np.float64),
                                    (np.float64, np.float64)])
def test_matmul_pooled_promotes_as_numpy_does(mod, dtypes):
    a, b = _randn(0, (5, 3), dtypes[0]), _randn(1, (4, 3), dtypes[1]).T  # b transposed: a view
    out = mod.matmul_pooled(a, b, "rows")
    assert out.dtype == np.result_type(*dtypes)
    np.testing.assert_allclose(out, a @ b, **_tol(np.float32))


@SETTINGS
@given(n=st.integers(1, 3), o=st.integers(1, 4), c=st.integers(1, 4), kh=st.integers(1, 4),
       kw=st.integers(1, 4), extra=st.integers(0, 4), data=st.data(), dtype=DTYPES,
       seed=st.integers(0, 2**32 - 1))
def test_flipped_backward_matches_the_col2im_twin(n, o, c, kh, kw, extra, data, dtype, seed):
    """dL/dx as a convolution with the flipped kernel = col2im(g2d @ W2d), the textbook route."""
    ph, pw = data.draw(st.integers(0, kh - 1)), data.draw(st.integers(0, kw - 1))
    h, w = kh + extra, kw + extra // 2           # the input size; g has the stride-1 output size
    g = _randn(seed, (n, o, h + 2 * ph - kh + 1, w + 2 * pw - kw + 1), dtype)
    weight = _randn(seed + 1, (o, c, kh, kw), dtype)
    dx = nb.conv2d_backward_input_flipped(g, weight, ph, pw)
    _assert_array(dx, ref.conv2d_backward_input_flipped(g, weight, ph, pw), **_tol(dtype))
    assert dx.shape == (n, c, h, w)


def test_workspace_reuses_a_buffer_only_once_nothing_refers_to_it():
    nb.WORKSPACE.clear()
    x = _randn(0, (16, 8, 31, 30), np.float32)      # a 7 MB patch matrix: pooled
    first = nb.im2col_padded(x, 3, 3, 1, 1, 1, 1)
    first_id = id(first)
    second = nb.im2col_padded(x, 3, 3, 1, 1, 1, 1)  # `first` is still held: a different array
    assert not np.shares_memory(first, second)
    del first
    assert id(nb.im2col_padded(x, 3, 3, 1, 1, 1, 1)) == first_id
    nb.WORKSPACE.clear()


def test_pad_buffers_of_one_shape_but_other_padding_are_kept_apart():
    """(64, 64, 6, 6) padded by 1 and (64, 64, 4, 4) padded by 2 are both 8x8: one shared buffer
    would keep the first input's values in the second one's zero border."""
    nb.WORKSPACE.clear()
    for size, pad, seed in [(6, 1, 0), (4, 2, 1), (6, 1, 2), (4, 2, 3)]:
        x = _randn(seed, (64, 64, size, size), np.float32)
        _assert_array(nb.im2col_padded(x, 3, 3, 1, 1, pad, pad), ref.im2col_padded(x, 3, 3, 1, 1, pad, pad))
    nb.WORKSPACE.clear()


def test_every_kernel_has_a_numpy_twin():
    assert nb.__all__ == ref.__all__
    assert all(callable(getattr(ref, name)) for name in nb.__all__)


# ---------------------------------------------------------------------------
# Max pooling
# ---------------------------------------------------------------------------


@SETTINGS
@given(case=window_cases(), ties=st.booleans())
def test_maxpool_forward_matches_twin(case, ties):
    x = _x(case)
    if ties:
        # Few distinct values -> many ties inside windows; both must pick the
        # first maximum in row-major window order.
        x = np.round(x).astype(case["dtype"])
    out, am = nb.maxpool2d_forward(x, *_k(case))
    ref_out, ref_am = ref.maxpool2d_forward(x, *_k(case))
    _assert_array(out, ref_out)
    _assert_array(am, ref_am)
    assert am.dtype == np.int32
    # argmax indexes the (H, W) plane and points at the maximum.
    N, C = x.shape[:2]
    planes = x.reshape(N, C, -1)
    picked = np.take_along_axis(planes, am.reshape(N, C, -1), axis=2)
    np.testing.assert_array_equal(picked.reshape(out.shape), out)


def test_maxpool_ties_pick_first_and_nan_propagates():
    x = np.zeros((1, 1, 2, 4))
    x[0, 0, 1, 2] = np.nan
    out, am = nb.maxpool2d_forward(x, 2, 2, 2, 2)
    # Left window: all zeros -> first element (0, 0); right window: the NaN.
    assert out[0, 0, 0, 0] == 0 and am[0, 0, 0, 0] == 0
    assert np.isnan(out[0, 0, 0, 1]) and am[0, 0, 0, 1] == 1 * 4 + 2
    ref_out, ref_am = ref.maxpool2d_forward(x, 2, 2, 2, 2)
    np.testing.assert_array_equal(am, ref_am)
    np.testing.assert_array_equal(out, ref_out)


@SETTINGS
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(2, 7), w=st.integers(2, 7),
       values=st.sampled_from(["normal", "ties", "nan"]), dtype=DTYPES, seed=st.integers(0, 2**32 - 1))
def test_maxpool_2x2_fast_path_matches_general_kernel_and_twin(n, c, h, w, values, dtype, seed):
    """The unrolled 2x2/2 kernel gives the general kernel's answer, ties and NaN included."""
    x = _randn(seed, (n, c, h, w), dtype)
    if values == "ties":
        x = np.round(x).astype(dtype)
    elif values == "nan":
        x[np.random.default_rng(seed).random(x.shape) < 0.3] = np.nan
    oh, ow = h // 2, w // 2
    general = nb._maxpool2d_forward_nb(x, 2, 2, 2, 2, np.empty((n, c, oh, ow), dtype),
                                       np.empty((n, c, oh, ow), np.int32))
    for got in (nb.maxpool2d_forward(x, 2, 2, 2, 2), ref.maxpool2d_forward(x, 2, 2, 2, 2)):
        np.testing.assert_array_equal(got[0], general[0])
        np.testing.assert_array_equal(got[1], general[1])


@SETTINGS
@given(case=window_cases())
def test_maxpool_backward_matches_twin(case):
    x = _x(case)
    _, am = nb.maxpool2d_forward(x, *_k(case))
    g = _randn(case["seed"] + 1, am.shape, case["dtype"])
    H, W = case["H"], case["W"]
    # Overlapping windows (stride < kernel) share winners: scatter-*add*.
    _assert_array(
        nb.maxpool2d_backward(g, am, H, W),
        ref.maxpool2d_backward(g, am, H, W),
        **_tol(case["dtype"]),
    )


def test_maxpool_backward_finite_differences():
    # Distinct, well-separated values so that a +-eps nudge never changes
    # which element wins a window; overlapping windows (k=3, s=2).
    rng = np.random.default_rng(0)
    N, C, H, W = 2, 2, 7, 6
    kh, kw, sh, sw = 3, 2, 2, 1
    x = rng.permutation(N * C * H * W).astype(np.float64).reshape(N, C, H, W)
    out, am = nb.maxpool2d_forward(x, kh, kw, sh, sw)
    g = rng.standard_normal(out.shape)
    analytic = nb.maxpool2d_backward(g, am, H, W)
    eps = 1e-3
    numeric = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp = x.copy()
        xp[idx] += eps
        xm = x.copy()
        xm[idx] -= eps
        fp = np.vdot(nb.maxpool2d_forward(xp, kh, kw, sh, sw)[0], g)
        fm = np.vdot(nb.maxpool2d_forward(xm, kh, kw, sh, sw)[0], g)
        numeric[idx] = (fp - fm) / (2 * eps)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-7, atol=1e-7)


# ---------------------------------------------------------------------------
# Average pooling
# ---------------------------------------------------------------------------


@SETTINGS
@given(case=window_cases())
def test_avgpool_forward_matches_twin(case):
    x = _x(case)
    out = nb.avgpool2d_forward(x, *_k(case))
    _assert_array(out, ref.avgpool2d_forward(x, *_k(case)), **_tol(case["dtype"]))
    assert out.shape[2:] == _out_hw(case)


@SETTINGS
@given(case=window_cases())
def test_avgpool_backward_matches_twin_and_is_adjoint(case):
    x = _x(case)
    OH, OW = _out_hw(case)
    g = _randn(case["seed"] + 1, (case["N"], case["C"], OH, OW), case["dtype"])
    args = (case["H"], case["W"], *_k(case))
    gx = nb.avgpool2d_backward(g, *args)
    _assert_array(gx, ref.avgpool2d_backward(g, *args), **_tol(case["dtype"]))
    # avgpool is linear, so its gradient is its adjoint.
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    lhs = np.vdot(nb.avgpool2d_forward(x64, *_k(case)), g64)
    rhs = np.vdot(x64, nb.avgpool2d_backward(g64, *args))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------
# N:M mask
# ---------------------------------------------------------------------------


@SETTINGS
@given(
    r=st.integers(1, 5),
    groups=st.integers(1, 4),
    nm=st.sampled_from([(0, 1), (1, 1), (1, 2), (2, 4), (1, 4), (3, 4), (4, 4), (2, 8), (5, 8)]),
    ties=st.booleans(),
    dtype=DTYPES,
    seed=st.integers(0, 2**32 - 1),
)
def test_nm_mask_counts_and_matches_twin(r, groups, nm, ties, dtype, seed):
    n, m = nm
    scores = _randn(seed, (r, groups * m), dtype)
    if ties:
        scores = np.round(scores).astype(dtype)
    mask = nb.nm_mask(scores, n, m)
    assert mask.dtype == np.bool_ and mask.shape == scores.shape
    np.testing.assert_array_equal(mask, ref.nm_mask(scores, n, m))
    # Exactly n kept per group, and every kept score >= every dropped one.
    grouped = mask.reshape(r, groups, m)
    np.testing.assert_array_equal(grouped.sum(axis=2), n)
    s = scores.reshape(r, groups, m)
    if 0 < n < m:
        kept_min = np.where(grouped, s, np.inf).min(axis=2)
        dropped_max = np.where(grouped, -np.inf, s).max(axis=2)
        assert np.all(kept_min >= dropped_max)


@BOTH
def test_nm_mask_ties_break_to_lower_index(mod):
    scores = np.array([[1.0, 1.0, 1.0, 1.0, 2.0, 0.5, 2.0, 2.0]])
    np.testing.assert_array_equal(
        mod.nm_mask(scores, 2, 4),
        [[True, True, False, False, True, False, True, False]],
    )
    # Deterministic: the same call always gives the same answer.
    for _ in range(3):
        np.testing.assert_array_equal(mod.nm_mask(scores, 2, 4), mod.nm_mask(scores, 2, 4))


# ---------------------------------------------------------------------------
# BatchNorm and ReLU backward
# ---------------------------------------------------------------------------


@st.composite
def channel_cases(draw):
    """A random (N, C) or (N, C, H, W) activation with per-channel statistics and affine."""
    four_d = draw(st.booleans())
    shape = ((draw(st.integers(1, 4)), draw(st.integers(1, 5)))
             + ((draw(st.integers(1, 5)), draw(st.integers(1, 5))) if four_d else ()))
    dtype = draw(DTYPES)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    c = shape[1]
    per = lambda lo, hi: rng.uniform(lo, hi, c).astype(dtype)
    return {"x": (rng.standard_normal(shape) * 3 + 2).astype(dtype),
            "g": rng.standard_normal(shape).astype(dtype),
            "mean": per(-1, 1), "inv_std": per(0.5, 2), "gamma": per(0.5, 1.5), "beta": per(-1, 1),
            "dtype": dtype}


@SETTINGS
@given(case=channel_cases())
def test_channel_stats_matches_twin(case):
    for got, want in zip(nb.channel_stats(case["x"]), ref.channel_stats(case["x"])):
        _assert_array(got, want, **_tol(case["dtype"]))


def test_channel_stats_keeps_the_variance_of_a_large_mean():
    """Centred before squaring: E[x²] − E[x]² would lose the variance of 1e4 ± 1 in float32."""
    x = (1e4 + np.random.default_rng(0).standard_normal((64, 2, 8, 8))).astype(np.float32)
    _, var = nb.channel_stats(x)
    np.testing.assert_allclose(var, x.astype(np.float64).var(axis=(0, 2, 3)), rtol=1e-3)


@SETTINGS
@given(case=channel_cases())
def test_batchnorm_forward_matches_twin(case):
    args = [case[k] for k in ("x", "mean", "inv_std", "gamma", "beta")]
    _assert_array(nb.batchnorm_forward(*args), ref.batchnorm_forward(*args), **_tol(case["dtype"]))


@SETTINGS
@given(case=channel_cases(), batch_stats=st.booleans())
def test_batchnorm_backward_matches_twin(case, batch_stats):
    args = [case[k] for k in ("g", "x", "mean", "inv_std", "gamma")] + [batch_stats]
    for got, want in zip(nb.batchnorm_backward(*args), ref.batchnorm_backward(*args)):
        _assert_array(got, want, rtol=1e-4 if case["dtype"] == np.float32 else 1e-10,
                      atol=1e-4 if case["dtype"] == np.float32 else 1e-10)


@SETTINGS
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4), dtype=DTYPES,
       seed=st.integers(0, 2**32 - 1))
def test_relu_backward_matches_twin(shape, dtype, seed):
    g, x = _randn(seed, shape, dtype), _randn(seed + 1, shape, dtype)
    out = np.maximum(x, 0)
    _assert_array(nb.relu_backward(g, out), ref.relu_backward(g, out))
    np.testing.assert_array_equal(nb.relu_backward(g, out), g * (out > 0))



# The twins of the per-channel kernels reach x through the kernels' own helpers (_channels_view,
# _per_channel, _batchnorm_backward_args), so a bug there would be in both: these tests compare
# both modules with the formulas written out here on the 2-D or 4-D array itself.
def _by_channel(v, x):
    """A (C,) vector shaped to broadcast against x (N, C) or (N, C, H, W)."""
    return np.asarray(v, np.float64).reshape((1, -1) + (1,) * (x.ndim - 2))


def _other_axes(x):
    return (0,) + tuple(range(2, x.ndim))


@BOTH
@SETTINGS
@given(case=channel_cases())
def test_channel_stats_are_the_mean_and_biased_variance_of_each_channel(mod, case):
    x = case["x"].astype(np.float64)
    mean = x.mean(axis=_other_axes(x))
    var = ((x - _by_channel(mean, x)) ** 2).mean(axis=_other_axes(x))
    got_mean, got_var = mod.channel_stats(case["x"])
    tol = _tol(case["dtype"]) if case["dtype"] == np.float64 else {"rtol": 1e-5, "atol": 1e-4}
    for got, want in ((got_mean, mean), (got_var, var)):
        assert got.dtype == case["dtype"] and got.shape == (x.shape[1],)
        np.testing.assert_allclose(got, want, **tol)


@BOTH
@SETTINGS
@given(case=channel_cases())
def test_batchnorm_forward_is_the_affine_normalisation_per_channel(mod, case):
    x = case["x"]
    want = (_by_channel(case["gamma"], x) * (x.astype(np.float64) - _by_channel(case["mean"], x))
            * _by_channel(case["inv_std"], x) + _by_channel(case["beta"], x))
    got = mod.batchnorm_forward(x, case["mean"], case["inv_std"], case["gamma"], case["beta"])
    assert got.dtype == x.dtype and got.shape == x.shape
    np.testing.assert_allclose(got, want, **(_tol(x.dtype) if x.dtype == np.float64
                                             else {"rtol": 1e-5, "atol": 1e-4}))


def _bn_loss(x, g, gamma, beta, batch_stats, mean, inv_std, eps=1e-5):
    """Σ g·BN(x), with the batch's own statistics (functions of x) or fixed ones."""
    axes = _other_axes(x)
    if batch_stats:
        mean = x.mean(axis=axes)
        inv_std = 1 / np.sqrt(((x - _by_channel(mean, x)) ** 2).mean(axis=axes) + eps)
    y = (_by_channel(gamma, x) * (x - _by_channel(mean, x)) * _by_channel(inv_std, x)
         + _by_channel(beta, x))
    return float(np.sum(g * y))


@BOTH
@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 2, 3)])
@pytest.mark.parametrize("batch_stats", [True, False])
def test_batchnorm_backward_matches_finite_differences(mod, shape, batch_stats):
    """dx, dγ and dβ against central differences of Σ g·BN(x): when the statistics are the batch's
    own, moving x moves them too (the two extra terms of the training-mode formula)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape) * 2 + 1
    g = rng.standard_normal(shape)
    c = shape[1]
    gamma, beta = rng.uniform(0.5, 1.5, c), rng.uniform(-1, 1, c)
    eps = 1e-5
    if batch_stats:
        mean = x.mean(axis=_other_axes(x))
        inv_std = 1 / np.sqrt(((x - _by_channel(mean, x)) ** 2).mean(axis=_other_axes(x)) + eps)
    else:
        mean, inv_std = rng.uniform(-1, 1, c), rng.uniform(0.5, 2, c)
    dx, dgamma, dbeta = mod.batchnorm_backward(g, x, mean, inv_std, gamma, batch_stats)

    def numeric(f, a, h=1e-6):
        out = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            old = a[i]
            a[i] = old + h
            up = f()
            a[i] = old - h
            out[i] = (up - f()) / (2 * h)
            a[i] = old
        return out

    loss = lambda: _bn_loss(x, g, gamma, beta, batch_stats, mean, inv_std, eps)  # noqa: E731
    np.testing.assert_allclose(dx, numeric(loss, x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dgamma, numeric(loss, gamma), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dbeta, numeric(loss, beta), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# Input handling and argument validation (both modules behave the same)
# ---------------------------------------------------------------------------


@BOTH
def test_non_contiguous_input_is_accepted(mod):
    x = _randn(0, (2, 3, 9, 8), np.float64)[:, :, ::2, :]  # non-contiguous view
    np.testing.assert_array_equal(mod.im2col(x, 2, 2, 1, 1), ref.im2col(x.copy(), 2, 2, 1, 1))
    out, _ = mod.maxpool2d_forward(x.transpose(0, 1, 3, 2), 2, 2, 2, 2)
    assert out.flags.c_contiguous


def _maxpool_back(mod, argmax):
    """maxpool2d_backward of a (1, 1, 2, 2) gradient onto a 4x4 plane."""
    return mod.maxpool2d_backward(np.zeros((1, 1, 2, 2)), argmax, 4, 4)


@BOTH
@pytest.mark.parametrize(
    ("call", "word"),
    [
        (lambda m, x: m.im2col(x, 6, 2, 1, 1), "kh"),
        (lambda m, x: m.im2col(x, 2, 9, 1, 1), "kw"),
        (lambda m, x: m.im2col(x, 2, 2, 0, 1), "sh"),
        (lambda m, x: m.im2col(x, 2, 2, 1, -1), "sw"),
        (lambda m, x: m.im2col(x[0], 2, 2, 1, 1), "xp"),
        (lambda m, x: m.pad2d(x, -1, 0), "ph"),
        (lambda m, x: m.pad2d(x, 0, 1.5), "pw"),
        (lambda m, x: m.col2im(np.zeros((3, 4)), 1, 1, 5, 5, 2, 2, 1, 1), "cols"),
        (lambda m, x: m.col2im(np.zeros((16, 4)), 1, 1, 5, 5, 6, 2, 1, 1), "kh"),
        (lambda m, x: m.rows_to_nchw_bias(np.zeros((10, 3)), None, 2, 2, 2), "out2d"),
        (lambda m, x: m.rows_to_nchw_bias(np.zeros((8, 3)), np.zeros(4), 2, 2, 2), "bias"),
        (lambda m, x: m.nchw_to_rows(np.zeros((2, 3, 4))), "g"),
        (lambda m, x: m.im2col_padded(x, 3, 3, 1, 1, -1, 0), "ph"),
        (lambda m, x: m.im2col_padded(x, 8, 3, 1, 1, 1, 0), "kh"),
        (lambda m, x: m.matmul_pooled(np.zeros((2, 3)), np.zeros((2, 3)), "rows"), "a and b"),
        (lambda m, x: m.conv2d_backward_input_flipped(x, np.zeros((3, 2, 2, 2)), 2, 0), "ph"),
        (lambda m, x: m.conv2d_backward_input_flipped(x, np.zeros((4, 2, 2, 2)), 0, 0), "w"),
        (lambda m, x: m.maxpool2d_forward(x, 2, 7, 1, 1), "kw"),
        (lambda m, x: _maxpool_back(m, np.zeros((1, 1, 2, 3), np.int32)), "argmax"),
        (lambda m, x: _maxpool_back(m, np.full((1, 1, 2, 2), 16, np.int32)), "argmax"),  # >= H*W
        (lambda m, x: _maxpool_back(m, np.full((1, 1, 2, 2), -1, np.int32)), "argmax"),
        (lambda m, x: m.avgpool2d_forward(x, 6, 1, 1, 1), "kh"),
        (lambda m, x: m.avgpool2d_backward(np.zeros((1, 1, 3, 3)), 4, 4, 2, 2, 2, 2), "grad_out"),
        (lambda m, x: m.avgpool2d_backward(np.zeros((1, 1, 1, 1)), 4, 4, 5, 2, 2, 2), "kh"),
        (lambda m, x: m.nm_mask(np.zeros((2, 6)), 2, 4), "m"),
        (lambda m, x: m.nm_mask(np.zeros((2, 8)), 5, 4), "n"),
        (lambda m, x: m.nm_mask(np.zeros((2, 8)), -1, 4), "n"),
        (lambda m, x: m.nm_mask(np.zeros((2, 8)), 1, 0), "m"),
        (lambda m, x: m.nm_mask(np.full((2, 8), np.nan), 1, 4), "scores2d"),
        (lambda m, x: m.nm_mask(np.zeros(8), 1, 4), "scores2d"),
        (lambda m, x: m.channel_stats(np.zeros((2, 3, 4))), "x"),
        (lambda m, x: m.batchnorm_forward(x, *[np.zeros(2)] * 4), "mean"),
        (lambda m, x: m.batchnorm_backward(x[:1], x, *[np.zeros(3)] * 3, True), "g"),
        (lambda m, x: m.batchnorm_backward(x, x, np.zeros(3), np.zeros(3), np.zeros(4), True), "gamma"),
        (lambda m, x: m.relu_backward(np.zeros(3), np.zeros(4)), "g"),
    ],
)
def test_invalid_arguments_raise_value_error(mod, call, word):
    x = np.zeros((2, 3, 5, 6))
    with pytest.raises(ValueError, match=word):
        call(mod, x)


@BOTH
def test_wrong_dtype_raises_type_error(mod):
    with pytest.raises(TypeError, match="xp"):
        mod.im2col(np.zeros((1, 1, 4, 4), dtype=np.int64), 2, 2, 1, 1)
    with pytest.raises(TypeError, match="scores2d"):
        mod.nm_mask(np.zeros((1, 4), dtype=np.float16), 2, 4)
    with pytest.raises(TypeError, match="x"):
        mod.channel_stats(np.zeros((2, 3), dtype=np.int32))
    with pytest.raises(TypeError, match="out"):
        mod.relu_backward(np.zeros(3), np.zeros(3, dtype=bool))
    with pytest.raises(TypeError, match="argmax"):
        mod.maxpool2d_backward(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2)), 4, 4)
