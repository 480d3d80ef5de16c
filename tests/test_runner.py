"""The grid runner (minprune.runner) through the sweep: the run's identity, the locked results
file, resume after a kill or a damaged row, file modes, progress lines, and the three places jobs
run (here, `jobs` processes, a Dask cluster), which must all give the same rows."""
import csv
import dataclasses
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import minprune
import minprune.progress
from minprune import experiments as E
from minprune import runner
from minprune.progress import watched

pytestmark = pytest.mark.schedules

SMALL = dict(model="lenet_300_100", strategies=["global_magnitude", "random"],
             sparsities=[0.5, 0.9], seeds=[0], epochs=1, finetune_epochs=1, progress=False)
TIMING = ("seconds",)  # the only columns allowed to differ between two runs of one configuration
# the same sweep from the command line, long enough (9 jobs) to be killed or joined while it runs
CLI_SWEEP = ["sweep", "--model", "lenet_300_100", "--epochs", "1", "--finetune-epochs", "2",
             "--strategies", "global_magnitude,random,layerwise_magnitude",
             "--sparsities", "0.5,0.8,0.9"]
CLI_AS_API = dict(model="lenet_300_100", epochs=1, finetune_epochs=2, seeds=[0],
                  strategies=["global_magnitude", "random", "layerwise_magnitude"],
                  sparsities=[0.5, 0.8, 0.9], progress=False)


@pytest.fixture(autouse=True)
def fast_and_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("MINPRUNE_FAST", "1")
    monkeypatch.setenv("MINPRUNE_CACHE", str(tmp_path / "cache"))


def table(path):
    """results.csv as dicts of strings, without the timing columns."""
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(f)]


def rows_in(path) -> int:
    try:
        return max(0, len(Path(path).read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        pytest.fail("a model was trained although the run should have stopped before")
    monkeypatch.setattr(E.train, "fit", refuse)
    monkeypatch.setattr(E, "baseline", refuse)


def minprune_cli(*args):
    """`python -m minprune ARGS` in a new process (with this test's environment)."""
    return [sys.executable, "-m", "minprune", *map(str, args)]


def wait_for(condition, proc, timeout=60):
    """Wait until `condition()` holds, while `proc` still runs."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def wait_for_rows(path, n, proc):
    wait_for(lambda: rows_in(path) >= n, proc)


# --- defect 2: rows of another configuration are refused, never resumed from ---------------------
def test_a_folder_of_another_configuration_is_refused_not_resumed(tmp_path, monkeypatch):
    E.sweep(out=tmp_path / "lenet_300_100", **SMALL)
    copy = tmp_path / "copy"  # the example: a LeNet-300-100 folder copied, then LeNet-5
    shutil.copytree(tmp_path / "lenet_300_100", copy)
    before = (copy / "results.csv").read_bytes()
    no_training(monkeypatch)
    changes = [("model", "lenet5"), ("epochs", 2), ("finetune_epochs", 0),
               ("exclude", ["classifier.5"])]
    for field, value in changes:
        now = re.escape(repr(runner.cell(value)))
        with pytest.raises(runner.Refused, match=rf"another configuration: {field} .* there, "
                                                 rf"{now} now"):
            E.sweep(out=copy, **{**SMALL, field: value})
        with pytest.raises(runner.Refused, match=field):  # a dry run says so too
            E.sweep(out=copy, **{**SMALL, field: value, "dry_run": True})
    assert (copy / "results.csv").read_bytes() == before


def test_rows_of_another_dataset_or_other_data_are_refused(tmp_path, monkeypatch):
    E.sweep(out=tmp_path, **SMALL)
    path = tmp_path / "results.csv"
    original = path.read_text()
    # as if this folder came from a Fashion-MNIST run (running one here would need a download)
    path.write_text(original.replace(",mnist5k,", ",fashion,"))
    no_training(monkeypatch)
    with pytest.raises(runner.Refused, match="dataset 'fashion' there, 'mnist5k' now"):
        E.sweep(out=tmp_path, **SMALL)
    path.write_text(original)
    monkeypatch.delenv("MINPRUNE_FAST")  # full mode trains on other digits: another data hash
    with pytest.raises(runner.Refused, match="data '[0-9a-f]{16}' there.*data fingerprint"):
        E.sweep(out=tmp_path, **SMALL)


def test_rows_of_other_code_are_refused(tmp_path, monkeypatch):
    E.sweep(out=tmp_path, **SMALL)
    no_training(monkeypatch)
    monkeypatch.setattr(runner, "code_fingerprint", lambda: "0123456789abcdef")
    with pytest.raises(runner.Refused, match="code '[0-9a-f]{16}' there, '0123456789abcdef' now"):
        E.sweep(out=tmp_path, **SMALL)


def test_code_fingerprint_follows_the_code_that_computes_results(tmp_path):
    package = Path(minprune.__file__).parent
    copy = tmp_path / "minprune"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__", "_data"))
    real = runner.code_fingerprint(package)
    assert runner.code_fingerprint(copy) == real  # the place does not matter, the contents do
    for teaching_only in ("cli.py", "plots.py", "exercises/lesson03.py"):
        (copy / teaching_only).write_text((copy / teaching_only).read_text() + "\n# note\n")
    runner.code_fingerprint.cache_clear()
    assert runner.code_fingerprint(copy) == real
    criteria = copy / "prune" / "criteria.py"
    criteria.write_text(criteria.read_text().replace("abs(", "np.abs(", 1))
    runner.code_fingerprint.cache_clear()
    assert runner.code_fingerprint(copy) != real


def test_other_criterion_arguments_are_refused(tmp_path, monkeypatch):
    scan = dict(model="lenet_300_100", seeds=[0], epochs=1, sparsities=[0.5], progress=False)
    E.sensitivity(out=tmp_path, criterion="magnitude", **scan)
    no_training(monkeypatch)
    with pytest.raises(runner.Refused, match="criterion 'magnitude' there, 'random' now"):
        E.sensitivity(out=tmp_path, criterion="random", **scan)


def test_a_smaller_grid_of_the_same_configuration_reuses_rows(tmp_path, monkeypatch):
    full = E.sweep(out=tmp_path, **SMALL)
    no_training(monkeypatch)
    part = E.sweep(out=tmp_path, **{**SMALL, "sparsities": [0.9]})
    assert part == [r for r in full if r["sparsity"] == 0.9]
    assert len(table(tmp_path / "results.csv")) == 4  # the other rows are kept


# --- defect 3: one run at a time on an output folder ---------------------------------------------
def test_a_held_folder_is_refused_at_once(tmp_path, monkeypatch):
    tmp_path.joinpath("out").mkdir()
    no_training(monkeypatch)
    with runner._locked(tmp_path / "out"):  # another open file description: another run
        with pytest.raises(runner.Refused, match="in use by another minprune run"):
            E.sweep(out=tmp_path / "out", **SMALL)
    assert not (tmp_path / "out" / "results.csv").exists()


def test_two_processes_on_one_folder_lose_no_row(tmp_path):
    out = tmp_path / "out"
    first = subprocess.Popen(minprune_cli(*CLI_SWEEP, "--out", out), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    # start the second as soon as the first holds the folder: it trains the baseline (locked)
    wait_for(lambda: list((tmp_path / "cache" / "baselines").glob(".*.lock")), first)
    second = subprocess.run(minprune_cli(*CLI_SWEEP, "--out", out), capture_output=True, text=True,
                            timeout=60)
    assert first.poll() is None, "the first run ended before the second started: nothing tested"
    assert second.returncode == 2
    assert f"{str(out)!r} is in use by another minprune run" in second.stderr
    stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert table(out / "results.csv") == table_of_api_run(tmp_path)
    # its stderr is not a terminal: a few summary lines, no redrawn bars (baseline training included)
    assert "\r" not in stderr and "it/s" not in stderr
    lines = stderr.splitlines()
    assert lines[0] == "sweep: 9 jobs, 0 of them already in results.csv"
    assert lines[-1].startswith("sweep: 9/9 jobs done in ") and len(lines) <= 6
    # afterwards the second run resumes: nothing left to run
    again = subprocess.run(minprune_cli(*CLI_SWEEP, "--out", out, "--quiet"), capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 0 and "9 rows in" in again.stdout
    assert table(out / "results.csv") == table_of_api_run(tmp_path)


def table_of_api_run(tmp_path):
    """The rows of CLI_SWEEP, run here without interruption (once per test)."""
    out = tmp_path / "uninterrupted"
    if not (out / "results.csv").exists():
        E.sweep(out=out, **CLI_AS_API)
    return table(out / "results.csv")


# --- resume after SIGKILL, damaged rows ----------------------------------------------------------
def children(pid) -> list[int]:
    """The live child processes of `pid` (Linux's /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def alive(pid) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("jobs", [1, 2])
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, jobs):
    out = tmp_path / "out"
    proc = subprocess.Popen(minprune_cli(*CLI_SWEEP, "--out", out, "--quiet", "--jobs", jobs),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_rows(out / "results.csv", 1, proc)
    workers = children(proc.pid) if Path("/proc/self/stat").exists() else []
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 1 <= rows_in(out / "results.csv") < 9, "the run ended before the kill: nothing tested"
    if jobs > 1 and workers:  # the killed driver's worker processes end too, not wait forever
        deadline = time.monotonic() + 10
        while any(alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(w) for w in workers), "worker processes outlived their driver"
    done = subprocess.run(minprune_cli(*CLI_SWEEP, "--out", out, "--quiet", "--jobs", jobs),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = table(out / "results.csv")
    assert len({(r["strategy"], r["sparsity"]) for r in rows}) == len(rows) == 9  # no duplicate
    assert rows == table_of_api_run(tmp_path)
    assert not list(out.rglob("*.tmp"))


@pytest.mark.parametrize("cut", [
    pytest.param(5, id="inside-the-last-field"),  # same number of fields: only the newline tells
    pytest.param(150, id="missing-fields"),
])
def test_a_row_cut_short_is_reported_and_its_job_runs_again(tmp_path, monkeypatch, capsys, cut):
    full = E.sweep(out=tmp_path, **SMALL)
    path = tmp_path / "results.csv"
    complete = path.read_text()
    path.write_text(complete[:-cut])  # the last row (random, 0.9) cut mid-line
    (tmp_path / "accuracy_vs_compression.png").unlink()
    ran = []

    def job(**kwargs):
        ran.append((kwargs["strategy"], kwargs["sparsity"]))
        return E._sweep_job(**kwargs)

    monkeypatch.setattr(E, "SWEEP", dataclasses.replace(E.SWEEP, job=job))
    capsys.readouterr()
    again = E.sweep(out=tmp_path, **SMALL)
    assert f"{path}: line 5 is damaged" in capsys.readouterr().err
    assert ran == [("random", 0.9)]
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING} for r in rows]  # noqa: E731
    assert strip(again) == strip(full)
    assert [r for r in table(path)] == [{k: str(v) for k, v in r.items()} for r in strip(full)]
    assert (tmp_path / "accuracy_vs_compression.png").stat().st_size > 0  # the figure drawn again


def test_fingerprints_stay_text_when_read_back(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "code_fingerprint", lambda: "1234e56789012345")  # reads as 1.2e59
    rows = E.sweep(out=tmp_path, **{**SMALL, "strategies": ["random"], "sparsities": [0.5]})
    assert rows[0]["code"] == "1234e56789012345" and rows[0]["seed"] == 0


def test_a_job_cannot_overwrite_the_runs_own_fields(tmp_path, monkeypatch):
    def job(**kwargs):
        return [{**E._sweep_job(**kwargs)[0], "model": "lenet5"}]
    monkeypatch.setattr(E, "SWEEP", dataclasses.replace(E.SWEEP, job=job))
    with pytest.raises(ValueError, match=r"returned \['model'\]"):
        E.sweep(out=tmp_path, **{**SMALL, "strategies": ["random"], "sparsities": [0.5]})


# --- defect 9: no temporaries left, the user's umask kept ----------------------------------------
@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_failed_writes_leave_no_temporary_file(tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr("minprune.files.os.replace", full_disk)
    with pytest.raises(OSError, match="disk full"):
        E.sweep(out=tmp_path / "out", **SMALL)  # the first write is the baseline's
    assert not list(tmp_path.rglob("*.tmp"))
    monkeypatch.undo()
    monkeypatch.setenv("MINPRUNE_FAST", "1")
    monkeypatch.setenv("MINPRUNE_CACHE", str(tmp_path / "cache"))
    stale = tmp_path / "out" / ".results.csv.k1ll3d.tmp"  # what a SIGKILL mid-write leaves
    stale.parent.mkdir(exist_ok=True)
    stale.write_text("half a table")
    E.sweep(out=tmp_path / "out", **{**SMALL, "sparsities": [0.5]})
    monkeypatch.setattr("minprune.files.os.replace", full_disk)
    with pytest.raises(OSError, match="disk full"):
        E.sweep(out=tmp_path / "out", **SMALL)  # now the results.csv rewrite fails
    assert not list(tmp_path.rglob("*.tmp"))
    assert len(table(tmp_path / "out" / "results.csv")) == 2


def test_results_and_baselines_keep_the_umask_mode(tmp_path, umask_022):
    mode = lambda p: p.stat().st_mode & 0o777  # noqa: E731
    E.sweep(out=tmp_path, **{**SMALL, "sparsities": [0.5]})
    results = tmp_path / "results.csv"
    cached = sorted((tmp_path / "cache" / "baselines").glob("*.npz"))
    assert len(cached) == 1
    checksum = cached[0].with_suffix(".sha256")
    assert [mode(p) for p in (results, cached[0], checksum)] == [0o644] * 3
    E.sweep(out=tmp_path, **SMALL)  # rewrites results.csv twice
    assert mode(results) == 0o644
    results.chmod(0o640)  # a mode the user chose is kept through rewrites
    E.sweep(out=tmp_path, **{**SMALL, "sparsities": [0.5, 0.9, 0.95]})
    assert mode(results) == 0o640
    cached[0].write_bytes(cached[0].read_bytes()[:100])  # damaged: trained and written again
    E.sweep(out=tmp_path / "again", **SMALL)
    assert [mode(p) for p in (cached[0], checksum)] == [0o644] * 2


# --- progress where it is written -----------------------------------------------------------------
def test_a_log_file_gets_a_few_summary_lines(tmp_path, monkeypatch, capsys):
    assert not watched()  # capsys: stderr is not a terminal, as in `make demo > log`
    progress = []
    real_fit = E.train.fit

    def fit(*args, **kwargs):
        progress.append(kwargs.get("progress", True))
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(E.train, "fit", fit)
    E.sweep(out=tmp_path, **{**SMALL, "progress": True, "sparsities": [0.5, 0.8, 0.9, 0.95]})
    err = capsys.readouterr().err
    assert progress == [False] * 9  # the baseline and 8 fine-tunings: no per-step bar
    assert "\r" not in err
    lines = err.splitlines()
    assert lines[0] == "sweep: 8 jobs, 0 of them already in results.csv"
    assert [line.split(" jobs")[0] for line in lines[1:]] == [
        "sweep: 2/8", "sweep: 4/8", "sweep: 6/8", "sweep: 8/8"]
    E.sweep(out=tmp_path, **{**SMALL, "progress": False, "sparsities": [0.5, 0.8, 0.9, 0.95]})
    assert capsys.readouterr().err == ""  # progress=False: silent


# --- where the jobs run: the same rows everywhere --------------------------------------------------
def test_two_processes_give_the_same_rows_as_one(tmp_path):
    one = E.sweep(out=tmp_path / "one", **SMALL)
    two = E.sweep(out=tmp_path / "two", jobs=2, **SMALL)
    assert table(tmp_path / "two" / "results.csv") == table(tmp_path / "one" / "results.csv")
    assert [r["seconds"] for r in two] != [r["seconds"] for r in one]  # really run again


@pytest.mark.parametrize("fn, kwargs", [
    (E.lottery_experiment, dict(sparsities=[0.5])),  # two rows per job
    (E.distribution, dict(finetune_epochs=1)),       # files written by the jobs
])
def test_every_experiment_runs_in_worker_processes(tmp_path, fn, kwargs):
    kwargs = {"model": "lenet_300_100", "seeds": [0], "epochs": 1, "progress": False, **kwargs}
    fn(out=tmp_path / "one", **kwargs)
    fn(out=tmp_path / "two", jobs=2, **kwargs)
    assert table(tmp_path / "two" / "results.csv") == table(tmp_path / "one" / "results.csv")
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.npy"))
    for f in files:
        assert (tmp_path / "two" / f).read_bytes() == (tmp_path / "one" / f).read_bytes()


def test_a_dask_cluster_gives_the_same_rows_as_one_process(tmp_path):
    from distributed import LocalCluster
    E.sweep(out=tmp_path / "here", **SMALL)
    # the workers start after the fixture set MINPRUNE_FAST and MINPRUNE_CACHE: they inherit them
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster:
        E.sweep(out=tmp_path / "dask", cluster=cluster.scheduler_address, **SMALL)
    assert table(tmp_path / "dask" / "results.csv") == table(tmp_path / "here" / "results.csv")


def test_fit_draws_no_bar_into_a_log_file(capsys):
    """`fit(progress=True)` called directly (as a lesson or a script does) writes nothing per
    step when stderr is a log file; on a terminal it draws its bar."""
    import numpy as np
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((64, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 64))
    model = minprune.models.lenet_300_100()
    minprune.train.fit(model, data, epochs=2, batch_size=8, progress=True)
    assert capsys.readouterr().err == ""
    bar = minprune.progress.bar(16, "train", enabled=True)
    assert bar.disable  # the same rule the runner follows
    bar.close()
