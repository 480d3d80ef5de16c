"""Checkers of lesson 15 (making pruning fast): the lesson's reference answers and answers written
independently pass the self-check and hidden variants; the usual half-right answers fail with their
hint, among them a g·W that rebuilds W densely (right numbers, refused by its memory); the library's
CSR and N:M builders and products are refused while an answer runs; a replayed answer fails the
hidden variants."""
import numpy as np
import pytest
from checking import accepts, blocked, fails, fails_hidden, passes_hidden, replay_of

import minprune as mp
import minprune.exercises as ex
from minprune import sparse_kernels as SK
from minprune.course import notebooks as N
from minprune.exercises import lesson15 as L

pytestmark = pytest.mark.course


# --- 15.1 a matrix in CSR -----------------------------------------------------------------------
def to_csr(w, keep=lambda w: w != 0, order=None, signs=True):
    """Written apart from the lesson's answer: np.nonzero, a bincount and a running sum."""
    rows, cols = np.nonzero(keep(w))
    if order is not None:
        rows, cols = order(rows, cols)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=w.shape[0]))])
    values = w[rows, cols]
    return indptr, cols, values if signs else np.abs(values)


def test_dense_to_csr_right_answers(capsys):
    for fn in (to_csr, N.reference_answer("15.1")):
        accepts(ex.check_dense_to_csr, fn, capsys=capsys)
        passes_hidden(ex.check_dense_to_csr, fn)
    # lists will do, and int32 indices (as minprune's CSR stores them)
    passes_hidden(ex.check_dense_to_csr, lambda w: [list(a) for a in to_csr(w)])
    accepts(ex.check_dense_to_csr, lambda w: (to_csr(w)[0], to_csr(w)[1].astype(np.int32), to_csr(w)[2]),
            capsys=capsys)


def test_dense_to_csr_by_hand():
    indptr, indices, values = to_csr(np.array([[0, 2, 0, 0, 1], [0, 0, 0, 0, 0], [3, 0, 0, 4, 0]]))
    assert indptr.tolist() == [0, 2, 2, 4] and indices.tolist() == [1, 4, 0, 3]
    assert values.tolist() == [2, 1, 3, 4]


def test_dense_to_csr_row_pointers_slips_fail():
    check = ex.check_dense_to_csr
    fails(check, lambda w: (to_csr(w)[0][1:], *to_csr(w)[1:]), "prepend")
    fails(check, lambda w: (np.bincount(np.nonzero(w)[0], minlength=w.shape[0]), *to_csr(w)[1:]),
          "running sum")
    fails(check, lambda w: (np.concatenate([[0], np.bincount(np.nonzero(w)[0], minlength=w.shape[0])]),
                            *to_csr(w)[1:]), "running sum")
    fails(check, lambda w: to_csr(w, keep=lambda w: np.ones(w.shape, bool)), "only the nonzeros")
    fails(check, lambda w: to_csr(w, keep=lambda w: w > 0), "negative")


def test_dense_to_csr_indices_and_values_slips_fail():
    check = ex.check_dense_to_csr

    def rows_for_columns(w):
        indptr, _, values = to_csr(w)
        return indptr, np.nonzero(w)[0], values

    def right_to_left(rows, cols):
        order = np.lexsort((-cols, rows))
        return rows[order], cols[order]

    def column_by_column(w):
        indptr, _, _ = to_csr(w)
        cols, rows = np.nonzero(w.T)          # the nonzeros column by column
        return indptr, cols, w[rows, cols]

    fails(check, rows_for_columns, "rows of the nonzeros")
    fails(check, lambda w: to_csr(w, order=right_to_left), "increasing column")
    fails(check, column_by_column, "row by row")
    fails(check, lambda w: to_csr(w, signs=False), "signs")


def test_dense_to_csr_malformed_answers_fail():
    check = ex.check_dense_to_csr
    fails(check, lambda w: None, "return")
    fails(check, lambda w: to_csr(w)[:2], "three arrays")
    fails(check, lambda w: {"indptr": 0, "indices": 1, "values": 2}, "three arrays")
    fails(check, lambda w: tuple(a.astype(np.float64) for a in to_csr(w)), "integer")


def test_dense_to_csr_library_is_blocked():
    def through_library(w):
        a = mp.sparse_kernels.to_csr(w)
        return a.indptr, a.indices, a.values
    err = blocked(ex.check_dense_to_csr, through_library)
    assert "to_csr" not in str(err)

    def through_sparsify(w):
        layer = mp.nn.Linear(w.shape[1], w.shape[0])
        layer.weight.data[...] = w
        a = mp.prune.sparse.sparse_layer(layer, "csr").weight
        return a.indptr, a.indices, a.values
    blocked(ex.check_dense_to_csr, through_sparsify)


def test_dense_to_csr_replayed_fails():
    fails_hidden(ex.check_dense_to_csr, replay_of(ex.check_dense_to_csr, to_csr))


# --- 15.2 g · W from the CSR arrays -------------------------------------------------------------
def grad_input(indptr, indices, values, g, n_in, accumulate=True, stop=0):
    """Written apart from the lesson's answer: one scatter per row, vectorised over the row."""
    res = np.zeros((g.shape[0], n_in), dtype=np.result_type(g, values))
    for o in range(len(indptr) - 1):
        k = slice(indptr[o], indptr[o + 1] - stop)
        contrib = g[:, o, None] * values[k]
        if accumulate:
            np.add.at(res, (slice(None), indices[k]), contrib)
        else:
            res[:, indices[k]] = contrib
    return res


def add_at(indptr, indices, values, g, n_in):
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    res = np.zeros((g.shape[0], n_in))
    np.add.at(res.T, indices, values[:, None] * g[:, rows].T)
    return res


def test_grad_input_right_answers(capsys):
    for fn in (grad_input, add_at, N.reference_answer("15.2")):
        accepts(ex.check_csr_grad_input, fn, capsys=capsys)
        passes_hidden(ex.check_csr_grad_input, fn)


def test_grad_input_through_scipy_passes(capsys):
    sparse = pytest.importorskip("scipy.sparse")

    def through_scipy(indptr, indices, values, g, n_in):
        w = sparse.csr_matrix((values, indices, indptr), shape=(len(indptr) - 1, n_in))
        return np.asarray((w.T @ g.T).T)
    accepts(ex.check_csr_grad_input, through_scipy, capsys=capsys)


def test_grad_input_matches_autograd():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((7, 9)).astype(np.float32)
    w[rng.random(w.shape) < 0.6] = 0
    layer = mp.nn.Linear(9, 7, rng=rng)
    layer.weight.data[...] = w
    x = mp.tensor(rng.standard_normal((3, 9)).astype(np.float32), requires_grad=True)
    g = rng.standard_normal((3, 7)).astype(np.float32)
    layer(x).backward(g)
    a = SK.to_csr(w)
    assert np.allclose(grad_input(a.indptr, a.indices, a.values, g, 9), x.grad, atol=1e-5)


def test_grad_input_that_rebuilds_w_densely_fails():
    """Right numbers, but W rebuilt as a dense matrix: refused on the wide case, by its memory."""
    def densify(indptr, indices, values, g, n_in):
        w = np.zeros((len(indptr) - 1, n_in), dtype=values.dtype)
        w[np.repeat(np.arange(len(indptr) - 1), np.diff(indptr)), indices] = values
        return g @ w
    fails(ex.check_csr_grad_input, densify, "dense matrix")


def test_grad_input_usual_slips_fail():
    check = ex.check_csr_grad_input
    fails(check, lambda p, i, v, g, n: grad_input(p, i, v, g, int(i.max()) + 1), "n_in")
    fails(check, lambda p, i, v, g, n: grad_input(p, i, v, g, n, accumulate=False), r"\+=")
    fails(check, lambda p, i, v, g, n: grad_input(p, i, v, g, n, stop=1), "last nonzero")
    fails(check, lambda p, i, v, g, n: grad_input(p, i, v, g, n).T, "transpose")
    fails(check, lambda p, i, v, g, n: grad_input(p, i, v, g, n).astype(np.int64), "float")
    fails(check, lambda p, i, v, g, n: None, "return")


def test_grad_input_as_the_forward_product_fails():
    """Section 2's gather, y[b, o] = Σ values[k] · g[b, indices[k]]: the wrong shape unless W is
    square, and then the wrong numbers."""
    def gather(indptr, indices, values, g, n_in):
        res = np.zeros((g.shape[0], len(indptr) - 1))
        for o in range(len(indptr) - 1):
            k = slice(indptr[o], indptr[o + 1])
            res[:, o] = g[:, indices[k]] @ values[k] if n_in == len(indptr) - 1 else 0
        return res
    fails(ex.check_csr_grad_input, gather, "Wᵀ")
    small = L._grad_cases(None)[2]   # the square case alone: the numbers are g Wᵀ
    name, (indptr, indices, values), shape, g, w, _ = small
    assert shape[0] == shape[1]
    assert np.allclose(gather(indptr, indices, values, g, shape[1]), g @ w.T)


def test_grad_input_that_changes_its_arguments_fails():
    def scribbles(indptr, indices, values, g, n_in):
        out = grad_input(indptr, indices, values, g, n_in)
        g *= 0
        return out
    fails(ex.check_csr_grad_input, scribbles, "changed")


def test_grad_input_library_is_blocked():
    def through_csr_linear(indptr, indices, values, g, n_in):
        rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        order = np.lexsort((rows, indices))                  # W's nonzeros column by column: Wᵀ's CSR
        counts = np.bincount(indices, minlength=n_in)
        wt = SK.CSR(np.concatenate([[0], np.cumsum(counts)]), rows[order], values[order],
                    (n_in, len(indptr) - 1))
        return SK.csr_linear(g, wt)
    err = blocked(ex.check_csr_grad_input, through_csr_linear)
    assert "csr_linear" not in str(err)

    def through_to_dense(indptr, indices, values, g, n_in):
        return g @ SK.CSR(indptr, indices, values, (len(indptr) - 1, n_in)).to_dense()
    blocked(ex.check_csr_grad_input, through_to_dense)


def test_grad_input_replayed_fails():
    fails_hidden(ex.check_csr_grad_input, replay_of(ex.check_csr_grad_input, grad_input))


# --- 15.3 packing 2:4 ---------------------------------------------------------------------------
def pack(w, key=np.abs, misalign=False, absolute=False):
    """Written apart from the lesson's answer: group by group, the two largest of `key`, listed by
    size (not by position). `misalign` lists the positions in increasing order but keeps the values
    by size; `absolute` stores column numbers instead of positions."""
    out, n_in = w.shape
    values = np.zeros((out, n_in // 2), w.dtype)
    positions = np.zeros((out, n_in // 2), np.int64)
    for o in range(out):
        for g in range(n_in // 4):
            group = w[o, 4 * g:4 * g + 4]
            best = sorted(range(4), key=lambda p, group=group: (-key(group[p]), p))[:2]
            values[o, 2 * g:2 * g + 2] = group[best]
            positions[o, 2 * g:2 * g + 2] = sorted(best) if misalign else best
            if absolute:
                positions[o, 2 * g:2 * g + 2] += 4 * g
    return values, positions


def mask_2_4(w):
    """Lesson 07's answer: the boolean 2:4 mask itself."""
    groups = np.abs(w).reshape(w.shape[0], -1, 4)
    keep = np.argsort(-groups, axis=2, kind="stable")[:, :, :2]
    mask = np.zeros(groups.shape, bool)
    np.put_along_axis(mask, keep, True, axis=2)
    return mask.reshape(w.shape)


def test_pack_2_4_right_answers(capsys):
    for fn in (pack, N.reference_answer("15.3")):
        accepts(ex.check_pack_2_4, fn, capsys=capsys)
        passes_hidden(ex.check_pack_2_4, fn)

    def grouped(w):   # (out, in // 4, 2) arrays are the same numbers
        values, positions = pack(w)
        return values.reshape(w.shape[0], -1, 2), positions.reshape(w.shape[0], -1, 2).astype(np.uint8)
    passes_hidden(ex.check_pack_2_4, grouped)


def test_pack_2_4_agrees_with_the_library():
    w = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
    values, positions = pack(w)
    packed = SK.NM(values, positions.astype(np.uint8), 2, 4, w.shape)
    assert np.array_equal(packed.to_dense(), w * mp.kernels.nm_mask(np.abs(w), 2, 4))


def test_pack_2_4_ranking_slips_fail():
    check = ex.check_pack_2_4
    fails(check, lambda w: pack(w, key=lambda v: -abs(v)), "smallest")
    fails(check, lambda w: pack(w, key=lambda v: v), r"rank \|w\|")
    fails(check, lambda w: (np.abs(pack(w)[0]), pack(w)[1]), "signs")
    fails(check, lambda w: pack(w, misalign=True), "wrong places")


def test_pack_2_4_format_slips_fail():
    check = ex.check_pack_2_4
    fails(check, lambda w: pack(w, absolute=True), "column numbers")
    fails(check, mask_2_4, "lesson 07")
    fails(check, lambda w: np.where(mask_2_4(w), w, 0), "lesson 07")
    fails(check, lambda w: (w, pack(w)[1]), "pack them")
    fails(check, lambda w: (pack(w)[0], pack(w)[1].astype(np.float64)), "integers")
    fails(check, lambda w: (pack(w)[0], pack(w)[1] * 0), "same position")
    fails(check, lambda w: None, "return")


def test_pack_2_4_library_is_blocked():
    def through_to_nm(w):
        a = SK.to_nm(w * mp.kernels.nm_mask(np.abs(w), 2, 4), 2, 4)
        return a.values, a.indices
    err = blocked(ex.check_pack_2_4, through_to_nm)
    assert "nm_mask" not in str(err) and "to_nm" not in str(err)

    def through_granularity(w):
        mask = mp.prune.structures.parse("2:4").nm_mask(np.abs(w))
        return pack(np.where(mask, w, 0))
    blocked(ex.check_pack_2_4, through_granularity)


def test_pack_2_4_replayed_fails():
    fails_hidden(ex.check_pack_2_4, replay_of(ex.check_pack_2_4, pack))


# --- the cases -----------------------------------------------------------------------------------
def test_hidden_variants_draw_other_cases():
    assert [c[0] for c in L._csr_cases(7)] != [c[0] for c in L._csr_cases(None)]
    assert [c[0] for c in L._grad_cases(7)] != [c[0] for c in L._grad_cases(None)]
    assert [c[0] for c in L._pack_cases(7)] != [c[0] for c in L._pack_cases(None)]


def test_the_wide_case_is_too_large_to_densify_within_the_limit():
    for variant in (None, 11):
        name, csr, shape, g, w, watch = L._grad_cases(variant)[-1]
        assert watch and w is None and shape[0] * shape[1] * 4 > 2 * L._WIDE_LIMIT
        # a sparse answer's result is far below it
        assert g.shape[0] * shape[1] * 8 < L._WIDE_LIMIT / 4
