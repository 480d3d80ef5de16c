"""resnet_tiny (a CIFAR-style ResNet-8/14/20) and the global average pooling it ends with."""
import numpy as np
import pytest
from gradcheck import grad_check

import minprune as mp
from minprune import models, nn
from minprune.nn import functional as fn
from minprune.tensor import Tensor

pytestmark = pytest.mark.engine


# --- AdaptiveAvgPool2d --------------------------------------------------------------------------
def test_global_average_pool_values_and_shape(rng):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    out = nn.AdaptiveAvgPool2d(1)(Tensor(x))
    assert out.shape == (2, 3, 1, 1)
    for n in range(2):
        for c in range(3):
            assert out.data[n, c, 0, 0] == pytest.approx(sum(x[n, c].ravel()) / 20, rel=1e-5)


def test_global_average_pool_gradient(rng):
    grad_check(lambda t: nn.AdaptiveAvgPool2d((1, 1))(t), rng.standard_normal((2, 3, 3, 4)))


@pytest.mark.parametrize("size", [2, (1, 2), 0])
def test_global_average_pool_refuses_other_sizes(size):
    with pytest.raises(ValueError, match="output_size"):
        nn.AdaptiveAvgPool2d(size)


def test_global_average_pool_refuses_non_4d_input():
    with pytest.raises(ValueError, match="x: expected shape"):
        nn.AdaptiveAvgPool2d(1)(Tensor(np.zeros((2, 3), np.float32)))


# --- the architecture ---------------------------------------------------------------------------
def expected_count(blocks, in_channels=1, num_classes=10):
    """Parameters counted by hand from the architecture: conv c_in·c_out·k² (no bias), BN 2·c."""
    def conv_bn(c_in, c_out, k):
        return c_in * c_out * k * k + 2 * c_out

    total, width = conv_bn(in_channels, 16, 3), 16
    for count, out in zip(blocks, (16, 32, 64)):
        for b in range(count):
            c_in = width if b == 0 else out
            total += conv_bn(c_in, out, 3) + conv_bn(out, out, 3)
            if c_in != out:  # stages 2 and 3 start with stride 2 and a 1×1 projection
                total += conv_bn(c_in, out, 1)
        width = out
    return total + 64 * num_classes + num_classes


@pytest.mark.parametrize("blocks", [(1, 1, 1), (2, 2, 2), (1, 3, 2)])
def test_parameter_count(blocks):
    model = models.resnet_tiny(blocks=blocks)
    assert sum(p.size for p in model.parameters()) == expected_count(blocks)


def test_resnet8_has_the_documented_parameter_count():
    # by hand: stem 144+32, layer1 2·(2304+32), layer2 4608+9216+512+3·64,
    # layer3 18432+36864+2048+3·128, fc 650
    assert sum(p.size for p in models.resnet_tiny().parameters()) == 77_754


def test_names_follow_torchvision():
    model = models.resnet_tiny()
    block = ["conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight", "bn2.weight", "bn2.bias"]
    down = ["downsample.0.weight", "downsample.1.weight", "downsample.1.bias"]
    want = ["conv1.weight", "bn1.weight", "bn1.bias"]
    want += [f"layer1.0.{n}" for n in block]
    want += [f"layer2.0.{n}" for n in block + down] + [f"layer3.0.{n}" for n in block + down]
    want += ["fc.weight", "fc.bias"]
    assert [n for n, _ in model.named_parameters()] == want
    buffers = {n for n, _ in model.named_buffers()}
    assert {"layer2.0.downsample.1.running_mean", "bn1.running_var"} <= buffers
    shapes = dict((n, p.shape) for n, p in model.named_parameters())
    assert shapes["layer2.0.conv1.weight"] == (32, 16, 3, 3)
    assert shapes["layer2.0.downsample.0.weight"] == (32, 16, 1, 1)
    assert shapes["layer3.0.conv2.weight"] == (64, 64, 3, 3)
    assert shapes["fc.weight"] == (10, 64)


def test_strides_and_resolution():
    model = models.resnet_tiny()
    assert model.conv1.stride == (1, 1) and model.layer1[0].conv1.stride == (1, 1)
    for stage in (model.layer2, model.layer3):
        assert stage[0].conv1.stride == (2, 2) and stage[0].downsample[0].stride == (2, 2)
    seen = {}
    for name in ("layer1", "layer2", "layer3"):
        model.get_submodule(name).register_forward_hook(
            lambda m, i, out, name=name: seen.__setitem__(name, out.shape))
    model(Tensor(np.zeros((2, 1, 28, 28), np.float32)))
    assert seen == {"layer1": (2, 16, 28, 28), "layer2": (2, 32, 14, 14), "layer3": (2, 64, 7, 7)}


def test_output_shape_other_inputs_and_classes(rng):
    model = models.resnet_tiny(num_classes=4, in_channels=3)
    out = model(Tensor(rng.standard_normal((2, 3, 32, 32)).astype(np.float32)))
    assert out.shape == (2, 4) and out.dtype == np.float32 and np.isfinite(out.data).all()


def test_deeper_variant():
    model = models.resnet_tiny(blocks=(2, 2, 2))
    assert [len(s) for s in (model.layer1, model.layer2, model.layer3)] == [2, 2, 2]
    assert model.layer2[1].downsample is None and model.layer2[1].conv1.stride == (1, 1)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) - 2 + 1 == 14  # ResNet-14: 14 weighted layers besides the projections


def test_seeding():
    a, b, c = models.resnet_tiny(seed=0), models.resnet_tiny(seed=0), models.resnet_tiny(seed=1)
    for (n, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        np.testing.assert_array_equal(pa.data, pb.data, err_msg=n)
        if pa.ndim > 1:
            assert not np.array_equal(pa.data, pc.data), n


def test_registered_and_recorded():
    assert models.get_model("resnet_tiny", seed=2).arch_kwargs == {
        "seed": 2, "num_classes": 10, "in_channels": 1, "blocks": (1, 1, 1)}
    assert models.resnet_tiny().arch == "resnet_tiny"


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(blocks=(1, 1)), ValueError, "blocks: expected three"),
    (dict(blocks=(1, 0, 1)), ValueError, r"blocks\[1\]"),
    (dict(blocks=(1, 1.5, 1)), TypeError, r"blocks\[1\]"),
    (dict(blocks=3), TypeError, "blocks"),
    (dict(in_channels=0), ValueError, "in_channels"),
    (dict(num_classes=0), ValueError, "num_classes"),
    (dict(seed=-1), ValueError, "seed"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        models.resnet_tiny(**kwargs)


# --- the shortcut -------------------------------------------------------------------------------
def silence_branch(block):
    """bn2's γ = β = 0: the branch f outputs 0, so the block computes relu(shortcut(x))."""
    block.bn2.weight.data[:] = 0
    block.bn2.bias.data[:] = 0


def test_identity_shortcut(rng):
    block = models.resnet_tiny().layer1[0]
    assert block.downsample is None and set(block.residual_branch) == {"conv1", "bn1", "conv2", "bn2"}
    x = rng.standard_normal((2, 16, 6, 6)).astype(np.float32)
    silence_branch(block)
    np.testing.assert_array_equal(block.eval()(Tensor(x)).data, np.maximum(x, 0))


def test_projection_shortcut(rng):
    block = models.resnet_tiny().layer2[0]
    assert block.residual_branch is None  # f cannot leave the identity: x has the wrong shape
    x = Tensor(rng.standard_normal((2, 16, 6, 6)).astype(np.float32))
    block.eval()
    with_branch = block(x).data
    silence_branch(block)
    projected = np.maximum(block.downsample(x).data, 0)
    assert projected.shape == (2, 32, 3, 3)
    np.testing.assert_allclose(block(x).data, projected, rtol=1e-6)
    assert not np.allclose(with_branch, projected)  # the branch did contribute before


def test_backward_reaches_every_parameter(rng):
    model = models.resnet_tiny()
    out = model(Tensor(rng.standard_normal((4, 1, 12, 12)).astype(np.float32)))
    fn.cross_entropy(out, np.array([0, 1, 2, 3])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape and np.abs(p.grad).sum() > 0, name


def test_a_few_steps_lower_the_loss(mnist_small):
    x, y = mnist_small[0][:32, :, ::2, ::2], mnist_small[1][:32]  # 14×14: four times cheaper
    model = models.resnet_tiny()  # in training mode: BatchNorm uses batch statistics
    before = fn.cross_entropy(model(Tensor(x)), y).item()
    mp.train.fit(model, (x, y), epochs=8, batch_size=32, lr=0.05, progress=False)
    after = fn.cross_entropy(model.train()(Tensor(x)), y).item()
    assert after < 0.7 * before, (before, after)


# --- save / load --------------------------------------------------------------------------------
@pytest.mark.parametrize("blocks", [(1, 1, 1), (2, 1, 2)])
def test_save_load_rebuilds(tmp_path, rng, blocks):
    model = models.resnet_tiny(seed=3, num_classes=7, blocks=blocks)
    model.train()(Tensor(rng.standard_normal((4, 1, 12, 12)).astype(np.float32)))  # running stats
    path = mp.save(model.eval(), tmp_path / "r.npz")
    loaded = mp.load(path)
    assert loaded.arch_kwargs == model.arch_kwargs and len(loaded.layer1) == blocks[0]
    x = Tensor(rng.standard_normal((2, 1, 12, 12)).astype(np.float32))
    np.testing.assert_array_equal(loaded.eval()(x).data, model(x).data)


@pytest.mark.parametrize("blocks, match", [
    ((1, 10**6, 1), r"blocks\[1\]=1000000 must be an int in \[1, 64\]"),  # not a million blocks
    ((1, 1.5, 1), r"blocks\[1\]=1.5 must be an int"),
    ((1, 1), r"blocks=\[1, 1\] must be a list of 3 ints"),
    (2, r"blocks=2 must be a list of 3 ints")])
def test_load_refuses_bad_recorded_blocks(tmp_path, blocks, match):
    model = models.resnet_tiny()
    object.__setattr__(model, "arch_kwargs", {**model.arch_kwargs, "blocks": blocks})
    path = mp.save(model, tmp_path / "r.npz")
    with pytest.raises(ValueError, match=match):
        mp.load(path)


# --- against PyTorch ----------------------------------------------------------------------------
def torch_resnet(torch, blocks):
    """The same network written with torch.nn, torchvision's way (one `relu` used twice)."""
    tnn = torch.nn

    class Block(tnn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.conv1 = tnn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(c_out)
            self.relu = tnn.ReLU()
            self.conv2 = tnn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(c_out)
            self.downsample = None
            if stride != 1 or c_in != c_out:
                self.downsample = tnn.Sequential(tnn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                                 tnn.BatchNorm2d(c_out))

        def forward(self, x):
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1, self.relu = tnn.Conv2d(1, 16, 3, 1, 1, bias=False), \
                tnn.BatchNorm2d(16), tnn.ReLU()
            width = 16
            for i, (count, out, stride) in enumerate(zip(blocks, (16, 32, 64), (1, 2, 2)), 1):
                setattr(self, f"layer{i}", tnn.Sequential(
                    Block(width, out, stride), *(Block(out, out, 1) for _ in range(count - 1))))
                width = out
            self.avgpool, self.fc = tnn.AdaptiveAvgPool2d(1), tnn.Linear(64, 10)

        def forward(self, x):
            x = self.layer3(self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x))))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return Net()


def test_same_logits_and_gradients_as_a_torch_twin(rng):
    torch = pytest.importorskip("torch")
    blocks = (2, 1, 1)  # identity blocks (layer1.0, layer1.1) and projection blocks
    ours, theirs = models.resnet_tiny(seed=1, blocks=blocks), torch_resnet(torch, blocks)
    for m in ours.modules():  # non-trivial BN parameters, so a swapped γ/β would show
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data[:] = rng.uniform(0.5, 1.5, m.weight.shape)
            m.bias.data[:] = rng.uniform(-0.2, 0.2, m.bias.shape)
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in ours.state_dict().items()}
    missing, unexpected = theirs.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    x = rng.standard_normal((4, 1, 16, 16)).astype(np.float32)
    for mode in ("train", "eval", "train"):  # train twice: running statistics must agree too
        getattr(ours, mode)()
        getattr(theirs, mode)()
        want = theirs(torch.from_numpy(x))
        got = ours(Tensor(x))
        np.testing.assert_allclose(got.data, want.detach().numpy(), rtol=1e-4, atol=1e-4,
                                   err_msg=mode)
    np.testing.assert_allclose(ours.layer3[0].bn2.running_var,
                               theirs.layer3[0].bn2.running_var.numpy(), rtol=1e-4, atol=1e-5)
    g = rng.standard_normal(got.shape).astype(np.float32)  # and the gradients of the last pass
    got.backward(g)
    want.backward(torch.from_numpy(g))
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, theirs_params[name].grad.numpy(), rtol=1e-3, atol=1e-4,
                                   err_msg=name)
