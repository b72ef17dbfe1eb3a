"""The fused epilogue (activation + average pooling), Conv2dActPool and convkit.fuse."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import convkit
from conftest import tolerance

ops = torch.ops.convkit
ACTIVATIONS = ["none", "relu", "sigmoid"]
TORCH_ACT = {"none": lambda t: t, "relu": torch.relu, "sigmoid": torch.sigmoid}


def chain(z, activation, window):
    return F.avg_pool2d(TORCH_ACT[activation](z), window)


# Odd sizes leave rows and columns outside every window; many planes cross the
# kernels' work-chunk boundaries (where the vector paths stop short).
SHAPES = [(2, 3, 28, 28, 2), (1, 2, 7, 9, 2), (2, 2, 10, 11, 3), (1, 1, 5, 5, 1), (3, 2, 33, 40, 2),
          (1, 1, 2, 2, 2), (300, 16, 10, 10, 2), (64, 6, 28, 28, 2), (4, 2, 9, 8, 4), (2, 3, 17, 5, 5)]


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_torch_and_the_naive_loop(device, activation, dtype):
    gen = torch.Generator().manual_seed(torch.seed())
    for n, c, h, w, k in SHAPES:
        z = (4 * torch.randn(n, c, h, w, generator=gen, dtype=dtype)).to(device)
        z_ref = z.clone().requires_grad_()
        expected = chain(z_ref, activation, k)
        pooled, activated = ops.activation_avg_pool2d(z, activation, k)
        torch.testing.assert_close(pooled, expected, **tolerance(dtype))
        torch.testing.assert_close(activated, TORCH_ACT[activation](z), **tolerance(dtype))
        if n * c <= 6:
            torch.testing.assert_close(pooled, convkit.reference.activation_avg_pool2d(z, activation, k),
                                       **tolerance(dtype))
        grad = torch.randn(expected.shape, generator=gen, dtype=dtype).to(device)
        expected.backward(grad)
        grad_z = ops.activation_avg_pool2d_backward(grad, activated, activation, k)
        torch.testing.assert_close(grad_z, z_ref.grad, **tolerance(dtype))


def test_non_finite_values_as_torch():
    z = torch.tensor([[[[float("nan"), 1.0, -float("inf"), 2.0], [0.0, 100.0, -100.0, float("inf")]]]])
    for activation in ACTIVATIONS:
        pooled, activated = ops.activation_avg_pool2d(z, activation, 2)
        torch.testing.assert_close(pooled, chain(z, activation, 2), equal_nan=True)
        torch.testing.assert_close(activated, TORCH_ACT[activation](z), equal_nan=True)


def test_sigmoid_accuracy_float32():
    z = torch.linspace(-100, 100, 200001).view(1, 1, 1, -1)
    _, activated = ops.activation_avg_pool2d(z, "sigmoid", 1)
    exact = torch.sigmoid(z.double())
    normal = exact > 1e-37  # below that the float result is a denormal or 0
    torch.testing.assert_close(activated.double()[normal], exact[normal], rtol=3e-7, atol=0)
    assert (activated.double() - exact).abs().max() < 1e-7


def test_results_do_not_depend_on_threads():
    z = torch.randn(300, 16, 10, 10)
    grad = torch.randn(300, 16, 5, 5)
    runs = []
    threads = torch.get_num_threads()
    for n in (1, threads):
        torch.set_num_threads(n)
        pooled, activated = ops.activation_avg_pool2d(z, "sigmoid", 2)
        runs.append((pooled, activated, ops.activation_avg_pool2d_backward(grad, activated, "sigmoid", 2)))
    torch.set_num_threads(threads)
    for a, b in zip(*runs):
        assert torch.equal(a, b)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradients_of_any_order(device, activation):
    z = torch.randn(2, 3, 7, 8, dtype=torch.float64, device=device, requires_grad=True)
    both = lambda z: ops.activation_avg_pool2d(z, activation, 2)  # noqa: E731  (the activated output too)
    assert torch.autograd.gradcheck(both, (z,))
    assert torch.autograd.gradgradcheck(both, (z,))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_opcheck(device, activation):
    z = torch.randn(2, 3, 9, 8, dtype=torch.float64, device=device, requires_grad=True)
    torch.library.opcheck(ops.activation_avg_pool2d.default, (z, activation, 2))
    grad = torch.randn(2, 3, 4, 4, dtype=torch.float64, device=device, requires_grad=True)
    y = torch.rand(2, 3, 9, 8, dtype=torch.float64, device=device, requires_grad=True)
    torch.library.opcheck(ops.activation_avg_pool2d_backward.default, (grad, y, activation, 2))


def test_errors():
    z = torch.randn(2, 3, 6, 6)
    for args, match in [((z, "tanh", 2), "activation must be"), ((z, "relu", 0), "window must be positive"),
                        ((z, "relu", 7), "output size is too small"), ((z[0], "relu", 2), "4-D"),
                        ((z.int(), "relu", 2), "floating-point")]:
        with pytest.raises(RuntimeError, match=match):
            ops.activation_avg_pool2d(*args)
    with pytest.raises(RuntimeError, match="expected grad_pooled of size"):
        ops.activation_avg_pool2d_backward(torch.randn(2, 3, 2, 2), z, "relu", 2)
    with pytest.raises(RuntimeError, match="should be the same"):
        ops.activation_avg_pool2d_backward(torch.randn(2, 3, 3, 3, dtype=torch.float64), z, "relu", 2)
    with pytest.raises(ValueError, match="activation must be"):
        convkit.nn.Conv2dActPool(1, 2, 3, activation="tanh", pool=2)


def lenet_twins(device, dtype=torch.float64):
    torch.manual_seed(0)
    theirs = convkit.models.LeNet(conv=nn.Conv2d).to(device, dtype)
    return convkit.fuse(copy.deepcopy(theirs)), theirs


def test_fused_lenet_matches_torch(device):
    ours, theirs = lenet_twins(device)
    assert [type(m) for m in ours[:6]] == [convkit.nn.Conv2dActPool, nn.Identity, nn.Identity] * 2
    assert list(ours.state_dict()) == list(theirs.state_dict())
    x = torch.randn(16, 1, 28, 28, dtype=torch.float64, device=device)
    out_ours, out_theirs = ours(x), theirs(x)
    torch.testing.assert_close(out_ours, out_theirs, **tolerance(torch.float64))
    out_ours.square().sum().backward()
    out_theirs.square().sum().backward()
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a.grad, b.grad, **tolerance(torch.float64))
    ours.load_state_dict(theirs.state_dict())  # and back


def test_fused_unbatched_input():
    layer = convkit.nn.Conv2dActPool(2, 3, 3, padding=1, activation="relu", pool=2, dtype=torch.float64)
    x = torch.randn(2, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(layer(x), F.avg_pool2d(torch.relu(F.conv2d(x, layer.weight, layer.bias, padding=1)), 2))


def test_fuse_takes_only_what_it_computes():
    pools = [nn.AvgPool2d(2, stride=1), nn.AvgPool2d(2, padding=1), nn.AvgPool2d(2, ceil_mode=True),
             nn.AvgPool2d(2, divisor_override=3), nn.AvgPool2d((2, 3)), nn.MaxPool2d(2)]
    for pool in pools:
        model = convkit.fuse(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sigmoid(), pool))
        assert type(model[0]) is convkit.nn.Conv2d and model[2] is pool
    model = convkit.fuse(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.AvgPool2d(2)))
    assert type(model[0]) is convkit.nn.Conv2d
    model = convkit.fuse(nn.Sequential(nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(3, stride=3)), nn.ReLU()))
    assert model[0][0].activation == "none" and model[0][0].pool == 3 and isinstance(model[0][1], nn.Identity)
    model = convkit.fuse(convkit.models.LeNet(modern=True))  # ReLU and max-pooling: nothing to fuse
    assert all(type(m) is not convkit.nn.Conv2dActPool for m in model)


def test_compiles_fullgraph():
    ours, theirs = lenet_twins("cpu", torch.float32)
    compiled = torch.compile(ours, fullgraph=True)
    x = torch.randn(8, 1, 28, 28)
    torch.testing.assert_close(compiled(x), theirs(x), **tolerance(torch.float32))
