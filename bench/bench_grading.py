"""How long the autograder takes for a class: N students × every lesson, on this machine.

    python bench/bench_grading.py --students 60 --jobs 2

The class is synthetic but realistic for the grader's cost: most students hand in working answers
(the lessons' reference solutions, which run every hidden variant in full), some hand in the untouched
student edition (fails fast), and some have one endless loop (costs a whole `--timeout`). Prints the
wall time in all, per student, and per exercise kind, with the grader's own summary.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minprune.course import grade as G  # noqa: E402
from minprune.course import notebooks as N  # noqa: E402


def build_class(folder: Path, students: int, untouched: int, looping: int) -> None:
    lessons = N.lesson_paths(ROOT / "lessons")
    for s in range(students):
        who = folder / f"student{s:02d}"
        who.mkdir(parents=True)
        for path in lessons:
            nb = nbformat.read(path, 4)
            if s < untouched:
                nb = N.student_edition(nb)
            elif s < untouched + looping and path.name.startswith("04_"):
                for cell in nb.cells:
                    if cell.metadata.get("nbgrader", {}).get("grade_id") == "ex04_1":
                        cell.source = "def my_sparsity(model):\n    while True:\n        pass\n"
            else:
                shutil.copy(path, who / path.name)
                continue
            nbformat.write(nb, who / path.name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--students", type=int, default=60)
    ap.add_argument("--untouched", type=int, default=5, help="students handing in the student edition")
    ap.add_argument("--looping", type=int, default=3, help="students with one endless loop")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--only", help="lessons, e.g. 01,04 (default: all)")
    args = ap.parse_args()
    only = {x.zfill(2) for x in args.only.split(",")} if args.only else None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "class"
        build_class(folder, args.students, args.untouched, args.looping)
        start = time.perf_counter()
        grades = G.grade(folder, lessons_dir=ROOT / "lessons", seed=1, timeout=args.timeout,
                         jobs=args.jobs, lessons=only)
        wall = time.perf_counter() - start
    print(G.summary(grades))
    print(f"\n{args.students} students × {len({g.exercise for g in grades})} exercises "
          f"({len(grades)} rows) graded in {wall:.0f} s with --jobs {args.jobs} "
          f"({wall / args.students:.1f} s per student; timeout {args.timeout:g} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
