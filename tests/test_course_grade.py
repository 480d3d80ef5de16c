"""The autograder on a small class: full marks for the reference, zero for the untouched student
edition, crashes and endless loops contained to their exercise, hard-coded answers caught by the
hidden variants, missing work reported, teacher checks added, arguments checked before any work."""
import csv
import shutil
import time
from pathlib import Path

import nbformat
import pytest

import minprune.exercises as ex
from minprune.cli import main
from minprune.course import grade as G
from minprune.course import notebooks as N

pytestmark = pytest.mark.course

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ROOT / "lessons"
PATHS = {p.name[:2]: p for p in N.lesson_paths(LESSONS)}
QUICK_LESSONS = {n for n in PATHS if all(ex.EXERCISES[e.id].variants > 1 for e in N.course(LESSONS)
                                          if e.lesson[:2] == n and e.kind == "code")}


def _submit(folder: Path, student: str, lesson: str, nb=None) -> Path:
    """Put a notebook (default: the teacher's, i.e. the reference answers) into a student's folder."""
    target = folder / student / PATHS[lesson].name
    target.parent.mkdir(parents=True, exist_ok=True)
    if nb is None:
        shutil.copy(PATHS[lesson], target)
    else:
        nbformat.write(nb, target)
    return target


def _with_solution(lesson: str, replace: dict):
    """The teacher's notebook with some solution cells replaced: {exercise id: new source}."""
    nb = nbformat.read(PATHS[lesson], 4)
    for cell in nb.cells:
        ex_id = N.exercise_id(cell.metadata.get("nbgrader", {}).get("grade_id", ""))
        if ex_id in replace and cell.cell_type == "code":
            cell.source = replace[ex_id]
    return nb


def _rows(grades):
    return {(g.student, g.exercise): g for g in grades}


@pytest.fixture(scope="module")
def class_grades(tmp_path_factory):
    """A class of two: the reference answers and the untouched student edition, every quick lesson."""
    folder = tmp_path_factory.mktemp("class")
    for lesson in sorted(QUICK_LESSONS):
        _submit(folder, "reference", lesson)
        _submit(folder, "untouched", lesson, N.student_edition(nbformat.read(PATHS[lesson], 4)))
    return G.grade(folder, lessons_dir=LESSONS, seed=5, timeout=120, jobs=2, lessons=QUICK_LESSONS,
                   progress=False)


def test_reference_gets_full_marks(class_grades):
    mine = [g for g in class_grades if g.student == "reference"]
    assert mine
    for g in mine:
        if g.status == "manual":
            assert g.points is None and g.detail["answer"].strip() == N.TEXT_STUB
        else:
            assert (g.status, g.points) == ("passed", g.max_points), (g.exercise, g.reason)


def test_untouched_student_edition_gets_zero_without_crashing(class_grades):
    mine = [g for g in class_grades if g.student == "untouched" and g.status != "manual"]
    assert mine
    for g in mine:
        assert g.points == 0 and g.status == "failed", (g.exercise, g.status, g.reason)
        assert "not attempted" in g.reason


def test_every_exercise_is_graded_once_per_student(class_grades):
    expected = {e.id for e in N.course(LESSONS) if e.lesson[:2] in QUICK_LESSONS}
    for student in ("reference", "untouched"):
        assert sorted(g.exercise for g in class_grades if g.student == student) == \
            sorted(expected, key=N.exercise_order)


def test_crashes_and_endless_loops_are_contained(tmp_path):
    bad = {"01.1": "def mul_backward(a, b, grad):\n    while True:\n        pass\n",
           "01.2": "import os\n\ndef numeric_gradient(f, x, eps=1e-6):\n    os._exit(0)\n",
           "01.3": "import ctypes\n\ndef sum_to_shape(grad, shape):\n    return ctypes.string_at(0)\n"}
    _submit(tmp_path, "chaos", "01", _with_solution("01", bad))
    _submit(tmp_path, "chaos", "02")
    _submit(tmp_path, "exits", "01", _with_solution("01", {"01.1": "import sys\nsys.exit(3)\n"}))
    start = time.monotonic()
    # 15 s, not less: lesson 02's checkers compile Numba kernels, several seconds on a busy machine
    grades = _rows(G.grade(tmp_path, lessons_dir=LESSONS, seed=1, timeout=15, jobs=2,
                           lessons={"01", "02"}, progress=False))
    assert time.monotonic() - start < 60
    assert grades["chaos", "01.1"].status == "timeout" and grades["chaos", "01.1"].points == 0
    assert grades["chaos", "01.2"].status == "crashed" and "os._exit" in grades["chaos", "01.2"].reason
    assert grades["chaos", "01.3"].status == "crashed" and "SIGSEGV" in grades["chaos", "01.3"].reason
    assert all(grades["chaos", e].status == "passed" for e in ("02.1", "02.2", "02.3"))
    assert grades["exits", "01.1"].status == "error" and "sys.exit(3)" in grades["exits", "01.1"].reason
    assert grades["exits", "01.2"].status == "passed"   # one exit sinks only its own exercise
    assert grades["exits", "02.1"].status == "missing"


def _replayed_solution(exercise_id: str, fn_header: str) -> str:
    """Source of an answer that returns, call by call, what the reference returned in the
    self-check: it knows the self-check's expected values and nothing else."""
    outputs = []
    reference = N.reference_answer(exercise_id, LESSONS)

    def recording(*args):
        out = reference(*args)
        outputs.append(out)
        return out
    ex.EXERCISES[exercise_id](recording)
    return (f"ANSWERS = {[float(o) for o in outputs]!r}\nCALLS = []\n\n{fn_header}\n"
            "    CALLS.append(1)\n    return ANSWERS[(len(CALLS) - 1) % len(ANSWERS)]\n")


def test_hard_coded_answer_passes_the_self_check_but_not_the_hidden_variants(tmp_path):
    source = _replayed_solution("04.1", "def my_sparsity(model):")
    answer = N.load_answer(next(e for e in N.course(LESSONS) if e.id == "04.1"), {"04.1": source})
    ex.EXERCISES["04.1"](answer)   # the lesson's self-check is fooled...
    _submit(tmp_path, "memoriser", "04", _with_solution("04", {"04.1": source}))
    grades = _rows(G.grade(tmp_path, lessons_dir=LESSONS, seed=2, jobs=2, lessons={"04"}, progress=False))
    assert grades["memoriser", "04.1"].points == 0, grades["memoriser", "04.1"]   # ...the grader is not
    assert grades["memoriser", "04.2"].status == "passed"


def test_missing_work_and_edited_check_cells(tmp_path):
    nb = nbformat.read(PATHS["01"], 4)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "ex01_2"]
    for c in nb.cells:   # a student who rewrites a check cell and its points changes nothing
        if c.metadata.get("nbgrader", {}).get("grade_id") == "ex01_3_check":
            c.source, c.metadata["nbgrader"]["points"] = "pass", 100
        if c.metadata.get("nbgrader", {}).get("grade_id") == "ex01_3":
            c.source = "def sum_to_shape(grad, shape):\n    return grad\n"
    _submit(tmp_path, "partial", "01", nb)
    (tmp_path / "partial" / PATHS["02"].name).write_text("{not a notebook")
    grades = _rows(G.grade(tmp_path, lessons_dir=LESSONS, seed=3, jobs=2, lessons={"01", "02", "03"},
                           progress=False))
    assert grades["partial", "01.1"].status == "passed"
    assert grades["partial", "01.2"].status == "missing" and "ex01_2" in grades["partial", "01.2"].reason
    assert grades["partial", "01.3"].status == "failed"
    assert grades["partial", "01.3"].max_points == next(e.points for e in N.course(LESSONS) if e.id == "01.3")
    unreadable = grades["partial", "02.1"]
    assert unreadable.status == "error" and "not a readable notebook" in unreadable.reason
    assert grades["partial", "03.1"].status == "missing"


def test_teacher_checks_count_as_extra_parts(tmp_path):
    extra = tmp_path / "extra.py"
    extra.write_text("import numpy as np\n\n"
                     "def scalar_input(answer, rng):\n"
                     "    g = rng.normal(size=(4, 3))\n"
                     "    assert np.allclose(answer(g, (1, 1)), g.sum(keepdims=True)), 'sum to (1, 1)'\n\n"
                     "def impossible(answer, rng):\n"
                     "    raise AssertionError('this teacher check always fails')\n\n"
                     "CHECKS = {'01.3': [scalar_input, impossible]}\n")
    _submit(tmp_path / "class", "ref", "01")
    grades = _rows(G.grade(tmp_path / "class", lessons_dir=LESSONS, seed=4, jobs=2, lessons={"01"},
                           extra_checks=extra, progress=False))
    g = grades["ref", "01.3"]
    parts = ex.EXERCISES["01.3"].variants + 2
    assert g.status == "partial" and g.points == pytest.approx(g.max_points * (parts - 1) / parts)
    assert "teacher's check 2" in g.reason and "always fails" in g.reason
    assert grades["ref", "01.1"].status == "passed"
    bad = tmp_path / "bad.py"
    bad.write_text("CHECKS = {'99.1': []}\n")
    with pytest.raises(ValueError, match="99.1"):
        G.load_extra_checks(bad)


def test_variant_seeds_depend_on_the_teachers_seed_and_the_exercise():
    assert G.variant_seeds(1, "04.1", 3) == G.variant_seeds(1, "04.1", 3)
    assert G.variant_seeds(1, "04.1", 3) != G.variant_seeds(2, "04.1", 3)
    assert G.variant_seeds(1, "04.1", 3) != G.variant_seeds(1, "04.2", 3)
    assert len(set(G.variant_seeds(1, "04.1", 5))) == 5


@pytest.mark.parametrize("argv, message", [
    (["--timeout", "0"], "--timeout"), (["--jobs", "0"], "--jobs"), (["--seed", "-1"], "--seed"),
    (["--only", "99"], "--only"), (["--memory", "10"], "--memory"),
    (["--extra-checks", "/nonexistent.py"], "extra_checks"),
    (["--out", "{tmp}/a_file/grades.csv"], "--out"), (["--feedback", "{tmp}/a_file"], "--feedback"),
])
def test_cli_refuses_bad_arguments_before_any_work(tmp_path, capsys, argv, message):
    _submit(tmp_path, "ref", "01")
    (tmp_path / "a_file").write_text("not a folder")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as err:
        main(["course", "grade", str(tmp_path), "--out", str(tmp_path / "g.csv")] + argv)
    assert err.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "g.csv").exists()


def test_cli_refuses_an_empty_or_missing_class(tmp_path, capsys):
    for folder in (tmp_path / "missing", tmp_path):
        with pytest.raises(SystemExit):
            main(["course", "grade", str(folder)])
        assert "submissions" in capsys.readouterr().err


def test_cli_writes_gradebook_feedback_and_summary(tmp_path, capsys):
    _submit(tmp_path / "class", "ada", "01")
    _submit(tmp_path / "class", "bob", "01", N.student_edition(nbformat.read(PATHS["01"], 4)))
    out = tmp_path / "out" / "grades.csv"
    assert main(["course", "grade", str(tmp_path / "class"), "--out", str(out), "--feedback",
                 str(tmp_path / "fb"), "--only", "1", "--seed", "9", "--jobs", "2", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "grading seed 9" in printed and "01.1" in printed and "1 / 2" in printed
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == G.COLUMNS
    lesson01 = [e for e in N.course(LESSONS) if e.lesson.startswith("01")]
    code = [e for e in lesson01 if e.kind == "code"]
    assert {(r["student"], r["exercise"], r["status"]) for r in rows} == {
        (s, e.id, "manual" if e.kind == "written" else st)
        for s, st in (("ada", "passed"), ("bob", "failed")) for e in lesson01}
    total = sum(e.points for e in code)
    bob = (tmp_path / "fb" / "bob.md").read_text()
    assert f"0 / {total:g} points" in bob and "not attempted" in bob and "seed 9" in bob
    ada = (tmp_path / "fb" / "ada.md").read_text()
    assert f"{total:g} / {total:g} points" in ada and "YOUR ANSWER HERE" in ada   # quoted for the teacher
    assert not (out.parent / "leaderboard.csv").exists()


def test_leaderboard_ranks_points_then_compression(tmp_path):
    grades = [G.Grade("a", "16.1", 5.0, 10, "partial", "", {"accuracy": 0.975, "compression": 20.0}),
              G.Grade("b", "16.1", 8.0, 10, "partial", "", {"accuracy": 0.971, "compression": 60.0}),
              G.Grade("c", "16.1", 0.0, 10, "failed", "", {"accuracy": 0.95, "compression": 90.0}),
              G.Grade("a", "01.1", 1.0, 1, "passed")]
    board = G.leaderboard(grades)
    assert [r["student"] for r in board] == ["b", "a", "c"] and [r["rank"] for r in board] == [1, 2, 3]
    assert "accuracy 97.10%, compression 60.0× → 8 / 10 points" in G.feedback("b", grades[1:2], seed=1)
    G.write_leaderboard(board, tmp_path / "leaderboard.csv")
    with open(tmp_path / "leaderboard.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["student"] == "b" and rows[0]["compression"] == "60.00"
