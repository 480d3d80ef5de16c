"""minprune.checks: the shared argument validators."""
import doctest

import numpy as np
import pytest

from minprune import checks

pytestmark = pytest.mark.engine


def test_docstring_examples_hold():
    failed, tried = doctest.testmod(checks)
    assert tried > 5 and failed == 0


@pytest.mark.parametrize("value", [0.1, 1, np.float32(0.1), np.float64(0.1), np.int64(1),
                                   np.int32(2)])
def test_number_accepts_python_and_numpy_scalars_and_returns_a_float(value):
    out = checks.number(value, "lr")
    assert type(out) is float and out == float(value)


@pytest.mark.parametrize("value", [True, np.bool_(False), "0.1", None, [0.1], np.array([0.1])])
def test_number_refuses_non_numbers_naming_the_argument(value):
    with pytest.raises(TypeError, match=r"^lr: expected a number"):
        checks.number(value, "lr")


@pytest.mark.parametrize("value", [float("nan"), np.float32("nan"), float("inf"), -np.inf])
def test_number_refuses_nan_and_infinity_unless_asked(value):
    with pytest.raises(ValueError, match="lr: expected a finite number"):
        checks.number(value, "lr")


def test_number_infinity_allowed_with_finite_false_but_never_nan():
    assert checks.number(float("inf"), "x", lo=0, finite=False) == float("inf")
    with pytest.raises(ValueError):
        checks.number(float("nan"), "x", finite=False)


@pytest.mark.parametrize("kw, bad, good", [
    (dict(lo=0), -1e-9, 0.0),
    (dict(lo=0, lo_open=True), 0.0, 1e-9),
    (dict(hi=1), 1.0 + 1e-9, 1.0),
    (dict(hi=1, hi_open=True), 1.0, 1.0 - 1e-9),
])
def test_number_bounds_are_exact_at_the_edges(kw, bad, good):
    assert checks.number(good, "x", **kw) == good
    with pytest.raises(ValueError, match=r"^x: must be .*got"):
        checks.number(bad, "x", **kw)


def test_messages_name_the_argument_the_value_and_the_allowed_range():
    with pytest.raises(ValueError) as e:
        checks.number(np.float32(2.5), "momentum", lo=0, hi=1, hi_open=True)
    assert "momentum" in str(e.value) and "2.5" in str(e.value) and "[0, 1)" in str(e.value)


def test_fraction_is_the_closed_unit_interval():
    assert checks.fraction(0, "s") == 0.0 and checks.fraction(np.float32(1), "s") == 1.0
    for bad in (-0.01, 1.01):
        with pytest.raises(ValueError, match=r"s: must be in \[0, 1\]"):
            checks.fraction(bad, "s")


@pytest.mark.parametrize("value", [0, 7, np.int64(7), np.uint8(7)])
def test_integer_accepts_ints_and_returns_a_python_int(value):
    out = checks.integer(value, "epochs", minimum=0)
    assert type(out) is int and out == int(value)


@pytest.mark.parametrize("value", [True, np.bool_(True), 2.0, np.float32(2), "2", None])
def test_integer_refuses_bools_floats_and_strings(value):
    with pytest.raises(TypeError, match="epochs: expected an int"):
        checks.integer(value, "epochs")


def test_integer_bounds():
    assert checks.integer(3, "k", minimum=3, maximum=3) == 3
    with pytest.raises(ValueError, match="k: must be ≥ 1, got 0"):
        checks.integer(0, "k", minimum=1)
    with pytest.raises(ValueError, match=r"k: must be in \[1, 5\], got 6"):
        checks.integer(6, "k", minimum=1, maximum=5)


def test_boolean():
    assert checks.boolean(np.bool_(True), "progress") is True
    for bad in (1, "false", None):
        with pytest.raises(TypeError, match="progress: expected True or False"):
            checks.boolean(bad, "progress")


def test_one_of_returns_the_value_or_lists_the_choices():
    assert checks.one_of("adam", "optimizer", ("sgd", "adam")) == "adam"
    assert checks.one_of(np.str_("sgd"), "optimizer", ("sgd", "adam")) == "sgd"
    for bad in ("SGD", None, 0, np.array(["sgd"])):
        with pytest.raises(ValueError, match=r"optimizer: .* is not one of \('sgd', 'adam'\)"):
            checks.one_of(bad, "optimizer", ("sgd", "adam"))
    with pytest.raises(ValueError):  # True == 1 in Python, but a bool is not the number 1
        checks.one_of(True, "x", (1, 2))


def test_each_checks_every_item_and_names_its_position():
    assert checks.each((0.5, np.float32(0.25)), "sparsities", checks.fraction) == [0.5, 0.25]
    with pytest.raises(ValueError, match=r"sparsities\[1\]: must be in \[0, 1\], got 1.5"):
        checks.each([0.5, 1.5], "sparsities", checks.fraction)
    with pytest.raises(ValueError, match="seeds: expected a non-empty list"):
        checks.each([], "seeds", checks.integer)
    with pytest.raises(TypeError, match="seeds: expected a list"):
        checks.each(3, "seeds", checks.integer)
    with pytest.raises(ValueError, match=r"seeds\[0\]: must be ≥ 0, got -1"):
        checks.each([-1], "seeds", checks.integer, minimum=0)
