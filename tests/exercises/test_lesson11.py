"""Checkers of lesson 11 (fine-tune vs scratch): the lesson's reference answers pass the self-check
and hidden variants; typical mistakes fail with their hint; the library's re-initialisation,
retraining and near-zero measure are blocked; a replayed answer fails a hidden variant."""
import copy
import itertools

import numpy as np
import pytest
from checking import accepts, blocked, fails, fails_hidden, passes_hidden, replay_of

import minprune as mp
import minprune.exercises as ex
from minprune import experiments
from minprune.course import notebooks as N
from minprune.prune import schedules

pytestmark = pytest.mark.course


def _layers(model):
    return [m for m in model.modules() if isinstance(m, (mp.nn.Conv2d, mp.nn.Linear))]


def _weights(model, kinds=(mp.nn.Conv2d, mp.nn.Linear)):
    return np.concatenate([m.weight.data.ravel() for m in model.modules() if isinstance(m, kinds)])


# --- 11.1 near-zero fraction --------------------------------------------------------------------
def _near_zero(model, t):
    w = _weights(model)
    w = w[w != 0]
    return sum(1 for v in w if abs(v) < t) / len(w)


def test_near_zero_reference(capsys):
    answer = N.reference_answer("11.1")
    accepts(ex.check_near_zero_fraction, answer, capsys=capsys)
    passes_hidden(ex.check_near_zero_fraction, answer)
    accepts(ex.check_near_zero_fraction, _near_zero, capsys=capsys)


def test_near_zero_mistakes():
    check = ex.check_near_zero_fraction

    def signed(m, t):
        w = _weights(m)
        return float(np.mean(w[w != 0] < t))

    def at_most(m, t):
        w = _weights(m)
        return float(np.mean(np.abs(w[w != 0]) <= t))

    def linear_only(m, t):
        w = _weights(m, mp.nn.Linear)
        return float(np.mean(np.abs(w[w != 0]) < t))

    def with_biases(m, t):
        w = np.concatenate([p.data.ravel() for layer in _layers(m) for p in (layer.weight, layer.bias)])
        return float(np.mean(np.abs(w[w != 0]) < t))

    fails(check, lambda m, t: float(np.mean(np.abs(_weights(m)) < t)), "pruned zeros")
    fails(check, signed, r"\|w\|, not w")
    fails(check, lambda m, t: 100 * _near_zero(m, t), "percentage")
    fails(check, lambda m, t: 1 - _near_zero(m, t), "at or above")
    fails(check, at_most, "strictly below")
    fails(check, linear_only, "Conv2d")
    fails(check, with_biases, "biases")
    fails(check, lambda m, t: None, "return")
    with pytest.raises(TypeError, match="fn"):
        check(42)


def test_near_zero_through_the_library_is_blocked():
    err = blocked(ex.check_near_zero_fraction, lambda m, t: experiments.near_zero_fraction(m, t))
    assert "near_zero" not in str(err)
    blocked(ex.check_near_zero_fraction, lambda m, t: mp.experiments.near_zero_fraction(m, t))


def test_near_zero_replayed_fails_hidden():
    fails_hidden(ex.check_near_zero_fraction, replay_of(ex.check_near_zero_fraction, _near_zero))


def _fingerprint(model):
    """Every array of the model (parameters, masks, buffers), as bytes."""
    return {k: (v.dtype.str, v.shape, v.tobytes()) for k, v in model.state_dict().items()}


def test_near_zero_does_not_touch_a_lesson_model(capsys, monkeypatch):
    """The checker prunes nets of its own built from the same seeds and builders as the lesson's
    models (LeNet-300-100, seed 0): the lesson's model, built before, must come out bit for bit
    as it was — even if a builder handed out one shared instance per seed (a cache added for
    speed), which would make the checker prune the student's model."""
    import functools
    lesson = {"lenet_300_100": mp.models.lenet_300_100(seed=0), "lenet5": mp.models.lenet5(seed=0)}
    before = {k: _fingerprint(m) for k, m in lesson.items()}
    ex.check_near_zero_fraction(_near_zero)
    passes_hidden(ex.check_near_zero_fraction, _near_zero)
    assert "experiments" not in capsys.readouterr().out
    assert {k: _fingerprint(m) for k, m in lesson.items()} == before
    # the check above can fail: with a builder that shares one model per seed, it does
    shared = functools.lru_cache(maxsize=None)(mp.models.lenet_300_100)
    monkeypatch.setattr(mp.models, "lenet_300_100", shared)
    model = shared(seed=0)
    before = _fingerprint(model)
    ex.check_near_zero_fraction(_near_zero)
    assert _fingerprint(model) != before


# --- 11.2 re-initialise -------------------------------------------------------------------------
def _reinit(model, seed, draw="normal", gain=2.0 ** 0.5, fan="in", bias=True, mask=True):
    rng = np.random.default_rng(seed)
    for layer in _layers(model):
        w = layer.weight
        fan_in = int(np.prod(w.shape[1:]))
        fan_out = w.shape[0] * int(np.prod(w.shape[2:]))
        std = gain / np.sqrt({"in": fan_in, "out": fan_out, "xavier": (fan_in + fan_out) / 2,
                              "channels": w.shape[1]}[fan])
        values = (rng.normal(0, std, w.shape) if draw == "normal"
                  else rng.uniform(-std * np.sqrt(3), std * np.sqrt(3), w.shape))
        w.data[...] = values * (w.mask if mask and w.mask is not None else 1)
        if bias and layer.bias is not None:
            layer.bias.data[...] = 0
    return model


def test_reinit_reference(capsys):
    answer = N.reference_answer("11.2")
    accepts(ex.check_reinitialize, answer, capsys=capsys)
    passes_hidden(ex.check_reinitialize, answer)
    accepts(ex.check_reinitialize, _reinit, capsys=capsys)
    # in place, returning nothing: the checker looks at the model it handed over
    accepts(ex.check_reinitialize, lambda m, s: _reinit(m, s) and None, capsys=capsys)
    passes_hidden(ex.check_reinitialize, _reinit)


def test_reinit_with_the_kernel_left_out_of_fan_in_fails_the_self_check():
    """Half right: fan_in = in_channels for a Conv2d (the kernel's kh·kw forgotten) makes only the
    small first conv layer 3× too wide; the self-check must say so, not only hidden variants."""
    fails(ex.check_reinitialize, lambda m, s: _reinit(m, s, fan="channels"), "in_channels·kh·kw")


def test_reinit_right_answers_pass_many_hidden_variants():
    """The distribution checks sit five standard errors out: a right answer never trips them."""
    passes_hidden(ex.check_reinitialize, _reinit, seeds=range(100, 130))


def test_reinit_mistakes():
    check = ex.check_reinitialize
    fails(check, lambda m, s: _reinit(m, s, mask=False), "pruned weights")
    fails(check, lambda m, s: _reinit(m, s, gain=1.0, fan="in"), r"gain for ReLU is √2")
    fails(check, _unit, "standard normal")
    fails(check, lambda m, s: _reinit(m, s, fan="out"), "fan_out")
    fails(check, lambda m, s: _reinit(m, s, gain=1.0, fan="xavier"), "Xavier")
    fails(check, lambda m, s: _reinit(m, s, fan="xavier"), "Xavier")
    fails(check, lambda m, s: _reinit(m, s, draw="uniform"), "normal distribution")
    fails(check, lambda m, s: _reinit(m, s, bias=False), "bias")
    fails(check, lambda m, s: m, "old values")
    fails(check, lambda m, s: 3, "expected the model")
    with pytest.raises(TypeError, match="fn"):
        check(42)


def _unit(model, seed):
    rng = np.random.default_rng(seed)
    for layer in _layers(model):
        mask = layer.weight.mask if layer.weight.mask is not None else 1
        layer.weight.data[...] = rng.normal(0, 1, layer.weight.shape) * mask
        if layer.bias is not None:
            layer.bias.data[...] = 0
    return model


def test_reinit_half_right_answers_fail():
    check = ex.check_reinitialize

    def linear_only(model, seed):   # the conv layers keep their old weights
        rng = np.random.default_rng(seed)
        for layer in _layers(model):
            if isinstance(layer, mp.nn.Linear):
                mp.nn.init.kaiming_normal_(layer.weight, rng=rng)
                mp.nn.init.zeros_(layer.bias)
        return model

    def float64(model, seed):   # replaces the array: the mask's zeros and the dtype are lost
        rng = np.random.default_rng(seed)
        for layer in _layers(model):
            w = layer.weight
            fan_in = int(np.prod(w.shape[1:]))
            w.data = rng.normal(0, np.sqrt(2 / fan_in), w.shape) * (1 if w.mask is None else w.mask)
            layer.bias.data[...] = 0
        return model

    def new_parameter(model, seed):   # a new Parameter has no mask
        rng = np.random.default_rng(seed)
        for layer in _layers(model):
            fan_in = int(np.prod(layer.weight.shape[1:]))
            new = rng.normal(0, np.sqrt(2 / fan_in), layer.weight.shape).astype(np.float32)
            layer.weight = mp.nn.Parameter(new * (layer.weight.data != 0))
            layer.bias.data[...] = 0
        return model

    fails(check, linear_only, "old values")
    fails(check, float64, "float32")
    fails(check, new_parameter, "mask")


def test_reinit_without_a_seed_fails():
    """Deterministic stand-in for an unseeded answer: a fresh seed on every call."""
    calls = itertools.count(1000)
    fails(ex.check_reinitialize, lambda m, s: _reinit(m, next(calls)), "same seed")


def test_reinit_ignoring_the_seed_fails():
    fails(ex.check_reinitialize, lambda m, s: _reinit(m, 0), "gave the same weights")


def test_reinit_through_the_library_is_blocked():
    err = blocked(ex.check_reinitialize, lambda m, s: schedules.reinitialize(m, s))
    assert "reinitialize" not in str(err)

    def through_retrain(m, s):
        schedules.retrain(m, "scratch", train=lambda model, epochs=None: None, seed=s)
        return m
    blocked(ex.check_reinitialize, through_retrain)


def test_reinit_replayed_fails_hidden():
    fails_hidden(ex.check_reinitialize, replay_of(ex.check_reinitialize, _reinit))


# --- 11.3 Scratch-B epochs ----------------------------------------------------------------------
def _scratch_b(epochs, speedup):
    return max(1, int(epochs * min(speedup, 2.0) + 0.5))


def test_scratch_b_reference(capsys):
    answer = N.reference_answer("11.3")
    accepts(ex.check_scratch_b_epochs, answer, capsys=capsys)
    passes_hidden(ex.check_scratch_b_epochs, answer)
    accepts(ex.check_scratch_b_epochs, _scratch_b, capsys=capsys)
    passes_hidden(ex.check_scratch_b_epochs, _scratch_b, seeds=range(50))


def test_scratch_b_mistakes():
    check = ex.check_scratch_b_epochs
    fails(check, lambda e, s: round(e * s), "cap")
    fails(check, lambda e, s: max(1, round(e / min(s, 2))), "multiply")
    fails(check, lambda e, s: int(e * min(s, 2)), "round")
    fails(check, lambda e, s: e * min(s, 2), "whole number")
    fails(check, lambda e, s: None, "return")
    with pytest.raises(TypeError, match="fn"):
        check(42)


def test_scratch_b_through_the_library_is_blocked():
    def through_retrain(epochs, speedup):
        got = []
        model = mp.nn.Sequential(mp.nn.Linear(4, 4))
        schedules.retrain(model, "scratch", train=lambda m, e=None: got.append(e), budget="B",
                          dense_epochs=epochs, input_shape=(4,))
        return got[0]
    err = blocked(ex.check_scratch_b_epochs, through_retrain)
    assert "retrain" not in str(err)


def test_scratch_b_replayed_fails_hidden():
    fails_hidden(ex.check_scratch_b_epochs, replay_of(ex.check_scratch_b_epochs, _scratch_b))


def test_scratch_b_message_does_not_name_the_library(capsys):
    ex.check_scratch_b_epochs(_scratch_b)
    assert "schedules" not in capsys.readouterr().out


# --- half-right answers ---------------------------------------------------------------------------
def test_reinit_with_the_seed_used_for_some_layers_only_fails():
    """The Linear layers follow the seed, the conv layer is drawn from a fixed seed: the weights
    change with the seed in every layer but one, which the checker must notice."""
    def conv_fixed(model, seed):
        _reinit(model, seed)
        for layer in _layers(model):
            if isinstance(layer, mp.nn.Conv2d):
                fixed = copy.deepcopy(model)
                _reinit(fixed, 0)
                layer.weight.data[...] = [m for m in _layers(fixed)
                                          if isinstance(m, mp.nn.Conv2d)][0].weight.data
        return model

    fails(ex.check_reinitialize, conv_fixed, "gave the same weights in")


def test_scratch_b_rounding_up_fails():
    import math
    # math.ceil is right whenever dense_epochs · speedup is a whole number, wrong otherwise
    fails(ex.check_scratch_b_epochs, lambda e, s: math.ceil(e * min(s, 2)), "expected")
    # by hand: 12 epochs at a 1.74× speedup → round(20.88) = 21; at 50× the cap gives 8 for 4
    assert _scratch_b(12, 1.74) == 21 and _scratch_b(4, 50.0) == 8 and _scratch_b(3, 1.1) == 3


def test_near_zero_by_hand():
    layer = mp.nn.Linear(2, 3)
    layer.weight.data[...] = [[0, 0.005], [-0.02, 0.5], [0, -0.001]]   # 4 survivors, 2 below 0.01
    assert _near_zero(mp.nn.Sequential(layer), 0.01) == 0.5
