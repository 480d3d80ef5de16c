"""sparsify: an inference copy whose layers run on sparse kernels gives the masked model's outputs.

Which format wins is measured, so it depends on the machine: tests force a format where they
check the choice, and only check consistency (the fastest measured was chosen) otherwise.
Small batch sizes and repeats=1 keep the timing part cheap."""
import numpy as np
import pytest

import minprune as mp
from minprune.prune.masks import graph_of
from minprune.prune.sparse import FORMATS, SparseConv2d, SparseLinear

pytestmark = pytest.mark.pruning

BATCHES = (1, 5, 16)  # 16 crosses the kernels' switch to the rows order (Fortran-ordered y)


def _input_shape(model):
    return graph_of(model).input_shape


def _outputs(model, x):
    with mp.no_grad():
        return model(mp.Tensor(x)).data


def _state(model):
    """Every parameter, mask and buffer, copied: to check the original is left as it was."""
    return {k: np.array(v, copy=True) for k, v in model.state_dict().items()}


def _assert_same_state(before, model):
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        np.testing.assert_array_equal(before[k], after[k], err_msg=k)


def _assert_matches(model, fast, input_shape, rng):
    model.eval()
    for batch in BATCHES:
        x = rng.standard_normal((batch, *input_shape)).astype(np.float32)
        np.testing.assert_allclose(_outputs(fast, x), _outputs(model, x), atol=1e-4, rtol=1e-4,
                                   err_msg=f"batch {batch}")


def _layer_names(model):
    return list(mp.prune.prunable_layers(model))


@pytest.fixture(scope="module")
def pruned():
    """Every model of MODELS, 90% unstructured (magnitude, global): built once for the module."""
    out = {}
    for name, build in mp.models.MODELS.items():
        model = build()
        mp.prune.prune(model, 0.9)
        out[name] = model.eval()
    return out


@pytest.mark.parametrize("name", list(mp.models.MODELS))
@pytest.mark.parametrize("formats", [("csr",), FORMATS], ids=["csr", "measured"])
def test_sparsify_matches_the_masked_model(pruned, name, formats, rng):
    model = pruned[name]
    before = _state(model)
    shape = _input_shape(model)
    fast = mp.prune.sparsify(model, shape, batch_size=4, formats=formats, repeats=1)
    _assert_matches(model, fast, shape, rng)
    _assert_same_state(before, model)  # the original: same weights, masks, buffers
    assert not any(isinstance(m, (SparseLinear, SparseConv2d)) for m in model.modules())
    assert [r["name"] for r in fast.report] == _layer_names(model)
    assert all(r["format"] in FORMATS for r in fast.report)
    if formats == ("csr",):
        assert {r["format"] for r in fast.report} == {"csr"}
        assert all(isinstance(fast.get_submodule(r["name"]), (SparseLinear, SparseConv2d))
                   for r in fast.report)


def test_forced_csr_replaces_layers_in_place(pruned):
    model = pruned["lenet5"]
    fast = mp.prune.sparsify(model, (1, 28, 28), formats=("csr",))
    assert [n for n, _ in fast.named_modules()] == [n for n, _ in model.named_modules()]
    for name, layer in mp.prune.prunable_layers(model).items():
        sparse = fast.get_submodule(name)
        kind = SparseLinear if isinstance(layer, mp.nn.Linear) else SparseConv2d
        assert isinstance(sparse, kind) and sparse.format == "csr"
        assert sparse.nnz == np.count_nonzero(layer.weight.data * layer.weight.mask)
    row = fast.report[0]
    assert row["shape"] == (6, 1, 5, 5) and row["input_shape"] == (1, 28, 28)
    assert row["dense_ms"] is None and row["csr_ms"] is None  # forced: nothing was timed
    assert abs(row["sparsity"] - 1 + np.count_nonzero(model.features[0].weight.mask) / 150) < 1e-3


def test_measured_choice_is_the_fastest_measured(pruned):
    fast = mp.prune.sparsify(pruned["lenet_300_100"], (784,), batch_size=8, repeats=1)
    for row in fast.report:
        timed = {f: row[f"{f}_ms"] for f in FORMATS if row[f"{f}_ms"] is not None}
        assert set(timed) == {"dense", "csr"}  # 90% unstructured is not N:M: nm not tried
        assert row["format"] == min(timed, key=timed.get)
        kept_dense = isinstance(fast.get_submodule(row["name"]), mp.nn.Linear)
        assert kept_dense == (row["format"] == "dense")


def test_dense_model_keeps_layers_dense_where_csr_is_slower(rng):
    """Unpruned: whatever wins is timing-dependent; a layer is only sparse if CSR measured faster,
    and a layer kept dense is the original module (a copy of it)."""
    model = mp.models.lenet_300_100().eval()
    fast = mp.prune.sparsify(model, (784,), batch_size=8, repeats=1)
    for row in fast.report:
        assert row["sparsity"] == 0.0
        if row["csr_ms"] >= row["dense_ms"]:
            assert row["format"] == "dense"
            assert type(fast.get_submodule(row["name"])) is mp.nn.Linear
    _assert_matches(model, fast, (784,), rng)


def test_two_four_pruned_model_with_nm(rng):
    model = mp.models.lenet_300_100()
    mp.prune.prune(model, granularity="2:4")
    model.eval()
    fast = mp.prune.sparsify(model, (784,), formats=("nm",))
    for row in fast.report:
        assert row["nm"] == "2:4" and row["format"] == "nm", row
        assert fast.get_submodule(row["name"]).format == "nm"
    _assert_matches(model, fast, (784,), rng)
    # the measured choice tries N:M too
    measured = mp.prune.sparsify(model, (784,), batch_size=4, repeats=1)
    assert all(r["nm_ms"] is not None for r in measured.report)
    _assert_matches(model, measured, (784,), rng)


def test_nm_forced_on_an_unstructured_weight_keeps_it_dense(pruned):
    fast = mp.prune.sparsify(pruned["lenet_300_100"], (784,), formats=("nm",))
    assert all(r["format"] == "dense" and "N:M" in r["note"] for r in fast.report)


def test_compact_then_sparsify(rng):
    model = mp.models.lenet5()
    mp.prune.prune(model, 0.5, granularity="filter", scope="layerwise",
                   exclude=_layer_names(model)[-1])
    mp.prune.prune(model, 0.9)
    model.eval()
    before = _state(model)
    small = mp.prune.compact(model)
    assert small.features[0].weight.shape[0] < model.features[0].weight.shape[0]
    for formats in (("csr",), FORMATS):
        fast = mp.prune.sparsify(small, (1, 28, 28), batch_size=4, formats=formats, repeats=1)
        _assert_matches(model, fast, (1, 28, 28), rng)
    _assert_same_state(before, model)


def test_sparse_layers_are_inference_only(pruned, rng):
    fast = mp.prune.sparsify(pruned["lenet5"], (1, 28, 28), formats=("csr",))
    x = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
    fast(mp.Tensor(x))  # an input without grad: fine even outside no_grad
    with pytest.raises(RuntimeError, match="cannot compute gradients"):
        fast(mp.Tensor(x, requires_grad=True))
    fast.train()
    with pytest.raises(RuntimeError, match="inference layer.*eval"):
        with mp.no_grad():
            fast(mp.Tensor(x))
    fast.eval()
    assert _outputs(fast, x).shape == (2, 10)


def test_a_sparsified_copy_is_not_saved_without_its_weights(pruned, tmp_path):
    """Its sparse layers hold their weights outside the parameters: a file of it would be empty."""
    fast = mp.prune.sparsify(pruned["lenet_300_100"], (1, 28, 28), formats=("csr",))
    with pytest.raises(TypeError, match="model: 'classifier.1'.*SparseLinear.*save the masked model"):
        mp.save(fast, tmp_path / "fast.npz")
    assert not (tmp_path / "fast.npz").exists()
    mp.save(pruned["lenet_300_100"], tmp_path / "masked.npz")  # the way the message points to


@pytest.mark.parametrize("kwargs, error, argument", [
    (dict(input_shape="1x28x28"), ValueError, "input_shape"),
    (dict(input_shape=(1, 28.0, 28)), ValueError, "input_shape"),
    (dict(formats=("csr", "bsr")), ValueError, "formats"),
    (dict(formats=()), TypeError, "formats"),
    (dict(formats=None), TypeError, "formats"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=2.5), TypeError, "batch_size"),
    (dict(repeats=0), ValueError, "repeats"),
])
def test_bad_arguments_are_named_before_any_work(kwargs, error, argument, monkeypatch):
    import minprune.prune.sparse as sparse

    def no_copy(*a):
        raise AssertionError("work started before the arguments were checked")
    monkeypatch.setattr(sparse.copy, "deepcopy", no_copy)
    args = dict(input_shape=(1, 28, 28)) | kwargs
    with pytest.raises(error, match=argument):
        mp.prune.sparsify(mp.models.lenet5(), **args)


def test_model_must_be_a_module():
    with pytest.raises(TypeError, match="model"):
        mp.prune.sparsify("lenet5", (1, 28, 28))
