"""Checkers of lesson 08 — pruning activations (`lessons/08_pruning_activations.ipynb`)."""
from __future__ import annotations

import numpy as np

from .core import as_array, correct, exercise, fail, require_callable, rng_for


def _apoz_cases(variant) -> list:
    """[(description, post-ReLU activations)]: (examples, units) and (examples, channels, H, W),
    each unit with its own bias so that units fire at different rates (some never)."""
    rng = rng_for(variant, 10)
    if variant is None:
        shapes = [(40, 7), (6, 5, 4, 3)]
    else:
        shapes = [(int(rng.integers(10, 60)), int(rng.integers(2, 20))),
                  tuple(int(n) for n in rng.integers(2, 9, size=4))]
        shapes = [shapes[i] for i in rng.permutation(2)]
    cases = []
    for shape in shapes:
        bias = rng.normal(size=shape[1]).reshape((1, -1) + (1,) * (len(shape) - 2))
        if variant is not None:
            bias.flat[int(rng.integers(shape[1]))] = -50.0   # a unit that never fires
        a = np.maximum(rng.normal(size=shape) + bias, 0).astype(np.float32)
        what = "(examples, units)" if len(shape) == 2 else "(examples, channels, H, W)"
        cases.append((f"{what} {shape}", a))
    return cases


@exercise("08.1", blocks=["minprune.prune.criteria.apoz", "minprune.prune.criteria.activation",
                          "minprune.prune.criteria.unit_activations",
                          "minprune.prune.metrics.activation_density"])
def check_apoz(fn, variant=None) -> None:
    """`fn(a) -> array`: APoZ, the Average Percentage of Zeros of each unit (Hu et al., 2016), for
    post-ReLU activations `a` of shape (examples, units) or (examples, channels, H, W) — one
    value in [0, 1] per unit (channel); every example and every position counts."""
    require_callable(fn, "fn")
    for what, a in _apoz_cases(variant):
        units = a.shape[1]
        want = (np.moveaxis(a, 1, -1).reshape(-1, units) <= 0).mean(axis=0)
        got = as_array(fn(a.copy()), f"APoZ for {what}")
        if got.shape != (units,):
            hint = "one value per unit: average over every axis except axis 1."
            if got.ndim >= 1 and got.shape[0] == a.shape[0] and a.shape[0] != units:
                hint = "you averaged over the units; average over the examples (and positions)."
            fail(f"for activations of shape {a.shape} {what}, expected one APoZ per unit "
                 f"(shape {(units,)}), got shape {got.shape}.", hint)
        if np.allclose(got, want, atol=1e-6):
            continue
        hint = "APoZ = mean over examples (and positions) of (a == 0), per unit."
        if np.allclose(got, 1 - want, atol=1e-6):
            hint = ("that is 1 − APoZ, the fraction of *nonzero* outputs (the keep-score a "
                    "pruning criterion uses: higher = kept); APoZ counts the zeros.")
        elif np.allclose(got, 100 * want, atol=1e-4):
            hint = "return a fraction in [0, 1], not a percentage."
        fail(f"APoZ for {what}: expected {np.round(want, 3)}, got {np.round(got, 3)}.", hint)
    correct("your APoZ is right for dense and convolutional activations")


def _topk_cases(variant) -> list:
    """[((examples, units), k)]: k from 1 to every unit."""
    rng = rng_for(variant, 11)
    if variant is None:
        return [((5, 12), 3), ((4, 30), 1), ((6, 8), 8)]
    cases = []
    for _ in range(3):
        shape = (int(rng.integers(2, 10)), int(rng.integers(4, 50)))
        cases.append((shape, int(rng.integers(1, shape[1]))))
    shape = (int(rng.integers(2, 10)), int(rng.integers(2, 10)))
    cases.append((shape, shape[1]))    # k = every unit: nothing dropped
    return [cases[i] for i in rng.permutation(len(cases))]


@exercise("08.2", blocks=["minprune.prune.pruner.activation_sparsity",
                          "minprune.prune.pruner.ActivationSparsity._hook",
                          "minprune.prune.pruner.ActivationSparsity.__init__"])
def check_topk_activations(fn, variant=None) -> None:
    """`fn(a, k) -> array`: dynamic activation sparsity — for every example (row of the
    (examples, units) array `a`), keep its k largest activations and set the others to 0."""
    require_callable(fn, "fn")
    rng = rng_for(variant, 11)
    for shape, k in _topk_cases(variant):
        a = np.maximum(rng.normal(size=shape), 0).astype(np.float32) + \
            rng.random(shape).astype(np.float32) * 1e-3  # no ties
        order = np.argsort(-a, axis=1)
        want = np.zeros_like(a)
        rows = np.arange(shape[0])[:, None]
        want[rows, order[:, :k]] = a[rows, order[:, :k]]
        got = as_array(fn(a.copy(), k), f"fn(a, k={k})")
        if got.shape != a.shape:
            fail(f"for a of shape {shape} and k={k} the result has shape {got.shape}; return an "
                 "array of the input's shape with the dropped activations set to 0.")
        if np.allclose(got, want):
            continue
        kept = (got != 0).sum(axis=1)
        hint = ("per row: find the k-th largest value (np.sort / np.partition along axis=1) and "
                "zero everything below it.")
        if not np.all(kept == k):
            hint = (f"each example must keep exactly k={k} activations; yours keep "
                    f"{sorted(set(kept.tolist()))} per row.")
            flat_thr = np.sort(a.ravel())[-k * shape[0]]
            if np.allclose(got, np.where(a >= flat_thr, a, 0)):
                hint = ("you picked the top activations of the whole batch; top-k is per example "
                        "(along axis=1), so every input keeps its own k units.")
            elif k <= shape[0] and np.allclose(
                    got, np.where(a >= np.sort(a, axis=0)[-k][None, :], a, 0)):
                hint = ("you took the top k of each unit over the examples (axis=0); top-k is per "
                        "example, along axis=1.")
        elif np.allclose(np.sort(got[got != 0]), np.sort(np.sort(a, axis=1)[:, :k].ravel())):
            hint = "you kept the k *smallest* activations; keep the largest."
        elif not np.allclose(got[got != 0], a[got != 0]):
            hint = "keep the surviving activations' values unchanged (a mask, not a 0/1 indicator)."
        fail(f"for a of shape {shape}, k={k}: the kept activations differ from the top-{k} of "
             "each row.", hint)
    correct("your top-k activation sparsity keeps the k largest activations of each example")
