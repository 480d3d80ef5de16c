"""One runner for every experiment: a grid of jobs, and their rows in `<out>/results.csv`.

An experiment is an `Experiment`: a name, the grid's axes and a function for one job. It calls
`run(experiment, settings, grid, out)`; the runner owns the rest, the same way for every
experiment:

- **identity**: every row carries the settings of its run, a fingerprint of minprune's code and
  one of the data. A results.csv holding rows of another configuration is refused, never resumed
  from: a LeNet-300-100 row is never reported as a LeNet-5 result.
- **the results file**: rewritten whole and atomically after every job (`files.atomic_write`),
  rows in grid order, while this run holds a lock on the output folder, so a second run on the
  same folder is refused at once instead of overwriting rows.
- **resume**: a job whose rows are all in the file does not run again. A damaged row (a line cut
  short) is reported and its job runs again.
- **where jobs run**: here (`jobs=1`), in `jobs` processes on this machine, or on a Dask cluster
  (`cluster="tcp://host:8786"`, the optional extra `minprune[cluster]`). Each job runs with one
  BLAS thread (BLAS results depend on the thread count), so all three give the same numbers. Only
  this process writes results.
- **progress**: a tqdm bar where someone watches (a terminal, a notebook); in a log file or CI, a
  line at the start, at each quarter and at the end.
"""
from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import checks
from .files import atomic_write
from .progress import watched


class Refused(ValueError):
    """This run may not use the output folder: another run holds it, or its results.csv belongs
    to another configuration."""


@dataclass(frozen=True)
class Experiment:
    """What the runner needs to know about an experiment.

    job               job(**point, **settings, progress=bool) -> its rows (a list of dicts), or
                      (rows, files) with files = {name: bytes} that the runner writes into the
                      output folder (data a figure needs). Runs in any process: a module-level
                      function, with plain values in and out.
    axes              the fields of a grid point, e.g. ("seed", "strategy", "sparsity")
    each              for jobs that give several rows: the field that tells them apart and its
                      values, e.g. ("kind", ("ticket", "reinit"))
    data_fingerprint  settings -> a fingerprint of the data the jobs use
    figure            figure(rows, out, settings), drawn after the jobs
    """
    name: str
    job: Callable
    axes: tuple
    data_fingerprint: Callable
    figure: Callable | None = None
    each: tuple | None = None

    @property
    def key(self) -> tuple:
        """The fields that tell apart the rows of one run."""
        return self.axes + ((self.each[0],) if self.each else ())


def run(experiment: Experiment, settings: dict, grid: list[dict], out, progress=True, jobs=1,
        cluster=None, dry_run=False) -> list[dict]:
    """Run every grid point not in `<out>/results.csv` yet, draw the figure, and return this
    grid's rows in grid order (as read back from the file). `settings` are the checked arguments
    that identify the run; each job gets them as keyword arguments, with its point.
    `dry_run=True` runs nothing: it checks the output folder and any results.csv in it (refusing
    one of another configuration) and returns the grid points that would run."""
    out, jobs, cluster = check_execution(out, jobs, cluster)
    progress = checks.boolean(progress, "progress")
    identity = {**settings, "experiment": experiment.name, **_fingerprints(experiment, settings)}
    if dry_run:
        results = ResultsFile(out / "results.csv", experiment, identity, grid)
        return [p for p in grid if not results.done(p)]
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):  # read only once we hold the folder: no other run changes it from here on
        for tmp in out.rglob(".*.tmp"):  # an atomic write's temporary left by a killed run
            tmp.unlink()
        results = ResultsFile(out / "results.csv", experiment, identity, grid)
        for line in results.damaged:
            _say(f"{results.path}: line {line} is damaged (cut short or missing fields); "
                 "its job runs again")
        todo = [p for p in grid if not results.done(p)]
        bar = Progress(experiment.name, len(grid), len(grid) - len(todo), progress)
        # a bar per training run only where someone watches it and only one job runs at a time
        show = progress and cluster is None and jobs == 1 and watched()
        try:
            finished = _execute(experiment, settings, todo, jobs, cluster, show)
            with contextlib.closing(finished):  # on an error: stop the workers now, not at GC
                for point, (rows, files, fingerprints) in finished:
                    for k, v in fingerprints.items():
                        if v != identity[k]:
                            raise Refused(f"cluster: a worker computed with other {k} ({k} "
                                          f"fingerprint {v!r} there, {identity[k]!r} here); "
                                          "give every worker the same minprune and data")
                    for name, data in files.items():
                        atomic_write(out / name, data)
                    results.add(point, rows)
                    bar.update()
        finally:
            bar.close()
        rows = results.rows()
        if experiment.figure is not None:
            experiment.figure(rows, out, settings)
    return rows


def check_execution(out, jobs, cluster):
    """The output folder (it must be a folder we can create or write into), the number of local
    processes and the cluster address, checked before any work."""
    if not isinstance(out, (str, os.PathLike)) or str(out) == "":
        raise TypeError(f"out: expected a folder path, got {out!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {str(out)!r} exists and is not a folder")
    if (out / "results.csv").exists() and not (out / "results.csv").is_file():
        raise ValueError(f"out: {str(out / 'results.csv')!r} exists and is not a file")
    existing = out.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"out: cannot create or write {str(out)!r} ({str(existing)!r} is "
                         f"{'not a folder' if not existing.is_dir() else 'not writable'})")
    jobs = checks.integer(jobs, "jobs", minimum=1)
    if cluster is not None:
        if not isinstance(cluster, str) or not cluster.strip():
            raise TypeError(f"cluster: expected a Dask scheduler address such as "
                            f"'tcp://10.0.0.5:8786', got {cluster!r}")
        if jobs != 1:
            raise ValueError(f"jobs: the cluster's workers run the jobs; jobs={jobs} is for "
                             "processes on this machine, so give one or the other")
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise ImportError("cluster: needs Dask distributed, the optional extra "
                              "`pip install 'minprune[cluster]'`") from None
    return out, jobs, cluster


# --- identity ----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def code_fingerprint(root: Path = Path(__file__).parent) -> str:
    """A hash of the minprune source under `root` that computes results (and of NumPy's version):
    rows made by other code are not reused. The course, the exercises, the plots and the command
    line do not change a number, so they are left out."""
    h = hashlib.sha256(np.__version__.encode())
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in ("course", "exercises") or rel.name in ("cli.py", "plots.py"):
            continue
        h.update(rel.as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def _fingerprints(experiment, settings) -> dict:
    return {"code": code_fingerprint(), "data": experiment.data_fingerprint(settings)}


# --- results.csv -------------------------------------------------------------------------------
_TEXT = ("experiment", "code", "data")  # columns never read as numbers
_NUMBER = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|-?inf|nan")


def cell(value) -> str:
    """How a value is written in results.csv (lists and tuples as JSON)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (list, tuple)):
        return json.dumps([v.item() if isinstance(v, np.generic) else v for v in value])
    return str(value)


def parse(text: str):
    """A results.csv cell as the int, float or string it was."""
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return float(text) if _NUMBER.fullmatch(text) else text


class ResultsFile:
    """`<out>/results.csv` of one run: its rows, as strings, in grid order.

    Rows that do not match the run's `identity` make the constructor raise `Refused`. Damaged
    rows (a line cut short, missing fields) are left out, their line numbers in `damaged`: their
    jobs run again and the next write drops them."""

    def __init__(self, path, experiment: Experiment, identity: dict, grid: list[dict]):
        self.path, self.experiment = Path(path), experiment
        self.identity = {k: cell(v) for k, v in identity.items()}
        self.order = {self._point_key(p): i for i, p in enumerate(grid)}
        self.damaged = []
        self.fields, self.table = self._read()
        self._check_identity()

    def _point_key(self, row) -> tuple:
        return tuple(cell(row[a]) for a in self.experiment.axes)

    def _keys(self, point) -> list[tuple]:
        """The row keys a finished job at `point` has written."""
        key = self._point_key(point)
        each = self.experiment.each
        return [key + (cell(v),) for v in each[1]] if each else [key]

    def _row_key(self, row) -> tuple:
        return tuple(row[k] for k in self.experiment.key)

    def _read(self):
        if not self.path.exists():
            return [], []
        try:
            text = self.path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise Refused(f"out: {str(self.path)!r} is not a results table (not text); move it "
                          "away or choose another folder") from None
        records = list(csv.reader(io.StringIO(text, newline="")))
        # every write ends with a newline: a last line without one was cut short, even when the
        # cut left it with the right number of fields
        complete = len(records) if text.endswith("\n") else len(records) - 1
        if complete < 1:  # empty, or the header itself cut short: nothing to keep
            self.damaged += range(1, len(records) + 1)
            return [], []
        fields, table = records[0], []
        for line, record in enumerate(records[1:], start=2):
            if line > complete or len(record) != len(fields):
                self.damaged.append(line)
            else:
                table.append(dict(zip(fields, record)))
        return fields, table

    def _check_identity(self):
        for row in self.table:
            diff = {k: (row.get(k, "(none)"), v) for k, v in self.identity.items()
                    if row.get(k) != v}
            if diff:
                what = ", ".join(f"{k} {old!r} there, {new!r} now" for k, (old, new) in
                                 list(diff.items())[:4])
                why = (" (the code fingerprint changes with minprune's source, the data "
                       "fingerprint with the data set and fast mode)"
                       if {"code", "data"} & set(diff) else "")
                raise Refused(f"out: {str(self.path)!r} holds rows of another configuration: "
                              f"{what}{why}. A run reuses only rows of its own configuration: "
                              "choose another output folder (--out), or move that file away "
                              "to start again")

    def done(self, point) -> bool:
        have = {self._row_key(r) for r in self.table}
        return all(k in have for k in self._keys(point))

    def add(self, point, rows: list[dict]):
        """Replace the rows of `point` with `rows` (the job's results, completed with the run's
        identity and the point) and rewrite the file."""
        keys = set(self._keys(point))
        self.table = [r for r in self.table if self._row_key(r) not in keys]
        for r in rows:
            clash = sorted(set(r) & (set(self.identity) | set(point)))
            if clash:  # a job's value would silently replace the run's own
                raise ValueError(f"{self.experiment.name}: the job at {point} returned "
                                 f"{clash}, which are the run's settings or grid fields")
            full = {**self.identity, **{k: cell(v) for k, v in point.items()},
                    **{k: cell(v) for k, v in r.items()}}
            for k in _TEXT:  # last: the least readable columns
                full[k] = full.pop(k)
            if self._row_key(full) not in keys:
                raise ValueError(f"{self.experiment.name}: the job at {point} returned a row "
                                 f"keyed {self._row_key(full)}, expected one of {sorted(keys)}")
            self.table.append(full)
        # rows of grid points outside this run first (a larger grid ran before), then grid order
        self.table.sort(key=lambda r: self.order.get(self._point_key(r), -1))
        self.fields = list(dict.fromkeys([*self.fields, *(k for r in self.table for k in r)]))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.table)
        atomic_write(self.path, buf.getvalue())

    def rows(self) -> list[dict]:
        """This grid's rows, parsed, in grid order. The fingerprints stay text: a hex digest
        such as "1234e567..." would otherwise read as a number."""
        return [{k: v if k in _TEXT else parse(v) for k, v in r.items()} for r in self.table
                if self._point_key(r) in self.order]


@contextlib.contextmanager
def _locked(folder: Path):
    """Hold the output folder for this run; a second run on it is refused at once. The lock is
    the kernel's (flock on the folder itself): it dies with the process, a killed run leaves
    nothing to clean up."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Refused(f"out: {str(folder)!r} is in use by another minprune run; wait for it "
                          "to finish (then this run resumes from its rows) or choose another "
                          "output folder") from None
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked_file(path: Path):
    """Wait for, then hold, an exclusive lock on `path` (created if missing): one process at a
    time does what follows, e.g. train a baseline that others then load."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# --- where the jobs run ------------------------------------------------------------------------
def _job(experiment, settings, point, progress=False):
    """One job, wherever it runs: with one BLAS thread, returning its rows, its files and the
    fingerprints of the code and data it ran with."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1):
        result = experiment.job(**point, **settings, progress=progress)
    rows, files = result if isinstance(result, tuple) else (result, {})
    return rows, files, _fingerprints(experiment, settings)


def _exit_with(driver: int):
    """In a `jobs=N` worker: end this process when the driver is gone. A driver killed with
    SIGKILL cannot stop its workers, which would otherwise wait for jobs forever."""
    def watch():
        while os.getppid() == driver:
            time.sleep(0.5)
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


def _execute(experiment, settings, points, jobs, cluster, show):
    """Yield (point, job result) as the jobs finish: here, in local processes or on Dask."""
    if not points:
        return
    if cluster is None and jobs == 1:
        for p in points:
            yield p, _job(experiment, settings, p, show)
    elif cluster is None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed
        # spawn: a fresh interpreter per worker (forking a process that runs BLAS threads can hang)
        spawn = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(min(jobs, len(points)), mp_context=spawn,
                                   initializer=_exit_with, initargs=(os.getpid(),))
        try:
            futures = {pool.submit(_job, experiment, settings, p): i for i, p in enumerate(points)}
            for future in as_completed(futures):
                yield points[futures[future]], future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    else:
        from distributed import Client, as_completed
        with Client(cluster, set_as_default=False) as client:
            futures = [client.submit(_job, experiment, settings, p, pure=False) for p in points]
            index = {f.key: i for i, f in enumerate(futures)}
            for future in as_completed(futures, loop=client.loop):  # this client's
                yield points[index[future.key]], future.result()


# --- progress ----------------------------------------------------------------------------------
def _say(message: str):
    print(message, file=sys.stderr, flush=True)


class Progress:
    """A tqdm bar where someone watches; elsewhere (a log file, CI) a few lines: the start, each
    quarter, the end. Silent with `enabled=False`."""

    def __init__(self, desc: str, total: int, done: int, enabled: bool):
        self.desc, self.total, self.done, self.enabled = desc, total, done, enabled
        self.start, self.bar = time.perf_counter(), None
        if enabled and watched():
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, initial=done, desc=desc)
        elif enabled:
            _say(f"{desc}: {total} jobs, {done} of them already in results.csv")

    def update(self):
        quarter = self.done * 4 // max(self.total, 1)
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.enabled and self.done * 4 // self.total > quarter and self.done < self.total:
            _say(f"{self.desc}: {self.done}/{self.total} jobs done ({self._elapsed()})")

    def close(self):
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            _say(f"{self.desc}: {self.done}/{self.total} jobs done in {self._elapsed()}")

    def _elapsed(self) -> str:
        s = round(time.perf_counter() - self.start)
        return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"
