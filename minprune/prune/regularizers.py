"""Learned structured sparsity: penalties that, added to the loss while training, drive whole
groups of weights to zero, so pruning them afterwards costs (almost) nothing.

    group_lasso   strength · Σ_groups ‖w_g‖₂   (Wen et al., 2016, "Learning Structured Sparsity")
    slimming      strength · Σ_BN |γ|          (Liu et al., 2017, "Network Slimming")

Why a group's L2 norm and not its weights' L1 norm: near zero, ‖w_g‖₂'s gradient w_g / ‖w_g‖₂
has length 1 whatever the group's size, so the whole group is pulled to 0 *together*, while L1
zeroes weights one by one, scattered over every group (unstructured sparsity). A group is one of
the granularities of `structures.py` (filter, channel, kernel, filter_shape) or a whole residual
branch ("layer"). Slimming puts an L1 penalty on each BatchNorm's scale γ: a channel whose γ is 0
outputs only its shift, so it can go (the `bn_scale` criterion then finds it).

Each returns a regulariser: call it with the model to get a scalar Tensor built from autograd
ops, so `train.fit(..., regularizer=r)` minimises cross-entropy + r(model) and the penalty's
gradient is checked like every other op's.

The kink at zero. ‖w‖₂ has no gradient at w = 0 (any vector of length ≤ 1 is a subgradient) and
w / ‖w‖ is 0/0 there. We compute √(‖w‖² + ε) − √ε with ε = 1e-12: exactly 0 at w = 0, with
gradient w / √(‖w‖² + ε), which is the subgradient 0 at w = 0, never NaN, and differs from the
exact norm by less than √ε = 1e-6. Slimming's |γ| is relu(γ) + relu(−γ): exact, subgradient 0.
Plain SGD never lands *exactly* on 0 with these penalties (a step overshoots and comes back),
so "driven to zero" means a group norm tiny next to the others; `GroupLasso.norms` reports them.
"""
from __future__ import annotations

import numpy as np

from .. import checks, nn
from ..autograd import no_grad
from ..nn import functional as fn
from ..tensor import Tensor
from . import structures
from .masks import prunable_layers

EPS = 1e-12  # inside the square root: the norm stays differentiable (subgradient 0) at w = 0
GRANULARITIES = ("filter", "neuron", "channel", "kernel", "filter_shape", "layer")
_CONV_ONLY = ("kernel", "filter_shape")


def _check_model(model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")


def _strength(value) -> float:
    return checks.number(value, "strength", lo=0)


def residual_blocks(model) -> dict:
    """{name: block} of every block computing x + f(x) with an identity shortcut: the modules
    whose `residual_branch` property gives f's layers (`models.BasicBlock` does). A block with
    a projection shortcut is not one: removing its branch leaves the projection, not the
    identity, so no layer would disappear."""
    return {n: m for n, m in model.named_modules() if getattr(m, "residual_branch", None)}


def _modules(model, names, who) -> list:
    """The modules `names` of `model` (the model a regulariser was built for, or a copy)."""
    _check_model(model)
    found = dict(model.named_modules())
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(f"model: it has no {missing}, which this {who} was built for; build "
                         "the regulariser for this model")
    return [found[n] for n in names]


class GroupLasso:
    """strength · Σ over groups of ‖group‖₂; see `group_lasso`."""

    def __init__(self, model, granularity, strength, exclude=()):
        _check_model(model)
        if not isinstance(granularity, str):
            raise TypeError(f"granularity: expected one of {GRANULARITIES}, got {granularity!r}")
        if granularity not in GRANULARITIES:
            raise ValueError(f"granularity: {granularity!r} is not one of {GRANULARITIES} "
                             "(group Lasso needs groups of several weights)")
        self.strength = _strength(strength)
        self.granularity = granularity
        if granularity == "layer":
            blocks = residual_blocks(model)
            if not blocks:
                raise ValueError(
                    "granularity: 'layer' groups the residual branch f of blocks computing "
                    f"x + f(x), and this {type(model).__name__} has none: in a plain chain every "
                    "layer is the only path from its input to its output, so zeroing one cuts "
                    "the network instead of removing a layer (use a residual model such as "
                    "models.resnet_tiny)")
            self.names = [n for n in blocks if n not in _exclusions(exclude, blocks, "blocks")]
        else:
            self._view = structures.parse(granularity)
            layers = prunable_layers(model, exclude)
            if granularity in _CONV_ONLY:  # these groups exist in convolutions only
                layers = {n: m for n, m in layers.items() if isinstance(m, nn.Conv2d)}
                if not layers:
                    raise ValueError(f"granularity: {granularity!r} groups exist in Conv2d layers "
                                     f"only, and this {type(model).__name__} has none (left)")
            self.names = list(layers)
        if not self.names:
            raise ValueError("exclude: it leaves no residual block to penalise")

    def _squares(self, model) -> list[Tensor]:
        """Per layer (or block), each group's sum of squared weights; pruned weights count 0."""
        out = []
        for module in _modules(model, self.names, "group_lasso"):
            if self.granularity == "layer":
                params = [p for m in module.residual_branch.values() for p in m.parameters()]
                out.append(sum((fn.masked(p) ** 2).sum() for p in params).reshape(1))
            else:
                shape, axes = self._view.view(module.weight.shape)
                out.append((fn.masked(module.weight).reshape(shape) ** 2).sum(axis=axes))
        return out

    def __call__(self, model) -> Tensor:
        norms = [((s + EPS) ** 0.5 - EPS ** 0.5).sum() for s in self._squares(model)]
        return sum(norms[1:], norms[0]) * self.strength

    def norms(self, model) -> dict:
        """{layer or block name: float64 array of its groups' L2 norms} (exact, no ε)."""
        with no_grad():
            squares = self._squares(model)
        return {n: np.sqrt(s.data.astype(np.float64)) for n, s in zip(self.names, squares)}

    def __repr__(self):
        return (f"group_lasso({self.granularity!r}, strength={self.strength:g}, "
                f"{len(self.names)} {'blocks' if self.granularity == 'layer' else 'layers'})")


def _exclusions(exclude, known, what) -> set:
    if isinstance(exclude, str):
        exclude = (exclude,)
    if not isinstance(exclude, (list, tuple, set)) or not all(isinstance(e, str) for e in exclude):
        raise TypeError(f"exclude: expected a name or a list of names, got {exclude!r}")
    unknown = [e for e in exclude if e not in known]
    if unknown:
        raise ValueError(f"exclude: {unknown} are not {what}; the {what} are {list(known)}")
    return set(exclude)


def group_lasso(model, granularity: str, strength: float, exclude=()) -> GroupLasso:
    """Wen et al. (2016)'s penalty: `strength` · Σ over groups of each group's L2 norm.

    granularity  "filter" (alias "neuron"), "channel", "kernel", "filter_shape" — groups as in
                 `structures.py`, over every Conv2d and Linear (kernel and filter_shape exist in
                 convolutions only, so those penalise the Conv2d layers) — or "layer": one group
                 per residual block computing x + f(x), all the weights of its branch f (convs
                 and BatchNorms) together, so the block can shrink to the identity
    strength     the penalty's weight λ ≥ 0 (cross-entropy + λ·Σ‖w_g‖ is minimised)
    exclude      layer names to leave unpenalised (blocks, for "layer")
    Groups are not weighted by their size (Wen et al.'s choice). Returns a callable
    `regularizer(model) -> scalar Tensor` for `train.fit(..., regularizer=...)`, whose
    `.norms(model)` gives every group's norm.

    >>> from minprune import nn
    >>> conv = nn.Sequential(nn.Conv2d(1, 2, 2, bias=False))
    >>> conv[0].weight.data[:] = [[[[3, 0], [0, 0]]], [[[4, 0], [0, 0]]]]
    >>> round(group_lasso(conv, "filter", 0.5)(conv).item(), 4)  # 0.5 · (‖3‖ + ‖4‖)
    3.5
    >>> round(group_lasso(conv, "filter_shape", 0.5)(conv).item(), 4)  # 0.5 · ‖(3, 4)‖
    2.5
    """
    return GroupLasso(model, granularity, strength, exclude)


class Slimming:
    """strength · Σ |γ| over every BatchNorm's scale; see `slimming`."""

    def __init__(self, model, strength):
        _check_model(model)
        self.strength = _strength(strength)
        self.names = [n for n, m in model.named_modules()
                      if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
        if not self.names:
            raise ValueError(f"model: this {type(model).__name__} has no BatchNorm layer; "
                             "slimming penalises the BatchNorm scales γ")

    def __call__(self, model) -> Tensor:
        gammas = [fn.masked(m.weight) for m in _modules(model, self.names, "slimming")]
        l1 = [(fn.relu(g) + fn.relu(-g)).sum() for g in gammas]  # |γ|, subgradient 0 at 0
        return sum(l1[1:], l1[0]) * self.strength

    def __repr__(self):
        return f"slimming(strength={self.strength:g}, {len(self.names)} BatchNorm layers)"


def slimming(model, strength: float) -> Slimming:
    """Network Slimming (Liu et al., 2017): `strength` · Σ |γ| over every BatchNorm's scale γ.

    Channels whose γ is driven to 0 output only their shift β, so pruning them (criterion
    "bn_scale", granularity "filter") changes little. Returns `regularizer(model) -> Tensor`.

    >>> from minprune import nn
    >>> model = nn.Sequential(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3))
    >>> model[1].weight.data[:] = [0.5, -2.0, 0.0]
    >>> round(slimming(model, 0.1)(model).item(), 4)  # 0.1 · (0.5 + 2 + 0)
    0.25
    """
    return Slimming(model, strength)


def zeroed_groups(model, regularizer, tol=1e-3) -> dict:
    """{layer, or block for "layer", or BatchNorm for slimming: boolean per group, True = the
    penalty drove it to zero}: a group is zero when its L2 norm (|γ| for slimming) is ≤ `tol`.

    >>> from minprune import nn
    >>> conv = nn.Sequential(nn.Conv2d(1, 3, 1, bias=False))
    >>> conv[0].weight.data[:, 0, 0, 0] = [1e-5, 0.5, 0.0]
    >>> zeroed_groups(conv, group_lasso(conv, "filter", 0.1))["0"].tolist()
    [True, False, True]
    """
    tol = checks.number(tol, "tol", lo=0)
    if isinstance(regularizer, Slimming):
        return {n: np.abs(fn.masked(m.weight).data.astype(np.float64)) <= tol
                for n, m in zip(regularizer.names, _modules(model, regularizer.names, "slimming"))}
    if not isinstance(regularizer, GroupLasso):
        raise TypeError(f"regularizer: expected group_lasso(...) or slimming(...), got "
                        f"{type(regularizer).__name__}")
    return {n: norms <= tol for n, norms in regularizer.norms(model).items()}


def prune_zeroed(model, regularizer, tol=1e-3) -> dict:
    """Prune the groups `regularizer` drove to zero (`zeroed_groups`); return {layer: mask}.

    Wen et al.'s and Liu et al.'s second step: after training with the penalty, what it
    zeroed is removed, and the rest is fine-tuned. Filters coupled by a residual addition go
    only when every coupled filter is zero (else the group is kept whole); for slimming, a
    BatchNorm channel whose |γ| ≤ tol takes its producing filter with it (the `bn_scale`
    reasoning); for "layer", the zeroed blocks are removed (`prune_layers`).

    >>> from minprune import nn
    >>> conv = nn.Sequential(nn.Conv2d(1, 3, 1, bias=False), nn.ReLU(), nn.Conv2d(3, 2, 1))
    >>> conv[0].weight.data[:, 0, 0, 0] = [1e-5, 0.5, 0.0]
    >>> masks = prune_zeroed(conv, group_lasso(conv, "filter", 0.1, exclude=["2"]))
    >>> masks["0"][:, 0, 0, 0].tolist()
    [False, True, False]
    """
    from .masks import apply_masks, graph_of, mask_dead_units
    from .pruner import prune_layers
    zero = zeroed_groups(model, regularizer, tol)
    if isinstance(regularizer, GroupLasso) and regularizer.granularity == "layer":
        blocks = residual_blocks(model)
        return prune_layers(model, sum(int(z.all()) for z in zero.values()) / len(blocks))
    layers = prunable_layers(model)
    if isinstance(regularizer, Slimming):  # a BatchNorm channel → the filter that feeds it
        graph, by_bn = graph_of(model), zero
        zero = {}
        for layer in graph.order:
            bn = graph.batchnorm_of(layer)
            if bn in by_bn:
                zero[layer] = by_bn[bn]
        view = structures.parse("filter")
    else:
        view = regularizer._view
    if view.unit:  # coupled filters: a channel goes only when all its producers are zero
        graph = graph_of(model)
        for layer in list(zero):
            group = graph.group_of(layer)
            if group.blocked:
                del zero[layer]
                continue
            together = [zero.get(p, np.zeros(group.channels, bool)) for p in group.producers]
            zero[layer] = np.logical_and.reduce(together)
    masks = {n: view.expand(~z, layers[n].weight.shape) for n, z in zero.items() if z.any()}
    apply_masks(model, masks)
    if view.unit:
        for n in masks:  # a pruned filter takes its bias and BatchNorm entries with it
            mask_dead_units(model, n)
    return {n: layers[n].weight.mask for n in masks}
