"""The sweep and the command line: determinism, resume without lost or duplicated rows, configs."""
import csv
import json

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
    assert (tmp_path / "a" / "accuracy_vs_compression.png").stat().st_size > 1000


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


def test_cli_help_and_commands(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for command in ("demo", "sweep", "schedules", "at-init", "distribution", "lottery",
                    "sensitivity"):
        assert command in out
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--help"])
    out = capsys.readouterr().out
    for option in ("--model", "--dataset", "--seeds", "--epochs", "--out", "--config"):
        assert option in out


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


def test_cli_rejects_unknown_config_keys(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"learning_rate_typo": 1}))
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--config", str(bad)])


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
])
def test_each_experiment_writes_rows_and_its_figure(tmp_path, fn, kwargs, figure):
    kwargs = {"model": "lenet_300_100", "seeds": [0], "epochs": 1, "progress": False, **kwargs}
    rows = fn(out=tmp_path, **kwargs)
    assert rows and all("accuracy" in r for r in rows)
    assert len(read_csv(tmp_path / "results.csv")) == len(rows)
    assert (tmp_path / figure).stat().st_size > 1000
