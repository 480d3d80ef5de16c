"""save / load a model as a `.npz` of its state_dict.

Masks travel with the weights (`<param>_mask`), so a pruned model reloads pruned. Unlike
`torch.nn.utils.prune`, which stores `weight_orig` *and* `weight_mask` and doubles the file, we
store the (already zeroed) weights once plus a boolean mask (1 byte per weight, compressed).

`load` trusts nothing in the file. A `.npz` is a zip of `.npy` arrays, each starting with a small
header (shape, dtype). `load` reads every header first, and checks the names, shapes and dtypes
against the model (and the recorded architecture's arguments against their bounds) before it
decompresses any data, so a corrupt or hostile file costs one clear error, not gigabytes of
memory. Nothing is ever unpickled.
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
    """Write `model.state_dict()` to `path` (.npz). A failed write keeps the old file."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"path: expected a file name ending in .npz, got {str(path)!r}")
    arrays = dict(model.state_dict())
    arch = getattr(model, "arch", None)
    if arch is not None:
        arrays[_ARCH_KEY] = np.array(json.dumps({"arch": arch, "kwargs": model.arch_kwargs}))
    return atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


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
    """Check every header, rebuild the model if needed, then read the arrays into it."""
    with archive:
        headers = _read_headers(archive)
        if model is None:
            model = _rebuild(*_read_architecture(archive, headers))
        headers.pop(_ARCH_KEY, None)
        _check_headers(headers, model)
        state = {name: _read_array(archive, name) for name in headers}
    return model.load_state_dict(state)


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


def _check_headers(headers: dict, model: Module) -> None:
    """Each array must be one the model has, with its shape and kind of dtype (masks are bool).
    An `output_mask` (which units of a module's output live) is 1-D bool, no longer than the
    model has weights. Together these bound what reading the data can allocate."""
    want = {}
    for name, p in model.named_parameters():
        want[name] = (p.shape, p.data.dtype.kind)
        want[name + "_mask"] = (p.shape, "b")
    for name, b in model.named_buffers():
        want[name] = (np.shape(b), np.asarray(b).dtype.kind)
    most = sum(p.data.size for p in model.parameters())
    for prefix, _ in model.named_modules():
        want[f"{prefix}.output_mask" if prefix else "output_mask"] = (None, "b")
    for name, (shape, dtype) in headers.items():
        if name not in want:
            raise ValueError(f"unexpected array {name!r}: not in the model's state_dict")
        want_shape, kind = want[name]
        ok_shape = (len(shape) == 1 and shape[0] <= most) if want_shape is None else shape == want_shape
        if dtype.kind != kind or not ok_shape:
            expected = f"1-D of at most {most}" if want_shape is None else f"{want_shape}"
            raise ValueError(f"array {name!r} is {dtype} of shape {shape}; the model expects "
                             f"{_KINDS.get(kind, kind)} of shape {expected}")


def _read_array(archive, name: str) -> np.ndarray:
    with archive.open(name + ".npy") as f:
        return npy.read_array(f, allow_pickle=False)
