"""Checkers of lesson 08 (pruning activations): APoZ and top-k activation sparsity."""
import numpy as np
import pytest
from checking import accepts, blocked, fails, fails_hidden, passes_hidden, replay_of

import minprune as mp
import minprune.exercises as ex
from minprune.course import notebooks as N
from minprune.prune import criteria

pytestmark = pytest.mark.course


# --- 08.1 APoZ -------------------------------------------------------------------------------
def apoz(a):
    axes = (0,) + tuple(range(2, a.ndim))
    return (a == 0).mean(axis=axes)


def test_apoz_right_answers(capsys):
    for fn in (apoz, N.reference_answer("08.1")):
        accepts(ex.check_apoz, fn, capsys=capsys)
        passes_hidden(ex.check_apoz, fn)


def test_apoz_mistakes():
    check = ex.check_apoz
    fails(check, lambda a: 1 - apoz(a), "1 − APoZ")
    fails(check, lambda a: 100 * apoz(a), "percentage")
    fails(check, lambda a: (a == 0).mean(axis=1), "over the units")
    # a conv activation averaged over examples only: one value per (channel, position)
    fails(check, lambda a: (a == 0).mean(axis=0), "one APoZ per unit")
    fails(check, lambda a: (a > 0).mean(axis=0) if a.ndim == 2 else apoz(a), "1 − APoZ")
    fails(check, lambda a: None, "return")
    # half right: dense activations right, conv activations averaged over examples only
    fails(check, lambda a: apoz(a) if a.ndim == 2 else (a[..., 0, 0] == 0).mean(axis=0), "APoZ")
    fails_hidden(check, replay_of(check, apoz))


def test_apoz_library_is_blocked():
    class Identity(mp.nn.Module):   # wrap the array in a "model" the criterion can score
        def forward(self, x):
            return x

    def via_criterion(a):
        layer = mp.nn.Linear(a.shape[1], a.shape[1])
        layer.weight.data[...] = np.eye(a.shape[1])
        layer.bias.data[...] = 0
        net = mp.nn.Sequential(layer, mp.nn.ReLU())
        flat = np.moveaxis(a, 1, -1).reshape(-1, a.shape[1])
        return 1 - criteria.apoz(net, {"0": layer}, (flat.astype(np.float32), np.zeros(len(flat))))
    err = blocked(ex.check_apoz, via_criterion)
    assert "apoz" not in str(err).lower()


# --- 08.2 top-k ------------------------------------------------------------------------------
def topk(a, k):
    out = np.zeros_like(a)
    for i, row in enumerate(a):
        top = np.argsort(row)[::-1][:k]
        out[i, top] = row[top]
    return out


def test_topk_right_answers(capsys):
    for fn in (topk, N.reference_answer("08.2")):
        accepts(ex.check_topk_activations, fn, capsys=capsys)
        passes_hidden(ex.check_topk_activations, fn)


def test_topk_mistakes():
    check = ex.check_topk_activations
    fails(check, lambda a, k: np.where(a >= np.sort(a.ravel())[-k * a.shape[0]], a, 0), "whole batch")
    fails(check, lambda a, k: np.where(a <= np.sort(a, axis=1)[:, k - 1][:, None], a, 0), "smallest")
    fails(check, lambda a, k: (topk(a, k) > 0).astype(float), "unchanged")
    fails(check, lambda a, k: topk(a, min(k + 1, a.shape[1])), "exactly k")
    fails(check, lambda a, k: topk(a, k)[:, :k], "shape")
    fails(check, lambda a, k: None, "return")
    fails_hidden(check, replay_of(check, topk))


def test_topk_with_the_notebooks_k_instead_of_the_argument_fails():
    """Half right: the function keeps the top 3 (the notebook's own k) whatever k it is given; the
    self-check's first case asks for k = 3, so only the later cases can reject it."""
    fails(ex.check_topk_activations, lambda a, k: topk(a, 3), "exactly k=1")


def test_topk_per_unit_instead_of_per_example_is_caught():
    def per_unit(a, k):
        kth = np.sort(a, axis=0)[-min(k, a.shape[0])][None, :]
        return np.where(a >= kth, a, 0)
    with pytest.raises(AssertionError):
        for seed in (None, 11, 2024, 987654321):
            ex.check_topk_activations(per_unit, seed)


def test_topk_library_is_blocked():
    def via_hook(a, k):
        net = mp.nn.Sequential(mp.nn.ReLU())
        hook = mp.prune.activation_sparsity(net, k)
        with mp.no_grad():
            out = net(mp.tensor(a)).data
        hook.remove()
        return out
    err = blocked(ex.check_topk_activations, via_hook)
    assert "activation_sparsity" not in str(err)

    def via_private_hook(a, k):
        from minprune.prune.pruner import ActivationSparsity
        obj = object.__new__(ActivationSparsity)
        obj.k = k
        return ActivationSparsity._hook(obj, None, None, mp.tensor(a)).data
    blocked(ex.check_topk_activations, via_private_hook)


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
    np.testing.assert_array_equal(sparse, topk(dense, 4))


# --- half-right answers ---------------------------------------------------------------------------
def test_apoz_over_examples_and_rows_only_fails():
    # averages over examples and H but forgets W for convolutional activations: right for 2-D
    fails(ex.check_apoz, lambda a: (a == 0).mean(axis=(0, 2) if a.ndim == 4 else 0), "shape")
    # by hand: unit 0 is zero in 2 of 4 examples, unit 1 in all of them
    np.testing.assert_array_equal(apoz(np.array([[0, 0], [1, 0], [0, 0], [2, 0]])), [0.5, 1.0])


def test_topk_with_the_first_examples_threshold_fails():
    def first_row_threshold(a, k):   # the k-th largest of row 0 used for every row
        return np.where(a >= np.sort(a[0])[-k], a, 0)

    fails(ex.check_topk_activations, first_row_threshold, "each example must keep exactly")
    # by hand: k = 1 keeps each row's largest
    np.testing.assert_array_equal(topk(np.array([[1.0, 3.0, 2.0], [5.0, 4.0, 0.0]]), 1),
                                  [[0, 3.0, 0], [5.0, 0, 0]])
