"""Checkers of lesson 03 — training a baseline (`lessons/03_training_a_baseline.ipynb`)."""
from __future__ import annotations

import numpy as np

from .. import nn
from ..autograd import no_grad
from ..tensor import Tensor
from .core import (
    as_array,
    as_int,
    correct,
    fail,
    prunable_weights,
    require_callable,
)


def check_count_parameters(fn) -> None:
    """`fn(model) -> int`: the number of trainable numbers in a model (weights *and* biases)."""
    require_callable(fn, "fn")
    from ..models import lenet5, lenet_300_100

    models = {"lenet5()": lenet5(), "lenet_300_100()": lenet_300_100(),
              "a small Sequential": nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.ReLU(),
                                                  nn.Flatten(), nn.Linear(4 * 26 * 26, 10))}
    for name, model in models.items():
        want = sum(p.size for p in model.parameters())
        got = as_int(fn(model), f"fn({name})")
        if got != want:
            hint = "add up `p.size` for every `p` in `model.parameters()`."
            if got == sum(w.size for w in prunable_weights(model)):
                hint = "you counted only the weights; biases are parameters too."
            fail(f"{name} has {want:,} parameters, you counted {got:,}.", hint)
    correct("parameter counts agree (LeNet-5 has 61,706)")


def check_accuracy(fn) -> None:
    """`fn(model, x, y) -> float`: the fraction of examples in x whose predicted class is y.

    The answer must lie in [0, 1] and agree with `minprune.train.evaluate`.
    """
    require_callable(fn, "fn")
    from ..models import lenet_300_100

    rng = np.random.default_rng(3)
    model = lenet_300_100(seed=3)
    x = rng.random((60, 1, 28, 28), dtype=np.float32)
    with no_grad():
        predicted = model.eval()(Tensor(x)).data.argmax(axis=1)
    model.train()
    half = predicted.copy()
    half[::2] = (half[::2] + 1) % 10  # exactly every other prediction made wrong
    for name, y, want in [("labels = the model's own predictions", predicted, 1.0),
                          ("labels that disagree on every other example", half, 0.5),
                          ("random labels", rng.integers(0, 10, 60), None)]:
        if want is None:
            from ..train import evaluate
            want = evaluate(model, (x, y)).accuracy
        got = float(as_array(fn(model, x, y), "the accuracy"))
        if not np.isclose(got, want):
            hint = "accuracy = mean(logits.argmax(axis=1) == y), a fraction between 0 and 1."
            if np.isclose(got, 100 * want):
                hint = "return a fraction in [0, 1], not a percentage."
            elif np.isclose(got, want * len(y)):
                hint = "that is the number correct; divide by the number of examples."
            fail(f"with {name} the accuracy is {want:.3f}, you returned {got:.3f}.", hint)
    correct("your accuracy agrees with minprune.train.evaluate")


def _fraction_below(model, threshold: float, biases: bool = False) -> float:
    arrays = prunable_weights(model)
    if biases:
        arrays = arrays + [m.bias.data for m in model.modules()
                           if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None]
    values = np.concatenate([a.ravel() for a in arrays])
    return float(np.mean(np.abs(values) < threshold))


def check_weight_fraction(fn_or_value, model, threshold: float = 0.01) -> None:
    """The fraction of Conv2d/Linear weights (no biases) of `model` with |w| < threshold.

    Pass either a function `fn(model, threshold) -> float`, checked at several thresholds, or the
    number you computed for `threshold`.
    """
    if not any(True for _ in prunable_weights(model)):
        raise ValueError("model: it has no Conv2d or Linear layers to count weights in")
    if callable(fn_or_value):
        thresholds = sorted({threshold, 1e-3, 0.01, 0.05, 0.2})
        answers = [(t, fn_or_value(model, t)) for t in thresholds]
    else:
        answers = [(threshold, fn_or_value)]
    for t, answer in answers:
        got = float(as_array(answer, f"the fraction at threshold {t}"))
        want = _fraction_below(model, t)
        if not np.isclose(got, want, atol=1e-9):
            hint = ("pool the `weight` of every Conv2d and Linear layer (np.concatenate of the "
                    "flattened arrays), then np.mean(np.abs(w) < threshold).")
            n = sum(w.size for w in prunable_weights(model))
            if np.isclose(got, _fraction_below(model, t, biases=True)):
                hint = "you included the biases; count only the Conv2d/Linear weights."
            elif np.isclose(got, 100 * want):
                hint = "return a fraction in [0, 1], not a percentage."
            elif np.isclose(got, want * n):
                hint = f"that is a count; divide by the number of weights ({n:,})."
            elif np.isclose(got, 1 - want):
                hint = "you counted the weights at or above the threshold; we want |w| < threshold."
            fail(f"at threshold {t} the true fraction is {want:.4f}, you gave {got:.4f}.", hint)
    correct(f"{_fraction_below(model, threshold):.1%} of the weights have |w| < {threshold}")
