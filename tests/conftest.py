"""Shared fixtures for the engine tests, and the hypothesis profile that keeps the suite fast."""
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Run from a checkout without installing: the repository root holds the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import minprune as mp  # noqa: E402

# No deadline: the first call of a Numba kernel may compile it. Few examples: the suite stays quick.
settings.register_profile("minprune", deadline=None, max_examples=25,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("minprune")


@pytest.fixture
def rng():
    """A fresh, seeded generator per test: tests never share random state."""
    return np.random.default_rng(1234)


@pytest.fixture
def tiny_mlp():
    """Linear(4, 8) → ReLU → Linear(8, 3): small enough for exhaustive checks."""
    r = np.random.default_rng(0)
    return mp.nn.Sequential(mp.nn.Linear(4, 8, rng=r), mp.nn.ReLU(), mp.nn.Linear(8, 3, rng=r))


@pytest.fixture
def tiny_cnn():
    """Conv → BatchNorm → ReLU → MaxPool → Flatten → Linear on 1×6×6 inputs (has buffers)."""
    r = np.random.default_rng(0)
    return mp.nn.Sequential(
        mp.nn.Conv2d(1, 2, 3, padding=1, rng=r), mp.nn.BatchNorm2d(2), mp.nn.ReLU(),
        mp.nn.MaxPool2d(2), mp.nn.Flatten(), mp.nn.Linear(18, 3, rng=r))


@pytest.fixture(scope="session")
def mnist_small():
    """256 training digits from the embedded MNIST-5k (balanced over classes)."""
    (x, y), _ = mp.data.load_mnist5k()
    return mp.data.subset(x, y, 256, seed=0)


def pytest_addoption(parser):
    parser.addoption("--full", action="store_true",
                     help="also run the full-mode lesson tests (minutes; `make test-full`)")


def pytest_collection_modifyitems(config, items):
    """Mark tests by lesson, so `pytest -m lesson06` runs lesson 06's notebook and checker tests:
    a test file named test_lessonNN*.py, or a test parametrized by a lesson notebook NN_title."""
    import re
    for item in items:
        m = re.search(r"test_lesson(\d\d)", item.path.name) or re.search(r"\[(\d\d)_", item.nodeid)
        if m:
            item.add_marker(f"lesson{m.group(1)}")
        if "full" in item.keywords and not config.getoption("--full"):
            item.add_marker(pytest.mark.skip(reason="full-mode run: pass --full (make test-full)"))
