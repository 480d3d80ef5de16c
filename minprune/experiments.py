"""Experiments and the `minprune` command line.

    minprune demo          the main job: a strategy sweep with defaults that finish in minutes
    minprune train         train one baseline and print the per-epoch table
    minprune sweep         ShrinkBench-style: strategies × sparsities × seeds, pruned + fine-tuned
    minprune schedules     one-shot vs iterative vs gradual at the same sparsities
    minprune at-init       pruning before training (SNIP, GraSP, SynFlow, random) vs after
    minprune distribution  the note's section 4: weight histograms, fine-tuned vs from scratch
    minprune lottery       winning tickets vs random re-initialisation across sparsities
    minprune sensitivity   per-layer sensitivity scan

Every command takes --model, --dataset, --seeds, --epochs, --out and --config (a TOML or JSON
file whose keys are the option names, e.g. `sparsities = [0.5, 0.9]`); `--help` lists the rest.
Each writes `<out>/results.csv` (one row per run, rewritten atomically after every row, so an
interrupted run resumes where it stopped) and PNG figures, and prints a table.
"""
from __future__ import annotations

import argparse
import copy
import csv
import hashlib
import json
import math
import os
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import data, models, nn, prune, train
from .course import cli as course_cli
from .prune import schedules

DATASETS = ("mnist5k", "mnist", "fashion")
# The seed note's five baselines (ShrinkBench's): criterion and scope.
STRATEGIES = {
    "global_magnitude": dict(criterion="magnitude", scope="global"),
    "layerwise_magnitude": dict(criterion="magnitude", scope="layerwise"),
    "global_gradient": dict(criterion="gradient", scope="global"),
    "layerwise_gradient": dict(criterion="gradient", scope="layerwise"),
    "random": dict(criterion="random", scope="layerwise"),
}
BASELINE_TRAINING = dict(lr=0.05, weight_decay=5e-4, augment=2, batch_size=64)
FINETUNE_TRAINING = dict(lr=0.01, weight_decay=5e-4, augment=2, batch_size=64)


def parse_strategy(name: str) -> dict:
    """A named strategy, or "criterion/scope[/granularity]" such as "taylor/global/filter"."""
    if name in STRATEGIES:
        return dict(STRATEGIES[name])
    parts = name.split("/")
    if 2 <= len(parts) <= 3:
        out = dict(criterion=parts[0], scope=parts[1])
        if len(parts) == 3:
            out["granularity"] = parts[2]
        return out
    raise ValueError(f"strategies: {name!r} is not one of {sorted(STRATEGIES)} nor of the form "
                     "criterion/scope[/granularity]")


# --- data, baselines, results files ----------------------------------------------------------------
def load_data(name: str):
    """(train, test) for a dataset name; in fast mode (MINPRUNE_FAST=1) a small subset."""
    if name not in DATASETS:
        raise ValueError(f"dataset: {name!r} is not one of {DATASETS}")
    loaded = data.load_dataset("fashion_mnist" if name == "fashion" else name)
    (x, y), (xt, yt) = loaded
    if data.fast_mode():
        (x, y), (xt, yt) = data.subset(x, y, 600), data.subset(xt, yt, 300)
    return (x, y), (xt, yt)


def cache_dir() -> Path:
    return Path(os.environ.get("MINPRUNE_CACHE", Path.home() / ".cache" / "minprune"))


def baseline(model_name, dataset, seed, epochs, train_data, progress=False):
    """Train (or load from the cache) the dense model for this config.

    The checkpoint's file name is a hash of everything that determines the weights, so changing
    any of them trains a new baseline instead of silently reusing a stale one."""
    x, y = train_data
    fingerprint = hashlib.sha256(y.tobytes() + x[::97].tobytes()).hexdigest()[:16]  # the data too
    config = dict(model=model_name, dataset=dataset, seed=seed, epochs=epochs, data=fingerprint,
                  **BASELINE_TRAINING)
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / "baselines" / f"{model_name}-{dataset}-s{seed}-{key}.npz"
    if path.is_file():
        return nn.load(path)
    model = models.get_model(model_name, seed=seed)
    train.fit(model, train_data, epochs, seed=seed, progress=progress, desc=f"baseline s{seed}",
              **BASELINE_TRAINING)
    nn.save(model, path)
    return model


class ResultsFile:
    """results.csv with one row per run. Rewritten atomically after each row, so a crash leaves
    either the old file or the new one; `done(key)` lets an interrupted sweep resume."""

    def __init__(self, path: Path, key_fields):
        self.path, self.key_fields = Path(path), tuple(key_fields)
        self.rows = []
        if self.path.is_file():
            with open(self.path, newline="") as f:
                self.rows = [_parse_row(r) for r in csv.DictReader(f)]

    def key(self, row) -> tuple:
        return tuple(str(row[k]) for k in self.key_fields)

    def done(self, **fields) -> bool:
        k = self.key(fields)
        return any(self.key(r) == k for r in self.rows)

    def where(self, **allowed) -> list[dict]:
        """The rows whose every named field is one of the allowed values (this run's rows)."""
        return [r for r in self.rows if all(r[k] in values for k, values in allowed.items())]

    def add(self, row: dict):
        self.rows.append(row)
        fields = list(dict.fromkeys(k for r in self.rows for k in r))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        with os.fdopen(fd, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.path)


def _parse_row(row: dict) -> dict:
    out = {}
    for k, v in row.items():
        try:
            out[k] = int(v) if v.lstrip("-").isdigit() else float(v)
        except (ValueError, AttributeError):
            out[k] = v
    return out


def print_table(rows, cols):
    print("  ".join(f"{c:>14}" for c in cols))
    for r in rows:
        print("  ".join(f"{r[c]:>14.4f}" if isinstance(r.get(c), float) else f"{r.get(c, ''):>14}"
                        for c in cols))


def _measure(model, test, shape):
    acc, loss = train.evaluate(model, test)
    return dict(accuracy=acc, loss=loss, measured_sparsity=prune.sparsity(model),
                compression=prune.compression_ratio(model),
                speedup=prune.theoretical_speedup(model, shape))


def scoring_batch(train_data, seed, size=512):
    """The training digits data-driven criteria score on: `size` random ones, fixed by the seed."""
    x, y = train_data
    idx = np.random.default_rng(seed).choice(len(y), size=min(size, len(y)), replace=False)
    return x[idx], y[idx]


def criterion_options(criterion, seed, shape) -> dict:
    """The extra arguments some criteria take: a seed for `random`, the input for `synflow`."""
    return {"random": {"seed": seed}, "synflow": {"input_shape": shape}}.get(criterion, {})


def _shape(x):
    return tuple(int(d) for d in x.shape[1:])


def _save_figure(fig, path):
    path = Path(path)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return path


# --- the experiments -------------------------------------------------------------------------------
def sweep(model="lenet_300_100", dataset="mnist5k", strategies=tuple(STRATEGIES),
          sparsities=(0.5, 0.8, 0.9, 0.95, 0.98), seeds=(0,), epochs=20, finetune_epochs=2,
          out="results/sweep", progress=True, exclude=(), **_):
    """Every strategy × sparsity × seed: prune the cached baseline, evaluate, fine-tune,
    evaluate again. Returns the rows (also in `<out>/results.csv`)."""
    train_data, test = load_data(dataset)
    shape = _shape(train_data[0])
    results = ResultsFile(Path(out) / "results.csv", ("strategy", "sparsity", "seed"))
    specs = {s: parse_strategy(s) for s in strategies}
    jobs = [(seed, s, sp) for seed in seeds for s in strategies for sp in sparsities]
    bar = tqdm(total=len(jobs), desc="sweep", disable=not progress)
    for seed in seeds:
        dense = dense_accuracy = None
        batch = scoring_batch(train_data, seed)
        for name in strategies:
            for sp in sparsities:
                if results.done(strategy=name, sparsity=sp, seed=seed):
                    bar.update(1)
                    continue
                if dense is None:  # trained (or loaded) only if some row of this seed is missing
                    dense = baseline(model, dataset, seed, epochs, train_data, progress)
                    dense_accuracy = train.evaluate(dense, test).accuracy
                start = time.perf_counter()
                m = copy.deepcopy(dense)
                prune.prune(m, sp, batch=batch, exclude=exclude,
                            **specs[name], **criterion_options(specs[name]["criterion"], seed, shape))
                before = train.evaluate(m, test).accuracy
                if finetune_epochs:
                    train.fit(m, train_data, finetune_epochs, seed=seed, progress=False,
                              **FINETUNE_TRAINING)
                row = dict(model=model, dataset=dataset, strategy=name, sparsity=sp, seed=seed,
                           finetune_epochs=finetune_epochs, accuracy_pruned=before,
                           dense_accuracy=dense_accuracy,
                           **_measure(m, test, shape), seconds=time.perf_counter() - start)
                results.add(row)
                bar.update(1)
    bar.close()
    rows = results.where(strategy=strategies, sparsity=sparsities, seed=seeds)
    _sweep_figures(rows, Path(out))
    return rows


def _sweep_figures(rows, out: Path):
    import matplotlib.pyplot as plt

    from . import plots
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, x in zip(axes, ("compression", "speedup")):
        # seeds of one (strategy, sparsity) prune slightly different layers, so their x values
        # differ a little: place them at their mean so the seeds form one point with a band
        groups = {}
        for r in rows:
            groups.setdefault((r["strategy"], r["sparsity"]), []).append(float(r[x]))
        placed = [{**r, x: float(np.mean(groups[(r["strategy"], r["sparsity"])]))} for r in rows]
        plots.plot_accuracy_vs_compression(placed, x=x, ax=ax)
    _save_figure(fig, out / "accuracy_vs_compression.png")


def _curve_figure(rows, group, out: Path, name, title):
    """Accuracy vs sparsity, one line per `group` value (mean over seeds, min–max band)."""
    from . import plots
    ax = plots.plot_accuracy_vs_sparsity(rows, group=group)
    ax.set_title(title, fontsize=10)
    return _save_figure(ax.figure, out / name)


def summarize(rows, by=("strategy", "sparsity"), value="accuracy"):
    """Mean, min and max of `value` over seeds for each group."""
    groups = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in by), []).append(float(r[value]))
    return [dict(zip(by, k), mean=float(np.mean(v)), min=float(np.min(v)), max=float(np.max(v)),
                 n=len(v)) for k, v in sorted(groups.items())]


def compare_schedules(model="lenet_300_100", dataset="mnist5k", sparsities=(0.9, 0.95, 0.98),
                      seeds=(0,), epochs=20, finetune_epochs=2, rounds=3, out="results/schedules",
                      progress=True, **_):
    """One-shot vs iterative vs gradual at the same sparsities, with the same fine-tuning budget:
    one-shot fine-tunes rounds×finetune_epochs once, iterative finetune_epochs per round, gradual
    prunes during rounds×finetune_epochs of training from the dense baseline."""
    train_data, test = load_data(dataset)
    shape = _shape(train_data[0])
    results = ResultsFile(Path(out) / "results.csv", ("schedule", "sparsity", "seed"))
    budget = rounds * finetune_epochs
    bar = tqdm(total=3 * len(seeds) * len(sparsities), desc="schedules", disable=not progress)
    for seed in seeds:
        dense = None
        for sp in sparsities:
            for kind in ("one_shot", "iterative", "gradual"):
                if results.done(schedule=kind, sparsity=sp, seed=seed):
                    bar.update(1)
                    continue
                if dense is None:
                    dense = baseline(model, dataset, seed, epochs, train_data, progress)
                m, start = copy.deepcopy(dense), time.perf_counter()
                if kind == "one_shot":
                    schedules.one_shot(m, sp, finetune=schedules.trainer(
                        train_data, budget, seed=seed, **FINETUNE_TRAINING))
                elif kind == "iterative":
                    schedules.iterative(m, sp, rounds, finetune=schedules.trainer(
                        train_data, finetune_epochs, seed=seed, **FINETUNE_TRAINING))
                else:
                    steps = budget * -(-len(train_data[1]) // FINETUNE_TRAINING["batch_size"])
                    ramp = schedules.gradual(sp, start=0, end=int(steps * 0.75),
                                             every=max(1, steps // 40))
                    train.fit(m, train_data, budget, seed=seed, callbacks=[ramp], progress=False,
                              **FINETUNE_TRAINING)
                results.add(dict(model=model, dataset=dataset, schedule=kind, sparsity=sp,
                                 seed=seed, epochs=budget, **_measure(m, test, shape),
                                 seconds=time.perf_counter() - start))
                bar.update(1)
    bar.close()
    rows = results.where(seed=seeds, sparsity=sparsities)
    _curve_figure(rows, "schedule", Path(out), "schedules.png",
                  f"{model}: one-shot vs iterative vs gradual, {budget} epochs of retraining")
    return rows


def compare_at_init(model="lenet_300_100", dataset="mnist5k", sparsities=(0.9, 0.95, 0.98),
                    seeds=(0,), epochs=20, criteria=("snip", "grasp", "synflow", "random"),
                    finetune_epochs=2, out="results/at_init", progress=True, **_):
    """Prune before training with each criterion and train the sparse net for `epochs`; compare
    with pruning after training (global magnitude on the baseline, then fine-tuning)."""
    train_data, test = load_data(dataset)
    shape = _shape(train_data[0])
    results = ResultsFile(Path(out) / "results.csv", ("method", "sparsity", "seed"))
    methods = [f"init_{c}" for c in criteria] + ["after_magnitude"]
    bar = tqdm(total=len(methods) * len(seeds) * len(sparsities), desc="at-init",
               disable=not progress)
    for seed in seeds:
        batch = scoring_batch(train_data, seed)
        for sp in sparsities:
            for method in methods:
                if results.done(method=method, sparsity=sp, seed=seed):
                    bar.update(1)
                    continue
                start = time.perf_counter()
                if method.startswith("init_"):
                    m = models.get_model(model, seed=seed)
                    crit = method[len("init_"):]
                    schedules.at_init(m, sp, criterion=crit, batch=batch,
                                      train=schedules.trainer(train_data, epochs, seed=seed,
                                                              **BASELINE_TRAINING),
                                      **criterion_options(crit, seed, shape))
                else:
                    m = copy.deepcopy(baseline(model, dataset, seed, epochs, train_data, progress))
                    prune.prune(m, sp, criterion="magnitude", scope="global")
                    train.fit(m, train_data, finetune_epochs, seed=seed, progress=False,
                              **FINETUNE_TRAINING)
                results.add(dict(model=model, dataset=dataset, method=method, sparsity=sp,
                                 seed=seed, **_measure(m, test, shape),
                                 seconds=time.perf_counter() - start))
                bar.update(1)
    bar.close()
    rows = results.where(seed=seeds, sparsity=sparsities)
    _curve_figure(rows, "method", Path(out), "at_init.png",
                  f"{model}: pruning before training vs after")
    return rows


def near_zero_fraction(model, threshold=0.01) -> float:
    """Among the surviving (nonzero) prunable weights, the fraction with |w| < threshold."""
    ws = np.concatenate([m.weight.data.ravel() for m in prune.prunable_layers(model).values()])
    alive = ws[ws != 0]
    return float(np.mean(np.abs(alive) < threshold)) if alive.size else float("nan")


def distribution(model="lenet5", dataset="mnist5k", seeds=(0,), epochs=20, finetune_epochs=5,
                 unstructured_sparsity=0.9, filter_sparsity=0.5, threshold=0.01,
                 out="results/distribution", progress=True, **_):
    """The note's section 4 (after Liu et al. 2019, Fig. 5): weight histograms of the trained
    model, of unstructured and structured (filter) pruning + fine-tuning, and of the same pruned
    networks re-initialised and trained from scratch. Also the fraction of surviving weights
    with |w| < threshold in each case."""
    import matplotlib.pyplot as plt

    from . import plots
    train_data, test = load_data(dataset)
    out = Path(out)
    results = ResultsFile(out / "results.csv", ("case", "seed"))
    panels = {}
    for seed in seeds:
        dense = baseline(model, dataset, seed, epochs, train_data, progress)
        cases = {"unpruned": dense}
        for label, kw in (("unstructured", dict(granularity="unstructured", scope="global",
                                                sparsity=unstructured_sparsity)),
                          ("structured", dict(granularity="filter", scope="layerwise",
                                              sparsity=filter_sparsity,
                                              exclude=list(prune.prunable_layers(dense))[-1:]))):
            pruned = copy.deepcopy(dense)
            prune.prune(pruned, kw.pop("sparsity"), criterion="magnitude", **kw)
            scratch = copy.deepcopy(pruned)
            schedules.retrain(pruned, "finetune", train=schedules.trainer(
                train_data, finetune_epochs, seed=seed, **FINETUNE_TRAINING))
            schedules.retrain(scratch, "scratch", seed=seed + 100, train=schedules.trainer(
                train_data, epochs, seed=seed, **BASELINE_TRAINING))
            cases[f"{label} + fine-tune"] = pruned
            cases[f"{label} from scratch"] = scratch
        for case, m in cases.items():
            row = dict(model=model, dataset=dataset, case=case, seed=seed,
                       near_zero=near_zero_fraction(m, threshold), threshold=threshold,
                       **_measure(m, test, _shape(train_data[0])))
            if not results.done(case=case, seed=seed):
                results.add(row)
            panels.setdefault(case, m)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3), sharey=False)
    for ax, (case, m) in zip(axes, panels.items()):
        plots.plot_weight_histogram(m, ax=ax)
        ax.set_title(case, fontsize=9)
    _save_figure(fig, out / "weight_distributions.png")
    return results.where(seed=seeds)


def lottery_experiment(model="lenet_300_100", dataset="mnist5k", seeds=(0,), epochs=10,
                       sparsities=(0.5, 0.8, 0.9, 0.95, 0.98), keep_per_round=0.5, rewind_to=0,
                       out="results/lottery", progress=True, **_):
    """Winning ticket vs random re-initialisation across sparsities. Each sparsity is reached
    from the dense net by iterative magnitude pruning with rewinding, keeping about
    `keep_per_round` of the survivors per round (rounds = ⌈log(1−s) / log(keep_per_round)⌉)."""
    if not 0 < keep_per_round < 1:
        raise ValueError(f"keep_per_round: must be in (0, 1), got {keep_per_round}")
    train_data, test = load_data(dataset)
    results = ResultsFile(Path(out) / "results.csv", ("kind", "sparsity", "seed"))
    bar = tqdm(total=len(seeds) * len(sparsities), desc="lottery", disable=not progress)
    for seed in seeds:
        for sp in sparsities:
            if results.done(kind="ticket", sparsity=sp, seed=seed):
                bar.update(1)
                continue
            m = models.get_model(model, seed=seed)
            rounds = max(1, math.ceil(math.log(1 - sp) / math.log(keep_per_round) - 1e-9))
            history = schedules.lottery(m, sp, rounds, seed=seed, rewind_to=rewind_to,
                                        val=test, train=schedules.trainer(
                                            train_data, epochs, seed=seed, **BASELINE_TRAINING))
            for h in history[-2:]:
                results.add(dict(model=model, dataset=dataset, kind=h["kind"], sparsity=sp,
                                 seed=seed, rounds=rounds, accuracy=h["accuracy"], loss=h["loss"],
                                 measured_sparsity=h["sparsity"], rewind_to=rewind_to))
            bar.update(1)
    bar.close()
    rows = results.where(seed=seeds)
    _curve_figure(rows, "kind", Path(out), "lottery.png",
                  f"{model}: winning ticket vs random re-initialisation")
    return rows


def sensitivity(model="lenet5", dataset="mnist5k", seeds=(0,), epochs=20,
                sparsities=(0.25, 0.5, 0.75, 0.9, 0.95), out="results/sensitivity", progress=True,
                criterion="magnitude", granularity="unstructured", **_):
    """Prune each layer alone at each sparsity (no fine-tuning) and plot accuracy per layer."""
    from . import plots
    train_data, test = load_data(dataset)
    dense = baseline(model, dataset, seeds[0], epochs, train_data, progress)
    scan = prune.sensitivity_scan(dense, test, sparsities, progress=progress,
                                  criterion=criterion, granularity=granularity)
    results = ResultsFile(Path(out) / "results.csv", ("layer", "sparsity", "seed"))
    for layer, accs in scan["layers"].items():
        for sp, acc in zip(sparsities, accs):
            if not results.done(layer=layer, sparsity=sp, seed=seeds[0]):
                results.add(dict(model=model, layer=layer, sparsity=sp, seed=seeds[0],
                                 accuracy=acc, baseline=scan["baseline"]))
    _save_figure(plots.plot_sensitivity(scan).figure, Path(out) / "sensitivity.png")
    print("suggested per-layer sparsities (≤1 point drop):", prune.sparsities_from_scan(scan))
    return results.rows


# --- command line ----------------------------------------------------------------------------------
def _floats(text):
    return [float(v) for v in str(text).split(",")]


def _ints(text):
    return [int(v) for v in str(text).split(",")]


def _names(text):
    return [v.strip() for v in str(text).split(",") if v.strip()]


COMMANDS = {
    # name: (function, help, {option: (type, default, help)}, columns printed)
    "sweep": (sweep, "strategies × sparsities × seeds, pruned and fine-tuned (ShrinkBench-style)",
              {"strategies": (_names, ",".join(STRATEGIES), "comma-separated: "
                              f"{', '.join(STRATEGIES)} or criterion/scope[/granularity]"),
               "sparsities": (_floats, "0.5,0.8,0.9,0.95,0.98", "fractions of weights removed"),
               "compressions": (_floats, None, "compression ratios instead of sparsities "
                                "(sparsity = 1 - 1/ratio over prunable weights)"),
               "finetune_epochs": (int, 2, "fine-tuning epochs after pruning (0 = none)"),
               "exclude": (_names, "", "layer names to leave dense")},
              ("strategy", "sparsity", "seed", "accuracy_pruned", "accuracy", "compression",
               "speedup")),
    "schedules": (compare_schedules, "one-shot vs iterative vs gradual",
                  {"sparsities": (_floats, "0.9,0.95,0.98", "target sparsities"),
                   "rounds": (int, 3, "iterative rounds"),
                   "finetune_epochs": (int, 2, "fine-tuning epochs per round")},
                  ("schedule", "sparsity", "seed", "accuracy", "measured_sparsity", "compression")),
    "at-init": (compare_at_init, "pruning at initialisation vs after training",
                {"sparsities": (_floats, "0.9,0.95,0.98", "target sparsities"),
                 "criteria": (_names, "snip,grasp,synflow,random", "criteria used at init"),
                 "finetune_epochs": (int, 2, "fine-tuning epochs for the after-training row")},
                ("method", "sparsity", "seed", "accuracy", "compression")),
    "distribution": (distribution, "weight histograms: fine-tuned vs trained from scratch",
                     {"unstructured_sparsity": (float, 0.9, "global magnitude sparsity"),
                      "filter_sparsity": (float, 0.5, "layerwise filter sparsity"),
                      "finetune_epochs": (int, 5, "fine-tuning epochs"),
                      "threshold": (float, 0.01, "|w| below this counts as near zero")},
                     ("case", "seed", "accuracy", "measured_sparsity", "near_zero")),
    "lottery": (lottery_experiment, "winning tickets vs random re-initialisation",
                {"sparsities": (_floats, "0.5,0.8,0.9,0.95,0.98", "ticket sparsities"),
                 "keep_per_round": (float, 0.5, "fraction of survivors kept per pruning round"),
                 "rewind_to": (int, 0, "rewind to this training step (0 = initialisation)")},
                ("kind", "sparsity", "seed", "rounds", "accuracy")),
    "sensitivity": (sensitivity, "per-layer sensitivity scan",
                    {"sparsities": (_floats, "0.25,0.5,0.75,0.9,0.95", "sparsities per layer"),
                     "criterion": (str, "magnitude", "criterion"),
                     "granularity": (str, "unstructured", "granularity")},
                    ("layer", "sparsity", "accuracy", "baseline")),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minprune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, model, epochs, out):
        p.add_argument("--config", help="TOML or JSON file of options (keys = option names)")
        p.add_argument("--model", default=model, choices=sorted(models.MODELS))
        p.add_argument("--dataset", default="mnist5k", choices=DATASETS,
                       help="mnist5k is embedded; mnist and fashion are downloaded and cached")
        p.add_argument("--seeds", type=_ints, default=[0], help="comma-separated seeds, e.g. 0,1,2")
        p.add_argument("--epochs", type=int, default=epochs, help="baseline training epochs")
        p.add_argument("--out", default=out, help="output folder for results.csv and figures")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("demo", help="the main job: a quick five-strategy sweep on LeNet-5")
    common(p, "lenet5", 20, "results/demo")
    p = sub.add_parser("train", help="train one dense baseline and print its per-epoch table")
    common(p, "lenet5", 20, "results/train")
    p.add_argument("--lr", type=float, default=BASELINE_TRAINING["lr"])
    course_cli.add_parser(sub)
    for name, (_, help_, options, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        common(p, "lenet5" if name in ("distribution", "sensitivity") else "lenet_300_100",
               10 if name == "lottery" else 20, f"results/{name}")
        for opt, (type_, default, ohelp) in options.items():
            p.add_argument("--" + opt.replace("_", "-"), dest=opt, type=type_,
                           default=type_(default) if default not in (None, "") and type_ is not str
                           else ([] if default == "" else default), help=ohelp)
    return parser


def _apply_config(parser, argv):
    """Re-parse with the config file's values as defaults (command-line flags still win)."""
    args = parser.parse_args(argv)
    if not getattr(args, "config", None):
        return args
    path = Path(args.config)
    if not path.is_file():
        parser.error(f"--config: no such file {str(path)!r}")
    text = path.read_text()
    try:
        config = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        parser.error(f"--config: cannot parse {str(path)!r}: {e}")
    known = set(vars(args))
    unknown = sorted(set(config) - known)
    if unknown:
        parser.error(f"--config: unknown options {unknown}; valid: {sorted(known - {'command'})}")
    sub = parser._subparsers._group_actions[0].choices[args.command]
    sub.set_defaults(**config)
    return parser.parse_args(argv)


def _run_train(args):
    train_data, test = load_data(args.dataset)
    model = models.get_model(args.model, seed=args.seeds[0])
    start = time.perf_counter()
    history = train.fit(model, train_data, args.epochs, seed=args.seeds[0], val=test,
                        progress=not args.quiet, **{**BASELINE_TRAINING, "lr": args.lr})
    train.print_history(history)
    acc, loss = train.evaluate(model, test)
    print(f"\n{args.model}: test accuracy {acc:.2%} (loss {loss:.3f}) on {len(test[1])} held-out "
          f"digits, trained in {time.perf_counter() - start:.1f} s")
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = _apply_config(parser, argv)
    if args.command == "course":
        try:
            return course_cli.run(args)
        except ValueError as err:
            parser.error(str(err))
    if args.command == "train":
        return _run_train(args)
    kwargs = {k: v for k, v in vars(args).items() if k not in ("command", "config", "quiet")}
    kwargs["progress"] = not args.quiet
    name = args.command
    if name == "demo":  # the five baselines on LeNet-5, fine-tuned, two seeds: a few minutes
        name = "sweep"
        kwargs.update(strategies=list(STRATEGIES), sparsities=[0.5, 0.8, 0.9, 0.95, 0.98],
                      finetune_epochs=2, exclude=[], seeds=args.seeds if args.seeds != [0]
                      else [0, 1])
    fn, _, _, cols = COMMANDS[name]
    if name == "sweep" and kwargs.get("compressions"):
        kwargs["sparsities"] = [round(1 - 1 / c, 6) for c in kwargs.pop("compressions")]
    kwargs.pop("compressions", None)
    start = time.perf_counter()
    rows = fn(**kwargs)
    print_table(rows, cols)
    if name == "sweep":
        print("\nmean accuracy over seeds (min–max):")
        for s in summarize(rows):
            print(f"  {s['strategy']:>22}  sparsity {s['sparsity']:<5}  {s['mean']:.4f} "
                  f"({s['min']:.4f}–{s['max']:.4f}, {s['n']} seeds)")
    out = Path(kwargs["out"])
    print(f"\n{len(rows)} rows in {out / 'results.csv'}; figures in {out}/ "
          f"({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
