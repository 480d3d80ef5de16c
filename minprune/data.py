"""Datasets and mini-batching for minprune, in plain NumPy.

Every loader returns ``(x_train, y_train), (x_test, y_test)`` with images as
float32 arrays of shape ``(N, 1, 28, 28)`` scaled to [0, 1] (N, channels,
height, width: the layout the convolution layers expect) and labels as int64.

* :func:`load_mnist5k` -- 5,000 real MNIST digits shipped with the repository
  (4,000 train / 1,000 test); needs no network, so tests and lessons use it.
* :func:`load_mnist`, :func:`load_fashion_mnist` -- the full 60k/10k sets,
  downloaded once into a cache directory and checked against known MD5s.
* :func:`read_idx` -- the parser for the IDX format those files use.
* :class:`DataLoader` -- yields mini-batches, optionally reshuffled per epoch.
"""

import gzip
import hashlib
import os
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path

import numpy as np

from .files import atomic_write, cache_dir

__all__ = [
    "DataLoader", "DownloadError", "fast_mode", "load_dataset",
    "load_fashion_mnist", "load_mnist", "load_mnist5k", "read_idx", "subset",
]

# ---------------------------------------------------------------- IDX format
# An IDX file is a tiny header and then raw numbers:
#   bytes 0-1  zero            byte 2  element type      byte 3  ndim
#   then ndim big-endian uint32 sizes, then prod(sizes) elements, big-endian.
_IDX_TYPES = {
    0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}


def read_idx(source) -> np.ndarray:
    """Parse an IDX file (gzipped or plain) into a NumPy array.

    ``source`` is a path or the file's bytes. Gzip is recognised by its magic
    bytes, not the file name. Multi-byte types come back in native byte order.
    Raises ValueError naming the problem if the data is not valid IDX.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        raw = bytes(source)
    else:
        raw = Path(source).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise ValueError(f"IDX data is a corrupt gzip stream: {err}") from None

    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"not IDX data: magic must start with two zero bytes, "
                         f"got {raw[:4]!r}")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_TYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_TYPES)
        raise ValueError(f"unknown IDX element type 0x{code:02X}; known: {known}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"IDX header says ndim={ndim} but the data ends "
                         f"after {len(raw)} bytes")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = _IDX_TYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"IDX shape {shape} needs {expected} data bytes, "
                         f"found {len(raw) - header}")
    # astype copies, so the result is writable and independent of `raw`.
    flat = np.frombuffer(raw, dtype, offset=header)
    return flat.reshape(shape).astype(dtype.newbyteorder("="))


def _to_float_images(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1]."""
    return (images.astype(np.float32) / 255.0)[:, None, :, :]


def _check_split(images, labels, what: str) -> None:
    """Catch a wrong or mismatched file before it turns into odd training."""
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise ValueError(f"{what}: images must be uint8 (N, 28, 28), "
                         f"got {images.dtype} {images.shape}")
    if labels.shape != (len(images),):
        raise ValueError(f"{what}: {len(images)} images but labels have shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{what}: labels must lie in 0..9")


# ------------------------------------------------------------------ mnist5k
def _default_mnist5k_paths() -> list[Path]:
    here = Path(__file__).resolve().parent
    # Inside the package first (an installed wheel), then the repository's data/.
    return [here / "_data" / "mnist5k.npz", here.parent / "data" / "mnist5k.npz"]


def load_mnist5k(path=None):
    """Load the 5,000-digit MNIST sample: 400 train + 100 test per class.

    ``path`` overrides where the ``.npz`` is read from; by default it is
    looked for inside the package, then in the repository's ``data/``
    (``python data/build_mnist5k.py`` rebuilds it).
    """
    candidates = [Path(path)] if path is not None else _default_mnist5k_paths()
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        tried = ", ".join(str(p) for p in candidates)
        raise FileNotFoundError(
            f"mnist5k.npz not found (looked at: {tried}). "
            "Rebuild it with `python data/build_mnist5k.py` from the repository root."
        )
    with np.load(found) as f:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(f.files)
        if missing:
            raise ValueError(f"{found} lacks the arrays {sorted(missing)}")
        parts = [f[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    _check_split(parts[0], parts[1], f"{found} train")
    _check_split(parts[2], parts[3], f"{found} test")
    return ((_to_float_images(parts[0]), parts[1].astype(np.int64)),
            (_to_float_images(parts[2]), parts[3].astype(np.int64)))


# ------------------------------------------------------- downloaded datasets
@dataclass(frozen=True)
class _Source:
    mirrors: tuple[str, ...]
    md5: dict  # file name -> hex MD5 of the gzipped file as published


_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
          "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

_SOURCES = {
    "mnist": _Source(
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        md5={"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
             "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
             "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
             "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"},
    ),
    "fashion_mnist": _Source(
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        md5={"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
             "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
             "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
             "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"},
    ),
}


class DownloadError(RuntimeError):
    """Every mirror failed: unreachable, or it served a file with the wrong checksum."""


def _cache_dir(name: str, root) -> Path:
    """``root`` if given, else ``files.cache_dir(name)`` ($MINPRUNE_CACHE or ~/.cache/minprune)."""
    return Path(root).expanduser() if root is not None else cache_dir(name)


def _md5(raw: bytes) -> str:
    return hashlib.md5(raw, usedforsecurity=False).hexdigest()  # an integrity check, not security


def _fetch(url: str) -> bytes:
    """The body at ``url`` (module level so tests can replace it)."""
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def _download(name: str, filename: str, folder: Path) -> bytes:
    """Fetch one file into ``folder`` (and return it), trying each mirror until the MD5 matches.

    Only verified bytes are written, atomically, so the cache never holds a half-written or
    wrong file (the files are about 10 MB: they fit in memory).
    """
    source = _SOURCES[name]
    failures = []
    for mirror in source.mirrors:
        url = mirror + filename
        try:
            raw = _fetch(url)
        except OSError as err:  # URLError, timeouts and refused connections are all OSErrors
            # An HTTPError's own text has the status code; a URLError's .reason is the cause.
            reason = err if isinstance(err, urllib.error.HTTPError) else getattr(err, "reason", err)
            failures.append(f"{url}: {reason}")
            continue
        got = _md5(raw)
        if got == source.md5[filename]:
            atomic_write(folder / filename, raw)
            return raw
        failures.append(f"{url}: checksum mismatch (md5 {got}, expected {source.md5[filename]})")
    tried = "\n  ".join(failures)
    raise DownloadError(
        f"{name}: could not download {filename}. Tried:\n  {tried}\n"
        f"If this machine is offline, fetch the four files {', '.join(_FILES)} elsewhere "
        f"and put them in {folder} (or pass root=..., or set MINPRUNE_CACHE)."
    )


def _cached(name: str, filename: str, folder: Path, download: bool) -> bytes:
    """The bytes of ``folder/filename`` once its MD5 matches. A missing or damaged copy is
    downloaded again (with a warning naming the damaged file), or refused if not ``download``."""
    path, md5 = folder / filename, _SOURCES[name].md5[filename]
    raw = path.read_bytes() if path.is_file() else None
    if raw is not None and _md5(raw) == md5:
        return raw
    if not download and raw is None:
        raise FileNotFoundError(f"{path} is missing and download=False")
    if not download:
        raise ValueError(f"{path} is damaged (wrong MD5, expected {md5}); "
                         "delete it, or call with download=True to fetch it again")
    if raw is not None:
        warnings.warn(f"{path} is damaged (wrong MD5): downloading it again", stacklevel=1)
    return _download(name, filename, folder)


def _load_idx_dataset(name: str, root, download: bool):
    folder = _cache_dir(name, root)
    arrays = [read_idx(_cached(name, filename, folder, download)) for filename in _FILES]
    x_train, y_train, x_test, y_test = arrays
    _check_split(x_train, y_train, f"{name} train")
    _check_split(x_test, y_test, f"{name} test")
    return ((_to_float_images(x_train), y_train.astype(np.int64)),
            (_to_float_images(x_test), y_test.astype(np.int64)))


def load_mnist(root=None, download=True):
    """Full MNIST (60,000 train / 10,000 test handwritten digits).

    Files are cached in ``root``, else ``$MINPRUNE_CACHE/mnist``, else
    ``~/.cache/minprune/mnist``; each is MD5-checked before use.
    """
    return _load_idx_dataset("mnist", root, download)


def load_fashion_mnist(root=None, download=True):
    """Fashion-MNIST (60,000 / 10,000 clothing images, same format as MNIST).

    Cached like :func:`load_mnist`, under ``fashion_mnist``.
    """
    return _load_idx_dataset("fashion_mnist", root, download)


_LOADERS = {"mnist5k": load_mnist5k, "mnist": load_mnist, "fashion_mnist": load_fashion_mnist}


def load_dataset(name: str, **kwargs):
    """Load a dataset by name: ``"mnist5k"``, ``"mnist"`` or ``"fashion_mnist"``."""
    if name not in _LOADERS:
        raise ValueError(f"name must be one of {sorted(_LOADERS)}, got {name!r}")
    return _LOADERS[name](**kwargs)


# --------------------------------------------------------- fast runs, subsets
def fast_mode() -> bool:
    """True when the env var ``MINPRUNE_FAST`` is "1" or "true": use less data and fewer epochs."""
    return os.environ.get("MINPRUNE_FAST", "").strip().lower() in {"1", "true"}


def _check_int(value, name: str, minimum: int) -> int:
    # bool is an Integral too, but batch_size=True is surely a mistake.
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def subset(x, y, n, seed=0):
    """Pick ``n`` examples, spreading them evenly over the classes.

    Classes take turns (in a seeded random order) until ``n`` are chosen, so
    counts per class differ by at most one unless a class runs out. The result
    keeps the original order. If ``n >= len(y)`` everything is returned.
    """
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    n = _check_int(n, "n", 1)
    perm = np.random.default_rng(seed).permutation(len(y))
    # turn[i] = how many earlier examples (in shuffled order) share perm[i]'s class;
    # sorting by it deals out one example per class, then a second, and so on.
    turn = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        mask = y[perm] == c
        turn[mask] = np.arange(mask.sum())
    chosen = np.sort(perm[np.argsort(turn, kind="stable")[:n]])
    return x[chosen], y[chosen]


# ---------------------------------------------------------------- batching
class DataLoader:
    """Iterate over ``(xb, yb)`` mini-batches of two aligned arrays.

    With ``shuffle=True`` every pass (every ``iter()`` call) uses a fresh
    permutation drawn from one ``np.random.default_rng(seed)``: epochs differ
    from each other, yet two loaders with the same seed produce the same
    sequence of epochs. ``drop_last`` drops a final batch smaller than
    ``batch_size``. ``len(loader)`` is the number of batches per epoch.
    """

    def __init__(self, x, y, batch_size=128, shuffle=False, seed=0, drop_last=False):
        self.x, self.y = np.asarray(x), np.asarray(y)
        if len(self.x) != len(self.y):
            raise ValueError(f"x and y must have the same length, "
                             f"got {len(self.x)} and {len(self.y)}")
        self.batch_size = _check_int(batch_size, "batch_size", 1)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        n, b = len(self.x), self.batch_size
        return n // b if self.drop_last else -(-n // b)  # -(-n // b) is ceil(n / b)

    def __iter__(self):
        # Draw the permutation now, not lazily inside the generator, so an
        # epoch's order is fixed by when iter() was called.
        order = self._rng.permutation(len(self.x)) if self.shuffle else None
        return self._batches(order)

    def _batches(self, order):
        for i in range(len(self)):
            start, stop = i * self.batch_size, (i + 1) * self.batch_size
            if order is None:
                yield self.x[start:stop], self.y[start:stop]  # views, no copy
            else:
                idx = order[start:stop]
                yield self.x[idx], self.y[idx]


def random_shift(x: np.ndarray, max_shift: int = 2, rng=None) -> np.ndarray:
    """Translate each image by up to `max_shift` pixels in each direction (zero fill).

    The cheapest data augmentation there is; with only 4,000 training digits it is worth about a
    point of test accuracy, because a digit moved two pixels is still the same digit.
    """
    max_shift = _check_int(max_shift, "max_shift", 0)
    if x.ndim != 4:
        raise ValueError(f"x: expected images of shape (N, C, H, W), got {x.shape}")
    if max_shift == 0:
        return x
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    n, _, h, w = x.shape
    s = max_shift
    padded = np.pad(x, ((0, 0), (0, 0), (s, s), (s, s)))
    dy, dx = rng.integers(0, 2 * s + 1, size=(2, n))
    rows = dy[:, None] + np.arange(h)[None, :]  # (N, H): which padded row each output row reads
    cols = dx[:, None] + np.arange(w)[None, :]
    return padded[np.arange(n)[:, None, None, None], np.arange(x.shape[1])[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]
