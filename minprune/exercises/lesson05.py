"""Checkers of lesson 05 — global vs layerwise (`lessons/05_global_vs_layerwise.ipynb`)."""
from __future__ import annotations

import numpy as np

from .core import (
    as_int,
    correct,
    fail,
    layer_weights,
    require_callable,
)


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
    return {n: as_int(answer[n], f"{what}[{n!r}]") for n in names}


def check_layerwise_counts(fn) -> None:
    """`fn(model, sparsity) -> {layer name: weights pruned}` for *layerwise* pruning: every layer
    loses the same fraction of its own weights. Compared with `prune(..., scope="layerwise")`."""
    require_callable(fn, "fn")
    import copy

    from ..models import lenet5, lenet_300_100
    from ..prune import prune

    for model, name in [(lenet5(seed=8), "lenet5"), (lenet_300_100(seed=8), "lenet_300_100")]:
        for s in (0.25, 0.9, 0.97):
            pruned = copy.deepcopy(model)
            prune(pruned, s, scope="layerwise")
            want = {n: int((w == 0).sum()) for n, w in layer_weights(pruned).items()}
            got = _as_count_dict(fn(copy.deepcopy(model), s), list(want), f"fn({name}, {s})")
            for n in want:
                if got[n] != want[n]:
                    size = layer_weights(model)[n].size
                    hint = f"layer {n!r} has {size:,} weights: prune round({s}·{size:,})."
                    if got[n] == int(s * size):
                        hint = "int() truncates; minprune rounds: round(s·n)."
                    elif got[n] == size - want[n]:
                        hint = "you counted the weights kept; count the weights pruned."
                    fail(f"{name} at sparsity {s}: layer {n!r} loses {want[n]:,} weights, you "
                         f"said {got[n]:,}.", hint)
    correct("your counts match layerwise pruning")


def check_global_counts(fn) -> None:
    """`fn(model, sparsity) -> {layer name: weights pruned}` for *global* magnitude pruning: one
    threshold over all layers. Compared with `prune(..., scope="global")`; weights whose |w| ties
    with the threshold may be counted either way."""
    require_callable(fn, "fn")
    import copy

    from ..models import lenet5, lenet_300_100
    from ..prune import prune

    for model, name in [(lenet5(seed=9), "lenet5"), (lenet_300_100(seed=9), "lenet_300_100")]:
        for s in (0.5, 0.9):
            pruned = copy.deepcopy(model)
            prune(pruned, s, scope="global")
            want = {n: int((w == 0).sum()) for n, w in layer_weights(pruned).items()}
            got = _as_count_dict(fn(copy.deepcopy(model), s), list(want), f"fn({name}, {s})")
            ws = layer_weights(model)
            mags = np.sort(np.concatenate([np.abs(w).ravel() for w in ws.values()]))
            t = mags[round(s * mags.size) - 1]  # weights tied with t may fall either way
            tied_ok = all(int((np.abs(ws[n]) < t).sum()) <= got[n] <= int((np.abs(ws[n]) <= t).sum())
                          for n in want)
            if got != want and not tied_ok:
                sizes = {n: w.size for n, w in layer_weights(model).items()}
                hint = ("find the global threshold (the k-th smallest |w| over all layers, "
                        "k = round(s·N)), then count per layer the weights with |w| <= threshold.")
                if all(got[n] == round(s * sizes[n]) for n in sizes):
                    hint = ("those are layerwise counts (the same fraction of every layer); global "
                            "pruning uses one threshold for all layers, so layers differ.")
                elif sum(got.values()) == sum(want.values()):
                    hint = "the total is right but not the split; rank |w|, not w."
                fail(f"{name} at sparsity {s}: global pruning removes {want}, you said {got}.",
                     hint)
    correct("your counts match global magnitude pruning — note how unevenly layers are hit")
