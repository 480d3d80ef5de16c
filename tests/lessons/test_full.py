"""`make test-full`: every lesson run top to bottom in full mode (cached until the lesson or the
library changes, the same runs the website shows). A claim in a lesson (`claim(...)`) that the full
run does not support raises, so this fails when a lesson's text and its results drift apart. The
compute time a lesson's frame states must match the measured one: the first-time figure when the run
trained baselines (a fresh $MINPRUNE_CACHE, as in CI), else the usual one.

Not part of `make test` (it takes minutes): run with `pytest --full -m full` or `make test-full`.
`make test-full-other-blas` runs the claims again with other BLAS kernels (see the Makefile).
"""
import os
import re

import pytest
from test_prose import IDS, NOTEBOOKS, stated_times

pytestmark = [pytest.mark.full, pytest.mark.course]


def run(path):
    """The full-mode run of `path` (cached), or a test failure showing the cell that raised."""
    from nbclient.exceptions import CellExecutionError

    from minprune.course.execute import execute

    try:
        return execute(path, fast=False)
    except CellExecutionError as err:   # the message holds the cell and its traceback
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
        pytest.fail(f"{path.name} failed in full mode:\n{message}", pytrace=False)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_lesson_runs_in_full_mode_and_its_claims_hold(path):
    nb = run(path)
    printed = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "fast mode, not checked" not in printed


@pytest.mark.skipif(bool(os.environ.get("OPENBLAS_CORETYPE")),
                    reason="the frame states the time with the BLAS kernels this CPU picks itself")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_lesson_takes_the_time_its_frame_states(path):
    nb = run(path)
    record = nb.metadata["minprune"]["execution"]
    _, usual, first = stated_times(nb)
    trained = record.get("trained", [])
    stated, when = (first, "the first time") if trained and first else (usual, "")
    measured = record["seconds"]
    assert measured / 2 - 15 <= stated <= 2 * measured + 15, \
        (f"{path.name}: the frame says running ≈ {stated:g} s {when}; full mode took {measured:g} s"
         f" (baselines trained in this run: {', '.join(trained) or 'none'})")
