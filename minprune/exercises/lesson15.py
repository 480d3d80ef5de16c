"""Checkers of lesson 15 — making pruning fast (`lessons/15_making_pruning_fast.ipynb`).

    15.1  dense_to_csr(w)                                    a matrix's CSR arrays, by hand
    15.2  csr_grad_input(indptr, indices, values, grad_out, n_in)   g·W from W's CSR arrays: the
                                                             backward pass's product, a scatter
    15.3  pack_2_4(w)                                        2:4 — the two largest |w| of every four,
                                                             packed as values and positions

The truths are computed with NumPy before the student's function runs (`np.nonzero` for CSR, g·W in
float64, a stable argsort for 2:4); while it runs, the library's CSR and N:M builders and products
are blocked. 15.2 also runs one case under `tracemalloc`: a matrix so wide that rebuilding it densely
allocates a hundred megabytes or more where the product itself needs a few, so an answer that
densifies W (which gives the right numbers) is refused.
"""
from __future__ import annotations

import tracemalloc

import numpy as np

from ..tensor import Tensor
from .core import correct, exercise, fail, require_callable, rng_for

# 15.2's wide case: a sparse answer allocates its (batch, n_in) result and O(nnz) scratch, under
# 10 MB; W rebuilt densely is out × n_in floats, at least 64 × 400,000 × 4 bytes ≈ 100 MB.
_WIDE_LIMIT = 40 * 2 ** 20


def _sparse(rng, shape, sparsity, dtype=np.float32) -> np.ndarray:
    """A random matrix with about `sparsity` of its entries exactly 0 (negative values included)."""
    w = rng.standard_normal(shape)
    w[rng.random(shape) < sparsity] = 0
    return w.astype(dtype)


# --- 15.1 a matrix to CSR ----------------------------------------------------------------------
def _csr_truth(w) -> tuple:
    """(indptr, indices, values) of `w`: row by row, columns increasing within a row."""
    rows, cols = np.nonzero(w)
    indptr = np.zeros(w.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=w.shape[0]), out=indptr[1:])
    return indptr, cols.astype(np.int64), w[rows, cols]


def _csr_cases(variant) -> list:
    """[(description, w)]: empty rows, negative weights, a single row or column, no nonzeros."""
    rng = rng_for(variant, 151)
    if variant is None:
        small = np.array([[0, 2, 0, 0, 1], [0, 0, 0, 0, 0], [3, 0, 0, 4, 0]], dtype=np.float32)
        signed = _sparse(rng, (6, 8), 0.6)
        signed[0] = 0
        signed[-1] = 0
        signed[2, 3] = -1.5
        cases = [("the lesson's 3×5 example", small),
                 ("a 6×8 matrix with negative weights, first and last rows empty", signed),
                 ("one row, 1×7", _sparse(rng, (1, 7), 0.4)),
                 ("one column, 5×1", _sparse(rng, (5, 1), 0.4, np.float64)),
                 ("a 3×4 matrix of zeros", np.zeros((3, 4), np.float32)),
                 ("a 40×30 float64 matrix, 80% zeros", _sparse(rng, (40, 30), 0.8, np.float64))]
    else:
        cases = []
        for i in range(4):
            shape = (int(rng.integers(1, 41)), int(rng.integers(1, 41)))
            sparsity = float(rng.choice([0.3, 0.6, 0.9, 0.97]))
            w = _sparse(rng, shape, sparsity, [np.float32, np.float64][i % 2])
            w[rng.random(shape[0]) < 0.2] = 0            # some empty rows
            cases.append((f"a {shape[0]}×{shape[1]} {w.dtype} matrix, {np.mean(w == 0):.0%} zeros", w))
    return cases


def _as_integers(a, what: str) -> np.ndarray:
    """An index array as int64; an empty array of any dtype (np.array([]) is float) is fine."""
    arr = np.asarray(a.data if isinstance(a, Tensor) else a)
    if arr.dtype == object:
        fail(f"{what} is not an array of numbers.")
    if arr.size == 0:
        return arr.reshape(-1).astype(np.int64)
    if arr.dtype.kind not in "iu":
        fail(f"{what} has dtype {arr.dtype}; row pointers and column indices are integers.",
             "build them with integer dtype, e.g. np.array(indices, dtype=np.int64): a kernel "
             "indexes x with them.")
    return arr.astype(np.int64)


def _triple(answer, who: str, w) -> tuple:
    if answer is None:
        fail(f"{who} returned None.", "did you forget a `return` statement?")
    try:
        count = None if isinstance(answer, (str, bytes, dict, np.ndarray)) else len(answer)
    except TypeError:   # e.g. a SciPy sparse matrix, whose length is ambiguous
        count = None
    if count != 3:
        kind = type(answer).__name__
        fail(f"{who} should return three arrays (indptr, indices, values), got {kind}.",
             "return the tuple `indptr, indices, values`, in that order.")
    indptr, indices, values = answer
    indptr = _as_integers(indptr, f"{who}: indptr").reshape(-1)
    indices = _as_integers(indices, f"{who}: indices").reshape(-1)
    values = np.asarray(values)
    if values.dtype == object or (values.size and values.dtype.kind not in "iuf"):
        fail(f"{who}: values is not an array of numbers.")
    return indptr, indices, values.reshape(-1).astype(np.float64)


@exercise("15.1", blocks=["minprune.sparse_kernels.to_csr", "minprune.sparse_kernels_ref.to_csr",
                          "minprune.prune.sparse.sparse_layer",
                          "minprune.prune.sparse.SparseLinear.from_linear",
                          "minprune.exercises.lesson15._csr_truth"])
def check_dense_to_csr(fn, variant=None) -> None:
    """`fn(w) -> (indptr, indices, values)`: the CSR arrays of a 2-D array w (out, in) — the
    nonzeros row by row (columns increasing within a row), their columns, and out + 1 row pointers
    starting at 0 (row o is values[indptr[o]:indptr[o + 1]])."""
    require_callable(fn, "fn")
    for name, w in _csr_cases(variant):
        want_ptr, want_idx, want_val = _csr_truth(w)
        who = f"fn({name})"
        got_ptr, got_idx, got_val = _triple(fn(w.copy()), who, w)
        out, n_in = w.shape
        rows, cols = np.nonzero(w)
        counts = np.bincount(rows, minlength=out)
        if len(got_ptr) != out + 1:
            hint = "indptr has one entry per row plus one: out + 1, starting at 0."
            if np.array_equal(got_ptr, want_ptr[1:]):
                hint = "indptr starts with 0: prepend it (out + 1 entries in all)."
            elif np.array_equal(got_ptr, counts):
                hint = ("those are the counts per row; indptr is their running sum with a 0 in front "
                        "(np.cumsum): row o is indptr[o]:indptr[o + 1].")
            fail(f"{who}: indptr has {len(got_ptr)} entries; a {out}-row matrix needs {out + 1}.", hint)
        if not np.array_equal(got_ptr, want_ptr):
            hint = "indptr[o + 1] − indptr[o] is the number of nonzeros in row o; indptr[0] = 0."
            if np.array_equal(got_ptr[1:], counts):
                hint = ("those are the counts per row; indptr is their running sum (np.cumsum), so "
                        "that row o is indptr[o]:indptr[o + 1].")
            elif np.array_equal(got_ptr, np.arange(out + 1) * n_in):
                hint = "store only the nonzeros: a zero takes no place in CSR."
            elif np.array_equal(got_ptr, _csr_truth(np.where(w > 0, w, 0))[0]):
                hint = "negative weights are nonzero too: test `w != 0`, not `w > 0`."
            fail(f"{who}: indptr is {got_ptr.tolist()[:12]}, expected {want_ptr.tolist()[:12]}.", hint)
        if len(got_idx) != len(want_idx) or len(got_val) != len(want_val):
            fail(f"{who}: {len(got_idx)} indices and {len(got_val)} values; the matrix has "
                 f"{len(want_idx)} nonzeros.",
                 "one index and one value per nonzero, and indptr[-1] is their number.")
        if not np.array_equal(got_idx, want_idx):
            hint = "indices[k] is the column of values[k]."
            if np.array_equal(got_idx, rows):
                hint = "those are the rows of the nonzeros; indices holds their columns."
            elif all(np.array_equal(np.sort(got_idx[a:b]), want_idx[a:b])
                     for a, b in zip(want_ptr[:-1], want_ptr[1:])):
                hint = "within a row, list the nonzeros left to right: increasing column."
            elif np.array_equal(np.sort(got_idx), np.sort(want_idx)):
                hint = ("go row by row (np.nonzero(w) does): the nonzeros of row 0, then of row 1, "
                        "...; not column by column.")
            fail(f"{who}: indices are {got_idx.tolist()[:12]}, expected {want_idx.tolist()[:12]}.", hint)
        if not np.array_equal(got_val, want_val.astype(np.float64)):
            hint = "values[k] is the weight at row o, column indices[k], as it is in w."
            if np.array_equal(got_val, np.abs(want_val)):
                hint = "store the weights themselves, signs included, not |w|."
            elif np.array_equal(got_val, w.T[np.nonzero(w.T)].astype(np.float64)):
                hint = "take the values row by row, in the same order as indices."
            fail(f"{who}: values are {np.round(got_val[:8], 4).tolist()}, expected "
                 f"{np.round(want_val[:8].astype(np.float64), 4).tolist()}.", hint)
    correct("your CSR arrays are the matrix's, empty rows and negative weights included")


# --- 15.2 the backward pass's product: g · W, by scatter -----------------------------------------
def _rows_of(indptr) -> np.ndarray:
    """The row of every stored nonzero."""
    return np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))


def _grad_truth(indptr, indices, values, g, n_in, keep=None) -> np.ndarray:
    """g · W in float64 from W's CSR arrays (only the nonzeros where `keep` is True, if given)."""
    rows = _rows_of(indptr)
    if keep is not None:
        rows, indices, values = rows[keep], indices[keep], values[keep]
    res = np.zeros((g.shape[0], n_in))
    np.add.at(res.T, indices, values.astype(np.float64)[:, None] * g.astype(np.float64)[:, rows].T)
    return res


def _overwritten(indptr, indices, values, g, n_in) -> np.ndarray:
    """What `=` instead of `+=` computes: each column keeps the last nonzero written to it."""
    res = np.zeros((g.shape[0], n_in))
    for o, j, v in zip(_rows_of(indptr), indices, values):
        res[:, j] = v * g[:, o].astype(np.float64)
    return res


def _grad_cases(variant) -> list:
    """[(description, (indptr, indices, values), shape, grad_out (batch, out), dense w or None,
    watch the memory)]. The wide case is built from its CSR arrays alone (its dense form would be
    100 MB or more)."""
    rng = rng_for(variant, 152)
    if variant is None:
        small = np.array([[0, 2, 0, 0, 1], [0, 0, 0, 0, 0], [3, 0, 0, 4, 0]], dtype=np.float32)
        tall = _sparse(rng, (10, 6), 0.5)
        tall[:, 4:] = 0                                  # the last two columns are empty
        shared = np.zeros((4, 4), np.float32)
        shared[:, 1] = [1, 2, 3, 4]                      # every row has a nonzero in column 1
        shared[0, 0], shared[2, 3] = -1, 5
        dense = [("the lesson's 3×5 example, batch 2", small, rng.standard_normal((2, 3))),
                 ("a 10×6 matrix whose last two columns are empty, batch 3", tall,
                  rng.standard_normal((3, 10))),
                 ("a 4×4 matrix whose rows share column 1, batch 1", shared,
                  rng.standard_normal((1, 4))),
                 ("a 200×300 matrix, 90% zeros, batch 4", _sparse(rng, (200, 300), 0.9),
                  rng.standard_normal((4, 200)))]
        out, n_in = 64, 400_000
    else:
        dense = []
        for i in range(3):
            shape = (int(rng.integers(1, 61)), int(rng.integers(3, 81)))
            w = _sparse(rng, shape, float(rng.choice([0.3, 0.7, 0.95])), [np.float32, np.float64][i % 2])
            w[:, shape[1] - int(rng.integers(1, 3)):] = 0      # trailing columns empty
            w[:, 0] = rng.standard_normal(shape[0])              # a column every row shares
            g = rng.standard_normal((int(rng.integers(1, 10)), shape[0]))
            dense.append((f"a {shape[0]}×{shape[1]} {w.dtype} matrix, batch {g.shape[0]}", w, g))
        out, n_in = int(rng.integers(64, 97)), int(rng.integers(400_000, 600_001))
    cases = []
    for name, w, g in dense:
        indptr, indices, values = _csr_truth(w)
        cases.append((name, (indptr, indices.astype(np.int32), values), w.shape, g.astype(w.dtype), w,
                      False))
    flat = np.sort(rng.choice(out * n_in, size=200, replace=False))   # row-major: rows sorted
    rows, cols = np.divmod(flat, n_in)
    indptr = np.zeros(out + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=out), out=indptr[1:])
    values = rng.standard_normal(200).astype(np.float32)
    cases.append((f"a wide {out}×{n_in:,} matrix with 200 nonzeros, batch 2",
                  (indptr, cols.astype(np.int32), values), (out, n_in),
                  rng.standard_normal((2, out)).astype(np.float32), None, True))
    return cases


def _run_watched(fn, args) -> tuple:
    """(fn(*args), peak bytes allocated while it ran), by tracemalloc."""
    was = tracemalloc.is_tracing()
    if not was:
        tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        answer = fn(*args)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        if not was:
            tracemalloc.stop()
    return answer, peak


@exercise("15.2", blocks=["minprune.sparse_kernels.csr_linear", "minprune.sparse_kernels.nm_linear",
                          "minprune.sparse_kernels._csr_dot_nb", "minprune.sparse_kernels._csr_rows_nb",
                          "minprune.sparse_kernels._rows_product", "minprune.sparse_kernels.CSR.to_dense",
                          "minprune.sparse_kernels_ref.csr_linear",
                          "minprune.exercises.lesson15._grad_truth"])
def check_csr_grad_input(fn, variant=None) -> None:
    """`fn(indptr, indices, values, grad_out, n_in) -> (batch, n_in) array`: g · W for W (out, n_in)
    given by its CSR arrays and g = grad_out (batch, out) — the gradient of a layer y = x Wᵀ with
    respect to its input x — computed from the nonzeros, without rebuilding W densely."""
    require_callable(fn, "fn")
    for name, csr, shape, g, w, watch in _grad_cases(variant):
        indptr, indices, values = csr
        n_in = shape[1]
        want = _grad_truth(indptr, indices, values, g, n_in)
        args = [indptr.copy(), indices.copy(), values.copy(), g.copy(), n_in]
        who = f"fn({name})"
        if watch:
            answer, peak = _run_watched(fn, args)
            if peak > _WIDE_LIMIT:
                fail(f"{who} allocated {peak / 2 ** 20:.0f} MB at its peak; the product needs a few "
                     f"(W as a dense matrix is {shape[0] * shape[1] * 4 / 2 ** 20:.0f} MB).",
                     "work from the nonzeros: do not rebuild W as a dense matrix (np.zeros((out, "
                     "n_in)) filled from the CSR arrays); each nonzero adds into one column of "
                     "the result.")
        else:
            answer = fn(*args)
        for given, original, label in zip(args, (indptr, indices, values, g),
                                          ("indptr", "indices", "values", "grad_out")):
            if not np.array_equal(given, original):
                fail(f"{who} changed its argument {label}.",
                     "read the arrays you are given; write only into the result.")
        if answer is None:
            fail(f"{who} returned None.", "did you forget a `return` statement?")
        got = np.asarray(answer.data if isinstance(answer, Tensor) else answer)
        if got.dtype == object or (got.size and got.dtype.kind not in "iuf"):
            fail(f"{who} should return an array of numbers, got {type(answer).__name__}.")
        if got.shape != want.shape:
            hint = "one row per example, one column per input of W: (batch, n_in)."
            if got.shape == want.shape[::-1]:
                hint = "that is the transpose: return (batch, n_in), one row per example."
            elif got.ndim == 2 and got.shape == (want.shape[0], shape[0]):
                hint = ("one column per row of W is the shape of x Wᵀ, section 2's product. g W has "
                        "one column per column of W: each nonzero (o, j, v) sends v · g[:, o] to "
                        "column j.")
            elif got.ndim == 2 and got.shape[0] == want.shape[0] and got.shape[1] < want.shape[1]:
                hint = ("use n_in for the number of columns: the last columns of W can hold no "
                        "nonzero, so indices.max() + 1 can be too small.")
            fail(f"{who} has shape {got.shape}, expected {want.shape} (batch, n_in).", hint)
        scale = max(1.0, float(np.abs(want).max(initial=0.0)))

        def close(other, got=got, scale=scale):
            return other.shape == got.shape and np.allclose(got, other, rtol=1e-4, atol=1e-5 * scale)
        if close(want):
            continue
        hint = ("each nonzero (o, j, v) of W adds v · grad_out[:, o] to column j of the result; "
                "row o's nonzeros are k = indptr[o] … indptr[o + 1] − 1.")
        last = np.diff(indptr) > 0
        last_of_row = np.ones(len(indices), bool)
        last_of_row[indptr[1:][last] - 1] = False
        if got.dtype.kind in "iu":
            hint = "the result holds floats: create it with a float dtype (grad_out.dtype)."
        elif w is not None and shape[0] == shape[1] and close(g.astype(np.float64) @ w.T.astype(np.float64)):
            hint = ("that is g Wᵀ — section 2's product, gathering along rows. The backward pass needs "
                    "g W: each nonzero (o, j, v) sends v · g[:, o] to column j (a scatter).")
        elif close(_overwritten(indptr, indices, values, g, n_in)):
            hint = ("several rows can have a nonzero in the same column j: add into column j (+=), "
                    "do not overwrite it.")
        elif close(_grad_truth(indptr, indices, values, g, n_in, keep=last_of_row)):
            hint = ("the last nonzero of each row is missing: row o's nonzeros are "
                    "range(indptr[o], indptr[o + 1]), which already stops before indptr[o + 1].")
        fail(f"{who}: the result differs from g · W by up to {np.abs(got - want).max():.3g}.", hint)
    correct("your g · W matches, on a wide matrix too, without rebuilding W")


# --- 15.3 packing 2:4 ----------------------------------------------------------------------------
def _nm_truth(w, n=2, m=4, key=None) -> np.ndarray:
    """The mask keeping, in each group of m consecutive entries of a row, the n largest of `key`
    (|w| by default); ties to the lower position."""
    key = np.abs(w) if key is None else key
    groups = key.astype(np.float64).reshape(w.shape[0], -1, m)
    keep = np.argsort(-groups, axis=2, kind="stable")[:, :, :n]
    mask = np.zeros(groups.shape, bool)
    np.put_along_axis(mask, keep, True, axis=2)
    return mask.reshape(w.shape)


def _pack_cases(variant) -> list:
    """[(description, w)]: widths divisible by 4; continuous values (no ties but among zeros)."""
    rng = rng_for(variant, 153)
    if variant is None:
        small = np.array([[0.5, -2.0, 0.1, 1.0, 3.0, 0.2, -0.4, 0.3],
                          [-0.1, 0.2, -0.3, 0.4, 0.0, 0.0, 0.0, 0.7]], dtype=np.float32)
        pruned = _sparse(rng, (12, 16), 0.6, np.float64)   # some groups hold fewer than two nonzeros
        signed = np.array([[-3.0, 1.0, 2.0, -0.5]], dtype=np.float32)
        return [("a 2×8 example", small), ("a 16×32 float32 matrix",
                                           rng.standard_normal((16, 32)).astype(np.float32)),
                ("a 12×16 float64 matrix, 60% zeros already", pruned),
                ("one group with large negative weights, 1×4", signed)]
    cases = []
    for i in range(3):
        shape = (int(rng.integers(1, 21)), 4 * int(rng.integers(1, 17)))
        w = _sparse(rng, shape, float(rng.choice([0.0, 0.3, 0.7])), [np.float32, np.float64][i % 2])
        cases.append((f"a {shape[0]}×{shape[1]} {w.dtype} matrix", w))
    return cases


def _unpack(values, positions, shape) -> np.ndarray:
    """The dense (out, in) matrix that packed 2:4 values and positions stand for."""
    out, n_in = shape
    dense = np.zeros(shape)
    starts = (np.arange(n_in // 2) // 2) * 4
    dense[np.arange(out)[:, None], starts + positions] = values
    return dense


@exercise("15.3", blocks=["minprune.kernels.nm_mask", "minprune.kernels._nm_mask_nb",
                          "minprune.kernels_ref.nm_mask", "minprune.prune.structures.Granularity.nm_mask",
                          "minprune.sparse_kernels.to_nm", "minprune.sparse_kernels_ref.to_nm",
                          "minprune.prune.sparse.nm_pattern", "minprune.prune.pruner.prune",
                          "minprune.exercises.lesson15._nm_truth"])
def check_pack_2_4(fn, variant=None) -> None:
    """`fn(w) -> (values, positions)`: for w (out, in), in divisible by 4, keep the two largest |w|
    of every group of four consecutive entries of a row; values (out, in // 2) holds them group by
    group and positions (out, in // 2) their places inside the group, 0 to 3."""
    require_callable(fn, "fn")
    for name, w in _pack_cases(variant):
        out, n_in = w.shape
        want = np.where(_nm_truth(w), w, 0).astype(np.float64)
        answer = fn(w.copy())
        who = f"fn({name})"
        if answer is None:
            fail(f"{who} returned None.", "did you forget a `return` statement?")
        if isinstance(answer, np.ndarray) or not hasattr(answer, "__len__") or len(answer) != 2:
            hint = "return the tuple `values, positions`."
            if np.shape(answer) == w.shape:
                hint = ("that is a mask or a masked weight (lesson 07's answer); packing keeps only "
                        "the two values of each group and their positions: return (values, positions).")
            fail(f"{who} should return two arrays (values, positions), got {type(answer).__name__}.",
                 hint)
        values, positions = (np.asarray(a.data if isinstance(a, Tensor) else a) for a in answer)
        packed = (out, n_in // 2)
        for label, arr in (("values", values), ("positions", positions)):
            if arr.size != out * n_in // 2:
                hint = f"two per group of four: (out, in // 2) = {packed}."
                if arr.size == w.size:
                    hint = (f"pack them: only the two kept entries of each group, {packed} — not the "
                            "whole weight with zeros in it.")
                fail(f"{who}: {label} has shape {arr.shape}, expected {packed}.", hint)
        values = values.reshape(packed).astype(np.float64)
        if positions.size and positions.dtype.kind not in "iu":
            fail(f"{who}: positions has dtype {positions.dtype}; positions are small integers.",
                 "store them as integers (np.uint8 is enough: 0 to 3).")
        positions = positions.reshape(packed).astype(np.int64)
        if positions.size and (positions.min() < 0 or positions.max() > 3):
            hint = "a position is the place inside its group of four: 0, 1, 2 or 3."
            if positions.max() < n_in:
                hint = ("those look like column numbers; a position is the place inside the group, "
                        "column − 4·group: 0 to 3.")
            fail(f"{who}: positions run from {positions.min()} to {positions.max()}.", hint)
        if np.any(positions[:, 0::2] == positions[:, 1::2]):
            fail(f"{who}: a group stores two values at the same position.",
                 "the two kept entries of a group sit at two different places: store both.")
        got = _unpack(values, positions, w.shape)
        if np.array_equal(got, want):
            continue
        hint = ("in each group of four of a row, keep the two largest |w|: values[o, 2g:2g + 2] and "
                "positions[o, 2g:2g + 2] belong to group g.")
        if np.array_equal(got, np.where(_nm_truth(w, key=-np.abs(w)), w, 0)):
            hint = "you kept the two smallest; keep the two largest |w|."
        elif np.array_equal(got, np.where(_nm_truth(w, key=w), w, 0)):
            hint = "rank |w|, not w: a large negative weight matters as much as a large positive one."
        elif np.array_equal(got, np.abs(want)):
            hint = "store the weights themselves, signs included, not |w|."
        elif np.array_equal(np.sort(got, axis=1), np.sort(want, axis=1)):
            hint = ("the right weights, in the wrong places: values[o, i] must be the weight at "
                    "column 4·(i // 2) + positions[o, i] — keep each value next to its own position.")
        fail(f"{who}: unpacked, your answer differs from the 2:4 weight in "
             f"{int((got != want).sum())} places.", hint)
    correct("your 2:4 packing keeps the right weights at the right positions")
