"""While a student's function runs, the library functions an exercise asks for are blocked
everywhere they can be reached, and restored afterwards."""
import numpy as np
import pytest

import minprune as mp
from minprune.exercises.blocking import WriteItYourself, blocked, guard, resolve
from minprune.prune import criteria, metrics

pytestmark = pytest.mark.course


def _refused(fn):
    with pytest.raises(WriteItYourself, match="exercise 04.1 asks you to write this yourself"):
        fn()


def test_every_door_to_a_blocked_function_is_closed_and_reopened():
    model = mp.models.lenet_300_100(seed=0)
    student = {"sp": metrics.sparsity}                        # imported at the top of a notebook
    before = (mp.prune.sparsity, metrics.sparsity, criteria.CRITERIA["snip"], mp.Tensor.backward)
    with blocked("04.1", ["minprune.prune.metrics.sparsity", "minprune.prune.criteria.snip",
                          "minprune.tensor.Tensor.backward"], [student]):
        _refused(lambda: mp.prune.sparsity(model))             # the package's re-export
        _refused(lambda: metrics.sparsity(model))              # the defining module
        _refused(lambda: student["sp"](model))                 # the student's own name
        _refused(lambda: criteria.CRITERIA["snip"](model, {}, None))   # a registry entry
        t = mp.tensor(np.ones(3), requires_grad=True)
        _refused(lambda: t.sum().backward())                   # a method, on its class
        assert "sparsity" not in str(WriteItYourself)
    after = (mp.prune.sparsity, metrics.sparsity, criteria.CRITERIA["snip"], mp.Tensor.backward)
    assert all(a is b for a, b in zip(before, after))
    assert student["sp"] is metrics.sparsity
    assert mp.prune.sparsity(model) == 0.0


def test_an_inherited_method_is_restored_as_inherited():
    class Base:
        def f(self):
            return 1

    class Child(Base):
        pass

    import sys
    import types
    mod = types.ModuleType("minprune._blocking_probe")
    mod.Child = Child
    sys.modules[mod.__name__] = mod
    try:
        with blocked("01.1", ["minprune._blocking_probe.Child.f"]):
            with pytest.raises(WriteItYourself):
                Child().f()
        assert "f" not in Child.__dict__ and Child().f() == 1
    finally:
        del sys.modules[mod.__name__]


def test_guard_blocks_only_while_the_answer_runs_and_the_message_names_no_function():
    calls = []

    def answer(model):
        calls.append(1)
        return mp.prune.sparsity(model)
    guarded = guard(answer, "04.1", ["minprune.prune.metrics.sparsity"])
    with pytest.raises(WriteItYourself) as err:
        guarded(mp.models.lenet_300_100(seed=0))
    assert calls and "sparsity" not in str(err.value)
    assert isinstance(err.value, AssertionError)   # a wrong answer, like every checker's verdict
    assert mp.prune.sparsity(mp.models.lenet_300_100(seed=0)) == 0.0
    assert guard(answer, "04.1", []) is answer


def test_a_misspelt_name_is_an_error_not_a_silent_no_op():
    with pytest.raises(ValueError, match="minprune.prune.metrics.sparsty"):
        resolve("minprune.prune.metrics.sparsty")
    with pytest.raises(ValueError, match="nothing.here"):
        with blocked("04.1", ["nothing.here"]):
            pass


def test_an_answer_that_is_the_library_function_is_refused():
    guarded = guard(metrics.sparsity, "04.1", ["minprune.prune.metrics.sparsity"])
    _refused(lambda: guarded(mp.models.lenet_300_100(seed=0)))
