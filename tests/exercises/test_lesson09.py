"""Checkers of lesson 09 (one-shot, iterative, gradual): the lesson's reference answers pass the
self-check and hidden variants; typical mistakes fail with their hint; the library's schedules are
blocked; a replayed answer fails a hidden variant."""
import numpy as np
import pytest
from checking import accepts, blocked, fails, fails_hidden, passes_hidden, replay_of

import minprune as mp
import minprune.exercises as ex
from minprune.course import notebooks as N
from minprune.prune import schedules

pytestmark = pytest.mark.course


# --- 09.1 cumulative sparsity per round ---------------------------------------------------------
def _rounds(s, rounds):
    kept = 1.0
    out = []
    for _ in range(rounds):
        kept *= (1 - s) ** (1 / rounds)   # each round keeps the same fraction of the survivors
        out.append(1 - kept)
    out[-1] = s
    return out


def test_round_sparsities_reference(capsys):
    answer = N.reference_answer("09.1")
    accepts(ex.check_round_sparsities, answer, capsys=capsys)
    passes_hidden(ex.check_round_sparsities, answer)
    accepts(ex.check_round_sparsities, _rounds, capsys=capsys)
    accepts(ex.check_round_sparsities, lambda s, r: np.array(_rounds(s, r)), capsys=capsys)
    passes_hidden(ex.check_round_sparsities, _rounds)


def test_round_sparsities_mistakes():
    check = ex.check_round_sparsities
    fails(check, lambda s, r: None, "return")
    fails(check, lambda s, r: 3, "list")
    fails(check, lambda s, r: [s * k / r for k in range(1, r + 1)], "linear")
    fails(check, lambda s, r: [(1 - s) ** (k / r) for k in range(1, r + 1)], "densities")
    fails(check, lambda s, r: [1 - (1 - s) ** (k / r) for k in range(0, r + 1)], "round 1")
    fails(check, lambda s, r: [1 - (1 - s) ** (1 / r)] * r, "left")
    fails(check, lambda s, r: [1 - (1 - s) ** (r / k) for k in range(1, r + 1)], "exponent")
    # the right formula, but the last entry is not pinned to s (1 − (1 − 0.1) != 0.1 in floats)
    fails(check, lambda s, r: [1 - (1 - s) ** (k / r) for k in range(1, r + 1)], "exactly")
    with pytest.raises(TypeError, match="fn"):
        check(3)


def test_round_sparsities_unpinned_last_entry_fails_hidden_variants_too():
    unpinned = lambda s, r: [1 - (1 - s) ** (k / r) for k in range(1, r + 1)]   # noqa: E731
    for seed in (11, 2024, 987654321):
        with pytest.raises(AssertionError, match="exactly"):
            ex.check_round_sparsities(unpinned, variant=seed)


def test_round_sparsities_through_the_library_is_blocked():
    err = blocked(ex.check_round_sparsities, lambda s, r: schedules.round_sparsities(s, r))
    assert "round_sparsities" not in str(err)
    blocked(ex.check_round_sparsities, lambda s, r: mp.prune.schedules.round_sparsities(s, r))

    def through_iterative(s, r):   # the iterative schedule's own history, on a small model
        model = mp.nn.Sequential(mp.nn.Linear(50, 40))
        return [row["sparsity"] for row in schedules.iterative(model, s, rounds=r)[1:]]
    blocked(ex.check_round_sparsities, through_iterative)


def test_round_sparsities_replayed_fails_hidden():
    check = ex.check_round_sparsities
    fails_hidden(check, replay_of(check, _rounds))


def test_round_sparsities_messages_do_not_name_the_library(capsys):
    ex.check_round_sparsities(_rounds)
    assert "round_sparsities" not in capsys.readouterr().out
    with pytest.raises(AssertionError) as err:
        ex.check_round_sparsities(lambda s, r: [s * k / r for k in range(1, r + 1)])
    assert "schedules" not in str(err.value)


# --- 09.2 the cubic ramp ------------------------------------------------------------------------
def _ramp(t, final, start, end, initial=0.0):
    if t <= start:
        return initial
    if t >= end:
        return final
    left = 1 - (t - start) / (end - start)
    return final - (final - initial) * left * left * left


def _progress(t, a, b):
    return min(max((t - a) / (b - a), 0), 1)


def test_cubic_ramp_reference(capsys):
    answer = N.reference_answer("09.2")
    accepts(ex.check_cubic_ramp, answer, capsys=capsys)
    passes_hidden(ex.check_cubic_ramp, answer)
    accepts(ex.check_cubic_ramp, _ramp, capsys=capsys)
    passes_hidden(ex.check_cubic_ramp, _ramp)


def test_cubic_ramp_mistakes():
    check = ex.check_cubic_ramp
    fails(check, lambda t, f, a, b, i=0.0: i + (f - i) * _progress(t, a, b), "linear")
    fails(check, lambda t, f, a, b, i=0.0: i + (f - i) * _progress(t, a, b) ** 3, "slowly")
    unclamped = lambda t, f, a, b, i=0.0: i if t < a else f + (i - f) * (1 - (t - a) / (b - a)) ** 3  # noqa: E731
    fails(check, unclamped, "clamp")
    no_before = lambda t, f, a, b, i=0.0: f + (i - f) * (1 - min((t - a) / (b - a), 1)) ** 3  # noqa: E731
    fails(check, no_before, "before")
    fails(check, lambda t, f, a, b, i=0.0: _ramp(t, f, a, b, 0.0) if t >= a else i, "initial_sparsity")
    fails(check, lambda t, f, a, b, i=0.0: f + (i - f) * (1 - _progress(t, a, b)) ** 2, "exponent")
    fails(check, lambda t, f, a, b, i=0.0: None, "return")


def test_cubic_ramp_half_right_answers_fail_hidden_variants():
    # progress measured from 0 instead of from `start`: right whenever start = 0
    from_zero = lambda t, f, a, b, i=0.0: i if t < a else f + (i - f) * (1 - min(t / b, 1)) ** 3  # noqa: E731
    for seed in (11, 2024, 987654321):
        with pytest.raises(AssertionError, match="start"):
            ex.check_cubic_ramp(from_zero, variant=seed)


def test_cubic_ramp_through_the_library_is_blocked():
    def through_gradual(t, f, a, b, i=0.0):
        return schedules.gradual(f, a, b, initial_sparsity=i).target(t)
    err = blocked(ex.check_cubic_ramp, through_gradual)
    assert "gradual" not in str(err)


def test_cubic_ramp_replayed_fails_hidden():
    fails_hidden(ex.check_cubic_ramp, replay_of(ex.check_cubic_ramp, _ramp))


def test_cubic_ramp_messages_do_not_name_the_library(capsys):
    ex.check_cubic_ramp(_ramp)
    assert "gradual" not in capsys.readouterr().out


# --- half-right answers ---------------------------------------------------------------------------
def test_round_sparsities_with_integer_division_fails():
    # (1 − s)^(r // rounds): 0 for every round but the (pinned) last; right when rounds = 1
    fails(ex.check_round_sparsities,
          lambda s, r: [1 - (1 - s) ** (k // r) for k in range(1, r)] + [s], "expected")
    # by hand: 75% in two rounds keeps √0.25 = 0.5 after the first
    assert _rounds(0.75, 2) == [0.5, 0.75]


def test_cubic_ramp_zero_before_start_fails():
    # before `start` returns 0 instead of initial_sparsity: right whenever initial_sparsity = 0
    fails(ex.check_cubic_ramp, lambda t, f, a, b, i=0.0: 0.0 if t < a else _ramp(t, f, a, b, i),
          "before `start`")
    # by hand: halfway through a 0 → 0.8 ramp, 0.8 − 0.8·0.5³ = 0.7
    assert _ramp(50, 0.8, 0, 100) == pytest.approx(0.7)
