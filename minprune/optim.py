"""Optimizers (SGD with momentum/Nesterov/weight decay, Adam) and learning-rate schedules.

All are mask-aware: after every step a pruned weight is put back to exactly 0 and its optimizer
state (momentum buffer, Adam moments) is zeroed too, so momentum cannot push it away from 0 later.
"""
from __future__ import annotations

import math

import numpy as np


class Optimizer:
    def __init__(self, params, lr):
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("params: the optimizer got no parameters that require gradients")
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"lr: learning rate must be a positive number, got {lr!r}")
        self.lr = float(lr)
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
                p.data *= p.mask
                for buf in self.state[i].values():
                    if isinstance(buf, np.ndarray):
                        buf *= p.mask

    def _update(self, p, state):
        raise NotImplementedError


class SGD(Optimizer):
    """v ← μ·v + (g + λ·w);  w ← w − lr·v   (Nesterov: w ← w − lr·(g + λ·w + μ·v))."""

    def __init__(self, params, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, lr)
        if momentum < 0 or weight_decay < 0:
            raise ValueError(f"momentum/weight_decay: must be ≥ 0, got {momentum}, {weight_decay}")
        if nesterov and momentum == 0:
            raise ValueError("nesterov: needs momentum > 0")
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay

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
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas: each must be in [0, 1), got {betas}")
        if not eps > 0 or weight_decay < 0:
            raise ValueError(f"eps/weight_decay: need eps > 0 and weight_decay ≥ 0, got {eps}, "
                             f"{weight_decay}")
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay

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
    if name_or_optimizer not in OPTIMIZERS:
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
        if kind not in self.KINDS:
            raise ValueError(f"kind: {kind!r} is not one of {self.KINDS}")
        if kind == "cosine" and not (isinstance(total_steps, int) and total_steps > 0):
            raise ValueError(f"total_steps: cosine needs a positive int, got {total_steps!r}")
        if kind == "step" and not (isinstance(step_size, int) and step_size > 0):
            raise ValueError(f"step_size: step schedule needs a positive int, got {step_size!r}")
        self.optimizer, self.kind, self.base_lr = optimizer, kind, optimizer.lr
        self.total_steps, self.step_size, self.gamma = total_steps, step_size, gamma
        self.lr_min, self.warmup, self.t = lr_min, warmup, 0
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
