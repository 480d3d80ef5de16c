"""Checkers of lessons 06 (importance criteria) and 08 (pruning activations): a correct answer is
accepted, the usual wrong ones are rejected with the hint that names the mistake."""
import numpy as np
import pytest
from checking import accepts as _accepts
from checking import rejects as _rejects

import minprune as mp
import minprune.exercises as ex

pytestmark = pytest.mark.pruning



# --- lesson 06 -------------------------------------------------------------------------------
def _taylor(w, g, h=None):
    return -g * w if h is None else -g * w + 0.5 * h * w ** 2


def test_taylor_prediction(capsys):
    _accepts(ex.check_taylor_prediction, _taylor, capsys=capsys)
    _rejects(ex.check_taylor_prediction, lambda w, g, h=None: -_taylor(w, g, h), match="sign")
    _rejects(ex.check_taylor_prediction, lambda w, g, h=None: np.abs(g * w), match="score")
    _rejects(ex.check_taylor_prediction, lambda w, g, h=None: -g * w, match="second-order term")
    _rejects(ex.check_taylor_prediction,
             lambda w, g, h=None: -g * w + (0 if h is None else h * w ** 2), match="½")
    _rejects(ex.check_taylor_prediction, lambda w, g, h=None: (-g * w)[..., :1], match="shape")
    _rejects(ex.check_taylor_prediction, lambda w, g, h=None: None, match="return")


def _fisher(model, batches, square_first=True, half=True, zero_grad=True):
    layers = mp.prune.prunable_layers(model)
    acc = {n: 0.0 for n in layers}
    for x, y in batches:
        if zero_grad:
            model.zero_grad()
        mp.nn.functional.cross_entropy(model(mp.tensor(x)), y).backward()
        for n, m in layers.items():
            g = m.weight.grad.astype(np.float64)
            acc[n] = acc[n] + (g ** 2 if square_first else g)
    out = {}
    for n, m in layers.items():
        e = acc[n] / len(batches)
        f = e if square_first else e ** 2
        out[n] = (0.5 if half else 1.0) * f * m.weight.data.astype(np.float64) ** 2
    return out


def test_fisher_scores(capsys):
    _accepts(ex.check_fisher_scores, _fisher, capsys=capsys)
    _rejects(ex.check_fisher_scores, lambda m, b: _fisher(m, b, square_first=False),
             match="mean of the \\*squared\\*")
    _rejects(ex.check_fisher_scores, lambda m, b: _fisher(m, b, half=False), match="½")
    _rejects(ex.check_fisher_scores, lambda m, b: _fisher(m, b[-1:]), match="last batch")
    _rejects(ex.check_fisher_scores, lambda m, b: _fisher(m, b, zero_grad=False), match="zero_grad")
    _rejects(ex.check_fisher_scores, lambda m, b: [1, 2], match="dict")
    _rejects(ex.check_fisher_scores,
             lambda m, b: {n: s.ravel() for n, s in _fisher(m, b).items()}, match="shape")


def _spearman(a, b):
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


def test_rank_correlation(capsys):
    _accepts(ex.check_rank_correlation, _spearman, capsys=capsys)
    _rejects(ex.check_rank_correlation, lambda a, b: float(np.corrcoef(a, b)[0, 1]),
             match="Pearson")
    _rejects(ex.check_rank_correlation,
             lambda a, b: float(np.corrcoef(np.argsort(a), np.argsort(b))[0, 1]), match="order")
    _rejects(ex.check_rank_correlation, lambda a, b: 1.0, match="Spearman")


# --- lesson 08 -------------------------------------------------------------------------------
def _apoz(a):
    return (np.moveaxis(a, 1, -1).reshape(-1, a.shape[1]) == 0).mean(axis=0)


def test_apoz(capsys):
    _accepts(ex.check_apoz, _apoz, capsys=capsys)
    _rejects(ex.check_apoz, lambda a: 1 - _apoz(a), match="1 − APoZ")
    _rejects(ex.check_apoz, lambda a: 100 * _apoz(a), match="percentage")
    _rejects(ex.check_apoz, lambda a: (a == 0).mean(axis=1), match="over the units")
    # a conv activation averaged over examples only: one value per (channel, position)
    _rejects(ex.check_apoz, lambda a: (a == 0).mean(axis=0), match="one APoZ per unit")


def _topk(a, k):
    kth = np.sort(a, axis=1)[:, -k][:, None]
    return np.where(a >= kth, a, 0)


def test_topk_activations(capsys):
    _accepts(ex.check_topk_activations, _topk, capsys=capsys)
    _rejects(ex.check_topk_activations,
             lambda a, k: np.where(a >= np.sort(a.ravel())[-k * a.shape[0]], a, 0),
             match="whole batch")
    _rejects(ex.check_topk_activations,
             lambda a, k: np.where(a <= np.sort(a, axis=1)[:, k - 1][:, None], a, 0),
             match="smallest")
    _rejects(ex.check_topk_activations, lambda a, k: (_topk(a, k) > 0).astype(float),
             match="unchanged")
    _rejects(ex.check_topk_activations, lambda a, k: _topk(a, min(k + 1, a.shape[1])),
             match="exactly k")
    _rejects(ex.check_topk_activations, lambda a, k: _topk(a, k)[:, :k], match="shape")


def test_topk_checker_agrees_with_the_library_hook():
    """The checker's notion of top-k is the one `activation_sparsity` applies after a ReLU."""
    r = np.random.default_rng(0)
    model = mp.nn.Sequential(mp.nn.Linear(6, 20, rng=r), mp.nn.ReLU())
    x = r.normal(size=(5, 6)).astype(np.float32)
    with mp.no_grad():
        dense = model(mp.tensor(x)).data
        hook = mp.prune.activation_sparsity(model, 4)
        sparse = model(mp.tensor(x)).data
        hook.remove()
    np.testing.assert_array_equal(sparse, _topk(dense, 4))


def test_checkers_are_exported():
    for name in ("check_taylor_prediction", "check_fisher_scores", "check_rank_correlation",
                 "check_apoz", "check_topk_activations"):
        assert name in ex.__all__ and callable(getattr(ex, name))
