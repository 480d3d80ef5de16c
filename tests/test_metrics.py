"""Metrics (prune/metrics.py): counts, ShrinkBench compression, multiply-adds and theoretical
speedup, all against numbers worked out here from the layer shapes."""
import numpy as np
import pytest

import minprune as mp
from minprune import nn
from minprune.prune.masks import prunable_layers

pytestmark = pytest.mark.pruning


def hand_macs(model, input_shape):
    """Multiply-adds per layer from the shapes alone: a Conv2d does weight.size MACs per output
    pixel, a Linear weight.size. Spatial sizes follow conv (stride 1) and 2×2 pooling by hand."""
    c, h, w = input_shape
    macs = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            (kh, kw), (ph, pw) = m.kernel_size, m.padding
            h, w = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
            macs.append(m.weight.size * h * w)
        elif isinstance(m, nn.MaxPool2d):
            h, w = h // 2, w // 2
        elif isinstance(m, nn.Linear):
            macs.append(m.weight.size)
    return macs


def test_counts_on_a_hand_model(tiny_mlp):
    # Linear(4, 8): 32 + 8, Linear(8, 3): 24 + 3
    assert mp.prune.count_params(tiny_mlp) == 67
    tiny_mlp[0].bias.data[:] = 1.0
    tiny_mlp[2].bias.data[:] = [1.0, 0.0, 2.0]
    assert mp.prune.count_nonzero(tiny_mlp) == 32 + 8 + 24 + 2
    tiny_mlp[0].weight.data[:2] = 0  # 8 weights
    tiny_mlp[2].weight.data[0, :6] = 0  # 6 weights
    assert mp.prune.count_nonzero(tiny_mlp) == 66 - 14
    assert mp.prune.sparsity(tiny_mlp) == pytest.approx(14 / 56)  # only Linear weights count
    assert mp.prune.compression_ratio(tiny_mlp) == pytest.approx(67 / 52)
    assert isinstance(mp.prune.sparsity(tiny_mlp), float)


def test_compression_ratio_counts_all_parameters(tiny_cnn):
    n = mp.prune.count_params(tiny_cnn)
    # conv 18 + 2, BN 2 + 2, linear 54 + 3
    assert n == 81
    tiny_cnn[0].bias.data[:] = 0.5
    tiny_cnn[5].bias.data[:] = 0.5
    tiny_cnn[1].bias.data[:] = 0.5
    assert mp.prune.compression_ratio(tiny_cnn) == pytest.approx(1.0)
    mp.prune.prune(tiny_cnn, 0.5, scope="layerwise")  # 9 + 27 weights
    assert mp.prune.count_nonzero(tiny_cnn) == 81 - 36
    assert mp.prune.compression_ratio(tiny_cnn) == pytest.approx(81 / 45)
    for p in tiny_cnn.parameters():
        p.data[:] = 0
    assert mp.prune.compression_ratio(tiny_cnn) == float("inf")


@pytest.mark.parametrize("name,shape", [("lenet5", (1, 28, 28)), ("lenet_300_100", (1, 28, 28)),
                                        ("conv4", (1, 28, 28))])
def test_flops_equal_hand_computed_multiply_adds(name, shape):
    model = mp.models.get_model(name)
    per_layer = hand_macs(model, shape)
    assert mp.prune.flops(model, shape) == sum(per_layer)
    rows = mp.prune.layer_costs(model, shape)
    assert [r["dense_macs"] for r in rows] == per_layer
    assert [r["layer"] for r in rows] == list(prunable_layers(model))


def test_flops_known_totals():
    # LeNet-5: 6·25·28² + 16·6·25·10² + 400·120 + 120·84 + 84·10
    assert mp.prune.flops(mp.models.lenet5(), (1, 28, 28)) == 117600 + 240000 + 48000 + 10080 + 840
    assert mp.prune.flops(mp.models.lenet_300_100(), (1, 28, 28)) == 784 * 300 + 300 * 100 + 1000


def test_effective_flops_and_speedup_dense_is_one():
    model = mp.models.lenet5()
    assert mp.prune.flops(model, (1, 28, 28), effective=True) == mp.prune.flops(model, (1, 28, 28))
    assert mp.prune.theoretical_speedup(model, (1, 28, 28)) == 1.0


@pytest.mark.parametrize("s", [0.5, 0.8, 0.9])
def test_uniform_layerwise_speedup_is_one_over_one_minus_s(s):
    model = mp.models.lenet_300_100()
    mp.prune.prune(model, s, scope="layerwise")
    sizes = [784 * 300, 300 * 100, 100 * 10]
    left = sum(n - round(s * n) for n in sizes)
    assert mp.prune.theoretical_speedup(model, (1, 28, 28)) == pytest.approx(sum(sizes) / left)
    assert mp.prune.theoretical_speedup(model, (1, 28, 28)) == pytest.approx(1 / (1 - s), rel=1e-3)
    assert mp.prune.flops(model, (1, 28, 28), effective=True) == left


def test_filter_pruning_also_shrinks_the_next_layer():
    model = mp.models.lenet5()
    mp.prune.prune(model, scope={"features.0": 0.5}, granularity="filter")  # 3 of 6 filters
    rows = {r["layer"]: r for r in mp.prune.layer_costs(model, (1, 28, 28))}
    assert rows["features.0"]["macs"] == 3 * 25 * 28 * 28
    assert rows["features.3"]["macs"] == 16 * 3 * 25 * 10 * 10  # half its input channels are dead
    assert rows["classifier.1"]["macs"] == 48000
    dense = 117600 + 240000 + 48000 + 10080 + 840
    left = 3 * 25 * 784 + 16 * 3 * 25 * 100 + 48000 + 10080 + 840
    assert mp.prune.theoretical_speedup(model, (1, 28, 28)) == pytest.approx(dense / left)


def test_filter_pruning_before_flatten_shrinks_the_linear_layer():
    model = mp.models.lenet5()
    mp.prune.prune(model, scope={"features.3": 0.25}, granularity="filter")  # 4 of 16
    rows = {r["layer"]: r for r in mp.prune.layer_costs(model, (1, 28, 28))}
    assert rows["features.3"]["macs"] == 12 * 6 * 25 * 100
    assert rows["classifier.1"]["macs"] == 120 * 12 * 25  # each channel feeds 5·5 features


def test_neuron_pruning_shrinks_the_next_linear_layer():
    model = mp.models.lenet_300_100()
    mp.prune.prune(model, scope={"classifier.1": 0.5}, granularity="neuron")
    rows = {r["layer"]: r for r in mp.prune.layer_costs(model, (1, 28, 28))}
    assert rows["classifier.1"]["macs"] == 150 * 784
    assert rows["classifier.3"]["macs"] == 100 * 150
    assert rows["classifier.5"]["macs"] == 1000


def test_a_batchnorm_shift_keeps_a_dead_filter_alive_for_the_next_layer():
    """Zero weights alone do not kill a channel when its BatchNorm still adds β."""
    model = mp.models.conv4()
    model.features[0].weight.data[0] = 0
    model.features[1].bias.data[0] = 0.3
    rows = {r["layer"]: r for r in mp.prune.layer_costs(model, (1, 28, 28))}
    assert rows["features.3"]["macs"] == rows["features.3"]["dense_macs"]
    model.features[1].bias.data[0] = 0.0
    rows = {r["layer"]: r for r in mp.prune.layer_costs(model, (1, 28, 28))}
    assert rows["features.3"]["macs"] == 32 * 31 * 9 * 28 * 28


def test_activation_masks_count_as_dead_units():
    model = mp.models.lenet_300_100()
    mask = np.ones(300, bool)
    mask[:100] = False
    model.classifier[1].output_mask = mask
    rows = {r["layer"]: r for r in mp.prune.layer_costs(model, (1, 28, 28))}
    assert rows["classifier.3"]["macs"] == 100 * 200


def test_input_shape_validated():
    with pytest.raises(ValueError, match="input_shape"):
        mp.prune.flops(mp.models.lenet5(), 28)
    with pytest.raises(ValueError, match="input_shape"):
        mp.prune.theoretical_speedup(mp.models.lenet5(), (1, 0, 28))


def test_report_rows_total_and_table(capsys):
    model = mp.models.lenet5()
    mp.prune.prune(model, 0.75, scope="layerwise")
    rows = mp.prune.report(model, (1, 28, 28))
    out = capsys.readouterr().out
    assert [r["layer"] for r in rows] == list(prunable_layers(model)) + ["total"]
    total = rows[-1]
    assert total["params"] == mp.prune.count_params(model) == 61706
    assert total["nonzero"] == mp.prune.count_nonzero(model)
    assert total["sparsity"] == pytest.approx(mp.prune.sparsity(model))
    assert total["dense_macs"] == mp.prune.flops(model, (1, 28, 28))
    assert total["macs"] == mp.prune.flops(model, (1, 28, 28), effective=True)
    for r in rows[:-1]:
        assert r["sparsity"] == pytest.approx(round(0.75 * r["weights"]) / r["weights"])
    assert "features.0" in out and "total" in out and "compression ratio" in out
    assert f"{mp.prune.compression_ratio(model):.2f}x" in out
    assert mp.prune.report(model, (1, 28, 28), show=False) and capsys.readouterr().out == ""


def test_report_with_activation_density(tiny_mlp, rng, capsys):
    x = rng.normal(size=(16, 4)).astype(np.float32)
    rows = mp.prune.report(tiny_mlp, (4,), batch=x)
    assert "act_density" in capsys.readouterr().out
    assert 0 <= rows[0]["act_density"] <= 1


def test_silenced_output_units_do_no_work():
    model = mp.models.lenet_300_100(seed=0)
    layer = model.classifier[1]
    layer.output_mask = np.arange(300) % 2 == 0  # half of the 300 units silenced
    rows = {r["layer"]: r for r in mp.prune.layer_costs(model, (1, 28, 28))}
    assert rows["classifier.1"]["macs"] == 150 * 784
    assert rows["classifier.3"]["macs"] == 100 * 150
    # silenced or without weights, a unit is dead: the two add up, they do not replace each other
    layer.weight.data[::2][:50] = 0   # 50 of the units the mask left alive have no weights
    layer.bias.data[:] = 0
    rows = {r["layer"]: r for r in mp.prune.layer_costs(model, (1, 28, 28))}
    assert rows["classifier.3"]["macs"] == 100 * 100


def test_flatten_keeps_each_channel_s_features_together():
    """Flatten lays out a (16, 5, 5) map channel by channel: features 0..24 are channel 0. A dead
    filter 0 of features.3 silences exactly those 25 inputs of classifier.1, not every 16th one.
    Zero classifier.1's columns 0..24 (channel 0) by hand as well: they overlap the dead inputs
    completely, so only 120 · 375 multiply-adds remain (interleaving would leave 120 · 351)."""
    model = mp.models.lenet5(seed=0)
    keep = np.ones(16, bool)
    keep[0] = False
    mp.prune.apply_masks(model, {"features.3": np.broadcast_to(keep[:, None, None, None],
                                                                (16, 6, 5, 5))})
    mp.prune.masks.mask_dead_units(model, "features.3")
    cols = np.ones((120, 400), bool)
    cols[:, :25] = False
    mp.prune.apply_masks(model, {"classifier.1": cols})
    rows = {r["layer"]: r for r in mp.prune.layer_costs(model, (1, 28, 28))}
    assert rows["features.3"]["macs"] == 15 * 6 * 25 * 100
    assert rows["classifier.1"]["macs"] == 120 * 375
    # the dead channel 1 instead: its features 25..49 are dead too, on top of the zero columns
    model = mp.models.lenet5(seed=0)
    keep = np.ones(16, bool)
    keep[1] = False
    mp.prune.apply_masks(model, {"features.3": np.broadcast_to(keep[:, None, None, None],
                                                                (16, 6, 5, 5)),
                                 "classifier.1": cols})
    mp.prune.masks.mask_dead_units(model, "features.3")
    rows = {r["layer"]: r for r in mp.prune.layer_costs(model, (1, 28, 28))}
    assert rows["classifier.1"]["macs"] == 120 * 350


def test_a_zero_weight_unit_with_a_live_bias_still_feeds_the_next_layer():
    """Units with all weights 0 output ReLU(b): a nonzero bias keeps them alive, so the next layer
    still does the work on their inputs; only zero weights *and* zero bias make a unit dead."""
    model = mp.models.lenet_300_100(seed=0)
    first = model.classifier[1]
    first.weight.data[:100] = 0          # 100 units with no weights ...
    first.bias.data[:] = 0.0
    first.bias.data[:40] = 0.5           # ... 40 of them still output ReLU(0.5) = 0.5
    rows = {r["layer"]: r for r in mp.prune.layer_costs(model, (1, 28, 28))}
    assert rows["classifier.1"]["macs"] == 200 * 784
    assert rows["classifier.3"]["macs"] == 100 * (300 - 60)
    first.bias.data[:40] = 0.0
    rows = {r["layer"]: r for r in mp.prune.layer_costs(model, (1, 28, 28))}
    assert rows["classifier.3"]["macs"] == 100 * 200


def hand_pruned_mlp():
    """Linear(4, 8) → ReLU → Linear(8, 3). Units 0-3 of the first layer pruned (bias masked with
    them), units 4-5 read +0.5·Σx + 1, units 6-7 −0.5·Σx + 1; two weights of the second pruned."""
    r = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(4, 8, rng=r), nn.ReLU(), nn.Linear(8, 3, rng=r))
    model[0].bias.data[:] = 1.0
    model[0].weight.data[4:6] = 0.5
    model[0].weight.data[6:8] = -0.5
    keep0 = np.ones((8, 4), bool)
    keep0[:4] = False
    keep2 = np.ones((3, 8), bool)
    keep2[0, :2] = False
    mp.prune.apply_masks(model, {"0": keep0, "2": keep2})
    mp.prune.masks.mask_dead_units(model, "0")
    return model


# Worked by hand: layer 0 keeps 16 of 32 weights and 4 of 8 biases (20 of 40 nonzero), 16 MACs;
# layer 2 keeps 22 of 24 weights, zero bias (22 of 27), and reads only inputs 4-7: 3·4 = 12 MACs;
# all: 67 parameters, 42 nonzero, sparsity 18/56 = 0.321, 56 → 28 MACs (2×), 67/42 = 1.60×.
# With x = 1: units 4, 5 output 3, units 6, 7 output ReLU(−1) = 0: density 2/8 after layer 0.
REPORT = """\
       layer          type        params       nonzero      sparsity    dense_macs          macs
           0        Linear            40            20         0.500            32            16
           2        Linear            27            22         0.083            24            12
       total                          67            42         0.321            56            28
compression ratio 1.60x, theoretical speedup 2.00x
"""
DENSITY = "\n".join([
    "       layer          type        params       nonzero      sparsity    dense_macs          macs"
    "   act_density",
    "           0        Linear            40            20         0.500            32            16"
    "         0.250",
    "           2        Linear            27            22         0.083            24            12"
    "           nan",
    "       total                          67            42         0.321            56            28"
    "              ",  # no density for the total
    "compression ratio 1.60x, theoretical speedup 2.00x\n"])


def test_report_table_worked_by_hand(capsys):
    model = hand_pruned_mlp()
    rows = mp.prune.report(model, (4,))
    assert capsys.readouterr().out == REPORT
    assert [(r["layer"], r["type"], r["params"], r["nonzero"], r["dense_macs"], r["macs"])
            for r in rows] == [("0", "Linear", 40, 20, 32, 16), ("2", "Linear", 27, 22, 24, 12),
                               ("total", "", 67, 42, 56, 28)]
    assert [r["sparsity"] for r in rows] == pytest.approx([0.5, 2 / 24, 18 / 56])
    rows = mp.prune.report(model, (4,), batch=(np.ones((2, 4), np.float32), np.zeros(2, int)))
    assert capsys.readouterr().out == DENSITY
    assert rows[0]["act_density"] == 0.25 and np.isnan(rows[1]["act_density"])


def test_a_fully_pruned_model_is_infinitely_faster_in_theory(capsys):
    model = hand_pruned_mlp()
    mp.prune.prune(model, 1.0)
    assert mp.prune.flops(model, (4,), effective=True) == 0
    assert mp.prune.theoretical_speedup(model, (4,)) == float("inf")
    mp.prune.report(model, (4,))
    assert capsys.readouterr().out.endswith("theoretical speedup infx\n")
    assert mp.prune.compression_ratio(model) == 67 / 4  # the 4 live biases of layer 0 remain
    assert mp.prune.sparsity(nn.Sequential(nn.ReLU())) == 0.0  # no prunable weights: none pruned


def test_activation_density_is_measured_after_the_relu_that_follows_each_layer():
    """Linear → BatchNorm → ReLU: the density is after the ReLU (a BN output is rarely 0), and
    each layer pairs with one ReLU only (a second ReLU is not another reading)."""
    model = nn.Sequential(nn.Linear(2, 4, rng=0), nn.BatchNorm1d(4), nn.ReLU(), nn.ReLU(),
                          nn.Linear(4, 2, rng=0))
    model[0].weight.data[:] = [[1, 0], [-1, 0], [0, 1], [0, -1]]
    x = np.array([[1, 1], [1, -1], [-1, -1]], np.float32)  # positive: 2, 2 and 2 of 4 units
    model[0].weight.data[3] = [0, 0]                       # unit 3 never fires
    # unit 0: x0 > 0 on 2 rows, unit 1: x0 < 0 on 1, unit 2: x1 > 0 on 1, unit 3: never → 4/12
    model.train()
    density = mp.prune.activation_density(model, x)
    assert density == {"0": pytest.approx(4 / 12)}
    assert model.training is True  # measured in eval mode, then restored


def test_layer_costs_restore_the_training_mode():
    model = hand_pruned_mlp()
    model.train()
    mp.prune.layer_costs(model, (4,))
    assert model.training is True
    model.eval()
    mp.prune.layer_costs(model, (4,))
    assert model.training is False


def test_a_layer_not_fed_by_the_previous_one_counts_all_its_inputs():
    """Two branches reading the same input: the second layer's 4 inputs come from the data, not
    from the first layer's 3 units, so the first layer's dead unit cannot shrink it."""
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 3, rng=0)
            self.b = nn.Linear(4, 2, rng=1)

        def forward(self, x):
            return self.a(x).sum(axis=1, keepdims=True) + self.b(x)

    model = TwoHeads()
    keep = np.ones((3, 4), bool)
    keep[0] = False
    mp.prune.apply_masks(model, {"a": keep})
    mp.prune.masks.mask_dead_units(model, "a")
    rows = {r["layer"]: r for r in mp.prune.layer_costs(model, (4,))}
    assert rows["a"]["macs"] == 8 and rows["b"]["macs"] == 8


def test_report_counts_a_layer_without_bias():
    """Linear(4→3, no bias) → ReLU → Linear(3→2): row 0 of the first weight is zero and the second
    layer's bias is [1, 0]; parameters and nonzeros are counted per layer and in total."""
    net = nn.Sequential(nn.Linear(4, 3, bias=False), nn.ReLU(), nn.Linear(3, 2))
    net[0].weight.data[:] = 1.0
    net[0].weight.data[0] = 0.0
    net[2].weight.data[:] = 1.0
    net[2].bias.data[:] = [1.0, 0.0]
    rows = mp.prune.report(net, (4,), show=False)
    assert [(r["params"], r["nonzero"]) for r in rows] == [(12, 8), (8, 7), (20, 15)]


def test_activation_density_on_images_that_are_not_square():
    """1×2×3 images (no square side fits the Linear's 12 inputs, so the shape comes from the
    batch): a 1×1 conv with weights +1 and −1 on positive pixels fires channel 0 only → 1/2."""
    model = nn.Sequential(nn.Conv2d(1, 2, 1, rng=0), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2, rng=1))
    model[0].weight.data[:, 0, 0, 0] = [1.0, -1.0]
    model[0].bias.data[:] = 0.0
    x = np.arange(1, 13, dtype=np.float32).reshape(2, 1, 2, 3)
    assert mp.prune.activation_density(model, x) == {"0": 0.5}


def test_a_shared_batchnorm_shift_does_not_revive_a_channel_read_before_the_addition():
    """y = a(h) feeds both relu(BN(y + b(h))) → fc and, directly, tap. Neuron 0 of a and b is
    pruned (bias 0 too) but the shared BN's β stays 0.5: fc still gets channel 0, tap does not."""
    class Tap(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.a, self.b = nn.Linear(3, 4, rng=0), nn.Linear(4, 5, rng=1), \
                nn.Linear(4, 5, rng=2)
            self.bn, self.fc, self.tap = nn.BatchNorm1d(5), nn.Linear(5, 2, rng=3), \
                nn.Linear(5, 2, rng=4)

        def forward(self, x):
            h = self.fc1(x).relu()
            y = self.a(h)
            return self.fc(self.bn(y + self.b(h)).relu()) + self.tap(y.relu())

    model = Tap()
    model.bn.bias.data[:] = 0.5
    keep = np.ones((5, 4), bool)
    keep[0] = False
    mp.prune.apply_masks(model, {"a": keep, "b": keep})
    model.a.bias.data[0] = model.b.bias.data[0] = 0.0
    rows = {r["layer"]: r["macs"] for r in mp.prune.layer_costs(model, (3,))}
    assert rows == {"fc1": 12, "a": 16, "b": 16, "fc": 10, "tap": 8}
