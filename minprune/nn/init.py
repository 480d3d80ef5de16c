"""Weight initialisation. Each takes a Parameter, fills `.data` in place and returns it.

fan_in = inputs feeding one output (in_features, or in_channels·kh·kw). Kaiming (He et al., 2015)
keeps the variance of ReLU activations constant with depth: std = gain/√fan, gain = √2 for ReLU.
Xavier (Glorot & Bengio, 2010) balances forward and backward: var = 2/(fan_in + fan_out).
"""
from __future__ import annotations

import math

import numpy as np

_NONLINEARITY_GAIN = {"relu": math.sqrt(2.0), "linear": 1.0, "tanh": 5.0 / 3}


def fans(shape) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of shape (out, in, *kernel)."""
    if len(shape) < 2:
        raise ValueError(f"shape: need at least 2 dimensions to compute fans, got {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _rng(rng):
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _gain(nonlinearity):
    if nonlinearity not in _NONLINEARITY_GAIN:
        raise ValueError(f"nonlinearity: {nonlinearity!r} is not one of {sorted(_NONLINEARITY_GAIN)}")
    return _NONLINEARITY_GAIN[nonlinearity]


def _fill(param, values):
    param.data[...] = values.astype(param.data.dtype)
    if getattr(param, "mask", None) is not None:  # re-initialising keeps pruned weights at 0
        param.data[~param.mask] = 0
    return param


def kaiming_normal_(param, nonlinearity="relu", rng=None):
    std = _gain(nonlinearity) / math.sqrt(fans(param.shape)[0])
    return _fill(param, _rng(rng).normal(0.0, std, param.shape))


def kaiming_uniform_(param, nonlinearity="relu", rng=None):
    bound = _gain(nonlinearity) * math.sqrt(3.0 / fans(param.shape)[0])
    return _fill(param, _rng(rng).uniform(-bound, bound, param.shape))


def xavier_uniform_(param, gain=1.0, rng=None):
    fan_in, fan_out = fans(param.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return _fill(param, _rng(rng).uniform(-bound, bound, param.shape))


def xavier_normal_(param, gain=1.0, rng=None):
    fan_in, fan_out = fans(param.shape)
    return _fill(param, _rng(rng).normal(0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), param.shape))


def zeros_(param):
    return _fill(param, np.zeros(param.shape))


def ones_(param):
    return _fill(param, np.ones(param.shape))
