"""WHERE to prune: which groups fall, given their scores.

layerwise   every layer loses round(s · G) of its G groups (its lowest-scoring ones)
global      one ranking over all layers: the lowest-scoring groups anywhere fall, until the pruned
            weights reach round(s · N) of all N prunable weights (exact for unstructured)
{name: s}   layerwise with a sparsity per layer (layers not named are left alone)

Selection uses `np.argpartition` (O(n) introselect), not a full sort: on conv4's 870k weights
that is the difference between milliseconds and a sort. Ties break deterministically (the same
scores always give the same mask). Already pruned groups carry score −inf, so they are counted
first and stay pruned: pruning is monotone.
"""
from __future__ import annotations

import numpy as np

from .. import checks

SCOPES = ("global", "layerwise")


def check_sparsity(value, name="sparsity") -> float:
    """A sparsity: the fraction of weights removed, a number in [0, 1]."""
    return checks.fraction(value, name)


def lowest(scores: np.ndarray, k: int) -> np.ndarray:
    """Boolean array marking the k lowest entries of a 1-D array, in O(n)."""
    out = np.zeros(scores.shape, bool)
    if k >= scores.size:
        out[:] = True
    elif k > 0:
        out[np.argpartition(scores, k - 1)[:k]] = True
    return out


def layer_norm(scores: np.ndarray) -> np.ndarray:
    """Divide a layer's group scores by their L2 norm (Molchanov et al., 2017), ignoring −inf.

    Without it a global ranking of *groups* compares sums over groups of different sizes and
    scales: layers with small or few-weight groups are emptied first (see lesson 05)."""
    finite = np.isfinite(scores)
    norm = np.sqrt((scores[finite].astype(np.float64) ** 2).sum()) if finite.any() else 0.0
    return scores / norm if norm > 0 else scores


def select(group_scores: dict, group_sizes: dict, sparsity, scope="global",
           normalize=False) -> dict:
    """{layer: group scores} → {layer: boolean keep per group}.

    `group_sizes` gives the number of weights in each of a layer's groups (1 when unstructured).
    `scope` is "global", "layerwise" or {layer: sparsity}."""
    if isinstance(scope, dict):
        if not scope:
            raise ValueError("scope: an empty dict selects no layer; name at least one")
        return {n: ~lowest(group_scores[n].ravel(), round(check_sparsity(s, f"scope[{n!r}]")
                                                              * group_scores[n].size))
                .reshape(group_scores[n].shape) for n, s in scope.items()}
    if not isinstance(scope, str) or scope not in SCOPES:
        raise ValueError(f"scope: {scope!r} is not one of {SCOPES} or a dict {{layer: sparsity}}")
    sparsity = check_sparsity(sparsity)
    if scope == "layerwise":
        return select(group_scores, group_sizes, None, {n: sparsity for n in group_scores})
    names = list(group_scores)
    flat = [(layer_norm(group_scores[n]) if normalize else group_scores[n]).ravel() for n in names]
    scores = np.concatenate(flat).astype(np.float64)
    sizes = np.concatenate([np.full(f.size, group_sizes[n]) for n, f in zip(names, flat)])
    target = round(sparsity * sizes.sum())
    if np.all(sizes == 1):
        pruned = lowest(scores, target)
    else:  # groups of different sizes: the shortest run of lowest groups reaching the target
        order = np.argsort(scores, kind="stable")
        count = int(np.searchsorted(np.cumsum(sizes[order]), target)) + (target > 0)
        pruned = np.zeros(scores.size, bool)
        pruned[order[:min(count, scores.size)]] = True
    keep, start = {}, 0
    for n, f in zip(names, flat):
        keep[n] = ~pruned[start:start + f.size].reshape(group_scores[n].shape)
        start += f.size
    return keep
