"""The lessons as a course: where they are, which cells are exercises, and the student edition.

Exercises are marked the way nbgrader marks them, so a teacher who uses nbgrader can take the
lessons as they are:

* a **solution cell** (code, `nbgrader.solution = true`) holds the function the student writes; the
  reference body sits between `### BEGIN SOLUTION` and `### END SOLUTION`;
* the **check cell** right after it (`nbgrader.grade = true`, `points`) calls the exercise's checker,
  e.g. `ex.check_sparsity(my_sparsity)`; its first argument names the student's answer;
* a **written answer** is a markdown cell that is both (`solution` and `grade`): "YOUR ANSWER HERE",
  graded by hand with the rubric in the teacher guide.

nbgrader's `grade_id` may hold only letters, digits, `_` and `-`, so exercise "04.2" has the grade_id
`ex04_2` (its check cell `ex04_2_check`); `exercise_id` and `grade_id` convert between the two.
"""
from __future__ import annotations

import ast
import copy
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
TEXT_STUB = "YOUR ANSWER HERE"
_GRADE_ID = re.compile(r"^ex(\d\d)_(\d+)$")


def code_stub(exercise: str) -> str:
    """What replaces a solution region in the student edition (nbgrader's stub, plus the id)."""
    return f'# YOUR CODE HERE\nraise NotImplementedError("exercise {exercise}")'


def grade_id(exercise: str) -> str:
    """ "04.2" -> "ex04_2" (nbgrader's grade_id)."""
    lesson, number = exercise.split(".")
    return f"ex{lesson}_{number}"


def exercise_id(grade: str) -> str | None:
    """ "ex04_2" -> "04.2"; None for a grade_id that is not an exercise's (e.g. a check cell's)."""
    m = _GRADE_ID.match(grade or "")
    return f"{m.group(1)}.{m.group(2)}" if m else None


def default_lessons_dir() -> Path:
    """`lessons/` of the checkout this package runs from."""
    return Path(__file__).resolve().parents[2] / "lessons"


def lesson_paths(lessons_dir=None) -> list[Path]:
    """The lesson notebooks, NN_title.ipynb, in order."""
    folder = Path(lessons_dir) if lessons_dir is not None else default_lessons_dir()
    if not folder.is_dir():
        raise ValueError(f"lessons_dir: {str(folder)!r} is not a folder of lessons "
                         "(pass --lessons DIR when minprune is installed outside its checkout)")
    paths = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise ValueError(f"lessons_dir: {str(folder)!r} holds no NN_title.ipynb lessons")
    return paths


def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


@dataclass(frozen=True)
class Exercise:
    """One exercise of a lesson, as the teacher's notebook defines it."""
    id: str              # "04.2"
    lesson: str          # "04_what_is_pruning" (the notebook's stem)
    kind: str            # "code" or "written"
    points: float
    cell: int            # index of the solution (or written-answer) cell
    answer: str | None   # the name of the student's function (code exercises)
    check: str | None    # the source of the check cell (code exercises)


def _check_call(source: str) -> tuple[str, str]:
    """(checker attribute, answer name) of a check cell such as `ex.check_sparsity(my_sparsity)`."""
    tree = ast.parse(source)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr.startswith("check_")]
    if len(calls) != 1 or not calls[0].args or not isinstance(calls[0].args[0], ast.Name):
        raise ValueError(f"a check cell must call one checker on the answer's name, got:\n{source}")
    return calls[0].func.attr, calls[0].args[0].id


def exercises(nb, lesson: str) -> list[Exercise]:
    """The exercises of one notebook, in order, with their points and answer names."""
    found = []
    for i, cell in enumerate(nb.cells):
        meta = _nbgrader(cell)
        ex_id = exercise_id(meta.get("grade_id", ""))
        if not meta.get("solution") or ex_id is None:
            continue
        if cell.cell_type == "markdown":
            found.append(Exercise(ex_id, lesson, "written", float(meta.get("points", 0)), i, None, None))
            continue
        check = nb.cells[i + 1] if i + 1 < len(nb.cells) else None
        if check is None or _nbgrader(check).get("grade_id") != grade_id(ex_id) + "_check":
            raise ValueError(f"{lesson}: exercise {ex_id} has no check cell right after its solution")
        _, answer = _check_call(check.source)
        found.append(Exercise(ex_id, lesson, "code", float(_nbgrader(check).get("points", 0)), i,
                              answer, check.source))
    return found


def course(lessons_dir=None) -> list[Exercise]:
    """Every exercise of every lesson, in order."""
    return [e for p in lesson_paths(lessons_dir) for e in exercises(nbformat.read(p, 4), p.stem)]


def strip_solution(source: str, stub: str) -> str:
    """Replace every BEGIN/END SOLUTION region of `source` by `stub`, indented like the marker."""
    out, inside = [], False
    for line in source.split("\n"):
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise ValueError("a solution region opens inside another one")
            inside = True
            indent = line[:line.index(BEGIN)]
            out.extend(indent + s for s in stub.split("\n"))
        elif marker == END:
            if not inside:
                raise ValueError("END SOLUTION without BEGIN SOLUTION")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError("a solution region is never closed (no ### END SOLUTION)")
    return "\n".join(out)


def solution_lines(nb) -> list[str]:
    """The lines inside the solution regions of a notebook (what a student edition must not hold)."""
    lines = []
    for cell in nb.cells:
        inside = False
        for line in cell.source.split("\n"):
            if line.strip() in (BEGIN, END):
                inside = line.strip() == BEGIN
            elif inside:
                lines.append(line)
    return lines


def student_edition(nb):
    """A copy of `nb` with every solution replaced by its stub and every output cleared."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        meta = _nbgrader(cell)
        ex_id = exercise_id(meta.get("grade_id", ""))
        if meta.get("solution"):
            stub = TEXT_STUB if cell.cell_type == "markdown" else code_stub(ex_id or "")
            has_region = any(line.strip() == BEGIN for line in cell.source.split("\n"))
            cell.source = strip_solution(cell.source, stub) if has_region else stub
        elif BEGIN in cell.source:
            raise ValueError(f"a solution region sits in a cell not marked as a solution:\n{cell.source}")
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def write_student_edition(out_dir, lessons_dir=None) -> list[Path]:
    """Write the student edition of every lesson into `out_dir`; return the paths written."""
    out = Path(out_dir)
    paths = lesson_paths(lessons_dir)
    if out.resolve() == paths[0].parent.resolve():
        raise ValueError("out_dir: writing the student edition over the teacher's lessons")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for p in paths:
        target = out / p.name
        nbformat.write(student_edition(nbformat.read(p, 4)), target)
        written.append(target)
    return written
