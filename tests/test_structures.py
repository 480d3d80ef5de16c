"""Granularities (prune/structures.py): every group falls whole, counts are exact, bad combinations
are refused with a message that says what would work."""
import numpy as np
import pytest

import minprune as mp
from minprune import nn
from minprune.prune import structures

pytestmark = pytest.mark.pruning


def conv_linear(seed=0):
    """Conv2d(4, 8, 3, padding=1) on 4×4 inputs → Flatten → Linear(128, 8): every granularity fits
    (conv matrix 8×36, linear 8×128: both divisible by 4 columns and 2×2 blocks)."""
    r = np.random.default_rng(seed)
    return nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, rng=r), nn.ReLU(), nn.Flatten(),
                         nn.Linear(128, 8, rng=r))


def groups_of(mask, granularity):
    """The mask as (groups, weights per group), computed here without structures.py."""
    o = mask.shape[0]
    if granularity == "unstructured":
        return mask.reshape(-1, 1)
    if granularity == "filter":
        return mask.reshape(o, -1)
    if granularity == "channel":
        return np.moveaxis(mask, 1, 0).reshape(mask.shape[1], -1)
    if granularity == "kernel":
        return mask.reshape(o * mask.shape[1], -1)
    if granularity == "filter_shape":
        return mask.reshape(o, -1).T
    if granularity == "block2x2":
        m2 = mask.reshape(o, -1)
        return m2.reshape(o // 2, 2, -1, 2).transpose(0, 2, 1, 3).reshape(-1, 4)
    raise AssertionError(granularity)


GROUPED = ["unstructured", "filter", "channel", "kernel", "filter_shape", "block2x2"]


@pytest.mark.parametrize("granularity", GROUPED)
@pytest.mark.parametrize("s", [0.25, 0.5, 0.75])
def test_groups_fall_whole_with_exact_counts(granularity, s):
    model = conv_linear()
    conv_only = granularity in ("kernel", "filter_shape")
    masks = mp.prune.prune(model, s, granularity=granularity, scope="layerwise",
                           exclude=("3",) if conv_only else ())
    assert set(masks) == ({"0"} if conv_only else {"0", "3"})
    for name, mask in masks.items():
        g = groups_of(mask, granularity)
        alive = g.any(axis=1)
        np.testing.assert_array_equal(g.all(axis=1), alive)  # every group all kept or all pruned
        assert (~alive).sum() == round(s * len(g))
        assert np.count_nonzero(getattr(model, name).weight.data) == alive.sum() * g.shape[1]


def test_neuron_is_filter():
    a, b = conv_linear(), conv_linear()
    ma = mp.prune.prune(a, 0.5, granularity="neuron", scope="layerwise")
    mb = mp.prune.prune(b, 0.5, granularity="filter", scope="layerwise")
    for n in ma:
        np.testing.assert_array_equal(ma[n], mb[n])


@pytest.mark.parametrize("spec,n,m", [("2:4", 2, 4), ("1:4", 1, 4), ("1:2", 1, 2)])
def test_n_m_keeps_exactly_n_of_every_m_along_the_input_dimension(spec, n, m):
    model = conv_linear()
    masks = mp.prune.prune(model, granularity=spec)
    for name, mask in masks.items():
        w = getattr(model, name).weight.data.reshape(mask.shape[0], -1)
        g = mask.reshape(mask.shape[0], -1, m)
        assert np.all(g.sum(axis=2) == n)
        kept = np.where(g, np.abs(w).reshape(g.shape), np.inf).min(axis=2)
        dropped = np.where(~g, np.abs(w).reshape(g.shape), -np.inf).max(axis=2)
        assert np.all(kept >= dropped)  # the N largest |w| of each group survive
    assert mp.prune.sparsity(model) == pytest.approx(1 - n / m)
    # the implied sparsity may be passed; any other is refused
    mp.prune.prune(conv_linear(), 1 - n / m, granularity=spec)
    with pytest.raises(ValueError, match="sparsity"):
        mp.prune.prune(conv_linear(), 0.3, granularity=spec)


def test_block_tiles_are_contiguous():
    model = nn.Sequential(nn.Linear(4, 4, rng=0))
    model[0].weight.data[:] = np.arange(1, 17, dtype=np.float32).reshape(4, 4)
    mask = mp.prune.prune(model, 0.25, granularity="block2x2")["0"]
    expected = np.ones((4, 4), bool)
    expected[:2, :2] = False  # the top-left tile has the smallest L1 norm
    np.testing.assert_array_equal(mask, expected)


def test_channel_on_conv_and_linear():
    model = conv_linear()
    masks = mp.prune.prune(model, scope={"0": 0.5, "3": 0.25}, granularity="channel")
    conv_dead = ~masks["0"].any(axis=(0, 2, 3))
    assert conv_dead.sum() == 2 and np.all(~masks["0"][:, conv_dead])
    lin_dead = ~masks["3"].any(axis=0)
    assert lin_dead.sum() == 32 and np.all(~masks["3"][:, lin_dead])


# --- reduce ---------------------------------------------------------------------------------------
def test_reduce_gives_documented_group_scores():
    s = np.random.default_rng(0).normal(size=(3, 2, 2, 2))
    flat = s.reshape(3, -1)
    expect = {"l1": np.abs(flat).sum(1), "l2": np.sqrt((flat ** 2).sum(1)),
              "mean": flat.mean(1), "sum": flat.sum(1)}
    g = structures.parse("filter")
    for reduce, e in expect.items():
        np.testing.assert_allclose(g.group_scores(s, reduce), e)
    ch = structures.parse("channel").group_scores(s, "l2")
    np.testing.assert_allclose(ch, np.sqrt((s ** 2).sum(axis=(0, 2, 3))))
    ks = structures.parse("kernel").group_scores(s, "mean")
    np.testing.assert_allclose(ks, s.mean(axis=(2, 3)))
    fs = structures.parse("filter_shape").group_scores(s, "sum")
    np.testing.assert_allclose(fs, s.sum(axis=0).ravel())


@pytest.mark.parametrize("reduce,dead", [("l1", 0), ("sum", 1), ("mean", 1), ("l2", 0)])
def test_reduce_changes_which_filter_falls(reduce, dead):
    """Signed scores per filter: [1, 1], [−3, 2], [3, 3]. By size (l1 2/5/6, l2 1.4/3.6/4.2)
    filter 0 is least important; by signed total (sum 2/−1/6, mean 1/−0.5/3) filter 1 is."""
    scores_ = np.array([[1.0, 1.0], [-3.0, 2.0], [3.0, 3.0]])

    def crit(model, layers, batch):
        return {"0": scores_}

    model = nn.Sequential(nn.Linear(2, 3, rng=0))
    mask = mp.prune.prune(model, 1 / 3, criterion=crit, granularity="filter", reduce=reduce)["0"]
    alive = mask.any(axis=1)
    assert not alive[dead] and alive.sum() == 2


def test_reduce_name_validated(tiny_mlp):
    with pytest.raises(ValueError, match="reduce") as e:
        mp.prune.prune(tiny_mlp, 0.5, granularity="filter", reduce="max")
    assert "l1" in str(e.value) and "'max'" in str(e.value)


# --- refused combinations -------------------------------------------------------------------------
@pytest.mark.parametrize("crit", ["fpgm", "activation", "apoz", "bn_scale"])
@pytest.mark.parametrize("granularity", ["unstructured", "channel"])
def test_unit_criteria_need_filter_granularity(crit, granularity, tiny_cnn, rng):
    batch = (rng.normal(size=(4, 1, 6, 6)).astype(np.float32), np.array([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="filter") as e:
        mp.prune.prune(tiny_cnn, 0.5, criterion=crit, granularity=granularity, batch=batch)
    assert crit in str(e.value) and granularity in str(e.value)


def test_n_m_needs_divisible_input_dimension():
    model = nn.Sequential(nn.Linear(6, 4, rng=0))
    with pytest.raises(ValueError, match="divisible by 4") as e:
        mp.prune.prune(model, granularity="2:4")
    assert "'0'" in str(e.value) and "6" in str(e.value)
    conv = nn.Sequential(nn.Conv2d(1, 4, 3, rng=0))  # 1·3·3 = 9 columns
    with pytest.raises(ValueError, match="9"):
        mp.prune.prune(conv, granularity="2:4")
    mp.prune.prune(nn.Sequential(nn.Conv2d(4, 4, 3, rng=0)), granularity="2:4")  # 36 is fine


def test_block_needs_divisible_matrix():
    with pytest.raises(ValueError, match="block2x2"):
        mp.prune.prune(nn.Sequential(nn.Linear(4, 3, rng=0)), 0.5, granularity="block2x2")


@pytest.mark.parametrize("granularity", ["kernel", "filter_shape"])
def test_kernel_and_filter_shape_refuse_linear(granularity):
    model = conv_linear()
    before = {n: v.copy() for n, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="Conv2d") as e:
        mp.prune.prune(model, 0.5, granularity=granularity)
    assert "'3'" in str(e.value) and "Linear" in str(e.value)
    # refused before any work: the model that was refused (not a fresh one) has no mask and
    # every array as it was, the Conv2d that the granularity fits included
    assert all(p.mask is None for p in model.parameters())
    after = model.state_dict()
    assert set(after) == set(before)
    assert all(np.array_equal(after[n], before[n]) for n in before)


@pytest.mark.parametrize("spec", ["filters", "4:2", "0:4", "2:2", "block0x2", "block2", "nm"])
def test_unknown_or_malformed_granularity(spec, tiny_mlp):
    with pytest.raises(ValueError, match="granularity"):
        mp.prune.prune(tiny_mlp, 0.5, granularity=spec)


def test_unknown_granularity_lists_valid_ones():
    with pytest.raises(ValueError) as e:
        structures.parse("rows")
    for name in ("unstructured", "filter", "channel", "kernel", "filter_shape", "2:4", "block4x4"):
        assert name in str(e.value)
    with pytest.raises(TypeError, match="granularity"):
        structures.parse(4)


def test_failed_validation_leaves_model_untouched():
    model = conv_linear()
    before = model.state_dict()
    with pytest.raises(ValueError):
        mp.prune.prune(model, 0.5, granularity="kernel")
    after = model.state_dict()
    assert set(before) == set(after)
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])
