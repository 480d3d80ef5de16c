"""`grad_check`: compare autograd's gradients with float64 central differences.

The output is projected onto a fixed random direction `w` (loss = Σ out ⊙ w), so every output
entry matters with a different weight: summing alone would hide, for example, a softmax whose
gradient is wrong only along the rows' common direction.
"""
import numpy as np

from minprune.autograd import no_grad
from minprune.tensor import Tensor


def _as_input(x):
    if isinstance(x, Tensor):  # Parameters of a module: perturbed in place, used as they are
        if x.dtype != np.float64:
            raise TypeError(f"grad_check: inputs must be float64, got a {x.dtype} tensor of shape "
                            f"{x.shape}; cast it first")
        x.requires_grad = True
        return x
    return Tensor(np.array(x, dtype=np.float64), requires_grad=True, dtype=np.float64)


def grad_check(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-4, seed=0):
    """Assert that autograd's d(Σ fn(*inputs) ⊙ w)/d(input) matches central differences.

    `inputs` are ndarrays (wrapped as float64 Tensors that require grad) or float64 Tensors (used
    as they are, so a module's Parameters can be checked through the module). Returns the list
    of analytic gradients. On failure the message names the input, the worst index and both values.
    """
    tensors = [_as_input(x) for x in inputs]
    for t in tensors:
        t.grad = None
    out = fn(*tensors)
    if out.dtype != np.float64:
        raise AssertionError(f"grad_check: fn returned {out.dtype}, expected float64 all the way")
    w = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(w)
    analytic = [np.zeros(t.shape) if t.grad is None else np.asarray(t.grad, dtype=np.float64)
                for t in tensors]

    def loss():
        with no_grad():
            return float((fn(*tensors).data * w).sum())

    for i, (t, ga) in enumerate(zip(tensors, analytic)):
        if ga.shape != t.shape:
            raise AssertionError(f"grad_check: gradient of input {i} has shape {ga.shape}, "
                                 f"the input has shape {t.shape}")
        numeric = np.zeros(t.shape)
        for idx in np.ndindex(*t.shape):
            old = t.data[idx]
            t.data[idx] = old + eps
            up = loss()
            t.data[idx] = old - eps
            down = loss()
            t.data[idx] = old
            numeric[idx] = (up - down) / (2 * eps)
        bad = ~np.isclose(ga, numeric, atol=atol, rtol=rtol)
        if bad.any():
            err = np.where(bad, np.abs(ga - numeric), -1.0)
            worst = np.unravel_index(int(np.argmax(err)), t.shape) if t.shape else ()
            raise AssertionError(
                f"grad_check failed for input {i} (shape {t.shape}): {int(bad.sum())} of "
                f"{bad.size} entries differ; worst at index {tuple(int(j) for j in worst)}: "
                f"analytic {ga[worst]:.8g} vs numeric {numeric[worst]:.8g} "
                f"(atol={atol}, rtol={rtol}, eps={eps})")
    return analytic
