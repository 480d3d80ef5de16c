"""prune() (prune/pruner.py): argument validation, and pruning activations instead of weights."""
import re

import numpy as np
import pytest

import minprune as mp
from minprune import nn
from minprune.prune.masks import prunable_layers

pytestmark = pytest.mark.pruning


def mlp(seed=0):
    r = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(6, 12, rng=r), nn.ReLU(), nn.Linear(12, 8, rng=r), nn.ReLU(),
                         nn.Linear(8, 3, rng=r))


def batch(n=32, seed=0):
    r = np.random.default_rng(seed)
    return r.normal(size=(n, 6)).astype(np.float32), r.integers(0, 3, n)


# --- validation -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,err,words", [
    ({"sparsity": 1.5}, ValueError, ["sparsity", "1.5"]),
    ({"sparsity": -0.1}, ValueError, ["sparsity"]),
    ({"sparsity": "0.5"}, TypeError, ["sparsity", "str"]),
    ({"sparsity": True}, TypeError, ["sparsity"]),
    ({"sparsity": None}, ValueError, ["sparsity", "required"]),
    ({"sparsity": 0.5, "target": "biases"}, ValueError, ["target", "'biases'", "activations"]),
    ({"sparsity": 0.5, "scope": "local"}, ValueError, ["scope", "'local'", "layerwise"]),
    ({"sparsity": 0.5, "criterion": "l1"}, ValueError, ["criterion", "'l1'", "magnitude"]),
    ({"sparsity": 0.5, "granularity": "rows"}, ValueError,
     ["granularity", "'rows'", "unstructured, filter, neuron, channel"]),
    ({"sparsity": 0.5, "granularity": 3}, TypeError, ["granularity", "got int"]),
    ({"sparsity": 0.5, "granularity": "kernel"}, ValueError, ["granularity", "'kernel'", "is a Linear"]),
    ({"sparsity": 0.5, "granularity": "block5x5"}, ValueError, ["granularity", "block5x5", "(12×6)"]),
    ({"sparsity": 0.5, "granularity": "block0x2"}, ValueError, ["granularity", "≥ 1"]),
    ({"sparsity": 0.5, "granularity": "block2x0"}, ValueError, ["granularity", "≥ 1"]),
    ({"sparsity": 0.5, "reduce": "max"}, ValueError, ["reduce", "'max'", "l2"]),
    ({"sparsity": 0.5, "exclude": "3"}, ValueError, ["exclude", "'3'", "'4'"]),
    ({"sparsity": 0.5, "criterion": "gradient", "batch": [1, 2]}, TypeError, ["batch", "got list"]),
    ({"sparsity": 0.5, "criterion": "gradient", "batch": (np.array(1.0), np.array(1))}, ValueError,
     ["batch", "x of shape ()", "at least one example"]),
    ({"sparsity": 0.5, "criterion": "gradient"}, ValueError, ["batch", "gradient"]),
    ({"sparsity": 0.3, "granularity": "1:2"}, ValueError, ["sparsity", "1:2", "0.3", "0.5"]),
    ({"scope": {"0": 2.0}}, ValueError, ["scope", "2.0"]),
    ({"scope": {"9": 0.5}}, ValueError, ["scope", "'9'", "prunable layers"]),
    ({"scope": {0: 0.5}}, TypeError, ["scope", "strings", "0"]),
    ({"sparsity": 0.5, "criterion": "fpgm"}, ValueError,
     ["criterion", "'fpgm'", "granularity='filter'", "not 'unstructured'", "'magnitude'"]),
    ({"granularity": "1:2", "reduce": "l2"}, ValueError, ["reduce", "'l2'", "ignored"]),
    ({"sparsity": 0.5, "target": "activations", "batch": batch(), "scope": "layerwise",
      "normalize": True}, ValueError, ["normalize", "ignored", "layerwise"]),
    ({"sparsity": 0.5, "target": "activations", "batch": batch(), "normalize": "no"}, TypeError,
     ["normalize"]),
    # arguments that would be ignored are errors
    ({"sparsity": 0.9, "scope": {"0": 0.5}}, ValueError, ["sparsity", "0.9", "ignored", "None"]),
    ({"scope": {}}, ValueError, ["scope", "empty"]),
    ({"sparsity": 0.5, "scope": {}}, ValueError, ["scope", "empty"]),
    ({"sparsity": 0.5, "target": "activations", "batch": batch(), "granularity": "filter"},
     ValueError, ["granularity", "'filter'", "ignored"]),
    ({"sparsity": 0.5, "target": "activations", "batch": batch(), "reduce": "l2"},
     ValueError, ["reduce", "'l2'", "ignored"]),
    ({"sparsity": 0.5, "target": "activations", "batch": batch(), "criterion": "magnitude"},
     ValueError, ["criterion", "'magnitude'", "activation"]),
    ({"sparsity": 0.5, "reduce": "l2"}, ValueError, ["reduce", "'l2'", "ignored"]),
    ({"sparsity": 0.5, "granularity": "filter", "criterion": "fpgm", "reduce": "l2"},
     ValueError, ["reduce", "ignored"]),
    ({"sparsity": 0.5, "scope": "layerwise", "normalize": True}, ValueError,
     ["normalize", "ignored", "layerwise"]),
    ({"scope": {"0": 0.5}, "normalize": False}, ValueError, ["normalize", "ignored"]),
    ({"sparsity": 0.5, "normalize": "yes"}, TypeError, ["normalize"]),
    ({"granularity": "1:2", "scope": {"0": 0.7}}, ValueError, ["scope['0']", "1:2", "0.5", "0.7"]),
    ({"sparsity": 0.5, "granularity": "1:2", "normalize": True}, ValueError, ["normalize", "ignored"]),
    ({"sparsity": 0.5, "scope": ["0"]}, ValueError, ["scope", "['0']"]),
    ({"sparsity": 0.5, "exclude": 4}, TypeError, ["exclude", "4"]),
    ({"sparsity": 0.5, "criterion": "random", "seed": -1}, ValueError, ["seed", "-1"]),
    ({"sparsity": float("nan")}, ValueError, ["sparsity", "nan"]),
    # empty data for a data-driven criterion
    ({"sparsity": 0.5, "criterion": "gradient", "batch": (np.zeros((0, 6), np.float32),
                                                          np.zeros(0, int))},
     ValueError, ["batch", "(0, 6) and y of shape (0,)", "at least one example"]),
    ({"sparsity": 0.5, "criterion": "taylor", "batch": [batch(), (np.zeros((0, 6), np.float32),
                                                                  np.zeros(0, int))]},
     ValueError, ["batch 1", "at least one example"]),
])
def test_prune_rejects_bad_arguments(kwargs, err, words):
    model = mlp()
    with pytest.raises(err) as e:
        mp.prune.prune(model, **kwargs)
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    # the message starts with the argument it is about: "sparsity: ...", "scope['0']: ..."
    argument = re.match(r"^(\w+)(\['\w+'\])?: ", str(e.value))
    assert argument and argument[1] in set(kwargs) | {"batch"}, str(e.value)
    if "'fpgm'" in words:  # the list of weight-level criteria, without the unit-level ones
        assert "'fpgm'" not in str(e.value).split("weight-level criteria are")[1]
    assert all(p.mask is None for p in model.parameters())  # nothing half-done


def test_conv_model_with_an_empty_batch_names_the_batch(tiny_cnn):
    empty = (np.zeros((0, 1, 6, 6), np.float32), np.zeros(0, np.int64))
    for criterion in ("gradient", "fisher", "snip", "taylor"):
        with pytest.raises(ValueError, match=r"^batch: batch 0 has x of shape \(0, 1, 6, 6\)"):
            mp.prune.prune(tiny_cnn, 0.5, criterion=criterion, batch=empty)
    for criterion in ("activation", "apoz"):
        with pytest.raises(ValueError, match="^batch: batch 0"):
            mp.prune.prune(tiny_cnn, 0.5, criterion=criterion, granularity="filter", batch=empty)
    assert all(p.mask is None for p in tiny_cnn.parameters())


def test_numpy_scalars_prune_like_python_numbers():
    a, b = mlp(), mlp()
    ma = mp.prune.prune(a, 0.5, scope="layerwise")
    mb = mp.prune.prune(b, np.float32(0.5), scope="layerwise")
    for n in ma:
        np.testing.assert_array_equal(ma[n], mb[n])
    mc = mp.prune.prune(mlp(), scope={"0": np.float64(0.25)})
    assert (~mc["0"]).sum() == round(0.25 * 72)
    md = mp.prune.prune(mlp(), np.float32(0.5), criterion="random", seed=np.int64(3))
    me = mp.prune.prune(mlp(), 0.5, criterion="random", seed=3)
    for n in md:
        np.testing.assert_array_equal(md[n], me[n])


def test_prune_returns_masks_of_touched_layers():
    model = mlp()
    masks = mp.prune.prune(model, 0.5)
    assert set(masks) == {"0", "2", "4"}
    for n, m in prunable_layers(model).items():
        np.testing.assert_array_equal(masks[n], m.weight.mask)
        assert masks[n] is not m.weight.mask  # a copy: editing it changes nothing
    masks = mp.prune.prune(mlp(), scope={"2.weight": 0.5})
    assert set(masks) == {"2"}


def test_zero_and_full_sparsity():
    model = mlp()
    masks = mp.prune.prune(model, 0.0)
    assert all(m.all() for m in masks.values())
    masks = mp.prune.prune(model, 1.0, scope="layerwise")
    assert not any(m.any() for m in masks.values())
    assert mp.prune.sparsity(model) == 1.0


def test_prune_is_deterministic_with_ties():
    def run():
        model = mlp()
        for m in prunable_layers(model).values():
            m.weight.data[:] = np.round(m.weight.data, 1)  # plenty of equal |w|
        return mp.prune.prune(model, 0.5)

    a, b = run(), run()
    for n in a:
        np.testing.assert_array_equal(a[n], b[n])
    assert sum((~m).sum() for m in a.values()) == round(0.5 * (72 + 96 + 24))


def test_arguments_are_checked_before_any_scoring():
    """A bad scope is refused before the criterion runs: no work is done for a call that fails."""
    calls = []

    def scores(model, layers, batch):
        calls.append(1)
        return {n: np.abs(m.weight.data) for n, m in layers.items()}

    for bad in ("local", "Global", 3):
        with pytest.raises(ValueError, match="^scope: "):
            mp.prune.prune(mlp(), 0.5, criterion=scores, scope=bad)
    assert calls == []


class ShapeOnly:
    """A callable object (no __name__) returning scores of the wrong shape."""

    def __call__(self, model, layers, batch):
        return {n: np.ones(3) for n in layers}


def test_criterion_errors_name_the_user_s_callable():
    def my_scores(model, layers, batch):
        return {n: np.ones(3) for n in layers}

    with pytest.raises(ValueError, match=r"^criterion: my_scores returned shape \(3,\) for '0'"):
        mp.prune.prune(mlp(), 0.5, criterion=my_scores)
    with pytest.raises(ValueError, match=r"^criterion: ShapeOnly returned shape \(3,\)"):
        mp.prune.prune(mlp(), 0.5, criterion=ShapeOnly())

    def nan_scores(model, layers, batch):
        return {n: np.full(m.weight.shape, np.nan) for n, m in layers.items()}

    # finite weights: no hint about diverged training
    with pytest.raises(ValueError, match=r"^criterion: nan_scores returned NaN scores for '0'$"):
        mp.prune.prune(mlp(), 0.5, criterion=nan_scores)
    model = mlp()
    model[0].weight.data[0, 0] = np.inf
    with pytest.raises(ValueError, match="did training diverge"):
        mp.prune.prune(model, 0.5, criterion=nan_scores)


def test_pruning_again_counts_what_is_already_pruned_whatever_the_new_scores():
    """Random scores do not rank the pruned weights lowest; they still count toward the new
    sparsity: 50% then 75% of 192 weights is exactly 144 pruned, the first 96 among them."""
    model = mlp()
    first = mp.prune.prune(model, 0.5, criterion="random", seed=0)
    second = mp.prune.prune(model, 0.75, criterion="random", seed=1)
    assert sum((~m).sum() for m in first.values()) == 96
    assert sum((~m).sum() for m in second.values()) == 144
    assert not any(np.any(second[n] & ~first[n]) for n in first)


def test_n_m_after_unstructured_pruning_keeps_the_best_live_weights_per_group():
    """1:2 after 50% unstructured pruning: in each pair, a weight pruned before stays pruned and
    the pair keeps its larger *live* weight (a pair with no live weight keeps none)."""
    model = mlp()
    layer = model[0]
    before = mp.prune.prune(model, scope={"0": 0.5})["0"]
    w = np.abs(layer.weight.data.copy()).reshape(-1, 2)
    alive = before.reshape(-1, 2)
    mp.prune.prune(model, granularity="1:2", exclude=["2", "4"])
    after = layer.weight.mask.reshape(-1, 2)
    assert np.all(after.sum(axis=1) == np.minimum(alive.sum(axis=1), 1))
    both = alive.all(axis=1)
    best = np.argmax(w, axis=1)
    assert np.all(after[both, best[both]])
    assert not np.any(after & ~alive)


@pytest.mark.parametrize("r,c", [(2, 4), (4, 2), (1, 3), (3, 1)])
def test_block_pruning_removes_whole_r_by_c_tiles(r, c):
    """Linear(12 → 12) as a 12×12 matrix: blockRxC groups R×C tiles; half of them go, whole."""
    model = nn.Sequential(nn.Linear(12, 12, rng=0))
    mask = mp.prune.prune(model, 0.5, granularity=f"block{r}x{c}")["0"]
    tiles = mask.reshape(12 // r, r, 12 // c, c)
    assert np.all(tiles.all(axis=(1, 3)) | ~tiles.any(axis=(1, 3)))  # each tile all in or all out
    assert (~tiles.any(axis=(1, 3))).sum() == (144 // (r * c)) // 2


def test_filter_pruning_again_counts_the_filters_already_gone():
    model = mlp()
    first = mp.prune.prune(model, 0.5, granularity="filter", scope="layerwise", criterion="random",
                           seed=0)
    second = mp.prune.prune(model, 0.75, granularity="filter", scope="layerwise",
                            criterion="random", seed=1)
    for n, rows in (("0", 12), ("2", 8), ("4", 3)):
        dead1, dead2 = ~first[n].any(axis=1), ~second[n].any(axis=1)
        assert dead2.sum() == round(0.75 * rows) and np.all(dead2[dead1])


def unit_scores(model, layers, batch, *, scale):
    """A unit-level criterion with a required option: layer '0' scores 1..12, '2' 100·(1..8),
    '4' 1000·(1..3), times `scale`."""
    base = {"0": 1.0, "2": 100.0, "4": 1000.0}
    return {n: scale * base[n] * np.arange(1, m.weight.shape[0] + 1) for n, m in layers.items()}


unit_scores.level = "unit"


def test_activation_pruning_ranks_globally_with_or_without_normalisation():
    """23 units, 50% → 12 silenced (round(11.5) = 12). Raw scores: layer '0' (1..12) is the lowest,
    so all of it goes. Layer-normalised (the default) each layer's scores are divided by their
    L2 norm and the cut spreads over the layers. The option `scale` reaches the criterion."""
    raw = mp.prune.prune(mlp(), 0.5, target="activations", criterion=unit_scores, normalize=False,
                         scale=2.0)
    assert (~raw["0"]).sum() == 12 and raw["2"].all() and raw["4"].all()
    normed = mp.prune.prune(mlp(), 0.5, target="activations", criterion=unit_scores, scale=2.0)
    # normalised: '0' → k/√650, '2' → k/√204, '4' → k/√14; the 12 lowest of the 23 values
    values = np.concatenate([np.arange(1, 13) / np.sqrt(650), np.arange(1, 9) / np.sqrt(204),
                             np.arange(1, 4) / np.sqrt(14)])
    cut = np.sort(values)[11]
    for n, k in (("0", 12), ("2", 8), ("4", 3)):
        norm = {"0": np.sqrt(650), "2": np.sqrt(204), "4": np.sqrt(14)}[n]
        np.testing.assert_array_equal(normed[n], np.arange(1, k + 1) / norm > cut)
    # called directly, prune_activations defaults to the 'activation' criterion, global scope
    x, y = batch()
    a = mp.prune.prune_activations(mlp(), 0.5, batch=(x, y))
    b = mp.prune.prune(mlp(), 0.5, target="activations", criterion="activation", scope="global",
                       batch=(x, y))
    for n in a:
        np.testing.assert_array_equal(a[n], b[n])
    only = mp.prune.prune_activations(mlp(), 0.5, criterion=unit_scores, exclude=["0"], scale=1.0)
    assert set(only) == {"2", "4"}


def test_activation_pruning_again_keeps_what_is_silenced_and_lands_exactly():
    """Silence units 0-2 of layer '0', then prune 50% of it with scores that rank those three
    *highest*: they stay silenced and count toward the 6, so only units 0-5 end up silenced."""
    model = mlp()

    def reversed_scores(model, layers, batch):
        return {n: np.arange(m.weight.shape[0], 0, -1, dtype=float) for n, m in layers.items()}

    reversed_scores.level = "unit"

    def increasing(model, layers, batch):
        return {n: np.arange(m.weight.shape[0], dtype=float) for n, m in layers.items()}

    increasing.level = "unit"
    mp.prune.prune(model, scope={"0": 0.25}, target="activations", criterion=increasing)
    np.testing.assert_array_equal(model[0].output_mask, np.arange(12) >= 3)
    mp.prune.prune(model, scope={"0": 0.5}, target="activations", criterion=reversed_scores)
    # 6 silenced: the 3 from before plus the 3 lowest of the rest (units 9, 10, 11)
    np.testing.assert_array_equal(model[0].output_mask, (np.arange(12) >= 3) & (np.arange(12) < 9))


# --- static activation pruning ----------------------------------------------------------------------
def test_activation_pruning_sets_output_masks_with_exact_counts():
    model = mlp()
    weights = {n: p.data.copy() for n, p in model.named_parameters()}
    masks = mp.prune.prune(model, 0.25, target="activations", scope="layerwise", batch=batch())
    assert set(masks) == {"0", "2", "4"}
    for n, m in prunable_layers(model).items():
        assert m.output_mask is not None and m.output_mask.shape == (m.weight.shape[0],)
        assert (~m.output_mask).sum() == round(0.25 * m.weight.shape[0])
        np.testing.assert_array_equal(masks[n], m.output_mask)
        assert m.weight.mask is None
    for n, p in model.named_parameters():  # the weights are untouched
        np.testing.assert_array_equal(p.data, weights[n])


def test_masked_units_output_exactly_zero():
    model = mlp()
    x, y = batch()
    mp.prune.prune(model, 0.5, target="activations", scope="layerwise", batch=(x, y))
    outs = {}
    for n, m in prunable_layers(model).items():
        m.register_forward_hook(lambda mod, i, o, n=n: outs.__setitem__(n, o.data.copy()))
    model(mp.Tensor(x))
    for n, m in prunable_layers(model).items():
        assert np.all(outs[n][:, ~m.output_mask] == 0)
        assert np.any(outs[n][:, m.output_mask] != 0)


def test_activation_pruning_drops_least_active_units():
    model = mlp()
    x, y = batch()
    act = mp.prune.criteria.activation(model, prunable_layers(model), (x, y))
    masks = mp.prune.prune(model, scope={"0": 0.5}, target="activations", batch=(x, y))
    dead = ~masks["0"]
    assert act["0"][dead].max() <= act["0"][~dead].min()


def test_activation_pruning_with_apoz_and_conv(tiny_cnn, rng):
    x = rng.normal(size=(8, 1, 6, 6)).astype(np.float32)
    masks = mp.prune.prune(tiny_cnn, scope={"0": 0.5}, target="activations", criterion="apoz",
                           batch=(x, np.zeros(8, int)))
    assert masks["0"].sum() == 1
    out = tiny_cnn[0](mp.Tensor(x)).data
    assert np.all(out[:, ~masks["0"]] == 0)


def test_activation_pruning_is_monotone_and_validated():
    model = mlp()
    x, y = batch()
    first = mp.prune.prune(model, 0.25, target="activations", scope="layerwise", batch=(x, y))
    second = mp.prune.prune(model, 0.5, target="activations", scope="layerwise", batch=(x, y))
    for n in first:
        assert not np.any(second[n] & ~first[n])
        assert (~second[n]).sum() == round(0.5 * second[n].size)
    with pytest.raises(ValueError, match="criterion"):
        mp.prune.prune(mlp(), 0.5, target="activations", criterion="gradient", batch=(x, y))
    with pytest.raises(ValueError, match="batch"):
        mp.prune.prune(mlp(), 0.5, target="activations")


def test_activation_masks_survive_state_dict(tmp_path):
    model = mlp()
    mp.prune.prune(model, 0.5, target="activations", scope="layerwise", batch=batch())
    fresh = mlp(seed=3).load_state_dict(model.state_dict())
    for (_, a), (_, b) in zip(prunable_layers(model).items(), prunable_layers(fresh).items()):
        np.testing.assert_array_equal(a.output_mask, b.output_mask)


# --- dynamic activation sparsity --------------------------------------------------------------------
@pytest.mark.parametrize("k,kept", [(3, [3, 3]), (0.25, [3, 2]), (1, [1, 1])])
def test_activation_sparsity_keeps_top_k_per_example(k, kept):
    model = mlp()
    x, _ = batch()
    dense_out = model(mp.Tensor(x)).data.copy()
    dense_acts = {}
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    for i, r in enumerate(relus):
        r.register_forward_hook(lambda mod, inp, o, i=i: dense_acts.__setitem__(i, o.data.copy()))
    model(mp.Tensor(x))
    hooks = mp.prune.activation_sparsity(model, k)
    acts = {}
    # a hook added after activation_sparsity's sees the replaced output
    handles = [r.register_forward_hook(lambda mod, inp, o, i=i: acts.__setitem__(i, o.data.copy()))
               for i, r in enumerate(relus)]
    sparse_out = model(mp.Tensor(x)).data
    for i, kk in enumerate(kept):
        nz = (acts[i] != 0).sum(axis=1)
        assert np.all(nz <= kk)
        # the survivors are each example's largest activations, unchanged
        top = np.sort(dense_acts[i], axis=1)[:, -kk:]
        np.testing.assert_array_equal(np.sort(acts[i], axis=1)[:, -kk:], np.maximum(top, 0))
    assert not np.array_equal(sparse_out, dense_out)
    density = mp.prune.activation_density(model, x)
    assert density["0"] == pytest.approx(float(np.mean(acts[0] != 0)))
    assert density["0"] <= kept[0] / 12
    for h in handles:
        h.remove()
    hooks.remove()
    np.testing.assert_array_equal(model(mp.Tensor(x)).data, dense_out)


@pytest.mark.parametrize("k, exc", [(0, ValueError), (-1, ValueError), (1.5, ValueError),
                                    (0.0, ValueError), (float("nan"), ValueError),
                                    (True, TypeError), ("3", TypeError)])
def test_activation_sparsity_validates_k(k, exc):
    with pytest.raises(exc, match="^k: "):
        mp.prune.activation_sparsity(mlp(), k)


def test_activation_sparsity_on_conv_feature_maps():
    """On a (batch, channels, h, w) map the top-k runs over each example's whole map, its shape
    unchanged; a fraction too small for one unit still keeps one; remove() twice is harmless."""
    r = np.random.default_rng(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, rng=r), nn.ReLU(), nn.Flatten(),
                          nn.Linear(2 * 4 * 4, 3, rng=r))
    x = r.normal(size=(5, 1, 4, 4)).astype(np.float32)
    seen = []
    hooks = mp.prune.activation_sparsity(model, 3)
    mine = model[1].register_forward_hook(lambda m, i, o: seen.append(o.data.copy()))
    model(mp.Tensor(x))
    assert seen[0].shape == (5, 2, 4, 4)
    assert np.all((seen[0].reshape(5, -1) != 0).sum(axis=1) <= 3)
    hooks.remove()
    hooks.remove()
    assert hooks.handles == []
    mine.remove()
    hooks = mp.prune.activation_sparsity(model, 0.01)   # 0.01 · 32 rounds to 0: keep 1
    model[1].register_forward_hook(lambda m, i, o: seen.append(o.data.copy()))
    seen.clear()
    model(mp.Tensor(x))
    assert np.all((seen[0].reshape(5, -1) != 0).sum(axis=1) <= 1)
    hooks.remove()


def test_activation_sparsity_takes_numpy_scalars():
    assert mp.prune.activation_sparsity(mlp(), np.int64(3)).k == 3
    assert mp.prune.activation_sparsity(mlp(), np.float32(0.5)).k == 0.5


def test_activation_density_measures_nonzero_fraction():
    model = mlp()
    x, y = batch()
    seen = {}
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    for i, r in enumerate(relus):
        r.register_forward_hook(lambda mod, inp, o, i=i: seen.__setitem__(i, o.data.copy()))
    density = mp.prune.activation_density(model, (x, y))
    assert set(density) == {"0", "2"}  # the last layer has no ReLU after it
    assert density["0"] == pytest.approx(float(np.mean(seen[0] != 0)))
    assert density["2"] == pytest.approx(float(np.mean(seen[1] != 0)))
    mp.prune.prune(model, 0.5, target="activations", scope="layerwise", batch=(x, y))
    after = mp.prune.activation_density(model, x)
    assert after["0"] <= 0.5 and after["0"] < density["0"]


def test_nm_with_a_dict_scope_prunes_only_the_named_layers():
    model = mlp()
    mp.prune.prune(model, granularity="1:2", scope={"0": 0.5})
    masks = mp.prune.get_masks(model)
    assert masks["2"].all() and masks["4"].all()
    assert (masks["0"].reshape(-1, 2).sum(axis=1) == 1).all()  # one of every two kept


def test_a_unit_criterion_returning_no_scores_is_named():
    def half_scores(model, layers, batch, **_):
        return {}
    half_scores.level = "unit"
    with pytest.raises(ValueError, match=r"^criterion: <function .*half_scores.* must return a dict"):
        mp.prune.prune_activations(mp.models.lenet_300_100(), 0.5, criterion=half_scores,
                                   batch=(np.zeros((2, 1, 28, 28), np.float32), np.zeros(2, int)))
