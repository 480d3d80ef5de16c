"""Pictures of pruning: masks, per-layer sparsity, weight histograms, accuracy curves, scans, and
the coupled groups of a dependency graph.

Every function draws into an Axes (pass `ax=` to place it in your own figure, or leave it None for
a new figure) and returns what it drew on: an Axes, or a Figure when it makes several panels.
Nothing here prunes or measures anything: the library computes, these functions only draw.
matplotlib is imported when a function is first called, so `import minprune` stays light, and no
function calls `plt.show()` (notebooks show figures themselves; scripts call it when they want).

    import minprune.plots as plots
    plots.plot_mask(model.features[3].weight.mask)
    plots.plot_granularity_gallery()
    plots.plot_accuracy_vs_sparsity(rows)        # rows: [{"strategy", "sparsity", "accuracy"}, ...]
    plots.plot_dependency_graph(mp.prune.dependency_graph(model, (1, 28, 28)))
"""
from __future__ import annotations

import numbers

import numpy as np

from . import nn
from .tensor import Tensor

KEPT_COLOR = "#1f4e79"    # a kept weight
PRUNED_COLOR = "#dcdcdc"  # a pruned weight
GAP_COLOR = "white"       # the space between kernels

GALLERY = ("unstructured", "filter", "channel", "kernel", "filter_shape", "2:4", "block4x4")
_GALLERY_NOTES = {
    "unstructured": "single weights",
    "filter": "W[o, :, :, :]",
    "channel": "W[:, c, :, :]",
    "kernel": "W[o, c, :, :]",
    "filter_shape": "W[:, c, i, j]",
}


def _pyplot():
    import matplotlib.pyplot as plt
    return plt


def _new_axes(ax, figsize):
    """(figure, axes): a fresh pair, or the given Axes and its figure."""
    if ax is None:
        fig, ax = _pyplot().subplots(figsize=figsize)
        return fig, ax
    if not hasattr(ax, "figure") or not hasattr(ax, "plot"):
        raise TypeError(f"ax: expected a matplotlib Axes or None, got {type(ax).__name__}")
    return ax.figure, ax


def _as_mask(mask) -> np.ndarray:
    """A boolean array from a mask array, a Parameter (its .mask; dense if None) or a Tensor."""
    if isinstance(mask, Tensor):  # a Parameter: show what it keeps
        m = getattr(mask, "mask", None)
        return np.ones(mask.shape, bool) if m is None else np.asarray(m, bool)
    if isinstance(mask, (np.ndarray, list, tuple)):
        arr = np.asarray(mask)
        if arr.dtype == bool:
            return arr
        if arr.dtype.kind in "iuf":
            return arr != 0
    raise TypeError(f"mask: expected a boolean array (or a Parameter), got {type(mask).__name__}")


def kernel_grid(mask: np.ndarray, gap: int = 1) -> np.ndarray:
    """Lay a Conv2d mask (O, C, kh, kw) out as one 2-D image: O rows × C columns of kh×kw kernels,
    `gap` pixels apart. Entries are 1.0 (kept), 0.0 (pruned) and NaN (the gaps)."""
    o, c, kh, kw = mask.shape
    image = np.full((o * (kh + gap) - gap, c * (kw + gap) - gap), np.nan)
    for i in range(o):
        for j in range(c):
            r, s = i * (kh + gap), j * (kw + gap)
            image[r:r + kh, s:s + kw] = mask[i, j]
    return image


def plot_mask(mask, ax=None, title=None, gap: int = 1):
    """Draw a weight mask: dark = kept, light = pruned. Returns the Axes.

    A Conv2d mask (O, C, kh, kw) is drawn as a grid of kernels — one row per filter (output
    channel), one column per input channel, each cell a kh×kw kernel — so the granularity shows:
    filter pruning empties rows, channel pruning columns, kernel pruning single cells, filter-shape
    pruning the same position in every cell of a column, N:M a regular stipple. A Linear mask
    (out, in) is drawn as an image with one pixel per weight. `mask` may also be a Parameter
    (its `.mask` is drawn; a dense Parameter shows all kept)."""
    from matplotlib.colors import ListedColormap

    m = _as_mask(mask)
    if m.ndim not in (1, 2, 4):
        raise ValueError(f"mask: expected a Linear (out, in) or Conv2d (out, in, kh, kw) mask, "
                         f"got shape {m.shape}")
    if isinstance(gap, bool) or not isinstance(gap, numbers.Integral) or gap < 0:
        raise ValueError(f"gap: expected an int ≥ 0 (pixels between kernels), got {gap!r}")
    fig, ax = _new_axes(ax, (4, 4))
    cmap = ListedColormap([PRUNED_COLOR, KEPT_COLOR]).with_extremes(bad=GAP_COLOR)
    if m.ndim == 4:
        o, c, kh, kw = m.shape
        ax.imshow(np.ma.masked_invalid(kernel_grid(m, gap)), cmap=cmap, vmin=0, vmax=1,
                  interpolation="nearest")
        # one tick per kernel, at its centre, when there are few enough to read
        ax.set_xticks([j * (kw + gap) + (kw - 1) / 2 for j in range(c)] if c <= 16 else [])
        ax.set_xticklabels([str(j) for j in range(c)] if c <= 16 else [])
        ax.set_yticks([i * (kh + gap) + (kh - 1) / 2 for i in range(o)] if o <= 16 else [])
        ax.set_yticklabels([str(i) for i in range(o)] if o <= 16 else [])
        ax.set_xlabel("input channel")
        ax.set_ylabel("filter (output channel)")
    else:
        m2 = m.reshape(1, -1) if m.ndim == 1 else m
        ax.imshow(m2.astype(float), cmap=cmap, vmin=0, vmax=1, interpolation="nearest",
                  aspect="auto" if max(m2.shape) > 4 * min(m2.shape) else "equal")
        ax.set_xlabel("input feature")
        ax.set_ylabel("output neuron")
    sparsity = 1.0 - m.mean() if m.size else 0.0
    ax.set_title(f"{title + ' — ' if title else ''}{sparsity:.0%} pruned", fontsize=10)
    return ax


def plot_granularity_gallery(weight_shape=(8, 8, 3, 3), sparsity=0.5, seed=0,
                             granularities=GALLERY, criterion="magnitude", ncols=4):
    """Prune one random Conv2d weight at every granularity and draw the masks side by side.

    Each panel is `mp.prune.prune` on a fresh copy of the same layer (O, C, kh, kw), at the same
    `sparsity` (N:M granularities imply their own, 1 − N/M). The default shape has C·kh·kw = 72
    inputs per filter, divisible by 4, so 2:4 and 4×4 blocks apply. Returns the Figure."""
    from .prune import prune

    shape = tuple(weight_shape) if isinstance(weight_shape, (tuple, list)) else None
    if shape is None or len(shape) != 4 or not all(
            isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ValueError(f"weight_shape: expected four positive ints (out, in, kh, kw), got "
                         f"{weight_shape!r}")
    if isinstance(granularities, str) or not granularities:
        raise ValueError(f"granularities: expected a non-empty list of names such as "
                         f"{list(GALLERY)}, got {granularities!r}")
    if isinstance(ncols, bool) or not isinstance(ncols, numbers.Integral) or ncols < 1:
        raise ValueError(f"ncols: expected a positive int, got {ncols!r}")
    o, c, kh, kw = shape
    if kh != kw:
        raise ValueError(f"weight_shape: square kernels only (kh == kw), got {kh}×{kw}")
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=shape).astype(np.float32)

    ncols = min(ncols, len(granularities))
    nrows = -(-len(granularities) // ncols)
    plt = _pyplot()
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.5 * nrows), squeeze=False,
                             layout="constrained")
    for ax, gran in zip(axes.flat, granularities):
        layer = nn.Sequential(nn.Conv2d(c, o, kh, rng=rng))
        layer[0].weight.data[...] = weight
        nm = isinstance(gran, str) and ":" in gran
        prune(layer, None if nm else sparsity, criterion=criterion, granularity=gran,
              scope="layerwise")
        plot_mask(layer[0].weight.mask, ax=ax, title=f"{gran}\n{_GALLERY_NOTES.get(gran, '')}".strip())
    for ax in axes.flat[len(granularities):]:
        ax.set_visible(False)
    fig.suptitle(f"Which weights fall together: a Conv2d weight {o}×{c}×{kh}×{kw}, "
                 f"criterion={criterion!r}")
    return fig


def _named_models(models, labels, what):
    """Normalise one model / a list / a {label: model} dict to (labels, items)."""
    if isinstance(models, dict):
        if labels is not None:
            raise ValueError("labels: give labels or a dict of {label: item}, not both")
        labels, items = [str(k) for k in models], list(models.values())
    elif isinstance(models, (list, tuple)):
        items = list(models)
    else:
        items = [models]
    if not items:
        raise ValueError(f"{what}: nothing to plot (got an empty collection)")
    if labels is None:
        labels = [None] * len(items) if len(items) == 1 else [f"#{i}" for i in range(len(items))]
    labels = list(labels) if not isinstance(labels, str) else [labels]
    if len(labels) != len(items):
        raise ValueError(f"labels: got {len(labels)} labels for {len(items)} items")
    return labels, items


def plot_layer_sparsity(model, ax=None, labels=None, exclude=()):
    """Bars: the fraction of each prunable layer's weights that is zero. Returns the Axes.

    `model` may be one model or several (a list with `labels`, or a dict {label: model}) to
    compare side by side, e.g. global vs layerwise pruning at the same overall sparsity."""
    from .prune.masks import prunable_layers

    labels, models = _named_models(model, labels, "model")
    for m in models:
        if not isinstance(m, nn.Module):
            raise TypeError(f"model: expected a minprune Module, got {type(m).__name__}")
    layers = [prunable_layers(m, exclude) for m in models]
    names = list(layers[0])
    if any(list(ls) != names for ls in layers[1:]):
        raise ValueError("model: the models to compare must have the same prunable layers")
    fig, ax = _new_axes(ax, (1.2 + 0.9 * len(names) * max(1, len(models) / 2), 3.5))
    width = 0.8 / len(models)
    xs = np.arange(len(names))
    for k, (label, ls) in enumerate(zip(labels, layers)):
        values = [1.0 - np.count_nonzero(mod.weight.data) / mod.weight.size for mod in ls.values()]
        bars = ax.bar(xs + (k - (len(models) - 1) / 2) * width, values, width, label=label)
        if len(models) == 1:
            ax.bar_label(bars, labels=[f"{v:.0%}" for v in values], fontsize=8)
    sizes = [ls.weight.size for ls in layers[0].values()]
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{n}\n{s:,} w" for n, s in zip(names, sizes)], fontsize=8)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("sparsity (fraction of weights = 0)")
    if len(models) > 1 or labels[0] is not None:
        ax.legend(fontsize=8)
    return ax


def _flat_weights(item, include_zeros):
    if isinstance(item, nn.Module):
        from .prune.masks import prunable_layers
        w = np.concatenate([m.weight.data.ravel() for m in prunable_layers(item).values()])
    elif isinstance(item, Tensor):
        w = item.data.ravel()
    elif isinstance(item, np.ndarray) and item.dtype.kind in "iuf":
        w = item.ravel()
    else:
        raise TypeError(f"models_or_weights: expected models or weight arrays, got "
                        f"{type(item).__name__}")
    w = w.astype(np.float64)
    return w if include_zeros else w[w != 0]


def plot_weight_histogram(models_or_weights, labels=None, bins=80, ax=None, log=False,
                          include_zeros=False, panels=False):
    """Histogram of the prunable weights (Conv2d/Linear, zeros left out unless `include_zeros`).

    `models_or_weights`: a model, a weight array, or several of them (a list with `labels`, or a
    dict {label: item}). Several are overlaid on one Axes with shared bins (returns the Axes), or
    drawn one per row with `panels=True` (returns the Figure). `log=True` uses a log count axis,
    which shows the tails — and, after unstructured pruning, the hole around zero."""
    labels, items = _named_models(models_or_weights, labels, "models_or_weights")
    data = [_flat_weights(it, include_zeros) for it in items]
    if isinstance(bins, bool) or not (isinstance(bins, numbers.Integral) and bins > 0
                                      or isinstance(bins, (list, tuple, np.ndarray))):
        raise ValueError(f"bins: expected a positive int or a sequence of bin edges, got {bins!r}")
    nonempty = [d for d in data if d.size]
    if not nonempty:
        raise ValueError("models_or_weights: every weight is zero, nothing to draw (pass "
                         "include_zeros=True to see the zeros)")
    if isinstance(bins, numbers.Integral):
        lo = min(d.min() for d in nonempty)
        hi = max(d.max() for d in nonempty)
        bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, int(bins) + 1)
    if panels:
        if ax is not None:
            raise ValueError("ax: panels=True draws its own figure; pass ax=None")
        plt = _pyplot()
        fig, axes = plt.subplots(len(data), 1, figsize=(6, 1.9 * len(data)), sharex=True,
                                 squeeze=False)
        for a, d, label in zip(axes[:, 0], data, labels):
            a.hist(d, bins=bins, color=KEPT_COLOR, log=log)
            a.set_title(f"{label + ': ' if label else ''}{d.size:,} weights", fontsize=9)
            a.set_ylabel("count")
        axes[-1, 0].set_xlabel("weight value")
        fig.tight_layout()
        return fig
    fig, ax = _new_axes(ax, (6, 3.5))
    for d, label in zip(data, labels):
        ax.hist(d, bins=bins, histtype="stepfilled", alpha=0.45 if len(data) > 1 else 0.9,
                label=None if label is None else f"{label} ({d.size:,})", log=log)
    ax.set_xlabel("weight value")
    ax.set_ylabel("count")
    if labels[0] is not None:
        ax.legend(fontsize=8)
    return ax


def _check_rows(rows, name, keys):
    if isinstance(rows, dict) or not isinstance(rows, (list, tuple)) or not rows:
        raise ValueError(f"{name}: expected a non-empty list of dict rows, got "
                         f"{type(rows).__name__}")
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise TypeError(f"{name}[{i}]: expected a dict, got {type(r).__name__}")
        missing = [k for k in keys if k not in r]
        if missing:
            raise ValueError(f"{name}[{i}]: missing key(s) {missing}; each row needs {list(keys)}, "
                             f"got {sorted(r)}")


def _lines_by_group(rows, x, y, group, ax, baseline):
    """One line per group: the mean of y over repeats (seeds) at each x, with a min–max band."""
    groups = {}
    for r in rows:
        groups.setdefault(r[group], {}).setdefault(float(r[x]), []).append(float(r[y]))
    for g, points in groups.items():
        xs = sorted(points)
        ys = [points[v] for v in xs]
        line, = ax.plot(xs, [np.mean(v) for v in ys], marker="o", ms=4, label=str(g))
        if any(len(v) > 1 for v in ys):
            ax.fill_between(xs, [min(v) for v in ys], [max(v) for v in ys],
                            color=line.get_color(), alpha=0.2, linewidth=0)
    if baseline is not None:
        ax.axhline(float(baseline), color="black", ls="--", lw=1, label="dense")
    ax.set_ylabel(y)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_accuracy_vs_sparsity(results, ax=None, x="sparsity", y="accuracy", group="strategy",
                              baseline=None):
    """Accuracy against sparsity, one line per strategy, from rows such as
    {"strategy": "global magnitude", "sparsity": 0.9, "accuracy": 0.97, "seed": 0}.

    Rows with the same strategy and sparsity (several seeds) become their mean, with a shaded
    min–max band. `baseline` draws the dense model's accuracy as a dashed line. Returns the Axes."""
    _check_rows(results, "results", (x, y, group))
    fig, ax = _new_axes(ax, (6, 4))
    _lines_by_group(results, x, y, group, ax, baseline)
    ax.set_xlabel(x)
    return ax


def plot_accuracy_vs_compression(rows, x="compression", y="accuracy", group="strategy", ax=None,
                                 logx=True, baseline=None):
    """ShrinkBench's plot: accuracy against compression ratio (all params / nonzero params, log
    scale), one line per strategy, mean over seeds with a min–max band. Returns the Axes."""
    _check_rows(rows, "rows", (x, y, group))
    fig, ax = _new_axes(ax, (6, 4))
    _lines_by_group(rows, x, y, group, ax, baseline)
    if logx:
        ax.set_xscale("log", base=2)
    ax.set_xlabel(x + (" (log scale)" if logx else ""))
    return ax


def plot_sensitivity(scan, ax=None):
    """Plot `prune.sensitivity_scan` output: accuracy of each layer pruned alone, against its
    sparsity, with the unpruned accuracy as a dashed line. Flat lines = layers that can take more
    pruning. Returns the Axes."""
    if not isinstance(scan, dict) or not {"baseline", "sparsities", "layers"} <= set(scan):
        raise ValueError("scan: expected the dict returned by prune.sensitivity_scan, with keys "
                         "'baseline', 'sparsities' and 'layers'")
    sparsities = list(scan["sparsities"])
    for name, accs in scan["layers"].items():
        if len(accs) != len(sparsities):
            raise ValueError(f"scan: layer {name!r} has {len(accs)} accuracies for "
                             f"{len(sparsities)} sparsities")
    fig, ax = _new_axes(ax, (6, 4))
    for name, accs in scan["layers"].items():
        ax.plot(sparsities, accs, marker="o", ms=4, label=name)
    ax.axhline(scan["baseline"], color="black", ls="--", lw=1, label="unpruned")
    ax.set_xlabel("sparsity of this layer (others dense)")
    ax.set_ylabel("accuracy")
    ax.set_title("sensitivity scan: each layer pruned alone")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def _lighter(colour, amount=0.6):
    """`colour` mixed with white: text on it stays readable."""
    from matplotlib.colors import to_rgb
    return tuple(amount + (1 - amount) * c for c in to_rgb(colour))


def _joins_of_groups(graph) -> dict:
    """{group index: names of the additions that tie its producers}, from the traced steps: an
    addition adds the channels of the layers its two inputs come from (through BatchNorm, ReLU,
    pooling and reshapes, which keep channels one by one)."""
    sources, joins = {}, {}
    for node in graph.nodes:
        if node.kind == "layer":
            sources[node.name] = {node.name}
            continue
        came = set().union(*(sources.get(r, set()) for r in node.reads))
        sources[node.name] = set() if node.kind == "opaque" else came
        layers = sorted(n for n in came if n in graph.units)
        if node.kind == "join" and layers:
            joins.setdefault(graph.group_of(layers[0]).index, []).append(node.name)
    return joins


def _producer_label(graph, layer) -> str:
    """ "layer1.0.conv2 [+bn2]": a producer with the BatchNorm that normalises its channels."""
    bn = graph.batchnorm_of(layer)
    if bn is None:
        return layer
    a, b = layer.split("."), bn.split(".")
    common = 0
    while common < min(len(a), len(b)) - 1 and a[common] == b[common]:
        common += 1
    if b[common:][0].isdigit() and common:  # "downsample.1", not a bare "1"
        common -= 1
    return f"{layer} [+{'.'.join(b[common:])}]"


def plot_dependency_graph(graph, ax=None):
    """Draw a dependency graph (`mp.prune.dependency_graph`) as one band per group of coupled
    channels: the layers that produce them (with their BatchNorm), the additions that tie those
    layers together, and the layers that read the channels. Structured pruning keeps or removes
    a channel of a group in every producer, BatchNorm and reader at once.

    Bands are coloured by group; a group of several producers (coupled by a residual addition)
    has its name in bold; a group that cannot be pruned (the model output, channels tied to the
    input) is grey, with the reason. An addition of a residual block x + f(x) with an identity
    shortcut (`graph.blocks`, whose branch f can go as a whole layer) is marked "x + f(x)".
    Returns the Axes."""
    from matplotlib.patches import Rectangle

    from .prune.graph import OUTPUT_REASON, DependencyGraph

    if not isinstance(graph, DependencyGraph):
        raise TypeError(f"graph: expected the DependencyGraph of mp.prune.dependency_graph(model, "
                        f"input_shape), got {type(graph).__name__}")
    plt = _pyplot()
    joins = _joins_of_groups(graph)
    identity = {b.join for b in graph.blocks}
    shapes = {node.name: node.shape for node in graph.nodes}
    rows = []
    for g in graph.groups:
        readers = [str(c) for c in g.consumers]
        if OUTPUT_REASON in g.blocked:
            readers.append("model output")
        kept = [r for r in g.blocked if r != OUTPUT_REASON]
        if g.blocked:
            readers.append(f"(kept: {'; '.join(kept)})" if kept else "(kept)")
        rows.append((g, joins.get(g.index, []), readers))
    heights = [max(len(g.producers), len(j), len(r), 2) for g, j, r in rows]
    total = sum(heights)
    fig, ax = _new_axes(ax, (12, 1.0 + 0.32 * total))
    ax.set_xlim(0, 1)
    ax.set_ylim(total + 0.1, -1.3)
    ax.axis("off")
    columns = {"group": 0.005, "producers": 0.11, "joins": 0.49, "readers": 0.72}
    for key, title in (("group", "group"), ("producers", "producers [+ their BatchNorm]"),
                       ("joins", "tied together by"), ("readers", "read by (input channels)")):
        ax.text(columns[key], -0.7, title, fontsize=9, fontstyle="italic", va="center")
    palette = [c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 7]  # 7 is grey
    y = 0
    for (g, group_joins, readers), h in zip(rows, heights):
        colour = _lighter("#b0b0b0" if g.blocked else palette[g.index % len(palette)], 0.55)
        ax.add_patch(Rectangle((0, y + 0.06), 1, h - 0.12, facecolor=_lighter(colour, 0.6),
                               edgecolor="none", zorder=0))
        unit = "channels" if len(shapes.get(g.producers[0], ())) > 1 else "units"  # Conv2d: (C, H, W)
        ax.text(columns["group"], y + h / 2, f"group {g.index}\n{g.channels} {unit}", va="center",
                fontsize=9, fontweight="bold" if g.coupled else "normal")
        for k, layer in enumerate(g.producers):
            ax.text(columns["producers"], y + k + 0.5, _producer_label(graph, layer), va="center",
                    fontsize=8.5, fontweight="bold" if g.coupled else "normal",
                    bbox=dict(boxstyle="round,pad=0.25", facecolor=colour, edgecolor="none"))
        if not group_joins:
            ax.text(columns["joins"], y + 0.5, "—", va="center", fontsize=8.5, color="gray")
        for k, join in enumerate(group_joins):
            ax.text(columns["joins"], y + k + 0.5, f"+ {join}" + ("   (x + f(x))" if join in identity
                                                                  else ""),
                    va="center", fontsize=8.5)
        for k, reader in enumerate(readers):
            ax.text(columns["readers"], y + k + 0.5, reader, va="center", fontsize=8.5,
                    color="dimgray" if reader.startswith("(kept") else "black")
        middle = y + h / 2
        for x0, x1 in ((0.445, 0.48), (0.685, 0.71)):
            ax.annotate("", xy=(x1, middle), xytext=(x0, middle),
                        arrowprops=dict(arrowstyle="->", color="gray", lw=1))
        y += h
    ax.set_title(f"{graph!r}: one band per group of channels pruned together", fontsize=10)
    return ax
