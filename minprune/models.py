"""The networks the pruning literature keeps returning to, sized for MNIST (1×28×28, 10 classes).

Layer shapes match the classic definitions exactly, so results and benchmarks can be compared
with the same networks elsewhere. Every factory takes `seed`: same seed, same initial weights.
The model remembers how it was built (`model.arch`, `model.arch_kwargs`) so `nn.load` can rebuild it.
"""
from __future__ import annotations

import numpy as np

from . import nn
from .nn.serialize import register_architecture


class Classifier(nn.Module):
    """`features` (convolutions; may be empty) then `classifier` (Flatten + Linear layers)."""

    def __init__(self, features: nn.Sequential, classifier: nn.Sequential):
        super().__init__()
        self.features = features
        self.classifier = classifier

    def forward(self, x):
        return self.classifier(self.features(x))


def _built(model, arch, **kwargs):
    object.__setattr__(model, "arch", arch)
    object.__setattr__(model, "arch_kwargs", kwargs)
    return model


def lenet_300_100(seed: int = 0, num_classes: int = 10) -> Classifier:
    """LeCun et al. (1998) fully connected net: 784 → 300 → 100 → 10 (266,610 parameters)."""
    rng = np.random.default_rng(seed)
    classifier = nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 300, rng=rng), nn.ReLU(),
        nn.Linear(300, 100, rng=rng), nn.ReLU(),
        nn.Linear(100, num_classes, rng=rng))
    return _built(Classifier(nn.Sequential(), classifier), "lenet_300_100", seed=seed,
                  num_classes=num_classes)


def lenet5(seed: int = 0, num_classes: int = 10) -> Classifier:
    """LeNet-5 (61,706 parameters): two 5×5 convolutions with max-pooling, then 400 → 120 → 84 → 10."""
    rng = np.random.default_rng(seed)
    features = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, rng=rng), nn.ReLU(), nn.MaxPool2d(2))
    classifier = nn.Sequential(
        nn.Flatten(),
        nn.Linear(400, 120, rng=rng), nn.ReLU(),
        nn.Linear(120, 84, rng=rng), nn.ReLU(),
        nn.Linear(84, num_classes, rng=rng))
    return _built(Classifier(features, classifier), "lenet5", seed=seed, num_classes=num_classes)


def conv4(seed: int = 0, num_classes: int = 10) -> Classifier:
    """A small VGG-style net with BatchNorm: [conv3×3-BN-ReLU]×2, pool, [conv3×3-BN-ReLU]×2, pool,
    3136 → 256 → 10 (channels 32, 32, 64, 64; 871,018 parameters)."""
    rng = np.random.default_rng(seed)

    def block(c_in, c_out):
        return [nn.Conv2d(c_in, c_out, 3, padding=1, rng=rng), nn.BatchNorm2d(c_out), nn.ReLU()]

    features = nn.Sequential(*block(1, 32), *block(32, 32), nn.MaxPool2d(2),
                             *block(32, 64), *block(64, 64), nn.MaxPool2d(2))
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(3136, 256, rng=rng), nn.ReLU(),
                               nn.Linear(256, num_classes, rng=rng))
    return _built(Classifier(features, classifier), "conv4", seed=seed, num_classes=num_classes)


MODELS = {"lenet_300_100": lenet_300_100, "lenet5": lenet5, "conv4": conv4}
# `mp.load(path)` rebuilds these from the arguments a file records, once they are within bounds.
for _name, _builder in MODELS.items():
    register_architecture(_name, _builder, seed=range(2**63), num_classes=range(1, 100_001))


def get_model(name: str, **kwargs) -> Classifier:
    """Build a model by name: one of `MODELS`."""
    if name not in MODELS:
        raise ValueError(f"model: {name!r} is not one of {sorted(MODELS)}")
    return MODELS[name](**kwargs)
