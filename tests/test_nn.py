"""nn: Module bookkeeping, every layer (shapes, gradients), BatchNorm/Dropout semantics, init,
state_dict / save / load, masks, and argument validation."""
import copy
import os

import numpy as np
import pytest
from gradcheck import grad_check

import minprune as mp
from minprune import nn
from minprune.nn import init
from minprune.tensor import Tensor

pytestmark = pytest.mark.engine


def to_float64(module):
    for p in module.parameters():
        p.data = p.data.astype(np.float64)
    return module


def x64(rng, *shape):
    return Tensor(rng.standard_normal(shape), requires_grad=True, dtype=np.float64)


# --- registration and names ---------------------------------------------------------------------
def test_lenet5_parameter_names_follow_pytorch():
    names = [n for n, _ in mp.models.lenet5().named_parameters()]
    assert names == ["features.0.weight", "features.0.bias", "features.3.weight", "features.3.bias",
                     "classifier.1.weight", "classifier.1.bias", "classifier.3.weight",
                     "classifier.3.bias", "classifier.5.weight", "classifier.5.bias"]


def test_named_modules_and_parameters_agree():
    model = mp.models.lenet5()
    modules = dict(model.named_modules())
    assert modules[""] is model
    assert isinstance(modules["features.0"], nn.Conv2d)
    assert isinstance(modules["classifier.5"], nn.Linear)
    assert list(modules)[:3] == ["", "features", "features.0"]
    assert model.get_submodule("features.3") is modules["features.3"]
    with pytest.raises(ValueError, match="name"):
        model.get_submodule("features.9")
    params = list(model.parameters())
    assert len(params) == 10 and all(isinstance(p, nn.Parameter) for p in params)
    assert len({id(p) for p in params}) == 10
    assert [n for n, _ in model.named_children()] == ["features", "classifier"]


def test_conv4_buffers_are_named():
    buffers = dict(mp.models.conv4().named_buffers())
    assert "features.1.running_mean" in buffers and "features.1.running_var" in buffers
    assert len(buffers) == 8


def test_assignment_registers_and_reassignment_unregisters():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(2, 3)
            self.scale = nn.Parameter(np.ones(1))
            self.register_buffer("count", np.zeros(1))

    net = Net()
    assert [n for n, _ in net.named_parameters()] == ["scale", "a.weight", "a.bias"]
    assert [n for n, _ in net.named_buffers()] == ["count"]
    net.count = np.ones(1)  # an array re-assigned to a buffer stays a buffer
    assert [n for n, _ in net.named_buffers()] == ["count"]
    net.a = None
    net.scale = 3.0
    assert list(net.named_parameters()) == []


def test_module_needs_super_init():
    class Bad(nn.Module):
        def __init__(self):
            self.x = 1

    with pytest.raises(RuntimeError, match="super"):
        Bad()


def test_train_eval_propagate():
    model = mp.models.conv4()
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_zero_grad_and_repr(tiny_mlp):
    tiny_mlp(Tensor(np.ones((2, 4)))).sum().backward()
    assert all(p.grad is not None for p in tiny_mlp.parameters())
    tiny_mlp.zero_grad()
    assert all(p.grad is None for p in tiny_mlp.parameters())
    text = repr(tiny_mlp)
    assert "(0): Linear(4, 8, bias=True)" in text and "(1): ReLU()" in text


def test_sequential_indexing():
    seq = nn.Sequential(nn.ReLU(), nn.Flatten())
    assert len(seq) == 2 and isinstance(seq[1], nn.Flatten) and list(seq)[0] is seq[0]
    with pytest.raises(TypeError, match="layers"):
        nn.Sequential(nn.ReLU(), lambda x: x)


def test_forward_hook_can_replace_output_and_be_removed(tiny_mlp):
    x = Tensor(np.ones((2, 4)))
    handle = tiny_mlp[2].register_forward_hook(lambda m, args, out: out * 0.0)
    assert np.all(tiny_mlp(x).data == 0)
    handle.remove()
    assert not np.all(tiny_mlp(x).data == 0)


# --- each layer: output shape and a float64 gradient check ------------------------------------
@pytest.mark.parametrize("bias", [True, False])
def test_linear_layer(rng, bias):
    layer = to_float64(nn.Linear(3, 4, bias=bias, rng=0))
    assert layer.weight.shape == (4, 3)
    assert layer(Tensor(np.zeros((5, 3)))).shape == (5, 4)
    grad_check(lambda x, *ps: layer(x), x64(rng, 5, 3), *layer.parameters())


@pytest.mark.parametrize("kwargs, out_hw", [
    ({"kernel_size": 3}, (4, 5)),
    ({"kernel_size": 3, "padding": 1}, (6, 7)),
    ({"kernel_size": 3, "stride": 2, "padding": 1}, (3, 4)),
    ({"kernel_size": (2, 3), "stride": (1, 2), "bias": False}, (5, 3)),
])
def test_conv2d_layer(rng, kwargs, out_hw):
    layer = to_float64(nn.Conv2d(2, 3, rng=0, **kwargs))
    assert layer(Tensor(np.zeros((2, 2, 6, 7)))).shape == (2, 3, *out_hw)
    grad_check(lambda x, *ps: layer(x), x64(rng, 2, 2, 6, 7), *layer.parameters())


@pytest.mark.parametrize("cls, shape", [(nn.BatchNorm1d, (5, 3)), (nn.BatchNorm2d, (3, 3, 2, 2))])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_layer(rng, cls, shape, training):
    layer = to_float64(cls(3))
    layer.weight.data[:] = [0.5, 1.0, 2.0]
    layer.bias.data[:] = [0.1, -0.2, 0.3]
    layer.running_mean[:] = [0.1, -0.1, 0.2]
    layer.running_var[:] = [0.5, 1.5, 2.0]
    layer.train(training)
    assert layer(Tensor(np.zeros(shape))).shape == shape
    grad_check(lambda x, *ps: layer(x), x64(rng, *shape), *layer.parameters())


def test_relu_flatten_layers(rng):
    x = rng.choice([-1.0, 1.0], (2, 3, 2, 2)) * rng.uniform(0.2, 1.0, (2, 3, 2, 2))
    assert nn.ReLU()(Tensor(x)).shape == (2, 3, 2, 2)
    assert nn.Flatten()(Tensor(x)).shape == (2, 12)
    grad_check(lambda t: nn.Flatten()(nn.ReLU()(t)), x)


@pytest.mark.parametrize("cls", [nn.MaxPool2d, nn.AvgPool2d])
def test_pool_layers(rng, cls):
    x = (rng.permutation(2 * 2 * 6 * 6) * 0.01).reshape(2, 2, 6, 6)  # distinct: no ties
    assert cls(2)(Tensor(x)).shape == (2, 2, 3, 3)
    assert cls(3, stride=1)(Tensor(x)).shape == (2, 2, 4, 4)
    grad_check(lambda t: cls(2)(t), x)
    grad_check(lambda t: cls(3, stride=1)(t), x)
    assert "kernel_size=2" in repr(cls(2))


def test_dropout_layer_gradient(rng):
    x = rng.standard_normal((4, 5))
    grad_check(lambda t: nn.Dropout(0.3, rng=7)(t), x)  # a fresh layer per call: same units drop


def test_sequential_of_layers_gradient(rng, tiny_cnn):
    to_float64(tiny_cnn).eval()
    grad_check(lambda x, *ps: tiny_cnn(x), x64(rng, 2, 1, 6, 6), *tiny_cnn.parameters(),
               atol=1e-5, rtol=1e-4)


# --- BatchNorm running statistics ---------------------------------------------------------------
def test_batchnorm_running_stats_follow_pytorch(rng):
    bn = nn.BatchNorm2d(3)
    xs = [rng.standard_normal((4, 3, 5, 5)).astype(np.float32) * 2 + 1 for _ in range(3)]
    mean, var = np.zeros(3), np.ones(3)
    for x in xs:
        out = bn(Tensor(x))
        m, v = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3), ddof=1)  # unbiased, as PyTorch
        mean, var = 0.9 * mean + 0.1 * m, 0.9 * var + 0.1 * v
        # training normalises with the batch's biased variance
        expected = (x - m[None, :, None, None]) / np.sqrt(x.var(axis=(0, 2, 3))[None, :, None, None]
                                                           + 1e-5)
        np.testing.assert_allclose(out.data, expected, atol=1e-4)
    np.testing.assert_allclose(bn.running_mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var, var, rtol=1e-5)
    assert bn.running_mean.dtype == np.float32

    bn.eval()
    x = xs[0]
    before = bn.running_mean.copy()
    out = bn(Tensor(x))
    np.testing.assert_array_equal(bn.running_mean, before)  # eval does not update
    expected = (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(out.data, expected, atol=1e-4)


def test_batchnorm1d_running_stats(rng):
    bn = nn.BatchNorm1d(2, momentum=0.5)
    x = rng.standard_normal((6, 2)).astype(np.float32)
    bn(Tensor(x))
    np.testing.assert_allclose(bn.running_mean, 0.5 * x.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(bn.running_var, 0.5 + 0.5 * x.var(axis=0, ddof=1), rtol=1e-5)


# --- Dropout ------------------------------------------------------------------------------------
def test_dropout_eval_is_identity_and_train_scales(rng):
    x = Tensor(np.ones((200, 50), dtype=np.float32))
    d = nn.Dropout(0.25, rng=0)
    d.eval()
    np.testing.assert_array_equal(d(x).data, x.data)
    d.train()
    out = d(x).data
    assert set(np.unique(out)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((out == 0).mean() - 0.25) < 0.02
    assert abs(out.mean() - 1.0) < 0.03  # inverted dropout keeps the expectation


def test_dropout_seeded_is_reproducible():
    x = Tensor(np.ones((10, 10)))
    a, b = nn.Dropout(0.5, rng=3), nn.Dropout(0.5, rng=3)
    np.testing.assert_array_equal(a(x).data, b(x).data)
    assert not np.array_equal(a(x).data, a(x).data)  # consecutive calls draw new units
    np.testing.assert_array_equal(nn.Dropout(0.0)(x).data, x.data)


# --- initialisation -----------------------------------------------------------------------------
def test_kaiming_and_xavier_statistics():
    w = nn.Linear(1000, 400, rng=0).weight.data
    assert w.std() == pytest.approx(np.sqrt(2 / 1000), rel=0.02)
    assert abs(w.mean()) < 0.002
    conv = nn.Conv2d(16, 64, 5, rng=0).weight.data  # fan_in = 16·5·5
    assert conv.std() == pytest.approx(np.sqrt(2 / 400), rel=0.03)

    def fresh():
        return nn.Parameter(np.empty((300, 700), np.float32))

    assert init.kaiming_uniform_(fresh(), rng=0).data.std() == pytest.approx(np.sqrt(2 / 700), rel=0.02)
    xu = init.xavier_uniform_(fresh(), rng=0).data
    assert xu.std() == pytest.approx(np.sqrt(2 / 1000), rel=0.02)
    assert np.abs(xu).max() <= np.sqrt(6 / 1000) + 1e-7
    assert init.xavier_normal_(fresh(), gain=2.0, rng=0).data.std() == pytest.approx(
        2 * np.sqrt(2 / 1000), rel=0.02)
    assert init.kaiming_normal_(fresh(), "linear", rng=0).data.std() == pytest.approx(
        np.sqrt(1 / 700), rel=0.02)
    assert np.all(init.zeros_(fresh()).data == 0) and np.all(init.ones_(fresh()).data == 1)


def test_init_is_seeded_and_keeps_masks():
    a = init.kaiming_normal_(nn.Parameter(np.empty((4, 5), np.float32)), rng=1)
    b = init.kaiming_normal_(nn.Parameter(np.empty((4, 5), np.float32)), rng=1)
    np.testing.assert_array_equal(a.data, b.data)
    mask = np.arange(20).reshape(4, 5) % 2 == 0
    a.set_mask(mask)
    init.kaiming_normal_(a, rng=2)
    assert np.all(a.data[~mask] == 0)


def test_init_bad_arguments():
    with pytest.raises(ValueError, match="nonlinearity"):
        init.kaiming_normal_(nn.Parameter(np.empty((3, 3))), nonlinearity="gelu")
    with pytest.raises(ValueError, match="shape"):
        init.xavier_uniform_(nn.Parameter(np.empty(3)))


# --- state_dict ---------------------------------------------------------------------------------
def test_state_dict_round_trip_with_buffers():
    src, dst = mp.models.conv4(seed=0), mp.models.conv4(seed=1)
    src(Tensor(np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)))  # move BN stats
    state = src.state_dict()
    assert "features.1.running_mean" in state and "features.0.weight" in state
    dst.load_state_dict(state)
    for (name, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    state["features.0.weight"][...] = 123.0  # the state dict holds copies
    assert not np.any(src.features[0].weight.data == 123.0)
    assert not np.any(dst.features[0].weight.data == 123.0)


def test_load_state_dict_names_missing_and_unexpected_keys():
    model = mp.models.lenet5()
    state = model.state_dict()
    del state["classifier.5.bias"]
    state["classifier.9.weight"] = np.zeros(3)
    with pytest.raises(KeyError) as err:
        model.load_state_dict(state)
    assert "classifier.5.bias" in str(err.value) and "classifier.9.weight" in str(err.value)


@pytest.mark.parametrize("key", ["features.0.weight", "features.1.running_var",
                                 "features.0.weight_mask"])
def test_load_state_dict_shape_mismatch_names_key_and_changes_nothing(key):
    model = mp.models.conv4(seed=0)
    state = mp.models.conv4(seed=1).state_dict()
    state[key] = np.ones(7, dtype=bool if key.endswith("_mask") else np.float32)
    before = model.state_dict()
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        model.load_state_dict(state)
    after = model.state_dict()
    assert list(after) == list(before)
    for name in before:  # a failed load leaves the model as it was
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)


def test_deepcopy_is_independent():
    model = mp.models.lenet5()
    model.features[0].weight.set_mask(np.ones((6, 1, 5, 5), bool))
    clone = copy.deepcopy(model)
    clone.features[0].weight.data += 1.0
    clone.features[0].weight.mask[0] = False
    clone.eval()
    assert model.training
    assert np.all(model.features[0].weight.mask)
    assert not np.allclose(model.features[0].weight.data, clone.features[0].weight.data)
    assert [n for n, _ in clone.named_parameters()] == [n for n, _ in model.named_parameters()]
    assert clone.arch == "lenet5"


# --- save / load --------------------------------------------------------------------------------
def test_save_load_round_trip_with_model(tmp_path):
    model = mp.models.conv4(seed=0)
    model(Tensor(np.ones((2, 1, 28, 28), np.float32)))
    path = mp.save(model, tmp_path / "m.npz")
    assert path.suffix == ".npz" and path.is_file()
    loaded = mp.load(path, mp.models.conv4(seed=5))
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_save_load_rebuilds_architecture(tmp_path):
    model = mp.models.lenet5(seed=3)
    mp.save(model, tmp_path / "sub" / "lenet.npz")  # parent directories are created
    loaded = mp.load(tmp_path / "sub" / "lenet.npz")
    assert loaded.arch == "lenet5"
    x = Tensor(np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32))
    np.testing.assert_array_equal(model(x).data, loaded(x).data)


def test_save_load_bad_paths(tmp_path, tiny_mlp):
    with pytest.raises(ValueError, match="path"):
        mp.save(tiny_mlp, tmp_path / "m.pt")
    with pytest.raises(FileNotFoundError, match="path"):
        mp.load(tmp_path / "missing.npz")
    mp.save(tiny_mlp, tmp_path / "plain.npz")
    with pytest.raises(ValueError, match="model"):
        mp.load(tmp_path / "plain.npz")  # a bare Sequential records no architecture


def test_failed_save_leaves_no_partial_file(tmp_path, monkeypatch, tiny_mlp):
    target = tmp_path / "m.npz"
    mp.save(tiny_mlp, target)
    good = target.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np.lib.format, "write_array", boom)
    with pytest.raises(OSError, match="disk full"):
        mp.save(tiny_mlp, target)
    with pytest.raises(OSError, match="disk full"):
        mp.save(tiny_mlp, tmp_path / "new.npz")
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]  # no temp file, no half-written new.npz
    assert target.read_bytes() == good  # the old file is untouched


# --- masks --------------------------------------------------------------------------------------
def test_set_mask_zeroes_weights_and_grads(rng):
    p = nn.Parameter(rng.standard_normal((3, 4)).astype(np.float32))
    p.grad = np.ones((3, 4), np.float32)
    mask = rng.random((3, 4)) > 0.5
    p.set_mask(mask)
    assert p.mask.dtype == bool
    assert np.all(p.data[~mask] == 0) and np.all(p.grad[~mask] == 0)
    assert np.all(p.data[mask] != 0)
    p.set_mask(None)
    assert p.mask is None
    with pytest.raises(ValueError, match="mask"):
        p.set_mask(np.ones((4, 3), bool))


def test_masked_layer_gives_zero_gradient_to_pruned_weights(rng):
    layer = nn.Linear(4, 3, rng=0)
    mask = rng.random((3, 4)) > 0.5
    layer.weight.set_mask(mask)
    layer(Tensor(rng.standard_normal((5, 4)))).sum().backward()
    assert np.all(layer.weight.grad[~mask] == 0)


def _mask_model():
    model = mp.models.lenet5()
    masks = {}
    for name, p in model.named_parameters():
        if name.endswith("weight"):
            masks[name] = np.random.default_rng(len(name)).random(p.shape) > 0.5
            p.set_mask(masks[name])
    model.classifier[3].output_mask = np.arange(84) % 3 != 0
    return model, masks


def _assert_same_masks(model, masks):
    for name, p in model.named_parameters():
        if name in masks:
            np.testing.assert_array_equal(p.mask, masks[name], err_msg=name)
            assert np.all(p.data[~masks[name]] == 0)
        else:
            assert p.mask is None
    np.testing.assert_array_equal(model.classifier[3].output_mask, np.arange(84) % 3 != 0)


def test_masks_survive_state_dict_deepcopy_and_save_load(tmp_path):
    model, masks = _mask_model()
    state = model.state_dict()
    assert "features.0.weight_mask" in state and "classifier.3.output_mask" in state
    fresh = mp.models.lenet5(seed=9).load_state_dict(state)
    _assert_same_masks(fresh, masks)
    _assert_same_masks(copy.deepcopy(model), masks)
    mp.save(model, tmp_path / "pruned.npz")
    _assert_same_masks(mp.load(tmp_path / "pruned.npz"), masks)
    _assert_same_masks(mp.load(tmp_path / "pruned.npz", mp.models.lenet5(seed=4)), masks)
    # and a dense state dict clears masks again
    fresh.load_state_dict(mp.models.lenet5().state_dict())
    assert all(p.mask is None for p in fresh.parameters())
    assert fresh.classifier[3].output_mask is None


def test_output_mask_zeroes_output_units(rng):
    lin = nn.Linear(4, 5, rng=0)
    lin.output_mask = np.array([True, False, True, True, False])
    out = lin(Tensor(rng.standard_normal((3, 4))))
    assert np.all(out.data[:, [1, 4]] == 0) and np.all(out.data[:, [0, 2, 3]] != 0)
    conv = nn.Conv2d(1, 3, 3, rng=0)
    conv.output_mask = np.array([False, True, True])
    out = conv(Tensor(rng.standard_normal((2, 1, 5, 5))))
    assert np.all(out.data[:, 0] == 0) and np.any(out.data[:, 1] != 0)


# --- bad arguments ------------------------------------------------------------------------------
@pytest.mark.parametrize("make, exc, name", [
    (lambda: nn.Linear(0, 3), ValueError, "in_features"),
    (lambda: nn.Linear(3, -1), ValueError, "out_features"),
    (lambda: nn.Linear(2.5, 3), TypeError, "in_features"),
    (lambda: nn.Linear(True, 3), TypeError, "in_features"),
    (lambda: nn.Conv2d(0, 3, 3), ValueError, "in_channels"),
    (lambda: nn.Conv2d(1, 3.0, 3), TypeError, "out_channels"),
    (lambda: nn.Conv2d(1, 3, 0), ValueError, "kernel_size"),
    (lambda: nn.Conv2d(1, 3, "3"), TypeError, "kernel_size"),
    (lambda: nn.Conv2d(1, 3, 3, stride=0), ValueError, "stride"),
    (lambda: nn.Conv2d(1, 3, 3, padding=-1), ValueError, "padding"),
    (lambda: nn.BatchNorm2d(0), ValueError, "num_features"),
    (lambda: nn.BatchNorm1d(2, momentum=1.5), ValueError, "momentum"),
    (lambda: nn.Dropout(1.0), ValueError, "p"),
    (lambda: nn.Dropout(-0.1), ValueError, "p"),
    (lambda: nn.MaxPool2d(0), ValueError, "kernel_size"),
    (lambda: nn.MaxPool2d(2, stride=0), ValueError, "stride"),
    (lambda: nn.AvgPool2d(2.5), TypeError, "kernel_size"),
    (lambda: nn.AvgPool2d((2, 2, 2)), TypeError, "kernel_size"),
    (lambda: nn.BatchNorm1d(2, momentum=float("nan")), ValueError, "momentum"),
    (lambda: nn.BatchNorm1d(2, eps=0), ValueError, "eps"),
    (lambda: nn.Dropout("0.5"), TypeError, "p"),
    (lambda: nn.Dropout(True), TypeError, "p"),
])
def test_bad_constructor_arguments(make, exc, name):
    with pytest.raises(exc, match=f"^{name}"):
        make()


@pytest.mark.parametrize("layer, shape", [
    (nn.Linear(4, 3), (2, 5)),
    (nn.Linear(4, 3), (2, 2, 2)),
    (nn.Conv2d(2, 3, 3), (1, 1, 5, 5)),
    (nn.Conv2d(2, 3, 3), (2, 5, 5)),
    (nn.Conv2d(2, 3, 3), (1, 2, 2, 2)),
    (nn.BatchNorm2d(3), (2, 4, 2, 2)),
    (nn.BatchNorm2d(3), (2, 3)),
    (nn.BatchNorm1d(3), (2, 4)),
    (nn.MaxPool2d(2), (1, 4, 4)),
    (nn.MaxPool2d(3), (1, 1, 2, 2)),
])
def test_wrong_input_shape_names_x(layer, shape):
    with pytest.raises(ValueError, match="x"):
        layer(Tensor(np.zeros(shape, np.float32)))


@pytest.mark.parametrize("layer, shape", [
    (nn.Linear(4, 3), (0, 4)),
    (nn.Conv2d(1, 3, 3), (0, 1, 5, 5)),
    (nn.MaxPool2d(2), (0, 1, 4, 4)),
    (nn.AvgPool2d(2), (0, 1, 4, 4)),
    (nn.Flatten(), (0, 1, 4, 4)),
])
def test_an_empty_batch_is_refused_by_every_layer_alike(layer, shape):
    with pytest.raises(ValueError, match=r"^x: an empty batch \(shape \(0,"):
        layer(Tensor(np.zeros(shape, np.float32)))


@pytest.mark.parametrize("name", ["lenet_300_100", "lenet5", "conv4"])
def test_an_empty_batch_through_any_model_names_x(name):
    with pytest.raises(ValueError, match="^x: an empty batch"):
        mp.models.get_model(name)(Tensor(np.zeros((0, 1, 28, 28), np.float32)))
    with pytest.raises(ValueError, match="^logits: expected shape .* N ≥ 1"):
        mp.nn.functional.cross_entropy(Tensor(np.zeros((0, 10), np.float32)), np.zeros(0, int))


@pytest.mark.parametrize("name", ["lenet_300_100", "lenet5", "conv4"])
def test_float16_input_is_computed_in_float32_by_linear_and_conv_alike(name):
    """Linear promotes float16 @ float32 to float32 (NumPy's rule); Conv2d, pooling, ReLU and
    BatchNorm do the same instead of failing in a kernel."""
    model = mp.models.get_model(name, seed=0)
    x = np.random.default_rng(0).random((3, 1, 28, 28))
    x16 = Tensor(x.astype(np.float16), requires_grad=True)
    out16 = model(x16)
    mp.nn.functional.cross_entropy(out16, [0, 1, 2]).backward()
    assert out16.dtype == np.float32 and x16.grad.dtype == np.float32
    out32 = model(Tensor(x.astype(np.float16).astype(np.float32)))
    np.testing.assert_allclose(out16.data, out32.data, rtol=1e-6, atol=1e-6)


def test_float16_through_each_layer_without_weights(rng):
    x = Tensor(rng.random((2, 3, 4, 4)).astype(np.float16), requires_grad=True)
    for layer in (nn.MaxPool2d(2), nn.AvgPool2d(2), nn.ReLU(), nn.BatchNorm2d(3)):
        out = layer(x)
        out.sum().backward()
        assert out.dtype == np.float32 and x.grad.shape == x.shape
        x.grad = None


def test_output_mask_must_match_the_layer_and_be_boolean():
    lin = nn.Linear(4, 5, rng=0)
    for bad in (np.ones(4, bool), np.ones((5, 1), bool), np.ones(6, bool)):
        with pytest.raises(ValueError, match=r"^output_mask: .*\(5\) of Linear, got shape"):
            lin.output_mask = bad
    with pytest.raises(TypeError, match="^output_mask: expected a boolean array"):
        lin.output_mask = np.array([0.5, 1, 1, 1, 1])
    assert lin.output_mask is None  # a refused mask is not installed
    lin.output_mask = np.array([1, 0, 1, 1, 1])  # 0/1 numbers are read as booleans
    assert lin.output_mask.dtype == bool and lin.output_mask.sum() == 4
    conv, bn = nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3)
    for layer in (conv, bn):
        with pytest.raises(ValueError, match=r"^output_mask: .*\(3\)"):
            layer.output_mask = np.ones(2, bool)
    relu = nn.ReLU()  # a layer without a fixed width: checked against the output it masks
    relu.output_mask = np.ones(3, bool)
    with pytest.raises(ValueError, match=r"^output_mask: has 3 entries but ReLU's output has "
                                         r"shape \(2, 4\)"):
        relu(Tensor(np.ones((2, 4), np.float32)))


def test_load_state_dict_refuses_a_wrong_output_mask_and_changes_nothing():
    model = mp.models.lenet5()
    state = model.state_dict()
    state["classifier.3.output_mask"] = np.ones(83, bool)
    fresh = mp.models.lenet5(seed=5)
    before = fresh.state_dict()
    with pytest.raises(ValueError, match="output_mask"):
        fresh.load_state_dict(state)
    after = fresh.state_dict()
    assert after.keys() == before.keys()
    for k in before:
        np.testing.assert_array_equal(after[k], before[k])


def test_masks_select_so_nan_and_inf_weights_become_exactly_zero():
    p = nn.Parameter(np.array([[np.nan, np.inf], [-np.inf, 1.0]], np.float32))
    p.grad = np.full((2, 2), np.nan, np.float32)
    p.set_mask(np.array([[False, False], [False, True]]))
    np.testing.assert_array_equal(p.data, [[0, 0], [0, 1]])
    np.testing.assert_array_equal(p.grad[~p.mask], [0, 0, 0])
    lin = nn.Linear(2, 2, rng=0)
    lin.weight.set_mask(np.array([[True, False], [True, True]]))
    lin.weight.data[0, 1] = np.nan  # a pruned weight corrupted behind the mask's back
    out = lin(Tensor(np.ones((1, 2), np.float32)))
    assert np.isfinite(out.data).all()  # the forward selects: NaN · 0 would be NaN
    out.sum().backward()
    assert lin.weight.grad[0, 1] == 0


@pytest.mark.filterwarnings("ignore:invalid value")
def test_output_mask_silences_nan_activations():
    lin = nn.Linear(2, 3, rng=0)
    lin.weight.data[1] = np.inf
    lin.output_mask = np.array([True, False, True])
    out = lin(Tensor(np.array([[1.0, -1.0]], np.float32)))
    assert out.data[0, 1] == 0 and np.isfinite(out.data).all()


def test_init_keeps_pruned_weights_zero_even_from_nan():
    p = nn.Parameter(np.full((3, 4), np.nan, np.float32))
    p.mask = np.eye(3, 4, dtype=bool)
    nn.init.kaiming_normal_(p, rng=0)
    assert (p.data[~p.mask] == 0).all() and (p.data[p.mask] != 0).all()


def test_layer_constructors_take_numpy_integers_and_floats():
    lin = nn.Linear(np.int64(4), np.int32(3))
    conv = nn.Conv2d(np.int64(1), np.int64(2), (np.int64(3), 3), stride=np.int64(1),
                     padding=np.int8(1))
    bn = nn.BatchNorm2d(np.int64(2), eps=np.float32(1e-3), momentum=np.float64(0.2))
    drop = nn.Dropout(np.float32(0.25))
    assert lin.weight.shape == (3, 4) and conv.weight.shape == (2, 1, 3, 3)
    assert type(conv.kernel_size[0]) is int and bn.momentum == pytest.approx(0.2)
    assert drop.p == 0.25
    out = nn.MaxPool2d(np.int64(2))(conv(Tensor(np.ones((1, 1, 4, 4), np.float32))))
    assert out.shape == (1, 2, 2, 2)


def test_average_pooling_is_not_a_kind_of_max_pooling():
    assert not issubclass(nn.AvgPool2d, nn.MaxPool2d)
    assert not isinstance(nn.AvgPool2d(2), nn.MaxPool2d)
    x = Tensor(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4))
    np.testing.assert_array_equal(nn.AvgPool2d(2)(x).data, [[[[2.5, 4.5], [10.5, 12.5]]]])
    np.testing.assert_array_equal(nn.MaxPool2d(2)(x).data, [[[[5, 7], [13, 15]]]])


def test_replacing_a_layer_keeps_its_place_in_the_order():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 3), nn.Linear(3, 2)
    net = Net()
    net.fc1 = nn.Linear(4, 3)
    net.fc2.bias = nn.Parameter(np.zeros(2, np.float32))
    assert [n for n, _ in net.named_modules()][1:] == ["fc1", "fc2"]
    assert [n for n, _ in net.named_parameters()] == ["fc1.weight", "fc1.bias", "fc2.weight",
                                                      "fc2.bias"]
    net.fc1 = None  # no longer a module
    assert [n for n, _ in net.named_modules()][1:] == ["fc2"]
