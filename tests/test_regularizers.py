"""Learned structured sparsity: group Lasso (Wen et al. 2016) and slimming (Liu et al. 2017)."""
import doctest
import itertools

import numpy as np
import pytest
from gradcheck import grad_check

import minprune as mp
from minprune import models, nn
from minprune.prune import regularizers
from minprune.prune.regularizers import group_lasso, slimming
from minprune.tensor import Tensor

pytestmark = pytest.mark.pruning

WEIGHT_GRANULARITIES = ("filter", "channel", "kernel", "filter_shape")


def small_cnn(seed=0):
    """Conv(2→3, 2×2) → BN → ReLU → Flatten → Linear(12 → 4), on 2×3×3 inputs."""
    r = np.random.default_rng(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 2, rng=r), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(12, 4, rng=r))


def small_resnet(seed=0):
    """A conv, an identity block and a projection block: only the first block is a 'layer'."""
    r = np.random.default_rng(seed)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, rng=r), models.BasicBlock(2, 2, 1, r),
                         models.BasicBlock(2, 3, 2, r))


def as_float64(model):
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    return model


def norm(a):
    return float(np.sqrt((np.asarray(a, np.float64) ** 2).sum()))


def by_hand(w, granularity):
    """Σ of group norms with explicit loops over the groups, independent of structures.view."""
    o, c = w.shape[:2]
    if granularity == "filter":
        return sum(norm(w[i]) for i in range(o))
    if granularity == "channel":
        return sum(norm(w[:, j]) for j in range(c))
    if granularity == "kernel":
        return sum(norm(w[i, j]) for i in range(o) for j in range(c))
    kh, kw = w.shape[2:]
    return sum(norm(w[:, j, a, b]) for j, a, b in itertools.product(range(c), range(kh), range(kw)))


# --- values -------------------------------------------------------------------------------------
@pytest.mark.parametrize("granularity", WEIGHT_GRANULARITIES)
def test_values_by_hand(rng, granularity):
    model = small_cnn()
    conv, fc = model[0].weight.data, model[4].weight.data
    conv[:] = rng.integers(-3, 4, conv.shape)
    fc[:] = rng.integers(-3, 4, fc.shape)
    conv[1] = 0  # a zero group contributes exactly 0 (no √ε left over)
    want = by_hand(conv, granularity)
    if granularity in ("filter", "channel"):  # Linear layers have filters and channels too
        want += by_hand(fc[:, :, None, None], granularity)
    got = group_lasso(model, granularity, 0.3)(model).item()
    assert got == pytest.approx(0.3 * want, rel=1e-5)


def test_layer_value_by_hand():
    model = small_resnet()
    block = model[1]
    branch = [block.conv1.weight, block.bn1.weight, block.bn1.bias, block.conv2.weight,
              block.bn2.weight, block.bn2.bias]
    want = np.sqrt(sum((p.data.astype(np.float64) ** 2).sum() for p in branch))
    reg = group_lasso(model, "layer", 2.0)
    assert reg.names == ["1"]  # the projection block is not a layer that can go
    assert reg(model).item() == pytest.approx(2 * want, rel=1e-6)
    assert reg.norms(model)["1"] == pytest.approx([want], rel=1e-6)


def test_norms_are_the_exact_group_norms(rng):
    model = small_cnn()
    norms = group_lasso(model, "kernel", 1.0).norms(model)
    w = model[0].weight.data
    assert list(norms) == ["0"] and norms["0"].shape == (3, 2)
    assert norms["0"][2, 1] == pytest.approx(norm(w[2, 1]), rel=1e-6)
    assert norms["0"].sum() == pytest.approx(group_lasso(model, "kernel", 1.0)(model).item(),
                                             rel=1e-5)


def test_conv_only_granularities_skip_linear_layers():
    model = small_cnn()
    assert group_lasso(model, "filter_shape", 1.0).names == ["0"]
    assert group_lasso(model, "filter", 1.0).names == ["0", "4"]


def test_exclude_leaves_a_layer_unpenalised():
    model = small_cnn()
    full = group_lasso(model, "filter", 1.0)(model).item()
    conv_only = group_lasso(model, "filter", 1.0, exclude=["4"])(model).item()
    assert conv_only == pytest.approx(by_hand(model[0].weight.data, "filter"), rel=1e-5)
    assert conv_only < full


def test_pruned_weights_count_as_zero_and_get_no_gradient():
    model = small_cnn()
    mask = np.ones(model[0].weight.shape, bool)
    mask[0] = False
    model[0].weight.set_mask(mask)
    model[0].weight.data[0] = 5.0  # what a pruned weight holds must not matter
    reg = group_lasso(model, "filter", 1.0, exclude=["4"])
    value = reg(model)
    masked = model[0].weight.data.copy()
    masked[0] = 0
    assert value.item() == pytest.approx(by_hand(masked, "filter"), rel=1e-5)
    value.backward()
    assert np.all(model[0].weight.grad[0] == 0)


def test_slimming_value_by_hand():
    model = small_resnet()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 5  # bn1, bn2 of each block, and the projection's BN
    for i, bn in enumerate(bns):
        bn.weight.data[:] = np.linspace(-1, 1, bn.num_features) * (i + 1)
    want = sum(np.abs(bn.weight.data).sum() for bn in bns)
    assert slimming(model, 0.1)(model).item() == pytest.approx(0.1 * want, rel=1e-6)


def test_strength_zero_gives_zero_and_numpy_scalars_are_accepted():
    model = small_cnn()
    assert group_lasso(model, "filter", 0)(model).item() == 0.0
    a = group_lasso(model, "filter", np.float32(0.25))(model).item()
    assert a == pytest.approx(0.25 * group_lasso(model, "filter", 1.0)(model).item(), rel=1e-6)
    assert slimming(model, np.float64(0.5)).strength == 0.5


def test_regularizer_works_on_a_copy_of_the_model():
    import copy
    model = small_cnn()
    reg = group_lasso(model, "channel", 1.0)
    twin = copy.deepcopy(model)
    twin[0].weight.data *= 2
    twin[4].weight.data *= 2
    assert reg(twin).item() == pytest.approx(2 * reg(model).item(), rel=1e-6)


# --- gradients (float64 central differences) ----------------------------------------------------
@pytest.mark.parametrize("granularity", WEIGHT_GRANULARITIES)
def test_group_lasso_gradient(granularity):
    model = as_float64(small_cnn())
    model[0].weight.data[2] = 0  # a zero group: subgradient 0, and central differences agree
    reg = group_lasso(model, granularity, 0.7)
    grads = grad_check(lambda *ps: reg(model), *model.parameters())
    if granularity == "filter":
        assert np.all(grads[0][2] == 0)


def test_group_lasso_layer_gradient(rng):
    model = as_float64(small_resnet())
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # β starts at 0, where its gradient would be 0 too
            m.bias.data[:] = rng.uniform(-1, 1, m.num_features)
    reg = group_lasso(model, "layer", 0.7)
    grads = grad_check(lambda *ps: reg(model), *model.parameters())
    names = [n for n, _ in model.named_parameters()]
    touched = {n for n, g in zip(names, grads) if np.any(g != 0)}
    assert touched == {f"1.{n}" for n in ("conv1.weight", "bn1.weight", "bn1.bias",
                                          "conv2.weight", "bn2.weight", "bn2.bias")}


def test_slimming_gradient(rng):
    model = as_float64(small_resnet())
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # away from |γ|'s kink, where differences are exact
            m.weight.data[:] = rng.choice([-1, 1], m.num_features) * rng.uniform(0.2, 2, m.num_features)
    grad_check(lambda *ps: slimming(model, 0.3)(model), *model.parameters())


def test_no_nan_gradient_for_an_all_zero_model_in_float32():
    model = small_cnn()
    for p in model.parameters():
        p.data[:] = 0
    for reg in [group_lasso(model, g, 1.0) for g in WEIGHT_GRANULARITIES] + [slimming(model, 1.0)]:
        model.zero_grad()
        value = reg(model)
        value.backward()
        assert value.item() == 0.0
        assert all(p.grad is None or np.all(p.grad == 0) for p in model.parameters()), reg


# --- in training --------------------------------------------------------------------------------
def tiny_data(mnist_small):
    x, y = mnist_small
    return x[:128, :, ::4, ::4], y[:128]  # 7×7 digits: fast


def tiny_model():
    r = np.random.default_rng(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, rng=r), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 25, 10, rng=r))


def test_fit_records_the_penalty_apart_from_the_loss(mnist_small):
    data = tiny_data(mnist_small)
    plain = mp.train.fit(tiny_model(), data, epochs=2, batch_size=32, progress=False)
    constant = mp.train.fit(tiny_model(), data, epochs=2, batch_size=32, progress=False,
                            regularizer=lambda m: Tensor(np.float32(5.0)))
    assert [r["penalty"] for r in constant] == [5.0, 5.0] and "penalty" not in plain[0]
    # a constant has no gradient: training is unchanged, and "loss" stays the cross-entropy
    assert [r["loss"] for r in constant] == [r["loss"] for r in plain]


def test_fit_minimises_the_penalty_through_its_gradient(mnist_small):
    """λ/2·Σw² as a regulariser must train exactly like SGD's weight decay λ."""
    data, wd = tiny_data(mnist_small), 0.05
    a, b = tiny_model(), tiny_model()
    mp.train.fit(a, data, epochs=1, batch_size=32, weight_decay=wd, progress=False)
    mp.train.fit(b, data, epochs=1, batch_size=32, progress=False,
                 regularizer=lambda m: sum((p ** 2).sum() for p in m.parameters()) * (wd / 2))
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        np.testing.assert_allclose(pb.data, pa.data, rtol=1e-4, atol=1e-6, err_msg=n)


def test_group_lasso_drives_groups_to_zero(mnist_small):
    data = tiny_data(mnist_small)

    def zero_share(strength):
        model = tiny_model()
        reg = group_lasso(model, "filter", strength, exclude=["3"])
        history = mp.train.fit(model, data, epochs=30, batch_size=32, lr=0.05, progress=False,
                               regularizer=reg)
        norms = reg.norms(model)["0"]
        return float(np.mean(norms < 1e-2 * norms.max())), history

    without, _ = zero_share(0.0)
    with_lasso, history = zero_share(0.1)
    assert without == 0.0 and with_lasso >= 0.25
    assert history[-1]["penalty"] < history[0]["penalty"]


# --- bad arguments ------------------------------------------------------------------------------
@pytest.mark.parametrize("strength, error", [
    (-0.1, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
    ("0.1", TypeError), (True, TypeError), (None, TypeError)])
def test_bad_strength(strength, error):
    for make in (lambda: group_lasso(small_cnn(), "filter", strength),
                 lambda: slimming(small_cnn(), strength)):
        with pytest.raises(error, match="strength"):
            make()


@pytest.mark.parametrize("granularity, error", [
    ("unstructured", ValueError), ("2:4", ValueError), ("block2x2", ValueError),
    ("filters", ValueError), (3, TypeError), (None, TypeError)])
def test_bad_granularity(granularity, error):
    with pytest.raises(error, match="granularity"):
        group_lasso(small_cnn(), granularity, 0.1)


def test_layer_needs_a_residual_block():
    with pytest.raises(ValueError, match="granularity: 'layer'.*x \\+ f\\(x\\).*plain chain"):
        group_lasso(models.lenet5(), "layer", 0.1)
    with pytest.raises(ValueError, match="exclude"):
        group_lasso(small_resnet(), "layer", 0.1, exclude=["1"])
    with pytest.raises(ValueError, match="exclude: \\['2'\\] are not blocks"):
        group_lasso(small_resnet(), "layer", 0.1, exclude=["2"])


def test_conv_only_granularity_on_a_model_without_convolutions():
    with pytest.raises(ValueError, match="granularity: 'kernel'.*Conv2d"):
        group_lasso(models.lenet_300_100(), "kernel", 0.1)


def test_bad_model_and_exclude():
    with pytest.raises(TypeError, match="model"):
        group_lasso("lenet5", "filter", 0.1)
    with pytest.raises(TypeError, match="model"):
        slimming(None, 0.1)
    with pytest.raises(ValueError, match="model: .*no BatchNorm"):
        slimming(models.lenet5(), 0.1)
    with pytest.raises(ValueError, match="exclude"):
        group_lasso(small_cnn(), "filter", 0.1, exclude=["9"])


def test_called_on_another_model():
    reg = group_lasso(small_cnn(), "filter", 0.1)
    with pytest.raises(ValueError, match="model: it has no"):
        reg(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(TypeError, match="model"):
        reg("model")


def test_fit_refuses_a_bad_regularizer(mnist_small):
    data = tiny_data(mnist_small)
    with pytest.raises(TypeError, match="regularizer"):
        mp.train.fit(tiny_model(), data, progress=False, regularizer=0.1)
    with pytest.raises(TypeError, match="regularizer: must return a scalar Tensor"):
        mp.train.fit(tiny_model(), data, progress=False, regularizer=lambda m: 0.1)
    with pytest.raises(TypeError, match="regularizer: must return a scalar Tensor"):
        mp.train.fit(tiny_model(), data, progress=False,
                     regularizer=lambda m: m[0].weight.sum(axis=0))


def test_fit_says_what_the_bad_regularizer_was_or_returned(mnist_small):
    """The messages name the type (and shape) that was given, so the student sees the mistake."""
    data = tiny_data(mnist_small)

    def fit(regularizer):
        return lambda: mp.train.fit(tiny_model(), data, progress=False, regularizer=regularizer)

    assert message(fit(0.1), TypeError) == (
        "regularizer: expected a callable regularizer(model) -> Tensor, got float")
    returned = "regularizer: must return a scalar Tensor (built from autograd ops), got "
    assert message(fit(lambda m: 0.1), TypeError) == returned + "float of shape None"
    # the conv's 8×1×3×3 weight summed over its 8 filters: not a scalar
    assert message(fit(lambda m: m[0].weight.sum(axis=0)), TypeError) == \
        returned + "Tensor of shape (1, 3, 3)"


def test_docstring_examples():
    failed, tried = doctest.testmod(regularizers)
    assert tried >= 5 and failed == 0


# --- what the messages teach -------------------------------------------------------------------
# These refusals are part of the lesson (why a group needs several weights, why a plain chain has
# no removable layer), so their full text is pinned, including the model's class name.
def message(call, error, *args, **kwargs):
    """The text of the `error` that call(*args, **kwargs) raises."""
    with pytest.raises(error) as info:
        call(*args, **kwargs)
    return str(info.value)


def test_refusals_explain_why_in_full():
    lenet5, mlp = models.lenet5(), models.lenet_300_100()
    assert message(lambda: group_lasso(lenet5, "layer", 0.1), ValueError) == (
        "granularity: 'layer' groups the residual branch f of blocks computing x + f(x), and "
        "this Classifier has none: in a plain chain every layer is the only path from its input "
        "to its output, so zeroing one cuts the network instead of removing a layer (use a "
        "residual model such as models.resnet_tiny)")
    assert message(lambda: group_lasso(mlp, "kernel", 0.1), ValueError) == (
        "granularity: 'kernel' groups exist in Conv2d layers only, and this Classifier has none "
        "(left)")
    assert message(lambda: group_lasso(lenet5, "unstructured", 0.1), ValueError) == (
        f"granularity: 'unstructured' is not one of {regularizers.GRANULARITIES} (group Lasso "
        "needs groups of several weights)")
    assert message(lambda: slimming(lenet5, 0.1), ValueError) == (
        "model: this Classifier has no BatchNorm layer; slimming penalises the BatchNorm "
        "scales γ")
    assert message(lambda: group_lasso(3, "filter", 0.1), TypeError) == (
        "model: expected an nn.Module, got int")
    for make in (lambda s: group_lasso(lenet5, "filter", s), lambda s: slimming(small_cnn(), s)):
        assert message(make, ValueError, -1) == "strength: must be ≥ 0, got -1"


def test_a_regulariser_called_on_another_model_names_itself_and_the_fix():
    other = nn.Sequential(nn.Linear(2, 2))
    for reg, who, names in ((group_lasso(small_cnn(), "filter", 0.1), "group_lasso", "['4']"),
                            (slimming(small_cnn(), 0.1), "slimming", "['1']")):
        assert message(reg, ValueError, other) == (
            f"model: it has no {names}, which this {who} was built for; build the regulariser "
            "for this model")


def test_exclude_takes_one_name_or_a_list_of_names():
    # one name as a string: the only identity block excluded leaves nothing to penalise
    assert message(lambda: group_lasso(small_resnet(), "layer", 0.1, exclude="1"), ValueError) \
        == "exclude: it leaves no residual block to penalise"
    reg = group_lasso(small_cnn(), "filter", 0.1, exclude="0")
    assert reg.names == ["4"]
    for bad in (["1", 3], 5, None):
        assert message(group_lasso, TypeError, small_resnet(), "layer", 0.1, exclude=bad) == \
            f"exclude: expected a name or a list of names, got {bad!r}"


def test_repr_says_what_is_penalised():
    assert repr(group_lasso(models.lenet5(), "filter", 0.5)) == \
        "group_lasso('filter', strength=0.5, 5 layers)"
    assert repr(group_lasso(small_resnet(), "layer", 2)) == \
        "group_lasso('layer', strength=2, 1 blocks)"
    assert repr(slimming(models.conv4(), 0.1)) == "slimming(strength=0.1, 4 BatchNorm layers)"


# --- pruning what the penalty zeroed ------------------------------------------------------------
def zero_branch(block):
    for module in block.residual_branch.values():
        for p in module.parameters():
            p.data[:] = 0


def outputs(model, seed=0):
    model.eval()
    x = Tensor(np.random.default_rng(seed).random((3, 1, 28, 28), dtype=np.float32))
    return model(x).data.copy()


def test_zeroed_groups_are_those_of_norm_at_most_tol():
    model = models.resnet_tiny(seed=0)
    model.layer2[0].conv1.weight.data[:, :, 1, 2] = 1e-5  # one filter-shape group, norm ≈ 1.7e-4
    zero = regularizers.zeroed_groups(model, group_lasso(model, "filter_shape", 1.0), tol=1e-3)
    assert zero["layer2.0.conv1"].reshape(16, 3, 3)[:, 1, 2].all()
    assert zero["layer2.0.conv1"].sum() == 16 and sum(z.sum() for z in zero.values()) == 16
    loose = regularizers.zeroed_groups(model, group_lasso(model, "filter_shape", 1.0), tol=1e-6)
    assert not any(z.any() for z in loose.values())


def test_prune_zeroed_filters_keeps_outputs_and_cuts_coupled_filters_only_together():
    model = models.resnet_tiny(seed=0)
    model.conv1.weight.data[3] = 0           # coupled with layer1.0.conv2 (the addition): both
    model.layer1[0].conv2.weight.data[3] = 0  # zero, so channel 3 of the group goes
    model.layer1[0].conv2.weight.data[7] = 0  # only one of the two: channel 7 stays
    model.layer2[0].conv1.weight.data[:4] = 0  # not coupled: goes
    masks = regularizers.prune_zeroed(model, group_lasso(model, "filter", 1.0))
    alive = {n: m.reshape(m.shape[0], -1).any(axis=1) for n, m in masks.items()}
    assert set(masks) == {"conv1", "layer1.0.conv2", "layer2.0.conv1"}
    assert list(np.flatnonzero(~alive["conv1"])) == list(np.flatnonzero(~alive["layer1.0.conv2"]))
    assert list(np.flatnonzero(~alive["conv1"])) == [3]
    assert (~alive["layer2.0.conv1"]).sum() == 4
    assert model.bn1.weight.mask is not None and not model.bn1.weight.mask[3]  # BN entries go too
    # (BatchNorm turns a zero filter into its shift β, which pruning removes, so the outputs
    # change a little here; the model without BatchNorm below keeps them exactly)
    small = mp.prune.compact(model, (1, 28, 28))
    np.testing.assert_allclose(outputs(model), outputs(small), atol=1e-5)
    assert small.layer2[0].conv1.out_channels == 28 and small.conv1.out_channels == 15


def test_prune_zeroed_without_batchnorm_changes_no_output():
    r = np.random.default_rng(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, bias=False, rng=r), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 26 * 26, 5, rng=r))
    model[0].weight.data[[0, 2]] = 0
    before = outputs(model)
    regularizers.prune_zeroed(model, group_lasso(model, "filter", 0.1, exclude=["3"]))
    assert (~model[0].weight.mask.reshape(4, -1).any(axis=1)).tolist() == [True, False, True, False]
    np.testing.assert_array_equal(outputs(model), before)
    assert mp.prune.count_params(mp.prune.compact(model, (1, 28, 28))) == 2 * 9 + 2 * 676 * 5 + 5


def test_prune_zeroed_slimming_removes_the_filter_feeding_a_zero_gamma():
    model = models.resnet_tiny(seed=0)
    model.layer2[0].bn1.weight.data[[1, 5]] = 0  # the BN after layer2.0.conv1 (not coupled)
    model.bn1.weight.data[2] = 0  # the stem's BN: coupled with layer1.0's bn2, whose γ is not 0
    masks = regularizers.prune_zeroed(model, slimming(model, 1e-3))
    assert set(masks) == {"layer2.0.conv1"}
    dead = ~masks["layer2.0.conv1"].reshape(32, -1).any(axis=1)
    assert np.flatnonzero(dead).tolist() == [1, 5]


def test_prune_zeroed_layer_removes_the_zeroed_block():
    model = models.resnet_tiny(seed=0, blocks=(2, 1, 1))
    zero_branch(model.layer1[1])
    before = outputs(model)
    regularizers.prune_zeroed(model, group_lasso(model, "layer", 1.0))
    small = mp.prune.compact(model, (1, 28, 28))
    assert len(small.layer1) == 2 and isinstance(small.layer1[1], mp.prune.surgery.Shortcut)
    assert mp.prune.count_params(small) < mp.prune.count_params(model)
    np.testing.assert_allclose(outputs(small), before, atol=1e-5)
    assert model.layer1[0].conv1.weight.mask is None  # the other block stays


def test_prune_zeroed_refuses_other_regularizers_and_bad_tol():
    model = small_cnn()
    with pytest.raises(TypeError, match="regularizer"):
        regularizers.prune_zeroed(model, lambda m: 0)
    with pytest.raises(ValueError, match="tol"):
        regularizers.zeroed_groups(model, group_lasso(model, "filter", 1.0), tol=-1)
