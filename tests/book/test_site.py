"""The course website in a real browser: `make test-book` builds the site, then this file serves it on
localhost and opens every page in headless Chromium (Debian's `chromium`, driven by Playwright).

For each page: it answers 200 and has its title (the page's heading is in the <title>); every image
loaded (`naturalWidth > 0`); every internal link answers 200 and its #anchor exists; the console
shows no errors and nothing is fetched from outside localhost; a lesson page shows every output and
figure of its notebook and none of the reference solutions' lines. A screenshot of each page goes to
`_build/screenshots/`.

Not part of `make test` (pyproject's addopts ignore tests/book): it needs the built site, the `book`
extra and /usr/bin/chromium.
"""
from __future__ import annotations

import functools
import html.parser
import http.server
import os
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
HTML = Path(os.environ.get("BOOK_HTML", ROOT / "_build" / "book" / "html"))
SOURCES = Path(os.environ.get("BOOK_SRC", ROOT / "_build" / "book-src"))
LESSONS = Path(os.environ.get("BOOK_LESSONS", ROOT / "lessons"))
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# generated pages with no heading of their own to look for in the title
NO_HEADING = {"search.html", "genindex.html", "py-modindex.html"}

pytestmark = pytest.mark.course


def lesson_stems() -> list[str]:
    return sorted(p.stem for p in LESSONS.glob("[0-9][0-9]_*.ipynb"))


def pages() -> list[str]:
    """Every page the site must have, plus every other page it has (the viewcode listings under
    _modules/ are only link-checked)."""
    expected = ["index.html", "about.html", "findings.html", "teaching.html", "website.html",
                "api/index.html"] + [f"lessons/{s}.html" for s in lesson_stems()]
    found = [p.relative_to(HTML).as_posix() for p in HTML.rglob("*.html")] if HTML.is_dir() else []
    found = [p for p in found if not p.startswith(("_static/", "_sources/", "_modules/", "_images/"))]
    return expected + sorted(set(found) - set(expected))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def base_url():
    if not (HTML / "index.html").is_file():
        pytest.fail(f"no site in {HTML}: run `make book` first (`make test-book` does)")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_Quiet, directory=str(HTML)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no browser at {CHROMIUM}: apt-get install chromium (or set CHROMIUM=...)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class _Ids(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids = set()

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key in ("id", "name") and value:
                self.ids.add(value)


@functools.cache
def fetch(url: str) -> tuple[int, frozenset]:
    """(HTTP status, ids in the page) of an internal URL."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            body = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        return e.code, frozenset()
    parser = _Ids()
    if url.split("?")[0].endswith((".html", "/")):
        parser.feed(body.decode("utf-8", "replace"))
    return status, frozenset(parser.ids)


def broken_links(hrefs, base_url: str) -> list[str]:
    """Internal links (to this server) that do not answer 200, or whose #anchor is missing."""
    broken = []
    for href in sorted(set(hrefs)):
        if not href.startswith(base_url):
            continue
        url, _, anchor = href.partition("#")
        status, ids = fetch(url)
        if status != 200:
            broken.append(f"{href} -> HTTP {status}")
        elif anchor and url.endswith(".html") and urllib.parse.unquote(anchor) not in ids:
            broken.append(f"{href} -> no element with id {anchor!r}")
    return broken


def distinctive_solution_lines(stem: str) -> list[str]:
    """Lines of the lesson's reference solutions that appear nowhere else in the lesson."""
    from minprune.course.notebooks import solution_lines

    nb = nbformat.read(LESSONS / f"{stem}.ipynb", 4)
    solutions = {line.strip() for line in solution_lines(nb)}
    elsewhere = "\n".join(c.source for c in nb.cells if not c.get("metadata", {}).get("nbgrader", {}).get(
        "solution"))
    return sorted(s for s in solutions if len(s) >= 8 and s not in elsewhere and not s.startswith("#"))


def shown_outputs(stem: str) -> tuple[int, int]:
    """(code cells with an output, images among the outputs) of the lesson's page source."""
    nb = nbformat.read(SOURCES / "lessons" / f"{stem}.ipynb", 4)
    cells = [c for c in nb.cells if c.cell_type == "code" and c.outputs]
    images = sum(1 for c in cells for o in c.outputs
                 if any(k.startswith("image/") for k in o.get("data", {})))
    return len(cells), images


def test_every_lesson_is_in_the_site():
    missing = [s for s in lesson_stems() if not (HTML / "lessons" / f"{s}.html").is_file()]
    assert lesson_stems(), f"no lessons in {LESSONS}"
    assert not missing, f"lessons without a page in {HTML}: {missing}"


@pytest.mark.parametrize("path", pages())
def test_page(path, base_url, browser):
    if not (HTML / path).is_file():
        pytest.fail(f"{path} was not built")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors, outside = [], []
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text} at {m.location.get('url')}")
            if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"uncaught exception: {e}"))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url} ({r.failure})")
            if r.url.startswith(base_url) else None)

    def route(r):
        if r.request.url.startswith((base_url, "data:", "blob:")):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    try:
        response = page.goto(base_url + path, wait_until="load")
        assert response is not None and response.status == 200, f"{path}: HTTP {response and response.status}"
        # every image eagerly, then wait until each has loaded or failed
        page.evaluate("""() => Promise.all(Array.from(document.images).map(img => {
            img.loading = 'eager';
            return img.complete ? null : new Promise(done => { img.onload = img.onerror = done; });
        }))""")
        page.wait_for_load_state("networkidle", timeout=90_000)   # MathJax loads after "load"
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / (path[:-len(".html")].replace("/", "__") + ".png")))

        title = page.title()
        heading = page.evaluate("() => { const h = document.querySelector('main h1, article h1, h1');"
                                " return h ? h.textContent : null; }")
        assert title.strip(), f"{path}: empty <title>"
        if path not in NO_HEADING:
            assert heading, f"{path}: no <h1>"
            heading = re.sub(r"[#¶]\s*$", "", heading.strip()).strip()
            assert heading in title, f"{path}: the heading {heading!r} is not in the title {title!r}"

        images = page.evaluate("() => Array.from(document.images).map(i => [i.currentSrc || i.src, "
                               "i.naturalWidth])")
        assert not [src for src, width in images if width == 0], \
            f"{path}: images that did not load: {[src for src, width in images if width == 0]}"

        hrefs = page.evaluate("() => Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
        broken = broken_links(hrefs, base_url)
        assert not broken, f"{path}: broken internal links:\n" + "\n".join(broken)

        if path.startswith("lessons/"):
            stem = Path(path).stem
            want = shown_outputs(stem)
            got = (page.locator(".cell_output").count(), page.locator(".cell_output img").count())
            assert got == want, f"{path}: (outputs, figures) shown {got}, in the run {want}"
            if want[1]:     # a second screenshot with the lesson's first figure in view
                page.locator(".cell_output img").first.scroll_into_view_if_needed()
                page.screenshot(path=str(SHOTS / f"lessons__{stem}__figure.png"))
            text = page.evaluate("() => document.body.innerText")
            assert "full-mode" in text, f"{path}: no note saying where the outputs come from"
            leaked = [line for line in distinctive_solution_lines(stem) if line in text]
            assert not leaked, f"{path}: lines of the reference solutions on the page: {leaked[:5]}"
        if path == "index.html":      # a second screenshot with the lessons table in view
            page.locator("table").first.scroll_into_view_if_needed()
            page.screenshot(path=str(SHOTS / "index__lessons.png"))
        if path == "leaderboard.html":
            headers = page.evaluate("() => Array.from(document.querySelectorAll('table th'))"
                                    ".map(th => th.textContent.trim())")
            missing = [c for c in ("student", "accuracy", "compression", "points") if c not in headers]
            assert not missing, f"leaderboard: columns missing from the table: {missing}"

        assert not outside, f"{path}: the page fetched from outside localhost: {outside}"
        assert not errors, f"{path}: console errors:\n" + "\n".join(errors)
    finally:
        page.close()
