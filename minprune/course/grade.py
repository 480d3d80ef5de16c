"""The autograder: a class's lesson notebooks in, a gradebook and feedback out.

    minprune course grade SUBMISSIONS --out grades.csv --feedback feedback/ --seed 8112

`SUBMISSIONS` holds one folder per student with that student's lesson notebooks, named as in
`lessons/`. The teacher's lessons say which exercises exist, their points and the name of each answer;
a student's notebook contributes only the source of its solution cells (found by nbgrader grade_id),
so an edited check cell or changed points in a submission change nothing.

Each student × exercise is graded in its own process, forked from a server that has minprune already
imported (a fork costs milliseconds, an import a second). The process runs the preamble and the
solution cells the exercise needs, then the exercise's checker on **hidden variants**: seeds derived
from the teacher's `--seed` and the exercise id, from which the checker draws other shapes, seeds and
sparsities than the lesson's self-check shows. It runs under a memory limit and a time limit; an
exception, a time-out, an infinite loop, `sys.exit`, `os._exit` or a segfault scores 0 for that
exercise with the reason written down, and everything else is still graded.

Points are the share of the checks passed (every hidden variant, plus the teacher's own checks from
`--extra-checks`) times the exercise's points. Written answers appear with status `manual`.

The processes keep a student's mistakes from hurting other students' grades; they are not a sandbox
against a student who sets out to attack the grader (run a class's code as an unprivileged user).
"""
from __future__ import annotations

import csv
import multiprocessing
import os
import resource
import signal
import sys
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import numpy as np

from ..files import atomic_write
from . import notebooks as N

COLUMNS = ["student", "exercise", "points", "max_points", "status", "reason"]
STATUSES = ("passed", "partial", "failed", "error", "timeout", "crashed", "missing", "manual")


@dataclass
class Grade:
    """One row of the gradebook (plus what the feedback file and the leaderboard need)."""
    student: str
    exercise: str
    points: float | None     # None for a written answer, graded by hand
    max_points: float
    status: str
    reason: str = ""
    detail: dict = field(default_factory=dict)

    def row(self) -> dict:
        points = "" if self.points is None else f"{self.points:g}"
        return {"student": self.student, "exercise": self.exercise, "points": points,
                "max_points": f"{self.max_points:g}", "status": self.status,
                "reason": " ".join(self.reason.split())[:500]}


@dataclass(frozen=True)
class Job:
    student: str
    exercise: N.Exercise
    sources: dict          # the student's solution cells of that lesson: {exercise id: source}
    seeds: tuple           # hidden-variant seeds
    extra_checks: str | None


def variant_seeds(seed: int, exercise: str, n: int) -> tuple:
    """The hidden variants of one exercise: `n` seeds drawn from the teacher's seed and the id."""
    lesson, number = (int(x) for x in exercise.split("."))
    return tuple(int(s) for s in np.random.SeedSequence([seed, lesson, number]).generate_state(n))


def load_extra_checks(path) -> dict:
    """A teacher's own checks: a Python file defining `CHECKS = {"04.1": [check, ...]}`, each
    `check(answer, rng)` raising AssertionError on a wrong answer. Never shipped to students."""
    import runpy

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"extra_checks: no such file {str(path)!r}")
    checks = runpy.run_path(str(path)).get("CHECKS")
    if not isinstance(checks, dict):
        raise ValueError(f"extra_checks: {str(path)!r} must define CHECKS = {{exercise id: [check, ...]}}")
    from ..exercises import EXERCISES

    for key, fns in checks.items():
        if key not in EXERCISES:
            raise ValueError(f"extra_checks: {key!r} in {str(path)!r} is not a code exercise; "
                             f"valid ids: {', '.join(sorted(EXERCISES, key=N.exercise_order))}")
        if not isinstance(fns, (list, tuple)) or not all(callable(f) for f in fns):
            raise ValueError(f"extra_checks: CHECKS[{key!r}] must be a list of functions")
    return checks


# ------------------------------------------------------------------------------------------------
# One job, in its own process
# ------------------------------------------------------------------------------------------------
def _limit_memory(megabytes: int) -> None:
    """Cap the address space at what the process maps now plus `megabytes`."""
    mapped = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = mapped + megabytes * 2 ** 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _first_lines(text: str, n: int = 6) -> str:
    return "\n".join(text.strip().splitlines()[:n])


def _describe(err: BaseException) -> str:
    """A student-facing reason for an exception raised by the student's code or the checker."""
    if isinstance(err, AssertionError):
        return _first_lines(str(err)) or "a check failed"
    if isinstance(err, NotImplementedError):
        return "not attempted (the cell still raises NotImplementedError)"
    if isinstance(err, SystemExit):
        return f"your code called sys.exit({err.code!r})"
    if isinstance(err, MemoryError):
        return "ran out of memory (the grader's memory limit)"
    tb = traceback.extract_tb(err.__traceback__)
    where = next((f"{f.filename} line {f.lineno}" for f in reversed(tb)
                  if f.filename.startswith("<solution")), "")
    return f"{type(err).__name__}: {_first_lines(str(err), 2)}" + (f" ({where})" if where else "")


def _run_checks(job: Job) -> dict:
    """Load the answer and run every check part; the result the parent turns into a Grade."""
    from ..exercises import EXERCISES
    from ..exercises.core import Score

    try:
        answer = N.load_answer(job.exercise, job.sources)
    except BaseException as err:   # SystemExit and KeyboardInterrupt too: the student's code raised them
        return {"status": "error", "fraction": 0.0, "reason": "the solution cell failed: " + _describe(err)}
    check = EXERCISES[job.exercise.id]
    parts = [(f"hidden variant {k + 1}", lambda s=s: check(answer, variant=s))
             for k, s in enumerate(job.seeds)]
    if job.extra_checks:
        extra = load_extra_checks(job.extra_checks).get(job.exercise.id, [])
        rng = np.random.default_rng(job.seeds[0] if job.seeds else 0)
        parts += [(f"teacher's check {k + 1}", lambda f=f: f(answer, rng)) for k, f in enumerate(extra)]
    fractions, failures, detail = [], [], {}
    for name, run in parts:
        try:
            result = run()
        except BaseException as err:
            fractions.append(0.0)
            failures.append((name, _describe(err)))
            continue
        if isinstance(result, Score):
            fractions.append(min(max(float(result.fraction), 0.0), 1.0))
            detail.update(result.detail)
        else:
            fractions.append(1.0)
    fraction = sum(fractions) / len(fractions) if fractions else 0.0
    status = "passed" if fraction == 1.0 else "partial" if fraction > 0 else "failed"
    if len({why for _, why in failures}) == 1 and len(failures) == len(parts):
        reason = failures[0][1]   # the same failure everywhere: say it once
    else:
        reason = "\n".join(f"{name}: {why}" for name, why in failures)
    return {"status": status, "fraction": fraction, "reason": reason, "detail": detail}


def _child(job: Job, conn, memory_mb: int) -> None:
    """Entry point of a grading process: limits, silence, run, send the result."""
    os.setsid()   # its own process group: a time-out kills whatever the student's code started
    _limit_memory(memory_mb)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        result = _run_checks(job)
    except BaseException as err:  # a failure of the grader itself, reported rather than lost
        result = {"status": "error", "fraction": 0.0, "reason": f"grader error: {_describe(err)}"}
    conn.send(result)
    conn.close()


# ------------------------------------------------------------------------------------------------
# The class
# ------------------------------------------------------------------------------------------------
_ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "NUMBA_NUM_THREADS": "1"}


def _context():
    """The forkserver every grading process forks from: minprune imported once, one BLAS thread per
    process (`--jobs` processes share the cores). The thread settings are given to the server only;
    this process's environment is left as it was."""
    from multiprocessing import forkserver

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["minprune", "minprune.exercises", "minprune.course.notebooks"])
    saved = {k: os.environ.get(k) for k in _ONE_THREAD}
    os.environ.update(_ONE_THREAD)
    try:
        forkserver.ensure_running()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return ctx


def _finish(job: Job, result: dict) -> Grade:
    ex = job.exercise
    points = round(ex.points * result.get("fraction", 0.0), 4)
    return Grade(job.student, ex.id, points, ex.points, result["status"], result.get("reason", ""),
                 result.get("detail", {}))


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def run_jobs(jobs: list, *, timeout: float, memory_mb: int, workers: int, progress=None) -> list:
    """Grade every job, `workers` processes at a time; a Grade per job, in the jobs' order."""
    from ..exercises import EXERCISES

    ctx = _context()
    pending, running, grades = list(enumerate(jobs)), {}, {}
    while pending or running:
        while pending and len(running) < workers:
            i, job = pending.pop(0)
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_child, args=(job, send, memory_mb), daemon=True)
            proc.start()
            send.close()
            limit = EXERCISES[job.exercise.id].timeout or timeout
            running[i] = (job, proc, recv, time.monotonic() + limit, limit)
        time.sleep(0.005)
        for i, (job, proc, recv, deadline, limit) in list(running.items()):
            result = None
            if recv.poll():
                try:
                    result = recv.recv()
                except EOFError:   # the process died without a word
                    result = None
            if result is None and proc.is_alive() and time.monotonic() < deadline:
                continue
            if result is None and proc.is_alive():
                _kill(proc)
                result = {"status": "timeout", "fraction": 0.0,
                          "reason": f"did not finish within {limit:g} s (an infinite loop?)"}
            elif result is None:
                proc.join()
                code = proc.exitcode
                reason = (f"crashed with {_signal_name(code)}" if code < 0 else
                          f"the process ended (exit code {code}) before its checks finished: "
                          "did your code call os._exit?")
                result = {"status": "crashed", "fraction": 0.0, "reason": reason}
            _kill(proc)
            recv.close()
            grades[i] = _finish(job, result)
            del running[i]
            if progress is not None:
                progress.update(1)
    return [grades[i] for i in range(len(jobs))]


def _kill(proc) -> None:
    if proc.is_alive():
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
    proc.join()


def _students(submissions: Path) -> list[Path]:
    if not submissions.is_dir():
        raise ValueError(f"submissions: {str(submissions)!r} is not a folder")
    folders = sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ValueError(f"submissions: {str(submissions)!r} holds no student folders "
                         "(one folder per student, with that student's lesson notebooks)")
    return folders


def _written_answer(nb, ex: N.Exercise) -> str | None:
    cell = next((c for c in nb.cells if N.nbgrader_meta(c).get("grade_id") == N.grade_id(ex.id)), None)
    return None if cell is None else cell.source


def plan(submissions, lessons_dir=None, seed: int = 0, extra_checks=None, lessons=None):
    """(jobs to run, grades known without running: missing notebooks and cells, written answers)."""
    submissions = Path(submissions)
    from ..exercises import EXERCISES

    exercises = [e for e in N.course(lessons_dir) if lessons is None or e.lesson[:2] in lessons]
    by_lesson = defaultdict(list)
    for e in exercises:
        by_lesson[e.lesson].append(e)
    jobs, known = [], []
    for folder in _students(submissions):
        student = folder.name
        for lesson, exs in by_lesson.items():
            path = folder / f"{lesson}.ipynb"
            try:
                nb = nbformat.read(path, 4)
            except FileNotFoundError:
                known += [Grade(student, e.id, 0.0, e.points, "missing", f"no {path.name} in the submission")
                          for e in exs]
                continue
            except Exception as err:
                known += [Grade(student, e.id, 0.0, e.points, "error",
                                f"{path.name} is not a readable notebook ({type(err).__name__})")
                          for e in exs]
                continue
            sources = N.solutions(nb)
            for e in exs:
                if e.kind == "written":
                    text = _written_answer(nb, e)
                    status, reason = ("manual", "written answer: grade by hand with the rubric in the "
                                      "teacher guide") if text is not None else ("missing", "no answer cell")
                    known.append(Grade(student, e.id, None if text is not None else 0.0, e.points,
                                       status, reason, {"answer": text or ""}))
                elif e.id not in sources:
                    known.append(Grade(student, e.id, 0.0, e.points, "missing",
                                       f"no solution cell for exercise {e.id} (grade_id {N.grade_id(e.id)})"))
                else:
                    n = EXERCISES[e.id].variants
                    jobs.append(Job(student, e, sources, variant_seeds(seed, e.id, n),
                                    str(extra_checks) if extra_checks else None))
    return jobs, known


def grade(submissions, *, lessons_dir=None, seed: int = 0, timeout: float = 60, memory_mb: int = 2048,
          jobs: int = 1, extra_checks=None, lessons=None, progress: bool = True) -> list[Grade]:
    """Grade a class; return one Grade per student × exercise, ordered by student and exercise."""
    from tqdm.auto import tqdm

    if extra_checks is not None:
        load_extra_checks(extra_checks)   # fail before any work, naming the file
    todo, known = plan(submissions, lessons_dir, seed, extra_checks, lessons)
    bar = tqdm(total=len(todo), desc="grading", unit="check", disable=not progress, file=sys.stderr)
    with bar:
        graded = run_jobs(todo, timeout=timeout, memory_mb=memory_mb, workers=jobs, progress=bar)
    return sorted(known + graded, key=lambda g: (g.student, N.exercise_order(g.exercise)))


# ------------------------------------------------------------------------------------------------
# What the teacher gets
# ------------------------------------------------------------------------------------------------
def write_gradebook(grades: list, path) -> None:
    import io
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(g.row() for g in grades)
    atomic_write(Path(path), buf.getvalue())


def feedback(student: str, grades: list, seed: int) -> str:
    """A student's feedback file (markdown): points per exercise, then what went wrong and why."""
    auto = [g for g in grades if g.points is not None]
    got, out_of = sum(g.points for g in auto), sum(g.max_points for g in auto)
    lines = [f"# Feedback for {student}", "",
             f"Automatically graded: **{got:g} / {out_of:g} points**"
             + (f" (plus {sum(g.max_points for g in grades if g.points is None):g} points of written "
                "answers, graded by hand)" if len(auto) < len(grades) else "") + ".", "",
             "| exercise | points | status |", "|---|---|---|"]
    lines += [f"| {g.exercise} | {'—' if g.points is None else f'{g.points:g}'} / {g.max_points:g} | "
              f"{g.status} |" for g in grades]
    notes = [g for g in grades if g.reason and g.status != "passed"]
    if notes:
        lines += ["", "## What to look at", ""]
        for g in notes:
            lines += [f"### Exercise {g.exercise} — {g.status}", ""]
            if g.status == "manual":
                answer = g.detail.get("answer", "").strip() or "(empty)"
                lines += ["Your written answer:", ""] + [f"> {line}" for line in answer.splitlines()] + [""]
            else:
                lines += ["```text", g.reason.strip(), "```", ""]
    for g in grades:   # what a scored exercise (the capstone) measured on the held-out digits
        if "compression" in g.detail and "accuracy" in g.detail:
            lines += ["", f"Exercise {g.exercise}: accuracy {g.detail['accuracy']:.2%}, compression "
                      f"{g.detail['compression']:.1f}× → {g.points:g} / {g.max_points:g} points."]
    lines += ["", f"_Checked on hidden variants (grading seed {seed}); the lesson's self-check shows only "
              "some of the cases._", ""]
    return "\n".join(lines)


def write_feedback(grades: list, folder, seed: int) -> list[Path]:
    by_student = defaultdict(list)
    for g in grades:
        by_student[g.student].append(g)
    written = []
    for student, gs in by_student.items():
        path = Path(folder) / f"{student}.md"
        atomic_write(path, feedback(student, gs, seed))
        written.append(path)
    return written


def leaderboard(grades: list) -> list[dict]:
    """The capstone's table: every graded answer whose checker reported a compression, best first."""
    rows = [{"student": g.student, "exercise": g.exercise, "accuracy": g.detail["accuracy"],
             "compression": g.detail["compression"], "points": g.points, "max_points": g.max_points}
            for g in grades if "compression" in g.detail and "accuracy" in g.detail]
    rows.sort(key=lambda r: (-r["points"], -r["compression"], r["student"]))
    for rank, r in enumerate(rows, 1):
        r["rank"] = rank
    return rows


def write_leaderboard(rows: list, path) -> None:
    import io
    buf = io.StringIO()
    cols = ["rank", "student", "exercise", "accuracy", "compression", "points", "max_points"]
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({**r, "accuracy": f"{r['accuracy']:.4f}", "compression": f"{r['compression']:.2f}",
                         "points": f"{r['points']:g}", "max_points": f"{r['max_points']:g}"})
    atomic_write(Path(path), buf.getvalue())


def summary(grades: list) -> str:
    """Per exercise: mean points, how many passed, how many students."""
    by_ex = defaultdict(list)
    for g in grades:
        by_ex[g.exercise].append(g)
    lines = [f"{'exercise':>8}  {'mean points':>14}  {'passed':>8}  other statuses"]
    for ex in sorted(by_ex, key=N.exercise_order):
        gs = by_ex[ex]
        if all(g.status == "manual" or g.points is None for g in gs):
            lines.append(f"{ex:>8}  {'(by hand)':>14}  {'':>8}  {len(gs)} written answers")
            continue
        pts = [g.points or 0.0 for g in gs]
        other = defaultdict(int)
        for g in gs:
            if g.status != "passed":
                other[g.status] += 1
        lines.append(f"{ex:>8}  {np.mean(pts):>6.2f} / {gs[0].max_points:<5g}  "
                     f"{sum(g.status == 'passed' for g in gs):>3} / {len(gs):<3}  "
                     + ", ".join(f"{k} {v}" for k, v in sorted(other.items())))
    return "\n".join(lines)
