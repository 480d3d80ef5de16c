"""save / load: round trips, atomic writes with the user's permissions, and a load that checks
every name, shape, dtype and recorded argument before it reads (or allocates) any data."""
import ast
import io
import json
import os
import pickle
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib import format as npy

import minprune as mp
from minprune.tensor import Tensor

pytestmark = pytest.mark.engine
ROOT = Path(__file__).resolve().parents[1]


def mlp(seed=0):
    r = np.random.default_rng(seed)
    return mp.nn.Sequential(mp.nn.Linear(4, 8, rng=r), mp.nn.ReLU(), mp.nn.Linear(8, 3, rng=r))


def craft(path, drop=(), **members):
    """A copy of the .npz at `path` with members dropped, replaced or added. np.savez pickles
    object arrays, as a hostile file would."""
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files if k not in drop}
    out = path.with_name("crafted.npz")
    np.savez_compressed(out, **(arrays | members))
    return out


def arch(name="lenet5", **kwargs):
    return np.array(json.dumps({"arch": name, "kwargs": {"seed": 0, "num_classes": 10} | kwargs}))


def assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        assert sa[name].dtype == sb[name].dtype, name
        np.testing.assert_array_equal(sa[name], sb[name], err_msg=name)


# --- round trips ------------------------------------------------------------------------------
def test_save_load_round_trip_with_model(tmp_path):
    model = mp.models.conv4(seed=0)
    model(Tensor(np.ones((2, 1, 28, 28), np.float32)))  # BatchNorm running statistics move
    path = mp.save(model, tmp_path / "m.npz")
    assert path.suffix == ".npz" and path.is_file()
    assert_same_state(mp.load(path, mp.models.conv4(seed=5)), model)


@pytest.mark.parametrize("name", sorted(mp.models.MODELS))
def test_save_load_rebuilds_every_registered_architecture(tmp_path, name):
    model = mp.models.get_model(name, seed=3, num_classes=7)
    mp.save(model, tmp_path / "sub" / "m.npz")  # parent directories are created
    loaded = mp.load(tmp_path / "sub" / "m.npz")
    assert loaded.arch == model.arch and loaded.arch_kwargs == model.arch_kwargs
    assert {"seed": 3, "num_classes": 7}.items() <= loaded.arch_kwargs.items()
    assert_same_state(loaded, model)
    x = Tensor(np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32))
    np.testing.assert_array_equal(model(x).data, loaded(x).data)


def test_pruned_model_round_trips_its_masks(tmp_path):
    model = mp.models.lenet5(seed=1)
    mask = np.random.default_rng(0).random(model.features[0].weight.shape) > 0.5
    model.features[0].weight.set_mask(mask)
    model.classifier[3].output_mask = np.arange(84) % 3 != 0
    loaded = mp.load(mp.save(model, tmp_path / "pruned.npz"))
    assert_same_state(loaded, model)
    np.testing.assert_array_equal(loaded.features[0].weight.mask, mask)


def test_save_load_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="path"):
        mp.save(mlp(), tmp_path / "m.pt")
    with pytest.raises(FileNotFoundError, match="path"):
        mp.load(tmp_path / "missing.npz")
    mp.save(mlp(), tmp_path / "plain.npz")
    with pytest.raises(ValueError, match="no architecture.*model="):
        mp.load(tmp_path / "plain.npz")  # a bare Sequential records no architecture
    with pytest.raises(TypeError, match="model: expected an nn.Module or None, got dict"):
        mp.load(tmp_path / "plain.npz", {})


# --- writing: atomic, with the user's permissions ------------------------------------------------
def test_failed_save_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "m.npz"
    mp.save(mlp(), target)
    good = target.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(OSError, match="disk full"):
        mp.save(mlp(1), target)
    with pytest.raises(OSError, match="disk full"):
        mp.save(mlp(1), tmp_path / "new.npz")
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]  # no temp file, no half-written new.npz
    assert target.read_bytes() == good  # the old file is untouched


def test_save_gives_the_umask_mode_and_keeps_an_existing_files_mode(tmp_path):
    old = os.umask(0o027)
    try:
        path = mp.save(mlp(), tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640  # not mkstemp's 0600
    path.chmod(0o664)
    mp.save(mlp(1), path)
    assert path.stat().st_mode & 0o777 == 0o664
    assert_same_state(mp.load(path, mlp()), mlp(1))


# --- loading: checked before anything is read ----------------------------------------------------
def test_a_file_asking_for_5e7_classes_fails_fast_without_allocating(tmp_path):
    """Building that LeNet-300-100 would take 18.6 GiB. The child may map only 1 GiB more than it
    has after importing minprune, so an allocation fails loudly instead of swapping the machine."""
    path = mp.save(mp.models.lenet_300_100(), tmp_path / "m.npz")
    hostile = craft(path, __arch__=arch("lenet_300_100", num_classes=50_000_000))
    assert hostile.stat().st_size < 2**20
    child = (
        "import resource, sys\n"
        "import minprune as mp\n"
        "status = open('/proc/self/status').read().split('VmSize:')[1]\n"
        "vm = int(status.split()[0]) * 1024\n"
        "hard = resource.getrlimit(resource.RLIMIT_AS)[1]\n"
        "resource.setrlimit(resource.RLIMIT_AS, (vm + 2**30, hard))\n"
        "try:\n"
        "    mp.load(sys.argv[1])\n"
        "except ValueError as err:\n"
        "    print(err)\n")
    if not Path("/proc/self/status").exists():
        pytest.skip("needs Linux's /proc to set a memory limit")
    run = subprocess.run([sys.executable, "-c", child, str(hostile)], capture_output=True,
                         text=True, timeout=120, cwd=ROOT,
                         env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr[-2000:]
    assert str(hostile) in run.stdout
    assert "num_classes=50000000 must be an int in [1, 100000]" in run.stdout


@pytest.mark.parametrize("recorded, message", [
    (arch(num_classes=0), r"num_classes=0 must be an int in \[1, 100000\]"),
    (arch(num_classes=10**6), r"num_classes=1000000 must be an int in \[1, 100000\]"),
    (arch(num_classes=True), "num_classes=True must be an int"),
    (arch(num_classes=10.0), "num_classes=10.0 must be an int"),
    (arch(num_classes="10"), "num_classes='10' must be an int"),
    (arch(seed=-1), "seed=-1 must be an int"),
    (arch(width=4096), "unknown argument 'width'"),
    (arch("resnet999"), "architecture 'resnet999' is not one of"),
    (np.array('["lenet5"]'), "__arch__ must be"),
    (np.array("{not json"), "Expecting property name"),
    (np.arange(3), "__arch__ must be a string"),
    (np.array("x" * 20_000), "__arch__ must be a string of at most 10000 characters"),
])
def test_recorded_architecture_is_checked_before_building(tmp_path, recorded, message):
    path = mp.save(mp.models.lenet5(), tmp_path / "m.npz")
    with pytest.raises(ValueError, match=message) as info:
        mp.load(craft(path, __arch__=recorded))
    assert str(tmp_path / "crafted.npz") in str(info.value)


def test_an_extra_array_is_refused_before_it_is_decompressed(tmp_path):
    path = mp.save(mlp(), tmp_path / "m.npz")
    n = 128 * 2**20  # 128 MiB of zeros: about 128 KiB once compressed
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as z, z.open("extra.npy", "w") as f:
        npy.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (n // 4,)})
        for _ in range(n // 2**20):
            f.write(bytes(2**20))
    assert path.stat().st_size < 2**20
    model, error = mlp(1), None
    tracemalloc.start()
    try:
        mp.load(path, model)
    except Exception as err:  # noqa: BLE001 - what it is is checked below, after the memory
        error = err
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 8 * 2**20, f"load allocated {peak / 2**20:.0f} MiB before refusing"
    assert isinstance(error, ValueError) and f"{path}': unexpected array 'extra'" in str(error)
    assert_same_state(model, mlp(1))  # nothing was loaded


@pytest.mark.parametrize("change, message", [
    (dict(extra=np.zeros(3)), "unexpected array 'extra'"),
    (dict(drop=["2.bias"]), r"missing keys \['2.bias'\]"),
    ({"0.weight": np.zeros((4, 8), np.float32)}, r"'0.weight' is float32 of shape \(4, 8\).*\(8, 4\)"),
    ({"0.weight": np.zeros((8, 4), np.int32)}, "'0.weight' is int32 .* expects floats"),
    ({"0.weight_mask": np.ones((8, 4), np.float32)}, "'0.weight_mask' is float32 .* expects bool"),
    ({"0.output_mask": np.ones(1000, bool)}, r"'0.output_mask' .* 1-D of at most 67"),
    ({"0.output_mask": np.ones((2, 2), bool)}, r"'0.output_mask' .* 1-D of at most 67"),
    ({"0.weight": np.array([{}] * 32, dtype=object).reshape(8, 4)}, "holds Python objects"),
    ({"0.weight": np.zeros((8, 4), [("a", "<f4")])}, "expects floats"),
])
def test_keys_shapes_and_dtypes_are_checked_and_the_model_is_left_alone(tmp_path, change, message):
    path = mp.save(mlp(), tmp_path / "m.npz")
    drop = change.pop("drop", ())
    model = mlp(1)
    with pytest.raises(ValueError, match=message) as info:
        mp.load(craft(path, drop=drop, **change), model)
    assert str(tmp_path / "crafted.npz") in str(info.value)
    assert_same_state(model, mlp(1))


def test_a_member_larger_than_its_header_says_is_refused(tmp_path):
    path = tmp_path / "m.npz"
    with zipfile.ZipFile(path, "w") as z, z.open("0.bias.npy", "w") as f:
        npy.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (8,)})
        f.write(bytes(32 + 10_000))
    with pytest.raises(ValueError, match=r"'0.bias': its header says \(8,\) float32 \(32 bytes\)"):
        mp.load(path, mlp())


class _Touch:
    """Unpickling this creates a file: the proof that load never unpickles."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return open, (self.target, "w")


def test_pickled_objects_are_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    path = mp.save(mlp(), tmp_path / "m.npz")
    hostile = craft(path, **{"0.bias": np.array([_Touch(str(marker))] * 8, dtype=object)})
    with pytest.raises(ValueError, match="holds Python objects") as info:
        mp.load(hostile, mlp())
    assert not marker.exists() and "allow_pickle" not in str(info.value)


# --- damaged files: one clear error that names the file -----------------------------------------
def _zip_of(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, raw in members.items():
            z.writestr(name, raw)
    return buf.getvalue()


def _damage(good: bytes, how: str) -> bytes:
    directory = good.rfind(b"PK\x01\x02")  # the last central-directory entry
    flags = directory + 8
    return {
        "empty": lambda: b"",
        "random bytes": lambda: np.random.default_rng(0).bytes(5000),
        "text": lambda: b"weights go here\n",
        "a pickle": lambda: pickle.dumps({"0.weight": np.zeros((8, 4))}),
        "zip magic only": lambda: good[:4],
        "cut after 200 bytes": lambda: good[:200],
        "cut at half": lambda: good[: len(good) // 2],
        "cut before the end": lambda: good[:-1],
        "no central directory": lambda: good[:good.find(b"PK\x01\x02")],
        "a zip of other things": lambda: _zip_of({"notes.txt": b"hello"}),
        "a .npy that is not one": lambda: _zip_of({"0.weight.npy": b"\x93NUMPY garbage"}),
        "an encrypted member": lambda: good[:flags] + bytes([good[flags] | 1]) + good[flags + 1:],
    }[how]()


@pytest.mark.parametrize("how", [
    "empty", "random bytes", "text", "a pickle", "zip magic only", "cut after 200 bytes",
    "cut at half", "cut before the end", "no central directory", "a zip of other things",
    "a .npy that is not one", "an encrypted member"])
def test_damaged_files_give_one_error_naming_the_file(tmp_path, how):
    good = mp.save(mp.models.lenet5(), tmp_path / "m.npz").read_bytes()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(_damage(good, how))
    for model in (None, mp.models.lenet5()):
        with pytest.raises(ValueError, match=f"^path: cannot load '{bad}': ") as info:
            mp.load(bad, model)
        assert "allow_pickle" not in str(info.value)
        assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The same small model saved compressed (by mp.save) and stored (np.savez, no compression)."""
    folder = tmp_path_factory.mktemp("saved")
    model = mlp()
    compressed = mp.save(model, folder / "compressed.npz").read_bytes()
    np.savez(folder / "stored.npz", **model.state_dict())
    return {"compressed": compressed, "stored": (folder / "stored.npz").read_bytes(),
            "bad": folder / "bad.npz", "model": model}


@settings(max_examples=300)
@given(kind=st.sampled_from(["compressed", "stored"]), where=st.floats(0, 1, exclude_max=True),
       bit=st.integers(0, 7))
def test_any_bit_flip_is_refused_or_changes_nothing(saved, kind, where, bit):
    """Never a silently different model: a flipped bit is caught (by zip's CRC, zlib or the header
    checks) or it sits where it does not matter (a timestamp, say)."""
    good = bytearray(saved[kind])
    good[int(where * len(good))] ^= 1 << bit
    saved["bad"].write_bytes(bytes(good))
    try:
        loaded = mp.load(saved["bad"], mlp(1))
    except ValueError as err:
        assert str(err).startswith(f"path: cannot load '{saved['bad']}': ")
        assert "allow_pickle" not in str(err)
    else:
        assert_same_state(loaded, saved["model"])


# --- layering ---------------------------------------------------------------------------------
def test_nn_imports_nothing_above_it():
    """nn/ is a low layer: it must not import the layers built on it (models.py registers its
    architectures with nn.serialize instead)."""
    above = {"models", "prune", "train", "optim", "data", "experiments", "plots", "course",
             "exercises", "__main__"}
    for source in (ROOT / "minprune" / "nn").glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.ImportFrom):  # relative: level 1 is nn/, level 2 minprune/
                inside = ["minprune", "nn"][: 3 - node.level]
                names = [".".join(inside + [node.module or a.name]) for a in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                assert parts[0] != "minprune" or parts[1] not in above, (source.name, name)
