"""The experiments: each one the grid it runs and a function for one job of it.

    sweep               strategies × sparsities × seeds, pruned and fine-tuned (ShrinkBench-style)
    compare_schedules   one-shot vs iterative vs gradual at the same sparsities
    compare_at_init     pruning before training (SNIP, GraSP, SynFlow, random) vs after
    distribution        the note's section 4: weight histograms, fine-tuned vs from scratch
    lottery_experiment  winning tickets vs random re-initialisation across sparsities
    sensitivity         per-layer sensitivity scan
    ssl                 learned structured sparsity (group Lasso, slimming) vs pruning after

Each function checks every argument first (a `ValueError`/`TypeError` naming it; `dry_run=True`
stops there and returns the jobs still to run), then hands its grid to `runner.run`, which writes
`<out>/results.csv` (one row per job, each carrying the run's configuration; an interrupted run
resumes where it stopped), runs the jobs here, in `jobs` local processes or on a Dask `cluster`,
and draws the figure. `minprune.cli` is the command line.
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np

from . import checks, data, models, nn, prune, runner, train
from .files import atomic_write, cache_dir
from .prune import schedules

__all__ = ["sweep", "compare_schedules", "compare_at_init", "distribution", "lottery_experiment",
           "sensitivity", "ssl", "load_data", "baseline", "summarize", "print_table", "near_zero_fraction",
           "parse_strategy", "cache_dir", "STRATEGIES", "DATASETS", "BASELINE_TRAINING",
           "FINETUNE_TRAINING"]

DATASETS = ("mnist5k", "mnist", "fashion")
INPUT_SHAPE = (1, 28, 28)  # every dataset above: 28×28 grey digits or clothes
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
    if not isinstance(name, str):
        raise TypeError(f"strategies: expected a strategy name, got {name!r}")
    if name in STRATEGIES:
        return dict(STRATEGIES[name])
    parts = name.split("/")
    if 2 <= len(parts) <= 3 and all(parts):
        return dict(zip(("criterion", "scope", "granularity"), parts))
    raise ValueError(f"strategies: {name!r} is not one of {sorted(STRATEGIES)} nor of the form "
                     "criterion/scope[/granularity]")


# --- data and baselines ----------------------------------------------------------------------
def load_data(name: str):
    """(train, test) for a dataset name; in fast mode (MINPRUNE_FAST=1) a small subset."""
    checks.one_of(name, "dataset", DATASETS)
    (x, y), (xt, yt) = data.load_dataset("fashion_mnist" if name == "fashion" else name)
    if data.fast_mode():
        (x, y), (xt, yt) = data.subset(x, y, 600), data.subset(xt, yt, 300)
    return (x, y), (xt, yt)


@functools.lru_cache(maxsize=2)
def _cached_data(name: str, fast: bool):
    return load_data(name)


def _data(name: str):
    """`load_data(name)`, loaded once per process (jobs share it and never change it)."""
    return _cached_data(name, data.fast_mode())


def _hash(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=4)
def _data_hash(name: str, fast: bool) -> str:
    (x, y), (xt, yt) = _cached_data(name, fast)
    return _hash(x, y, xt, yt)


def data_fingerprint(settings: dict) -> str:
    """A hash of the run's training and test data (fast mode uses other data, so it differs)."""
    return _data_hash(settings["dataset"], data.fast_mode())


def baseline(model_name, dataset, seed, epochs, train_data, progress=False):
    """Train (or load from the cache) the dense model for this config; a fresh model every call.

    The checkpoint's name is a hash of everything that determines the weights (the training data
    included), so changing any of them trains a new baseline instead of reusing a stale one. The
    checksum written beside it is checked before every load: a truncated, changed or empty file,
    or one with NaN/inf weights, is reported and trained again. One process at a time trains a
    given baseline; the others wait for it and load it."""
    checks.one_of(dataset, "dataset", DATASETS)
    seed, epochs = checks.integer(seed, "seed", minimum=0), checks.integer(epochs, "epochs", 0)
    x, y = train_data
    config = dict(model=model_name, dataset=dataset, seed=seed, epochs=epochs, data=_hash(x, y),
                  **BASELINE_TRAINING)
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir("baselines") / f"{model_name}-{dataset}-s{seed}-{key}.npz"
    with runner.locked_file(path.with_name(f".{path.name}.lock")):
        model = _load_checked(path)
        if model is None:
            model = models.get_model(model_name, seed=seed)
            train.fit(model, train_data, epochs, seed=seed, progress=progress,
                      desc=f"baseline s{seed}", **BASELINE_TRAINING)
            _save_checked(model, path)
            model = _load_checked(path)  # exactly what later runs (and other processes) load
    return model


def _nonfinite(model) -> list[str]:
    return [n for n, v in model.state_dict().items()
            if v.dtype.kind == "f" and not np.isfinite(v).all()]


def _save_checked(model, path: Path):
    bad = _nonfinite(model)
    if bad:
        raise RuntimeError(f"baseline: training ended with NaN or infinite values in {bad[:3]}; "
                           f"not cached as {path.name} (try a smaller learning rate)")
    nn.save(model, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    atomic_write(path.with_suffix(".sha256"), f"{digest}  {path.name}\n")  # `sha256sum -c` reads it


def _load_checked(path: Path):
    """The cached model, or None when there is none or it is damaged (saying which and why)."""
    if not path.exists():
        return None
    try:
        recorded = path.with_suffix(".sha256").read_text().split()[0]
    except (OSError, UnicodeDecodeError, IndexError):
        recorded = None
    if recorded is None:
        problem = "has no recorded checksum (its write was interrupted, or an old minprune wrote it)"
    elif recorded != hashlib.sha256(path.read_bytes()).hexdigest():
        problem = "does not match its recorded checksum (truncated or changed)"
    else:
        try:
            model = nn.load(path)
        except (ValueError, OSError) as err:
            problem = f"cannot be loaded ({err})"
        else:
            bad = _nonfinite(model)
            if not bad:
                return model
            problem = f"holds NaN or infinite values in {bad[:3]}"
    print(f"baseline cache: {path} {problem}; training it again", file=sys.stderr, flush=True)
    return None


def _baseline_of(model, dataset, seed, epochs, progress=False):
    return baseline(model, dataset, seed, epochs, _data(dataset)[0], progress)


# --- pieces the jobs share ---------------------------------------------------------------------
def scoring_batch(train_data, seed, size=512):
    """The training digits data-driven criteria score on: `size` random ones, fixed by the seed."""
    x, y = train_data
    idx = np.random.default_rng(seed).choice(len(y), size=min(size, len(y)), replace=False)
    return x[idx], y[idx]


def criterion_options(criterion, seed, shape) -> dict:
    """The extra arguments some criteria take: a seed for `random`, the input for `synflow`."""
    return {"random": {"seed": seed}, "synflow": {"input_shape": shape}}.get(criterion, {})


def _criterion_inputs(criterion, train_data, seed) -> dict:
    """Everything a criterion needs besides the model: its options, and a scoring batch if it
    looks at data."""
    inputs = criterion_options(criterion, seed, _shape(train_data[0]))
    known = prune.CRITERIA.get(criterion) or prune.criteria.BLOCK_CRITERIA.get(criterion)
    if getattr(known, "needs_data", False):
        inputs["batch"] = scoring_batch(train_data, seed)
    return inputs


def _shape(x):
    return tuple(int(d) for d in x.shape[1:])


def _measure(model, test):
    acc, loss = train.evaluate(model, test)
    return dict(accuracy=acc, loss=loss, measured_sparsity=prune.sparsity(model),
                compression=prune.compression_ratio(model),
                speedup=prune.theoretical_speedup(model, _shape(test[0])))


def near_zero_fraction(model, threshold=0.01) -> float:
    """Among the surviving (nonzero) prunable weights, the fraction with |w| < threshold."""
    ws = np.concatenate([m.weight.data.ravel() for m in prune.prunable_layers(model).values()])
    alive = ws[ws != 0]
    return float(np.mean(np.abs(alive) < threshold)) if alive.size else float("nan")


def summarize(rows, by=("strategy", "sparsity"), value="accuracy"):
    """Mean, min and max of `value` over seeds for each group."""
    groups = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in by), []).append(float(r[value]))
    return [dict(zip(by, k), mean=float(np.mean(v)), min=float(np.min(v)), max=float(np.max(v)),
                 n=len(v)) for k, v in sorted(groups.items())]


def print_table(rows, cols):
    print("  ".join(f"{c:>14}" for c in cols))
    for r in rows:
        print("  ".join(f"{r[c]:>14.4f}" if isinstance(r.get(c), float) else f"{r.get(c, ''):>14}"
                        for c in cols))


# --- checking arguments before any work --------------------------------------------------------
def _text(value, name) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name}: expected a non-empty string, got {value!r}")
    return value


def _distinct(values, name, check, **bounds) -> list:
    """A non-empty list of checked values, none twice (each value is a grid axis: a repeat would
    run the same job twice)."""
    out = checks.each(values, name, check, **bounds)
    for i, v in enumerate(out):
        if v in out[:i]:
            raise ValueError(f"{name}: {v!r} appears twice in {list(values)!r}")
    return out


def _seeds(seeds) -> list[int]:
    return _distinct(seeds, "seeds", checks.integer, minimum=0)


def _sparsity(value, name) -> float:
    return checks.number(value, name, lo=0, hi=1, hi_open=True)  # 1 would prune every weight


def _sparsities(sparsities) -> list[float]:
    return _distinct(sparsities, "sparsities", _sparsity)


def _settings(model, dataset, epochs, **more) -> dict:
    """The arguments that identify a run (every row carries them), checked."""
    return dict(model=checks.one_of(model, "model", tuple(models.MODELS)),
                dataset=checks.one_of(dataset, "dataset", DATASETS),
                epochs=checks.integer(epochs, "epochs", minimum=1), **more)


def _trial_prune(model, what, sparsity, criterion, **prune_kwargs):
    """Prune an untrained model once with these arguments, so a bad criterion, scope,
    granularity or layer name is reported before any training, with `what` in front."""
    rng = np.random.default_rng(0)
    batch = (rng.standard_normal((4, *INPUT_SHAPE)).astype(np.float32), np.arange(4))
    try:
        prune.prune(models.get_model(model, seed=0), sparsity, criterion=criterion,
                    **prune_kwargs, **_criterion_inputs(criterion, batch, 0))
    except (ValueError, TypeError) as err:
        raise type(err)(f"{what}: {err}") from None


def _last_layer(model) -> list[str]:
    return list(prune.prunable_layers(models.get_model(model, seed=0)))[-1:]


# --- the sweep ---------------------------------------------------------------------------------
def sweep(model="lenet_300_100", dataset="mnist5k", strategies=tuple(STRATEGIES),
          sparsities=(0.5, 0.8, 0.9, 0.95, 0.98), seeds=(0,), epochs=20, finetune_epochs=2,
          exclude=(), out="results/sweep", progress=True, jobs=1, cluster=None, dry_run=False):
    """Every strategy × sparsity × seed: prune the cached baseline, evaluate, fine-tune for
    `finetune_epochs`, evaluate again. `exclude` names layers left dense. Returns the rows (also
    in `<out>/results.csv`); `dry_run=True` only checks the arguments and returns the jobs
    still to run."""
    exclude = [] if exclude in ([], ()) else _distinct(exclude, "exclude", _text)
    settings = _settings(model, dataset, epochs,
                         finetune_epochs=checks.integer(finetune_epochs, "finetune_epochs", 0),
                         exclude=exclude)
    prune.prunable_layers(models.get_model(settings["model"], seed=0), exclude)  # names known?
    seeds, sparsities = _seeds(seeds), _sparsities(sparsities)
    strategies = _distinct(strategies, "strategies", _text)
    for name in strategies:
        _trial_prune(settings["model"], f"strategies: {name!r}", max(sparsities),
                     exclude=settings["exclude"], **parse_strategy(name))
    grid = [dict(seed=seed, strategy=s, sparsity=sp)
            for seed in seeds for s in strategies for sp in sparsities]
    return runner.run(SWEEP, settings, grid, out, progress, jobs, cluster, dry_run)


def _sweep_job(seed, strategy, sparsity, *, model, dataset, epochs, finetune_epochs, exclude,
               progress=False):
    train_data, test = _data(dataset)
    m = _baseline_of(model, dataset, seed, epochs, progress)
    dense_accuracy = train.evaluate(m, test).accuracy
    spec = parse_strategy(strategy)
    spec.setdefault("granularity", "unstructured")
    start = time.perf_counter()
    prune.prune(m, sparsity, exclude=exclude, **spec,
                **_criterion_inputs(spec["criterion"], train_data, seed))
    before = train.evaluate(m, test).accuracy
    if finetune_epochs:
        train.fit(m, train_data, finetune_epochs, seed=seed, progress=False, **FINETUNE_TRAINING)
    return [dict(**spec, accuracy_pruned=before, dense_accuracy=dense_accuracy,
                 **_measure(m, test), seconds=time.perf_counter() - start)]


def _sweep_figures(rows, out: Path, settings):
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


def _save_figure(fig, path):
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write(path, buf.getvalue())


def _curve_figure(rows, group, out: Path, name, title):
    """Accuracy vs sparsity, one line per `group` value (mean over seeds, min–max band)."""
    from . import plots
    ax = plots.plot_accuracy_vs_sparsity(rows, group=group)
    ax.set_title(title, fontsize=10)
    return _save_figure(ax.figure, out / name)


SWEEP = runner.Experiment("sweep", _sweep_job, axes=("seed", "strategy", "sparsity"),
                          data_fingerprint=data_fingerprint, figure=_sweep_figures)


# --- schedules ---------------------------------------------------------------------------------
SCHEDULES = ("one_shot", "iterative", "gradual")


def compare_schedules(model="lenet_300_100", dataset="mnist5k", sparsities=(0.9, 0.95, 0.98),
                      seeds=(0,), epochs=20, finetune_epochs=2, rounds=3, out="results/schedules",
                      progress=True, jobs=1, cluster=None, dry_run=False):
    """One-shot vs iterative vs gradual at the same sparsities, with the same retraining budget:
    one-shot fine-tunes rounds×finetune_epochs once, iterative finetune_epochs per round, gradual
    prunes during rounds×finetune_epochs of training from the dense baseline."""
    settings = _settings(model, dataset, epochs,
                         finetune_epochs=checks.integer(finetune_epochs, "finetune_epochs", 1),
                         rounds=checks.integer(rounds, "rounds", minimum=1))
    grid = [dict(seed=seed, sparsity=sp, schedule=kind) for seed in _seeds(seeds)
            for sp in _sparsities(sparsities) for kind in SCHEDULES]
    return runner.run(SCHEDULES_EXPERIMENT, settings, grid, out, progress, jobs, cluster, dry_run)


def _schedules_job(seed, sparsity, schedule, *, model, dataset, epochs, finetune_epochs, rounds,
                   progress=False):
    train_data, test = _data(dataset)
    m = _baseline_of(model, dataset, seed, epochs, progress)
    budget = rounds * finetune_epochs
    start = time.perf_counter()
    if schedule == "one_shot":
        schedules.one_shot(m, sparsity, finetune=schedules.trainer(
            train_data, budget, seed=seed, **FINETUNE_TRAINING))
    elif schedule == "iterative":
        schedules.iterative(m, sparsity, rounds, finetune=schedules.trainer(
            train_data, finetune_epochs, seed=seed, **FINETUNE_TRAINING))
    else:
        steps = budget * -(-len(train_data[1]) // FINETUNE_TRAINING["batch_size"])
        ramp = schedules.gradual(sparsity, start=0, end=int(steps * 0.75), every=max(1, steps // 40))
        train.fit(m, train_data, budget, seed=seed, callbacks=[ramp], progress=False,
                  **FINETUNE_TRAINING)
    return [dict(retrain_epochs=budget, **_measure(m, test), seconds=time.perf_counter() - start)]


def _schedules_figure(rows, out, settings):
    budget = settings["rounds"] * settings["finetune_epochs"]
    _curve_figure(rows, "schedule", out, "schedules.png", f"{settings['model']}: one-shot vs "
                  f"iterative vs gradual, {budget} epochs of retraining")


SCHEDULES_EXPERIMENT = runner.Experiment("schedules", _schedules_job,
                                         axes=("seed", "sparsity", "schedule"),
                                         data_fingerprint=data_fingerprint,
                                         figure=_schedules_figure)


# --- pruning at initialisation -----------------------------------------------------------------
def compare_at_init(model="lenet_300_100", dataset="mnist5k", sparsities=(0.9, 0.95, 0.98),
                    seeds=(0,), epochs=20, criteria=("snip", "grasp", "synflow", "random"),
                    finetune_epochs=2, out="results/at_init", progress=True, jobs=1, cluster=None,
                    dry_run=False):
    """Prune before training with each criterion and train the sparse net for `epochs`; compare
    with pruning after training (global magnitude on the baseline, then `finetune_epochs`)."""
    settings = _settings(model, dataset, epochs,
                         finetune_epochs=checks.integer(finetune_epochs, "finetune_epochs", 0))
    seeds, sparsities = _seeds(seeds), _sparsities(sparsities)
    criteria = _distinct(criteria, "criteria", _text)
    for c in criteria:
        _trial_prune(settings["model"], f"criteria: {c!r}", max(sparsities), c)
    methods = [f"init_{c}" for c in criteria] + ["after_magnitude"]
    grid = [dict(seed=seed, sparsity=sp, method=m) for seed in seeds for sp in sparsities
            for m in methods]
    return runner.run(AT_INIT, settings, grid, out, progress, jobs, cluster, dry_run)


def _at_init_job(seed, sparsity, method, *, model, dataset, epochs, finetune_epochs,
                 progress=False):
    train_data, test = _data(dataset)
    start = time.perf_counter()
    if method == "after_magnitude":
        m = _baseline_of(model, dataset, seed, epochs, progress)
        prune.prune(m, sparsity, criterion="magnitude", scope="global")
        train.fit(m, train_data, finetune_epochs, seed=seed, progress=False, **FINETUNE_TRAINING)
    else:
        criterion = method.removeprefix("init_")
        m = models.get_model(model, seed=seed)
        schedules.at_init(m, sparsity, criterion=criterion,
                          train=schedules.trainer(train_data, epochs, seed=seed, **BASELINE_TRAINING),
                          **_criterion_inputs(criterion, train_data, seed))
    return [dict(**_measure(m, test), seconds=time.perf_counter() - start)]


def _at_init_figure(rows, out, settings):
    _curve_figure(rows, "method", out, "at_init.png",
                  f"{settings['model']}: pruning before training vs after")


# the figures are named functions, not lambdas: `jobs=N` pickles the experiment for its workers
AT_INIT = runner.Experiment("at_init", _at_init_job, axes=("seed", "sparsity", "method"),
                            data_fingerprint=data_fingerprint, figure=_at_init_figure)


# --- weight distributions: fine-tuned vs trained from scratch ----------------------------------
CASES = {  # case: (pruning, retraining)
    "unpruned": (None, None),
    "unstructured + fine-tune": ("unstructured", "finetune"),
    "unstructured from scratch": ("unstructured", "scratch"),
    "structured + fine-tune": ("structured", "finetune"),
    "structured from scratch": ("structured", "scratch"),
}


def distribution(model="lenet5", dataset="mnist5k", seeds=(0,), epochs=20, finetune_epochs=5,
                 unstructured_sparsity=0.9, filter_sparsity=0.5, threshold=0.01,
                 out="results/distribution", progress=True, jobs=1, cluster=None, dry_run=False):
    """The note's section 4 (after Liu et al. 2019, Fig. 5): weight histograms of the trained
    model, of unstructured (global magnitude) and structured (layerwise filter, the classifier
    kept) pruning + fine-tuning, and of the same pruned networks re-initialised and trained from
    scratch for `epochs`. Also the fraction of surviving weights with |w| < threshold."""
    settings = _settings(model, dataset, epochs,
                         finetune_epochs=checks.integer(finetune_epochs, "finetune_epochs", 0),
                         unstructured_sparsity=_sparsity(unstructured_sparsity,
                                                         "unstructured_sparsity"),
                         filter_sparsity=_sparsity(filter_sparsity, "filter_sparsity"),
                         threshold=checks.number(threshold, "threshold", lo=0, lo_open=True))
    _trial_prune(settings["model"], "filter_sparsity", settings["filter_sparsity"], "magnitude",
                 granularity="filter", scope="layerwise", exclude=_last_layer(settings["model"]))
    grid = [dict(seed=seed, case=case) for seed in _seeds(seeds) for case in CASES]
    return runner.run(DISTRIBUTION, settings, grid, out, progress, jobs, cluster, dry_run)


def _weights_file(seed, case) -> str:
    return f"weights/s{seed}-{re.sub(r'[^a-z]+', '_', case)}.npy"


def _distribution_job(seed, case, *, model, dataset, epochs, finetune_epochs,
                      unstructured_sparsity, filter_sparsity, threshold, progress=False):
    train_data, test = _data(dataset)
    m = _baseline_of(model, dataset, seed, epochs, progress)
    pruning, retraining = CASES[case]
    if pruning == "unstructured":
        prune.prune(m, unstructured_sparsity, criterion="magnitude", scope="global")
    elif pruning == "structured":
        prune.prune(m, filter_sparsity, criterion="magnitude", granularity="filter",
                    scope="layerwise", exclude=_last_layer(model))
    if retraining == "finetune":
        schedules.retrain(m, "finetune", train=schedules.trainer(
            train_data, finetune_epochs, seed=seed, **FINETUNE_TRAINING))
    elif retraining == "scratch":
        schedules.retrain(m, "scratch", seed=seed + 100, train=schedules.trainer(
            train_data, epochs, seed=seed, **BASELINE_TRAINING))
    weights = np.concatenate([layer.weight.data.ravel()
                              for layer in prune.prunable_layers(m).values()])
    buf = io.BytesIO()
    np.save(buf, weights)
    row = dict(near_zero=near_zero_fraction(m, threshold), **_measure(m, test))
    return [row], {_weights_file(seed, case): buf.getvalue()}


def _distribution_figure(rows, out, settings):
    """One histogram per case, of the first seed's models."""
    import matplotlib.pyplot as plt

    from . import plots
    seed = rows[0]["seed"]
    panels = {}
    for case in CASES:
        try:
            panels[case] = np.load(out / _weights_file(seed, case), allow_pickle=False)
        except (OSError, ValueError) as err:
            print(f"distribution: no histogram of {case!r} ({err})", file=sys.stderr)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3), squeeze=False)
    for ax, (case, weights) in zip(axes[0], panels.items()):
        plots.plot_weight_histogram(weights, ax=ax)
        ax.set_title(case, fontsize=9)
    _save_figure(fig, out / "weight_distributions.png")


DISTRIBUTION = runner.Experiment("distribution", _distribution_job, axes=("seed", "case"),
                                 data_fingerprint=data_fingerprint, figure=_distribution_figure)


# --- the lottery ticket ------------------------------------------------------------------------
def lottery_experiment(model="lenet_300_100", dataset="mnist5k", seeds=(0,), epochs=10,
                       sparsities=(0.5, 0.8, 0.9, 0.95, 0.98), keep_per_round=0.5, rewind_to=0,
                       out="results/lottery", progress=True, jobs=1, cluster=None, dry_run=False):
    """Winning ticket vs random re-initialisation across sparsities. Each sparsity is reached
    from the dense net by iterative magnitude pruning with rewinding to step `rewind_to`, keeping
    about `keep_per_round` of the survivors per round (rounds = ⌈log(1−s) / log(keep_per_round)⌉),
    each round `epochs` of training. Two rows per sparsity and seed: kind "ticket" and "reinit"."""
    settings = _settings(model, dataset, epochs, keep_per_round=checks.number(
        keep_per_round, "keep_per_round", lo=0, hi=1, lo_open=True, hi_open=True))
    steps = settings["epochs"] * -(-len(_data(dataset)[0][1]) // BASELINE_TRAINING["batch_size"])
    settings["rewind_to"] = checks.integer(rewind_to, "rewind_to", 0, steps)
    grid = [dict(seed=seed, sparsity=sp) for seed in _seeds(seeds) for sp in _sparsities(sparsities)]
    return runner.run(LOTTERY, settings, grid, out, progress, jobs, cluster, dry_run)


def _lottery_job(seed, sparsity, *, model, dataset, epochs, keep_per_round, rewind_to,
                 progress=False):
    train_data, test = _data(dataset)
    m = models.get_model(model, seed=seed)
    rounds = max(1, math.ceil(math.log(1 - sparsity) / math.log(keep_per_round) - 1e-9))
    history = schedules.lottery(m, sparsity, rounds, seed=seed, rewind_to=rewind_to, val=test,
                                train=schedules.trainer(train_data, epochs, seed=seed,
                                                        **BASELINE_TRAINING))
    return [dict(kind=h["kind"], rounds=rounds, accuracy=h["accuracy"], loss=h["loss"],
                 measured_sparsity=h["sparsity"]) for h in history[-2:]]


def _lottery_figure(rows, out, settings):
    _curve_figure(rows, "kind", out, "lottery.png",
                  f"{settings['model']}: winning ticket vs random re-initialisation")


LOTTERY = runner.Experiment("lottery", _lottery_job, axes=("seed", "sparsity"),
                            each=("kind", ("ticket", "reinit")), data_fingerprint=data_fingerprint,
                            figure=_lottery_figure)


# --- sensitivity -------------------------------------------------------------------------------
def sensitivity(model="lenet5", dataset="mnist5k", seeds=(0,), epochs=20,
                sparsities=(0.25, 0.5, 0.75, 0.9, 0.95), criterion="magnitude",
                granularity="unstructured", out="results/sensitivity", progress=True, jobs=1,
                cluster=None, dry_run=False):
    """Prune each layer alone at each sparsity (no fine-tuning) and plot accuracy per layer,
    averaged over seeds (`prune.sensitivity_scan` one job at a time)."""
    settings = _settings(model, dataset, epochs, criterion=_text(criterion, "criterion"),
                         granularity=_text(granularity, "granularity"))
    seeds, sparsities = _seeds(seeds), _sparsities(sparsities)
    layers = list(prune.prunable_layers(models.get_model(settings["model"], seed=0)))
    for layer in layers:
        _trial_prune(settings["model"], f"layer {layer!r}", None, criterion,
                     granularity=granularity, scope={layer: max(sparsities)})
    grid = [dict(seed=seed, layer=layer, sparsity=sp) for seed in seeds for layer in layers
            for sp in sparsities]
    return runner.run(SENSITIVITY, settings, grid, out, progress, jobs, cluster, dry_run)


def _sensitivity_job(seed, layer, sparsity, *, model, dataset, epochs, criterion, granularity,
                     progress=False):
    train_data, test = _data(dataset)
    m = _baseline_of(model, dataset, seed, epochs, progress)
    dense_accuracy = train.evaluate(m, test).accuracy
    prune.prune(m, scope={layer: sparsity}, criterion=criterion, granularity=granularity,
                **_criterion_inputs(criterion, train_data, seed))
    return [dict(accuracy=train.evaluate(m, test).accuracy, baseline=dense_accuracy)]


def scan_of(rows) -> dict:
    """Sensitivity rows as `prune.sensitivity_scan` returns a scan, averaged over seeds."""
    accuracies = {}
    for r in rows:
        accuracies.setdefault(r["layer"], {}).setdefault(r["sparsity"], []).append(r["accuracy"])
    sparsities = sorted({r["sparsity"] for r in rows})
    return {"baseline": float(np.mean([r["baseline"] for r in rows])), "sparsities": sparsities,
            "layers": {layer: [float(np.mean(by[s])) for s in sparsities]
                       for layer, by in accuracies.items()}}


def _sensitivity_figure(rows, out, settings):
    from . import plots
    _save_figure(plots.plot_sensitivity(scan_of(rows)).figure, out / "sensitivity.png")


SENSITIVITY = runner.Experiment("sensitivity", _sensitivity_job, axes=("seed", "layer", "sparsity"),
                                data_fingerprint=data_fingerprint, figure=_sensitivity_figure)


# --- learned structured sparsity ---------------------------------------------------------------
SSL_PENALTIES = ("filter", "channel", "kernel", "filter_shape", "layer", "slimming")


def ssl(model="lenet5", dataset="mnist5k", granularity="filter_shape",
        strengths=(0.0, 0.003, 0.01, 0.03), seeds=(0,), epochs=20, finetune_epochs=2, tol=1e-3,
        out="results/ssl", progress=True, jobs=1, cluster=None, dry_run=False):
    """Learned structured sparsity (Wen et al. 2016; slimming: Liu et al. 2017) against pruning
    after training, at the same structure. For each strength, train from scratch for `epochs`
    with `prune.group_lasso(model, granularity, strength)` (or `prune.slimming` when
    granularity="slimming"), prune the groups whose norm went to ≤ `tol`
    (`regularizers.prune_zeroed`), and fine-tune `finetune_epochs`; then prune the dense
    baseline to the same groups per layer by magnitude (the groups' L2 norm; |γ| for slimming)
    and fine-tune it the same. Strength 0 is the baseline itself. Two rows per job: method
    "group_lasso" (trained with the penalty, slimming's too) and "prune_after"."""
    settings = _settings(model, dataset, epochs,
                         granularity=checks.one_of(granularity, "granularity", SSL_PENALTIES),
                         finetune_epochs=checks.integer(finetune_epochs, "finetune_epochs", 0),
                         tol=checks.number(tol, "tol", lo=0))
    _penalty(models.get_model(settings["model"], seed=0), settings["granularity"], 0.0)
    strengths = _distinct(strengths, "strengths", checks.number, lo=0)
    grid = [dict(seed=seed, strength=s) for seed in _seeds(seeds) for s in strengths]
    return runner.run(SSL, settings, grid, out, progress, jobs, cluster, dry_run)


def _penalty(model, granularity, strength):
    if granularity == "slimming":
        return prune.slimming(model, strength)
    return prune.group_lasso(model, granularity, strength)


def _pruned_share(model, granularity) -> tuple[float, dict]:
    """(share of the penalised groups pruned, {layer or block: fraction of its groups pruned})."""
    if granularity == "layer":
        blocks = prune.regularizers.residual_blocks(model)
        removed = {n: float(all(not p.data.any() for m in b.residual_branch.values()
                                for p in m.parameters())) for n, b in blocks.items()}
        return float(np.mean(list(removed.values()))), removed
    view = prune.structures.parse("filter" if granularity == "slimming" else granularity)
    layers = prune.prunable_layers(model)
    if granularity in ("kernel", "filter_shape"):
        layers = {n: m for n, m in layers.items() if isinstance(m, nn.Conv2d)}
    counts = {n: (int((~view.group_alive(m.weight.mask)).sum()) if m.weight.mask is not None
                  else 0, view.group_alive(np.ones(m.weight.shape, bool)).size)
              for n, m in layers.items()}
    share = sum(c for c, _ in counts.values()) / sum(t for _, t in counts.values())
    return share, {n: c / t for n, (c, t) in counts.items() if c}


def _prune_like(m, granularity, fractions):
    """Prune `m` after training to the same pruned fraction per layer (block) by magnitude."""
    if granularity == "layer":
        prune.prune(m, float(np.mean(list(fractions.values()))) if fractions else 0.0,
                    granularity="layer")
    elif fractions:
        criterion = "bn_scale" if granularity == "slimming" else "magnitude"
        gran = "filter" if granularity == "slimming" else granularity
        prune.prune(m, criterion=criterion, granularity=gran, scope=fractions,
                    **({} if criterion == "bn_scale" else dict(reduce="l2")))


def _ssl_job(seed, strength, *, model, dataset, epochs, granularity, finetune_epochs, tol,
             progress=False):
    train_data, test = _data(dataset)
    dense = _baseline_of(model, dataset, seed, epochs, progress)
    dense_accuracy = train.evaluate(dense, test).accuracy
    start = time.perf_counter()
    if strength == 0:
        m = _baseline_of(model, dataset, seed, epochs)  # a fresh copy from the cache
    else:
        m = models.get_model(model, seed=seed)
        train.fit(m, train_data, epochs, seed=seed, progress=False,
                  regularizer=_penalty(m, granularity, strength), **BASELINE_TRAINING)
    reg = _penalty(m, granularity, strength)
    zero = prune.regularizers.zeroed_groups(m, reg, tol)
    share_zeroed = float(np.mean(np.concatenate([np.ravel(z) for z in zero.values()])))
    trained = train.evaluate(m, test).accuracy
    prune.regularizers.prune_zeroed(m, reg, tol)
    share, fractions = _pruned_share(m, granularity)
    rows = []
    for method, net in (("group_lasso", m), ("prune_after", dense)):
        if method == "prune_after":
            _prune_like(net, granularity, fractions)
            trained = dense_accuracy
        pruned = train.evaluate(net, test).accuracy
        if finetune_epochs:
            train.fit(net, train_data, finetune_epochs, seed=seed, progress=False,
                      **FINETUNE_TRAINING)
        rows.append(dict(method=method, share_zeroed=share_zeroed,
                         share_pruned=_pruned_share(net, granularity)[0],
                         accuracy_trained=trained, accuracy_pruned=pruned,
                         dense_accuracy=dense_accuracy, **_measure(net, test),
                         seconds=time.perf_counter() - start))
    return rows


def _ssl_figure(rows, out, settings):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    lasso = [r for r in rows if r["method"] == "group_lasso"]
    strengths = sorted({float(r["strength"]) for r in lasso})
    shares = [[float(r["share_zeroed"]) for r in lasso if float(r["strength"]) == s]
              for s in strengths]
    mean = np.array([np.mean(v) for v in shares])
    axes[0].errorbar(strengths, mean, yerr=[mean - [min(v) for v in shares],
                                            [max(v) for v in shares] - mean],
                     marker="o", capsize=3)
    axes[0].set_xscale("symlog", linthresh=min([s for s in strengths if s > 0], default=1e-3))
    axes[0].set(xlabel="penalty strength λ", ylim=(-0.02, 1.02),
                ylabel=f"share of groups with norm ≤ {settings['tol']:g}")
    axes[0].set_title(f"{settings['granularity']} groups driven to zero (mean, min–max over "
                      "seeds)", fontsize=10)
    for ax, x in zip(axes[1:], ("compression", "speedup")):
        _ssl_panel(ax, rows, strengths, x)
    axes[1].set_xlabel("compression (prunable weights / nonzero)")
    axes[2].set_xlabel("theoretical speedup (multiply-adds, dense / left)")
    axes[1].set_ylabel("test accuracy (mean over seeds)")
    fig.suptitle(f"{settings['model']}: learned {settings['granularity']} sparsity vs pruning "
                 f"the baseline after training at the same groups per layer; filled: after "
                 f"{settings['finetune_epochs']} epochs of fine-tuning, hollow: before", fontsize=10)
    _save_figure(fig, out / "ssl.png")


def _ssl_panel(ax, rows, strengths, x):
    for method, color in (("group_lasso", "C0"), ("prune_after", "C1")):
        points = []
        for s in strengths:
            at = [r for r in rows if r["method"] == method and float(r["strength"]) == s]
            points.append([np.mean([float(r[k]) for r in at])
                           for k in (x, "accuracy", "accuracy_pruned")])
        xs, tuned, before = np.array(points).T
        label = "trained with the penalty, then pruned" if method == "group_lasso" else \
            "pruned after training"
        ax.plot(xs, tuned, "o-", color=color, label=label)
        ax.plot(xs, before, "o--", color=color, markerfacecolor="none", alpha=0.7)
        if method == "group_lasso":
            for s, xi, yi in zip(strengths, xs, tuned):
                ax.annotate(f"λ={s:g}", (xi, yi), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
    ax.legend(fontsize=8)


SSL = runner.Experiment("ssl", _ssl_job, axes=("seed", "strength"),
                        each=("method", ("group_lasso", "prune_after")),
                        data_fingerprint=data_fingerprint, figure=_ssl_figure)
