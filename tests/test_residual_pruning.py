"""Structured pruning on residual networks: coupled groups ranked and removed whole, masks that
would split a group refused, and `compact()` cutting every coupled layer consistently."""
import copy

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minprune as mp
from minprune import models, nn
from minprune.prune import graph as G
from minprune.prune.masks import unit_alive
from minprune.tensor import Tensor

pytestmark = pytest.mark.pruning

MNIST = (1, 28, 28)


# --- random residual networks, built from the layers ---------------------------------------------
class Block(nn.Module):
    """relu(f(x) + shortcut(x)), f = conv3×3 [→ BN] → ReLU → conv3×3 [→ BN]; the shortcut is
    the identity or a 1×1 conv [→ BN] (always when the width changes)."""

    def __init__(self, c_in, mid, c_out, project, bn, bias, rng):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, mid, 3, padding=1, bias=bias, rng=rng)
        self.bn1 = nn.BatchNorm2d(mid) if bn else None
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(mid, c_out, 3, padding=1, bias=bias, rng=rng)
        self.bn2 = nn.BatchNorm2d(c_out) if bn else None
        self.proj = None
        if project or c_in != c_out:
            layers = [nn.Conv2d(c_in, c_out, 1, bias=bias, rng=rng)] + ([nn.BatchNorm2d(c_out)]
                                                                        if bn else [])
            self.proj = nn.Sequential(*layers)
        self.relu_out = nn.ReLU()

    def forward(self, x):
        h = self.relu(self.conv1(x) if self.bn1 is None else self.bn1(self.conv1(x)))
        h = self.conv2(h) if self.bn2 is None else self.bn2(self.conv2(h))
        return self.relu_out(h + (x if self.proj is None else self.proj(x)))


class Net(nn.Module):
    """stem conv [→ BN] → ReLU → blocks → (global average pool | nothing) → flatten → fc."""

    def __init__(self, width, blocks, bn, bias, pool, rng, c_in=2, side=4, classes=3):
        super().__init__()
        self.stem = nn.Conv2d(c_in, width, 3, padding=1, bias=bias, rng=rng)
        self.stem_bn = nn.BatchNorm2d(width) if bn else None
        self.relu = nn.ReLU()
        body, c = [], width
        for mid, out, project in blocks:
            body.append(Block(c, mid, out, project, bn, bias, rng))
            c = out
        self.body = nn.Sequential(*body)
        self.pool = nn.AdaptiveAvgPool2d(1) if pool else None
        self.fc = nn.Linear(c * (1 if pool else side * side), classes, rng=rng)
        self.bn, self.bias, self.span = bn, bias, 1 if pool else side * side

    def forward(self, x):
        h = self.stem(x) if self.stem_bn is None else self.stem_bn(self.stem(x))
        h = self.body(self.relu(h))
        return self.fc(nn.functional.flatten(h if self.pool is None else self.pool(h)))


def _randomise_batchnorms(model, r):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data[:] = r.uniform(0.5, 1.5, m.num_features)
            m.bias.data[:] = r.normal(0, 0.3, m.num_features)
            m.running_mean[:] = r.normal(0, 0.3, m.num_features)
            m.running_var[:] = r.uniform(0.5, 2, m.num_features)
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            m.bias.data[:] = r.normal(0, 0.3, m.bias.shape)


def _expected_params(net) -> int:
    """What compact() must leave, from the network's construction and the filter masks alone:
    every layer keeps its live filters and reads the live channels of the layer feeding it."""
    def k(layer):
        return max(int(unit_alive(layer).sum()), 1)  # compact keeps one unit of a dead group

    def conv(out, c_in, size):
        return out * c_in * size + (out if net.bias else 0) + (2 * out if net.bn else 0)

    stream = k(net.stem)
    total = conv(stream, net.stem.in_channels, 9)
    for b in net.body:
        mid, out = k(b.conv1), k(b.conv2)
        total += conv(mid, stream, 9) + conv(out, mid, 9)
        if b.proj is not None:
            total += conv(out, stream, 1)
        stream = out
    return total + net.fc.out_features * (stream * net.span + 1)


_blocks = st.lists(st.tuples(st.integers(1, 4), st.sampled_from([2, 3, 4]), st.booleans()),
                   min_size=1, max_size=3)


@given(width=st.sampled_from([2, 3, 4]), blocks=_blocks, bn=st.booleans(), bias=st.booleans(),
       pool=st.booleans(), sparsity=st.floats(0.0, 0.5), criterion=st.sampled_from(
           ["random", "magnitude"]), seed=st.integers(0, 2**16))
def test_filter_pruning_and_compact_on_random_residual_networks(width, blocks, bn, bias, pool,
                                                                sparsity, criterion, seed):
    r = np.random.default_rng(seed)
    net = Net(width, blocks, bn, bias, pool, r)
    _randomise_batchnorms(net, r)
    options = {"seed": seed} if criterion == "random" else {}
    mp.prune.prune(net, sparsity, criterion=criterion, granularity="filter", scope="layerwise",
                   exclude="fc", **options)
    graph = mp.prune.dependency_graph(net, (2, 4, 4))
    layers = mp.prune.prunable_layers(net)
    for group in graph.groups:  # no coupled group is ever split
        alive = [unit_alive(layers[p]) for p in group.producers]
        assert all(np.array_equal(a, alive[0]) for a in alive), group
    small = mp.prune.compact(net)
    assert mp.prune.count_params(small) == _expected_params(net)
    x = Tensor(r.standard_normal((5, 2, 4, 4)).astype(np.float32))
    for mode in (False, True):  # eval first: a train-mode pass moves the running statistics
        net.train(mode)
        small.train(mode)
        np.testing.assert_allclose(small(x).data, net(x).data, rtol=1e-4, atol=1e-5)


# --- resnet_tiny -------------------------------------------------------------------------------
@pytest.fixture
def resnet():
    model = models.resnet_tiny(seed=0)
    _randomise_batchnorms(model, np.random.default_rng(1))
    return model


def test_resnet_tiny_filter_pruning_at_half_then_compact(resnet):
    masks = mp.prune.prune(resnet, 0.5, granularity="filter", scope="layerwise", exclude="fc")
    graph = mp.prune.dependency_graph(resnet, MNIST)
    for group in graph.groups[:-1]:  # every group lost half its channels, in all its layers
        dead = [~masks[p].reshape(group.channels, -1).any(axis=1) for p in group.producers]
        assert dead[0].sum() == group.channels // 2
        assert all(np.array_equal(d, dead[0]) for d in dead)
    small = mp.prune.compact(resnet)
    modules = dict(small.named_modules())
    for group in graph.groups[:-1]:  # every coupled layer cut to the same width
        half = group.channels // 2
        assert all(modules[p].weight.shape[0] == half for p in group.producers)
        assert all(modules[bn].num_features == half for bn in group.batchnorms)
        assert all(modules[c.layer].weight.shape[1] == half for c in group.consumers)
    assert mp.prune.count_params(small) < mp.prune.count_params(resnet) / 2
    x = Tensor(np.random.default_rng(2).standard_normal((4, *MNIST)).astype(np.float32))
    for mode in (False, True):
        resnet.train(mode)
        small.train(mode)
        np.testing.assert_allclose(small(x).data, resnet(x).data, rtol=1e-4, atol=1e-5)
    # the multiply-adds the pruned model does are those of the compact one
    assert mp.prune.flops(resnet, MNIST, effective=True) == mp.prune.flops(small, MNIST)


def test_a_group_is_scored_by_the_sum_of_its_layers_scores(resnet):
    """conv1 and layer1.0.conv2 are added channel by channel: with scores a (conv1) and b (the
    other), the group falls where a + b is lowest — neither where a nor where b alone is."""
    a = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], float)
    b = np.array([9, 9, 9, 9, 0, 0, 0, 0, 8, 8, 8, 8, 1, 1, 1, 1], float)

    def scores(model, layers, batch=None):
        return {n: a if n == "conv1" else b if n == "layer1.0.conv2" else
                np.ones(m.weight.shape[0]) for n, m in layers.items()}
    scores.level = "unit"
    masks = mp.prune.prune(resnet, criterion=scores, granularity="filter",
                           scope={"conv1": 0.25, "layer1.0.conv2": 0.25})
    dead = ~masks["conv1"].reshape(16, -1).any(axis=1)
    assert np.flatnonzero(dead).tolist() == [4, 5, 6, 7]  # a + b = 4, 5, 6, 7 there: lowest
    np.testing.assert_array_equal(~masks["layer1.0.conv2"].reshape(16, -1).any(axis=1), dead)
    bn1, bn2 = resnet.bn1, resnet.layer1[0].bn2
    assert np.all(bn1.weight.data[dead] == 0) and np.all(bn2.bias.data[dead] == 0)
    assert np.all(bn1.weight.data[~dead] != 0)


def test_a_mask_splitting_a_group_is_refused_naming_the_group(resnet):
    keep = np.ones(resnet.conv1.weight.shape, bool)
    keep[3] = False  # filter 3 of conv1 only: layer1.0.conv2 would still add its channel 3
    with pytest.raises(ValueError, match=r"group 0 \(conv1, layer1\.0\.conv2\) would be split: "
                                         r"channel 3 is pruned in conv1"):
        mp.prune.apply_masks(resnet, {"conv1": keep})
    assert resnet.conv1.weight.mask is None  # nothing installed
    # the same filter in both layers is fine; scattered (unstructured) zeros split nothing
    mp.prune.apply_masks(resnet, {"conv1": keep, "layer1.0.conv2.weight": np.broadcast_to(
        keep[:, :1, :1, :1], resnet.layer1[0].conv2.weight.shape)})
    mp.prune.prune(resnet, 0.5)
    # pruning only part of a group is refused too, naming it
    with pytest.raises(ValueError, match=r"group 3 \(layer2\.0\.conv2, layer2\.0\.downsample\.0\)"):
        mp.prune.prune(resnet, scope={"layer2.0.conv2": 0.5}, granularity="filter")
    with pytest.raises(ValueError, match=r"group 0 .* include all of them or none"):
        mp.prune.prune(resnet, 0.5, granularity="filter", exclude="layer1.0.conv2")


class _AddedToInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 6, rng=0), nn.Linear(6, 4, rng=1)

    def forward(self, x):
        return self.fc2(self.fc1(x).relu()) + x  # fc2's outputs are tied to the input


class _TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.a, self.b = nn.Linear(4, 6, rng=0), nn.Linear(6, 3, rng=1), \
            nn.Linear(6, 3, rng=2)

    def forward(self, x):
        h = self.fc1(x).relu()
        return self.a(h) + self.b(h)  # a coupled group that is the model output


@pytest.mark.parametrize("build, blocked", [(_AddedToInput, ("fc2",)), (_TwoHeads, ("a", "b"))])
def test_blocked_coupled_groups_are_never_pruned(build, blocked):
    model = build()
    graph = mp.prune.dependency_graph(model, (4,))
    assert all(not graph.group_of(n).prunable and graph.group_of(n).coupled for n in blocked)
    masks = mp.prune.prune(model, 0.5, granularity="neuron", scope="layerwise")
    for n in blocked:
        assert masks[n].all(), n
    assert (~masks["fc1"].any(axis=1)).sum() == 3  # the free layer is pruned as asked
    with pytest.raises(ValueError, match=f"scope: group .*{blocked[0]}.* cannot be filter-pruned"):
        mp.prune.prune(model, scope={n: 0.5 for n in blocked}, granularity="neuron")
    x = Tensor(np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32))
    small = mp.prune.compact(copy.deepcopy(model))
    assert small.fc1.weight.shape == (3, 4)
    np.testing.assert_allclose(small(x).data, model(x).data, rtol=1e-5, atol=1e-6)


def test_group_coupled_property():
    graph = mp.prune.dependency_graph(models.resnet_tiny(), MNIST)
    assert [g.coupled for g in graph.groups] == [True, False, False, True, False, True, False]
    assert G.INPUT_REASON in mp.prune.dependency_graph(_AddedToInput(), (4,)).group_of("fc2").blocked


class _SharedBatchNorm(nn.Module):
    """relu(BN(a(h) + b(h))): one BatchNorm after the addition, shared by the group {a, b}."""

    def __init__(self):
        super().__init__()
        self.fc1, self.a, self.b = nn.Linear(3, 4, rng=0), nn.Linear(4, 5, rng=1), \
            nn.Linear(4, 5, rng=2)
        self.bn, self.relu, self.fc = nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2, rng=3)

    def forward(self, x):
        h = self.fc1(x).relu()
        return self.fc(self.relu(self.bn(self.a(h) + self.b(h))))


def test_a_batchnorm_after_the_addition_is_cut_with_its_group():
    model = _SharedBatchNorm()
    _randomise_batchnorms(model, np.random.default_rng(0))
    model.bn.weight.data[:] = [1.0, 0.5, 2.0, 1.5, 0.8]
    model.bn.bias.data[:] = [0.7, 0.3, -0.2, 0.4, 0.1]
    assert mp.prune.dependency_graph(model, (3,)).group_of("a").batchnorms == ("bn",)
    x = Tensor(np.random.default_rng(1).standard_normal((6, 3)).astype(np.float32))
    # channel 0 outputs nothing from a or b but the shared BN still adds β: it must stay
    for layer in (model.a, model.b):
        layer.weight.data[0] = 0.0
        layer.bias.data[0] = 0.0
    assert mp.prune.compact(model).a.weight.shape == (5, 4)
    # channel 1 pruned in both: filter pruning masks the shared BN's γ and β too, then it goes
    keep = np.ones((5, 4), bool)
    keep[1] = False
    mp.prune.apply_masks(model, {"a": keep, "b": keep})
    alive = mp.prune.masks.mask_dead_units(model, "a")
    mp.prune.masks.mask_dead_units(model, "b")
    np.testing.assert_array_equal(alive, [True, False, True, True, True])
    np.testing.assert_array_equal(model.bn.bias.mask, alive)
    assert model.bn.bias.data[1] == 0 and model.bn.weight.data[1] == 0
    small = mp.prune.compact(model)
    assert small.a.weight.shape == small.b.weight.shape == (4, 4)
    assert small.bn.num_features == 4 and small.fc.weight.shape == (2, 4)
    for mode in (False, True):
        model.train(mode)
        small.train(mode)
        np.testing.assert_allclose(small(x).data, model(x).data, rtol=1e-5, atol=1e-6)
    # the multiply-adds: channel 0 of the sum still costs fc work while β feeds it (fc's 2 weights
    # on it count), the zero rows of a and b on it cost nothing, in both models
    assert mp.prune.flops(model, (3,), effective=True) == \
        mp.prune.flops(small, (3,), effective=True) == 3 * 4 + 2 * 4 * 3 + 2 * 4
