"""The autograd core: Context, Function and reverse-mode backpropagation.

A `Function` pairs `forward(ctx, *arrays)` with `backward(ctx, grad)`. Forward works on plain
NumPy arrays and saves what backward will need on `ctx`; `Function.apply` wraps the result in a
`Tensor` that remembers which Function made it and from which inputs. `backward()` then walks that
graph in reverse topological order, so each node's gradient is complete (summed over every use)
before it is passed on.
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np

# Grad mode belongs to a thread, as in PyTorch: a `no_grad()` block in one thread (say, a
# validation pass) must not switch off graph building in another thread that is training.
_mode = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_mode, "enabled", True)


@contextlib.contextmanager
def set_grad_enabled(enabled: bool):
    """Inside this block, operations build a graph or not; only in the thread that enters it."""
    previous, _mode.enabled = is_grad_enabled(), bool(enabled)
    try:
        yield
    finally:
        _mode.enabled = previous


def no_grad():
    """Inside this block operations build no graph (inference, optimizer updates, pruning)."""
    return set_grad_enabled(False)


class Context:
    """A bag for what forward saves for backward (`ctx.save(...)`, `ctx.saved`)."""

    def __init__(self):
        self.saved: tuple = ()
        self.needs_grad: tuple[bool, ...] = ()

    def save(self, *values):
        self.saved = values


class Function:
    """Subclass with static `forward(ctx, *args)` and `backward(ctx, grad)`.

    `forward` receives the `.data` of Tensor arguments (other arguments pass through unchanged) and
    returns an ndarray. `backward` returns one gradient per Tensor argument (None where not needed),
    each already of that argument's shape.
    """

    @staticmethod
    def forward(ctx, *args):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args):
        from .tensor import Tensor

        tensors = [a for a in args if isinstance(a, Tensor)]
        ctx = Context()
        ctx.needs_grad = tuple(t.requires_grad for t in tensors)
        raw = [a.data if isinstance(a, Tensor) else a for a in args]
        out = cls.forward(ctx, *raw)
        requires_grad = is_grad_enabled() and any(ctx.needs_grad)
        result = Tensor(out, requires_grad=requires_grad)
        if requires_grad:
            result._ctx, result._op, result._parents = ctx, cls, tuple(tensors)
        return result


def topological_order(roots, parents=lambda t: t._parents) -> list:
    """Every tensor reachable from `roots` through `parents`, each one after all of its parents.
    An iterative depth-first search: a deep network would overflow Python's recursion limit."""
    order, seen = [], set()
    for root in roots:
        stack = [(root, False)]
        while stack:
            t, done = stack.pop()
            if done:
                order.append(t)
            elif id(t) not in seen:
                seen.add(id(t))
                stack.append((t, True))
                stack.extend((p, False) for p in parents(t) if id(p) not in seen)
    return order


def backward(root, grad=None):
    """Accumulate d(root)/d(leaf) into `.grad` of every leaf that requires grad."""
    if grad is None:
        if root.data.size != 1:
            raise ValueError(f"grad: backward() on a tensor of shape {root.shape} needs an explicit "
                             "grad of the same shape; only scalars default to 1")
        grad = np.ones_like(root.data)
    order = topological_order([root])
    grads = {id(root): np.asarray(grad, dtype=root.data.dtype)}
    for t in reversed(order):
        g = grads.pop(id(t), None)
        if g is None:
            continue
        if t._op is None:  # a leaf: accumulate, as PyTorch does, until zero_grad()
            if t.requires_grad:
                t.grad = g.copy() if t.grad is None else t.grad + g
            continue
        parent_grads = t._op.backward(t._ctx, g)
        if not isinstance(parent_grads, tuple):
            parent_grads = (parent_grads,)
        for p, pg in zip(t._parents, parent_grads):
            if pg is None or not p.requires_grad:
                continue
            grads[id(p)] = grads[id(p)] + pg if id(p) in grads else pg
