"""Schedules: exact sparsity trajectories, rewinding bit for bit, scratch re-initialisation."""
import copy

import numpy as np
import pytest

import minprune as mp
from minprune.prune import schedules as S

pytestmark = pytest.mark.schedules


@pytest.fixture
def digits():
    (x, y), (xt, yt) = mp.data.load_mnist5k()
    return mp.data.subset(x, y, 256), mp.data.subset(xt, yt, 128)


def n_prunable(model):
    return sum(m.weight.size for m in mp.prune.prunable_layers(model).values())


def exact(model, s):
    """The sparsity `prune` must land on: round(s·N) of N prunable weights (approx only absorbs
    float rounding: one weight more or less is ~4e-6 here)."""
    n = n_prunable(model)
    return pytest.approx(round(s * n) / n, abs=1e-10)


def test_round_sparsities_constant_keep_fraction_and_exact_end():
    s = S.round_sparsities(0.95, 4)
    keep = [1 - v for v in s]
    ratios = [keep[0]] + [keep[i] / keep[i - 1] for i in range(1, 4)]
    assert np.allclose(ratios, 0.05 ** 0.25)
    assert s[-1] == 0.95
    assert S.round_sparsities(0.5, 1) == [0.5]
    with pytest.raises(ValueError, match="rounds"):
        S.round_sparsities(0.5, 0)
    with pytest.raises(ValueError, match="sparsity"):
        S.round_sparsities(1.5, 2)


def test_iterative_trajectory_lands_exactly(digits):
    model = mp.models.lenet_300_100(seed=0)
    calls = []
    history = S.iterative(model, 0.9, 3, finetune=lambda m: calls.append(1), val=digits[1])
    pruned = [r for r in history if r["phase"] == "pruned"]
    assert [r["sparsity"] for r in pruned] == [exact(model, s) for s in S.round_sparsities(0.9, 3)]
    assert pruned[-1]["sparsity"] == exact(model, 0.9)
    assert len(calls) == 3
    assert all("accuracy" in r and "loss" in r for r in history)


def test_iterative_rounds_keep_earlier_pruned_weights(digits):
    model = mp.models.lenet_300_100(seed=0)
    seen = []
    S.iterative(model, 0.8, 3, finetune=lambda m: seen.append(
        {n: mm.weight.mask.copy() for n, mm in mp.prune.prunable_layers(m).items()}))
    for before, after in zip(seen, seen[1:]):
        for n in before:
            assert not np.any(after[n] & ~before[n])  # nothing revived


def test_one_shot_history(digits):
    model = mp.models.lenet_300_100(seed=1)
    h = S.one_shot(model, 0.7, finetune=S.trainer(digits[0], 1, lr=0.01), val=digits[1])
    assert [r["phase"] for r in h] == ["trained", "pruned", "finetuned"]
    assert h[1]["sparsity"] == h[2]["sparsity"] == exact(model, 0.7)


def test_gradual_follows_the_cubic_ramp(digits):
    model = mp.models.lenet_300_100(seed=0)
    ramp = S.gradual(0.8, start=2, end=12, every=2, initial_sparsity=0.0)
    mp.train.fit(model, digits[0], epochs=4, batch_size=64, callbacks=[ramp], progress=False)
    steps = [r["step"] for r in ramp.history]
    assert steps == [2, 4, 6, 8, 10, 12]
    for r in ramp.history:
        t = (r["step"] - 2) / 10
        assert r["target"] == pytest.approx(0.8 * (1 - (1 - t) ** 3))
        if r["target"] > 0:
            assert r["sparsity"] == exact(model, r["target"])
    assert mp.prune.sparsity(model) == exact(model, 0.8)  # stays pruned after the ramp
    assert ramp.target(0) == 0.0 and ramp.target(100) == 0.8


def test_gradual_validates():
    with pytest.raises(ValueError, match="start"):
        S.gradual(0.5, start=10, end=5)
    with pytest.raises(ValueError, match="every"):
        S.gradual(0.5, start=0, end=5, every=-1)
    with pytest.raises(ValueError, match="final_sparsity"):
        S.gradual(1.5, start=0, end=5)


@pytest.mark.parametrize("criterion", ["snip", "grasp", "random", "magnitude"])
def test_at_init_prunes_then_trains(digits, criterion):
    model = mp.models.lenet_300_100(seed=0)
    trained = []
    h = S.at_init(model, 0.9, criterion=criterion, batch=digits[0], val=digits[1],
                  train=lambda m: trained.append(mp.prune.sparsity(m)))
    assert len(trained) == 1 and trained[0] == exact(model, 0.9)
    assert h[0]["phase"] == "pruned_at_init" and h[-1]["phase"] == "trained"


def test_at_init_synflow_is_data_free_and_iterative():
    model = mp.models.lenet5(seed=0)
    h = S.at_init(model, 0.95, criterion="synflow", batch=None, iterations=10,
                  input_shape=(1, 28, 28))
    assert h[0]["iterations"] == 10
    assert mp.prune.sparsity(model) == exact(model, 0.95)
    # iterative SynFlow keeps every layer alive even at high sparsity
    assert all(m.weight.mask.any() for m in mp.prune.prunable_layers(model).values())


def test_rewind_restores_saved_weights_bit_for_bit():
    model = mp.models.lenet5(seed=0)
    saved = model.state_dict()
    for p in model.parameters():
        p.data += 1.0
    mp.prune.prune(model, 0.6)
    masks = {n: p.mask for n, p in model.named_parameters()}
    S.rewind(model, saved)
    for n, p in model.named_parameters():
        expected = saved[n] if masks[n] is None else saved[n] * masks[n]
        np.testing.assert_array_equal(p.data, expected)
        assert (p.mask is None) == (masks[n] is None)


@pytest.mark.parametrize("rewind_to", [0, 3])
def test_lottery_rewinds_to_init_and_to_step_k(digits, rewind_to):
    model = mp.models.lenet_300_100(seed=0)
    snapshots, starts = [], []
    fit = S.trainer(digits[0], 1, lr=0.05)

    def train(m, epochs=None, callbacks=()):
        starts.append(m.state_dict())
        snap = [c for c in callbacks if isinstance(c, S._Snapshot)]
        fit(m, epochs, callbacks)
        snapshots.extend(c.state for c in snap)

    h = S.lottery(model, 0.8, 2, train=train, rewind_to=rewind_to, val=digits[1])
    saved = snapshots[0]
    if rewind_to == 0:
        for n in saved:
            np.testing.assert_array_equal(saved[n], starts[0][n])
    for start in starts[1:3]:  # each round's training starts from the rewound weights
        for n, v in start.items():
            if n.endswith("_mask"):
                continue
            mask = start.get(n + "_mask")
            np.testing.assert_array_equal(v, saved[n] if mask is None else saved[n] * mask)
    kinds = [r["kind"] for r in h]
    assert kinds == ["ticket", "ticket", "ticket", "reinit"]
    assert h[-1]["sparsity"] == h[-2]["sparsity"] == exact(model, 0.8)


def test_lottery_validates(digits):
    with pytest.raises(ValueError, match="rewind_to"):
        S.lottery(mp.models.lenet_300_100(), 0.5, 1, train=lambda *a, **k: None, rewind_to=-1)


def test_scratch_reinitialises_every_surviving_weight_and_keeps_masks():
    model = mp.models.conv4(seed=0)
    mp.prune.prune(model, 0.5, granularity="filter", scope="layerwise",
                   exclude=["classifier.3"])
    before = copy.deepcopy(model)
    S.retrain(model, "scratch", seed=7, train=lambda m, epochs=None: None)
    old = dict(before.named_parameters())
    for n, p in model.named_parameters():
        if p.data.ndim > 1:  # conv / linear weights: fresh random values wherever alive
            alive = p.mask if p.mask is not None else np.ones(p.shape, bool)
            assert np.all(p.data[alive] != old[n].data[alive]), n
            assert np.all(p.data[~alive] == 0)
        np.testing.assert_array_equal(p.mask if p.mask is not None else 0,
                                      old[n].mask if old[n].mask is not None else 0)


def test_finetune_keeps_weights_and_scratch_b_budget(digits):
    model = mp.models.lenet_300_100(seed=0)
    mp.prune.prune(model, 0.5, granularity="filter", scope="layerwise", exclude=["classifier.5"])
    epochs_seen = []
    S.retrain(model, "scratch", budget="B", dense_epochs=4,
              train=lambda m, epochs=None: epochs_seen.append(epochs))
    speedup = mp.prune.theoretical_speedup(model, (1, 28, 28))
    assert epochs_seen == [max(1, round(4 * min(speedup, 2.0)))]
    with pytest.raises(ValueError, match="mode"):
        S.retrain(model, "bogus", train=lambda m, e=None: None)
    with pytest.raises(ValueError, match="dense_epochs"):
        S.retrain(model, "scratch", budget="B", train=lambda m, e=None: None)


def test_rewind_keeps_activation_masks(digits):
    model = mp.models.lenet_300_100(seed=0)
    saved = model.state_dict()
    mp.prune.prune(model, 0.5, target="activations", batch=digits[0], scope="layerwise")
    before = {n: m.output_mask.copy() for n, m in model.named_modules() if m.output_mask is not None}
    S.rewind(model, saved)
    after = {n: m.output_mask for n, m in model.named_modules() if m.output_mask is not None}
    assert before.keys() == after.keys() and before
    for n in before:
        np.testing.assert_array_equal(before[n], after[n])
