"""Checkers of lesson 03 (training a baseline): reference answers pass the self-check and hidden
variants; typical mistakes fail with their hint; the library's own counting and evaluation are
blocked; a replayed answer fails a hidden variant."""
import numpy as np
import pytest
from checking import accepts, blocked, fails, fails_hidden, passes_hidden, replay_of

import minprune as mp
import minprune.exercises as ex
from minprune.course import notebooks as N

pytestmark = pytest.mark.course


# --- 03.1 count parameters ----------------------------------------------------------------------
def _count(model):
    return sum(int(np.prod(p.shape)) for _, p in model.named_parameters())


def test_count_parameters_reference(capsys):
    answer = N.reference_answer("03.1")
    accepts(ex.check_count_parameters, answer, capsys=capsys)
    passes_hidden(ex.check_count_parameters, answer)
    accepts(ex.check_count_parameters, _count, capsys=capsys)


def test_count_parameters_mistakes():
    fails(ex.check_count_parameters,
          lambda m: sum(p.size for n, p in m.named_parameters() if n.endswith("weight")
                        and p.data.ndim > 1), "only the weights")
    fails(ex.check_count_parameters, lambda m: len(list(m.parameters())), "number of parameter arrays")
    fails(ex.check_count_parameters, lambda m: sum(a.size for a in m.state_dict().values()), "buffers")
    fails(ex.check_count_parameters,
          lambda m: sum(x.weight.size + (x.bias.size if x.bias is not None else 0)
                        for x in m.modules() if isinstance(x, (mp.nn.Conv2d, mp.nn.Linear))),
          "BatchNorm")
    fails(ex.check_count_parameters,   # half right: every parameter but the last layer's
          lambda m: sum(p.size for p in list(m.parameters())[:-2]), "parameters, you counted")
    fails(ex.check_count_parameters, lambda m: _count(m) + 0.5, "whole number")


def test_count_parameters_through_the_library_is_blocked():
    blocked(ex.check_count_parameters, lambda m: mp.prune.count_params(m))
    blocked(ex.check_count_parameters,
            lambda m: mp.prune.report(m, (1, 28, 28), show=False)[-1]["params"])


def test_count_parameters_replayed_fails_hidden():
    fails_hidden(ex.check_count_parameters, replay_of(ex.check_count_parameters, _count))


# --- 03.2 accuracy ------------------------------------------------------------------------------
def _accuracy(model, x, y):
    model.eval()
    with mp.no_grad():
        pred = model(mp.tensor(x)).data.argmax(axis=1)
    return float(np.mean(pred == y))


def test_accuracy_reference(capsys):
    answer = N.reference_answer("03.2")
    accepts(ex.check_accuracy, answer, capsys=capsys)
    passes_hidden(ex.check_accuracy, answer)
    accepts(ex.check_accuracy, _accuracy, capsys=capsys)


def test_accuracy_mistakes():
    def train_mode(model, x, y):
        with mp.no_grad():
            return float(np.mean(model(mp.tensor(x)).data.argmax(axis=1) == y))

    fails(ex.check_accuracy, lambda m, x, y: 100 * _accuracy(m, x, y), "percentage")
    fails(ex.check_accuracy, lambda m, x, y: _accuracy(m, x, y) * len(y), "number correct")
    fails(ex.check_accuracy, lambda m, x, y: 1 - _accuracy(m, x, y), "error rate")
    fails(ex.check_accuracy, train_mode, r"model\.eval\(\)")
    fails(ex.check_accuracy, lambda m, x, y: 0.5, "accuracy is")
    fails(ex.check_accuracy, lambda m, x, y: None, "return")


def test_accuracy_through_the_library_is_blocked():
    blocked(ex.check_accuracy, lambda m, x, y: mp.train.evaluate(m, (x, y)).accuracy)


def test_accuracy_replayed_fails_hidden():
    fails_hidden(ex.check_accuracy, replay_of(ex.check_accuracy, _accuracy))


# --- 03.3 fraction of near-zero weights ---------------------------------------------------------
def _weights(model):
    return np.concatenate([m.weight.data.ravel() for m in model.modules()
                           if isinstance(m, (mp.nn.Conv2d, mp.nn.Linear))])


def _fraction(model, t):
    return float(np.mean(np.abs(_weights(model)) < t))


def test_weight_fraction_reference(capsys):
    answer = N.reference_answer("03.3")
    accepts(ex.check_weight_fraction, answer, capsys=capsys)
    passes_hidden(ex.check_weight_fraction, answer)
    accepts(ex.check_weight_fraction, _fraction, capsys=capsys)


def test_weight_fraction_mistakes():
    def everything(m, t):
        return float(np.mean(np.abs(np.concatenate([p.data.ravel() for p in m.parameters()])) < t))

    def per_layer(m, t):
        return float(np.mean([np.mean(np.abs(x.weight.data) < t) for x in m.modules()
                              if isinstance(x, (mp.nn.Conv2d, mp.nn.Linear))]))

    def survivors(m, t):
        w = _weights(m)
        return float(np.mean(np.abs(w[w != 0]) < t))

    fails(ex.check_weight_fraction, lambda m, t: 1 - _fraction(m, t), "at or above")
    fails(ex.check_weight_fraction, lambda m, t: 100 * _fraction(m, t), "percentage")
    fails(ex.check_weight_fraction, lambda m, t: _fraction(m, t) * _weights(m).size, "count")
    fails(ex.check_weight_fraction, everything, "biases")
    fails(ex.check_weight_fraction, per_layer, "averaged")
    fails(ex.check_weight_fraction, lambda m, t: float(np.mean(_weights(m) < t)), "magnitude")
    fails(ex.check_weight_fraction, survivors, "exactly 0")
    # half right: `<=` differs from `<` only at a threshold equal to some |w|
    fails(ex.check_weight_fraction, lambda m, t: float(np.mean(np.abs(_weights(m)) <= t)),
          "not <=")


def test_weight_fraction_at_a_threshold_equal_to_a_weight():
    """Hand-made: |w| = 0.5 exactly is not below 0.5; 0.25 and 0 are (3 of 4 weights, not 4)."""
    model = mp.nn.Sequential(mp.nn.Linear(2, 2, bias=False))
    model[0].weight.data[...] = [[0.5, -0.25], [0.0, 2.0]]
    assert ex.lesson03._fraction_below(model, 0.5) == 0.5
    assert ex.lesson03._fraction_below(model, 0.5000001) == 0.75


def test_weight_fraction_takes_a_function_only():
    with pytest.raises(TypeError, match="fn"):
        ex.check_weight_fraction(0.25)


def test_weight_fraction_through_the_library_is_blocked():
    from minprune import experiments
    from minprune.exercises import lesson03
    blocked(ex.check_weight_fraction, lambda m, t: lesson03._fraction_below(m, t))
    blocked(ex.check_weight_fraction, lambda m, t: experiments.near_zero_fraction(m, t))


def test_weight_fraction_replayed_fails_hidden():
    fails_hidden(ex.check_weight_fraction, replay_of(ex.check_weight_fraction, _fraction))


# --- half-right answers: right on some models or labels, wrong on others --------------------------
def test_accuracy_on_the_first_batch_only_fails():
    # right when every label is right (accuracy 1 on any subset), wrong on the other label sets
    fails(ex.check_accuracy, lambda m, x, y: _accuracy(m, x[:32], y[:32]), "accuracy is")


def test_weight_fraction_of_linear_layers_only_fails():
    def linear_only(m, t):   # right on LeNet-300-100 (all Linear), wrong on every conv net
        w = np.concatenate([x.weight.data.ravel() for x in m.modules() if isinstance(x, mp.nn.Linear)])
        return float(np.mean(np.abs(w) < t))

    fails(ex.check_weight_fraction, linear_only, "the true fraction is")
    # by hand: weights {0, 0.005, −0.02, 0.5} in a Linear(2, 2) below 0.01 → 2 of 4
    layer = mp.nn.Linear(2, 2)
    layer.weight.data[...] = [[0, 0.005], [-0.02, 0.5]]
    assert _fraction(mp.nn.Sequential(layer), 0.01) == 0.5


def test_count_parameters_without_batchnorm_is_half_right():
    """Right on three self-check models without BatchNorm, wrong on the fourth."""
    def conv_and_linear(m):
        return sum(x.weight.size + (x.bias.size if x.bias is not None else 0)
                   for x in m.modules() if isinstance(x, (mp.nn.Conv2d, mp.nn.Linear)))

    assert conv_and_linear(mp.models.lenet_300_100()) == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    fails(ex.check_count_parameters, conv_and_linear, "BatchNorm")
