# `make demo` and `make test` set everything up on a fresh machine that only has Python 3.11+.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BOOK_STAMP := $(VENV)/.installed-book

.PHONY: demo test test-full test-full-other-blas lessons book test-book bench lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,cluster]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m minprune demo

test: $(STAMP)
	MINPRUNE_FAST=1 $(PY) -m pytest -q

# Every lesson in full mode (cached in _build/executed until the lesson or the library changes): the
# claims each lesson's text makes must hold, and the compute time its frame states must match.
test-full: $(STAMP)
	$(PY) -m pytest -q --full -m full tests/lessons

# The claims again as another CPU would compute them: OpenBLAS's Sandybridge kernels (x86) round
# differently from the ones a newer CPU picks, and 20 epochs of training carry the difference into
# every accuracy. A claim that holds only by a hair fails here. Own baselines and run cache; the
# frame-time check skips itself (the frames state the time with the kernels this CPU picks).
test-full-other-blas: $(STAMP)
	OPENBLAS_CORETYPE=Sandybridge MINPRUNE_CACHE="$(CURDIR)/_build/other-blas" \
	    $(PY) -m pytest -q --full -m full tests/lessons

lessons: $(STAMP)
	$(VENV)/bin/jupyter lab lessons/

# The website's packages (the `book` extra: Sphinx, MyST-NB, the theme, Playwright) on top of `dev`,
# only for the two targets below; `make test` needs only `dev`.
$(BOOK_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e ".[dev,cluster,book]"
	touch $(BOOK_STAMP)

# The course website in _build/book/html: every lesson run in full mode (cached in _build/executed),
# the README, docs/findings.md, docs/teaching.md, docs/website.md and the API reference.
# `make book LEADERBOARD=path/to/leaderboard.csv` adds the class leaderboard page.
book: $(BOOK_STAMP)
	$(PY) -m minprune.course.book $(if $(LEADERBOARD),--leaderboard "$(LEADERBOARD)")

# The site served on localhost and opened page by page in headless Chromium (Debian's chromium
# package at /usr/bin/chromium); screenshots in _build/screenshots.
test-book: book
	$(PY) -m pytest -q tests/book tests/test_course_book.py

bench: $(STAMP)
	$(PY) -m pip install --quiet "torch==2.13.0" scipy
	$(PY) bench/bench_engine.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache
