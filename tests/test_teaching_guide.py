"""The teacher guide (docs/teaching.md) agrees with the lessons: the time and points table, every
exercise listed with its points, a rubric for every written answer."""
import re
from pathlib import Path

import nbformat
import pytest

from minprune.course import notebooks as N

pytestmark = pytest.mark.course

ROOT = Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "docs" / "teaching.md").read_text()
COURSE = N.course(ROOT / "lessons")


@pytest.mark.parametrize("path", N.lesson_paths(ROOT / "lessons"), ids=lambda p: p.stem)
def test_lesson_table_matches_each_lessons_frame_and_points(path):
    nb = nbformat.read(path, 4)
    title = nb.cells[0].source.splitlines()[0].lstrip("# ").strip()
    row = next((line for line in GUIDE.splitlines() if line.startswith(f"| {title} |")), None)
    assert row, f"the guide's lesson table has no row for {title!r}"
    cells = [c.strip() for c in row.strip("|").split("|")]
    frame = re.search(r"reading ≈ (\d+) min · running ≈ (\d+ (?:s|min))", nb.cells[0].source)
    first = re.search(r"≈ (\d+ (?:s|min)) the first time", nb.cells[0].source)
    running = frame.group(2) + (f" ({first.group(1)} the first time)" if first else "")
    assert cells[1] == f"{frame.group(1)} min" and cells[2] == running, row
    exs = N.exercises(nb, path.stem)
    assert float(cells[3]) == sum(e.points for e in exs if e.kind == "code"), row
    assert float(cells[4]) == sum(e.points for e in exs if e.kind == "written"), row


@pytest.mark.parametrize("exercise", COURSE, ids=lambda e: e.id)
def test_every_exercise_is_in_the_guide_with_its_points(exercise):
    row = re.search(rf"^\| {re.escape(exercise.id)} \|.*\| ([\d.]+) \|[^|]*\|$", GUIDE, re.M)
    assert row, f"exercise {exercise.id} is missing from the guide's tables"
    assert float(row.group(1)) == exercise.points, f"{exercise.id}: guide {row.group(1)} points"
    if exercise.kind == "written":
        assert re.search(rf"Rubric[^.\n]*{re.escape(exercise.id)}", GUIDE), \
            f"written answer {exercise.id} has no rubric in the guide"
