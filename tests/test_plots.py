"""minprune.plots: every function draws, returns its Axes/Figure, and refuses bad input by name."""
import copy

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import minprune as mp  # noqa: E402
import minprune.plots as plots  # noqa: E402

pytestmark = pytest.mark.pruning


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def pruned_pair():
    """LeNet-5 pruned to 80 % globally and layerwise (untrained weights are enough to draw)."""
    g = mp.models.lenet5(seed=0)
    lw = copy.deepcopy(g)
    mp.prune.prune(g, 0.8, scope="global")
    mp.prune.prune(lw, 0.8, scope="layerwise")
    return g, lw


# --- plot_mask -------------------------------------------------------------------------------------
def test_kernel_grid_layout():
    mask = np.zeros((2, 3, 2, 2), bool)
    mask[1, 2] = True
    img = plots.kernel_grid(mask, gap=1)
    assert img.shape == (2 * 3 - 1, 3 * 3 - 1)
    assert np.isnan(img[2, :]).all() and np.isnan(img[:, 2]).all()  # the gaps
    assert (img[3:5, 6:8] == 1).all()                               # filter 1, channel 2
    assert np.nansum(img) == 4


def test_plot_mask_conv_draws_one_image():
    mask = np.ones((4, 3, 3, 3), bool)
    mask[1] = False
    ax = plots.plot_mask(mask, title="conv")
    assert isinstance(ax, Axes) and len(ax.images) == 1
    assert ax.images[0].get_array().shape == (4 * 4 - 1, 3 * 4 - 1)
    assert "25%" in ax.get_title()


def test_plot_mask_linear_and_parameter():
    layer = mp.nn.Linear(6, 4)
    ax = plots.plot_mask(layer.weight)  # dense Parameter: nothing pruned
    assert ax.images[0].get_array().shape == (4, 6)
    assert "0% pruned" in ax.get_title()
    fig, ax2 = plt.subplots()
    assert plots.plot_mask(np.eye(4, dtype=bool), ax=ax2) is ax2


@pytest.mark.parametrize("bad,exc", [(np.ones((2, 2, 2), bool), ValueError), ("mask", TypeError),
                                     (None, TypeError)])
def test_plot_mask_rejects_bad_input(bad, exc):
    with pytest.raises(exc, match="mask"):
        plots.plot_mask(bad)


def test_plot_mask_rejects_bad_ax_and_gap():
    with pytest.raises(TypeError, match="ax"):
        plots.plot_mask(np.ones((2, 2), bool), ax="here")
    with pytest.raises(ValueError, match="gap"):
        plots.plot_mask(np.ones((2, 2, 3, 3), bool), gap=-1)


# --- gallery ---------------------------------------------------------------------------------------
def test_gallery_has_one_panel_per_granularity():
    fig = plots.plot_granularity_gallery()
    assert isinstance(fig, Figure)
    visible = [a for a in fig.axes if a.get_visible()]
    assert len(visible) == len(plots.GALLERY)
    titles = [a.get_title() for a in visible]
    for gran, title in zip(plots.GALLERY, titles):
        assert title.startswith(gran)
        assert "50% pruned" in title  # every granularity lands on the requested sparsity


def test_gallery_filter_panel_prunes_whole_filters():
    fig = plots.plot_granularity_gallery(weight_shape=(4, 4, 3, 3), granularities=["filter"])
    img = fig.axes[0].images[0].get_array()
    rows = np.asarray(img.filled(np.nan))[::4]  # first pixel row of each filter
    kept = [np.nanmax(r) for r in rows]
    assert sorted(kept) == [0, 0, 1, 1]


@pytest.mark.parametrize("kwargs,arg", [({"weight_shape": (8, 8)}, "weight_shape"),
                                        ({"weight_shape": (8, 8, 3, 2)}, "weight_shape"),
                                        ({"granularities": []}, "granularities"),
                                        ({"ncols": 0}, "ncols"),
                                        ({"sparsity": 1.5}, "sparsity")])
def test_gallery_rejects_bad_input(kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        plots.plot_granularity_gallery(**kwargs)


# --- per-layer sparsity ----------------------------------------------------------------------------
def test_layer_sparsity_bars(pruned_pair):
    g, lw = pruned_pair
    ax = plots.plot_layer_sparsity(g)
    n_layers = len(mp.prune.prunable_layers(g))
    assert len(ax.patches) == n_layers
    heights = [p.get_height() for p in ax.patches]
    want = [1 - np.count_nonzero(m.weight.data) / m.weight.size
            for m in mp.prune.prunable_layers(g).values()]
    assert np.allclose(heights, want)
    ax = plots.plot_layer_sparsity({"global": g, "layerwise": lw})
    assert len(ax.patches) == 2 * n_layers
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["global", "layerwise"]


def test_layer_sparsity_rejects_bad_input(pruned_pair):
    with pytest.raises(TypeError, match="model"):
        plots.plot_layer_sparsity(np.zeros(3))
    with pytest.raises(ValueError, match="labels"):
        plots.plot_layer_sparsity(list(pruned_pair), labels=["only one"])
    with pytest.raises(ValueError, match="model"):
        plots.plot_layer_sparsity([pruned_pair[0], mp.models.lenet_300_100()], labels=["a", "b"])


# --- weight histograms -----------------------------------------------------------------------------
def test_histogram_overlay_skips_zeros(pruned_pair):
    g, lw = pruned_pair
    ax = plots.plot_weight_histogram([g, lw], labels=["global", "layerwise"], bins=30, log=True)
    assert isinstance(ax, Axes) and len(ax.patches) == 2  # one filled step polygon each
    assert ax.get_yscale() == "log"
    nonzero = sum(np.count_nonzero(m.weight.data) for m in mp.prune.prunable_layers(g).values())
    assert f"{nonzero:,}" in ax.get_legend().get_texts()[0].get_text()


def test_histogram_panels_and_zeros(pruned_pair):
    g, _ = pruned_pair
    w = mp.prune.prunable_layers(g)["classifier.1"].weight.data
    fig = plots.plot_weight_histogram({"with zeros": w}, include_zeros=True, panels=True, bins=10)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    counts = [p.get_height() for p in fig.axes[0].patches]
    assert len(counts) == 10 and sum(counts) == w.size


def test_histogram_rejects_bad_input():
    with pytest.raises(TypeError, match="models_or_weights"):
        plots.plot_weight_histogram("weights")
    with pytest.raises(ValueError, match="bins"):
        plots.plot_weight_histogram(np.ones(5), bins=0)
    with pytest.raises(ValueError, match="models_or_weights"):
        plots.plot_weight_histogram(np.zeros(5))
    with pytest.raises(ValueError, match="ax"):
        _, ax = plt.subplots()
        plots.plot_weight_histogram(np.ones(5), panels=True, ax=ax)


# --- accuracy curves -------------------------------------------------------------------------------
def _rows(key="sparsity", seeds=(0,)):
    return [{"strategy": s, key: x, "accuracy": 0.9 - x / 10 + 0.01 * seed, "seed": seed}
            for s in ("global", "layerwise") for x in (0.5, 0.8, 0.9) for seed in seeds]


def test_accuracy_vs_sparsity_one_line_per_strategy():
    ax = plots.plot_accuracy_vs_sparsity(_rows(), baseline=0.99)
    assert len(ax.lines) == 3  # two strategies + the dense baseline
    assert not ax.collections  # one seed: no band
    xs, ys = ax.lines[0].get_data()
    assert list(xs) == [0.5, 0.8, 0.9] and np.allclose(ys, [0.85, 0.82, 0.81])
    xs, ys = ax.lines[1].get_data()   # the second strategy's own points, not the first's again
    assert ax.lines[1].get_label() == "layerwise" and np.allclose(ys, [0.85, 0.82, 0.81])
    assert ax.lines[2].get_label() == "dense" and set(ax.lines[2].get_data()[1]) == {0.99}
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("sparsity", "accuracy")


def test_accuracy_vs_compression_mean_and_band():
    ax = plots.plot_accuracy_vs_compression(_rows("compression", seeds=(0, 1, 2)))
    assert len(ax.lines) == 2 and len(ax.collections) == 2  # a min–max band per strategy
    assert ax.get_xscale() == "log"
    _, ys = ax.lines[0].get_data()
    assert np.allclose(ys, [0.9 - x / 10 + 0.01 for x in (0.5, 0.8, 0.9)])  # mean of seeds
    band = ax.collections[0].get_paths()[0].vertices   # the min–max band spans seeds 0 and 2
    low = [0.9 - x / 10 for x in (0.5, 0.8, 0.9)]
    assert np.isclose(band[:, 1].min(), min(low)) and np.isclose(band[:, 1].max(), max(low) + 0.02)


@pytest.mark.parametrize("bad,exc", [([], ValueError), ({"strategy": "a"}, ValueError),
                                     ([{"strategy": "a", "accuracy": 1}], ValueError),
                                     (["row"], TypeError)])
def test_accuracy_plots_reject_bad_rows(bad, exc):
    with pytest.raises(exc, match="results"):
        plots.plot_accuracy_vs_sparsity(bad)
    with pytest.raises(exc, match="rows"):
        plots.plot_accuracy_vs_compression(bad)


# --- sensitivity -----------------------------------------------------------------------------------
def test_plot_sensitivity_lines():
    scan = {"baseline": 0.98, "sparsities": [0.5, 0.9],
            "layers": {"a": [0.97, 0.9], "b": [0.98, 0.95], "c": [0.9, 0.2]}}
    ax = plots.plot_sensitivity(scan)
    assert len(ax.lines) == 4  # three layers + the baseline
    for line, (name, accs) in zip(ax.lines, scan["layers"].items()):   # each layer's own data
        xs, ys = line.get_data()
        assert line.get_label() == name and list(xs) == [0.5, 0.9] and list(ys) == accs
    _, ys = ax.lines[3].get_data()
    assert ax.lines[3].get_label() == "unpruned" and set(ys) == {0.98}
    assert ax.get_ylabel() == "accuracy" and "sparsity" in ax.get_xlabel()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b", "c", "unpruned"]


def test_plot_sensitivity_on_a_real_scan():
    rng = np.random.default_rng(0)
    model = mp.models.lenet_300_100(seed=0)
    data = (rng.normal(size=(20, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 20))
    scan = mp.prune.sensitivity_scan(model, data, sparsities=(0.5, 0.9), progress=False)
    ax = plots.plot_sensitivity(scan)
    assert len(ax.lines) == 3 + 1
    assert [line.get_label() for line in ax.lines[:3]] == list(mp.prune.prunable_layers(model))
    for line, accs in zip(ax.lines, scan["layers"].values()):
        assert np.allclose(line.get_data()[1], accs)
    assert set(ax.lines[3].get_data()[1]) == {scan["baseline"]}


def test_plot_sensitivity_rejects_bad_input():
    with pytest.raises(ValueError, match="scan"):
        plots.plot_sensitivity({"layers": {}})
    with pytest.raises(ValueError, match="scan"):
        plots.plot_sensitivity({"baseline": 1, "sparsities": [0.5], "layers": {"a": [1, 2]}})


# --- rendered images -------------------------------------------------------------------------------
def _rendered(fig, path, dpi=50):
    """The figure saved as PNG and read back: (height, width, RGBA) floats in [0, 1]."""
    fig.savefig(path, dpi=dpi)
    return plt.imread(path)


def test_rendered_mask_shows_kept_and_pruned_weights_in_proportion(tmp_path):
    """The PNG (not only the Axes) has the figure's size and draws the mask: as many kept-colour
    pixels as pruned-colour ones for a mask that keeps its left half."""
    from matplotlib.colors import to_rgb
    mask = np.zeros((8, 8), bool)
    mask[:, :4] = True
    ax = plots.plot_mask(mask)
    img = _rendered(ax.figure, tmp_path / "mask.png")
    assert img.shape[:2] == (200, 200)            # figsize (4, 4) at 50 dpi
    rgb = img[..., :3]
    kept = np.all(np.abs(rgb - to_rgb(plots.KEPT_COLOR)) < 0.02, axis=-1).sum()
    pruned = np.all(np.abs(rgb - to_rgb(plots.PRUNED_COLOR)) < 0.02, axis=-1).sum()
    assert kept > 1000 and pruned > 1000          # a blank or single-colour image fails here
    assert abs(kept - pruned) < 0.1 * kept        # half kept, half pruned
    mask[:, :] = True                             # a dense mask: no pruned cell (a few
    plt.close("all")                              # anti-aliased edge pixels may match the grey)
    rgb = _rendered(plots.plot_mask(mask).figure, tmp_path / "dense.png")[..., :3]
    assert np.all(np.abs(rgb - to_rgb(plots.PRUNED_COLOR)) < 0.02, axis=-1).sum() < 0.01 * kept


def test_rendered_layer_sparsity_bars_have_the_right_heights(tmp_path, pruned_pair):
    """Bars drawn in the PNG: the tallest bar's column holds more bar-coloured pixels than the
    shortest's, in the ratio of their sparsities."""
    from matplotlib.colors import to_rgb
    g, _ = pruned_pair
    ax = plots.plot_layer_sparsity(g)
    fig = ax.figure
    img = _rendered(fig, tmp_path / "bars.png", dpi=60)
    w, h = fig.get_size_inches() * 60
    assert img.shape[:2] == (round(h), round(w))
    colour = to_rgb(ax.patches[0].get_facecolor())
    painted = np.all(np.abs(img[..., :3] - colour) < 0.02, axis=-1)
    heights = [p.get_height() for p in ax.patches]
    columns = []
    for p in ax.patches:   # the pixel column through each bar's centre
        x_px, _ = ax.transData.transform((p.get_x() + p.get_width() / 2, 0)) * 60 / fig.dpi
        columns.append(painted[:, int(x_px)].sum())
    hi, lo = int(np.argmax(heights)), int(np.argmin(heights))
    assert columns[hi] > columns[lo] > 0
    assert columns[hi] / columns[lo] == pytest.approx(heights[hi] / heights[lo], rel=0.1)


# --- plot_dependency_graph -------------------------------------------------------------------------
def _graph_artists(ax):
    """{text: Text artist} of what the figure writes, and the producer boxes (texts with a bbox)."""
    texts = {t.get_text(): t for t in ax.texts}
    boxes = {t.get_text().split(" [+")[0]: t for t in ax.texts if t.get_bbox_patch() is not None}
    return texts, boxes


def test_dependency_graph_names_every_producer_addition_and_reader():
    graph = mp.prune.dependency_graph(mp.models.resnet_tiny(), (1, 28, 28))
    ax = plots.plot_dependency_graph(graph)
    texts, boxes = _graph_artists(ax)
    assert set(boxes) == set(graph.units)     # one labelled box per producer, nothing else boxed
    for g in graph.groups:
        for c in g.consumers:
            assert str(c) in texts, f"reader {c} of group {g.index} is not drawn"
        assert any(t.startswith(f"group {g.index}\n{g.channels} ") for t in texts)
    assert boxes["layer1.0.conv2"].get_text() == "layer1.0.conv2 [+bn2]"
    assert boxes["layer2.0.downsample.0"].get_text() == "layer2.0.downsample.0 [+downsample.1]"
    additions = sorted(t for t in texts if t.startswith("+ "))
    assert additions == ["+ layer1.0.add   (x + f(x))", "+ layer2.0.add", "+ layer3.0.add"]
    assert "model output" in texts and "(kept)" in texts
    assert "7 groups" in ax.get_title()


def test_dependency_graph_puts_each_producer_and_addition_in_its_groups_band():
    graph = mp.prune.dependency_graph(mp.models.resnet14(), (1, 28, 28))
    ax = plots.plot_dependency_graph(graph)
    texts, boxes = _graph_artists(ax)
    bands = sorted((p.get_y(), p.get_y() + p.get_height()) for p in ax.patches)
    assert len(bands) == len(graph.groups)     # one band per group, in the groups' order
    for g, (top, bottom) in zip(graph.groups, bands):
        for layer in g.producers:
            assert top < boxes[layer].get_position()[1] < bottom, f"{layer} outside group {g.index}"
    top, bottom = bands[0]                     # group 0: the stem and two blocks, two additions
    for name in ("+ layer1.0.add   (x + f(x))", "+ layer1.1.add   (x + f(x))"):
        assert top < texts[name].get_position()[1] < bottom


def test_dependency_graph_colours_groups_apart():
    from matplotlib.colors import to_rgb
    graph = mp.prune.dependency_graph(mp.models.resnet_tiny(), (1, 28, 28))
    _, boxes = _graph_artists(plots.plot_dependency_graph(graph))
    colour = {p: to_rgb(boxes[p].get_bbox_patch().get_facecolor()) for p in graph.units}
    firsts = [colour[g.producers[0]] for g in graph.groups]
    assert len(set(firsts)) == len(graph.groups)                   # every group its own colour
    for g in graph.groups:
        assert {colour[p] for p in g.producers} == {firsts[g.index]}   # coupled layers share one
    r, gr, b = colour["fc"]
    assert r == gr == b                                             # the kept group is grey


def test_dependency_graph_of_a_chain_has_no_additions(tmp_path):
    from matplotlib.colors import to_rgb
    graph = mp.prune.dependency_graph(mp.models.lenet5(), (1, 28, 28))
    ax = plots.plot_dependency_graph(graph)
    texts, boxes = _graph_artists(ax)
    assert set(boxes) == set(graph.units)
    assert not [t for t in texts if t.startswith("+ ")]
    assert "classifier.1 (×25 features)" in texts
    assert "group 2\n120 units" in texts and "group 0\n6 channels" in texts
    # drawn, not only placed: every box colour shows in the PNG
    img = _rendered(ax.figure, tmp_path / "graph.png", dpi=60)[..., :3]
    for layer, box in boxes.items():
        painted = np.all(np.abs(img - to_rgb(box.get_bbox_patch().get_facecolor())) < 0.02, axis=-1)
        assert painted.sum() > 50, f"the box of {layer} is not in the image"


def test_dependency_graph_rejects_what_is_not_a_graph():
    with pytest.raises(TypeError, match="graph"):
        plots.plot_dependency_graph(mp.models.resnet_tiny())
    with pytest.raises(TypeError, match="ax"):
        plots.plot_dependency_graph(mp.prune.dependency_graph(mp.models.lenet5(), (1, 28, 28)),
                                    ax="left")
