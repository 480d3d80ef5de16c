"""Cross-check against torch.nn.utils.prune: the same weights give the same masks.

Weights are random floats (no ties), copied into equivalent torch modules."""
import numpy as np
import pytest

import minprune as mp
from minprune import nn
from minprune.prune.masks import prunable_layers

pytestmark = pytest.mark.pruning
torch = pytest.importorskip("torch")
tprune = pytest.importorskip("torch.nn.utils.prune")


def twins(seed=0):
    """LeNet-5 in minprune, and its prunable layers as torch modules with the same weights."""
    model = mp.models.lenet5(seed=seed)
    mods = {}
    for name, m in prunable_layers(model).items():
        if isinstance(m, nn.Conv2d):
            t = torch.nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, padding=m.padding)
        else:
            t = torch.nn.Linear(m.in_features, m.out_features)
        with torch.no_grad():
            t.weight.copy_(torch.from_numpy(m.weight.data.copy()))
        mods[name] = t
    return model, mods


def torch_mask(t):
    return t.weight_mask.detach().numpy().astype(bool)


@pytest.mark.parametrize("s", [0.3, 0.5, 0.9])
def test_l1_unstructured_equals_layerwise_magnitude(s):
    model, mods = twins()
    masks = mp.prune.prune(model, s, criterion="magnitude", scope="layerwise")
    for name, t in mods.items():
        tprune.l1_unstructured(t, "weight", amount=s)
        np.testing.assert_array_equal(masks[name], torch_mask(t))


@pytest.mark.parametrize("s", [0.2, 0.6, 0.95])
def test_global_unstructured_equals_global_magnitude(s):
    model, mods = twins(seed=1)
    masks = mp.prune.prune(model, s, criterion="magnitude", scope="global")
    tprune.global_unstructured([(t, "weight") for t in mods.values()],
                               pruning_method=tprune.L1Unstructured, amount=s)
    for name, t in mods.items():
        np.testing.assert_array_equal(masks[name], torch_mask(t))


@pytest.mark.parametrize("s", [0.25, 0.5, 0.7])
def test_ln_structured_equals_filter_magnitude_l2(s):
    model, mods = twins(seed=2)
    masks = mp.prune.prune(model, s, criterion="magnitude", granularity="filter", reduce="l2",
                           scope="layerwise")
    for name, t in mods.items():
        tprune.ln_structured(t, "weight", amount=s, n=2, dim=0)
        np.testing.assert_array_equal(masks[name], torch_mask(t))


def test_torch_leaves_the_bias_of_a_pruned_filter_we_do_not():
    """The pain point the design fixes: torch's ln_structured keeps the bias of a dead filter."""
    model, mods = twins(seed=3)
    for m in prunable_layers(model).values():
        m.bias.data[:] = 0.1
    masks = mp.prune.prune(model, 0.5, granularity="filter", reduce="l2", scope="layerwise")
    t = mods["features.0"]
    with torch.no_grad():
        t.bias.fill_(0.1)
    tprune.ln_structured(t, "weight", amount=0.5, n=2, dim=0)
    dead = ~masks["features.0"].reshape(6, -1).any(axis=1)
    assert np.all(t.bias.detach().numpy()[dead] == np.float32(0.1))
    assert np.all(model.features[0].bias.data[dead] == 0)
