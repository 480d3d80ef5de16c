"""Checkers of lesson 07 — structured vs unstructured (`lessons/07_structured_vs_unstructured.ipynb`)."""
from __future__ import annotations

import numpy as np

from .core import (
    as_array,
    correct,
    fail,
    require_callable,
)


def _filter_cases(rng):
    return {"a Conv2d weight (8, 3, 3, 3)": rng.normal(size=(8, 3, 3, 3)).astype(np.float32),
            "a Conv2d weight (4, 6, 5, 5)": rng.normal(size=(4, 6, 5, 5)).astype(np.float32),
            "a Linear weight (10, 12)": rng.normal(size=(10, 12)).astype(np.float32)}


def check_filter_l1_scores(fn) -> None:
    """`fn(weight) -> array (out,)`: the L1 norm of each filter (each output unit) of a Conv2d
    (out, in, kh, kw) or Linear (out, in) weight — the score of Li et al. (2017)'s filter pruning,
    the same as magnitude + granularity="filter" + reduce="l1"."""
    require_callable(fn, "fn")
    from ..prune import structures

    gran = structures.parse("filter")
    for name, w in _filter_cases(np.random.default_rng(10)).items():
        want = gran.group_scores(np.abs(w), "l1")
        got = as_array(fn(w.copy()), f"fn({name})")
        if got.shape != want.shape:
            hint = "one score per output unit: reduce over every axis except axis 0."
            if got.shape == w.shape[1:2]:
                hint = "you reduced over axis 0, which scores input channels; filters are axis 0."
            fail(f"for {name} expected shape {want.shape}, got {got.shape}.", hint)
        if not np.allclose(got, want, rtol=1e-5):
            hint = "L1 norm: sum of |w| over the filter's in·kh·kw weights."
            flat = w.reshape(w.shape[0], -1)
            if np.allclose(got, flat.sum(axis=1)):
                hint = "take absolute values before summing: L1 = Σ|w|."
            elif np.allclose(got, np.sqrt((flat ** 2).sum(axis=1))):
                hint = "that is the L2 norm; L1 is Σ|w|."
            elif np.allclose(got, np.abs(flat).mean(axis=1)):
                hint = "that is the mean |w|; L1 is the sum."
            fail(f"for {name} the scores are wrong: expected {np.round(want[:3], 4)}..., got "
                 f"{np.round(got[:3], 4)}...", hint)
    correct("your filter L1 norms match granularity='filter', reduce='l1'")


def check_nm_mask(fn) -> None:
    """`fn(weight, n, m) -> boolean mask of weight's shape`: N:M sparsity. Flatten the weight to
    (out, in·kh·kw); in every run of m consecutive entries of a row keep the n largest |w|."""
    require_callable(fn, "fn")
    from ..prune import structures

    rng = np.random.default_rng(11)
    cases = [("a Linear weight (4, 8), 2:4", rng.normal(size=(4, 8)), 2, 4),
             ("a Conv2d weight (6, 4, 3, 3), 2:4", rng.normal(size=(6, 4, 3, 3)), 2, 4),
             ("a Conv2d weight (3, 2, 2, 2), 1:4", rng.normal(size=(3, 2, 2, 2)), 1, 4),
             ("a Linear weight (2, 16), 2:8", rng.normal(size=(2, 16)), 2, 8)]
    for name, w, n, m in cases:
        w = w.astype(np.float32)
        want = structures.parse(f"{n}:{m}").nm_mask(np.abs(w))
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
            elif np.array_equal(got, structures.parse(f"{n}:{m}").nm_mask(w)):
                hint = "rank |w|, not the signed w."
            elif np.array_equal(got, structures.parse(f"{n}:{m}").nm_mask(-np.abs(w))):
                hint = "you kept the smallest; keep the largest |w|."
            fail(f"for {name} the mask differs from minprune's in "
                 f"{int((got != want).sum())} places.", hint)
    correct("your N:M masks match granularity='N:M'")
