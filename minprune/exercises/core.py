"""What every checker shares: the exercise registry, the verdicts (`correct`, `fail`), answer coercion
with hints, and the small models and weight views several lessons check answers on.

A checker is registered with `@exercise("04.1", blocks=[...])` and is written as
`checker(answer, variant)`. With `variant=None` it runs the fixed cases of the lesson's self-check;
with an integer (the autograder's hidden variants, drawn from a seed only the teacher knows) it draws
other shapes, seeds and sparsities from `rng_for(variant)`, so an answer that hard-codes the
self-check's expected values fails. It raises `AssertionError` (via `fail`) on a wrong answer and
prints "✓ correct" on a right one; a checker that gives partial credit returns the fraction earned.
"""
from __future__ import annotations

import functools
import numbers
from dataclasses import dataclass, field

import numpy as np

from .. import nn
from ..tensor import Tensor
from .blocking import guard

EXERCISES: dict = {}   # "04.1" -> its registered check(answer, variant=None)


def exercise(exercise_id: str, *, blocks=(), variants: int = 3, timeout: float | None = None):
    """Register `checker(answer, variant)` as the check of exercise `exercise_id`.

    `blocks` names the minprune functions that compute the answer ("minprune.prune.metrics.sparsity");
    while the student's function runs they raise "exercise 04.1 asks you to write this yourself".
    The autograder runs `variants` hidden variants, each within the teacher's time limit or, for an
    exercise that needs longer (the capstone), within `timeout` seconds.
    The registered check is called `check(answer, variant=None)`."""
    def register(checker):
        @functools.wraps(checker)
        def check(answer, variant=None):
            return checker(guard(answer, exercise_id, blocks), variant)
        check.exercise_id = exercise_id
        check.blocks = tuple(blocks)
        check.variants = variants
        check.timeout = timeout
        if exercise_id in EXERCISES:
            raise ValueError(f"exercise {exercise_id!r} is registered twice")
        EXERCISES[exercise_id] = check
        return check
    return register


@dataclass(frozen=True)
class Score:
    """What a checker that gives partial credit returns: the fraction of the points earned and the
    numbers behind it (e.g. the capstone's accuracy and compression, for the leaderboard)."""
    fraction: float
    detail: dict = field(default_factory=dict)


def rng_for(variant, public_seed: int = 0) -> np.random.Generator:
    """The generator a checker draws its cases from: a fixed one for the self-check
    (`variant=None`), a hidden variant's own otherwise."""
    return np.random.default_rng(public_seed if variant is None else variant)


def correct(detail: str = "") -> None:
    """What every checker prints when the answer is right."""
    print("✓ correct" + (f" — {detail}" if detail else ""))


def fail(message: str, hint: str = "") -> None:
    """Raise the AssertionError a student sees: what failed, then a hint."""
    raise AssertionError(message + (f"\nHint: {hint}" if hint else ""))


def require_callable(fn, name: str) -> None:
    if not callable(fn):
        raise TypeError(f"{name}: expected a function, got {type(fn).__name__}")


def as_array(value, what: str) -> np.ndarray:
    """Accept an ndarray, a Tensor or a Python number as an answer; refuse None with a hint."""
    if value is None:
        fail(f"{what} is None.", "did you forget a `return` statement?")
    if isinstance(value, Tensor):
        value = value.data
    return np.asarray(value, dtype=np.float64)


def score_arrays(answer, want: dict, who: str = "", hint: str = "") -> dict:
    """Check that a student's `{layer name: scores}` answer has every layer of `want`, each an
    array of the same shape; return the arrays. `who` prefixes messages (e.g. the model's name)."""
    where = f"{who}: " if who else ""
    if not isinstance(answer, dict):
        fail(f"{where}fn should return a dict {{layer name: scores}}, got "
             f"{type(answer).__name__}.", hint)
    arrays = {}
    for n, w in want.items():
        if n not in answer:
            fail(f"{where}no scores for layer {n!r}; expected keys {list(want)}.",
                 "use the names from `mp.prune.prunable_layers(model)`.")
        arrays[n] = as_array(answer[n], f"scores[{n!r}]")
        if arrays[n].shape != w.shape:
            fail(f"{where}scores[{n!r}] has shape {arrays[n].shape}, expected one score per "
                 f"weight {w.shape}.")
    return arrays


def as_int(value, what: str) -> int:
    """Accept an int-valued answer (int, NumPy integer, or a float that is a whole number)."""
    if value is None:
        fail(f"{what} is None.", "did you forget a `return` statement?")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(f"{what} should be a number, got {type(value).__name__} {value!r}.")
    if value != int(value):
        fail(f"{what} should be a whole number, got {value!r}.",
             "sizes and counts are integers: use floor division `//`, not `/`.")
    return int(value)


def prunable_weights(model) -> list[np.ndarray]:
    """The weights pruning acts on by default: every Conv2d and Linear `weight` (no biases)."""
    return [m.weight.data for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def layer_weights(model) -> dict:
    from ..prune.masks import prunable_layers
    return {n: m.weight.data for n, m in prunable_layers(model).items()}


def retraining_nets(seed: int = 0) -> dict:
    """Small conv + linear nets (with biases, one with BatchNorm), dense and pruned, to check
    answers on: {description: model}. Built fresh on every call, so a checker may modify them."""
    from .. import models
    from ..prune import prune
    from ..prune.masks import prunable_layers

    def small(bn=False):
        r = np.random.default_rng(seed)
        layers = [nn.Conv2d(1, 8, 3, rng=r)] + ([nn.BatchNorm2d(8)] if bn else [])
        layers += [nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 64, rng=r), nn.ReLU(),
                   nn.Linear(64, 10, rng=r)]
        net = nn.Sequential(*layers)
        for p in net.parameters():  # nonzero biases (and BN shifts), as after training
            if p.data.ndim == 1:
                p.data[...] = r.normal(0, 0.05, p.shape)
        return net

    nets = {"a dense conv net": small()}
    net = small()
    prune(net, 0.8, criterion="magnitude", scope="global")
    nets["a conv net, 80% global magnitude pruning"] = net
    net = small(bn=True)
    prune(net, 0.5, criterion="magnitude", granularity="filter", scope="layerwise",
          exclude=list(prunable_layers(net))[-1:])
    nets["a conv net with BatchNorm, 50% filter pruning"] = net
    net = models.lenet_300_100(seed=seed)
    prune(net, 0.9, criterion="magnitude", scope="layerwise")
    nets["LeNet-300-100, 90% layerwise magnitude pruning"] = net
    return nets


def all_prunable(model) -> np.ndarray:
    return np.concatenate([w.ravel() for w in prunable_weights(model)]).astype(np.float64)
