"""Checkers of lesson 12 — the lottery ticket (`lessons/12_lottery_ticket.ipynb`)."""
from __future__ import annotations

import copy

import numpy as np

from .. import models, nn
from ..prune import prune
from ..prune.masks import prunable_layers
from .core import as_array, correct, exercise, fail, require_callable, rng_for


def _conv_net(rng, bn: bool) -> nn.Sequential:
    """A small conv + linear net for 8×8 inputs, random widths, with nonzero biases (and a
    BatchNorm after the convolution when `bn`), as after some training."""
    c, h = int(rng.integers(4, 9)), int(rng.integers(16, 49))
    layers = [nn.Conv2d(1, c, 3, rng=rng)] + ([nn.BatchNorm2d(c)] if bn else [])
    layers += [nn.ReLU(), nn.Flatten(), nn.Linear(c * 6 * 6, h, rng=rng), nn.ReLU(),
               nn.Linear(h, 10, rng=rng)]
    net = nn.Sequential(*layers)
    for p in net.parameters():
        if p.data.ndim == 1:
            p.data[...] = rng.normal(0, 0.05, p.shape)
    return net


# --- 12.1: rewinding -------------------------------------------------------------------------------
def _rewind_case(rng, net: str, state_sparsity, final: dict):
    """(description, model, state): a model whose state was saved (dense, or at an earlier, less
    pruned round), then "trained" (every weight moved) and pruned further with `final`."""
    model = models.lenet_300_100(seed=int(rng.integers(1000))) if net == "lenet" else \
        _conv_net(rng, bn=net == "conv+bn")
    if state_sparsity is not None:
        prune(model, state_sparsity, criterion="random", scope="layerwise",
              seed=int(rng.integers(1000)))
    state = model.state_dict()
    for p in model.parameters():
        p.data += rng.normal(0, 0.02, p.shape).astype(p.data.dtype)
        if p.mask is not None:
            p.data *= p.mask
    exclude = list(prunable_layers(model))[-1:] if final.get("granularity") == "filter" else []
    prune(model, **final, exclude=exclude)
    what = {"lenet": "LeNet-300-100", "conv": "a conv net", "conv+bn": "a conv net with BatchNorm"}[net]
    how = ", ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in final.values())
    saved = ("a dense initial state" if state_sparsity is None else
             f"a state saved at sparsity {state_sparsity:.2f} (it holds older masks)")
    return f"{what} pruned ({how}), rewound to {saved}", model, state


def _rewind_cases(variant):
    rng = rng_for(variant, 12)
    if variant is None:
        specs = [("lenet", None, dict(sparsity=0.8, criterion="magnitude", scope="global")),
                 ("lenet", 0.3, dict(sparsity=0.8, criterion="magnitude", scope="global")),
                 ("conv+bn", None, dict(sparsity=0.5, criterion="magnitude", granularity="filter",
                                        scope="layerwise"))]
    else:
        specs = []
        for net in ("lenet", ("conv", "conv+bn")[int(rng.integers(2))], "conv+bn"):
            state_sparsity = None if rng.random() < 0.4 else float(rng.uniform(0.2, 0.5))
            if net != "lenet" and rng.random() < 0.5:
                final = dict(sparsity=float(rng.uniform(0.5, 0.7)), criterion="magnitude",
                             granularity="filter", scope="layerwise")
            else:
                final = dict(sparsity=float(rng.uniform(0.6, 0.95)), criterion="magnitude",
                             scope=("global", "layerwise")[int(rng.integers(2))])
            specs.append((net, state_sparsity, final))
    return [_rewind_case(rng, *spec) for spec in specs]


@exercise("12.1", blocks=["minprune.prune.schedules.rewind"])
def check_rewind(fn, variant=None) -> None:
    """`fn(model, state) -> model`: set every parameter back to `state` (a state_dict), keeping the
    model's *current* masks — survivors get exactly their saved values, pruned entries stay 0.

    Checked on pruned LeNet-300-100s and small conv nets (one with BatchNorm, filter-pruned, so
    biases and BatchNorm parameters carry masks too), with states saved dense or at an earlier,
    less pruned round (such a state holds older masks that must not come back)."""
    require_callable(fn, "fn")
    for what, model, state in _rewind_cases(variant):
        saved = {k: v.copy() for k, v in state.items()}
        masks = {n: None if p.mask is None else p.mask.copy() for n, p in model.named_parameters()}
        out = fn(model, state)
        model = model if out is None else out
        if not isinstance(model, nn.Module):
            fail(f"with {what}: fn returned {type(model).__name__}, expected the model.",
                 "rewind in place and `return model`.")
        for k, v in state.items():
            if not np.array_equal(v, saved[k]):
                fail(f"with {what}: your function modified the saved state ({k!r}).",
                     "copy values out of `state`; never write into it (it is reused every round).")
        params = dict(model.named_parameters())
        if set(params) != set(masks):
            fail(f"with {what}: fn returned a different model (its parameters are "
                 f"{sorted(params)[:3]}...).", "rewind the model you were given and return it.")
        for n, p in params.items():
            old = masks[n]
            if (p.mask is None) != (old is None) or (old is not None and
                                                     not np.array_equal(p.mask, old)):
                revived = 0 if old is None else int(np.count_nonzero(p.data[~old]))
                fail(f"with {what}: {n!r} no longer has its current mask "
                     f"({revived} pruned entries came back).",
                     "loading a state_dict also loads the state's masks (or none): remember "
                     "each parameter's mask before loading and put it back afterwards "
                     "(or load only the values, not the `_mask` entries).")
            want = saved[n] if old is None else saved[n] * old
            if old is not None and np.any(p.data[~old] != 0):
                fail(f"with {what}: pruned entries of {n!r} are not 0.",
                     "re-apply the mask after loading the old values.")
            if not np.array_equal(p.data, want):
                diff = float(np.max(np.abs(p.data - want)))
                if n.endswith("bias") or p.data.ndim == 1:
                    fail(f"with {what}: {n!r} was not rewound (max difference {diff:.3g}).",
                         "rewind every parameter in the state — biases and BatchNorm scales "
                         "and shifts too, not only the Conv2d/Linear weights.")
                fail(f"with {what}: surviving weights of {n!r} differ from the saved ones "
                     f"(max difference {diff:.3g}).",
                     "rewinding copies the saved values exactly — no training, no rescaling.")
    correct("survivors restored exactly, current masks kept")


# --- 12.2: mask overlap ----------------------------------------------------------------------------
def _kept(model) -> np.ndarray:
    """Which Conv2d/Linear weights are nonzero, all layers concatenated."""
    return np.concatenate([m.weight.data.ravel() != 0 for m in prunable_layers(model).values()])


def _overlap(model_a, model_b) -> float:
    """Among the survivors of model_a, the fraction that survive in model_b (pooled)."""
    ka, kb = _kept(model_a), _kept(model_b)
    return float((ka & kb).sum() / ka.sum())


def _overlap_cases(variant):
    """(description, model_a, model_b) pairs: two prunings of the same network."""
    rng = rng_for(variant, 122)
    if variant is None:
        base = models.lenet_300_100(seed=2)
        pairs = [(0.8, "magnitude", "global", 0.8, "random", "layerwise"),
                 (0.9, "magnitude", "global", 0.5, "random", "layerwise"),
                 (0.5, "magnitude", "global", 0.95, "random", "layerwise"),
                 (0.9, "magnitude", "layerwise", 0.9, "magnitude", "global")]
        nets = [("LeNet-300-100", base)] * 4 + [("a conv net", _conv_net(rng, bn=False))]
        pairs.append((0.7, "magnitude", "global", 0.6, "random", "layerwise"))
    else:
        nets, pairs = [], []
        for net in ("lenet", "conv", "conv"):
            nets.append(("LeNet-300-100", models.lenet_300_100(seed=int(rng.integers(1000))))
                        if net == "lenet" else ("a conv net", _conv_net(rng, bn=False)))
            crit = [("magnitude", "random")[int(rng.integers(2))] for _ in range(2)]
            scope = [("global", "layerwise")[int(rng.integers(2))] for _ in range(2)]
            sa, sb = (float(rng.uniform(0.3, 0.95)) for _ in range(2))
            pairs.append((sa, crit[0], scope[0], sb, crit[1], scope[1]))
    cases = []
    for (name, base), (sa, ca, pa, sb, cb, pb) in zip(nets, pairs):
        a, b = copy.deepcopy(base), copy.deepcopy(base)
        for model, s, c, scope in ((a, sa, ca, pa), (b, sb, cb, pb)):
            seed = dict(seed=int(rng.integers(1000))) if c == "random" else {}
            prune(model, s, criterion=c, scope=scope, **seed)
        cases.append((f"{name}: {sa:.0%} {pa} {ca} vs {sb:.0%} {pb} {cb}", a, b))
    cases.append((f"{nets[0][0]}: a pruned model with itself", cases[0][1], cases[0][1]))
    return cases


def _overlap_hint(got, a, b) -> str:
    """The usual slip behind a wrong overlap `got`."""
    ka, kb = _kept(a), _kept(b)
    guesses = [
        (np.mean(ka == kb), "you counted weights pruned in both as agreeing; count only the "
                            "survivors of model_a."),
        ((ka & kb).sum() / (ka | kb).sum(), "that is the Jaccard index (divided by the union); "
                                            "divide by model_a's survivors."),
        ((ka & kb).sum() / kb.sum(), "divide by the number of survivors in model_a, not model_b."),
        (100 * (ka & kb).sum() / ka.sum(), "return a fraction in [0, 1], not a percentage."),
    ]
    la, lb = prunable_layers(a), prunable_layers(b)
    per_layer = [float(((la[n].weight.data != 0) & (lb[n].weight.data != 0)).sum()
                       / max((la[n].weight.data != 0).sum(), 1)) for n in la]
    guesses.append((np.mean(per_layer), "you averaged per-layer fractions; pool the counts over "
                                        "all layers instead."))
    linear = [n for n in la if isinstance(la[n], nn.Linear)]
    if len(linear) < len(la):
        ka_l = np.concatenate([la[n].weight.data.ravel() != 0 for n in linear])
        kb_l = np.concatenate([lb[n].weight.data.ravel() != 0 for n in linear])
        guesses.append(((ka_l & kb_l).sum() / ka_l.sum(),
                        "you left out the Conv2d layers: pool every Conv2d and Linear weight."))
    biases = [(pa.data.ravel() != 0, pb.data.ravel() != 0) for (na, pa), (_, pb)
              in zip(a.named_parameters(), b.named_parameters())]
    ka_all = np.concatenate([x for x, _ in biases])
    kb_all = np.concatenate([y for _, y in biases])
    guesses.append(((ka_all & kb_all).sum() / ka_all.sum(),
                    "weights only: leave the biases out (they are never pruned)."))
    for value, hint in guesses:
        if np.isclose(got, value, atol=1e-9):
            return hint
    return "pool all layers: (kept in a AND kept in b).sum() / (kept in a).sum()."


@exercise("12.2", blocks=["minprune.exercises.lesson12._overlap", "minprune.exercises.lesson12._kept",
                          "minprune.exercises.core.all_prunable"])
def check_mask_overlap(fn, variant=None) -> None:
    """`fn(model_a, model_b) -> float`: among the Conv2d/Linear weights that survive in `model_a`
    (nonzero), the fraction that also survive in `model_b`, pooled over all layers.

    Checked on pairs of prunings of one network (magnitude or random, global or layerwise, at
    different sparsities), on LeNet-300-100 and on a conv net with nonzero biases."""
    require_callable(fn, "fn")
    for how, a, b in _overlap_cases(variant):
        want = _overlap(a, b)
        got = float(as_array(fn(a, b), f"fn({how})"))
        if not np.isclose(got, want, atol=1e-9):
            fail(f"for {how}: expected {want:.6f}, got {got:.6f}.", _overlap_hint(got, a, b))
    correct("your overlap is right")
