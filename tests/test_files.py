"""atomic_write: all or nothing, no leftovers, the user's permissions; one cache folder rule."""
import os
from pathlib import Path

import pytest

from minprune.files import atomic_write, cache_dir

pytestmark = pytest.mark.engine


def test_new_file_gets_the_umask_mode_not_mkstemps_0600(tmp_path):
    old = os.umask(0o027)
    try:
        path = atomic_write(tmp_path / "sub" / "a.csv", "x,y\n")
    finally:
        os.umask(old)
    assert path.read_text() == "x,y\n"
    assert path.stat().st_mode & 0o777 == 0o640


def test_rewrite_keeps_the_existing_files_mode(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("old")
    path.chmod(0o664)
    atomic_write(path, b"new")
    assert path.read_bytes() == b"new" and path.stat().st_mode & 0o777 == 0o664


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"old")

    def half(f):
        f.write(b"half of the new")
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


def test_cache_dir_follows_minprune_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MINPRUNE_CACHE", str(tmp_path))
    assert cache_dir("baselines") == tmp_path / "baselines"
    monkeypatch.delenv("MINPRUNE_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "minprune"
