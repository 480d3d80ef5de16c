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
