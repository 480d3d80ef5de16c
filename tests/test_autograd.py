"""The autograd core: topological backward, accumulation, no_grad, detach."""
import numpy as np
import pytest

import minprune as mp
from minprune import autograd
from minprune.autograd import Function
from minprune.tensor import Tensor

pytestmark = pytest.mark.engine


def leaf(values):
    return Tensor(np.asarray(values, dtype=np.float64), requires_grad=True, dtype=np.float64)


def test_backward_visits_nodes_in_topological_order():
    calls = []

    def recorder(name):
        class Record(Function):
            @staticmethod
            def forward(ctx, a):
                return a.copy()

            @staticmethod
            def backward(ctx, g):
                calls.append(name)
                return g
        Record.__name__ = name
        return Record

    x = leaf([1.0, 2.0])
    a = recorder("a").apply(x)
    b = recorder("b").apply(a)
    c = recorder("c").apply(a)  # a feeds b and c: its backward must wait for both
    d = recorder("d").apply(b + c)
    d.sum().backward()
    assert calls.index("d") < calls.index("b") and calls.index("d") < calls.index("c")
    assert calls.index("b") < calls.index("a") and calls.index("c") < calls.index("a")
    assert calls.count("a") == 1  # a's gradient is complete before it is passed on, once
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])


@pytest.mark.parametrize("expr, expected", [
    (lambda x: x * x, lambda v: 2 * v),
    (lambda x: x + x, lambda v: 2 * np.ones_like(v)),
    (lambda x: x * x * x, lambda v: 3 * v ** 2),
    (lambda x: x - x, lambda v: np.zeros_like(v)),
    (lambda x: x / x, lambda v: np.zeros_like(v)),
])
def test_reused_node_gradients_add_up(expr, expected):
    v = np.array([0.5, -1.5, 2.0])
    x = leaf(v)
    expr(x).sum().backward()
    np.testing.assert_allclose(x.grad, expected(v), atol=1e-12)


def test_diamond_graph():
    # x → (a = 2x, b = x²) → y = a·b = 2x³ ; dy/dx = 6x²
    v = np.array([1.0, -2.0, 0.5])
    x = leaf(v)
    a = x * 2.0
    b = x * x
    (a * b).sum().backward()
    np.testing.assert_allclose(x.grad, 6 * v ** 2)


def test_deep_chain_does_not_hit_recursion_limit():
    x = leaf([1.0])
    y = x
    for _ in range(5000):
        y = y + 0.0
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0])


def test_grad_accumulates_across_backward_calls_until_zeroed():
    x = leaf([1.0, 2.0])
    (x * 3.0).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [6.0, 6.0])
    x.zero_grad()
    assert x.grad is None
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 4.0])


def test_backward_accumulation_does_not_alias_the_seed_gradient():
    x = leaf([1.0, 2.0])
    seed = np.array([1.0, 1.0])
    (x + 0.0).backward(seed)
    x.grad += 5.0  # must not write into the caller's array
    np.testing.assert_array_equal(seed, [1.0, 1.0])


def test_explicit_grad_for_non_scalar():
    x = leaf([1.0, 2.0, 3.0])
    y = x * x
    y.backward(np.array([1.0, 0.0, 2.0]))
    np.testing.assert_array_equal(x.grad, [2.0, 0.0, 12.0])


def test_backward_on_non_scalar_without_grad_raises():
    y = leaf([1.0, 2.0]) * 2.0
    with pytest.raises(ValueError, match="grad"):
        y.backward()


def test_inputs_without_requires_grad_get_no_grad():
    x = leaf([1.0, 2.0])
    c = Tensor(np.array([3.0, 4.0]), dtype=np.float64)
    (x * c).sum().backward()
    assert c.grad is None
    np.testing.assert_array_equal(x.grad, [3.0, 4.0])


def test_result_requires_grad_only_if_an_input_does():
    a = Tensor([1.0, 2.0])
    b = Tensor([1.0, 2.0], requires_grad=True)
    assert not (a * a).requires_grad
    assert (a * b).requires_grad
    assert (a * a)._parents == ()


def test_no_grad_builds_no_graph():
    x = leaf([1.0, 2.0])
    with mp.no_grad():
        assert not autograd.is_grad_enabled()
        y = x * x + 1.0
    assert autograd.is_grad_enabled()
    assert not y.requires_grad and y._op is None and y._parents == ()
    np.testing.assert_array_equal(y.data, [2.0, 5.0])


def test_no_grad_nests_and_restores_after_exception():
    with pytest.raises(RuntimeError, match="boom"):
        with mp.no_grad():
            with mp.no_grad():
                pass
            assert not autograd.is_grad_enabled()  # the inner block restored "off", not "on"
            raise RuntimeError("boom")
    assert autograd.is_grad_enabled()
    y = leaf([1.0]) * 2.0
    assert y.requires_grad


def test_detach_cuts_the_graph_and_shares_values():
    x = leaf([1.0, 2.0])
    y = x * 3.0
    d = y.detach()
    assert not d.requires_grad and d._op is None
    np.testing.assert_array_equal(d.data, y.data)
    (x * d).sum().backward()  # d is a constant: dx = d
    np.testing.assert_array_equal(x.grad, [3.0, 6.0])


def test_gradient_dtype_matches_float32_leaf():
    x = Tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    (x * x).sum().backward()
    assert x.grad.dtype == np.float32


def test_set_grad_enabled_builds_a_graph_inside_no_grad_and_restores_the_mode():
    from minprune.autograd import is_grad_enabled, no_grad, set_grad_enabled
    w = Tensor(np.array([2.0]), requires_grad=True)
    with no_grad():
        with set_grad_enabled(True):
            y = w * w
        assert not is_grad_enabled()
        assert not (w * w).requires_grad
    assert y.requires_grad and is_grad_enabled()
    y.backward()
    assert w.grad[0] == 4.0
