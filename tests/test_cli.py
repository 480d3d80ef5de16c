"""The command line (minprune.cli): help, --dry-run, config files, and every bad option refused,
naming it, before anything is trained or written."""
import json
import subprocess
import sys

import pytest

from minprune import cli
from minprune import experiments as E
from minprune.prune import schedules

pytestmark = pytest.mark.schedules

EXPERIMENTS = ("demo", "sweep", "schedules", "at-init", "distribution", "lottery", "sensitivity",
               "ssl")


@pytest.fixture(autouse=True)
def fast_and_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("MINPRUNE_FAST", "1")
    monkeypatch.setenv("MINPRUNE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def no_training(monkeypatch):
    """Any training (a baseline, a fine-tuning, `minprune train`) fails the test."""
    def refuse(*args, **kwargs):
        pytest.fail("a model was trained although the command should have stopped before")
    for module, name in ((E.train, "fit"), (E, "baseline"), (schedules, "fit")):
        monkeypatch.setattr(module, name, refuse)


def refused(argv, capsys) -> str:
    """Run the command, expect exit status 2, return its error message."""
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


# --- help and --dry-run ---------------------------------------------------------------------------
def test_python_m_minprune_help():
    done = subprocess.run([sys.executable, "-m", "minprune", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0
    for command in (*EXPERIMENTS, "train", "course"):
        assert command in done.stdout


@pytest.mark.parametrize("command", [*EXPERIMENTS, "train"])
def test_every_command_has_help_listing_its_options(command, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    options = [*cli._options(command), "config", "quiet", "dry_run"]
    for name in options:
        assert "--" + name.replace("_", "-") in out
    assert ("--jobs" in out and "--cluster" in out) == (command != "train")


def test_dry_run_checks_and_lists_the_jobs_but_runs_nothing(tmp_path, capsys, no_training):
    out = tmp_path / "out"
    assert cli.main(["sweep", "--model", "lenet_300_100", "--strategies", "random,global_magnitude",
                     "--sparsities", "0.5,0.9", "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "4 jobs to run:" in printed and "strategy=random, sparsity=0.9" in printed
    assert not out.exists()
    assert "sparsities" in refused(["sweep", "--sparsities", "1.5", "--dry-run",
                                    "--out", str(out)], capsys)


def test_dry_run_counts_finished_jobs_and_refuses_another_configuration(tmp_path, capsys,
                                                                        monkeypatch):
    out = str(tmp_path / "out")
    small = ["--model", "lenet_300_100", "--epochs", "1", "--finetune-epochs", "0",
             "--strategies", "random", "--out", out, "--quiet"]
    assert cli.main(["sweep", *small, "--sparsities", "0.5"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(E.train, "fit", lambda *a, **k: pytest.fail("trained in a dry run"))
    assert cli.main(["sweep", *small, "--sparsities", "0.5,0.9", "--dry-run"]) == 0
    assert "1 jobs to run:" in capsys.readouterr().out
    err = refused(["sweep", *small, "--sparsities", "0.5", "--epochs", "2", "--dry-run"], capsys)
    assert "holds rows of another configuration: epochs '1' there, '2' now" in err


# --- defect 10: every option checked before any work ----------------------------------------------
@pytest.mark.parametrize("argv, named", [
    (["sweep", "--sparsities", "1.5"], "sparsities[0]: must be in [0, 1), got 1.5"),
    (["sweep", "--sparsities", "0.5,0.5"], "sparsities: 0.5 appears twice"),
    (["sweep", "--sparsities", ""], "sparsities: expected a non-empty list"),
    (["sweep", "--sparsities", "half"], "--sparsities: expected comma-separated numbers"),
    (["sweep", "--compressions", "0"], "compressions[0]: must be ≥ 1, got 0.0"),
    (["sweep", "--compressions", "2", "--sparsities", "0.5"], "--compressions: give either"),
    (["sweep", "--strategies", "magnitude/everywhere"], "strategies: 'magnitude/everywhere'"),
    (["sweep", "--strategies", "magic/global"], "strategies: 'magic/global'"),
    (["sweep", "--strategies", "magnitude/global/hexagons"], "strategies: 'magnitude/global/hex"),
    (["sweep", "--strategies", "nonsense"], "strategies: 'nonsense' is not one of"),
    (["sweep", "--exclude", "classifier.9"], "exclude: ['classifier.9'] are not prunable"),
    (["sweep", "--seeds=-1"], "seeds[0]: must be ≥ 0, got -1"),
    (["sweep", "--seeds", ""], "seeds: expected a non-empty list"),
    (["sweep", "--epochs", "0"], "epochs: must be ≥ 1, got 0"),
    (["sweep", "--finetune-epochs", "-1"], "finetune_epochs: must be ≥ 0, got -1"),
    (["sweep", "--model", "resnet50"], "model: 'resnet50' is not one of"),
    (["sweep", "--dataset", "cifar"], "dataset: 'cifar' is not one of"),
    (["sweep", "--jobs", "0"], "jobs: must be ≥ 1, got 0"),
    (["sweep", "--jobs", "2", "--cluster", "tcp://127.0.0.1:8786"], "jobs: the cluster's workers"),
    (["sweep", "--cluster", " "], "cluster: expected a Dask scheduler address"),
    (["demo", "--seeds", "0,0"], "seeds: 0 appears twice"),
    (["schedules", "--rounds", "0"], "rounds: must be ≥ 1, got 0"),
    (["at-init", "--criteria", "snip,magnitud"], "criteria: 'magnitud'"),
    (["distribution", "--filter-sparsity", "1"], "filter_sparsity: must be in [0, 1), got 1.0"),
    (["distribution", "--threshold", "0"], "threshold: must be > 0, got 0.0"),
    (["lottery", "--keep-per-round", "1"], "keep_per_round: must be in (0, 1), got 1.0"),
    (["lottery", "--rewind-to", "100000"], "rewind_to: must be in [0, "),
    (["sensitivity", "--granularity", "hexagons"], "layer 'classifier.1': "),
    (["sensitivity", "--criterion", "magnitud"], "layer 'classifier.1': "),
    (["ssl", "--granularity", "layer"], "granularity: 'layer' groups the residual branch"),
    (["ssl", "--granularity", "filter_shape"], "groups exist in Conv2d layers only"),
    (["ssl", "--granularity", "unstructured"], "granularity: 'unstructured' is not one of"),
    (["ssl", "--granularity", "filter", "--strengths=-0.1"], "strengths[0]: must be ≥ 0"),
    (["ssl", "--granularity", "filter", "--tol=-1"], "tol: must be ≥ 0"),
    (["train", "--seeds", "0,1"], "seeds: `minprune train` trains one model"),
    (["train", "--lr", "0"], "lr: must be > 0, got 0.0"),
])
def test_bad_options_are_refused_before_any_work(argv, named, tmp_path, capsys, no_training):
    out = tmp_path / "out"
    model = [] if "--model" in argv else ["--model", "lenet_300_100"]
    err = refused([*argv, *model, "--out", str(out)], capsys)
    assert f"minprune {argv[0]}: error: " in err and named in err
    assert not out.exists()


@pytest.mark.parametrize("where", ["a file", "inside a file"])
def test_an_output_folder_that_cannot_be_written_is_refused_first(where, tmp_path, capsys,
                                                                  no_training):
    (tmp_path / "file").write_text("not a folder")
    out = tmp_path / "file" if where == "a file" else tmp_path / "file" / "out"
    err = refused(["sweep", "--model", "lenet_300_100", "--out", str(out)], capsys)
    assert f"out: {str(out)!r}" in err or f"out: cannot create or write {str(out)!r}" in err


@pytest.mark.skipif(sys.platform == "win32" or __import__("os").geteuid() == 0,
                    reason="root may write into any folder")
def test_a_read_only_output_folder_is_refused_first(tmp_path, capsys, no_training):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    err = refused(["sweep", "--out", str(locked / "out")], capsys)
    assert "not writable" in err


# --- defect 5: a config file sets options of this command, nothing else --------------------------
@pytest.mark.parametrize("name, text, named", [
    ("c.toml", 'command = "lottery"\n', "'command' is not an option of `minprune sweep`"),
    ("c.toml", 'sparsitys = [0.5]\n', "'sparsitys' is not an option of `minprune sweep`"),
    ("c.toml", 'keep_per_round = 0.5\n', "'keep_per_round' is not an option of `minprune sweep`"),
    ("c.toml", 'finetune-epochs = 1\nfinetune_epochs = 2\n', "'finetune_epochs' is given twice"),
    ("c.toml", 'sparsities = [0.5]\ncompressions = [2]\n', "'sparsities' and 'compressions'"),
    ("c.json", '[{"epochs": 1}]', "must hold a table of options (option = value), not a list"),
    ("c.json", '{"epochs": 1,}', "cannot parse"),
    ("c.toml", 'epochs = "3"\n', "epochs: expected an int, got '3'"),
    ("c.toml", 'quiet = "no"\n', "quiet: expected True or False, got 'no'"),
    ("c.toml", 'sparsities = 0.5\n', "sparsities: expected a list, got 0.5"),
    ("c.toml", 'sparsities = "0.5,x"\n', "sparsities: expected comma-separated numbers"),
    ("c.yaml", 'epochs: 1\n', "expected a .toml or .json file"),
])
def test_bad_config_files_are_refused_naming_the_key(name, text, named, tmp_path, capsys,
                                                     no_training):
    config = tmp_path / name
    config.write_text(text)
    err = refused(["sweep", "--config", str(config), "--out", str(tmp_path / "out")], capsys)
    assert named in err
    assert not (tmp_path / "out").exists()


def test_a_missing_config_file_is_named(tmp_path, capsys, no_training):
    assert f"--config: no such file {str(tmp_path / 'gone.toml')!r}" in refused(
        ["sweep", "--config", str(tmp_path / "gone.toml")], capsys)


def test_config_values_and_the_command_line(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('sparsities = "0.5,0.9"\nseeds = [1]\nquiet = true\nfinetune-epochs = 0\n')
    options = cli.options_for("sweep", {"seeds": [2]}, config)
    assert options == dict(sparsities=[0.5, 0.9], seeds=[2], finetune_epochs=0, progress=False)
    # --sparsities on the command line replaces the config's --compressions
    config.write_text("compressions = [2, 10]\n")
    assert cli.options_for("sweep", {}, config)["sparsities"] == [0.5, 0.9]
    assert cli.options_for("sweep", {"sparsities": [0.8]}, config)["sparsities"] == [0.8]
    # demo's own defaults, under the config's values
    assert cli.options_for("demo", {}, None)["model"] == "lenet5"
    config.write_text('model = "lenet_300_100"\n')
    assert cli.options_for("demo", {}, config)["model"] == "lenet_300_100"


def test_json_config_of_another_command(tmp_path, capsys, no_training):
    config = tmp_path / "lottery.json"
    config.write_text(json.dumps({"keep_per_round": 0.5, "rewind_to": 0}))
    assert cli.main(["lottery", "--config", str(config), "--model", "lenet_300_100",
                     "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    assert "5 jobs to run" in capsys.readouterr().out
