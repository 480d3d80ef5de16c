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


def nbgrader_meta(cell) -> dict:
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
        meta = nbgrader_meta(cell)
        ex_id = exercise_id(meta.get("grade_id", ""))
        if not meta.get("solution") or ex_id is None:
            continue
        if cell.cell_type == "markdown":
            found.append(Exercise(ex_id, lesson, "written", float(meta.get("points", 0)), i, None, None))
            continue
        check = nb.cells[i + 1] if i + 1 < len(nb.cells) else None
        if check is None or nbgrader_meta(check).get("grade_id") != grade_id(ex_id) + "_check":
            raise ValueError(f"{lesson}: exercise {ex_id} has no check cell right after its solution")
        _, answer = _check_call(check.source)
        found.append(Exercise(ex_id, lesson, "code", float(nbgrader_meta(check).get("points", 0)), i,
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
        meta = nbgrader_meta(cell)
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


WORDS_PER_MINUTE = 150   # technical prose read with care
CODE_LINES_PER_MINUTE = 10


def reading_minutes(nb) -> int:
    """Reading time of a lesson: its prose at 150 words a minute plus its code at 10 lines a minute
    (what a lesson's frame states as "reading ≈ N min")."""
    words = sum(len(c.source.split()) for c in nb.cells if c.cell_type == "markdown")
    lines = sum(len([x for x in c.source.splitlines() if x.strip()])
                for c in nb.cells if c.cell_type == "code")
    return max(1, round(words / WORDS_PER_MINUTE + lines / CODE_LINES_PER_MINUTE))


# What runs before a student's solution cells when an exercise is graded: the imports every lesson
# makes. A solution that needs anything else imports it in its own cell.
PREAMBLE = "import copy\nimport math\n\nimport numpy as np\n\nimport minprune as mp\n"


def _names(source: str) -> tuple[set, set]:
    """(names a cell defines at top level, names it reads anywhere)."""
    tree = ast.parse(source)
    defined = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return defined, used


def cells_for(exercise: Exercise, solutions: dict) -> list[str]:
    """The solution sources to run for `exercise`, in lesson order: its own, and every earlier one of
    the same lesson that it uses by name (transitively). `solutions` maps exercise id -> source.
    Cells an exercise does not use are not run, so one broken answer cannot sink the others."""
    earlier = [i for i in solutions if i.split(".")[0] == exercise.id.split(".")[0]
               and exercise_order(i) < exercise_order(exercise.id)]
    needed, wanted = [exercise.id], set(_names(solutions[exercise.id])[1])
    for other in reversed(earlier):
        defined, used = _names(solutions[other])
        if defined & wanted:
            needed.append(other)
            wanted |= used
    return [solutions[i] for i in sorted(needed, key=exercise_order)]


def exercise_order(exercise: str) -> tuple[int, int]:
    lesson, number = exercise.split(".")
    return int(lesson), int(number)


def solutions(nb) -> dict:
    """{exercise id: source} of the code solution cells of a notebook (the teacher's or a
    student's), found by their nbgrader grade_id."""
    found = {}
    for cell in nb.cells:
        ex_id = exercise_id(nbgrader_meta(cell).get("grade_id", ""))
        if ex_id is not None and cell.cell_type == "code" and nbgrader_meta(cell).get("solution"):
            found[ex_id] = cell.source
    return found


def load_answer(exercise: Exercise, sources: dict):
    """Run the preamble and the solution cells `exercise` needs in a fresh namespace; return the
    student's answer (the function the check cell passes to the checker)."""
    namespace = {"__name__": f"exercise_{exercise.id.replace('.', '_')}"}
    exec(compile(PREAMBLE, "<preamble>", "exec"), namespace)
    for i, source in enumerate(cells_for(exercise, sources)):
        exec(compile(source, f"<solution cell {i}>", "exec"), namespace)
    if exercise.answer not in namespace:
        raise NameError(f"the solution cell of exercise {exercise.id} does not define `{exercise.answer}`")
    return namespace[exercise.answer]


def reference_answer(exercise_id: str, lessons_dir=None):
    """The teacher's reference answer of one exercise, taken from the lesson itself."""
    lesson = exercise_id.split(".")[0]
    path = next((p for p in lesson_paths(lessons_dir) if p.name.startswith(lesson + "_")), None)
    if path is None:
        raise ValueError(f"exercise_id: no lesson {lesson} for {exercise_id!r}")
    nb = nbformat.read(path, 4)
    found = {e.id: e for e in exercises(nb, path.stem)}
    if exercise_id not in found or found[exercise_id].kind != "code":
        raise ValueError(f"exercise_id: {exercise_id!r} is not a code exercise of {path.name}")
    return load_answer(found[exercise_id], solutions(nb))
