"""save / load a model as a `.npz` of its state_dict, pruned weights stored compactly.

A `.npz` is a zip of `.npy` arrays. A dense parameter is stored as it is. A masked (pruned)
parameter `p` is stored as two arrays instead of its full weights:

    p.mask_bits   np.packbits(mask): the flattened mask, 8 weights a byte (uint8, ceil(n/8) bytes)
    p.values      weights[mask]: only the kept weights, in C order, in the parameter's dtype

`load` puts them back with `weights = zeros; weights[mask] = values`, bit for bit: a pruned
weight is exactly +0 in memory anyway (see `Parameter.set_mask`). Buffers (BatchNorm's running
statistics) and activation masks (`<module>.output_mask`, bool) are stored as they are.

Why a bit mask and not CSR? Measured on randomly initialised lenet_300_100 / lenet5 / conv4
(global magnitude pruning; file size as a share of the same model's dense file), the bit mask +
values layout was the smaller at every sparsity: at 95%, 6.2% / 7.3% / 5.9%, against 6.9% /
8.4% / 6.6% for CSR (int32 row pointers, uint16 column indices, the same values) and 9.1% /
10.1% / 8.2% for the previous format (full weights + a bool mask, both compressed); at 50%,
52-53% against 58-61% for CSR. Before compression a mask costs 1 bit per weight and CSR 16 bits
per *kept* weight, so CSR would only win past 15/16 ≈ 94% sparsity; after deflate (which
squeezes the mostly-zero mask bytes) it still lost at 99% (1.4-2.8% vs 1.6-3.3%). The bit mask
is also the simpler to read. `bench/bench_checkpoint.py` prints the table (CSR included).

The format version is the zip's comment (`zipfile.ZipFile(path).comment`): b"minprune format 2".
A file without one is format 1, what earlier versions (or `np.savez(path, **model.state_dict())`)
wrote: full weights plus `<param>_mask` bool arrays; `load` still reads it. Why a comment and
not a `__format__` array: such an array costs ~190 bytes, and a dense file must not grow. What
pays for the comment's 17 bytes: numpy's savez forces a 20-byte zip64 record onto every member,
and `save` adds one only where a member needs it.

`load` trusts nothing in the file. Every `.npy` starts with a small header (shape, dtype). `load`
reads every header first and checks the names, shapes and dtypes against the model (and the
recorded architecture's arguments against their bounds) before it decompresses any data, so a
corrupt or hostile file costs one clear error, not gigabytes of memory. For a compact parameter
the header fixes the mask's length (ceil(n/8) bytes, uint8) and bounds the values' (at most n
floats); their exact count must equal the mask's popcount, so the (small) mask is read and
checked before the values are. Nothing is ever unpickled.

    >>> model = mp.models.lenet5()
    >>> masks = mp.prune.prune(model, 0.95)
    >>> mp.save(model, "lenet5-95.npz")        # ~7% of the dense file's size
    >>> same = mp.load("lenet5-95.npz")        # the same weights and masks, bit for bit
"""
from __future__ import annotations

import json
import math
import zipfile
import zlib
from pathlib import Path

import numpy as np
from numpy.lib import format as npy

from ..files import atomic_write
from .module import Module

FORMAT = b"minprune format 2"  # the zip comment of the files `save` writes
_BITS, _VALUES = ".mask_bits", ".values"  # a compact parameter's two arrays
_ARCH_KEY = "__arch__"
_ARCH_MAX_CHARS = 10_000  # the recorded architecture is a short JSON string
_HEADER_READERS = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
_KINDS = {"b": "bool", "f": "floats", "i": "ints", "u": "unsigned ints"}
# The ways a damaged file shows up while it is read; `load` turns each into one error naming it.
_DAMAGED = (ValueError, KeyError, zipfile.BadZipFile, zlib.error, EOFError,
            NotImplementedError, OSError)

# Architectures `load` can rebuild: name -> (builder, {argument: its bounds}), where bounds are a
# range of allowed ints, or a tuple of such ranges for a fixed-length list of ints.
# models.py registers its factories here, so nn/ never imports models (dependencies point down).
_ARCHITECTURES: dict = {}


def register_architecture(name: str, builder, **allowed: range | tuple) -> None:
    """Let `load` rebuild a saved model whose `model.arch == name` as `builder(**model.arch_kwargs)`,
    once each recorded argument is an int in its `allowed` range, or, where `allowed` is a tuple
    of ranges, a list of that many ints, each in its range (passed on as a tuple: a ResNet's
    blocks per stage). The bounds are what stop a file that asks for 5e7 classes before 18 GiB
    are allocated."""
    _ARCHITECTURES[name] = (builder, allowed)


def save(model, path) -> Path:
    """Write `model`'s state_dict to `path` (.npz), each masked parameter as its packed mask and
    kept values. A failed write keeps the old file.

    >>> mp.save(model, "model.npz")
    PosixPath('model.npz')
    """
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"path: expected a file name ending in .npz, got {str(path)!r}")
    _check_saveable(model)
    arrays = _compact_state(model)
    arch = getattr(model, "arch", None)
    if arch is not None:
        arrays[_ARCH_KEY] = np.array(json.dumps({"arch": arch, "kwargs": model.arch_kwargs}))
    return atomic_write(path, lambda f: _write_npz(f, arrays))


def _check_saveable(model) -> None:
    """Refuse a `sparsify` copy: its sparse layers keep their weights outside the parameters, so
    the file would silently lack them."""
    for name, module in model.named_modules():
        if getattr(module, "inference_only", False):
            raise TypeError(f"model: {name or 'the model'!r} is a {type(module).__name__} from "
                            f"mp.prune.sparsify, whose weights are not parameters; save the masked "
                            f"model (its pruned weights are stored compactly) and call sparsify "
                            f"after loading it")


def _compact_state(model: Module) -> dict:
    """`model.state_dict()`, with each masked parameter's weights and bool mask replaced by the
    mask's bits and the kept weights: at 95% sparsity about 1 + 0.05·32 bits a weight, not 32 + 8.

    >>> layer = mp.nn.Linear(3, 1); layer.weight.set_mask([[True, False, True]])
    >>> _compact_state(layer)["weight.mask_bits"]   # 0b101_00000: 3 weights, 5 padding bits
    array([160], dtype=uint8)
    """
    arrays = model.state_dict()
    for name, p in model.named_parameters():
        if p.mask is not None:
            del arrays[name], arrays[name + "_mask"]
            arrays[name + _BITS] = np.packbits(p.mask)  # packbits flattens (C order)
            arrays[name + _VALUES] = p.data[p.mask]
    return arrays


def _write_npz(file, arrays: dict) -> None:
    """What `np.savez_compressed` writes, plus the format version as the zip's comment, and
    minus the zip64 record numpy forces onto every member (20 bytes each, so that arrays of any
    size can be streamed): only a member that may pass zip's 2 GiB limit gets one here."""
    with zipfile.ZipFile(file, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.comment = FORMAT
        for name, array in arrays.items():
            with archive.open(name + ".npy", "w", force_zip64=array.nbytes > 2**30) as f:
                npy.write_array(f, array, allow_pickle=False)


def load(path, model=None):
    """Load weights (and masks) from `path` into `model`; with no model, rebuild the architecture
    recorded by `save` (one registered with `register_architecture`) and return it."""
    path = Path(path)
    if model is not None and not isinstance(model, Module):
        raise TypeError(f"model: expected an nn.Module or None, got {type(model).__name__}")
    if not path.is_file():
        raise FileNotFoundError(f"path: no such file {str(path)!r}")
    with open(path, "rb") as file:  # outside the try: a PermissionError stays one
        try:
            return _load(zipfile.ZipFile(file), model)
        except _DAMAGED as err:  # OSError here is a seek to an offset the damaged file made up
            reason = err.args[0] if isinstance(err, KeyError) and err.args else err
            raise ValueError(f"path: cannot load {str(path)!r}: {reason}") from None


def _load(archive: zipfile.ZipFile, model):
    """Check the format and every header, rebuild the model if needed, then read the arrays into
    it."""
    with archive:
        version = _format_version(archive)
        headers = _read_headers(archive)
        if model is None:
            model = _rebuild(*_read_architecture(archive, headers))
        headers.pop(_ARCH_KEY, None)
        _check_headers(headers, model, version)
        state = _read_state(archive, headers, model)
    return model.load_state_dict(state)


def _format_version(archive: zipfile.ZipFile) -> int:
    """2 for a file `save` wrote; 1 for a file without a comment (the full weights and bool
    masks of earlier versions, or a state_dict saved with `np.savez`)."""
    if archive.comment == FORMAT:
        return 2
    if archive.comment == b"":
        return 1
    raise ValueError(f"unknown format {archive.comment[:100]!r}: this minprune reads {FORMAT!r} "
                     "and files without a format comment (format 1); a newer minprune may read it")


def _read_headers(archive: zipfile.ZipFile) -> dict:
    """name -> (shape, dtype) of every array, from the `.npy` headers alone (a few hundred bytes
    of each member are decompressed). Refuses object arrays and members whose size disagrees
    with their header."""
    headers = {}
    for info in archive.infolist():
        name = info.filename.removesuffix(".npy")
        if name == info.filename or name in headers or info.flag_bits & 0x1:  # 0x1: encrypted
            raise ValueError(f"unexpected member {info.filename!r} "
                             "(expected distinct, unencrypted .npy arrays)")
        with archive.open(info) as f:
            version = npy.read_magic(f)
            if version not in _HEADER_READERS:
                raise ValueError(f"array {name!r}: unsupported .npy format version {version}")
            try:
                shape, _, dtype = _HEADER_READERS[version](f)
            except Exception:  # NumPy fails in several ways here (ValueError, SyntaxError,
                # TokenError), and its message may suggest allow_pickle=True: never that.
                raise ValueError(f"array {name!r}: its .npy header is damaged") from None
            if dtype.hasobject:  # loading it would need pickle, which could run code
                raise ValueError(f"array {name!r} holds Python objects (dtype {dtype}); "
                                 "model files hold numbers only")
            nbytes = math.prod(shape) * dtype.itemsize
            if info.file_size != f.tell() + nbytes:  # so reading it later reads exactly nbytes
                raise ValueError(f"array {name!r}: its header says {shape} {dtype} "
                                 f"({nbytes} bytes) but it holds {info.file_size - f.tell()}")
        headers[name] = (shape, dtype)
    return headers


def _read_architecture(archive, headers) -> tuple:
    """The recorded (architecture name, arguments), after checking they are a short JSON string."""
    if _ARCH_KEY not in headers:
        raise ValueError("it records no architecture (the model had no `arch`); "
                         "pass model= to load into")
    shape, dtype = headers[_ARCH_KEY]
    if shape != () or dtype.kind != "U" or dtype.itemsize > 4 * _ARCH_MAX_CHARS:
        raise ValueError(f"{_ARCH_KEY} must be a string of at most {_ARCH_MAX_CHARS} characters, "
                         f"got {dtype} of shape {shape}")
    info = json.loads(str(_read_array(archive, _ARCH_KEY)))
    if not (isinstance(info, dict) and isinstance(info.get("arch"), str)
            and isinstance(info.get("kwargs"), dict)):
        raise ValueError(f"{_ARCH_KEY} must be {{'arch': name, 'kwargs': {{...}}}}, got {info!r:.200}")
    return info["arch"], info["kwargs"]


def _rebuild(arch: str, kwargs: dict) -> Module:
    """Build the registered architecture, once every argument is an int within its bounds."""
    if arch not in _ARCHITECTURES:
        raise ValueError(f"architecture {arch!r:.100} is not one of {sorted(_ARCHITECTURES)}")
    builder, allowed = _ARCHITECTURES[arch]
    for name in kwargs:
        if name not in allowed:
            raise ValueError(f"{arch}: unknown argument {name!r:.100} (allowed: {sorted(allowed)})")
    return builder(**{name: _bounded(f"{arch}: argument {name}", value, allowed[name])
                      for name, value in kwargs.items()})


def _bounded(what: str, value, bounds):
    """`value` if it is an int in the range `bounds`, or, for a tuple of ranges, a list of ints
    each in its range (returned as a tuple); else a ValueError saying what was expected."""
    if isinstance(bounds, tuple):
        if not isinstance(value, list) or len(value) != len(bounds):
            raise ValueError(f"{what}={value!r:.100} must be a list of {len(bounds)} ints")
        return tuple(_bounded(f"{what}[{i}]", v, b) for i, (v, b) in enumerate(zip(value, bounds)))
    if type(value) is not int or value not in bounds:  # JSON gives int, float, bool, str...
        raise ValueError(f"{what}={value!r:.100} must be an int in [{bounds.start}, {bounds.stop - 1}]")
    return value


def _check_headers(headers: dict, model: Module, version: int) -> None:
    """Each array must be one the model has, with its shape and kind of dtype (masks are bool,
    packed masks uint8). Where the exact length is not in the header (a compact parameter's
    values; an `output_mask`, which units of a module's output live) the array must be 1-D and
    no longer than the weights it stands for. Together these bound what reading can allocate."""
    want = {}  # name -> (shape, or the most entries of a 1-D array; a dtype kind, or a dtype)
    for name, p in model.named_parameters():
        want[name] = (p.shape, p.data.dtype.kind)
        if version == 1:
            want[name + "_mask"] = (p.shape, "b")
        else:
            want[name + _BITS] = (((p.data.size + 7) // 8,), np.dtype(np.uint8))
            want[name + _VALUES] = (p.data.size, p.data.dtype.kind)
    for name, b in model.named_buffers():
        want[name] = (np.shape(b), np.asarray(b).dtype.kind)
    most = sum(p.data.size for p in model.parameters())
    for prefix, _ in model.named_modules():
        want[f"{prefix}.output_mask" if prefix else "output_mask"] = (most, "b")
    for name, (shape, dtype) in headers.items():
        if name not in want:
            raise ValueError(f"unexpected array {name!r}: not in the model's state_dict")
        want_shape, kind = want[name]
        at_most = isinstance(want_shape, int)
        ok_shape = (len(shape) == 1 and shape[0] <= want_shape) if at_most else shape == want_shape
        ok_dtype = dtype == kind if isinstance(kind, np.dtype) else dtype.kind == kind
        if not (ok_shape and ok_dtype):
            expected = f"1-D of at most {want_shape}" if at_most else f"{want_shape}"
            raise ValueError(f"array {name!r} is {dtype} of shape {shape}; the model expects "
                             f"{_KINDS.get(kind, kind)} of shape {expected}")
    for name, _ in model.named_parameters():  # each parameter is stored one way, whole
        held = [n for n in (name, name + _BITS, name + _VALUES) if n in headers]
        if held not in ([], [name], [name + _BITS, name + _VALUES]):  # [] -> "missing keys"
            raise ValueError(f"parameter {name!r}: expected its weights or both {name + _BITS!r} "
                             f"and {name + _VALUES!r}, got {held}")


def _read_state(archive, headers: dict, model: Module) -> dict:
    """The state_dict the checked file holds: compact parameters unpacked to weights + mask,
    everything else read as it is."""
    compact = {name: p.shape for name, p in model.named_parameters() if name + _BITS in headers}
    parts = {name + part for name in compact for part in (_BITS, _VALUES)}
    state = {name: _read_array(archive, name) for name in headers if name not in parts}
    for name, shape in compact.items():
        state[name], state[name + "_mask"] = _read_compact(archive, headers, name, shape)
    return state


def _read_compact(archive, headers: dict, name: str, shape: tuple) -> tuple:
    """(weights, mask) of a compact parameter. The mask is read first: its popcount must be the
    values' length (from their header) before the values are read."""
    n = math.prod(shape)
    bits = np.unpackbits(_read_array(archive, name + _BITS))
    if bits[n:].any():
        raise ValueError(f"array {name + _BITS!r}: padding bits past the {n} weights are set")
    mask = bits[:n].astype(bool).reshape(shape)
    (count,), dtype = headers[name + _VALUES]
    if count != mask.sum():
        raise ValueError(f"array {name + _VALUES!r} holds {count} values but {name + _BITS!r} "
                         f"keeps {mask.sum()} weights")
    weights = np.zeros(shape, dtype)  # a pruned weight is exactly +0, as set_mask leaves it
    weights[mask] = _read_array(archive, name + _VALUES)
    return weights, mask


def _read_array(archive, name: str) -> np.ndarray:
    with archive.open(name + ".npy") as f:
        return npy.read_array(f, allow_pickle=False)
