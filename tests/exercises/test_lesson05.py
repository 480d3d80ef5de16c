"""Checkers of lesson 05 (global vs layerwise): how many weights each layer loses."""
import copy

import numpy as np
import pytest
from checking import accepts, blocked, fails, fails_hidden, passes_hidden, replay_of

import minprune as mp
import minprune.exercises as ex
from minprune.course import notebooks as N

pytestmark = pytest.mark.course


def _weights(model):
    return {n: m.weight.data for n, m in mp.prune.prunable_layers(model).items()}


def layerwise_counts(model, s):
    return {n: round(s * w.size) for n, w in _weights(model).items()}


def global_counts(model, s):
    ws = _weights(model)
    mags = np.sort(np.concatenate([np.abs(w).ravel() for w in ws.values()]))
    t = mags[round(s * mags.size) - 1]
    return {n: int((np.abs(w) <= t).sum()) for n, w in ws.items()}


@pytest.mark.parametrize("exercise,check,answer", [
    ("05.1", ex.check_layerwise_counts, layerwise_counts),
    ("05.2", ex.check_global_counts, global_counts)])
def test_right_answers_pass_the_self_check_and_hidden_variants(exercise, check, answer, capsys):
    for fn in (answer, N.reference_answer(exercise)):
        accepts(check, fn, capsys=capsys)
        passes_hidden(check, fn)
    assert ex.EXERCISES[exercise] is check


def test_layerwise_mistakes():
    check = ex.check_layerwise_counts
    fails(check, lambda m, s: {n: int(s * w.size) for n, w in _weights(m).items()}, "truncates")
    fails(check, lambda m, s: {n: w.size - round(s * w.size) for n, w in _weights(m).items()},
          "kept")
    fails(check, lambda m, s: {"features.0": 1}, "no entry")
    fails(check, lambda m, s: [round(s * w.size) for w in _weights(m).values()], "dict")
    fails(check, lambda m, s: None, "return")
    fails(check, lambda m, s: {n: s * w.size for n, w in _weights(m).items()}, "whole number")
    fails(check, lambda m, s: {**layerwise_counts(m, s), "bias": 0}, "not prunable layers")
    total = lambda m: sum(w.size for w in _weights(m).values())  # noqa: E731
    fails(check, lambda m, s: {n: round(s * total(m)) for n in _weights(m)}, "whole network")
    # half right: every layer but the last
    def all_but_last(m, s):
        counts = layerwise_counts(m, s)
        counts[list(counts)[-1]] += 1
        return counts
    fails(check, all_but_last, "loses")


def test_global_mistakes():
    check = ex.check_global_counts
    fails(check, layerwise_counts, "layerwise counts")
    # half right: the notebook's s = 0.5 instead of the argument; right on the first case only
    fails(check, lambda m, s: global_counts(m, 0.5), "global pruning removes")

    def signed(model, s):
        ws = _weights(model)
        flat = np.sort(np.concatenate([w.ravel() for w in ws.values()]))
        t = flat[round(s * flat.size) - 1]
        return {n: int((w <= t).sum()) for n, w in ws.items()}

    def kept(model, s):
        return {n: w.size - c for (n, w), c in zip(_weights(model).items(),
                                                   global_counts(model, s).values())}

    def first_layer_only(model, s):
        counts = global_counts(model, s)
        first = next(iter(counts))
        w = _weights(model)[first]
        counts[first] = round(s * w.size)
        return counts

    fails(check, signed, "global pruning removes")
    fails(check, kept, "kept")
    fails(check, first_layer_only, "global pruning removes")
    fails(check, lambda m, s: {n: 0 for n in _weights(m)}, "threshold")


def test_ties_at_the_threshold_may_fall_either_way():
    """Counting |w| < t (ties kept) or exactly round(s·N) both pass."""
    def strict(model, s):
        ws = _weights(model)
        mags = np.sort(np.concatenate([np.abs(w).ravel() for w in ws.values()]))
        t = mags[round(s * mags.size) - 1]
        counts = {n: int((np.abs(w) < t).sum()) for n, w in ws.items()}
        for n, w in ws.items():  # then exactly the missing ones at the threshold
            if (np.abs(w) == t).any():
                counts[n] += round(s * mags.size) - sum(counts.values())
                break
        return counts
    ex.check_global_counts(strict)
    passes_hidden(ex.check_global_counts, strict)


def test_the_library_is_blocked():
    def with_prune(scope):
        def answer(model, s):
            pruned = copy.deepcopy(model)
            mp.prune.prune(pruned, s, scope=scope)
            return {n: int((w == 0).sum()) for n, w in _weights(pruned).items()}
        return answer

    err = blocked(ex.check_layerwise_counts, with_prune("layerwise"))
    assert "prune" not in str(err).replace("pruning", "").replace("minprune", "")
    blocked(ex.check_global_counts, with_prune("global"))

    def with_select(model, s):
        scores = {n: np.abs(w) for n, w in _weights(model).items()}
        keep = mp.prune.scope.select(scores, {n: 1 for n in scores}, s, "global")
        return {n: int((~k).sum()) for n, k in keep.items()}
    blocked(ex.check_global_counts, with_select)

    def with_lowest(model, s):
        ws = _weights(model)
        flat = np.concatenate([np.abs(w).ravel() for w in ws.values()])
        low, out, start = mp.prune.scope.lowest(flat, round(s * flat.size)), {}, 0
        for n, w in ws.items():
            out[n] = int(low[start:start + w.size].sum())
            start += w.size
        return out
    blocked(ex.check_global_counts, with_lowest)


@pytest.mark.parametrize("check,answer", [(ex.check_layerwise_counts, layerwise_counts),
                                          (ex.check_global_counts, global_counts)])
def test_a_replayed_answer_fails_the_hidden_variants(check, answer):
    fails_hidden(check, replay_of(check, answer))


def test_hidden_variants_differ_from_the_self_check():
    seen = []

    def spy(model, s):
        seen.append((tuple(w.shape for w in _weights(model).values()), s))
        return layerwise_counts(model, s)
    ex.check_layerwise_counts(spy)
    public = set(seen)
    seen.clear()
    ex.check_layerwise_counts(spy, variant=3)
    assert not public & set(seen)
    assert len({shapes for shapes, _ in seen}) >= 2


def test_non_callables_are_refused():
    with pytest.raises(TypeError, match="fn"):
        ex.check_layerwise_counts(0.5)


# --- half-right answers ---------------------------------------------------------------------------
def test_global_counts_with_the_right_total_but_the_wrong_split_fail():
    """One weight moved from one layer's count to another's: every layer but two is right, and the
    total is exactly k, so only a check of every layer catches it (`all`, not `any`)."""
    def shifted(model, s):
        counts = global_counts(model, s)
        first, last = list(counts)[0], list(counts)[-1]
        counts[first] += 1
        counts[last] -= 1
        return counts

    fails(ex.check_global_counts, shifted, "global pruning removes")
    for seed in (11, 2024):
        with pytest.raises(AssertionError, match="global pruning removes"):
            ex.check_global_counts(shifted, variant=seed)


def test_layerwise_counts_without_the_conv_layers_fail():
    def linear_only(model, s):   # right on LeNet-300-100, wrong on LeNet-5's conv layers
        return {n: round(s * w.size) if w.ndim == 2 else 0 for n, w in _weights(model).items()}

    fails(ex.check_layerwise_counts, linear_only, "loses")


def test_counts_by_hand():
    """The test's own answers on a net small enough to count by hand: Linear(2, 2) with |w| 1..4
    and Linear(2, 1) with |w| 0.5, 5. Global 50% prunes the 3 smallest of 6: 0.5, 1, 2."""
    a, b = mp.nn.Linear(2, 2), mp.nn.Linear(2, 1)
    a.weight.data[...] = [[1, -2], [3, -4]]
    b.weight.data[...] = [[0.5, -5]]
    net = mp.nn.Sequential(a, mp.nn.ReLU(), b)
    assert global_counts(net, 0.5) == {"0": 2, "2": 1}
    assert layerwise_counts(net, 0.5) == {"0": 2, "2": 1}
    assert global_counts(net, 0.34) == {"0": 1, "2": 1}      # k = round(2.04) = 2: 0.5 and 1
    assert layerwise_counts(net, 0.34) == {"0": 1, "2": 1}   # round(1.36), round(0.68)
