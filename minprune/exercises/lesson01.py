"""Checkers of lesson 01 — autograd from scratch (`lessons/01_autograd_from_scratch.ipynb`)."""
from __future__ import annotations

import numpy as np

from .core import as_array, correct, exercise, fail, require_callable, rng_for


def _numeric_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar function f at x (float64), one coordinate at a time."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = f(x)
        x[i] = old - eps
        down = f(x)
        x[i] = old
        grad[i] = (up - down) / (2 * eps)
    return grad


def _random_shape(rng, max_ndim=3, max_size=5) -> tuple:
    return tuple(int(n) for n in rng.integers(1, max_size + 1, size=rng.integers(1, max_ndim + 1)))


@exercise("01.1", blocks=["minprune.tensor.Tensor.backward", "minprune.autograd.backward",
                           "minprune.functions.Mul.backward"])
def check_mul_backward(fn, variant=None) -> None:
    """`fn(a, b, grad) -> (grad_a, grad_b)`: the backward pass of elementwise `out = a * b`.

    `grad` is dLoss/dout (same shape as a and b); the answer must be dLoss/da and dLoss/db. It is
    compared with central-difference gradients of Loss = sum(grad * a * b) on random inputs.
    """
    require_callable(fn, "fn")
    rng = rng_for(variant)
    shapes = [(3,), (2, 4), (2, 3, 2)] if variant is None else [_random_shape(rng) for _ in range(3)]
    for shape in shapes:
        a, b, g = (rng.normal(size=shape) for _ in range(3))
        answer = fn(a.copy(), b.copy(), g.copy())
        if not isinstance(answer, (tuple, list)) or len(answer) != 2:
            fail(f"fn should return a pair (grad_a, grad_b), got {type(answer).__name__}.",
                 "return both gradients: `return grad_a, grad_b`.")
        da, db = (as_array(v, name) for v, name in zip(answer, ("grad_a", "grad_b")))
        want_a = _numeric_grad(lambda t, b=b, g=g: np.sum(g * t * b), a)
        want_b = _numeric_grad(lambda t, a=a, g=g: np.sum(g * a * t), b)
        for got, want, name, other in [(da, want_a, "grad_a", "b"), (db, want_b, "grad_b", "a")]:
            if got.shape != shape:
                fail(f"{name} has shape {got.shape}; inputs of shape {shape} need a gradient "
                     f"of the same shape.")
            if not np.allclose(got, want, rtol=1e-5, atol=1e-6):
                right, wrong = (b, a) if other == "b" else (a, b)
                hint = (f"d(a*b)/d{name[-1]} = {other}, and the chain rule multiplies by the "
                        f"incoming grad: {name} = grad * {other}.")
                if np.allclose(got, g * wrong):
                    hint = f"you multiplied by the wrong input: {name} needs grad * {other}."
                elif np.allclose(got, right):
                    hint = f"you forgot the incoming gradient: {name} = grad * {other}."
                fail(f"{name} is wrong for inputs of shape {shape}.\n"
                     f"  expected (numeric): {np.round(want.ravel()[:4], 5)} ...\n"
                     f"  got:                {np.round(got.ravel()[:4], 5)} ...", hint)
    correct("your backward matches central-difference gradients on random inputs")


def _grad_cases(variant):
    """(name, f, df, x) triples: functions with known derivatives; hidden variants scale them by
    random coefficients and evaluate them at random points of random shapes."""
    rng = rng_for(variant, 1)
    if variant is None:
        c, shapes, x2 = 1.0, [5, (2, 3)], np.array([1.5, -2.0])
    else:
        c, shapes = float(rng.uniform(0.5, 3.0)), [_random_shape(rng), _random_shape(rng)]
        x2 = rng.normal(size=2)
    return [
        (f"sum({c:g}·x**2)", lambda x: float(np.sum(c * x ** 2)), lambda x: 2 * c * x,
         rng.normal(size=shapes[0])),
        (f"sum(sin({c:g}·x))", lambda x: float(np.sum(np.sin(c * x))),
         lambda x: c * np.cos(c * x), rng.normal(size=shapes[1])),
        (f"{c:g}·x[0] * x[1]**2", lambda x: float(c * x[0] * x[1] ** 2),
         lambda x: c * np.array([x[1] ** 2, 2 * x[0] * x[1]]), x2),
    ]


@exercise("01.2", blocks=["minprune.exercises.lesson01._numeric_grad"])
def check_grad_check(fn, variant=None) -> None:
    """`fn(f, x, eps) -> gradient`: a central-difference gradient of a scalar function.

    `f` takes a float64 array like `x` and returns a float. The answer must have x's shape, match
    the known derivatives of several functions, use *central* differences, and leave `x` as it was.
    """
    require_callable(fn, "fn")
    for name, f, df, x in _grad_cases(variant):
        original = x.copy()
        got = as_array(fn(f, x, 1e-6), "the gradient")
        if not np.array_equal(x, original):
            fail(f"fn changed its input x while checking f = {name}.",
                 "put each coordinate back after nudging it: save `old = x[i]`, then `x[i] = old`.")
        if got.shape != x.shape:
            fail(f"for f = {name} at x of shape {x.shape} the gradient has shape {got.shape}.",
                 "the gradient has one entry per coordinate of x: start from np.zeros_like(x).")
        want = df(x)
        if not np.allclose(got, want, rtol=1e-4, atol=1e-5):
            fail(f"for f = {name} the gradient is wrong.\n  expected: {np.round(want, 5)}\n"
                 f"  got:      {np.round(got, 5)}",
                 "nudge one coordinate at a time: (f(x + eps·e_i) − f(x − eps·e_i)) / (2·eps).")
    # A big eps tells central differences from one-sided ones, and shows whether eps is used:
    # for f = sum(x**3), (f(x+eps·e_i) − f(x−eps·e_i)) / (2·eps) = 3·x_i² + eps² exactly, while a
    # one-sided difference is off by about 3·x_i·eps.
    eps = 1e-2
    x = np.array([1.0, 2.0, -1.5]) if variant is None else rng_for(variant, 1).uniform(-2, 2, 4)
    got = as_array(fn(lambda t: float(np.sum(t ** 3)), x.copy(), eps), "the gradient")
    exact, central = 3 * x ** 2, 3 * x ** 2 + eps ** 2
    if got.shape != x.shape or np.abs(got - central).max() > 1e-7:
        if got.shape == x.shape and np.abs(got - exact).max() < 1e-6:
            fail(f"with eps = {eps} on f = sum(x**3) your gradient is as exact as with a tiny step: "
                 "it looks like you ignored the eps argument.",
                 "nudge by the eps you are given: x[i] = old + eps, then x[i] = old - eps.")
        error = np.abs(got - exact).max() if got.shape == x.shape else float("nan")
        fail(f"with eps = {eps} on f = sum(x**3) the error is {error:.2g}; central "
             f"differences give exactly eps² = {eps ** 2:g}.",
             "a one-sided difference (f(x+eps) − f(x)) / eps has error ~eps; use "
             "(f(x+eps) − f(x−eps)) / (2·eps), whose error shrinks like eps².")
    correct("central differences agree with the known derivatives")


def _broadcast_case(rng) -> tuple:
    """A random (grad shape, input shape) pair where the input broadcasts to the grad."""
    gshape = _random_shape(rng, max_ndim=4)
    kept = gshape[int(rng.integers(0, len(gshape) + 1)):]           # drop leading axes
    shape = tuple(1 if rng.random() < 0.4 else n for n in kept)      # stretch some axes
    return gshape, shape


def _summed_back(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """The truth for 01.3, computed without summing over axes: every entry of `grad` is added to
    the input entry it was copied from (found by broadcasting the input's flat indices)."""
    source = np.broadcast_to(np.arange(int(np.prod(shape))).reshape(shape), grad.shape)
    return np.bincount(source.ravel(), weights=grad.ravel(),
                       minlength=int(np.prod(shape))).reshape(shape)


@exercise("01.3", blocks=["minprune.functions.unbroadcast", "minprune.tensor.Tensor.backward",
                          "minprune.autograd.backward"])
def check_unbroadcast(fn, variant=None) -> None:
    """`fn(grad, shape) -> array of shape`: sum a gradient back to the shape of a broadcast input.

    When `a` of shape `shape` was broadcast to grad.shape in the forward pass, every copy of an
    entry of `a` received gradient, so the copies' gradients must be summed.
    """
    require_callable(fn, "fn")
    rng = rng_for(variant, 2)
    cases = [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 4), (1, 4)), ((3, 4), (3, 1)),
             ((2, 3, 4), (3, 1)), ((2, 3, 4), (1, 3, 4)), ((3, 4), ())]
    if variant is not None:
        cases = [_broadcast_case(rng) for _ in range(6)]
    for gshape, shape in cases:
        g = rng.normal(size=gshape)
        got = as_array(fn(g.copy(), shape), "the result")
        want = _summed_back(g, shape)
        if got.shape != tuple(shape):
            fail(f"grad of shape {gshape} summed back to {shape} should have shape {shape}, "
                 f"got {got.shape}.",
                 "first sum over the extra leading axes, then over every axis where shape has "
                 "size 1 (with keepdims=True).")
        if not np.allclose(got, want):
            hint = "sum the gradient over broadcast axes; do not take the mean or pick one copy."
            if np.allclose(got * np.prod(gshape) / max(np.prod(shape), 1), want):
                hint = "it looks like you averaged: broadcasting copies a value, so gradients add up."
            fail(f"grad of shape {gshape} summed back to {shape} has the wrong values.", hint)
    correct("gradients are summed back over every broadcast axis")
