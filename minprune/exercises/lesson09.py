"""Checkers of lesson 09 — one-shot vs iterative vs gradual (`lessons/09_one_shot_vs_iterative.ipynb`)."""
from __future__ import annotations

import numpy as np

from .core import (
    as_array,
    correct,
    fail,
    require_callable,
)


def check_round_sparsities(fn) -> None:
    """`fn(sparsity, rounds) -> list`: the cumulative sparsity after each round of iterative
    pruning when every round keeps the same fraction (1 − s)^(1/rounds) of the survivors; the last
    entry is exactly `sparsity`. Compared with `schedules.round_sparsities`."""
    require_callable(fn, "fn")
    from ..prune.schedules import round_sparsities

    for s, rounds in [(0.9, 3), (0.98, 5), (0.5, 1), (0.1, 1), (0.1, 4), (0.999, 10), (0.7, 2)]:
        want = round_sparsities(s, rounds)
        answer = fn(s, rounds)
        if answer is None:
            fail(f"fn({s}, {rounds}) returned None.", "did you forget a `return` statement?")
        got = as_array(list(answer), f"fn({s}, {rounds})").ravel()
        if got.size != rounds:
            hint = "one cumulative sparsity per round: r = 1, ..., rounds."
            if got.size == rounds + 1:
                hint = "start at round 1, not 0: the list should not include the dense start."
            fail(f"fn({s}, {rounds}) returned {got.size} values, expected {rounds}.", hint)
        if not np.allclose(got, want, atol=1e-9):
            hint = ("after round r the network keeps (1 − s)^(r/rounds) of its weights, so the "
                    "sparsity is 1 − (1 − s)^(r/rounds).")
            r = np.arange(1, rounds + 1)
            if np.allclose(got, s * r / rounds):
                hint = ("that is a linear schedule (the same number of weights every round); "
                        "iterative pruning keeps the same *fraction* of the survivors: "
                        "1 − (1 − s)^(r/rounds).")
            elif np.allclose(got, (1 - s) ** (r / rounds)):
                hint = "those are the fractions kept (densities); return sparsities, 1 − density."
            elif np.allclose(got, 1 - (1 - s) ** (rounds / r)):
                hint = "the exponent is r/rounds, not rounds/r."
            elif np.allclose(got, np.full(rounds, 1 - (1 - s) ** (1 / rounds))):
                hint = ("each round keeps (1 − s)^(1/rounds) of what is *left*, so the cumulative "
                        "sparsity after round r is 1 − (1 − s)^(r/rounds), not the same every round.")
            fail(f"fn({s}, {rounds}) = {np.round(got, 6).tolist()}, expected "
                 f"{np.round(want, 6).tolist()}.", hint)
        if float(got[-1]) != s:
            fail(f"fn({s}, {rounds})[-1] = {float(got[-1])!r}, not exactly {s!r}.",
                 "floating point: 1 − (1 − s)^1 can differ from s in the last digit; set the last "
                 "entry to `sparsity` itself so the final pruning count is exact.")
    correct("your schedule matches schedules.round_sparsities")


def check_cubic_ramp(fn) -> None:
    """`fn(step, final_sparsity, start, end, initial_sparsity=0.0) -> float`: Zhu & Gupta's
    scheduled sparsity s_t = s_f + (s_i − s_f)(1 − (t − t0)/(end − t0))³, equal to s_i before
    `start` and to s_f after `end`. Compared with `schedules.gradual(...).target(step)`."""
    require_callable(fn, "fn")
    from ..prune.schedules import gradual

    for final, start, end, initial in [(0.9, 0, 100, 0.0), (0.98, 50, 250, 0.0),
                                       (0.8, 10, 40, 0.3)]:
        ramp = gradual(final, start, end, every=1, initial_sparsity=initial)
        for t in sorted({0, start, start + 1, (start + end) // 3, (start + end) // 2, end - 1,
                         end, end + 1, end + 100}):
            want = ramp.target(t)
            got = float(as_array(fn(t, final, start, end, initial), f"fn({t}, {final}, {start}, "
                                                                    f"{end}, {initial})"))
            if not np.isclose(got, want, atol=1e-9):
                frac = (t - start) / (end - start)
                hint = "s_t = s_f + (s_i − s_f)·(1 − (t − start)/(end − start))³."
                if t < start:
                    hint = "before `start` nothing is pruned yet: return initial_sparsity."
                elif t > end:
                    hint = "after `end` the ramp is over: clamp the progress to 1 (sparsity s_f)."
                elif np.isclose(got, initial + (final - initial) * frac):
                    hint = ("that is a linear ramp; Zhu & Gupta's is cubic: "
                            "s_f + (s_i − s_f)(1 − progress)³.")
                elif np.isclose(got, initial + (final - initial) * frac ** 3):
                    hint = ("that ramp starts slowly and ends fast; the cubic schedule cubes "
                            "(1 − progress), so it prunes fast first and slowly at the end.")
                elif np.isclose(got, final * (1 - (1 - frac) ** 3)) and initial:
                    hint = "you left out initial_sparsity: s_f + (s_i − s_f)(1 − progress)³."
                elif np.isclose(got, final + (initial - final) * (1 - frac) ** 2):
                    hint = "the exponent is 3."
                fail(f"fn({t}, final_sparsity={final}, start={start}, end={end}, "
                     f"initial_sparsity={initial}) = {got:.6f}, expected {want:.6f}.", hint)
    correct("your ramp matches schedules.gradual(...).target")
