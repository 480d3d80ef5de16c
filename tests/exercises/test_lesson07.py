"""Checkers of lesson 07 (structured vs unstructured): filter L1 scores and N:M masks."""
import numpy as np
import pytest
from checking import accepts, blocked, fails, fails_hidden, passes_hidden, replay_of

import minprune as mp
import minprune.exercises as ex
from minprune.course import notebooks as N

pytestmark = pytest.mark.course


# --- 07.1 filter L1 --------------------------------------------------------------------------
def filter_l1(w):
    return np.array([np.abs(w[o]).sum() for o in range(w.shape[0])])


def test_filter_l1_right_answers(capsys):
    for fn in (filter_l1, N.reference_answer("07.1")):
        accepts(ex.check_filter_l1_scores, fn, capsys=capsys)
        passes_hidden(ex.check_filter_l1_scores, fn)


def test_filter_l1_mistakes():
    check = ex.check_filter_l1_scores
    fails(check, lambda w: w.reshape(w.shape[0], -1).sum(axis=1), "absolute")
    fails(check, lambda w: np.sqrt((w.reshape(w.shape[0], -1) ** 2).sum(axis=1)), "L2")
    fails(check, lambda w: np.abs(w).reshape(w.shape[0], -1).mean(axis=1), "mean")
    fails(check, lambda w: np.abs(w).sum(axis=tuple(a for a in range(w.ndim) if a != 1)), "axis 0")
    fails(check, lambda w: None, "return")
    fails_hidden(check, replay_of(check, filter_l1))


def test_filter_l1_library_is_blocked():
    filters = mp.prune.structures.parse("filter")
    err = blocked(ex.check_filter_l1_scores, lambda w: filters.group_scores(np.abs(w), "l1"))
    assert "group_scores" not in str(err)
    blocked(ex.check_filter_l1_scores,
            lambda w: mp.prune.structures.parse("neuron").group_scores(np.abs(w), "l1"))


# --- 07.2 N:M masks --------------------------------------------------------------------------
def nm_mask(w, n, m):
    rows = np.abs(w).reshape(w.shape[0], -1)
    keep = np.zeros(rows.shape, bool)
    for r in range(rows.shape[0]):
        for start in range(0, rows.shape[1], m):
            run = rows[r, start:start + m]
            keep[r, start + np.argsort(run)[::-1][:n]] = True
    return keep.reshape(w.shape)


def test_nm_mask_right_answers(capsys):
    for fn in (nm_mask, N.reference_answer("07.2")):
        accepts(ex.check_nm_mask, fn, capsys=capsys)
        passes_hidden(ex.check_nm_mask, fn)
    passes_hidden(ex.check_nm_mask, lambda w, n, m: nm_mask(w, n, m).astype(np.int8))


def test_nm_mask_mistakes():
    check = ex.check_nm_mask

    def signed(w, n, m):
        groups = w.reshape(w.shape[0], -1, m)
        keep = np.zeros(groups.shape, bool)
        np.put_along_axis(keep, np.argsort(groups, axis=-1)[..., -n:], True, axis=-1)
        return keep.reshape(w.shape)

    def along_columns(w, n, m):   # runs down the output axis instead of along a row
        return nm_mask(w.reshape(w.shape[0], -1).T.copy(), n, m).T.reshape(w.shape) \
            if w.shape[0] % m == 0 else nm_mask(w, n, m) == 0

    fails(check, signed, "signed")
    fails(check, lambda w, n, m: nm_mask(w, n + 1, m), "exactly")
    fails(check, lambda w, n, m: nm_mask(w, n, m).reshape(w.shape[0], -1), "shape")
    fails(check, lambda w, n, m: ~nm_mask(w, m - n, m), "smallest")
    fails(check, along_columns, "mask")
    fails(check, lambda w, n, m: None, "return")
    fails_hidden(check, replay_of(check, nm_mask))


def test_nm_mask_library_is_blocked():
    check = ex.check_nm_mask
    err = blocked(check, lambda w, n, m: mp.prune.structures.parse(f"{n}:{m}").nm_mask(np.abs(w)))
    assert "nm_mask" not in str(err)
    blocked(check, lambda w, n, m: mp.kernels.nm_mask(np.abs(w).reshape(w.shape[0], -1), n, m)
            .reshape(w.shape))
    blocked(check, lambda w, n, m: mp.kernels_ref.nm_mask(np.abs(w).reshape(w.shape[0], -1), n, m)
            .reshape(w.shape))

    def through_prune(w, n, m):
        layer = mp.nn.Linear(int(np.prod(w.shape[1:])), w.shape[0])
        layer.weight.data[...] = w.reshape(w.shape[0], -1)
        net = mp.nn.Sequential(layer)
        mp.prune.prune(net, granularity=f"{n}:{m}")
        return layer.weight.mask.reshape(w.shape)
    blocked(check, through_prune)


# --- half-right answers ---------------------------------------------------------------------------
def test_filter_l1_of_the_first_kernel_position_only_fails():
    def centre_ignored(w):   # right for Linear and 1×1 kernels, wrong for 3×3 and 5×5 ones
        return np.abs(w[..., 0, 0] if w.ndim == 4 else w).sum(axis=1)

    fails(ex.check_filter_l1_scores, centre_ignored, "scores are wrong")
    # by hand: a Conv2d weight (2, 1, 2, 2)
    w = np.array([[[[1, -2], [3, -4]]], [[[0, 0.5], [-0.5, 0]]]])
    np.testing.assert_array_equal(filter_l1(w), [10, 1])


def test_nm_mask_grouped_along_input_channels_fails():
    """Runs of m along the input channels at each kernel position (the layout of some hardware):
    right for Linear weights and 1×1 kernels, wrong for the checker's (in·kh·kw) runs of 3×3 ones."""
    def channels_last(w, n, m):
        if w.ndim == 2:
            return nm_mask(w, n, m)
        moved = np.moveaxis(w, 1, -1)   # (out, kh, kw, in)
        return np.moveaxis(nm_mask(moved.reshape(w.shape[0], -1), n, m).reshape(moved.shape), -1, 1)

    fails(ex.check_nm_mask, channels_last, "mask is wrong")
    # by hand: 2:4 on one row keeps the two largest |w| of each run of four
    np.testing.assert_array_equal(nm_mask(np.array([[0.1, -3, 2, 0.5, 1, 1.5, -0.2, 4]]), 2, 4),
                                  [[False, True, True, False, False, True, False, True]])
