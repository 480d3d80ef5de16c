"""Whole-layer pruning (`granularity="layer"`): the branch f of a residual block x ↦ x + f(x) with
an identity shortcut is one unit; pruning it masks all of f so the block computes its input
again, and `compact()` removes the block."""
import copy

import numpy as np
import pytest

from minprune import models, nn
from minprune.autograd import no_grad
from minprune.nn import functional as fn
from minprune.prune import compact, count_params, criteria, flops, prune, theoretical_speedup
from minprune.prune.graph import dependency_graph
from minprune.prune.regularizers import residual_blocks
from minprune.prune.surgery import Shortcut
from minprune.tensor import Tensor

pytestmark = pytest.mark.pruning

MNIST = (1, 28, 28)
IDENTITY_BLOCKS = ["layer1.0", "layer1.1", "layer2.1", "layer3.1"]  # resnet_tiny(blocks=(2, 2, 2))


def _resnet14():
    return models.resnet_tiny(blocks=(2, 2, 2))


def _branch_params(model, block):
    return [p for k in ("conv1", "bn1", "conv2", "bn2")
            for p in model.get_submodule(f"{block}.{k}").parameters()]


def _removed(model):
    """Blocks whose every branch parameter is masked whole; the others must be untouched."""
    gone = []
    for b in IDENTITY_BLOCKS:
        masks = [p.mask for p in _branch_params(model, b)]
        if all(m is not None and not m.any() for m in masks):
            assert all(not p.data.any() for p in _branch_params(model, b))
            gone.append(b)
        else:
            assert all(m is None for m in masks), f"{b} partly masked"
    return gone


def _batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, *MNIST)).astype(np.float32),
            rng.integers(0, 10, n))


def _outputs(model, x, training):
    model.train(training)
    with no_grad():
        return model(Tensor(x)).data


def _block_count(model):
    return sum(isinstance(m, models.BasicBlock) for m in model.modules())


def test_identity_shortcut_blocks_of_resnet14_are_the_units():
    model = _resnet14()
    graph = dependency_graph(model, MNIST)
    assert [b.module for b in graph.blocks] == IDENTITY_BLOCKS == list(residual_blocks(model))
    assert all(b.last == f"{b.module}.bn2" and b.after_ops == () for b in graph.blocks)
    masks = prune(model, 0.0, granularity="layer")  # the layers of the blocks considered
    assert sorted(masks) == sorted(f"{b}.conv{i}" for b in IDENTITY_BLOCKS for i in (1, 2))
    assert _removed(model) == []


@pytest.mark.parametrize("criterion", ["magnitude", "block_loss"])
def test_removing_one_block_masks_its_branch_and_compact_drops_it(criterion):
    model = _resnet14()
    x, y = _batch()
    masks = prune(model, 0.25, criterion, granularity="layer", batch=(x, y))  # round(0.25·4) = 1
    [gone] = _removed(model)
    assert not masks[f"{gone}.conv1"].any() and not masks[f"{gone}.conv2"].any()
    small = compact(model)
    assert _block_count(small) == _block_count(model) - 1 == 5
    assert isinstance(small.get_submodule(gone), Shortcut)
    assert f"{gone}.conv1" not in dict(small.named_modules())
    assert f"{gone}.relu_out" in dict(small.named_modules())  # `after` survives, by its name
    assert [b.module for b in dependency_graph(small, MNIST).blocks] == \
        [b for b in IDENTITY_BLOCKS if b != gone]
    for training in (False, True):  # train mode: batch statistics, the dead BN still outputs 0
        np.testing.assert_allclose(_outputs(small, x, training), _outputs(model, x, training),
                                   rtol=1e-5, atol=1e-5)
    dead = sum(p.size for p in _branch_params(model, gone))
    assert count_params(small) == count_params(model) - dead
    # the masked model already counts the branch's work as gone: the same speedup as measured
    # by multiply-adds on the smaller network
    assert flops(small, MNIST) < flops(model, MNIST)
    assert theoretical_speedup(model, MNIST) == pytest.approx(
        flops(model, MNIST) / flops(small, MNIST))


def test_magnitude_scores_the_branch_l2_norm_and_removes_the_smallest():
    model = _resnet14()
    for p in _branch_params(model, "layer3.1"):  # the widest block: the largest norm by default
        p.data *= 0.01
    scores = criteria.block_magnitude(model, {b: blk for b, blk in zip(
        IDENTITY_BLOCKS, dependency_graph(model, MNIST).blocks)})
    expected = np.sqrt(sum(float((p.data.astype(np.float64) ** 2).sum())
                           for p in _branch_params(model, "layer1.1")))
    assert scores["layer1.1"] == pytest.approx(expected)
    assert min(scores, key=scores.get) == "layer3.1"
    prune(model, 0.25, granularity="layer")
    assert _removed(model) == ["layer3.1"]


class _Bias(nn.Module):
    """x ↦ x + f(x) with f a Linear: a residual block of any kind, not only BasicBlock."""

    def __init__(self, bias):
        super().__init__()
        self.f = nn.Linear(2, 2)
        self.f.weight.data[...] = 0
        self.f.bias.data[...] = bias

    def forward(self, x):
        return x + self.f(x)


class _Net(nn.Module):
    """logits = x + (2, 0) + (0, 3) + 0: block `a` pushes class 0, `b` class 1, `c` nothing."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = _Bias([2.0, 0.0]), _Bias([0.0, 3.0]), _Bias([0.0, 0.0])

    def forward(self, x):
        return self.c(self.b(self.a(x)))


def _ce(logits, label=0):
    return float(np.log(np.exp(logits).sum()) - logits[label])


def test_block_loss_is_the_signed_loss_rise_and_removes_the_lowest():
    model = _Net()
    batch = (np.zeros((1, 2), np.float32), np.array([0]))
    blocks = {b.module: b for b in dependency_graph(model, (2,)).blocks}
    assert list(blocks) == ["a", "b", "c"]
    scores = criteria.block_loss(model, blocks, batch)
    base = _ce(np.array([2.0, 3.0]))
    assert scores["a"] == pytest.approx(_ce(np.array([0.0, 3.0])) - base, rel=1e-5)  # > 0
    assert scores["b"] == pytest.approx(_ce(np.array([2.0, 0.0])) - base, rel=1e-5)  # < 0
    assert scores["c"] == 0.0  # f = 0 already: removing it changes nothing
    # lowest first: `b` (removing it helps), not `c` (the smallest change in absolute value)
    prune(model, 1 / 3, "block_loss", granularity="layer", batch=batch)
    assert model.b.f.weight.mask is not None and model.c.f.weight.mask is None
    prune(model, 2 / 3, "block_loss", granularity="layer", batch=batch)
    assert not model.c.f.bias.mask.any() and model.a.f.bias.mask is None
    small = compact(model)
    assert isinstance(small.b, Shortcut) and isinstance(small.c, Shortcut)
    assert isinstance(small.a, _Bias)
    x = np.random.default_rng(0).standard_normal((3, 2)).astype(np.float32)
    np.testing.assert_allclose(_outputs(small, x, False), _outputs(model, x, False))


def test_block_loss_on_resnet_zero_branch_costs_nothing_and_matches_the_pruned_loss():
    model = _resnet14()
    x, y = _batch(seed=1)
    for k in ("bn2.weight", "bn2.bias"):  # f(x) = 0 already, by hand
        p = dict(model.named_parameters())[f"layer2.1.{k}"]
        p.data[...] = 0
    blocks = {b.module: b for b in dependency_graph(model, MNIST).blocks}
    scores = criteria.block_loss(model, blocks, (x, y))
    assert scores["layer2.1"] == 0.0
    assert all(scores[b] != 0 for b in IDENTITY_BLOCKS if b != "layer2.1")
    # each score is the loss of the model with that block pruned, minus the loss without
    def loss(m):
        m.eval()
        with no_grad():
            return float(fn.cross_entropy(m(Tensor(x)), y).data)
    for b in ("layer1.0", "layer3.1"):
        pruned = copy.deepcopy(model)
        prune(pruned, 0.25, lambda m, bs, batch, b=b: {n: float(n != b) for n in bs},
              granularity="layer")
        assert _removed(pruned) == [b]
        assert scores[b] == pytest.approx(loss(pruned) - loss(model), abs=1e-5)


@pytest.mark.parametrize("sparsity, removed", [(0.1, 0), (0.125, 0), (0.3, 1), (0.4, 2),
                                               (0.6, 2), (0.7, 3), (1.0, 4)])
def test_sparsity_is_a_fraction_of_blocks_rounded(sparsity, removed):
    model = _resnet14()
    prune(model, sparsity, granularity="layer")
    assert len(_removed(model)) == removed == round(sparsity * 4)


def test_layer_pruning_is_monotone_and_respects_exclude():
    model = _resnet14()
    norms = {b: s for b, s in zip(IDENTITY_BLOCKS, [1, 2, 3, 4])}
    by_hand = lambda m, blocks, batch: {b: norms[b] for b in blocks}  # noqa: E731
    prune(model, 0.25, by_hand, granularity="layer")
    assert _removed(model) == ["layer1.0"]
    norms.update({"layer1.0": 9, "layer3.1": 0})  # removed blocks stay removed, counted first
    prune(model, 0.25, by_hand, granularity="layer")
    assert _removed(model) == ["layer1.0"]
    prune(model, 0.5, by_hand, granularity="layer")
    assert _removed(model) == ["layer1.0", "layer3.1"]
    other = _resnet14()
    prune(other, 0.5, by_hand, granularity="layer", exclude=["layer3.1"])  # 2 of the 3 left
    assert _removed(other) == ["layer1.1", "layer2.1"]


def test_filter_pruning_after_layer_pruning_keeps_the_group_alive():
    model = _resnet14()
    prune(model, 0.25, lambda m, blocks, batch: {b: float(b != "layer1.0") for b in blocks},
          granularity="layer")
    # layer1.0.conv2 has no filter left: it must not make every channel of its group look pruned
    prune(model, 0.2, granularity="filter")
    def alive(name):
        mask = model.get_submodule(name).weight.mask
        return np.ones(16, bool) if mask is None else mask.reshape(16, -1).any(axis=1)
    assert alive("conv1").sum() > 0  # the bug pruned all 16
    np.testing.assert_array_equal(alive("conv1"), alive("layer1.1.conv2"))  # not split
    assert not alive("layer1.0.conv2").any()
    x, _ = _batch()
    small = compact(model)
    assert _block_count(small) == 5
    np.testing.assert_allclose(_outputs(small, x, False), _outputs(model, x, False),
                               rtol=1e-5, atol=1e-5)


def test_plain_chains_are_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"plain chain every layer is the only path"):
        prune(models.lenet5(), 0.5, granularity="layer")


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(scope="layerwise"), ValueError, r"scope: 'layerwise'.*one unit"),
    (dict(scope={"layer1.0": 0.5}, sparsity=None), ValueError, r"scope: .*global"),
    (dict(sparsity=None), ValueError, r"sparsity: required"),
    (dict(sparsity=1.5), ValueError, r"sparsity"),
    (dict(exclude=["conv1"]), ValueError, r"exclude: \['conv1'\].*layer1\.0"),
    (dict(exclude=IDENTITY_BLOCKS), ValueError, r"exclude: it leaves no residual block"),
    (dict(exclude=3), TypeError, r"exclude"),
    (dict(criterion="taylor"), ValueError, r"criterion: 'taylor'.*block_loss"),
    (dict(criterion=3), TypeError, r"criterion"),
    (dict(criterion="block_loss"), ValueError, r"batch: .*block_loss"),
    (dict(criterion=lambda m, b, batch: {}), ValueError, r"score for each of"),
    (dict(criterion=lambda m, b, batch: {n: np.nan for n in b}), ValueError, r"returned nan"),
    (dict(reduce="l2"), ValueError, r"reduce: 'l2' would be ignored"),
    (dict(normalize=True), ValueError, r"normalize: True would be ignored"),
    (dict(target="activations"), ValueError, r"granularity: 'layer' would be ignored"),
])
def test_bad_arguments_are_refused_before_any_work(kwargs, error, match):
    model = _resnet14()
    args = dict(sparsity=0.5, granularity="layer") | kwargs
    with pytest.raises(error, match=match):
        prune(model, **args)
    assert _removed(model) == []


def test_block_criteria_need_the_layer_granularity():
    with pytest.raises(ValueError, match=r"'block_loss' scores whole residual blocks.*'layer'"):
        prune(_resnet14(), 0.5, "block_loss", granularity="filter", batch=_batch())
