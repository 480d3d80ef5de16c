"""prune.graph: one traced dependency graph (units, coupled groups, consumers, BatchNorms,
activations, residual blocks) in place of the separate chain-only walks."""
import doctest

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minprune as mp
from minprune import autograd, models, nn
from minprune.nn import functional as fn
from minprune.prune import graph as G
from minprune.prune import masks, metrics
from minprune.prune.graph import Consumer, dependency_graph
from minprune.tensor import Tensor

pytestmark = pytest.mark.pruning

MNIST = (1, 28, 28)


# --- chains: the graph answers what the old walks answered --------------------------------------
# The old chain-only walks, kept here as the reference the graph must reproduce on chains
# (masks, metrics and criteria now ask the graph).
def _old_trace(model, shape):
    """Prunable layers in the order forward hooks see them (the old `metrics._trace`)."""
    names = {id(m): n for n, m in model.named_modules()}
    seen = []
    handles = [m.register_forward_hook(lambda mod, i, o: seen.append(names[id(mod)]))
               for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    model.eval()
    with autograd.no_grad():
        model(Tensor(np.zeros((1, *shape), np.float32)))
    for h in handles:
        h.remove()
    return [(n,) for n in seen]


def _old_following_batchnorm(model, layer_name):
    """The next BatchNorm in definition order before the next prunable layer (the old walk)."""
    seen = False
    for name, m in model.named_modules():
        if name == layer_name:
            seen = True
        elif seen and isinstance(m, (nn.Conv2d, nn.Linear)):
            return None
        elif seen and isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return m
    return None


def _chain_with_bn_everywhere():
    """BN right after a conv, BN after a ReLU, BN1d after a Linear, pooling, dropout, a flatten."""
    r = np.random.default_rng(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, rng=r), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 6, 3, rng=r), nn.ReLU(), nn.BatchNorm2d(6), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(54, 10, rng=r), nn.BatchNorm1d(10), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(10, 3, rng=r))


def _chain_global_pool():
    r = np.random.default_rng(1)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, rng=r), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(3, 5, 1, rng=r), nn.BatchNorm2d(5), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(5, 4, rng=r), nn.Linear(4, 2, rng=r))


def _mlp_with_bn():
    r = np.random.default_rng(2)
    return nn.Sequential(nn.Linear(5, 7, rng=r), nn.BatchNorm1d(7), nn.ReLU(), nn.Linear(7, 3, rng=r))


CHAINS = {
    "lenet_300_100": (lambda: models.lenet_300_100(), MNIST),
    "lenet5": (lambda: models.lenet5(), MNIST),
    "conv4": (lambda: models.conv4(), MNIST),
    "bn_everywhere": (_chain_with_bn_everywhere, (1, 8, 8)),
    "global_pool": (_chain_global_pool, (2, 6, 6)),
    "mlp_bn": (_mlp_with_bn, (5,)),
}


@pytest.mark.parametrize("name", CHAINS)
def test_chain_graph_answers_what_the_old_walks_answered(name):
    build, shape = CHAINS[name]
    model = build()
    names = {id(m): n for n, m in model.named_modules()}
    graph = dependency_graph(model, shape)
    layers = masks.prunable_layers(model)
    trace = _old_trace(model, shape)
    assert graph.order == tuple(n for n, *_ in trace)
    assert set(graph.units) == set(layers)
    for n, m in layers.items():
        assert graph.units[n] == m.weight.shape[0]
        old = _old_following_batchnorm(model, n)
        assert graph.batchnorm_of(n) == (None if old is None else names[id(old)]), n
    # consumers: each layer is read by the next one in the chain, a Flatten spreading a
    # channel over (next layer's inputs / this layer's outputs) features, as surgery assumes
    for (a, *_), (b, *_) in zip(trace, trace[1:]):
        span = layers[b].weight.shape[1] // layers[a].weight.shape[0]
        assert graph.consumers(a) == (Consumer(b, span),)
    last = trace[-1][0]
    assert graph.consumers(last) == ()
    # a chain couples nothing: one group per layer; only the logits are kept
    assert [g.producers for g in graph.groups] == [(n,) for n in graph.order]
    assert [g.prunable for g in graph.groups] == [n != last for n in graph.order]
    # the old "next ReLU" pairing (activation_density's keys) = the layers with an activation
    x = np.zeros((2, *shape), np.float32)
    paired = set(metrics.activation_density(model, x))
    assert {n for n in graph.order if graph.activation_after(n)} == paired


def test_chain_details_by_hand():
    graph = dependency_graph(_chain_with_bn_everywhere(), (1, 8, 8))
    assert graph.batchnorm_of("0") == "1"
    assert graph.batchnorm_of("3") == "5"  # conv → ReLU → BN: still that conv's BatchNorm
    assert graph.batchnorm_of("8") == "9"
    assert graph.batchnorm_of("12") is None
    assert graph.activation_after("0") == "2" and graph.activation_after("3") == "4"
    assert graph.activation_after("8") == "10" and graph.activation_after("12") is None
    assert graph.consumers("3") == (Consumer("8", 9),)  # 6 channels of 3×3 after the pool
    assert graph.group_of("3").batchnorms == ("5",)
    assert graph.blocks == ()


def test_flatten_maps_channel_c_to_its_run_of_features():
    """Channel c of a (C, H, W) map is features c·H·W … (c+1)·H·W − 1 of the Linear (C-order):
    checked numerically by zeroing one channel and seeing which Linear inputs change."""
    model = models.lenet5()
    (consumer,) = dependency_graph(model, MNIST).consumers("features.3")
    keep = np.ones(16, bool)
    keep[5] = False
    x = np.random.default_rng(0).standard_normal((1, 16, 5, 5)).astype(np.float32)
    flat = fn.flatten(Tensor(x)).data[0]
    zeroed = fn.flatten(Tensor(x * keep[None, :, None, None])).data[0]
    assert consumer.span == 25
    assert np.array_equal(flat != zeroed, ~consumer.inputs(keep))
    assert np.array_equal(~consumer.inputs(keep), np.arange(400) // 25 == 5)


# --- resnet_tiny, written out by hand ------------------------------------------------------------
RESNET8_GROUPS = [  # (producers, channels, BatchNorms, consumers with span)
    (("conv1", "layer1.0.conv2"), 16, ("bn1", "layer1.0.bn2"),
     ("layer1.0.conv1", "layer2.0.conv1", "layer2.0.downsample.0")),
    (("layer1.0.conv1",), 16, ("layer1.0.bn1",), ("layer1.0.conv2",)),
    (("layer2.0.conv1",), 32, ("layer2.0.bn1",), ("layer2.0.conv2",)),
    (("layer2.0.conv2", "layer2.0.downsample.0"), 32, ("layer2.0.bn2", "layer2.0.downsample.1"),
     ("layer3.0.conv1", "layer3.0.downsample.0")),
    (("layer3.0.conv1",), 64, ("layer3.0.bn1",), ("layer3.0.conv2",)),
    (("layer3.0.conv2", "layer3.0.downsample.0"), 64, ("layer3.0.bn2", "layer3.0.downsample.1"),
     ("fc",)),  # global average pooling then flatten: channel c is fc's input c (span 1)
    (("fc",), 10, (), ()),
]


def test_resnet_tiny_groups_by_hand():
    graph = dependency_graph(models.resnet_tiny(), MNIST)
    got = [(g.producers, g.channels, g.batchnorms, tuple(c.layer for c in g.consumers))
           for g in graph.groups]
    assert got == RESNET8_GROUPS
    assert all(c.span == 1 for g in graph.groups for c in g.consumers)
    assert [g.prunable for g in graph.groups] == [True] * 6 + [False]
    assert graph.groups[-1].blocked == (G.OUTPUT_REASON,)
    assert graph.order == ("conv1", "layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv1",
                           "layer2.0.conv2", "layer2.0.downsample.0", "layer3.0.conv1",
                           "layer3.0.conv2", "layer3.0.downsample.0", "fc")
    assert graph.consumers("layer3.0.downsample.0") == (Consumer("fc"),)
    assert graph.consumers("layer1.0.conv2") == (Consumer("layer2.0.conv1"),
                                                 Consumer("layer2.0.downsample.0"))
    assert graph.activation_after("conv1") == "relu"
    assert graph.activation_after("layer1.0.conv1") == "layer1.0.relu"
    assert graph.activation_after("layer1.0.conv2") == "layer1.0.relu_out"  # after the addition
    assert graph.activation_after("layer2.0.downsample.0") == "layer2.0.relu_out"
    assert graph.activation_after("fc") is None
    assert graph.group_of("layer1.0.conv2") is graph.group_of("conv1") is graph.groups[0]


def test_resnet_tiny_matches_following_batchnorm_and_trace_order():
    model = models.resnet_tiny(blocks=(2, 1, 2))
    names = {id(m): n for n, m in model.named_modules()}
    graph = dependency_graph(model, MNIST)
    assert graph.order == tuple(n for n, *_ in _old_trace(model, MNIST))
    for n in masks.prunable_layers(model):
        old = _old_following_batchnorm(model, n)
        assert graph.batchnorm_of(n) == (None if old is None else names[id(old)])


def _declared_blocks(model):
    """{block: names of its branch's layers} from the model's own `residual_branch`."""
    return {n: {f"{n}.{k}" for k in m.residual_branch}
            for n, m in model.named_modules() if getattr(m, "residual_branch", None)}


@pytest.mark.parametrize("blocks", [(1, 1, 1), (2, 2, 2), (3, 1, 2)])
def test_residual_blocks_found_from_the_trace_match_the_declared_ones(blocks):
    model = models.resnet_tiny(blocks=blocks)
    graph = dependency_graph(model, MNIST)
    declared = _declared_blocks(model)
    assert [b.module for b in graph.blocks] == list(declared)  # execution order = definition order
    for b in graph.blocks:
        with_params = {n for n in b.branch if any(True for _ in
                                                  model.get_submodule(n).parameters())}
        assert with_params == declared[b.module]
        assert b.branch[2] == f"{b.module}.relu" and b.after == (f"{b.module}.relu_out",)
        assert b.join == f"{b.module}.add"


def test_resnet14_identity_shortcuts_couple_every_block_of_a_stage():
    graph = dependency_graph(models.resnet_tiny(blocks=(2, 2, 2)), MNIST)
    coupled = [set(g.producers) for g in graph.groups if len(g.producers) > 1]
    assert coupled == [{"conv1", "layer1.0.conv2", "layer1.1.conv2"},
                       {"layer2.0.conv2", "layer2.0.downsample.0", "layer2.1.conv2"},
                       {"layer3.0.conv2", "layer3.0.downsample.0", "layer3.1.conv2"}]
    stage2 = graph.group_of("layer2.1.conv2")
    assert stage2.channels == 32
    assert set(stage2.batchnorms) == {"layer2.0.bn2", "layer2.0.downsample.1", "layer2.1.bn2"}
    assert [c.layer for c in stage2.consumers] == ["layer2.1.conv1", "layer3.0.conv1",
                                                   "layer3.0.downsample.0"]
    assert len(graph.groups) == 16 - 6  # 16 layers, three groups of three


def test_summary_is_one_line_per_group():
    graph = dependency_graph(models.resnet_tiny(), MNIST)
    lines = str(graph).splitlines()
    assert lines[0].startswith("DependencyGraph(ResNet: 10 prunable layers in 7 groups, "
                               "1 residual block)")
    assert lines[1] == ("group 0: conv1 [+bn1], layer1.0.conv2 [+bn2] (16 channels) -> read by "
                        "layer1.0.conv1, layer2.0.conv1, layer2.0.downsample.0")
    assert lines[4] == ("group 3: layer2.0.conv2 [+bn2], layer2.0.downsample.0 "
                        "[+layer2.0.downsample.1] (32 channels) -> read by layer3.0.conv1, "
                        "layer3.0.downsample.0")
    assert lines[7] == "group 6: fc (10 units) -> model output  (kept)"
    assert lines[9] == "  layer1.0: f = conv1, bn1, relu, conv2, bn2; then relu_out"
    assert graph.summary() == str(graph)


# --- random residual networks ------------------------------------------------------------------
class Residual(nn.Module):
    """x + f(x) (identity shortcut) or g(x) + f(x) (projection), then an optional ReLU."""

    def __init__(self, branch, shortcut=None, relu=True):
        super().__init__()
        self.branch = branch
        self.shortcut = shortcut
        self.relu = nn.ReLU() if relu else None

    def forward(self, x):
        y = self.branch(x) + (x if self.shortcut is None else self.shortcut(x))
        return y if self.relu is None else self.relu(y)


@st.composite
def residual_nets(draw):
    """(model, input shape, expected groups, expected BatchNorms, expected consumers, blocks)
    — the expectations worked out from the construction, not from the graph."""
    r = np.random.default_rng(draw(st.integers(0, 99)))
    c_in, side = draw(st.integers(1, 3)), draw(st.integers(3, 5))
    parent = {}  # union-find over producer names, "<input>" for the input

    def find(a):
        while parent.setdefault(a, a) != a:
            a = parent[a]
        return a

    bn_of, reads, identity_blocks = {}, {}, []
    layers, trunk, width = [], G.INPUT, c_in
    counter = iter(range(100))

    def conv(prefix, c_from, c_to, k, source, with_bn):
        name = f"{prefix}.{next(counter)}"
        mods = [(name, nn.Conv2d(c_from, c_to, k, padding=k // 2, rng=r))]
        reads[name] = source
        if with_bn:
            bn_of[name] = f"{prefix}.{next(counter)}"
            mods.append((bn_of[name], nn.BatchNorm2d(c_to)))
        return name, mods

    for i in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["plain", "identity", "projection"]))
        w = width if kind == "identity" else draw(st.integers(1, 5))
        if kind == "plain":
            name, mods = conv(f"body.{i}", width, w, 3, trunk, draw(st.booleans()))
            layers.append(_named_sequential(mods + [("r", nn.ReLU())]))
            trunk, width = name, w
            continue
        branch, source, c = [], trunk, width
        for _ in range(draw(st.integers(1, 3))):
            name, mods = conv(f"body.{i}.branch", c, w, 3, source, draw(st.booleans()))
            branch += mods + [(f"body.{i}.branch.{next(counter)}", nn.ReLU())]
            source, c = name, w
        branch.pop()  # no ReLU before the addition
        shortcut = None
        if kind == "projection":
            short_name, mods = conv(f"body.{i}.shortcut", width, w, 1, trunk, draw(st.booleans()))
            shortcut = _named_sequential(mods)
            parent[find(source)] = find(short_name)
            trunk = short_name
        else:
            parent[find(source)] = find(trunk)
            identity_blocks.append(f"body.{i}")
        layers.append(Residual(_named_sequential(branch), shortcut, relu=draw(st.booleans())))
        width = w
    pool = draw(st.booleans())
    head = [nn.AdaptiveAvgPool2d(1)] if pool else []
    features = width * (1 if pool else side * side)
    head += [nn.Flatten(), nn.Linear(features, 3, rng=r)]
    reads[f"head.{len(head) - 1}"] = trunk
    model = nn.Sequential()
    model.body = nn.Sequential(*layers)
    model.head = nn.Sequential(*head)
    span = 1 if pool else side * side
    return model, (c_in, side, side), find, bn_of, reads, identity_blocks, span


def _named_sequential(named):
    """A Sequential whose children are the given modules (names only document the expectation:
    nn.Sequential numbers them 0, 1, ...), so the test renames its expectations afterwards."""
    seq = nn.Sequential(*(m for _, m in named))
    object.__setattr__(seq, "_expected_names", [n for n, _ in named])
    return seq


def _actual_names(model):
    """{expected name used while building: real module name}."""
    rename = {}
    for prefix, m in model.named_modules():
        for i, expected in enumerate(getattr(m, "_expected_names", [])):
            rename[expected] = f"{prefix}.{i}"
    return rename


@given(residual_nets())
def test_random_residual_networks_group_as_the_additions_say(net):
    model, shape, find, bn_of, reads, identity_blocks, span = net
    graph = dependency_graph(model, shape)
    layers = masks.prunable_layers(model)
    head = next(n for n in layers if n.startswith("head"))
    rename = _actual_names(model) | {head: head}  # name while building → module name
    real = {v: k for k, v in rename.items()}

    # the groups are exactly the union-find classes of the construction
    expected = {}
    for n in layers:
        expected.setdefault(find(real[n]), set()).add(n)
    assert sorted(map(sorted, (set(g.producers) for g in graph.groups))) == \
        sorted(map(sorted, expected.values()))
    # no layer in two groups; every layer in one
    producers = [p for g in graph.groups for p in g.producers]
    assert sorted(producers) == sorted(layers)
    # channel counts agree inside each group
    for g in graph.groups:
        assert {layers[p].weight.shape[0] for p in g.producers} == {g.channels}
    # a group tied to the input (identity shortcut on the raw input) cannot be pruned
    for g in graph.groups:
        tied = find(real[g.producers[0]]) == find(G.INPUT)
        assert any("input" in r for r in g.blocked) == tied
    # BatchNorms and consumers, from the construction
    for n in layers:
        assert graph.batchnorm_of(n) == (rename[bn_of[real[n]]] if real[n] in bn_of else None)
        readers = {rename[c] for c, src in reads.items() if find(src) == find(real[n])}
        assert {c.layer for c in graph.group_of(n).consumers} == readers
        for c in graph.group_of(n).consumers:
            assert c.span == (span if c.layer == head else 1)
    # every addition's two inputs come from the same group
    joins = [node for node in graph.nodes if node.kind == "join"]
    assert len(joins) == sum(isinstance(m, Residual) for m in model.modules())
    for node in joins:
        behind = set.union(*(_producers_behind(graph, r) for r in node.reads))
        (group,) = {graph.group_of(p) for p in behind - {G.INPUT}}
        assert set(group.producers) >= behind - {G.INPUT}
        if G.INPUT in behind:
            assert not group.prunable
    # identity-shortcut blocks are found, projections are not
    assert [b.module for b in graph.blocks] == identity_blocks


def _producers_behind(graph, name):
    """The prunable layers (or the input) whose channels reach node `name`: walk back through
    the graph's nodes until a layer."""
    nodes = {n.name: n for n in graph.nodes}
    found, todo = set(), [name]
    while todo:
        n = todo.pop()
        if n == G.INPUT or nodes[n].kind == "layer":
            found.add(n)
        else:
            todo.extend(nodes[n].reads)
    return found


# --- other structures --------------------------------------------------------------------------
class _Twice(nn.Module):
    """Uses one ReLU module twice, and adds after BatchNorm (pre-activation style) to test a
    BatchNorm that belongs to a whole group."""

    def __init__(self):
        super().__init__()
        r = np.random.default_rng(0)
        self.a = nn.Conv2d(2, 4, 3, padding=1, rng=r)
        self.b = nn.Conv2d(2, 4, 1, rng=r)
        self.norm = nn.BatchNorm2d(4)
        self.act = nn.ReLU()
        self.c = nn.Conv2d(4, 3, 3, rng=r)
        self.unused = nn.Linear(3, 3, rng=r)

    def forward(self, x):
        y = self.act(self.norm(self.act(self.a(x)) + self.b(x)))
        return self.c(y).mean(axis=(2, 3))


def test_batchnorm_after_an_addition_belongs_to_the_group():
    graph = dependency_graph(_Twice(), (2, 5, 5))
    group = graph.group_of("a")
    assert group.producers == ("a", "b") and group.batchnorms == ("norm",)
    assert graph.batchnorm_of("a") is None and graph.batchnorm_of("b") is None
    assert graph.activation_after("a") == "act" and graph.activation_after("b") == "act"
    assert group.consumers == (Consumer("c"),) and group.prunable
    assert graph.untraced == ("unused",)
    assert "unused" not in graph.units
    assert graph.blocks == ()  # a + b is no x + f(x)
    # the mean over (2, 3) keeps channels, so c's outputs are the model output
    assert graph.group_of("c").blocked == (G.OUTPUT_REASON,)


class _Opaque(nn.Module):
    """A transpose between two layers: the graph cannot say which channels the second reads."""

    def __init__(self):
        super().__init__()
        r = np.random.default_rng(0)
        self.first = nn.Linear(4, 4, rng=r)
        self.second = nn.Linear(4, 2, rng=r)

    def forward(self, x):
        return self.second(self.first(x).T.T)


class _Doubler(nn.Module):
    def forward(self, x):
        return x * 2.0


def test_what_the_graph_cannot_follow_keeps_its_channels():
    graph = dependency_graph(_Opaque(), (4,))
    assert not graph.group_of("first").prunable
    assert graph.group_of("first").blocked == ("read by transpose, which the graph cannot follow",)
    assert graph.consumers("first") == ()
    # an unknown leaf module: opaque too, named in the reason
    r = np.random.default_rng(0)
    chain = nn.Sequential(nn.Linear(3, 4, rng=r), _Doubler(), nn.Linear(4, 2, rng=r))
    group = dependency_graph(chain, (3,)).group_of("0")
    assert group.blocked == ("read by 1, which the graph cannot follow",)
    assert "kept: read by 1" in str(dependency_graph(chain, (3,)))


def test_frozen_weights_still_trace_the_additions():
    model = models.resnet_tiny()
    for p in model.parameters():
        p.requires_grad = False
    graph = dependency_graph(model, MNIST)
    assert [(g.producers, g.channels) for g in graph.groups] == \
        [(p, c) for p, c, *_ in RESNET8_GROUPS]
    assert all(p.requires_grad is False for p in model.parameters())


def test_a_model_that_is_one_layer():
    graph = dependency_graph(nn.Linear(3, 2, rng=np.random.default_rng(0)), (3,))
    assert graph.units == {"": 2} and graph.groups[0].blocked == (G.OUTPUT_REASON,)


# --- check_mask ----------------------------------------------------------------------------------
def test_check_mask_refuses_a_split_group_and_names_it():
    graph = dependency_graph(models.resnet_tiny(blocks=(2, 1, 1)), MNIST)
    keep = np.ones(16, bool)
    keep[[3, 7]] = False
    graph.check_mask({"conv1": keep, "layer1.0.conv2": keep, "layer1.1.conv2": keep})
    graph.check_mask({"layer1.0.conv1": keep})  # a group of one cannot be split
    with pytest.raises(ValueError, match=r"group 0 \(conv1, layer1.0.conv2, layer1.1.conv2\) "
                                         r"would be split: channel 3 is pruned in layer1.0.conv2 "
                                         "but kept in conv1"):
        graph.check_mask({"conv1": keep | (np.arange(16) == 3), "layer1.0.conv2": keep,
                          "layer1.1.conv2": keep})
    # a layer left out keeps every channel: pruning the others alone splits the group
    with pytest.raises(ValueError, match="channel 3 is pruned in conv1 but kept in layer1.0.conv2"):
        graph.check_mask({"conv1.weight": keep})
    other = np.ones(32, bool)
    other[0] = False
    with pytest.raises(ValueError, match=r"group 4 \(layer2.0.conv2, layer2.0.downsample.0\)"):
        graph.check_mask({"layer2.0.downsample.0": other})


def test_check_mask_refuses_bad_masks():
    graph = dependency_graph(models.resnet_tiny(), MNIST)
    with pytest.raises(TypeError, match="masks: expected a dict"):
        graph.check_mask([np.ones(16, bool)])
    with pytest.raises(ValueError, match="masks: 'bn1' is not a prunable layer"):
        graph.check_mask({"bn1": np.ones(16, bool)})
    with pytest.raises(ValueError, match=r"masks\['conv1'\]"):
        graph.check_mask({"conv1": np.ones(15, bool)})
    with pytest.raises(TypeError, match=r"masks\['conv1'\]"):
        graph.check_mask({"conv1": np.full(16, 0.5)})


# --- the trace leaves the model as it was -----------------------------------------------------------
def test_trace_restores_modes_and_changes_no_state():
    model = models.resnet_tiny()
    model.train()
    model.layer2.eval()  # mixed modes must come back module by module
    modes = {n: m.training for n, m in model.named_modules()}
    before = {k: np.array(v, copy=True) for k, v in model.state_dict().items()}
    with autograd.no_grad():  # the trace records a graph even here, and leaves grad mode off
        dependency_graph(model, MNIST)
        assert not autograd.is_grad_enabled()
    assert {n: m.training for n, m in model.named_modules()} == modes
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert np.array_equal(before[k], after[k]), k
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks for m in model.modules())


def test_trace_in_train_mode_would_have_moved_batchnorm_statistics():
    """The check above can fail: a forward pass in train mode does move running_mean."""
    model = models.resnet_tiny()
    before = model.bn1.running_mean.copy()
    model(Tensor(np.random.default_rng(0).standard_normal((2, *MNIST)).astype(np.float32)))
    assert not np.array_equal(before, model.bn1.running_mean)


# --- bad arguments -------------------------------------------------------------------------------
@pytest.mark.parametrize("model, shape, error, match", [
    ("lenet5", MNIST, TypeError, "model: expected an nn.Module"),
    (None, 28, TypeError, "input_shape"),
    (None, (1, -28, 28), ValueError, r"input_shape\[1\]"),
    (None, (), ValueError, "input_shape"),
    (None, (1, 28.0, 28), TypeError, r"input_shape\[1\]"),
    (None, (3, 28, 28), ValueError, "input_shape: the model cannot run"),
])
def test_bad_arguments_are_named(model, shape, error, match):
    with pytest.raises(error, match=match):
        dependency_graph(models.lenet5() if model is None else model, shape)


def test_unknown_layer_names_are_refused():
    graph = dependency_graph(models.lenet5(), MNIST)
    for query in (graph.group_of, graph.batchnorm_of, graph.consumers, graph.activation_after):
        with pytest.raises(ValueError, match="layer: 'features.1' is not a prunable layer"):
            query("features.1")


def test_a_forward_that_returns_no_tensor_is_refused():
    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(x), x

    with pytest.raises(TypeError, match="model: its forward must return a Tensor"):
        dependency_graph(Pair(), (2,))


def test_docstring_examples():
    failed, tried = doctest.testmod(G)
    assert tried >= 8 and failed == 0


def test_pruned_model_with_activation_hooks_has_the_same_groups():
    """Weight masks, an activation mask on a block and run-time top-k hooks add Masked ops: they
    are per-channel steps, so the groups stay and the block's mask shows up after its ReLU."""
    model = models.resnet_tiny(blocks=(2, 1, 1))
    dense = dependency_graph(model, MNIST)
    model.layer1[1].output_mask = np.arange(16) % 2 == 0
    w = model.layer2[0].conv1.weight
    w.set_mask(np.arange(w.size).reshape(w.shape) % 3 > 0)
    hooks = mp.prune.activation_sparsity(model, 0.5)
    try:
        pruned = dependency_graph(model, MNIST)
    finally:
        hooks.remove()
    assert pruned.groups == dense.groups
    assert [b.after for b in pruned.blocks] == [("layer1.0.relu_out",),
                                                ("layer1.1.relu_out", "layer1.1.masked")]


def test_sources_and_modules_after_on_resnet_tiny():
    """What a layer reads (one producer, a residual sum, or the input) and which per-channel
    modules carry a layer's channels (own, or shared after the addition)."""
    graph = dependency_graph(models.resnet_tiny(), MNIST)
    assert graph.sources("conv1") == ((G.INPUT, 1),)
    assert graph.sources("layer1.0.conv2") == (("layer1.0.conv1", 1),)
    assert set(graph.sources("layer2.0.conv1")) == {("conv1", 1), ("layer1.0.conv2", 1)}
    assert set(graph.sources("fc")) == {("layer3.0.conv2", 1), ("layer3.0.downsample.0", 1)}
    assert graph.modules_after("conv1") == (("bn1", False), ("relu", False),
                                            ("layer1.0.relu_out", True))
    assert graph.modules_after("layer3.0.downsample.0") == (
        ("layer3.0.downsample.1", False), ("layer3.0.relu_out", True), ("avgpool", True))
    assert graph.modules_after("fc") == ()
    lenet = dependency_graph(models.lenet5(), MNIST)
    assert lenet.sources("classifier.1") == (("features.3", 25),)
