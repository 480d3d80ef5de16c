"""Checkers of the pruning lessons (04–08): a right answer passes, typical wrong answers fail
with a hint that names the mistake."""
import numpy as np
import pytest
from checking import fails as _fails

import minprune as mp
import minprune.exercises as ex

pytestmark = pytest.mark.pruning


def _weights(model):
    return {n: m.weight.data for n, m in mp.prune.prunable_layers(model).items()}



# --- reference solutions (what a student should write) --------------------------------------------
def sparsity(model):
    ws = list(_weights(model).values())
    return sum((w == 0).sum() for w in ws) / sum(w.size for w in ws)


def global_threshold(model, s):
    mags = np.sort(np.concatenate([np.abs(w).ravel() for w in _weights(model).values()]))
    return mags[round(s * mags.size) - 1]


def gradient_scores(model, x, y):
    model.zero_grad()
    mp.nn.functional.cross_entropy(model(mp.tensor(x)), y).backward()
    return {n: np.abs(m.weight.data * m.weight.grad)
            for n, m in mp.prune.prunable_layers(model).items()}


def layerwise_counts(model, s):
    return {n: round(s * w.size) for n, w in _weights(model).items()}


def global_counts(model, s):
    t = global_threshold(model, s)
    return {n: int((np.abs(w) <= t).sum()) for n, w in _weights(model).items()}


def filter_l1(w):
    return np.abs(w).reshape(w.shape[0], -1).sum(axis=1)


def nm_mask(w, n, m):
    groups = np.abs(w).reshape(w.shape[0], -1, m)
    order = np.argsort(groups, axis=-1)
    keep = np.zeros(groups.shape, bool)
    np.put_along_axis(keep, order[..., -n:], True, axis=-1)
    return keep.reshape(w.shape)


# --- right answers pass ----------------------------------------------------------------------------
@pytest.mark.parametrize("checker,fn", [
    (ex.check_sparsity, sparsity), (ex.check_global_threshold, global_threshold),
    (ex.check_gradient_scores, gradient_scores), (ex.check_layerwise_counts, layerwise_counts),
    (ex.check_global_counts, global_counts), (ex.check_filter_l1_scores, filter_l1),
    (ex.check_nm_mask, nm_mask)])
def test_reference_solutions_pass(checker, fn, capsys):
    checker(fn)
    assert "✓ correct" in capsys.readouterr().out


def test_checkers_are_exported():
    for name in ["check_sparsity", "check_global_threshold", "check_gradient_scores",
                 "check_layerwise_counts", "check_global_counts", "check_filter_l1_scores",
                 "check_nm_mask"]:
        assert name in ex.__all__


def test_non_callables_are_refused():
    with pytest.raises(TypeError, match="fn"):
        ex.check_sparsity(0.5)


# --- wrong answers fail with the right hint ------------------------------------------------------
def test_sparsity_mistakes():
    _fails(ex.check_sparsity, lambda m: 1 - sparsity(m), "density")
    _fails(ex.check_sparsity, lambda m: 100 * sparsity(m), "percentage")
    _fails(ex.check_sparsity, lambda m: np.mean([(w == 0).mean() for w in _weights(m).values()]),
           "averaged the per-layer")
    _fails(ex.check_sparsity, lambda m: sum((p.data == 0).sum() for p in m.parameters())
           / sum(p.size for p in m.parameters()), "biases")
    _fails(ex.check_sparsity, lambda m: None, "return")


def test_global_threshold_mistakes():
    def signed(model, s):
        w = np.sort(np.concatenate([w.ravel() for w in _weights(model).values()]))
        return w[round(s * w.size) - 1]

    def one_layer(model, s):
        w = np.sort(np.abs(list(_weights(model).values())[0]).ravel())
        return w[round(s * w.size) - 1]

    _fails(ex.check_global_threshold, signed, "magnitudes")
    _fails(ex.check_global_threshold, one_layer, "threshold must lie")
    _fails(ex.check_global_threshold, lambda m, s: global_threshold(m, s) * 1.5, "threshold")


def test_gradient_score_mistakes():
    def no_abs(model, x, y):
        model.zero_grad()
        mp.nn.functional.cross_entropy(model(mp.tensor(x)), y).backward()
        return {n: m.weight.data * m.weight.grad for n, m in mp.prune.prunable_layers(model).items()}

    def no_zero_grad(model, x, y):
        mp.nn.functional.cross_entropy(model(mp.tensor(x)), y).backward()
        return {n: np.abs(m.weight.data * m.weight.grad)
                for n, m in mp.prune.prunable_layers(model).items()}

    _fails(ex.check_gradient_scores, no_abs, "absolute value")
    _fails(ex.check_gradient_scores, no_zero_grad, "zero_grad")
    _fails(ex.check_gradient_scores, lambda m, x, y: {n: np.abs(w) for n, w in _weights(m).items()},
           "magnitude")
    _fails(ex.check_gradient_scores, lambda m, x, y: [1], "dict")


def test_count_mistakes():
    _fails(ex.check_layerwise_counts, lambda m, s: {n: int(s * w.size) for n, w in _weights(m).items()},
           "truncates")
    _fails(ex.check_layerwise_counts,
           lambda m, s: {n: w.size - round(s * w.size) for n, w in _weights(m).items()}, "kept")
    _fails(ex.check_layerwise_counts, lambda m, s: {"features.0": 1}, "no entry")
    _fails(ex.check_global_counts, layerwise_counts, "layerwise counts")


def test_filter_l1_mistakes():
    _fails(ex.check_filter_l1_scores, lambda w: w.reshape(w.shape[0], -1).sum(axis=1), "absolute")
    _fails(ex.check_filter_l1_scores,
           lambda w: np.sqrt((w.reshape(w.shape[0], -1) ** 2).sum(axis=1)), "L2")
    _fails(ex.check_filter_l1_scores,
           lambda w: np.abs(w).sum(axis=tuple(a for a in range(w.ndim) if a != 1)), "axis 0")


def test_nm_mask_mistakes():
    def signed(w, n, m):
        groups = w.reshape(w.shape[0], -1, m)
        keep = np.zeros(groups.shape, bool)
        np.put_along_axis(keep, np.argsort(groups, axis=-1)[..., -n:], True, axis=-1)
        return keep.reshape(w.shape)

    _fails(ex.check_nm_mask, signed, "signed")
    _fails(ex.check_nm_mask, lambda w, n, m: nm_mask(w, n + 1, m), "exactly")
    _fails(ex.check_nm_mask, lambda w, n, m: nm_mask(w, n, m).reshape(w.shape[0], -1), "shape")
    _fails(ex.check_nm_mask, lambda w, n, m: ~nm_mask(w, m - n, m), "smallest")
