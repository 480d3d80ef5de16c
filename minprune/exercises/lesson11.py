"""Checkers of lesson 11 — fine-tune vs scratch: weight distributions
(`lessons/11_finetune_vs_scratch_weight_distributions.ipynb`)."""
from __future__ import annotations

import numpy as np

from .. import nn
from .core import (
    all_prunable,
    as_array,
    as_int,
    correct,
    fail,
    require_callable,
    retraining_nets,
)


def check_near_zero_fraction(fn) -> None:
    """`fn(model, threshold) -> float`: among the surviving (nonzero) Conv2d/Linear weights, the
    fraction with |w| < threshold (`experiments.near_zero_fraction`)."""
    require_callable(fn, "fn")
    from ..experiments import near_zero_fraction

    for name, model in retraining_nets().items():
        w = all_prunable(model)
        alive = w[w != 0]
        for threshold in (0.01, 0.05, float(np.median(np.abs(alive)))):
            want = near_zero_fraction(model, threshold)
            got = float(as_array(fn(model, threshold), f"fn({name}, {threshold:.3g})"))
            if np.isclose(got, want, atol=1e-9):
                continue
            hint = "count only nonzero Conv2d/Linear weights: w[w != 0], then np.mean(|w| < t)."
            if np.isclose(got, np.mean(np.abs(w) < threshold)):
                hint = ("you counted the pruned zeros too (they are all below any threshold); "
                        "keep only the surviving weights, w != 0.")
            elif np.isclose(got, 100 * want):
                hint = "return a fraction in [0, 1], not a percentage."
            elif np.isclose(got, np.mean(alive < threshold)):
                hint = "compare |w|, not w: large negative weights are not near zero."
            elif np.isclose(got, 1 - want):
                hint = "that is the fraction at or above the threshold; count |w| < threshold."
            else:
                biases = np.concatenate([alive] + [m.bias.data.ravel() for m in model.modules()
                                                   if isinstance(m, (nn.Conv2d, nn.Linear))
                                                   and m.bias is not None])
                biases = biases[biases != 0]
                if np.isclose(got, np.mean(np.abs(biases) < threshold)):
                    hint = "weights only: leave the biases out."
            fail(f"for {name}, threshold {threshold:.4g}: expected {want:.6f}, got {got:.6f}.",
                 hint)
    correct("your fraction matches experiments.near_zero_fraction")


def check_reinitialize(fn) -> None:
    """`fn(model, seed) -> model`: fresh Kaiming-normal weights (std √2/√fan_in) and zero biases in
    every Conv2d/Linear, masks kept so pruned weights stay exactly 0; same seed → same weights."""
    require_callable(fn, "fn")
    import copy

    from ..prune.masks import prunable_layers

    nets = retraining_nets(seed=3)
    for name in ("a conv net, 80% global magnitude pruning",
                 "LeNet-300-100, 90% layerwise magnitude pruning"):
        model = nets[name]
        layers = prunable_layers(model)
        masks = {n: m.weight.mask.copy() for n, m in layers.items()}
        old = {n: m.weight.data.copy() for n, m in layers.items()}
        twin = copy.deepcopy(model)
        out = fn(model, 7)
        model = model if out is None else out
        if not isinstance(model, nn.Module):
            fail(f"fn({name}) returned {type(model).__name__}, expected the model.",
                 "re-initialise in place and `return model`.")
        layers = prunable_layers(model)
        for n, layer in layers.items():
            w, mask = layer.weight.data, layer.weight.mask
            if mask is None or not np.array_equal(mask, masks[n]):
                fail(f"{name}: layer {n!r} lost its mask (or the mask changed).",
                     "change `.data` in place (`param.data[...] = ...`, or nn.init functions); "
                     "do not replace the Parameter, and leave `.mask` alone.")
            if np.any(w[~mask] != 0):
                fail(f"{name}: layer {n!r} has {int(np.count_nonzero(w[~mask]))} pruned weights "
                     "that are no longer 0.",
                     "multiply the new values by the mask (mp.nn.init.kaiming_normal_ does it).")
            alive = w[mask]
            if np.mean(alive == old[n][mask]) > 0.01:
                fail(f"{name}: most surviving weights of {n!r} still have their old values.",
                     "draw new random values for every weight of every Conv2d/Linear layer.")
            fan_in = int(np.prod(w.shape[1:]))
            want, got = np.sqrt(2.0 / fan_in), float(np.std(alive))
            if alive.size >= 300 and (not 0.85 * want < got < 1.15 * want
                                      or abs(np.mean(alive)) > 0.15 * want):
                hint = f"Kaiming normal: mean 0, std √2/√fan_in = {want:.4f} for {n!r}."
                fan_out = w.shape[0] * int(np.prod(w.shape[2:]))
                if np.isclose(got, np.sqrt(2.0 / fan_out), rtol=0.2):
                    hint = "you used fan_out; Kaiming (forward) uses fan_in = in·kh·kw."
                elif np.isclose(got, 1.0, rtol=0.2):
                    hint = "that is a standard normal; scale it by √2/√fan_in."
                fail(f"{name}: the surviving weights of {n!r} have std {got:.4f}, mean "
                     f"{np.mean(alive):.4f}.", hint)
            if layer.bias is not None and np.any(layer.bias.data != 0):
                fail(f"{name}: the bias of {n!r} is not zero.", "set every bias to 0 (nn.init.zeros_).")
        again = fn(twin, 7)
        again = twin if again is None else again
        if not all(np.array_equal(a.weight.data, b.weight.data) for a, b in
                   zip(layers.values(), prunable_layers(again).values())):
            fail("two calls with the same seed gave different weights.",
                 "build one generator from the seed, np.random.default_rng(seed), and draw from it.")
    correct("fresh Kaiming weights, zero biases, masks kept")


def check_scratch_b_epochs(fn) -> None:
    """`fn(dense_epochs, speedup) -> int`: Scratch-B's epochs, round(dense_epochs · min(speedup, 2)),
    at least 1 (Liu et al. 2019: the same compute as the dense run, at most twice the epochs)."""
    require_callable(fn, "fn")
    cases = [(10, 1.0), (10, 1.5), (10, 3.0), (12, 1.74), (3, 1.1), (20, 1.13), (1, 1.2), (4, 50.0)]
    for dense_epochs, speedup in cases:
        want = max(1, round(dense_epochs * min(speedup, 2.0)))
        got = as_int(fn(dense_epochs, speedup), f"fn({dense_epochs}, {speedup})")
        if got == want:
            continue
        hint = "epochs = round(dense_epochs × min(speedup, 2)), and at least 1."
        if got == round(dense_epochs * speedup):
            hint = "cap the scaling at 2× (Liu et al. never train more than twice as long)."
        elif got == int(dense_epochs * min(speedup, 2.0)):
            hint = "round to the nearest epoch instead of truncating."
        elif got == max(1, round(dense_epochs / min(speedup, 2.0))):
            hint = "a cheaper network gets *more* epochs for the same compute: multiply."
        fail(f"fn({dense_epochs}, {speedup}): expected {want}, got {got}.", hint)
    correct("your budgets match schedules.retrain(..., budget='B')")
