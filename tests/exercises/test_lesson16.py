"""Checker of lesson 16 (the capstone: prune LeNet-5 as far as you can).

The checker returns a Score instead of passing or failing: 0 below the accuracy bar or over the
training budget, else log(compression) / log(target). These tests run it in fast mode (a toy baseline on a few
hundred digits, cached in a temporary folder), where no pipeline reaches the real 97% bar, so the
tests that need a positive score lower `MIN_ACCURACY`, the checker's documented knob. Invalid answers
raise AssertionError with a hint, as in every other checker.
"""
import copy
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import minprune as mp
import minprune.exercises as ex
from minprune.course import notebooks as N
from minprune.exercises import lesson16 as L
from minprune.exercises.core import EXERCISES, Score

pytestmark = pytest.mark.course

ROOT = Path(__file__).resolve().parents[2]
HIDDEN = 2024   # any hidden variant: the capstone's hidden check does not depend on its number


@pytest.fixture(scope="module", autouse=True)
def fast_capstone(tmp_path_factory):
    """Fast mode and a cache of our own: the toy baselines are trained once for this module."""
    patch = pytest.MonkeyPatch()
    patch.setenv("MINPRUNE_FAST", "1")
    patch.setenv("MINPRUNE_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    patch.undo()


def reference():
    return N.reference_answer("16.1")


def one_shot(sparsity):
    """A pipeline that prunes once, globally by magnitude, and does not retrain."""
    def pipeline(model, train_data):
        mp.prune.prune(model, sparsity, criterion="magnitude", scope="global")
        return model
    return pipeline


def test_registered_as_the_open_ended_capstone():
    check = EXERCISES["16.1"]
    assert check is ex.check_capstone
    assert check.blocks == () and check.variants == 1
    assert check.timeout >= 300   # room for a cold baseline plus the budget


def test_points_fraction_is_zero_below_the_bar_and_grows_with_compression():
    bar = L.MIN_ACCURACY
    assert L.points_fraction(bar - 0.001, 40.0) == 0.0
    assert L.points_fraction(1.0, 1.0) == 0.0                      # dense: nothing earned
    fractions = [L.points_fraction(bar, c) for c in (2, 5, 10, 20, 40)]
    assert fractions == sorted(fractions) and len(set(fractions)) == 5
    assert fractions[2] == pytest.approx(math.log(10) / math.log(L.TARGET_COMPRESSION))
    assert L.points_fraction(bar, L.TARGET_COMPRESSION) == 1.0
    assert L.points_fraction(bar, 10 * L.TARGET_COMPRESSION) == 1.0  # capped


def test_reference_scores_on_the_held_out_digits(monkeypatch, capsys):
    monkeypatch.setattr(L, "MIN_ACCURACY", 0.5)   # the toy baseline of fast mode is far below 97%
    score = ex.check_capstone(reference(), variant=HIDDEN)
    assert isinstance(score, Score)
    d = score.detail
    assert {"accuracy", "compression", "sparsity", "seconds"} <= set(d)
    assert d["evaluated_on"] == "test" and d["digits"] == L.FAST.test_digits
    assert d["accuracy"] >= 0.5 and d["compression"] > 5 and not d["over_budget"]
    assert 0 < score.fraction == pytest.approx(L.points_fraction(d["accuracy"], d["compression"]))
    out = capsys.readouterr().out
    assert "test digits" in out and f"points fraction {score.fraction:.3f}" in out


def test_self_check_scores_on_validation_digits_the_pipeline_never_gets():
    seen = {}

    def spy(model, train_data):
        seen["train"] = train_data
        return model
    score = ex.check_capstone(spy)
    train, val = L.capstone_data()
    assert len(seen["train"][1]) == len(train[1]) == L.FAST.train_digits - L.FAST.validation_digits
    assert score.detail["evaluated_on"] == "validation"
    assert score.detail["digits"] == len(val[1]) == L.FAST.validation_digits
    given = {x.tobytes() for x in seen["train"][0]}
    assert not any(x.tobytes() in given for x in val[0]), "validation digits leaked to the pipeline"
    assert score.fraction == 0.0 and score.detail["compression"] == pytest.approx(1.0, abs=1e-3)


def test_the_pipeline_gets_a_copy_of_the_baseline():
    def vandal(model, train_data):       # wrecks the model it is given, in place
        for p in model.parameters():
            p.data[...] = 0.0
        return model
    assert ex.check_capstone(vandal).fraction == 0.0
    kept = {}

    def spy(model, train_data):
        kept["w"] = model.features[0].weight.data.copy()
        return model
    ex.check_capstone(spy)
    assert np.array_equal(kept["w"], L.baseline().features[0].weight.data)
    assert np.count_nonzero(kept["w"])


def test_below_the_bar_scores_zero_without_an_error(capsys):
    score = ex.check_capstone(one_shot(0.995), variant=HIDDEN)
    assert score.fraction == 0.0 and score.detail["accuracy"] < L.MIN_ACCURACY
    assert score.detail["compression"] > 50
    assert "below the 97% bar" in capsys.readouterr().out


def test_scores_grow_with_compression(monkeypatch):
    monkeypatch.setattr(L, "MIN_ACCURACY", 0.0)
    scores = [ex.check_capstone(one_shot(s), variant=HIDDEN) for s in (0.5, 0.8)]
    assert scores[0].detail["compression"] < scores[1].detail["compression"]
    assert 0 < scores[0].fraction < scores[1].fraction < 1


def test_the_budget_counts_digits_trained_on_with_gradients():
    def evaluates_a_lot(model, train_data):     # forward passes without gradients are free
        for _ in range(5):
            mp.train.evaluate(model, train_data)
        return model

    def gradient_criterion(model, train_data):  # a gradient criterion's forward pass counts
        x, y = train_data
        mp.prune.prune(model, 0.5, criterion="gradient", scope="global", batch=(x[:100], y[:100]))
        return model

    def one_epoch_on_a_copy(model, train_data):  # so does training, on a copy too
        mp.train.fit(copy.deepcopy(model), train_data, 1, progress=False)
        return model
    n = len(L.capstone_data()[0][1])
    epochs = [ex.check_capstone(p).detail["epochs"]
              for p in (evaluates_a_lot, gradient_criterion, one_epoch_on_a_copy)]
    assert epochs == [0.0, pytest.approx(100 / n), 1.0]


def test_over_the_budget_scores_zero(monkeypatch, capsys):
    monkeypatch.setattr(L, "MIN_ACCURACY", 0.0)
    monkeypatch.setattr(L, "BUDGET_EPOCHS", 1)

    def two_epochs(model, train_data):
        mp.prune.prune(model, 0.5, criterion="magnitude", scope="global")
        mp.train.fit(model, train_data, 2, lr=0.01, progress=False)
        return model
    score = ex.check_capstone(two_epochs)
    assert score.detail["over_budget"] and score.detail["epochs"] == 2.0 and score.fraction == 0.0
    assert "over the budget of 1 epochs" in capsys.readouterr().out


def _pruned_then_tampered(model, train_data):
    mp.prune.prune(model, 0.9, criterion="magnitude", scope="global")
    w = model.classifier[1].weight
    w.data[~w.mask] = 0.01           # written behind the mask's back
    return model


def _compacted(model, train_data):
    mp.prune.prune(model, 0.5, criterion="magnitude", granularity="filter", scope="layerwise",
                   exclude=["classifier.5"])
    return mp.prune.compact(model)


def _diverged(model, train_data):
    model.classifier[3].weight.data[0, 0] = np.nan
    return model


def _last_bias_diverged(model, train_data):   # half right: every parameter finite but the last
    mp.prune.prune(model, 0.5, criterion="magnitude", scope="global")
    model.classifier[5].bias.data[-1] = np.inf
    return model


def _first_layer_tampered(model, train_data):   # half right: every mask respected but the first
    mp.prune.prune(model, 0.5, criterion="magnitude", scope="global")
    w = model.features[0].weight
    w.data[~w.mask] = -0.01
    return model


def _bad_mask(model, train_data):    # the right shape, but 0.0/1.0 floats instead of booleans
    w = model.classifier[5].weight
    w.mask = np.ones(w.shape)
    return model


def _bad_mask_shape(model, train_data):   # booleans, but not the weight's shape
    model.classifier[5].weight.mask = np.ones(5, dtype=bool)
    return model


@pytest.mark.parametrize("answer, hint", [
    (lambda model, data: None, r"returned None(.|\n)*return model"),
    (lambda model, data: mp.prune.get_masks(model), r"returned a dict, not a model(.|\n)*masks"),
    (lambda model, data: mp.models.lenet_300_100(), r"not the LeNet-5(.|\n)*do not build another"),
    (_compacted, r"has shape(.|\n)*compacted"),
    (_pruned_then_tampered, r"classifier.1.weight: \d+ weights are pruned by its mask but not 0"
                            r"(.|\n)*p.data \*= p.mask"),
    (_diverged, r"NaN(.|\n)*learning rate"),
    (_bad_mask, r"mask has shape(.|\n)*boolean"),
    (_last_bias_diverged, r"classifier.5.bias holds NaN or infinite"),
    (_first_layer_tampered, r"features.0.weight: \d+ weights are pruned by its mask but not 0"),
    (_bad_mask_shape, r"mask has shape \(5,\)(.|\n)*boolean"),
], ids=["none", "masks", "another-net", "compacted", "mask-violated", "nan", "bad-mask",
        "last-bias-inf", "first-layer-mask-violated", "bad-mask-shape"])
def test_invalid_returns_fail_with_a_hint(answer, hint):
    with pytest.raises(AssertionError, match=hint):
        ex.check_capstone(answer)


def test_not_a_function_is_refused():
    with pytest.raises(TypeError, match="expected a function"):
        ex.check_capstone("prune_pipeline")


def test_two_graders_building_the_baseline_at_once_train_it_once(tmp_path):
    """Two grading processes start on a cold cache at the same moment: the second waits for the
    first and loads its checkpoint; both get the same weights and no temporary file is left."""
    script = textwrap.dedent("""
        import sys
        import numpy as np
        from minprune import experiments
        from minprune.exercises import lesson16 as L
        calls = []
        fit = experiments.train.fit
        experiments.train.fit = lambda *a, **k: calls.append(1) or fit(*a, **k)
        model = L.baseline()
        np.save(sys.argv[1], model.features[0].weight.data)
        print("trained" if calls else "loaded")
    """)
    env = dict(os.environ, MINPRUNE_FAST="1", MINPRUNE_CACHE=str(tmp_path / "cache"),
               PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / f"w{i}.npy")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    assert sorted(out.strip() for out, _ in outs) == ["loaded", "trained"]
    assert np.array_equal(np.load(tmp_path / "w0.npy"), np.load(tmp_path / "w1.npy"))
    files = sorted(p.name for p in (tmp_path / "cache" / "baselines").iterdir())
    assert [f for f in files if f.endswith(".npz")] and not [f for f in files if ".tmp" in f]
