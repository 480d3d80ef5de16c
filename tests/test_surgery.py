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
    widths = [m.weight.shape[:2] for m in mp.prune.prunable_layers(small).values()]
    for m in mp.prune.prunable_layers(small).values():  # the layer's sizes follow its cut weight
        sizes = (m.out_channels, m.in_channels) if isinstance(m, mp.nn.Conv2d) else \
            (m.out_features, m.in_features)
        assert sizes == m.weight.shape[:2]
    if granularity in ("filter", "neuron"):  # n − round(0.6·n) units stay; the 10 logits always
        assert widths == WIDTHS_AFTER_60_PERCENT_FILTERS[name]
    elif granularity == "channel":  # the units whose outgoing channel was pruned are cut
        assert mp.prune.count_params(small) < mp.prune.count_params(model)
    else:  # (unstructured and 2:4 pruning can still leave an input column no row reads: it goes)
        assert mp.prune.count_params(small) <= mp.prune.count_params(model)


WIDTHS_AFTER_60_PERCENT_FILTERS = {
    "lenet_300_100": [(120, 784), (40, 120), (10, 40)],
    "lenet5": [(2, 1), (6, 2), (48, 6 * 5 * 5), (34, 48), (10, 34)],
    "conv4": [(13, 1), (13, 13), (26, 13), (26, 26), (102, 26 * 7 * 7), (10, 102)],
}


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


def test_which_batchnorm_channels_stay_worked_out_by_hand():
    """Conv(1→9) → BN → ReLU → Conv. After BN a channel is 0 for every input (eval: (z−μ)/σ·γ + β)
    only if: the conv outputs 0 and BN keeps 0 at 0 (β = 0 and γ = 0 or μ = 0), or BN silences
    it (γ = 0 and β = 0), or an output_mask does. Everything else is kept."""
    r = np.random.default_rng(0)
    model = mp.nn.Sequential(mp.nn.Conv2d(1, 9, 3, padding=1, rng=r), mp.nn.BatchNorm2d(9),
                             mp.nn.ReLU(), mp.nn.Conv2d(9, 2, 3, padding=1, rng=r))
    conv, bn = model[0], model[1]
    conv.bias.data[:] = 0.1
    bn.weight.data[:] = 1.5
    bn.bias.data[:] = 0.2
    bn.running_mean[:] = 0.3
    bn.running_var[:] = 2.0
    for c, (dead_conv, gamma, beta, mean) in enumerate([
            (True, 1.5, 0.0, 0.0),   # 0: BN(0) = 0                 → cut
            (True, 0.0, 0.0, 0.3),   # 1: BN(0) = 0·… + 0 = 0       → cut
            (True, 1.5, 0.0, 0.3),   # 2: BN(0) = −γ·μ/σ ≠ 0        → stays
            (True, 1.5, 0.2, 0.0),   # 3: BN(0) = β                 → stays
            (False, 0.0, 0.0, 0.3),  # 4: γ = β = 0 silences it     → cut
            (False, 0.0, 0.2, 0.3),  # 5: constant β                → stays
            (False, 1.5, 0.2, 0.3),  # 6: an ordinary channel, but masked below → cut
            (True, 0.0, 1.0, 0.3),   # 7: constant β = 1            → stays
            (True, 1.5, 0.0, 1.0)]): # 8: BN(0) = −γ·1/σ            → stays
        if dead_conv:
            conv.weight.data[c] = 0.0
            conv.bias.data[c] = 0.0
        bn.weight.data[c], bn.bias.data[c], bn.running_mean[c] = gamma, beta, mean
    bn.output_mask = np.arange(9) != 6
    small = surgery.compact(model)
    assert small[0].weight.shape[0] == small[1].num_features == small[3].weight.shape[1] == 5
    np.testing.assert_array_equal(small[1].bias.data, bn.bias.data[[2, 3, 5, 7, 8]])
    x = r.standard_normal((3, 1, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(_outputs(small, x), _outputs(model, x), rtol=1e-5, atol=1e-6)


def test_masks_on_pass_through_layers_and_dead_units_add_up():
    """Linear(3→4) → ReLU → Linear(4→2): unit 1 silenced by the Linear's output_mask, unit 2 with
    no weights and no bias, unit 3 silenced by a mask on the ReLU: only unit 0 stays."""
    r = np.random.default_rng(0)
    net = mp.nn.Sequential(mp.nn.Linear(3, 4, rng=r), mp.nn.ReLU(), mp.nn.Linear(4, 2, rng=r))
    net[0].bias.data[:] = 0.5
    net[0].output_mask = np.array([True, False, True, True])
    net[0].weight.data[2] = 0.0
    net[0].bias.data[2] = 0.0
    net[1].output_mask = np.array([True, True, True, False])
    small = surgery.compact(net)
    assert small[0].weight.shape == (1, 3) and small[2].weight.shape == (2, 1)
    x = r.standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_allclose(_outputs(small, x), _outputs(net, x), rtol=1e-6)
    # a layer silenced whole keeps one unit (every layer keeps a shape), and it stays silent
    net[0].output_mask = np.zeros(4, bool)
    small = surgery.compact(net)
    assert small[0].weight.shape == (1, 3)
    np.testing.assert_array_equal(_outputs(small, x), _outputs(net, x))


def test_only_a_later_layer_pruned_is_cut_too():
    """Nothing to cut between the first two layers does not stop the cutting further on."""
    model = mp.models.lenet_300_100(seed=0)
    mp.prune.prune(model, scope={"classifier.3": 0.5}, granularity="neuron")
    small = surgery.compact(model)
    widths = [m.weight.shape for m in mp.prune.prunable_layers(small).values()]
    assert widths == [(300, 784), (50, 300), (10, 50)]
    assert small.arch is None and model.arch is not None  # a compact shape has no recipe
    np.testing.assert_allclose(_outputs(small), _outputs(model), rtol=1e-5, atol=1e-6)


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

    class Square(mp.nn.Module):  # a leaf compact() has no rule for
        def forward(self, x):
            return x * x

    # what the graph cannot cut through stays whole, and the outputs stay the same: a layer whose
    # output is added to the model input (its channels are tied to the input), a leaf module the
    # graph does not know (channels read by it are kept) — where a ReLU in its place is cut
    x = mp.Tensor(np.random.default_rng(0).standard_normal((3, 2)).astype(np.float32))
    for middle, cut in ((Square(), False), (mp.nn.ReLU(), True)):
        chain = mp.nn.Sequential(mp.nn.Linear(2, 3, rng=0), middle, mp.nn.Linear(3, 2, rng=1))
        mp.prune.apply_masks(chain, {"0": np.array([[False, False], [True, True], [True, True]])})
        mp.prune.masks.mask_dead_units(chain, "0")
        small = surgery.compact(chain)
        assert small[0].weight.shape == ((2, 2) if cut else (3, 2)), type(middle).__name__
        np.testing.assert_allclose(small(x).data, chain(x).data, rtol=1e-6)
    odd = Odd()
    mp.prune.apply_masks(odd, {"fc": np.array([[False, False], [True, True]])})
    assert surgery.compact(odd).fc.weight.shape == (2, 2)
    np.testing.assert_array_equal(surgery.compact(odd)(x).data, odd(x).data)
    model = mp.models.lenet_300_100()
    with pytest.raises(ValueError, match="input_shape"):
        surgery.measured_speedup(model, 784)
    for name, bad in (("batch_size", 0), ("repeats", 0), ("batch_size", 2.5)):
        with pytest.raises((ValueError, TypeError), match=f"^{name}: "):
            surgery.measured_speedup(model, (1, 28, 28), **{name: bad})


class FakeClock:
    """A stand-in for time.perf_counter that advances by one per multiply-add a Linear does, so
    `measured_speedup` measures the work, exactly and on any machine."""

    def __init__(self, monkeypatch):
        self.now, self.batches, self.dtypes = 0.0, [], set()
        forward = mp.nn.Linear.forward
        clock = self

        def counting_forward(layer, x):
            clock.batches.append(x.shape[0])
            clock.dtypes.add(x.data.dtype)
            clock.now += layer.weight.size
            return forward(layer, x)

        monkeypatch.setattr(mp.nn.Linear, "forward", counting_forward)
        monkeypatch.setattr(surgery.time, "perf_counter", lambda: clock.now)


def test_measured_speedup_times_the_model_against_its_compact_copy(monkeypatch):
    """LeNet-300-100 with 80% of its hidden neurons pruned: the compact copy is
    784→60→20→10, so (with time = multiply-adds) the speedup is exactly
    (784·300 + 300·100 + 100·10) / (784·60 + 60·20 + 20·10) = 266,200 / 48,440."""
    model = mp.models.lenet_300_100(seed=0)
    mp.prune.prune(model, 0.8, criterion="magnitude", granularity="neuron", scope="layerwise",
                   exclude="classifier.5")
    model.train()
    clock = FakeClock(monkeypatch)
    ratio = surgery.measured_speedup(model, (1, 28, 28), batch_size=16, repeats=3)
    assert ratio == pytest.approx(266200 / 48440, rel=1e-12)
    assert model.training                          # timed in eval mode, then restored
    # both networks: one warm-up and 3 timed passes, each through 3 Linear layers, batch 16
    # (before them, compact() traces the dependency graph once, on 2 examples)
    assert clock.batches[:3] == [2] * 3 and clock.batches[3:] == [16] * (2 * 4 * 3)
    assert clock.dtypes == {np.dtype(np.float32)}
    # a compacted copy can be passed in; the same network against itself is 1
    assert surgery.measured_speedup(model, (1, 28, 28), compacted=model, repeats=1,
                                    batch_size=1) == 1.0
    # by default: batches of 128, a warm-up and 10 timed passes per network
    clock.batches.clear()
    surgery.measured_speedup(model, (1, 28, 28))
    assert clock.batches == [128] * (2 * 11 * 3)  # the graph traced above is reused


def test_measured_speedup_is_the_best_of_the_repeats(monkeypatch):
    """min over repeats of each network's time: noise only ever adds time."""
    # perf_counter before and after each timed pass: the model takes 7, 5, 6 (best 5),
    # its compact copy 3, 2, 4 (best 2)
    clock = iter([0, 7, 10, 15, 20, 26, 30, 33, 40, 42, 50, 54])
    monkeypatch.setattr(surgery.time, "perf_counter", lambda: float(next(clock)))
    model = mp.nn.Sequential(mp.nn.Flatten(), mp.nn.Linear(4, 2, rng=0))
    assert surgery.measured_speedup(model, (4,), compacted=model, repeats=3) == 5 / 2


def test_a_dead_conv_channel_stays_when_batchnorm_shifts_it_by_its_mean():
    """γ = 1, β = 0 but μ = −0.3: BN(0) = 0.3/σ > 0 reaches the next conv, so the channel whose
    conv weights and bias are all zero must not be cut."""
    r = np.random.default_rng(1)
    model = mp.nn.Sequential(mp.nn.Conv2d(1, 3, 3, padding=1, rng=r), mp.nn.BatchNorm2d(3),
                             mp.nn.ReLU(), mp.nn.Conv2d(3, 2, 3, padding=1, rng=r))
    model[0].weight.data[0] = 0.0
    model[0].bias.data[0] = 0.0
    model[1].running_mean[:] = -0.3
    model.eval()
    small = surgery.compact(model)
    assert small[0].weight.shape[0] == small[1].num_features == small[3].weight.shape[1] == 3
    x = r.standard_normal((2, 1, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(_outputs(small, x), _outputs(model, x), rtol=1e-5, atol=1e-6)
