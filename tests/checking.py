"""Shared helpers for testing the lesson checkers in minprune.exercises."""
import pytest


def accepts(check, *args, capsys):
    """The checker passes `args` and says so."""
    check(*args)
    assert "✓ correct" in capsys.readouterr().out


def rejects(check, *args, match=None):
    """The checker fails `args` with an AssertionError whose hint matches `match`."""
    with pytest.raises(AssertionError, match=match):
        check(*args)


def fails(check, answer, hint):
    """Shorthand: the checker rejects one answer with a hint matching `hint`."""
    rejects(check, answer, match=hint)
