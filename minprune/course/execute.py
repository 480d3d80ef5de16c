"""Run lessons top to bottom, once: executed notebooks are cached until the lesson or the library
changes.

The website shows every lesson with the outputs of a **full-mode** run, and `make test-full` checks
the claims those runs make; both read the same cache (`_build/executed/NN_title.ipynb`). A cached
notebook is reused only when its key matches: a hash of the lesson file, every source file of the
`minprune` package and the mode. (Jupyter Book's own cache keys on the notebook's code cells alone,
so it would keep stale outputs after a change to the library; that is why this small cache exists.)

    >>> nb = execute(Path("lessons/04_what_is_pruning.ipynb"), fast=False)
    >>> nb.metadata["minprune"]["execution"]["seconds"]

A run also records the baselines it trained (`execution.trained`): a lesson that loads a cached
baseline takes minutes longer the first time, when it trains it, and its frame states both times.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from .. import files
from ..files import atomic_write

PACKAGE = Path(__file__).resolve().parents[1]
ROOT = PACKAGE.parent
DEFAULT_CACHE = ROOT / "_build" / "executed"


# The course's own tooling: no lesson runs it, so editing it (the site, the grader) keeps the cache.
TOOLING = {"course/book.py", "course/cli.py", "course/execute.py", "course/grade.py", "course/notebooks.py"}


def fingerprint(path: Path, fast: bool) -> str:
    """The cache key of one lesson run: the lesson, the library's sources and the mode."""
    h = hashlib.sha256(Path(path).read_bytes())
    for source in sorted(PACKAGE.rglob("*.py")):
        if source.relative_to(PACKAGE).as_posix() in TOOLING:
            continue
        h.update(source.relative_to(PACKAGE).as_posix().encode())
        h.update(source.read_bytes())
    h.update(b"fast" if fast else b"full")
    return h.hexdigest()


def _entry(path, fast: bool, cache_dir) -> Path:
    """Where the run of `path` is cached: a folder per mode, and per BLAS kernels if
    OPENBLAS_CORETYPE forces some (other kernels round differently, so their runs print other
    numbers: `make test-full-other-blas`)."""
    forced = os.environ.get("OPENBLAS_CORETYPE", "").strip().lower()
    folder = ("fast" if fast else "full") + (f"-{forced}" if forced else "")
    return Path(cache_dir) / folder / Path(path).name


def _kernel_manager(folder: Path, fast: bool):
    """A KernelManager whose python3 kernel is this interpreter, in the chosen mode, with minprune
    importable from the checkout and no GUI backend."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec = folder / "kernels" / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join([str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (minprune)", "language": "python",
        "env": {"MINPRUNE_FAST": "1" if fast else "0", "MPLBACKEND": "Agg", "PYTHONPATH": path}}))
    ksm = KernelSpecManager(kernel_dirs=[str(folder / "kernels")], ensure_native_kernel=False)
    return KernelManager(kernel_name="python3", kernel_spec_manager=ksm)


def _baselines() -> set[str]:
    """The trained baselines cached so far (the lesson's kernel shares this $MINPRUNE_CACHE)."""
    folder = files.cache_dir("baselines")   # not the `cache_dir` argument below: the run cache
    return {p.name for p in folder.glob("*.npz")} if folder.is_dir() else set()


def cached(path: Path, fast: bool = False, cache_dir: Path = DEFAULT_CACHE):
    """The cached run of `path` if it is still valid, else None."""
    target = _entry(path, fast, cache_dir)
    if not target.exists():
        return None
    try:
        nb = nbformat.read(target, 4)
    except Exception:   # a damaged cache entry is simply run again
        return None
    run = nb.metadata.get("minprune", {}).get("execution", {})
    return nb if run.get("key") == fingerprint(path, fast) else None


def execute(path, fast: bool = False, cache_dir=DEFAULT_CACHE, timeout: int = 3600):
    """The lesson at `path` executed top to bottom (from the cache when still valid). Raises
    nbclient's CellExecutionError when a cell fails; a failed run is not cached."""
    from nbclient import NotebookClient

    path = Path(path)
    hit = cached(path, fast, cache_dir)
    if hit is not None:
        return hit
    nb = nbformat.read(path, 4)
    with tempfile.TemporaryDirectory() as tmp:
        km = _kernel_manager(Path(tmp), fast)
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", km=km,
                                resources={"metadata": {"path": str(path.parent)}})
        before, start = _baselines(), time.perf_counter()
        try:
            client.execute()
        finally:   # nbclient leaves a kernel it did not start running
            if km.has_kernel:
                km.shutdown_kernel(now=True)
        seconds = time.perf_counter() - start
    nb.metadata.setdefault("minprune", {})["execution"] = {
        "key": fingerprint(path, fast), "seconds": round(seconds, 1), "fast": fast,
        "trained": sorted(_baselines() - before)}
    # atomic: a killed run never leaves half a notebook in the cache
    atomic_write(_entry(path, fast, cache_dir), nbformat.writes(nb))
    return nb
