"""Layers and modules, laid out like `torch.nn`."""
from . import functional, init
from .layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    MaxPool2d,
    ReLU,
)
from .module import Module, Parameter, Sequential
from .serialize import load, save

__all__ = ["Module", "Parameter", "Sequential", "Linear", "Conv2d", "BatchNorm1d", "BatchNorm2d",
           "ReLU", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Flatten", "Dropout",
           "functional", "init", "save", "load"]
