"""How the lessons are written: the frame each opens with, exercises a student can find, and no
measured number in the prose (numbers come from the run: printed by code, checked by `claim`).

The frame, first markdown cell:
    **After this lesson you can** (a bullet list follows)
    **Prerequisites:** lessons 01, 03   (or "none")
    **Time:** reading ≈ 25 min · running ≈ 40 s in full mode ...
    (a lesson that loads cached baselines adds ", ≈ 3 min the first time, when it trains and caches
    its baselines")
`running` is checked against the measured full-mode time by tests/lessons/test_full.py.
"""
import re
from pathlib import Path

import nbformat
import pytest

from minprune.course import notebooks as N

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = N.lesson_paths(ROOT / "lessons")
IDS = [p.stem for p in NOTEBOOKS]

pytestmark = pytest.mark.course

TIME = re.compile(r"\*\*Time:\*\*\s*reading ≈ (\d+) min · running ≈ (\d+) (s|min)\b")
FIRST_TIME = re.compile(r"≈ (\d+) (s|min) the first time")
PREREQ = re.compile(r"\*\*Prerequisites:\*\*\s*(none|lessons? \d\d(?:, \d\d)*(?: and \d\d)?)")


def frame(nb) -> str:
    return next(c.source for c in nb.cells if c.cell_type == "markdown")


def _seconds(number: str, unit: str) -> float:
    return int(number) * (60 if unit == "min" else 1)


def stated_times(nb) -> tuple[int, float, float | None]:
    """(reading minutes, running seconds, running seconds the first time or None) as the lesson's
    frame states them. The first-time figure is for lessons that train baselines and cache them."""
    m = TIME.search(frame(nb))
    assert m, "the frame needs a line '**Time:** reading ≈ N min · running ≈ M s|min ...'"
    first = FIRST_TIME.search(frame(nb))
    return int(m.group(1)), _seconds(*m.group(2, 3)), first and _seconds(*first.groups())


def prose(source: str) -> str:
    """Markdown without code spans, code blocks and math: the words a number could hide in."""
    source = re.sub(r"```.*?```", " ", source, flags=re.S)
    source = re.sub(r"`[^`]*`", " ", source)
    source = re.sub(r"\$\$.*?\$\$", " ", source, flags=re.S)
    return re.sub(r"\$[^$]*\$", " ", source)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_lesson_opens_with_outcomes_prerequisites_and_time(path):
    nb = nbformat.read(path, 4)
    text = frame(nb)
    assert re.search(r"^# ", text, re.M), f"{path.name}: the first cell starts with the lesson's title"
    assert "**After this lesson you can**" in text, f"{path.name}: state the learning outcomes"
    outcomes = text.split("**After this lesson you can**", 1)[1]
    assert re.search(r"^\s*[-*] ", outcomes, re.M), f"{path.name}: list the outcomes as bullets"
    prereq = PREREQ.search(text)
    assert prereq, f"{path.name}: state the prerequisites ('**Prerequisites:** lessons 01, 03' or none)"
    for number in re.findall(r"\d\d", prereq.group(1)):
        assert number < path.name[:2], f"{path.name}: prerequisite {number} comes after this lesson"
    reading, _, _ = stated_times(nb)
    computed = N.reading_minutes(nb)
    assert abs(reading - computed) <= max(2, 0.25 * computed), \
        f"{path.name}: the frame says reading ≈ {reading} min; the lesson's length gives {computed} min"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_no_measured_number_in_the_prose(path):
    """A decimal in a lesson's prose is almost always a result of some earlier run; results are
    printed by the code instead. Settings go in code spans (`lr=0.05`), formulas in $math$."""
    nb = nbformat.read(path, 4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        found = re.findall(r"[^\s(]*\d\.\d+\s?[%×x]?", prose(cell.source))
        assert not found, (f"{path.name}, cell {i}: {found} in the prose; print numbers from the "
                           "run (or put a setting in `code`)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_every_exercise_is_introduced(path):
    """The markdown before an exercise tells the student what to write (the answer's name)."""
    nb = nbformat.read(path, 4)
    for ex in N.exercises(nb, path.stem):
        before = [c.source for c in nb.cells[:ex.cell] if c.cell_type == "markdown"]
        assert before, f"{path.name}: exercise {ex.id} has no instructions before it"
        if ex.kind == "code":
            assert f"`{ex.answer}" in before[-1], \
                f"{path.name}: the instructions of exercise {ex.id} should name `{ex.answer}`"
