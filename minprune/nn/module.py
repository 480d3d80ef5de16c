"""Module, Parameter and Sequential: how a network holds its weights (and their pruning masks).

Assigning a `Parameter` or a `Module` to an attribute registers it, so `named_parameters()` can
walk the tree and produce PyTorch-style names such as `features.3.weight`.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .. import functions as F
from ..tensor import Tensor


def as_mask(mask, name, shape=None) -> np.ndarray:
    """`mask` as a boolean array (of `shape`, when given). Booleans, or 0/1 numbers; anything else
    (0.5, NaN, a wrong shape) is an error rather than a silent guess."""
    arr = np.asarray(mask)
    if arr.dtype != bool:
        if arr.dtype.kind not in "iuf" or not np.isin(arr, (0, 1)).all():
            raise TypeError(f"{name}: expected a boolean array (True = keep), got dtype {arr.dtype}"
                            + ("" if arr.dtype.kind not in "iuf" else " with values other than 0/1"))
        arr = arr.astype(bool)
    if shape is not None and arr.shape != tuple(shape):
        raise ValueError(f"{name}: shape {arr.shape} does not match {tuple(shape)}")
    return arr


def zero_where_pruned(array: np.ndarray, mask: np.ndarray) -> None:
    """Set the pruned entries of `array` to exactly 0, in place. By selection, not by multiplying
    with the mask: NaN·0 and inf·0 are NaN, so a diverged weight would stay NaN."""
    array[~np.broadcast_to(mask, array.shape)] = 0


class Parameter(Tensor):
    """A trainable Tensor. `mask` is None (dense) or a boolean array of the same shape.

    The pruning invariant lives here: where `mask` is False the weight is exactly 0, its gradient
    is 0 (layers select through the mask) and optimizers keep it 0 after every step, whatever
    values (NaN, inf) training produced elsewhere.
    """

    def __init__(self, data, requires_grad: bool = True):
        super().__init__(np.array(data, dtype=np.float32) if not isinstance(data, np.ndarray)
                         or data.dtype.kind != "f" else data, requires_grad=requires_grad)
        self.mask: np.ndarray | None = None

    def __repr__(self):
        return f"Parameter(shape={self.shape}, masked={self.mask is not None})"

    def set_mask(self, mask):
        """Install `mask` (or None) and zero the pruned entries so the invariant holds now."""
        if mask is not None:
            mask = as_mask(mask, "mask", self.shape)
            zero_where_pruned(self.data, mask)
            if self.grad is not None:
                zero_where_pruned(self.grad, mask)
        self.mask = mask


class Module:
    """Base class: subclasses create layers in `__init__` and compute in `forward`."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_forward_hooks", [])
        self.training = True
        self.output_mask: np.ndarray | None = None  # activation pruning: which output units live

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError("call super().__init__() before assigning attributes in a Module")
        if name == "output_mask" and value is not None:
            value = self._check_output_mask(value)
        # a replaced parameter or module keeps its place in the order (as in PyTorch): the order
        # of named_modules() is the order the layers were defined
        if not isinstance(value, Parameter):
            self._parameters.pop(name, None)
        if not isinstance(value, Module):
            self._modules.pop(name, None)
        if not isinstance(value, np.ndarray):  # re-assigning a buffer's array keeps it a buffer
            self._buffers.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def _output_units(self) -> int | None:
        """How many output units (channels, features) this module has, if it knows."""
        return None

    def _check_output_mask(self, mask) -> np.ndarray:
        mask = as_mask(mask, "output_mask")
        units = self._output_units()
        if mask.ndim != 1 or (units is not None and mask.size != units):
            raise ValueError(f"output_mask: expected a boolean vector with one entry per output "
                             f"unit ({units if units is not None else 'one per channel'}) of "
                             f"{type(self).__name__}, got shape {mask.shape}")
        return mask

    def register_buffer(self, name: str, array: np.ndarray):
        """Non-trainable state saved with the model (BatchNorm's running statistics)."""
        setattr(self, name, np.asarray(array))
        self._buffers[name] = True

    def register_forward_hook(self, hook):
        """`hook(module, inputs, output)` runs after forward; it may return a replacement output.
        Returns a handle with `.remove()`."""
        self._forward_hooks.append(hook)
        hooks = self._forward_hooks

        class Handle:
            def remove(self):
                if hook in hooks:
                    hooks.remove(hook)
        return Handle()

    # --- running ------------------------------------------------------------------------------
    def forward(self, *args):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args):
        out = self.forward(*args)
        if self.output_mask is not None:  # a pruned unit outputs 0 whatever its input
            if out.ndim < 2 or out.shape[1] != self.output_mask.size:
                raise ValueError(f"output_mask: has {self.output_mask.size} entries but "
                                 f"{type(self).__name__}'s output has shape {out.shape} "
                                 "(one entry per unit on axis 1 expected)")
            out = F.Masked.apply(out, self.output_mask.reshape((1, -1) + (1,) * (out.ndim - 2)))
        for hook in list(self._forward_hooks):
            replaced = hook(self, args, out)
            if replaced is not None:
                if not isinstance(replaced, Tensor):
                    raise TypeError(f"hook: a forward hook may return None or a Tensor to replace "
                                    f"the output, got {type(replaced).__name__} from {hook!r}")
                out = replaced
        return out

    def train(self, mode: bool = True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    # --- walking the tree ---------------------------------------------------------------------
    def named_modules(self, prefix: str = ""):
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_children(self):
        return iter(self._modules.items())

    def children(self):
        return iter(self._modules.values())

    def named_parameters(self):
        for prefix, m in self.named_modules():
            for name, p in m._parameters.items():
                yield (f"{prefix}.{name}" if prefix else name), p

    def parameters(self):
        return (p for _, p in self.named_parameters())

    def named_buffers(self):
        for prefix, m in self.named_modules():
            for name in m._buffers:
                yield (f"{prefix}.{name}" if prefix else name), getattr(m, name)

    def get_submodule(self, name: str) -> Module:
        found = dict(self.named_modules()).get(name)
        if found is None:
            raise ValueError(f"name: no submodule {name!r}; available: "
                             f"{[n for n, _ in self.named_modules() if n]}")
        return found

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    # --- state --------------------------------------------------------------------------------
    def state_dict(self) -> OrderedDict:
        """Copies of every parameter and buffer; masks as `<param>_mask`, activation masks as
        `<module>.output_mask` (only where present), so a pruned model round-trips exactly."""
        state = OrderedDict()
        for name, p in self.named_parameters():
            state[name] = p.data.copy()
            if p.mask is not None:
                state[name + "_mask"] = p.mask.copy()
        for name, b in self.named_buffers():
            state[name] = np.array(b, copy=True)
        for prefix, m in self.named_modules():
            if m.output_mask is not None:
                state[f"{prefix}.output_mask" if prefix else "output_mask"] = m.output_mask.copy()
        return state

    def load_state_dict(self, state: dict):
        """Load arrays by name. Every parameter and buffer must be present with the right shape;
        masks are optional (absent means dense). Anything else is an error that names the keys."""
        params = dict(self.named_parameters())
        modules = dict(self.named_modules())
        buffers = {n for n, _ in self.named_buffers()}
        optional = {n + "_mask" for n in params}
        optional |= {f"{n}.output_mask" if n else "output_mask" for n in modules}
        missing = sorted((set(params) | buffers) - set(state))
        unexpected = sorted(set(state) - set(params) - buffers - optional)
        if missing or unexpected:
            raise KeyError(f"state_dict: missing keys {missing}, unexpected keys {unexpected}")
        # Check every shape before changing anything: a failed load leaves the model as it was.
        expected = {n: p.shape for n, p in params.items()}
        expected |= {n + "_mask": p.shape for n, p in params.items()}
        expected |= dict((n, np.shape(b)) for n, b in self.named_buffers())
        for name, value in state.items():
            if name in expected and np.shape(value) != expected[name]:
                raise ValueError(f"state_dict: {name!r} has shape {np.shape(value)}, the model "
                                 f"expects {expected[name]}")
        masks = {n: as_mask(state[n + "_mask"], f"state_dict[{n + '_mask'!r}]").copy()
                 for n in params if n + "_mask" in state}
        unit_masks = {}
        for name, m in modules.items():
            key = f"{name}.output_mask" if name else "output_mask"
            unit_masks[name] = m._check_output_mask(state[key]).copy() if key in state else None
        for name, p in params.items():
            p.data = np.array(state[name], dtype=p.data.dtype)
            p.grad = None
            p.set_mask(masks.get(name))
        for name in buffers:
            owner, _, attr = name.rpartition(".")
            m = modules[owner]
            object.__setattr__(m, attr, np.array(state[name], dtype=np.asarray(getattr(m, attr)).dtype))
        for name, m in modules.items():
            m.output_mask = unit_masks[name]
        return self

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in self._modules.items():
            lines.append("  (" + name + "): " + repr(child).replace("\n", "\n  "))
        return lines[0] + ")" if len(lines) == 1 else "\n".join(lines) + "\n)"


class Sequential(Module):
    """Runs its children in order; they are named "0", "1", ... as in PyTorch."""

    def __init__(self, *layers: Module):
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"layers: item {i} is a {type(layer).__name__}, expected a Module")
            setattr(self, str(i), layer)

    def forward(self, x):
        for layer in self._modules.values():
            x = layer(x)
        return x

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())
