"""Checkers of lesson 12 (the lottery ticket): the lesson's reference answers pass the self-check
and hidden variants; the usual slips fail with their hint; the library's own rewind is refused; a
replayed answer fails the hidden variants."""
import numpy as np
import pytest
from checking import accepts, blocked, fails, fails_hidden, passes_hidden, replay_of

import minprune as mp
import minprune.exercises as ex
from minprune.course import notebooks as N
from minprune.prune import schedules

pytestmark = pytest.mark.course


def _kept(model):
    return np.concatenate([m.weight.data.ravel() != 0
                           for m in mp.prune.prunable_layers(model).values()])


# --- 12.1 rewind -----------------------------------------------------------------------------------
def rewind(model, state):
    """Written here, independently of the library: copy every value, then re-apply the masks."""
    for name, p in model.named_parameters():
        p.data[...] = state[name]
        if p.mask is not None:
            p.data *= p.mask
    return model


def test_rewind_reference_passes(capsys):
    answer = N.reference_answer("12.1")
    accepts(ex.check_rewind, answer, capsys=capsys)
    passes_hidden(ex.check_rewind, answer)


def test_rewind_written_independently_passes(capsys):
    accepts(ex.check_rewind, rewind, capsys=capsys)
    passes_hidden(ex.check_rewind, rewind)


def test_rewind_in_place_without_return_passes(capsys):
    def no_return(model, state):
        rewind(model, state)
    accepts(ex.check_rewind, no_return, capsys=capsys)


def test_rewind_loading_the_whole_state_fails():
    def naive(model, state):
        model.load_state_dict(state)
        return model
    fails(ex.check_rewind, naive, "mask")


def test_rewind_loading_the_whole_state_names_the_lost_masks():
    fails(ex.check_rewind, lambda m, s: m.load_state_dict(s) or m, "no longer has its current mask")


def test_rewind_restoring_only_the_masks_a_dense_state_drops_fails():
    """Half right: masks that loading removed are put back, but a state saved at an earlier round
    brings its own, older masks, and those are kept (the pruned weights they allow come back)."""
    def restores_missing_masks_only(model, state):
        masks = {n: p.mask for n, p in model.named_parameters()}
        model.load_state_dict(state)
        for n, p in model.named_parameters():
            if p.mask is None and masks[n] is not None:
                p.set_mask(masks[n])
        return model
    fails(ex.check_rewind, restores_missing_masks_only, "no longer has its current mask")


def test_rewind_forgetting_biases_fails():
    def weights_only(model, state):
        for n, m in mp.prune.prunable_layers(model).items():
            m.weight.data[...] = state[f"{n}.weight"] * m.weight.mask
        return model
    fails(ex.check_rewind, weights_only, "bias")


def test_rewind_forgetting_batchnorm_fails():
    def conv_and_linear_only(model, state):
        for n, m in mp.prune.prunable_layers(model).items():
            for p, key in ((m.weight, f"{n}.weight"), (m.bias, f"{n}.bias")):
                if p is not None:
                    p.data[...] = state[key] * (p.mask if p.mask is not None else 1)
        return model
    fails(ex.check_rewind, conv_and_linear_only, "BatchNorm")


def test_rewind_without_reapplying_the_mask_fails():
    def unmasked(model, state):
        for name, p in model.named_parameters():
            p.data[...] = state[name]
        return model
    fails(ex.check_rewind, unmasked, "pruned entries .* are not 0")


def test_rewind_doing_nothing_fails():
    fails(ex.check_rewind, lambda m, s: m, "differ from the saved")


def test_rewind_writing_into_the_state_fails():
    def clobber(model, state):
        rewind(model, state)
        for k in state:
            if k.endswith("weight"):
                state[k] *= 0
                break
        return model
    fails(ex.check_rewind, clobber, "modified the saved state")


def test_rewind_returning_something_else_fails():
    fails(ex.check_rewind, lambda m, s: s, "expected the model")


def test_rewind_by_the_library_is_blocked():
    err = blocked(ex.check_rewind, lambda m, s: schedules.rewind(m, s))
    assert "rewind" not in str(err)
    blocked(ex.check_rewind, schedules.rewind)          # handed in as the answer itself
    blocked(ex.check_rewind, mp.prune.schedules.rewind)


def test_rewind_replayed_fails_hidden():
    fails_hidden(ex.check_rewind, replay_of(ex.check_rewind, rewind))


# --- 12.2 mask overlap -----------------------------------------------------------------------------
def overlap(a, b):
    ka, kb = _kept(a), _kept(b)
    return (ka & kb).sum() / ka.sum()


def test_overlap_reference_passes(capsys):
    answer = N.reference_answer("12.2")
    accepts(ex.check_mask_overlap, answer, capsys=capsys)
    passes_hidden(ex.check_mask_overlap, answer)


def test_overlap_written_independently_passes(capsys):
    accepts(ex.check_mask_overlap, overlap, capsys=capsys)
    passes_hidden(ex.check_mask_overlap, overlap)


def test_overlap_counting_agreeing_zeros_fails():
    fails(ex.check_mask_overlap, lambda a, b: np.mean(_kept(a) == _kept(b)), "pruned in both")


def test_overlap_jaccard_fails():
    def jaccard(a, b):
        ka, kb = _kept(a), _kept(b)
        return (ka & kb).sum() / (ka | kb).sum()
    fails(ex.check_mask_overlap, jaccard, "Jaccard")


def test_overlap_divided_by_b_fails():
    fails(ex.check_mask_overlap, lambda a, b: (_kept(a) & _kept(b)).sum() / _kept(b).sum(),
          "not model_b")


def test_overlap_per_layer_mean_fails():
    def per_layer(a, b):
        la, lb = mp.prune.prunable_layers(a), mp.prune.prunable_layers(b)
        return np.mean([((la[n].weight.data != 0) & (lb[n].weight.data != 0)).sum()
                        / (la[n].weight.data != 0).sum() for n in la])
    fails(ex.check_mask_overlap, per_layer, "pool")


def test_overlap_as_percentage_fails():
    fails(ex.check_mask_overlap, lambda a, b: 100 * overlap(a, b), "percentage")


def test_overlap_of_linear_layers_only_fails():
    def linear_only(a, b):
        def kept(m):
            return np.concatenate([x.weight.data.ravel() != 0 for x in m.modules()
                                   if isinstance(x, mp.nn.Linear)])
        ka, kb = kept(a), kept(b)
        return (ka & kb).sum() / ka.sum()
    fails(ex.check_mask_overlap, linear_only, "Conv2d")


def test_overlap_with_biases_fails():
    def with_biases(a, b):
        ka = np.concatenate([p.data.ravel() != 0 for p in a.parameters()])
        kb = np.concatenate([p.data.ravel() != 0 for p in b.parameters()])
        return (ka & kb).sum() / ka.sum()
    fails(ex.check_mask_overlap, with_biases, "biases")


def test_overlap_by_the_checkers_helpers_is_blocked():
    from minprune.exercises import lesson12
    blocked(ex.check_mask_overlap, lambda a, b: lesson12._overlap(a, b))
    blocked(ex.check_mask_overlap, lesson12._overlap)
    blocked(ex.check_mask_overlap, lambda a, b: (lesson12._kept(a) & lesson12._kept(b)).sum()
            / lesson12._kept(a).sum())


def test_overlap_replayed_fails_hidden():
    fails_hidden(ex.check_mask_overlap, replay_of(ex.check_mask_overlap, overlap))


def test_hidden_variants_differ_from_the_self_check():
    from minprune.exercises import lesson12
    public = [what for what, *_ in lesson12._rewind_cases(None)]
    for seed in (11, 2024):
        assert [what for what, *_ in lesson12._rewind_cases(seed)] != public
        assert [w for w, *_ in lesson12._overlap_cases(seed)] != \
            [w for w, *_ in lesson12._overlap_cases(None)]


@pytest.mark.parametrize("checker", [ex.check_rewind, ex.check_mask_overlap])
def test_checkers_refuse_non_callables(checker):
    with pytest.raises(TypeError, match="fn"):
        checker(42)


# --- half-right answers ---------------------------------------------------------------------------
def test_rewind_with_the_saved_states_masks_fails():
    """Right when the state was saved dense; wrong when it was saved at an earlier round, whose
    older masks let weights pruned since then come back."""
    def states_masks(model, state):
        for name, p in model.named_parameters():
            mask = state.get(name + "_mask", p.mask)
            p.data[...] = state[name] * (1 if mask is None else mask)
        return model

    fails(ex.check_rewind, states_masks, "pruned entries .* are not 0")


def test_overlap_without_the_last_layer_fails():
    def all_but_last(a, b):   # the survivors of every layer but the output layer
        la, lb = mp.prune.prunable_layers(a), mp.prune.prunable_layers(b)
        names = list(la)[:-1]
        ka = np.concatenate([la[n].weight.data.ravel() != 0 for n in names])
        kb = np.concatenate([lb[n].weight.data.ravel() != 0 for n in names])
        return (ka & kb).sum() / ka.sum()

    fails(ex.check_mask_overlap, all_but_last, "expected")


def test_rewind_and_overlap_by_hand():
    lin = mp.nn.Linear(2, 2)
    net = mp.nn.Sequential(lin)
    state = {k: v.copy() for k, v in net.state_dict().items()}
    lin.weight.data[...] = [[9, 9], [9, 9]]
    lin.weight.mask = np.array([[True, False], [False, True]])
    rewind(net, state)
    np.testing.assert_array_equal(lin.weight.data, state["0.weight"] * [[1, 0], [0, 1]])
    other = mp.nn.Sequential(mp.nn.Linear(2, 2))
    other[0].weight.data[...] = [[1, 1], [0, 0]]   # keeps (0, 0) of net's survivors (0, 0), (1, 1)
    assert overlap(net, other) == 0.5
