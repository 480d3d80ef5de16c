"""The course website's pages, without building it (`make test-book` builds it and opens it in a
browser): a lesson's book edition keeps its outputs but no answer, docstrings become valid
reStructuredText, links point into the site, and the leaderboard table."""
import copy
from pathlib import Path

import nbformat
import pytest

from minprune.course import book as B
from minprune.course import notebooks as N

pytestmark = pytest.mark.course

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("[0-9][0-9]_*.ipynb"))


def _stream(text):
    return nbformat.v4.new_output("stream", name="stdout", text=text)


def executed(nb):
    """`nb` as if it had run: every code cell printed something, one drew a progress bar."""
    nb = copy.deepcopy(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.outputs = [_stream(f"output of cell {i}\n")]
            cell.execution_count = i
    bar = nbformat.v4.new_output("display_data", data={
        "text/plain": "  0%|          | 0/10", B.WIDGET_VIEW: {"model_id": "abc", "version_major": 2}})
    first = next(c for c in nb.cells if c.cell_type == "code")
    first.outputs.append(bar)
    nb.metadata["minprune"] = {"execution": {"seconds": 42.0, "fast": False}}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {}}
    return nb


def tiny_lesson():
    code = nbformat.v4.new_code_cell
    md = nbformat.v4.new_markdown_cell
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        md("# 99 — A tiny lesson\n\nIntro."),
        code("x = 1\nprint(x)"),
        code("def my_sparsity(model):\n    ### BEGIN SOLUTION\n    return secret_formula(model)\n"
             "    ### END SOLUTION", metadata={"nbgrader": {"solution": True, "grade": False,
                                                         "grade_id": "ex99_1", "locked": False}}),
        code("ex.check_sparsity(my_sparsity)", metadata={"nbgrader": {
            "solution": False, "grade": True, "grade_id": "ex99_1_check", "points": 2, "locked": True}}),
        code("print(my_sparsity(model))"),
        md("Why does it work?"),
        md("the reference's written answer", metadata={"nbgrader": {
            "solution": True, "grade": True, "grade_id": "ex99_2", "points": 2, "locked": False}}),
    ]
    return executed(nb)


def test_book_edition_hides_answers_and_keeps_outputs():
    nb = tiny_lesson()
    out = B.book_edition(nb)
    sources = "\n".join(c.source for c in out.cells)
    assert "secret_formula" not in sources and "reference's written answer" not in sources
    assert 'raise NotImplementedError("exercise 99.1")' in sources
    assert out.cells[0].source == nb.cells[0].source
    note = out.cells[1]
    assert note.cell_type == "markdown" and "full-mode" in note.source and "42 s" in note.source
    by_source = {c.source: c for c in out.cells}
    assert by_source["x = 1\nprint(x)"].outputs == [_stream("output of cell 1\n")]   # widget dropped
    assert by_source["ex.check_sparsity(my_sparsity)"].outputs == []               # the reference's
    assert by_source["print(my_sparsity(model))"].outputs == nb.cells[4].outputs     # demo kept
    written = out.cells[-1]
    assert "99.2" in written.source and "notebook" in written.source and "2 points" in written.source
    assert "widgets" not in out.metadata
    assert nb.cells[2].source.count("secret_formula") == 1, "book_edition must not change its input"
    nbformat.validate(out)
    assert nbformat.writes(B.book_edition(nb)) == nbformat.writes(out), "same run, same page"


def test_book_edition_refuses_a_solution_outside_a_solution_cell():
    nb = tiny_lesson()
    nb.cells[1].source = "### BEGIN SOLUTION\nx = 2\n### END SOLUTION"
    with pytest.raises(ValueError, match="not marked as a solution"):
        B.book_edition(nb)


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_no_solution_line_of_a_lesson_reaches_the_site(path):
    nb = executed(nbformat.read(path, 4))
    out = B.book_edition(nb)
    shown = "\n".join(c.source for c in out.cells)
    elsewhere = "\n".join(c.source for c in nb.cells if not c.metadata.get("nbgrader", {}).get("solution"))
    secret = {line.strip() for line in N.solution_lines(nb)} - {""}
    leaked = [line for line in secret if line in shown and line not in elsewhere]
    assert not leaked, f"{path.name}: solution lines on the site: {leaked[:5]}"
    for before, after in zip([c for c in nb.cells], [c for c in out.cells if c.get("id") != "book-run-note"]):
        meta = before.metadata.get("nbgrader", {})
        if before.cell_type != "code":
            continue
        if meta.get("solution") or meta.get("grade"):
            assert after.outputs == [], f"{path.name}: an exercise cell kept the reference's output"
        else:
            assert after.outputs == [_stream(before.outputs[0].text)], f"{path.name}: an output was lost"


def test_lesson_title_and_table():
    nb = tiny_lesson()
    assert B.lesson_title(nb, "99_tiny") == "99 — A tiny lesson"
    nb.cells[0].source = "# Lesson 04 — What is pruning?\n\ntext"
    assert B.lesson_title(nb, "04_what") == "04 — What is pruning?"
    rows = [{"stem": "99_tiny", "title": "99 — A | B", "reading": 12, "seconds": 130.0,
             "exercises": N.exercises(tiny_lesson(), "99_tiny")}]
    table = B.lessons_table(rows)
    assert "[99 — A \\| B](lessons/99_tiny.ipynb)" in table
    table = table.replace("\u00a0", " ")
    assert "| 12 min | 2 min | 1 code + 1 written, 4 pts |" in table


def test_links_point_into_the_site():
    site = {"docs/findings.md": "findings.md", "docs/figures/a.png": "figures/a.png", "README.md": "about.md"}
    text = ("See [the findings](docs/findings.md#lenet-5), [bench/README.md](bench/README.md), "
            "[the code](minprune/prune/criteria.py) and <https://example.org>.\n"
            "```\n[not a link](nowhere.md)\n```")
    out = B.rewrite_links(text, "README.md", "about.md", site)
    assert "[the findings](findings.md#lenet-5)" in out
    assert "`bench/README.md`" in out and "[bench" not in out
    assert "the code (`minprune/prune/criteria.py`)" in out
    assert "[not a link](nowhere.md)" in out, "code blocks are left alone"
    doc = B.rewrite_links("![fig](figures/a.png) and [readme](../README.md)", "docs/findings.md",
                          "findings.md", site)
    assert doc == "![fig](figures/a.png) and [readme](about.md)"
    with pytest.raises(ValueError, match="not part of the site"):
        B.rewrite_links("![fig](../results/x.png)", "docs/findings.md", "findings.md", site)


def test_docstrings_become_restructuredtext():
    lines = ["Drop every mask (the `output_mask`s too). Scores |w|, *emphasis*, a*b and **kwargs.",
             'Load ``"mnist5k"`` by name.', "",
             "* first item with `code`", "  continued", "* second", "",
             "Definitions:", "    sparsity   = zeros / all", "",
             "sparsity     fraction of weights", "             that are 0", "",
             ">>> f(1)", "2"]
    rst = "\n".join(B.docstring_rst(lines))
    assert "``output_mask``\\ s" in rst and "\\|w\\|" in rst and "*emphasis*" in rst
    assert "a\\*b" in rst and "\\*\\*kwargs" in rst and '``"mnist5k"``' in rst
    assert "- first item with ``code``\n  continued\n- second" in rst
    assert "Definitions:\n\n::\n\n        sparsity   = zeros / all" in rst
    assert "::\n\n    sparsity     fraction of weights\n                 that are 0" in rst
    assert ">>> f(1)\n2" in rst


def test_every_docstring_is_valid_restructuredtext():
    docutils_core = pytest.importorskip("docutils.core")   # comes with the `book` extra
    import inspect
    import io

    docs = []
    for name, _ in B.api_modules():
        module = __import__(name, fromlist=["_"])
        docs.append((name, module.__doc__))
        for attr, obj in vars(module).items():
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(obj, "__module__", "") == name:
                docs.append((f"{name}.{attr}", obj.__doc__))
    problems = []
    for name, doc in docs:
        if not doc:
            continue
        rst = "\n".join(B.docstring_rst(inspect.cleandoc(doc).split("\n")))
        errors = io.StringIO()
        docutils_core.publish_doctree(rst, settings_overrides={"warning_stream": errors, "report_level": 2})
        if errors.getvalue():
            problems.append(f"{name}: {errors.getvalue().strip()}")
    assert not problems, "\n".join(problems[:10])


def test_leaderboard_page(tmp_path):
    board = tmp_path / "leaderboard.csv"
    board.write_text("rank,student,accuracy,compression,points\n1,ada,0.981,20.5,9\n2,bob|x,0.95,10.0,7\n")
    page = B.leaderboard_page(board)
    assert page.startswith("# Class leaderboard")
    assert "| rank | student | accuracy | compression | points |" in page
    assert "| 1 | ada | 0.981 | 20.5 | 9 |" in page and "bob\\|x" in page
    bad = tmp_path / "bad.csv"
    bad.write_text("student,points\nada,3\n")
    with pytest.raises(ValueError, match="accuracy"):
        B.leaderboard_page(bad)
    with pytest.raises(ValueError, match="not a file"):
        B.leaderboard_page(tmp_path / "missing.csv")


def test_sync_writes_only_what_changed(tmp_path):
    assert B.sync({"a.md": b"A", "sub/b.md": b"B"}, tmp_path) == 2
    stamp = (tmp_path / "a.md").stat().st_mtime_ns
    assert B.sync({"a.md": b"A", "sub/b.md": b"B"}, tmp_path) == 0
    assert (tmp_path / "a.md").stat().st_mtime_ns == stamp
    assert B.sync({"a.md": b"A"}, tmp_path) == 1          # a page that went away is removed
    assert not (tmp_path / "sub").exists()
