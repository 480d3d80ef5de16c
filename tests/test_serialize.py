"""save / load: round trips (bit for bit, compact for pruned weights, old files still read), atomic
writes with the user's permissions, and a load that checks every name, shape, dtype and recorded
argument before it reads (or allocates) any data."""
import ast
import io
import json
import os
import pickle
import re
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.lib import format as npy

import minprune as mp
from minprune.nn import serialize
from minprune.tensor import Tensor

pytestmark = pytest.mark.engine
ROOT = Path(__file__).resolve().parents[1]


def mlp(seed=0):
    r = np.random.default_rng(seed)
    return mp.nn.Sequential(mp.nn.Linear(4, 8, rng=r), mp.nn.ReLU(), mp.nn.Linear(8, 3, rng=r))


def pruned_mlp(seed=0):
    """mlp() with a random mask on 0.weight (32 weights: 4 mask bytes) and one on 2.bias
    (3 weights: 5 padding bits)."""
    model = mlp(seed)
    model[0].weight.set_mask(np.random.default_rng(seed).random((8, 4)) > 0.5)
    model[2].bias.set_mask([True, False, True])
    return model


def craft(path, drop=(), **members):
    """A copy of the .npz at `path` (its format comment too) with members dropped, replaced or
    added. np.savez pickles object arrays, as a hostile file would."""
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files if k not in drop}
    out = path.with_name("crafted.npz")
    np.savez_compressed(out, **(arrays | members))
    with zipfile.ZipFile(path) as original, zipfile.ZipFile(out, "a") as z:
        z.comment = original.comment
    return out


def arch(name="lenet5", **kwargs):
    return np.array(json.dumps({"arch": name, "kwargs": {"seed": 0, "num_classes": 10} | kwargs}))


def assert_same_state(a, b):
    """The same names, dtypes, shapes and bytes: -0.0 is not 0.0 here, and NaN payloads count."""
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        assert sa[name].dtype == sb[name].dtype, name
        np.testing.assert_array_equal(sa[name], sb[name], err_msg=name)
        assert sa[name].tobytes() == sb[name].tobytes(), name


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


# --- pruned weights: stored compactly, restored bit for bit --------------------------------------
def old_format(model, path):
    """What mp.save wrote before format 2: the full state_dict (bool `_mask` arrays included)."""
    arrays = dict(model.state_dict())
    if getattr(model, "arch", None):
        arrays["__arch__"] = np.array(json.dumps({"arch": model.arch, "kwargs": model.arch_kwargs}))
    np.savez_compressed(path, **arrays)
    return path


@pytest.mark.parametrize("name", ["lenet_300_100", "lenet5", "conv4", "resnet_tiny"])
def test_a_dense_file_is_no_larger_than_the_previous_format(tmp_path, name):
    model = mp.models.get_model(name, seed=0)
    now = mp.save(model, tmp_path / "now.npz").stat().st_size
    assert now <= old_format(model, tmp_path / "before.npz").stat().st_size
    assert_same_state(mp.load(tmp_path / "now.npz"), model)


@pytest.mark.parametrize("name", ["lenet_300_100", "lenet5", "conv4"])
def test_at_95_percent_sparsity_the_file_is_at_most_12_percent_of_the_dense_one(tmp_path, name):
    model = mp.models.get_model(name, seed=0)
    dense = mp.save(model, tmp_path / "dense.npz").stat().st_size
    mp.prune.prune(model, 0.95)
    path = mp.save(model, tmp_path / "pruned.npz")
    assert path.stat().st_size <= 0.12 * dense
    with np.load(path) as f:  # every masked weight as its packed mask and kept values
        assert not [k for k in f.files if k.endswith("_mask")]
        for pname, p in model.named_parameters():
            if p.mask is not None:
                assert f[pname + ".mask_bits"].dtype == np.uint8
                assert f[pname + ".values"].size == p.mask.sum()
    assert_same_state(mp.load(path), model)


def float64(model):
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    return model


def filter_pruned_conv4():
    """Filter pruning also masks the conv bias and BatchNorm γ and β that follow a filter."""
    model = mp.models.conv4(seed=0)
    mp.prune.prune(model, 0.5, granularity="filter", scope="layerwise")
    assert model.features[1].weight.mask is not None  # BatchNorm γ
    return model


def every_kind_of_mask():
    """Masks that keep everything, nothing, and half; a 2-D Linear and a 4-D conv weight; -0.0,
    inf and a NaN with a payload among the kept weights; an activation mask."""
    model = mp.models.lenet5(seed=0)
    w = model.features[0].weight.data  # (6, 1, 5, 5); the even entries are kept
    w.ravel()[[0, 2, 4, 6]] = [-0.0, np.inf, -np.inf, np.nan]
    w.view(np.uint32).ravel()[8] = 0x7FC0_1234  # a NaN whose payload must survive
    model.features[0].weight.set_mask(np.arange(w.size).reshape(w.shape) % 2 == 0)
    model.features[0].bias.set_mask(np.ones(6, bool))
    model.features[3].weight.set_mask(np.zeros(model.features[3].weight.shape, bool))
    model.classifier[1].weight.set_mask(model.classifier[1].weight.data > 0)
    model.classifier[3].output_mask = np.arange(84) % 3 != 0
    return model


def resnet_tiny_90():
    model = mp.models.resnet_tiny(seed=0)
    mp.prune.prune(model, 0.9)
    return model


@pytest.mark.parametrize("make, into", [
    (every_kind_of_mask, None),  # None: load rebuilds the recorded architecture (float32)
    (lambda: float64(every_kind_of_mask()), lambda: float64(mp.models.lenet5(seed=1))),
    (filter_pruned_conv4, None),
    (resnet_tiny_90, None),
], ids=["every kind of mask", "float64", "conv4 filters + BatchNorm", "resnet_tiny 90%"])
def test_pruned_models_round_trip_bit_for_bit(tmp_path, make, into):
    model = make()
    loaded = mp.load(mp.save(model, tmp_path / "m.npz"), into and into())
    assert_same_state(loaded, model)
    for (name, p), q in zip(model.named_parameters(), loaded.parameters()):
        assert (p.mask is None) == (q.mask is None), name


class Bag(mp.nn.Module):
    """Parameters of any shape and float dtype, and a BatchNorm child (buffers, γ and β)."""

    def __init__(self, arrays, channels):
        super().__init__()
        for i, array in enumerate(arrays):
            setattr(self, f"p{i}", mp.nn.Parameter(array))
        self.bn = mp.nn.BatchNorm1d(channels)


@st.composite
def masked_bags(draw):
    """(shapes, dtype, channels, a Bag with those whose parameters are dense or masked at
    sparsity 0, 1 or random, holding any floats: NaN, ±inf, -0.0, subnormals)."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shapes = draw(st.lists(hnp.array_shapes(min_dims=1, max_dims=4, max_side=6), min_size=1,
                           max_size=4))
    channels = draw(st.integers(1, 9))
    model = Bag([draw(hnp.arrays(dtype, s)) for s in shapes], channels)
    for p in model.parameters():
        kind = draw(st.sampled_from(["dense", "sparsity 0", "sparsity 1", "random"]))
        if kind != "dense":
            p.set_mask(draw(hnp.arrays(bool, p.shape)) if kind == "random"
                       else np.full(p.shape, kind == "sparsity 0"))
    if draw(st.booleans()):  # load bounds its length by the parameters: γ and β make 2·channels
        model.output_mask = draw(hnp.arrays(bool, st.integers(1, channels)))
    return shapes, dtype, channels, model


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("bags")


@settings(max_examples=100)
@given(case=masked_bags())
def test_any_masked_model_round_trips_bit_for_bit(folder, case):
    shapes, dtype, channels, model = case
    fresh = Bag([np.ones(s, dtype) for s in shapes], channels)
    loaded = mp.load(mp.save(model, folder / "bag.npz"), fresh)
    assert_same_state(loaded, model)  # weights, masks (`_mask`) and output_mask: dtype and bytes
    for p, q in zip(model.parameters(), loaded.parameters()):
        assert (p.mask is None) == (q.mask is None)


def test_format_1_files_still_load(tmp_path):
    """Files from before format 2 (full weights + `<param>_mask` bool arrays, no zip comment),
    here written by hand, load into the same model as a format-2 file of it does."""
    model = every_kind_of_mask()
    old = old_format(model, tmp_path / "old.npz")
    with np.load(old) as f:
        assert "features.0.weight_mask" in f.files and f["features.0.weight"].shape == (6, 1, 5, 5)
    assert_same_state(mp.load(old), model)
    assert_same_state(mp.load(old), mp.load(mp.save(model, tmp_path / "new.npz")))
    np.savez(tmp_path / "plain.npz", **pruned_mlp().state_dict())  # uncompressed, no architecture
    assert_same_state(mp.load(tmp_path / "plain.npz", mlp(1)), pruned_mlp())


def test_the_format_is_recorded_and_an_unknown_one_is_refused(tmp_path):
    path = mp.save(pruned_mlp(), tmp_path / "m.npz")
    with zipfile.ZipFile(path) as z:
        assert z.comment == serialize.FORMAT == b"minprune format 2"
    with zipfile.ZipFile(path, "a") as z:
        z.comment = b"minprune format 3"
    model = mlp(1)
    with pytest.raises(ValueError, match=f"^path: cannot load '{path}': unknown format "
                                         "b'minprune format 3'"):
        mp.load(path, model)
    assert_same_state(model, mlp(1))


# --- writing: atomic, with the user's permissions ------------------------------------------------
def test_failed_save_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "m.npz"
    mp.save(mlp(), target)
    good = target.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(npy, "write_array", boom)
    with pytest.raises(OSError, match="disk full"):
        mp.save(mlp(1), target)
    with pytest.raises(OSError, match="disk full"):
        mp.save(mlp(1), tmp_path / "new.npz")
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]  # no temp file, no half-written new.npz
    assert target.read_bytes() == good  # the old file is untouched


def test_an_interrupted_save_of_a_pruned_model_keeps_the_old_file(tmp_path, monkeypatch):
    model = mp.models.lenet5(seed=0)
    mp.prune.prune(model, 0.95)
    target = mp.save(model, tmp_path / "m.npz")
    good = target.read_bytes()
    written, write_array = [], npy.write_array

    def fail_on_the_third_array(*args, **kwargs):
        written.append(1)
        if len(written) == 3:
            raise OSError("disk full")
        return write_array(*args, **kwargs)

    monkeypatch.setattr(npy, "write_array", fail_on_the_third_array)
    other = mp.models.lenet5(seed=1)
    mp.prune.prune(other, 0.5)
    with pytest.raises(OSError, match="disk full"):
        mp.save(other, target)
    monkeypatch.undo()
    assert len(written) == 3  # two arrays had been written to the temporary file
    assert sorted(os.listdir(tmp_path)) == ["m.npz"] and target.read_bytes() == good
    assert_same_state(mp.load(target), model)


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


@pytest.mark.parametrize("member, message", [
    ("extra", "unexpected array 'extra'"),
    ("0.weight.values", r"'0.weight.values' is float32 of shape \(33554432,\); the model expects "
                        r"floats of shape 1-D of at most 32"),
])
def test_a_large_array_is_refused_before_it_is_decompressed(tmp_path, member, message):
    path = craft(mp.save(pruned_mlp(), tmp_path / "m.npz"), drop=[member])
    n = 128 * 2**20  # 128 MiB of zeros: about 128 KiB once compressed
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as z, z.open(member + ".npy", "w") as f:
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
    assert isinstance(error, ValueError) and str(error).startswith(f"path: cannot load '{path}': ")
    assert re.search(message, str(error))
    assert_same_state(model, mlp(1))  # nothing was loaded


@pytest.mark.parametrize("change, message", [
    (dict(extra=np.zeros(3)), "unexpected array 'extra'"),
    (dict(drop=["2.bias"]), r"missing keys \['2.bias'\]"),
    ({"0.weight": np.zeros((4, 8), np.float32)}, r"'0.weight' is float32 of shape \(4, 8\).*\(8, 4\)"),
    ({"0.weight": np.zeros((8, 4), np.int32)}, "'0.weight' is int32 .* expects floats"),
    ({"0.weight_mask": np.ones((8, 4), np.float32), "format_1": True},
     "'0.weight_mask' is float32 .* expects bool"),
    ({"0.output_mask": np.ones(1000, bool)}, r"'0.output_mask' .* 1-D of at most 67"),
    ({"0.output_mask": np.ones((2, 2), bool)}, r"'0.output_mask' .* 1-D of at most 67"),
    ({"0.weight": np.array([{}] * 32, dtype=object).reshape(8, 4)}, "holds Python objects"),
    ({"0.weight": np.zeros((8, 4), [("a", "<f4")])}, "expects floats"),
])
def test_keys_shapes_and_dtypes_are_checked_and_the_model_is_left_alone(tmp_path, change, message):
    drop, format_1 = change.pop("drop", ()), change.pop("format_1", False)
    path = (old_format if format_1 else mp.save)(mlp(), tmp_path / "m.npz")
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


_GOOD = pruned_mlp()
_BITS = np.packbits(_GOOD[0].weight.mask)
_KEPT = _GOOD[0].weight.data[_GOOD[0].weight.mask]
_N = int(_GOOD[0].weight.mask.sum())
_FLIPPED = _BITS ^ np.array([1, 0, 0, 0], np.uint8)  # one bit of the mask flipped


@pytest.mark.parametrize("change, message", [
    ({"0.weight.values": _KEPT[:-1]},
     f"'0.weight.values' holds {_N - 1} values but '0.weight.mask_bits' keeps {_N} weights"),
    ({"0.weight.values": np.append(_KEPT, np.float32(1))},
     f"'0.weight.values' holds {_N + 1} values but '0.weight.mask_bits' keeps {_N} weights"),
    ({"0.weight.mask_bits": _FLIPPED},
     f"'0.weight.values' holds {_N} values but '0.weight.mask_bits' keeps {np.unpackbits(_FLIPPED).sum()}"),
    ({"2.bias.mask_bits": np.array([0b1010_0001], np.uint8)},
     "'2.bias.mask_bits': padding bits past the 3 weights are set"),
    ({"0.weight.mask_bits": _BITS[:-1]},
     r"'0.weight.mask_bits' is uint8 of shape \(3,\); the model expects uint8 of shape \(4,\)"),
    ({"0.weight.mask_bits": np.append(_BITS, np.uint8(0))}, r"uint8 of shape \(5,\)"),
    ({"0.weight.mask_bits": _BITS.reshape(2, 2)}, r"is uint8 of shape \(2, 2\)"),
    ({"0.weight.mask_bits": _BITS.astype(np.int16)}, "'0.weight.mask_bits' is int16 .* expects uint8"),
    ({"0.weight.mask_bits": _BITS.astype(bool)}, "'0.weight.mask_bits' is bool .* expects uint8"),
    ({"0.weight.values": _KEPT.astype(np.int32)}, "'0.weight.values' is int32 .* expects floats"),
    ({"0.weight.values": np.zeros(33, np.float32)}, "'0.weight.values' .* 1-D of at most 32"),
    ({"0.weight.values": np.zeros((1, _N), np.float32)}, "'0.weight.values' .* 1-D of at most 32"),
    ({"0.bias.values": np.zeros(8, np.float32)},
     r"parameter '0.bias': expected its weights or both .*, got \['0.bias', '0.bias.values'\]"),
    (dict(drop=["0.weight.mask_bits"]), r"parameter '0.weight': .*got \['0.weight.values'\]"),
    (dict(drop=["0.weight.values"]), r"parameter '0.weight': .*got \['0.weight.mask_bits'\]"),
    ({"0.weight": np.zeros((8, 4), np.float32)}, r"parameter '0.weight': .*got \['0.weight', '0.weight"),
    ({"0.weight_mask": np.ones((8, 4), bool)}, "unexpected array '0.weight_mask'"),  # format 1's
])
def test_a_damaged_compact_parameter_gives_one_error_and_the_model_is_left_alone(
        tmp_path, change, message):
    path = mp.save(pruned_mlp(), tmp_path / "m.npz")
    drop = change.pop("drop", ())
    model = mlp(1)
    with pytest.raises(ValueError, match=message) as info:
        mp.load(craft(path, drop=drop, **change), model)
    assert str(info.value).startswith(f"path: cannot load '{tmp_path / 'crafted.npz'}': ")
    assert_same_state(model, mlp(1))


def test_the_values_are_read_only_once_the_mask_agrees_with_their_length(tmp_path, monkeypatch):
    path = mp.save(pruned_mlp(), tmp_path / "m.npz")
    bad = craft(path, **{"0.weight.values": _KEPT[:-1]})
    read, read_array = [], serialize._read_array
    monkeypatch.setattr(serialize, "_read_array", lambda a, name: read.append(name) or read_array(a, name))
    with pytest.raises(ValueError, match="holds"):
        mp.load(bad, mlp(1))
    assert "0.weight.mask_bits" in read and "0.weight.values" not in read
    read.clear()
    mp.load(path, mlp(1))
    assert read.index("0.weight.mask_bits") < read.index("0.weight.values")


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
@pytest.mark.parametrize("sparsity", [0, 0.9])
def test_damaged_files_give_one_error_naming_the_file(tmp_path, how, sparsity):
    model = mp.models.lenet5()
    if sparsity:
        mp.prune.prune(model, sparsity)
    good = mp.save(model, tmp_path / "m.npz").read_bytes()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(_damage(good, how))
    for model in (None, mp.models.lenet5()):
        with pytest.raises(ValueError, match=f"^path: cannot load '{bad}': ") as info:
            mp.load(bad, model)
        assert "allow_pickle" not in str(info.value)
        assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The same small model saved compressed (by mp.save) and stored (np.savez, no compression),
    and a pruned one saved by mp.save (compact: packed masks, kept values, a format comment)."""
    folder = tmp_path_factory.mktemp("saved")
    np.savez(folder / "stored.npz", **mlp().state_dict())
    return {"compressed": mp.save(mlp(), folder / "compressed.npz").read_bytes(),
            "stored": (folder / "stored.npz").read_bytes(),
            "pruned": mp.save(pruned_mlp(), folder / "pruned.npz").read_bytes(),
            "bad": folder / "bad.npz"}


@settings(max_examples=300)
@given(kind=st.sampled_from(["compressed", "stored", "pruned"]),
       where=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7))
def test_any_bit_flip_is_refused_or_changes_nothing(saved, kind, where, bit):
    """Never a silently different model: a flipped bit is caught (by zip's CRC, zlib, the format
    comment or the header checks) or it sits where it does not matter (a timestamp, say)."""
    good = bytearray(saved[kind])
    good[int(where * len(good))] ^= 1 << bit
    saved["bad"].write_bytes(bytes(good))
    try:
        loaded = mp.load(saved["bad"], mlp(1))
    except ValueError as err:
        assert str(err).startswith(f"path: cannot load '{saved['bad']}': ")
        assert "allow_pickle" not in str(err)
    else:
        assert_same_state(loaded, pruned_mlp() if kind == "pruned" else mlp())


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
