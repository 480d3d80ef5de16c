"""fit / evaluate on a few hundred digits: learning, determinism, history, callbacks, checkpoints."""
import numpy as np
import pytest

import minprune as mp
from minprune import train

pytestmark = pytest.mark.engine


def test_fit_reduces_loss(mnist_small):
    x, y = mnist_small
    model = mp.models.lenet_300_100(seed=0)
    before = train.evaluate(model, (x, y)).loss
    history = train.fit(model, (x, y), epochs=3, lr=0.05, batch_size=32, progress=False)
    assert history[-1]["loss"] < history[0]["loss"]
    after = train.evaluate(model, (x, y))
    assert after.loss < 0.7 * before
    assert after.accuracy > 0.7


def test_same_seed_gives_bit_identical_weights(mnist_small):
    x, y = mnist_small

    def run(seed):
        model = mp.models.lenet5(seed=0)
        train.fit(model, (x, y), epochs=1, batch_size=64, seed=seed, augment=1, progress=False)
        return model.state_dict()

    a, b, c = run(0), run(0), run(1)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert any(not np.array_equal(a[n], c[n]) for n in a)  # the seed matters (shuffle, shifts)


def test_history_keys_and_val(mnist_small):
    x, y = mnist_small
    history = train.fit(mp.models.lenet_300_100(), (x[:128], y[:128]), epochs=2, batch_size=64,
                        val=(x[128:], y[128:]), progress=False)
    assert len(history) == 2
    assert [row["epoch"] for row in history] == [1, 2]
    for row in history:
        assert {"epoch", "loss", "train_acc", "lr", "seconds", "val_acc", "val_loss"} <= set(row)
        assert 0 <= row["train_acc"] <= 1 and 0 <= row["val_acc"] <= 1
    assert "val_acc" not in train.fit(mp.models.lenet_300_100(), (x[:64], y[:64]), progress=False)[0]


def test_fit_accepts_dataloader_and_optimizer_instance(mnist_small):
    x, y = mnist_small
    model = mp.models.lenet_300_100()
    opt = mp.optim.Adam(model.parameters(), lr=1e-3)
    loader = mp.data.DataLoader(x[:128], y[:128], batch_size=32, shuffle=True, seed=0)
    history = train.fit(model, loader, optimizer=opt, schedule=None, progress=False)
    assert len(history) == 1 and history[0]["lr"] == pytest.approx(1e-3)


def test_evaluate_uses_eval_mode_and_restores_flag(mnist_small):
    x, y = mnist_small
    model = mp.models.conv4()
    seen = []
    model.features[1].register_forward_hook(lambda m, args, out: seen.append(m.training))
    before = model.features[1].running_mean.copy()
    result = train.evaluate(model, (x[:40], y[:40]), batch_size=16)
    assert seen and not any(seen)
    assert model.training and all(m.training for m in model.modules())
    np.testing.assert_array_equal(model.features[1].running_mean, before)
    acc, loss = result
    assert isinstance(result, train.Evaluation) and 0 <= acc <= 1 and loss > 0
    model.eval()
    train.evaluate(model, (x[:8], y[:8]))
    assert not model.training


def test_evaluate_matches_direct_computation(mnist_small):
    x, y = mnist_small
    model = mp.models.lenet5()
    acc, loss = train.evaluate(model, (x[:50], y[:50]), batch_size=20)
    with mp.no_grad():
        logits = model(mp.tensor(x[:50]))
    assert acc == pytest.approx(float((logits.data.argmax(1) == y[:50]).mean()))
    assert loss == pytest.approx(mp.nn.functional.cross_entropy(logits, y[:50]).item(), rel=1e-5)


def test_checkpoint_is_loadable(tmp_path, mnist_small):
    x, y = mnist_small
    model = mp.models.lenet_300_100()
    path = tmp_path / "ckpt.npz"
    train.fit(model, (x[:64], y[:64]), epochs=1, checkpoint=path, progress=False)
    loaded = mp.load(path)
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_callbacks_receive_events(mnist_small):
    x, y = mnist_small
    events = []

    class Recorder:
        def on_train_begin(self, state):
            events.append(("begin", state.step, state.total_steps))

        def on_step_end(self, state):
            events.append(("step", state.step, state.epoch))
            assert np.isfinite(state.loss) and state.optimizer is not None

        def on_epoch_end(self, state):
            events.append(("epoch", state.step, len(state.history)))

    class OnlyEpochs:  # callbacks may define any subset of the hooks
        def on_epoch_end(self, state):
            events.append(("only", state.epoch))

    train.fit(mp.models.lenet_300_100(), (x[:96], y[:96]), epochs=2, batch_size=32,
              callbacks=[Recorder(), OnlyEpochs()], progress=False)
    assert events[0] == ("begin", 0, 6)
    assert [e for e in events if e[0] == "step"] == [("step", s, (s - 1) // 3) for s in range(1, 7)]
    assert [e for e in events if e[0] == "epoch"] == [("epoch", 3, 1), ("epoch", 6, 2)]
    assert [e for e in events if e[0] == "only"] == [("only", 0), ("only", 1)]


def test_augment_path_runs_and_changes_training(mnist_small):
    x, y = mnist_small
    a, b = mp.models.lenet5(), mp.models.lenet5()
    train.fit(a, (x[:64], y[:64]), augment=2, progress=False)
    train.fit(b, (x[:64], y[:64]), augment=0, progress=False)
    assert not np.array_equal(a.features[0].weight.data, b.features[0].weight.data)


def test_zero_epochs_changes_nothing(mnist_small):
    x, y = mnist_small
    model = mp.models.lenet_300_100()
    before = model.state_dict()
    assert train.fit(model, (x[:32], y[:32]), epochs=0, progress=False) == []
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


@pytest.mark.parametrize("kwargs, exc, name", [
    ({"epochs": -1}, ValueError, "epochs"),
    ({"epochs": 1.5}, TypeError, "epochs"),
    ({"epochs": True}, TypeError, "epochs"),
    ({"lr": 0}, ValueError, "lr"),
    ({"lr": float("nan")}, ValueError, "lr"),
    ({"optimizer": "lbfgs"}, ValueError, "optimizer"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"schedule": "exponential"}, ValueError, "schedule"),
    ({"augment": -1}, ValueError, "augment"),
    ({"seed": -1}, ValueError, "seed"),
    ({"weight_decay": -1e-4}, ValueError, "weight_decay"),
    ({"progress": "no"}, TypeError, "progress"),
    ({"on_nonfinite": "ignore"}, ValueError, "on_nonfinite"),
    ({"val": (np.zeros((0, 1, 28, 28), np.float32), np.zeros(0, int))}, ValueError, "val"),
])
def test_fit_bad_arguments(mnist_small, kwargs, exc, name):
    x, y = mnist_small
    model = mp.models.lenet_300_100()
    before = model.state_dict()
    with pytest.raises(exc, match=f"^{name}"):
        train.fit(model, (x[:32], y[:32]), **{"progress": False, **kwargs})
    for k, v in model.state_dict().items():  # refused before any training
        np.testing.assert_array_equal(v, before[k])


def test_fit_refuses_arguments_it_would_ignore(mnist_small):
    x, y = mnist_small
    model = mp.models.lenet_300_100()
    opt = mp.optim.SGD(model.parameters(), lr=0.1)
    for kwargs in ({"lr": 0.01}, {"weight_decay": 1e-4}):
        with pytest.raises(ValueError, match="would be ignored"):
            train.fit(model, (x[:32], y[:32]), optimizer=opt, progress=False, **kwargs)
    loader = mp.data.DataLoader(x[:32], y[:32], batch_size=16)
    with pytest.raises(ValueError, match="batch_size: 8 would be ignored"):
        train.fit(model, loader, batch_size=8, progress=False)
    other = mp.optim.SGD(mp.models.lenet_300_100().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="optimizer: it updates none of this model"):
        train.fit(model, (x[:32], y[:32]), optimizer=other, progress=False)


def test_fit_and_evaluate_refuse_empty_data():
    model = mp.models.lenet5()
    empty = (np.zeros((0, 1, 28, 28), np.float32), np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="^train: no examples"):
        train.fit(model, empty, progress=False)
    with pytest.raises(ValueError, match="^data: no examples"):
        train.evaluate(model, empty)
    with pytest.raises(ValueError, match="^data: no examples"):
        train.evaluate(model, mp.data.DataLoader(*empty))
    few = mp.data.DataLoader(np.zeros((3, 1, 28, 28), np.float32), np.zeros(3, int), batch_size=4,
                             drop_last=True)
    with pytest.raises(ValueError, match="^train: the DataLoader yields no batch"):
        train.fit(model, few, progress=False)


def test_numpy_scalars_train_exactly_like_python_numbers(mnist_small):
    x, y = mnist_small

    def run(**kw):
        model = mp.models.lenet_300_100(seed=0)
        history = train.fit(model, (x[:64], y[:64]), progress=False, **kw)
        return model.state_dict(), [r["loss"] for r in history]

    a = run(epochs=2, lr=0.05, batch_size=32, weight_decay=1e-3, augment=1, seed=3)
    b = run(epochs=np.int64(2), lr=np.float32(0.05), batch_size=np.int32(32),
            weight_decay=np.float64(1e-3), augment=np.int64(1), seed=np.int64(3))
    assert a[1] == pytest.approx(b[1], rel=1e-6)
    for k in a[0]:
        np.testing.assert_allclose(a[0][k], b[0][k], rtol=1e-5, atol=1e-7, err_msg=k)


def test_fit_passes_weight_decay_to_the_optimizer(mnist_small):
    """fit(weight_decay=λ) is exactly SGD(momentum 0.9, weight_decay=λ); dropping λ would show."""
    x, y = mnist_small
    data = (x[:64], y[:64])

    def weights(**kw):
        model = mp.models.lenet_300_100(seed=0)
        if "optimizer" in kw:
            kw["optimizer"] = kw["optimizer"](model.parameters())
        train.fit(model, data, epochs=1, batch_size=32, schedule=None, progress=False, **kw)
        return model.classifier[1].weight.data.copy()

    by_name = weights(lr=0.05, weight_decay=0.5)
    by_hand = weights(optimizer=lambda ps: mp.optim.SGD(ps, lr=0.05, momentum=0.9,
                                                        weight_decay=0.5))
    without = weights(lr=0.05)
    np.testing.assert_array_equal(by_name, by_hand)
    assert np.abs(by_name).sum() < 0.99 * np.abs(without).sum()  # decay shrank the weights


@pytest.mark.filterwarnings("ignore:overflow", "ignore:invalid value")
def test_a_diverging_loss_raises_and_says_where(mnist_small):
    x, y = mnist_small
    model = mp.models.lenet_300_100()
    with pytest.raises(FloatingPointError, match=r"fit: the training loss became (nan|inf) at "
                                                 r"epoch 1, step \d+ .*lr"):
        train.fit(model, (x[:128], y[:128]), lr=1e6, schedule=None, batch_size=16, progress=False)


@pytest.mark.filterwarnings("ignore:overflow", "ignore:invalid value")
def test_a_diverging_loss_can_stop_training_and_is_recorded(mnist_small):
    x, y = mnist_small
    model = mp.models.lenet_300_100()
    mp.prune.prune(model, 0.5)
    steps = []

    class Steps:
        def on_step_end(self, state):
            steps.append(state.step)

    with pytest.warns(RuntimeWarning, match="training loss became"):
        history = train.fit(model, (x[:128], y[:128]), epochs=3, lr=1e6, schedule=None,
                            batch_size=16, on_nonfinite="stop", callbacks=[Steps()],
                            progress=False)
    assert len(history) == 1 and "stopped" in history[-1]
    assert "diverged" in history[-1]["stopped"]
    assert len(steps) < 8  # stopped inside the first epoch
    assert mp.prune.sparsity(model) == pytest.approx(0.5)  # pruned weights still exactly 0
    for p in model.parameters():
        if p.mask is not None:
            assert (p.data[~p.mask] == 0).all()


def test_bad_data_arguments(mnist_small):
    x, y = mnist_small
    model = mp.models.lenet_300_100()
    with pytest.raises(ValueError, match="train"):
        train.fit(model, (x[:10], y[:9]), progress=False)
    with pytest.raises(TypeError, match="train"):
        train.fit(model, x, progress=False)
    with pytest.raises(TypeError, match="data"):
        train.evaluate(model, [x])
    with pytest.raises(ValueError, match="batch_size"):
        train.evaluate(model, (x[:10], y[:10]), batch_size=0)


# --- defaults, schedules and bookkeeping, on a tiny net ---------------------------------------------
def tiny(seed=0):
    r = np.random.default_rng(seed)
    return mp.nn.Sequential(mp.nn.Linear(5, 7, rng=r), mp.nn.ReLU(), mp.nn.Linear(7, 3, rng=r))


def tiny_data(n, seed=0):
    r = np.random.default_rng(seed)
    return r.normal(size=(n, 5)).astype(np.float32), r.integers(0, 3, n)


class Record:
    """A callback recording the learning rate after each step and the step count."""

    def __init__(self):
        self.lrs = []

    def on_step_end(self, state):
        self.lrs.append(state.optimizer.lr)


@pytest.mark.parametrize("schedule,expected", [
    # 12 examples / batch 2 = 6 steps; lr₀ = 0.05 (the default); "step" divides by 10 every 6 // 3
    ("step", [0.05, 0.005, 0.005, 0.0005, 0.0005, 0.00005]),
    # cosine: 0.025 · (1 + cos(π t / 6)) after step t = 1 … 6
    ("cosine", [0.025 * (1 + np.cos(np.pi * t / 6)) for t in range(1, 7)]),
    ("constant", [0.05] * 6),
    (None, [0.05] * 6),
])
def test_fit_learning_rate_schedules_by_hand(schedule, expected):
    rec = Record()
    history = train.fit(tiny(), tiny_data(12), batch_size=2, schedule=schedule, callbacks=[rec],
                        progress=False)
    assert rec.lrs == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert history[0]["lr"] == 0.05  # the rate the epoch started with


@pytest.mark.parametrize("n,schedule,expected", [
    # short runs: 1 step of cosine reaches lr_min = 0 (T = 1, not a longer horizon)
    (2, "cosine", [0.0]),
    # "step" divides every max(total // 3, 1) steps: every step when there are fewer than 6
    (2, "step", [0.005]),
    (8, "step", [0.005, 0.0005, 0.00005, 0.000005]),
])
def test_fit_schedules_of_runs_shorter_than_6_steps(n, schedule, expected):
    rec = Record()
    train.fit(tiny(), tiny_data(n), batch_size=2, schedule=schedule, callbacks=[rec],
              progress=False)
    assert rec.lrs == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_fit_defaults_batch_64_shuffled_with_seed_0():
    rec = Record()
    train.fit(tiny(), tiny_data(130), callbacks=[rec], progress=False)
    assert len(rec.lrs) == 3  # ceil(130 / 64) batches

    def weights(**kw):
        model = tiny()
        train.fit(model, tiny_data(40), batch_size=8, schedule=None, progress=False, **kw)
        return model[0].weight.data.copy()

    default, zero, one = weights(), weights(seed=0), weights(seed=1)
    np.testing.assert_array_equal(default, zero)
    assert not np.array_equal(default, one)  # the seed shuffles the batches (no augment here)


def test_train_accuracy_is_measured_on_each_batch_before_its_update():
    """With a learning rate too small to move a float32 weight, every batch sees the initial
    model: the epoch's train accuracy is the initial accuracy on the data (3 uneven batches)."""
    model = tiny()
    data = tiny_data(20)
    expected = train.evaluate(model, data).accuracy
    history = train.fit(model, data, lr=1e-30, batch_size=8, schedule=None, progress=False)
    assert history[0]["train_acc"] == expected and 0 < expected < 1
    assert 0 <= history[0]["seconds"] < 60


class PoisonAfter:
    """A callback that makes the weights NaN after step `k`: the next loss is NaN."""

    def __init__(self, k):
        self.k = k

    def on_step_end(self, state):
        if state.step == self.k:
            for p in state.model.parameters():
                p.data[:] = np.nan


def test_a_non_finite_loss_is_reported_at_its_step_and_the_warning_points_at_the_caller():
    with pytest.raises(FloatingPointError, match=r"^fit: the training loss became nan at epoch 1, "
                                                 r"step 3 \(lr 0\.05\)"):
        train.fit(tiny(), tiny_data(12), batch_size=2, schedule=None, callbacks=[PoisonAfter(2)],
                  progress=False)
    with pytest.warns(RuntimeWarning, match="step 3 ") as w:
        history = train.fit(tiny(), tiny_data(12), batch_size=2, schedule=None,
                            callbacks=[PoisonAfter(2)], on_nonfinite="stop", progress=False)
    assert w[0].filename != train.__file__  # stacklevel: reported where fit was called
    assert "step 3 " in history[-1]["stopped"]


def test_data_and_argument_errors_are_exact():
    model = tiny()
    with pytest.raises(ValueError, match=r"^train: x has no examples but y has 3$"):
        train.fit(model, (np.float32(1.0), np.zeros(3, int)), progress=False)
    with pytest.raises(ValueError, match=r"^train: x has 3 examples but y has none$"):
        train.fit(model, (np.zeros((3, 5), np.float32), 1), progress=False)
    with pytest.raises(TypeError, match=r"^train: expected an \(x, y\) pair .* got int$"):
        train.fit(model, 5, progress=False)
    data = tiny_data(3)
    for bad, err, name in (({"lr": -0.1}, ValueError, "lr"), ({"lr": 0.0}, ValueError, "lr"),
                           ({"weight_decay": -1.0}, ValueError, "weight_decay")):
        with pytest.raises(err, match=f"^{name}: "):
            train.fit(model, data, progress=False, **bad)
    with pytest.raises(ValueError, match="^batch_size: "):
        train.evaluate(model, data, batch_size=0)
    one_by_one, at_once = train.evaluate(model, data, batch_size=1), train.evaluate(model, data)
    assert one_by_one.accuracy == at_once.accuracy
    assert one_by_one.loss == pytest.approx(at_once.loss, rel=1e-6)
    assert len(train.fit(tiny(), data, batch_size=1, progress=False)) == 1
    other = mp.optim.SGD(tiny().parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"^optimizer: it updates none of this model's parameters"):
        train.fit(model, data, optimizer=other, progress=False)


def test_print_history_table(capsys):
    train.print_history([{"epoch": 1, "loss": 0.5, "train_acc": 0.25, "lr": 0.1, "seconds": 1.5},
                         {"epoch": 2, "loss": 0.125, "train_acc": 0.75, "lr": 0.05, "seconds": 2.0}])
    assert capsys.readouterr().out == (
        "    epoch       loss  train_acc         lr    seconds\n"
        "        1     0.5000     0.2500     0.1000     1.5000\n"
        "        2     0.1250     0.7500     0.0500     2.0000\n")
    train.print_history([])
    assert capsys.readouterr().out == "\n"
