"""Run every lesson notebook top to bottom in fast mode, and check how the notebooks are stored.

Lessons are found by globbing `lessons/*.ipynb`, so a new lesson is tested as soon as it exists.
The kernel is started with *this* interpreter (see minprune.course.execute), so the notebooks see
the same minprune and packages as pytest does, whatever `python` is on PATH.
"""
import re
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.lessons

ROOT = Path(__file__).resolve().parents[2]
LESSONS = ROOT / "lessons"
NOTEBOOKS = sorted(LESSONS.glob("*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]


def _cell_text(cell) -> str:
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_lesson_runs(path, tmp_path):
    from nbclient.exceptions import CellExecutionError

    from minprune.course.execute import execute

    try:   # a kernel of this interpreter, in fast mode, with no GUI backend; no cache across runs
        execute(path, fast=True, cache_dir=tmp_path)
    except CellExecutionError as err:  # the message holds the failing cell's source and traceback
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # drop the traceback's colour codes
        pytest.fail(f"{path.name} failed:\n{message}", pytrace=False)


def test_there_are_lessons():
    assert NOTEBOOKS, f"no notebooks found in {LESSONS}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_lesson_is_stored_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert path.name[:2].isdigit() and path.name[2] == "_", \
        f"{path.name}: lessons are named NN_title.ipynb"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: cell {i} has stored outputs; strip them"
            assert cell.execution_count is None, f"{path.name}: cell {i} has an execution count"
    assert "widgets" not in nb.metadata, f"{path.name}: widget state is stored in the metadata"
    code = "\n".join(_cell_text(c) for c in nb.cells if c.cell_type == "code")
    assert "import minprune" in code, f"{path.name}: never imports minprune"
    headings = [line.lstrip("#").strip().lower() for c in nb.cells if c.cell_type == "markdown"
                for line in _cell_text(c).splitlines() if line.startswith("#")]
    assert "summary" in headings, f"{path.name}: needs a '## Summary' section"
    assert "exercises" in headings, f"{path.name}: needs an '## Exercises' section"
    assert headings.index("exercises") > headings.index("summary"), \
        f"{path.name}: the Exercises section comes after the Summary"
    last_heading = max(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"
                       and any(line.lstrip("#").strip().lower() == "exercises"
                               for line in _cell_text(c).splitlines() if line.startswith("#")))
    assert all(c.cell_type != "markdown" or not any(
        line.startswith("## ") for line in _cell_text(c).splitlines())
        for c in nb.cells[last_heading + 1:]), \
        f"{path.name}: the notebook must end with its Exercises section"


def test_a_run_with_forced_blas_kernels_is_cached_apart(monkeypatch, tmp_path):
    from minprune.course import execute as E

    lesson = NOTEBOOKS[0]
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    own = tmp_path / "full" / lesson.name
    own.parent.mkdir()
    nb = nbformat.read(lesson, 4)
    nb.metadata["minprune"] = {"execution": {"key": E.fingerprint(lesson, False), "seconds": 1.0}}
    nbformat.write(nb, own)
    assert E.cached(lesson, False, tmp_path) is not None
    # other kernels round differently: their run is another entry, and this one is not reused
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Sandybridge")
    assert E.cached(lesson, False, tmp_path) is None
    assert E._entry(lesson, False, tmp_path) == tmp_path / "full-sandybridge" / lesson.name
    assert E._entry(lesson, True, tmp_path) == tmp_path / "fast-sandybridge" / lesson.name


def test_a_run_records_the_baselines_it_trained(monkeypatch, tmp_path):
    """The frame-time check compares a run that trained baselines with the first-time figure."""
    from minprune.course.execute import execute

    monkeypatch.setenv("MINPRUNE_CACHE", str(tmp_path / "cache"))   # the kernel inherits it
    trains = ("from minprune.files import cache_dir\n"
              "folder = cache_dir('baselines'); folder.mkdir(parents=True, exist_ok=True)\n"
              "(folder / 'net-s0.npz').write_bytes(b'')")
    runs = []
    for name, source in [("trains.ipynb", trains), ("loads.ipynb", "import minprune")]:
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
        nbformat.write(nb, tmp_path / name)
        runs.append(execute(tmp_path / name, fast=True, cache_dir=tmp_path / "runs"))
    assert [r.metadata["minprune"]["execution"]["trained"] for r in runs] == [["net-s0.npz"], []]
