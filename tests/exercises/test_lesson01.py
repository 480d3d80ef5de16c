"""Checkers of lesson 01 (autograd from scratch): the lesson's reference answers pass the self-check
and hidden variants; typical mistakes fail with their hint; the library's own implementation is
blocked; a replayed answer fails a hidden variant."""
import numpy as np
import pytest
from checking import accepts, blocked, fails, fails_hidden, passes_hidden, replay_of

import minprune as mp
import minprune.exercises as ex
from minprune.course import notebooks as N

pytestmark = pytest.mark.course


# --- 01.1 mul_backward --------------------------------------------------------------------------
def test_mul_backward_reference(capsys):
    answer = N.reference_answer("01.1")
    accepts(ex.check_mul_backward, answer, capsys=capsys)
    passes_hidden(ex.check_mul_backward, answer)


def test_mul_backward_mistakes():
    fails(ex.check_mul_backward, lambda a, b, g: (g * a, g * b), "wrong input")
    fails(ex.check_mul_backward, lambda a, b, g: (b, a), "incoming gradient")
    fails(ex.check_mul_backward, lambda a, b, g: g * b, "pair")
    fails(ex.check_mul_backward, lambda a, b, g: None, "pair")
    fails(ex.check_mul_backward, lambda a, b, g: (g * b, g * b), "grad_b")   # half right
    fails(ex.check_mul_backward, lambda a, b, g: (g * b, (g * a).sum()), "shape")


def test_mul_backward_through_the_library_is_blocked():
    def by_autograd(a, b, g):
        ta, tb = mp.tensor(a, requires_grad=True), mp.tensor(b, requires_grad=True)
        (ta * tb).backward(g)
        return ta.grad, tb.grad

    def by_the_graph_walk(a, b, g):
        ta, tb = mp.tensor(a, requires_grad=True), mp.tensor(b, requires_grad=True)
        mp.autograd.backward(ta * tb, g)
        return ta.grad, tb.grad

    def by_mul(a, b, g):
        ctx = mp.autograd.Context()
        mp.functions.Mul.forward(ctx, a, b)
        return mp.functions.Mul.backward(ctx, g)

    for answer in (by_autograd, by_the_graph_walk, by_mul):
        blocked(ex.check_mul_backward, answer)


def test_mul_backward_replayed_fails_hidden():
    fails_hidden(ex.check_mul_backward, replay_of(ex.check_mul_backward, lambda a, b, g: (g * b, g * a)))


# --- 01.2 numeric gradient ----------------------------------------------------------------------
def _central(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = f(x)
        x[i] = old - eps
        grad[i] = (up - f(x)) / (2 * eps)
        x[i] = old
    return grad


def _forward_diff(f, x, eps=1e-6):
    grad, base = np.zeros_like(x), f(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        grad[i] = (f(x) - base) / eps
        x[i] = old
    return grad


def test_grad_check_reference(capsys):
    answer = N.reference_answer("01.2")
    accepts(ex.check_grad_check, answer, capsys=capsys)
    passes_hidden(ex.check_grad_check, answer)
    accepts(ex.check_grad_check, _central, capsys=capsys)


def test_grad_check_mistakes():
    fails(ex.check_grad_check, _forward_diff, "one-sided")
    fails(ex.check_grad_check, lambda f, x, eps: _central(f, x, 1e-6), "ignored the eps")

    def mutating(f, x, eps=1e-6):
        grad = _central(f, x.copy(), eps)
        x += eps
        return grad

    fails(ex.check_grad_check, mutating, "changed its input")
    fails(ex.check_grad_check, lambda f, x, eps: np.zeros_like(x), "wrong")
    fails(ex.check_grad_check, lambda f, x, eps: _central(f, x, eps).ravel()[:1], "shape")
    fails(ex.check_grad_check, lambda f, x, eps: None, "return")


def test_grad_check_private_helper_is_blocked():
    from minprune.exercises import lesson01
    blocked(ex.check_grad_check, lambda f, x, eps: lesson01._numeric_grad(f, x, eps))


def test_grad_check_replayed_fails_hidden():
    fails_hidden(ex.check_grad_check, replay_of(ex.check_grad_check, _central))


# --- 01.3 summing back over broadcast axes --------------------------------------------------------
def _sum_back(grad, shape):
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(extra + i for i, n in enumerate(shape)
                                       if n == 1 and grad.shape[extra + i] != 1)
    return grad.sum(axis=axes).reshape(shape) if axes else grad


def test_unbroadcast_reference(capsys):
    answer = N.reference_answer("01.3")
    accepts(ex.check_unbroadcast, answer, capsys=capsys)
    passes_hidden(ex.check_unbroadcast, answer)
    accepts(ex.check_unbroadcast, _sum_back, capsys=capsys)


def test_unbroadcast_mistakes():
    fails(ex.check_unbroadcast, lambda g, shape: g, "shape")

    def averaging(g, shape):
        return _sum_back(g, shape) / (g.size / max(np.prod(shape), 1))

    def leading_axes_only(g, shape):
        while g.ndim > len(shape):
            g = g.sum(axis=0)
        return g

    def picks_one_copy(g, shape):
        while g.ndim > len(shape):
            g = g[0]
        return g[tuple(slice(0, 1) if n == 1 else slice(None) for n in shape)]

    fails(ex.check_unbroadcast, averaging, "averaged")
    fails(ex.check_unbroadcast, leading_axes_only, "size 1")
    fails(ex.check_unbroadcast, picks_one_copy, "do not take the mean or pick one copy")


def test_unbroadcast_through_the_library_is_blocked():
    def by_autograd(g, shape):
        a = mp.tensor(np.zeros(shape), requires_grad=True, dtype=np.float64)
        (a + mp.tensor(np.zeros(g.shape), dtype=np.float64)).backward(g)
        return a.grad

    blocked(ex.check_unbroadcast, lambda g, shape: mp.functions.unbroadcast(g, shape))
    blocked(ex.check_unbroadcast, by_autograd)


def test_unbroadcast_replayed_fails_hidden():
    fails_hidden(ex.check_unbroadcast, replay_of(ex.check_unbroadcast, _sum_back))


# --- half-right answers: right on some cases, wrong on others; the checker must compare every output
def test_mul_backward_half_right_answers_fail():
    check = ex.check_mul_backward
    # grad_b has the right values in the wrong places for 2-D and 3-D inputs (right for 1-D): its
    # sum and its first entry are right, so only an entry-by-entry comparison catches it
    fails(check, lambda a, b, g: (g * b, np.transpose(g * a).reshape(a.shape)), "grad_b is wrong")

    def loop_one_short(a, b, g):   # an explicit loop that stops before the last entry of grad_b
        grad_b = np.zeros_like(b).ravel()
        for i in range(grad_b.size - 1):
            grad_b[i] = (g * a).ravel()[i]
        return g * b, grad_b.reshape(b.shape)

    fails(check, loop_one_short, "grad_b is wrong")


def test_grad_check_half_right_answers_fail():
    def rows_at_a_time(f, x, eps):   # `for i in range(len(x))`: right for 1-D x only
        grad = np.zeros_like(x)
        for i in range(len(x)):
            old = x[i].copy()
            x[i] = old + eps
            up = f(x)
            x[i] = old - eps
            grad[i] = (up - f(x)) / (2 * eps)
            x[i] = old
        return grad

    fails(ex.check_grad_check, rows_at_a_time, "gradient is wrong")


def test_unbroadcast_half_right_answers_fail():
    def first_copy_of_leading_axes(g, shape):   # right when no leading axis was added
        while g.ndim > len(shape):
            g = g[0]
        axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
        return g.sum(axis=axes, keepdims=True) if axes else g

    def first_axis_only(g, shape):   # sums a stretched axis 0 only: right for (1, 4), not (3, 1)
        while g.ndim > len(shape):
            g = g.sum(axis=0)
        if shape and shape[0] == 1 and g.shape[0] != 1:
            g = g.sum(axis=0, keepdims=True)
        return g

    fails(ex.check_unbroadcast, first_copy_of_leading_axes, "wrong values")
    fails(ex.check_unbroadcast, first_axis_only, "should have shape")
    # by hand: a (2, 3) gradient summed back to (1, 3) and to (2, 1)
    g = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    np.testing.assert_array_equal(_sum_back(g, (1, 3)), [[5.0, 7.0, 9.0]])
    np.testing.assert_array_equal(_sum_back(g, (2, 1)), [[6.0], [15.0]])
