"""Checkers of lesson 10 — when to prune (`lessons/10_when_to_prune.ipynb`)."""
from __future__ import annotations

import numpy as np

from .core import (
    correct,
    fail,
    require_callable,
    score_arrays,
)


def _mixed_batch(seed, n=32):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n)


def check_snip_scores(fn) -> None:
    """`fn(model, x, y) -> {layer name: array}`: SNIP's connection sensitivity
    |g ⊙ w| / Σ|g ⊙ w| (g = ∂L/∂w of the mean cross-entropy on (x, y); the sum runs over every
    prunable weight of every layer). Compared with `mp.prune.criteria.snip`."""
    require_callable(fn, "fn")
    import copy

    from ..models import lenet5, lenet_300_100
    from ..prune import criteria
    from ..prune.masks import prunable_layers

    for model, name in [(lenet_300_100(seed=12), "lenet_300_100"), (lenet5(seed=12), "lenet5")]:
        x, y = _mixed_batch(12)
        layers = prunable_layers(model)
        want = criteria.snip(model, layers, (x, y))
        answer = score_arrays(fn(copy.deepcopy(model), x, y), want, name)
        grad = criteria.gradient(model, layers, (x, y))
        for n, w in want.items():
            got = answer[n]
            if not np.allclose(got, w, rtol=1e-3, atol=1e-12):
                hint = ("compute |w · ∂L/∂w| for every layer, then divide all of them by one "
                        "number: their sum over *all* layers.")
                if (got < 0).any():
                    hint = "take the absolute value: the score is |g ⊙ w|."
                elif np.allclose(got, grad[n], rtol=1e-3):
                    hint = ("those are |g ⊙ w| without the normalisation; divide by Σ|g ⊙ w| over "
                            "all layers (the ranking is the same, but SNIP's scores sum to 1).")
                elif np.allclose(got, grad[n] / grad[n].sum(), rtol=1e-3):
                    hint = ("you normalised each layer by its own sum; SNIP divides by one sum "
                            "over all layers, so layers stay comparable in a global ranking.")
                fail(f"{name}: scores for {n!r} differ from SNIP: first values "
                     f"{np.round(got.ravel()[:3], 9)} vs expected {np.round(w.ravel()[:3], 9)}.",
                     hint)
        total = sum(float(answer[n].sum()) for n in want)
        if not np.isclose(total, 1.0, rtol=1e-3):
            fail(f"{name}: your scores sum to {total:.6f}; SNIP's sum to 1.")
    correct("your connection sensitivities match mp.prune.criteria.snip")


def check_synflow_scores(fn) -> None:
    """`fn(model, input_shape) -> {layer name: array}`: SynFlow's data-free score |w ⊙ ∂R/∂w|
    with R = sum of the outputs of the network whose weights and biases are replaced by their
    absolute values, fed a single all-ones input of shape (1, *input_shape).
    Compared with `mp.prune.criteria.synflow` (a relative tolerance allows float32 arithmetic)."""
    require_callable(fn, "fn")
    import copy

    from ..models import lenet5, lenet_300_100
    from ..prune import criteria, prune
    from ..prune.masks import prunable_layers

    half = lenet_300_100(seed=13)
    prune(half, 0.5, criterion="random")
    for model, name in [(lenet_300_100(seed=13), "lenet_300_100"),
                        (half, "lenet_300_100 pruned 50% at random"), (lenet5(seed=13), "lenet5")]:
        layers = prunable_layers(model)
        before = {n: m.weight.data.copy() for n, m in layers.items()}
        want = criteria.synflow(model, layers, None, input_shape=(1, 28, 28))
        answer = score_arrays(fn(copy.deepcopy(model), (1, 28, 28)), want, name)
        for n, w in want.items():
            got = answer[n]
            if not np.allclose(got, w, rtol=1e-3, atol=1e-9 * float(np.abs(w).max())):
                hint = ("work on a copy: set every parameter p.data = np.abs(p.data), run the "
                        "model on np.ones((1, *input_shape)), call .sum().backward(), then "
                        "score = |w ⊙ grad| with the absolute weights.")
                if (got < 0).any():
                    hint = "take absolute values: SynFlow's scores are |w ⊙ ∂R/∂w| ≥ 0."
                elif np.allclose(got, np.abs(before[n])):
                    hint = "that is |w| (magnitude); multiply by ∂R/∂w."
                elif (w > 0).any() and np.allclose(got[w > 0] / w[w > 0],
                                                   np.median(got[w > 0] / w[w > 0]), rtol=1e-3):
                    hint = ("your scores are off by a constant factor: R is the plain *sum* of "
                            "the outputs (no mean, no normalisation).")
                else:
                    hint += (" Did you forget to take |·| of the biases too, or feed random data "
                             "instead of ones? SynFlow is data-free.")
                fail(f"{name}: SynFlow scores for {n!r} differ: first values "
                     f"{np.round(got.ravel()[:3], 6)} vs expected {np.round(w.ravel()[:3], 6)}.",
                     hint)
    correct("your synaptic-flow scores match mp.prune.criteria.synflow")
