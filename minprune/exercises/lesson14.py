"""Checkers of lesson 14 — structure and depth: pruning residual networks
(`lessons/14_structure_and_depth.ipynb`).

    14.1  coupled_groups(nodes)                      the groups of layers a residual addition ties
    14.2  group_lasso_penalty(weights, granularity, strength)   Wen et al.'s penalty, in NumPy
    14.3  params_left(model, graph, layer, k)        parameters after cutting k channels of a group

The truth comes from the library (the dependency graph's groups, `group_lasso(...).norms`,
`compact` + `count_params`), computed before the student's function runs; while it runs, those
functions are blocked. The models are built fresh for every check: the library's residual nets,
plain chains, and `_Fork`, a small net whose additions tie three or more layers together.
"""
from __future__ import annotations

import copy

import numpy as np

from .. import nn
from ..nn import functional as fn
from .core import as_int, correct, exercise, fail, require_callable, rng_for

GRANULARITIES = ("filter", "channel", "kernel", "filter_shape")
_WHAT = {"filter": "W[o, :, :, :] (one output channel)", "channel": "W[:, c, :, :] (one input channel)",
         "kernel": "W[o, c, :, :] (one k×k kernel)",
         "filter_shape": "W[:, c, i, j] (one kernel position in every filter)"}


class _Fork(nn.Module):
    """`shared` and every convolution of `branches` read the input x; `shared`'s output is added to
    each branch's (one addition per branch), so all of them are tied to each other through
    `shared`. Each sum goes through a ReLU into a 1×1 `heads` convolution; the heads' outputs are
    added up (a second group), averaged over the image and classified by `fc`."""

    def __init__(self, branches: int, width: int, rng, bias: bool = True):
        super().__init__()
        self.shared = nn.Conv2d(1, width, 3, padding=1, bias=bias, rng=rng)
        self.branches = nn.Sequential(*[nn.Conv2d(1, width, 3, padding=1, bias=bias, rng=rng)
                                        for _ in range(branches)])
        self.heads = nn.Sequential(*[nn.Conv2d(width, width, 1, rng=rng) for _ in range(branches)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(width, 10, rng=rng)

    def forward(self, x):
        shared, out = self.shared(x), None
        for conv, head in zip(self.branches, self.heads):
            h = head(fn.relu(conv(x) + shared))
            out = h if out is None else out + h
        return self.fc(self.flatten(self.pool(out)))


def _models(variant, public_seed: int) -> list:
    """[(description, model, input_shape)]: residual nets, plain chains and forks. Built fresh."""
    from .. import models
    if variant is None:
        rng = np.random.default_rng(public_seed)
        return [("resnet_tiny()", models.resnet_tiny(), (1, 28, 28)),
                ("lenet5()", models.lenet5(), (1, 28, 28)),
                ("a fork: 2 branches added to a shared convolution", _Fork(2, 4, rng), (1, 8, 8))]
    rng = rng_for(variant, public_seed)
    blocks = tuple(int(b) for b in rng.integers(1, 4, size=3))
    branches, width = int(rng.integers(1, 5)), int(rng.integers(2, 7))
    pool = [(f"resnet_tiny(seed={variant % 1000}, blocks={blocks})",
             models.resnet_tiny(seed=variant % 1000, blocks=blocks), (1, 12, 12)),
            (f"a fork: {branches} branch(es) added to a shared convolution",
             _Fork(branches, width, rng, bias=bool(rng.integers(2))), (1, 6, 6)),
            ("conv4()", models.conv4(seed=variant % 1000), (1, 28, 28)),
            ("lenet_300_100()", models.lenet_300_100(seed=variant % 1000), (1, 28, 28))]
    return [pool[i] for i in rng.permutation(len(pool))[:3]]


def _graph(model, input_shape):
    from ..prune.graph import dependency_graph
    return dependency_graph(model, input_shape)


# --- 14.1 the coupled groups -------------------------------------------------------------------
def _groups_truth(graph) -> set:
    return {frozenset(g.producers) for g in graph.groups}


def _as_groups(answer, who) -> list:
    """A student's groups as a list of sets of names (any iterable of iterables of str)."""
    if answer is None:
        fail(f"{who} returned None.", "did you forget a `return` statement?")
    if isinstance(answer, dict):
        answer = list(answer.values())
    if isinstance(answer, (str, bytes)) or not hasattr(answer, "__iter__"):
        fail(f"{who} should return a list of groups (each a set or list of layer names), got "
             f"{type(answer).__name__}.")
    groups = []
    for g in answer:
        if isinstance(g, str) or not hasattr(g, "__iter__"):
            fail(f"{who}: each group should be a set or list of layer names, got {g!r}.",
                 "a layer that nothing ties to another is a group of its own: {'fc'}, not 'fc'.")
        names = list(g)
        if not all(isinstance(n, str) for n in names):
            fail(f"{who}: a group holds names (str), got {names!r}.")
        groups.append(set(names))
    return groups


@exercise("14.1", blocks=["minprune.prune.graph.dependency_graph",
                          "minprune.prune.graph.DependencyGraph.group_of",
                          "minprune.prune.graph._groups", "minprune.prune.graph._propagate",
                          "minprune.prune.masks.graph_of",
                          "minprune.exercises.lesson14._groups_truth"])
def check_coupled_groups(fn_, variant=None) -> None:
    """`fn(nodes) -> list of groups`: from a traced network's steps (`graph.nodes`, in execution
    order: name, kind, reads), the sets of layers whose output channels are pruned together — an
    addition ties the layers its inputs come from (through BatchNorm, ReLU, pooling, reshapes), and
    ties chain: a + b and b + c make one group {a, b, c}. Every layer is in exactly one group."""
    require_callable(fn_, "fn")
    for name, model, shape in _models(variant, 41):
        graph = _graph(model, shape)
        want = _groups_truth(graph)
        layers = set(graph.units)
        nodes = list(graph.nodes)
        got = _as_groups(fn_(list(nodes)), f"fn(nodes of {name})")
        named = {n for g in got for n in g}
        where = f"for {name}"
        if "<input>" in named:
            fail(f"{where} a group holds '<input>'.",
                 "the model's input is not a layer: leave it out of the groups.")
        others = sorted(named - layers)
        if others:
            kinds = {n.name: n.kind for n in nodes}
            fail(f"{where} the groups hold {others[:3]}, which are not layers "
                 f"(their kinds: {[kinds.get(n, '?') for n in others[:3]]}).",
                 "only nodes of kind 'layer' make channels; BatchNorm, ReLU and additions pass "
                 "them on.")
        missing = sorted(layers - named)
        if missing:
            fail(f"{where} the layers {missing[:3]} are in no group.",
                 "every layer belongs to exactly one group: a layer nothing ties to another is a "
                 "group of its own.")
        seen = {}
        for g in got:
            for n in g:
                if n in seen and seen[n] != g:
                    fail(f"{where} layer {n!r} is in two groups, {sorted(seen[n])} and {sorted(g)}.",
                         "ties chain: if a + b and b + c are added, a, b and c are one group — "
                         "merge groups that share a layer (union-find).")
                seen[n] = g
        got = {frozenset(g) for g in got}
        if got != want:
            consumers = {p: {c.layer for c in graph.consumers(p)} for p in layers}
            wrong = sorted(got - want, key=len, reverse=True)[0]
            hint = ("an addition ties the layers whose channels reach it; look through BatchNorm, "
                    "ReLU, pooling and reshapes, which keep channels one by one.")
            if any(consumers[a] & wrong for a in wrong):
                hint = ("a layer that *reads* channels is their consumer, not part of their group: "
                        "only an addition ties layers together.")
            elif all(len(g) == 1 for g in got):
                hint = ("no layer is tied to another in your answer: follow each addition's two "
                        "inputs back through BatchNorm, ReLU and pooling to the layers that made "
                        "them.")
            fail(f"{where} the groups are wrong: e.g. you have {sorted(wrong)}; the coupled "
                 f"groups are {sorted(sorted(g) for g in want if len(g) > 1)}.", hint)
    correct("your groups are the dependency graph's, for residual nets, forks and plain chains")


# --- 14.2 the group-Lasso penalty --------------------------------------------------------------
def _penalty_cases(variant) -> list:
    """[(description, [Conv2d weights], granularity, strength)]."""
    rng = rng_for(variant, 42)
    if variant is None:
        weights = [rng.normal(0, 0.3, size=(6, 1, 5, 5)), rng.normal(0, 0.1, size=(16, 6, 5, 5))]
        weights[1][:, 2, 1, 3] = 0   # one filter shape already zero
        cases = [(g, [w.astype(np.float32) for w in weights], g, 0.01) for g in GRANULARITIES]
        one = rng.normal(size=(3, 2, 3, 3)).astype(np.float32)
        cases.append(("filter_shape", [one], "filter_shape", 0.5))
    else:
        cases = []
        for g in rng.permutation(GRANULARITIES):
            shapes = [(int(rng.integers(1, 9)), int(rng.integers(1, 7))) + (k, k)
                      for k in rng.choice([1, 3, 5], size=int(rng.integers(1, 4)))]
            weights = [(rng.normal(size=s) * rng.uniform(0.05, 1.0)).astype(np.float32)
                       for s in shapes]
            w = weights[int(rng.integers(len(weights)))]
            w[rng.random(w.shape) < 0.3] = 0   # pruned weights, some whole groups
            cases.append((str(g), weights, str(g), float(rng.choice([1e-4, 3e-3, 0.01, 0.2]))))
    return [(f"{len(ws)} Conv2d weight(s) {[w.shape for w in ws]}, granularity={g!r}, strength={s:g}",
             ws, g, s) for _, ws, g, s in cases]


def _library_norms(weights, granularity) -> np.ndarray:
    """Every group's L2 norm by the library's own group_lasso, on convolutions holding `weights`."""
    from ..prune.regularizers import group_lasso
    layers = []
    for w in weights:
        o, i, k, _ = w.shape
        conv = nn.Conv2d(i, o, k, bias=False)
        conv.weight.data[...] = w
        layers.append(conv)
    model = nn.Sequential(*layers)
    norms = group_lasso(model, granularity, 1.0).norms(model)
    return np.concatenate([np.ravel(v) for v in norms.values()])


def _norms(weights, granularity, power=1.0) -> float:
    """Σ over groups of ‖w_g‖₂^power (NumPy), for the hints."""
    axes = {"filter": (1, 2, 3), "channel": (0, 2, 3), "kernel": (2, 3), "filter_shape": (0,)}
    return float(sum((np.sqrt((w.astype(np.float64) ** 2).sum(axis=axes[granularity])) ** power).sum()
                     for w in weights))


@exercise("14.2", blocks=["minprune.prune.regularizers.group_lasso",
                          "minprune.prune.regularizers.GroupLasso.__call__",
                          "minprune.prune.regularizers.GroupLasso.norms",
                          "minprune.prune.regularizers.GroupLasso._squares",
                          "minprune.prune.structures.Granularity.group_scores",
                          "minprune.prune.structures.Granularity.view",
                          "minprune.exercises.lesson14._library_norms"])
def check_group_lasso_penalty(fn_, variant=None) -> None:
    """`fn(weights, granularity, strength) -> float`: strength · Σ over every Conv2d weight
    (out, in, kh, kw) of `weights` and every group of `granularity` of the group's L2 norm —
    Wen et al. (2016)'s group Lasso, for "filter", "channel", "kernel" or "filter_shape"."""
    require_callable(fn_, "fn")
    for name, weights, gran, strength in _penalty_cases(variant):
        want = strength * float(_library_norms(weights, gran).sum())
        answer = fn_([w.copy() for w in weights], gran, strength)
        if answer is None:
            fail(f"fn({name}) returned None.", "did you forget a `return` statement?")
        try:
            got = float(np.asarray(getattr(answer, "data", answer), dtype=np.float64))
        except (TypeError, ValueError):
            fail(f"fn({name}) should return one number (a float), got {type(answer).__name__}.",
                 "sum the groups' norms over every layer into one number.")
        if np.isclose(got, want, rtol=1e-4, atol=1e-9):
            continue
        hint = f"'{gran}' groups are {_WHAT[gran]}: each group's L2 norm, summed, times strength."

        def close(value, got=got):
            return np.isclose(got, value, rtol=1e-4, atol=1e-9)
        others = [g for g in GRANULARITIES if g != gran and close(strength * _norms(weights, g))
                  and not np.isclose(_norms(weights, g), _norms(weights, gran))]
        flat = sum(np.abs(w.astype(np.float64)).sum() for w in weights)
        if others:
            hint = (f"that is the penalty of '{others[0]}' groups, {_WHAT[others[0]]}; '{gran}' groups "
                    f"are {_WHAT[gran]}: reduce over the other axes.")
        elif close(_norms(weights, gran)):
            hint = "multiply the sum of the norms by `strength`."
        elif close(strength * _norms(weights, gran, 2)):
            hint = ("that is Σ‖w_g‖², a weight decay: group Lasso sums the norms themselves (the "
                    "square root of each group's sum of squares), which is what pulls whole groups "
                    "to exactly zero.")
        elif close(strength * flat):
            hint = ("that is the L1 norm of all the weights (Σ|w|): it zeroes weights one by one. "
                    "Group Lasso takes each group's L2 norm first.")
        elif close(strength * _norms(weights[:1], gran)):
            hint = "sum over every layer in `weights`, not only the first."
        elif close(strength * _norms(weights, gran) / len(_library_norms(weights, gran))):
            hint = "sum the groups' norms; do not average them (Wen et al. do not weight by count)."
        fail(f"for {name} expected {want:.6g}, got {got:.6g}.", hint)
    correct("your group-Lasso penalty matches the library's for every granularity")


# --- 14.3 parameters left after cutting channels of a group -----------------------------------
def _params_left(model, graph, layer, k) -> int:
    """The library's answer: zero k channels in every producer (weights, bias) and BatchNorm of
    the group, `compact`, count the parameters."""
    from ..prune.metrics import count_params
    from ..prune.surgery import compact
    m = copy.deepcopy(model)
    modules = dict(m.named_modules())
    group = graph.group_of(layer)
    idx = np.arange(k)
    for p in group.producers:
        modules[p].weight.data[idx] = 0
        if modules[p].bias is not None:
            modules[p].bias.data[idx] = 0
    for bn in group.batchnorms:
        modules[bn].weight.data[idx] = 0
        modules[bn].bias.data[idx] = 0
    return count_params(compact(m, graph.input_shape))


def _count(model, graph, layer, k, coupled=True, bn=2, readers=True, span=True, bias=True) -> int:
    """The count by formula, with parts left out (or BatchNorm counted with its running
    statistics, bn=4) as the usual mistakes do."""
    modules = dict(model.named_modules())
    group = graph.group_of(layer)
    removed = 0
    for p in (group.producers if coupled else (layer,)):
        w = modules[p].weight
        removed += k * int(np.prod(w.shape[1:]))
        if bias and modules[p].bias is not None:
            removed += k
    batchnorms = group.batchnorms if coupled else [b for b in group.batchnorms
                                                   if b == graph.batchnorm_of(layer)]
    removed += bn * k * len(batchnorms)
    if readers:
        for c in group.consumers:
            w = modules[c.layer].weight
            removed += k * (c.span if span else 1) * w.shape[0] * int(np.prod(w.shape[2:]))
    return sum(p.size for p in model.parameters()) - removed


def _removal_cases(variant) -> list:
    """[(description, model, graph, layer, k)]: a prunable group's layer and how many channels."""
    cases = []
    rng = rng_for(variant, 43)
    chosen = {"resnet_tiny()": [("conv1", 3), ("layer2.0.conv1", 5), ("layer3.0.downsample.0", 10)],
              "lenet5()": [("features.0", 2), ("features.3", 4)],
              "a fork: 2 branches added to a shared convolution": [("branches.1", 1)]}
    for name, model, shape in _models(variant, 41):
        graph = _graph(model, shape)
        if variant is None:
            picks = chosen[name]
        else:
            groups = [g for g in graph.groups if g.prunable and g.channels > 1]
            picks = []
            for i in rng.choice(len(groups), size=min(2, len(groups)), replace=False):
                g = groups[int(i)]
                picks.append((g.producers[int(rng.integers(len(g.producers)))],
                              int(rng.integers(1, g.channels))))
        for layer, k in picks:
            cases.append((f"{name}, layer={layer!r}, k={k}", model, graph, layer, k))
    return cases


def _state(model) -> dict:
    return {n: v.copy() for n, v in model.state_dict().items()}


@exercise("14.3", blocks=["minprune.prune.surgery.compact", "minprune.prune.surgery._cut_group",
                          "minprune.prune.metrics.count_params",
                          "minprune.prune.metrics.count_nonzero", "minprune.prune.metrics.report",
                          "minprune.prune.pruner.prune",
                          "minprune.exercises.lesson14._params_left"])
def check_params_left(fn_, variant=None) -> None:
    """`fn(model, graph, layer, k) -> int`: the number of parameters `model` has after k output
    channels of `layer` are cut out — out of every producer of its group (weights and biases),
    every BatchNorm of the group (γ and β) and every layer that reads them (their input channels;
    after a Flatten, each channel is `span` input features) — as `compact` would leave it."""
    require_callable(fn_, "fn")
    for name, model, graph, layer, k in _removal_cases(variant):
        want = _params_left(model, graph, layer, k)
        before = _state(model)
        got = as_int(fn_(model, graph, layer, k), f"fn({name})")
        after = _state(model)
        if set(before) != set(after) or any(not np.array_equal(before[n], after[n]) for n in before):
            fail(f"fn({name}) changed the model it was given.",
                 "count, do not cut: the model stays as it was (work on a copy if you must).")
        if got == want:
            continue
        total = sum(p.size for p in model.parameters())
        group = graph.group_of(layer)
        hint = ("remove k·(in·kh·kw) weights and k biases per producer, 2·k per BatchNorm (γ, β), "
                "and k·span·out·kh·kw weights per layer that reads the group.")
        if got == total - want:
            hint = "that is the number removed; return the number left."
        elif got == _count(model, graph, layer, k, coupled=False) and len(group.producers) > 1:
            hint = (f"{layer!r} is coupled with {[p for p in group.producers if p != layer]} by a "
                    "residual addition: the same channels go in every producer of the group and "
                    "in all their BatchNorms.")
        elif got == _count(model, graph, layer, k, readers=False):
            hint = ("the layers that read the group lose those input channels too: "
                    "`graph.group_of(layer).consumers`.")
        elif got == _count(model, graph, layer, k, bn=0) and group.batchnorms:
            hint = "each BatchNorm of the group loses γ and β of every cut channel."
        elif got == _count(model, graph, layer, k, bn=4) and group.batchnorms:
            hint = ("running_mean and running_var are buffers, not parameters: a BatchNorm loses 2 "
                    "parameters per channel.")
        elif got == _count(model, graph, layer, k, span=False):
            hint = ("after a Flatten, one channel is `span` input features of the Linear that reads "
                    "it (`consumer.span`).")
        elif got == _count(model, graph, layer, k, bias=False):
            hint = "a cut filter takes its bias with it."
        fail(f"for {name} expected {want:,} parameters left, got {got:,}.", hint)
    correct("your counts match what compact() leaves, coupled groups and Flatten spans included")
