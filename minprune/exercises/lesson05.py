"""Checkers of lesson 05 — global vs layerwise (`lessons/05_global_vs_layerwise.ipynb`).

Both exercises ask how many weights each layer loses: the answer is counted by the student, so
`prune()` and the scope functions that choose which weights fall are blocked while it runs. Hidden
variants use other model seeds, other sparsities and small random networks whose layers have
different sizes and weight scales (so global pruning hits them unevenly)."""
from __future__ import annotations

import copy

import numpy as np

from .. import nn
from .core import as_int, correct, exercise, fail, layer_weights, require_callable, rng_for

# Everything in minprune that decides which weights a scope prunes.
_BLOCKS = ["minprune.prune.pruner.prune", "minprune.prune.pruner.prune_activations",
           "minprune.prune.scope.select", "minprune.prune.scope.lowest",
           "minprune.prune.schedules.sensitivity_scan"]


def _random_net(rng) -> nn.Sequential:
    """A small random network: two or three conv layers or Linear layers of random sizes, each
    with its own weight scale (global magnitude pruning then hits layers very unevenly)."""
    r = np.random.default_rng(int(rng.integers(2 ** 31)))
    layers = []
    if rng.random() < 0.5:
        channels = [1] + [int(c) for c in rng.integers(2, 9, size=int(rng.integers(2, 4)))]
        for c_in, c_out in zip(channels, channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, int(rng.choice([3, 5])), padding=1, rng=r), nn.ReLU()]
        layers += [nn.Flatten(), nn.Linear(channels[-1] * 4, int(rng.integers(5, 30)), rng=r)]
    else:
        sizes = [int(n) for n in rng.integers(8, 80, size=int(rng.integers(3, 5)))]
        for n_in, n_out in zip(sizes, sizes[1:]):
            layers += [nn.Linear(n_in, n_out, rng=r), nn.ReLU()]
        layers = layers[:-1]
    net = nn.Sequential(*layers)
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.weight.data *= np.float32(rng.uniform(0.2, 3.0))
    return net


def _sparsity(rng, sizes) -> float:
    """A sparsity with three decimals whose counts round(s·n) are never an exact half (where
    round-half-to-even and round-half-up disagree)."""
    while True:
        s = float(np.round(rng.uniform(0.1, 0.98), 3))
        if all(abs((s * n) % 1 - 0.5) > 1e-6 for n in sizes):
            return s


def _cases(variant, public_seed):
    """[(description, model, [sparsities])]: the self-check's LeNets, or a hidden variant's."""
    from ..models import lenet5, lenet_300_100
    if variant is None:
        return [("lenet5", lenet5(seed=public_seed), None),
                ("lenet_300_100", lenet_300_100(seed=public_seed), None)]
    rng = rng_for(variant, public_seed)
    cases = [(f"lenet5(seed={variant % 1000})", lenet5(seed=variant % 1000), None)]
    for i in range(2):
        cases.append((f"a random network #{i + 1}", _random_net(rng), None))
    out = []
    for name, model, _ in cases:
        sizes = [w.size for w in layer_weights(model).values()]
        sizes.append(sum(sizes))
        out.append((name, model, [_sparsity(rng, sizes) for _ in range(2)]))
    return out


def _as_count_dict(answer, names, what) -> dict:
    if answer is None:
        fail(f"{what} is None.", "did you forget a `return` statement?")
    if not isinstance(answer, dict):
        fail(f"{what} should be a dict {{layer name: count}}, got {type(answer).__name__}.",
             "loop over `mp.prune.prunable_layers(model).items()` and store one count per name.")
    missing = [n for n in names if n not in answer]
    if missing:
        fail(f"{what} has no entry for {missing}; expected the keys {list(names)}.",
             "use the names from `mp.prune.prunable_layers(model)` (e.g. 'features.0').")
    extra = [n for n in answer if n not in names]
    if extra:
        fail(f"{what} has entries {extra} that are not prunable layers; expected the keys "
             f"{list(names)}.", "use the names from `mp.prune.prunable_layers(model)`.")
    return {n: as_int(answer[n], f"{what}[{n!r}]") for n in names}


@exercise("05.1", blocks=_BLOCKS)
def check_layerwise_counts(fn, variant=None) -> None:
    """`fn(model, sparsity) -> {layer name: weights pruned}` for *layerwise* pruning: every layer
    loses round(s·n) of its own n weights."""
    require_callable(fn, "fn")
    for name, model, sparsities in _cases(variant, 8):
        for s in sparsities or (0.25, 0.9, 0.97):
            sizes = {n: w.size for n, w in layer_weights(model).items()}
            want = {n: round(s * size) for n, size in sizes.items()}
            got = _as_count_dict(fn(copy.deepcopy(model), s), list(want), f"fn({name}, {s})")
            for n in want:
                if got[n] != want[n]:
                    size = sizes[n]
                    hint = f"layer {n!r} has {size:,} weights: prune round({s}·{size:,})."
                    if got[n] == int(s * size):
                        hint = "int() truncates; pruning counts are rounded: round(s·n)."
                    elif got[n] == size - want[n]:
                        hint = "you counted the weights kept; count the weights pruned."
                    elif got[n] == round(s * sum(sizes.values())):
                        hint = "that is s times the whole network; layerwise uses each layer's own n."
                    fail(f"{name} at sparsity {s}: layer {n!r} loses {want[n]:,} weights, you "
                         f"said {got[n]:,}.", hint)
    correct("your counts match layerwise pruning")


@exercise("05.2", blocks=_BLOCKS)
def check_global_counts(fn, variant=None) -> None:
    """`fn(model, sparsity) -> {layer name: weights pruned}` for *global* magnitude pruning: one
    threshold over all layers, the k = round(s·N)-th smallest |w| of all N prunable weights.
    Weights whose |w| ties with the threshold may be counted either way."""
    require_callable(fn, "fn")
    for name, model, sparsities in _cases(variant, 9):
        for s in sparsities or (0.5, 0.9):
            ws = {n: np.abs(w.astype(np.float64)) for n, w in layer_weights(model).items()}
            mags = np.sort(np.concatenate([w.ravel() for w in ws.values()]))
            k = round(s * mags.size)
            t = mags[k - 1]
            low = {n: int((w < t).sum()) for n, w in ws.items()}      # surely pruned
            high = {n: int((w <= t).sum()) for n, w in ws.items()}    # pruned if ties go that way
            got = _as_count_dict(fn(copy.deepcopy(model), s), list(ws), f"fn({name}, {s})")
            ok = all(low[n] <= got[n] <= high[n] for n in ws) and \
                k <= sum(got.values()) <= sum(high.values())
            if ok:
                continue
            want = {n: min(high[n], max(low[n], got[n])) for n in ws}  # the nearest right answer
            sizes = {n: w.size for n, w in ws.items()}
            hint = ("find the global threshold (the k-th smallest |w| over all layers, "
                    "k = round(s·N)), then count per layer the weights with |w| <= threshold.")
            if all(got[n] == round(s * sizes[n]) for n in sizes):
                hint = ("those are layerwise counts (the same fraction of every layer); global "
                        "pruning uses one threshold for all layers, so layers differ.")
            elif all(got[n] == sizes[n] - high[n] for n in sizes):
                hint = "you counted the weights kept; count the weights pruned."
            elif sum(got.values()) == k:
                hint = "the total is right but not the split; rank |w|, not w."
            fail(f"{name} at sparsity {s}: global pruning removes {want}, you said {got}.", hint)
    correct("your counts match global magnitude pruning — note how unevenly layers are hit")
