"""The classroom kit as a teacher uses it: the student edition hides every answer and fails every
check, the reference passes, the library cannot be called for the answer, and exercise markup is
consistent across all lessons."""
import ast
import re
from pathlib import Path

import nbformat
import pytest

import minprune.exercises as ex
from minprune.course import notebooks as N

pytestmark = pytest.mark.course

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ROOT / "lessons"
COURSE = N.course(LESSONS)
CODE = [e for e in COURSE if e.kind == "code"]
QUICK = [e for e in CODE if ex.EXERCISES[e.id].variants > 1]   # the capstone trains; tested on its own


def test_every_lesson_has_exercises_with_unique_ids():
    ids = [e.id for e in COURSE]
    assert len(ids) == len(set(ids)), "exercise ids repeat"
    lessons = {p.stem for p in N.lesson_paths(LESSONS)}
    assert {e.lesson for e in COURSE} == lessons, "every lesson has at least one exercise"
    for e in COURSE:
        assert e.id.split(".")[0] == e.lesson[:2], f"{e.id} sits in {e.lesson}"
        assert e.points > 0, f"{e.id} is worth no points"


def test_every_code_exercise_has_a_registered_checker():
    assert {e.id for e in CODE} == set(ex.EXERCISES)
    for e in CODE:
        call = ast.parse(e.check).body
        assert len(call) == 1, f"{e.id}: the check cell holds one call, got:\n{e.check}"
        attr = N._check_call(e.check)[0]
        assert getattr(ex, attr) is ex.EXERCISES[e.id], f"{e.id}'s check cell calls {attr}"


def test_grade_ids_follow_nbgrader_rules():
    for path in N.lesson_paths(LESSONS):
        nb = nbformat.read(path, 4)
        seen = set()
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader")
            if not meta:
                continue
            gid = meta["grade_id"]
            assert re.fullmatch(r"[a-zA-Z0-9_\-]+", gid), f"{path.name}: invalid grade_id {gid!r}"
            assert gid not in seen, f"{path.name}: grade_id {gid} twice"
            seen.add(gid)
            if meta.get("grade"):
                assert float(meta["points"]) > 0
            if cell.cell_type == "markdown":   # nbgrader: a markdown answer is solution AND grade
                assert meta.get("solution") and meta.get("grade"), f"{path.name}: {gid}"
                assert cell.source.strip() == N.TEXT_STUB, f"{path.name}: {gid} ships an answer"


@pytest.mark.parametrize("path", N.lesson_paths(LESSONS), ids=lambda p: p.stem)
def test_student_edition_holds_no_solution_line(path):
    nb = nbformat.read(path, 4)
    student = N.student_edition(nb)
    text = "\n".join(c.source for c in student.cells)
    secret = [line for line in N.solution_lines(nb) if line.strip() and not line.strip().startswith("#")]
    assert secret, f"{path.name}: no solution lines found"
    # a solution line may legitimately repeat a line of the lesson outside the solution (e.g. `return x`);
    # only lines that appear nowhere else in the teacher's notebook must vanish
    outside = "\n".join(N.strip_solution(c.source, "") if c.metadata.get("nbgrader", {}).get("solution")
                        else c.source for c in nb.cells)
    leaked = [line for line in secret if line.strip() not in outside and line in text]
    assert not leaked, f"{path.name}: the student edition still holds {leaked[:3]}"
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    assert all(c.get("outputs", []) == [] for c in student.cells if c.cell_type == "code")
    for e in N.exercises(student, path.stem):
        cell = student.cells[e.cell].source
        assert (f'raise NotImplementedError("exercise {e.id}")' in cell if e.kind == "code"
                else cell == N.TEXT_STUB)


@pytest.mark.parametrize("exercise", QUICK, ids=lambda e: e.id)
def test_reference_passes_and_student_edition_fails(exercise, capsys):
    check = ex.EXERCISES[exercise.id]
    reference = N.reference_answer(exercise.id, LESSONS)
    check(reference)
    check(reference, variant=424242)
    assert "✓ correct" in capsys.readouterr().out
    path = next(p for p in N.lesson_paths(LESSONS) if p.stem == exercise.lesson)
    stub = N.load_answer(exercise, N.solutions(N.student_edition(nbformat.read(path, 4))))
    with pytest.raises(NotImplementedError, match=f"exercise {exercise.id}"):
        check(stub)


@pytest.mark.parametrize("exercise", QUICK, ids=lambda e: e.id)
def test_blocked_functions_exist(exercise):
    """A misspelt name in `blocks` would block nothing: every name must resolve."""
    from minprune.exercises.blocking import resolve
    for name in ex.EXERCISES[exercise.id].blocks:
        resolve(name)


def test_solution_regions_are_well_formed():
    for path in N.lesson_paths(LESSONS):
        for cell in nbformat.read(path, 4).cells:
            N.strip_solution(cell.source, "stub")   # raises on nested / unclosed regions


def test_strip_solution_keeps_indentation_and_refuses_broken_markers():
    src = "def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n"
    assert N.strip_solution(src, "pass") == "def f(x):\n    pass\n"
    with pytest.raises(ValueError, match="never closed"):
        N.strip_solution("### BEGIN SOLUTION\nx = 1", "pass")
    with pytest.raises(ValueError, match="without BEGIN"):
        N.strip_solution("x = 1\n### END SOLUTION", "pass")


def test_cells_for_runs_only_what_an_exercise_uses():
    e = N.Exercise("02.3", "02_x", "code", 1, 0, "c", "ex.check(c)")
    sources = {"02.1": "def a():\n    return 1\n", "02.2": "import os\nos._exit(0)\ndef b():\n    pass\n",
               "02.3": "def c():\n    return a()\n"}
    assert N.cells_for(e, sources) == [sources["02.1"], sources["02.3"]]


def test_student_edition_command_writes_every_lesson(tmp_path):
    from minprune.cli import main
    assert main(["course", "student", str(tmp_path / "out")]) == 0
    names = sorted(p.name for p in (tmp_path / "out").glob("*.ipynb"))
    assert names == sorted(p.name for p in N.lesson_paths(LESSONS))
    with pytest.raises(ValueError, match="over the teacher's lessons"):
        N.write_student_edition(LESSONS)


@pytest.mark.parametrize("path", N.lesson_paths(LESSONS), ids=lambda p: p.stem)
def test_nbgrader_makes_the_same_student_cells(path):
    """The lessons stay usable with nbgrader: its own preprocessors (the ones `nbgrader
    generate_assignment` runs) accept the metadata and strip the same cells, except that nbgrader's
    stub cannot name the exercise."""
    from nbgrader.preprocessors import CheckCellMetadata, ClearOutput, ClearSolutions, LockCells

    nb = nbformat.read(path, 4)
    theirs, resources = nbformat.from_dict(nb), {}
    for step in (LockCells(), ClearSolutions(), ClearOutput(), CheckCellMetadata()):
        theirs, resources = step.preprocess(theirs, resources)
    ours = N.student_edition(nb)
    assert len(theirs.cells) == len(ours.cells)
    stub = re.compile(r'NotImplementedError\("exercise \d\d\.\d+"\)')
    for a, b in zip(theirs.cells, ours.cells):
        assert a.source == stub.sub("NotImplementedError()", b.source)


@pytest.fixture(scope="module")
def lesson_models():
    """The models a student holds in the lessons' notebooks, built from the seeds and builders the
    checkers build their own nets from."""
    import minprune as mp
    return {f"{build.__name__}(seed={s})": build(seed=s)
            for build in (mp.models.lenet5, mp.models.lenet_300_100) for s in range(14)}


def _fingerprints(models):
    return {name: {k: (v.dtype.str, v.shape, v.tobytes()) for k, v in m.state_dict().items()}
            for name, m in models.items()}


@pytest.mark.parametrize("exercise", QUICK, ids=lambda e: e.id)
def test_checkers_do_not_touch_the_lesson_models(exercise, lesson_models, capsys):
    """A checker prunes, re-initialises and rewinds nets of its own; the student's models must come
    out bit for bit as they were (a builder or a cache shared with the checker would break this;
    tests/exercises/test_lesson11.py shows the fingerprint catching exactly that)."""
    before = _fingerprints(lesson_models)
    ex.EXERCISES[exercise.id](N.reference_answer(exercise.id, LESSONS))
    assert "✓ correct" in capsys.readouterr().out
    changed = [name for name, fp in _fingerprints(lesson_models).items() if fp != before[name]]
    assert not changed, f"{exercise.id}'s checker changed the lesson's {changed}"
