"""Checkers of lesson 04 — what is pruning (`lessons/04_what_is_pruning.ipynb`)."""
from __future__ import annotations

import copy

import numpy as np

from .. import nn
from ..tensor import Tensor
from .core import (
    as_array,
    correct,
    exercise,
    fail,
    layer_weights,
    require_callable,
    rng_for,
    score_arrays,
)


def _small_net(rng) -> nn.Module:
    """A conv net on 1×28×28 inputs with random widths (MNIST-shaped, like LeNet-5)."""
    c1, c2, hidden = (int(v) for v in (rng.integers(2, 7), rng.integers(4, 13), rng.integers(16, 65)))
    return nn.Sequential(nn.Conv2d(1, c1, 5, padding=2, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(c1, c2, 3, rng=rng), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(c2 * 6 * 6, hidden, rng=rng), nn.ReLU(),
                         nn.Linear(hidden, 10, rng=rng))


def _nonzero_biases(model, rng) -> None:
    for p in model.parameters():   # biases as after training, so counting them changes the answer
        if p.data.ndim == 1:
            p.data[...] = rng.normal(0, 0.05, p.shape)


def _pruning_models(variant) -> dict:
    """Models whose layers have different sparsities: dense, pruned by minprune (global,
    layerwise, filters) and one with weights set to 0 by hand (zeros without any mask)."""
    from ..models import lenet5, lenet_300_100
    from ..prune import prune

    rng = rng_for(variant, 40)
    if variant is None:
        dense, glob, layer, filt, hand = (lenet5(seed=1), lenet5(seed=2), lenet_300_100(seed=3),
                                          lenet5(seed=4), lenet5(seed=5))
        s_glob, s_layer, s_filt, s_hand = 0.7, 0.9, 0.5, 0.3
    else:
        dense, glob, layer, filt, hand = (_small_net(rng) for _ in range(5))
        s_glob, s_layer, s_hand = (float(v) for v in rng.uniform(0.2, 0.95, 3))
        s_filt = float(rng.uniform(0.2, 0.7))
    for model in (dense, glob, layer, filt, hand):
        _nonzero_biases(model, rng)
    prune(glob, s_glob, scope="global")
    prune(layer, s_layer, scope="layerwise")
    prune(filt, s_filt, granularity="filter", scope="layerwise")
    weights = list(layer_weights(hand).values())
    for w, amount in zip(weights, rng.uniform(0.5 * s_hand, 1.5 * s_hand, len(weights))):
        w[rng.random(w.shape) < min(amount, 0.98)] = 0.0
    return {"a dense net": dense, f"a net pruned {s_glob:.0%} globally": glob,
            f"a net pruned {s_layer:.0%} per layer": layer,
            f"a net with {s_filt:.0%} of its filters pruned": filt,
            "a net with weights set to 0 by hand (no masks)": hand}


@exercise("04.1", blocks=["minprune.prune.metrics.sparsity", "minprune.prune.metrics.count_nonzero",
                          "minprune.prune.metrics.report", "minprune.prune.metrics.layer_costs",
                          "minprune.prune.metrics.flops", "minprune.plots.plot_layer_sparsity"])
def check_sparsity(fn, variant=None) -> None:
    """`fn(model) -> float`: the fraction of the model's Conv2d/Linear weights that are exactly 0.

    Checked on dense, globally, layerwise and filter-pruned nets and on one whose weights were set to
    0 by hand (no masks); hidden variants use other nets and sparsities."""
    require_callable(fn, "fn")
    for name, model in _pruning_models(variant).items():
        ws = list(layer_weights(model).values())
        n = sum(w.size for w in ws)
        want = sum(int((w == 0).sum()) for w in ws) / n
        got = float(as_array(fn(copy.deepcopy(model)), f"fn({name})"))
        if not np.isclose(got, want, atol=1e-9):
            per_layer = np.mean([np.mean(w == 0) for w in ws])
            every = [p.data for p in model.parameters()]
            with_bias = sum(int((a == 0).sum()) for a in every) / sum(a.size for a in every)
            masks = [m.weight.mask for m in model.modules()
                     if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.mask is not None]
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
            elif not masks or got == 0.0:
                hint = ("count the weights that are exactly 0 (`w == 0`): a weight can be 0 without "
                        "a mask, and a dense model has no masks at all.")
            fail(f"{name}: sparsity is {want:.4f}, you returned {got:.4f}.", hint)
    correct("your sparsity is right on dense, pruned and hand-zeroed nets")


def _threshold_cases(variant) -> list[tuple]:
    """(name, model, sparsity) with a gap between the k-th and (k+1)-th smallest |w|, so that
    exactly one interval of thresholds reproduces global magnitude pruning."""
    from ..models import lenet5, lenet_300_100

    if variant is None:
        models = [("lenet5", lenet5(seed=5)), ("lenet_300_100", lenet_300_100(seed=6))]
        return [(name, m, s) for name, m in models for s in (0.3, 0.8, 0.95)]
    rng = rng_for(variant, 41)
    models = [("lenet5", lenet5(seed=int(rng.integers(10, 10 ** 6)))),
              ("a small conv net", _small_net(rng)), ("another small conv net", _small_net(rng))]
    return [(name, m, round(float(rng.uniform(0.05, 0.98)), 4)) for name, m in models
            for _ in range(2)]


@exercise("04.2", blocks=["minprune.prune.pruner.prune", "minprune.prune.scope.select",
                          "minprune.prune.scope.lowest"])
def check_global_threshold(fn, variant=None) -> None:
    """`fn(model, sparsity) -> float`: the magnitude threshold t of global magnitude pruning.

    Pruning every Conv2d/Linear weight with |w| <= t must remove exactly the k = round(s·N) weights
    with the smallest |w| (N counting all prunable weights together), i.e. t is at least the
    largest pruned |w| and below the smallest kept |w|."""
    require_callable(fn, "fn")
    for name, model, s in _threshold_cases(variant):
        mags = np.sort(np.concatenate([np.abs(w).ravel() for w in layer_weights(model).values()]))
        k = round(s * mags.size)
        lo, hi = mags[k - 1], mags[k]
        if lo == hi:    # a tie at the boundary (vanishingly rare): no threshold separates them
            continue
        got = float(as_array(fn(copy.deepcopy(model), s), f"fn({name}, {s})"))
        if not lo <= got < hi:
            signed = np.sort(np.concatenate([w.ravel() for w in layer_weights(model).values()]))
            truncated = int(s * mags.size)
            hint = (f"sort all |w| of the Conv2d/Linear weights together; global pruning at "
                    f"{s} removes k = round({s}·N) = {k:,} of them, and the threshold is the "
                    "k-th smallest |w|.")
            if np.isclose(got, signed[k - 1]):
                hint = "rank the magnitudes |w|, not the signed weights."
            elif got == hi:
                hint = ("off by one: the k-th smallest of a sorted array is at index k − 1, and "
                        "that weight is pruned too.")
            elif truncated != k and got == mags[truncated - 1]:
                hint = f"use round(s·N), not int(s·N): {s}·N = {s * mags.size:.2f}."
            elif got < lo and np.mean(mags <= got) < s - 0.02:
                hint = (f"pruning |w| <= {got:.4g} removes only {np.mean(mags <= got):.1%}; "
                        "did you compute the threshold of one layer instead of all layers "
                        "together?")
            fail(f"{name} at sparsity {s}: the threshold must lie in [{lo:.6g}, {hi:.6g}) "
                 f"(largest pruned |w|, smallest kept |w|); you returned {got:.6g}.", hint)
    correct("your threshold reproduces global magnitude pruning exactly")


def _true_gradient_scores(model, x, y) -> dict:
    """|w · ∂L/∂w| per prunable layer, L the mean cross-entropy: one clean backward on a copy."""
    from ..nn import functional as F_
    from ..prune.masks import prunable_layers

    work = copy.deepcopy(model)
    work.zero_grad()
    F_.cross_entropy(work(Tensor(x)), y).backward()
    return {n: np.abs(m.weight.data.astype(np.float64) * m.weight.grad)
            for n, m in prunable_layers(work).items()}


@exercise("04.3", blocks=["minprune.prune.criteria.gradient", "minprune.prune.criteria.taylor",
                          "minprune.prune.criteria.snip", "minprune.prune.criteria.fisher",
                          "minprune.prune.criteria._loss_gradients"])
def check_gradient_scores(fn, variant=None) -> None:
    """`fn(model, x, y) -> {layer name: array}`: the gradient-magnitude score |w · ∂L/∂w| of every
    weight of every Conv2d/Linear layer, L the mean cross-entropy on (x, y).

    The model given to `fn` already holds stale gradients from an earlier backward pass, as a model
    often does. Hidden variants use other nets, batches and labels."""
    require_callable(fn, "fn")
    from ..models import lenet5
    from ..nn import functional as F_
    from ..prune.masks import prunable_layers

    rng = rng_for(variant, 7)
    if variant is None:
        model, n = lenet5(seed=7), 32
    else:
        model, n = _small_net(rng), int(rng.integers(16, 48))
        _nonzero_biases(model, rng)
    x = rng.random((n, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, n)
    want = _true_gradient_scores(model, x, y)
    F_.cross_entropy(model(Tensor(x[:4])), y[:4]).backward()  # stale gradients on purpose
    answer = score_arrays(fn(copy.deepcopy(model), x.copy(), y.copy()), want)
    for name, w in want.items():
        got = answer[name]
        if not np.allclose(got, w, rtol=1e-3, atol=1e-7):
            weight = prunable_layers(model)[name].weight.data
            grad = w / np.maximum(np.abs(weight), 1e-30)
            hint = ("zero the gradients, run loss = cross_entropy(model(mp.tensor(x)), y), call "
                    "loss.backward(), then |weight.data * weight.grad| for each layer.")
            if (got < 0).any():
                hint = "take the absolute value: the score is |w · g|."
            elif np.allclose(got, np.abs(weight)):
                hint = "that is |w| (magnitude); multiply by the gradient."
            elif np.allclose(got, grad, rtol=1e-3, atol=1e-7):
                hint = "that is |∂L/∂w| alone; the score multiplies it by the weight: |w · g|."
            elif np.allclose(got, w * n, rtol=1e-3, atol=1e-7):
                hint = ("L is the *mean* cross-entropy over the batch (what "
                        "mp.nn.functional.cross_entropy returns), not the sum.")
            elif not np.allclose(got, w, rtol=0.5):
                hint += (" If your numbers are off, did you call model.zero_grad() first? "
                         "Gradients accumulate across backward passes.")
            fail(f"scores for {name!r} differ from |w · ∂L/∂w|: first values "
                 f"{np.round(got.ravel()[:3], 6)} vs expected {np.round(w.ravel()[:3], 6)}.", hint)
    correct("your |w·g| scores are right, stale gradients and all")
