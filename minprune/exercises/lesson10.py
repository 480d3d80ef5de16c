"""Checkers of lesson 10 — when to prune (`lessons/10_when_to_prune.ipynb`)."""
from __future__ import annotations

import copy

import numpy as np

from .. import nn
from ..nn import functional as F
from ..tensor import Tensor
from .core import correct, exercise, fail, require_callable, rng_for, score_arrays

# Everything in minprune that hands out |g ⊙ w| (SNIP, the gradient criterion, and the helper
# every data-driven criterion gets its gradients from), or SynFlow's scores, or a criterion by name.
_SNIP_BLOCKS = ["minprune.prune.criteria.snip", "minprune.prune.criteria.gradient",
                "minprune.prune.criteria._loss_gradients", "minprune.prune.criteria.get_criterion"]
_SYNFLOW_BLOCKS = ["minprune.prune.criteria.synflow", "minprune.prune.criteria.get_criterion"]


def _layers(model) -> dict:
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def _random_biases(model, rng) -> None:
    """Nonzero biases of both signs, as after training (freshly built layers have zero biases)."""
    for m in _layers(model).values():
        if m.bias is not None:
            m.bias.data[...] = rng.normal(0, 0.05, m.bias.shape) * (
                1 if m.bias.mask is None else m.bias.mask)


def _mlp(rng, input_shape):
    d = int(np.prod(input_shape))
    h1, h2, c = (int(v) for v in (rng.integers(16, 80), rng.integers(8, 40), rng.integers(3, 12)))
    return nn.Sequential(nn.Flatten(), nn.Linear(d, h1, rng=rng), nn.ReLU(),
                         nn.Linear(h1, h2, rng=rng), nn.ReLU(), nn.Linear(h2, c, rng=rng))


def _convnet(rng, input_shape):
    cin, size = input_shape[0], input_shape[1]
    k1, k2, c = (int(v) for v in (rng.integers(3, 9), rng.integers(4, 12), rng.integers(3, 12)))
    return nn.Sequential(nn.Conv2d(cin, k1, 3, padding=1, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(k1, k2, 3, padding=1, rng=rng), nn.ReLU(), nn.Flatten(),
                         nn.Linear(k2 * (size // 2) ** 2, c, rng=rng))


def _random_models(rng, pruned_one=True):
    """(name, model, input_shape): a small MLP and a small conv net of random sizes, one of them
    randomly pruned, all with random biases."""
    from ..prune import prune

    shape_mlp = (1, int(rng.integers(6, 13)), int(rng.integers(6, 13)))
    size = int(rng.choice([6, 8, 10]))
    shape_conv = (int(rng.integers(1, 4)), size, size)
    mlp, conv = _mlp(rng, shape_mlp), _convnet(rng, shape_conv)
    out = []
    for name, model, shape in [("a random MLP", mlp, shape_mlp), ("a random conv net", conv, shape_conv)]:
        if pruned_one and name == "a random conv net":
            s = round(float(rng.uniform(0.3, 0.8)), 2)
            prune(model, s, criterion="random", seed=int(rng.integers(1000)))
            name = f"{name} pruned {s:.0%} at random"
        _random_biases(model, rng)
        out.append((name, model, shape))
    return out


def _changed(model, before: dict) -> bool:
    return any(not np.array_equal(v, before[k]) for k, v in model.state_dict().items())


# --- SNIP ------------------------------------------------------------------------------------------
def _abs_gw(model, x, y, stale=None) -> dict:
    """|g ⊙ w| of every prunable layer (g of the mean cross-entropy on (x, y)), on a copy;
    `stale` adds the gradients a previous backward left behind (the forgotten zero_grad)."""
    work = copy.deepcopy(model)
    work.zero_grad()
    F.cross_entropy(work(Tensor(x)), y).backward()
    out = {}
    for n, m in _layers(work).items():
        g = m.weight.grad + (0 if stale is None else stale[n])
        out[n] = np.abs(m.weight.data.astype(np.float64) * g)
    return out


def _snip_cases(variant):
    """(name, model, x, y): the self-check uses LeNet-300-100 and LeNet-5 on random images; hidden
    variants use random small nets, input shapes and batches."""
    from ..models import lenet5, lenet_300_100

    rng = rng_for(variant, 12)
    if variant is None:
        models = [("lenet_300_100", lenet_300_100(seed=12), (1, 28, 28)),
                  ("lenet5", lenet5(seed=12), (1, 28, 28))]
    else:
        models = _random_models(rng)
    cases = []
    for name, model, shape in models:
        n = 32 if variant is None else int(rng.integers(8, 48))
        x = rng.random((n, *shape), dtype=np.float32)
        classes = _layers(model)[list(_layers(model))[-1]].out_features
        cases.append((name, model, x, rng.integers(0, classes, n)))
    return cases


@exercise("10.1", blocks=_SNIP_BLOCKS)
def check_snip_scores(fn, variant=None) -> None:
    """`fn(model, x, y) -> {layer name: array}`: SNIP's connection sensitivity
    |g ⊙ w| / Σ|g ⊙ w| (g = ∂L/∂w of the mean cross-entropy on (x, y); the sum runs over every
    prunable weight of every layer). The model handed over carries stale gradients from an earlier
    backward pass, as a model in a notebook often does. Hidden variants use other nets and data."""
    require_callable(fn, "fn")
    for name, model, x, y in _snip_cases(variant):
        raw = _abs_gw(model, x, y)
        total = sum(s.sum() for s in raw.values())
        want = {n: s / total for n, s in raw.items()}
        # leave stale gradients on the model: a backward pass on other labels
        given = copy.deepcopy(model)
        F.cross_entropy(given(Tensor(x)), (np.asarray(y) + 1) % 3).backward()
        stale = {n: m.weight.grad.copy() for n, m in _layers(given).items()}
        answer = score_arrays(fn(given, x.copy(), np.array(y)), want, name)
        stale_raw = _abs_gw(model, x, y, stale)
        stale_total = sum(s.sum() for s in stale_raw.values())
        # float32 autograd rounds the tiniest scores (gradients that nearly cancel) to within about
        # 1e-7 of the largest: that much absolute slack lets a float64 answer pass, nothing wrong
        atol = 1e-6 * max(float(s.max()) for s in want.values())
        for n, w in want.items():
            got = answer[n]
            if np.allclose(got, w, rtol=1e-3, atol=atol):
                continue
            hint = ("compute |w · ∂L/∂w| for every layer, then divide all of them by one "
                    "number: their sum over *all* layers.")
            if (got < 0).any():
                hint = "take the absolute value: the score is |g ⊙ w|."
            elif np.allclose(got, stale_raw[n] / stale_total, rtol=1e-3) or \
                    np.allclose(got, stale_raw[n], rtol=1e-3):
                hint = ("gradients accumulate: the model came with gradients from an earlier "
                        "backward pass. Call model.zero_grad() before your backward().")
            elif np.allclose(got, raw[n], rtol=1e-3):
                hint = ("those are |g ⊙ w| without the normalisation; divide by Σ|g ⊙ w| over "
                        "all layers (the ranking is the same, but SNIP's scores sum to 1).")
            elif np.allclose(got, raw[n] / raw[n].sum(), rtol=1e-3):
                hint = ("you normalised each layer by its own sum; SNIP divides by one sum "
                        "over all layers, so layers stay comparable in a global ranking.")
            fail(f"{name}: scores for {n!r} differ from SNIP: first values "
                 f"{np.round(got.ravel()[:3], 9)} vs expected {np.round(w.ravel()[:3], 9)}.",
                 hint)
        total_got = sum(float(answer[n].sum()) for n in want)
        if not np.isclose(total_got, 1.0, rtol=1e-3):
            fail(f"{name}: your scores sum to {total_got:.6f}; SNIP's sum to 1.")
    correct("your connection sensitivities match SNIP's on every layer and sum to 1")


# --- SynFlow ---------------------------------------------------------------------------------------
def _synflow(model, input_shape, abs_biases=True, reduce="sum") -> dict:
    """The truth, in float64: |w ⊙ ∂R/∂w| on a copy with |parameters|, R = sum of the outputs for
    one all-ones input. `abs_biases=False` and `reduce="mean"` are the usual slips."""
    work = copy.deepcopy(model)
    for n, p in work.named_parameters():
        keep_sign = not abs_biases and n.endswith("bias")
        p.data = (p.data if keep_sign else np.abs(p.data)).astype(np.float64)
    work.zero_grad()
    out = work(Tensor(np.ones((1, *input_shape)), dtype=np.float64))
    (out.sum() if reduce == "sum" else out.mean()).backward()
    return {n: np.abs(m.weight.data * m.weight.grad) for n, m in _layers(work).items()}


def _synflow_cases(variant):
    from ..models import lenet5, lenet_300_100
    from ..prune import prune

    rng = rng_for(variant, 13)
    if variant is None:
        half = lenet_300_100(seed=13)
        prune(half, 0.5, criterion="random")
        cases = [("lenet_300_100", lenet_300_100(seed=13), (1, 28, 28)),
                 ("lenet_300_100 pruned 50% at random", half, (1, 28, 28)),
                 ("lenet5", lenet5(seed=13), (1, 28, 28))]
        for _, model, _ in cases:
            _random_biases(model, rng)
        return cases
    return _random_models(rng)


@exercise("10.2", blocks=_SYNFLOW_BLOCKS)
def check_synflow_scores(fn, variant=None) -> None:
    """`fn(model, input_shape) -> {layer name: array}`: SynFlow's data-free score |w ⊙ ∂R/∂w|
    with R = sum of the outputs of the network whose weights and biases are replaced by their
    absolute values, fed a single all-ones input of shape (1, *input_shape). The model handed over
    must come back unchanged. Hidden variants use other nets and input shapes."""
    require_callable(fn, "fn")
    for name, model, shape in _synflow_cases(variant):
        want = _synflow(model, shape)
        given = copy.deepcopy(model)
        before = copy.deepcopy(given.state_dict())
        answer = score_arrays(fn(given, shape), want, name)
        for n, w in want.items():
            got = answer[n]
            if np.allclose(got, w, rtol=1e-3, atol=1e-9 * float(np.abs(w).max())):
                continue
            hint = ("work on a copy: set every parameter p.data = np.abs(p.data), run the "
                    "model on np.ones((1, *input_shape)), call .sum().backward(), then "
                    "score = |w ⊙ grad| with the absolute weights.")
            weights = {k: np.abs(m.weight.data) for k, m in _layers(model).items()}
            signed_bias = _synflow(model, shape, abs_biases=False)
            mean = _synflow(model, shape, reduce="mean")
            if (got < 0).any():
                hint = "take absolute values: SynFlow's scores are |w ⊙ ∂R/∂w| ≥ 0."
            elif np.allclose(got, weights[n]):
                hint = "that is |w| (magnitude); multiply by ∂R/∂w."
            elif np.allclose(got, signed_bias[n], rtol=1e-3):
                hint = ("take |·| of the biases too: SynFlow makes *every* parameter positive, so "
                        "no path through the network can cancel another.")
            elif np.allclose(got, mean[n], rtol=1e-3) or (
                    (w > 0).any() and np.allclose(got[w > 0] / w[w > 0],
                                                  np.median(got[w > 0] / w[w > 0]), rtol=1e-3)):
                hint = ("your scores are off by a constant factor: R is the plain *sum* of "
                        "the outputs (no mean, no normalisation).")
            else:
                hint += " SynFlow is data-free: the input is all ones, not an image or noise."
            fail(f"{name}: SynFlow scores for {n!r} differ: first values "
                 f"{np.round(got.ravel()[:3], 6)} vs expected {np.round(w.ravel()[:3], 6)}.",
                 hint)
        if _changed(given, before):
            fail(f"{name}: your function changed the parameters of the model it was given.",
                 "work on a copy: `work = copy.deepcopy(model)`, and change only `work`.")
    correct("your synaptic-flow scores are right on every layer, and the model is untouched")
