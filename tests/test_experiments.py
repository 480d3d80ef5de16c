"""The experiments: determinism, resume without lost or duplicated rows, checked arguments, the
checked baseline cache. (The runner: tests/test_runner.py; the command line: tests/test_cli.py.)"""
import csv
import hashlib
import inspect
import json
import pickle

import numpy as np
import pytest

import minprune as mp
from minprune import cli
from minprune import experiments as E

pytestmark = pytest.mark.schedules

SMALL = dict(model="lenet_300_100", strategies=["global_magnitude", "random"],
             sparsities=[0.5, 0.9], seeds=[0], epochs=1, finetune_epochs=1, progress=False)
VOLATILE = ("seconds",)


@pytest.fixture(autouse=True)
def fast_and_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("MINPRUNE_FAST", "1")
    monkeypatch.setenv("MINPRUNE_CACHE", str(tmp_path / "cache"))


def stable(rows):
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


def assert_drawn(path, panels=1):
    """A real figure: a PNG of a plausible size (wider with more panels) with ink on it. What the
    lines and bars show is tested with the plot functions in test_plots.py."""
    import matplotlib.pyplot as plt
    img = plt.imread(path)
    height, width = img.shape[:2]
    assert 200 <= height <= 2000 and 250 * panels <= width <= 1500 * panels, img.shape
    ink = (img[..., :3] < 0.9).any(axis=-1).mean()
    assert 0.01 < ink < 0.6, ink  # neither blank nor a solid block


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_sweep_writes_rows_and_figure(tmp_path):
    rows = E.sweep(out=tmp_path / "a", **SMALL)
    assert len(rows) == 4
    assert {(r["strategy"], r["sparsity"]) for r in rows} == {
        (s, sp) for s in SMALL["strategies"] for sp in SMALL["sparsities"]}
    for r in rows:
        assert 0 <= r["accuracy"] <= 1 and r["compression"] >= 1 and r["speedup"] >= 1
        assert r["measured_sparsity"] == pytest.approx(r["sparsity"], abs=1e-5)
    assert len(read_csv(tmp_path / "a" / "results.csv")) == 4
    assert_drawn(tmp_path / "a" / "accuracy_vs_compression.png", panels=2)


def test_sweep_is_deterministic(tmp_path):
    a = E.sweep(out=tmp_path / "a", **SMALL)
    b = E.sweep(out=tmp_path / "b", **SMALL)  # baseline now comes from the cache
    assert stable(a) == stable(b)


def test_interrupted_sweep_resumes_without_lost_or_duplicated_rows(tmp_path, monkeypatch):
    full = E.sweep(out=tmp_path / "full", **SMALL)
    calls = {"n": 0}
    real_fit = mp.train.fit

    def flaky_fit(*args, **kwargs):
        if kwargs.get("epochs", args[2] if len(args) > 2 else None) == SMALL["finetune_epochs"]:
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt  # the user pressed Ctrl-C during the third run
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(E.train, "fit", flaky_fit)
    with pytest.raises(KeyboardInterrupt):
        E.sweep(out=tmp_path / "resumed", **SMALL)
    assert len(read_csv(tmp_path / "resumed" / "results.csv")) == 2
    monkeypatch.setattr(E.train, "fit", real_fit)
    resumed = E.sweep(out=tmp_path / "resumed", **SMALL)
    assert len(read_csv(tmp_path / "resumed" / "results.csv")) == 4
    key = lambda r: (r["strategy"], r["sparsity"])  # noqa: E731
    assert sorted(stable(resumed), key=key) == sorted(stable(full), key=key)
    # a third run recomputes nothing
    monkeypatch.setattr(E, "_baseline_of", lambda *a, **k: pytest.fail("re-ran a finished row"))
    assert len(E.sweep(out=tmp_path / "resumed", **SMALL)) == 4


def test_results_file_is_replaced_atomically(tmp_path, monkeypatch):
    E.sweep(out=tmp_path, **{**SMALL, "strategies": ["random"], "sparsities": [0.5]})
    before = (tmp_path / "results.csv").read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("minprune.files.os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        E.sweep(out=tmp_path, **{**SMALL, "strategies": ["random"], "sparsities": [0.5, 0.9]})
    assert (tmp_path / "results.csv").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if "results" in p.name) == ["results.csv"]


def test_parse_strategy():
    assert E.parse_strategy("global_gradient") == {"criterion": "gradient", "scope": "global"}
    assert E.parse_strategy("taylor/layerwise/filter") == {
        "criterion": "taylor", "scope": "layerwise", "granularity": "filter"}
    with pytest.raises(ValueError, match="strategies"):
        E.parse_strategy("nonsense")


def test_cli_sweep_reads_toml_and_json_config(tmp_path, capsys):
    toml = tmp_path / "c.toml"
    toml.write_text('model = "lenet_300_100"\nepochs = 1\nsparsities = [0.5]\n'
                    'strategies = ["global_magnitude"]\nfinetune_epochs = 0\n'
                    f'out = "{(tmp_path / "t").as_posix()}"\n')
    assert cli.main(["sweep", "--config", str(toml), "--quiet"]) == 0
    rows = read_csv(tmp_path / "t" / "results.csv")
    assert len(rows) == 1 and rows[0]["strategy"] == "global_magnitude"
    # command-line flags beat the config
    cfg = json.loads(json.dumps({"model": "lenet_300_100", "epochs": 1, "sparsities": [0.5],
                                 "strategies": ["random"], "finetune_epochs": 0}))
    js = tmp_path / "c.json"
    js.write_text(json.dumps(cfg))
    assert cli.main(["sweep", "--config", str(js), "--quiet", "--sparsities", "0.8",
                   "--out", str(tmp_path / "j")]) == 0
    rows = read_csv(tmp_path / "j" / "results.csv")
    assert [r["sparsity"] for r in rows] == ["0.8"]
    assert "results.csv" in capsys.readouterr().out


def test_load_data_rejects_unknown_dataset():
    with pytest.raises(ValueError, match="dataset"):
        E.load_data("cifar")


def test_near_zero_fraction():
    model = mp.models.lenet_300_100(seed=0)
    for m in mp.prune.prunable_layers(model).values():
        m.weight.data[...] = 0.5
    first = model.classifier[1].weight
    first.data[0, :10] = 0.001   # 10 tiny survivors
    first.data[1, :10] = 0.0     # 10 pruned: not counted
    alive = sum(m.weight.size for m in mp.prune.prunable_layers(model).values()) - 10
    assert E.near_zero_fraction(model, 0.01) == pytest.approx(10 / alive)


@pytest.mark.parametrize("fn, kwargs, figure", [
    (E.compare_schedules, dict(sparsities=[0.5], rounds=2, finetune_epochs=1), "schedules.png"),
    (E.compare_at_init, dict(sparsities=[0.5], criteria=["random"], finetune_epochs=1),
     "at_init.png"),
    (E.lottery_experiment, dict(sparsities=[0.5]), "lottery.png"),
    (E.distribution, dict(model="lenet_300_100", finetune_epochs=1), "weight_distributions.png"),
    (E.sensitivity, dict(model="lenet_300_100", sparsities=[0.5]), "sensitivity.png"),
    (E.ssl, dict(granularity="filter", strengths=[0.0, 0.1], finetune_epochs=1), "ssl.png"),
])
def test_each_experiment_writes_rows_and_its_figure(tmp_path, fn, kwargs, figure):
    kwargs = {"model": "lenet_300_100", "seeds": [0], "epochs": 1, "progress": False, **kwargs}
    rows = fn(out=tmp_path, **kwargs)
    assert rows and all("accuracy" in r for r in rows)
    assert len(read_csv(tmp_path / "results.csv")) == len(rows)
    assert_drawn(tmp_path / figure)


# --- defect 11: no keyword swallowed, NumPy scalars are numbers ----------------------------------
EXPERIMENT_FUNCTIONS = (E.sweep, E.compare_schedules, E.compare_at_init, E.distribution,
                        E.lottery_experiment, E.sensitivity, E.ssl)
EXPERIMENTS = (E.SWEEP, E.SCHEDULES_EXPERIMENT, E.AT_INIT, E.DISTRIBUTION, E.LOTTERY, E.SENSITIVITY,
               E.SSL)


@pytest.mark.parametrize("fn", EXPERIMENT_FUNCTIONS, ids=lambda f: f.__name__)
def test_a_misspelt_keyword_is_an_error_not_the_defaults(fn, tmp_path, monkeypatch):
    monkeypatch.setattr(E.train, "fit", lambda *a, **k: pytest.fail("ran with a misspelt keyword"))
    with pytest.raises(TypeError, match="sparsitys"):
        fn(sparsitys=[0.5], out=tmp_path)


@pytest.mark.parametrize("experiment", EXPERIMENTS, ids=lambda e: e.name)
def test_no_experiment_or_job_takes_arbitrary_keywords(experiment):
    for f in (experiment.job, *EXPERIMENT_FUNCTIONS):
        kinds = {p.kind for p in inspect.signature(f).parameters.values()}
        assert inspect.Parameter.VAR_KEYWORD not in kinds, f"{f.__name__} swallows keywords"
    with pytest.raises(TypeError, match="sparsitys"):
        experiment.job(seed=0, sparsitys=0.5)


@pytest.mark.parametrize("experiment", EXPERIMENTS, ids=lambda e: e.name)
def test_every_experiment_can_be_sent_to_a_worker_process(experiment):
    """--jobs N pickles the experiment (its job and its figure): no lambdas."""
    assert pickle.loads(pickle.dumps(experiment)) == experiment


def test_numpy_scalars_are_numbers_and_give_the_same_rows(tmp_path):
    plain = E.sweep(out=tmp_path / "plain", **SMALL)
    numpy = E.sweep(out=tmp_path / "numpy", **{
        **SMALL, "sparsities": [np.float32(0.5), np.float64(0.9)], "seeds": [np.int64(0)],
        "epochs": np.int64(1), "finetune_epochs": np.int32(1)})
    assert stable(numpy) == stable(plain)
    assert read_csv(tmp_path / "numpy" / "results.csv")[0]["sparsity"] == "0.5"


@pytest.mark.parametrize("fn, kwargs", [
    (E.compare_schedules, dict(sparsities=[np.float32(0.5)], rounds=np.int64(2),
                               finetune_epochs=np.int8(1))),
    (E.compare_at_init, dict(sparsities=[np.float64(0.5)], finetune_epochs=np.uint8(0))),
    (E.distribution, dict(unstructured_sparsity=np.float32(0.5), filter_sparsity=np.float16(0.5),
                          threshold=np.float64(0.01), finetune_epochs=np.int64(1))),
    (E.lottery_experiment, dict(keep_per_round=np.float32(0.5), rewind_to=np.int64(3),
                                sparsities=[np.float32(0.5)])),
    (E.sensitivity, dict(sparsities=[np.float32(0.5)])),
    (E.ssl, dict(granularity="filter", strengths=[np.float32(0.01)], tol=np.float16(0.001),
                 finetune_epochs=np.int64(1))),
])
def test_numpy_scalars_are_accepted_by_every_experiment(fn, kwargs, tmp_path):
    todo = fn(model="lenet_300_100", seeds=[np.int64(0)], epochs=np.int64(1), out=tmp_path,
              dry_run=True, **kwargs)
    assert todo and all(type(v) in (int, float, str) for p in todo for v in p.values())


# --- defect 6: a damaged baseline cache is reported and trained again ----------------------------
def _corrupt(path, how):
    data = path.read_bytes()
    checksum = path.with_suffix(".sha256")
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "bit-flipped":
        i = len(data) // 2
        path.write_bytes(data[:i] + bytes([data[i] ^ 0x10]) + data[i + 1:])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "no-checksum":
        checksum.unlink()
    elif how == "nan-weights":  # a consistent file and checksum, but NaN inside
        model = mp.load(path)
        model.classifier[1].weight.data[0, 0] = np.nan
        mp.save(model, path)
        checksum.write_text(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n")


@pytest.mark.parametrize("how", ["truncated", "bit-flipped", "empty", "no-checksum", "nan-weights"])
def test_a_damaged_baseline_is_named_and_trained_again(how, capsys):
    train, _ = E.load_data("mnist5k")
    first = E.baseline("lenet_300_100", "mnist5k", 0, 1, train)
    (path,) = E.cache_dir("baselines").glob("*.npz")
    _corrupt(path, how)
    capsys.readouterr()
    again = E.baseline("lenet_300_100", "mnist5k", 0, 1, train)
    err = capsys.readouterr().err
    assert f"baseline cache: {path} " in err and "training it again" in err
    for name, value in first.state_dict().items():  # retrained: the same weights as at first
        np.testing.assert_array_equal(again.state_dict()[name], value, err_msg=name)
    capsys.readouterr()
    E.baseline("lenet_300_100", "mnist5k", 0, 1, train)  # repaired: loaded without a word
    assert capsys.readouterr().err == ""


# --- ssl: learned structured sparsity vs pruning after training ---------------------------------
@pytest.mark.parametrize("granularity", ["filter_shape", "filter"])
def test_ssl_prunes_what_the_penalty_zeroed_and_the_same_groups_after_training(tmp_path,
                                                                             granularity):
    rows = E.ssl(model="lenet5", granularity=granularity, strengths=[0.0, 0.5], seeds=[0],
                 epochs=2, finetune_epochs=0, tol=0.05, out=tmp_path, progress=False)
    by = {(r["strength"], r["method"]): r for r in rows}
    strong, after = by[(0.5, "group_lasso")], by[(0.5, "prune_after")]
    # a strong penalty shrinks groups within 2 epochs; those are pruned (not the output layer's)
    assert 0 < strong["share_pruned"] <= strong["share_zeroed"]
    if granularity == "filter_shape":
        assert strong["share_pruned"] == strong["share_zeroed"]
    # prune-after removed as many groups per layer from the dense baseline
    assert after["share_pruned"] == pytest.approx(strong["share_pruned"])
    assert after["compression"] == pytest.approx(strong["compression"], rel=1e-3)
    assert after["speedup"] == pytest.approx(strong["speedup"], rel=1e-3)
    assert by[(0.0, "prune_after")]["share_pruned"] == by[(0.0, "group_lasso")]["share_pruned"]
    assert by[(0.0, "group_lasso")]["accuracy_trained"] == by[(0.0, "prune_after")]["accuracy"]


def test_ssl_refuses_a_penalty_the_model_cannot_take(tmp_path):
    with pytest.raises(ValueError, match="residual"):
        E.ssl(model="lenet5", granularity="layer", out=tmp_path, dry_run=True)
    with pytest.raises(ValueError, match="Conv2d"):
        E.ssl(model="lenet_300_100", granularity="kernel", out=tmp_path, dry_run=True)
    with pytest.raises(ValueError, match="granularity"):
        E.ssl(granularity="unstructured", out=tmp_path, dry_run=True)
    with pytest.raises(ValueError, match="strengths"):
        E.ssl(strengths=[0.1, 0.1], out=tmp_path, dry_run=True)
