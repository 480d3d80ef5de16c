"""Checkers of lesson 03 — training a baseline (`lessons/03_training_a_baseline.ipynb`)."""
from __future__ import annotations

import copy

import numpy as np

from .. import nn
from ..autograd import no_grad
from ..tensor import Tensor
from .core import (
    as_array,
    as_int,
    correct,
    exercise,
    fail,
    prunable_weights,
    require_callable,
    rng_for,
)


def _random_net(rng, batchnorm: bool) -> nn.Module:
    """A small conv net on 1×12×12 inputs with random widths, some layers without a bias, and
    (optionally) a BatchNorm: its weight and bias are parameters, its running statistics are not."""
    c1, hidden = int(rng.integers(2, 9)), int(rng.integers(8, 48))
    layers = [nn.Conv2d(1, c1, 3, bias=bool(rng.integers(2)), rng=rng)]
    layers += [nn.BatchNorm2d(c1)] if batchnorm else []
    layers += [nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
               nn.Linear(c1 * 5 * 5, hidden, rng=rng), nn.ReLU(),
               nn.Linear(hidden, int(rng.integers(3, 11)), bias=bool(rng.integers(2)), rng=rng)]
    return nn.Sequential(*layers)


def _parameter_models(variant) -> dict:
    from ..models import lenet5, lenet_300_100

    if variant is None:
        return {"lenet5()": lenet5(), "lenet_300_100()": lenet_300_100(),
                "a small Sequential": nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.ReLU(),
                                                    nn.Flatten(), nn.Linear(4 * 26 * 26, 10)),
                "a conv net with BatchNorm": _random_net(np.random.default_rng(30), True)}
    rng = rng_for(variant, 30)
    return {f"random conv net {i + 1}": _random_net(rng, batchnorm=i > 0) for i in range(3)}


@exercise("03.1", blocks=["minprune.prune.metrics.count_params", "minprune.prune.metrics.report"])
def check_count_parameters(fn, variant=None) -> None:
    """`fn(model) -> int`: the number of trainable numbers in a model (weights *and* biases, and
    BatchNorm's scale and shift; not its running statistics, which are buffers)."""
    require_callable(fn, "fn")
    for name, model in _parameter_models(variant).items():
        params = [p.data for _, p in model.named_parameters()]
        want = sum(a.size for a in params)
        got = as_int(fn(model), f"fn({name})")
        if got != want:
            hint = "add up `p.size` for every `p` in `model.parameters()`."
            if got == sum(w.size for w in prunable_weights(model)):
                hint = "you counted only the weights; biases are parameters too."
            elif got == len(params):
                hint = "that is the number of parameter arrays; add up their sizes (`p.size`)."
            elif got == sum(a.size for a in model.state_dict().values()):
                hint = ("the state_dict also holds buffers (BatchNorm's running mean and variance), "
                        "which training does not learn: count `model.parameters()`.")
            elif got == sum(m.weight.size + (m.bias.size if m.bias is not None else 0)
                            for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))):
                hint = "BatchNorm's weight and bias are trainable parameters too."
            fail(f"{name} has {want:,} parameters, you counted {got:,}.", hint)
    correct("your parameter counts agree on every model")


def _accuracy_model(rng):
    """A small MLP with BatchNorm whose running statistics differ from any batch's, so its
    predictions in train mode (batch statistics) differ from those in eval mode."""
    hidden = int(rng.integers(24, 64))
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, hidden, rng=rng), nn.BatchNorm1d(hidden),
                          nn.ReLU(), nn.Linear(hidden, 10, rng=rng))
    bn = model[2]
    bn.running_mean[...] = rng.normal(0, 0.5, hidden)
    bn.running_var[...] = rng.uniform(0.2, 3.0, hidden)
    bn.weight.data[...] = rng.uniform(0.5, 1.5, hidden)
    bn.bias.data[...] = rng.normal(0, 0.3, hidden)
    return model


@exercise("03.2", blocks=["minprune.train.evaluate"])
def check_accuracy(fn, variant=None) -> None:
    """`fn(model, x, y) -> float`: the fraction of examples in x whose predicted class is y, the
    model in eval mode.

    The truth is computed from the model's own eval-mode logits: labels equal to the predictions
    (accuracy 1), labels with a known number of them changed, and random labels. The model has a
    BatchNorm layer, so predictions made in train mode differ."""
    require_callable(fn, "fn")
    rng = rng_for(variant, 31)
    n = 60 if variant is None else int(rng.integers(40, 120))
    model = _accuracy_model(rng)
    x = rng.random((n, 1, 28, 28), dtype=np.float32)
    with no_grad():
        predicted = copy.deepcopy(model).eval()(Tensor(x)).data.argmax(axis=1)
        train_mode = copy.deepcopy(model).train()(Tensor(x)).data.argmax(axis=1)
    wrong = n // 2 if variant is None else int(rng.integers(1, n))
    some = predicted.copy()
    flip = rng.permutation(n)[:wrong]
    some[flip] = (some[flip] + rng.integers(1, 10, wrong)) % 10   # exactly `wrong` made wrong
    cases = [("labels = the model's own predictions", predicted),
             (f"labels that disagree on {wrong} of {n} examples", some),
             ("random labels", rng.integers(0, 10, n))]
    for name, y in cases:
        want = float(np.mean(predicted == y))
        got = float(as_array(fn(copy.deepcopy(model), x.copy(), y.copy()), "the accuracy"))
        if not np.isclose(got, want):
            hint = "accuracy = mean(logits.argmax(axis=1) == y), a fraction between 0 and 1."
            if np.isclose(got, 100 * want):
                hint = "return a fraction in [0, 1], not a percentage."
            elif np.isclose(got, want * len(y)):
                hint = "that is the number correct; divide by the number of examples."
            elif np.isclose(got, 1 - want):
                hint = "that is the error rate; accuracy counts the predictions that are right."
            elif np.isclose(got, np.mean(train_mode == y)):
                hint = ("call model.eval() before predicting: in train mode BatchNorm normalises "
                        "with the batch's own statistics (and Dropout drops units).")
            fail(f"with {name} the accuracy is {want:.3f}, you returned {got:.3f}.", hint)
    correct("your accuracy is right, in eval mode, on every set of labels")


def _fraction_below(model, threshold: float, biases: bool = False) -> float:
    arrays = prunable_weights(model)
    if biases:
        arrays = arrays + [m.bias.data for m in model.modules()
                           if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None]
    values = np.concatenate([a.ravel() for a in arrays])
    return float(np.mean(np.abs(values) < threshold))


def _fraction_models(variant) -> dict:
    """Models with nonzero biases (as after training) and, in one, a BatchNorm whose scale is 1."""
    from ..models import lenet5, lenet_300_100

    rng = rng_for(variant, 32)
    if variant is None:
        models = {"lenet5(seed=0)": lenet5(seed=0), "lenet_300_100(seed=1)": lenet_300_100(seed=1),
                  "a conv net with BatchNorm": _random_net(np.random.default_rng(32), True)}
        pruned, amount = lenet5(seed=2), 0.6
    else:
        models = {f"random conv net {i + 1}": _random_net(rng, batchnorm=True) for i in range(2)}
        pruned, amount = lenet5(seed=int(rng.integers(10, 10 ** 6))), float(rng.uniform(0.3, 0.9))
    for m in pruned.modules():   # pruned weights are exactly 0, and they count as below too
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.weight.data[rng.random(m.weight.shape) < amount] = 0.0
    models[f"lenet5 with {amount:.0%} of its weights set to 0"] = pruned
    for model in models.values():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.data[...] = rng.normal(0, 0.05, m.bias.shape)
    return models


@exercise("03.3", blocks=["minprune.exercises.lesson03._fraction_below",
                          "minprune.experiments.near_zero_fraction"])
def check_weight_fraction(fn, variant=None) -> None:
    """`fn(model, threshold) -> float`: the fraction of a model's Conv2d/Linear weights (no biases)
    with |w| < threshold, checked at several thresholds on models of the checker's own."""
    require_callable(fn, "fn")
    rng = rng_for(variant, 33)
    thresholds = ([1e-3, 0.01, 0.05, 0.2] if variant is None
                  else sorted(float(t) for t in 10 ** rng.uniform(-3.5, -0.5, 4)))
    for name, model in _fraction_models(variant).items():
        # one threshold equal to a weight's |w| (a float32 value, exact in float64), which a
        # `<=` counts and a `<` does not
        w = np.concatenate([a.ravel() for a in prunable_weights(model)])
        tie = float(np.abs(w[w != 0])[int(rng.integers(np.count_nonzero(w)))])
        for t in thresholds + [tie]:
            got = float(as_array(fn(model, t), f"fn({name}, {t:g})"))
            want = _fraction_below(model, t)
            if not np.isclose(got, want, atol=1e-9):
                hint = ("pool the `weight` of every Conv2d and Linear layer (np.concatenate of the "
                        "flattened arrays), then np.mean(np.abs(w) < threshold).")
                n = sum(w.size for w in prunable_weights(model))
                everything = np.concatenate([p.data.ravel() for p in model.parameters()])
                per_layer = np.mean([np.mean(np.abs(w) < t) for w in prunable_weights(model)])
                if np.isclose(got, _fraction_below(model, t, biases=True)) or np.isclose(
                        got, np.mean(np.abs(everything) < t)):
                    hint = "you included biases (or BatchNorm's parameters); count only the " \
                           "Conv2d/Linear weights."
                elif np.isclose(got, 100 * want):
                    hint = "return a fraction in [0, 1], not a percentage."
                elif np.isclose(got, want * n):
                    hint = f"that is a count; divide by the number of weights ({n:,})."
                elif np.isclose(got, 1 - want):
                    hint = "you counted the weights at or above the threshold; we want |w| < threshold."
                elif np.isclose(got, float(np.mean(np.abs(w) <= t)), atol=1e-9):
                    hint = "strictly below: |w| < threshold, not <=."
                elif np.isclose(got, per_layer):
                    hint = ("you averaged the per-layer fractions; big layers hold more weights, "
                            "so pool all weights first.")
                elif np.isclose(got, float(np.mean(np.concatenate(
                        [w.ravel() for w in prunable_weights(model)]) < t))):
                    hint = "compare the magnitude |w| with the threshold, not the signed weight."
                elif np.isclose(got, float(np.mean(np.abs(alive := np.concatenate(
                        [w[w != 0] for w in prunable_weights(model)])) < t))) and alive.size < n:
                    hint = ("you left out the weights that are exactly 0; they are below any "
                            "threshold too: count every weight.")
                fail(f"{name}, threshold {t:g}: the true fraction is {want:.4f}, you gave {got:.4f}.",
                     hint)
    correct("your fractions are right at every threshold, on every model")
