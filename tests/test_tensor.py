"""Tensor: construction and dtype rules, operators on either side, NumPy-compatible broadcasting."""
import operator

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import arrays, away_from_zero, broadcastable_pair, shapes

import minprune as mp
from minprune.tensor import Tensor

pytestmark = pytest.mark.engine


# --- construction -------------------------------------------------------------------------------
@pytest.mark.parametrize("data", [[1, 2, 3], np.arange(4), np.array([True, False]), 7,
                                  np.arange(3, dtype=np.uint8)])
def test_ints_and_bools_become_float32(data):
    t = mp.tensor(data)
    assert t.dtype == np.float32
    np.testing.assert_array_equal(t.data, np.asarray(data, dtype=np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_arrays_keep_their_dtype(dtype):
    assert Tensor(np.ones(3, dtype=dtype)).dtype == dtype


def test_python_floats_become_float32():
    assert Tensor([1.5, 2.5]).dtype == np.float32
    assert Tensor(0.5).dtype == np.float32
    assert Tensor(np.ones(2), dtype=np.float32).dtype == np.float32
    assert mp.tensor([1, 2], dtype=np.float64).dtype == np.float64


@pytest.mark.parametrize("bad", ["abc", ["a", "b"], np.array([1 + 2j]), [object()], None])
def test_non_numeric_data_raises_type_error_naming_data(bad):
    with pytest.raises(TypeError, match="data"):
        Tensor(bad)


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="requires_grad"):
        Tensor(np.arange(3), requires_grad=True, dtype=np.int64)


def test_tensor_from_tensor_shares_values_not_graph():
    a = Tensor([1.0, 2.0], requires_grad=True)
    b = Tensor(a)
    assert not b.requires_grad and b._op is None
    np.testing.assert_array_equal(a.data, b.data)


def test_basic_properties():
    t = Tensor(np.arange(6.0).reshape(2, 3))
    assert t.shape == (2, 3) and t.ndim == 2 and t.size == 6 and len(t) == 2
    assert t.numpy() is t.data
    assert "Tensor(" in repr(t)
    assert "requires_grad=True" in repr(Tensor([1.0], requires_grad=True))


def test_item():
    assert Tensor(np.array(3.5)).item() == 3.5
    assert isinstance(Tensor([2.0]).item(), float)
    with pytest.raises(ValueError):
        Tensor([1.0, 2.0]).item()


def test_T_reverses_axes():
    x = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(Tensor(x).T.data, x.T)
    np.testing.assert_array_equal(Tensor(x[0]).T.data, x[0].T)


def test_reshape_and_transpose_argument_forms():
    t = Tensor(np.arange(6.0))
    assert t.reshape(2, 3).shape == (2, 3)
    assert t.reshape((3, 2)).shape == (3, 2)
    assert t.reshape([1, 6]).shape == (1, 6)
    u = Tensor(np.zeros((2, 3, 4)))
    assert u.transpose(2, 0, 1).shape == (4, 2, 3)
    assert u.transpose((1, 0, 2)).shape == (3, 2, 4)


def test_getitem_with_tensor_index():
    t = Tensor(np.arange(5.0))
    np.testing.assert_array_equal(t[Tensor([4, 0])].data, [4.0, 0.0])


def test_pow_rejects_tensor_exponent():
    with pytest.raises(TypeError, match="exponent"):
        Tensor([1.0]) ** Tensor([2.0])


# --- operators with scalars and arrays on either side --------------------------------------------
OPS = [operator.add, operator.sub, operator.mul, operator.truediv]


@pytest.mark.parametrize("op", OPS, ids=lambda o: o.__name__)
@pytest.mark.parametrize("other", [2, 0.5, np.float32(3.0), np.array([1.0, -2.0, 4.0]),
                                   np.array([[2.0], [4.0]])], ids=["int", "float", "np-scalar",
                                                                    "array", "column"])
def test_operators_with_constants_on_either_side(op, other):
    a = np.array([[1.0, 2.0, -3.0], [0.5, -1.5, 2.5]], dtype=np.float32)
    t = Tensor(a, requires_grad=True)
    for result, expected in [(op(t, other), op(a, other)), (op(other, t), op(other, a))]:
        assert isinstance(result, Tensor)
        assert result.shape == np.shape(expected)
        np.testing.assert_allclose(result.data, expected, rtol=1e-6)
        assert result.requires_grad


def test_matmul_with_arrays_on_either_side():
    a, b = np.arange(6.0).reshape(2, 3), np.arange(12.0).reshape(3, 4)
    np.testing.assert_allclose((Tensor(a) @ b).data, a @ b)
    np.testing.assert_allclose((a @ Tensor(b)).data, a @ b)
    assert isinstance(a @ Tensor(b), Tensor)


def test_neg_and_pow():
    a = np.array([1.0, -2.0, 3.0])
    np.testing.assert_array_equal((-Tensor(a)).data, -a)
    np.testing.assert_allclose((Tensor(a) ** 2).data, a ** 2)
    np.testing.assert_allclose((Tensor(np.abs(a)) ** 0.5).data, np.abs(a) ** 0.5, rtol=1e-6)


def test_reductions_and_elementwise_methods():
    x = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
    t = Tensor(x, dtype=np.float64)
    np.testing.assert_allclose(t.sum().data, x.sum())
    np.testing.assert_allclose(t.mean(axis=0).data, x.mean(axis=0))
    np.testing.assert_allclose(t.max(axis=1, keepdims=True).data, x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(t.exp().data, np.exp(x))
    np.testing.assert_allclose(t.relu().data, np.maximum(x, 0))
    np.testing.assert_allclose(Tensor(np.abs(x), dtype=np.float64).log().data, np.log(np.abs(x)))


# --- broadcasting properties against NumPy ------------------------------------------------------
@given(st.data())
@pytest.mark.parametrize("op", OPS, ids=lambda o: o.__name__)
def test_broadcasting_matches_numpy(op, data):
    sa, sb = data.draw(broadcastable_pair())
    a = data.draw(arrays(sa))
    b = data.draw(away_from_zero(sb) if op is operator.truediv else arrays(sb))
    ta = Tensor(a, requires_grad=True, dtype=np.float64)
    tb = Tensor(b, requires_grad=True, dtype=np.float64)
    out = op(ta, tb)
    expected = op(a, b)
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12)
    out.sum().backward()
    assert ta.grad.shape == a.shape and tb.grad.shape == b.shape


@given(shapes(min_dims=1), st.data())
def test_sum_over_any_axis_matches_numpy(shape, data):
    x = data.draw(arrays(shape))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    keepdims = data.draw(st.booleans())
    t = Tensor(x, requires_grad=True, dtype=np.float64)
    out = t.sum(axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(out.data, x.sum(axis=axis, keepdims=keepdims))
    out.sum().backward()
    np.testing.assert_array_equal(t.grad, np.ones(shape))


@given(shapes(min_dims=1))
def test_reshape_round_trip(shape):
    x = np.arange(int(np.prod(shape)), dtype=np.float64)
    t = Tensor(x).reshape(shape)
    assert t.shape == tuple(shape)
    np.testing.assert_array_equal(t.reshape(-1).data, x)
