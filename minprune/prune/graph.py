"""The dependency graph: what is connected to what, and which units must be pruned together.

Removing a filter from a convolution removes one of its output channels. That channel does not
live alone: the BatchNorm after the convolution holds a scale and a shift for it, the next layers
read it as one of their input channels (after a Flatten, as a run of H·W input features), and in
a residual network an addition `a + b` adds channel i of `a` to channel i of `b` — so whatever
produced `a` and whatever produced `b` must lose channel i together, or the two no longer add up.
Such a set of coupled channels is a *group*; structured pruning keeps or removes a group whole.

`dependency_graph(model, input_shape)` finds the groups from one forward pass, in three steps:

1. trace: a forward hook on every module records which module made which tensor, and every
   Tensor remembers the Function that made it and from which inputs (`_op`, `_parents`), so the
   operations *between* modules (the residual `+`, a functional flatten) are seen too;
2. walk: from the output back to the input, keeping only tensors computed from the input (the
   weights are not), we get the steps of the network in an order where inputs come first;
3. propagate: forward through the steps, each tensor remembers which layers produced its
   channels; an addition merges the producers of its two inputs into one group (union-find).

Nothing here knows particular models: a ResNet's blocks are found from the trace, as modules
whose output is x + f(x) for their own input x. Layers that the graph cannot see through (an
unknown module, a transpose, indexing, the model output itself) make the channels they read
"kept": their group is reported as not prunable, with the reason.

>>> from minprune import models
>>> graph = dependency_graph(models.resnet_tiny(), (1, 28, 28))
>>> graph.group_of("layer1.0.conv2").producers
('conv1', 'layer1.0.conv2')
>>> graph.batchnorm_of("layer2.0.downsample.0")
'layer2.0.downsample.1'
>>> [str(c) for c in graph.consumers("layer3.0.conv2")]
['fc']
>>> graph.blocks[0].branch
('layer1.0.conv1', 'layer1.0.bn1', 'layer1.0.relu', 'layer1.0.conv2', 'layer1.0.bn2')
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from .. import autograd, checks, nn
from .. import functions as F
from ..nn.module import as_mask
from ..tensor import Tensor

PRUNABLE = (nn.Conv2d, nn.Linear)  # layers whose output units (channels, neurons) can be pruned
OUTPUT_AXIS, INPUT_AXIS = 0, 1     # a producer is cut along weight axis 0, a consumer along axis 1
INPUT = "<input>"                  # the model's input, as a pseudo-producer: its channels stay
OUTPUT_REASON = "it is the model output"
INPUT_REASON = "it is tied to the model input, whose channels stay"

# What a step does to the channels on axis 1 of its input. By module type (first match) ...
_MODULE_KINDS = (
    (PRUNABLE, "layer"),                               # reads channels, makes new ones
    ((nn.BatchNorm1d, nn.BatchNorm2d), "batchnorm"),   # per channel, with parameters to cut
    ((nn.ReLU,), "activation"),
    ((nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Dropout), "channelwise"),
    ((nn.Flatten,), "reshape"),
)
# ... and by autograd op, for the operations a forward() does between modules.
_OP_KINDS = {
    F.Add: "join", F.Sub: "join", F.Mul: "join", F.Div: "join",  # two tensors, channel by channel
    F.Neg: "channelwise", F.Pow: "channelwise", F.Exp: "channelwise", F.Log: "channelwise",
    F.ReLU: "channelwise", F.Masked: "channelwise", F.MaxPool2d: "channelwise",
    F.AvgPool2d: "channelwise",
    F.Sum: "reduce", F.Mean: "reduce", F.Max: "reduce",  # channelwise if axes 0 and 1 survive
    F.Reshape: "reshape",
}
# Everything else (Transpose, GetItem, MatMul, LogSoftmax, unknown modules, ...) is "opaque".


# --- what the graph reports -----------------------------------------------------------------------
@dataclass(frozen=True)
class Consumer:
    """A layer that reads a producer's channels as its input channels (weight axis 1): channel c
    is its input features c·span … (c+1)·span − 1 — span 1, or H·W after a Flatten of (C, H, W).

    >>> Consumer("fc", span=4).inputs([True, False]).astype(int)
    array([1, 1, 1, 1, 0, 0, 0, 0])
    """

    layer: str
    span: int = 1

    def inputs(self, keep) -> np.ndarray:
        """The consumer's input mask (one entry per input feature) for a per-channel `keep`."""
        return np.repeat(np.asarray(keep, dtype=bool), self.span)

    def __str__(self):
        return self.layer if self.span == 1 else f"{self.layer} (×{self.span} features)"


@dataclass(frozen=True)
class Group:
    """Channels that are kept or pruned together: channel i of every producer (cut along weight
    axis 0), entry i of every BatchNorm attached, and input channel i of every consumer.
    `blocked` says why the group cannot be pruned at all (empty when it can)."""

    index: int
    channels: int
    producers: tuple[str, ...]
    batchnorms: tuple[str, ...]
    consumers: tuple[Consumer, ...]
    blocked: tuple[str, ...] = ()

    @property
    def prunable(self) -> bool:
        return not self.blocked

    @property
    def coupled(self) -> bool:
        """More than one layer (or the model input) share these channels: a unit mask on one
        layer alone would split them."""
        return len(self.producers) > 1 or INPUT_REASON in self.blocked


@dataclass(frozen=True)
class ResidualBlock:
    """A module whose output is x + f(x) for its own input x (after `after`, e.g. its ReLU):
    zeroing the branch f leaves `after` applied to x, so the whole layer f can go."""

    module: str                # the block's module name
    branch: tuple[str, ...]    # the leaf modules of f, in execution order
    join: str                  # the addition's name among the graph's nodes
    after: tuple[str, ...]     # what runs between the addition and the block's output
    last: str | None = None    # the leaf module whose output f(x) is (None: an operation makes it)
    after_ops: tuple[str, ...] = ()  # the steps of `after` that are operations, not modules


@dataclass(frozen=True)
class Node:
    """One step of the traced network: a leaf module call or an autograd op between modules.
    `reads` names the nodes whose outputs it takes (INPUT for the model input)."""

    name: str
    kind: str  # layer, batchnorm, activation, channelwise, reshape, join or opaque
    reads: tuple[str, ...]
    shape: tuple[int, ...]  # its output, one example (no batch axis)


# --- 1. trace: one forward pass with hooks -------------------------------------------------------
@dataclass
class _Call:
    """One call of a module, as its forward hook saw it."""

    name: str
    module: nn.Module
    inputs: tuple
    output: object
    seq: int  # calls are numbered in the order they finished


def _run_hooked(model, input_shape):
    """Two random examples through `model` in eval mode (BatchNorm statistics untouched), with a
    forward hook on every module; every module's own mode is restored afterwards.
    Returns (input, output, leaf-module calls, container calls)."""
    named = {}
    for name, m in model.named_modules():
        named.setdefault(id(m), (name, m))  # a module used twice keeps its first name
    calls = []

    def record(module, args, out):
        calls.append(_Call(named[id(module)][0], module,
                           tuple(a for a in args if isinstance(a, Tensor)), out, len(calls)))

    handles = [m.register_forward_hook(record) for _, m in named.values()]
    modes = [(m, m.training) for _, m in named.values()]
    x = Tensor(np.random.default_rng(0).standard_normal((2, *input_shape)).astype(np.float32),
               requires_grad=True)  # so every op on the data is recorded, frozen weights or not
    model.eval()
    try:
        # the autograd graph is the trace, even inside a caller's no_grad(); only shapes matter
        with autograd.set_grad_enabled(True), np.errstate(all="ignore"):
            out = model(x)
    except ValueError as error:
        raise ValueError(f"input_shape: the model cannot run on inputs of shape {x.shape}: "
                         f"{error}") from error
    finally:
        for h in handles:
            h.remove()
        for m, training in modes:
            object.__setattr__(m, "training", training)
    if not isinstance(out, Tensor):
        raise TypeError(f"model: its forward must return a Tensor, got {type(out).__name__}")
    leaves = [c for c in calls if not c.module._modules]
    return x, out, leaves, [c for c in calls if c.module._modules]


# --- 2. walk: the steps from input to output ------------------------------------------------------
@dataclass
class _Step:
    """A tensor computed from the input, with what made it: a leaf module call or an op."""

    tensor: Tensor
    call: _Call | None
    inputs: list       # the data tensors it was computed from
    name: str = ""
    kind: str = ""
    span: int = 1      # reshape only: output features per input feature on axis 1


def _steps(x, out, leaves) -> list[_Step]:
    """The steps that compute `out` (and any other module output) from `x`, inputs first.

    A leaf module's output counts as one step whose inputs are the module's inputs: its inner ops
    are skipped. Other tensors are steps of their autograd op. Tensors not computed from `x`
    (weights, masked weights, constants) are not steps."""
    made_by = {id(c.output): c for c in leaves if not any(c.output is a for a in c.inputs)}

    def parents(t):
        call = made_by.get(id(t))
        return call.inputs if call is not None else t._parents

    data, steps = {id(x)}, []
    for t in autograd.topological_order([out] + [c.output for c in leaves], parents):
        inputs = [p for p in parents(t) if id(p) in data]
        if t is not x and inputs:
            data.add(id(t))
            steps.append(_Step(t, made_by.get(id(t)), inputs))
    return steps


def _flatten_span(before, after) -> int | None:
    """How many features on axis 1 each channel becomes in a C-order reshape that keeps every
    channel's values together, e.g. (N, C, H, W) → (N, C·H·W) gives H·W; None if it does not.

    >>> _flatten_span((2, 16, 5, 5), (2, 400)), _flatten_span((2, 400), (2, 16, 5, 5))
    (25, None)
    """
    if len(before) < 2 or len(after) < 2 or before[0] != after[0] or after[1] % before[1]:
        return None
    span = after[1] // before[1]
    return span if span * int(np.prod(after[2:])) == int(np.prod(before[2:])) else None


def _classify(step) -> tuple[str, int]:
    """(kind, span) of a step: the tables above, checked against the shapes it really saw."""
    if step.call is not None:
        kind = next((k for types, k in _MODULE_KINDS if isinstance(step.call.module, types)),
                    "opaque")
    else:
        kind = _OP_KINDS.get(step.tensor._op, "opaque")
    shapes, out = [t.shape for t in step.inputs], step.tensor.shape
    if kind == "layer":
        return kind, 1
    if kind == "reshape":
        span = _flatten_span(shapes[0], out) if len(shapes) == 1 else None
        return ("reshape", span) if span else ("opaque", 1)
    if kind == "join" and len(shapes) == 1:  # x + constant: still channel by channel
        kind = "channelwise"
    if kind == "reduce":
        kind = "channelwise"
    wanted = 2 if kind == "join" else 1
    if len(shapes) != wanted or any(s[:2] != out[:2] for s in shapes):
        kind = "opaque"  # mixes channels (or the batch): nothing per-channel survives it
    return kind, 1


def _depth(name: str) -> int:
    return name.count(".") + 1 if name else 0


def _inside(call, producer_of) -> set:
    """ids of the steps a container call computed: back from its output to its inputs."""
    stop = {id(t) for t in call.inputs}
    found, todo = set(), [call.output]
    while todo:
        t = todo.pop()
        step = producer_of.get(id(t))
        if id(t) in stop or step is None or id(step) in found:
            continue
        found.add(id(step))
        todo.extend(step.inputs)
    return found


def _name_steps(steps, containers) -> dict:
    """Give every step its kind and a name: a leaf module's name, or for an op, the innermost
    module whose forward ran it plus the op: "layer1.0.add", "reshape" (in the model's own
    forward), "add_1" for the second one. Returns {container call seq: ids of its steps}."""
    producer_of = {id(s.tensor): s for s in steps}
    insides = {c.seq: _inside(c, producer_of) for c in containers
               if not any(c.output is t for t in c.inputs)}
    by_seq = {c.seq: c for c in containers}
    used = defaultdict(int)
    for step in steps:
        step.kind, step.span = _classify(step)
        if step.call is not None:
            step.name = step.call.name
            continue
        owners = [by_seq[s].name for s, ids in insides.items() if id(step) in ids]
        owner = max(owners, key=_depth, default="")
        base = f"{owner}.{step.tensor._op.__name__.lower()}" if owner else \
            step.tensor._op.__name__.lower()
        step.name = base if not used[base] else f"{base}_{used[base]}"
        used[base] += 1
    return insides


# --- 3. propagate: which producers each tensor's channels come from -------------------------------
class _UnionFind:
    """Disjoint sets of names: `union` merges two sets, `find` names a set by its root."""

    def __init__(self):
        self.parent = {}

    def find(self, a):
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]  # path halving keeps the trees flat
            a = self.parent[a]
        return a

    def union(self, a, b):
        self.parent[self.find(a)] = self.find(b)


@dataclass(frozen=True)
class _Source:
    """Where a tensor's channels come from: which producers, and how many features each channel
    spans on axis 1. `joined`: an addition lies on the way (its BatchNorm is the group's)."""

    producers: frozenset
    span: int = 1
    joined: bool = False


class _Found:
    """What propagation learns, per producer name."""

    def __init__(self):
        self.batchnorm, self.activation = {}, {}
        self.consumers = defaultdict(list)
        self.blocked = defaultdict(list)
        self.shared_batchnorms = []  # (a producer, BN) for BatchNorms after an addition
        self.passes = defaultdict(list)  # per-channel modules its channels go through (joined?)
        self.groups = _UnionFind()


def _read(step, sources, found) -> _Source | None:
    """The source of this step's output, recording what the step tells about its inputs."""
    ins = [sources.get(id(t)) for t in step.inputs]
    known = [s for s in ins if s is not None]
    producers = frozenset().union(*(s.producers for s in known))
    if step.kind == "layer":
        for s in known:
            for p in s.producers:
                found.consumers[p].append(Consumer(step.name, s.span))
        return _Source(frozenset({step.name}))
    spans = {s.span for s in known}
    if step.kind == "opaque" or len(known) < len(ins) or len(spans) > 1:
        for p in producers:
            found.blocked[p].append(f"read by {step.name}, which the graph cannot follow")
        return None
    source = _Source(producers, spans.pop(), any(s.joined for s in known))
    if step.kind == "join":
        for p in producers:
            found.groups.union(p, next(iter(producers)))
        return _Source(producers, source.span, joined=True)
    if step.kind == "reshape":
        return _Source(producers, source.span * step.span, source.joined)
    if step.call is not None and source.span == 1:
        for p in producers:
            found.passes[p].append((step.name, source.joined))
    if step.kind == "batchnorm":
        _attach_batchnorm(step.name, source, found)
    if step.kind == "activation":
        for p in producers:
            found.activation.setdefault(p, step.name)
    return source


def _attach_batchnorm(bn, source, found):
    """A BatchNorm right after one producer (through per-channel steps) is that layer's; one after
    an addition belongs to the whole group; one after a Flatten normalises single features."""
    if source.span != 1:
        for p in source.producers:
            found.blocked[p].append(f"normalised feature by feature by {bn} after a flatten")
    elif len(source.producers) == 1 and not source.joined:
        (p,) = source.producers
        if p not in found.batchnorm:
            found.batchnorm[p] = bn
        else:
            found.shared_batchnorms.append((p, bn))
    else:
        found.shared_batchnorms.extend((p, bn) for p in source.producers)


def _propagate(steps, x, out) -> _Found:
    found = _Found()
    sources = {id(x): _Source(frozenset({INPUT}))}
    found.blocked[INPUT].append(INPUT_REASON)
    for step in steps:
        source = _read(step, sources, found)
        if source is not None:
            sources[id(step.tensor)] = source
    for p in sources[id(out)].producers if id(out) in sources else ():
        found.blocked[p].append(OUTPUT_REASON)
    return found


# --- residual blocks --------------------------------------------------------------------------
def _after_join(join, block, inside, readers) -> list | None:
    """The per-channel steps from the addition to the block's output, or None if the
    addition's result goes anywhere else first."""
    after, t = [], join.tensor
    while t is not block.output:
        nxt = [s for s in readers[id(t)] if id(s) in inside]
        if len(nxt) != 1 or nxt[0].kind not in ("activation", "channelwise"):
            return None
        after.append(nxt[0])
        t = nxt[0].tensor
    return after


def _branch(start, inside, producer_of) -> tuple:
    """Leaf modules that compute `start` inside the block (whose steps stop at its input x),
    in execution order."""
    steps, todo = {}, [start]
    while todo:
        t = todo.pop()
        step = producer_of.get(id(t))
        if step is None or id(step) not in inside or id(step) in steps:
            continue
        steps[id(step)] = step
        todo.extend(step.inputs)
    calls = sorted((s.call for s in steps.values() if s.call is not None), key=lambda c: c.seq)
    return tuple(c.name for c in calls)


def _residual_blocks(steps, containers, insides) -> list[ResidualBlock]:
    """Container modules whose output is x + f(x) for their one input x; an addition belongs to
    the innermost module that qualifies (a Sequential of one block does not count twice)."""
    producer_of = {id(s.tensor): s for s in steps}
    readers = defaultdict(list)
    for s in steps:
        for t in s.inputs:
            readers[id(t)].append(s)
    blocks, claimed = {}, set()
    for call in sorted(containers, key=lambda c: -_depth(c.name)):
        if len(call.inputs) != 1 or call.seq not in insides or call.name in blocks:
            continue
        x, inside = call.inputs[0], insides[call.seq]
        for step in (s for s in steps if id(s) in inside and id(s) not in claimed):
            if step.tensor._op is not F.Add or step.call is not None:
                continue
            others = [t for t in step.inputs if t is not x]
            if len(step.inputs) != 2 or len(others) != 1:  # not x + something else
                continue
            after = _after_join(step, call, inside, readers)
            if after is not None:
                branch = _branch(others[0], inside, producer_of)
                made = producer_of.get(id(others[0]))
                last = made.call.name if made is not None and made.call is not None else None
                blocks[call.name] = (call.seq, ResidualBlock(
                    call.name, branch, step.name, tuple(s.name for s in after),
                    last if last in branch else None,
                    tuple(s.name for s in after if s.call is None)))
                claimed.add(id(step))
                break
    return [b for _, b in sorted(blocks.values(), key=lambda sb: sb[0])]


# --- putting it together ------------------------------------------------------------------------
def _groups(order, units, found) -> list[Group]:
    """One Group per set of coupled producers, numbered by their first layer's execution."""
    uf, position = found.groups, {name: i for i, name in enumerate(order)}
    members = defaultdict(list)
    for layer in order:
        members[uf.find(layer)].append(layer)
    groups = []
    for root, producers in members.items():
        everyone = producers + ([INPUT] if uf.find(INPUT) == root else [])
        own = [found.batchnorm[p] for p in producers if p in found.batchnorm]
        shared = [bn for p, bn in found.shared_batchnorms if uf.find(p) == root]
        readers = {c: None for p in everyone for c in found.consumers[p]}
        reasons = {r: None for p in everyone for r in found.blocked[p]}
        groups.append(Group(len(groups), units[producers[0]], tuple(producers),
                            tuple(dict.fromkeys(own + shared)),
                            tuple(sorted(readers, key=lambda c: position[c.layer])),
                            tuple(reasons)))
    return groups


class DependencyGraph:
    """What `dependency_graph` found (read-only). Layers are named by module name; an operation
    between modules by its module and op ("layer1.0.add").

    units    {prunable layer: its output channels/neurons}, in execution order (`order`)
    groups   the coupled channel groups (`Group`), numbered in execution order
    blocks   the residual blocks (`ResidualBlock`): modules computing x + f(x)
    nodes    every traced step (`Node`): the network as the trace saw it
    """

    def __init__(self, model_name, input_shape, steps, units, words, found, groups, blocks,
                 untraced):
        self.model_name, self.input_shape = model_name, input_shape
        names = {id(s.tensor): s.name for s in steps}
        self.nodes = tuple(Node(s.name, s.kind, tuple(names.get(id(t), INPUT) for t in s.inputs),
                                tuple(s.tensor.shape[1:])) for s in steps)
        self.units = units
        self.groups, self.blocks = tuple(groups), tuple(blocks)
        self.untraced = tuple(untraced)  # prunable layers the forward pass never called
        self._found, self._words = found, words  # words: "channels" (Conv2d) or "units"
        self._group = {p: g for g in self.groups for p in g.producers}

    @property
    def order(self) -> tuple[str, ...]:
        """The prunable layers in the order the forward pass first ran them."""
        return tuple(self.units)

    def _layer(self, layer) -> str:
        if not isinstance(layer, str) or layer not in self.units:
            raise ValueError(f"layer: {layer!r} is not a prunable layer of the traced model; "
                             f"they are {list(self.units)}")
        return layer

    def group_of(self, layer) -> Group:
        """The group `layer`'s output channels belong to."""
        return self._group[self._layer(layer)]

    def batchnorm_of(self, layer) -> str | None:
        """The BatchNorm that normalises `layer`'s output — the first one its channels reach
        through per-channel steps only (ReLU, pooling), before any addition — or None."""
        return self._found.batchnorm.get(self._layer(layer))

    def activation_after(self, layer) -> str | None:
        """The first ReLU module that `layer`'s channels reach (through BatchNorm, pooling or a
        residual addition: then it is shared by the whole group), or None."""
        return self._found.activation.get(self._layer(layer))

    def consumers(self, layer) -> tuple[Consumer, ...]:
        """The layers that read `layer`'s output channels as their input channels, in execution
        order (through an addition, everything that reads the sum)."""
        position = {name: i for i, name in enumerate(self.units)}
        found = dict.fromkeys(self._found.consumers[self._layer(layer)])
        return tuple(sorted(found, key=lambda c: position[c.layer]))

    def sources(self, layer) -> tuple[tuple[str, int], ...]:
        """(producer, span) for what `layer` reads as its input channels: one producer, several
        (it reads a residual sum), or INPUT (the model input, always whole); () if untraceable."""
        self._layer(layer)
        return tuple((p, c.span) for p, cs in self._found.consumers.items() for c in cs
                     if c.layer == layer)

    def modules_after(self, layer) -> tuple[tuple[str, bool], ...]:
        """(module, shared) for the modules that carry `layer`'s channels one by one on the way
        to the next layers (BatchNorm, ReLU, pooling, ...; not after a flatten), in execution
        order; `shared` = after a residual addition, so it carries the whole group's sum."""
        return tuple(dict.fromkeys(self._found.passes[self._layer(layer)]))

    def check_mask(self, masks) -> None:
        """Raise a ValueError naming the group if `masks` would split one.

        `masks`: {layer: boolean per output unit, True = kept}; a layer left out keeps all its
        units. Split means a channel pruned in one producer of a group and kept in another; a
        producer with no unit left (a removed residual branch) adds nothing, so it splits nothing.

        >>> from minprune import models
        >>> graph = dependency_graph(models.resnet_tiny(), (1, 28, 28))
        >>> graph.check_mask({"conv1": np.ones(16, bool), "layer1.0.conv2": np.ones(16, bool)})
        >>> graph.check_mask({"conv1": np.arange(16) > 0})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: masks: group 0 (conv1, layer1.0.conv2) would be split: channel 0 is pruned in ...
        """
        kept = self._unit_masks(masks)
        for group in self.groups:
            live = [p for p in group.producers if p not in kept or kept[p].any()]
            if not live:
                continue
            first, *rest = live
            for other in rest:
                a, b = kept.get(first), kept.get(other)
                if a is None and b is None:
                    continue
                a = np.ones(group.channels, bool) if a is None else a
                b = np.ones(group.channels, bool) if b is None else b
                differ = np.flatnonzero(a != b)
                if differ.size:
                    c = int(differ[0])
                    pruned, kept_in = (other, first) if a[c] else (first, other)
                    raise ValueError(
                        f"masks: group {group.index} ({', '.join(group.producers)}) would be split: "
                        f"channel {c} is pruned in {pruned} but kept in {kept_in}; coupled "
                        "channels are pruned together")

    def _unit_masks(self, masks) -> dict:
        if not isinstance(masks, dict):
            raise TypeError(f"masks: expected a dict {{layer: boolean per output unit}}, got "
                            f"{type(masks).__name__}")
        out = {}
        for name, mask in masks.items():
            layer = name[:-len(".weight")] if isinstance(name, str) and name.endswith(".weight") \
                else name
            if layer not in self.units:
                raise ValueError(f"masks: {name!r} is not a prunable layer of the traced model; "
                                 f"they are {list(self.units)}")
            out[layer] = as_mask(mask, f"masks[{name!r}]", shape=(self.units[layer],))
        return out

    # --- printing ---------------------------------------------------------------------------
    def summary(self) -> str:
        """One line per group (producers [+ their BatchNorm], size, who reads it), then the
        residual blocks."""
        lines = [f"{self!r} on inputs {self.input_shape}:"]
        lines += [_describe(g, self._found.batchnorm, self._words[g.producers[0]])
                  for g in self.groups]
        if self.blocks:
            lines.append("residual blocks (output = x + f(x)):")
            for b in self.blocks:
                then = f"; then {', '.join(_short(a, b.module) for a in b.after)}" if b.after else ""
                lines.append(f"  {b.module}: f = {', '.join(_short(m, b.module) for m in b.branch)}"
                             + then)
        if self.untraced:
            lines.append(f"never called by the forward pass: {', '.join(self.untraced)}")
        return "\n".join(lines)

    __str__ = summary

    def __repr__(self):
        return (f"DependencyGraph({self.model_name}: {_count(len(self.units), 'prunable layer')} in "
                f"{_count(len(self.groups), 'group')}, {_count(len(self.blocks), 'residual block')})")


def _count(n, noun) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _short(name, parent) -> str:
    """`name` relative to the module `parent` when it lies inside it ("bn1" in "layer1.0")."""
    prefix = parent + "." if parent else ""
    return name[len(prefix):] if name.startswith(prefix) and name != parent else name


def _describe(group, own_batchnorm, unit) -> str:
    """group 0: conv1 [+bn1], layer1.0.conv2 [+bn2] (16 channels) -> read by layer1.0.conv1, ..."""
    def producer(p):
        bn = own_batchnorm.get(p)
        if bn is None:
            return p
        parent = p.rpartition(".")[0]
        short = _short(bn, parent)
        return f"{p} [+{short if not short.isdigit() else bn}]"

    own = set(own_batchnorm.get(p) for p in group.producers)
    shared = [bn for bn in group.batchnorms if bn not in own]
    text = f"group {group.index}: {', '.join(map(producer, group.producers))}"
    text += "".join(f" [+{bn}]" for bn in shared) + f" ({group.channels} {unit})"
    readers = [str(c) for c in group.consumers] + \
        (["model output"] if OUTPUT_REASON in group.blocked else [])
    text += f" -> read by {', '.join(readers)}" if group.consumers else \
        f" -> {', '.join(readers) or 'nothing'}"
    other = [r for r in group.blocked if r != OUTPUT_REASON]
    if group.blocked:
        text += f"  (kept: {'; '.join(other)})" if other else "  (kept)"
    return text


def _check_input_shape(input_shape) -> tuple:
    if not isinstance(input_shape, (tuple, list)):
        raise TypeError(f"input_shape: expected one example's shape as a tuple, e.g. (1, 28, 28), "
                        f"got {input_shape!r}")
    return tuple(checks.each(input_shape, "input_shape", checks.integer, minimum=1))


def dependency_graph(model, input_shape) -> DependencyGraph:
    """Trace `model` once on inputs of `input_shape` (one example, no batch axis) and return its
    dependency graph: units, coupled groups, consumers, BatchNorms, activations, residual blocks.

    Cost: one forward pass of two examples in eval mode (BatchNorm statistics, weights and every
    module's train/eval mode are left as they were).

    >>> from minprune import models
    >>> print(dependency_graph(models.lenet5(), (1, 28, 28)))
    DependencyGraph(Classifier: 5 prunable layers in 5 groups, 0 residual blocks) on inputs (1, 28, 28):
    group 0: features.0 (6 channels) -> read by features.3
    group 1: features.3 (16 channels) -> read by classifier.1 (×25 features)
    group 2: classifier.1 (120 units) -> read by classifier.3
    group 3: classifier.3 (84 units) -> read by classifier.5
    group 4: classifier.5 (10 units) -> model output  (kept)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    input_shape = _check_input_shape(input_shape)
    x, out, leaves, containers = _run_hooked(model, input_shape)
    steps = _steps(x, out, leaves)
    insides = _name_steps(steps, containers)
    found = _propagate(steps, x, out)
    units, words = {}, {}
    for call in sorted((s.call for s in steps if s.kind == "layer"), key=lambda c: c.seq):
        units.setdefault(call.name, int(call.module.weight.shape[OUTPUT_AXIS]))
        words[call.name] = "channels" if isinstance(call.module, nn.Conv2d) else "units"
    untraced = [n for n, m in model.named_modules() if isinstance(m, PRUNABLE) and n not in units]
    return DependencyGraph(type(model).__name__, input_shape, steps, units, words, found,
                           _groups(list(units), units, found),
                           _residual_blocks(steps, containers, insides), untraced)
