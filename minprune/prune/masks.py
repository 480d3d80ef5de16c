"""Masks: how pruning lives inside a model.

A prunable layer's `weight` Parameter carries `.mask` (boolean, same shape, False = pruned).
The invariant: a pruned weight is exactly 0 and stays 0 (layers select through the mask, so its
gradient is 0; optimizers re-zero it after every step; state_dict/save/deepcopy carry the mask).
Masks are applied by selection, never by multiplying: NaN · 0 is NaN, and 0 must mean 0.
Pruning a whole output unit (a filter or neuron) also masks its bias and the BatchNorm scale and
shift of that channel, so the unit really outputs nothing.
"""
from __future__ import annotations

import numbers
from collections import OrderedDict

import numpy as np

from .. import nn
from ..nn.module import zero_where_pruned

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


def get_masks(model) -> dict:
    """{layer name: weight mask} (an all-True mask for dense layers)."""
    return {n: (m.weight.mask.copy() if m.weight.mask is not None else np.ones(m.weight.shape, bool))
            for n, m in prunable_layers(model).items()}


def apply_masks(model, masks: dict) -> None:
    """Install weight masks, ANDed with any existing mask so pruning is monotone."""
    layers = prunable_layers(model)
    for name, mask in masks.items():
        p = layers[resolve_layer_name(name, layers)].weight
        mask = np.asarray(mask, dtype=bool)
        p.set_mask(mask if p.mask is None else (p.mask & mask))


def following_batchnorm(model, layer_name):
    """The BatchNorm that normalises `layer_name`'s output (next BN before the next prunable layer)."""
    seen = False
    for name, m in model.named_modules():
        if name == layer_name:
            seen = True
        elif seen and isinstance(m, PRUNABLE_TYPES):
            return None
        elif seen and isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return m
    return None


def _and_mask(param, keep):
    if param is not None:
        param.set_mask(keep if param.mask is None else (param.mask & keep))


def mask_dead_units(model, layer_name) -> np.ndarray:
    """After a filter/neuron is pruned, mask its bias and its BatchNorm γ and β too.
    Returns the boolean vector of output units still alive."""
    layer = prunable_layers(model)[layer_name]
    mask = layer.weight.mask
    alive = np.ones(layer.weight.shape[0], bool) if mask is None else \
        mask.reshape(mask.shape[0], -1).any(axis=1)
    _and_mask(layer.bias, alive)
    bn = following_batchnorm(model, layer_name)
    if bn is not None:
        _and_mask(bn.weight, alive)
        _and_mask(bn.bias, alive)
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
