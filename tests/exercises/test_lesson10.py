"""Checkers of lesson 10 (when to prune): the lesson's reference answers pass the self-check and
hidden variants; typical mistakes fail with their hint; the library's criteria are blocked; a
replayed answer fails a hidden variant."""
import copy

import numpy as np
import pytest
from checking import accepts, blocked, fails, fails_hidden, passes_hidden, replay_of

import minprune as mp
import minprune.exercises as ex
from minprune.course import notebooks as N
from minprune.prune import criteria

pytestmark = pytest.mark.course


def _layers(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, (mp.nn.Conv2d, mp.nn.Linear))}


# --- 10.1 SNIP ----------------------------------------------------------------------------------
def _raw(model, x, y, zero=True):
    """|w ⊙ ∂L/∂w| per layer; zero=False keeps whatever gradients the model carried."""
    if zero:
        for p in model.parameters():
            p.grad = None
    loss = mp.nn.functional.cross_entropy(model(mp.tensor(x)), y)
    loss.backward()
    return {n: np.abs(m.weight.data * m.weight.grad) for n, m in _layers(model).items()}


def _snip(model, x, y):
    raw = _raw(model, x, y)
    total = sum(float(s.sum()) for s in raw.values())
    return {n: s / total for n, s in raw.items()}


def test_snip_reference(capsys):
    answer = N.reference_answer("10.1")
    accepts(ex.check_snip_scores, answer, capsys=capsys)
    passes_hidden(ex.check_snip_scores, answer)
    accepts(ex.check_snip_scores, _snip, capsys=capsys)
    passes_hidden(ex.check_snip_scores, _snip)


def test_snip_mistakes():
    check = ex.check_snip_scores

    def per_layer(model, x, y):
        return {n: s / s.sum() for n, s in _raw(model, x, y).items()}

    def signed(model, x, y):
        model.zero_grad()
        mp.nn.functional.cross_entropy(model(mp.tensor(x)), y).backward()
        raw = {n: m.weight.data * m.weight.grad for n, m in _layers(model).items()}
        total = sum(np.abs(s).sum() for s in raw.values())
        return {n: s / total for n, s in raw.items()}

    def stale(model, x, y):   # forgets to clear the gradients the model came with
        raw = _raw(model, x, y, zero=False)
        total = sum(s.sum() for s in raw.values())
        return {n: s / total for n, s in raw.items()}

    def magnitude(model, x, y):
        w = {n: np.abs(m.weight.data) for n, m in _layers(model).items()}
        total = sum(s.sum() for s in w.values())
        return {n: s / total for n, s in w.items()}

    def first_layer_only(model, x, y):   # half right: one layer, the others left out
        scores = _snip(model, x, y)
        return {n: s for n, s in list(scores.items())[:1]}

    def last_layer_wrong(model, x, y):   # half right: every layer but the last
        scores = _snip(model, x, y)
        last = list(scores)[-1]
        scores[last] = scores[last][::-1].copy()
        return scores

    fails(check, _raw, "without the normalisation")
    fails(check, per_layer, "its own sum")
    fails(check, signed, "absolute value")
    fails(check, stale, "zero_grad")
    fails(check, magnitude, "differ from SNIP")
    fails(check, first_layer_only, "no scores for layer")
    fails(check, last_layer_wrong, "differ from SNIP")
    fails(check, lambda model, x, y: [1, 2], "dict")
    fails(check, lambda model, x, y: {n: np.ones(3) for n in _layers(model)}, "shape")
    with pytest.raises(TypeError, match="fn"):
        check(3)


def test_snip_through_the_library_is_blocked():
    def by_snip(model, x, y):
        return criteria.snip(model, mp.prune.prunable_layers(model), (x, y))

    def by_gradient(model, x, y):
        raw = mp.prune.criteria.gradient(model, mp.prune.prunable_layers(model), (x, y))
        total = sum(s.sum() for s in raw.values())
        return {n: s / total for n, s in raw.items()}

    def by_taylor(model, x, y):
        raw = criteria.taylor(model, mp.prune.prunable_layers(model), (x, y))
        total = sum(np.sqrt(s).sum() for s in raw.values())
        return {n: np.sqrt(s) / total for n, s in raw.items()}

    def by_name(model, x, y):
        return criteria.get_criterion("snip")(model, mp.prune.prunable_layers(model), (x, y))

    for answer in (by_snip, by_gradient, by_taylor, by_name):
        err = blocked(ex.check_snip_scores, answer)
        assert "snip" not in str(err).lower().replace("exercise 10.1", "")


def test_snip_replayed_fails_hidden():
    fails_hidden(ex.check_snip_scores, replay_of(ex.check_snip_scores, _snip))


def test_snip_message_does_not_name_the_library(capsys):
    ex.check_snip_scores(_snip)
    assert "criteria" not in capsys.readouterr().out


# --- 10.2 SynFlow -------------------------------------------------------------------------------
def _synflow(model, input_shape, biases=True, reduce="sum", copy_first=True):
    work = copy.deepcopy(model) if copy_first else model
    for name, p in work.named_parameters():
        if biases or not name.endswith("bias"):
            p.data = np.abs(p.data)
    work.zero_grad()
    out = work(mp.tensor(np.ones((1, *input_shape), dtype=np.float32)))
    (out.sum() if reduce == "sum" else out.mean()).backward()
    return {n: np.abs(m.weight.data * m.weight.grad) for n, m in _layers(work).items()}


def test_synflow_reference(capsys):
    answer = N.reference_answer("10.2")
    accepts(ex.check_synflow_scores, answer, capsys=capsys)
    passes_hidden(ex.check_synflow_scores, answer)
    accepts(ex.check_synflow_scores, _synflow, capsys=capsys)
    passes_hidden(ex.check_synflow_scores, _synflow)


def test_synflow_mistakes():
    check = ex.check_synflow_scores

    def signed_weights(model, input_shape):   # forgot |w|: not SynFlow
        work = copy.deepcopy(model)
        work(mp.tensor(np.ones((1, *input_shape), dtype=np.float32))).sum().backward()
        return {n: np.abs(m.weight.data * m.weight.grad) for n, m in _layers(work).items()}

    def on_data(model, input_shape):   # random images instead of ones
        work = copy.deepcopy(model)
        for p in work.parameters():
            p.data = np.abs(p.data)
        x = np.random.default_rng(0).random((1, *input_shape), dtype=np.float32)
        work(mp.tensor(x)).sum().backward()
        return {n: np.abs(m.weight.data * m.weight.grad) for n, m in _layers(work).items()}

    def magnitude(model, input_shape):
        return {n: np.abs(m.weight.data) for n, m in _layers(model).items()}

    fails(check, lambda m, s: _synflow(m, s, biases=False), "biases too")
    fails(check, lambda m, s: _synflow(m, s, reduce="mean"), "constant factor")
    fails(check, lambda m, s: _synflow(m, s, copy_first=False), "changed the parameters")
    fails(check, signed_weights, "SynFlow scores")
    fails(check, on_data, "data-free")
    fails(check, magnitude, "magnitude")
    fails(check, lambda model, s: None, "dict")
    with pytest.raises(TypeError, match="fn"):
        check(None)


def test_synflow_through_the_library_is_blocked():
    def by_synflow(model, input_shape):
        return criteria.synflow(model, mp.prune.prunable_layers(model), None, input_shape=input_shape)

    def by_name(model, input_shape):
        return mp.prune.criteria.get_criterion("synflow")(model, mp.prune.prunable_layers(model),
                                                          None, input_shape=input_shape)

    for answer in (by_synflow, by_name):
        err = blocked(ex.check_synflow_scores, answer)
        assert "synflow" not in str(err).lower()


def test_synflow_replayed_fails_hidden():
    fails_hidden(ex.check_synflow_scores, replay_of(ex.check_synflow_scores, _synflow))


def test_synflow_message_does_not_name_the_library(capsys):
    ex.check_synflow_scores(_synflow)
    assert "criteria" not in capsys.readouterr().out


# --- half-right answers and answers written without the library's autograd ----------------------
def test_snip_normalised_over_linear_layers_only_fails():
    def linear_total(model, x, y):   # right on LeNet-300-100 (all Linear), wrong on LeNet-5
        raw = _raw(model, x, y)
        total = sum(float(raw[n].sum()) for n, m in _layers(model).items()
                    if isinstance(m, mp.nn.Linear))
        return {n: s / total for n, s in raw.items()}

    fails(ex.check_snip_scores, linear_total, "differ from SNIP")


def test_synflow_changing_only_the_given_models_biases_fails():
    """The weights are made positive on a copy, the biases on the model itself: every weight is as
    it was, so only a check of every array of the model catches the change."""
    def biases_in_place(model, input_shape):
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.data = np.abs(p.data)
        return _synflow(model, input_shape)

    fails(ex.check_synflow_scores, biases_in_place, "changed the parameters")


def test_snip_and_synflow_by_hand_written_backprop_pass(capsys):
    from numpy_nets import backprop, gradients

    def snip(model, x, y):
        grads = gradients(model, x, y)
        raw = {n: np.abs(m.weight.data.astype(np.float64) * grads[n]) for n, m in _layers(model).items()}
        total = sum(s.sum() for s in raw.values())
        return {n: s / total for n, s in raw.items()}

    def synflow(model, input_shape):
        grads, _ = backprop(model, np.ones((1, *input_shape)), np.ones_like,
                            params=lambda name, a: np.abs(a))
        return {n: np.abs(m.weight.data.astype(np.float64) * grads[n])
                for n, m in _layers(model).items()}

    for check, answer in ((ex.check_snip_scores, snip), (ex.check_synflow_scores, synflow)):
        accepts(check, answer, capsys=capsys)
        passes_hidden(check, answer)
