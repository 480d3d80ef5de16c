"""Shared helpers for testing the lesson checkers in minprune.exercises.

Every exercise is tested the same way: the reference answer passes the self-check and hidden
variants; typical half-right answers fail with a hint; an answer that calls the library function the
exercise asks for fails (the library is blocked while the answer runs); an answer that hard-codes the
self-check's results fails the hidden variants.
"""
import pytest

from minprune.exercises import WriteItYourself

HIDDEN = [11, 2024, 987654321]   # hidden-variant seeds the tests use (the grader draws its own)


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


def passes_hidden(check, answer, seeds=HIDDEN):
    """The answer passes the hidden variants too (not only the self-check's fixed cases)."""
    for seed in seeds:
        check(answer, variant=seed)


def blocked(check, answer):
    """An answer that calls the library's own implementation is refused, without naming it."""
    with pytest.raises(WriteItYourself, match=r"asks you to write this yourself") as err:
        check(answer)
    return err.value


def fails_hidden(check, answer, seeds=HIDDEN):
    """The answer passes the self-check but fails at least one hidden variant (e.g. it hard-codes
    the self-check's expected values)."""
    check(answer)
    failures = 0
    for seed in seeds:
        try:
            check(answer, variant=seed)
        except AssertionError:
            failures += 1
    assert failures, "a hard-coded answer passed every hidden variant"


def replay_of(check, answer):
    """A hard-coded answer: it returns, call by call, what `answer` returned during the self-check,
    whatever it is asked. It passes the self-check; hidden variants must catch it."""
    import copy
    outputs = []

    def recording(*args, **kwargs):
        out = answer(*args, **kwargs)
        outputs.append(copy.deepcopy(out))
        return out
    check(recording)
    calls = iter(range(10 ** 9))

    def replay(*args, **kwargs):
        return copy.deepcopy(outputs[next(calls) % len(outputs)])
    return replay
