"""Optimizers against hand-computed updates; schedules; the pruning invariant under every step."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minprune import nn, optim

pytestmark = pytest.mark.engine

W0 = np.array([1.0, -2.0, 0.5], dtype=np.float32)
GRADS = [np.array([0.1, 0.2, -0.3], dtype=np.float32), np.array([-0.4, 0.5, 0.6], dtype=np.float32),
         np.array([0.3, -0.1, 0.2], dtype=np.float32)]


def run(opt_cls, steps, **kwargs):
    p = nn.Parameter(W0.copy())
    opt = opt_cls([p], **kwargs)
    for g in GRADS[:steps]:
        p.grad = g.copy()
        opt.step()
    return p.data


def sgd_reference(steps, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """PyTorch's SGD, written out: d = g + λw; v = μv + d (v = d at first); step d + μv or v."""
    w, v = W0.astype(np.float64), None
    for g in GRADS[:steps]:
        d = g + weight_decay * w
        if momentum:
            v = d if v is None else momentum * v + d
            d = d + momentum * v if nesterov else v
        w = w - lr * d
    return w


@pytest.mark.parametrize("kwargs", [
    {"lr": 0.1},
    {"lr": 0.1, "momentum": 0.9},
    {"lr": 0.1, "momentum": 0.9, "nesterov": True},
    {"lr": 0.1, "weight_decay": 0.01},
    {"lr": 0.05, "momentum": 0.5, "nesterov": True, "weight_decay": 0.1},
], ids=["plain", "momentum", "nesterov", "weight_decay", "all"])
def test_sgd_matches_reference(kwargs):
    np.testing.assert_allclose(run(optim.SGD, 2, **kwargs), sgd_reference(2, **kwargs), rtol=1e-6)


def test_sgd_hand_computed_two_steps():
    # momentum 0.9, lr 0.1: v1 = g1, w1 = w0 - 0.1 g1; v2 = 0.9 g1 + g2, w2 = w1 - 0.1 v2
    g1, g2 = GRADS[0].astype(np.float64), GRADS[1].astype(np.float64)
    w1 = W0 - 0.1 * g1
    w2 = w1 - 0.1 * (0.9 * g1 + g2)
    np.testing.assert_allclose(run(optim.SGD, 2, lr=0.1, momentum=0.9), w2, rtol=1e-6)
    # plain: w2 = w0 - 0.1 (g1 + g2)
    np.testing.assert_allclose(run(optim.SGD, 2, lr=0.1), W0 - 0.1 * (g1 + g2), rtol=1e-6)


def adam_reference(steps, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0):
    w = W0.astype(np.float64)
    m = v = np.zeros(3)
    for t, g in enumerate(GRADS[:steps], start=1):
        g = g + weight_decay * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return w


@pytest.mark.parametrize("kwargs", [{}, {"lr": 0.01, "betas": (0.8, 0.99)}, {"weight_decay": 0.05}])
def test_adam_matches_reference(kwargs):
    # (weight_decay 0.1 would make g + λw cancel to ~1e-9 in one entry, where Adam's m/√v is
    # float32 rounding noise; 0.05 keeps every entry well conditioned)
    ref_kwargs = dict(kwargs)
    if "betas" in ref_kwargs:
        ref_kwargs["b1"], ref_kwargs["b2"] = ref_kwargs.pop("betas")
    np.testing.assert_allclose(run(optim.Adam, 3, **kwargs), adam_reference(3, **ref_kwargs),
                               rtol=1e-6)


def test_adam_first_step_is_lr_times_sign():
    w = run(optim.Adam, 1, lr=0.01)
    np.testing.assert_allclose(w, W0 - 0.01 * np.sign(GRADS[0]), rtol=1e-5)


def test_adam_divides_by_root_v_plus_eps():
    """A gradient of 1e-8 = eps: m̂ = g, √v̂ = g, so the first step is lr · g / (g + eps) = lr / 2."""
    p = nn.Parameter(np.ones(3, np.float32))
    opt = optim.Adam([p], lr=0.1, eps=1e-8)
    p.grad = np.full(3, 1e-8)
    opt.step()
    np.testing.assert_allclose(p.data, 1 - 0.05, rtol=1e-6)


def test_defaults_sgd_lr_and_the_cosine_schedule():
    p = nn.Parameter(np.ones(2, np.float32))
    opt = optim.SGD([p])
    assert opt.lr == 0.01 and opt.momentum == 0 and opt.weight_decay == 0
    p.grad = np.ones(2, np.float32)
    opt.step()
    np.testing.assert_allclose(p.data, 0.99, rtol=1e-7)
    sched = optim.LRSchedule(opt, total_steps=4)  # cosine by default, to lr_min = 0
    assert [sched.lr_at(t) for t in (0, 2, 4)] == pytest.approx([0.01, 0.005, 0.0])
    step = optim.LRSchedule(optim.SGD([p], lr=1.0), "step", step_size=1)  # gamma 0.1 by default
    assert [step.lr_at(t) for t in range(3)] == pytest.approx([1.0, 0.1, 0.01])


def test_a_parameter_without_gradient_does_not_stop_the_others():
    a, b = nn.Parameter(np.ones(2, np.float32)), nn.Parameter(np.ones(2, np.float32))
    opt = optim.SGD([a, b], lr=1.0)
    b.grad = np.ones(2, np.float32)  # a has none (its layer was not used)
    opt.step()
    np.testing.assert_array_equal(a.data, [1, 1])
    np.testing.assert_array_equal(b.data, [0, 0])


def test_parameters_without_grad_are_skipped_and_zero_grad_clears():
    a, b = nn.Parameter(np.ones(2, np.float32)), nn.Parameter(np.ones(2, np.float32))
    opt = optim.SGD([a, b], lr=1.0, momentum=0.9)
    a.grad = np.ones(2, np.float32)
    opt.step()
    np.testing.assert_array_equal(a.data, [0, 0])
    np.testing.assert_array_equal(b.data, [1, 1])
    opt.zero_grad()
    assert a.grad is None


# --- the pruning invariant ----------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    lambda ps: optim.Adam(ps, lr=0.01, weight_decay=0.01),
], ids=["sgd-momentum", "sgd-nesterov", "adam"])
def test_masked_weights_stay_exactly_zero(rng, make):
    p = nn.Parameter(rng.standard_normal((6, 5)).astype(np.float32))
    opt = make([p])
    # a few dense steps first, so the optimizer state is non-zero everywhere
    for _ in range(3):
        p.grad = rng.standard_normal(p.shape).astype(np.float32)
        opt.step()
    mask = rng.random(p.shape) > 0.5
    p.set_mask(mask)
    for _ in range(50):
        # even a (wrong) non-zero gradient at pruned entries must not revive them
        p.grad = rng.standard_normal(p.shape).astype(np.float32)
        opt.step()
        assert np.all(p.data[~mask] == 0)
    assert np.all(p.data[mask] != 0)
    for key, buf in opt.state[0].items():
        if isinstance(buf, np.ndarray):
            assert np.all(buf[~mask] == 0), key


# --- schedules ----------------------------------------------------------------------------------
def _opt(lr=0.1):
    return optim.SGD([nn.Parameter(np.ones(2, np.float32))], lr=lr)


def test_cosine_schedule_values():
    opt = _opt(0.1)
    sched = optim.LRSchedule(opt, "cosine", total_steps=10, lr_min=0.01)
    assert opt.lr == pytest.approx(0.1)
    seen = []
    for _ in range(12):
        sched.step()
        seen.append(opt.lr)
    for t, lr in enumerate(seen, start=1):
        frac = min(t / 10, 1.0)
        assert lr == pytest.approx(0.01 + 0.5 * 0.09 * (1 + math.cos(math.pi * frac)))
    assert seen[4] == pytest.approx(0.055)  # half-way: the mean of lr0 and lr_min
    assert seen[-1] == pytest.approx(0.01)


def test_step_schedule_values():
    opt = _opt(1.0)
    sched = optim.LRSchedule(opt, "step", step_size=3, gamma=0.5)
    values = [opt.lr]
    for _ in range(7):
        sched.step()
        values.append(opt.lr)
    assert values == pytest.approx([1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25])


def test_constant_and_warmup_schedules():
    opt = _opt(0.2)
    sched = optim.LRSchedule(opt, "constant", warmup=4)
    values = [opt.lr]
    for _ in range(5):
        sched.step()
        values.append(opt.lr)
    assert values == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2, 0.2])


# --- bad arguments ------------------------------------------------------------------------------
def _p():
    return [nn.Parameter(np.ones(2, np.float32))]


@pytest.mark.parametrize("make, exc, name", [
    (lambda: optim.SGD(_p(), lr=0), ValueError, "lr"),
    (lambda: optim.SGD(_p(), lr=-0.1), ValueError, "lr"),
    (lambda: optim.SGD(_p(), lr="0.1"), TypeError, "lr"),
    (lambda: optim.SGD(_p(), lr=True), TypeError, "lr"),
    (lambda: optim.SGD(_p(), lr=float("nan")), ValueError, "lr"),
    (lambda: optim.SGD(_p(), lr=float("inf")), ValueError, "lr"),
    (lambda: optim.SGD(_p(), lr=0.1, nesterov="yes"), TypeError, "nesterov"),
    (lambda: optim.Adam(_p(), betas=0.9), TypeError, "betas"),
    (lambda: optim.Adam(_p(), betas=(0.9,)), TypeError, "betas"),
    (lambda: optim.Adam(_p(), betas=(0.9, "0.999")), TypeError, r"betas\[1\]"),
    (lambda: optim.Adam(_p(), betas=(-0.1, 0.999)), ValueError, r"betas\[0\]"),
    (lambda: optim.LRSchedule(_opt(), "cosine", total_steps=10, gamma=0), ValueError, "gamma"),
    (lambda: optim.LRSchedule(_opt(), "cosine", total_steps=10, warmup=-1), ValueError, "warmup"),
    (lambda: optim.make_optimizer(3, _p(), 0.1), ValueError, "optimizer"),
    (lambda: optim.SGD([], lr=0.1), ValueError, "params"),
    (lambda: optim.SGD(_p(), lr=0.1, momentum=-0.5), ValueError, "momentum"),
    (lambda: optim.SGD(_p(), lr=0.1, weight_decay=-1.0), ValueError, "weight_decay"),
    (lambda: optim.SGD(_p(), lr=0.1, nesterov=True), ValueError, "nesterov"),
    (lambda: optim.Adam(_p(), betas=(0.9, 1.0)), ValueError, "betas"),
    (lambda: optim.Adam(_p(), weight_decay=-0.1), ValueError, "weight_decay"),
    (lambda: optim.Adam(_p(), eps=-1.0), ValueError, "eps"),
    (lambda: optim.Adam(_p(), eps=0.0), ValueError, "eps"),  # it keeps the division finite
    (lambda: optim.LRSchedule(_opt(), "cosine", total_steps=0), ValueError, "total_steps"),
    (lambda: optim.LRSchedule(_opt(), "cosine", total_steps=10, lr_min=-0.01), ValueError, "lr_min"),
    (lambda: optim.LRSchedule(_opt(), "cosine", total_steps=10, lr_min=1e3), ValueError, "lr_min"),
    (lambda: optim.LRSchedule(_opt(), "linear"), ValueError, "kind"),
    (lambda: optim.LRSchedule(_opt(), "cosine"), TypeError, "total_steps"),
    (lambda: optim.LRSchedule(_opt(), "step", step_size=0), ValueError, "step_size"),
    (lambda: optim.make_optimizer("rmsprop", _p(), 0.1), ValueError, "optimizer"),
])
def test_bad_arguments(make, exc, name):
    with pytest.raises(exc, match=f"^{name}"):
        make()


def test_numpy_scalars_are_numbers_everywhere():
    sgd = optim.SGD(_p(), lr=np.float32(0.5), momentum=np.float64(0.9), weight_decay=np.int64(0),
                    nesterov=np.bool_(True))
    assert (sgd.lr, sgd.momentum, sgd.weight_decay, sgd.nesterov) == (0.5, pytest.approx(0.9), 0, True)
    adam = optim.Adam(_p(), lr=np.float32(0.25), betas=np.array([0.5, 0.75], np.float32),
                      eps=np.float64(1e-6))
    assert adam.lr == 0.25 and adam.betas == (0.5, 0.75)
    sched = optim.LRSchedule(sgd, "step", step_size=np.int64(2), gamma=np.float32(0.5))
    sched.step(), sched.step()
    assert sgd.lr == 0.25


def test_make_optimizer():
    opt = optim.make_optimizer("sgd", _p(), 0.1)
    assert isinstance(opt, optim.SGD) and opt.momentum == 0.9
    assert isinstance(optim.make_optimizer("adam", _p(), 0.1), optim.Adam)
    assert optim.make_optimizer(opt, _p(), 0.5) is opt


# --- the pruning invariant, for any sequence of steps -------------------------------------------
_WILD = st.one_of(st.floats(-1e3, 1e3, width=32), st.sampled_from([np.nan, np.inf, -np.inf, 1e30]))


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(["sgd", "sgd-nesterov", "adam"]), seed=st.integers(0, 2**16),
       steps=st.lists(st.tuples(_WILD, st.sampled_from([0.01, 1.0, 1e6, np.inf, np.nan]),
                                st.booleans()), min_size=1, max_size=8))
def test_no_sequence_of_steps_revives_a_pruned_weight(kind, seed, steps):
    """Whatever the gradients (NaN, ±inf, huge) and the learning rate a schedule sets (even inf
    or NaN, which no constructor accepts), and whether the mask arrives before or after steps, a
    pruned weight is exactly 0 after every step, and so is the optimizer's state there."""
    rng = np.random.default_rng(seed)
    p = nn.Parameter(rng.standard_normal((4, 3)).astype(np.float32))
    opt = {"sgd": lambda: optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01),
           "sgd-nesterov": lambda: optim.SGD([p], lr=0.1, momentum=0.9, nesterov=True),
           "adam": lambda: optim.Adam([p], lr=0.01, weight_decay=0.01)}[kind]()
    mask = rng.random(p.shape) > 0.5
    for scale, lr, mask_now in steps:
        if mask_now and p.mask is None:
            p.set_mask(mask)
        g = rng.standard_normal(p.shape).astype(np.float32) * np.float32(scale)
        g.flat[rng.integers(g.size)] = scale  # one entry exactly the wild value
        p.grad = g
        opt.lr = lr
        with np.errstate(all="ignore"):
            opt.step()
        if p.mask is not None:
            assert np.all(p.data[~mask] == 0)
            for buf in opt.state[0].values():
                if isinstance(buf, np.ndarray):
                    assert np.all(buf[~mask] == 0)
