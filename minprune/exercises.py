"""Checkers for the lesson exercises (classroom autograding).

A lesson's exercise cell asks the student to write a small function (or compute a number) and then
hands it to one of the checkers below. A checker compares the answer with the truth computed by
minprune itself on several inputs and either prints "✓ correct" or raises `AssertionError` with a
hint that says what went wrong: the input that failed, what was expected, what came back, and the
usual mistake that produces that answer.

    import minprune.exercises as ex
    ex.check_mul_backward(my_mul_backward)

The checkers are grouped by lesson; each section says which notebook uses it. Checkers for later
lessons (pruning) go in their own sections at the end, using the shared helpers at the top.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import functions as F
from . import kernels as K
from . import nn
from .autograd import no_grad
from .tensor import Tensor

__all__ = [
    # lesson 01: autograd from scratch
    "check_mul_backward", "check_grad_check", "check_unbroadcast",
    # lesson 02: layers and convolution
    "check_conv_output_shape", "check_im2col_shape", "check_conv_macs",
    # lesson 03: training a baseline
    "check_count_parameters", "check_accuracy", "check_weight_fraction",
]


# =================================================================================================
# Shared helpers
# =================================================================================================
def _correct(detail: str = "") -> None:
    """What every checker prints when the answer is right."""
    print("✓ correct" + (f" — {detail}" if detail else ""))


def _fail(message: str, hint: str = "") -> None:
    """Raise the AssertionError a student sees: what failed, then a hint."""
    raise AssertionError(message + (f"\nHint: {hint}" if hint else ""))


def _require_callable(fn, name: str) -> None:
    if not callable(fn):
        raise TypeError(f"{name}: expected a function, got {type(fn).__name__}")


def _as_array(value, what: str) -> np.ndarray:
    """Accept an ndarray, a Tensor or a Python number as an answer; refuse None with a hint."""
    if value is None:
        _fail(f"{what} is None.", "did you forget a `return` statement?")
    if isinstance(value, Tensor):
        value = value.data
    return np.asarray(value, dtype=np.float64)


def _score_arrays(answer, want: dict, who: str = "", hint: str = "") -> dict:
    """Check that a student's `{layer name: scores}` answer has every layer of `want`, each an
    array of the same shape; return the arrays. `who` prefixes messages (e.g. the model's name)."""
    where = f"{who}: " if who else ""
    if not isinstance(answer, dict):
        _fail(f"{where}fn should return a dict {{layer name: scores}}, got "
              f"{type(answer).__name__}.", hint)
    arrays = {}
    for n, w in want.items():
        if n not in answer:
            _fail(f"{where}no scores for layer {n!r}; expected keys {list(want)}.",
                  "use the names from `mp.prune.prunable_layers(model)`.")
        arrays[n] = _as_array(answer[n], f"scores[{n!r}]")
        if arrays[n].shape != w.shape:
            _fail(f"{where}scores[{n!r}] has shape {arrays[n].shape}, expected one score per "
                  f"weight {w.shape}.")
    return arrays


def _as_int(value, what: str) -> int:
    """Accept an int-valued answer (int, NumPy integer, or a float that is a whole number)."""
    if value is None:
        _fail(f"{what} is None.", "did you forget a `return` statement?")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        _fail(f"{what} should be a number, got {type(value).__name__} {value!r}.")
    if value != int(value):
        _fail(f"{what} should be a whole number, got {value!r}.",
              "sizes and counts are integers: use floor division `//`, not `/`.")
    return int(value)


def _prunable_weights(model) -> list[np.ndarray]:
    """The weights pruning acts on by default: every Conv2d and Linear `weight` (no biases)."""
    return [m.weight.data for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


# =================================================================================================
# Lesson 01 — autograd from scratch (lessons/01_autograd_from_scratch.ipynb)
# =================================================================================================
def _numeric_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar function f at x (float64), one coordinate at a time."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = f(x)
        x[i] = old - eps
        down = f(x)
        x[i] = old
        grad[i] = (up - down) / (2 * eps)
    return grad


def check_mul_backward(fn) -> None:
    """`fn(a, b, grad) -> (grad_a, grad_b)`: the backward pass of elementwise `out = a * b`.

    `grad` is dLoss/dout (same shape as a and b); the answer must be dLoss/da and dLoss/db. It is
    compared with central-difference gradients of Loss = sum(grad * a * b) on random inputs.
    """
    _require_callable(fn, "fn")
    rng = np.random.default_rng(0)
    for shape in [(3,), (2, 4), (2, 3, 2)]:
        a, b, g = (rng.normal(size=shape) for _ in range(3))
        answer = fn(a.copy(), b.copy(), g.copy())
        if not isinstance(answer, (tuple, list)) or len(answer) != 2:
            _fail(f"fn should return a pair (grad_a, grad_b), got {type(answer).__name__}.",
                  "return both gradients: `return grad_a, grad_b`.")
        da, db = (_as_array(v, name) for v, name in zip(answer, ("grad_a", "grad_b")))
        want_a = _numeric_grad(lambda t, b=b, g=g: np.sum(g * t * b), a)
        want_b = _numeric_grad(lambda t, a=a, g=g: np.sum(g * a * t), b)
        for got, want, name, other in [(da, want_a, "grad_a", "b"), (db, want_b, "grad_b", "a")]:
            if got.shape != shape:
                _fail(f"{name} has shape {got.shape}; inputs of shape {shape} need a gradient "
                      f"of the same shape.")
            if not np.allclose(got, want, rtol=1e-5, atol=1e-6):
                right, wrong = (b, a) if other == "b" else (a, b)
                hint = (f"d(a*b)/d{name[-1]} = {other}, and the chain rule multiplies by the "
                        f"incoming grad: {name} = grad * {other}.")
                if np.allclose(got, g * wrong):
                    hint = f"you multiplied by the wrong input: {name} needs grad * {other}."
                elif np.allclose(got, right):
                    hint = f"you forgot the incoming gradient: {name} = grad * {other}."
                _fail(f"{name} is wrong for inputs of shape {shape}.\n"
                      f"  expected (numeric): {np.round(want.ravel()[:4], 5)} ...\n"
                      f"  got:                {np.round(got.ravel()[:4], 5)} ...", hint)
    _correct("your backward matches central-difference gradients on random inputs")


def check_grad_check(fn) -> None:
    """`fn(f, x, eps) -> gradient`: a central-difference gradient of a scalar function.

    `f` takes a float64 array like `x` and returns a float. The answer must have x's shape, match
    the known derivatives of several functions, use *central* differences, and leave `x` as it was.
    """
    _require_callable(fn, "fn")
    rng = np.random.default_rng(1)
    cases = [
        ("sum(x**2)", lambda x: float(np.sum(x ** 2)), lambda x: 2 * x, rng.normal(size=5)),
        ("sum(sin(x))", lambda x: float(np.sum(np.sin(x))), np.cos, rng.normal(size=(2, 3))),
        ("x[0] * x[1]**2", lambda x: float(x[0] * x[1] ** 2),
         lambda x: np.array([x[1] ** 2, 2 * x[0] * x[1]]), np.array([1.5, -2.0])),
    ]
    for name, f, df, x in cases:
        original = x.copy()
        got = _as_array(fn(f, x, 1e-6), "the gradient")
        if not np.array_equal(x, original):
            _fail(f"fn changed its input x while checking f = {name}.",
                  "put each coordinate back after nudging it: save `old = x[i]`, then `x[i] = old`.")
        if got.shape != x.shape:
            _fail(f"for f = {name} at x of shape {x.shape} the gradient has shape {got.shape}.",
                  "the gradient has one entry per coordinate of x: start from np.zeros_like(x).")
        want = df(x)
        if not np.allclose(got, want, rtol=1e-4, atol=1e-5):
            _fail(f"for f = {name} the gradient is wrong.\n  expected: {np.round(want, 5)}\n"
                  f"  got:      {np.round(got, 5)}",
                  "nudge one coordinate at a time: (f(x + eps·e_i) − f(x − eps·e_i)) / (2·eps).")
    # A big eps tells central differences (error ~ eps²) from one-sided ones (error ~ eps).
    x = np.array([1.0, 2.0, -1.5])
    got = _as_array(fn(lambda t: float(np.sum(t ** 3)), x.copy(), 1e-2), "the gradient")
    want = 3 * x ** 2
    if np.abs(got - want).max() > 1e-3:
        _fail("with eps = 1e-2 on f = sum(x**3) the error is "
              f"{np.abs(got - want).max():.2g}; central differences give about 1e-4.",
              "a one-sided difference (f(x+eps) − f(x)) / eps has error ~eps; use "
              "(f(x+eps) − f(x−eps)) / (2·eps), whose error shrinks like eps².")
    _correct("central differences agree with the known derivatives")


def check_unbroadcast(fn) -> None:
    """`fn(grad, shape) -> array of shape`: sum a gradient back to the shape of a broadcast input.

    When `a` of shape `shape` was broadcast to grad.shape in the forward pass, every copy of an
    entry of `a` received gradient, so the copies' gradients must be summed.
    """
    _require_callable(fn, "fn")
    rng = np.random.default_rng(2)
    cases = [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 4), (1, 4)), ((3, 4), (3, 1)),
             ((2, 3, 4), (3, 1)), ((2, 3, 4), (1, 3, 4)), ((3, 4), ())]
    for gshape, shape in cases:
        g = rng.normal(size=gshape)
        got = _as_array(fn(g.copy(), shape), "the result")
        want = F.unbroadcast(g, shape)
        if got.shape != tuple(shape):
            _fail(f"grad of shape {gshape} summed back to {shape} should have shape {shape}, "
                  f"got {got.shape}.",
                  "first sum over the extra leading axes, then over every axis where shape has "
                  "size 1 (with keepdims=True).")
        if not np.allclose(got, want):
            hint = "sum the gradient over broadcast axes; do not take the mean or pick one copy."
            if np.allclose(got * np.prod(gshape) / max(np.prod(shape), 1), want):
                hint = "it looks like you averaged: broadcasting copies a value, so gradients add up."
            _fail(f"grad of shape {gshape} summed back to {shape} has the wrong values.", hint)
    _correct("gradients are summed back over every broadcast axis")


# =================================================================================================
# Lesson 02 — layers and convolution (lessons/02_layers_and_convolution.ipynb)
# =================================================================================================
def _real_conv_shape(x_shape, out_channels, kernel, stride, padding) -> tuple:
    """The output shape minprune's convolution actually produces (run on zeros)."""
    w = np.zeros((out_channels, x_shape[1], *kernel), np.float32)
    with no_grad():
        out = nn.functional.conv2d(Tensor(np.zeros(x_shape, np.float32)), Tensor(w),
                                   stride=stride, padding=padding)
    return out.shape


def check_conv_output_shape(fn) -> None:
    """`fn(size, kernel_size, stride, padding) -> int`: output size of a convolution along one axis.

    Compared with the output of minprune's real convolution for many sizes, kernels, strides and
    paddings.
    """
    _require_callable(fn, "fn")
    checked = 0
    for size in (5, 7, 8, 12, 28):
        for k in (1, 2, 3, 5):
            for stride in (1, 2, 3):
                for padding in (0, 1, 2):
                    if size + 2 * padding < k:
                        continue
                    want = _real_conv_shape((1, 1, size, size), 1, (k, k), stride, padding)[2]
                    got = _as_int(fn(size, k, stride, padding),
                                  f"fn(size={size}, kernel_size={k}, stride={stride}, "
                                  f"padding={padding})")
                    if got != want:
                        _fail(f"size={size}, kernel_size={k}, stride={stride}, padding={padding}: "
                              f"the real convolution gives {want}, your formula gives {got}.",
                              "padding adds to both sides (2·padding), the kernel must fit "
                              "entirely, and the window moves `stride` pixels: "
                              "(size + 2·padding − kernel_size) // stride + 1.")
                    checked += 1
    _correct(f"your formula matches the real convolution on {checked} configurations")


def check_im2col_shape(fn) -> None:
    """`fn(x_shape, kernel_size, stride, padding) -> (rows, cols)`: shape of the im2col matrix.

    x_shape is (N, C, H, W); kernel_size, stride and padding are (h, w) pairs. The answer is compared
    with the shape of `minprune.kernels.im2col` applied to the padded input.
    """
    _require_callable(fn, "fn")
    configs = [((1, 1, 28, 28), (5, 5), (1, 1), (2, 2)),
               ((2, 6, 14, 14), (5, 5), (1, 1), (0, 0)),
               ((4, 3, 9, 7), (3, 2), (2, 1), (1, 0)),
               ((3, 8, 10, 10), (1, 1), (1, 1), (0, 0)),
               ((2, 2, 11, 13), (3, 3), (2, 3), (1, 2))]
    for x_shape, (kh, kw), (sh, sw), (ph, pw) in configs:
        xp = K.pad2d(np.zeros(x_shape, np.float32), ph, pw)
        want = K.im2col(xp, kh, kw, sh, sw).shape
        answer = fn(x_shape, (kh, kw), (sh, sw), (ph, pw))
        if not isinstance(answer, (tuple, list)) or len(answer) != 2:
            _fail(f"fn should return a pair (rows, cols), got {answer!r}.")
        got = tuple(_as_int(v, name) for v, name in zip(answer, ("rows", "cols")))
        if got != want:
            hint = ("one row per output pixel of every image: N·OH·OW rows; one column per "
                    "weight of a filter: C·kh·kw columns.")
            if got == want[::-1]:
                hint = "rows and columns are swapped: rows are patches (N·OH·OW), columns C·kh·kw."
            _fail(f"x_shape={x_shape}, kernel={(kh, kw)}, stride={(sh, sw)}, padding={(ph, pw)}: "
                  f"im2col gives shape {want}, you said {got}.", hint)
    _correct("your shapes match minprune.kernels.im2col")


def check_conv_macs(fn) -> None:
    """`fn(layer, input_shape) -> int`: multiply-adds one example costs in `layer`.

    layer is an `nn.Conv2d` (input_shape (C, H, W)) or an `nn.Linear` (input_shape (in_features,)).
    A convolution does C·kh·kw multiply-adds for each output value, and has O·OH·OW output values;
    biases are additions only and are not counted.
    """
    _require_callable(fn, "fn")
    cases = [(nn.Conv2d(1, 6, 5, padding=2), (1, 28, 28)), (nn.Conv2d(6, 16, 5), (6, 14, 14)),
             (nn.Conv2d(3, 8, 3, stride=2, padding=1), (3, 15, 15)),
             (nn.Conv2d(4, 2, (3, 1), bias=False), (4, 9, 6)),
             (nn.Linear(400, 120), (400,)), (nn.Linear(84, 10, bias=False), (84,))]
    for layer, input_shape in cases:
        if isinstance(layer, nn.Conv2d):
            out = _real_conv_shape((1, *input_shape), layer.out_channels, layer.kernel_size,
                                   layer.stride, layer.padding)
            per_output = layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1]
            want = int(np.prod(out[1:])) * per_output
        else:
            want = layer.in_features * layer.out_features
        got = _as_int(fn(layer, input_shape), f"fn({layer!r}, {input_shape})")
        if got != want:
            hint = ("each output value costs one multiply-add per weight of its filter: "
                    "(O·OH·OW)·(C·kh·kw) for Conv2d, in·out for Linear.")
            if got == 2 * want:
                hint = "you counted FLOPs (a multiply and an add); a multiply-add counts once."
            elif isinstance(layer, nn.Conv2d) and got == layer.weight.size:
                hint = "that is the number of weights; each is used once per output pixel (OH·OW)."
            elif layer.bias is not None and got == want + layer.bias.size * (want // layer.weight.size):
                hint = "the bias adds, it does not multiply: leave it out of the count."
            _fail(f"{layer!r} on input {input_shape}: expected {want:,} multiply-adds, got {got:,}.",
                  hint)
    _correct("multiply-add counts agree for Conv2d and Linear layers")


# =================================================================================================
# Lesson 03 — training a baseline (lessons/03_training_a_baseline.ipynb)
# =================================================================================================
def check_count_parameters(fn) -> None:
    """`fn(model) -> int`: the number of trainable numbers in a model (weights *and* biases)."""
    _require_callable(fn, "fn")
    from .models import lenet5, lenet_300_100

    models = {"lenet5()": lenet5(), "lenet_300_100()": lenet_300_100(),
              "a small Sequential": nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.ReLU(),
                                                  nn.Flatten(), nn.Linear(4 * 26 * 26, 10))}
    for name, model in models.items():
        want = sum(p.size for p in model.parameters())
        got = _as_int(fn(model), f"fn({name})")
        if got != want:
            hint = "add up `p.size` for every `p` in `model.parameters()`."
            if got == sum(w.size for w in _prunable_weights(model)):
                hint = "you counted only the weights; biases are parameters too."
            _fail(f"{name} has {want:,} parameters, you counted {got:,}.", hint)
    _correct("parameter counts agree (LeNet-5 has 61,706)")


def check_accuracy(fn) -> None:
    """`fn(model, x, y) -> float`: the fraction of examples in x whose predicted class is y.

    The answer must lie in [0, 1] and agree with `minprune.train.evaluate`.
    """
    _require_callable(fn, "fn")
    from .models import lenet_300_100

    rng = np.random.default_rng(3)
    model = lenet_300_100(seed=3)
    x = rng.random((60, 1, 28, 28), dtype=np.float32)
    with no_grad():
        predicted = model.eval()(Tensor(x)).data.argmax(axis=1)
    model.train()
    half = predicted.copy()
    half[::2] = (half[::2] + 1) % 10  # exactly every other prediction made wrong
    for name, y, want in [("labels = the model's own predictions", predicted, 1.0),
                          ("labels that disagree on every other example", half, 0.5),
                          ("random labels", rng.integers(0, 10, 60), None)]:
        if want is None:
            from .train import evaluate
            want = evaluate(model, (x, y)).accuracy
        got = float(_as_array(fn(model, x, y), "the accuracy"))
        if not np.isclose(got, want):
            hint = "accuracy = mean(logits.argmax(axis=1) == y), a fraction between 0 and 1."
            if np.isclose(got, 100 * want):
                hint = "return a fraction in [0, 1], not a percentage."
            elif np.isclose(got, want * len(y)):
                hint = "that is the number correct; divide by the number of examples."
            _fail(f"with {name} the accuracy is {want:.3f}, you returned {got:.3f}.", hint)
    _correct("your accuracy agrees with minprune.train.evaluate")


def _fraction_below(model, threshold: float, biases: bool = False) -> float:
    arrays = _prunable_weights(model)
    if biases:
        arrays = arrays + [m.bias.data for m in model.modules()
                           if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None]
    values = np.concatenate([a.ravel() for a in arrays])
    return float(np.mean(np.abs(values) < threshold))


def check_weight_fraction(fn_or_value, model, threshold: float = 0.01) -> None:
    """The fraction of Conv2d/Linear weights (no biases) of `model` with |w| < threshold.

    Pass either a function `fn(model, threshold) -> float`, checked at several thresholds, or the
    number you computed for `threshold`.
    """
    if not any(True for _ in _prunable_weights(model)):
        raise ValueError("model: it has no Conv2d or Linear layers to count weights in")
    if callable(fn_or_value):
        thresholds = sorted({threshold, 1e-3, 0.01, 0.05, 0.2})
        answers = [(t, fn_or_value(model, t)) for t in thresholds]
    else:
        answers = [(threshold, fn_or_value)]
    for t, answer in answers:
        got = float(_as_array(answer, f"the fraction at threshold {t}"))
        want = _fraction_below(model, t)
        if not np.isclose(got, want, atol=1e-9):
            hint = ("pool the `weight` of every Conv2d and Linear layer (np.concatenate of the "
                    "flattened arrays), then np.mean(np.abs(w) < threshold).")
            n = sum(w.size for w in _prunable_weights(model))
            if np.isclose(got, _fraction_below(model, t, biases=True)):
                hint = "you included the biases; count only the Conv2d/Linear weights."
            elif np.isclose(got, 100 * want):
                hint = "return a fraction in [0, 1], not a percentage."
            elif np.isclose(got, want * n):
                hint = f"that is a count; divide by the number of weights ({n:,})."
            elif np.isclose(got, 1 - want):
                hint = "you counted the weights at or above the threshold; we want |w| < threshold."
            _fail(f"at threshold {t} the true fraction is {want:.4f}, you gave {got:.4f}.", hint)
    _correct(f"{_fraction_below(model, threshold):.1%} of the weights have |w| < {threshold}")


# =================================================================================================
# Lessons 04+ — pruning (criteria, structures, scope, schedules, fine-tune vs scratch)
# Add each lesson's checkers in a section like the ones above and list them in __all__.
# =================================================================================================


# --- Lessons 04-08: pruning ---
# lesson 04: check_sparsity, check_global_threshold, check_gradient_scores
# lesson 05: check_layerwise_counts, check_global_counts
# lesson 07: check_filter_l1_scores, check_nm_mask
__all__ += ["check_sparsity", "check_global_threshold", "check_gradient_scores",
            "check_layerwise_counts", "check_global_counts", "check_filter_l1_scores",
            "check_nm_mask"]


def _pruning_models() -> dict:
    """A few models with different sparsities per layer, built with minprune's own pruning."""
    from .models import lenet5, lenet_300_100
    from .prune import prune

    dense = lenet5(seed=1)
    glob = lenet5(seed=2)
    prune(glob, 0.7, scope="global")
    layer = lenet_300_100(seed=3)
    prune(layer, 0.9, scope="layerwise")
    filt = lenet5(seed=4)
    prune(filt, 0.5, granularity="filter", scope="layerwise")
    return {"a dense lenet5": dense, "lenet5 pruned 70% globally": glob,
            "lenet_300_100 pruned 90% per layer": layer, "lenet5 with half its filters pruned": filt}


def _layer_weights(model) -> dict:
    from .prune.masks import prunable_layers
    return {n: m.weight.data for n, m in prunable_layers(model).items()}


def _as_count_dict(answer, names, what) -> dict:
    if answer is None:
        _fail(f"{what} is None.", "did you forget a `return` statement?")
    if not isinstance(answer, dict):
        _fail(f"{what} should be a dict {{layer name: count}}, got {type(answer).__name__}.",
              "loop over `mp.prune.prunable_layers(model).items()` and store one count per name.")
    missing = [n for n in names if n not in answer]
    if missing:
        _fail(f"{what} has no entry for {missing}; expected the keys {list(names)}.",
              "use the names from `mp.prune.prunable_layers(model)` (e.g. 'features.0').")
    return {n: _as_int(answer[n], f"{what}[{n!r}]") for n in names}


def check_sparsity(fn) -> None:
    """`fn(model) -> float`: the fraction of the model's Conv2d/Linear weights that are exactly 0.

    Checked against `mp.prune.sparsity` on dense, globally, layerwise and filter-pruned models."""
    _require_callable(fn, "fn")
    from .prune import sparsity

    for name, model in _pruning_models().items():
        want = sparsity(model)
        got = float(_as_array(fn(model), f"fn({name})"))
        if not np.isclose(got, want, atol=1e-9):
            ws = list(_layer_weights(model).values())
            n = sum(w.size for w in ws)
            per_layer = np.mean([1 - np.count_nonzero(w) / w.size for w in ws])
            every = [p.data for p in model.parameters()]
            with_bias = 1 - sum(np.count_nonzero(a) for a in every) / sum(a.size for a in every)
            hint = ("count the zeros of every Conv2d/Linear `weight` together and divide by the "
                    "total number of those weights.")
            if np.isclose(got, 1 - want):
                hint = "that is the density (fraction nonzero); sparsity is the fraction of zeros."
            elif np.isclose(got, 100 * want):
                hint = "return a fraction in [0, 1], not a percentage."
            elif np.isclose(got, want * n):
                hint = f"that is the number of zeros; divide by the number of weights ({n:,})."
            elif np.isclose(got, per_layer):
                hint = ("you averaged the per-layer sparsities; big layers hold more weights, so "
                        "pool all weights first (a weighted average).")
            elif np.isclose(got, with_bias):
                hint = "you included biases; sparsity counts only the Conv2d/Linear weights."
            _fail(f"{name}: sparsity is {want:.4f}, you returned {got:.4f}.", hint)
    _correct("your sparsity agrees with mp.prune.sparsity on four models")


def check_global_threshold(fn) -> None:
    """`fn(model, sparsity) -> float`: the magnitude threshold t of global magnitude pruning.

    Pruning every Conv2d/Linear weight with |w| <= t must remove exactly the weights that
    `mp.prune.prune(model, sparsity, criterion="magnitude", scope="global")` removes, i.e. t is at
    least the largest pruned |w| and below the smallest kept |w|."""
    _require_callable(fn, "fn")
    import copy

    from .models import lenet5, lenet_300_100
    from .prune import prune

    for model, name in [(lenet5(seed=5), "lenet5"), (lenet_300_100(seed=6), "lenet_300_100")]:
        for s in (0.3, 0.8, 0.95):
            pruned = copy.deepcopy(model)
            prune(pruned, s, criterion="magnitude", scope="global")
            mags = np.concatenate([np.abs(w).ravel() for w in _layer_weights(model).values()])
            gone = np.concatenate([(w == 0).ravel() for w in _layer_weights(pruned).values()])
            lo, hi = mags[gone].max(), mags[~gone].min()
            got = float(_as_array(fn(copy.deepcopy(model), s), f"fn({name}, {s})"))
            if not lo <= got < hi:
                k = int(gone.sum())
                signed = np.sort(np.concatenate([w.ravel() for w in
                                                 _layer_weights(model).values()]))[k - 1]
                hint = (f"sort all |w| of the Conv2d/Linear weights together; global pruning at "
                        f"{s} removes k = round({s}·N) = {k:,} of them, and the threshold is the "
                        "k-th smallest |w|.")
                if np.isclose(got, signed):
                    hint = "rank the magnitudes |w|, not the signed weights."
                elif got < lo and np.mean(mags <= got) < s - 0.02:
                    hint = (f"pruning |w| <= {got:.4g} removes only {np.mean(mags <= got):.1%}; "
                            "did you compute the threshold of one layer instead of all layers "
                            "together?")
                _fail(f"{name} at sparsity {s}: the threshold must lie in [{lo:.6g}, {hi:.6g}) "
                      f"(largest pruned |w|, smallest kept |w|); you returned {got:.6g}.", hint)
    _correct("your threshold reproduces global magnitude pruning exactly")


def check_gradient_scores(fn) -> None:
    """`fn(model, x, y) -> {layer name: array}`: the gradient-magnitude score |w · ∂L/∂w| of every
    weight of every Conv2d/Linear layer, L the mean cross-entropy on (x, y).

    Compared with `mp.prune.criteria.gradient`. The model given to `fn` already holds stale
    gradients from an earlier backward pass, as a model often does."""
    _require_callable(fn, "fn")
    from .models import lenet5
    from .nn import functional as F_
    from .prune import criteria
    from .prune.masks import prunable_layers

    rng = np.random.default_rng(7)
    model = lenet5(seed=7)
    x = rng.random((32, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, 32)
    want = criteria.gradient(model, prunable_layers(model), (x, y))
    F_.cross_entropy(model(Tensor(x[:4])), y[:4]).backward()  # stale gradients on purpose
    import copy
    answer = _score_arrays(fn(copy.deepcopy(model), x, y), want)
    for n, w in want.items():
        got = answer[n]
        if not np.allclose(got, w, rtol=1e-3, atol=1e-7):
            hint = ("zero the gradients, run loss = cross_entropy(model(mp.tensor(x)), y), call "
                    "loss.backward(), then |weight.data * weight.grad| for each layer.")
            if (got < 0).any():
                hint = "take the absolute value: the score is |w · g|."
            elif np.allclose(got, np.abs(prunable_layers(model)[n].weight.data)):
                hint = "that is |w| (magnitude); multiply by the gradient."
            elif not np.allclose(got, w, rtol=0.5):
                hint += " If your numbers are off, did you call model.zero_grad() first? " \
                        "Gradients accumulate across backward passes."
            _fail(f"scores for {n!r} differ from |w · ∂L/∂w|: first values "
                  f"{np.round(got.ravel()[:3], 6)} vs expected {np.round(w.ravel()[:3], 6)}.", hint)
    _correct("your |w·g| scores match mp.prune.criteria.gradient")


def check_layerwise_counts(fn) -> None:
    """`fn(model, sparsity) -> {layer name: weights pruned}` for *layerwise* pruning: every layer
    loses the same fraction of its own weights. Compared with `prune(..., scope="layerwise")`."""
    _require_callable(fn, "fn")
    import copy

    from .models import lenet5, lenet_300_100
    from .prune import prune

    for model, name in [(lenet5(seed=8), "lenet5"), (lenet_300_100(seed=8), "lenet_300_100")]:
        for s in (0.25, 0.9, 0.97):
            pruned = copy.deepcopy(model)
            prune(pruned, s, scope="layerwise")
            want = {n: int((w == 0).sum()) for n, w in _layer_weights(pruned).items()}
            got = _as_count_dict(fn(copy.deepcopy(model), s), list(want), f"fn({name}, {s})")
            for n in want:
                if got[n] != want[n]:
                    size = _layer_weights(model)[n].size
                    hint = f"layer {n!r} has {size:,} weights: prune round({s}·{size:,})."
                    if got[n] == int(s * size):
                        hint = "int() truncates; minprune rounds: round(s·n)."
                    elif got[n] == size - want[n]:
                        hint = "you counted the weights kept; count the weights pruned."
                    _fail(f"{name} at sparsity {s}: layer {n!r} loses {want[n]:,} weights, you "
                          f"said {got[n]:,}.", hint)
    _correct("your counts match layerwise pruning")


def check_global_counts(fn) -> None:
    """`fn(model, sparsity) -> {layer name: weights pruned}` for *global* magnitude pruning: one
    threshold over all layers. Compared with `prune(..., scope="global")`; weights whose |w| ties
    with the threshold may be counted either way."""
    _require_callable(fn, "fn")
    import copy

    from .models import lenet5, lenet_300_100
    from .prune import prune

    for model, name in [(lenet5(seed=9), "lenet5"), (lenet_300_100(seed=9), "lenet_300_100")]:
        for s in (0.5, 0.9):
            pruned = copy.deepcopy(model)
            prune(pruned, s, scope="global")
            want = {n: int((w == 0).sum()) for n, w in _layer_weights(pruned).items()}
            got = _as_count_dict(fn(copy.deepcopy(model), s), list(want), f"fn({name}, {s})")
            ws = _layer_weights(model)
            mags = np.sort(np.concatenate([np.abs(w).ravel() for w in ws.values()]))
            t = mags[round(s * mags.size) - 1]  # weights tied with t may fall either way
            tied_ok = all(int((np.abs(ws[n]) < t).sum()) <= got[n] <= int((np.abs(ws[n]) <= t).sum())
                          for n in want)
            if got != want and not tied_ok:
                sizes = {n: w.size for n, w in _layer_weights(model).items()}
                hint = ("find the global threshold (the k-th smallest |w| over all layers, "
                        "k = round(s·N)), then count per layer the weights with |w| <= threshold.")
                if all(got[n] == round(s * sizes[n]) for n in sizes):
                    hint = ("those are layerwise counts (the same fraction of every layer); global "
                            "pruning uses one threshold for all layers, so layers differ.")
                elif sum(got.values()) == sum(want.values()):
                    hint = "the total is right but not the split; rank |w|, not w."
                _fail(f"{name} at sparsity {s}: global pruning removes {want}, you said {got}.",
                      hint)
    _correct("your counts match global magnitude pruning — note how unevenly layers are hit")


def _filter_cases(rng):
    return {"a Conv2d weight (8, 3, 3, 3)": rng.normal(size=(8, 3, 3, 3)).astype(np.float32),
            "a Conv2d weight (4, 6, 5, 5)": rng.normal(size=(4, 6, 5, 5)).astype(np.float32),
            "a Linear weight (10, 12)": rng.normal(size=(10, 12)).astype(np.float32)}


def check_filter_l1_scores(fn) -> None:
    """`fn(weight) -> array (out,)`: the L1 norm of each filter (each output unit) of a Conv2d
    (out, in, kh, kw) or Linear (out, in) weight — the score of Li et al. (2017)'s filter pruning,
    the same as magnitude + granularity="filter" + reduce="l1"."""
    _require_callable(fn, "fn")
    from .prune import structures

    gran = structures.parse("filter")
    for name, w in _filter_cases(np.random.default_rng(10)).items():
        want = gran.group_scores(np.abs(w), "l1")
        got = _as_array(fn(w.copy()), f"fn({name})")
        if got.shape != want.shape:
            hint = "one score per output unit: reduce over every axis except axis 0."
            if got.shape == w.shape[1:2]:
                hint = "you reduced over axis 0, which scores input channels; filters are axis 0."
            _fail(f"for {name} expected shape {want.shape}, got {got.shape}.", hint)
        if not np.allclose(got, want, rtol=1e-5):
            hint = "L1 norm: sum of |w| over the filter's in·kh·kw weights."
            flat = w.reshape(w.shape[0], -1)
            if np.allclose(got, flat.sum(axis=1)):
                hint = "take absolute values before summing: L1 = Σ|w|."
            elif np.allclose(got, np.sqrt((flat ** 2).sum(axis=1))):
                hint = "that is the L2 norm; L1 is Σ|w|."
            elif np.allclose(got, np.abs(flat).mean(axis=1)):
                hint = "that is the mean |w|; L1 is the sum."
            _fail(f"for {name} the scores are wrong: expected {np.round(want[:3], 4)}..., got "
                  f"{np.round(got[:3], 4)}...", hint)
    _correct("your filter L1 norms match granularity='filter', reduce='l1'")


def check_nm_mask(fn) -> None:
    """`fn(weight, n, m) -> boolean mask of weight's shape`: N:M sparsity. Flatten the weight to
    (out, in·kh·kw); in every run of m consecutive entries of a row keep the n largest |w|."""
    _require_callable(fn, "fn")
    from .prune import structures

    rng = np.random.default_rng(11)
    cases = [("a Linear weight (4, 8), 2:4", rng.normal(size=(4, 8)), 2, 4),
             ("a Conv2d weight (6, 4, 3, 3), 2:4", rng.normal(size=(6, 4, 3, 3)), 2, 4),
             ("a Conv2d weight (3, 2, 2, 2), 1:4", rng.normal(size=(3, 2, 2, 2)), 1, 4),
             ("a Linear weight (2, 16), 2:8", rng.normal(size=(2, 16)), 2, 8)]
    for name, w, n, m in cases:
        w = w.astype(np.float32)
        want = structures.parse(f"{n}:{m}").nm_mask(np.abs(w))
        answer = fn(w.copy(), n, m)
        if answer is None:
            _fail(f"fn({name}) returned None.", "did you forget a `return` statement?")
        got = np.asarray(answer)
        if got.shape != w.shape:
            _fail(f"for {name} the mask has shape {got.shape}, expected the weight's {w.shape}.",
                  "reshape your (out, in·kh·kw // m, m) mask back with `.reshape(weight.shape)`.")
        got = got.astype(bool)
        if not np.array_equal(got, want):
            groups = got.reshape(w.shape[0], -1, m).sum(axis=-1)
            hint = (f"reshape |w| to (out, -1, {m}), keep the {n} largest of each last-axis run "
                    "(np.argsort along axis=-1), reshape back.")
            if not (groups == n).all():
                hint = f"each group of {m} must keep exactly {n}; yours keep {np.unique(groups)}."
            elif np.array_equal(got, structures.parse(f"{n}:{m}").nm_mask(w)):
                hint = "rank |w|, not the signed w."
            elif np.array_equal(got, structures.parse(f"{n}:{m}").nm_mask(-np.abs(w))):
                hint = "you kept the smallest; keep the largest |w|."
            _fail(f"for {name} the mask differs from minprune's in "
                  f"{int((got != want).sum())} places.", hint)
    _correct("your N:M masks match granularity='N:M'")


# --- Lessons 09 and 10: how often and when ---
# lesson 09: check_round_sparsities, check_cubic_ramp
# lesson 10: check_snip_scores, check_synflow_scores
__all__ += ["check_round_sparsities", "check_cubic_ramp", "check_snip_scores",
            "check_synflow_scores"]


def check_round_sparsities(fn) -> None:
    """`fn(sparsity, rounds) -> list`: the cumulative sparsity after each round of iterative
    pruning when every round keeps the same fraction (1 − s)^(1/rounds) of the survivors; the last
    entry is exactly `sparsity`. Compared with `schedules.round_sparsities`."""
    _require_callable(fn, "fn")
    from .prune.schedules import round_sparsities

    for s, rounds in [(0.9, 3), (0.98, 5), (0.5, 1), (0.1, 1), (0.1, 4), (0.999, 10), (0.7, 2)]:
        want = round_sparsities(s, rounds)
        answer = fn(s, rounds)
        if answer is None:
            _fail(f"fn({s}, {rounds}) returned None.", "did you forget a `return` statement?")
        got = _as_array(list(answer), f"fn({s}, {rounds})").ravel()
        if got.size != rounds:
            hint = "one cumulative sparsity per round: r = 1, ..., rounds."
            if got.size == rounds + 1:
                hint = "start at round 1, not 0: the list should not include the dense start."
            _fail(f"fn({s}, {rounds}) returned {got.size} values, expected {rounds}.", hint)
        if not np.allclose(got, want, atol=1e-9):
            hint = ("after round r the network keeps (1 − s)^(r/rounds) of its weights, so the "
                    "sparsity is 1 − (1 − s)^(r/rounds).")
            r = np.arange(1, rounds + 1)
            if np.allclose(got, s * r / rounds):
                hint = ("that is a linear schedule (the same number of weights every round); "
                        "iterative pruning keeps the same *fraction* of the survivors: "
                        "1 − (1 − s)^(r/rounds).")
            elif np.allclose(got, (1 - s) ** (r / rounds)):
                hint = "those are the fractions kept (densities); return sparsities, 1 − density."
            elif np.allclose(got, 1 - (1 - s) ** (rounds / r)):
                hint = "the exponent is r/rounds, not rounds/r."
            elif np.allclose(got, np.full(rounds, 1 - (1 - s) ** (1 / rounds))):
                hint = ("each round keeps (1 − s)^(1/rounds) of what is *left*, so the cumulative "
                        "sparsity after round r is 1 − (1 − s)^(r/rounds), not the same every round.")
            _fail(f"fn({s}, {rounds}) = {np.round(got, 6).tolist()}, expected "
                  f"{np.round(want, 6).tolist()}.", hint)
        if float(got[-1]) != s:
            _fail(f"fn({s}, {rounds})[-1] = {float(got[-1])!r}, not exactly {s!r}.",
                  "floating point: 1 − (1 − s)^1 can differ from s in the last digit; set the last "
                  "entry to `sparsity` itself so the final pruning count is exact.")
    _correct("your schedule matches schedules.round_sparsities")


def check_cubic_ramp(fn) -> None:
    """`fn(step, final_sparsity, start, end, initial_sparsity=0.0) -> float`: Zhu & Gupta's
    scheduled sparsity s_t = s_f + (s_i − s_f)(1 − (t − t0)/(end − t0))³, equal to s_i before
    `start` and to s_f after `end`. Compared with `schedules.gradual(...).target(step)`."""
    _require_callable(fn, "fn")
    from .prune.schedules import gradual

    for final, start, end, initial in [(0.9, 0, 100, 0.0), (0.98, 50, 250, 0.0),
                                       (0.8, 10, 40, 0.3)]:
        ramp = gradual(final, start, end, every=1, initial_sparsity=initial)
        for t in sorted({0, start, start + 1, (start + end) // 3, (start + end) // 2, end - 1,
                         end, end + 1, end + 100}):
            want = ramp.target(t)
            got = float(_as_array(fn(t, final, start, end, initial), f"fn({t}, {final}, {start}, "
                                                                    f"{end}, {initial})"))
            if not np.isclose(got, want, atol=1e-9):
                frac = (t - start) / (end - start)
                hint = "s_t = s_f + (s_i − s_f)·(1 − (t − start)/(end − start))³."
                if t < start:
                    hint = "before `start` nothing is pruned yet: return initial_sparsity."
                elif t > end:
                    hint = "after `end` the ramp is over: clamp the progress to 1 (sparsity s_f)."
                elif np.isclose(got, initial + (final - initial) * frac):
                    hint = ("that is a linear ramp; Zhu & Gupta's is cubic: "
                            "s_f + (s_i − s_f)(1 − progress)³.")
                elif np.isclose(got, initial + (final - initial) * frac ** 3):
                    hint = ("that ramp starts slowly and ends fast; the cubic schedule cubes "
                            "(1 − progress), so it prunes fast first and slowly at the end.")
                elif np.isclose(got, final * (1 - (1 - frac) ** 3)) and initial:
                    hint = "you left out initial_sparsity: s_f + (s_i − s_f)(1 − progress)³."
                elif np.isclose(got, final + (initial - final) * (1 - frac) ** 2):
                    hint = "the exponent is 3."
                _fail(f"fn({t}, final_sparsity={final}, start={start}, end={end}, "
                      f"initial_sparsity={initial}) = {got:.6f}, expected {want:.6f}.", hint)
    _correct("your ramp matches schedules.gradual(...).target")


def _mixed_batch(seed, n=32):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n)


def check_snip_scores(fn) -> None:
    """`fn(model, x, y) -> {layer name: array}`: SNIP's connection sensitivity
    |g ⊙ w| / Σ|g ⊙ w| (g = ∂L/∂w of the mean cross-entropy on (x, y); the sum runs over every
    prunable weight of every layer). Compared with `mp.prune.criteria.snip`."""
    _require_callable(fn, "fn")
    import copy

    from .models import lenet5, lenet_300_100
    from .prune import criteria
    from .prune.masks import prunable_layers

    for model, name in [(lenet_300_100(seed=12), "lenet_300_100"), (lenet5(seed=12), "lenet5")]:
        x, y = _mixed_batch(12)
        layers = prunable_layers(model)
        want = criteria.snip(model, layers, (x, y))
        answer = _score_arrays(fn(copy.deepcopy(model), x, y), want, name)
        grad = criteria.gradient(model, layers, (x, y))
        for n, w in want.items():
            got = answer[n]
            if not np.allclose(got, w, rtol=1e-3, atol=1e-12):
                hint = ("compute |w · ∂L/∂w| for every layer, then divide all of them by one "
                        "number: their sum over *all* layers.")
                if (got < 0).any():
                    hint = "take the absolute value: the score is |g ⊙ w|."
                elif np.allclose(got, grad[n], rtol=1e-3):
                    hint = ("those are |g ⊙ w| without the normalisation; divide by Σ|g ⊙ w| over "
                            "all layers (the ranking is the same, but SNIP's scores sum to 1).")
                elif np.allclose(got, grad[n] / grad[n].sum(), rtol=1e-3):
                    hint = ("you normalised each layer by its own sum; SNIP divides by one sum "
                            "over all layers, so layers stay comparable in a global ranking.")
                _fail(f"{name}: scores for {n!r} differ from SNIP: first values "
                      f"{np.round(got.ravel()[:3], 9)} vs expected {np.round(w.ravel()[:3], 9)}.",
                      hint)
        total = sum(float(answer[n].sum()) for n in want)
        if not np.isclose(total, 1.0, rtol=1e-3):
            _fail(f"{name}: your scores sum to {total:.6f}; SNIP's sum to 1.")
    _correct("your connection sensitivities match mp.prune.criteria.snip")


def check_synflow_scores(fn) -> None:
    """`fn(model, input_shape) -> {layer name: array}`: SynFlow's data-free score |w ⊙ ∂R/∂w|
    with R = sum of the outputs of the network whose weights and biases are replaced by their
    absolute values, fed a single all-ones input of shape (1, *input_shape).
    Compared with `mp.prune.criteria.synflow` (a relative tolerance allows float32 arithmetic)."""
    _require_callable(fn, "fn")
    import copy

    from .models import lenet5, lenet_300_100
    from .prune import criteria, prune
    from .prune.masks import prunable_layers

    half = lenet_300_100(seed=13)
    prune(half, 0.5, criterion="random")
    for model, name in [(lenet_300_100(seed=13), "lenet_300_100"),
                        (half, "lenet_300_100 pruned 50% at random"), (lenet5(seed=13), "lenet5")]:
        layers = prunable_layers(model)
        before = {n: m.weight.data.copy() for n, m in layers.items()}
        want = criteria.synflow(model, layers, None, input_shape=(1, 28, 28))
        answer = _score_arrays(fn(copy.deepcopy(model), (1, 28, 28)), want, name)
        for n, w in want.items():
            got = answer[n]
            if not np.allclose(got, w, rtol=1e-3, atol=1e-9 * float(np.abs(w).max())):
                hint = ("work on a copy: set every parameter p.data = np.abs(p.data), run the "
                        "model on np.ones((1, *input_shape)), call .sum().backward(), then "
                        "score = |w ⊙ grad| with the absolute weights.")
                if (got < 0).any():
                    hint = "take absolute values: SynFlow's scores are |w ⊙ ∂R/∂w| ≥ 0."
                elif np.allclose(got, np.abs(before[n])):
                    hint = "that is |w| (magnitude); multiply by ∂R/∂w."
                elif (w > 0).any() and np.allclose(got[w > 0] / w[w > 0],
                                                   np.median(got[w > 0] / w[w > 0]), rtol=1e-3):
                    hint = ("your scores are off by a constant factor: R is the plain *sum* of "
                            "the outputs (no mean, no normalisation).")
                else:
                    hint += (" Did you forget to take |·| of the biases too, or feed random data "
                             "instead of ones? SynFlow is data-free.")
                _fail(f"{name}: SynFlow scores for {n!r} differ: first values "
                      f"{np.round(got.ravel()[:3], 6)} vs expected {np.round(w.ravel()[:3], 6)}.",
                      hint)
    _correct("your synaptic-flow scores match mp.prune.criteria.synflow")


# --- Lessons 11-13: retraining, tickets, sweeps ---
# lesson 11: check_near_zero_fraction, check_reinitialize, check_scratch_b_epochs
# lesson 12: check_rewind, check_mask_overlap
# lesson 13: check_compression_ratio, check_seed_summary
__all__ += ["check_near_zero_fraction", "check_reinitialize", "check_scratch_b_epochs",
            "check_rewind", "check_mask_overlap", "check_compression_ratio",
            "check_seed_summary"]


def _retraining_nets(seed: int = 0) -> dict:
    """Small conv + linear nets (with biases, one with BatchNorm), dense and pruned, to check
    answers on: {description: model}. Built fresh on every call, so a checker may modify them."""
    from . import models
    from .prune import prune
    from .prune.masks import prunable_layers

    def small(bn=False):
        r = np.random.default_rng(seed)
        layers = [nn.Conv2d(1, 8, 3, rng=r)] + ([nn.BatchNorm2d(8)] if bn else [])
        layers += [nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 64, rng=r), nn.ReLU(),
                   nn.Linear(64, 10, rng=r)]
        net = nn.Sequential(*layers)
        for p in net.parameters():  # nonzero biases (and BN shifts), as after training
            if p.data.ndim == 1:
                p.data[...] = r.normal(0, 0.05, p.shape)
        return net

    nets = {"a dense conv net": small()}
    net = small()
    prune(net, 0.8, criterion="magnitude", scope="global")
    nets["a conv net, 80% global magnitude pruning"] = net
    net = small(bn=True)
    prune(net, 0.5, criterion="magnitude", granularity="filter", scope="layerwise",
          exclude=list(prunable_layers(net))[-1:])
    nets["a conv net with BatchNorm, 50% filter pruning"] = net
    net = models.lenet_300_100(seed=seed)
    prune(net, 0.9, criterion="magnitude", scope="layerwise")
    nets["LeNet-300-100, 90% layerwise magnitude pruning"] = net
    return nets


def _all_prunable(model) -> np.ndarray:
    return np.concatenate([w.ravel() for w in _prunable_weights(model)]).astype(np.float64)


def check_near_zero_fraction(fn) -> None:
    """`fn(model, threshold) -> float`: among the surviving (nonzero) Conv2d/Linear weights, the
    fraction with |w| < threshold (`experiments.near_zero_fraction`)."""
    _require_callable(fn, "fn")
    from .experiments import near_zero_fraction

    for name, model in _retraining_nets().items():
        w = _all_prunable(model)
        alive = w[w != 0]
        for threshold in (0.01, 0.05, float(np.median(np.abs(alive)))):
            want = near_zero_fraction(model, threshold)
            got = float(_as_array(fn(model, threshold), f"fn({name}, {threshold:.3g})"))
            if np.isclose(got, want, atol=1e-9):
                continue
            hint = "count only nonzero Conv2d/Linear weights: w[w != 0], then np.mean(|w| < t)."
            if np.isclose(got, np.mean(np.abs(w) < threshold)):
                hint = ("you counted the pruned zeros too (they are all below any threshold); "
                        "keep only the surviving weights, w != 0.")
            elif np.isclose(got, 100 * want):
                hint = "return a fraction in [0, 1], not a percentage."
            elif np.isclose(got, np.mean(alive < threshold)):
                hint = "compare |w|, not w: large negative weights are not near zero."
            elif np.isclose(got, 1 - want):
                hint = "that is the fraction at or above the threshold; count |w| < threshold."
            else:
                biases = np.concatenate([alive] + [m.bias.data.ravel() for m in model.modules()
                                                   if isinstance(m, (nn.Conv2d, nn.Linear))
                                                   and m.bias is not None])
                biases = biases[biases != 0]
                if np.isclose(got, np.mean(np.abs(biases) < threshold)):
                    hint = "weights only: leave the biases out."
            _fail(f"for {name}, threshold {threshold:.4g}: expected {want:.6f}, got {got:.6f}.",
                  hint)
    _correct("your fraction matches experiments.near_zero_fraction")


def check_reinitialize(fn) -> None:
    """`fn(model, seed) -> model`: fresh Kaiming-normal weights (std √2/√fan_in) and zero biases in
    every Conv2d/Linear, masks kept so pruned weights stay exactly 0; same seed → same weights."""
    _require_callable(fn, "fn")
    import copy

    from .prune.masks import prunable_layers

    nets = _retraining_nets(seed=3)
    for name in ("a conv net, 80% global magnitude pruning",
                 "LeNet-300-100, 90% layerwise magnitude pruning"):
        model = nets[name]
        layers = prunable_layers(model)
        masks = {n: m.weight.mask.copy() for n, m in layers.items()}
        old = {n: m.weight.data.copy() for n, m in layers.items()}
        twin = copy.deepcopy(model)
        out = fn(model, 7)
        model = model if out is None else out
        if not isinstance(model, nn.Module):
            _fail(f"fn({name}) returned {type(model).__name__}, expected the model.",
                  "re-initialise in place and `return model`.")
        layers = prunable_layers(model)
        for n, layer in layers.items():
            w, mask = layer.weight.data, layer.weight.mask
            if mask is None or not np.array_equal(mask, masks[n]):
                _fail(f"{name}: layer {n!r} lost its mask (or the mask changed).",
                      "change `.data` in place (`param.data[...] = ...`, or nn.init functions); "
                      "do not replace the Parameter, and leave `.mask` alone.")
            if np.any(w[~mask] != 0):
                _fail(f"{name}: layer {n!r} has {int(np.count_nonzero(w[~mask]))} pruned weights "
                      "that are no longer 0.",
                      "multiply the new values by the mask (mp.nn.init.kaiming_normal_ does it).")
            alive = w[mask]
            if np.mean(alive == old[n][mask]) > 0.01:
                _fail(f"{name}: most surviving weights of {n!r} still have their old values.",
                      "draw new random values for every weight of every Conv2d/Linear layer.")
            fan_in = int(np.prod(w.shape[1:]))
            want, got = np.sqrt(2.0 / fan_in), float(np.std(alive))
            if alive.size >= 300 and (not 0.85 * want < got < 1.15 * want
                                      or abs(np.mean(alive)) > 0.15 * want):
                hint = f"Kaiming normal: mean 0, std √2/√fan_in = {want:.4f} for {n!r}."
                fan_out = w.shape[0] * int(np.prod(w.shape[2:]))
                if np.isclose(got, np.sqrt(2.0 / fan_out), rtol=0.2):
                    hint = "you used fan_out; Kaiming (forward) uses fan_in = in·kh·kw."
                elif np.isclose(got, 1.0, rtol=0.2):
                    hint = "that is a standard normal; scale it by √2/√fan_in."
                _fail(f"{name}: the surviving weights of {n!r} have std {got:.4f}, mean "
                      f"{np.mean(alive):.4f}.", hint)
            if layer.bias is not None and np.any(layer.bias.data != 0):
                _fail(f"{name}: the bias of {n!r} is not zero.", "set every bias to 0 (nn.init.zeros_).")
        again = fn(twin, 7)
        again = twin if again is None else again
        if not all(np.array_equal(a.weight.data, b.weight.data) for a, b in
                   zip(layers.values(), prunable_layers(again).values())):
            _fail("two calls with the same seed gave different weights.",
                  "build one generator from the seed, np.random.default_rng(seed), and draw from it.")
    _correct("fresh Kaiming weights, zero biases, masks kept")


def check_scratch_b_epochs(fn) -> None:
    """`fn(dense_epochs, speedup) -> int`: Scratch-B's epochs, round(dense_epochs · min(speedup, 2)),
    at least 1 (Liu et al. 2019: the same compute as the dense run, at most twice the epochs)."""
    _require_callable(fn, "fn")
    cases = [(10, 1.0), (10, 1.5), (10, 3.0), (12, 1.74), (3, 1.1), (20, 1.13), (1, 1.2), (4, 50.0)]
    for dense_epochs, speedup in cases:
        want = max(1, round(dense_epochs * min(speedup, 2.0)))
        got = _as_int(fn(dense_epochs, speedup), f"fn({dense_epochs}, {speedup})")
        if got == want:
            continue
        hint = "epochs = round(dense_epochs × min(speedup, 2)), and at least 1."
        if got == round(dense_epochs * speedup):
            hint = "cap the scaling at 2× (Liu et al. never train more than twice as long)."
        elif got == int(dense_epochs * min(speedup, 2.0)):
            hint = "round to the nearest epoch instead of truncating."
        elif got == max(1, round(dense_epochs / min(speedup, 2.0))):
            hint = "a cheaper network gets *more* epochs for the same compute: multiply."
        _fail(f"fn({dense_epochs}, {speedup}): expected {want}, got {got}.", hint)
    _correct("your budgets match schedules.retrain(..., budget='B')")


def check_rewind(fn) -> None:
    """`fn(model, state) -> model`: set the weights back to `state` (a state_dict), keeping the
    model's *current* masks — survivors get exactly their saved values, pruned weights stay 0."""
    _require_callable(fn, "fn")
    from . import models
    from .prune import prune
    from .prune.masks import prunable_layers

    for seed, state_sparsity in ((0, None), (1, 0.3)):
        model = models.lenet_300_100(seed=seed)
        rng = np.random.default_rng(seed)
        if state_sparsity is not None:  # a state saved from an earlier, less pruned round
            prune(model, state_sparsity, criterion="random", scope="layerwise", seed=seed)
        state = model.state_dict()
        saved = {k: v.copy() for k, v in state.items()}
        for p in model.parameters():  # "training": every weight moves
            p.data += rng.normal(0, 0.02, p.shape).astype(p.data.dtype)
            if p.mask is not None:
                p.data *= p.mask
        prune(model, 0.8, criterion="magnitude", scope="global")
        masks = {n: m.weight.mask.copy() for n, m in prunable_layers(model).items()}
        what = ("a dense initial state" if state_sparsity is None else
                f"a state saved at sparsity {state_sparsity} (it holds older masks)")
        out = fn(model, state)
        model = model if out is None else out
        for k, v in state.items():
            if not np.array_equal(v, saved[k]):
                _fail(f"with {what}: your function modified the saved state ({k!r}).",
                      "copy values out of `state`; never write into it (it is reused every round).")
        for n, layer in prunable_layers(model).items():
            w, mask = layer.weight.data, layer.weight.mask
            if mask is None or not np.array_equal(mask, masks[n]):
                revived = int(np.count_nonzero(w[~masks[n]]))
                _fail(f"with {what}: layer {n!r} no longer has the current mask "
                      f"({revived} pruned weights came back).",
                      "`load_state_dict(state)` also loads the state's masks (or none): remember "
                      "each parameter's mask before loading and `set_mask` it again afterwards "
                      "(or load only the weights).")
            if np.any(w[~mask] != 0):
                _fail(f"with {what}: pruned weights of {n!r} are not 0.",
                      "re-apply the mask after loading the old values.")
            old = saved[f"{n}.weight"]
            if not np.array_equal(w[mask], old[mask]):
                _fail(f"with {what}: surviving weights of {n!r} differ from the saved ones "
                      f"(max difference {np.max(np.abs(w[mask] - old[mask])):.3g}).",
                      "rewinding copies the saved values exactly — no training, no rescaling.")
            if layer.bias is not None and not np.array_equal(layer.bias.data, saved[f"{n}.bias"]):
                _fail(f"with {what}: the bias of {n!r} was not rewound.",
                      "rewind every parameter in the state, biases included.")
    _correct("survivors restored exactly, current masks kept")


def check_mask_overlap(fn) -> None:
    """`fn(model_a, model_b) -> float`: among the Conv2d/Linear weights that survive in `model_a`
    (nonzero), the fraction that also survive in `model_b`, pooled over all layers."""
    _require_callable(fn, "fn")
    import copy

    from . import models
    from .prune import prune

    base = models.lenet_300_100(seed=2)
    cases = []
    for sa, sb, how in ((0.8, 0.8, "magnitude vs random, both 80%"),
                        (0.9, 0.5, "90% magnitude vs 50% random"),
                        (0.5, 0.95, "50% magnitude vs 95% random")):
        a, b = copy.deepcopy(base), copy.deepcopy(base)
        prune(a, sa, criterion="magnitude", scope="global")
        prune(b, sb, criterion="random", scope="layerwise", seed=4)
        cases.append((how, a, b))
    a = copy.deepcopy(base)
    prune(a, 0.9, criterion="magnitude", scope="layerwise")
    cases.append(("a model with itself", a, a))
    for how, a, b in cases:
        ka, kb = _all_prunable(a) != 0, _all_prunable(b) != 0
        want = float((ka & kb).sum() / ka.sum())
        got = float(_as_array(fn(a, b), f"fn({how})"))
        if np.isclose(got, want, atol=1e-9):
            continue
        hint = "pool all layers: (kept in a AND kept in b).sum() / (kept in a).sum()."
        if np.isclose(got, np.mean(ka == kb)):
            hint = ("you counted weights pruned in both as agreeing; count only the survivors "
                    "of model_a.")
        elif np.isclose(got, (ka & kb).sum() / (ka | kb).sum()):
            hint = "that is the Jaccard index (divided by the union); divide by model_a's survivors."
        elif np.isclose(got, (ka & kb).sum() / kb.sum()):
            hint = "divide by the number of survivors in model_a, not model_b."
        else:
            per_layer = [float(((wa != 0) & (wb != 0)).sum() / max((wa != 0).sum(), 1))
                         for wa, wb in zip(_prunable_weights(a), _prunable_weights(b))]
            if np.isclose(got, np.mean(per_layer)):
                hint = "you averaged per-layer fractions; pool the counts over all layers instead."
        _fail(f"for {how}: expected {want:.6f}, got {got:.6f}.", hint)
    _correct("your overlap is right")


def check_compression_ratio(fn) -> None:
    """`fn(model) -> float`: ShrinkBench's compression ratio, all parameters / nonzero parameters,
    counting every parameter (biases and BatchNorm included)."""
    _require_callable(fn, "fn")
    from .prune import metrics

    for name, model in _retraining_nets(seed=5).items():
        want = metrics.compression_ratio(model)
        got = float(_as_array(fn(model), f"fn({name})"))
        if np.isclose(got, want, rtol=1e-9):
            continue
        w = _all_prunable(model)
        hint = "compression = (number of all parameters) / (number of nonzero parameters)."
        if np.isclose(got, w.size / max(np.count_nonzero(w), 1)):
            hint = ("you counted only the Conv2d/Linear weights; ShrinkBench counts every "
                    "parameter, biases and BatchNorm included (model.parameters()).")
        elif np.isclose(got, 1 / want):
            hint = "upside down: all parameters on top, nonzero ones below."
        elif np.isclose(got, 1 / max(np.count_nonzero(w) / w.size, 1e-12)) or \
                np.isclose(got, 1 / (1 - metrics.sparsity(model) + 1e-300)):
            hint = "1 / (1 − sparsity) ignores the dense biases; count the parameters."
        _fail(f"for {name}: expected {want:.4f}, got {got:.4f}.", hint)
    _correct("your ratio matches prune.compression_ratio")


def check_seed_summary(fn) -> None:
    """`fn(rows) -> {(strategy, sparsity): (mean, min, max)}`: the accuracy over seeds of each
    strategy at each sparsity (what `experiments.summarize` reports)."""
    _require_callable(fn, "fn")
    from .experiments import summarize

    rng = np.random.default_rng(13)
    rows = [dict(strategy=st, sparsity=sp, seed=seed,
                 accuracy=float(np.round(0.97 - sp * 0.1 * (i + 1) + rng.normal(0, 0.01), 4)),
                 compression=1 / (1 - sp))
            for i, st in enumerate(("global_magnitude", "random")) for sp in (0.5, 0.9, 0.98)
            for seed in (0, 1, 2)]
    rng.shuffle(rows)
    want = {(s["strategy"], s["sparsity"]): (s["mean"], s["min"], s["max"])
            for s in summarize(rows)}
    answer = fn([dict(r) for r in rows])
    if not isinstance(answer, dict):
        _fail(f"fn(rows) returned {type(answer).__name__}, expected a dict "
              "{(strategy, sparsity): (mean, min, max)}.")
    if set(answer) != set(want):
        _fail(f"expected the keys {sorted(want)}, got {sorted(answer, key=str)}.",
              "one entry per (strategy, sparsity) pair: group the rows by both, over seeds.")
    for key, (mean, lo, hi) in want.items():
        try:
            got = tuple(float(v) for v in answer[key])
        except (TypeError, ValueError):
            _fail(f"for {key}: expected a (mean, min, max) tuple, got {answer[key]!r}.")
        if len(got) != 3:
            _fail(f"for {key}: expected a (mean, min, max) tuple, got {answer[key]!r}.")
        if not np.allclose(got, (mean, lo, hi), atol=1e-9):
            accs = [r["accuracy"] for r in rows if (r["strategy"], r["sparsity"]) == key]
            hint = "mean, min and max of the accuracies of the seeds in this group."
            if np.isclose(got[1], mean - np.std(accs)) or np.isclose(got[2], mean + np.std(accs)):
                hint = "min and max of the seeds, not mean ± standard deviation."
            _fail(f"for {key}: expected ({mean:.4f}, {lo:.4f}, {hi:.4f}), got "
                  f"({got[0]:.4f}, {got[1]:.4f}, {got[2]:.4f}).", hint)
    _correct("your summary matches experiments.summarize")


# --- Lessons 06 and 08: criteria and activations ---
# lesson 06: check_taylor_prediction, check_fisher_scores, check_rank_correlation
# lesson 08: check_apoz, check_topk_activations
__all__ += ["check_taylor_prediction", "check_fisher_scores", "check_rank_correlation",
            "check_apoz", "check_topk_activations"]


def check_taylor_prediction(fn) -> None:
    """`fn(w, g, h=None) -> array`: the predicted change of the loss when each weight *alone* is
    set to 0 — first order from the gradient g, plus the second-order term when the Hessian
    diagonal h is given.

    Checked on separable quadratic losses L(w) = Σ a·w + ½ b·w², where removing w_i changes the loss
    by exactly −g_i·w_i + ½ h_i·w_i² (g = a + b·w, h = b): second order is exact there."""
    _require_callable(fn, "fn")
    rng = np.random.default_rng(6)
    for shape in [(5,), (3, 4), (2, 3, 2)]:
        w, a = rng.normal(size=shape), rng.normal(size=shape)
        b = rng.uniform(0.5, 2.0, size=shape)
        g, h = a + b * w, b
        exact = -a * w - 0.5 * b * w ** 2  # L(w with w_i = 0) − L(w), term by term
        first = -g * w
        for given_h, want, what in [(None, first, "first-order (h=None)"),
                                    (h, exact, "second-order (h given)")]:
            answer = fn(w.copy(), g.copy()) if given_h is None else fn(w.copy(), g.copy(), h.copy())
            got = _as_array(answer, f"the {what} prediction")
            if got.shape != shape:
                _fail(f"for weights of shape {shape} the {what} prediction has shape {got.shape}; "
                      "return one predicted change per weight.")
            if np.allclose(got, want, rtol=1e-6, atol=1e-9):
                continue
            hint = ("removing w moves it by δ = −w, so ΔL ≈ g·δ + ½·h·δ² = −g·w + ½·h·w².")
            if np.allclose(got, -want, rtol=1e-6):
                hint = "the sign is flipped: the weight moves by δ = −w, so ΔL ≈ g·δ = −g·w."
            elif np.allclose(got, np.abs(want)) or np.allclose(got, np.abs(first)):
                hint = "|w·g| is the pruning *score*; the prediction keeps its sign: ΔL ≈ −g·w."
            elif given_h is not None and np.allclose(got, first):
                hint = "when h is given, add the second-order term ½·h·w²."
            elif given_h is not None and np.allclose(got, -g * w + h * w ** 2):
                hint = "the second-order Taylor term has a factor ½: ½·h·δ²."
            elif given_h is not None and np.allclose(got, 0.5 * h * w ** 2):
                hint = "keep the first-order term −g·w as well."
            _fail(f"{what} prediction for w = {np.round(w.ravel()[:3], 3)}..., "
                  f"g = {np.round(g.ravel()[:3], 3)}...: expected {np.round(want.ravel()[:3], 4)}..., "
                  f"got {np.round(got.ravel()[:3], 4)}...", hint)
    _correct("first- and second-order predictions match the exact loss change on quadratics")


def check_fisher_scores(fn) -> None:
    """`fn(model, batches) -> {layer name: array}`: the Fisher score ½·E[g²]·w² of every weight of
    every Conv2d/Linear layer, where E[g²] averages the *squared* per-batch gradient of the mean
    cross-entropy over the list of (x, y) batches. Compared with `mp.prune.criteria.fisher`."""
    _require_callable(fn, "fn")
    import copy

    from .models import lenet_300_100
    from .nn import functional as F_
    from .prune import criteria
    from .prune.masks import prunable_layers

    rng = np.random.default_rng(8)
    model = lenet_300_100(seed=8)
    batches = [(rng.random((16, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 16))
               for _ in range(3)]
    layers = prunable_layers(model)
    want = criteria.fisher(model, layers, batches)
    # the usual wrong answers, to recognise them
    grads = []
    for x, y in batches:
        work = copy.deepcopy(model)
        F_.cross_entropy(work(Tensor(x)), y).backward()
        grads.append({n: m.weight.grad.astype(np.float64) for n, m in prunable_layers(work).items()})
    w2 = {n: m.weight.data.astype(np.float64) ** 2 for n, m in layers.items()}
    mean_g = {n: np.mean([g[n] for g in grads], axis=0) for n in layers}
    last_g = grads[-1]
    answer = _score_arrays(fn(copy.deepcopy(model), [(x.copy(), y.copy()) for x, y in batches]),
                           want, hint="loop over `mp.prune.prunable_layers(model).items()`; one "
                           "array per layer name.")
    for n, want_n in want.items():
        got = answer[n]
        if np.allclose(got, want_n, rtol=1e-3, atol=1e-12):
            continue
        hint = ("for each batch: zero_grad, backward, square the gradient; average the squares over "
                "the batches, then multiply by ½·w².")
        if np.allclose(got, 0.5 * mean_g[n] ** 2 * w2[n], rtol=1e-3, atol=1e-12):
            hint = ("you squared the *mean* gradient; the Fisher is the mean of the *squared* "
                    "gradients, E[g²] — square each batch's gradient before averaging.")
        elif np.allclose(got, 2 * want_n, rtol=1e-3, atol=1e-12):
            hint = "missing the factor ½: the score is ½·E[g²]·w²."
        elif np.allclose(got, 0.5 * last_g[n] ** 2 * w2[n], rtol=1e-3, atol=1e-12):
            hint = "only the last batch counted: average the squared gradients over all batches."
        elif np.allclose(got, len(batches) * want_n, rtol=1e-3, atol=1e-12):
            hint = "you summed over the batches; take the mean."
        elif np.all(got >= want_n * (1 - 1e-3)) and not np.allclose(got, want_n, rtol=0.5):
            hint = ("gradients accumulate across backward passes: call model.zero_grad() before "
                    "each batch's backward.")
        _fail(f"Fisher scores for {n!r} differ: first values {got.ravel()[:3]} vs expected "
              f"{want_n.ravel()[:3]}.", hint)
    _correct("your ½·E[g²]·w² scores match mp.prune.criteria.fisher")


def check_rank_correlation(fn) -> None:
    """`fn(a, b) -> float`: the Spearman rank correlation of two 1-D arrays without ties (the
    Pearson correlation of their ranks)."""
    _require_callable(fn, "fn")
    rng = np.random.default_rng(9)

    def spearman(a, b):
        ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
        return float(np.corrcoef(ra, rb)[0, 1])

    x = rng.normal(size=200)
    cases = [("b = a³ (same order)", x, x ** 3),
             ("b = −exp(a) (reversed order)", x, -np.exp(x)),
             ("a noisy monotone pair", x, np.exp(2 * x) + rng.normal(scale=0.5, size=200)),
             ("independent arrays", rng.normal(size=50), rng.normal(size=50))]
    for what, a, b in cases:
        want = spearman(a, b)
        got = float(_as_array(fn(a.copy(), b.copy()), f"the correlation for {what}"))
        if np.isclose(got, want, atol=1e-6):
            continue
        hint = ("rank each array (np.argsort(np.argsort(a)) gives 0..n−1 ranks), then take the "
                "Pearson correlation of the ranks (np.corrcoef).")
        if np.isclose(got, np.corrcoef(a, b)[0, 1], atol=1e-6):
            hint = ("that is the Pearson correlation of the values; Spearman correlates their "
                    "*ranks*, so any increasing transform gives 1.")
        elif np.isclose(got, float(np.corrcoef(np.argsort(a), np.argsort(b))[0, 1]), atol=1e-6):
            hint = ("np.argsort(a) gives the *order* (indices that sort a), not the ranks; the "
                    "ranks are np.argsort(np.argsort(a)).")
        _fail(f"for {what}: expected Spearman {want:.4f}, got {got:.4f}.", hint)
    _correct("your rank correlation matches Spearman's")


def check_apoz(fn) -> None:
    """`fn(a) -> array`: APoZ, the Average Percentage of Zeros of each unit (Hu et al., 2016), for
    post-ReLU activations `a` of shape (examples, units) or (examples, channels, H, W) — one
    value in [0, 1] per unit (channel); every example and every position counts."""
    _require_callable(fn, "fn")
    rng = np.random.default_rng(10)
    cases = [("(examples, units)", np.maximum(rng.normal(size=(40, 7)) + rng.normal(size=7), 0)),
             ("(examples, channels, H, W)",
              np.maximum(rng.normal(size=(6, 5, 4, 3)) + rng.normal(size=(1, 5, 1, 1)), 0))]
    for what, a in cases:
        a = a.astype(np.float32)
        units = a.shape[1]
        want = (np.moveaxis(a, 1, -1).reshape(-1, units) <= 0).mean(axis=0)
        got = _as_array(fn(a.copy()), f"APoZ for {what}")
        if got.shape != (units,):
            hint = "one value per unit: average over every axis except axis 1."
            if got.shape == (a.shape[0],) or (got.ndim >= 1 and got.shape[0] == a.shape[0]
                                              and got.shape != (units,)):
                hint = "you averaged over the units; average over the examples (and positions)."
            _fail(f"for activations of shape {a.shape} {what}, expected one APoZ per unit "
                  f"(shape {(units,)}), got shape {got.shape}.", hint)
        if np.allclose(got, want, atol=1e-6):
            continue
        hint = "APoZ = mean over examples (and positions) of (a == 0), per unit."
        if np.allclose(got, 1 - want, atol=1e-6):
            hint = ("that is 1 − APoZ, the fraction of *nonzero* outputs (minprune's `apoz` score, "
                    "higher = kept); APoZ counts the zeros.")
        elif np.allclose(got, 100 * want, atol=1e-4):
            hint = "return a fraction in [0, 1], not a percentage."
        _fail(f"APoZ for {what}: expected {np.round(want, 3)}, got {np.round(got, 3)}.", hint)
    _correct("your APoZ matches (1 − minprune's apoz score)")


def check_topk_activations(fn) -> None:
    """`fn(a, k) -> array`: dynamic activation sparsity — for every example (row of the
    (examples, units) array `a`), keep its k largest activations and set the others to 0, like
    `mp.prune.activation_sparsity(model, k)` does after each ReLU."""
    _require_callable(fn, "fn")
    rng = np.random.default_rng(11)
    for shape, k in [((5, 12), 3), ((4, 30), 1), ((6, 8), 8)]:
        a = np.maximum(rng.normal(size=shape), 0).astype(np.float32) + \
            rng.random(shape).astype(np.float32) * 1e-3  # no ties
        order = np.argsort(-a, axis=1)
        want = np.zeros_like(a)
        rows = np.arange(shape[0])[:, None]
        want[rows, order[:, :k]] = a[rows, order[:, :k]]
        got = _as_array(fn(a.copy(), k), f"fn(a, k={k})")
        if got.shape != a.shape:
            _fail(f"for a of shape {shape} and k={k} the result has shape {got.shape}; return an "
                  "array of the input's shape with the dropped activations set to 0.")
        if np.allclose(got, want):
            continue
        kept = (got != 0).sum(axis=1)
        hint = ("per row: find the k-th largest value (np.sort / np.partition along axis=1) and "
                "zero everything below it.")
        if not np.all(kept == k):
            hint = (f"each example must keep exactly k={k} activations; yours keep "
                    f"{sorted(set(kept.tolist()))} per row.")
            flat_thr = np.sort(a.ravel())[-k * shape[0]]
            if np.allclose(got, np.where(a >= flat_thr, a, 0)):
                hint = ("you picked the top activations of the whole batch; top-k is per example "
                        "(along axis=1), so every input keeps its own k units.")
        elif np.allclose(np.sort(got[got != 0]), np.sort(np.sort(a, axis=1)[:, :k].ravel())):
            hint = "you kept the k *smallest* activations; keep the largest."
        elif not np.allclose(got[got != 0], a[got != 0]):
            hint = "keep the surviving activations' values unchanged (a mask, not a 0/1 indicator)."
        _fail(f"for a of shape {shape}, k={k}: the kept activations differ from the top-{k} of "
              "each row.", hint)
    _correct("your top-k activation sparsity keeps the k largest activations of each example")
