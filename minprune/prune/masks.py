"""Masks: how pruning lives inside a model.

A prunable layer's `weight` Parameter carries `.mask` (boolean, same shape, False = pruned).
The invariant: a pruned weight is exactly 0 and stays 0 (layers select through the mask, so its
gradient is 0; optimizers re-zero it after every step; state_dict/save/deepcopy carry the mask).
Masks are applied by selection, never by multiplying: NaN · 0 is NaN, and 0 must mean 0.
Pruning a whole output unit (a filter or neuron) also masks its bias and the BatchNorm scale and
shift of that channel, so the unit really outputs nothing.

What is connected to what (which BatchNorm normalises a layer, which layers are coupled across
a residual addition) comes from one traced dependency graph (`graph.py`), via `graph_of`.
"""
from __future__ import annotations

import numbers
from collections import OrderedDict

import numpy as np

from .. import nn
from ..nn.module import zero_where_pruned
from .graph import dependency_graph

PRUNABLE_TYPES = (nn.Conv2d, nn.Linear)


def check_input_shape(input_shape) -> tuple:
    """One example's shape (no batch dimension) as a tuple of positive ints, or a ValueError."""
    if (not isinstance(input_shape, (tuple, list)) or not input_shape
            or not all(isinstance(d, numbers.Integral) and not isinstance(d, (bool, np.bool_))
                       and d > 0 for d in input_shape)):
        raise ValueError(f"input_shape: expected a tuple of positive ints without the batch "
                         f"dimension, e.g. (1, 28, 28), got {input_shape!r}")
    return tuple(int(d) for d in input_shape)


def prunable_layers(model, exclude=()) -> OrderedDict:
    """{layer name: module} for every Conv2d and Linear in `model`, in definition order.

    `exclude` lists layer names (e.g. the classifier "classifier.5") to leave dense."""
    if isinstance(exclude, str):
        exclude = (exclude,)
    if not isinstance(exclude, (list, tuple, set)) or not all(isinstance(e, str) for e in exclude):
        raise TypeError(f"exclude: expected a layer name or a list of them, got {exclude!r}")
    layers = OrderedDict((n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES))
    unknown = [e for e in exclude if e not in layers]
    if unknown:
        raise ValueError(f"exclude: {unknown} are not prunable layers; prunable layers are "
                         f"{list(layers)}")
    for name in exclude:
        layers.pop(name)
    if not layers:
        raise ValueError("model: no prunable (Conv2d or Linear) layers left to prune")
    return layers


def resolve_layer_name(name: str, layers, argument: str = "masks") -> str:
    """Accept a layer name ("features.0") or its weight's name ("features.0.weight");
    `argument` is the argument the name came in, for the error."""
    base = name[:-len(".weight")] if name.endswith(".weight") else name
    if base not in layers:
        raise ValueError(f"{argument}: layer name {name!r} is not one of the prunable layers "
                         f"{list(layers)}")
    return base


# --- the dependency graph, traced once per model shape ---------------------------------------------
_SIDES = (28, 32, *range(1, 65))  # square input sides to try when none is given: digits first


def _structure(model) -> tuple:
    """What a cached graph depends on: every module's name, type and weight shape."""
    return tuple((n, type(m).__name__, getattr(getattr(m, "weight", None), "shape", None))
                 for n, m in model.named_modules())


def graph_of(model, input_shape=None):
    """The model's dependency graph (`graph.dependency_graph`), cached on the model.

    Functions whose signature has no `input_shape` (`mask_dead_units`, `compact`, ...) call this
    with None: then the graph traced last is reused while the model's layers keep their shapes;
    otherwise the input shape is inferred — (in_features,) for a first Linear, a square image of
    in_channels for a first Conv2d (28×28 first, then the side the model accepts: the channel
    graph is the same for every input size a model accepts). Pass `input_shape` to any function
    that takes one (`layer_costs`, `compact`, ...) to trace non-square inputs.

    >>> from minprune import models
    >>> graph_of(models.lenet5()).input_shape
    (1, 28, 28)
    """
    key = _structure(model)
    cached = model.__dict__.get("_dependency_graph")
    if input_shape is not None:
        input_shape = check_input_shape(input_shape)
    if cached is not None and cached[0] == key and input_shape in (None, cached[1].input_shape):
        return cached[1]
    if input_shape is not None:
        graph = dependency_graph(model, input_shape)
    else:
        graph = _infer_graph(model)
    object.__setattr__(model, "_dependency_graph", (key, graph))  # not a Module attribute
    return graph


def _infer_graph(model):
    first = next((m for m in model.modules() if isinstance(m, PRUNABLE_TYPES)), None)
    if first is None:
        raise ValueError("model: no prunable (Conv2d or Linear) layers to trace")
    if isinstance(first, nn.Linear):
        return dependency_graph(model, (first.in_features,))
    for side in _SIDES:
        try:
            return dependency_graph(model, (first.in_channels, side, side))
        except ValueError:
            continue
    raise ValueError(f"input_shape: could not infer the input shape of {type(model).__name__} "
                     "(no square image of up to 64×64 runs); pass input_shape=(C, H, W)")


def get_masks(model) -> dict:
    """{layer name: weight mask} (an all-True mask for dense layers)."""
    return {n: (m.weight.mask.copy() if m.weight.mask is not None else np.ones(m.weight.shape, bool))
            for n, m in prunable_layers(model).items()}


def unit_alive(module) -> np.ndarray:
    """Which output units (filters, neurons) of a Conv2d/Linear keep a live weight."""
    mask = module.weight.mask
    return np.ones(module.weight.shape[0], bool) if mask is None else \
        mask.reshape(mask.shape[0], -1).any(axis=1)


def apply_masks(model, masks: dict) -> None:
    """Install weight masks, ANDed with any existing mask so pruning is monotone.

    A filter mask (each filter kept or pruned whole) that prunes a filter in one layer of a
    coupled group (layers whose channels a residual addition ties together) but not in the
    others raises a ValueError naming the group, before anything is installed: the group's
    channels can only go together."""
    layers = prunable_layers(model)
    new = {}
    for name, mask in masks.items():
        p = layers[resolve_layer_name(name, layers)].weight
        mask = np.asarray(mask, dtype=bool)
        new[resolve_layer_name(name, layers)] = mask if p.mask is None else (p.mask & mask)
    _check_groups(model, layers, new)
    for name, mask in new.items():
        layers[name].weight.set_mask(mask)


def _check_groups(model, layers, new) -> None:
    """`graph.check_mask` for filter masks (each filter all kept or all pruned) that prune a
    filter: the units alive afterwards must not split a coupled group. Unstructured masks may
    empty a filter by chance; that splits nothing that `compact` could cut, so they pass."""
    filters = {n: m.reshape(m.shape[0], -1) for n, m in new.items()}
    filters = {n: f[:, 0] for n, f in filters.items()
               if (f.all(axis=1) | ~f.any(axis=1)).all() and not f.all()}
    if not filters:
        return
    try:
        graph = graph_of(model)
    except ValueError:
        return  # no input shape runs: a model that cannot be traced has no known groups
    alive = {}
    for g in graph.groups:
        if len(g.producers) > 1 and any(p in filters for p in g.producers):
            for p in g.producers:
                mask = new.get(p, layers[p].weight.mask)
                alive[p] = np.ones(g.channels, bool) if mask is None else \
                    mask.reshape(mask.shape[0], -1).any(axis=1)
    graph.check_mask(alive)


def following_batchnorm(model, layer_name):
    """The BatchNorm that normalises `layer_name`'s output (the graph's `batchnorm_of`), or None."""
    bn = graph_of(model).batchnorm_of(layer_name)
    return None if bn is None else dict(model.named_modules())[bn]


def _and_mask(param, keep):
    if param is not None:
        param.set_mask(keep if param.mask is None else (param.mask & keep))


def mask_dead_units(model, layer_name) -> np.ndarray:
    """After a filter/neuron is pruned, mask its bias and its BatchNorm γ and β too; a BatchNorm
    after a residual addition (shared by the layer's group) loses the channels dead in every
    layer of the group. Returns the boolean vector of `layer_name`'s output units still alive."""
    layers = prunable_layers(model)
    layer = layers[layer_name]
    alive = unit_alive(layer)
    _and_mask(layer.bias, alive)
    graph, modules = graph_of(model), dict(model.named_modules())
    if layer_name not in graph.units:
        return alive  # never called by the forward pass: nothing is connected to it
    own = graph.batchnorm_of(layer_name)
    group = graph.group_of(layer_name)
    for bn in group.batchnorms:
        if bn == own:
            keep = alive
        elif bn in (graph.batchnorm_of(p) for p in group.producers):
            continue  # another layer's own BatchNorm: that layer's call masks it
        else:  # shared: a channel of the sum lives while any of its layers does
            keep = np.any([unit_alive(layers[p]) for p in group.producers if p in layers], axis=0)
        _and_mask(modules[bn].weight, keep)
        _and_mask(modules[bn].bias, keep)
    return alive


def remove(model) -> None:
    """Make weight pruning permanent: keep the zeros, drop the masks (like torch's `prune.remove`;
    the zeros can then grow back if trained). Activation `output_mask`s are left in place."""
    for p in model.parameters():
        if p.mask is not None:
            zero_where_pruned(p.data, p.mask)
            p.mask = None


def reset(model) -> None:
    """Drop every mask (weight masks and activation `output_mask`s). Pruned weights stay 0 until
    training moves them; use this to start a new pruning experiment on the same weights."""
    for p in model.parameters():
        p.mask = None
    for m in model.modules():
        m.output_mask = None
