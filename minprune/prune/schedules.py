"""WHEN and HOW OFTEN to prune, and what to do with the survivors.

    one_shot    train → prune once → fine-tune once
    iterative   train → (prune a little → fine-tune) × rounds; round r ends at sparsity
                1 − (1−s)^(r/rounds), i.e. the same keep fraction (1−s)^(1/rounds) every round
    gradual     prune *during* training, a little every `every` steps (Zhu & Gupta's cubic ramp)
    at_init     prune *before* training (SNIP, GraSP, SynFlow, random, magnitude), then train
    lottery     iterative magnitude pruning with rewinding to initialisation (or to step k), plus
                the control: the same mask with fresh random weights (Frankle & Carbin, 2019)
    retrain     finetune the survivors, or re-initialise the pruned network and train it from
                scratch (Liu et al., 2019, "Rethinking the Value of Network Pruning")

Training is passed in as a callable `train(model, epochs=None, callbacks=())`; `trainer(...)`
builds one from `fit`. Pruning arguments (criterion, granularity, scope, batch, exclude, ...) pass
through to `prune()` unchanged. Each schedule returns a history: a list of dicts with step,
phase, sparsity, accuracy and loss (accuracy/loss when `val` data is given).
"""
from __future__ import annotations

import copy

import numpy as np

from .. import checks, nn
from ..progress import bar as progress_bar
from ..train import evaluate, fit
from .masks import prunable_layers
from .metrics import sparsity as measure_sparsity
from .pruner import prune
from .scope import check_sparsity


# --- sensitivity: how much pruning can each layer take? --------------------------------------------
def sensitivity_scan(model, data, sparsities=(0.25, 0.5, 0.75, 0.9, 0.95), progress=True,
                     **prune_kwargs) -> dict:
    """Prune each layer *alone* at each sparsity and measure accuracy (no fine-tuning).

    Returns {"baseline": accuracy, "sparsities": [...], "layers": {layer: [accuracy per sparsity]}}.
    This is the MIT EfficientML recipe for choosing per-layer sparsities: layers whose accuracy
    holds up can be pruned harder. `prune_kwargs` go to `prune()` (criterion, granularity, ...)."""
    sparsities = checks.each(list(sparsities) if isinstance(sparsities, tuple) else sparsities,
                             "sparsities", checks.fraction)
    progress = checks.boolean(progress, "progress")
    clash = sorted({"sparsity", "scope"} & set(prune_kwargs))
    if clash:
        raise ValueError(f"{clash[0]}: the scan sets sparsity and scope itself (one layer at a "
                         f"time); do not pass {clash}")
    exclude = prune_kwargs.pop("exclude", ())
    layers = list(prunable_layers(model, exclude))
    result = {"baseline": evaluate(model, data).accuracy, "sparsities": sparsities, "layers": {}}
    bar = progress_bar(len(layers) * len(sparsities), "sensitivity", progress)
    for name in layers:
        accs = []
        for s in sparsities:
            trial = copy.deepcopy(model)
            prune(trial, scope={name: s}, **prune_kwargs)
            accs.append(evaluate(trial, data).accuracy)
            bar.update(1)
        result["layers"][name] = accs
    bar.close()
    return result


def sparsities_from_scan(scan: dict, max_drop: float = 0.01) -> dict:
    """Per layer, the largest scanned sparsity whose accuracy stays within `max_drop` of the
    baseline (0 if none does): a `scope` dict ready for `prune()`."""
    max_drop = checks.number(max_drop, "max_drop", lo=0)
    out = {}
    for name, accs in scan["layers"].items():
        ok = [s for s, a in zip(scan["sparsities"], accs) if a >= scan["baseline"] - max_drop]
        out[name] = max(ok, default=0.0)
    return out


def trainer(data, epochs: int, **fit_kwargs):
    """A `train(model, epochs=None, callbacks=())` callable running `fit` on `data`."""
    fit_kwargs.setdefault("progress", False)

    def train(model, epochs_=None, callbacks=()):
        return fit(model, data, epochs if epochs_ is None else epochs_, callbacks=callbacks,
                   **fit_kwargs)
    return train


def _record(history, model, val, step, phase, **extra):
    row = {"step": step, "phase": phase, "sparsity": measure_sparsity(model)}
    if val is not None:
        row["accuracy"], row["loss"] = evaluate(model, val)
    row.update(extra)
    history.append(row)
    return row


def round_sparsities(sparsity: float, rounds: int, name="rounds") -> list[float]:
    """Cumulative sparsity after each round with a constant keep fraction (1−s)^(1/rounds);
    the last one is exactly `sparsity`."""
    s = check_sparsity(sparsity)
    rounds = checks.integer(rounds, name, minimum=1)
    out = [1.0 - (1.0 - s) ** (r / rounds) for r in range(1, rounds + 1)]
    out[-1] = s
    return out


def _check_callable(fn, name):
    if fn is not None and not callable(fn):
        raise TypeError(f"{name}: expected a callable such as trainer(data, epochs), got {fn!r}")


def one_shot(model, sparsity, finetune=None, val=None, **prune_kwargs) -> list[dict]:
    """Prune once (to `sparsity`), then call `finetune(model)` once if given."""
    check_sparsity(sparsity)
    _check_callable(finetune, "finetune")
    history = []
    _record(history, model, val, 0, "trained")
    prune(model, sparsity, **prune_kwargs)
    _record(history, model, val, 1, "pruned")
    if finetune is not None:
        finetune(model)
        _record(history, model, val, 1, "finetuned")
    return history


def iterative(model, sparsity, rounds, finetune=None, val=None, **prune_kwargs) -> list[dict]:
    """Prune → fine-tune, `rounds` times, each round keeping the same fraction of the survivors."""
    steps = round_sparsities(sparsity, rounds)
    _check_callable(finetune, "finetune")
    history = []
    _record(history, model, val, 0, "trained")
    for r, s in enumerate(steps, start=1):
        prune(model, s, **prune_kwargs)
        _record(history, model, val, r, "pruned")
        if finetune is not None:
            finetune(model)
            _record(history, model, val, r, "finetuned")
    return history


class gradual:  # noqa: N801 — used like a function: fit(..., callbacks=[gradual(0.9, ...)])
    """A `fit` callback pruning during training along Zhu & Gupta's (2017) cubic ramp:

        s_t = s_f + (s_i − s_f) · (1 − (t − t0) / (n·Δt))³   for t0 ≤ t ≤ t0 + n·Δt,

    applied every Δt = `every` steps from `start` (t0) to `end` (t0 + n·Δt). The ramp prunes fast
    while there are many redundant weights and slowly near the end, when each one matters.
    `history` records (step, sparsity) at every pruning step."""

    def __init__(self, final_sparsity, start, end, every=1, initial_sparsity=0.0, **prune_kwargs):
        self.final = check_sparsity(final_sparsity, "final_sparsity")
        self.initial = check_sparsity(initial_sparsity, "initial_sparsity")
        start, end = checks.integer(start, "start", minimum=0), checks.integer(end, "end", minimum=0)
        every = checks.integer(every, "every", minimum=1)
        if end <= start:
            raise ValueError(f"start/end/every: need start < end and every ≥ 1, got {start}, {end}, "
                             f"{every}")
        self.start, self.end, self.every = start, end, every
        self.prune_kwargs = prune_kwargs
        self.history: list[dict] = []

    def target(self, step: int) -> float:
        """The scheduled sparsity at training step `step`."""
        if step <= self.start:
            return self.initial
        frac = min((step - self.start) / (self.end - self.start), 1.0)
        return self.final + (self.initial - self.final) * (1.0 - frac) ** 3

    def on_step_end(self, state):
        t = state.step
        if self.start <= t <= self.end and (t - self.start) % self.every == 0 or t == self.end:
            s = self.target(t)
            if s > 0:
                prune(state.model, s, **self.prune_kwargs)
            self.history.append({"step": t, "sparsity": measure_sparsity(state.model),
                                 "target": s})


def at_init(model, sparsity, criterion="snip", batch=None, train=None, val=None,
            iterations=None, **prune_kwargs) -> list[dict]:
    """Prune an untrained model, then train the sparse network with `train(model)`.

    SynFlow is data-free and iterative: by default it re-scores and prunes over 100 rounds with an
    exponential schedule (Tanaka et al., 2020), which is what avoids layer collapse. Other
    criteria prune in one shot unless `iterations` says otherwise."""
    if iterations is None:
        iterations = 100 if criterion == "synflow" else 1
    steps = round_sparsities(sparsity, iterations, "iterations")
    _check_callable(train, "train")
    history = []
    for s in steps:
        prune(model, s, criterion=criterion, batch=batch, **prune_kwargs)
    _record(history, model, val, 0, "pruned_at_init", criterion=str(criterion),
            iterations=iterations)
    if train is not None:
        train(model)
        _record(history, model, val, 1, "trained")
    return history


def reinitialize(model, seed=None):
    """Fresh random weights for every layer (Kaiming for Conv2d/Linear, zero biases, BatchNorm
    γ=1, β=0, running stats reset). Masks are kept, so pruned weights stay 0."""
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, rng=rng)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
            m.running_mean = np.zeros_like(m.running_mean)
            m.running_var = np.ones_like(m.running_var)
    return model


def rewind(model, state: dict):
    """Set every weight back to `state` (a state_dict), keeping the current masks: surviving
    weights get exactly their saved values, pruned ones stay 0."""
    masks = {n: p.mask for n, p in model.named_parameters()}
    unit_masks = {n: m.output_mask for n, m in model.named_modules()}
    weights_only = {k: v for k, v in state.items() if not k.endswith("_mask")
                    and not k.endswith("output_mask")}
    model.load_state_dict(weights_only)
    for n, p in model.named_parameters():
        p.set_mask(masks[n])
    for n, m in model.named_modules():  # activation masks are part of the pruning, not the weights
        m.output_mask = unit_masks[n]
    return model


class _Snapshot:
    """Callback saving the model's state_dict after training step k (for rewinding to k)."""

    def __init__(self, k):
        self.k, self.state = k, None

    def on_train_begin(self, state):
        if self.k == 0:
            self.state = state.model.state_dict()

    def on_step_end(self, state):
        if state.step == self.k:
            self.state = state.model.state_dict()


def lottery(model, sparsity, rounds, train, rewind_to=0, val=None, control=True, seed=0,
            **prune_kwargs) -> list[dict]:
    """The lottery ticket experiment: iterative magnitude pruning with rewinding.

    Each round trains the network, prunes to the next sparsity (same keep fraction per round),
    then rewinds the survivors to their values at step `rewind_to` (0 = initialisation, Frankle &
    Carbin 2019; k > 0 = "late rewinding", Frankle et al. 2020). The final ticket is trained once
    more. With `control=True` the same mask with fresh random weights is trained for the same
    budget: if the ticket wins, the *initialisation* mattered, not just the mask.
    `model` ends up as the trained ticket; the history rows carry kind "ticket" or "reinit"."""
    rewind_to = checks.integer(rewind_to, "rewind_to", minimum=0)
    steps = round_sparsities(sparsity, rounds)  # checked before the first training run
    if not callable(train):
        raise TypeError(f"train: expected a callable such as trainer(data, epochs), got {train!r}")
    control, seed = checks.boolean(control, "control"), checks.integer(seed, "seed")
    prune_kwargs.setdefault("criterion", "magnitude")
    history = []
    snapshot = _Snapshot(rewind_to)
    train(model, callbacks=[snapshot])
    if snapshot.state is None:
        raise ValueError(f"rewind_to: training ran fewer than {rewind_to} steps")
    _record(history, model, val, 0, "trained", kind="ticket")
    for r, s in enumerate(steps, start=1):
        prune(model, s, **prune_kwargs)
        rewind(model, snapshot.state)
        train(model)
        _record(history, model, val, r, "trained", kind="ticket")
    if control:
        reinit = reinitialize(copy.deepcopy(model), seed=seed + 1)
        train(reinit)
        _record(history, reinit, val, rounds, "trained", kind="reinit")
    return history


def retrain(model, mode="finetune", train=None, val=None, seed=0, budget="E",
            dense_epochs=None, input_shape=(1, 28, 28)) -> list[dict]:
    """Retrain a pruned model.

    mode="finetune": keep the surviving weights and continue training (`train` should use a
    small learning rate). mode="scratch": re-initialise every weight (masks kept, so the pruned
    architecture stays) and train from scratch. budget="E" trains for the same epochs as the
    `train` callable's default (Scratch-E); budget="B" scales `dense_epochs` by the FLOP saving
    so the pruned network gets the same compute as the original (Scratch-B, Liu et al. 2019; the
    factor is capped at 2, and measured on one input of `input_shape`)."""
    checks.one_of(mode, "mode", ("finetune", "scratch"))
    checks.one_of(budget, "budget", ("E", "B"))
    if not callable(train):
        raise ValueError("train: a callable train(model, epochs=None, callbacks=()) is required")
    scratch_b = mode == "scratch" and budget == "B"
    if scratch_b:
        if dense_epochs is None:
            raise ValueError("dense_epochs: Scratch-B needs the dense model's epoch budget")
        dense_epochs = checks.integer(dense_epochs, "dense_epochs", minimum=1)
    elif dense_epochs is not None or budget != "E":
        raise ValueError(f"budget/dense_epochs: only mode='scratch' with budget='B' uses them; "
                         f"with mode={mode!r}, budget={budget!r} dense_epochs={dense_epochs!r} "
                         "would be ignored")
    history = []
    _record(history, model, val, 0, "pruned")
    epochs = None
    if mode == "scratch":
        reinitialize(model, seed)
        if scratch_b:
            from .metrics import theoretical_speedup
            speedup = theoretical_speedup(model, input_shape)
            epochs = max(1, round(dense_epochs * min(speedup, 2.0)))
    train(model, epochs)
    _record(history, model, val, 1, mode, epochs=epochs)
    return history
