"""Criteria (prune/criteria.py): each score checked against its defining formula on a hand-built case.

Gradients, Hessians and activations are recomputed here in plain NumPy (float64), independently of
the autograd engine, so a wrong backward or a wrong formula cannot hide behind itself.
"""
import numpy as np
import pytest

import minprune as mp
from minprune import nn
from minprune.prune import criteria as C
from minprune.prune.masks import prunable_layers

pytestmark = pytest.mark.pruning

DATA_DRIVEN = ["gradient", "taylor", "snip", "fisher", "obd", "grasp", "activation", "apoz"]


# --- an independent NumPy model of a single Linear layer + cross-entropy ------------------------
def linear_model(n_in=3, n_out=2, seed=0, bias=True):
    r = np.random.default_rng(seed)
    model = nn.Sequential(nn.Linear(n_in, n_out, bias=bias, rng=r))
    if bias:
        model[0].bias.data[:] = r.normal(0, 0.5, n_out).astype(np.float32)
    return model


def make_batch(n=6, n_in=3, n_out=2, seed=1):
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, n_in)).astype(np.float32)
    y = r.integers(0, n_out, n)
    return x, y


def ce_loss(W, b, x, y):
    z = x.astype(np.float64) @ W.T + b
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(y)), y].mean()


def ce_grad_W(W, b, x, y):
    """∂/∂W of mean cross-entropy: (softmax − onehot)ᵀ x / N."""
    x = x.astype(np.float64)
    z = x @ W.T + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return p.T @ x / len(y)


def wb(model):
    b = model[0].bias
    return model[0].weight.data.astype(np.float64), (0.0 if b is None else b.data.astype(np.float64))


def scores(model, name, batch=None, **kw):
    return C.CRITERIA[name](model, prunable_layers(model), batch, **kw)


# --- magnitude, random ---------------------------------------------------------------------------
def test_magnitude_is_abs_weight_and_ranks_it():
    model = linear_model(3, 2)
    model[0].weight.data[:] = np.array([[0.5, -2.0, 0.1], [-0.3, 1.0, -4.0]], np.float32)
    s = scores(model, "magnitude")["0"]
    np.testing.assert_array_equal(s, np.abs(model[0].weight.data))
    masks = mp.prune.prune(model, 0.5, criterion="magnitude")
    np.testing.assert_array_equal(masks["0"], [[False, True, False], [False, True, True]])


def test_random_prunes_exact_count_and_is_seeded():
    def mask_of(seed):
        model = mp.models.lenet_300_100(seed=0)
        return mp.prune.prune(model, 0.3, criterion="random", scope="layerwise", seed=seed)

    a, b, c = mask_of(1), mask_of(1), mask_of(2)
    for name, m in a.items():
        assert (~m).sum() == round(0.3 * m.size)
        np.testing.assert_array_equal(m, b[name])
    assert any(not np.array_equal(a[n], c[n]) for n in a)


# --- first order ---------------------------------------------------------------------------------
def test_gradient_is_abs_w_times_grad_on_one_batch():
    model = linear_model()
    x, y = make_batch()
    W, b = wb(model)
    expected = np.abs(W * ce_grad_W(W, b, x, y))
    np.testing.assert_allclose(scores(model, "gradient", (x, y))["0"], expected, rtol=1e-4,
                               atol=1e-7)


def test_gradient_averages_the_gradient_over_batches():
    model = linear_model()
    batches = [make_batch(seed=s) for s in (1, 2, 3)]
    W, b = wb(model)
    g = np.mean([ce_grad_W(W, b, x, y) for x, y in batches], axis=0)
    np.testing.assert_allclose(scores(model, "gradient", batches)["0"], np.abs(W * g), rtol=1e-4,
                               atol=1e-7)
    # a DataLoader over the same data in the same batches gives the same scores
    x = np.concatenate([bt[0] for bt in batches])
    y = np.concatenate([bt[1] for bt in batches])
    loader = mp.data.DataLoader(x, y, batch_size=6)
    np.testing.assert_allclose(scores(model, "gradient", loader)["0"], np.abs(W * g), rtol=1e-4,
                               atol=1e-7)


def test_gradient_leaves_model_grads_and_bn_stats_alone(tiny_cnn, rng):
    x = rng.normal(size=(4, 1, 6, 6)).astype(np.float32)
    y = np.array([0, 1, 2, 0])
    before = tiny_cnn.state_dict()
    scores(tiny_cnn, "gradient", (x, y))
    after = tiny_cnn.state_dict()
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])
    assert all(p.grad is None for p in tiny_cnn.parameters())


def test_taylor_is_mean_of_squared_w_times_grad():
    model = linear_model()
    batches = [make_batch(seed=s) for s in (4, 5)]
    W, b = wb(model)
    expected = np.mean([(W * ce_grad_W(W, b, x, y)) ** 2 for x, y in batches], axis=0)
    np.testing.assert_allclose(scores(model, "taylor", batches)["0"], expected, rtol=1e-4,
                               atol=1e-9)


def test_snip_is_normalised_gradient_with_same_ranking(tiny_mlp, rng):
    x = rng.normal(size=(8, 4)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    s = scores(tiny_mlp, "snip", (x, y))
    g = scores(tiny_mlp, "gradient", (x, y))
    assert sum(v.sum() for v in s.values()) == pytest.approx(1.0)
    total = sum(v.sum() for v in g.values())
    for n in s:
        np.testing.assert_allclose(s[n], g[n] / total, rtol=1e-6)
    flat_s = np.concatenate([s[n].ravel() for n in s])
    flat_g = np.concatenate([g[n].ravel() for n in g])
    np.testing.assert_array_equal(np.argsort(flat_s, kind="stable"),
                                  np.argsort(flat_g, kind="stable"))


# --- second order --------------------------------------------------------------------------------
def test_fisher_is_half_mean_squared_grad_times_w_squared():
    model = linear_model()
    batches = [make_batch(n=2, seed=s) for s in range(5)]
    W, b = wb(model)
    sq = np.mean([ce_grad_W(W, b, x, y) ** 2 for x, y in batches], axis=0)
    np.testing.assert_allclose(scores(model, "fisher", batches)["0"], 0.5 * sq * W ** 2,
                               rtol=1e-4, atol=1e-10)


def exact_hessian(W, b, x, y, eps=1e-4):
    """The Hessian of the loss w.r.t. the flattened W, by central differences of the NumPy gradient."""
    n = W.size
    H = np.zeros((n, n))
    for i in range(n):
        d = np.zeros(n)
        d[i] = eps
        gp = ce_grad_W(W + d.reshape(W.shape), b, x, y).ravel()
        gm = ce_grad_W(W - d.reshape(W.shape), b, x, y).ravel()
        H[:, i] = (gp - gm) / (2 * eps)
    return (H + H.T) / 2


def test_hessian_diagonal_by_finite_differences_of_the_loss_agrees_with_the_gradient_version():
    model = linear_model(2, 2)
    x, y = make_batch(n_in=2)
    W, b = wb(model)
    H = exact_hessian(W, b, x, y)
    eps = 1e-3
    for i in range(W.size):  # second differences of the loss itself
        d = np.zeros(W.size)
        d[i] = eps
        d = d.reshape(W.shape)
        h = (ce_loss(W + d, b, x, y) - 2 * ce_loss(W, b, x, y) + ce_loss(W - d, b, x, y)) / eps ** 2
        assert h == pytest.approx(H[i, i], rel=1e-3, abs=1e-6)


def test_hessian_vector_product_matches_exact_hessian():
    model = linear_model(2, 2)
    x, y = make_batch(n_in=2)
    W, b = wb(model)
    H = exact_hessian(W, b, x, y)
    v = np.random.default_rng(3).normal(size=W.shape)
    hv = C.hessian_vector_product(model, [(x, y)], {"0.weight": v})["0.weight"]
    np.testing.assert_allclose(hv.ravel(), H @ v.ravel(), rtol=1e-4, atol=1e-6)


def test_hessian_vector_product_is_linear_at_any_scale():
    """H·(c·v) = c·(H·v) whether v is tiny, huge or zero: the finite-difference step is set by
    ‖v‖, so the weights always move the same small distance. v has mixed signs."""
    model = linear_model(2, 2)
    x, y = make_batch(n_in=2)
    W, b = wb(model)
    H = exact_hessian(W, b, x, y)
    v = np.array([[1.0, -2.0], [0.5, -1.5]])
    for c in (1e-8, 1.0, 1e5):
        hv = C.hessian_vector_product(model, [(x, y)], {"0.weight": c * v})["0.weight"]
        np.testing.assert_allclose(hv.ravel(), c * (H @ v.ravel()), rtol=1e-5, atol=1e-12 * c)
    zero = C.hessian_vector_product(model, [(x, y)], {"0.weight": np.zeros((2, 2))})["0.weight"]
    np.testing.assert_array_equal(zero, 0.0)


def test_loss_gradients_at_a_temperature_of_two():
    """∂/∂W of CE(z/2) = ½ · (softmax(z/2) − onehot)ᵀ x / N: the model's W/2, b/2, halved."""
    model = linear_model(3, 2)
    x, y = make_batch()
    W, b = wb(model)
    g = C._loss_gradients(model, [(x, y)], temperature=2.0)["0.weight"]
    np.testing.assert_allclose(g, ce_grad_W(W / 2, b / 2, x, y) / 2, rtol=1e-5, atol=1e-8)


def test_obd_is_half_hessian_diagonal_times_w_squared():
    """Hutchinson's estimate with many samples: error ~ sqrt(Σ_j≠i H_ij² / samples)."""
    model = linear_model(2, 2, bias=False)
    x, y = make_batch(n_in=2)
    W, _ = wb(model)
    H = exact_hessian(W, np.zeros(2), x, y)
    samples = 2000
    s = scores(model, "obd", (x, y), samples=samples)["0"]
    expected = 0.5 * np.diag(H).reshape(W.shape) * W ** 2
    off = np.sqrt(((H - np.diag(np.diag(H))) ** 2).sum(axis=1)).reshape(W.shape)
    tol = 0.5 * W ** 2 * 4.5 * off / np.sqrt(samples) + 1e-7  # 4.5 standard deviations (≈ 9 %)
    assert np.all(np.abs(s - expected) <= tol)


def test_grasp_is_w_times_hessian_gradient_product():
    model = linear_model(3, 2)
    x, y = make_batch()
    W, b = wb(model)
    H = exact_hessian(W, b, x, y)
    g = ce_grad_W(W, b, x, y)
    expected = W * (H @ g.ravel()).reshape(W.shape)
    np.testing.assert_allclose(scores(model, "grasp", (x, y), temperature=1.0)["0"], expected,
                               rtol=2e-3, atol=1e-7)


def test_grasp_temperature_divides_the_logits():
    """With logits / T the loss is that of a model whose weights and bias are divided by T."""
    model = linear_model(3, 2)
    x, y = make_batch()
    W, b = wb(model)
    T = 4.0
    H = exact_hessian(W / T, b / T, x, y) / T ** 2   # chain rule: d²L(W/T)/dW² = H(W/T) / T²
    g = ce_grad_W(W / T, b / T, x, y) / T
    expected = W * (H @ g.ravel()).reshape(W.shape)
    np.testing.assert_allclose(scores(model, "grasp", (x, y), temperature=T)["0"], expected,
                               rtol=2e-3, atol=1e-9)


# --- data-free at initialisation ------------------------------------------------------------------
def test_synflow_needs_no_data_and_matches_closed_form():
    r = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(3, 4, rng=r), nn.ReLU(), nn.Linear(4, 2, rng=r))
    W1 = r.uniform(0.1, 1.0, (4, 3))
    W2 = r.uniform(0.1, 1.0, (2, 4))
    model[0].weight.data[:] = W1
    model[2].weight.data[:] = W2
    s = scores(model, "synflow", None)
    # R = 1ᵀ W2 W1 1 (biases are zero): ∂R/∂W1[j,i] = Σ_k W2[k,j], ∂R/∂W2[k,j] = Σ_i W1[j,i]
    W1, W2 = model[0].weight.data.astype(np.float64), model[2].weight.data.astype(np.float64)
    np.testing.assert_allclose(s["0"], W1 * W2.sum(axis=0)[:, None], rtol=1e-6)
    np.testing.assert_allclose(s["2"], W2 * W1.sum(axis=1)[None, :], rtol=1e-6)
    # it uses |w|: flipping signs changes nothing
    model[0].weight.data *= -1
    np.testing.assert_allclose(scores(model, "synflow")["0"], s["0"], rtol=1e-12)
    mp.prune.prune(model, 0.5, criterion="synflow")  # batch=None through prune() too
    assert mp.prune.sparsity(model) == pytest.approx(0.5)


def test_synflow_runs_batchnorm_with_unit_statistics_on_absolute_parameters():
    """SynFlow makes every path positive: |w|, |b|, |γ|, |β|, and BatchNorm with mean 0 and
    variance 1 (the model's own running statistics, here μ = 5, would send the all-ones signal
    through ReLU as 0). Linear(3, 4) → BN(4) → ReLU → Linear(4, 2), input 1, in closed form:
    h = |W1|·1 + |b1|, a = |γ|·h/√(1+ε) + |β|, R = Σ_k (|W2|·a + |b2|)_k, so
    ∂R/∂W1[j, i] = c_j·|γ_j|/√(1+ε) with c_j = Σ_k |W2[k, j]|, and ∂R/∂W2[k, j] = a_j."""
    r = np.random.default_rng(3)
    model = nn.Sequential(nn.Linear(3, 4, rng=r), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2, rng=r))
    lin1, bn, lin2 = model[0], model[1], model[3]
    lin1.bias.data[:] = [0.1, -0.2, 0.3, -0.4]
    lin2.bias.data[:] = [0.5, -0.5]
    bn.weight.data[:] = [1.5, -0.5, 2.0, 0.25]
    bn.bias.data[:] = [-0.1, 0.2, 0.0, 0.3]
    bn.running_mean[:] = 5.0
    bn.running_var[:] = 4.0
    s = scores(model, "synflow", input_shape=(3,))
    W1, W2 = np.abs(lin1.weight.data.astype(np.float64)), np.abs(lin2.weight.data.astype(np.float64))
    g, beta = np.abs(bn.weight.data.astype(np.float64)), np.abs(bn.bias.data.astype(np.float64))
    h = W1.sum(axis=1) + np.abs(lin1.bias.data)
    sigma = np.sqrt(1.0 + bn.eps)
    a = g * h / sigma + beta
    np.testing.assert_allclose(s["0"], W1 * (W2.sum(axis=0) * g / sigma)[:, None], rtol=1e-6)
    np.testing.assert_allclose(s["3"], W2 * a[None, :], rtol=1e-6)
    # the model itself is untouched: statistics, signs, no gradients
    np.testing.assert_array_equal(bn.running_mean, 5.0)
    np.testing.assert_array_equal(bn.running_var, 4.0)
    assert bn.weight.data[1] == -0.5 and lin1.weight.grad is None


# --- movement -------------------------------------------------------------------------------------
def test_movement_raises_without_tracker(tiny_mlp):
    with pytest.raises(ValueError, match="MovementTracker"):
        mp.prune.prune(tiny_mlp, 0.5, criterion="movement")


def test_movement_accumulates_minus_w_times_g(tiny_mlp, rng):
    """Reproduce fit's loop by hand, recording −w·g with the weights the gradient was taken at."""
    x = rng.normal(size=(16, 4)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    tracker = C.MovementTracker(tiny_mlp)
    opt = mp.optim.SGD(tiny_mlp.parameters(), lr=0.1, momentum=0.9)
    state = mp.train.TrainState(tiny_mlp, opt)
    tracker.on_train_begin(state)
    expected = {n: np.zeros(m.weight.shape) for n, m in prunable_layers(tiny_mlp).items()}
    for step in range(5):
        xb, yb = x[step * 3:step * 3 + 8], y[step * 3:step * 3 + 8]
        loss = mp.nn.functional.cross_entropy(tiny_mlp(mp.Tensor(xb)), yb)
        opt.zero_grad()
        loss.backward()
        for n, m in prunable_layers(tiny_mlp).items():
            expected[n] -= m.weight.data.astype(np.float64) * m.weight.grad
        opt.step()
        tracker.on_step_end(state)
    s = scores(tiny_mlp, "movement")
    for n in expected:
        np.testing.assert_allclose(s[n], expected[n], rtol=1e-5, atol=1e-8)


def test_movement_through_fit_then_prune(tiny_mlp, rng):
    x = rng.normal(size=(32, 4)).astype(np.float32)
    y = rng.integers(0, 3, 32)
    tracker = C.MovementTracker(tiny_mlp)
    mp.train.fit(tiny_mlp, (x, y), epochs=2, batch_size=8, callbacks=[tracker], progress=False)
    s = scores(tiny_mlp, "movement")
    assert all(np.abs(v).sum() > 0 for v in s.values())
    masks = mp.prune.prune(tiny_mlp, 0.5, criterion="movement", scope="layerwise")
    for n, m in masks.items():
        kth = np.sort(s[n].ravel())[round(0.5 * s[n].size) - 1]
        assert np.all(s[n][~m] <= kth) and np.all(s[n][m] >= kth)


def test_movement_tracker_leaves_excluded_layers_alone(tiny_mlp, rng):
    x = rng.normal(size=(16, 4)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    tracker = C.MovementTracker(tiny_mlp, exclude=["2"])
    assert list(tracker.layers) == ["0"]
    mp.train.fit(tiny_mlp, (x, y), epochs=1, batch_size=8, callbacks=[tracker], progress=False)
    assert hasattr(tiny_mlp[0].weight, "movement") and not hasattr(tiny_mlp[2].weight, "movement")


# --- LAMP -----------------------------------------------------------------------------------------
def test_lamp_matches_formula_on_hand_example():
    model = nn.Sequential(nn.Linear(2, 2, rng=0), nn.ReLU(), nn.Linear(2, 2, rng=1))
    model[0].weight.data[:] = [[1.0, -2.0], [3.0, -4.0]]
    model[2].weight.data[:] = [[0.5, 0.1], [-0.2, 0.3]]
    s = scores(model, "lamp")
    # squares 1, 4, 9, 16; suffix sums 30, 29, 25, 16
    np.testing.assert_allclose(s["0"], [[1 / 30, 4 / 29], [9 / 25, 1.0]])
    # squares .25, .01, .04, .09; sorted .01, .04, .09, .25 with suffix sums .39, .38, .34, .25
    np.testing.assert_allclose(s["2"], [[1.0, 0.01 / 0.39], [0.04 / 0.38, 0.09 / 0.34]], rtol=1e-6)


def test_lamp_largest_weight_per_layer_scores_one():
    model = mp.models.lenet5(seed=3)
    for n, s in scores(model, "lamp").items():
        w = prunable_layers(model)[n].weight.data
        assert s.max() == pytest.approx(1.0)
        assert s.ravel()[np.argmax(np.abs(w))] == pytest.approx(1.0)
        assert np.all((s > 0) & (s <= 1))


# --- unit level -----------------------------------------------------------------------------------
def dead_unit_model():
    """Linear(2, 3) → ReLU → Linear(3, 2); unit 1 of layer 0 has weights 0 and bias −1: always 0."""
    model = nn.Sequential(nn.Linear(2, 3, rng=0), nn.ReLU(), nn.Linear(3, 2, rng=1))
    model[0].weight.data[:] = [[1.0, 0.5], [0.0, 0.0], [-1.0, 2.0]]
    model[0].bias.data[:] = [0.0, -1.0, 0.1]
    return model


def test_activation_and_apoz_on_hand_built_layer(rng):
    model = dead_unit_model()
    x = rng.normal(size=(40, 2)).astype(np.float32)
    y = rng.integers(0, 2, 40)
    W, b = model[0].weight.data, model[0].bias.data
    a = np.maximum(x @ W.T + b, 0)
    act = scores(model, "activation", (x, y))["0"]
    apz = scores(model, "apoz", (x, y))["0"]
    np.testing.assert_allclose(act, a.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(apz, 1 - (a <= 0).mean(axis=0))
    assert act[1] == 0 and apz[1] == 0
    for crit in ("activation", "apoz"):
        m = dead_unit_model()
        masks = mp.prune.prune(m, scope={"0": 1 / 3}, criterion=crit, granularity="filter",
                               batch=(x, y))
        np.testing.assert_array_equal(masks["0"].any(axis=1), [True, False, True])
        assert m[0].bias.data[1] == 0


def test_activation_sees_batchnorm_and_relu(tiny_cnn, rng):
    x = rng.normal(size=(5, 1, 6, 6)).astype(np.float32)
    bn = tiny_cnn[1]
    bn.running_mean[:] = [0.3, -0.2]
    bn.running_var[:] = [2.0, 0.5]
    bn.weight.data[:] = [1.5, -0.7]
    bn.bias.data[:] = [0.1, 0.2]
    conv = tiny_cnn[0](mp.Tensor(x)).data
    a = (conv - bn.running_mean[None, :, None, None]) / np.sqrt(
        bn.running_var[None, :, None, None] + bn.eps)
    a = np.maximum(a * bn.weight.data[None, :, None, None] + bn.bias.data[None, :, None, None], 0)
    s = C.activation(tiny_cnn, {"0": tiny_cnn[0]}, (x, np.zeros(5, int)))
    np.testing.assert_allclose(s["0"], a.mean(axis=(0, 2, 3)), rtol=1e-5)


def test_bn_scale_is_abs_gamma_and_raises_without_bn(tiny_cnn):
    tiny_cnn[1].weight.data[:] = [-0.5, 0.25]
    s = C.bn_scale(tiny_cnn, {"0": tiny_cnn[0]})
    np.testing.assert_array_equal(s["0"], [0.5, 0.25])
    with pytest.raises(ValueError, match="BatchNorm"):
        mp.prune.prune(tiny_cnn, 0.5, criterion="bn_scale", granularity="filter")
    masks = mp.prune.prune(tiny_cnn, 0.5, criterion="bn_scale", granularity="filter",
                           exclude="5")
    np.testing.assert_array_equal(masks["0"].reshape(2, -1).any(axis=1), [True, False])


def test_fpgm_ranks_filter_nearest_the_others_lowest():
    model = nn.Sequential(nn.Conv2d(2, 4, 1, rng=0))
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.4, 0.4]])
    model[0].weight.data[:] = pts.reshape(4, 2, 1, 1)
    s = scores(model, "fpgm")["0"]
    expected = [sum(np.linalg.norm(p - q) for q in pts) for p in pts]
    np.testing.assert_allclose(s, expected, rtol=1e-6)
    assert np.argmin(s) == 3
    masks = mp.prune.prune(model, 0.25, criterion="fpgm", granularity="filter")
    np.testing.assert_array_equal(masks["0"].reshape(4, -1).any(axis=1), [True, True, True, False])


# --- contracts ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", DATA_DRIVEN)
def test_data_driven_criteria_without_batch_raise(name, tiny_mlp):
    assert C.CRITERIA[name].needs_data
    with pytest.raises(ValueError, match=f"^batch: criterion '{name}' is data-driven"):
        scores(tiny_mlp, name, None)
    gran = "filter" if C.CRITERIA[name].level == "unit" else "unstructured"
    with pytest.raises(ValueError, match="batch"):
        mp.prune.prune(tiny_mlp, 0.5, criterion=name, granularity=gran)


def test_batches_as_a_tuple_of_pairs_are_several_batches():
    """A tuple of (x, y) pairs is a sequence of batches, like a list of them: the gradient
    criterion averages over them either way (2 or 3 pairs)."""
    model = linear_model(3, 2)
    pairs = [make_batch(seed=s) for s in (1, 2, 3)]
    for k in (2, 3):
        as_list = scores(model, "gradient", pairs[:k])["0"]
        np.testing.assert_array_equal(scores(model, "gradient", tuple(pairs[:k]))["0"], as_list)
    W, b = wb(model)
    mean_g = np.mean([ce_grad_W(W, b, x, y) for x, y in pairs[:2]], axis=0)
    np.testing.assert_allclose(scores(model, "gradient", tuple(pairs[:2]))["0"], np.abs(W * mean_g),
                               rtol=1e-5, atol=1e-8)


def test_a_layer_the_forward_pass_skips_gets_zero_gradient_scores(rng):
    """A prunable layer the forward never uses has no gradient: its gradient scores are 0."""
    class Skips(nn.Module):
        def __init__(self):
            super().__init__()
            self.used = nn.Linear(3, 2, rng=0)
            self.unused = nn.Linear(3, 2, rng=1)

        def forward(self, x):
            return self.used(x)

    model = Skips()
    x, y = make_batch()
    s = scores(model, "gradient", (x, y))
    np.testing.assert_array_equal(s["unused"], 0.0)
    assert np.all(s["used"] > 0)


def test_unit_activations_leave_the_model_s_mode_and_hooks_alone(tiny_cnn, rng):
    x = rng.normal(size=(4, 1, 6, 6)).astype(np.float32)
    tiny_cnn.train()
    scores(tiny_cnn, "activation", (x, np.zeros(4, int)))
    assert all(m.training for m in tiny_cnn.modules())


def test_criterion_options_are_checked_and_seeded(tiny_mlp):
    x, y = make_batch(n_in=4, n_out=3)
    for name, opts, err in (("obd", dict(samples=0), ValueError), ("obd", dict(seed=-1), ValueError),
                            ("random", dict(seed=-1), ValueError),
                            ("grasp", dict(temperature=0.0), ValueError),
                            ("grasp", dict(temperature=-1.0), ValueError)):
        with pytest.raises(err, match=f"^{next(iter(opts))}: "):
            scores(tiny_mlp, name, (x, y), **opts)
    a = scores(tiny_mlp, "obd", (x, y), samples=1, seed=3)
    b = scores(tiny_mlp, "obd", (x, y), samples=1, seed=3)
    for n in a:
        np.testing.assert_array_equal(a[n], b[n])


def test_synflow_default_input_is_28_by_28_for_a_conv_first_layer():
    r = np.random.default_rng(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, rng=r), nn.Flatten(),
                          nn.Linear(2 * 28 * 28, 3, rng=r))
    default = scores(model, "synflow")
    given = scores(model, "synflow", input_shape=(1, 28, 28))
    for n in default:
        np.testing.assert_array_equal(default[n], given[n])


def test_lamp_of_an_all_zero_layer_is_zero_not_nan():
    model = linear_model(3, 2, bias=False)
    model[0].weight.data[:] = 0.0
    np.testing.assert_array_equal(scores(model, "lamp")["0"], 0.0)


def test_bad_batch_type_raises_type_error(tiny_mlp):
    with pytest.raises(TypeError, match="batch"):
        mp.prune.prune(tiny_mlp, 0.5, criterion="gradient", batch="data")


def test_user_callable_criterion(tiny_mlp):
    def by_column(model, layers, batch):
        return {n: np.broadcast_to(np.arange(m.weight.shape[1], dtype=float), m.weight.shape)
                for n, m in layers.items()}

    masks = mp.prune.prune(tiny_mlp, 0.5, criterion=by_column, scope="layerwise")
    np.testing.assert_array_equal(masks["0"], np.tile([False, False, True, True], (8, 1)))
    np.testing.assert_array_equal(masks["2"], np.tile([False] * 4 + [True] * 4, (3, 1)))


def test_user_unit_level_callable(tiny_mlp):
    def last_units(model, layers, batch):
        return {n: np.arange(m.weight.shape[0], dtype=float) for n, m in layers.items()}
    last_units.level = "unit"
    masks = mp.prune.prune(tiny_mlp, scope={"0": 0.25}, criterion=last_units, granularity="filter")
    np.testing.assert_array_equal(masks["0"].any(axis=1), [False, False] + [True] * 6)
    with pytest.raises(ValueError, match="filter"):
        mp.prune.prune(tiny_mlp, 0.5, criterion=last_units)


@pytest.mark.parametrize("bad", ["shape", "nan", "missing", "missing_with_extra", "not_dict"])
def test_bad_scores_raise(bad, tiny_mlp):
    def crit(model, layers, batch):
        out = {n: np.ones(m.weight.shape) for n, m in layers.items()}
        if bad == "shape":
            out["0"] = np.ones(3)
        elif bad == "nan":
            out["2"][0, 0] = np.nan
        elif bad == "missing":
            del out["2"]
        elif bad == "missing_with_extra":
            del out["2"]
            out["other"] = np.ones(3)
        else:
            return [np.ones(m.weight.shape) for m in layers.values()]
        return out

    with pytest.raises(ValueError, match="criterion"):
        mp.prune.prune(tiny_mlp, 0.5, criterion=crit)
    assert all(p.mask is None for p in tiny_mlp.parameters())


def test_unknown_criterion_lists_valid_ones(tiny_mlp):
    with pytest.raises(ValueError, match="magnitude") as e:
        mp.prune.prune(tiny_mlp, 0.5, criterion="bogus")
    assert "'bogus'" in str(e.value) and "snip" in str(e.value)
