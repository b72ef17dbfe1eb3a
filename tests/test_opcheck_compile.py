"""torch.library.opcheck on every op, and torch.compile(fullgraph=True) through convkit layers."""
import pytest
import torch
from torch import nn

import convkit

ops = torch.ops.convkit


def conv_samples(device):
    g = torch.Generator().manual_seed(0)

    def rand(*shape, grad=True):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(device).requires_grad_(grad)

    yield (rand(2, 4, 7, 6), rand(6, 4, 3, 3), rand(6), [1, 1], [1, 1], [1, 1], 1)
    yield (rand(1, 4, 9, 8), rand(4, 2, 2, 3), None, [2, 1], [0, 1], [1, 2], 2)
    yield (rand(2, 3, 6, 6).contiguous(memory_format=torch.channels_last), rand(3, 1, 3, 3), rand(3), [1, 1],
           [1, 1], [1, 1], 3)
    yield (rand(0, 2, 5, 5), rand(2, 2, 3, 3), rand(2), [1, 1], [0, 0], [1, 1], 1)
    # 64 images of few channels: the CPU batch-lane kernels.
    yield (rand(64, 3, 6, 5), rand(8, 3, 3, 3), rand(8), [1, 1], [1, 1], [1, 1], 1)


def test_opcheck_conv2d(device):
    for args in conv_samples(device):
        torch.library.opcheck(ops.conv2d, args)


def test_opcheck_conv2d_backward(device):
    for input, weight, bias, stride, padding, dilation, groups in conv_samples(device):
        out = ops.conv2d(input.detach(), weight.detach(), None, stride, padding, dilation, groups)
        grad = torch.randn_like(out).requires_grad_()
        for mask in ([True, True, True], [False, True, False], [True, False, True]):
            torch.library.opcheck(ops.conv2d_backward, (grad, input, weight, stride, padding, dilation, groups, mask))


def test_opcheck_corr2d(device):
    x = torch.randn(7, 9, dtype=torch.float64, device=device, requires_grad=True)
    k = torch.randn(3, 2, dtype=torch.float64, device=device, requires_grad=True)
    torch.library.opcheck(ops.corr2d, (x, k))


@pytest.mark.parametrize("dynamic", [False, True])
def test_compile_fullgraph_forward_backward(device, dynamic):
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = nn.Sequential(convkit.nn.Conv2d(1, 6, 5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2),
                          convkit.nn.Conv2d(6, 16, 5, groups=2), nn.Flatten(), nn.LazyLinear(10)).to(device)
    x = torch.randn(4, 1, 28, 28, device=device)
    eager_loss = model(x).square().mean()
    eager_grads = torch.autograd.grad(eager_loss, list(model.parameters()))
    compiled = torch.compile(model, fullgraph=True, dynamic=dynamic)
    loss = compiled(x).square().mean()
    grads = torch.autograd.grad(loss, list(model.parameters()))
    torch.testing.assert_close(loss, eager_loss)
    for a, b in zip(grads, eager_grads):
        torch.testing.assert_close(a, b)


def test_compile_corr2d_and_textbook_layer(device):
    torch._dynamo.reset()
    layer = convkit.nn.Conv2D((1, 2)).to(device)
    X = torch.randn(6, 8, device=device)
    compiled = torch.compile(layer, fullgraph=True)
    torch.testing.assert_close(compiled(X), layer(X))
    compiled(X).sum().backward()
    assert layer.weight.grad is not None
