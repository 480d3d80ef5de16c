"""Checkers of lesson 06 (importance criteria): Taylor predictions, Fisher scores, Spearman."""
import numpy as np
import pytest
from checking import accepts, blocked, fails, fails_hidden, passes_hidden, rejects, replay_of

import minprune as mp
import minprune.exercises as ex
from minprune.course import notebooks as N
from minprune.prune import criteria

pytestmark = pytest.mark.course


# --- 06.1 Taylor prediction ------------------------------------------------------------------
def taylor(w, g, h=None):
    return -g * w if h is None else -g * w + 0.5 * h * w ** 2


def test_taylor_prediction(capsys):
    check = ex.check_taylor_prediction
    for fn in (taylor, N.reference_answer("06.1")):
        accepts(check, fn, capsys=capsys)
        passes_hidden(check, fn)
    fails(check, lambda w, g, h=None: -taylor(w, g, h), "sign")
    fails(check, lambda w, g, h=None: np.abs(g * w), "score")
    fails(check, lambda w, g, h=None: -g * w, "second-order term")
    fails(check, lambda w, g, h=None: -g * w + (0 if h is None else h * w ** 2), "½")
    fails(check, lambda w, g, h=None: -g * w - (0 if h is None else 0.5 * h * w ** 2), "positive")
    fails(check, lambda w, g, h=None: -g * w if h is None else 0.5 * h * w ** 2, "first-order term")
    # half right: a ½ on every term of the expansion, ½·(−g·w + ½·h·w²): every value is off by the
    # same factor, never by an offset, so only a tight relative tolerance rejects it
    fails(check, lambda w, g, h=None: 0.5 * taylor(w, g, h), "ΔL ≈")
    fails(check, lambda w, g, h=None: (-g * w)[..., :1], "shape")
    fails(check, lambda w, g, h=None: None, "return")
    fails_hidden(check, replay_of(check, taylor))


# --- 06.2 Fisher scores ----------------------------------------------------------------------
def fisher(model, batches, square_first=True, half=True, zero_grad=True, times_w2=True):
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
        w2 = m.weight.data.astype(np.float64) ** 2 if times_w2 else 1.0
        out[n] = (0.5 if half else 1.0) * f * w2
    return out


def test_fisher_scores_right_answers(capsys):
    check = ex.check_fisher_scores
    for fn in (fisher, N.reference_answer("06.2")):
        accepts(check, fn, capsys=capsys)
        passes_hidden(check, fn)
    assert "fisher" not in capsys.readouterr().out.lower().replace("fisher scores", "")


def test_fisher_score_mistakes():
    check = ex.check_fisher_scores
    fails(check, lambda m, b: fisher(m, b, square_first=False), "mean of the \\*squared\\*")
    fails(check, lambda m, b: fisher(m, b, half=False), "½")
    fails(check, lambda m, b: fisher(m, b[-1:]), "last batch")
    fails(check, lambda m, b: fisher(m, b, zero_grad=False), "zero_grad")
    fails(check, lambda m, b: fisher(m, b, times_w2=False), "w²")
    fails(check, lambda m, b: {n: len(b) * s for n, s in fisher(m, b).items()}, "summed")
    fails(check, lambda m, b: [1, 2], "dict")
    fails(check, lambda m, b: {n: s.ravel() for n, s in fisher(m, b).items()}, "shape")

    def first_layer_only(m, b):  # half right: one layer wrong
        scores = fisher(m, b)
        last = list(scores)[-1]
        scores[last] = scores[last] * 2
        return scores
    fails(check, first_layer_only, "differ")


def test_fisher_hidden_variants_catch_a_replayed_answer():
    fails_hidden(ex.check_fisher_scores, replay_of(ex.check_fisher_scores, fisher))


def test_fisher_library_is_blocked():
    check = ex.check_fisher_scores
    layers = mp.prune.prunable_layers
    err = blocked(check, lambda m, b: criteria.fisher(m, layers(m), b))
    assert "fisher" not in str(err).lower()
    blocked(check, lambda m, b: mp.prune.CRITERIA["fisher"](m, layers(m), b))
    blocked(check, lambda m, b: {n: 0.5 * s for n, s in criteria.taylor(m, layers(m), b).items()})

    def from_gradient(m, b):  # ½·mean over batches of |w·g|² = the Fisher score
        per = [criteria.gradient(m, layers(m), xy) for xy in b]
        return {n: 0.5 * np.mean([p[n] ** 2 for p in per], axis=0) for n in layers(m)}
    blocked(check, from_gradient)

    def from_private_helper(m, b):
        sq = criteria._loss_gradients(m, b, square=True)
        return {n: 0.5 * sq[n + ".weight"] * l.weight.data ** 2 for n, l in layers(m).items()}
    blocked(check, from_private_helper)


# --- 06.3 Spearman ---------------------------------------------------------------------------
def ranks(a):
    """Average ranks, written without np.unique: sort, then walk runs of equal values."""
    order = np.argsort(a, kind="stable")
    r = np.empty(len(a))
    i = 0
    while i < len(a):
        j = i
        while j + 1 < len(a) and a[order[j + 1]] == a[order[i]]:
            j += 1
        r[order[i:j + 1]] = (i + j) / 2
        i = j + 1
    return r


def spearman(a, b):
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def test_rank_correlation(capsys):
    check = ex.check_rank_correlation
    for fn in (spearman, N.reference_answer("06.3")):
        accepts(check, fn, capsys=capsys)
        passes_hidden(check, fn)
    fails(check, lambda a, b: float(np.corrcoef(a, b)[0, 1]), "Pearson")
    fails(check, lambda a, b: float(np.corrcoef(np.argsort(a), np.argsort(b))[0, 1]), "order")
    fails(check, lambda a, b: 1.0, "Spearman")
    fails(check, lambda a, b: None, "return")
    fails_hidden(check, replay_of(check, spearman))


def test_rank_correlation_needs_ties_handled():
    """Ranks without tie handling are right on the tie-free cases only: half right fails."""
    def no_ties(a, b):
        return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])
    fails(ex.check_rank_correlation, no_ties, "average of the ranks")
    rejects(ex.check_rank_correlation, no_ties, 5, match="ties")


def test_rank_correlation_helpers_are_blocked():
    from minprune.exercises import lesson06
    blocked(ex.check_rank_correlation, lambda a, b: lesson06._spearman(a, b))
    blocked(ex.check_rank_correlation,
            lambda a, b: float(np.corrcoef(lesson06._average_ranks(a), lesson06._average_ranks(b))[0, 1]))


# --- half-right answers ---------------------------------------------------------------------------
def test_taylor_second_order_with_g_for_w_fails():
    # the first-order prediction is right; the second-order term uses g where it needs w
    fails(ex.check_taylor_prediction,
          lambda w, g, h=None: -g * w if h is None else -g * w + 0.5 * h * g ** 2, "second-order")
    # by hand: L(w) = 2w + ½·3w² at w = 1: g = 5, h = 3; removing w changes L by −3.5 exactly
    assert taylor(np.array([1.0]), np.array([5.0]), np.array([3.0]))[0] == -3.5


def test_fisher_skipping_the_first_batch_fails():
    # an off-by-one over the batches: the average of the squared gradients of all but one
    fails(ex.check_fisher_scores, lambda m, b: fisher(m, b[1:]), "differ")


def test_fisher_by_hand_written_backprop_passes(capsys):
    """Fisher scores from gradients computed without the library's autograd (numpy_nets.py)."""
    from numpy_nets import gradients

    def by_hand(model, batches):
        grads = [gradients(model, x, y) for x, y in batches]
        return {n: 0.5 * np.mean([g[n] ** 2 for g in grads], axis=0)
                * m.weight.data.astype(np.float64) ** 2
                for n, m in mp.prune.prunable_layers(model).items()}

    accepts(ex.check_fisher_scores, by_hand, capsys=capsys)
    passes_hidden(ex.check_fisher_scores, by_hand)


def test_rank_correlation_with_ties_handled_in_one_array_only_fails():
    def ties_in_a_only(a, b):   # right where b has no ties, wrong where both are rounded
        return float(np.corrcoef(ranks(a), np.argsort(np.argsort(b)))[0, 1])

    fails(ex.check_rank_correlation, ties_in_a_only, "ties")
    # by hand: ranks of [10, 20, 20, 30] are 0, 1.5, 1.5, 3
    np.testing.assert_array_equal(ranks(np.array([10, 20, 20, 30])), [0, 1.5, 1.5, 3])
