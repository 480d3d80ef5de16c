"""Surgery: turn structured sparsity into a smaller dense network.

A pruned filter is still there: its weights are zeros that every forward pass multiplies. Only
when the unit is cut out — its row of weights, its bias, its BatchNorm entries, *and* the input
channel of the next layer that read it — does the network get cheaper to run. `compact` does
that cutting; `measured_speedup` times the result, to set beside `theoretical_speedup`
(unstructured zeros scattered inside filters leave nothing to cut, so they measure ~1×).

Which output units of a layer can go (between it and the next Conv2d/Linear):
- units whose output is exactly 0 for every input: zero weights and zero bias, or silenced by an
  `output_mask`, and — when a BatchNorm follows — mapped to 0 by it too (β = 0 and γ·μ = 0), or
  with both BatchNorm γ and β zero (what pruning a filter leaves: `masks.mask_dead_units`);
- units the next layer never reads (all its weights on that input channel are zero: channel
  pruning of the next layer).
A unit that outputs a nonzero constant (zero weights, nonzero bias) stays: removing it would
change the next layer's output. The last layer's outputs (the logits) always stay.

A residual block x ↦ after(x + f(x)) whose branch f outputs exactly 0 — its last module (the
one whose output is added to x) a Conv2d, Linear or BatchNorm with all weights and biases 0, as
layer pruning (`prune(..., granularity="layer")`) leaves it — computes after(x) whatever the
input: `compact` replaces the whole block by a `Shortcut` that runs only `after` (its ReLU),
so the network has one block fewer.

Which units are coupled comes from the dependency graph (`graph.py`): a group — e.g. the layers
whose outputs a residual addition adds channel by channel — loses a channel only where it is
dead (or unread) in all of them, and is cut in every producer, every BatchNorm on the way and
every consumer's input channels at once. Groups the graph reports as blocked (the model output,
channels tied to the model input, anything read by a step the graph cannot follow) stay whole.
"""
from __future__ import annotations

import copy
import time

import numpy as np

from .. import checks, nn
from ..autograd import no_grad
from ..tensor import Tensor
from .masks import check_input_shape, graph_of

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def _zero_output(layer) -> np.ndarray:
    """Units of a Conv2d/Linear whose output is exactly 0 whatever the input."""
    w = layer.weight.data.reshape(layer.weight.shape[0], -1)
    zero = ~w.any(axis=1)
    if layer.bias is not None:
        zero &= layer.bias.data == 0
    if layer.output_mask is not None:
        zero |= ~layer.output_mask
    return zero


def _through_batchnorm(zero, bn) -> np.ndarray:
    """Which channels are 0 after `bn`, given which were 0 before it (eval and train mode)."""
    gamma, beta, mean = bn.weight.data, bn.bias.data, bn.running_mean
    stays_zero = (beta == 0) & ((gamma == 0) | (mean == 0))  # BN(0) = β − γ·μ/σ (eval), β (train)
    silenced = (gamma == 0) & (beta == 0)                     # BN(anything) = 0
    out = (zero & stays_zero) | silenced
    if bn.output_mask is not None:
        out |= ~bn.output_mask
    return out


def _unread_inputs(layer, n_units) -> np.ndarray:
    """Which of a producer's `n_units` outputs `layer` never reads (all weights on it 0)."""
    w = layer.weight.data
    per_unit = w.shape[1] // n_units  # 1, or H·W after a Flatten of a conv's output
    w = np.moveaxis(w, 1, 0).reshape(n_units, per_unit, -1)
    return ~w.any(axis=(1, 2))


def _keep(param, index, axis):
    """Replace a Parameter by its slice along `axis` (mask sliced alike); None stays None."""
    if param is None:
        return None
    new = nn.Parameter(np.ascontiguousarray(np.take(param.data, index, axis=axis)))
    new.set_mask(None if param.mask is None else np.take(param.mask, index, axis=axis))
    return new


def _cut_outputs(layer, keep):
    idx = np.flatnonzero(keep)
    layer.weight = _keep(layer.weight, idx, 0)
    layer.bias = _keep(layer.bias, idx, 0)
    if isinstance(layer, nn.Conv2d):
        layer.out_channels = idx.size
    else:
        layer.out_features = idx.size
    if layer.output_mask is not None:  # after the new size: the mask is checked against it
        layer.output_mask = layer.output_mask[idx].copy()


def _cut_batchnorm(bn, keep):
    idx = np.flatnonzero(keep)
    bn.weight, bn.bias = _keep(bn.weight, idx, 0), _keep(bn.bias, idx, 0)
    bn.running_mean = bn.running_mean[idx].copy()
    bn.running_var = bn.running_var[idx].copy()
    bn.num_features = idx.size
    if bn.output_mask is not None:
        bn.output_mask = bn.output_mask[idx].copy()


def _cut_inputs(layer, keep):
    per_unit = layer.weight.shape[1] // keep.size
    idx = np.flatnonzero(np.repeat(keep, per_unit))  # a Flatten spreads each channel over H·W
    layer.weight = _keep(layer.weight, idx, 1)
    if isinstance(layer, nn.Conv2d):
        layer.in_channels = idx.size
    else:
        layer.in_features = idx.size


def _passing_zero(zero, modules, names) -> np.ndarray:
    """Which channels are 0 after the per-channel modules `names`, given which were 0 before."""
    for name in names:
        m = modules[name]
        if isinstance(m, _BATCHNORMS):
            zero = _through_batchnorm(zero, m)
        elif m.output_mask is not None:
            zero = zero | ~m.output_mask
    return zero


def _group_keep(group, graph, modules) -> np.ndarray:
    """Which channels of a group must stay: those some producer (through its own modules, then
    the shared ones after the addition) can make nonzero and some consumer reads."""
    zero = np.ones(group.channels, bool)
    shared = []
    for p in group.producers:
        after = graph.modules_after(p)
        zero &= _passing_zero(_zero_output(modules[p]), modules, [n for n, s in after if not s])
        shared += [n for n, s in after if s]
    zero = _passing_zero(zero, modules, list(dict.fromkeys(shared)))
    unread = np.ones(group.channels, bool)
    for c in group.consumers:
        unread &= _unread_inputs(modules[c.layer], group.channels)
    drop = zero | unread
    if drop.all():  # keep one unit so every layer still has a shape; it carries only zeros
        drop[np.argmax(~zero)] = False
    return ~drop


def _cut_group(group, graph, modules, keep) -> None:
    for p in group.producers:
        _cut_outputs(modules[p], keep)
    for bn in group.batchnorms:
        _cut_batchnorm(modules[bn], keep)
    carriers = {n for p in group.producers for n, _ in graph.modules_after(p)}
    for name in carriers - set(group.batchnorms):
        m = modules[name]
        if m.output_mask is not None:
            m.output_mask = m.output_mask[keep].copy()
    for c in group.consumers:
        _cut_inputs(modules[c.layer], keep)


class Shortcut(nn.Module):
    """What is left of a residual block x ↦ after(x + f(x)) once its branch f is gone: after(x).
    Holds the block's `after` modules (e.g. its output ReLU) under their own names, so they keep
    their names (`layer1.0.relu_out`) and any activation mask. No after modules: the identity.

    >>> Shortcut({"relu_out": nn.ReLU()})
    Shortcut(
      (relu_out): ReLU()
    )
    """

    def __init__(self, after: dict):
        super().__init__()
        for name, module in after.items():
            setattr(self, name, module)

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x


def removable_blocks(graph, modules) -> list:
    """The residual blocks of `graph` whose branch can be removed whole, leaving after(x): f(x)
    is a leaf module's output (`last`, not an operation on it), everything after the addition
    is a module of the block, and the block is a module of its own (not the model itself)."""
    out = []
    for b in graph.blocks:
        own = all(a.startswith(b.module + ".") and a in modules for a in b.after)
        if b.module and b.last is not None and not b.after_ops and own:
            out.append(b)
    return out


def _branch_is_zero(block, modules) -> bool:
    """f(x) = 0 for every x: its last module has only zero weights and biases (a Conv2d/Linear
    outputs W·x + b = 0, a BatchNorm γ·x̂ + β = 0 in train and eval mode), no parameter-free one."""
    last = modules[block.last]
    if not isinstance(last, (nn.Conv2d, nn.Linear, *_BATCHNORMS)):
        return False
    return not any(p.data.any() for p in (last.weight, last.bias) if p is not None)


def _remove_block(small, block, modules) -> None:
    """Put a `Shortcut` keeping `block.after` where the block was, in its parent's place."""
    parent_name, _, child = block.module.rpartition(".")
    parent = modules[parent_name]
    prefix = block.module + "."
    shortcut = Shortcut({a[len(prefix):]: modules[a] for a in block.after})
    shortcut.output_mask = modules[block.module].output_mask
    shortcut.train(modules[block.module].training)
    parent._modules[child] = shortcut  # in place: a Sequential runs its children in this order
    object.__setattr__(parent, child, shortcut)


def compact(model, input_shape=None):
    """A smaller dense copy of `model` with dead and unread units cut out; same outputs.

    Works on any model the dependency graph traces (chains, residual networks): each coupled
    group is cut as one, and a residual block whose branch outputs 0 (a pruned layer) is
    replaced by a `Shortcut` (see the module docstring). `input_shape` (one example, no batch
    dimension) is only needed when it cannot be inferred (see `masks.graph_of`). Cost: one
    traced forward pass (two when blocks go) and one pass over the weights. The copy keeps the
    layer names (`features.0`, ...) and the masks of what remains (unstructured zeros inside
    kept units stay masked). Its `arch` is dropped: `nn.load` cannot rebuild a compacted shape
    from the model name, so load a saved compact model into `compact(<the same pruned model>)`.
    """
    graph = graph_of(model, input_shape)  # cached on `model`: names are the same in the copy
    small = copy.deepcopy(model)
    modules = dict(small.named_modules())
    gone = [b for b in removable_blocks(graph, modules) if _branch_is_zero(b, modules)]
    if gone:  # the blocks go first; then the channels of the smaller network's own graph
        for block in gone:
            _remove_block(small, block, modules)
        object.__setattr__(small, "_dependency_graph", None)
        graph = graph_of(small, graph.input_shape)
        modules = dict(small.named_modules())
    for group in graph.groups:  # in execution order: a cut input can leave a later unit dead
        if not group.prunable:
            continue
        keep = _group_keep(group, graph, modules)
        if not keep.all():
            _cut_group(group, graph, modules, keep)
    object.__setattr__(small, "arch", None)
    object.__setattr__(small, "_dependency_graph", None)  # its shapes changed
    return small


def measured_speedup(model, input_shape, compacted=None, batch_size=128, repeats=10, seed=0):
    """Wall-clock time of `model`'s inference forward / that of `compact(model)`, best of `repeats`.

    Measured on this machine, batch `batch_size`, eval mode, random inputs of `input_shape`
    (no batch dimension). Compare with `theoretical_speedup`: the ratio of multiply-adds.
    """
    input_shape = check_input_shape(input_shape)
    batch_size = checks.integer(batch_size, "batch_size", minimum=1)
    repeats = checks.integer(repeats, "repeats", minimum=1)
    small = compact(model, input_shape) if compacted is None else compacted
    x = Tensor(np.random.default_rng(seed).standard_normal((batch_size, *input_shape))
               .astype(np.float32))

    def best_time(net):
        was_training = net.training
        net.eval()
        with no_grad():
            net(x)  # warm-up: Numba compilation, buffers
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                net(x)
                times.append(time.perf_counter() - t0)
        net.train(was_training)
        return min(times)

    return best_time(model) / best_time(small)
