"""Files minprune writes: atomically, with the user's permissions, in one cache folder.

Every file minprune writes (checkpoints, results.csv, cached baselines, downloads, gradebooks,
executed lessons) goes through `atomic_write`. Readers see either the old file or the new one,
never half of one. A failed write leaves no temporary file behind. The new file gets the mode a
plain `open()` would give: the existing file's mode, or 0o666 minus the umask. (`tempfile.mkstemp`
creates 0600 files, so a bare rename would change a shared results.csv to owner-only.)

    >>> atomic_write("results/results.csv", lambda f: f.write(b"a,b\\n1,2\\n"))
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """Where downloads and trained baselines are cached: `$MINPRUNE_CACHE`, else
    `~/.cache/minprune`, joined with `parts` (e.g. `cache_dir("baselines")`)."""
    base = os.environ.get("MINPRUNE_CACHE") or Path.home() / ".cache" / "minprune"
    return Path(base, *parts)


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (os.umask can only be
    read by setting it, which would race with other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _mode_for(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_umask()


def atomic_write(path, write) -> Path:
    """Create or replace `path` with what `write(binary_file)` writes (or with `write` itself when
    it is bytes or str). Parent folders are created. Returns the path."""
    path = Path(path)
    if isinstance(write, (bytes, str)):
        data = write.encode() if isinstance(write, str) else write
        write = lambda f: f.write(data)  # noqa: E731
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
