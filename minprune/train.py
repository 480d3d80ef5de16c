"""fit / evaluate: the training loop, with a progress bar, a history and optional checkpoints.

Callbacks are objects with any of `on_train_begin(state)`, `on_step_end(state)`,
`on_epoch_end(state)`; `state` carries the model, optimizer, step, epoch and history. The gradual
pruning schedule is such a callback: it prunes a little more every few steps while training runs.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from . import checks
from . import progress as _progress
from .autograd import no_grad
from .data import DataLoader, random_shift
from .nn import functional as fn
from .nn import save
from .optim import LRSchedule, Optimizer, make_optimizer
from .tensor import Tensor


class Evaluation(NamedTuple):
    accuracy: float
    loss: float


@dataclass
class TrainState:
    model: object
    optimizer: Optimizer
    epoch: int = 0
    step: int = 0
    total_steps: int = 0
    loss: float = float("nan")
    history: list = field(default_factory=list)


def _as_arrays(data, name):
    """(x, y) arrays of `data` (a pair or a DataLoader), refusing empty data: a mean over no
    examples is NaN, and an accuracy of 0.0 from no examples is a silent wrong number."""
    if isinstance(data, DataLoader):
        x, y = data.x, data.y
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = np.asarray(data[0]), np.asarray(data[1])
        if x.ndim == 0 or y.ndim == 0 or len(x) != len(y):
            raise ValueError(f"{name}: x has {len(x) if x.ndim else 'no'} examples but y has "
                             f"{len(y) if y.ndim else 'none'}")
    else:
        raise TypeError(f"{name}: expected an (x, y) pair of arrays or a DataLoader, got "
                        f"{type(data).__name__}")
    if len(x) == 0:
        raise ValueError(f"{name}: no examples (x has shape {x.shape}); pass at least one")
    return x, y


def evaluate(model, data, batch_size: int = 500) -> Evaluation:
    """Accuracy and mean cross-entropy of `model` (put in eval mode, then restored) on `data`."""
    x, y = _as_arrays(data, "data")
    batch_size = checks.integer(batch_size, "batch_size", minimum=1)
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    try:
        with no_grad():
            for i in range(0, len(x), batch_size):
                logits = model(Tensor(x[i:i + batch_size]))
                yb = y[i:i + batch_size]
                loss_sum += fn.cross_entropy(logits, yb).item() * len(yb)
                correct += int((logits.data.argmax(axis=1) == yb).sum())
    finally:
        model.train(was_training)
    return Evaluation(correct / len(x), loss_sum / len(x))


def _call(callbacks, hook, state):
    for cb in callbacks:
        fn_ = getattr(cb, hook, None)
        if fn_ is not None:
            fn_(state)


NONFINITE = ("raise", "stop")


def _optimizer(model, optimizer, lr, weight_decay):
    """The optimizer `fit` uses: a named one built here, or the caller's, which already has its
    own learning rate and weight decay (so passing those too would be ignored: an error)."""
    weight_decay = checks.number(weight_decay, "weight_decay", lo=0)
    if not isinstance(optimizer, Optimizer):
        return make_optimizer(optimizer, model.parameters(), 0.05 if lr is None else
                              checks.number(lr, "lr", lo=0, lo_open=True), weight_decay=weight_decay)
    if lr is not None or weight_decay:
        raise ValueError(f"lr/weight_decay: {optimizer!r} already has its learning rate and weight "
                         f"decay, so lr={lr!r}, weight_decay={weight_decay!r} would be ignored; "
                         "set them on the optimizer")
    ours = {id(p) for p in model.parameters()}
    if not any(id(p) in ours for p in optimizer.params):
        raise ValueError("optimizer: it updates none of this model's parameters (made for "
                         "another model, or a copy of it?)")
    return optimizer


def _penalty(regularizer, model) -> Tensor:
    penalty = regularizer(model)
    if not isinstance(penalty, Tensor) or penalty.size != 1:
        raise TypeError(f"regularizer: must return a scalar Tensor (built from autograd ops), got "
                        f"{type(penalty).__name__} of shape {getattr(penalty, 'shape', None)}")
    return penalty


def fit(model, train, epochs: int = 1, optimizer="sgd", lr: float | None = None,
        batch_size: int | None = None, schedule: str | None = "cosine", weight_decay: float = 0.0,
        val=None, callbacks=(), augment: int = 0, seed: int = 0, checkpoint=None,
        progress: bool = True, desc: str = "train", on_nonfinite: str = "raise",
        regularizer=None) -> list[dict]:
    """Train `model` on `train` ((x, y) arrays or a DataLoader) for `epochs` epochs.

    optimizer: "sgd" (momentum 0.9), "adam", or an Optimizer (which brings its own lr and weight
    decay); lr: default 0.05; schedule: "cosine", "step", "constant" or None (per-step learning
    rate, see `optim.LRSchedule`). batch_size: default 64 (a DataLoader has its own). `val` (x, y)
    is evaluated after every epoch. `augment=k` shifts each training image by up to k pixels
    (`data.random_shift`). Returns the history: one dict per epoch. Same seed → same result.

    A NaN or infinite training loss means training diverged (usually: the learning rate is too
    high). `on_nonfinite="raise"` (the default) raises FloatingPointError saying where; "stop"
    warns, stops training there and returns the history, whose last row carries `"stopped"` with
    the reason (the model keeps the weights that produced the bad loss). Either way no update is
    made from a non-finite loss, and no NaN is recorded as if it were a result.

    `regularizer(model) -> scalar Tensor` (e.g. `prune.group_lasso`, `prune.slimming`) is added to
    the cross-entropy being minimised; each history row then records its mean as "penalty"
    ("loss" stays the cross-entropy).
    """
    epochs = checks.integer(epochs, "epochs", minimum=0)
    if schedule is not None:
        checks.one_of(schedule, "schedule", LRSchedule.KINDS)
    augment = checks.integer(augment, "augment", minimum=0)
    seed = checks.integer(seed, "seed", minimum=0)
    progress = checks.boolean(progress, "progress")
    checks.one_of(on_nonfinite, "on_nonfinite", NONFINITE)
    if regularizer is not None and not callable(regularizer):
        raise TypeError(f"regularizer: expected a callable regularizer(model) -> Tensor, got "
                        f"{type(regularizer).__name__}")
    x, y = _as_arrays(train, "train")
    if val is not None:
        _as_arrays(val, "val")
    if isinstance(train, DataLoader):
        if batch_size is not None:
            raise ValueError(f"batch_size: {batch_size!r} would be ignored: the DataLoader given as "
                             f"train has its own batch_size ({train.batch_size})")
        loader = train
        if len(loader) == 0:
            raise ValueError(f"train: the DataLoader yields no batch ({len(x)} examples, batch_size "
                             f"{loader.batch_size}, drop_last=True)")
    else:
        batch_size = 64 if batch_size is None else checks.integer(batch_size, "batch_size", minimum=1)
        loader = DataLoader(x, y, batch_size, shuffle=True, seed=seed)
    opt = _optimizer(model, optimizer, lr, weight_decay)
    total = epochs * len(loader)
    sched = None
    if schedule is not None:
        sched = LRSchedule(opt, schedule, total_steps=max(total, 1),
                           step_size=max(total // 3, 1), gamma=0.1)
    aug_rng = np.random.default_rng([seed, 1])  # its own stream: augmenting never shifts shuffling
    state = TrainState(model, opt, total_steps=total)
    model.train()
    _call(callbacks, "on_train_begin", state)
    bar = _progress.bar(total, desc, progress)
    try:
        for epoch in range(epochs):
            state.epoch, start, losses, correct = epoch, time.perf_counter(), [], 0
            epoch_lr = opt.lr  # the rate this epoch started with (the schedule lowers it per step)
            stopped, penalties = None, []
            for xb, yb in loader:
                if augment:
                    xb = random_shift(xb, augment, aug_rng)
                logits = model(Tensor(xb))
                loss = fn.cross_entropy(logits, yb)
                losses.append(loss.item())
                if regularizer is not None:  # minimise cross-entropy + penalty, recorded apart
                    penalty = _penalty(regularizer, model)
                    penalties.append(penalty.item())
                    loss = loss + penalty
                state.loss = loss.item()
                if not math.isfinite(state.loss):
                    stopped = (f"the training loss became {state.loss} at epoch {epoch + 1}, step "
                               f"{state.step + 1} (lr {opt.lr:g}): training diverged; try a lower lr")
                    if on_nonfinite == "raise":
                        raise FloatingPointError(f"fit: {stopped}, or on_nonfinite='stop' to keep "
                                                 "the history up to here")
                    warnings.warn(f"fit: {stopped}; stopped training", RuntimeWarning, stacklevel=2)
                    break
                opt.zero_grad()
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                state.step += 1
                correct += int((logits.data.argmax(axis=1) == yb).sum())
                _call(callbacks, "on_step_end", state)
                bar.update(1)
                bar.set_postfix(loss=f"{state.loss:.3f}")
            row = {"epoch": epoch + 1, "loss": float(np.mean(losses)),
                   "train_acc": correct / len(loader.x), "lr": epoch_lr,
                   "seconds": time.perf_counter() - start}
            if penalties:
                row["penalty"] = float(np.mean(penalties))
            if stopped is not None:
                row["stopped"] = stopped
                state.history.append(row)
                break
            if val is not None:
                row["val_acc"], row["val_loss"] = evaluate(model, val)
            state.history.append(row)
            _call(callbacks, "on_epoch_end", state)
            if checkpoint is not None:
                save(model, checkpoint)
    finally:
        bar.close()
    return state.history


def print_history(history: list[dict]) -> None:
    """The per-epoch table `make demo` prints."""
    cols = [c for c in ("epoch", "loss", "penalty", "train_acc", "val_acc", "val_loss", "lr", "seconds")
            if history and c in history[0]]
    print("  ".join(f"{c:>9}" for c in cols))
    for row in history:
        print("  ".join(f"{row[c]:>9}" if isinstance(row[c], int) else f"{row[c]:>9.4f}"
                        for c in cols))
