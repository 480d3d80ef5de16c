"""Checkers of lessons 09 (how often) and 10 (when): a right answer passes, typical wrong answers
fail with a hint that names the mistake."""
import copy

import numpy as np
import pytest
from checking import fails as _fails

import minprune as mp
import minprune.exercises as ex

pytestmark = pytest.mark.schedules



# --- reference solutions (what a student should write) --------------------------------------------
def round_sparsities(s, rounds):
    out = [1 - (1 - s) ** (r / rounds) for r in range(1, rounds + 1)]
    out[-1] = s
    return out


def cubic_ramp(t, final, start, end, initial=0.0):
    frac = min(max((t - start) / (end - start), 0.0), 1.0)
    return final + (initial - final) * (1 - frac) ** 3


def snip_scores(model, x, y):
    model.zero_grad()
    mp.nn.functional.cross_entropy(model(mp.tensor(x)), y).backward()
    raw = {n: np.abs(m.weight.data * m.weight.grad)
           for n, m in mp.prune.prunable_layers(model).items()}
    total = sum(s.sum() for s in raw.values())
    return {n: s / total for n, s in raw.items()}


def synflow_scores(model, input_shape):
    work = copy.deepcopy(model)
    for p in work.parameters():
        p.data = np.abs(p.data)
    work.zero_grad()
    work(mp.tensor(np.ones((1, *input_shape), dtype=np.float32))).sum().backward()
    return {n: np.abs(m.weight.data * m.weight.grad)
            for n, m in mp.prune.prunable_layers(work).items()}


# --- right answers pass ----------------------------------------------------------------------------
@pytest.mark.parametrize("checker, fn", [
    (ex.check_round_sparsities, round_sparsities),
    (ex.check_cubic_ramp, cubic_ramp),
    (ex.check_snip_scores, snip_scores),
    (ex.check_synflow_scores, synflow_scores),
])
def test_correct_answers_pass(checker, fn, capsys):
    checker(fn)
    assert "✓ correct" in capsys.readouterr().out


def test_round_sparsities_accepts_numpy_arrays(capsys):
    ex.check_round_sparsities(lambda s, r: np.array(round_sparsities(s, r)))
    assert "✓ correct" in capsys.readouterr().out


def test_listed_in_all():
    for name in ("check_round_sparsities", "check_cubic_ramp", "check_snip_scores",
                 "check_synflow_scores"):
        assert name in ex.__all__


# --- wrong answers fail with the right hint ---------------------------------------------------------
def test_round_sparsities_wrong():
    _fails(ex.check_round_sparsities, lambda s, r: None, "return")
    _fails(ex.check_round_sparsities, lambda s, r: [s * k / r for k in range(1, r + 1)], "linear")
    _fails(ex.check_round_sparsities,
           lambda s, r: [(1 - s) ** (k / r) for k in range(1, r + 1)], "densities")
    _fails(ex.check_round_sparsities,
           lambda s, r: [1 - (1 - s) ** (k / r) for k in range(0, r + 1)], "round 1")
    _fails(ex.check_round_sparsities,
           lambda s, r: [1 - (1 - s) ** (1 / r)] * r, "left")
    # right formula, but the last entry is not pinned to s (1 − (1 − 0.1) != 0.1 in floating point)
    _fails(ex.check_round_sparsities,
           lambda s, r: [1 - (1 - s) ** (k / r) for k in range(1, r + 1)], "exactly")


def test_cubic_ramp_wrong():
    linear = lambda t, f, a, b, i=0.0: i + (f - i) * min(max((t - a) / (b - a), 0), 1)
    _fails(ex.check_cubic_ramp, linear, "linear")
    slow_first = lambda t, f, a, b, i=0.0: i + (f - i) * min(max((t - a) / (b - a), 0), 1) ** 3
    _fails(ex.check_cubic_ramp, slow_first, "slowly")
    unclamped = lambda t, f, a, b, i=0.0: (i if t < a else
                                           f + (i - f) * (1 - (t - a) / (b - a)) ** 3)
    _fails(ex.check_cubic_ramp, unclamped, "clamp")
    no_before = lambda t, f, a, b, i=0.0: f + (i - f) * (1 - min((t - a) / (b - a), 1)) ** 3
    _fails(ex.check_cubic_ramp, no_before, "before")
    no_initial = lambda t, f, a, b, i=0.0: cubic_ramp(t, f, a, b, 0.0) if t >= a else i
    _fails(ex.check_cubic_ramp, no_initial, "initial_sparsity")
    squared = lambda t, f, a, b, i=0.0: f + (i - f) * (1 - min(max((t - a) / (b - a), 0), 1)) ** 2
    _fails(ex.check_cubic_ramp, squared, "exponent")


def test_snip_scores_wrong():
    def unnormalised(model, x, y):
        model.zero_grad()
        mp.nn.functional.cross_entropy(model(mp.tensor(x)), y).backward()
        return {n: np.abs(m.weight.data * m.weight.grad)
                for n, m in mp.prune.prunable_layers(model).items()}

    def per_layer(model, x, y):
        return {n: s / s.sum() for n, s in unnormalised(model, x, y).items()}

    def signed(model, x, y):
        model.zero_grad()
        mp.nn.functional.cross_entropy(model(mp.tensor(x)), y).backward()
        raw = {n: m.weight.data * m.weight.grad
               for n, m in mp.prune.prunable_layers(model).items()}
        total = sum(np.abs(s).sum() for s in raw.values())
        return {n: s / total for n, s in raw.items()}

    def magnitude(model, x, y):
        w = {n: np.abs(m.weight.data) for n, m in mp.prune.prunable_layers(model).items()}
        total = sum(s.sum() for s in w.values())
        return {n: s / total for n, s in w.items()}

    _fails(ex.check_snip_scores, unnormalised, "without the normalisation")
    _fails(ex.check_snip_scores, per_layer, "its own sum")
    _fails(ex.check_snip_scores, signed, "absolute value")
    _fails(ex.check_snip_scores, magnitude, "differ from SNIP")
    _fails(ex.check_snip_scores, lambda model, x, y: [1, 2], "dict")
    with pytest.raises(TypeError, match="fn"):
        ex.check_snip_scores(3)


def test_synflow_scores_wrong():
    def signed_weights(model, input_shape):  # forgot |w|: not SynFlow
        work = copy.deepcopy(model)
        work.zero_grad()
        work(mp.tensor(np.ones((1, *input_shape), dtype=np.float32))).sum().backward()
        return {n: np.abs(m.weight.data * m.weight.grad)
                for n, m in mp.prune.prunable_layers(work).items()}

    def mean_output(model, input_shape):
        work = copy.deepcopy(model)
        for p in work.parameters():
            p.data = np.abs(p.data)
        work.zero_grad()
        work(mp.tensor(np.ones((1, *input_shape), dtype=np.float32))).mean().backward()
        return {n: np.abs(m.weight.data * m.weight.grad)
                for n, m in mp.prune.prunable_layers(work).items()}

    def magnitude(model, input_shape):
        return {n: np.abs(m.weight.data) for n, m in mp.prune.prunable_layers(model).items()}

    _fails(ex.check_synflow_scores, signed_weights, "SynFlow scores")
    _fails(ex.check_synflow_scores, mean_output, "constant factor")
    _fails(ex.check_synflow_scores, magnitude, "magnitude")
    _fails(ex.check_synflow_scores, lambda model, s: None, "dict")
