"""Checkers of lessons 11-13 (retraining, lottery tickets, sweeps): right answers pass, the usual
wrong answers fail with a hint that names the mistake."""
import copy

import numpy as np
import pytest
from checking import fails as _fails

import minprune as mp
import minprune.exercises as ex
from minprune import experiments
from minprune.prune import schedules

pytestmark = pytest.mark.schedules


def _weights(model):
    return np.concatenate([m.weight.data.ravel() for m in mp.prune.prunable_layers(model).values()])



# --- reference solutions ---------------------------------------------------------------------------
def near_zero(model, t):
    w = _weights(model)
    return float(np.mean(np.abs(w[w != 0]) < t))


def reinit(model, seed):
    rng = np.random.default_rng(seed)
    for layer in mp.prune.prunable_layers(model).values():
        mp.nn.init.kaiming_normal_(layer.weight, rng=rng)
        if layer.bias is not None:
            mp.nn.init.zeros_(layer.bias)
    return model


def scratch_b(epochs, speedup):
    return max(1, round(epochs * min(speedup, 2.0)))


def rewind(model, state):
    masks = {n: p.mask for n, p in model.named_parameters()}
    model.load_state_dict({k: v for k, v in state.items() if not k.endswith("_mask")})
    for n, p in model.named_parameters():
        p.set_mask(masks[n])
    return model


def overlap(a, b):
    ka, kb = _weights(a) != 0, _weights(b) != 0
    return (ka & kb).sum() / ka.sum()


def compression(model):
    params = list(model.parameters())
    return sum(p.size for p in params) / sum(np.count_nonzero(p.data) for p in params)


def summary(rows):
    groups = {}
    for r in rows:
        groups.setdefault((r["strategy"], r["sparsity"]), []).append(r["accuracy"])
    return {k: (np.mean(v), min(v), max(v)) for k, v in groups.items()}


# --- right answers pass ----------------------------------------------------------------------------
@pytest.mark.parametrize("checker, fn", [
    (ex.check_near_zero_fraction, near_zero),
    (ex.check_near_zero_fraction, lambda m, t: experiments.near_zero_fraction(m, t)),
    (ex.check_reinitialize, reinit),
    (ex.check_reinitialize, lambda m, s: schedules.reinitialize(m, s)),
    (ex.check_scratch_b_epochs, scratch_b),
    (ex.check_rewind, rewind),
    (ex.check_rewind, schedules.rewind),
    (ex.check_mask_overlap, overlap),
    (ex.check_compression_ratio, compression),
    (ex.check_compression_ratio, mp.prune.compression_ratio),
    (ex.check_seed_summary, summary),
])
def test_right_answers_pass(checker, fn, capsys):
    checker(fn)
    assert "✓ correct" in capsys.readouterr().out


# --- wrong answers fail with a hint ----------------------------------------------------------------
def test_near_zero_counting_the_pruned_zeros_fails():
    _fails(ex.check_near_zero_fraction, lambda m, t: float(np.mean(np.abs(_weights(m)) < t)),
           "pruned zeros")


def test_near_zero_without_abs_fails():
    def signed(m, t):
        w = _weights(m)
        return float(np.mean(w[w != 0] < t))
    _fails(ex.check_near_zero_fraction, signed, r"\|w\|, not w")


def test_near_zero_percentage_fails():
    _fails(ex.check_near_zero_fraction, lambda m, t: 100 * near_zero(m, t), "percentage")


def test_near_zero_returning_none_fails():
    _fails(ex.check_near_zero_fraction, lambda m, t: None, "return")


def test_reinit_that_ignores_the_mask_fails():
    def naive(model, seed):
        rng = np.random.default_rng(seed)
        for layer in mp.prune.prunable_layers(model).values():
            fan_in = int(np.prod(layer.weight.shape[1:]))
            layer.weight.data[...] = rng.normal(0, np.sqrt(2 / fan_in), layer.weight.shape)
            layer.bias.data[...] = 0
        return model
    _fails(ex.check_reinitialize, naive, "pruned weights")


def test_reinit_with_wrong_scale_fails():
    def unit(model, seed):
        rng = np.random.default_rng(seed)
        for layer in mp.prune.prunable_layers(model).values():
            layer.weight.data[...] = rng.normal(0, 1, layer.weight.shape) * layer.weight.mask
            layer.bias.data[...] = 0
        return model
    _fails(ex.check_reinitialize, unit, "standard normal")


def test_reinit_keeping_biases_fails():
    def keep_bias(model, seed):
        rng = np.random.default_rng(seed)
        for layer in mp.prune.prunable_layers(model).values():
            mp.nn.init.kaiming_normal_(layer.weight, rng=rng)
        return model
    _fails(ex.check_reinitialize, keep_bias, "bias")


def test_reinit_without_seed_fails():
    def unseeded(model, seed):
        return reinit(model, None)
    _fails(ex.check_reinitialize, unseeded, "same seed")


def test_reinit_doing_nothing_fails():
    _fails(ex.check_reinitialize, lambda m, s: m, "old values")


def test_scratch_b_without_cap_fails():
    _fails(ex.check_scratch_b_epochs, lambda e, s: round(e * s), "cap")


def test_scratch_b_dividing_fails():
    _fails(ex.check_scratch_b_epochs, lambda e, s: max(1, round(e / min(s, 2))), "multiply")


def test_scratch_b_truncating_fails():
    _fails(ex.check_scratch_b_epochs, lambda e, s: int(e * min(s, 2)), "round")


def test_rewind_loading_the_whole_state_fails():
    def naive(model, state):
        model.load_state_dict(state)
        return model
    _fails(ex.check_rewind, naive, "mask")


def test_rewind_forgetting_biases_fails():
    def weights_only(model, state):
        for n, m in mp.prune.prunable_layers(model).items():
            m.weight.data[...] = state[f"{n}.weight"] * m.weight.mask
        return model
    _fails(ex.check_rewind, weights_only, "bias")


def test_rewind_doing_nothing_fails():
    _fails(ex.check_rewind, lambda m, s: m, "differ from the saved")


def test_rewind_writing_into_the_state_fails():
    def clobber(model, state):
        rewind(model, state)
        for k in state:
            if k.endswith("weight"):
                state[k] *= 0
                break
        return model
    _fails(ex.check_rewind, clobber, "modified the saved state")


def test_overlap_counting_agreeing_zeros_fails():
    _fails(ex.check_mask_overlap, lambda a, b: np.mean((_weights(a) != 0) == (_weights(b) != 0)),
           "pruned in both")


def test_overlap_jaccard_fails():
    def jaccard(a, b):
        ka, kb = _weights(a) != 0, _weights(b) != 0
        return (ka & kb).sum() / (ka | kb).sum()
    _fails(ex.check_mask_overlap, jaccard, "Jaccard")


def test_overlap_per_layer_mean_fails():
    def per_layer(a, b):
        la, lb = mp.prune.prunable_layers(a), mp.prune.prunable_layers(b)
        return np.mean([((la[n].weight.data != 0) & (lb[n].weight.data != 0)).sum()
                        / (la[n].weight.data != 0).sum() for n in la])
    _fails(ex.check_mask_overlap, per_layer, "pool")


def test_compression_of_weights_only_fails():
    _fails(ex.check_compression_ratio, lambda m: _weights(m).size / np.count_nonzero(_weights(m)),
           "biases")


def test_compression_upside_down_fails():
    _fails(ex.check_compression_ratio, lambda m: 1 / compression(m), "upside down")


def test_compression_from_sparsity_fails():
    _fails(ex.check_compression_ratio, lambda m: 1 / (1 - mp.prune.sparsity(m)), "biases")


def test_summary_mean_std_fails():
    def mean_std(rows):
        out = {}
        for k, v in summary(rows).items():
            accs = [r["accuracy"] for r in rows if (r["strategy"], r["sparsity"]) == k]
            out[k] = (v[0], v[0] - np.std(accs), v[0] + np.std(accs))
        return out
    _fails(ex.check_seed_summary, mean_std, "not mean ± standard deviation")


def test_summary_grouped_by_strategy_only_fails():
    def by_strategy(rows):
        groups = {}
        for r in rows:
            groups.setdefault(r["strategy"], []).append(r["accuracy"])
        return {(s, sp): (np.mean(groups[s]), min(groups[s]), max(groups[s]))
                for s, sp in {(r["strategy"], r["sparsity"]) for r in rows}}
    _fails(ex.check_seed_summary, by_strategy, "expected")


def test_summary_wrong_type_fails():
    _fails(ex.check_seed_summary, lambda rows: [1, 2], "dict")


def test_checkers_refuse_non_callables():
    for checker in (ex.check_near_zero_fraction, ex.check_reinitialize, ex.check_scratch_b_epochs,
                    ex.check_rewind, ex.check_mask_overlap, ex.check_compression_ratio,
                    ex.check_seed_summary):
        with pytest.raises(TypeError, match="fn"):
            checker(42)


def test_checkers_do_not_touch_the_lesson_models():
    # the checkers build their own models: a student's model passes through unchanged
    model = mp.models.lenet_300_100(seed=0)
    before = copy.deepcopy(model.state_dict())
    ex.check_near_zero_fraction(near_zero)
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())
