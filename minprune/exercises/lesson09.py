"""Checkers of lesson 09 — one-shot vs iterative vs gradual (`lessons/09_one_shot_vs_iterative.ipynb`)."""
from __future__ import annotations

import numpy as np

from .core import as_array, correct, exercise, fail, require_callable, rng_for


def _round_sparsities(s: float, rounds: int) -> list[float]:
    """The truth: the same keep fraction (1 − s)^(1/rounds) every round, the last entry exactly s."""
    out = [1.0 - (1.0 - s) ** (r / rounds) for r in range(1, rounds + 1)]
    out[-1] = s
    return out


def _round_cases(variant) -> list[tuple[float, int]]:
    if variant is None:
        return [(0.9, 3), (0.98, 5), (0.5, 1), (0.1, 1), (0.1, 4), (0.999, 10), (0.7, 2)]
    rng = rng_for(variant)
    cases = [(float(rng.uniform(0.05, 0.995)), int(rng.integers(2, 13))) for _ in range(5)]
    cases.append((float(rng.uniform(0.3, 0.9)), 1))
    # one case where 1 − (1 − s) is not exactly s in floating point, so the last entry must be pinned
    while True:
        s = float(rng.uniform(0.01, 0.45))
        if 1.0 - (1.0 - s) != s:
            break
    cases.append((s, int(rng.integers(2, 9))))
    return cases


@exercise("09.1", blocks=["minprune.prune.schedules.round_sparsities"])
def check_round_sparsities(fn, variant=None) -> None:
    """`fn(sparsity, rounds) -> list`: the cumulative sparsity after each round of iterative
    pruning when every round keeps the same fraction (1 − s)^(1/rounds) of the survivors; the last
    entry is exactly `sparsity`. Hidden variants draw other sparsities and numbers of rounds."""
    require_callable(fn, "fn")
    for s, rounds in _round_cases(variant):
        want = np.array(_round_sparsities(s, rounds))
        answer = fn(s, rounds)
        if answer is None:
            fail(f"fn({s:.6g}, {rounds}) returned None.", "did you forget a `return` statement?")
        try:
            got = as_array(list(answer), f"fn({s:.6g}, {rounds})").ravel()
        except (TypeError, ValueError):
            fail(f"fn({s:.6g}, {rounds}) returned {type(answer).__name__}, expected a list of "
                 f"{rounds} numbers.", "return one cumulative sparsity per round, as a list.")
        if got.size != rounds:
            hint = "one cumulative sparsity per round: r = 1, ..., rounds."
            if got.size == rounds + 1:
                hint = "start at round 1, not 0: the list should not include the dense start."
            fail(f"fn({s:.6g}, {rounds}) returned {got.size} values, expected {rounds}.", hint)
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
            fail(f"fn({s:.6g}, {rounds}) = {np.round(got, 6).tolist()}, expected "
                 f"{np.round(want, 6).tolist()}.", hint)
        if float(got[-1]) != s:
            fail(f"fn({s!r}, {rounds})[-1] = {float(got[-1])!r}, not exactly {s!r}.",
                 "floating point: 1 − (1 − s)^1 can differ from s in the last digit; set the last "
                 "entry to `sparsity` itself so the final pruning count is exact.")
    correct("every round keeps the same fraction of the survivors, and the last round lands "
            "exactly on the target")


def _cubic(t, final, start, end, initial) -> float:
    """The truth: s_f + (s_i − s_f)(1 − progress)³, progress clamped to [0, 1]."""
    frac = min(max((t - start) / (end - start), 0.0), 1.0)
    return final + (initial - final) * (1.0 - frac) ** 3


def _ramp_cases(variant) -> list[tuple[float, int, int, float]]:
    if variant is None:
        return [(0.9, 0, 100, 0.0), (0.98, 50, 250, 0.0), (0.8, 10, 40, 0.3)]
    rng = rng_for(variant, 1)
    cases = []
    for initial in (0.0, 0.0, float(rng.uniform(0.1, 0.45))):
        start = int(rng.integers(1, 200))
        end = start + int(rng.integers(20, 600))
        cases.append((round(float(rng.uniform(0.5, 0.99)), 4), start, end, round(initial, 4)))
    return cases


def _ramp_steps(start, end, rng) -> list[int]:
    steps = {0, start, start + 1, (start + end) // 3, (start + end) // 2, end - 1, end, end + 1,
             end + 100}
    if rng is not None:
        steps |= {int(t) for t in rng.integers(start, end, 4)} | {end + int(rng.integers(2, 1000))}
    return sorted(steps)


@exercise("09.2", blocks=["minprune.prune.schedules.gradual.target"])
def check_cubic_ramp(fn, variant=None) -> None:
    """`fn(step, final_sparsity, start, end, initial_sparsity=0.0) -> float`: Zhu & Gupta's
    scheduled sparsity s_t = s_f + (s_i − s_f)(1 − (t − t0)/(end − t0))³, equal to s_i before
    `start` and to s_f after `end`. Hidden variants draw other sparsities and step ranges."""
    require_callable(fn, "fn")
    rng = None if variant is None else rng_for(variant, 2)
    for final, start, end, initial in _ramp_cases(variant):
        for t in _ramp_steps(start, end, rng):
            want = _cubic(t, final, start, end, initial)
            call = f"fn({t}, final_sparsity={final}, start={start}, end={end}, " \
                   f"initial_sparsity={initial})"
            got = float(as_array(fn(t, final, start, end, initial), call))
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
                elif initial and np.isclose(got, final * (1 - (1 - frac) ** 3)):
                    hint = "you left out initial_sparsity: s_f + (s_i − s_f)(1 − progress)³."
                elif np.isclose(got, final + (initial - final) * (1 - frac) ** 2):
                    hint = "the exponent is 3."
                elif np.isclose(got, final + (initial - final) * (1 - t / end) ** 3):
                    hint = "progress is measured from `start`: (t − start)/(end − start), not t/end."
                fail(f"{call} = {got:.6f}, expected {want:.6f}.", hint)
    correct("your ramp follows the cubic schedule before, during and after the pruning window")
