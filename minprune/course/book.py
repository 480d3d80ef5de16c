"""The course website (`make book`): every lesson as it ran in full mode, the README, the findings,
the teacher guide and the API reference, built into static HTML with Sphinx + MyST-NB.

    python -m minprune.course.book [--leaderboard leaderboard.csv]   # what `make book` runs

Three steps, each cheap when nothing changed:

1. every lesson is executed in **full mode** through `execute.execute` (cached in
   `_build/executed/full/`, keyed on the lesson and the library's sources); a lesson that fails
   stops the build with its name, so a broken page is never published;
2. the site's source tree is written to `_build/book-src/`: the lessons' `book_edition`, the
   README (as the "about" page), `docs/*.md` with their figures, the API pages and, when a
   leaderboard CSV is given, the class leaderboard. A file is rewritten only when its content
   changed, so Sphinx's own incremental build re-reads only what changed;
3. `sphinx-build` turns it into `_build/book/html/` (config: `docs/book/conf.py`).

The site must not hand out the exercises' answers: `book_edition` keeps a lesson's outputs but shows
every solution as the student's stub, drops the outputs of the check cells (they came from the
reference solution) and shows a note in place of each written answer.
"""
from __future__ import annotations

import argparse
import copy
import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat

from .execute import DEFAULT_CACHE, ROOT, cached, execute
from .notebooks import (
    BEGIN,
    code_stub,
    exercise_id,
    exercises,
    lesson_paths,
    nbgrader_meta,
    reading_minutes,
    strip_solution,
)

SOURCE_DIR = ROOT / "_build" / "book-src"
OUT_DIR = ROOT / "_build" / "book"
CONFIG_DIR = ROOT / "docs" / "book"

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
LEADERBOARD_COLUMNS = ("student", "accuracy", "compression", "points")


# --- one lesson as the site shows it ----------------------------------------------------------

def _points(value) -> str:
    value = float(value or 0)
    return f"{value:g} point" + ("" if value == 1 else "s")


def written_note(exercise: str, points) -> str:
    """What a written-answer cell shows on the site instead of the answer."""
    return (f"*Exercise {exercise} ({_points(points)}, graded by hand): write your answer in this cell "
            "of the notebook.*")


def run_note(seconds=None) -> str:
    """The note near the top of every lesson page: where its outputs come from."""
    took = f" It took {_duration(seconds)} on the machine that built this site." if seconds else ""
    return ("```{note}\nThe outputs on this page come from a **full-mode** run of the lesson "
            "(`MINPRUNE_FAST=0`) with the teacher's reference solutions." + took +
            " The exercise cells show what you get: a stub to replace with your own code; the checks'"
            " outputs are left out. Run the notebook yourself to see them.\n```")


def _duration(seconds) -> str:
    seconds = float(seconds)
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"{round(seconds / 60)} min"


def _is_widget(output) -> bool:
    """A progress-bar widget (tqdm in a kernel with ipywidgets): a static page cannot show it."""
    return WIDGET_VIEW in output.get("data", {})


def book_edition(nb):
    """A copy of an executed lesson for the website: outputs kept, answers hidden.

    * every solution region is replaced by the student's stub and the solution cell's outputs go;
    * the check cells' outputs go (they report on the reference solution);
    * a written-answer cell shows a short note that the answer is written in the notebook;
    * progress-bar widgets (and the notebook's widget state) go: a static page cannot draw them;
    * a note right after the lesson's first cell says where the outputs come from.
    """
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        ex_id = exercise_id(meta.get("grade_id", ""))
        if meta.get("solution"):
            if cell.cell_type == "markdown":
                cell.source = written_note(ex_id or "?", meta.get("points"))
            else:
                has_region = any(line.strip() == BEGIN for line in cell.source.split("\n"))
                stub = code_stub(ex_id or "")
                cell.source = strip_solution(cell.source, stub) if has_region else stub
        elif BEGIN in cell.source:
            raise ValueError(f"a solution region sits in a cell not marked as a solution:\n{cell.source}")
        if cell.cell_type != "code":
            continue
        if meta.get("solution") or meta.get("grade"):
            cell.outputs = []
        else:
            cell.outputs = [o for o in cell.outputs if not _is_widget(o)]
    seconds = nb.metadata.get("minprune", {}).get("execution", {}).get("seconds")
    note = nbformat.v4.new_markdown_cell(run_note(seconds), id="book-run-note")   # a fixed id: same
    nb.cells.insert(1 if nb.cells else 0, note)                                  # run, same file
    return nb


# --- the lessons table ------------------------------------------------------------------------

_TITLE = re.compile(r"^#\s+(?:Lesson\s+)?(\d\d)\s*[—–-]+\s*(.+?)\s*$", re.M)


def lesson_title(nb, stem: str) -> str:
    """ "04 — What is pruning?" from the lesson's first heading (`# NN — Title`)."""
    first = next((c.source for c in nb.cells if c.cell_type == "markdown"), "")
    m = _TITLE.search(first)
    if m:
        return f"{m.group(1)} — {m.group(2)}"
    heading = re.search(r"^#\s+(.+)$", first, re.M)
    return heading.group(1).strip() if heading else stem.replace("_", " ")


def lessons_table(rows) -> str:
    """The index's table: one row per lesson (title with link, times, exercises)."""
    nbsp = "\u00a0"   # keeps "20 min" and "3 code" on one line in a narrow column
    lines = ["| lesson | reading | full-mode run | exercises |", "|---|---|---|---|"]
    for r in rows:
        code = sum(1 for e in r["exercises"] if e.kind == "code")
        written = len(r["exercises"]) - code
        points = sum(e.points for e in r["exercises"])
        parts = [f"{code}{nbsp}code"] + ([f"{written}{nbsp}written"] if written else [])
        ex = f"{' + '.join(parts)}, {points:g}{nbsp}pts" if r["exercises"] else "—"
        run = _duration(r["seconds"]).replace(" ", nbsp) if r["seconds"] is not None else "—"
        title = r["title"].replace("|", "\\|")
        lines.append(f"| [{title}](lessons/{r['stem']}.ipynb) | {r['reading']}{nbsp}min | {run} | {ex} |")
    return "\n".join(lines)


# --- markdown pages copied from the repository ------------------------------------------------

_LINK = re.compile(r"(!?)\[([^\]\n]*)\]\(([^)\s]+)(\s+\"[^\"]*\")?\)")


def _relative(target: str, start: str) -> str:
    return os.path.relpath(target, os.path.dirname(start) or ".").replace(os.sep, "/")


def rewrite_links(text: str, origin: str, page: str, site: dict) -> str:
    """Point a page's relative links at the site: `origin` is the page's path in the repository,
    `page` its path in the site, `site` maps repository paths to site paths. A link to a file
    the site does not hold becomes its path in `code` (no broken link)."""
    def fix(m):
        bang, label, target, title = m.group(1), m.group(2), m.group(3), m.group(4) or ""
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith(("#", "/")):
            return m.group(0)
        path, _, anchor = target.partition("#")
        repo_path = os.path.normpath(os.path.join(os.path.dirname(origin), path)).replace(os.sep, "/")
        if repo_path in site:
            new = _relative(site[repo_path], page) + (f"#{anchor}" if anchor else "")
            return f"{bang}[{label}]({new}{title})"
        if bang:
            raise ValueError(f"{origin}: the image {target!r} is not part of the site (docs/figures/)")
        shown = f"`{repo_path}`"
        return shown if label.strip("`") == repo_path or not label else f"{label} ({shown})"

    out, fenced = [], False
    for line in text.split("\n"):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        out.append(line if fenced else _LINK.sub(fix, line))
    return "\n".join(out)


# --- the API reference ------------------------------------------------------------------------

# minprune's docstrings are plain text written for `help()`: `code` in backticks, *emphasis*,
# "* " bullet lists, column-aligned tables and indented examples. Read as reStructuredText (what
# autodoc assumes) `|w|` becomes a substitution and the tables collapse; `docstring_rst` turns
# that plain text into reStructuredText that shows what the author wrote.
_CODE = re.compile(r"(``?)([^`\n]+)\1")
_STRONG = re.compile(r"(?<![\w*])\*\*(\S(?:[^*\n]*\S)?)\*\*(?![\w*])")
_EMPH = re.compile(r"(?<![\w*])\*(\S(?:[^*\n]*\S)?)\*(?![\w*])")
_BULLET = re.compile(r"^([*-]|\d+[.)])\s+")
_COLUMNS = re.compile(r"\S\s{3,}\S")


def _inline(text: str) -> str:
    """One line of plain text as reStructuredText: `code`, *emphasis* and **strong** kept, every
    other markup character escaped."""
    pieces, keep = [], []

    def hold(rst: str) -> str:
        keep.append(rst)
        return f"\x00{len(keep) - 1}\x00"

    text = _CODE.sub(lambda m: hold(f"``{m.group(2).strip()}``") if m.group(2).strip() else m.group(0), text)
    text = _STRONG.sub(lambda m: hold(f"**{_escape(m.group(1))}**"), text)
    text = _EMPH.sub(lambda m: hold(f"*{_escape(m.group(1))}*"), text)
    parts = text.split("\x00")
    for i, part in enumerate(parts):
        if i % 2 == 0:
            pieces.append(_escape(part))
            continue
        # reStructuredText wants a space (or punctuation) around inline markup: "`mask`s" needs an
        # escaped space, which renders as nothing
        before = "\\ " if parts[i - 1] and not parts[i - 1][-1].isspace() else ""
        after = "\\ " if i + 1 < len(parts) and parts[i + 1] and not parts[i + 1][0].isspace() else ""
        pieces.append(before + keep[int(part)] + after)
    return "".join(pieces)


def _escape(text: str) -> str:
    text = re.sub(r"([\\*`|_])", r"\\\1", text)
    return re.sub(r"::$", r"\\:\\:", text)    # not reStructuredText's "a literal block follows"


def _literal(lines: list[str]) -> list[str]:
    return ["::", ""] + ["    " + line for line in lines] + [""]


def docstring_rst(lines: list[str]) -> list[str]:
    """A plain-text docstring (already dedented, as autodoc hands it over) as reStructuredText:
    paragraphs and bullet lists become text with their `code` and *emphasis*; indented blocks,
    column-aligned tables and doctest examples are shown verbatim."""
    out: list[str] = []
    block: list[str] = []

    def flush():
        if not block:
            return
        if block[0].lstrip().startswith(">>>"):
            out.extend(block + [""])      # a doctest block, as reStructuredText has it
        elif _BULLET.match(block[0]) and not any(_COLUMNS.search(b.strip()) for b in block):
            indent = "  "
            for line in block:
                m = _BULLET.match(line)
                if m:
                    bullet = "-" if m.group(1) in "*-" else m.group(1)
                    indent = " " * (len(bullet) + 1)      # continuation lines align with the text
                    out.append(f"{bullet} " + _inline(line[m.end():]))
                else:
                    out.append(indent + _inline(line.strip()))
            out.append("")
        else:
            head = 0   # the lines of plain paragraph before an indented or column-aligned part
            while head < len(block) and not block[head].startswith((" ", "\t")) \
                    and not _COLUMNS.search(block[head]) and not block[head].lstrip().startswith(">>>"):
                head += 1
            if head:
                text = [_inline(line.strip()) for line in block[:head]]
                text[0] = re.sub(r"^([-+=#])", r"\\\1", text[0])
                out.extend(text + [""])
            if head < len(block):
                out.extend(_literal(block[head:]))
        block.clear()

    for line in lines:
        if line.strip():
            block.append(line.rstrip())
        else:
            flush()
    flush()
    while out and not out[-1]:
        out.pop()
    return out + [""]

# (module, what it is); every submodule of minprune.prune is added after "minprune.prune".
API = [
    ("minprune", "the package: `Tensor`, `tensor`, `no_grad`, `save`, `load`"),
    ("minprune.tensor", "the Tensor: an array, its gradient and the Function that made it"),
    ("minprune.autograd", "Function, Context and the backward pass"),
    ("minprune.nn", "modules and layers"),
    ("minprune.nn.functional", "losses and functional forms of the layers"),
    ("minprune.nn.init", "weight initialisation"),
    ("minprune.optim", "mask-aware optimizers"),
    ("minprune.train", "fit and evaluate"),
    ("minprune.data", "MNIST: the embedded digits, downloads, loaders"),
    ("minprune.models", "the networks the lessons prune"),
    ("minprune.prune", "the pruning API: one argument per axis"),
    ("minprune.plots", "the figures of the lessons"),
    ("minprune.exercises", "the lessons' exercise checkers"),
    ("minprune.course", "the classroom kit: student edition, autograder, claims, this website"),
]


# packages whose submodules get a page each
PACKAGES_BY_MODULE = ("minprune.prune", "minprune.course", "minprune.exercises")


def api_modules() -> list[tuple[str, str]]:
    """The modules the API reference documents, in order (submodules found on disk)."""
    import importlib
    import pkgutil

    found = []
    for name, about in API:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        found.append((name, about))
        if name in PACKAGES_BY_MODULE and hasattr(module, "__path__"):
            for info in sorted(pkgutil.iter_modules(module.__path__), key=lambda i: i.name):
                if info.name.startswith("_") or re.match(r"lesson\d\d$", info.name):
                    continue    # private, __main__, and the per-lesson checkers (one page for all)
                found.append((f"{name}.{info.name}", ""))
    return found


def api_pages() -> dict:
    """{site path: markdown} of the API reference: an index and one page per module."""
    import importlib

    pages, rows = {}, []
    for name, about in api_modules():
        doc = (importlib.import_module(name).__doc__ or "").strip()
        summary = about or (doc.split("\n\n")[0].replace("\n", " ") if doc else "")
        summary = summary.replace("|", "\\|")
        rows.append(f"| [`{name}`]({name}.md) | {summary} |")
        # the function minprune.tensor shares its name with the module minprune.tensor
        extra = ("   :exclude-members: tensor\n\n.. autofunction:: minprune.tensor\n   :no-index:\n"
                 if name == "minprune" else "")
        pages[f"api/{name}.md"] = (f"# `{name}`\n\n```{{eval-rst}}\n.. automodule:: {name}\n"
                                   f"   :members:\n   :show-inheritance:\n{extra}```\n")
    index = ("# API reference\n\nGenerated from the docstrings of the modules below (each page opens with "
             "the module's own description; *[source]* links show the code).\n\n"
             "| module | what it holds |\n|---|---|\n" + "\n".join(rows) + "\n\n"
             "```{toctree}\n:hidden:\n\n" + "\n".join(f"{n}" for n, _ in api_modules()) + "\n```\n")
    pages["api/index.md"] = index
    return pages


# --- the leaderboard --------------------------------------------------------------------------

def leaderboard_page(path) -> str:
    """The class leaderboard as a markdown table, from the capstone's leaderboard.csv (columns at
    least student, accuracy, compression, points; shown in the file's order)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"leaderboard: {str(path)!r} is not a file")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        rows = list(reader)
    missing = [c for c in LEADERBOARD_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"leaderboard: {str(path)!r} lacks the columns {missing} "
                         f"(it has {columns}; needed: {list(LEADERBOARD_COLUMNS)})")

    def cell(value) -> str:
        return str(value if value is not None else "").replace("|", "\\|").replace("\n", " ")

    table = ["| " + " | ".join(cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    table += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return ("# Class leaderboard\n\nThe capstone (lesson 16): each student's pruned network, its test "
            f"accuracy, its compression and the points it earned; {len(rows)} "
            f"entr{'y' if len(rows) == 1 else 'ies'} from `{path.name}`.\n\n" + "\n".join(table) + "\n")


# --- the source tree --------------------------------------------------------------------------

class LessonFailed(RuntimeError):
    """One or more lessons failed to run in full mode: the site is not built."""


def executed_lessons(lessons_dir=None, cache_dir=DEFAULT_CACHE, log=print) -> list[tuple[Path, object]]:
    """(path, executed notebook) of every lesson, run in full mode (cached). Every lesson is tried;
    then a failure raises LessonFailed naming the lessons that failed and their first error."""
    done, failed = [], []
    for path in lesson_paths(lessons_dir):
        nb = cached(path, fast=False, cache_dir=cache_dir)
        if nb is not None:
            log(f"  {path.stem}: cached")
            done.append((path, nb))
            continue
        start = time.perf_counter()
        try:
            nb = execute(path, fast=False, cache_dir=cache_dir)
        except Exception as exc:   # CellExecutionError, a dead kernel, a timeout: all fatal for the site
            failed.append((path.stem, exc))
            log(f"  {path.stem}: FAILED in full mode ({type(exc).__name__})")
            continue
        log(f"  {path.stem}: ran in {time.perf_counter() - start:.0f} s")
        done.append((path, nb))
    if failed:
        detail = "\n\n".join(f"--- {stem} ---\n{str(exc)[-3000:]}" for stem, exc in failed)
        raise LessonFailed(f"{len(failed)} lesson(s) failed in full mode, the site is not built: "
                           f"{', '.join(s for s, _ in failed)}\n\n{detail}")
    return done


def site_sources(lessons, docs_dir=ROOT / "docs", readme=ROOT / "README.md", config_dir=CONFIG_DIR,
                 leaderboard=None) -> dict:
    """{path in the site's source tree: bytes} for the whole site."""
    docs_dir, config_dir = Path(docs_dir), Path(config_dir)
    files: dict[str, bytes] = {}
    site = {"README.md": "about.md"}            # repository path -> site path, for links
    pages = ["findings.md", "teaching.md", "website.md"]
    for name in pages:
        site[f"docs/{name}"] = name
    for path, _ in lessons:
        site[f"lessons/{path.name}"] = f"lessons/{path.name}"
    figures = docs_dir / "figures"
    for fig in sorted(figures.glob("*")) if figures.is_dir() else []:
        site[f"docs/figures/{fig.name}"] = f"figures/{fig.name}"
        files[f"figures/{fig.name}"] = fig.read_bytes()

    files["conf.py"] = (config_dir / "conf.py").read_bytes()
    for static in sorted((config_dir / "_static").glob("*")) if (config_dir / "_static").is_dir() else []:
        files[f"_static/{static.name}"] = static.read_bytes()
    files["about.md"] = rewrite_links(Path(readme).read_text(encoding="utf-8"), "README.md", "about.md",
                                      site).encode()
    for name in pages:
        source = docs_dir / name
        if not source.is_file():
            raise FileNotFoundError(f"the site needs {source} (a page of the website)")
        files[name] = rewrite_links(source.read_text(encoding="utf-8"), f"docs/{name}", name, site).encode()

    rows = []
    for path, nb in lessons:
        edition = book_edition(nb)
        files[f"lessons/{path.name}"] = nbformat.writes(edition).encode()
        rows.append({"stem": path.stem, "title": lesson_title(nb, path.stem), "reading": reading_minutes(nb),
                     "seconds": nb.metadata.get("minprune", {}).get("execution", {}).get("seconds"),
                     "exercises": exercises(nb, path.stem)})
    for name, text in api_pages().items():
        files[name] = text.encode()
    extra = []
    if leaderboard is not None:
        files["leaderboard.md"] = leaderboard_page(leaderboard).encode()
        extra.append("leaderboard")

    index = (config_dir / "index.md").read_text(encoding="utf-8")
    marker = "<!-- lessons -->"
    if marker not in index:
        raise ValueError(f"{config_dir / 'index.md'} lacks the line {marker} (where the lessons table goes)")

    def toctree(caption, entries):
        return "\n".join(["```{toctree}", ":hidden:", f":caption: {caption}", "", *entries, "```", ""])

    toc = "\n".join([toctree("Lessons", [f"lessons/{p.stem}" for p, _ in lessons]),
                     toctree("Reference", ["findings", "api/index"]),
                     toctree("For teachers", ["teaching", *extra]),
                     toctree("About", ["About minprune <about>", "website"])])
    files["index.md"] = index.replace(marker, lessons_table(rows) + "\n\n" + toc).encode()
    return files


def sync(files: dict, folder: Path) -> int:
    """Make `folder` hold exactly `files`; write only what changed (Sphinx rebuilds by mtime).
    Returns the number of files written or removed."""
    folder = Path(folder)
    changed = 0
    for name, data in files.items():
        target = folder / name
        if target.is_file() and target.read_bytes() == data:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        changed += 1
    keep = {folder / n for n in files}
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_file() and path not in keep:
            path.unlink()
            changed += 1
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return changed


def build(leaderboard=None, lessons_dir=None, source_dir=SOURCE_DIR, out_dir=OUT_DIR,
          cache_dir=DEFAULT_CACHE, log=print) -> Path:
    """Build the site; returns the folder of its HTML (`out_dir/html`)."""
    start = time.perf_counter()
    if leaderboard is not None and not Path(leaderboard).is_file():
        raise ValueError(f"leaderboard: {str(leaderboard)!r} is not a file")
    log(f"Running the lessons in full mode (cached in {Path(cache_dir) / 'full'}):")
    lessons = executed_lessons(lessons_dir, cache_dir, log)
    ran = time.perf_counter() - start
    changed = sync(site_sources(lessons, leaderboard=leaderboard), Path(source_dir))
    log(f"Site sources in {source_dir}: {changed} file(s) changed")
    html, doctrees = Path(out_dir) / "html", Path(out_dir) / "doctrees"
    warnings = Path(out_dir) / "warnings.txt"
    warnings.parent.mkdir(parents=True, exist_ok=True)
    # -W --keep-going: a warning (a broken reference, a docstring that does not parse) fails the
    # build after reporting all of them, so the site cannot break silently
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-W", "--keep-going", "-d", str(doctrees),
           "-w", str(warnings), str(source_dir), str(html)]
    sphinx_start = time.perf_counter()
    result = subprocess.run(cmd)
    if result.returncode != 0:
        raise RuntimeError(f"sphinx-build failed (exit {result.returncode}): "
                           f"see the warnings above (also in {warnings})")
    total = time.perf_counter() - start
    log(f"Built {html / 'index.html'} in {total:.0f} s (lessons {ran:.0f} s, "
        f"sphinx {time.perf_counter() - sphinx_start:.0f} s)")
    return html


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m minprune.course.book", description=__doc__.split("\n\n")[0])
    p.add_argument("--leaderboard", help="the capstone's leaderboard.csv: adds the class leaderboard page")
    p.add_argument("--lessons", help="the lessons folder (default: lessons/ of this checkout)")
    p.add_argument("--source", default=str(SOURCE_DIR), help="where the site's sources are generated")
    p.add_argument("--out", default=str(OUT_DIR), help="where the HTML goes (OUT/html)")
    args = p.parse_args(argv)
    try:
        build(args.leaderboard, args.lessons, Path(args.source), Path(args.out))
    except (LessonFailed, ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"make book: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
