"""Sphinx configuration of the course website (`make book`; see docs/website.md).

`python -m minprune.course.book` generates the site's sources into `_build/book-src/` (this file is
copied there) and runs sphinx-build on them. The lessons arrive already executed in full mode, so
MyST-NB only renders them (`nb_execution_mode = "off"`). Nothing is fetched from the network, at
build time or when a page is viewed: the theme's assets come with the site and math is MathML.
"""
import hashlib
import html
from pathlib import Path

from docutils import nodes
from docutils.utils.math.latex2mathml import tex2mathml
from sphinx.util import logging

from minprune.course import book
from minprune.course.book import docstring_rst

# The pages are made by minprune.course.book (docstring_rst included): when it changes, every page
# is read again (Sphinx rebuilds everything when a config value of kind "env" changes).
logger = logging.getLogger("minprune.book")
minprune_book = hashlib.sha256(Path(book.__file__).read_bytes()).hexdigest()

project = "minprune"
author = "the minprune authors"
copyright = "the minprune authors (MIT licence)"
html_title = "minprune — pruning, taught by doing it"

extensions = [
    "myst_nb",                 # Markdown (MyST) pages and executed notebooks
    "sphinx.ext.autodoc",      # the API reference, from the docstrings
    "sphinx.ext.viewcode",     # [source] links: the library is meant to be read
]

# --- notebooks: rendered, never executed here (minprune.course.execute runs them, cached) ---
nb_execution_mode = "off"
nb_output_stderr = "show"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header", "mystnb.unknown_mime_type"]

# --- the API reference ---
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_preserve_defaults = True
add_module_names = False

# --- HTML ---
html_theme = "sphinx_book_theme"
html_theme_options = {
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "use_download_button": True,
    "use_fullscreen_button": False,
    "navigation_with_keys": False,
}
# light by default: the lessons' matplotlib figures have white backgrounds (and an empty mode makes
# the theme log an error in the console)
html_context = {"default_mode": "light"}
html_static_path = ["_static"]
html_css_files = ["minprune.css"]
html_last_updated_fmt = None
html_copy_source = True
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

# Math as MathML, written at build time by docutils' LaTeX-to-MathML converter and drawn by the
# browser itself (MathML Core: Chromium 109+, Firefox, Safari): no script, nothing from a CDN. (Sphinx's
# default, MathJax, is loaded from a CDN; the MathJax 2 in the jupyter-server-mathjax wheel lacks its
# output processors.) LaTeX the converter does not know fails the build, naming the formula.
html_math_renderer = "mathml"


def _mathml(node, block: bool) -> str:
    try:
        return tex2mathml(node.astext(), as_block=block)
    except Exception as exc:   # docutils raises SyntaxError (and others) on LaTeX it does not support
        logger.warning("math that docutils cannot convert to MathML: %s (%s)", node.astext(), exc,
                       location=node)
        return f"<code>{html.escape(node.astext())}</code>"


def _visit_math(self, node):
    self.body.append(_mathml(node, block=False))
    raise nodes.SkipNode


def _visit_math_block(self, node):
    self.body.append(self.starttag(node, "div", CLASS="math"))
    self.body.append(_mathml(node, block=True) + "</div>\n")
    raise nodes.SkipNode


def _docstring(app, what, name, obj, options, lines):
    # minprune's docstrings are plain text for help(), not reStructuredText: see docstring_rst
    lines[:] = docstring_rst(lines)


def setup(app):
    app.add_config_value("minprune_book", "", "env")
    app.add_html_math_renderer("mathml", (_visit_math, None), (_visit_math_block, None))
    app.connect("autodoc-process-docstring", _docstring)
