"""fit / evaluate: the training loop, with a progress bar, a history and optional checkpoints.

Callbacks are objects with any of `on_train_begin(state)`, `on_step_end(state)`,
`on_epoch_end(state)`; `state` carries the model, optimizer, step, epoch and history. The gradual
pruning schedule is such a callback: it prunes a little more every few steps while training runs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

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
    if isinstance(data, DataLoader):
        return data.x, data.y
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = np.asarray(data[0]), np.asarray(data[1])
        if len(x) != len(y):
            raise ValueError(f"{name}: x has {len(x)} examples but y has {len(y)}")
        return x, y
    raise TypeError(f"{name}: expected an (x, y) pair of arrays or a DataLoader, got "
                    f"{type(data).__name__}")


def evaluate(model, data, batch_size: int = 500) -> Evaluation:
    """Accuracy and mean cross-entropy of `model` (put in eval mode, then restored) on `data`."""
    x, y = _as_arrays(data, "data")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    with no_grad():
        for i in range(0, len(x), batch_size):
            logits = model(Tensor(x[i:i + batch_size]))
            yb = y[i:i + batch_size]
            loss_sum += fn.cross_entropy(logits, yb).item() * len(yb)
            correct += int((logits.data.argmax(axis=1) == yb).sum())
    model.train(was_training)
    return Evaluation(correct / max(len(x), 1), loss_sum / max(len(x), 1))


def _call(callbacks, hook, state):
    for cb in callbacks:
        fn_ = getattr(cb, hook, None)
        if fn_ is not None:
            fn_(state)


def fit(model, train, epochs: int = 1, optimizer="sgd", lr: float = 0.05, batch_size: int = 64,
        schedule: str | None = "cosine", weight_decay: float = 0.0, val=None, callbacks=(),
        augment: int = 0, seed: int = 0, checkpoint=None, progress: bool = True,
        desc: str = "train") -> list[dict]:
    """Train `model` on `train` ((x, y) arrays or a DataLoader) for `epochs` epochs.

    optimizer: "sgd" (momentum 0.9), "adam", or an Optimizer; schedule: "cosine", "step",
    "constant" or None (per-step learning rate, see `optim.LRSchedule`). `val` (x, y) is evaluated
    after every epoch. `augment=k` shifts each training image by up to k pixels
    (`data.random_shift`). Returns the history: one dict per epoch. Same seed → same result.
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs: expected a non-negative int, got {epochs!r}")
    if schedule is not None and schedule not in LRSchedule.KINDS:
        raise ValueError(f"schedule: {schedule!r} is not one of {LRSchedule.KINDS} or None")
    if isinstance(augment, bool) or not isinstance(augment, (int, np.integer)) or augment < 0:
        raise ValueError(f"augment: expected a maximum shift in pixels (int ≥ 0), got {augment!r}")
    x, y = _as_arrays(train, "train")
    loader = train if isinstance(train, DataLoader) else DataLoader(x, y, batch_size, shuffle=True,
                                                                    seed=seed)
    opt = make_optimizer(optimizer, model.parameters(), lr, weight_decay=weight_decay)
    total = epochs * len(loader)
    sched = None
    if schedule is not None:
        sched = LRSchedule(opt, schedule, total_steps=max(total, 1),
                           step_size=max(total // 3, 1), gamma=0.1)
    aug_rng = np.random.default_rng([seed, 1])  # its own stream: augmenting never shifts shuffling
    state = TrainState(model, opt, total_steps=total)
    model.train()
    _call(callbacks, "on_train_begin", state)
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False)
    for epoch in range(epochs):
        state.epoch, start, losses, correct = epoch, time.perf_counter(), [], 0
        epoch_lr = opt.lr  # the rate this epoch started with (the schedule lowers it per step)
        for xb, yb in loader:
            if augment:
                xb = random_shift(xb, augment, aug_rng)
            logits = model(Tensor(xb))
            loss = fn.cross_entropy(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            state.step += 1
            state.loss = loss.item()
            losses.append(state.loss)
            correct += int((logits.data.argmax(axis=1) == yb).sum())
            _call(callbacks, "on_step_end", state)
            bar.update(1)
            bar.set_postfix(loss=f"{state.loss:.3f}")
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else float("nan"),
               "train_acc": correct / max(len(loader.x), 1), "lr": epoch_lr,
               "seconds": time.perf_counter() - start}
        if val is not None:
            row["val_acc"], row["val_loss"] = evaluate(model, val)
        state.history.append(row)
        _call(callbacks, "on_epoch_end", state)
        if checkpoint is not None:
            save(model, checkpoint)
    bar.close()
    return state.history


def print_history(history: list[dict]) -> None:
    """The per-epoch table `make demo` prints."""
    cols = [c for c in ("epoch", "loss", "train_acc", "val_acc", "val_loss", "lr", "seconds")
            if history and c in history[0]]
    print("  ".join(f"{c:>9}" for c in cols))
    for row in history:
        print("  ".join(f"{row[c]:>9}" if isinstance(row[c], int) else f"{row[c]:>9.4f}"
                        for c in cols))
