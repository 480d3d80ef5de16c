"""WHAT to prune: granularity, i.e. which weights fall together.

A weight of a Conv2d has shape (out, in, kh, kw); of a Linear, (out, in). A granularity groups
its entries; a group's score is the reduction of its weights' scores; a group is pruned whole.

    unstructured   every weight is its own group                       (any layer)
    filter         W[o, :, :, :] — an output channel / a neuron          (any layer; alias "neuron")
    channel        W[:, c, :, :] — an input channel / input feature     (any layer)
    kernel         W[o, c, :, :] — one k×k kernel                       (Conv2d only)
    filter_shape   W[:, c, i, j] — one kernel position in every filter  (Conv2d only; Wen et al. 2016)
    blockRxC       R×C tiles of the (out, in·kh·kw) weight matrix
    N:M            in every M consecutive weights along the input dimension of that matrix (the
                   matmul's reduction dimension, as sparse tensor cores need), keep the N best

Each is described by a reshape of the weight and the axes to reduce over, so grouping, scoring
and expanding a group decision back to a weight mask are all one line of NumPy.

One granularity spans several layers instead:

    layer          the branch f of a residual block x ↦ x + f(x) with an identity shortcut: all
                   its weights (convolutions and BatchNorms) fall together, so the block computes
                   its input again and `compact` removes it (a plain chain has no such unit)

`prune` handles it apart (`pruner.prune_layers`): its groups come from the dependency graph, not
from a reshape of one weight.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .. import kernels, nn

REDUCTIONS = {
    "l1": lambda s, axes: np.abs(s).sum(axis=axes),
    "l2": lambda s, axes: np.sqrt((s.astype(np.float64) ** 2).sum(axis=axes)),
    "mean": lambda s, axes: s.mean(axis=axes),
    "sum": lambda s, axes: s.sum(axis=axes),
}
NAMES = ("unstructured", "filter", "neuron", "channel", "kernel", "filter_shape", "N:M (e.g. '2:4')",
         "blockRxC (e.g. 'block4x4')", "layer")


@dataclass(frozen=True)
class Granularity:
    name: str
    n: int = 0  # N:M only
    m: int = 0
    block: tuple = (0, 0)  # blockRxC only

    @property
    def unit(self) -> bool:
        """True when a group is a whole output unit (unit-level criteria apply; bias/BN follow)."""
        return self.name == "filter"

    @property
    def whole_layer(self) -> bool:
        """True for "layer": a group is a residual branch of several layers (see the docstring)."""
        return self.name == "layer"

    @property
    def structured(self) -> bool:
        return self.name != "unstructured"

    def check(self, layer_name: str, module) -> None:
        """Raise ValueError if this granularity cannot apply to `module`, saying what would."""
        shape = module.weight.shape
        is_conv = isinstance(module, nn.Conv2d)
        if self.name in ("kernel", "filter_shape") and not is_conv:
            raise ValueError(f"granularity: {self.name!r} needs a Conv2d, but {layer_name!r} is a "
                             f"{type(module).__name__}; for Linear layers use one of 'unstructured', "
                             "'filter'/'neuron', 'channel', 'N:M', 'blockRxC' (or exclude the layer)")
        cols = int(np.prod(shape[1:]))
        if self.name == "N:M" and cols % self.m:
            raise ValueError(f"granularity: {self.n}:{self.m} needs the input dimension of "
                             f"{layer_name!r} ({cols} = in·kh·kw) divisible by {self.m}; exclude "
                             f"that layer or use an M that divides {cols}")
        if self.name == "block":
            r, c = self.block
            if shape[0] % r or cols % c:
                raise ValueError(f"granularity: block{r}x{c} needs {layer_name!r}'s weight matrix "
                                 f"({shape[0]}×{cols}) divisible into {r}×{c} tiles; use a block "
                                 "size dividing both, or exclude the layer")

    def view(self, shape) -> tuple[tuple, tuple]:
        """(reshaped weight shape, axes reduced to get one score per group)."""
        o, i, k = shape[0], shape[1], int(np.prod(shape[2:]))
        if self.name == "unstructured":
            return tuple(shape), ()
        if self.name == "filter":
            return (o, i * k), (1,)
        if self.name == "channel":
            return (o, i, k), (0, 2)
        if self.name == "kernel":
            return (o, i, k), (2,)
        if self.name == "filter_shape":
            return (o, i * k), (0,)
        if self.name == "block":
            r, c = self.block
            return (o // r, r, i * k // c, c), (1, 3)
        if self.name == "N:M":
            return (o, i * k // self.m, self.m), ()
        raise AssertionError(self.name)

    def group_scores(self, scores: np.ndarray, reduce: str) -> np.ndarray:
        shape, axes = self.view(scores.shape)
        s = scores.reshape(shape)
        return REDUCTIONS[reduce](s, axes) if axes else s

    def expand(self, group_keep: np.ndarray, weight_shape) -> np.ndarray:
        """A keep decision per group → a boolean mask of the weight's shape."""
        shape, axes = self.view(weight_shape)
        keep = np.expand_dims(group_keep, axes) if axes else group_keep
        return np.broadcast_to(keep, shape).reshape(weight_shape).copy()

    def group_alive(self, mask: np.ndarray) -> np.ndarray:
        """Which groups still have a live weight (fully pruned groups stay pruned)."""
        shape, axes = self.view(mask.shape)
        return mask.reshape(shape).any(axis=axes) if axes else mask.reshape(shape)

    def group_size(self, weight_shape) -> int:
        shape, axes = self.view(weight_shape)
        return int(np.prod([shape[a] for a in axes])) if axes else 1

    def nm_mask(self, scores: np.ndarray) -> np.ndarray:
        """N:M: keep the N highest of each M consecutive scores along the input dimension."""
        s2d = np.ascontiguousarray(scores.reshape(scores.shape[0], -1), dtype=np.float64)
        return kernels.nm_mask(s2d, self.n, self.m).reshape(scores.shape)


def parse(spec) -> Granularity:
    """"filter", "2:4", "block4x4", ... → Granularity (ValueError listing the valid forms)."""
    if isinstance(spec, Granularity):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"granularity: expected a string such as 'filter' or '2:4', got "
                        f"{type(spec).__name__}")
    if spec == "neuron":
        return Granularity("filter")
    if spec in ("unstructured", "filter", "channel", "kernel", "filter_shape", "layer"):
        return Granularity(spec)
    if m := re.fullmatch(r"(\d+):(\d+)", spec):
        n, mm = int(m[1]), int(m[2])
        if not 0 < n < mm:
            raise ValueError(f"granularity: N:M needs 0 < N < M, got {spec!r}")
        return Granularity("N:M", n=n, m=mm)
    if m := re.fullmatch(r"block(\d+)x(\d+)", spec):
        r, c = int(m[1]), int(m[2])
        if r < 1 or c < 1:
            raise ValueError(f"granularity: block sizes must be ≥ 1, got {spec!r}")
        return Granularity("block", block=(r, c))
    raise ValueError(f"granularity: {spec!r} is not one of {', '.join(NAMES)}")
