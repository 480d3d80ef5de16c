"""Optimizers (SGD with momentum/Nesterov/weight decay, Adam) and learning-rate schedules.

All are mask-aware: after every step a pruned weight is put back to exactly 0 and its optimizer
state (momentum buffer, Adam moments) is zeroed too, so momentum cannot push it away from 0 later.
"Put back" is a selection (`data[~mask] = 0`), not a multiplication by the mask: a step with an
inf or NaN learning rate or gradient makes the weight NaN, and NaN · 0 is still NaN.
"""
from __future__ import annotations

import math

import numpy as np

from . import checks
from .nn.module import zero_where_pruned


def _rate(lr) -> float:
    return checks.number(lr, "lr", lo=0, lo_open=True)


class Optimizer:
    def __init__(self, params, lr):
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("params: the optimizer got no parameters that require gradients")
        self.lr = _rate(lr)
        self.state: dict[int, dict] = {}

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            self._update(p, self.state.setdefault(i, {}))
            if p.mask is not None:
                zero_where_pruned(p.data, p.mask)
                for buf in self.state[i].values():
                    if isinstance(buf, np.ndarray):
                        zero_where_pruned(buf, p.mask)

    def _update(self, p, state):
        raise NotImplementedError


class SGD(Optimizer):
    """v ← μ·v + (g + λ·w);  w ← w − lr·v   (Nesterov: w ← w − lr·(g + λ·w + μ·v))."""

    def __init__(self, params, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, lr)
        self.momentum = checks.number(momentum, "momentum", lo=0)
        self.nesterov = checks.boolean(nesterov, "nesterov")
        self.weight_decay = checks.number(weight_decay, "weight_decay", lo=0)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov: needs momentum > 0")

    def _update(self, p, state):
        g = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
        if self.momentum:
            v = state.get("momentum")
            v = g.copy() if v is None else self.momentum * v + g
            state["momentum"] = v
            g = g + self.momentum * v if self.nesterov else v
        p.data -= (self.lr * g).astype(p.data.dtype)


class Adam(Optimizer):
    """Kingma & Ba (2015): bias-corrected first and second moment estimates of the gradient."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        if isinstance(betas, str) or np.ndim(betas) != 1 or len(betas) != 2:
            raise TypeError(f"betas: expected a pair (beta1, beta2) such as (0.9, 0.999), got "
                            f"{betas!r}")
        self.betas = tuple(checks.number(b, f"betas[{i}]", lo=0, hi=1, hi_open=True)
                           for i, b in enumerate(betas))
        self.eps = checks.number(eps, "eps", lo=0, lo_open=True)
        self.weight_decay = checks.number(weight_decay, "weight_decay", lo=0)

    def _update(self, p, state):
        b1, b2 = self.betas
        g = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
        t = state["t"] = state.get("t", 0) + 1
        m = state["m"] = b1 * state.get("m", 0.0) + (1 - b1) * g
        v = state["v"] = b2 * state.get("v", 0.0) + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        p.data -= (self.lr * m_hat / (np.sqrt(v_hat) + self.eps)).astype(p.data.dtype)


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def make_optimizer(name_or_optimizer, params, lr, **kwargs) -> Optimizer:
    """`"sgd"` (momentum 0.9 by default) / `"adam"` by name, or pass an Optimizer through."""
    if isinstance(name_or_optimizer, Optimizer):
        return name_or_optimizer
    if not isinstance(name_or_optimizer, str) or name_or_optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer: {name_or_optimizer!r} is not one of {sorted(OPTIMIZERS)} "
                         "or an Optimizer instance")
    if name_or_optimizer == "sgd":
        kwargs.setdefault("momentum", 0.9)
    return OPTIMIZERS[name_or_optimizer](params, lr=lr, **kwargs)


class LRSchedule:
    """Learning rate as a function of the global step; `fit` calls `step()` after each batch.

    kind="cosine": lr_t = lr_min + ½(lr₀ − lr_min)(1 + cos(π·t/T)), optional linear warm-up.
    kind="step":   lr_t = lr₀ · gamma^⌊t / step_size⌋.
    kind="constant".
    """

    KINDS = ("cosine", "step", "constant")

    def __init__(self, optimizer, kind="cosine", total_steps=None, step_size=None, gamma=0.1,
                 lr_min=0.0, warmup=0):
        checks.one_of(kind, "kind", self.KINDS)
        if kind == "cosine":
            total_steps = checks.integer(total_steps, "total_steps", minimum=1)
        if kind == "step":
            step_size = checks.integer(step_size, "step_size", minimum=1)
        self.optimizer, self.kind, self.base_lr = optimizer, kind, optimizer.lr
        self.total_steps, self.step_size = total_steps, step_size
        self.gamma = checks.number(gamma, "gamma", lo=0, lo_open=True)
        self.lr_min = checks.number(lr_min, "lr_min", lo=0, hi=self.base_lr)
        self.warmup, self.t = checks.integer(warmup, "warmup", minimum=0), 0
        optimizer.lr = self.lr_at(0)

    def lr_at(self, t: int) -> float:
        if t < self.warmup:
            return self.base_lr * (t + 1) / self.warmup
        if self.kind == "cosine":
            frac = min(t / self.total_steps, 1.0)
            return self.lr_min + 0.5 * (self.base_lr - self.lr_min) * (1 + math.cos(math.pi * frac))
        if self.kind == "step":
            return self.base_lr * self.gamma ** (t // self.step_size)
        return self.base_lr

    def step(self):
        self.t += 1
        self.optimizer.lr = self.lr_at(self.t)
