"""Checker of lesson 16 — the capstone: prune LeNet-5 as far as you can
(`lessons/16_capstone_prune_lenet5.ipynb`).

The student writes `prune_pipeline(model, train_data) -> model`: it receives a trained dense LeNet-5
and the training digits `(x, y)`, may use anything in minprune, and returns the pruned model. The
checker builds the dense baseline itself (trained once, then cached), hands the pipeline a deep copy
of it, counts the training it does, checks the returned model and scores it:

    points fraction = 0                                  if accuracy < MIN_ACCURACY (0.97)
                    = 0                                  if it trained beyond its budget
                    = min(1, log(compression) / log(TARGET_COMPRESSION))   otherwise (target 50×)

where compression is all parameters / nonzero parameters (`mp.prune.compression_ratio`). The
self-check (`variant=None`) trains the baseline on the training digits minus a few hundred
validation digits and evaluates on those; a hidden variant (the autograder) trains it on every
training digit and evaluates on the embedded test digits, which the pipeline never sees.

**The budget** is training: the pipeline may push at most `BUDGET_EPOCHS` epochs' worth of digits
through the network with gradients on. The checker counts every example that goes through a LeNet-5's
forward pass (`model(x)`, on the given model or any copy of it) while gradients are enabled: training
steps, and the forward passes of gradient-based criteria. Forward passes without gradients
(`mp.train.evaluate`, activation statistics) are not counted. A budget in epochs is the same on a
laptop and on a loaded grading server, so the leaderboard does not depend on the machine. The
wall-clock limit is the autograder's hard stop, the exercise's `timeout`, which leaves room for
training the baseline when the cache is cold.

Nothing is blocked: the capstone may use the whole library.
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import nn
from ..data import fast_mode, load_mnist5k, subset
from .core import Score, exercise, fail, require_callable

MIN_ACCURACY = 0.97          # below this accuracy a pipeline scores 0
TARGET_COMPRESSION = 50.0    # compression that earns every point (log scale from 1×)
BUDGET_EPOCHS = 20           # epochs' worth of digits the pipeline may train on (= the baseline's)
BASELINE_SEED = 0            # the dense LeNet-5 every student starts from
SPLIT_SEED = 14              # which training digits become the self-check's validation digits


@dataclass(frozen=True)
class Setup:
    """Data sizes and the baseline's training, per mode (MINPRUNE_FAST=1 runs a toy version)."""
    train_digits: int | None       # training digits used (None: all 4,000)
    validation_digits: int         # carved from them for the self-check
    test_digits: int | None        # held-out digits of a hidden variant (None: all 1,000)
    baseline_epochs: int


FULL = Setup(train_digits=None, validation_digits=500, test_digits=None, baseline_epochs=20)
FAST = Setup(train_digits=800, validation_digits=200, test_digits=300, baseline_epochs=6)


def setup() -> Setup:
    """The setup of this run: `FAST` with MINPRUNE_FAST=1, else `FULL`."""
    return FAST if fast_mode() else FULL


def points_fraction(accuracy: float, compression: float) -> float:
    """The capstone's score: 0 below the accuracy bar, else log(compression) / log(target), in
    [0, 1]."""
    if accuracy < MIN_ACCURACY or not compression > 1:
        return 0.0
    return float(min(1.0, math.log(compression) / math.log(TARGET_COMPRESSION)))


def _validation_split(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A boolean mask choosing `n` validation digits, spread evenly over the classes."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    chosen = np.zeros(len(y), dtype=bool)
    for i, c in enumerate(classes):
        where = np.flatnonzero(y == c)
        take = n // len(classes) + (1 if i < n % len(classes) else 0)
        chosen[rng.choice(where, size=take, replace=False)] = True
    return chosen


def capstone_data(variant=None):
    """`(train, evaluation)`, each an `(x, y)` pair: the digits the pipeline gets and the digits
    its model is scored on. Self-check (`variant=None`): the training digits minus the validation
    digits, and the validation digits. Hidden variant: every training digit, and the test digits."""
    s = setup()
    (x, y), (xt, yt) = load_mnist5k()
    if s.train_digits is not None:
        x, y = subset(x, y, s.train_digits, seed=0)
    if variant is None:
        val = _validation_split(y, s.validation_digits, SPLIT_SEED)
        return (x[~val], y[~val]), (x[val], y[val])
    if s.test_digits is not None:
        xt, yt = subset(xt, yt, s.test_digits, seed=0)
    return (x, y), (xt, yt)


@contextlib.contextmanager
def _exclusive(path: Path):
    """Hold an exclusive lock on `path` (POSIX): a second process building the same baseline
    waits, then loads it from the cache instead of training it again. Where file locks are not
    available (Windows) both would train; the cache stays correct, since checkpoints are written
    atomically."""
    try:
        import fcntl
    except ImportError:   # pragma: no cover - Windows
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def baseline(variant=None):
    """The trained dense LeNet-5 of the self-check (`variant=None`) or of a hidden variant: trained
    on `capstone_data(variant)[0]` with the library's baseline recipe, once; later calls (and other
    processes: the autograder grading a class) load it from the cache (`$MINPRUNE_CACHE`, default
    `~/.cache/minprune`). Returns a fresh model on every call."""
    from .. import experiments
    train, _ = capstone_data(variant)
    lock = experiments.cache_dir() / "baselines" / "capstone.lock"
    with _exclusive(lock):
        return experiments.baseline("lenet5", "mnist5k", BASELINE_SEED, setup().baseline_epochs,
                                    train, progress=not fast_mode())


@contextlib.contextmanager
def _counting_examples():
    """Count the examples that go through any LeNet-5's forward pass with gradients enabled (the
    pipeline's training, in epochs once divided by the training set's size)."""
    from .. import autograd, models
    counter = {"examples": 0}
    original = models.Classifier.forward

    def forward(self, x):
        if autograd.is_grad_enabled():
            counter["examples"] += int(x.shape[0])
        return original(self, x)

    models.Classifier.forward = forward
    try:
        yield counter
    finally:
        models.Classifier.forward = original


def _check_model(out, reference) -> None:
    """Fail with a hint unless `out` is a LeNet-5 like `reference` whose masks are respected."""
    if out is None:
        fail("prune_pipeline returned None.", "end your pipeline with `return model`.")
    if not isinstance(out, nn.Module):
        fail(f"prune_pipeline returned a {type(out).__name__}, not a model.",
             "return the pruned model itself, not its masks, its history or its accuracy.")
    want = {n: p.shape for n, p in reference.named_parameters()}
    got = {n: p.shape for n, p in out.named_parameters()}
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    if missing or extra:
        fail(f"the returned model is not the LeNet-5 you were given: parameters missing {missing}, "
             f"unexpected {extra}.",
             "prune the model you receive (or a copy of it) and return it; do not build another "
             "network.")
    for name, shape in want.items():
        if got[name] != shape:
            fail(f"{name} has shape {got[name]}; the LeNet-5 you were given has {shape}.",
                 "return the masked model, not a physically smaller (compacted) one: the score "
                 "counts nonzero parameters, so cutting the zeros out gains nothing here.")
    kinds = [type(m).__name__ for _, m in reference.named_modules()]
    if [type(m).__name__ for _, m in out.named_modules()] != kinds:
        fail("the returned model's layers differ from LeNet-5's.",
             "return the LeNet-5 you were given, pruned; do not add or swap layers.")
    for name, p in out.named_parameters():
        if not np.all(np.isfinite(p.data)):
            fail(f"{name} holds NaN or infinite values.",
                 "training diverged: lower the learning rate.")
        if p.mask is None:
            continue
        mask = np.asarray(p.mask)
        if mask.shape != p.shape or mask.dtype != bool:
            fail(f"{name}.mask has shape {mask.shape} and dtype {mask.dtype}; a mask is a boolean "
                 f"array of the weight's shape {p.shape}.",
                 "let minprune install masks (pruning does), or set them with `p.set_mask(...)`.")
        alive = np.count_nonzero(p.data[~mask])
        if alive:
            fail(f"{name}: {alive} weights are pruned by its mask but not 0.",
                 "a pruned weight must be exactly 0. After changing `.data` by hand, multiply it by "
                 "the mask again (`p.data *= p.mask`); pruning, `fit` and the optimizers keep "
                 "pruned weights at 0 for you.")


@exercise("16.1", blocks=[], variants=1, timeout=600)
def check_capstone(fn, variant=None) -> Score:
    """`fn(model, train_data) -> model`: a pruning pipeline for a trained LeNet-5.

    Returns `Score(fraction, detail)`; `detail` holds accuracy, compression, sparsity, seconds,
    epochs (training examples / training digits), budget_epochs, over_budget, evaluated_on and
    digits. Raises AssertionError only for an invalid answer (not a function, not a LeNet-5, masked
    weights that are not 0); a low accuracy or an over-budget pipeline scores 0.
    """
    from ..prune.metrics import compression_ratio, sparsity
    from ..train import evaluate
    require_callable(fn, "fn")
    train, held_out = capstone_data(variant)
    dense = baseline(variant)
    given = copy.deepcopy(dense)
    with _counting_examples() as counted:
        start = time.perf_counter()
        out = fn(given, (train[0].copy(), train[1].copy()))
        seconds = time.perf_counter() - start
    _check_model(out, dense)
    accuracy = float(evaluate(out, held_out).accuracy)
    compression = float(compression_ratio(out))
    epochs = counted["examples"] / len(train[1])
    over = epochs > BUDGET_EPOCHS + 1e-9
    fraction = 0.0 if over else points_fraction(accuracy, compression)
    where = "validation" if variant is None else "test"
    detail = dict(accuracy=accuracy, compression=compression, sparsity=float(sparsity(out)),
                  seconds=seconds, epochs=epochs, budget_epochs=BUDGET_EPOCHS, over_budget=over,
                  evaluated_on=where, digits=len(held_out[1]))
    print(f"accuracy {accuracy:.2%} on {len(held_out[1]):,} {where} digits "
          f"(bar {MIN_ACCURACY:.0%}) · compression {compression:.1f}× "
          f"(sparsity {detail['sparsity']:.1%}) · trained {epochs:.2f} of {BUDGET_EPOCHS} epochs "
          f"in {seconds:.0f} s")
    if over:
        why = f"over the budget of {BUDGET_EPOCHS} epochs: 0 points"
    elif accuracy < MIN_ACCURACY:
        why = f"below the {MIN_ACCURACY:.0%} bar: 0 points"
    else:
        why = (f"log {compression:.1f} / log {TARGET_COMPRESSION:g} = "
               f"{math.log(compression) / math.log(TARGET_COMPRESSION):.3f}, capped at 1")
    print(f"points fraction {fraction:.3f} ({why})")
    return Score(fraction, detail)
