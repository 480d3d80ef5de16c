"""Masks (prune/masks.py): a pruned weight is exactly 0 and stays 0 — through training with every
optimizer, state_dict / deepcopy / save-load round trips — until `remove` or `reset`."""
import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minprune as mp
from minprune import nn
from minprune.nn import functional as fn
from minprune.prune.masks import following_batchnorm, get_masks, prunable_layers

pytestmark = pytest.mark.pruning


def mlp(seed=0):
    r = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(6, 10, rng=r), nn.ReLU(), nn.Linear(10, 8, rng=r), nn.ReLU(),
                         nn.Linear(8, 3, rng=r))


def small_cnn(seed=0):
    r = np.random.default_rng(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, rng=r), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 3, rng=r))


OPTIMIZERS = {
    "sgd": lambda ps: mp.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
    "adam": lambda ps: mp.optim.Adam(ps, lr=0.01, weight_decay=1e-2),
}


def assert_invariant(model):
    for name, p in model.named_parameters():
        if p.mask is not None:
            assert np.all(p.data[~p.mask] == 0), name
            if p.grad is not None and name.endswith("weight") and p.data.ndim > 1:
                assert np.all(p.grad[~p.mask] == 0), name


@settings(max_examples=8)
@given(s=st.floats(0.0, 0.95), opt=st.sampled_from(sorted(OPTIMIZERS)),
       granularity=st.sampled_from(["unstructured", "filter"]), cnn=st.booleans())
def test_pruned_weights_stay_zero_through_training(s, opt, granularity, cnn):
    model = small_cnn() if cnn else mlp()
    r = np.random.default_rng(1)
    x = r.normal(size=(16, 1, 6, 6) if cnn else (16, 6)).astype(np.float32)
    y = r.integers(0, 3, 16)
    masks = mp.prune.prune(model, s, granularity=granularity, scope="layerwise")
    zeros_before = {n: ~m for n, m in masks.items()}
    optimizer = OPTIMIZERS[opt](model.parameters())
    for step in range(50):
        loss = fn.cross_entropy(model(mp.Tensor(x[step % 4 * 4:step % 4 * 4 + 4])),
                                y[step % 4 * 4:step % 4 * 4 + 4])
        optimizer.zero_grad()
        loss.backward()
        assert_invariant(model)  # gradients of pruned weights are 0
        optimizer.step()
        assert_invariant(model)  # weights still exactly 0 after momentum / decay / Adam
    for n, m in prunable_layers(model).items():
        assert np.all(m.weight.data[zeros_before[n]] == 0)
        np.testing.assert_array_equal(m.weight.mask, masks[n])
    if granularity == "filter":  # biases (and BN γ, β) of dead units stay 0 as well
        for n, m in prunable_layers(model).items():
            dead = ~masks[n].reshape(masks[n].shape[0], -1).any(axis=1)
            assert np.all(m.bias.data[dead] == 0)


# What a step may throw at the weights: ordinary or non-finite gradients, and learning rates
# that a schedule or a user set to inf/NaN after the optimizer was built.
_GRADS = st.sampled_from(["normal", "nan", "inf", "-inf", "huge", "zero"])
_RATES = st.sampled_from([0.1, 1e30, float("inf"), float("nan"), -1.0])
_MAKERS = {
    "sgd": lambda ps: mp.optim.SGD(ps, lr=0.1),
    "momentum": lambda ps: mp.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1),
    "nesterov": lambda ps: mp.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    "adam": lambda ps: mp.optim.Adam(ps, lr=0.1, weight_decay=0.1),
}


def _gradient(kind, shape, r):
    g = r.normal(size=shape).astype(np.float32)
    spots = r.random(shape) < 0.5  # pruned and kept weights alike get the bad values
    if kind in ("nan", "inf", "-inf"):
        g[spots] = float(kind)
    elif kind == "huge":
        g[spots] = 3e38
    elif kind == "zero":
        g[:] = 0
    return g


@settings(max_examples=60)
@given(make=st.sampled_from(sorted(_MAKERS)), steps=st.lists(st.tuples(_GRADS, _RATES),
                                                             min_size=1, max_size=6),
       seed=st.integers(0, 2 ** 16))
def test_no_sequence_of_optimizer_steps_leaves_a_pruned_weight_other_than_zero(make, steps, seed):
    r = np.random.default_rng(seed)
    model = mlp(seed % 7)
    masks = mp.prune.prune(model, 0.5, criterion="random", seed=seed)
    pruned_fraction = mp.prune.sparsity(model)
    opt = _MAKERS[make](model.parameters())
    with np.errstate(all="ignore"):  # overflow and NaN are the point here
        for kind, lr in steps:
            for p in model.parameters():
                p.grad = _gradient(kind, p.shape, r)
            opt.lr = lr
            opt.step()
            for i, p in enumerate(opt.params):
                if p.mask is not None:
                    assert np.count_nonzero(p.data[~p.mask]) == 0  # exactly 0: not NaN, not -0…
                    for buf in opt.state.get(i, {}).values():
                        if isinstance(buf, np.ndarray):  # nor can momentum or Adam bring it back
                            assert np.count_nonzero(buf[~p.mask]) == 0
    for n, m in prunable_layers(model).items():
        np.testing.assert_array_equal(m.weight.mask, masks[n])
    assert mp.prune.sparsity(model) >= pruned_fraction  # NaN survivors are not counted as zeros


def test_a_huge_learning_rate_cannot_make_pruned_weights_nan(mnist_small):
    """The issue's example: SGD with a huge learning rate turned pruned weights into NaN
    (NaN · 0 = NaN), and sparsity() then reported less than was pruned."""
    x, y = mnist_small
    model = mp.models.lenet_300_100(seed=0)
    mp.prune.prune(model, 0.9)
    opt = mp.optim.SGD(model.parameters(), lr=1e30, momentum=0.9)
    with np.errstate(all="ignore"):
        for i in range(3):
            opt.zero_grad()
            fn.cross_entropy(model(mp.Tensor(x[i * 32:(i + 1) * 32])), y[i * 32:(i + 1) * 32]).backward()
            opt.step()
    assert any(np.isnan(p.data).any() for p in model.parameters())  # training did blow up
    assert mp.prune.sparsity(model) >= 0.9
    for m in prunable_layers(model).values():
        assert np.count_nonzero(m.weight.data[~m.weight.mask]) == 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_pruning_a_model_with_non_finite_weights(bad):
    model = mlp()
    model[0].weight.data[0, :3] = bad
    n = sum(m.weight.size for m in prunable_layers(model).values())
    random = copy.deepcopy(model)  # a data-free criterion that does not look at the values
    mp.prune.prune(random, 0.5, criterion="random", scope="global")
    assert mp.prune.sparsity(random) == round(0.5 * n) / n
    for m in prunable_layers(random).values():
        assert np.count_nonzero(m.weight.data[~m.weight.mask]) == 0
    everything = copy.deepcopy(model)
    if np.isnan(bad):  # a NaN weight has no magnitude to rank: an error that says why
        with pytest.raises(ValueError, match=r"NaN scores for '0' \(the weights of '0' hold NaN"):
            mp.prune.prune(everything, 0.5)
    else:  # ±inf is the largest magnitude: kept at 50%, and 0 once pruned at 100%
        mp.prune.prune(everything, 0.5)
        assert np.isinf(everything[0].weight.data[0, :3]).all()
        mp.prune.prune(everything, 1.0)
        assert mp.prune.sparsity(everything) == 1.0


def test_optimizer_state_of_pruned_weights_is_zeroed(tiny_mlp, rng):
    x, y = rng.normal(size=(8, 4)).astype(np.float32), rng.integers(0, 3, 8)
    opt = mp.optim.SGD(tiny_mlp.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):  # build up momentum while dense
        opt.zero_grad()
        fn.cross_entropy(tiny_mlp(mp.Tensor(x)), y).backward()
        opt.step()
    masks = mp.prune.prune(tiny_mlp, 0.5)
    opt.zero_grad()
    fn.cross_entropy(tiny_mlp(mp.Tensor(x)), y).backward()
    opt.step()  # momentum alone would move pruned weights: the step must re-zero them
    for i, p in enumerate(opt.params):
        if p.mask is not None:
            assert np.all(p.data[~p.mask] == 0)
            assert np.all(opt.state[i]["momentum"][~p.mask] == 0)
    assert set(masks) == {"0", "2"}


def test_fit_keeps_masks(tiny_cnn, rng):
    x = rng.normal(size=(32, 1, 6, 6)).astype(np.float32)
    y = rng.integers(0, 3, 32)
    masks = mp.prune.prune(tiny_cnn, 0.7)
    mp.train.fit(tiny_cnn, (x, y), epochs=2, batch_size=8, optimizer="adam", lr=0.01,
                 weight_decay=1e-3, progress=False)
    for n, m in prunable_layers(tiny_cnn).items():
        assert np.all(m.weight.data[~masks[n]] == 0)
    n = sum(m.weight.size for m in prunable_layers(tiny_cnn).values())
    assert mp.prune.sparsity(tiny_cnn) == pytest.approx(round(0.7 * n) / n)


# --- round trips --------------------------------------------------------------------------------
def pruned_lenet5():
    model = mp.models.lenet5(seed=2)
    mp.prune.prune(model, 0.8, scope="layerwise")
    mp.prune.prune(model, scope={"features.3": 0.5}, granularity="filter")
    return model


def assert_same_masks_and_weights(a, b):
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    assert set(pa) == set(pb)
    for n in pa:
        np.testing.assert_array_equal(pa[n].data, pb[n].data)
        if pa[n].mask is None:
            assert pb[n].mask is None, n
        else:
            np.testing.assert_array_equal(pa[n].mask, pb[n].mask)


def test_state_dict_round_trip_keeps_masks():
    model = pruned_lenet5()
    state = model.state_dict()
    assert "features.0.weight_mask" in state and "features.3.bias_mask" in state
    fresh = mp.models.lenet5(seed=9)
    fresh.load_state_dict(state)
    assert_same_masks_and_weights(model, fresh)
    # loading into a pruned model a dense state makes it dense again
    dense = mp.models.lenet5(seed=3)
    fresh.load_state_dict(dense.state_dict())
    assert all(p.mask is None for p in fresh.parameters())


def test_deepcopy_keeps_masks_and_is_independent():
    model = pruned_lenet5()
    clone = copy.deepcopy(model)
    assert_same_masks_and_weights(model, clone)
    clone.features[0].weight.mask[:] = False
    assert model.features[0].weight.mask.any()


def test_save_load_round_trip_keeps_masks(tmp_path):
    model = pruned_lenet5()
    path = mp.save(model, tmp_path / "pruned.npz")
    assert_same_masks_and_weights(model, mp.load(path))  # architecture rebuilt from the file
    into = mp.models.lenet5(seed=5)
    assert_same_masks_and_weights(model, mp.load(path, into))
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left behind


def test_saved_pruned_file_is_not_larger_than_dense(tmp_path):
    """torch stores weight_orig and weight_mask (double the size); we store zeros + a bit mask."""
    dense = mp.models.lenet5(seed=2)
    a = mp.save(dense, tmp_path / "dense.npz").stat().st_size
    b = mp.save(pruned_lenet5(), tmp_path / "pruned.npz").stat().st_size
    assert b < a


# --- remove / reset -----------------------------------------------------------------------------
def test_remove_bakes_zeros_and_drops_masks(tiny_mlp, rng):
    masks = mp.prune.prune(tiny_mlp, 0.5, granularity="neuron")
    mp.prune.remove(tiny_mlp)
    assert all(p.mask is None for p in tiny_mlp.parameters())
    for n, m in prunable_layers(tiny_mlp).items():
        np.testing.assert_array_equal(m.weight.data != 0, masks[n])
    baked = mp.prune.sparsity(tiny_mlp)
    assert baked == pytest.approx((4 * 4 + 2 * 8) / 56)  # 4 of 8 and round(1.5) = 2 of 3 neurons
    # without masks, training may regrow them
    x, y = rng.normal(size=(8, 4)).astype(np.float32), rng.integers(0, 3, 8)
    opt = mp.optim.SGD(tiny_mlp.parameters(), lr=0.1)
    fn.cross_entropy(tiny_mlp(mp.Tensor(x)), y).backward()
    opt.step()
    assert mp.prune.sparsity(tiny_mlp) < baked


def test_reset_drops_weight_and_activation_masks(tiny_mlp, rng):
    x, y = rng.normal(size=(8, 4)).astype(np.float32), rng.integers(0, 3, 8)
    mp.prune.prune(tiny_mlp, 0.5)
    mp.prune.prune(tiny_mlp, 0.5, target="activations", batch=(x, y))
    assert tiny_mlp[0].output_mask is not None
    mp.prune.reset(tiny_mlp)
    assert all(p.mask is None for p in tiny_mlp.parameters())
    assert all(m.output_mask is None for m in tiny_mlp.modules())
    assert mp.prune.sparsity(tiny_mlp) == pytest.approx(0.5)  # zeros stay until trained


def test_get_and_apply_masks_are_monotone(tiny_mlp):
    dense = get_masks(tiny_mlp)
    assert all(m.all() and m.dtype == bool for m in dense.values())
    a = np.ones((8, 4), bool)
    a[0] = False
    mp.prune.apply_masks(tiny_mlp, {"0.weight": a})
    b = np.ones((8, 4), bool)
    b[1] = False
    mp.prune.apply_masks(tiny_mlp, {"0": b})
    assert not get_masks(tiny_mlp)["0"][:2].any() and get_masks(tiny_mlp)["0"][2:].all()
    with pytest.raises(ValueError, match="shape"):
        mp.prune.apply_masks(tiny_mlp, {"2": np.ones((2, 2), bool)})
    with pytest.raises(ValueError, match="prunable"):
        mp.prune.apply_masks(tiny_mlp, {"1": np.ones((8, 4), bool)})


def test_exclude_leaves_layer_dense_and_is_validated():
    model = mp.models.lenet5()
    masks = mp.prune.prune(model, 0.9, exclude=["classifier.5"])
    assert "classifier.5" not in masks and model.classifier[5].weight.mask is None
    with pytest.raises(ValueError, match="exclude"):
        mp.prune.prune(model, 0.9, exclude=["classifier.4"])
    with pytest.raises(ValueError, match=r"^model: no prunable \(Conv2d or Linear\) layers"):
        mp.prune.prune(nn.Sequential(nn.Linear(2, 2)), 0.5, exclude="0")


def test_masks_of_any_truthy_dtype_are_masks():
    """apply_masks takes 0/1 (or 0.0/1.0) arrays as well as booleans, and ANDs them all the
    same with what is already pruned."""
    model = nn.Sequential(nn.Linear(3, 2, rng=0))
    mp.prune.apply_masks(model, {"0": np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])})
    mp.prune.apply_masks(model, {"0": np.array([[1.0, 1.0, 1.0], [0.0, 1.0, 1.0]])})
    mask = model[0].weight.mask
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask, [[True, False, True], [False, True, True]])
    np.testing.assert_array_equal(model[0].weight.data == 0, ~mask)


def test_unit_masks_on_bias_and_batchnorm_only_ever_grow():
    """A bias or BatchNorm entry masked before (by hand, or an earlier pruning) stays masked when
    a later filter pruning masks other units: their masks are ANDed, never replaced."""
    r = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(3, 4, rng=r), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2, rng=r))
    lin, bn = model[0], model[1]
    lin.bias.data[:] = 1.0
    bn.bias.data[:] = 1.0
    lin.bias.set_mask(np.array([True, False, True, True]))
    bn.weight.set_mask(np.array([True, True, False, True]))
    keep = np.ones((4, 3), bool)
    keep[0] = False
    mp.prune.apply_masks(model, {"0": keep})
    alive = mp.prune.masks.mask_dead_units(model, "0")
    assert alive.dtype == bool
    np.testing.assert_array_equal(alive, [False, True, True, True])
    np.testing.assert_array_equal(lin.bias.mask, [False, False, True, True])
    np.testing.assert_array_equal(bn.weight.mask, [False, True, False, True])
    np.testing.assert_array_equal(bn.bias.mask, [False, True, True, True])
    np.testing.assert_array_equal(lin.bias.data, [0.0, 0.0, 1.0, 1.0])


# --- filter pruning takes the bias and the BatchNorm along --------------------------------------
def test_filter_pruning_zeroes_bias_and_batchnorm_of_conv4():
    model = mp.models.conv4(seed=0)
    r = np.random.default_rng(0)
    for m in model.modules():  # make the biases, BN shifts and statistics nonzero first
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.bias.data[:] = r.normal(0, 0.1, m.bias.shape)
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data[:] = r.uniform(0.5, 1.5, m.num_features)
            m.bias.data[:] = r.normal(0, 0.1, m.num_features)
            m.running_mean[:] = r.normal(0, 0.1, m.num_features)
            m.running_var[:] = r.uniform(0.5, 2, m.num_features)
    masks = mp.prune.prune(model, 0.25, granularity="filter", scope="layerwise",
                           exclude="classifier.3")
    for name in ("features.0", "features.3", "features.7", "features.10"):
        dead = ~masks[name].reshape(masks[name].shape[0], -1).any(axis=1)
        assert dead.sum() == round(0.25 * dead.size)
        conv = prunable_layers(model)[name]
        bn = following_batchnorm(model, name)
        assert bn is dict(model.named_modules())[name[:-1] + str(int(name[-1]) + 1)]
        assert np.all(conv.bias.data[dead] == 0) and np.all(conv.bias.data[~dead] != 0)
        assert np.all(bn.weight.data[dead] == 0) and np.all(bn.bias.data[dead] == 0)
        np.testing.assert_array_equal(bn.weight.mask, ~dead)

    # a dead channel contributes nothing: its activations are exactly 0 in train and eval mode,
    # and removing its outgoing weights by hand changes no output bit
    dead0 = ~masks["features.0"].reshape(32, -1).any(axis=1)
    x = r.normal(size=(4, 1, 28, 28)).astype(np.float32)
    seen = []
    handle = model.features[2].register_forward_hook(lambda m, i, o: seen.append(o.data.copy()))
    for mode in (False, True):
        model.train(mode)
        out = copy.deepcopy(model)(mp.Tensor(x)).data
        cut = copy.deepcopy(model)
        cut.features[3].weight.data[:, dead0] = 0
        np.testing.assert_array_equal(cut(mp.Tensor(x)).data, out)
    handle.remove()
    assert seen and all(np.all(a[:, dead0] == 0) for a in seen)


def test_neuron_pruning_zeroes_bias_and_batchnorm1d():
    r = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(5, 6, rng=r), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2, rng=r))
    model[0].bias.data[:] = 1.0
    model[1].bias.data[:] = 1.0
    masks = mp.prune.prune(model, scope={"0": 0.5}, granularity="neuron")
    dead = ~masks["0"].any(axis=1)
    assert dead.sum() == 3
    assert np.all(model[0].bias.data[dead] == 0) and np.all(model[1].bias.data[dead] == 0)
    assert np.all(model[1].weight.data[dead] == 0)
    model.eval()
    h = model[2](model[1](model[0](mp.Tensor(r.normal(size=(4, 5)).astype(np.float32))))).data
    assert np.all(h[:, dead] == 0)


def test_unstructured_pruning_leaves_bias_alone(tiny_mlp):
    tiny_mlp[0].bias.data[:] = 1.0
    mp.prune.prune(tiny_mlp, 0.9)
    assert tiny_mlp[0].bias.mask is None and np.all(tiny_mlp[0].bias.data == 1)


def test_a_unit_is_dead_by_its_mask_not_by_zero_weights():
    """`mask_dead_units` kills the units whose weights were *pruned*. A unit whose weights merely
    are 0 (trained there, never pruned) keeps its bias: it outputs ReLU(b) and is not pruned."""
    layer = nn.Linear(3, 4, rng=0)
    model = nn.Sequential(layer, nn.ReLU(), nn.Linear(4, 2, rng=1))
    layer.weight.data[1] = 0.0                      # unit 1: zero weights, not pruned
    layer.bias.data[:] = [1.0, 2.0, 3.0, 4.0]
    keep = np.ones((4, 3), bool)
    keep[0] = False                                 # unit 0: pruned
    mp.prune.apply_masks(model, {"0": keep})
    alive = mp.prune.masks.mask_dead_units(model, "0")
    np.testing.assert_array_equal(alive, [False, True, True, True])
    np.testing.assert_array_equal(layer.bias.mask, [False, True, True, True])
    np.testing.assert_array_equal(layer.bias.data, [0.0, 2.0, 3.0, 4.0])
    # without any mask every unit is alive, zero weights or not, and the bias stays unmasked
    dense = nn.Sequential(nn.Linear(3, 2, rng=0))
    dense[0].weight.data[:] = 0.0
    alive = mp.prune.masks.mask_dead_units(dense, "0")
    assert alive.dtype == bool
    np.testing.assert_array_equal(alive, [True, True])
    np.testing.assert_array_equal(dense[0].bias.mask, [True, True])
    # a partly pruned unit is still alive: only a unit with *no* weight left is dead
    part = np.ones((4, 3), bool)
    part[2, :2] = False
    mp.prune.apply_masks(model, {"0": part})
    np.testing.assert_array_equal(mp.prune.masks.mask_dead_units(model, "0"),
                                  [False, True, True, True])
    assert layer.bias.data[2] == 3.0


def test_a_batchnorm_belongs_to_the_layer_right_before_it():
    """Conv → ReLU → Conv → BN: the BN normalises the *second* conv. `following_batchnorm` of the
    first conv is None, and pruning the first conv's filters must leave that BN alone."""
    r = np.random.default_rng(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, rng=r), nn.ReLU(),
                          nn.Conv2d(4, 4, 3, padding=1, rng=r), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 5 * 5, 2, rng=r), nn.BatchNorm1d(2))
    assert following_batchnorm(model, "0") is None
    assert following_batchnorm(model, "2") is model[3]
    assert following_batchnorm(model, "6") is model[7]
    model[3].bias.data[:] = 0.25
    mp.prune.prune(model, scope={"0": 0.5}, granularity="filter")  # 2 of conv 0's 4 filters
    assert model[3].weight.mask is None and model[3].bias.mask is None
    np.testing.assert_array_equal(model[3].weight.data, 1.0)
    np.testing.assert_array_equal(model[3].bias.data, 0.25)
    # the criterion that reads a layer's BatchNorm refuses a layer without one
    with pytest.raises(ValueError, match="BatchNorm after layer '0'"):
        mp.prune.prune(model, scope={"0": 0.5}, granularity="filter", criterion="bn_scale")
    # and the layer's own BN does follow it when the chain is Conv → BN
    mp.prune.prune(model, scope={"2": 0.5}, granularity="filter")
    dead = ~model[2].weight.mask.reshape(4, -1).any(axis=1)
    assert dead.sum() == 2
    np.testing.assert_array_equal(model[3].weight.mask, ~dead)
    np.testing.assert_array_equal(model[3].bias.data, np.where(dead, 0.0, 0.25))


# --- input shapes, layer names and the cached dependency graph --------------------------------------
def test_an_input_shape_is_a_tuple_of_positive_ints():
    check = mp.prune.masks.check_input_shape
    assert check([1, 28, 28]) == (1, 28, 28)
    assert check((np.int64(3), 8)) == (3, 8)
    # empty, a bare int, a zero or negative side, a float side, a bool side: all refused by name
    for bad in [(), 28, (1, 0, 28), (1, -2, 28), (1.0, 28, 28), (1, 2.5, 28), (True, 28, 28)]:
        with pytest.raises(ValueError, match=r"^input_shape: expected a tuple of positive ints"):
            check(bad)


def test_an_unknown_layer_name_in_apply_masks_names_the_masks_argument():
    with pytest.raises(ValueError, match=r"^masks: layer name 'fc9' is not one of the prunable"):
        mp.prune.apply_masks(mlp(), {"fc9": np.ones((10, 6), bool)})


class _Chain(nn.Module):
    """fc1 (4→3) → act → fc2 (3→2), with layers that can be swapped as attributes (a swapped
    module moves to the end of `named_modules`, so the one swapped is registered last)."""

    def __init__(self, act_last=False):
        super().__init__()
        self.fc1 = nn.Linear(4, 3, rng=0)
        if not act_last:
            self.act = nn.ReLU()
        self.fc2 = nn.Linear(3, 2, rng=1)
        if act_last:
            self.act = nn.ReLU()

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def test_the_cached_graph_is_traced_again_when_a_layer_changes_shape_or_type():
    model = _Chain()
    graph_of = mp.prune.masks.graph_of
    graph = graph_of(model)
    assert graph.input_shape == (4,) and graph.units == {"fc1": 3, "fc2": 2}
    assert graph_of(model) is graph  # same layers: the cached graph
    model.fc2 = nn.Linear(3, 5, rng=2)  # a wider head under the same name
    assert graph_of(model).units == {"fc1": 3, "fc2": 5}
    model = _Chain(act_last=True)
    assert graph_of(model).activation_after("fc1") == "act"
    model.act = nn.Dropout(0.0)  # same name, no weight, another type: no ReLU after fc1 any more
    assert graph_of(model).activation_after("fc1") is None


def test_a_graph_cannot_be_traced_without_prunable_layers_or_an_input_shape_that_runs():
    with pytest.raises(ValueError, match=r"^model: no prunable \(Conv2d or Linear\) layers to trace$"):
        mp.prune.masks.graph_of(nn.Sequential(nn.ReLU()))
    # 2 channels of s×s pixels are never the Linear's 14 inputs: no square image runs
    model = nn.Sequential(nn.Conv2d(1, 2, 1, rng=0), nn.Flatten(), nn.Linear(14, 2, rng=1))
    with pytest.raises(ValueError, match=r"^input_shape: could not infer the input shape of Sequential "
                                         r"\(no square image of up to 64×64 runs\); "
                                         r"pass input_shape=\(C, H, W\)$"):
        mp.prune.masks.graph_of(model)
    assert mp.prune.masks.graph_of(model, (1, 7, 1)).units == {"0": 2, "2": 2}


def test_a_neuron_mask_on_a_layer_with_one_input():
    """Linear(1→3): each neuron's row is a single weight, still a neuron (filter) mask."""
    model = nn.Sequential(nn.Linear(1, 3, rng=0), nn.ReLU(), nn.Linear(3, 2, rng=1))
    keep = np.array([[True], [False], [True]])
    mp.prune.apply_masks(model, {"0": keep})
    np.testing.assert_array_equal(model[0].weight.mask, keep)
    assert model[0].weight.data[1, 0] == 0


# --- coupled groups: a residual addition ties the channels of its layers --------------------------
class _Residual(nn.Module):
    """fc1 (3→4) → relu → a(h) + b(h) (4→5 each, coupled) → relu → fc (5→2)."""

    def __init__(self):
        super().__init__()
        self.fc1, self.a, self.b = nn.Linear(3, 4, rng=0), nn.Linear(4, 5, rng=1), \
            nn.Linear(4, 5, rng=2)
        self.fc = nn.Linear(5, 2, rng=3)

    def forward(self, x):
        h = self.fc1(x).relu()
        return self.fc((self.a(h) + self.b(h)).relu())


def _neurons(kept, n_in=4, n_out=5):
    keep = np.zeros((n_out, n_in), bool)
    keep[list(kept)] = True
    return keep


def test_neuron_masks_given_for_both_layers_of_a_group_must_agree():
    model = _Residual()
    with pytest.raises(ValueError, match=r"\(a, b\) would be split: channel 1 is pruned in b"):
        mp.prune.apply_masks(model, {"a": _neurons([0, 1, 3, 4]), "b": _neurons([0, 2, 3, 4])})
    assert model.a.weight.mask is None and model.b.weight.mask is None  # nothing installed
    mp.prune.apply_masks(model, {"a": _neurons([0, 1, 3, 4]), "b": _neurons([0, 1, 3, 4])})
    assert (~model.b.weight.mask.any(axis=1)).tolist() == [False, False, True, False, False]


def test_a_group_is_checked_against_the_masks_already_installed():
    """b already lost neuron 2 with a: masking a's neuron 2 again splits nothing, but a mask
    dropping a's neuron 0 while b still has it does."""
    model = _Residual()
    mp.prune.apply_masks(model, {"a": _neurons([0, 1, 3, 4]), "b": _neurons([0, 1, 3, 4])})
    mp.prune.apply_masks(model, {"a": _neurons([0, 1, 3, 4])})
    with pytest.raises(ValueError, match=r"channel 0 is pruned in a"):
        mp.prune.apply_masks(model, {"a": _neurons([1, 3, 4])})


def test_unstructured_zeros_that_empty_a_neuron_split_no_group():
    """Unstructured masks are never checked: a row emptied by chance next to scattered zeros."""
    model = _Residual()
    keep = np.ones((5, 4), bool)
    keep[0] = False            # neuron 0 of a emptied...
    keep[3, 1] = False         # ...among scattered zeros, so not a neuron mask
    mp.prune.apply_masks(model, {"a": keep})
    np.testing.assert_array_equal(model.a.weight.mask, keep)
    assert model.b.weight.mask is None
