"""Checkers of lesson 12 — the lottery ticket (`lessons/12_lottery_ticket.ipynb`)."""
from __future__ import annotations

import numpy as np

from .core import (
    all_prunable,
    as_array,
    correct,
    fail,
    prunable_weights,
    require_callable,
)


def check_rewind(fn) -> None:
    """`fn(model, state) -> model`: set the weights back to `state` (a state_dict), keeping the
    model's *current* masks — survivors get exactly their saved values, pruned weights stay 0."""
    require_callable(fn, "fn")
    from .. import models
    from ..prune import prune
    from ..prune.masks import prunable_layers

    for seed, state_sparsity in ((0, None), (1, 0.3)):
        model = models.lenet_300_100(seed=seed)
        rng = np.random.default_rng(seed)
        if state_sparsity is not None:  # a state saved from an earlier, less pruned round
            prune(model, state_sparsity, criterion="random", scope="layerwise", seed=seed)
        state = model.state_dict()
        saved = {k: v.copy() for k, v in state.items()}
        for p in model.parameters():  # "training": every weight moves
            p.data += rng.normal(0, 0.02, p.shape).astype(p.data.dtype)
            if p.mask is not None:
                p.data *= p.mask
        prune(model, 0.8, criterion="magnitude", scope="global")
        masks = {n: m.weight.mask.copy() for n, m in prunable_layers(model).items()}
        what = ("a dense initial state" if state_sparsity is None else
                f"a state saved at sparsity {state_sparsity} (it holds older masks)")
        out = fn(model, state)
        model = model if out is None else out
        for k, v in state.items():
            if not np.array_equal(v, saved[k]):
                fail(f"with {what}: your function modified the saved state ({k!r}).",
                     "copy values out of `state`; never write into it (it is reused every round).")
        for n, layer in prunable_layers(model).items():
            w, mask = layer.weight.data, layer.weight.mask
            if mask is None or not np.array_equal(mask, masks[n]):
                revived = int(np.count_nonzero(w[~masks[n]]))
                fail(f"with {what}: layer {n!r} no longer has the current mask "
                     f"({revived} pruned weights came back).",
                     "`load_state_dict(state)` also loads the state's masks (or none): remember "
                     "each parameter's mask before loading and `set_mask` it again afterwards "
                     "(or load only the weights).")
            if np.any(w[~mask] != 0):
                fail(f"with {what}: pruned weights of {n!r} are not 0.",
                     "re-apply the mask after loading the old values.")
            old = saved[f"{n}.weight"]
            if not np.array_equal(w[mask], old[mask]):
                fail(f"with {what}: surviving weights of {n!r} differ from the saved ones "
                     f"(max difference {np.max(np.abs(w[mask] - old[mask])):.3g}).",
                     "rewinding copies the saved values exactly — no training, no rescaling.")
            if layer.bias is not None and not np.array_equal(layer.bias.data, saved[f"{n}.bias"]):
                fail(f"with {what}: the bias of {n!r} was not rewound.",
                     "rewind every parameter in the state, biases included.")
    correct("survivors restored exactly, current masks kept")


def check_mask_overlap(fn) -> None:
    """`fn(model_a, model_b) -> float`: among the Conv2d/Linear weights that survive in `model_a`
    (nonzero), the fraction that also survive in `model_b`, pooled over all layers."""
    require_callable(fn, "fn")
    import copy

    from .. import models
    from ..prune import prune

    base = models.lenet_300_100(seed=2)
    cases = []
    for sa, sb, how in ((0.8, 0.8, "magnitude vs random, both 80%"),
                        (0.9, 0.5, "90% magnitude vs 50% random"),
                        (0.5, 0.95, "50% magnitude vs 95% random")):
        a, b = copy.deepcopy(base), copy.deepcopy(base)
        prune(a, sa, criterion="magnitude", scope="global")
        prune(b, sb, criterion="random", scope="layerwise", seed=4)
        cases.append((how, a, b))
    a = copy.deepcopy(base)
    prune(a, 0.9, criterion="magnitude", scope="layerwise")
    cases.append(("a model with itself", a, a))
    for how, a, b in cases:
        ka, kb = all_prunable(a) != 0, all_prunable(b) != 0
        want = float((ka & kb).sum() / ka.sum())
        got = float(as_array(fn(a, b), f"fn({how})"))
        if np.isclose(got, want, atol=1e-9):
            continue
        hint = "pool all layers: (kept in a AND kept in b).sum() / (kept in a).sum()."
        if np.isclose(got, np.mean(ka == kb)):
            hint = ("you counted weights pruned in both as agreeing; count only the survivors "
                    "of model_a.")
        elif np.isclose(got, (ka & kb).sum() / (ka | kb).sum()):
            hint = "that is the Jaccard index (divided by the union); divide by model_a's survivors."
        elif np.isclose(got, (ka & kb).sum() / kb.sum()):
            hint = "divide by the number of survivors in model_a, not model_b."
        else:
            per_layer = [float(((wa != 0) & (wb != 0)).sum() / max((wa != 0).sum(), 1))
                         for wa, wb in zip(prunable_weights(a), prunable_weights(b))]
            if np.isclose(got, np.mean(per_layer)):
                hint = "you averaged per-layer fractions; pool the counts over all layers instead."
        fail(f"for {how}: expected {want:.6f}, got {got:.6f}.", hint)
    correct("your overlap is right")
