"""Checkers of lesson 13 — strategy sweeps, read honestly (`lessons/13_strategy_sweeps.ipynb`)."""
from __future__ import annotations

import numpy as np

from .. import models, nn
from ..prune import prune
from ..prune.masks import prunable_layers
from .core import as_array, correct, exercise, fail, require_callable, rng_for


# --- 13.1: the compression ratio -------------------------------------------------------------------
def _conv_net(rng, bn: bool, bias: bool = True) -> nn.Sequential:
    """A small conv + linear net for 8×8 inputs with random widths and nonzero biases (BatchNorm
    after the convolution when `bn`)."""
    c, h = int(rng.integers(4, 11)), int(rng.integers(16, 65))
    layers = [nn.Conv2d(1, c, 3, bias=bias, rng=rng)] + ([nn.BatchNorm2d(c)] if bn else [])
    layers += [nn.ReLU(), nn.Flatten(), nn.Linear(c * 6 * 6, h, rng=rng), nn.ReLU(),
               nn.Linear(h, 10, rng=rng)]
    net = nn.Sequential(*layers)
    for p in net.parameters():   # biases and BatchNorm shifts move away from 0 in training
        if p.data.ndim == 1:
            p.data[...] = rng.normal(0, 0.05, p.shape)
    return net


def _compression_cases(variant):
    """(description, model): dense and pruned nets, unstructured and filter pruning, with and
    without BatchNorm."""
    rng = rng_for(variant, 13)
    filter_pruned = dict(criterion="magnitude", granularity="filter", scope="layerwise")
    if variant is None:
        specs = [("a dense conv net", dict(bn=False), None),
                 ("a conv net, 80% global magnitude", dict(bn=False),
                  dict(sparsity=0.8, criterion="magnitude", scope="global")),
                 ("a conv net with BatchNorm, 50% filter pruning", dict(bn=True),
                  dict(sparsity=0.5, **filter_pruned)),
                 ("LeNet-300-100, 90% layerwise magnitude", "lenet",
                  dict(sparsity=0.9, criterion="magnitude", scope="layerwise"))]
    else:
        s = rng.uniform(0.3, 0.97, size=3)
        bn = bool(rng.integers(2))
        specs = [(f"a conv net{' with BatchNorm' if bn else ''}, {s[0]:.0%} global magnitude",
                  dict(bn=bn, bias=bool(rng.integers(2))),
                  dict(sparsity=float(s[0]), criterion="magnitude", scope="global"))]
        specs.append((f"a conv net with BatchNorm, {s[1] * 0.7:.0%} filter pruning", dict(bn=True),
                      dict(sparsity=float(s[1] * 0.7), **filter_pruned)))
        specs.append((f"LeNet-300-100, {s[2]:.0%} layerwise random", "lenet",
                      dict(sparsity=float(s[2]), criterion="random", scope="layerwise",
                           seed=int(rng.integers(1000)))))
    cases = []
    for what, net, how in specs:
        if net == "lenet":
            model = models.lenet_300_100(seed=int(rng.integers(1000)))
            for layer in prunable_layers(model).values():   # trained biases are not 0
                layer.bias.data[...] = rng.normal(0, 0.05, layer.bias.shape)
        else:
            model = _conv_net(rng, **net)
        if how is not None:
            exclude = list(prunable_layers(model))[-1:] if how.get("granularity") else []
            prune(model, **how, exclude=exclude)
        cases.append((what, model))
    return cases


@exercise("13.1", blocks=["minprune.prune.metrics.compression_ratio",
                          "minprune.prune.metrics.count_params",
                          "minprune.prune.metrics.count_nonzero"])
def check_compression_ratio(fn, variant=None) -> None:
    """`fn(model) -> float`: ShrinkBench's compression ratio, all parameters / nonzero parameters,
    counting every parameter (biases and BatchNorm included).

    Checked on dense and pruned conv nets (unstructured and filter pruning, with and without
    BatchNorm) and LeNet-300-100 with nonzero biases."""
    require_callable(fn, "fn")
    for name, model in _compression_cases(variant):
        params = [p.data for p in model.parameters()]
        total, alive = sum(p.size for p in params), sum(np.count_nonzero(p) for p in params)
        want = total / alive
        got = float(as_array(fn(model), f"fn({name})"))
        if np.isclose(got, want, rtol=1e-9):
            continue
        layers = prunable_layers(model).values()
        w = np.concatenate([m.weight.data.ravel() for m in layers])
        wb = np.concatenate([p.data.ravel() for m in layers for p in (m.weight, m.bias)
                             if p is not None])
        hint = "compression = (number of all parameters) / (number of nonzero parameters)."
        if np.isclose(got, w.size / max(np.count_nonzero(w), 1)):
            hint = ("you counted only the Conv2d/Linear weights; ShrinkBench counts every "
                    "parameter, biases and BatchNorm included (model.parameters()).")
        elif np.isclose(got, 1 / want):
            hint = "upside down: all parameters on top, nonzero ones below."
        elif np.isclose(got, wb.size / max(np.count_nonzero(wb), 1)):
            hint = ("you left out the BatchNorm scales and shifts: count every parameter of "
                    "the model (model.parameters()).")
        elif np.isclose(got, 1 / max(1 - np.mean(w == 0), 1e-12)):
            hint = "1 / (1 − sparsity) ignores the dense biases; count the parameters."
        elif (np.isinf(got) and total == alive) or (total > alive and
                                                    np.isclose(got, total / (total - alive))):
            hint = "divide by the nonzero parameters, not by the pruned (zero) ones."
        fail(f"for {name}: expected {want:.4f}, got {got:.4f}.", hint)
    correct("all parameters / nonzero parameters, biases and BatchNorm included")


# --- 13.2: mean and range over seeds ---------------------------------------------------------------
def _sweep_rows(variant) -> list[dict]:
    """Rows as a sweep writes them (one per strategy × sparsity × seed, in shuffled order), with
    accuracies that fall with sparsity and scatter over seeds."""
    rng = rng_for(variant, 13)
    if variant is None:
        strategies, sparsities, seeds = ("global_magnitude", "random"), (0.5, 0.9, 0.98), (0, 1, 2)
    else:
        pool = ["global_magnitude", "layerwise_magnitude", "global_gradient",
                "layerwise_gradient", "random", "snip", "synflow"]
        strategies = tuple(rng.choice(pool, size=int(rng.integers(2, 5)), replace=False))
        sparsities = tuple(sorted(float(s) for s in rng.choice(
            [0.25, 0.5, 0.75, 0.8, 0.9, 0.95, 0.98, 0.99], size=int(rng.integers(2, 5)),
            replace=False)))
        seeds = tuple(int(s) for s in rng.choice(100, size=int(rng.integers(2, 6)), replace=False))
    rows = [dict(strategy=str(st), sparsity=sp, seed=seed,
                 accuracy=float(np.round(0.97 - sp * 0.1 * (i + 1) + rng.normal(0, 0.01), 4)),
                 accuracy_pruned=float(np.round(rng.uniform(0.1, 0.9), 4)),
                 compression=1 / (1 - sp))
            for i, st in enumerate(strategies) for sp in sparsities for seed in seeds]
    rng.shuffle(rows)
    return rows


def _summary_hint(got, accs, rows, key) -> str:
    mean, lo, hi = np.mean(accs), min(accs), max(accs)
    same_strategy = [r["accuracy"] for r in rows if r["strategy"] == key[0]]
    if np.allclose(got, (mean, hi, lo)):
        return "the order is (mean, min, max): min before max."
    if np.isclose(got[1], mean - np.std(accs)) or np.isclose(got[2], mean + np.std(accs)):
        return "min and max of the seeds, not mean ± standard deviation."
    if np.isclose(got[0], np.median(accs)):
        return "the first entry is the mean of the seeds, not the median."
    if np.isclose(got[0], np.mean(same_strategy)):
        return "group by strategy AND sparsity: you pooled every sparsity of the strategy."
    if not np.isclose(got[0], mean):
        return "the mean of the accuracies of the seeds in this group (the `accuracy` column)."
    return "mean, min and max of the accuracies of the seeds in this group."


@exercise("13.2", blocks=["minprune.experiments.summarize"])
def check_seed_summary(fn, variant=None) -> None:
    """`fn(rows) -> {(strategy, sparsity): (mean, min, max)}`: the accuracy over seeds of each
    strategy at each sparsity.

    Checked on shuffled sweep rows; hidden variants draw other strategies, sparsities and numbers
    of seeds."""
    require_callable(fn, "fn")
    rows = _sweep_rows(variant)
    groups = {}
    for r in rows:
        groups.setdefault((r["strategy"], r["sparsity"]), []).append(r["accuracy"])
    answer = fn([dict(r) for r in rows])
    if not isinstance(answer, dict):
        fail(f"fn(rows) returned {type(answer).__name__}, expected a dict "
             "{(strategy, sparsity): (mean, min, max)}.",
             "did you forget a `return` statement?" if answer is None else "")
    if set(answer) != set(groups):
        fail(f"expected the keys {sorted(groups)}, got {sorted(answer, key=str)}.",
             "one entry per (strategy, sparsity) pair: group the rows by both, over seeds.")
    for key, accs in groups.items():
        try:
            got = tuple(float(v) for v in answer[key])
        except (TypeError, ValueError):
            fail(f"for {key}: expected a (mean, min, max) tuple, got {answer[key]!r}.")
        if len(got) != 3:
            fail(f"for {key}: expected a (mean, min, max) tuple, got {answer[key]!r}.")
        want = (float(np.mean(accs)), min(accs), max(accs))
        if not np.allclose(got, want, atol=1e-9):
            fail(f"for {key}: expected ({want[0]:.4f}, {want[1]:.4f}, {want[2]:.4f}), got "
                 f"({got[0]:.4f}, {got[1]:.4f}, {got[2]:.4f}).", _summary_hint(got, accs, rows, key))
    correct("mean, min and max over seeds for every (strategy, sparsity)")
