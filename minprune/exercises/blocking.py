"""Keep the library from handing out the answer while a student's function runs.

An exercise that asks for something minprune already implements (the sparsity of a model, Fisher
scores, a rewind) is no exercise if the answer may call that implementation. While the student's
function runs, `blocked` swaps each named library function for a stand-in that raises
`WriteItYourself`, everywhere the function object is reachable by name: in every loaded `minprune`
module (so `mp.prune.sparsity`, `minprune.prune.metrics.sparsity` and a library function that calls
it internally are all blocked), in those modules' registries (`criteria.CRITERIA["snip"]`), and in the
student's own global namespace (a name imported at the top of the notebook). Methods are swapped on
their class. The originals come back as soon as the function returns.

    >>> import minprune as mp
    >>> with blocked("04.1", ["minprune.prune.metrics.sparsity"]):
    ...     mp.prune.sparsity(mp.models.lenet_300_100())
    Traceback (most recent call last):
    WriteItYourself: exercise 04.1 asks you to write this yourself ...

This keeps honest students honest; it is not a sandbox against one who sets out to cheat (their code
runs in the same process as the checker).
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import sys

_INHERITED = object()   # marks a blocked method that its class inherits rather than defines


class WriteItYourself(AssertionError):
    """Raised by a library function that the running exercise asks the student to write (an
    AssertionError, like every other wrong answer a checker reports)."""


def resolve(dotted: str):
    """`(owner, attribute, object)` for a dotted name: a module-level function such as
    "minprune.prune.metrics.sparsity", or a method such as "minprune.tensor.Tensor.backward"."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):   # the longest importable module prefix
        try:
            owner = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:-1]:
                owner = getattr(owner, name)
            return owner, parts[-1], getattr(owner, parts[-1])
        except AttributeError:
            break
    raise ValueError(f"blocks: {dotted!r} does not name a minprune function or method")


def _stand_in(exercise_id: str):
    def refuse(*args, **kwargs):
        raise WriteItYourself(
            f"exercise {exercise_id} asks you to write this yourself: your function called a minprune "
            "function that computes the answer. Use NumPy and the building blocks the lesson shows.")
    return refuse


def _namespaces(extra):
    """The dicts to patch: every loaded minprune module's globals, then the extra namespaces."""
    mods = [m for name, m in list(sys.modules.items())
            if m is not None and (name == "minprune" or name.startswith("minprune."))]
    return [vars(m) for m in mods] + [ns for ns in extra if ns is not None]


@contextlib.contextmanager
def blocked(exercise_id: str, names, namespaces=()):
    """Within the block, calling any function named in `names` raises `WriteItYourself`."""
    resolved = [resolve(n) for n in names]
    if not resolved:
        yield
        return
    refuse = _stand_in(exercise_id)
    swapped = []
    # a method is blocked on its class; a function wherever a module or the student names it
    targets = [obj for owner, _, obj in resolved if not isinstance(owner, type)]
    try:
        for owner, attr, _ in resolved:
            if isinstance(owner, type):
                swapped.append((owner.__dict__.get(attr, _INHERITED), owner, attr))
                setattr(owner, attr, refuse)
        for ns in _namespaces(namespaces):
            # a module's names, and its registries one level down (criteria.CRITERIA["snip"])
            tables = [ns] + [v for v in list(ns.values()) if type(v) is dict and v is not ns]
            for table in tables:
                for key, value in list(table.items()):
                    if any(value is t for t in targets):
                        table[key] = refuse
                        swapped.append((value, table, key))
        yield
    finally:
        for value, where, key in reversed(swapped):
            if value is _INHERITED:
                delattr(where, key)
            elif isinstance(where, type):
                setattr(where, key, value)
            else:
                where[key] = value


def guard(fn, exercise_id: str, names):
    """`fn` wrapped so that every call runs inside `blocked(exercise_id, names)`; the student's own
    module globals (`fn.__globals__`) are patched too."""
    if not names or not callable(fn):
        return fn

    # an answer that *is* a blocked function (`my_rewind = schedules.rewind`) is refused too
    if any(getattr(fn, "__func__", fn) is obj for _, _, obj in map(resolve, names)):
        fn = _stand_in(exercise_id)

    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        with blocked(exercise_id, names, [getattr(fn, "__globals__", None)]):
            return fn(*args, **kwargs)
    return guarded
