"""Checkers of lesson 06 — importance criteria (`lessons/06_importance_criteria.ipynb`)."""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from .core import (
    as_array,
    correct,
    fail,
    require_callable,
    score_arrays,
)


def check_taylor_prediction(fn) -> None:
    """`fn(w, g, h=None) -> array`: the predicted change of the loss when each weight *alone* is
    set to 0 — first order from the gradient g, plus the second-order term when the Hessian
    diagonal h is given.

    Checked on separable quadratic losses L(w) = Σ a·w + ½ b·w², where removing w_i changes the loss
    by exactly −g_i·w_i + ½ h_i·w_i² (g = a + b·w, h = b): second order is exact there."""
    require_callable(fn, "fn")
    rng = np.random.default_rng(6)
    for shape in [(5,), (3, 4), (2, 3, 2)]:
        w, a = rng.normal(size=shape), rng.normal(size=shape)
        b = rng.uniform(0.5, 2.0, size=shape)
        g, h = a + b * w, b
        exact = -a * w - 0.5 * b * w ** 2  # L(w with w_i = 0) − L(w), term by term
        first = -g * w
        for given_h, want, what in [(None, first, "first-order (h=None)"),
                                    (h, exact, "second-order (h given)")]:
            answer = fn(w.copy(), g.copy()) if given_h is None else fn(w.copy(), g.copy(), h.copy())
            got = as_array(answer, f"the {what} prediction")
            if got.shape != shape:
                fail(f"for weights of shape {shape} the {what} prediction has shape {got.shape}; "
                     "return one predicted change per weight.")
            if np.allclose(got, want, rtol=1e-6, atol=1e-9):
                continue
            hint = ("removing w moves it by δ = −w, so ΔL ≈ g·δ + ½·h·δ² = −g·w + ½·h·w².")
            if np.allclose(got, -want, rtol=1e-6):
                hint = "the sign is flipped: the weight moves by δ = −w, so ΔL ≈ g·δ = −g·w."
            elif np.allclose(got, np.abs(want)) or np.allclose(got, np.abs(first)):
                hint = "|w·g| is the pruning *score*; the prediction keeps its sign: ΔL ≈ −g·w."
            elif given_h is not None and np.allclose(got, first):
                hint = "when h is given, add the second-order term ½·h·w²."
            elif given_h is not None and np.allclose(got, -g * w + h * w ** 2):
                hint = "the second-order Taylor term has a factor ½: ½·h·δ²."
            elif given_h is not None and np.allclose(got, 0.5 * h * w ** 2):
                hint = "keep the first-order term −g·w as well."
            fail(f"{what} prediction for w = {np.round(w.ravel()[:3], 3)}..., "
                 f"g = {np.round(g.ravel()[:3], 3)}...: expected {np.round(want.ravel()[:3], 4)}..., "
                 f"got {np.round(got.ravel()[:3], 4)}...", hint)
    correct("first- and second-order predictions match the exact loss change on quadratics")


def check_fisher_scores(fn) -> None:
    """`fn(model, batches) -> {layer name: array}`: the Fisher score ½·E[g²]·w² of every weight of
    every Conv2d/Linear layer, where E[g²] averages the *squared* per-batch gradient of the mean
    cross-entropy over the list of (x, y) batches. Compared with `mp.prune.criteria.fisher`."""
    require_callable(fn, "fn")
    import copy

    from ..models import lenet_300_100
    from ..nn import functional as F_
    from ..prune import criteria
    from ..prune.masks import prunable_layers

    rng = np.random.default_rng(8)
    model = lenet_300_100(seed=8)
    batches = [(rng.random((16, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 16))
               for _ in range(3)]
    layers = prunable_layers(model)
    want = criteria.fisher(model, layers, batches)
    # the usual wrong answers, to recognise them
    grads = []
    for x, y in batches:
        work = copy.deepcopy(model)
        F_.cross_entropy(work(Tensor(x)), y).backward()
        grads.append({n: m.weight.grad.astype(np.float64) for n, m in prunable_layers(work).items()})
    w2 = {n: m.weight.data.astype(np.float64) ** 2 for n, m in layers.items()}
    mean_g = {n: np.mean([g[n] for g in grads], axis=0) for n in layers}
    last_g = grads[-1]
    answer = score_arrays(fn(copy.deepcopy(model), [(x.copy(), y.copy()) for x, y in batches]),
                          want, hint="loop over `mp.prune.prunable_layers(model).items()`; one "
                          "array per layer name.")
    for n, want_n in want.items():
        got = answer[n]
        if np.allclose(got, want_n, rtol=1e-3, atol=1e-12):
            continue
        hint = ("for each batch: zero_grad, backward, square the gradient; average the squares over "
                "the batches, then multiply by ½·w².")
        if np.allclose(got, 0.5 * mean_g[n] ** 2 * w2[n], rtol=1e-3, atol=1e-12):
            hint = ("you squared the *mean* gradient; the Fisher is the mean of the *squared* "
                    "gradients, E[g²] — square each batch's gradient before averaging.")
        elif np.allclose(got, 2 * want_n, rtol=1e-3, atol=1e-12):
            hint = "missing the factor ½: the score is ½·E[g²]·w²."
        elif np.allclose(got, 0.5 * last_g[n] ** 2 * w2[n], rtol=1e-3, atol=1e-12):
            hint = "only the last batch counted: average the squared gradients over all batches."
        elif np.allclose(got, len(batches) * want_n, rtol=1e-3, atol=1e-12):
            hint = "you summed over the batches; take the mean."
        elif np.all(got >= want_n * (1 - 1e-3)) and not np.allclose(got, want_n, rtol=0.5):
            hint = ("gradients accumulate across backward passes: call model.zero_grad() before "
                    "each batch's backward.")
        fail(f"Fisher scores for {n!r} differ: first values {got.ravel()[:3]} vs expected "
             f"{want_n.ravel()[:3]}.", hint)
    correct("your ½·E[g²]·w² scores match mp.prune.criteria.fisher")


def check_rank_correlation(fn) -> None:
    """`fn(a, b) -> float`: the Spearman rank correlation of two 1-D arrays without ties (the
    Pearson correlation of their ranks)."""
    require_callable(fn, "fn")
    rng = np.random.default_rng(9)

    def spearman(a, b):
        ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
        return float(np.corrcoef(ra, rb)[0, 1])

    x = rng.normal(size=200)
    cases = [("b = a³ (same order)", x, x ** 3),
             ("b = −exp(a) (reversed order)", x, -np.exp(x)),
             ("a noisy monotone pair", x, np.exp(2 * x) + rng.normal(scale=0.5, size=200)),
             ("independent arrays", rng.normal(size=50), rng.normal(size=50))]
    for what, a, b in cases:
        want = spearman(a, b)
        got = float(as_array(fn(a.copy(), b.copy()), f"the correlation for {what}"))
        if np.isclose(got, want, atol=1e-6):
            continue
        hint = ("rank each array (np.argsort(np.argsort(a)) gives 0..n−1 ranks), then take the "
                "Pearson correlation of the ranks (np.corrcoef).")
        if np.isclose(got, np.corrcoef(a, b)[0, 1], atol=1e-6):
            hint = ("that is the Pearson correlation of the values; Spearman correlates their "
                    "*ranks*, so any increasing transform gives 1.")
        elif np.isclose(got, float(np.corrcoef(np.argsort(a), np.argsort(b))[0, 1]), atol=1e-6):
            hint = ("np.argsort(a) gives the *order* (indices that sort a), not the ranks; the "
                    "ranks are np.argsort(np.argsort(a)).")
        fail(f"for {what}: expected Spearman {want:.4f}, got {got:.4f}.", hint)
    correct("your rank correlation matches Spearman's")
