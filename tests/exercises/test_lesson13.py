"""Checkers of lesson 13 (strategy sweeps): the lesson's reference answers pass the self-check and
hidden variants; the usual slips fail with their hint; the library's own compression ratio and
summary are refused; a replayed answer fails the hidden variants."""
import numpy as np
import pytest
from checking import accepts, blocked, fails, fails_hidden, passes_hidden, replay_of

import minprune as mp
import minprune.exercises as ex
from minprune import experiments
from minprune.course import notebooks as N

pytestmark = pytest.mark.course


def _weights(model):
    return np.concatenate([m.weight.data.ravel() for m in mp.prune.prunable_layers(model).values()])


# --- 13.1 compression ratio ------------------------------------------------------------------------
def compression(model):
    sizes = [(p.data.size, np.count_nonzero(p.data)) for _, p in model.named_parameters()]
    return sum(s for s, _ in sizes) / sum(nz for _, nz in sizes)


def test_compression_reference_passes(capsys):
    answer = N.reference_answer("13.1")
    accepts(ex.check_compression_ratio, answer, capsys=capsys)
    passes_hidden(ex.check_compression_ratio, answer)


def test_compression_written_independently_passes(capsys):
    accepts(ex.check_compression_ratio, compression, capsys=capsys)
    passes_hidden(ex.check_compression_ratio, compression)


def test_compression_of_weights_only_fails():
    fails(ex.check_compression_ratio,
          lambda m: _weights(m).size / np.count_nonzero(_weights(m)), "biases")


def test_compression_upside_down_fails():
    fails(ex.check_compression_ratio, lambda m: 1 / compression(m), "upside down")


def test_compression_from_sparsity_fails():
    fails(ex.check_compression_ratio, lambda m: 1 / np.mean(_weights(m) != 0), "biases")


def test_compression_without_batchnorm_fails():
    def conv_and_linear(model):
        ps = [p.data for m in mp.prune.prunable_layers(model).values()
              for p in (m.weight, m.bias) if p is not None]
        return sum(p.size for p in ps) / sum(np.count_nonzero(p) for p in ps)
    fails(ex.check_compression_ratio, conv_and_linear, "BatchNorm")


def test_compression_over_pruned_ones_fails():
    def over_zeros(model):
        ps = [p.data for p in model.parameters()]
        with np.errstate(divide="ignore"):
            return sum(p.size for p in ps) / sum(p.size - np.count_nonzero(p) for p in ps)
    fails(ex.check_compression_ratio, over_zeros, "not by the pruned")


def test_compression_returning_none_fails():
    fails(ex.check_compression_ratio, lambda m: None, "return")


def test_compression_by_the_library_is_blocked():
    for answer in (lambda m: mp.prune.compression_ratio(m),
                   lambda m: mp.prune.count_params(m) / mp.prune.count_nonzero(m),
                   lambda m: mp.prune.report(m, (1, 8, 8), show=False)[-1]["params"],
                   mp.prune.compression_ratio):
        err = blocked(ex.check_compression_ratio, answer)
        assert "compression_ratio" not in str(err)


def test_compression_replayed_fails_hidden():
    fails_hidden(ex.check_compression_ratio, replay_of(ex.check_compression_ratio, compression))


def test_compression_message_does_not_name_the_library(capsys):
    ex.check_compression_ratio(compression)
    assert "compression_ratio" not in capsys.readouterr().out
    with pytest.raises(AssertionError) as err:
        ex.check_compression_ratio(lambda m: 1 / compression(m))
    assert "compression_ratio" not in str(err.value)


# --- 13.2 seed summary -----------------------------------------------------------------------------
def summary(rows):
    keys = sorted({(r["strategy"], r["sparsity"]) for r in rows})
    out = {}
    for k in keys:
        accs = np.array([r["accuracy"] for r in rows if (r["strategy"], r["sparsity"]) == k])
        out[k] = (accs.mean(), accs.min(), accs.max())
    return out


def test_summary_reference_passes(capsys):
    answer = N.reference_answer("13.2")
    accepts(ex.check_seed_summary, answer, capsys=capsys)
    passes_hidden(ex.check_seed_summary, answer)


def test_summary_written_independently_passes(capsys):
    accepts(ex.check_seed_summary, summary, capsys=capsys)
    passes_hidden(ex.check_seed_summary, summary)


def test_summary_mean_std_fails():
    def mean_std(rows):
        out = {}
        for k, (mean, _, _) in summary(rows).items():
            accs = [r["accuracy"] for r in rows if (r["strategy"], r["sparsity"]) == k]
            out[k] = (mean, mean - np.std(accs), mean + np.std(accs))
        return out
    fails(ex.check_seed_summary, mean_std, "not mean ± standard deviation")


def test_summary_max_before_min_fails():
    fails(ex.check_seed_summary, lambda rows: {k: (m, hi, lo) for k, (m, lo, hi)
                                               in summary(rows).items()}, "min before max")


def test_summary_median_fails():
    def median(rows):
        out = {}
        for k, (_, lo, hi) in summary(rows).items():
            accs = [r["accuracy"] for r in rows if (r["strategy"], r["sparsity"]) == k]
            out[k] = (np.median(accs), lo, hi)
        return out
    fails(ex.check_seed_summary, median, "median")


def test_summary_grouped_by_strategy_only_fails():
    def by_strategy(rows):
        groups = {}
        for r in rows:
            groups.setdefault(r["strategy"], []).append(r["accuracy"])
        return {(s, sp): (np.mean(groups[s]), min(groups[s]), max(groups[s]))
                for s, sp in {(r["strategy"], r["sparsity"]) for r in rows}}
    fails(ex.check_seed_summary, by_strategy, "strategy AND sparsity")


def test_summary_keyed_by_strategy_fails():
    fails(ex.check_seed_summary, lambda rows: {r["strategy"]: (0, 0, 0) for r in rows},
          "group the rows by both")


def test_summary_of_the_wrong_column_fails():
    def pruned_accuracy(rows):
        out = {}
        for r in rows:
            out.setdefault((r["strategy"], r["sparsity"]), []).append(r["accuracy_pruned"])
        return {k: (np.mean(v), min(v), max(v)) for k, v in out.items()}
    fails(ex.check_seed_summary, pruned_accuracy, "accuracy")


def test_summary_wrong_type_fails():
    fails(ex.check_seed_summary, lambda rows: [1, 2], "dict")
    fails(ex.check_seed_summary, lambda rows: None, "return")


def test_summary_by_the_library_is_blocked():
    def via_library(rows):
        return {(s["strategy"], s["sparsity"]): (s["mean"], s["min"], s["max"])
                for s in experiments.summarize(rows)}
    err = blocked(ex.check_seed_summary, via_library)
    assert "summarize" not in str(err)
    blocked(ex.check_seed_summary, experiments.summarize)


def test_summary_replayed_fails_hidden():
    fails_hidden(ex.check_seed_summary, replay_of(ex.check_seed_summary, summary))


def test_hidden_variants_differ_from_the_self_check():
    from minprune.exercises import lesson13
    public = lesson13._sweep_rows(None)
    for seed in (11, 2024):
        rows = lesson13._sweep_rows(seed)
        assert {(r["strategy"], r["sparsity"]) for r in rows} != \
            {(r["strategy"], r["sparsity"]) for r in public}
        assert [w for w, _ in lesson13._compression_cases(seed)] != \
            [w for w, _ in lesson13._compression_cases(None)]


@pytest.mark.parametrize("checker", [ex.check_compression_ratio, ex.check_seed_summary])
def test_checkers_refuse_non_callables(checker):
    with pytest.raises(TypeError, match="fn"):
        checker(42)


# --- half-right answers ---------------------------------------------------------------------------
def test_compression_counting_every_bias_as_alive_fails():
    """Right after unstructured pruning (biases stay nonzero), wrong after filter pruning, which
    zeroes the biases (and BatchNorm parameters) of the pruned filters."""
    def biases_alive(model):
        ps = [p.data for p in model.parameters()]
        return sum(p.size for p in ps) / sum(np.count_nonzero(p) if p.ndim > 1 else p.size for p in ps)

    fails(ex.check_compression_ratio, biases_alive, "filter pruning: expected")


def test_summary_with_min_and_max_over_every_sparsity_fails():
    def strategy_range(rows):   # the mean is right, the range spans the strategy's every sparsity
        out = {}
        for k, (mean, _, _) in summary(rows).items():
            accs = [r["accuracy"] for r in rows if r["strategy"] == k[0]]
            out[k] = (mean, min(accs), max(accs))
        return out

    fails(ex.check_seed_summary, strategy_range, "expected")


def test_compression_and_summary_by_hand():
    lin = mp.nn.Linear(3, 2)   # 6 weights (2 zero) + 2 biases (1 zero): 8 / 5
    lin.weight.data[...] = [[0, 1, 2], [3, 0, 4]]
    lin.bias.data[...] = [0, 5]
    assert compression(mp.nn.Sequential(lin)) == 8 / 5
    rows = [dict(strategy="a", sparsity=0.5, seed=s, accuracy=acc) for s, acc in enumerate([0.9, 0.7, 0.8])]
    assert summary(rows) == {("a", 0.5): pytest.approx((0.8, 0.7, 0.9))}
