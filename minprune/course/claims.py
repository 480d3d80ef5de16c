"""Tie a lesson's words to its run: `claim` states what the text says and checks it against the
numbers this very run produced.

    >>> claim("global magnitude beats layerwise at 90%", acc_global > acc_layerwise,
    ...       f"{acc_global:.3f} vs {acc_layerwise:.3f}")
    ✓ global magnitude beats layerwise at 90% (0.909 vs 0.706)

In full mode a claim that does not hold raises, so `make test-full` fails when the text and the
results drift apart. In fast mode (`MINPRUNE_FAST=1`: fewer epochs and samples) the numbers are
not the lesson's real results, so a failed claim is only reported.
"""
from __future__ import annotations

from ..data import fast_mode


def claim(statement: str, holds, evidence: str = "") -> bool:
    """Print whether `statement` holds in this run (with `evidence`, the numbers behind it); in full
    mode raise AssertionError if it does not. Returns whether it holds."""
    if not isinstance(statement, str) or not statement:
        raise TypeError(f"statement: expected the sentence the lesson claims, got {statement!r}")
    holds = bool(holds)
    detail = f" ({evidence})" if evidence else ""
    if holds:
        print(f"✓ {statement}{detail}")
    elif fast_mode():
        print(f"✗ fast mode, not checked: {statement}{detail}")
    else:
        raise AssertionError(f"The lesson's text says: {statement}; this run does not agree{detail}.")
    return holds
