"""Checkers of lesson 04 (what is pruning): reference answers pass the self-check and hidden
variants; typical mistakes fail with their hint; the library's own sparsity, pruning and criteria
are blocked; a replayed answer fails a hidden variant."""
import copy

import numpy as np
import pytest
from checking import accepts, blocked, fails, fails_hidden, passes_hidden, replay_of

import minprune as mp
import minprune.exercises as ex
from minprune.course import notebooks as N

pytestmark = pytest.mark.course


def _weights(model):
    return [m.weight.data for m in model.modules() if isinstance(m, (mp.nn.Conv2d, mp.nn.Linear))]


# --- 04.1 sparsity ------------------------------------------------------------------------------
def _sparsity(model):
    ws = _weights(model)
    return sum(w.size - np.count_nonzero(w) for w in ws) / sum(w.size for w in ws)


def test_sparsity_reference(capsys):
    answer = N.reference_answer("04.1")
    accepts(ex.check_sparsity, answer, capsys=capsys)
    passes_hidden(ex.check_sparsity, answer)
    accepts(ex.check_sparsity, _sparsity, capsys=capsys)


def test_sparsity_mistakes():
    def from_masks(model):
        masks = [m.weight.mask for m in model.modules()
                 if isinstance(m, (mp.nn.Conv2d, mp.nn.Linear))]
        return sum(0 if k is None else int((~k).sum()) for k in masks) / sum(
            w.size for w in _weights(model))

    fails(ex.check_sparsity, lambda m: 1 - _sparsity(m), "density")
    fails(ex.check_sparsity, lambda m: 100 * _sparsity(m), "percentage")
    fails(ex.check_sparsity, lambda m: _sparsity(m) * sum(w.size for w in _weights(m)), "number of zeros")
    fails(ex.check_sparsity, lambda m: np.mean([(w == 0).mean() for w in _weights(m)]),
          "averaged the per-layer")
    fails(ex.check_sparsity, lambda m: sum((p.data == 0).sum() for p in m.parameters())
          / sum(p.size for p in m.parameters()), "biases")
    fails(ex.check_sparsity, from_masks, "without")
    fails(ex.check_sparsity, lambda m: float((_weights(m)[0] == 0).mean()), "sparsity is")  # one layer
    fails(ex.check_sparsity, lambda m: None, "return")


def test_sparsity_refuses_non_callables():
    with pytest.raises(TypeError, match="fn"):
        ex.check_sparsity(0.5)


def test_sparsity_through_the_library_is_blocked():
    for answer in (lambda m: mp.prune.sparsity(m),
                   lambda m: 1 - mp.prune.count_nonzero(m) / mp.prune.count_params(m),
                   lambda m: mp.prune.report(m, (1, 28, 28), show=False)[-1]["sparsity"],
                   lambda m: mp.prune.metrics.sparsity(m)):
        blocked(ex.check_sparsity, answer)


def test_sparsity_messages_do_not_name_the_library():
    with pytest.raises(AssertionError) as err:
        ex.check_sparsity(lambda m: 1 - _sparsity(m))
    assert "mp.prune" not in str(err.value) and "metrics" not in str(err.value)


def test_sparsity_replayed_fails_hidden():
    fails_hidden(ex.check_sparsity, replay_of(ex.check_sparsity, _sparsity))


# --- 04.2 global threshold ----------------------------------------------------------------------
def _threshold(model, s):
    mags = np.sort(np.abs(np.concatenate([w.ravel() for w in _weights(model)])))
    return mags[round(s * mags.size) - 1]


def test_global_threshold_reference(capsys):
    answer = N.reference_answer("04.2")
    accepts(ex.check_global_threshold, answer, capsys=capsys)
    passes_hidden(ex.check_global_threshold, answer)
    accepts(ex.check_global_threshold, _threshold, capsys=capsys)


def test_global_threshold_mistakes():
    def signed(model, s):
        w = np.sort(np.concatenate([w.ravel() for w in _weights(model)]))
        return w[round(s * w.size) - 1]

    def one_layer(model, s):
        w = np.sort(np.abs(_weights(model)[0]).ravel())
        return w[round(s * w.size) - 1]

    def off_by_one(model, s):
        mags = np.sort(np.abs(np.concatenate([w.ravel() for w in _weights(model)])))
        return mags[round(s * mags.size)]

    def truncating(model, s):
        mags = np.sort(np.abs(np.concatenate([w.ravel() for w in _weights(model)])))
        return mags[int(s * mags.size) - 1]

    fails(ex.check_global_threshold, signed, "magnitudes")
    fails(ex.check_global_threshold, one_layer, "threshold must lie")
    fails(ex.check_global_threshold, off_by_one, "off by one")
    fails_hidden(ex.check_global_threshold, truncating)
    with pytest.raises(AssertionError, match="round"):
        for seed in (11, 2024, 987654321, 5, 6, 7):
            ex.check_global_threshold(truncating, variant=seed)
    fails(ex.check_global_threshold, lambda m, s: _threshold(m, s) * 1.5, "threshold")


def test_global_threshold_through_the_library_is_blocked():
    def by_pruning(model, s):
        pruned = copy.deepcopy(model)
        mp.prune.prune(pruned, s, criterion="magnitude", scope="global")
        mags = np.concatenate([np.abs(w).ravel() for w in _weights(model)])
        gone = np.concatenate([(w == 0).ravel() for w in _weights(pruned)])
        return mags[gone].max()

    blocked(ex.check_global_threshold, by_pruning)


def test_global_threshold_replayed_fails_hidden():
    fails_hidden(ex.check_global_threshold, replay_of(ex.check_global_threshold, _threshold))


# --- 04.3 gradient scores -----------------------------------------------------------------------
def _layers(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, (mp.nn.Conv2d, mp.nn.Linear))}


def _scores(model, x, y):
    for p in model.parameters():
        p.grad = None
    mp.nn.functional.cross_entropy(model(mp.tensor(x)), y).backward()
    return {n: np.abs(m.weight.data * m.weight.grad) for n, m in _layers(model).items()}


def test_gradient_scores_reference(capsys):
    answer = N.reference_answer("04.3")
    accepts(ex.check_gradient_scores, answer, capsys=capsys)
    passes_hidden(ex.check_gradient_scores, answer)
    accepts(ex.check_gradient_scores, _scores, capsys=capsys)


def test_gradient_scores_mistakes():
    def no_abs(model, x, y):
        model.zero_grad()
        mp.nn.functional.cross_entropy(model(mp.tensor(x)), y).backward()
        return {n: m.weight.data * m.weight.grad for n, m in _layers(model).items()}

    def no_zero_grad(model, x, y):
        mp.nn.functional.cross_entropy(model(mp.tensor(x)), y).backward()
        return {n: np.abs(m.weight.data * m.weight.grad) for n, m in _layers(model).items()}

    def grad_only(model, x, y):
        _scores(model, x, y)
        return {n: np.abs(m.weight.grad) for n, m in _layers(model).items()}

    def summed_loss(model, x, y):
        return {n: s * len(y) for n, s in _scores(model, x, y).items()}

    def one_layer_short(model, x, y):
        scores = _scores(model, x, y)
        return dict(list(scores.items())[:-1])

    fails(ex.check_gradient_scores, no_abs, "absolute value")
    fails(ex.check_gradient_scores, no_zero_grad, "zero_grad")
    fails(ex.check_gradient_scores, grad_only, "alone")
    fails(ex.check_gradient_scores, summed_loss, "mean")
    fails(ex.check_gradient_scores, lambda m, x, y: {n: np.abs(l.weight.data)
                                                     for n, l in _layers(m).items()}, "magnitude")
    fails(ex.check_gradient_scores, one_layer_short, "no scores for layer")
    fails(ex.check_gradient_scores, lambda m, x, y: [1], "dict")


def test_gradient_scores_through_the_library_is_blocked():
    def by_criterion(name):
        return lambda m, x, y: mp.prune.criteria.CRITERIA[name](m, _layers(m), (x, y))

    blocked(ex.check_gradient_scores,
            lambda m, x, y: mp.prune.criteria.gradient(m, mp.prune.prunable_layers(m), (x, y)))
    for name in ("gradient", "snip", "taylor", "fisher"):
        blocked(ex.check_gradient_scores, by_criterion(name))


def test_gradient_scores_replayed_fails_hidden():
    fails_hidden(ex.check_gradient_scores, replay_of(ex.check_gradient_scores, _scores))


# --- half-right answers: right on some models or layers, wrong on others --------------------------
def test_sparsity_of_linear_layers_only_fails():
    def linear_only(m):   # right on LeNet-300-100 (all Linear), wrong on every LeNet-5
        ws = [x.weight.data for x in m.modules() if isinstance(x, mp.nn.Linear)]
        return sum(int((w == 0).sum()) for w in ws) / sum(w.size for w in ws)

    fails(ex.check_sparsity, linear_only, "sparsity is")
    # by hand: 3 zeros among a Conv2d(1, 1, 2)'s 4 weights and a Linear(2, 2)'s 4 → 3/8
    conv, lin = mp.nn.Conv2d(1, 1, 2), mp.nn.Linear(2, 2)
    conv.weight.data[...] = [[[[0, 1], [2, 0]]]]
    lin.weight.data[...] = [[0, 3], [4, 5]]
    assert _sparsity(mp.nn.Sequential(conv, mp.nn.Flatten(), lin)) == 3 / 8


def test_global_threshold_of_linear_layers_only_fails():
    def linear_only(model, s):   # right on LeNet-300-100, wrong on LeNet-5 and the conv nets
        mags = np.sort(np.abs(np.concatenate([x.weight.data.ravel() for x in model.modules()
                                              if isinstance(x, mp.nn.Linear)])))
        return mags[round(s * mags.size) - 1]

    fails(ex.check_global_threshold, linear_only, "threshold must lie")
    # by hand: |w| = 0.1, 0.2, 0.3, 0.4 → at sparsity 0.5 the 2nd smallest, 0.2, is the threshold
    lin = mp.nn.Linear(2, 2)
    lin.weight.data[...] = [[0.3, -0.1], [0.4, -0.2]]
    assert _threshold(mp.nn.Sequential(lin), 0.5) == np.float32(0.2)


def test_gradient_scores_half_right_fails():
    def first_layer_wrong(model, x, y):   # every layer right but the first, scored |g| alone
        scores = _scores(model, x, y)
        first = next(iter(scores))
        scores[first] = np.abs(_layers(model)[first].weight.grad)
        return scores

    fails(ex.check_gradient_scores, first_layer_wrong, "alone")


def test_gradient_scores_by_hand_written_backprop_pass(capsys):
    """An answer that never calls the library's autograd: backprop written in NumPy (tests/
    exercises/numpy_nets.py) agrees with the checker on LeNet-5 and on the hidden variants."""
    from numpy_nets import gradients

    def by_hand(model, x, y):
        grads = gradients(model, x, y)
        return {n: np.abs(m.weight.data.astype(np.float64) * grads[n])
                for n, m in _layers(model).items()}

    accepts(ex.check_gradient_scores, by_hand, capsys=capsys)
    passes_hidden(ex.check_gradient_scores, by_hand)
