"""Scope (prune/scope.py): exact counts for every scope × granularity, dict scopes, monotone masks
and the normalisation of a global structured ranking. Expected masks are recomputed here from
group ids (np.bincount), independently of structures.py's reshapes."""
import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minprune as mp
from minprune import nn
from minprune.prune import scope as S
from minprune.prune.masks import prunable_layers

pytestmark = pytest.mark.pruning

CONV_ONLY = ("kernel", "filter_shape")
GRANULARITIES = ("unstructured", "filter", "channel") + CONV_ONLY
sparsities = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def small_models(draw):
    """Conv2d(c_in, c_out, k) on (k+1)×(k+1) inputs → ReLU → Flatten → Linear(4·c_out, n_out)."""
    c_in, c_out = draw(st.integers(1, 3)), draw(st.integers(2, 6))
    k, n_out = draw(st.integers(1, 3)), draw(st.integers(2, 5))
    r = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, rng=r), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * c_out, n_out, rng=r))


def group_ids(shape, granularity):
    """An int array of the weight's shape: the group each weight belongs to."""
    idx = np.indices(shape)
    if granularity == "unstructured":
        return np.arange(int(np.prod(shape))).reshape(shape)
    if granularity == "filter":
        return idx[0]
    if granularity == "channel":
        return idx[1]
    if granularity == "kernel":
        return idx[0] * shape[1] + idx[1]
    if granularity == "filter_shape":
        return (idx[1] * shape[2] + idx[2]) * shape[3] + idx[3]
    raise AssertionError(granularity)


def l1_groups(w, granularity):
    """(group ids, group L1 scores, group sizes) for a weight array."""
    gid = group_ids(w.shape, granularity)
    return gid, np.bincount(gid.ravel(), np.abs(w).ravel().astype(np.float64)), \
        np.bincount(gid.ravel())


def layers_for(model, granularity):
    exclude = ("3",) if granularity in CONV_ONLY else ()
    return prunable_layers(model, exclude), exclude


# --- layerwise ------------------------------------------------------------------------------------
@settings(max_examples=15)
@given(model=small_models(), s=sparsities, granularity=st.sampled_from(GRANULARITIES))
def test_layerwise_removes_round_s_g_lowest_groups(model, s, granularity):
    layers, exclude = layers_for(model, granularity)
    weights = {n: m.weight.data.copy() for n, m in layers.items()}
    masks = mp.prune.prune(model, s, granularity=granularity, scope="layerwise", exclude=exclude)
    for n, w in weights.items():
        gid, score, _ = l1_groups(w, granularity)
        dead = np.zeros(score.size, bool)
        dead[np.argsort(score, kind="stable")[:round(s * score.size)]] = True
        np.testing.assert_array_equal(masks[n], ~dead[gid])
        assert (~masks[n]).sum() == dead[gid].sum()


# --- global ---------------------------------------------------------------------------------------
@settings(max_examples=15)
@given(model=small_models(), s=sparsities)
def test_global_unstructured_prunes_round_s_n_weights_over_all_layers(model, s):
    ws = [m.weight.data.copy() for m in prunable_layers(model).values()]
    n = sum(w.size for w in ws)
    mp.prune.prune(model, s, scope="global")
    assert sum(w.size - np.count_nonzero(m.weight.data)
               for w, m in zip(ws, prunable_layers(model).values())) == round(s * n)
    assert mp.prune.sparsity(model) == pytest.approx(round(s * n) / n)
    # the pruned ones are the globally smallest |w| (no normalisation when unstructured)
    flat = np.concatenate([np.abs(w).ravel() for w in ws])
    kept = np.concatenate([m.weight.mask.ravel() for m in prunable_layers(model).values()])
    if 0 < round(s * n) < n:
        assert flat[~kept].max() <= flat[kept].min()


def expected_global_structured(weights, granularity, s, normalize):
    """The rule in scope.select: rank all groups (layer-normalised L1 scores when `normalize`),
    prune the shortest prefix of the lowest whose weights reach round(s·N)."""
    parts = [l1_groups(w, granularity) for w in weights.values()]
    scores = [p[1] / np.sqrt((p[1] ** 2).sum()) if normalize else p[1] for p in parts]
    allscores, sizes = np.concatenate(scores), np.concatenate([p[2] for p in parts])
    target = round(s * sum(w.size for w in weights.values()))
    order = np.argsort(allscores, kind="stable")
    csum = np.cumsum(sizes[order])
    count = 0 if target == 0 else int(np.argmax(csum >= target)) + 1
    dead = np.zeros(allscores.size, bool)
    dead[order[:count]] = True
    out, start = {}, 0
    for n, p in zip(weights, parts):
        out[n] = ~dead[start:start + p[1].size][p[0]]
        start += p[1].size
    return out, target


@settings(max_examples=20)
@given(model=small_models(), s=sparsities, granularity=st.sampled_from(GRANULARITIES[1:]),
       normalize=st.sampled_from([None, True, False]))
def test_global_structured_shortest_prefix_reaching_target(model, s, granularity, normalize):
    layers, exclude = layers_for(model, granularity)
    weights = {n: m.weight.data.copy() for n, m in layers.items()}
    masks = mp.prune.prune(model, s, granularity=granularity, scope="global", exclude=exclude,
                           normalize=normalize)
    expected, target = expected_global_structured(weights, granularity, s, normalize is not False)
    for n in weights:
        np.testing.assert_array_equal(masks[n], expected[n])
    pruned = sum((~m).sum() for m in masks.values())
    group = max(l1_groups(w, granularity)[2].max() for w in weights.values())
    assert target <= pruned < target + group  # overshoots by less than one group


def test_select_directly():
    g = {"a": np.array([0.1, 0.5, 0.3]), "b": np.array([0.2, 0.4])}
    keep = S.select(g, {"a": 1, "b": 1}, 0.4, "global")
    np.testing.assert_array_equal(keep["a"], [False, True, True])
    np.testing.assert_array_equal(keep["b"], [False, True])
    # 11 weights; target 4 = groups 0.1 (3 weights) + 0.2 (1 weight) exactly
    keep = S.select(g, {"a": 3, "b": 1}, 4 / 11, "global")
    np.testing.assert_array_equal(keep["a"], [False, True, True])
    np.testing.assert_array_equal(keep["b"], [False, True])
    keep = S.select(g, {"a": 3, "b": 1}, 5 / 11, "global")  # target 5 → also 0.3: 7 weights
    np.testing.assert_array_equal(keep["a"], [False, True, False])
    with pytest.raises(ValueError, match="scope"):
        S.select(g, {"a": 1, "b": 1}, 0.5, "local")
    with pytest.raises(ValueError, match="sparsity"):
        S.select(g, {"a": 1, "b": 1}, 1.5, "global")
    with pytest.raises(TypeError, match="sparsity"):
        S.select(g, {"a": 1, "b": 1}, "half", "global")


def test_select_defaults_and_edge_targets():
    """The default scope is one global ranking of the raw scores (normalize=False): on
    a = [1, 2, 3], b = [10, 20] a 40% cut takes a's two lowest; layer-normalised
    (a/√14 = .27 .53 .80, b/√500 = .45 .89) it would take a[0] and b[0]."""
    g = {"a": np.array([1.0, 2.0, 3.0]), "b": np.array([10.0, 20.0])}
    ones = {"a": 1, "b": 1}
    keep = S.select(g, ones, 0.4)
    np.testing.assert_array_equal(keep["a"], [False, False, True])
    np.testing.assert_array_equal(keep["b"], [True, True])
    keep = S.select(g, ones, 0.4, "global", normalize=True)
    np.testing.assert_array_equal(keep["a"], [False, True, True])
    np.testing.assert_array_equal(keep["b"], [False, True])
    # groups of 3 and 1 weights (11 in all): a target of a single weight still prunes the
    # lowest group, even though it holds 3
    keep = S.select(g, {"a": 3, "b": 1}, 1 / 11, "global")
    np.testing.assert_array_equal(keep["a"], [False, True, True])
    np.testing.assert_array_equal(keep["b"], [True, True])
    # errors name the argument, and a per-layer sparsity names its layer
    with pytest.raises(ValueError, match=r"^scope: an empty dict"):
        S.select(g, ones, None, {})
    with pytest.raises(ValueError, match=r"^scope\['a'\]"):
        S.select(g, ones, None, {"a": 1.5})
    with pytest.raises(ValueError, match=r"^sparsity"):
        S.check_sparsity(-0.1)


def test_layer_norm_of_all_zero_scores_stays_zero():
    """A layer whose live groups all score 0 has no scale to divide by: its scores stay 0 (not
    0/0 = NaN), and a norm below 1 still scales up to unit length."""
    v = S.layer_norm(np.array([0.0, -np.inf, 0.0]))
    np.testing.assert_array_equal(v, [0.0, -np.inf, 0.0])
    np.testing.assert_allclose(S.layer_norm(np.array([0.03, 0.04])), [0.6, 0.8])
    np.testing.assert_array_equal(S.layer_norm(np.array([-np.inf, -np.inf])), [-np.inf, -np.inf])


def test_lowest_marks_exactly_the_k_smallest():
    x = np.random.default_rng(0).permutation(20).astype(np.float64)  # 0 … 19, no ties
    for k in range(21):
        np.testing.assert_array_equal(S.lowest(x, k), x < k)


def test_lowest_marks_exactly_the_k_smallest_of_a_layer_sized_array():
    """At a real layer's size NumPy's introselect no longer sorts as a side effect, so only a
    partition at the k-th smallest (index k − 1) is right for every k (a partition at k − 2
    leaves a wrong k-th element for 5 of these k)."""
    x = np.random.default_rng(0).permutation(1000).astype(np.float64)  # 0 … 999, no ties
    for k in range(1001):
        np.testing.assert_array_equal(S.lowest(x, k), x < k, err_msg=f"k={k}")


def test_lowest_is_exact_and_deterministic_on_ties():
    x = np.array([3.0, 1.0, 1.0, 1.0, 2.0])
    for k in range(6):
        assert S.lowest(x, k).sum() == k
    np.testing.assert_array_equal(S.lowest(x, 2), S.lowest(x.copy(), 2))
    assert S.lowest(x, 4)[4] and not S.lowest(x, 4)[0]


def test_normalize_protects_small_scale_layers():
    """Without normalisation, a layer of tiny weights loses every neuron first."""
    def model():
        r = np.random.default_rng(0)
        m = nn.Sequential(nn.Linear(8, 8, rng=r), nn.ReLU(), nn.Linear(8, 8, rng=r))
        m[2].weight.data *= 100
        return m

    raw = mp.prune.prune(model(), 0.5, granularity="filter", scope="global", normalize=False)
    assert not raw["0"].any() and raw["2"].all()
    normed = mp.prune.prune(model(), 0.5, granularity="filter", scope="global")  # default: on
    assert 0 < normed["0"].any(axis=1).sum() < 8 and 0 < normed["2"].any(axis=1).sum() < 8
    # layer_norm divides by the L2 norm of the finite scores and leaves −inf alone
    v = S.layer_norm(np.array([3.0, -np.inf, 4.0]))
    np.testing.assert_allclose(v[[0, 2]], [0.6, 0.8])
    assert v[1] == -np.inf


# --- dict scope -----------------------------------------------------------------------------------
def test_dict_scope_touches_only_named_layers():
    model = mp.models.lenet5(seed=1)
    masks = mp.prune.prune(model, scope={"features.0": 0.5, "classifier.1.weight": 0.25})
    assert set(masks) == {"features.0", "classifier.1"}
    layers = prunable_layers(model)
    assert (~masks["features.0"]).sum() == round(0.5 * 150)
    assert (~masks["classifier.1"]).sum() == round(0.25 * 48000)
    for n, m in layers.items():
        if n not in masks:
            assert m.weight.mask is None and np.count_nonzero(m.weight.data) == m.weight.size


@pytest.mark.parametrize("name", ["features.9", "features.1", "conv1", "classifier.1.bias"])
def test_dict_scope_unknown_names_raise(name):
    with pytest.raises(ValueError, match="prunable layers") as e:
        mp.prune.prune(mp.models.lenet5(), scope={name: 0.5})
    assert repr(name) in str(e.value) and "features.0" in str(e.value)


def test_dict_scope_sparsity_validated():
    with pytest.raises(ValueError, match="scope"):
        mp.prune.prune(mp.models.lenet5(), scope={"features.0": 1.5})


# --- monotone masks -------------------------------------------------------------------------------
@settings(max_examples=15)
@given(model=small_models(), s1=sparsities, s2=sparsities,
       how=st.sampled_from([("unstructured", "global"), ("unstructured", "layerwise"),
                            ("filter", "layerwise")]))
def test_pruning_again_is_monotone_and_exact(model, s1, s2, how):
    s1, s2 = min(s1, s2), max(s1, s2)
    granularity, scope = how
    layers = prunable_layers(model)
    first = mp.prune.prune(model, s1, granularity=granularity, scope=scope)
    # perturb surviving weights (as training would) so the second ranking differs from the first
    for m in layers.values():
        m.weight.data *= np.random.default_rng(7).uniform(0.5, 2.0, m.weight.shape).astype(np.float32)
        m.weight.data *= m.weight.mask
    second = mp.prune.prune(model, s2, granularity=granularity, scope=scope)
    for n in first:
        assert not np.any(second[n] & ~first[n])  # nothing revived
    if scope == "global":
        n_all = sum(m.weight.size for m in layers.values())
        assert sum((~m).sum() for m in second.values()) == round(s2 * n_all)
    else:
        for m in second.values():
            g = m.reshape(m.shape[0], -1).any(axis=1) if granularity == "filter" else m.ravel()
            assert (~g).sum() == round(s2 * g.size)


def test_lower_sparsity_later_revives_nothing(tiny_mlp):
    first = mp.prune.prune(tiny_mlp, 0.6)
    second = mp.prune.prune(tiny_mlp, 0.2)
    for n in first:
        np.testing.assert_array_equal(first[n], second[n])


def test_reset_allows_a_fresh_start(tiny_mlp):
    mp.prune.prune(tiny_mlp, 0.6)
    mp.prune.reset(tiny_mlp)
    masks = mp.prune.prune(tiny_mlp, 0.2)  # zeros from before now score lowest, so they go first
    assert sum((~m).sum() for m in masks.values()) == round(0.2 * (32 + 24))


# --- sensitivity scan -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained():
    (x, y), _ = mp.data.load_mnist5k()
    x, y = mp.data.subset(x, y, 300, seed=0)
    r = np.random.default_rng(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 16, rng=r), nn.ReLU(),
                          nn.Linear(16, 10, rng=r))
    mp.train.fit(model, (x, y), epochs=3, lr=0.1, batch_size=32, progress=False)
    return model, (x, y)


def test_sensitivity_scan_shapes_and_baseline(trained):
    model, data = trained
    before = model.state_dict()
    scan = mp.prune.sensitivity_scan(model, data, sparsities=(0.5, 0.9, 1.0), progress=False)
    assert scan["baseline"] == mp.train.evaluate(model, data).accuracy
    assert scan["sparsities"] == [0.5, 0.9, 1.0]
    assert list(scan["layers"]) == ["1", "3"]
    for accs in scan["layers"].values():
        assert len(accs) == 3 and all(0 <= a <= 1 for a in accs)
        assert accs[-1] <= 0.2  # an emptied layer leaves chance-level accuracy
    for k, v in model.state_dict().items():  # the model itself is not pruned
        np.testing.assert_array_equal(v, before[k])
    assert all(p.mask is None for p in model.parameters())
    # same numbers as pruning a copy by hand
    trial = copy.deepcopy(model)
    mp.prune.prune(trial, scope={"3": 0.9})
    assert scan["layers"]["3"][1] == mp.train.evaluate(trial, data).accuracy
    only = mp.prune.sensitivity_scan(model, data, sparsities=(0.5,), progress=False, exclude="3",
                                     granularity="filter")
    assert list(only["layers"]) == ["1"]
    trial = copy.deepcopy(model)  # the pruning arguments reach prune(): filters, not weights
    mp.prune.prune(trial, scope={"1": 0.5}, granularity="filter")
    assert only["layers"]["1"] == [mp.train.evaluate(trial, data).accuracy]


def test_sensitivity_scan_arguments_are_named_when_wrong(trained):
    model, data = trained
    for kwargs, err, name in ((dict(progress="yes"), TypeError, "progress"),
                              (dict(sparsities=(0.5, 1.5)), ValueError, r"sparsities\[1\]"),
                              (dict(sparsity=0.5), ValueError, "sparsity: the scan sets"),
                              (dict(scope="global"), ValueError, "scope: the scan sets")):
        with pytest.raises(err, match=f"^{name}"):
            mp.prune.sensitivity_scan(model, data, **kwargs)


def test_sparsities_from_scan_picks_largest_within_drop():
    scan = {"baseline": 0.90, "sparsities": [0.25, 0.5, 0.75, 0.9],
            "layers": {"a": [0.90, 0.895, 0.85, 0.5], "b": [0.5, 0.4, 0.3, 0.2],
                       "c": [0.91, 0.80, 0.89, 0.1]}}
    assert mp.prune.sparsities_from_scan(scan, max_drop=0.01) == {"a": 0.5, "b": 0.0, "c": 0.75}
    assert mp.prune.sparsities_from_scan(scan, max_drop=0.06) == {"a": 0.75, "b": 0.0, "c": 0.75}
    chosen = mp.prune.sparsities_from_scan(scan, max_drop=1.0)
    assert chosen == {"a": 0.9, "b": 0.9, "c": 0.9}


def test_n_m_with_a_per_layer_dict_refuses_a_sparsity_it_would_ignore():
    """With N:M a per-layer dict only chooses layers; a sparsity given as well is refused like
    with every other granularity (pass None), and the chosen layer alone is pruned 2 of 4."""
    model = mp.models.lenet_300_100(seed=0)
    with pytest.raises(ValueError, match=r"^sparsity: 0.5 would be ignored, because "
                                         r"scope=\{'classifier.1': 0.5\}"):
        mp.prune.prune(model, 0.5, granularity="2:4", scope={"classifier.1": 0.5})
    assert all(m.all() for m in mp.prune.get_masks(model).values())  # refused before pruning
    mp.prune.prune(model, None, granularity="2:4", scope={"classifier.1": 0.5})
    masks = mp.prune.get_masks(model)
    assert np.all(masks["classifier.1"].reshape(-1, 4).sum(axis=1) == 2)
    assert masks["classifier.3"].all() and masks["classifier.5"].all()
