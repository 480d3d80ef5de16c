"""Checkers of lesson 13 — strategy sweeps, read honestly (`lessons/13_strategy_sweeps.ipynb`)."""
from __future__ import annotations

import numpy as np

from .core import (
    all_prunable,
    as_array,
    correct,
    fail,
    require_callable,
    retraining_nets,
)


def check_compression_ratio(fn) -> None:
    """`fn(model) -> float`: ShrinkBench's compression ratio, all parameters / nonzero parameters,
    counting every parameter (biases and BatchNorm included)."""
    require_callable(fn, "fn")
    from ..prune import metrics

    for name, model in retraining_nets(seed=5).items():
        want = metrics.compression_ratio(model)
        got = float(as_array(fn(model), f"fn({name})"))
        if np.isclose(got, want, rtol=1e-9):
            continue
        w = all_prunable(model)
        hint = "compression = (number of all parameters) / (number of nonzero parameters)."
        if np.isclose(got, w.size / max(np.count_nonzero(w), 1)):
            hint = ("you counted only the Conv2d/Linear weights; ShrinkBench counts every "
                    "parameter, biases and BatchNorm included (model.parameters()).")
        elif np.isclose(got, 1 / want):
            hint = "upside down: all parameters on top, nonzero ones below."
        elif np.isclose(got, 1 / max(np.count_nonzero(w) / w.size, 1e-12)) or \
                np.isclose(got, 1 / (1 - metrics.sparsity(model) + 1e-300)):
            hint = "1 / (1 − sparsity) ignores the dense biases; count the parameters."
        fail(f"for {name}: expected {want:.4f}, got {got:.4f}.", hint)
    correct("your ratio matches prune.compression_ratio")


def check_seed_summary(fn) -> None:
    """`fn(rows) -> {(strategy, sparsity): (mean, min, max)}`: the accuracy over seeds of each
    strategy at each sparsity (what `experiments.summarize` reports)."""
    require_callable(fn, "fn")
    from ..experiments import summarize

    rng = np.random.default_rng(13)
    rows = [dict(strategy=st, sparsity=sp, seed=seed,
                 accuracy=float(np.round(0.97 - sp * 0.1 * (i + 1) + rng.normal(0, 0.01), 4)),
                 compression=1 / (1 - sp))
            for i, st in enumerate(("global_magnitude", "random")) for sp in (0.5, 0.9, 0.98)
            for seed in (0, 1, 2)]
    rng.shuffle(rows)
    want = {(s["strategy"], s["sparsity"]): (s["mean"], s["min"], s["max"])
            for s in summarize(rows)}
    answer = fn([dict(r) for r in rows])
    if not isinstance(answer, dict):
        fail(f"fn(rows) returned {type(answer).__name__}, expected a dict "
             "{(strategy, sparsity): (mean, min, max)}.")
    if set(answer) != set(want):
        fail(f"expected the keys {sorted(want)}, got {sorted(answer, key=str)}.",
             "one entry per (strategy, sparsity) pair: group the rows by both, over seeds.")
    for key, (mean, lo, hi) in want.items():
        try:
            got = tuple(float(v) for v in answer[key])
        except (TypeError, ValueError):
            fail(f"for {key}: expected a (mean, min, max) tuple, got {answer[key]!r}.")
        if len(got) != 3:
            fail(f"for {key}: expected a (mean, min, max) tuple, got {answer[key]!r}.")
        if not np.allclose(got, (mean, lo, hi), atol=1e-9):
            accs = [r["accuracy"] for r in rows if (r["strategy"], r["sparsity"]) == key]
            hint = "mean, min and max of the accuracies of the seeds in this group."
            if np.isclose(got[1], mean - np.std(accs)) or np.isclose(got[2], mean + np.std(accs)):
                hint = "min and max of the seeds, not mean ± standard deviation."
            fail(f"for {key}: expected ({mean:.4f}, {lo:.4f}, {hi:.4f}), got "
                 f"({got[0]:.4f}, {got[1]:.4f}, {got[2]:.4f}).", hint)
    correct("your summary matches experiments.summarize")
