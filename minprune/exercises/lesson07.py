"""Checkers of lesson 07 — structured vs unstructured (`lessons/07_structured_vs_unstructured.ipynb`)."""
from __future__ import annotations

import numpy as np

from .core import as_array, correct, exercise, fail, require_callable, rng_for


def _filter_cases(variant) -> dict:
    """{description: weight}: Conv2d (out, in, kh, kw) and Linear (out, in) weights."""
    rng = rng_for(variant, 10)
    if variant is None:
        shapes = [(8, 3, 3, 3), (4, 6, 5, 5), (10, 12)]
    else:
        shapes = [tuple(int(n) for n in rng.integers(1, 9, size=2)) + (k, k)
                  for k in rng.choice([1, 3, 5], size=2)]
        shapes.append(tuple(int(n) for n in rng.integers(2, 40, size=2)))
        shapes = [shapes[i] for i in rng.permutation(3)]
    return {f"a {'Conv2d' if len(s) == 4 else 'Linear'} weight {s}":
            (rng.normal(size=s) * rng.uniform(0.1, 2.0)).astype(np.float32) for s in shapes}


@exercise("07.1", blocks=["minprune.prune.structures.Granularity.group_scores",
                          "minprune.prune.pruner.prune"])
def check_filter_l1_scores(fn, variant=None) -> None:
    """`fn(weight) -> array (out,)`: the L1 norm of each filter (each output unit) of a Conv2d
    (out, in, kh, kw) or Linear (out, in) weight — the score of Li et al. (2017)'s filter pruning."""
    require_callable(fn, "fn")
    for name, w in _filter_cases(variant).items():
        flat = w.reshape(w.shape[0], -1).astype(np.float64)
        want = np.abs(flat).sum(axis=1)
        got = as_array(fn(w.copy()), f"fn({name})")
        if got.shape != want.shape:
            hint = "one score per output unit: reduce over every axis except axis 0."
            if w.ndim > 1 and got.shape == w.shape[1:2] and w.shape[1] != w.shape[0]:
                hint = "you reduced over axis 0, which scores input channels; filters are axis 0."
            fail(f"for {name} expected shape {want.shape}, got {got.shape}.", hint)
        if not np.allclose(got, want, rtol=1e-5):
            hint = "L1 norm: sum of |w| over the filter's in·kh·kw weights."
            if np.allclose(got, flat.sum(axis=1), rtol=1e-5):
                hint = "take absolute values before summing: L1 = Σ|w|."
            elif np.allclose(got, np.sqrt((flat ** 2).sum(axis=1)), rtol=1e-5):
                hint = "that is the L2 norm; L1 is Σ|w|."
            elif np.allclose(got, np.abs(flat).mean(axis=1), rtol=1e-5):
                hint = "that is the mean |w|; L1 is the sum."
            elif w.ndim == 2 and np.allclose(got, np.abs(w).sum(axis=0), rtol=1e-5):
                hint = "you summed over axis 0, which scores inputs; filters are axis 0."
            fail(f"for {name} the scores are wrong: expected {np.round(want[:3], 4)}..., got "
                 f"{np.round(got[:3], 4)}...", hint)
    correct("your filter L1 norms are right for conv and linear weights")


def _nm_truth(w, n, m) -> np.ndarray:
    """Keep the n largest |w| of every m consecutive entries of each (out, in·kh·kw) row."""
    groups = np.abs(w.astype(np.float64)).reshape(w.shape[0], -1, m)
    keep = np.zeros(groups.shape, bool)
    np.put_along_axis(keep, np.argsort(-groups, axis=-1, kind="stable")[..., :n], True, axis=-1)
    return keep.reshape(w.shape)


def _nm_cases(variant) -> list:
    """[(description, weight, n, m)], with in·kh·kw divisible by m."""
    rng = rng_for(variant, 11)
    if variant is None:
        cases = [((4, 8), 2, 4), ((6, 4, 3, 3), 2, 4), ((3, 2, 2, 2), 1, 4), ((2, 16), 2, 8)]
    else:
        cases = []
        for _ in range(4):
            m = int(rng.choice([2, 4, 8]))
            n = int(rng.integers(1, m))
            if rng.random() < 0.5:
                shape = (int(rng.integers(1, 7)), m * int(rng.integers(1, 5)))
            else:   # in·kh·kw divisible by m: pick `in` as a multiple of m
                k = int(rng.choice([1, 3]))
                shape = (int(rng.integers(1, 7)), m * int(rng.integers(1, 3)), k, k)
            cases.append((shape, n, m))
    out = []
    for shape, n, m in cases:
        kind = "Conv2d" if len(shape) == 4 else "Linear"
        w = rng.normal(size=shape).astype(np.float32)
        out.append((f"a {kind} weight {shape}, {n}:{m}", w, n, m))
    return out


@exercise("07.2", blocks=["minprune.prune.structures.Granularity.nm_mask",
                          "minprune.kernels.nm_mask", "minprune.kernels._nm_mask_nb",
                          "minprune.kernels_ref.nm_mask",
                          "minprune.prune.pruner.prune",
                          "minprune.exercises.lesson07._nm_truth"])
def check_nm_mask(fn, variant=None) -> None:
    """`fn(weight, n, m) -> boolean mask of weight's shape`: N:M sparsity. Flatten the weight to
    (out, in·kh·kw); in every run of m consecutive entries of a row keep the n largest |w|."""
    require_callable(fn, "fn")
    for name, w, n, m in _nm_cases(variant):
        want = _nm_truth(w, n, m)
        answer = fn(w.copy(), n, m)
        if answer is None:
            fail(f"fn({name}) returned None.", "did you forget a `return` statement?")
        got = np.asarray(answer)
        if got.shape != w.shape:
            fail(f"for {name} the mask has shape {got.shape}, expected the weight's {w.shape}.",
                 "reshape your (out, in·kh·kw // m, m) mask back with `.reshape(weight.shape)`.")
        got = got.astype(bool)
        if not np.array_equal(got, want):
            groups = got.reshape(w.shape[0], -1, m).sum(axis=-1)
            hint = (f"reshape |w| to (out, -1, {m}), keep the {n} largest of each last-axis run "
                    "(np.argsort along axis=-1), reshape back.")
            if not (groups == n).all():
                hint = f"each group of {m} must keep exactly {n}; yours keep {np.unique(groups)}."
            elif np.array_equal(got, _signed_nm(w, n, m)):
                hint = "rank |w|, not the signed w."
            elif np.array_equal(got, ~_nm_truth(w, m - n, m)):
                hint = "you kept the smallest; keep the largest |w|."
            fail(f"for {name} the mask is wrong in {int((got != want).sum())} places.", hint)
    correct("your N:M masks keep the right weights")


def _signed_nm(w, n, m) -> np.ndarray:
    groups = w.astype(np.float64).reshape(w.shape[0], -1, m)
    keep = np.zeros(groups.shape, bool)
    np.put_along_axis(keep, np.argsort(-groups, axis=-1, kind="stable")[..., :n], True, axis=-1)
    return keep.reshape(w.shape)
