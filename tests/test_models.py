"""LeNet: the textbook's layers exactly, Xavier init reaching convkit layers, the torch twin."""
import math

import pytest
import torch
from torch import nn

import convkit
from convkit.models import LeNet, init_weights

BOOK = [  # (type, constructor arguments that define it)
    (nn.Conv2d, dict(in_channels=1, out_channels=6, kernel_size=(5, 5), padding=(2, 2), stride=(1, 1))),
    (nn.Sigmoid, {}),
    (nn.AvgPool2d, dict(kernel_size=2, stride=2)),
    (nn.Conv2d, dict(in_channels=6, out_channels=16, kernel_size=(5, 5), padding=(0, 0), stride=(1, 1))),
    (nn.Sigmoid, {}),
    (nn.AvgPool2d, dict(kernel_size=2, stride=2)),
    (nn.Flatten, {}),
    (nn.Linear, dict(in_features=400, out_features=120)),
    (nn.Sigmoid, {}),
    (nn.Linear, dict(in_features=120, out_features=84)),
    (nn.Sigmoid, {}),
    (nn.Linear, dict(in_features=84, out_features=10)),
]


def expected(conv, modern):
    swap = {nn.Conv2d: conv}
    if modern:
        swap.update({nn.Sigmoid: nn.ReLU, nn.AvgPool2d: nn.MaxPool2d})
    return [(swap.get(t, t), kw) for t, kw in BOOK]


@pytest.mark.parametrize("modern", [False, True], ids=["book", "modern"])
@pytest.mark.parametrize("conv", [convkit.nn.Conv2d, nn.Conv2d], ids=["convkit", "torch"])
def test_layers_exactly(conv, modern):
    net = LeNet(conv=conv, modern=modern) if conv is nn.Conv2d else LeNet(modern=modern)
    assert type(net) is nn.Sequential
    layers = list(net)
    assert len(layers) == len(BOOK)
    for layer, (kind, kw) in zip(layers, expected(conv, modern)):
        assert type(layer) is kind
        for k, v in kw.items():
            assert getattr(layer, k) == v, (layer, k)
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            assert layer.bias is not None


def test_default_is_convkit():
    assert [type(m) for m in LeNet() if isinstance(m, nn.Conv2d)] == [convkit.nn.Conv2d] * 2


def test_book_shapes():
    """The textbook's layer-by-layer output shapes for a 1 x 1 x 28 x 28 input."""
    X = torch.rand(1, 1, 28, 28)
    shapes = []
    for layer in LeNet():
        X = layer(X)
        shapes.append(tuple(X.shape))
    assert shapes == [(1, 6, 28, 28), (1, 6, 28, 28), (1, 6, 14, 14), (1, 16, 10, 10), (1, 16, 10, 10),
                      (1, 16, 5, 5), (1, 400), (1, 120), (1, 120), (1, 84), (1, 84), (1, 10)]


def test_init_weights_reaches_convkit_layers():
    torch.manual_seed(0)
    net = LeNet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.apply(init_weights)
    for name, module in net.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            w = module.weight.detach()
            fan_in = w.shape[1] * w[0, 0].numel()
            fan_out = w.shape[0] * w[0, 0].numel()
            bound = math.sqrt(6 / (fan_in + fan_out))
            assert float(w.abs().max()) <= bound
            assert float(w.abs().max()) > 0.8 * bound  # drawn from the full Xavier range, not the default
            assert not torch.equal(w, before[f"{name}.weight"])
            assert torch.equal(module.bias, before[f"{name}.bias"])  # biases keep the default


@pytest.mark.parametrize("modern", [False, True], ids=["book", "modern"])
def test_same_seed_same_weights_and_outputs(modern):
    nets = []
    for conv in (convkit.nn.Conv2d, nn.Conv2d):
        torch.manual_seed(3)
        nets.append(LeNet(conv=conv, modern=modern).apply(init_weights).double())
    a, b = (n.state_dict() for n in nets)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    X = torch.rand(4, 1, 28, 28, dtype=torch.float64)
    ya, yb = nets[0](X), nets[1](X)
    torch.testing.assert_close(ya, yb, rtol=1e-12, atol=1e-12)
    ya.sum().backward()
    yb.sum().backward()
    for pa, pb in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-10, atol=1e-12)


def test_state_dict_moves_both_ways():
    net = LeNet().apply(init_weights)
    twin = LeNet(conv=nn.Conv2d)
    twin.load_state_dict(net.state_dict())
    back = LeNet()
    back.load_state_dict(twin.state_dict())
    X = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(net(X), twin(X))
    torch.testing.assert_close(back(X), net(X))
