"""Checkers of lesson 11 — fine-tune vs scratch: weight distributions
(`lessons/11_finetune_vs_scratch_weight_distributions.ipynb`)."""
from __future__ import annotations

import copy

import numpy as np

from .. import nn
from .core import (
    all_prunable,
    as_array,
    as_int,
    correct,
    exercise,
    fail,
    require_callable,
    retraining_nets,
    rng_for,
)

_LAYER_TYPES = (nn.Conv2d, nn.Linear)


def _layers(model) -> dict:
    return {n: m for n, m in model.named_modules() if isinstance(m, _LAYER_TYPES)}


def _nets(variant, public_seed: int) -> dict:
    """The small dense and pruned nets of `retraining_nets`; hidden variants build them from
    another seed and prune some of them further, to a random sparsity."""
    if variant is None:
        return retraining_nets(seed=public_seed)
    from ..prune import prune

    rng = rng_for(variant, public_seed)
    nets = retraining_nets(seed=int(rng.integers(1, 10 ** 6)))
    out = {}
    for name, net in nets.items():
        if "BatchNorm" not in name and rng.random() < 0.7:
            s = round(float(rng.uniform(0.91, 0.97)), 3)
            prune(net, s, criterion="magnitude", scope="global")
            name = f"{name}, then {s:.1%} global"
        out[name] = net
    return out


# --- 11.1 the near-zero fraction --------------------------------------------------------------------
def _thresholds(alive: np.ndarray, rng) -> list[float]:
    """A few thresholds, one of them exactly a surviving |w| (to tell `<` from `<=`)."""
    a = np.sort(np.abs(alive))
    if rng is None:
        return [0.01, 0.05, float(np.median(a)), float(a[len(a) // 5])]
    return [float(rng.uniform(0.002, 0.03)), float(np.quantile(a, rng.uniform(0.2, 0.8))),
            float(a[int(rng.integers(1, len(a) - 1))])]


@exercise("11.1", blocks=["minprune.experiments.near_zero_fraction"])
def check_near_zero_fraction(fn, variant=None) -> None:
    """`fn(model, threshold) -> float`: among the surviving (nonzero) Conv2d/Linear weights, the
    fraction with |w| < threshold. Checked on dense and pruned conv nets and MLPs (hidden variants:
    other weights, sparsities and thresholds)."""
    require_callable(fn, "fn")
    rng = None if variant is None else rng_for(variant, 21)
    for name, model in _nets(variant, 0).items():
        w = all_prunable(model)
        alive = w[w != 0]
        for threshold in _thresholds(alive, rng):
            want = float(np.mean(np.abs(alive) < threshold))
            got = float(as_array(fn(model, threshold), f"fn({name}, {threshold:.3g})"))
            if np.isclose(got, want, rtol=0, atol=1e-9):
                continue
            hint = "count only nonzero Conv2d/Linear weights: w[w != 0], then np.mean(|w| < t)."
            linear = np.concatenate([m.weight.data.ravel() for m in model.modules()
                                     if isinstance(m, nn.Linear)]).astype(np.float64)
            linear = linear[linear != 0]
            if np.isclose(got, np.mean(np.abs(w) < threshold)):
                hint = ("you counted the pruned zeros too (they are all below any threshold); "
                        "keep only the surviving weights, w != 0.")
            elif np.isclose(got, 100 * want):
                hint = "return a fraction in [0, 1], not a percentage."
            elif np.isclose(got, np.mean(alive < threshold)):
                hint = "compare |w|, not w: large negative weights are not near zero."
            elif np.isclose(got, 1 - want):
                hint = "that is the fraction at or above the threshold; count |w| < threshold."
            elif np.isclose(got, np.mean(np.abs(alive) <= threshold), rtol=0, atol=1e-9):
                hint = "strictly below: |w| < threshold, not <=."
            elif np.isclose(got, np.mean(np.abs(linear) < threshold)):
                hint = "include the Conv2d weights too, not only the Linear ones."
            else:
                biases = np.concatenate([alive] + [m.bias.data.ravel() for m in model.modules()
                                                   if isinstance(m, _LAYER_TYPES)
                                                   and m.bias is not None])
                biases = biases[biases != 0]
                if np.isclose(got, np.mean(np.abs(biases) < threshold)):
                    hint = "weights only: leave the biases out."
            fail(f"for {name}, threshold {threshold:.4g}: expected {want:.6f}, got {got:.6f}.",
                 hint)
    correct("you count the surviving weights below the threshold, and only those")


# --- 11.2 re-initialise a pruned network ------------------------------------------------------------
def _kurtosis(z: np.ndarray) -> float:
    z = (z - z.mean()) / z.std()
    return float(np.mean(z ** 4))


def _check_layer_spread(name, n, w, alive) -> None:
    """Fail unless one layer's survivors have mean 0 and std √2/√fan_in within five standard
    errors, naming the usual slip (the nearest of their stds, within 25%) in the hint."""
    fan_in = int(np.prod(w.shape[1:]))
    std = np.sqrt(2.0 / fan_in)
    z, k = alive / std, alive.size
    if abs(z.std() - 1) <= max(0.1, 5 / np.sqrt(2 * k)) and abs(z.mean()) <= 5 / np.sqrt(k):
        return
    got = float(alive.std())
    fan_out = w.shape[0] * int(np.prod(w.shape[2:]))
    xavier = np.sqrt(2.0 / (fan_in + fan_out))
    slips = [(std, f"Kaiming normal: mean 0, std √2/√fan_in = {std:.4f} for {n!r}."),
             (np.sqrt(2.0 / fan_out), "you used fan_out; Kaiming (forward) uses fan_in = in·kh·kw."),
             (1.0, "that is a standard normal; scale it by √2/√fan_in."),
             (std / np.sqrt(2), "the gain for ReLU is √2: std = √2/√fan_in, not 1/√fan_in."),
             (xavier, "that is Xavier's √(2/(fan_in + fan_out)); Kaiming uses √2/√fan_in."),
             (np.sqrt(2) * xavier, "that is Xavier's √(2/(fan_in + fan_out)); Kaiming uses "
                                   "√2/√fan_in.")]
    if w.ndim == 4:
        slips.append((np.sqrt(2.0 / w.shape[1]), "a Conv2d's fan_in counts its kernel too: "
                                                 "in_channels·kh·kw, not in_channels."))
    distance, hint = min((abs(np.log(got / s)), h) for s, h in slips)
    fail(f"{name}: the surviving weights of {n!r} have std {got:.4f}, mean "
         f"{np.mean(alive):.4f}; expected about {std:.4f} and 0.",
         hint if distance < np.log(1.25) else slips[0][1])


def _check_distribution(name, layers, masks) -> None:
    """The survivors look like Kaiming-normal draws: mean 0 and std √2/√fan_in within five standard
    errors per layer and pooled over the net, and normal, not uniform. Layers with 200 or more
    survivors are checked first (their std is precise enough to name the slip), then the pool,
    then the small layers (20 or more survivors: a first conv layer often has fewer than 200).
    A right answer fails one of these about once in a million runs."""
    pooled, small = [], []
    for n, layer in layers.items():
        w = layer.weight.data
        alive = w[masks[n]].astype(np.float64)
        pooled.append(alive / np.sqrt(2.0 / int(np.prod(w.shape[1:]))))
        if alive.size >= 200:
            _check_layer_spread(name, n, w, alive)
        elif alive.size >= 20:
            small.append((n, w, alive))
    z = np.concatenate(pooled)
    if abs(z.std() - 1) > 5 / np.sqrt(2 * z.size) + 0.01 or abs(z.mean()) > 5 / np.sqrt(z.size):
        fail(f"{name}: over all layers, the surviving weights have {z.std():.3f} times the Kaiming "
             "spread √2/√fan_in (expected 1).",
             "each layer needs its own std √2/√fan_in, with fan_in = in_features or "
             "in_channels·kh·kw (not Xavier's √(2/(fan_in + fan_out))).")
    if z.size >= 1000 and _kurtosis(z) < 2.4:
        fail(f"{name}: the surviving weights look uniformly distributed, not normal.",
             "draw from a normal distribution (rng.normal), not a uniform one.")
    for n, w, alive in small:
        _check_layer_spread(name, n, w, alive)


def _mask(layer) -> np.ndarray:
    m = layer.weight.mask
    return np.ones(layer.weight.shape, bool) if m is None else m.copy()


def _weights_of(model) -> list:
    return [m.weight.data.copy() for m in _layers(model).values()]


@exercise("11.2", blocks=["minprune.prune.schedules.reinitialize", "minprune.prune.schedules.retrain",
                          "minprune.prune.schedules.lottery"])
def check_reinitialize(fn, variant=None) -> None:
    """`fn(model, seed) -> model`: fresh Kaiming-normal weights (std √2/√fan_in) and zero biases in
    every Conv2d/Linear, masks kept so pruned weights stay exactly 0; the same seed gives the same
    weights, another seed other weights. Hidden variants use other nets, masks and seeds."""
    require_callable(fn, "fn")
    rng = rng_for(variant, 3)
    seed = 7 if variant is None else int(rng.integers(0, 2 ** 31))
    for name, model in _nets(variant, 3).items():
        if name == "a dense conv net":
            continue
        layers = _layers(model)
        masks = {n: _mask(m) for n, m in layers.items()}
        had_mask = {n: m.weight.mask is not None for n, m in layers.items()}
        old = {n: m.weight.data.copy() for n, m in layers.items()}
        twin, other = copy.deepcopy(model), copy.deepcopy(model)
        out = fn(model, seed)
        model = model if out is None else out
        if not isinstance(model, nn.Module):
            fail(f"fn({name}) returned {type(model).__name__}, expected the model.",
                 "re-initialise in place and `return model`.")
        layers = _layers(model)
        if list(layers) != list(masks):
            fail(f"{name}: the model you returned has layers {list(layers)}, expected "
                 f"{list(masks)}.", "re-initialise the model you are given, in place.")
        for n, layer in layers.items():
            w, mask = layer.weight.data, _mask(layer)
            if (layer.weight.mask is not None) != had_mask[n] or not np.array_equal(mask, masks[n]):
                fail(f"{name}: layer {n!r} lost its mask (or the mask changed).",
                     "change `.data` in place (`param.data[...] = ...`, or nn.init functions); "
                     "do not replace the Parameter, and leave `.mask` alone.")
            if np.any(w[~mask] != 0):
                fail(f"{name}: layer {n!r} has {int(np.count_nonzero(w[~mask]))} pruned weights "
                     "that are no longer 0.",
                     "multiply the new values by the mask (mp.nn.init.kaiming_normal_ does it).")
            if w.dtype != np.float32:
                fail(f"{name}: the weights of {n!r} are {w.dtype}, the model's are float32.",
                     "write into the existing array, `param.data[...] = values`, which keeps its dtype.")
            if np.mean(w[mask] == old[n][mask]) > 0.01:
                fail(f"{name}: most surviving weights of {n!r} still have their old values.",
                     "draw new random values for every weight of every Conv2d/Linear layer.")
            if layer.bias is not None and np.any(layer.bias.data != 0):
                fail(f"{name}: the bias of {n!r} is not zero.", "set every bias to 0 (nn.init.zeros_).")
        _check_distribution(name, layers, masks)
        again = fn(twin, seed)
        again = twin if again is None else again
        if not all(np.array_equal(a, b) for a, b in zip(_weights_of(model), _weights_of(again))):
            fail("two calls with the same seed gave different weights.",
                 "build one generator from the seed, np.random.default_rng(seed), and draw from it.")
        third = fn(other, seed + 1)
        third = other if third is None else third
        # every layer must change with the seed: one layer drawn from a fixed seed is a bug too
        same = [n for n, a, b in zip(layers, _weights_of(model), _weights_of(third))
                if np.array_equal(a, b)]
        if same:
            fail(f"{name}: seeds {seed} and {seed + 1} gave the same weights in {same}.",
                 "draw every layer from one generator built from the `seed` argument, not from a "
                 "fixed seed.")
    correct("fresh Kaiming-normal weights, zero biases, masks kept, reproducible from the seed")


# --- 11.3 the Scratch-B budget ---------------------------------------------------------------------
def _budget_cases(variant) -> list[tuple[int, float]]:
    if variant is None:
        return [(10, 1.0), (10, 1.5), (10, 3.0), (12, 1.74), (3, 1.1), (20, 1.13), (1, 1.2), (4, 50.0)]
    rng = rng_for(variant, 31)
    cases = []
    while len(cases) < 8:
        epochs = int(rng.integers(1, 41))
        speedup = round(float(rng.choice([rng.uniform(1.0, 2.0), rng.uniform(2.0, 60.0)])), 3)
        x = epochs * min(speedup, 2.0)
        if abs(x % 1 - 0.5) > 0.02:   # no halves: rounding them is a convention, not the lesson
            cases.append((epochs, speedup))
    return cases


@exercise("11.3", blocks=["minprune.prune.schedules.retrain"])
def check_scratch_b_epochs(fn, variant=None) -> None:
    """`fn(dense_epochs, speedup) -> int`: Scratch-B's epochs, round(dense_epochs · min(speedup, 2)),
    at least 1 (Liu et al. 2019: the same compute as the dense run, at most twice the epochs).
    Hidden variants draw other budgets and speedups."""
    require_callable(fn, "fn")
    for dense_epochs, speedup in _budget_cases(variant):
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
    correct("your budgets give the pruned network the dense run's compute, at most twice its epochs")
