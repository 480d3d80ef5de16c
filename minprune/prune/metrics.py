"""What pruning did: parameters, nonzeros, compression, multiply-adds, theoretical speedup.

Definitions (ShrinkBench's, Blalock et al. 2020, so numbers compare across papers):
    compression ratio    = all parameters / nonzero parameters            (biases and BN included)
    sparsity             = zero fraction of the *prunable* weights (Conv2d and Linear)
    flops                = multiply-adds of Conv2d and Linear for one example
    theoretical speedup  = dense multiply-adds / multiply-adds that remain, where a layer's work
                           scales with its live weights, and a weight whose input channel is dead
                           (its producer filter was pruned) counts as gone too — so structured
                           pruning also shrinks the next layer. Real speed is another matter: see
                           the benchmarks.

Who feeds whom comes from the dependency graph (`graph.py`): after a residual addition a channel
is dead only when it is dead in every layer added there.
"""
from __future__ import annotations

import numpy as np

from .. import nn
from ..autograd import no_grad
from ..tensor import Tensor
from .graph import INPUT
from .masks import PRUNABLE_TYPES, check_input_shape, graph_of


def count_params(model) -> int:
    return int(sum(p.size for p in model.parameters()))


def count_nonzero(model) -> int:
    return int(sum(np.count_nonzero(p.data) for p in model.parameters()))


def _prunable_weights(model):
    return [m.weight.data for m in model.modules() if isinstance(m, PRUNABLE_TYPES)]


def sparsity(model) -> float:
    """Fraction of Conv2d/Linear weights that are exactly zero."""
    ws = _prunable_weights(model)
    total = sum(w.size for w in ws)
    return float(1.0 - sum(np.count_nonzero(w) for w in ws) / total) if total else 0.0


def compression_ratio(model) -> float:
    """All parameters / nonzero parameters (ShrinkBench): 10 means 10× fewer weights to store."""
    nz = count_nonzero(model)
    return count_params(model) / nz if nz else float("inf")


def _observe(model, x, handles):
    """One forward pass of `x` in eval mode without a graph, so the forward hooks behind
    `handles` can record what flows; then the hooks are removed and the mode restored."""
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            model(Tensor(x))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()


def _alive_units(model, graph, name, module) -> np.ndarray:
    """Output units that can still carry a signal (after the layer's own BatchNorm)."""
    w = module.weight.data.reshape(module.weight.shape[0], -1)
    alive = w.any(axis=1)
    if module.bias is not None:
        alive |= module.bias.data != 0
    bn_name = graph.batchnorm_of(name)
    if bn_name is not None:  # after BN a dead conv still outputs β (or γ·(b−μ)/σ + β)
        bn = dict(model.named_modules())[bn_name]
        alive = (alive & (bn.weight.data != 0)) | (bn.bias.data != 0)
    if module.output_mask is not None:
        alive &= module.output_mask
    return alive


def _alive_inputs(model, graph, name, alive) -> np.ndarray | None:
    """Which input features of `name` something alive feeds, from the graph: a channel of a
    residual sum lives while any of its layers (or a shared BatchNorm's shift β) does; None when
    it reads the model input or something the graph cannot follow (then all inputs count)."""
    sources = graph.sources(name)
    if not sources or any(p == INPUT for p, _ in sources):
        return None
    live = np.any([alive[p] for p, _ in sources], axis=0)
    if len(sources) > 1:  # a shared BatchNorm after the addition outputs β for a dead channel
        modules = dict(model.named_modules())
        own = {graph.batchnorm_of(p) for p, _ in sources}
        for bn in graph.group_of(sources[0][0]).batchnorms:
            if bn not in own:
                live = live | (modules[bn].bias.data != 0)
    return np.repeat(live, sources[0][1])  # a Flatten spreads each channel over H·W features


def layer_costs(model, input_shape) -> list[dict]:
    """Per prunable layer, in execution order: dense and remaining multiply-adds, following the
    data flow of the dependency graph (a weight fed only by dead units does no work)."""
    graph = graph_of(model, check_input_shape(input_shape))
    modules = dict(model.named_modules())
    shapes = {node.name: node.shape for node in graph.nodes}
    rows, alive = [], {}
    for name in graph.order:
        m = modules[name]
        w = m.weight.data != 0
        if m.output_mask is not None:  # silenced output units do no work either
            w = w & m.output_mask.reshape((-1,) + (1,) * (w.ndim - 1))
        positions = int(np.prod(shapes[name][1:])) if isinstance(m, nn.Conv2d) else 1
        alive_in = _alive_inputs(model, graph, name, alive)
        if alive_in is not None:  # inputs fed by dead units do no work
            w = w & alive_in.reshape((1, -1) + (1,) * (w.ndim - 2))
        rows.append({"layer": name, "type": type(m).__name__, "weights": m.weight.size,
                     "dense_macs": m.weight.size * positions, "macs": int(w.sum()) * positions})
        alive[name] = _alive_units(model, graph, name, m)
    return rows


def flops(model, input_shape, effective=False) -> int:
    """Multiply-adds of all Conv2d and Linear layers for one input of `input_shape` (no batch dim);
    `effective=True` counts only what survives pruning."""
    return int(sum(r["macs" if effective else "dense_macs"] for r in layer_costs(model, input_shape)))


def _speedup(dense: int, left: int) -> float:
    return dense / left if left else float("inf")  # nothing left to compute: infinitely faster


def theoretical_speedup(model, input_shape) -> float:
    """Dense multiply-adds / remaining multiply-adds."""
    rows = layer_costs(model, input_shape)
    return _speedup(sum(r["dense_macs"] for r in rows), sum(r["macs"] for r in rows))


def activation_density(model, batch) -> dict:
    """{layer: fraction of nonzero outputs after its ReLU} measured on `batch` (x or (x, y)),
    with any activation masks and dynamic top-k hooks in force. "Its ReLU" is the graph's
    `activation_after`: the first ReLU its channels reach (after a residual addition, the one
    shared by its group)."""
    x = np.asarray(batch[0] if isinstance(batch, tuple) else batch)
    graph = graph_of(model, x.shape[1:])
    readers = {}
    for name in graph.order:
        relu = graph.activation_after(name)
        if relu is not None:
            readers.setdefault(relu, []).append(name)
    modules, density, handles = dict(model.named_modules()), {}, []

    def record(module, inputs, out, names):
        for n in names:
            density[n] = float(np.mean(out.data != 0))
    for relu, names in readers.items():
        handles.append(modules[relu].register_forward_hook(
            lambda mod, inp, out, names=names: record(mod, inp, out, names)))
    _observe(model, x, handles)
    return density


def report(model, input_shape, batch=None, show=True) -> list[dict]:
    """Per-layer table: parameters, nonzeros, sparsity, dense and remaining multiply-adds (and
    activation density when `batch` is given). Prints it (unless show=False) and returns rows."""
    rows = layer_costs(model, input_shape)
    modules = dict(model.named_modules())
    dens = activation_density(model, batch) if batch is not None else {}
    for r in rows:
        m = modules[r["layer"]]
        params = [m.weight] + ([m.bias] if m.bias is not None else [])
        r["params"] = int(sum(p.size for p in params))
        r["nonzero"] = int(sum(np.count_nonzero(p.data) for p in params))
        r["sparsity"] = 1.0 - np.count_nonzero(m.weight.data) / m.weight.size
        if dens:
            r["act_density"] = dens.get(r["layer"], float("nan"))
    total = {"layer": "total", "type": "", "params": count_params(model),
             "nonzero": count_nonzero(model), "sparsity": sparsity(model),
             "dense_macs": sum(r["dense_macs"] for r in rows), "macs": sum(r["macs"] for r in rows)}
    if show:
        cols = ["layer", "type", "params", "nonzero", "sparsity", "dense_macs", "macs"]
        cols += ["act_density"] if dens else []
        print("  ".join(f"{c:>12}" for c in cols))
        for r in rows + [total]:
            print("  ".join(f"{r[c]:>12.3f}" if isinstance(r.get(c), float) else
                            f"{r.get(c, ''):>12}" for c in cols))
        print(f"compression ratio {compression_ratio(model):.2f}x, theoretical speedup "
              f"{_speedup(total['dense_macs'], total['macs']):.2f}x")
    return rows + [total]
