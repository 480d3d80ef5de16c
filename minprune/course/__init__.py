"""The classroom kit: exercises as nbgrader-marked cells, the student edition, the autograder
(`minprune course student|grade`), claims that tie a lesson's text to its run, and full-mode
execution for the website.

Only `claim` is imported here; the rest needs nbformat (installed with the `dev` extra) and is
imported from its module: `minprune.course.notebooks`, `minprune.course.grade`, ...
"""
from .claims import claim

__all__ = ["claim"]
