"""The networks the pruning literature keeps returning to, sized for MNIST (1×28×28, 10 classes).

Layer shapes match the classic definitions exactly, so results and benchmarks can be compared
with the same networks elsewhere. Every factory takes `seed`: same seed, same initial weights.
The model remembers how it was built (`model.arch`, `model.arch_kwargs`) so `nn.load` can rebuild it.
"""
from __future__ import annotations

import numpy as np

from . import checks, nn
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


class BasicBlock(nn.Module):
    """He et al. (2016)'s residual block: out = relu(f(x) + shortcut(x)), where the branch
    f = conv3×3(stride) → BN → ReLU → conv3×3 → BN. The shortcut is the identity when the shape is
    kept, else `downsample` = 1×1 conv(stride) → BN, which projects x to the new shape.
    Names follow torchvision (conv1, bn1, conv2, bn2, downsample.0/1); the ReLU after the addition
    is its own module `relu_out` (torchvision reuses `relu`), so hooks and activation masks can
    tell the two apart."""

    def __init__(self, in_channels, out_channels, stride=1, rng=None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False, rng=rng)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False, rng=rng)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False, rng=rng),
                nn.BatchNorm2d(out_channels))
        self.relu_out = nn.ReLU()

    def forward(self, x):
        branch = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu_out(branch + shortcut)

    @property
    def residual_branch(self) -> dict | None:
        """{name: module} of f when this block computes relu(x + f(x)), so removing f leaves the
        identity (a whole layer can go); None when a projection shortcut replaces x."""
        if self.downsample is not None:
            return None
        return {"conv1": self.conv1, "bn1": self.bn1, "conv2": self.conv2, "bn2": self.bn2}


class ResNet(nn.Module):
    """Stem (conv1, bn1, relu), stages layer1…layer3, global average pooling, then `fc`."""

    def __init__(self, stem: list, stages: list, num_features: int, num_classes: int, rng):
        super().__init__()
        self.conv1, self.bn1, self.relu = stem
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(num_features, num_classes, rng=rng)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(nn.functional.flatten(self.avgpool(x)))


def resnet_tiny(seed: int = 0, num_classes: int = 10, in_channels: int = 1,
                blocks: tuple = (1, 1, 1)) -> ResNet:
    """A CIFAR-style ResNet (He et al., 2016, §4.2) with 6·(blocks per stage)+2 layers: ResNet-8
    by default (77,754 parameters), `blocks=(2, 2, 2)` ResNet-14, `(3, 3, 3)` ResNet-20.

    conv3×3 16 → BN → ReLU, then three stages of `blocks[i]` BasicBlocks with 16, 32, 64 channels
    (the first block of stages 2 and 3 halves the resolution with stride 2 and has a 1×1
    projection shortcut; every other block an identity one), global average pooling, Linear 64 →
    classes. Convolutions have no bias: the BatchNorm after each one has its own shift.

    >>> model = resnet_tiny()
    >>> model.layer2[0].downsample
    Sequential(
      (0): Conv2d(16, 32, kernel_size=(1, 1), stride=(2, 2), padding=(0, 0))
      (1): BatchNorm2d(32)
    )
    """
    seed = checks.integer(seed, "seed", minimum=0)
    num_classes = checks.integer(num_classes, "num_classes", minimum=1)
    in_channels = checks.integer(in_channels, "in_channels", minimum=1)
    blocks = tuple(checks.each(blocks, "blocks", checks.integer, minimum=1))
    if len(blocks) != 3:
        raise ValueError(f"blocks: expected three numbers of blocks (one per stage), got {blocks}")
    rng = np.random.default_rng(seed)
    stem = [nn.Conv2d(in_channels, 16, 3, padding=1, bias=False, rng=rng), nn.BatchNorm2d(16),
            nn.ReLU()]
    stages, width = [], 16
    for count, out, stride in zip(blocks, (16, 32, 64), (1, 2, 2)):
        stage = [BasicBlock(width, out, stride, rng)]
        stage += [BasicBlock(out, out, 1, rng) for _ in range(count - 1)]
        stages.append(nn.Sequential(*stage))
        width = out
    model = ResNet(stem, stages, width, num_classes, rng)
    return _built(model, "resnet_tiny", seed=seed, num_classes=num_classes,
                  in_channels=in_channels, blocks=blocks)


def resnet14(seed: int = 0, num_classes: int = 10, in_channels: int = 1) -> ResNet:
    """`resnet_tiny(blocks=(2, 2, 2))`: four identity-shortcut blocks, so whole-layer pruning
    has several blocks to choose from (ResNet-8 has one). Saved files record it as resnet_tiny.

    >>> sum(b.downsample is None for s in (resnet14().layer1, resnet14().layer2) for b in s)
    3
    """
    return resnet_tiny(seed, num_classes, in_channels, blocks=(2, 2, 2))


MODELS = {"lenet_300_100": lenet_300_100, "lenet5": lenet5, "conv4": conv4,
          "resnet_tiny": resnet_tiny, "resnet14": resnet14}
# `mp.load(path)` rebuilds these from the arguments a file records, once they are within bounds.
# resnet_tiny's `blocks` is three ints, each bounded: a file must not ask for a million blocks.
_EXTRA_BOUNDS = {"resnet_tiny": dict(in_channels=range(1, 1025), blocks=(range(1, 65),) * 3)}
for _name, _builder in MODELS.items():
    if _name == "resnet14":
        continue  # a resnet_tiny with other arguments: its files say resnet_tiny
    register_architecture(_name, _builder, seed=range(2**63), num_classes=range(1, 100_001),
                          **_EXTRA_BOUNDS.get(_name, {}))


def get_model(name: str, **kwargs) -> nn.Module:
    """Build a model by name: one of `MODELS`."""
    if name not in MODELS:
        raise ValueError(f"model: {name!r} is not one of {sorted(MODELS)}")
    return MODELS[name](**kwargs)
