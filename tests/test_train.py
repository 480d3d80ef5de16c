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
    ({"epochs": 1.5}, ValueError, "epochs"),
    ({"lr": 0}, ValueError, "lr"),
    ({"optimizer": "lbfgs"}, ValueError, "optimizer"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"schedule": "exponential"}, ValueError, "schedule"),
    ({"augment": -1}, ValueError, "augment"),
])
def test_fit_bad_arguments(mnist_small, kwargs, exc, name):
    x, y = mnist_small
    with pytest.raises(exc, match=name):
        train.fit(mp.models.lenet_300_100(), (x[:32], y[:32]), progress=False, **kwargs)


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
