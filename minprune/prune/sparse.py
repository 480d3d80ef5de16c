"""Sparse inference: run each pruned layer with the kernel that is fastest for it.

A mask only says which weights are zero; the dense forward still multiplies them. `sparsify`
turns a pruned model into an inference copy whose Conv2d/Linear layers store their weights
without the zeros (`sparse_kernels`: CSR for unstructured sparsity, N:M packed for 2:4 and
friends) -- but only where that is measured to be faster. Whether it is depends on more than
the sparsity: the layer's shape, the batch size and the machine all move the break-even point
(bench/README.md, "Sparse kernels, per layer"), so `sparsify` does not guess, it times.

For each layer, on a random input of the layer's real input shape (found by one traced forward
pass) at `batch_size`:
    t_dense = the original module's forward     (masked weights, BLAS / im2col)
    t_csr   = a `SparseLinear`/`SparseConv2d` holding CSR
    t_nm    = the same holding N:M              (only when the weight is N:M sparse)
each the best of `repeats` calls after one warm-up, and the layer keeps the fastest. The copy's
`report` lists, per layer, what was measured and what was chosen.

The sparse layers compute forward only (no autograd, no `.grad` for their weights): to fine-tune,
keep training the masked model and call `sparsify` again. Nor are they saved (`mp.save` refuses
the copy): save the masked model, whose file already stores only the kept weights.
"""
from __future__ import annotations

import copy
import time

import numpy as np

from .. import checks, nn
from .. import sparse_kernels as SK
from ..autograd import is_grad_enabled, no_grad
from ..tensor import Tensor
from .masks import check_input_shape, prunable_layers

FORMATS = ("dense", "csr", "nm")
# N:M patterns recognised in a weight, fewest stored values first (1:4 before 2:4 ...)
NM_PATTERNS = ((1, 4), (2, 8), (2, 4), (4, 8))


# ---------------------------------------------------------------------------
# The inference layers
# ---------------------------------------------------------------------------


def _effective(param):
    """The array a layer computes with: data ⊙ mask (what `functional.masked` multiplies in)."""
    if param is None:
        return None
    data = param.data
    return data * param.mask if param.mask is not None else data.copy()


def _pack(w2d, fmt, nm):
    """A 2-D weight in `fmt`: CSR, or N:M with the (n, m) found by `nm_pattern`."""
    return SK.to_csr(w2d) if fmt == "csr" else SK.to_nm(w2d, *nm)


class _SparseLayer(nn.Module):
    """What SparseLinear and SparseConv2d share: eval mode from the start, the inference guard."""

    inference_only = True  # `mp.save` refuses a model holding one: its weights are no Parameters

    def __init__(self):
        super().__init__()
        self.training = False  # an inference layer: `model.train()` is what switches it on

    def _input(self, x):
        # These layers have no backward: a forward that could be differentiated must fail loudly
        # rather than hand back an output whose gradient silently stops here.
        if self.training:
            raise RuntimeError(f"{type(self).__name__} is an inference layer (forward only): call "
                               f"model.eval() first; to train, use the masked model instead")
        data = x.data if isinstance(x, Tensor) else np.asarray(x)
        if isinstance(x, Tensor) and x.requires_grad and is_grad_enabled():
            raise RuntimeError(f"{type(self).__name__} cannot compute gradients (its weights are "
                               f"stored sparse, forward only): run it under mp.no_grad() with an "
                               f"input that does not require grad")
        return data

    @property
    def nnz(self) -> int:
        """Stored weight values (N:M: includes the zeros that fill up short groups)."""
        return int(self.weight.values.size)


class SparseLinear(_SparseLayer):
    """y = x Wᵀ + b with W stored as CSR or N:M (`sparse_kernels`); inference only.

    >>> lin = nn.Linear(4, 2, rng=np.random.default_rng(0))
    >>> lin.weight.set_mask(np.array([[1, 0, 0, 1], [0, 1, 0, 0]], bool))
    >>> s = SparseLinear.from_linear(lin, "csr")
    >>> s
    SparseLinear(4, 2, format=csr, nnz=3, bias=True)
    >>> x = Tensor(np.ones((1, 4), np.float32))
    >>> bool(np.allclose(s(x).data, lin(x).data))
    True
    """

    def __init__(self, weight, bias, fmt):
        super().__init__()
        self.weight = weight  # a sparse_kernels.CSR or NM, (out, in)
        self.bias = bias
        self.format = fmt
        self.out_features, self.in_features = weight.shape

    @classmethod
    def from_linear(cls, layer, fmt, nm=None):
        """The inference twin of a (masked) nn.Linear, weights packed in `fmt` ("csr"/"nm")."""
        return cls(_pack(_effective(layer.weight), fmt, nm), _effective(layer.bias), fmt)

    def forward(self, x):
        x = self._input(x)
        kernel = SK.csr_linear if self.format == "csr" else SK.nm_linear
        # from batch 8 the kernels return a Fortran-ordered view; later reshapes (Flatten) and
        # `Tensor` expect row-major memory, so copy it to C order (free for batch < 8)
        return Tensor(np.ascontiguousarray(kernel(x, self.weight, self.bias)))

    def extra_repr(self):
        return (f"{self.in_features}, {self.out_features}, format={self.format}, nnz={self.nnz}, "
                f"bias={self.bias is not None}")


class SparseConv2d(_SparseLayer):
    """2-D convolution with W (O, C·kh·kw) stored as CSR or N:M; inference only.

    >>> conv = nn.Conv2d(1, 2, 3, padding=1, rng=np.random.default_rng(0))
    >>> s = SparseConv2d.from_conv2d(conv, "csr")
    >>> s
    SparseConv2d(1, 2, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), format=csr, nnz=18)
    >>> x = Tensor(np.ones((1, 1, 5, 5), np.float32))
    >>> bool(np.allclose(s(x).data, conv(x).data, atol=1e-6))
    True
    """

    def __init__(self, weight, bias, fmt, in_channels, kernel_size, stride, padding):
        super().__init__()
        self.weight = weight  # a sparse_kernels.CSR or NM, (O, C·kh·kw)
        self.bias = bias
        self.format = fmt
        self.out_channels, self.in_channels = weight.shape[0], in_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    @classmethod
    def from_conv2d(cls, layer, fmt, nm=None):
        """The inference twin of a (masked) nn.Conv2d, weights packed in `fmt` ("csr"/"nm")."""
        w = _effective(layer.weight)
        return cls(_pack(w.reshape(w.shape[0], -1), fmt, nm), _effective(layer.bias), fmt,
                   layer.in_channels, layer.kernel_size, layer.stride, layer.padding)

    def forward(self, x):
        x = self._input(x)
        kernel = SK.csr_conv2d if self.format == "csr" else SK.nm_conv2d
        return Tensor(kernel(x, self.weight, *self.kernel_size, *self.stride, *self.padding,
                             bias=self.bias))  # already C-contiguous NCHW

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, format={self.format}, "
                f"nnz={self.nnz}")


def sparse_layer(layer, fmt, nm=None):
    """`layer` (nn.Linear or nn.Conv2d) as a SparseLinear / SparseConv2d holding `fmt`."""
    if isinstance(layer, nn.Linear):
        return SparseLinear.from_linear(layer, fmt, nm)
    return SparseConv2d.from_conv2d(layer, fmt, nm)


# ---------------------------------------------------------------------------
# Measuring and choosing
# ---------------------------------------------------------------------------


def nm_pattern(w2d):
    """The sparsest (n, m) of `NM_PATTERNS` that every row of `w2d` (out, in) obeys, or None.

    >>> nm_pattern(np.array([[1., 0., 0., 2.], [0., 3., 0., 0.]]))
    (2, 4)
    >>> nm_pattern(np.ones((2, 4))) is None
    True
    """
    out, n_in = w2d.shape
    for n, m in NM_PATTERNS:
        if n_in % m == 0 and (np.count_nonzero(w2d.reshape(out, n_in // m, m), axis=2) <= n).all():
            return n, m
    return None


def _check_formats(formats) -> tuple:
    if isinstance(formats, str):
        formats = (formats,)
    if not isinstance(formats, (tuple, list)) or not formats:
        raise TypeError(f"formats: expected a non-empty tuple of names from {FORMATS}, "
                        f"got {formats!r}")
    for f in formats:
        checks.one_of(f, "formats", FORMATS)
    return tuple(dict.fromkeys(formats))  # without repeats, in the order given


def _input_shapes(model, input_shape, layers) -> dict:
    """{layer name: the shape of its input, batch dimension excluded}, from one forward pass."""
    seen = {}

    def recorder(name):
        def hook(module, args, out):  # returns None: the output stays as it is
            seen.setdefault(name, args[0].data.shape[1:])
        return hook

    handles = [m.register_forward_hook(recorder(name)) for name, m in layers.items()]
    try:
        with no_grad():
            model(Tensor(np.zeros((1, *input_shape), np.float32)))
    finally:
        for h in handles:
            h.remove()
    return seen


def _best_ms(module, x, repeats) -> float:
    """Best of `repeats` forward calls in milliseconds, after one warm-up call (Numba loading
    its compiled kernel, NumPy's first allocations)."""
    with no_grad():
        module(x)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            module(x)
            best = min(best, time.perf_counter() - t0)
    return best * 1e3


def _choose(layer, in_shape, formats, batch_size, repeats, rng) -> tuple:
    """(chosen format, candidate module or None for dense, report row) for one layer."""
    w = _effective(layer.weight)
    w2d = w.reshape(w.shape[0], -1)
    nm = nm_pattern(w2d)
    row = {"type": type(layer).__name__, "shape": tuple(w.shape),
           "input_shape": None if in_shape is None else tuple(in_shape),
           "sparsity": round(1.0 - float(np.count_nonzero(w)) / w.size, 4),
           "nm": None if nm is None else f"{nm[0]}:{nm[1]}",
           "format": "dense", "dense_ms": None, "csr_ms": None, "nm_ms": None, "note": ""}
    possible = [f for f in formats if f != "nm" or nm is not None]
    if in_shape is None:  # the traced forward never reached it: nothing to replace it in
        row["note"] = "not run by the forward pass; kept dense"
        return "dense", None, row
    if not possible:  # formats=("nm",) and this weight is not N:M sparse
        row["note"] = "not N:M sparse; kept dense"
        return "dense", None, row
    candidates = {f: (layer if f == "dense" else sparse_layer(layer, f, nm)) for f in possible}
    if len(candidates) == 1:  # forced: nothing to compare, nothing to time
        (fmt, module), = candidates.items()
        row["format"] = fmt
        return fmt, (None if fmt == "dense" else module), row
    x = Tensor(rng.standard_normal((batch_size, *in_shape)).astype(layer.weight.data.dtype))
    for fmt, module in candidates.items():
        row[f"{fmt}_ms"] = round(_best_ms(module, x, repeats), 4)
    # the fastest; on a tie the first of `formats` (dense by default: no conversion, no risk)
    fmt = min(candidates, key=lambda f: row[f"{f}_ms"])
    row["format"] = fmt
    return fmt, (None if fmt == "dense" else candidates[fmt]), row


def _replace(root, name, module) -> None:
    """Put `module` where `name` is, keeping its place in its parent's child order."""
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)  # Module.__setattr__: a replaced child keeps its position


def sparsify(model, input_shape, batch_size=128, formats=FORMATS, repeats=5, seed=0):
    """An inference copy of `model` whose Conv2d/Linear layers use the fastest measured format.

    Each layer is timed on this machine at `batch_size` on a random input of its own input shape
    (found by one forward pass on `input_shape`, one example without the batch dimension), best
    of `repeats`: the original dense module against a `SparseLinear`/`SparseConv2d` holding CSR,
    and N:M when the weight is N:M sparse (1:4, 2:8, 2:4 or 4:8). The fastest is kept; a layer
    kept dense stays the original module (mask included). `formats` limits the candidates:
    `formats=("csr",)` forces CSR everywhere (no timing: a deterministic choice), ("nm",) N:M
    where the weight allows it (dense elsewhere, with a `note` in the report).

    Why measure: there is no single break-even sparsity. bench/README.md (bench_sparse, a noisy
    2-core Xeon) found CSR as fast as dense between 70% and 90% for fc 784→300 (batch 128 /
    batch 1), 50-70% for fc 1024→1024, and at or below 50% for the convolutions (the dense
    im2col path is slow). My own quick measurement with this function (lenet5, batch 128, best
    of 5, same 2-core VM, OpenBLAS at one thread, not a benchmark): at 90% unstructured (layer
    sparsities 35-95%) CSR won every layer, 3-5x on the convolutions and 1.6-3.4x on the fc
    layers; unpruned, dense won every layer but the first conv (1→6 channels: the direct sparse
    convolution beat im2col + BLAS 3.5x even with no zeros to skip). The choice is only as good
    as the timing: on a loaded machine a multi-threaded BLAS call can wait for a starved worker
    thread (a 0.14 ms dense fc measured 7 ms at `nice -n 19`), which favours the serial kernels.
    Where that matters, sparsify on a quiet machine or with OPENBLAS_NUM_THREADS=1.

    Returns the copy in eval mode; the original (weights, masks, mode) is untouched. The copy's
    `report` is a list of dicts, one per Conv2d/Linear in definition order: name, type, shape,
    input_shape, sparsity, nm ("2:4" or None), format, dense_ms/csr_ms/nm_ms (None when not
    timed) and a note. Its sparse layers are forward only: training them, or a forward with an
    input that requires grad, raises RuntimeError. Composes with `compact`: cut the structured
    units first (`sparsify(compact(model), ...)`), then store what remains sparse.
    Cost: one traced forward, then (1 + repeats) forwards of each layer per candidate format.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    input_shape = check_input_shape(input_shape)
    batch_size = checks.integer(batch_size, "batch_size", minimum=1)
    repeats = checks.integer(repeats, "repeats", minimum=1)
    formats = _check_formats(formats)
    seed = checks.integer(seed, "seed", minimum=0)

    fast = copy.deepcopy(model)
    fast.eval()  # BatchNorm uses its running statistics; sparse layers refuse train mode
    layers = prunable_layers(fast)
    in_shapes = _input_shapes(fast, input_shape, layers)
    rng = np.random.default_rng(seed)
    report, chosen = [], {}
    for name, layer in layers.items():
        fmt, module, row = _choose(layer, in_shapes.get(name), formats, batch_size, repeats, rng)
        report.append({"name": name, **row})
        if module is not None:
            module.output_mask = layer.output_mask  # activation pruning stays in force
            chosen[name] = module.eval()
    if "" in chosen:  # the model is itself one Linear/Conv2d
        fast = chosen.pop("")
    for name, module in chosen.items():
        _replace(fast, name, module)
    # layer types changed: a saved architecture or a traced graph no longer describes the copy
    object.__setattr__(fast, "arch", None)
    object.__setattr__(fast, "_dependency_graph", None)
    object.__setattr__(fast, "report", report)
    return fast
