"""Checkers of lesson 06 — importance criteria (`lessons/06_importance_criteria.ipynb`)."""
from __future__ import annotations

import copy

import numpy as np

from .. import nn
from ..nn import functional as F_
from ..tensor import Tensor
from .core import as_array, correct, exercise, fail, require_callable, rng_for, score_arrays


def _random_shape(rng) -> tuple:
    return tuple(int(n) for n in rng.integers(1, 6, size=int(rng.integers(1, 4))))


@exercise("06.1")
def check_taylor_prediction(fn, variant=None) -> None:
    """`fn(w, g, h=None) -> array`: the predicted change of the loss when each weight *alone* is
    set to 0 — first order from the gradient g, plus the second-order term when the Hessian
    diagonal h is given.

    Checked on separable quadratic losses L(w) = Σ a·w + ½ b·w², where removing w_i changes the loss
    by exactly −g_i·w_i + ½ h_i·w_i² (g = a + b·w, h = b): second order is exact there. Nothing in
    minprune computes this prediction, so nothing is blocked."""
    require_callable(fn, "fn")
    rng = rng_for(variant, 6)
    shapes = [(5,), (3, 4), (2, 3, 2)] if variant is None else [_random_shape(rng) for _ in range(3)]
    for shape in shapes:
        scale = 1.0 if variant is None else float(rng.uniform(0.3, 3.0))
        w, a = scale * rng.normal(size=shape), rng.normal(size=shape)
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
            elif given_h is not None and np.allclose(got, -g * w - 0.5 * h * w ** 2):
                hint = "δ² = w² is positive: the second-order term is +½·h·w²."
            elif given_h is not None and np.allclose(got, 0.5 * h * w ** 2):
                hint = "keep the first-order term −g·w as well."
            fail(f"{what} prediction for w = {np.round(w.ravel()[:3], 3)}..., "
                 f"g = {np.round(g.ravel()[:3], 3)}...: expected {np.round(want.ravel()[:3], 4)}..., "
                 f"got {np.round(got.ravel()[:3], 4)}...", hint)
    correct("first- and second-order predictions match the exact loss change on quadratics")


def _fisher_case(variant):
    """(description, model, batches): the self-check's LeNet-300-100 on three random batches, or a
    hidden variant's small random network (an MLP or a conv net, no BatchNorm or dropout, so
    train and eval mode agree) on two to four batches of another size."""
    from ..models import lenet_300_100
    rng = rng_for(variant, 8)
    if variant is None:
        model, shape, classes, sizes = lenet_300_100(seed=8), (1, 28, 28), 10, [16, 16, 16]
        what = "LeNet-300-100"
    else:
        r = np.random.default_rng(int(rng.integers(2 ** 31)))
        classes = int(rng.integers(3, 11))
        side = int(rng.integers(6, 11))
        shape = (1, side, side)
        if rng.random() < 0.5:
            c = int(rng.integers(2, 6))
            hidden = int(rng.integers(8, 33))
            model = nn.Sequential(nn.Conv2d(1, c, 3, padding=1, rng=r), nn.ReLU(), nn.Flatten(),
                                  nn.Linear(c * side * side, hidden, rng=r), nn.ReLU(),
                                  nn.Linear(hidden, classes, rng=r))
            what = f"a conv net with {c} filters and {hidden} hidden units"
        else:
            h1, h2 = (int(n) for n in rng.integers(8, 65, size=2))
            model = nn.Sequential(nn.Flatten(), nn.Linear(side * side, h1, rng=r), nn.ReLU(),
                                  nn.Linear(h1, h2, rng=r), nn.ReLU(), nn.Linear(h2, classes, rng=r))
            what = f"an MLP {side * side}-{h1}-{h2}-{classes}"
        sizes = [int(rng.integers(4, 25))] * int(rng.integers(2, 5))
    batches = [(rng.random((n,) + shape, dtype=np.float32), rng.integers(0, classes, n))
               for n in sizes]
    return what, model, batches


def _batch_gradients(model, batches) -> list[dict]:
    """Per batch, {layer: ∂(mean cross-entropy)/∂W} in float64, each from a fresh copy."""
    from ..prune.masks import prunable_layers
    grads = []
    for x, y in batches:
        work = copy.deepcopy(model)
        F_.cross_entropy(work(Tensor(x)), y).backward()
        grads.append({n: m.weight.grad.astype(np.float64) for n, m in prunable_layers(work).items()})
    return grads


@exercise("06.2", blocks=["minprune.prune.criteria.fisher", "minprune.prune.criteria.taylor",
                          "minprune.prune.criteria.gradient", "minprune.prune.criteria.snip",
                          "minprune.prune.criteria._loss_gradients",
                          "minprune.exercises.lesson06._batch_gradients"])
def check_fisher_scores(fn, variant=None) -> None:
    """`fn(model, batches) -> {layer name: array}`: the Fisher score ½·E[g²]·w² of every weight of
    every Conv2d/Linear layer, where E[g²] averages the *squared* per-batch gradient of the mean
    cross-entropy over the list of (x, y) batches."""
    require_callable(fn, "fn")
    from ..prune.masks import prunable_layers

    what, model, batches = _fisher_case(variant)
    layers = prunable_layers(model)
    grads = _batch_gradients(model, batches)
    w2 = {n: m.weight.data.astype(np.float64) ** 2 for n, m in layers.items()}
    want = {n: 0.5 * np.mean([g[n] ** 2 for g in grads], axis=0) * w2[n] for n in layers}
    # the usual wrong answers, to recognise them
    mean_g = {n: np.mean([g[n] for g in grads], axis=0) for n in layers}
    answer = score_arrays(fn(copy.deepcopy(model), [(x.copy(), y.copy()) for x, y in batches]),
                          {n: m.weight.data for n, m in layers.items()}, who=what,
                          hint="loop over `mp.prune.prunable_layers(model).items()`; one array per "
                          "layer name.")
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
        elif np.allclose(got, 0.5 * grads[-1][n] ** 2 * w2[n], rtol=1e-3, atol=1e-12):
            hint = "only the last batch counted: average the squared gradients over all batches."
        elif np.allclose(got, len(batches) * want_n, rtol=1e-3, atol=1e-12):
            hint = "you summed over the batches; take the mean."
        elif np.allclose(got, 0.5 * np.mean([g[n] ** 2 for g in grads], axis=0), rtol=1e-3,
                         atol=1e-12):
            hint = "that is ½·E[g²] alone; the score multiplies it by w²."
        elif np.all(got >= want_n * (1 - 1e-3)) and not np.allclose(got, want_n, rtol=0.5):
            hint = ("gradients accumulate across backward passes: call model.zero_grad() before "
                    "each batch's backward.")
        fail(f"{what}: Fisher scores for {n!r} differ: first values {got.ravel()[:3]} vs expected "
             f"{want_n.ravel()[:3]}.", hint)
    correct("your ½·E[g²]·w² scores are right for every layer")


def _average_ranks(a) -> np.ndarray:
    """Ranks 0..n−1 of a 1-D array; tied values share the mean of the ranks they occupy."""
    _, index, counts = np.unique(a, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts
    return (first + (counts - 1) / 2)[index]


def _spearman(a, b) -> float:
    return float(np.corrcoef(_average_ranks(a), _average_ranks(b))[0, 1])


def _rank_cases(variant):
    """[(description, a, b)]: monotone, reversed, noisy and independent pairs, with and without
    ties (pruning scores tie a lot: every pruned weight or dead unit scores exactly 0)."""
    rng = rng_for(variant, 9)
    n = 200 if variant is None else int(rng.integers(60, 400))
    x = rng.normal(size=n)
    noise = 0.5 if variant is None else float(rng.uniform(0.2, 1.0))
    cases = [("b = a³ (same order)", x, x ** 3),
             ("b = −exp(a) (reversed order)", x, -np.exp(x)),
             ("a noisy monotone pair", x, np.exp(2 * x) + rng.normal(scale=noise, size=n)),
             ("independent arrays", rng.normal(size=n // 4), rng.normal(size=n // 4))]
    # ties: scores that are exactly 0 for a share of the weights, and rounded scores
    zeros = rng.random(n) < (0.3 if variant is None else rng.uniform(0.2, 0.5))
    tied = np.where(zeros, 0.0, np.abs(x))
    cases.append(("a with many exact zeros (ties)", tied,
                  np.abs(x) + rng.normal(scale=noise / 2, size=n)))
    cases.append(("both rounded to one decimal (ties in both)", np.round(x, 1),
                  np.round(x + rng.normal(scale=noise, size=n), 1)))
    return cases


@exercise("06.3", blocks=["minprune.exercises.lesson06._spearman",
                          "minprune.exercises.lesson06._average_ranks"])
def check_rank_correlation(fn, variant=None) -> None:
    """`fn(a, b) -> float`: the Spearman rank correlation of two 1-D arrays — the Pearson
    correlation of their ranks, where tied values share the average of the ranks they span."""
    require_callable(fn, "fn")
    for what, a, b in _rank_cases(variant):
        want = _spearman(a, b)
        got = float(as_array(fn(a.copy(), b.copy()), f"the correlation for {what}"))
        if np.isclose(got, want, atol=1e-6):
            continue
        hint = ("rank each array (np.argsort(np.argsort(a)) gives 0..n−1 ranks when there are no "
                "ties), then take the Pearson correlation of the ranks (np.corrcoef).")
        order = float(np.corrcoef(np.argsort(a), np.argsort(b))[0, 1])
        plain = float(np.corrcoef(np.argsort(np.argsort(a, kind="stable")),
                                  np.argsort(np.argsort(b, kind="stable")))[0, 1])
        if np.isclose(got, np.corrcoef(a, b)[0, 1], atol=1e-6):
            hint = ("that is the Pearson correlation of the values; Spearman correlates their "
                    "*ranks*, so any increasing transform gives 1.")
        elif np.isclose(got, order, atol=1e-6):
            hint = ("np.argsort(a) gives the *order* (indices that sort a), not the ranks; the "
                    "ranks are np.argsort(np.argsort(a)).")
        elif "ties" in what or abs(got - plain) < 0.05:
            hint = ("tied values must share one rank, the average of the ranks they span (three "
                    "values tied for ranks 4, 5, 6 all get 5); np.argsort breaks ties arbitrarily. "
                    "np.unique(a, return_inverse=True, return_counts=True) finds the tied groups.")
        fail(f"for {what}: expected Spearman {want:.4f}, got {got:.4f}.", hint)
    correct("your rank correlation matches Spearman's, ties included")
