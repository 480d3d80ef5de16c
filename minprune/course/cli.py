"""`minprune course ...`: the student edition and the autograder from the command line.

    minprune course student OUT_DIR
    minprune course grade SUBMISSIONS --out grades.csv [--feedback DIR] [--timeout S] [--jobs N]
                          [--seed N] [--extra-checks FILE]

Every argument is checked before any work starts.
"""
from __future__ import annotations

import os
import secrets
import time
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("course", help="the classroom kit: student edition and autograder",
                       description=__doc__.split("\n\n")[0])
    csub = p.add_subparsers(dest="course_command", required=True)
    s = csub.add_parser("student", help="write the student edition of every lesson (solutions removed)")
    s.add_argument("out_dir", help="folder to write the student notebooks into")
    s.add_argument("--lessons", help="the teacher's lessons folder (default: lessons/ of this checkout)")
    g = csub.add_parser("grade", help="grade a folder of submissions on hidden variants")
    g.add_argument("submissions", help="one folder per student, holding that student's lesson notebooks")
    g.add_argument("--out", default="grades.csv", help="the gradebook CSV (default grades.csv)")
    g.add_argument("--feedback", help="folder for one feedback markdown file per student")
    g.add_argument("--timeout", type=float, default=60.0, help="seconds per student × exercise (default 60)")
    g.add_argument("--memory", type=int, default=2048, help="megabytes per grading process (default 2048)")
    g.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="grading processes at once (default: one per core)")
    g.add_argument("--seed", type=int, help="the teacher's secret seed for the hidden variants "
                   "(default: a fresh random one, printed so that a regrade can reuse it)")
    g.add_argument("--extra-checks", help="a Python file with CHECKS = {exercise id: [check(answer, rng)]}")
    g.add_argument("--only", help="grade only these lessons, e.g. 04,06")
    g.add_argument("--lessons", help="the teacher's lessons folder (default: lessons/ of this checkout)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def _writable(path: Path, what: str, folder: bool = False) -> None:
    """`path` can be created (missing parent folders too) or overwritten."""
    if path.exists() and path.is_dir() != folder:
        raise ValueError(f"{what}: {str(path)!r} exists and is {'not ' if folder else ''}a folder")
    existing = path.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise ValueError(f"{what}: cannot write into {str(existing)!r}")


def _check_grade_args(args) -> dict:
    """Every problem with the arguments, as a ValueError naming the option, before any work."""
    from . import notebooks as N
    from .grade import _students, load_extra_checks

    if args.timeout <= 0:
        raise ValueError(f"--timeout: expected seconds > 0, got {args.timeout}")
    if args.jobs < 1:
        raise ValueError(f"--jobs: expected at least 1 process, got {args.jobs}")
    if args.memory < 256:
        raise ValueError(f"--memory: expected at least 256 MB, got {args.memory}")
    if args.seed is not None and args.seed < 0:
        raise ValueError(f"--seed: expected an integer >= 0, got {args.seed}")
    _students(Path(args.submissions))
    _writable(Path(args.out), "--out")
    if args.feedback:
        _writable(Path(args.feedback), "--feedback", folder=True)
    lessons = {p.name[:2] for p in N.lesson_paths(args.lessons)}
    only = None
    if args.only:
        only = {x.strip().zfill(2) for x in args.only.split(",") if x.strip()}
        if not only or not only <= lessons:
            raise ValueError(f"--only: {args.only!r}; valid lessons: {', '.join(sorted(lessons))}")
    if args.extra_checks:
        load_extra_checks(args.extra_checks)
    return {"only": only}


def run(args) -> int:
    if args.course_command == "student":
        from .notebooks import write_student_edition
        written = write_student_edition(args.out_dir, args.lessons)
        print(f"student edition: {len(written)} lessons in {args.out_dir}/ (solutions and outputs removed)")
        return 0
    from . import grade as G

    checked = _check_grade_args(args)
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    print(f"grading seed {seed}" + ("" if args.seed is not None else
                                    " (pass --seed with it to grade again on the same hidden variants)"))
    start = time.perf_counter()
    grades = G.grade(args.submissions, lessons_dir=args.lessons, seed=seed, timeout=args.timeout,
                     memory_mb=args.memory, jobs=args.jobs, extra_checks=args.extra_checks,
                     lessons=checked["only"], progress=not args.quiet)
    G.write_gradebook(grades, args.out)
    print(G.summary(grades))
    students = len({g.student for g in grades})
    print(f"\n{len(grades)} rows ({students} students) in {args.out}; "
          f"graded in {time.perf_counter() - start:.0f} s with {args.jobs} processes")
    if args.feedback:
        G.write_feedback(grades, args.feedback, seed)
        print(f"feedback: {students} files in {args.feedback}/")
    board = G.leaderboard(grades)
    if board:
        path = Path(args.out).with_name("leaderboard.csv")
        G.write_leaderboard(board, path)
        print(f"leaderboard: {len(board)} entries in {path}")
    return 0
