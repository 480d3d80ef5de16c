"""Checkers of lesson 14 (structure and depth): the lesson's reference answers and answers written
independently pass the self-check and hidden variants; the usual half-right answers fail with their
hint; the library's dependency graph, group Lasso and compact are refused while an answer runs; a
replayed answer fails the hidden variants."""
import copy

import numpy as np
import pytest
from checking import accepts, blocked, fails, fails_hidden, passes_hidden, replay_of

import minprune as mp
import minprune.exercises as ex
from minprune.course import notebooks as N
from minprune.exercises import lesson14 as L

pytestmark = pytest.mark.course


# --- 14.1 coupled groups ------------------------------------------------------------------------
def union_find_groups(nodes):
    """Written apart from the lesson's answer: union-find over the layers, sources by node."""
    parent, carries = {}, {}

    def find(a):
        while parent[a] != a:
            a = parent[a]
        return a

    for node in nodes:
        if node.kind == "layer":
            parent[node.name] = node.name
            carries[node.name] = [node.name]
        elif node.kind == "opaque":
            carries[node.name] = []
        else:
            carries[node.name] = [x for r in node.reads for x in carries.get(r, [])]
            if node.kind == "join":
                for a in carries[node.name][1:]:
                    parent[find(a)] = find(carries[node.name][0])
    groups = {}
    for layer in parent:
        groups.setdefault(find(layer), []).append(layer)
    return list(groups.values())


def test_coupled_groups_right_answers(capsys):
    for fn in (union_find_groups, N.reference_answer("14.1")):
        accepts(ex.check_coupled_groups, fn, capsys=capsys)
        passes_hidden(ex.check_coupled_groups, fn)
    # any iterable of iterables will do: tuples of sorted names, a dict of groups
    passes_hidden(ex.check_coupled_groups, lambda nodes: tuple(tuple(sorted(g))
                                                                for g in union_find_groups(nodes)))
    accepts(ex.check_coupled_groups, lambda nodes: dict(enumerate(union_find_groups(nodes))),
            capsys=capsys)


def test_coupled_groups_of_resnet_tiny_by_hand():
    nodes = mp.prune.dependency_graph(mp.models.resnet_tiny(), (1, 28, 28)).nodes
    coupled = sorted(sorted(g) for g in union_find_groups(nodes) if len(g) > 1)
    assert coupled == [["conv1", "layer1.0.conv2"],
                       ["layer2.0.conv2", "layer2.0.downsample.0"],
                       ["layer3.0.conv2", "layer3.0.downsample.0"]]


def test_coupled_groups_without_chaining_ties_fails():
    """One group per addition: right for resnet_tiny (each addition has its own layers), wrong for
    the fork, where two additions share a layer."""
    def per_addition(nodes):
        carries, groups = {}, []
        for node in nodes:
            if node.kind == "layer":
                carries[node.name] = {node.name}
                groups.append({node.name})
            else:
                carries[node.name] = set().union(*(carries.get(r, set()) for r in node.reads))
                if node.kind == "join":
                    groups = [g for g in groups if not g <= carries[node.name]]
                    groups.append(carries[node.name])
        return groups
    fails(ex.check_coupled_groups, per_addition, "two groups")


def test_coupled_groups_that_do_not_look_through_batchnorm_fail():
    """Ties only where an addition reads two layers directly: right for chains and the fork, wrong
    for resnet_tiny, whose additions read BatchNorms."""
    def direct(nodes):
        kind = {n.name: n.kind for n in nodes}
        groups = {n.name: {n.name} for n in nodes if n.kind == "layer"}
        for n in nodes:
            if n.kind == "join" and all(kind.get(r) == "layer" for r in n.reads):
                tied = set().union(*(groups[r] for r in n.reads))
                for layer in tied:
                    groups[layer] = tied
        return list({id(g): g for g in groups.values()}.values())
    fails(ex.check_coupled_groups, direct, "no layer is tied")


def test_coupled_groups_that_tie_readers_fail():
    """Every read treated as a tie: the whole network becomes one group."""
    def everything(nodes):
        return [{n.name for n in nodes if n.kind == "layer"}]
    fails(ex.check_coupled_groups, everything, "consumer")


def test_coupled_groups_with_other_nodes_or_the_input_fail():
    def with_batchnorms(nodes):
        return union_find_groups(nodes) + [[n.name for n in nodes if n.kind == "batchnorm"]]

    def with_input(nodes):
        return union_find_groups(nodes) + [["<input>"]]
    fails(ex.check_coupled_groups, with_batchnorms, "not layers")
    fails(ex.check_coupled_groups, with_input, "input")
    fails(ex.check_coupled_groups, lambda nodes: union_find_groups(nodes)[1:], "in no group")
    fails(ex.check_coupled_groups, lambda nodes: [n.name for n in nodes if n.kind == "layer"],
          "group of its own")
    fails(ex.check_coupled_groups, lambda nodes: None, "return")


def test_coupled_groups_library_is_blocked():
    def traced(nodes):
        graph = mp.prune.dependency_graph(mp.models.resnet_tiny(), (1, 28, 28))
        return [g.producers for g in graph.groups]
    err = blocked(ex.check_coupled_groups, traced)
    assert "dependency_graph" not in str(err)


def test_coupled_groups_replayed_fails():
    fails_hidden(ex.check_coupled_groups, replay_of(ex.check_coupled_groups, union_find_groups))


# --- 14.2 group-Lasso penalty ------------------------------------------------------------------
AXES = {"filter": (1, 2, 3), "channel": (0, 2, 3), "kernel": (2, 3), "filter_shape": (0,)}


def penalty(weights, granularity, strength, axes=AXES, power=1.0):
    return strength * sum((np.sqrt((np.asarray(w, np.float64) ** 2).sum(axis=axes[granularity]))
                           ** power).sum() for w in weights)


def test_penalty_right_answers(capsys):
    for fn in (penalty, N.reference_answer("14.2")):
        accepts(ex.check_group_lasso_penalty, fn, capsys=capsys)
        passes_hidden(ex.check_group_lasso_penalty, fn)

    def float32_loops(weights, granularity, strength):   # by hand, group by group, in float32
        total = np.float32(0)
        for w in weights:
            o, i, kh, kw = w.shape
            if granularity == "filter_shape":
                groups = [w[:, c, a, b] for c in range(i) for a in range(kh) for b in range(kw)]
            elif granularity == "kernel":
                groups = [w[f, c] for f in range(o) for c in range(i)]
            elif granularity == "channel":
                groups = [w[:, c] for c in range(i)]
            else:
                groups = [w[f] for f in range(o)]
            total += sum(np.sqrt(np.sum(g * g)) for g in groups)
        return strength * total
    passes_hidden(ex.check_group_lasso_penalty, float32_loops)


def test_penalty_by_hand():
    w = np.zeros((2, 1, 1, 2))
    w[:, 0, 0, 0] = [3, 4]     # one filter shape, norm 5; the other position is zero
    assert penalty([w], "filter_shape", 0.5) == pytest.approx(2.5)
    assert penalty([w], "filter", 0.5) == pytest.approx(3.5)   # ‖3‖ + ‖4‖
    reg = mp.prune.group_lasso(mp.nn.Sequential(mp.nn.Conv2d(1, 2, 1)), "filter_shape", 0.5)
    assert len(reg.names) == 1


def test_penalty_with_the_wrong_groups_fails():
    swapped = dict(AXES, filter_shape=AXES["kernel"])       # filter shapes scored as kernels
    fails(ex.check_group_lasso_penalty, lambda w, g, s: penalty(w, g, s, axes=swapped), "'kernel'")
    half = dict(AXES, filter_shape=(0, 1))   # right for filters, channels, kernels; not shapes
    fails(ex.check_group_lasso_penalty, lambda w, g, s: penalty(w, g, s, axes=half),
          "filter_shape")


def test_penalty_usual_slips_fail():
    check = ex.check_group_lasso_penalty
    fails(check, lambda w, g, s: penalty(w, g, s, power=2.0), "weight decay")
    fails(check, lambda w, g, s: s * sum(np.abs(x).sum() for x in w), "L1")
    fails(check, lambda w, g, s: penalty(w, g, 1.0), "strength")
    fails(check, lambda w, g, s: penalty(w[:1], g, s), "every layer")
    fails(check, lambda w, g, s: None, "return")
    fails(check, lambda w, g, s: [penalty([x], g, s) for x in w], "one number")


def test_penalty_mean_over_groups_fails():
    def mean(weights, granularity, strength):
        norms = np.concatenate([np.sqrt((w.astype(np.float64) ** 2).sum(axis=AXES[granularity])).ravel()
                                for w in weights])
        return strength * norms.mean()
    fails(ex.check_group_lasso_penalty, mean, "average")


def test_penalty_library_is_blocked():
    def through_library(weights, granularity, strength):
        convs = []
        for w in weights:
            conv = mp.nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], bias=False)
            conv.weight.data[...] = w
            convs.append(conv)
        model = mp.nn.Sequential(*convs)
        return mp.prune.group_lasso(model, granularity, strength)(model).item()
    err = blocked(ex.check_group_lasso_penalty, through_library)
    assert "group_lasso" not in str(err)

    def through_structures(weights, granularity, strength):
        view = mp.prune.structures.parse(granularity)
        return strength * sum(np.sqrt(view.group_scores(w ** 2, "sum")).sum() for w in weights)
    blocked(ex.check_group_lasso_penalty, through_structures)


def test_penalty_replayed_fails():
    fails_hidden(ex.check_group_lasso_penalty, replay_of(ex.check_group_lasso_penalty, penalty))


# --- 14.3 parameters left -----------------------------------------------------------------------
def params_left(model, graph, layer, k, coupled=True, readers=True, bn=2, span=True, bias=True):
    modules = dict(model.named_modules())
    group = graph.group_of(layer)
    removed = 0
    for name in (group.producers if coupled else [layer]):
        conv = modules[name]
        removed += k * conv.weight[0].size + (k if bias and conv.bias is not None else 0)
    own = [graph.batchnorm_of(layer)] if graph.batchnorm_of(layer) else []
    removed += bn * k * len(group.batchnorms if coupled else own)
    for c in (group.consumers if readers else ()):
        w = modules[c.layer].weight.data
        removed += k * (c.span if span else 1) * w.shape[0] * w[0, 0].size
    return sum(p.data.size for p in model.parameters()) - removed


def test_params_left_right_answers(capsys):
    for fn in (params_left, N.reference_answer("14.3")):
        accepts(ex.check_params_left, fn, capsys=capsys)
        passes_hidden(ex.check_params_left, fn)


def test_params_left_agrees_with_compact_on_resnet_tiny():
    model = mp.models.resnet_tiny()
    graph = mp.prune.dependency_graph(model, (1, 28, 28))
    pruned = copy.deepcopy(model)
    mp.prune.prune(pruned, scope={"conv1": 0.25, "layer1.0.conv2": 0.25}, granularity="filter")
    # 4 of group 0's 16 channels: 2·4·9 + 4·16·9 producer weights, 2·2·4 BatchNorm, 3 readers
    assert mp.prune.count_params(mp.prune.compact(pruned)) == params_left(model, graph, "conv1", 4)
    assert params_left(model, graph, "conv1", 4) == 77_754 - (4 * 9 + 4 * 144 + 16
                                                              + 4 * (16 * 9 + 32 * 9 + 32))


def test_params_left_usual_slips_fail():
    check = ex.check_params_left
    fails(check, lambda m, g, layer, k: params_left(m, g, layer, k, coupled=False), "coupled")
    fails(check, lambda m, g, layer, k: params_left(m, g, layer, k, readers=False), "consumers")
    fails(check, lambda m, g, layer, k: params_left(m, g, layer, k, bn=0), "γ and β")
    fails(check, lambda m, g, layer, k: params_left(m, g, layer, k, bn=4), "buffers")
    fails(check, lambda m, g, layer, k: params_left(m, g, layer, k, span=False), "span")
    fails(check, lambda m, g, layer, k: params_left(m, g, layer, k, bias=False), "bias")
    fails(check, lambda m, g, layer, k: sum(p.size for p in m.parameters())
          - params_left(m, g, layer, k), "number left")
    fails(check, lambda m, g, layer, k: None, "return")


def test_params_left_that_changes_the_model_fails():
    def cuts_in_place(model, graph, layer, k):
        n = params_left(model, graph, layer, k)
        dict(model.named_modules())[layer].weight.data[:k] = 0
        return n
    fails(ex.check_params_left, cuts_in_place, "changed the model")


def test_params_left_library_is_blocked():
    def through_compact(model, graph, layer, k):
        m = copy.deepcopy(model)
        group = graph.group_of(layer)
        mp.prune.prune(m, scope={p: k / group.channels for p in group.producers}, granularity="filter")
        return mp.prune.count_params(mp.prune.compact(m, graph.input_shape))
    err = blocked(ex.check_params_left, through_compact)
    assert "compact" not in str(err)
    blocked(ex.check_params_left, lambda m, g, layer, k: mp.prune.count_params(m))


def test_params_left_replayed_fails():
    fails_hidden(ex.check_params_left, replay_of(ex.check_params_left, params_left))


# --- the models the checkers trace ------------------------------------------------------------
def test_the_fork_ties_every_branch_through_the_shared_convolution():
    model = L._Fork(3, 4, np.random.default_rng(0))
    graph = mp.prune.dependency_graph(model, (1, 6, 6))
    assert L._groups_truth(graph) == {frozenset({"shared", "branches.0", "branches.1", "branches.2"}),
                                      frozenset({"heads.0", "heads.1", "heads.2"}),
                                      frozenset({"fc"})}


def test_hidden_variants_draw_other_models_and_cases():
    public = [name for name, _, _ in L._models(None, 41)]
    drawn = {name for seed in (1, 2, 3, 4, 5) for name, _, _ in L._models(seed, 41)}
    assert drawn - set(public)
    assert [c[0] for c in L._removal_cases(7)] != [c[0] for c in L._removal_cases(None)]
    assert [c[0] for c in L._penalty_cases(7)] != [c[0] for c in L._penalty_cases(None)]
