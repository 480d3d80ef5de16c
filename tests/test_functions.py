"""A float64 central-difference gradient check for every op in minprune/functions.py."""
import numpy as np
import pytest
from gradcheck import grad_check
from hypothesis import given
from hypothesis import strategies as st
from strategies import arrays, away_from_zero, broadcastable_pair

import minprune.functions as F
import minprune.nn.functional as fn
from minprune.tensor import Tensor

pytestmark = pytest.mark.engine


def randn(rng, *shape):
    return rng.standard_normal(shape)


def distinct(rng, *shape, gap=0.05):
    """Entries that differ pairwise by ≥ gap: no ties, so max/argmax are differentiable."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * gap - n * gap / 2).reshape(shape) + rng.uniform(0, gap / 10, shape)


def off_zero(rng, *shape):
    """Entries with |x| ≥ 0.2: away from ReLU's kink and from division by ~0."""
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 2.0, shape)


# --- arithmetic with broadcasting ---------------------------------------------------------------
@given(st.data())
@pytest.mark.parametrize("op", ["add", "sub", "mul"])
def test_binary_ops_broadcast(op, data):
    sa, sb = data.draw(broadcastable_pair())
    a, b = data.draw(arrays(sa)), data.draw(arrays(sb))
    f = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y}[op]
    out = f(Tensor(a, dtype=np.float64), Tensor(b, dtype=np.float64))
    np.testing.assert_allclose(out.data, f(a, b))
    grad_check(f, a, b)


@given(st.data())
def test_div_broadcast(data):
    sa, sb = data.draw(broadcastable_pair())
    a, b = data.draw(arrays(sa)), data.draw(away_from_zero(sb))
    grad_check(lambda x, y: x / y, a, b)


def test_scalar_shapes(rng):
    grad_check(lambda x, y: x * y + x / y - y, randn(rng), off_zero(rng, 3, 2))


def test_neg(rng):
    grad_check(lambda x: -x, randn(rng, 3, 4))
    grad_check(lambda x: F.Neg.apply(x), randn(rng, 5))


@pytest.mark.parametrize("p", [2, 3, 0.5, -1.0, -2.5, 1])
def test_pow(rng, p):
    x = rng.uniform(0.3, 2.0, (3, 4))  # positive: fractional powers are real
    grad_check(lambda t: t ** p, x)


# --- matmul ------------------------------------------------------------------------------------
@pytest.mark.parametrize("sa, sb", [
    ((3, 4), (4, 5)),          # 2-D
    ((2, 3, 4), (2, 4, 5)),    # batched
    ((2, 3, 4), (4, 5)),       # batched @ matrix (broadcast)
    ((3, 4), (2, 4, 5)),       # matrix @ batched
    ((2, 1, 3, 4), (5, 4, 2)), # broadcast batch dims
    ((4,), (4, 5)),            # vector @ matrix
    ((3, 4), (4,)),            # matrix @ vector
    ((4,), (4,)),              # dot product
    ((4,), (2, 4, 3)),         # vector @ batched
    ((2, 3, 4), (4,)),         # batched @ vector
])
def test_matmul(rng, sa, sb):
    a, b = randn(rng, *sa), randn(rng, *sb)
    np.testing.assert_allclose((Tensor(a, dtype=np.float64) @ Tensor(b, dtype=np.float64)).data, a @ b)
    grad_check(lambda x, y: x @ y, a, b)


def test_matmul_rejects_scalars():
    with pytest.raises(ValueError, match="matmul"):
        Tensor(np.ones(())) @ Tensor(np.ones(3))


# --- reductions ---------------------------------------------------------------------------------
AXES = [None, 0, 1, -1, (0, 2), (1, -1)]


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("op", ["sum", "mean"])
def test_sum_mean(rng, op, axis, keepdims):
    x = randn(rng, 2, 3, 4)
    out = getattr(Tensor(x, dtype=np.float64), op)(axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(out.data, getattr(x, op)(axis=axis, keepdims=keepdims))
    grad_check(lambda t: getattr(t, op)(axis=axis, keepdims=keepdims), x)


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_max(rng, axis, keepdims):
    x = distinct(rng, 2, 3, 4)
    out = Tensor(x, dtype=np.float64).max(axis=axis, keepdims=keepdims)
    np.testing.assert_array_equal(out.data, x.max(axis=axis, keepdims=keepdims))
    grad_check(lambda t: t.max(axis=axis, keepdims=keepdims), x)


def test_max_splits_gradient_between_ties():
    x = Tensor(np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]]), requires_grad=True, dtype=np.float64)
    x.max(axis=1).sum().backward()
    np.testing.assert_allclose(x.grad, [[0, 0.5, 0.5], [1, 0, 0]])


# --- shape ops ----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(6, 4), (2, 12), (24,), (2, 3, 4), (4, -1), (1, 24, 1)])
def test_reshape(rng, shape):
    grad_check(lambda t: t.reshape(shape), randn(rng, 2, 3, 4))


@pytest.mark.parametrize("axes", [None, (0, 1, 2), (2, 0, 1), (1, 2, 0), (0, 2, 1)])
def test_transpose(rng, axes):
    x = randn(rng, 2, 3, 4)
    out = Tensor(x, dtype=np.float64).transpose(axes) if axes else Tensor(x, dtype=np.float64).T
    np.testing.assert_array_equal(out.data, np.transpose(x, axes))
    grad_check(lambda t: t.transpose(axes) if axes else t.T, x)


@pytest.mark.parametrize("index", [
    np.s_[1],
    np.s_[1:3],
    np.s_[::2, 1:],
    np.s_[..., -1],
    np.s_[:, None, 2],
    np.array([0, 2, 2, 3, 0]),                            # repeats: gradients must add
    (np.array([0, 0, 3]), np.array([1, 1, 2])),           # repeated (row, col) pairs
    np.s_[[1, 1], :2],
], ids=["int", "slice", "strided", "ellipsis", "newaxis", "int-array-repeats", "pairs-repeats",
        "list-slice"])
def test_getitem(rng, index):
    x = randn(rng, 4, 3)
    np.testing.assert_array_equal(Tensor(x, dtype=np.float64)[index].data, x[index])
    grad_check(lambda t: t[index], x)


def test_getitem_repeated_index_accumulates():
    x = Tensor(np.zeros(3), requires_grad=True, dtype=np.float64)
    x[np.array([2, 2, 2, 0])].sum().backward()
    np.testing.assert_array_equal(x.grad, [1, 0, 3])


def test_getitem_boolean_mask(rng):
    x = randn(rng, 3, 4)
    mask = x > 0
    grad_check(lambda t: t[mask], x)


# --- elementwise --------------------------------------------------------------------------------
def test_exp(rng):
    grad_check(lambda t: t.exp(), randn(rng, 3, 4))


def test_log(rng):
    grad_check(lambda t: t.log(), rng.uniform(0.2, 3.0, (3, 4)))


def test_relu(rng):
    x = off_zero(rng, 4, 5)
    np.testing.assert_array_equal(Tensor(x, dtype=np.float64).relu().data, np.maximum(x, 0))
    grad_check(lambda t: t.relu(), x)
    grad_check(lambda t: fn.relu(t), x)


def test_masked(rng):
    w = randn(rng, 3, 4)
    mask = rng.random((3, 4)) > 0.5
    out = F.Masked.apply(Tensor(w, dtype=np.float64), mask)
    np.testing.assert_array_equal(out.data, w * mask)
    (g,) = grad_check(lambda t: F.Masked.apply(t, mask), w)
    assert np.all(g[~mask] == 0)


# --- losses -------------------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_log_softmax(rng, axis):
    x = randn(rng, 3, 5) * 2
    out = Tensor(x, dtype=np.float64).log_softmax(axis)
    np.testing.assert_allclose(np.exp(out.data).sum(axis=axis), 1.0)
    np.testing.assert_allclose(out.data, x - np.log(np.exp(x).sum(axis=axis, keepdims=True)))
    grad_check(lambda t: t.log_softmax(axis), x)
    grad_check(lambda t: fn.log_softmax(t, axis), x)


def _naive_ce(z, y):
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return -np.mean(np.log(p[np.arange(len(y)), y]))


def test_cross_entropy(rng):
    z, y = randn(rng, 5, 4), np.array([0, 3, 1, 1, 2])
    loss = fn.cross_entropy(Tensor(z, dtype=np.float64), y)
    assert loss.shape == ()
    np.testing.assert_allclose(loss.item(), _naive_ce(z, y), rtol=1e-12)
    grad_check(lambda t: fn.cross_entropy(t, y), z)
    grad_check(lambda t: F.CrossEntropy.apply(t, y), z)


def test_cross_entropy_accepts_tensor_and_float_labels(rng):
    z, y = randn(rng, 4, 3), np.array([0, 2, 1, 0])
    a = fn.cross_entropy(Tensor(z), y).item()
    assert fn.cross_entropy(Tensor(z), Tensor(y)).item() == pytest.approx(a)
    assert fn.cross_entropy(Tensor(z), y.astype(np.float64)).item() == pytest.approx(a)


@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_cross_entropy_is_finite_for_huge_logits(rng, scale):
    z = np.array([[1.0, -1.0, 0.5], [0.0, 1.0, -1.0]]) * scale
    y = np.array([1, 1])
    for dtype in (np.float32, np.float64):
        t = Tensor(z, requires_grad=True, dtype=dtype)
        loss = fn.cross_entropy(t, y)
        loss.backward()
        assert np.isfinite(loss.item())
        assert np.all(np.isfinite(t.grad))
    # With margins this large, logsumexp(z) is max(z): the loss is the mean shortfall of z[y].
    expected = np.mean(z.max(axis=1) - z[np.arange(2), y])
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_cross_entropy_bad_targets():
    z = Tensor(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="targets"):
        fn.cross_entropy(z, np.array([0, 3]))
    with pytest.raises(ValueError, match="targets"):
        fn.cross_entropy(z, np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="targets"):
        fn.cross_entropy(z, np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="logits"):
        fn.cross_entropy(Tensor(np.zeros(3)), np.array([0]))


# --- layers -------------------------------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
def test_linear(rng, bias):
    x, w, b = randn(rng, 4, 3), randn(rng, 5, 3), randn(rng, 5)
    expected = x @ w.T + (b if bias else 0)
    args = (x, w, b) if bias else (x, w)
    out = fn.linear(*(Tensor(a, dtype=np.float64) for a in args))
    np.testing.assert_allclose(out.data, expected)
    grad_check(lambda *t: fn.linear(*t), *args)


def test_linear_with_mask_passes_no_gradient_to_pruned_weights(rng):
    from minprune.nn import Parameter
    w = Parameter(randn(rng, 5, 3))
    w.set_mask(rng.random((5, 3)) > 0.4)
    x = randn(rng, 4, 3)
    (gx, gw) = grad_check(lambda xx, ww: fn.linear(xx, ww), x, w)
    assert np.all(gw[~w.mask] == 0)


def _conv_ref(x, w, b, stride, padding):
    """Direct loops: the definition of cross-correlation."""
    (sh, sw), (ph, pw) = stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    n, _, hp, wp = xp.shape
    o, _, kh, kw = w.shape
    oh, ow = (hp - kh) // sh + 1, (wp - kw) // sw + 1
    out = np.zeros((n, o, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w)
    return out + (0 if b is None else b[None, :, None, None])


@pytest.mark.parametrize("stride, padding, kernel, bias", [
    (1, 0, (3, 3), True),
    (1, 1, (3, 3), False),
    (2, 0, (3, 3), True),
    (2, 1, (3, 2), True),
    (1, 2, (2, 3), True),
    ((1, 2), (2, 0), (3, 1), False),
    (2, 2, (1, 1), True),
])
def test_conv2d(rng, stride, padding, kernel, bias):
    x = randn(rng, 2, 2, 5, 6)
    w = randn(rng, 3, 2, *kernel)
    b = randn(rng, 3)
    s, p = fn._pair(stride, "stride"), fn._pair(padding, "padding")
    out = fn.conv2d(Tensor(x, dtype=np.float64), Tensor(w, dtype=np.float64),
                    Tensor(b, dtype=np.float64) if bias else None, stride, padding)
    np.testing.assert_allclose(out.data, _conv_ref(x, w, b if bias else None, s, p), atol=1e-12)
    if bias:
        grad_check(lambda xx, ww, bb: fn.conv2d(xx, ww, bb, stride, padding), x, w, b)
    else:
        grad_check(lambda xx, ww: fn.conv2d(xx, ww, None, stride, padding), x, w)


@pytest.mark.parametrize("kernel, padding", [((3, 3), (1, 1)), ((3, 2), (0, 1)), ((2, 3), (1, 2)),
                                             ((1, 1), (0, 0)), ((5, 5), (2, 2))])
def test_conv2d_input_gradient_as_a_flipped_convolution(rng, kernel, padding):
    """Stride 1 with out ≤ in channels: backward convolves g with the flipped kernel (no col2im)."""
    x, w, b = randn(rng, 2, 3, 6, 5), randn(rng, 2, 3, *kernel), randn(rng, 2)
    grad_check(lambda xx, ww, bb: fn.conv2d(xx, ww, bb, 1, padding), x, w, b)


def test_conv2d_graphs_do_not_share_buffers(rng):
    """forward(a), forward(b), then backward(b), backward(a): each gets its own gradients, though
    Conv2d reuses its big temporaries (kernels.WORKSPACE) across calls."""
    w = Tensor(randn(rng, 4, 8, 3, 3), requires_grad=True)
    # 16·32·32 × 8·3·3 float32: a 4.7 MB patch matrix, big enough to come from the workspace
    xa, xb = (Tensor(randn(rng, 16, 8, 32, 32), requires_grad=True) for _ in range(2))
    alone = []
    for x in (xa, xb):
        fn.conv2d(x, w, padding=1).sum().backward()
        alone.append((x.grad.copy(), w.grad.copy()))
        x.grad = w.grad = None
    ya, yb = fn.conv2d(xa, w, padding=1), fn.conv2d(xb, w, padding=1)
    yb.sum().backward()
    np.testing.assert_array_equal(xb.grad, alone[1][0])
    np.testing.assert_array_equal(w.grad, alone[1][1])
    w.grad = None
    ya.sum().backward()
    np.testing.assert_array_equal(xa.grad, alone[0][0])
    np.testing.assert_array_equal(w.grad, alone[0][1])


def test_conv2d_input_gradient_skipped_when_not_needed(rng):
    x = Tensor(randn(rng, 1, 1, 4, 4), dtype=np.float64)
    w = Tensor(randn(rng, 2, 1, 3, 3), requires_grad=True, dtype=np.float64)
    fn.conv2d(x, w, padding=1).sum().backward()
    assert x.grad is None and w.grad.shape == (2, 1, 3, 3)


def test_conv2d_bad_arguments(rng):
    x, w = Tensor(randn(rng, 1, 2, 5, 5)), Tensor(randn(rng, 3, 2, 3, 3))
    with pytest.raises(ValueError, match="x"):
        fn.conv2d(Tensor(randn(rng, 1, 3, 5, 5)), w)
    with pytest.raises(ValueError, match="x"):
        fn.conv2d(Tensor(randn(rng, 2, 5, 5)), w)
    with pytest.raises(ValueError, match="stride"):
        fn.conv2d(x, w, stride=0)
    with pytest.raises(ValueError, match="padding"):
        fn.conv2d(x, w, padding=-1)
    with pytest.raises(TypeError, match="stride"):
        fn.conv2d(x, w, stride=1.5)
    with pytest.raises(ValueError, match="kernel"):
        fn.conv2d(Tensor(randn(rng, 1, 2, 2, 2)), w)


def _pool_ref(x, k, s, reduce):
    n, c, h, w = x.shape
    oh, ow = (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = reduce(x[:, :, i * s[0]:i * s[0] + k[0], j * s[1]:j * s[1] + k[1]],
                                     axis=(2, 3))
    return out


POOLS = [(2, None), (2, 1), (3, 2), ((2, 3), (1, 2)), (3, None)]


@pytest.mark.parametrize("kernel, stride", POOLS)
def test_max_pool2d(rng, kernel, stride):
    x = distinct(rng, 2, 2, 6, 7)
    k = fn._pair(kernel, "k")
    s = k if stride is None else fn._pair(stride, "s")
    out = fn.max_pool2d(Tensor(x, dtype=np.float64), kernel, stride)
    np.testing.assert_array_equal(out.data, _pool_ref(x, k, s, np.max))
    grad_check(lambda t: fn.max_pool2d(t, kernel, stride), x)


@pytest.mark.parametrize("kernel, stride", POOLS)
def test_avg_pool2d(rng, kernel, stride):
    x = randn(rng, 2, 2, 6, 7)
    k = fn._pair(kernel, "k")
    s = k if stride is None else fn._pair(stride, "s")
    out = fn.avg_pool2d(Tensor(x, dtype=np.float64), kernel, stride)
    np.testing.assert_allclose(out.data, _pool_ref(x, k, s, np.mean), atol=1e-12)
    grad_check(lambda t: fn.avg_pool2d(t, kernel, stride), x)


def test_pool_bad_arguments(rng):
    x = Tensor(randn(rng, 1, 1, 4, 4))
    with pytest.raises(ValueError, match="kernel_size"):
        fn.max_pool2d(x, 0)
    with pytest.raises(ValueError, match="x"):
        fn.max_pool2d(x, 5)
    with pytest.raises(ValueError, match="x"):
        fn.avg_pool2d(Tensor(randn(rng, 4, 4)), 2)
    with pytest.raises(TypeError, match="kernel_size"):
        fn.avg_pool2d(x, "2")


def _bn(x, gamma, beta, train, mean=None, var=None, eps=1e-5):
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    if train:
        mean, var = x.data.mean(axis=axes), x.data.var(axis=axes)  # recomputed for each probe
    return F.BatchNorm.apply(x, gamma, beta, eps, mean, var, train)


@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 3, 4)])
@pytest.mark.parametrize("train", [True, False])
def test_batchnorm(rng, shape, train):
    c = shape[1]
    x = randn(rng, *shape) * 2 + 1
    gamma, beta = rng.uniform(0.5, 1.5, c), randn(rng, c)
    mean, var = randn(rng, c), rng.uniform(0.5, 2.0, c)
    axes = (0,) if len(shape) == 2 else (0, 2, 3)
    bshape = [1] * len(shape)
    bshape[1] = c
    out = _bn(*(Tensor(a, dtype=np.float64) for a in (x, gamma, beta)), train, mean, var)
    m, v = (x.mean(axis=axes), x.var(axis=axes)) if train else (mean, var)
    expected = ((x - m.reshape(bshape)) / np.sqrt(v.reshape(bshape) + 1e-5) * gamma.reshape(bshape)
                + beta.reshape(bshape))
    np.testing.assert_allclose(out.data, expected, atol=1e-12)
    grad_check(lambda xx, gg, bb: _bn(xx, gg, bb, train, mean, var), x, gamma, beta)


def test_unbroadcast_sums_to_shape():
    g = np.ones((2, 3, 4))
    assert F.unbroadcast(g, (3, 1)).shape == (3, 1)
    np.testing.assert_array_equal(F.unbroadcast(g, (3, 1)), np.full((3, 1), 8.0))
    assert F.unbroadcast(g, ()).shape == ()
    assert F.unbroadcast(g, (1, 1, 1)).item() == 24


def test_conv2d_promotes_mixed_precision_like_numpy():
    """float32 input with float64 weights computes in float64 (the Hessian-vector products rely on it)."""
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((2, 3, 6, 6)).astype(np.float32))
    w = Tensor(rng.standard_normal((4, 3, 3, 3)), dtype=np.float64)
    out = fn.conv2d(x, w, padding=1)
    assert out.dtype == np.float64
