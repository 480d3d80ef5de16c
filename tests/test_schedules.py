"""Schedules: exact sparsity trajectories, rewinding bit for bit, scratch re-initialisation."""
import copy
from types import SimpleNamespace

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


def test_lottery_control_is_the_ticket_s_mask_with_fresh_weights():
    """The control trains the *same mask* from *new* random weights: a copy of the model (the
    ticket stays the ticket), Kaiming-normal std √(2/fan_in) wherever the mask is alive, zeros
    where it is not, zero biases, BatchNorm back to γ=1, β=0, μ=0, σ²=1. Training is faked
    (it doubles the weights and shifts the BN statistics), so each call's start is known."""
    r = np.random.default_rng(0)
    model = mp.nn.Sequential(mp.nn.Linear(100, 200, rng=r), mp.nn.BatchNorm1d(200), mp.nn.ReLU(),
                             mp.nn.Linear(200, 10, rng=r))
    calls = []

    def train(m, epochs=None, callbacks=()):
        calls.append((m, copy.deepcopy(m)))
        state = SimpleNamespace(model=m, step=0)
        for cb in callbacks:
            cb.on_train_begin(state)
        for p in m.parameters():
            p.data[:] = 2 * p.data + 0.1
            if p.mask is not None:
                p.data[~p.mask] = 0
        m[1].running_mean[:] += 3.0
        m[1].running_var[:] = 2.0

    h = S.lottery(model, 0.8, 2, train=train)
    assert len(calls) == 4 and all(c[0] is model for c in calls[:3])
    control, start = calls[3]
    assert control is not model
    assert [r["kind"] for r in h] == ["ticket"] * 3 + ["reinit"]
    assert h[-1]["sparsity"] == h[-2]["sparsity"] == exact(model, 0.8)
    init = calls[0][1]  # the weights lottery rewinds to
    for name in ("0", "3"):
        w, ticket, w0 = start[int(name)].weight, model[int(name)].weight, init[int(name)].weight
        np.testing.assert_array_equal(w.mask, ticket.mask)
        alive = w.mask
        assert np.all(w.data[~alive] == 0)
        assert np.all(w.data[alive] != ticket.data[alive])   # not the trained ticket
        assert np.all(w.data[alive] != w0.data[alive])       # nor its initialisation
        assert np.all(start[int(name)].bias.data == 0)
    std = np.sqrt(2 / 100)  # Kaiming normal for ReLU, fan_in 100; 4,000 live weights
    assert abs(start[0].weight.data[start[0].weight.mask].std() / std - 1) < 0.1
    bn = start[1]
    for got, want in ((bn.weight.data, 1.0), (bn.bias.data, 0.0), (bn.running_mean, 0.0),
                      (bn.running_var, 1.0)):
        np.testing.assert_array_equal(got, want)
    # the ticket's own BatchNorm was not reset by building the control
    np.testing.assert_array_equal(model[1].running_var, 2.0)


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


def test_finetune_trains_the_surviving_weights_as_they_are(digits):
    """mode="finetune" hands `train` the pruned model itself, weights and masks untouched, with
    the callable's own epoch budget (epochs=None); the history says which mode ran."""
    model = mp.models.lenet_300_100(seed=0)
    mp.prune.prune(model, 0.5, granularity="filter", scope="layerwise", exclude=["classifier.5"])
    before = copy.deepcopy(model)
    seen = []
    h = S.retrain(model, "finetune", val=digits[1],
                  train=lambda m, epochs=None: seen.append((m, epochs, copy.deepcopy(m))))
    assert len(seen) == 1 and seen[0][0] is model and seen[0][1] is None
    got = dict(seen[0][2].named_parameters())
    for n, p in before.named_parameters():
        np.testing.assert_array_equal(got[n].data, p.data)
        np.testing.assert_array_equal(got[n].mask if got[n].mask is not None else 0,
                                      p.mask if p.mask is not None else 0)
    assert [r["phase"] for r in h] == ["pruned", "finetune"] and h[1]["epochs"] is None
    pruned = 150 * 784 + 50 * 300  # half of each hidden layer's neurons, classifier.5 dense
    assert h[0]["sparsity"] == h[1]["sparsity"] == pytest.approx(pruned / 266200)
    assert h[0]["accuracy"] == evaluate_acc(before, digits[1])
    # a real fine-tuning step moves the survivors and leaves every pruned weight at 0
    S.retrain(model, "finetune", train=S.trainer(digits[0], 1, lr=0.01, batch_size=128))
    for n, p in model.named_parameters():
        if p.mask is not None:
            assert np.all(p.data[~p.mask] == 0), n
    assert not np.array_equal(model.classifier[1].weight.data, before.classifier[1].weight.data)
    assert mp.prune.sparsity(model) == pytest.approx(pruned / 266200)


def evaluate_acc(model, data):
    return mp.train.evaluate(model, data).accuracy


@pytest.mark.parametrize("s,epochs", [
    # dense 784·300 + 300·100 + 100·10 = 266,200 multiply-adds
    (0.25, 5),  # 225·784 + 75·225 + 10·75 = 194,025 left: 1.372× → round(4 · 1.372) = 5
    (0.5, 8),   # 150·784 + 50·150 + 10·50 = 125,600 left: 2.119×, capped at 2 → 8
])
def test_scratch_b_trains_for_the_flop_saving(s, epochs):
    model = mp.models.lenet_300_100(seed=0)
    mp.prune.prune(model, s, granularity="filter", scope="layerwise", exclude=["classifier.5"])
    epochs_seen = []
    h = S.retrain(model, "scratch", budget="B", dense_epochs=4,
                  train=lambda m, epochs=None: epochs_seen.append(epochs))
    assert epochs_seen == [epochs] and h[-1]["epochs"] == epochs and h[-1]["phase"] == "scratch"
    seen = []
    S.retrain(model, "scratch", train=lambda m, epochs=None: seen.append(epochs))  # Scratch-E
    assert seen == [None]
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


# --- every schedule's history, worked out on a small net with a fake trainer ----------------------
def small_mlp(seed=0):
    r = np.random.default_rng(seed)
    return mp.nn.Sequential(mp.nn.Linear(6, 12, rng=r), mp.nn.ReLU(), mp.nn.Linear(12, 8, rng=r),
                            mp.nn.ReLU(), mp.nn.Linear(8, 3, rng=r))


VAL = (np.random.default_rng(5).normal(size=(40, 6)).astype(np.float32),
       np.random.default_rng(6).integers(0, 3, 40))


def rows(history):
    return [(r["step"], r["phase"]) for r in history]


def assert_measured(history_row, model):
    """A history row's accuracy and loss are those of `model` on VAL at that moment."""
    acc, loss = mp.train.evaluate(model, VAL)
    assert history_row["accuracy"] == acc and history_row["loss"] == loss


def filter_shaped(model):
    """Every layer's mask is whole rows (filters) kept or pruned."""
    return all(np.all(m.all(axis=1) | ~m.any(axis=1)) for m in mp.prune.get_masks(model).values())


def shift(model):
    """A fake training step: every live weight moves by 0.01 (pruned weights stay 0)."""
    for p in model.parameters():
        p.data += 0.01
        if p.mask is not None:
            p.data[~p.mask] = 0


def test_one_shot_and_iterative_histories_and_pruning_arguments():
    model = small_mlp()
    snapshots = []
    h = S.one_shot(model, 0.5, finetune=lambda m: (shift(m), snapshots.append(copy.deepcopy(m))),
                   val=VAL, granularity="filter", scope="layerwise")
    assert rows(h) == [(0, "trained"), (1, "pruned"), (1, "finetuned")]
    assert filter_shaped(model)
    assert_measured(h[2], snapshots[0])
    assert h[0]["sparsity"] == 0.0 and h[1]["sparsity"] == h[2]["sparsity"]
    # 12, 8, 3 neurons: 6, 4, 2 pruned → (6·6 + 4·12 + 2·8) / (72 + 96 + 24) of the weights
    assert h[1]["sparsity"] == pytest.approx((36 + 48 + 16) / 192)

    model = small_mlp()
    h = S.iterative(model, 0.75, 2, finetune=shift, val=VAL, granularity="filter",
                    scope="layerwise")
    assert rows(h) == [(0, "trained"), (1, "pruned"), (1, "finetuned"), (2, "pruned"),
                       (2, "finetuned")]
    assert filter_shaped(model)
    assert_measured(h[-1], model)
    assert all("accuracy" in r for r in h)
    h = S.iterative(small_mlp(), 0.75, 2)  # no val, no finetune
    assert rows(h) == [(0, "trained"), (1, "pruned"), (2, "pruned")]
    assert "accuracy" not in h[0]


def test_at_init_history_iterations_and_pruning_arguments():
    model = small_mlp()
    h = S.at_init(model, 0.5, criterion="magnitude", train=shift, val=VAL, scope="layerwise")
    assert rows(h) == [(0, "pruned_at_init"), (1, "trained")]
    assert h[0]["criterion"] == "magnitude" and h[0]["iterations"] == 1
    for m in mp.prune.get_masks(model).values():  # layerwise: each layer exactly half
        assert (~m).sum() == m.size // 2
    assert_measured(h[1], model)
    h = S.at_init(small_mlp(), 0.5, criterion="synflow", input_shape=(6,))
    assert h[0]["iterations"] == 100 and h[0]["criterion"] == "synflow"
    assert rows(h) == [(0, "pruned_at_init")]
    with pytest.raises(ValueError, match="^iterations: "):
        S.at_init(small_mlp(), 0.5, criterion="magnitude", iterations=0)
    with pytest.raises(TypeError, match="^train: "):
        S.at_init(small_mlp(), 0.5, criterion="magnitude", train="fit")


def test_lottery_history_and_pruning_arguments():
    model = small_mlp()

    def train(m, epochs=None, callbacks=()):
        for cb in callbacks:
            cb.on_train_begin(SimpleNamespace(model=m, step=0))
        shift(m)

    h = S.lottery(model, 0.75, 2, train=train, val=VAL, scope="layerwise")
    assert rows(h) == [(0, "trained"), (1, "trained"), (2, "trained"), (2, "trained")]
    assert [r["kind"] for r in h] == ["ticket"] * 3 + ["reinit"]
    for m in mp.prune.get_masks(model).values():  # layerwise: each layer exactly 75%
        assert (~m).sum() == round(0.75 * m.size)
    assert_measured(h[2], model)
    for bad, err, name in ((dict(rewind_to=-1), ValueError, "rewind_to: must be ≥ 0"),
                           (dict(control="yes"), TypeError, "control"),
                           (dict(seed=1.5), TypeError, "seed")):
        calls = []
        with pytest.raises(err, match=f"^{name}"):
            S.lottery(small_mlp(), 0.5, 1, train=lambda m, calls=calls, **k: calls.append(1), **bad)
        assert calls == []  # refused before any training
    with pytest.raises(TypeError, match=r"^train: expected a callable"):
        S.lottery(small_mlp(), 0.5, 1, train=None)
    with pytest.raises(ValueError, match=r"^rewind_to: training ran fewer than 5 steps"):
        S.lottery(small_mlp(), 0.5, 1, train=lambda m, **k: None, rewind_to=5)


def test_gradual_prunes_on_its_grid_only_when_the_target_is_positive():
    model = small_mlp()
    ramp = S.gradual(0.5, start=1, end=7, every=3, scope="layerwise")
    state = SimpleNamespace(model=model, step=0)
    for t in range(0, 10):
        state.step = t
        ramp.on_step_end(state)
        if t < 4:  # step 1 has target 0: nothing pruned, not even all-True masks installed
            assert all(m.weight.mask is None for m in mp.prune.prunable_layers(model).values())
    assert [r["step"] for r in ramp.history] == [1, 4, 7]
    assert [r["target"] for r in ramp.history] == pytest.approx([0.0, 0.5 * (1 - 0.5 ** 3), 0.5])
    for m in mp.prune.get_masks(model).values():  # layerwise: each layer exactly half
        assert (~m).sum() == m.size // 2
    for kwargs, name in ((dict(start=5, end=5), "start"), (dict(start=-1, end=5), "start"),
                         (dict(start=0, end=-1), "end"), (dict(start=0, end=5, every=0), "every"),
                         (dict(start=0, end=5, initial_sparsity=2.0), "initial_sparsity")):
        with pytest.raises(ValueError, match=f"^{name}"):
            S.gradual(0.5, **kwargs)
    with pytest.raises(ValueError, match="^final_sparsity"):
        S.gradual(-0.5, start=0, end=5)
    assert S.gradual(0.5, start=0, end=5).target(0) == 0.0


def test_reinitialize_is_seeded():
    a = S.reinitialize(small_mlp(0), seed=3)
    b = S.reinitialize(small_mlp(1), seed=3)
    c = S.reinitialize(small_mlp(0), seed=4)
    np.testing.assert_array_equal(a[0].weight.data, b[0].weight.data)
    assert not np.array_equal(a[0].weight.data, c[0].weight.data)


def test_schedule_arguments_are_named_when_wrong():
    for call, name in ((lambda: S.one_shot(small_mlp(), 0.5, finetune=3), "finetune"),
                       (lambda: S.iterative(small_mlp(), 0.5, 2, finetune=3), "finetune"),
                       (lambda: S.sparsities_from_scan({"layers": {}}, max_drop=-0.1), "max_drop"),
                       (lambda: S.retrain(small_mlp(), "finetune", train=None), "train"),
                       (lambda: S.retrain(small_mlp(), "scratch", budget="C",
                                          train=lambda m, e=None: None), "budget")):
        with pytest.raises((ValueError, TypeError), match=f"^{name}: "):
            call()


def test_trainer_runs_fit_with_its_epochs_and_arguments():
    train = S.trainer(VAL, 2, batch_size=20, lr=0.1, schedule=None)
    history = train(small_mlp())
    assert [r["epoch"] for r in history] == [1, 2] and all(r["lr"] == 0.1 for r in history)
    assert [r["epoch"] for r in train(small_mlp(), 1)] == [1]  # an explicit budget wins


# --- every history row is measured, numbered and seeded as documented -------------------------
def test_every_history_row_measures_the_model_at_that_moment():
    """Each row's accuracy/loss are the model's on VAL right then: before pruning, after pruning
    (before fine-tuning), after training; the lottery control's row is the control's own."""
    model = small_mlp()
    dense = copy.deepcopy(model)
    seen = []  # the model as the fine-tuning callable receives it: pruned, not yet trained
    h = S.one_shot(model, 0.5, finetune=lambda m: (seen.append(copy.deepcopy(m)), shift(m)),
                   val=VAL)
    assert_measured(h[0], dense)
    assert_measured(h[1], seen[0])
    assert_measured(h[2], model)
    assert h[1]["accuracy"] != h[2]["accuracy"] or h[1]["loss"] != h[2]["loss"]  # they differ

    model = small_mlp()
    seen = []
    h = S.at_init(model, 0.5, criterion="magnitude", val=VAL,
                  train=lambda m: (seen.append(copy.deepcopy(m)), shift(m)))
    assert_measured(h[0], seen[0])
    assert_measured(h[1], model)

    trained = []  # the model after each training run: ticket, ticket per round, then control

    def train(m, epochs=None, callbacks=()):
        for cb in callbacks:
            cb.on_train_begin(SimpleNamespace(model=m, step=0))
        shift(m)
        trained.append(copy.deepcopy(m))

    h = S.lottery(small_mlp(), 0.75, 2, train=train, val=VAL)
    assert len(trained) == len(h) == 4
    for row, m in zip(h, trained):
        assert_measured(row, m)

    model = small_mlp()
    mp.prune.prune(model, 0.5)
    before = copy.deepcopy(model)
    h = S.retrain(model, "finetune", val=VAL, train=lambda m, epochs=None: shift(m))
    assert_measured(h[0], before)
    assert_measured(h[1], model)


def test_retrain_history_steps_are_0_pruned_then_1_retrained():
    for mode in ("finetune", "scratch"):
        h = S.retrain(small_mlp(), mode, train=lambda m, epochs=None: None)
        assert rows(h) == [(0, "pruned"), (1, mode)]


def test_scratch_and_lottery_control_weights_are_reproducible_from_seed():
    """retrain(seed=s) re-initialises with reinitialize(·, s); the lottery control with s + 1
    (s itself would repeat a model built with seed s). Same seed, same weights."""
    pruned = small_mlp()
    mp.prune.prune(pruned, 0.5)
    got = {}
    for seed in (7, 7, 8):
        model = copy.deepcopy(pruned)
        S.retrain(model, "scratch", seed=seed, train=lambda m, epochs=None: None)
        got.setdefault(seed, []).append(model)
    want = S.reinitialize(copy.deepcopy(pruned), seed=7)
    for a, b in zip(got[7][0].parameters(), want.parameters()):
        np.testing.assert_array_equal(a.data, b.data)
    for a, b in zip(got[7][1].parameters(), want.parameters()):
        np.testing.assert_array_equal(a.data, b.data)
    assert not np.array_equal(got[8][0][0].weight.data, want[0].weight.data)

    starts = []  # what each training run starts from; the last one is the control's

    def train(m, epochs=None, callbacks=()):
        for cb in callbacks:
            cb.on_train_begin(SimpleNamespace(model=m, step=0))
        starts.append(copy.deepcopy(m))
        shift(m)

    ticket = small_mlp()
    S.lottery(ticket, 0.5, 1, train=train, seed=3)
    want = S.reinitialize(copy.deepcopy(ticket), seed=4)
    for (n, a), b in zip(starts[-1].named_parameters(), want.parameters()):
        np.testing.assert_array_equal(a.data, b.data, err_msg=n)
        np.testing.assert_array_equal(a.mask, b.mask, err_msg=n)


def test_scratch_b_epochs_floor_and_cap():
    """epochs = max(1, round(dense_epochs · min(speedup, 2))), worked for LeNet-300-100 with
    hidden neurons cut layer by layer (classifier.5 kept dense), dense cost 266,200 MACs."""
    cases = [
        # 225·784 + 75·225 + 10·75 = 194,025 left: 1.372× → round(1 · 1.372) = 1
        (0.25, 1, 1),
        # 75·784 + 25·75 + 10·25 = 60,925 left: 4.369×, capped at 2 → 2 (not 3 or 4)
        (0.75, 1, 2),
        (0.75, 3, 6),
    ]
    for s, dense_epochs, epochs in cases:
        model = mp.models.lenet_300_100(seed=0)
        mp.prune.prune(model, s, granularity="filter", scope="layerwise", exclude=["classifier.5"])
        seen = []
        S.retrain(model, "scratch", budget="B", dense_epochs=dense_epochs,
                  train=lambda m, epochs=None, seen=seen: seen.append(epochs))
        assert seen == [epochs], (s, dense_epochs)
    for bad in (0, -2):
        with pytest.raises(ValueError, match=f"^dense_epochs: .*{bad}"):
            S.retrain(small_mlp(), "scratch", budget="B", dense_epochs=bad,
                      train=lambda m, epochs=None: None)


@pytest.mark.parametrize("kwargs", [dict(mode="finetune", budget="B"),
                                    dict(mode="finetune", dense_epochs=4),
                                    dict(mode="scratch", dense_epochs=4),
                                    dict(mode="finetune", budget="B", dense_epochs=4)])
def test_retrain_refuses_budget_arguments_it_would_ignore(kwargs):
    calls = []
    with pytest.raises(ValueError, match=r"^budget/dense_epochs: only mode='scratch' with "
                                         r"budget='B' uses them"):
        S.retrain(small_mlp(), train=lambda m, epochs=None: calls.append(1), **kwargs)
    assert calls == []  # refused before training


def test_gradual_explains_an_empty_ramp_as_start_and_end():
    """end = start = 0 is a ramp of no steps: the message is about start < end, not about end."""
    with pytest.raises(ValueError, match=r"^start/end/every: need start < end.*got 0, 0, 1"):
        S.gradual(0.5, start=0, end=0)
