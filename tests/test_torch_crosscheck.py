"""Cross-check layers, the loss and a whole LeNet-5 forward + backward against PyTorch (float32)."""
import numpy as np
import pytest

import minprune as mp
from minprune import nn
from minprune.nn import functional as fn
from minprune.tensor import Tensor

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.engine

TOL = {"rtol": 1e-4, "atol": 1e-4}


def t(a, grad=False):
    return torch.tensor(np.asarray(a), requires_grad=grad)


def copy_params(ours, theirs):
    """Copy minprune parameters and buffers into a torch module with the same names."""
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in ours.state_dict().items()}
    missing, unexpected = theirs.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)


def compare_module(ours, theirs, x, rng, copy=True):
    """Same input, same output gradient: outputs, input gradient and parameter gradients agree."""
    if copy:
        copy_params(ours, theirs)
    xm = Tensor(x, requires_grad=True)
    xt = t(x, grad=True)
    out_m, out_t = ours(xm), theirs(xt)
    np.testing.assert_allclose(out_m.data, out_t.detach().numpy(), **TOL)
    g = rng.standard_normal(out_m.shape).astype(np.float32)
    out_m.backward(g)
    out_t.backward(t(g))
    np.testing.assert_allclose(xm.grad, xt.grad.numpy(), **TOL)
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, theirs_params[name].grad.numpy(), err_msg=name, **TOL)


def randn(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("bias", [True, False])
def test_linear(rng, bias):
    compare_module(nn.Linear(7, 5, bias=bias, rng=0), torch.nn.Linear(7, 5, bias=bias),
                   randn(rng, 4, 7), rng)


@pytest.mark.parametrize("cin, cout, k, stride, padding, bias", [
    (1, 6, 5, 1, 2, True),
    (6, 16, 5, 1, 0, True),
    (3, 4, 3, 2, 1, False),
    (2, 3, (3, 2), (2, 1), (0, 2), True),
    (4, 8, 1, 1, 0, True),
    (32, 16, 3, 1, 1, True),  # many channels: the other memory layout in the kernels
])
def test_conv2d(rng, cin, cout, k, stride, padding, bias):
    ours = nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=bias, rng=0)
    if bias:
        ours.bias.data[:] = randn(rng, cout)
    theirs = torch.nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=bias)
    compare_module(ours, theirs, randn(rng, 3, cin, 9, 8), rng)


@pytest.mark.parametrize("k, stride", [(2, None), (3, 2), (2, 1), ((2, 3), (2, 1))])
def test_max_pool2d(rng, k, stride):
    x = (rng.permutation(2 * 3 * 8 * 9).reshape(2, 3, 8, 9) / 100).astype(np.float32)  # no ties
    compare_module(nn.MaxPool2d(k, stride), torch.nn.MaxPool2d(k, stride), x, rng)


@pytest.mark.parametrize("k, stride", [(2, None), (3, 2), (2, 1), ((2, 3), (2, 1))])
def test_avg_pool2d(rng, k, stride):
    compare_module(nn.AvgPool2d(k, stride), torch.nn.AvgPool2d(k, stride), randn(rng, 2, 3, 8, 9), rng)


@pytest.mark.parametrize("cls, tcls, shape", [
    (nn.BatchNorm2d, torch.nn.BatchNorm2d, (4, 3, 5, 5)),
    (nn.BatchNorm1d, torch.nn.BatchNorm1d, (8, 3)),
])
def test_batchnorm_train_and_eval(rng, cls, tcls, shape):
    ours, theirs = cls(3), tcls(3)
    ours.weight.data[:] = [0.5, 1.5, -1.0]
    ours.bias.data[:] = [0.1, 0.0, -0.3]
    copy_params(ours, theirs)
    for _ in range(3):  # train: batch statistics; running stats evolve identically, copied once
        compare_module(ours, theirs, randn(rng, *shape) * 2 + 0.5, rng, copy=False)
        np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), **TOL)
        np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), **TOL)
        ours.zero_grad()
        theirs.zero_grad()
    ours.eval()
    theirs.eval()
    compare_module(ours, theirs, randn(rng, *shape), rng, copy=False)


def test_cross_entropy(rng):
    z, y = randn(rng, 6, 10) * 3, rng.integers(0, 10, 6)
    zm, zt = Tensor(z, requires_grad=True), t(z, grad=True)
    lm = fn.cross_entropy(zm, y)
    lt = torch.nn.functional.cross_entropy(zt, torch.from_numpy(y))
    assert lm.item() == pytest.approx(lt.item(), rel=1e-5)
    lm.backward()
    lt.backward()
    np.testing.assert_allclose(zm.grad, zt.grad.numpy(), **TOL)
    big = np.array([[1e4, -1e4, 0.0]], np.float32)
    assert fn.cross_entropy(Tensor(big), np.array([1])).item() == pytest.approx(
        torch.nn.functional.cross_entropy(t(big), torch.tensor([1])).item(), rel=1e-6)


class TorchLeNet5(torch.nn.Module):
    def __init__(self):
        super().__init__()
        tnn = torch.nn
        self.features = tnn.Sequential(
            tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
            tnn.Conv2d(6, 16, 5), tnn.ReLU(), tnn.MaxPool2d(2))
        self.classifier = tnn.Sequential(
            tnn.Flatten(), tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(),
            tnn.Linear(84, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


def test_lenet5_forward_backward(rng):
    ours, theirs = mp.models.lenet5(seed=0), TorchLeNet5()
    copy_params(ours, theirs)
    (x, y), _ = mp.data.load_mnist5k()
    x, y = x[:32], y[:32]
    out_m = ours(Tensor(x))
    out_t = theirs(t(x))
    np.testing.assert_allclose(out_m.data, out_t.detach().numpy(), **TOL)
    lm = fn.cross_entropy(out_m, y)
    lt = torch.nn.functional.cross_entropy(out_t, torch.from_numpy(y))
    assert lm.item() == pytest.approx(lt.item(), rel=1e-5)
    lm.backward()
    lt.backward()
    theirs_params = dict(theirs.named_parameters())
    assert set(theirs_params) == {n for n, _ in ours.named_parameters()}
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, theirs_params[name].grad.numpy(), err_msg=name,
                                   rtol=1e-4, atol=1e-5)
