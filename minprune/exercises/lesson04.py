"""Checkers of lesson 04 — what is pruning (`lessons/04_what_is_pruning.ipynb`)."""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from .core import (
    as_array,
    correct,
    fail,
    layer_weights,
    require_callable,
    score_arrays,
)


def _pruning_models() -> dict:
    """A few models with different sparsities per layer, built with minprune's own pruning."""
    from ..models import lenet5, lenet_300_100
    from ..prune import prune

    dense = lenet5(seed=1)
    glob = lenet5(seed=2)
    prune(glob, 0.7, scope="global")
    layer = lenet_300_100(seed=3)
    prune(layer, 0.9, scope="layerwise")
    filt = lenet5(seed=4)
    prune(filt, 0.5, granularity="filter", scope="layerwise")
    return {"a dense lenet5": dense, "lenet5 pruned 70% globally": glob,
            "lenet_300_100 pruned 90% per layer": layer, "lenet5 with half its filters pruned": filt}


def check_sparsity(fn) -> None:
    """`fn(model) -> float`: the fraction of the model's Conv2d/Linear weights that are exactly 0.

    Checked against `mp.prune.sparsity` on dense, globally, layerwise and filter-pruned models."""
    require_callable(fn, "fn")
    from ..prune import sparsity

    for name, model in _pruning_models().items():
        want = sparsity(model)
        got = float(as_array(fn(model), f"fn({name})"))
        if not np.isclose(got, want, atol=1e-9):
            ws = list(layer_weights(model).values())
            n = sum(w.size for w in ws)
            per_layer = np.mean([1 - np.count_nonzero(w) / w.size for w in ws])
            every = [p.data for p in model.parameters()]
            with_bias = 1 - sum(np.count_nonzero(a) for a in every) / sum(a.size for a in every)
            hint = ("count the zeros of every Conv2d/Linear `weight` together and divide by the "
                    "total number of those weights.")
            if np.isclose(got, 1 - want):
                hint = "that is the density (fraction nonzero); sparsity is the fraction of zeros."
            elif np.isclose(got, 100 * want):
                hint = "return a fraction in [0, 1], not a percentage."
            elif np.isclose(got, want * n):
                hint = f"that is the number of zeros; divide by the number of weights ({n:,})."
            elif np.isclose(got, per_layer):
                hint = ("you averaged the per-layer sparsities; big layers hold more weights, so "
                        "pool all weights first (a weighted average).")
            elif np.isclose(got, with_bias):
                hint = "you included biases; sparsity counts only the Conv2d/Linear weights."
            fail(f"{name}: sparsity is {want:.4f}, you returned {got:.4f}.", hint)
    correct("your sparsity agrees with mp.prune.sparsity on four models")


def check_global_threshold(fn) -> None:
    """`fn(model, sparsity) -> float`: the magnitude threshold t of global magnitude pruning.

    Pruning every Conv2d/Linear weight with |w| <= t must remove exactly the weights that
    `mp.prune.prune(model, sparsity, criterion="magnitude", scope="global")` removes, i.e. t is at
    least the largest pruned |w| and below the smallest kept |w|."""
    require_callable(fn, "fn")
    import copy

    from ..models import lenet5, lenet_300_100
    from ..prune import prune

    for model, name in [(lenet5(seed=5), "lenet5"), (lenet_300_100(seed=6), "lenet_300_100")]:
        for s in (0.3, 0.8, 0.95):
            pruned = copy.deepcopy(model)
            prune(pruned, s, criterion="magnitude", scope="global")
            mags = np.concatenate([np.abs(w).ravel() for w in layer_weights(model).values()])
            gone = np.concatenate([(w == 0).ravel() for w in layer_weights(pruned).values()])
            lo, hi = mags[gone].max(), mags[~gone].min()
            got = float(as_array(fn(copy.deepcopy(model), s), f"fn({name}, {s})"))
            if not lo <= got < hi:
                k = int(gone.sum())
                signed = np.sort(np.concatenate([w.ravel() for w in
                                                 layer_weights(model).values()]))[k - 1]
                hint = (f"sort all |w| of the Conv2d/Linear weights together; global pruning at "
                        f"{s} removes k = round({s}·N) = {k:,} of them, and the threshold is the "
                        "k-th smallest |w|.")
                if np.isclose(got, signed):
                    hint = "rank the magnitudes |w|, not the signed weights."
                elif got < lo and np.mean(mags <= got) < s - 0.02:
                    hint = (f"pruning |w| <= {got:.4g} removes only {np.mean(mags <= got):.1%}; "
                            "did you compute the threshold of one layer instead of all layers "
                            "together?")
                fail(f"{name} at sparsity {s}: the threshold must lie in [{lo:.6g}, {hi:.6g}) "
                      f"(largest pruned |w|, smallest kept |w|); you returned {got:.6g}.", hint)
    correct("your threshold reproduces global magnitude pruning exactly")


def check_gradient_scores(fn) -> None:
    """`fn(model, x, y) -> {layer name: array}`: the gradient-magnitude score |w · ∂L/∂w| of every
    weight of every Conv2d/Linear layer, L the mean cross-entropy on (x, y).

    Compared with `mp.prune.criteria.gradient`. The model given to `fn` already holds stale
    gradients from an earlier backward pass, as a model often does."""
    require_callable(fn, "fn")
    from ..models import lenet5
    from ..nn import functional as F_
    from ..prune import criteria
    from ..prune.masks import prunable_layers

    rng = np.random.default_rng(7)
    model = lenet5(seed=7)
    x = rng.random((32, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, 32)
    want = criteria.gradient(model, prunable_layers(model), (x, y))
    F_.cross_entropy(model(Tensor(x[:4])), y[:4]).backward()  # stale gradients on purpose
    import copy
    answer = score_arrays(fn(copy.deepcopy(model), x, y), want)
    for n, w in want.items():
        got = answer[n]
        if not np.allclose(got, w, rtol=1e-3, atol=1e-7):
            hint = ("zero the gradients, run loss = cross_entropy(model(mp.tensor(x)), y), call "
                    "loss.backward(), then |weight.data * weight.grad| for each layer.")
            if (got < 0).any():
                hint = "take the absolute value: the score is |w · g|."
            elif np.allclose(got, np.abs(prunable_layers(model)[n].weight.data)):
                hint = "that is |w| (magnitude); multiply by the gradient."
            elif not np.allclose(got, w, rtol=0.5):
                hint += " If your numbers are off, did you call model.zero_grad() first? " \
                        "Gradients accumulate across backward passes."
            fail(f"scores for {n!r} differ from |w · ∂L/∂w|: first values "
                 f"{np.round(got.ravel()[:3], 6)} vs expected {np.round(w.ravel()[:3], 6)}.", hint)
    correct("your |w·g| scores match mp.prune.criteria.gradient")
