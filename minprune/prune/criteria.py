"""HOW to prune: importance scores. Higher score = more important = kept.

Every criterion has the same signature

    scores = criterion(model, layers, batch=None, **options) -> {layer name: ndarray}

where `layers` is {name: Conv2d/Linear module} (see `masks.prunable_layers`). Weight-level
criteria return one score per weight (the weight's shape); unit-level criteria (activation, apoz,
bn_scale, fpgm) return one score per output unit (a filter or a neuron), so they only make sense
with `granularity="filter"`. `batch` is data: an (x, y) pair, a list of pairs (scores are averaged
over them) or a DataLoader. A criterion that needs data and gets none raises ValueError.

Already-pruned weights are handled by `prune()` (they stay pruned), not here.
"""
from __future__ import annotations

import copy

import numpy as np

from .. import checks, nn
from ..autograd import no_grad
from ..data import DataLoader
from ..nn import functional as fn
from ..tensor import Tensor
from .masks import check_input_shape, following_batchnorm, graph_of

CRITERIA: dict = {}


def criterion(needs_data: bool, level: str = "weight"):
    """Register a scoring function under its name, recording what it needs."""
    def register(fn_):
        fn_.needs_data, fn_.level = needs_data, level
        CRITERIA[fn_.__name__] = fn_
        return fn_
    return register


def as_batches(batch, name="batch") -> list:
    """Normalise `batch` to a list of (x, y) arrays."""
    if batch is None:
        return []
    if isinstance(batch, DataLoader):
        batches = [(x, y) for x, y in batch]
    elif isinstance(batch, tuple) and len(batch) == 2 and isinstance(batch[0], np.ndarray):
        batches = [batch]
    elif isinstance(batch, (list, tuple)) and all(isinstance(b, tuple) and len(b) == 2
                                                  for b in batch):
        batches = list(batch)
    else:
        raise TypeError(f"{name}: expected an (x, y) pair of arrays, a list of such pairs or a "
                        f"DataLoader, got {type(batch).__name__}")
    for i, (x, y) in enumerate(batches):  # an empty batch would average to NaN scores
        if np.ndim(x) == 0 or len(x) == 0 or len(x) != len(y):
            raise ValueError(f"{name}: batch {i} has x of shape {np.shape(x)} and y of shape "
                             f"{np.shape(y)}; each batch needs at least one example, as many "
                             "labels as inputs")
    return batches


def _require(batches, who):
    if not batches:
        raise ValueError(f"batch: criterion {who!r} is data-driven and needs batch=(x, y) (or a "
                         "list of batches / a DataLoader)")


def _loss_gradients(model, batches, square=False, temperature=1.0):
    """Mean over batches of ∂L/∂W (or of (∂L/∂W)² when `square`), for every parameter by name;
    the loss is the cross-entropy of logits / `temperature`.

    Computed on a copy in eval mode, so BatchNorm statistics and the caller's .grad stay untouched."""
    work = copy.deepcopy(model).eval()
    total = {}
    for x, y in batches:
        work.zero_grad()
        logits = work(Tensor(x))
        fn.cross_entropy(logits / temperature if temperature != 1.0 else logits, y).backward()
        for name, p in work.named_parameters():
            g = np.zeros_like(p.data) if p.grad is None else p.grad
            total[name] = total.get(name, 0) + (g * g if square else g)
    return {k: v / len(batches) for k, v in total.items()}


def _weights(layers):
    return {n: m.weight.data for n, m in layers.items()}


# --- magnitude and random --------------------------------------------------------------------------
@criterion(needs_data=False)
def magnitude(model, layers, batch=None):
    """|w| — Han et al. (2015), "Learning both Weights and Connections". Small weights matter least.

    Cost: O(n), no data. With `reduce="l1"`/`"l2"` over a filter this is the filter's L1/L2 norm
    (Li et al., 2017; torch's `ln_structured`)."""
    return {n: np.abs(w) for n, w in _weights(layers).items()}


@criterion(needs_data=False)
def random(model, layers, batch=None, seed=0):
    """Uniform random scores (seeded): every weight equally likely to go — the baseline every
    criterion must beat. Ranking by random scores removes exactly the requested count."""
    rng = np.random.default_rng(checks.integer(seed, "seed", minimum=0))
    return {n: rng.random(w.shape) for n, w in _weights(layers).items()}


# --- first order: gradients ----------------------------------------------------------------------
@criterion(needs_data=True)
def gradient(model, layers, batch=None):
    """|w · g| with g = ∂L/∂w averaged over the batches — the note's gradient-magnitude pruning
    (ShrinkBench's GlobalMagGrad / LayerMagGrad). It estimates how much the loss changes to first
    order if w is set to 0: ΔL ≈ −g·w. Cost: one forward + backward per batch."""
    _require(b := as_batches(batch), "gradient")
    grads = _loss_gradients(model, b)
    return {n: np.abs(m.weight.data * grads[n + ".weight"]) for n, m in layers.items()}


@criterion(needs_data=True)
def taylor(model, layers, batch=None):
    """(w · g)² averaged over batches — first-order Taylor importance (Molchanov et al., 2019,
    "Importance Estimation for Neural Network Pruning"). Squaring before averaging counts a weight as
    important when it matters on any batch, even if the signed effects cancel on average.
    With `granularity="filter", reduce="sum"` it is their per-filter sum. Cost: one backward per batch."""
    _require(b := as_batches(batch), "taylor")
    totals = {n: 0.0 for n in layers}
    for xy in b:
        grads = _loss_gradients(model, [xy])
        for n, m in layers.items():
            totals[n] = totals[n] + (m.weight.data * grads[n + ".weight"]) ** 2
    return {n: t / len(b) for n, t in totals.items()}


@criterion(needs_data=True)
def snip(model, layers, batch=None):
    """SNIP connection sensitivity (Lee et al., 2019): |g ⊙ w| / Σ|g ⊙ w| at initialisation.

    Same ranking as `gradient` (the denominator is shared by all weights); what makes it SNIP is
    *when* it is used: before training, on one batch, pruning in one shot."""
    _require(as_batches(batch), "snip")  # so an error names snip, not the gradient it calls
    scores = gradient(model, layers, batch)
    total = sum(float(s.sum()) for s in scores.values()) or 1.0
    return {n: s / total for n, s in scores.items()}


# --- second order: curvature ---------------------------------------------------------------------
@criterion(needs_data=True)
def fisher(model, layers, batch=None):
    """½ · F · w² with F the diagonal empirical Fisher, E[g²], estimated from per-batch gradients.

    The Fisher approximates the Hessian of the loss near a minimum, so this is the second-order
    estimate of the loss increase when w is removed (Theis et al., 2018; Singh & Alistarh's
    WoodFisher uses the full block). Pass many small batches: each contributes one g² sample.
    Cost: one backward per batch."""
    _require(b := as_batches(batch), "fisher")
    sq = _loss_gradients(model, b, square=True)
    return {n: 0.5 * sq[n + ".weight"] * m.weight.data ** 2 for n, m in layers.items()}


def hessian_vector_product(model, batches, vectors: dict, eps: float = 1e-6,
                           temperature: float = 1.0) -> dict:
    """H·v for the loss on `batches`, by central differences of gradients, in float64:
    Hv ≈ (∇L(w + hv) − ∇L(w − hv)) / 2h. `vectors` maps parameter names to arrays.

    The step h = eps / ‖v‖ moves the weights a distance `eps` in total, whatever the size of v.
    It must be tiny: the gradient of a ReLU network jumps wherever a unit switches on or off, and
    a step that crosses such kinks measures the jumps, not the curvature. In float64 a total step
    of 1e-6 crosses almost none and still leaves ~10 significant digits (on LeNet-300-100 the
    estimates for steps 1e-5 … 1e-7 agree to correlation 1.000; steps of 1e-3 gave 0.3)."""
    norm = np.sqrt(sum(float((v.astype(np.float64) ** 2).sum()) for v in vectors.values()))
    h = eps / norm if norm > 0 else eps

    def grads_at(sign):
        work = copy.deepcopy(model).eval()
        for name, p in work.named_parameters():
            p.data = p.data.astype(np.float64)
            if name in vectors:
                p.data = p.data + sign * h * vectors[name]
        return _loss_gradients(work, batches, temperature=temperature)

    plus, minus = grads_at(+1), grads_at(-1)
    return {n: (plus[n] - minus[n]) / (2 * h) for n in vectors}


@criterion(needs_data=True)
def obd(model, layers, batch=None, samples=32, seed=0):
    """Optimal Brain Damage (LeCun, Denker & Solla, 1990): saliency ½ · h_ii · w².

    OBD removes the weights whose deletion increases the loss least under a diagonal quadratic
    model. We estimate the Hessian diagonal with Hutchinson's trick, h ≈ E[v ⊙ Hv] for random ±1
    vectors v, each Hv from two gradient evaluations. The estimate is noisy where off-diagonal
    curvature is large (its variance is Σ_{j≠i} H_ij²/samples): raise `samples` for a steadier
    ranking. Cost: 2·`samples` backward passes per batch."""
    samples = checks.integer(samples, "samples", minimum=1)
    rng = np.random.default_rng(checks.integer(seed, "seed", minimum=0))
    _require(b := as_batches(batch), "obd")
    shapes = {n + ".weight": m.weight.shape for n, m in layers.items()}
    diag = {n: 0.0 for n in shapes}
    for _ in range(samples):
        v = {n: rng.choice([-1.0, 1.0], size=shape) for n, shape in shapes.items()}
        hv = hessian_vector_product(model, b, v)
        for n in shapes:
            diag[n] = diag[n] + v[n] * hv[n] / samples
    return {n: (0.5 * diag[n + ".weight"] * m.weight.data.astype(np.float64) ** 2)
            for n, m in layers.items()}


@criterion(needs_data=True)
def grasp(model, layers, batch=None, temperature=200.0):
    """GraSP (Wang, Zhang & Grosse, 2020): keep the weights that preserve gradient flow.

    The paper removes weights with the largest S(−w) = −w ⊙ Hg (g the gradient, H the Hessian);
    in our higher-is-kept convention the score is w ⊙ Hg. Like the paper we divide the logits by a
    temperature (200) first: at initialisation the softmax is then nearly uniform and every class
    contributes to the gradient flow. Scores are signed, so use it with `reduce="sum"` on groups.
    Cost: three gradient evaluations per batch."""
    temperature = checks.number(temperature, "temperature", lo=0, lo_open=True)
    _require(b := as_batches(batch), "grasp")
    grads = _loss_gradients(model, b, temperature=temperature)
    params = dict(model.named_parameters())
    names = [n for n, p in params.items() if p.data.ndim > 1]  # gradient flow through all weights
    hg = hessian_vector_product(model, b, {n: grads[n].astype(np.float64) for n in names},
                                temperature=temperature)
    return {n: m.weight.data * hg[n + ".weight"] for n, m in layers.items()}


@criterion(needs_data=False)
def synflow(model, layers, batch=None, input_shape=None):
    """SynFlow (Tanaka et al., 2020): |w ⊙ ∂R/∂w| with R = 1ᵀ (∏ |W_l|) 1, the "synaptic flow".

    Data-free: replace every weight by |w|, feed an all-ones input and sum the output. The score
    measures how much of the total path weight runs through each connection; pruning it
    *iteratively* (see `schedules.at_init`) avoids layer collapse. Cost: one forward + backward."""
    if input_shape is None:
        first = next(iter(layers.values()))
        input_shape = (first.in_channels, 28, 28) if isinstance(first, nn.Conv2d) else \
            (first.in_features,)
    input_shape = check_input_shape(input_shape)
    work = copy.deepcopy(model).eval()
    for p in work.parameters():  # float64: products of many |w| under/overflow in float32
        p.data = np.abs(p.data).astype(np.float64)
    for m in work.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):  # keep BN linear and positive
            m.running_mean = np.zeros_like(m.running_mean)
            m.running_var = np.ones_like(m.running_var)
    out = work(Tensor(np.ones((1, *input_shape)), dtype=np.float64))
    out.sum().backward()
    grads = dict(work.named_parameters())
    return {n: np.abs(grads[n + ".weight"].data * grads[n + ".weight"].grad) for n in layers}


# --- during fine-tuning ------------------------------------------------------------------------------
class MovementTracker:
    """A `fit` callback that accumulates movement scores S = −Σ_t w·g (Sanh et al., 2020).

    A weight moving *away* from zero during fine-tuning gets a positive score (keep); one shrinking
    toward zero, a negative one. Stores the running score on each weight as `param.movement`.

    `on_step_end` runs after the optimizer step, but g_t was taken at the weights *before* it, so
    the tracker keeps a copy of those (w_t) and multiplies g_t by them, as the paper's sum does."""

    def __init__(self, model, exclude=()):
        from .masks import prunable_layers
        self.layers = prunable_layers(model, exclude)
        self.on_train_begin(None)

    def on_train_begin(self, state):
        self.before = {n: m.weight.data.copy() for n, m in self.layers.items()}

    def on_step_end(self, state):
        for n, m in self.layers.items():
            w = m.weight
            if w.grad is not None:
                w.movement = getattr(w, "movement", 0.0) - self.before[n] * w.grad
            self.before[n] = w.data.copy()


@criterion(needs_data=False)
def movement(model, layers, batch=None):
    """Movement pruning (Sanh, Wolf & Rush, 2020): S = −Σ_t w·∂L/∂w over fine-tuning steps.

    First-order, but *dynamic*: it asks where weights are going, not where they are — better than
    magnitude when fine-tuning moves weights a lot. Needs scores from `MovementTracker` (a `fit`
    callback). Cost: one multiply-add per weight per step."""
    missing = [n for n, m in layers.items() if not hasattr(m.weight, "movement")]
    if missing:
        raise ValueError(f"criterion: 'movement' needs accumulated scores on {missing}; train with "
                         "callbacks=[prune.criteria.MovementTracker(model)] first")
    return {n: np.array(m.weight.movement, dtype=np.float64) for n, m in layers.items()}


@criterion(needs_data=False)
def lamp(model, layers, batch=None):
    """LAMP (Lee et al., 2021): score(u) = w_u² / Σ_{v ≥ u} w_v², the weights of a layer sorted
    by magnitude ascending. A layer's largest weight always scores 1, so a global ranking never
    empties a layer; scores are comparable across layers without tuning. Cost: one sort per layer."""
    out = {}
    for n, w in _weights(layers).items():
        sq = (w.astype(np.float64) ** 2).ravel()
        order = np.argsort(sq, kind="stable")
        tail = np.cumsum(sq[order][::-1])[::-1]  # Σ of this weight and every larger one
        score = np.empty_like(sq)
        score[order] = sq[order] / np.where(tail > 0, tail, 1.0)
        out[n] = score.reshape(w.shape)
    return out


# --- unit-level: activations, BatchNorm, geometry ------------------------------------------------
def unit_activations(model, layers, batches):
    """{layer: post-ReLU activations of its output units, as (examples·positions, units)}.

    Hooks each layer's output; the activation is taken after the layer's own BatchNorm (the
    graph's `batchnorm_of`: the real module, run in eval mode) and a ReLU, i.e. what the next
    layer sees of this layer alone — before any residual addition mixes in other layers."""
    recorded = {n: [] for n in layers}
    work = copy.deepcopy(model).eval()
    work_layers = dict(work.named_modules())
    graph = graph_of(work, np.shape(batches[0][0])[1:])
    bns = {n: graph.batchnorm_of(n) for n in layers}
    handles = []
    for name in layers:
        def hook(module, inputs, out, name=name):
            a = out.data
            if bns[name] is not None:
                a = work_layers[bns[name]](Tensor(a)).data
            a = np.maximum(a, 0)
            recorded[name].append(np.moveaxis(a, 1, -1).reshape(-1, a.shape[1]))
        handles.append(work_layers[name].register_forward_hook(hook))
    with no_grad():
        for x, _ in batches:
            work(Tensor(x))
    for h in handles:
        h.remove()
    return {n: np.concatenate(v) for n, v in recorded.items()}


@criterion(needs_data=True, level="unit")
def activation(model, layers, batch=None):
    """Mean activation of each unit over the data (post-ReLU, so mean |a|): units that rarely
    fire carry little signal (e.g. Hu et al. 2016's motivation; "activation pruning"). Cost: forward."""
    _require(b := as_batches(batch), "activation")
    return {n: a.mean(axis=0) for n, a in unit_activations(model, layers, b).items()}


@criterion(needs_data=True, level="unit")
def apoz(model, layers, batch=None):
    """1 − APoZ (Hu et al., 2016, "Network Trimming"): APoZ is the Average Percentage of Zeros a
    unit outputs after ReLU; a unit that is almost always 0 is removable. Cost: forward passes."""
    _require(b := as_batches(batch), "apoz")
    return {n: 1.0 - (a <= 0).mean(axis=0) for n, a in unit_activations(model, layers, b).items()}


@criterion(needs_data=False, level="unit")
def bn_scale(model, layers, batch=None):
    """|γ| of the BatchNorm after each layer — Network Slimming (Liu et al., 2017). A channel whose
    scale γ is near 0 is multiplied away anyway. Best after training with an L1 penalty on γ."""
    out = {}
    for n in layers:
        bn = following_batchnorm(model, n)
        if bn is None:
            raise ValueError(f"criterion: 'bn_scale' needs a BatchNorm after layer {n!r}; exclude "
                             "that layer or pick another criterion")
        out[n] = np.abs(bn.weight.data)
    return out


@criterion(needs_data=False, level="unit")
def fpgm(model, layers, batch=None):
    """FPGM (He et al., 2019): filters near the geometric median of their layer are redundant —
    the others can stand in for them. Score = Σ_j ‖F_i − F_j‖₂ (small = close to the median,
    pruned first). Cost: O(filters² · filter size) per layer."""
    out = {}
    for n, w in _weights(layers).items():
        flat = w.reshape(w.shape[0], -1).astype(np.float64)
        sq = (flat ** 2).sum(axis=1)
        d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * flat @ flat.T, 0)
        out[n] = np.sqrt(d2).sum(axis=1)
    return out


# --- whole residual blocks (granularity="layer") ---------------------------------------------------
# A block criterion scores each residual block's branch f as one unit (higher = kept):
#     scores = f(model, blocks, batch=None, **options) -> {block name: float}
# with `blocks` {block name: graph.ResidualBlock}. They are not in CRITERIA: their unit is a
# block, not a layer's weights, so they only apply to `prune(..., granularity="layer")`.
def _branch_parameters(modules, block) -> list:
    return [p for name in block.branch for p in modules[name]._parameters.values()]


def block_magnitude(model, blocks, batch=None) -> dict:
    """‖θ_f‖₂: the L2 norm of all the branch's parameters (convolution weights and biases,
    BatchNorm γ and β; pruned ones count 0) — the group norm `group_lasso(model, "layer", s)`
    drives to 0. Cost: one pass over the weights, no data. A wider branch has more weights and so
    a larger norm: across stages of different widths it favours removing the narrow blocks."""
    modules = dict(model.named_modules())
    return {n: float(np.sqrt(sum(np.sum(p.data.astype(np.float64) ** 2)
                                 for p in _branch_parameters(modules, b))))
            for n, b in blocks.items()}


def _mean_loss(model, batches) -> float:
    with no_grad():
        return float(np.mean([fn.cross_entropy(model(Tensor(x)), y).data for x, y in batches]))


def block_loss(model, blocks, batch=None) -> dict:
    """L(without f) − L(with f): how much the cross-entropy on the batches rises when the branch
    is removed (f = 0, the block computes its input again) — the exact effect, not an estimate
    (Molchanov et al. 2017's "oracle"; Veit et al. 2016 measured it for every ResNet block). A
    block whose removal *lowers* the loss scores below 0 and goes first. Measured on a copy in
    eval mode (BatchNorm running statistics, untouched). Cost: one forward pass per block (and
    one for the baseline) per batch, one block removed at a time, so interactions are not seen."""
    _require(batches := as_batches(batch), "block_loss")
    work = copy.deepcopy(model).eval()
    modules = dict(work.named_modules())
    base = _mean_loss(work, batches)
    scores = {}
    for n, b in blocks.items():
        params = _branch_parameters(modules, b)
        saved = [p.data.copy() for p in params]
        for p in params:
            p.data[...] = 0
        scores[n] = _mean_loss(work, batches) - base
        for p, data in zip(params, saved):
            p.data[...] = data
    return scores


block_magnitude.needs_data, block_loss.needs_data = False, True  # as `@criterion` marks the rest
BLOCK_CRITERIA = {"magnitude": block_magnitude, "block_loss": block_loss}


def get_criterion(name_or_fn):
    """A criterion by name, or a user's callable `f(model, layers, batch)` (taken as weight-level
    unless it has `.level = "unit"`)."""
    if callable(name_or_fn):
        return name_or_fn
    if name_or_fn in BLOCK_CRITERIA and name_or_fn not in CRITERIA:
        raise ValueError(f"criterion: {name_or_fn!r} scores whole residual blocks, so it needs "
                         "granularity='layer'")
    if name_or_fn not in CRITERIA:
        raise ValueError(f"criterion: {name_or_fn!r} is not one of {sorted(CRITERIA)} or a callable")
    return CRITERIA[name_or_fn]
