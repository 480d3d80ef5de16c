"""save / load a model as a `.npz` of its state_dict, written atomically.

Masks travel with the weights (`<param>_mask`), so a pruned model reloads pruned. Unlike
`torch.nn.utils.prune`, which stores `weight_orig` *and* `weight_mask` and doubles the file, we
store the (already zeroed) weights once plus a boolean mask (1 byte per weight, compressed).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

_ARCH_KEY = "__arch__"


def save(model, path) -> Path:
    """Write `model.state_dict()` to `path` (.npz). Never leaves a half-written file behind."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"path: expected a file name ending in .npz, got {str(path)!r}")
    arrays = dict(model.state_dict())
    arch = getattr(model, "arch", None)
    if arch is not None:
        arrays[_ARCH_KEY] = np.array(json.dumps({"arch": arch, "kwargs": model.arch_kwargs}))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def load(path, model=None):
    """Load weights (and masks) from `path` into `model`; with no model, rebuild the architecture
    recorded by `save` (models from `minprune.models`) and return it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no such file {str(path)!r}")
    with np.load(path, allow_pickle=False) as f:
        state = {k: f[k] for k in f.files}
    meta = state.pop(_ARCH_KEY, None)
    if model is None:
        if meta is None:
            raise ValueError(f"model: {str(path)!r} records no architecture; pass model= to load into")
        from ..models import get_model
        info = json.loads(str(meta))
        model = get_model(info["arch"], **info["kwargs"])
    return model.load_state_dict(state)
