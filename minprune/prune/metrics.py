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
"""
from __future__ import annotations

import numpy as np

from .. import nn
from ..autograd import no_grad
from ..tensor import Tensor
from .masks import PRUNABLE_TYPES, check_input_shape, following_batchnorm


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


def _trace(model, input_shape):
    """Run one example through the model; record each prunable layer's input/output shapes in
    execution order (the order data flows, which is what the dependency rules need)."""
    input_shape = check_input_shape(input_shape)
    names = {id(m): n for n, m in model.named_modules()}
    trace, handles = [], []
    for m in model.modules():
        if isinstance(m, PRUNABLE_TYPES):
            handles.append(m.register_forward_hook(
                lambda mod, inp, out: trace.append((names[id(mod)], mod, inp[0].shape, out.shape))))
    _observe(model, np.zeros((1, *input_shape), np.float32), handles)
    return trace


def _alive_units(model, name, module) -> np.ndarray:
    """Output units that can still carry a signal."""
    w = module.weight.data.reshape(module.weight.shape[0], -1)
    alive = w.any(axis=1)
    if module.bias is not None:
        alive |= module.bias.data != 0
    bn = following_batchnorm(model, name)
    if bn is not None:  # after BN a dead conv still outputs β (or γ·(b−μ)/σ + β)
        alive = (alive & (bn.weight.data != 0)) | (bn.bias.data != 0)
    if module.output_mask is not None:
        alive &= module.output_mask
    return alive


def layer_costs(model, input_shape) -> list[dict]:
    """Per prunable layer: dense and remaining multiply-adds, following the data flow."""
    rows, prev_alive = [], None
    for name, m, _in_shape, out_shape in _trace(model, input_shape):
        w = m.weight.data != 0
        if m.output_mask is not None:  # silenced output units do no work either
            w = w & m.output_mask.reshape((-1,) + (1,) * (w.ndim - 1))
        positions = int(np.prod(out_shape[2:])) if isinstance(m, nn.Conv2d) else 1
        if prev_alive is not None:  # inputs fed by dead units do no work
            n_in = m.weight.shape[1]
            if n_in == prev_alive.size:
                alive_in = prev_alive
            elif n_in % prev_alive.size == 0:  # Flatten after a conv: each channel → H·W features
                alive_in = np.repeat(prev_alive, n_in // prev_alive.size)
            else:
                alive_in = np.ones(n_in, bool)
            w = w & alive_in.reshape((1, -1) + (1,) * (w.ndim - 2))
        rows.append({"layer": name, "type": type(m).__name__, "weights": m.weight.size,
                     "dense_macs": m.weight.size * positions, "macs": int(w.sum()) * positions})
        prev_alive = _alive_units(model, name, m)
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
    with any activation masks and dynamic top-k hooks in force."""
    x = batch[0] if isinstance(batch, tuple) else batch
    order = list(model.named_modules())
    seen, handles, density = None, [], {}
    for name, m in order:  # pair each prunable layer with the next ReLU after it
        if isinstance(m, PRUNABLE_TYPES):
            seen = name
        elif isinstance(m, nn.ReLU) and seen is not None:
            handles.append(m.register_forward_hook(
                lambda mod, inp, out, key=seen: density.__setitem__(key, float(np.mean(out.data != 0)))))
            seen = None
    _observe(model, np.asarray(x), handles)
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
