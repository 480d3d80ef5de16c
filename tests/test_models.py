"""The model zoo: exact parameter counts, output shapes, seeding."""
import numpy as np
import pytest

import minprune as mp
from minprune.tensor import Tensor

pytestmark = pytest.mark.engine

COUNTS = {"lenet_300_100": 266_610, "lenet5": 61_706, "conv4": 871_018}


@pytest.mark.parametrize("name, count", COUNTS.items())
def test_parameter_counts(name, count):
    model = mp.models.get_model(name)
    assert sum(p.size for p in model.parameters()) == count


@pytest.mark.parametrize("name", COUNTS)
def test_output_shape(name):
    model = mp.models.get_model(name)
    x = Tensor(np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32))
    out = model(x)
    assert out.shape == (3, 10) and out.dtype == np.float32
    assert np.all(np.isfinite(out.data))


def test_num_classes():
    out = mp.models.lenet5(num_classes=4)(Tensor(np.zeros((2, 1, 28, 28), np.float32)))
    assert out.shape == (2, 4)


@pytest.mark.parametrize("name", COUNTS)
def test_seeding(name):
    a, b, c = (mp.models.get_model(name, seed=s) for s in (0, 0, 1))
    for (n, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        np.testing.assert_array_equal(pa.data, pb.data, err_msg=n)
        if n.endswith("weight") and pa.ndim > 1:
            assert not np.array_equal(pa.data, pc.data), n


def test_arch_is_recorded():
    model = mp.models.conv4(seed=3)
    assert model.arch == "conv4" and model.arch_kwargs == {"seed": 3, "num_classes": 10}


def test_unknown_model_name():
    with pytest.raises(ValueError, match="model"):
        mp.models.get_model("resnet152")
