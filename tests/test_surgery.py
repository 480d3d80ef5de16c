"""minprune.prune.surgery: compact() cuts dead and unread units out and keeps the outputs."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minprune as mp
from minprune.prune import surgery

pytestmark = pytest.mark.pruning

X = np.random.default_rng(0).standard_normal((6, 1, 28, 28)).astype(np.float32)


def _outputs(model, x=X, train=False):
    model.train(train)
    with mp.no_grad():
        return model(mp.Tensor(x)).data


@pytest.mark.parametrize("name", ["lenet_300_100", "lenet5", "conv4"])
@pytest.mark.parametrize("granularity", ["filter", "channel", "unstructured", "2:4"])
def test_compact_keeps_the_outputs(name, granularity):
    model = mp.models.get_model(name, seed=1)
    if name == "lenet_300_100" and granularity in ("filter", "channel"):
        granularity = "neuron" if granularity == "filter" else "unstructured"
    sparsity = 0.5 if granularity == "2:4" else 0.6
    # 2:4 needs in·kh·kw divisible by 4: not LeNet-5's convolutions (25, 150) nor conv4's first (9)
    exclude = {"lenet5": ("features.0", "features.3"), "conv4": ("features.0",)}.get(name, ())
    exclude = exclude if granularity == "2:4" else ()
    mp.prune.prune(model, sparsity, criterion="magnitude", granularity=granularity, scope="layerwise",
                   exclude=exclude)
    small = surgery.compact(model)
    np.testing.assert_allclose(_outputs(small), _outputs(model), rtol=1e-4, atol=1e-5)
    assert mp.prune.count_params(small) <= mp.prune.count_params(model)
    # (unstructured and 2:4 pruning can still leave an input column that no row reads: it goes)


def test_filter_pruning_removes_exactly_the_pruned_filters():
    model = mp.models.conv4(seed=0)
    mp.prune.prune(model, 0.5, criterion="magnitude", granularity="filter", scope="layerwise",
                   exclude="classifier.3")
    small = surgery.compact(model)
    # each layer keeps round(0.5·n) filters; each next layer loses the matching input channels
    widths = [m.weight.shape[:2] for m in mp.prune.prunable_layers(small).values()]
    assert widths == [(16, 1), (16, 16), (32, 16), (32, 32), (128, 32 * 7 * 7), (10, 128)]
    np.testing.assert_allclose(_outputs(small), _outputs(model), rtol=1e-4, atol=1e-5)
    # the BatchNorms shrank with their convolutions
    bns = [m for m in small.modules() if isinstance(m, mp.nn.BatchNorm2d)]
    assert [bn.num_features for bn in bns] == [16, 16, 32, 32]
    assert all(bn.running_mean.shape == (bn.num_features,) for bn in bns)


def test_the_logits_always_stay():
    model = mp.models.lenet_300_100(seed=0)
    mp.prune.prune(model, 0.5, criterion="magnitude", granularity="neuron", scope="layerwise")
    assert surgery.compact(model).classifier[5].weight.shape[0] == 10


def test_units_the_next_layer_never_reads_are_cut():
    model = mp.models.lenet5(seed=0)
    conv2 = model.features[3]
    conv2.weight.set_mask(np.ones(conv2.weight.shape, bool) & (np.arange(6) >= 2)[None, :, None, None])
    small = surgery.compact(model)
    assert small.features[0].weight.shape[0] == 4        # conv1's filters 0 and 1 were unread
    assert small.features[3].weight.shape[1] == 4
    np.testing.assert_allclose(_outputs(small), _outputs(model), rtol=1e-5, atol=1e-6)


def test_a_unit_with_a_constant_nonzero_output_stays():
    net = mp.nn.Sequential(mp.nn.Flatten(), mp.nn.Linear(784, 5, rng=0), mp.nn.ReLU(),
                           mp.nn.Linear(5, 3, rng=1))
    w = net[1].weight
    w.set_mask(np.ones(w.shape, bool) & (np.arange(5) >= 2)[:, None])  # units 0, 1: no weights
    net[1].bias.data[:] = [0.0, 0.7, 0.0, 0.0, 0.0]                       # unit 1 outputs 0.7
    small = surgery.compact(net)
    assert small[1].weight.shape == (4, 784)
    np.testing.assert_allclose(_outputs(small), _outputs(net), rtol=1e-5, atol=1e-6)


def test_a_channel_batchnorm_shifts_away_from_zero_stays():
    """Zero filter, zero bias, but BatchNorm adds β (or −γ·μ/σ): the channel is a nonzero
    constant, which the next convolution reads (zero padding makes it vary at the borders)."""
    model = mp.models.conv4(seed=0)
    model.train()
    model(mp.Tensor(X))                       # running statistics away from their initial values
    conv, bn = model.features[0], model.features[1]
    conv.weight.data[0] = 0.0
    conv.bias.data[0] = 0.0
    bn.bias.data[0] = 0.5                     # channel 0: BN(0) = 0.5 − γ·μ/σ ≠ 0
    conv.weight.data[1] = 0.0
    conv.bias.data[1] = 0.0
    bn.weight.data[1] = bn.bias.data[1] = 0.0  # channel 1: silenced by BatchNorm: goes
    small = surgery.compact(model)
    assert small.features[0].weight.shape[0] == 31
    np.testing.assert_allclose(_outputs(small), _outputs(model), rtol=1e-4, atol=1e-5)


def test_activation_pruning_output_masks_are_cut_too():
    model = mp.models.lenet5(seed=0)
    y = np.arange(len(X)) % 10
    mp.prune.prune_activations(model, 0.5, criterion="activation", batch=(X, y), scope="layerwise",
                               exclude="classifier.5")
    small = surgery.compact(model)
    np.testing.assert_allclose(_outputs(small), _outputs(model), rtol=1e-4, atol=1e-5)
    assert mp.prune.count_params(small) < mp.prune.count_params(model)


@given(keep=st.lists(st.booleans(), min_size=4, max_size=4), seed=st.integers(0, 2**16),
       train=st.booleans())
def test_random_filter_masks_on_a_conv_bn_chain(keep, seed, train):
    """Any set of pruned filters (BatchNorm γ/β masked with them): same outputs, in eval and in
    training mode (batch statistics), and the kept filters' unstructured masks survive."""
    rng = np.random.default_rng(seed)
    tiny_cnn = mp.nn.Sequential(
        mp.nn.Conv2d(1, 4, 3, padding=1, rng=rng), mp.nn.BatchNorm2d(4), mp.nn.ReLU(),
        mp.nn.MaxPool2d(2), mp.nn.Flatten(), mp.nn.Linear(36, 3, rng=rng))
    tiny_cnn.train()
    tiny_cnn(mp.Tensor(rng.standard_normal((8, 1, 6, 6)).astype(np.float32)))  # running stats ≠ 0
    conv = tiny_cnn[0]
    conv.weight.set_mask(rng.random(conv.weight.shape) < 0.8)          # unstructured zeros
    mp.prune.apply_masks(tiny_cnn, {"0": np.broadcast_to(np.array(keep)[:, None, None, None],
                                                          conv.weight.shape)})
    mp.prune.masks.mask_dead_units(tiny_cnn, "0")
    small = surgery.compact(tiny_cnn)
    x = rng.standard_normal((4, 1, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(_outputs(small, x, train), _outputs(tiny_cnn, x, train),
                               rtol=1e-4, atol=1e-5)
    alive = np.flatnonzero(keep) if any(keep) else np.array([0])
    assert small[0].weight.shape[0] == alive.size
    np.testing.assert_array_equal(small[0].weight.mask, conv.weight.mask[alive])


def test_compact_leaves_the_original_alone_and_trains_with_its_masks():
    model = mp.models.lenet5(seed=0)
    mp.prune.prune(model, 0.5, criterion="magnitude", granularity="filter", scope="layerwise")
    mp.prune.prune(model, 0.3, criterion="magnitude", scope="layerwise")  # plus scattered zeros
    before = {k: v.copy() for k, v in model.state_dict().items()}
    small = surgery.compact(model)
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    masks = mp.prune.get_masks(small)
    (x, y), _ = mp.data.load_mnist5k()
    opt = mp.optim.SGD(small.parameters(), lr=0.1, momentum=0.9)
    small.train()
    for _ in range(3):
        loss = mp.nn.functional.cross_entropy(small(mp.Tensor(x[:32])), y[:32])
        opt.zero_grad()
        loss.backward()
        opt.step()
    for name, layer in mp.prune.prunable_layers(small).items():
        assert not layer.weight.data[~masks[name]].any()


def test_save_and_load_a_compact_model(tmp_path):
    model = mp.models.lenet5(seed=0)
    mp.prune.prune(model, 0.5, criterion="magnitude", granularity="filter", scope="layerwise")
    small = surgery.compact(model)
    path = mp.save(small, tmp_path / "small.npz")
    with pytest.raises(ValueError, match="model"):
        mp.load(path)                          # no architecture recorded for a compacted shape
    again = mp.load(path, model=surgery.compact(model))
    np.testing.assert_array_equal(_outputs(again), _outputs(small))


def test_unsupported_models_and_arguments_are_refused():
    class Odd(mp.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = mp.nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(x) + x

    with pytest.raises(ValueError, match="model"):
        surgery.compact(Odd())
    with pytest.raises(ValueError, match="Dropout|AvgPool|handles"):
        surgery.compact(mp.nn.Sequential(mp.nn.Linear(2, 2), mp.nn.Sequential(Odd())))
    model = mp.models.lenet_300_100()
    with pytest.raises(ValueError, match="input_shape"):
        surgery.measured_speedup(model, 784)
    with pytest.raises(ValueError, match="repeats"):
        surgery.measured_speedup(model, (1, 28, 28), repeats=0)


def test_measured_speedup_of_neuron_pruning_is_a_positive_ratio():
    model = mp.models.lenet_300_100(seed=0)
    mp.prune.prune(model, 0.8, criterion="magnitude", granularity="neuron", scope="layerwise",
                   exclude="classifier.5")
    ratio = surgery.measured_speedup(model, (1, 28, 28), batch_size=16, repeats=2)
    assert np.isfinite(ratio) and ratio > 0     # its size is a measurement, not a test (bench/)
