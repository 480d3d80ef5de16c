"""Forward and backward passes written here in plain NumPy (float64), without minprune's autograd,
functional layers or kernels: an independent reference for the checkers that score weights by their
gradients (04.3, 06.2, 10.1, 10.2). A checker test that feeds these gradients to a checker is not
circular: if the library's autograd were wrong, the checker's truth and these would disagree.

Supports the layers the checkers' nets use: Conv2d (stride, padding), Linear, ReLU, MaxPool2d
(non-overlapping windows), Flatten, in the order `named_modules()` lists them (Sequential and
Classifier run their children in that order).
"""
import numpy as np

import minprune as mp


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _leaves(model):
    return [(n, m) for n, m in model.named_modules()
            if not list(m.children()) and not isinstance(m, mp.nn.Sequential)]   # an empty one


def _conv(x, w, b, stride, padding):
    """Direct convolution: out[n, o, i, j] = Σ_c,p,q x_pad[n, c, i·sh + p, j·sw + q] · w[o, c, p, q]."""
    (sh, sw), (ph, pw) = stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    o, c, kh, kw = w.shape
    oh, ow = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    out = np.zeros((x.shape[0], o, oh, ow))
    for p in range(kh):
        for q in range(kw):
            patch = xp[:, :, p:p + sh * (oh - 1) + 1:sh, q:q + sw * (ow - 1) + 1:sw]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, p, q])
    return out + (0 if b is None else b[None, :, None, None]), xp


def _conv_backward(g, xp, w, stride, padding, x_shape):
    (sh, sw), (ph, pw) = stride, padding
    o, c, kh, kw = w.shape
    oh, ow = g.shape[2:]
    dw, dxp = np.zeros_like(w), np.zeros_like(xp)
    for p in range(kh):
        for q in range(kw):
            rows, cols = slice(p, p + sh * (oh - 1) + 1, sh), slice(q, q + sw * (ow - 1) + 1, sw)
            dw[:, :, p, q] = np.einsum("nohw,nchw->oc", g, xp[:, :, rows, cols])
            dxp[:, :, rows, cols] += np.einsum("nohw,oc->nchw", g, w[:, :, p, q])
    return dw, dxp[:, :, ph:ph + x_shape[2], pw:pw + x_shape[3]]


def backprop(model, x, loss_grad, params=None):
    """`({layer name: dR/dW}, output)` for R whose gradient with respect to the model's output is
    `loss_grad(output)`. `params(name, array)` may replace a parameter's values (SynFlow's |θ|)."""
    params = params or (lambda name, a: a)
    value = lambda m, p, n: None if p is None else params(f"{n}.{p}", getattr(m, p).data.astype(np.float64))  # noqa: E731
    tape, h = [], np.asarray(x, dtype=np.float64)
    for n, m in _leaves(model):
        if isinstance(m, mp.nn.Linear):
            w, b = value(m, "weight", n), value(m, "bias", n) if m.bias is not None else None
            tape.append((n, "linear", h, w))
            h = h @ w.T + (0 if b is None else b)
        elif isinstance(m, mp.nn.Conv2d):
            w, b = value(m, "weight", n), value(m, "bias", n) if m.bias is not None else None
            out, xp = _conv(h, w, b, _pair(m.stride), _pair(m.padding))
            tape.append((n, "conv", (xp, h.shape, m), w))
            h = out
        elif isinstance(m, mp.nn.ReLU):
            tape.append((n, "relu", h > 0, None))
            h = np.maximum(h, 0)
        elif isinstance(m, mp.nn.MaxPool2d):
            k = _pair(m.kernel_size)
            assert m.stride is None or _pair(m.stride) == k, "only non-overlapping pooling"
            nb, c, hh, ww = h.shape
            oh, ow = hh // k[0], ww // k[1]
            win = h[:, :, :oh * k[0], :ow * k[1]].reshape(nb, c, oh, k[0], ow, k[1])
            win = win.transpose(0, 1, 2, 4, 3, 5).reshape(nb, c, oh, ow, -1)
            first = win.argmax(axis=-1)   # the first maximum of each window takes the gradient
            tape.append((n, "pool", (h.shape, k, first), None))
            h = win.max(axis=-1)
        elif isinstance(m, mp.nn.Flatten):
            tape.append((n, "flatten", h.shape, None))
            h = h.reshape(h.shape[0], -1)
        else:
            raise TypeError(f"numpy_nets: no NumPy twin for {type(m).__name__}")
    out = h
    g, grads = loss_grad(out), {}
    for n, kind, saved, w in reversed(tape):
        if kind == "linear":
            grads[n] = g.T @ saved
            g = g @ w
        elif kind == "conv":
            xp, shape, m = saved
            grads[n], g = _conv_backward(g, xp, w, _pair(m.stride), _pair(m.padding), shape)
        elif kind == "relu":
            g = g * saved
        elif kind == "pool":
            shape, k, first = saved
            nb, c, oh, ow = g.shape
            gw = np.zeros((nb, c, oh, ow, k[0] * k[1]))
            np.put_along_axis(gw, first[..., None], g[..., None], axis=-1)
            gw = gw.reshape(nb, c, oh, ow, k[0], k[1]).transpose(0, 1, 2, 4, 3, 5)
            gx = np.zeros(shape)
            gx[:, :, :oh * k[0], :ow * k[1]] = gw.reshape(nb, c, oh * k[0], ow * k[1])
            g = gx
        elif kind == "flatten":
            g = g.reshape(saved)
    return grads, out


def cross_entropy_grad(y):
    """The gradient of the mean cross-entropy over a batch with labels y: (softmax − onehot) / N."""
    def grad(logits):
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        p[np.arange(len(y)), np.asarray(y)] -= 1
        return p / len(y)
    return grad


def gradients(model, x, y) -> dict:
    """{layer name: ∂L/∂W} of the mean cross-entropy of `model` on (x, y), in float64."""
    return backprop(model, x, cross_entropy_grad(y))[0]
