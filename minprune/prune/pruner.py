"""`prune()`: the seed note's taxonomy as one call, one argument per axis.

    HOW    criterion    → a score per weight (or per unit)          criteria.py
    WHAT   granularity  → which weights fall together                structures.py
    WHERE  scope        → which groups fall, globally or per layer   scope.py
    WHAT   target       → weights (masks on Parameters) or activations (masks on layer outputs)

Each axis is swappable on its own; a student can pass a function for any criterion.

Filters (and neurons) are not always free to go alone: across a residual addition the layers
whose outputs are added must lose the same channels. Filter pruning therefore ranks the coupled
groups of the dependency graph (`graph.py`): a group's score is the **sum** of its layers'
scores for that channel (each layer's filter score, as for a lone layer), its size the sum of
their filter sizes, and a pruned group is removed from every layer in it. Groups the graph
marks as blocked are never pruned when coupled (an addition at the model output, channels tied
to the model input): no mask could remove them consistently. A lone layer is masked as always —
the last layer's neurons too (a pruned logit is a constant 0; `exclude` it to keep it whole).
A producer with no unit left (the last layer of a removed residual branch) adds nothing to its
group: it is counted as pruned and left out of the group's score.

Whole layers (`granularity="layer"`, `prune_layers`): the unit is the branch f of a residual
block x ↦ after(x + f(x)) with an identity shortcut. Masking all of f's parameters makes f(x) = 0
exactly, so the block computes after(x) — x itself after its ReLU, x being a ReLU output already
— and `compact` removes the block. In a plain chain there is no such unit: every layer is the
only path from its input to its output, so removing one cuts the network instead.
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import checks
from .. import functions as F
from . import criteria as C
from . import scope as S
from . import structures
from .masks import apply_masks, graph_of, mask_dead_units, prunable_layers, resolve_layer_name
from .surgery import removable_blocks

TARGETS = ("weights", "activations")
UNIT_CRITERIA = sorted(n for n, f in C.CRITERIA.items() if f.level == "unit")


def _scope_layers(scope, sparsity, layers):
    """The layers a scope touches (all, or those named in a per-layer dict) and the scope itself,
    checked before any scoring: a per-layer dict must be non-empty and carries the sparsities,
    so a `sparsity` given as well would be ignored, which is an error."""
    if isinstance(scope, dict):
        if not scope:
            raise ValueError("scope: an empty dict prunes nothing; name at least one layer "
                             f"{{layer: sparsity}}, from {list(layers)}")
        if sparsity is not None:
            raise ValueError(f"sparsity: {sparsity!r} would be ignored, because scope={scope!r} "
                             "gives each named layer its own sparsity; pass sparsity=None")
        resolved = {}
        for n, s in scope.items():
            if not isinstance(n, str):
                raise TypeError(f"scope: layer names must be strings, got {n!r}")
            resolved[resolve_layer_name(n, layers, "scope")] = S.check_sparsity(s, f"scope[{n!r}]")
        return {n: layers[n] for n in resolved}, resolved
    if not isinstance(scope, str) or scope not in S.SCOPES:
        raise ValueError(f"scope: {scope!r} is not one of {S.SCOPES} or a dict {{layer: sparsity}}")
    if sparsity is None:
        raise ValueError(f"sparsity: required (a fraction in [0, 1]) with scope={scope!r}; only a "
                         "per-layer dict scope goes without it")
    S.check_sparsity(sparsity)
    return layers, scope


def _check_normalize(normalize, scope):
    """`normalize` changes a *global* ranking only; anywhere else it would be ignored."""
    if normalize is None:
        return
    checks.boolean(normalize, "normalize")
    if scope != "global":
        raise ValueError(f"normalize: only a global ranking compares layers, so normalize="
                         f"{normalize} would be ignored with scope={scope!r}; leave it None")


def _check_scores(scores, layers, unit, who):
    if not isinstance(scores, dict) or not set(layers) <= set(scores):
        raise ValueError(f"criterion: {who} must return a dict with a score array for each of "
                         f"{list(layers)}")
    checked = {}  # a new dict: never modify what the criterion returned
    for n, m in layers.items():
        expected = (m.weight.shape[0],) if unit else m.weight.shape
        s = np.asarray(scores[n], dtype=np.float64)
        if s.shape != expected:
            raise ValueError(f"criterion: {who} returned shape {s.shape} for {n!r}, expected "
                             f"{expected}")
        if np.isnan(s).any():
            hint = "" if np.isfinite(m.weight.data).all() else \
                f" (the weights of {n!r} hold NaN or inf: did training diverge?)"
            raise ValueError(f"criterion: {who} returned NaN scores for {n!r}{hint}")
        checked[n] = s
    return checked


def _input_shape(batch, options):
    """One example's shape, if the call tells it (a criterion's input_shape, or the batch)."""
    if options.get("input_shape") is not None:
        return options["input_shape"]
    if isinstance(batch, list) and batch and isinstance(batch[0], tuple):
        batch = batch[0]
    if isinstance(batch, tuple) and batch and isinstance(batch[0], np.ndarray):
        return batch[0].shape[1:]
    return None  # a DataLoader, or no data: graph_of infers the shape


def _couple(graph, groups, sizes, scope):
    """Merge the filter scores of coupled layers into one entry per group (their sum) and drop
    blocked coupled groups. Returns (scores, sizes, scope, {entry: layers it stands for}).
    A producer with every unit pruned (a removed residual branch) stays an entry of its own:
    its −inf scores would make every channel of the group look pruned."""
    members = {n: [n] for n in groups if n not in graph.units}  # never called: on its own
    dead = {n for n, s in groups.items() if np.isneginf(s).all()}
    for g in graph.groups:
        live = [p for p in g.producers if p not in dead] or list(g.producers)
        members.update({p: [p] for p in g.producers if p not in live and p in groups})
        inside = [p for p in live if p in groups]
        if not inside:
            continue
        where = f"group {g.index} ({', '.join(g.producers)})"
        if g.blocked and g.coupled:
            if isinstance(scope, dict):
                raise ValueError(f"scope: {where} cannot be filter-pruned: "
                                 f"{'; '.join(g.blocked)}")
            continue
        if len(inside) < len(live):
            raise ValueError(f"exclude/scope: {where} is coupled (a residual addition ties their "
                             f"channels), so its layers are pruned together; include all of "
                             f"them or none, not only {inside}")
        members[inside[0] if len(inside) == 1 else where] = inside
    scores = {k: np.sum([groups[p] for p in ps], axis=0) for k, ps in members.items()}
    merged = {k: sum(sizes[p] for p in ps) for k, ps in members.items()}
    if isinstance(scope, dict):
        sparsities = {k: {scope[p] for p in ps} for k, ps in members.items()}
        for k, values in sparsities.items():
            if len(values) > 1:
                raise ValueError(f"scope: the layers of {k} are pruned together, so give them "
                                 f"one sparsity, got {sorted(values)}")
        scope = {k: values.pop() for k, values in sparsities.items()}
        if not scope:
            raise ValueError("scope: every layer named is in a group that cannot be pruned")
    return scores, merged, scope, members


def prune(model, sparsity=None, criterion=None, granularity=None, scope="global",
          target="weights", batch=None, exclude=(), reduce=None, normalize=None,
          **criterion_options) -> dict:
    """Prune `model` in place and return {layer name: mask} for the layers touched.

    sparsity     fraction of prunable weights (or groups, layerwise) that are 0 afterwards;
                 for "N:M" it is implied (1 − N/M) and may be omitted; with a per-layer dict
                 scope it must be omitted (the dict holds the sparsities)
    criterion    a name from `criteria.CRITERIA` or a callable f(model, layers, batch) → scores;
                 default "magnitude" (weights) or "activation" (activations)
    granularity  "unstructured" (the default), "filter"/"neuron", "channel", "kernel",
                 "filter_shape", "2:4", "block4x4", ... (weights only: activations are units);
                 "layer": whole residual branches (`prune_layers`: its criteria, global only,
                 `exclude` names blocks)
    scope        "global", "layerwise", or a non-empty {layer name: sparsity}
    target       "weights", or "activations" (masks whole output units via `module.output_mask`)
    batch        data for data-driven criteria: (x, y), a list of them, or a DataLoader
    exclude      layer names to leave dense
    reduce       how a group's weight scores combine: "l1" (the default), "l2", "mean", "sum";
                 only for weight-level criteria on groups
    normalize    L2-normalise each layer's group scores before a global ranking (default: on for
                 structured global pruning, off otherwise); only with scope="global"
    With granularity "filter", layers coupled by a residual addition are one group: scored by
    the sum of their filter scores, pruned together (a scope or exclude naming only some of them
    is an error), a blocked coupled group never (see the module docstring).
    Pruning is monotone: weights pruned before stay pruned, and the result lands exactly on
    `sparsity` (round(s·n) weights or groups). An argument that this call would ignore is an error.
    """
    checks.one_of(target, "target", TARGETS)
    if target == "activations":
        for name, value in (("granularity", granularity), ("reduce", reduce)):
            if value is not None:
                raise ValueError(f"{name}: {value!r} would be ignored: activation pruning removes "
                                 f"whole output units and ranks them by a unit-level criterion "
                                 f"({UNIT_CRITERIA}); leave {name} None")
        return prune_activations(model, sparsity, "activation" if criterion is None else criterion,
                                 scope, batch, exclude, normalize, **criterion_options)
    criterion = "magnitude" if criterion is None else criterion
    gran = structures.parse("unstructured" if granularity is None else granularity)
    if gran.whole_layer:
        for name, value in (("reduce", reduce), ("normalize", normalize)):
            if value is not None:
                raise ValueError(f"{name}: {value!r} would be ignored: with granularity='layer' "
                                 f"each residual branch is one unit with one score; leave {name} "
                                 "None")
        return prune_layers(model, sparsity, criterion, scope, batch, exclude, **criterion_options)
    if reduce is not None:
        checks.one_of(reduce, "reduce", tuple(structures.REDUCTIONS))
    layers = prunable_layers(model, exclude)
    crit = C.get_criterion(criterion)
    who = criterion if isinstance(criterion, str) else \
        getattr(criterion, "__name__", type(criterion).__name__)  # a callable object: its class
    unit = getattr(crit, "level", "weight") == "unit"
    if unit and not gran.unit:
        raise ValueError(f"criterion: {who!r} scores whole units, so it needs granularity='filter' "
                         f"(or 'neuron'), not {gran.name!r}; weight-level criteria are "
                         f"{sorted(n for n in C.CRITERIA if n not in UNIT_CRITERIA)}")
    if reduce is not None and (unit or not gran.structured or gran.name == "N:M"):
        raise ValueError(f"reduce: {reduce!r} would be ignored: it combines weight scores within "
                         f"a group, and {who!r} with granularity {gran.name!r} has no such groups")
    if gran.name == "N:M":
        implied = 1 - gran.n / gran.m
        if sparsity is not None and not np.isclose(S.check_sparsity(sparsity), implied):
            raise ValueError(f"sparsity: {granularity!r} keeps {gran.n} of every {gran.m} weights, "
                             f"i.e. sparsity {implied:g}; pass that or None, got {sparsity}")
        if isinstance(scope, dict):  # a per-layer dict only chooses layers here
            layers, scope = _scope_layers(scope, sparsity, layers)
            for n, s in scope.items():
                if not np.isclose(s, implied):
                    raise ValueError(f"scope[{n!r}]: {granularity!r} keeps {gran.n} of every "
                                     f"{gran.m} weights, i.e. sparsity {implied:g}; got {s}")
        if normalize is not None:
            raise ValueError(f"normalize: {normalize!r} would be ignored: {granularity!r} fixes "
                             f"every layer's sparsity at {implied:g}, so nothing is ranked globally")
    else:
        layers, scope = _scope_layers(scope, sparsity, layers)
        _check_normalize(normalize, scope)
    for name, module in layers.items():
        gran.check(name, module)

    scores = _check_scores(crit(model, layers, batch, **criterion_options), layers, unit, who)
    old = {n: m.weight.mask if m.weight.mask is not None else np.ones(m.weight.shape, bool)
           for n, m in layers.items()}
    if gran.name == "N:M":
        masks = {n: gran.nm_mask(np.where(old[n], scores[n], -np.inf)) for n in layers}
    else:
        groups, sizes = {}, {}
        for n, m in layers.items():
            g = scores[n] if unit else gran.group_scores(scores[n], reduce or "l1")
            groups[n] = np.where(gran.group_alive(old[n]), g, -np.inf)
            sizes[n] = gran.group_size(m.weight.shape)
        if normalize is None:
            normalize = gran.structured
        members = {n: [n] for n in groups}
        if gran.unit:  # coupled filters are ranked and removed as one group
            graph = graph_of(model, _input_shape(batch, criterion_options))
            groups, sizes, scope, members = _couple(graph, groups, sizes, scope)
        keep = S.select(groups, sizes, sparsity, scope, normalize) if groups else {}
        masks = {n: gran.expand(k, layers[n].weight.shape)
                 for key, k in keep.items() for n in members[key]}
    apply_masks(model, masks)
    if gran.unit:
        for n in masks:
            mask_dead_units(model, n)
    return {n: m.weight.mask.copy() if m.weight.mask is not None else np.ones(m.weight.shape, bool)
            for n, m in layers.items()}


def _removed(branch_params) -> bool:
    """Every parameter of the branch is masked whole: the block was pruned before."""
    return all(p.mask is not None and not p.mask.any() for p in branch_params)


def prune_layers(model, sparsity, criterion="magnitude", scope="global", batch=None, exclude=(),
                 input_shape=None, **criterion_options) -> dict:
    """Remove whole layers: the branches f of residual blocks x ↦ after(x + f(x)) with an identity
    shortcut (`prune(..., granularity="layer")` calls this). Returns {layer: weight mask} for the
    Conv2d/Linear layers of the blocks considered.

    sparsity     fraction of those blocks removed: round(s·n) of the n blocks, counting blocks
                 removed before (they stay removed: pruning is monotone)
    criterion    how a branch is scored, lowest removed first:
                 "magnitude"   its parameters' L2 norm (`criteria.block_magnitude`): no data,
                               one pass over the weights
                 "block_loss"  the rise of the loss on `batch` when it is removed
                               (`criteria.block_loss`): one forward pass per block per batch
                 or a callable f(model, blocks, batch) → {block name: score}
    scope        "global" only: a block is one unit, ranked against the other blocks
    exclude      block names (e.g. "layer1.0") to keep
    input_shape  one example's shape, to trace the model when neither batch nor the model's
                 first layer tells it

    A removed branch has every parameter masked (Conv2d/Linear weights and biases, BatchNorm γ
    and β): f(x) = 0 exactly, so the block computes after(x) (= x after a ReLU, for x ≥ 0), and
    `compact` replaces it by a `surgery.Shortcut`. Blocks whose shortcut is a projection are no
    unit: removing their branch leaves the projection, not the identity.

    >>> from minprune import models
    >>> model = models.resnet_tiny(blocks=(2, 1, 1))
    >>> masks = prune_layers(model, 0.5)  # 1 of its 2 blocks: the one of smaller weight norm
    >>> [name for name, mask in masks.items() if not mask.any()]
    ['layer1.0.conv1', 'layer1.0.conv2']
    """
    if scope != "global":
        raise ValueError(f"scope: {scope!r} does not apply to granularity='layer': a residual "
                         "branch spans several layers and is one unit, so there is no per-layer "
                         "fraction to prune; use scope='global' (blocks ranked against each "
                         "other) and `exclude` to keep blocks")
    if sparsity is None:
        raise ValueError("sparsity: required with granularity='layer' (the fraction of residual "
                         "blocks to remove, in [0, 1])")
    sparsity = S.check_sparsity(sparsity)
    if isinstance(exclude, str):
        exclude = (exclude,)
    if not isinstance(exclude, (list, tuple, set)) or not all(isinstance(e, str) for e in exclude):
        raise TypeError(f"exclude: expected a block name or a list of them, got {exclude!r}")
    if isinstance(criterion, str):
        if criterion not in C.BLOCK_CRITERIA:
            raise ValueError(f"criterion: {criterion!r} cannot score a residual branch as one "
                             f"unit; with granularity='layer' use one of {sorted(C.BLOCK_CRITERIA)}"
                             " or a callable f(model, blocks, batch) -> {block: score}")
        crit, who = C.BLOCK_CRITERIA[criterion], criterion
    elif callable(criterion):
        crit, who = criterion, getattr(criterion, "__name__", type(criterion).__name__)
    else:
        raise TypeError(f"criterion: expected one of {sorted(C.BLOCK_CRITERIA)} or a callable, "
                        f"got {type(criterion).__name__}")
    graph = graph_of(model, _input_shape(batch, {"input_shape": input_shape}))
    modules = dict(model.named_modules())
    blocks = {b.module: b for b in removable_blocks(graph, modules)
              if any(modules[n]._parameters for n in b.branch)}
    if not blocks:
        why = ("in a plain chain every layer is the only path from its input to its output, so "
               "removing one cuts the network instead of shortening it" if not graph.blocks else
               "its residual blocks compute f(x) by an operation after their last module, or "
               "something outside the block runs after the addition")
        raise ValueError(f"granularity: 'layer' removes the branch f of residual blocks computing "
                         f"x + f(x) with an identity shortcut, and this {type(model).__name__} has "
                         f"none that can go: {why} (use a residual model such as "
                         "models.resnet_tiny)")
    unknown = [e for e in exclude if e not in blocks]
    if unknown:
        raise ValueError(f"exclude: {unknown} are not residual blocks with an identity shortcut; "
                         f"with granularity='layer' exclude names blocks, from {list(blocks)}")
    blocks = {n: b for n, b in blocks.items() if n not in exclude}
    if not blocks:
        raise ValueError("exclude: it leaves no residual block to prune")

    scores = crit(model, blocks, batch, **criterion_options)
    if not isinstance(scores, dict) or not set(blocks) <= set(scores):
        raise ValueError(f"criterion: {who} must return a dict with a score for each of "
                         f"{list(blocks)}")
    params = {n: [p for m in b.branch for p in modules[m]._parameters.values()]
              for n, b in blocks.items()}
    ranked = np.empty(len(blocks))
    for i, n in enumerate(blocks):
        s = scores[n]
        if not isinstance(s, numbers.Real) or np.isnan(s):
            raise ValueError(f"criterion: {who} returned {s!r} for block {n!r}, expected a number")
        ranked[i] = -np.inf if _removed(params[n]) else float(s)  # removed before: stays removed
    go = S.lowest(ranked, round(sparsity * len(blocks)))
    for n, gone in zip(blocks, go):
        if gone:
            for p in params[n]:
                p.set_mask(np.zeros(p.shape, bool))
    layers = [m for b in blocks.values() for m in b.branch if m in graph.units]
    return {n: modules[n].weight.mask.copy() if modules[n].weight.mask is not None
            else np.ones(modules[n].weight.shape, bool) for n in layers}


def prune_activations(model, sparsity, criterion="activation", scope="global", batch=None,
                      exclude=(), normalize=None, **criterion_options) -> dict:
    """Static activation pruning: silence whole output units chosen by a unit-level criterion
    (mean activation, APoZ, ...) by setting `layer.output_mask`. The weights stay as they are.
    Unit scores are L2-normalised per layer before a global ranking unless `normalize=False`."""
    layers = prunable_layers(model, exclude)
    crit = C.get_criterion(criterion)
    if getattr(crit, "level", "weight") != "unit":
        raise ValueError(f"criterion: activation pruning ranks output units; use one of "
                         f"{UNIT_CRITERIA} or a callable with .level = 'unit', got {criterion!r}")
    layers, scope = _scope_layers(scope, sparsity, layers)
    _check_normalize(normalize, scope)
    scores = _check_scores(crit(model, layers, batch, **criterion_options), layers, True, criterion)
    groups = {n: np.where(m.output_mask if m.output_mask is not None else True, scores[n], -np.inf)
              for n, m in layers.items()}
    keep = S.select(groups, {n: 1 for n in layers}, sparsity, scope,
                    True if normalize is None else normalize)
    for n, k in keep.items():
        m = layers[n]
        m.output_mask = k if m.output_mask is None else (m.output_mask & k)
    return {n: layers[n].output_mask.copy() for n in keep}


class ActivationSparsity:
    """Dynamic activation pruning: after each ReLU keep only the k largest activations of every
    example (k an int, or a fraction of the layer's units). Remove with `.remove()`."""

    def __init__(self, model, k):
        from .. import nn
        if isinstance(k, numbers.Integral) and not isinstance(k, (bool, np.bool_)):
            self.k = checks.integer(k, "k", minimum=1)  # units kept
        else:
            self.k = checks.number(k, "k", lo=0, hi=1, lo_open=True)  # fraction of units kept
        self.handles = [m.register_forward_hook(self._hook) for m in model.modules()
                        if isinstance(m, nn.ReLU)]

    def _hook(self, module, inputs, out):
        flat = out.data.reshape(out.shape[0], -1)
        k = self.k if isinstance(self.k, int) else max(1, round(self.k * flat.shape[1]))
        if k >= flat.shape[1]:
            return None
        # the k-th largest value per example; ties at the threshold may keep a few more
        kth = np.partition(flat, flat.shape[1] - k, axis=1)[:, flat.shape[1] - k][:, None]
        return F.Masked.apply(out, (flat >= kth).reshape(out.shape))  # dropped: exactly 0

    def remove(self):
        for h in self.handles:
            h.remove()
        self.handles = []


def activation_sparsity(model, k) -> ActivationSparsity:
    """Keep the top-k activations per example after every ReLU, at run time (a forward hook)."""
    return ActivationSparsity(model, k)
