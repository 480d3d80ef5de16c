"""Argument checks shared by the whole library: one place, one wording.

Each check returns the value as a plain Python object (so NumPy scalars such as `np.float32(0.1)`
or `np.int64(3)` work wherever a number does) or raises before any work starts, naming the
argument, the value received and what is allowed. `bool` is not a number here, although Python
says `True == 1`: `epochs=True` is a mistake, not one epoch.

>>> number(np.float32(0.5), "lr", lo=0, lo_open=True)
0.5
>>> integer(np.int64(3), "epochs", minimum=0)
3
>>> fraction(1.5, "sparsity")
Traceback (most recent call last):
...
ValueError: sparsity: must be in [0, 1], got 1.5
>>> integer(True, "epochs")
Traceback (most recent call last):
...
TypeError: epochs: expected an int, got True (bool)
"""
from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["number", "integer", "fraction", "one_of", "boolean", "each"]


def _is_bool(value) -> bool:
    return isinstance(value, (bool, np.bool_))


def number(value, name, lo=None, hi=None, lo_open=False, hi_open=False, finite=True) -> float:
    """`value` as a float, checked to lie in the interval from `lo` to `hi` (closed unless
    `lo_open`/`hi_open`; None = unbounded). NaN is never allowed, ±inf only with `finite=False`.

    >>> number(2, "momentum", lo=0, hi=1)
    Traceback (most recent call last):
    ...
    ValueError: momentum: must be in [0, 1], got 2
    """
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number, got {value!r} ({type(value).__name__})")
    x = float(value)
    if math.isnan(x) or (finite and math.isinf(x)):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    below = lo is not None and (x <= lo if lo_open else x < lo)
    above = hi is not None and (x >= hi if hi_open else x > hi)
    if below or above:
        raise ValueError(f"{name}: must be {_interval(lo, hi, lo_open, hi_open)}, got {value!r}")
    return x


def _interval(lo, hi, lo_open, hi_open) -> str:
    if hi is None:
        return f"{'>' if lo_open else '≥'} {lo}"
    if lo is None:
        return f"{'<' if hi_open else '≤'} {hi}"
    return f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"


def fraction(value, name) -> float:
    """A number in [0, 1] (a sparsity, a probability), as a float."""
    return number(value, name, lo=0, hi=1)


def integer(value, name, minimum=None, maximum=None) -> int:
    """`value` as an int (Python or NumPy integer; not a float, not a bool), within the bounds.

    >>> integer(2.0, "rounds")
    Traceback (most recent call last):
    ...
    TypeError: rounds: expected an int, got 2.0 (float)
    """
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {value!r} ({type(value).__name__})")
    n = int(value)
    if (minimum is not None and n < minimum) or (maximum is not None and n > maximum):
        raise ValueError(f"{name}: must be {_interval(minimum, maximum, False, False)}, got {n}")
    return n


def boolean(value, name) -> bool:
    """True or False (NumPy's too); anything else, such as the string "false", is an error."""
    if not _is_bool(value):
        raise TypeError(f"{name}: expected True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


def one_of(value, name, allowed):
    """`value` itself if it is one of `allowed`, else a ValueError listing them.

    >>> one_of("sdg", "optimizer", ("sgd", "adam"))
    Traceback (most recent call last):
    ...
    ValueError: optimizer: 'sdg' is not one of ('sgd', 'adam')
    """
    if not any(isinstance(value, type(a)) and _is_bool(value) == _is_bool(a) and value == a
               for a in allowed):
        raise ValueError(f"{name}: {value!r} is not one of {tuple(allowed)!r}")
    return value


def each(values, name, check, **bounds) -> list:
    """A non-empty list or tuple, every item passed through `check` (named `name[i]`).

    >>> each([0, np.int64(1)], "seeds", integer, minimum=0)
    [0, 1]
    >>> each([], "seeds", integer)
    Traceback (most recent call last):
    ...
    ValueError: seeds: expected a non-empty list, got []
    """
    if not isinstance(values, (list, tuple)):
        raise TypeError(f"{name}: expected a list, got {values!r} ({type(values).__name__})")
    if not values:
        raise ValueError(f"{name}: expected a non-empty list, got {values!r}")
    return [check(v, f"{name}[{i}]", **bounds) for i, v in enumerate(values)]
