"""The drop-in nn.Conv2d, convert(), the textbook Conv2D layer and the textbook walk-through."""
import pytest
import torch
from torch import nn

import convkit


def twins(device, **kwargs):
    args = dict(in_channels=4, out_channels=6, kernel_size=3)
    args.update(kwargs)
    torch.manual_seed(0)
    ours = convkit.nn.Conv2d(**args, device=device, dtype=torch.float64)
    torch.manual_seed(0)
    theirs = nn.Conv2d(**args, device=device, dtype=torch.float64)
    return ours, theirs


def test_same_parameters_initialisation_and_repr(device):
    ours, theirs = twins(device, stride=2, padding=1, groups=2, bias=True)
    assert isinstance(ours, nn.Conv2d)
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight", "bias"]
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)  # same seed, same initialisation


@pytest.mark.parametrize("kwargs", [dict(), dict(stride=2, padding=1), dict(padding="same", dilation=2),
                                    dict(groups=2, bias=False), dict(padding="valid", stride=(1, 2))])
def test_state_dict_round_trip_both_ways(device, kwargs):
    ours, theirs = twins(device, **kwargs)
    theirs.load_state_dict({k: torch.randn_like(v) for k, v in theirs.state_dict().items()})
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 4, 9, 10, dtype=torch.float64, device=device)
    torch.testing.assert_close(ours(x), theirs(x))
    ours.load_state_dict({k: torch.randn_like(v) for k, v in ours.state_dict().items()})
    theirs.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ours(x), theirs(x))


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
def test_every_padding_mode(device, padding_mode):
    ours, theirs = twins(device, padding=(1, 2), padding_mode=padding_mode)
    x = torch.randn(2, 4, 7, 8, dtype=torch.float64, device=device, requires_grad=True)
    torch.testing.assert_close(ours(x), theirs(x))
    g_ours = torch.autograd.grad(ours(x).sum(), (x, ours.weight))
    g_theirs = torch.autograd.grad(theirs(x).sum(), (x, theirs.weight))
    for a, b in zip(g_ours, g_theirs):
        torch.testing.assert_close(a, b)


def test_unbatched_input(device):
    ours, theirs = twins(device, padding=1)
    x = torch.randn(4, 5, 5, dtype=torch.float64, device=device)
    torch.testing.assert_close(ours(x), theirs(x))


def test_convert_nested_model(device):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Sequential(nn.Conv2d(8, 8, 3, groups=2, padding_mode="reflect", padding=1), nn.BatchNorm2d(8)),
        nn.ModuleDict({"head": nn.Conv2d(8, 4, 1, bias=False)}),
    ).to(device=device, dtype=torch.float64)
    x = torch.randn(2, 3, 10, 10, dtype=torch.float64, device=device)

    def run(m):
        h = m[2](m[1](m[0](x)))
        return m[3]["head"](h)

    model.eval()
    expected = run(model)
    weights = [p for p in model.parameters()]
    converted = convkit.convert(model)
    assert converted is model
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3 and all(isinstance(m, convkit.nn.Conv2d) for m in convs)
    assert all(a is b for a, b in zip(model.parameters(), weights))  # same Parameter objects
    assert all(p.device == x.device and p.dtype == torch.float64 for p in model.parameters())
    torch.testing.assert_close(run(model), expected)
    assert not model.training


def test_convert_single_layer():
    layer = nn.Conv2d(2, 3, 3)
    converted = convkit.convert(layer)
    assert type(converted) is convkit.nn.Conv2d and converted.weight is layer.weight


def test_constructor_errors():
    with pytest.raises(ValueError, match="in_channels must be divisible by groups"):
        convkit.nn.Conv2d(3, 6, 3, groups=2)
    with pytest.raises(ValueError, match="padding_mode"):
        convkit.nn.Conv2d(3, 6, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match="groups must be a positive integer"):
        convkit.nn.Conv2d(3, 6, 3, groups=0)
    with pytest.raises(ValueError, match="padding='same'"):
        convkit.nn.Conv2d(3, 6, 3, padding="same", stride=2)
    with pytest.raises(ValueError, match="Invalid padding string"):
        convkit.nn.Conv2d(3, 6, 3, padding="full")


# The textbook walk-through, with convkit layers --------------------------------

class MySequential(nn.Module):
    def __init__(self, *args):
        super().__init__()
        for idx, module in enumerate(args):
            self._modules[str(idx)] = module

    def forward(self, X):
        for block in self._modules.values():
            X = block(X)
        return X


@pytest.mark.parametrize("container", [nn.Sequential, MySequential])
def test_blocks_parameters_and_initialisation(container):
    net = container(convkit.nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), convkit.nn.Conv2d(4, 2, 3))
    X = torch.rand(2, 1, 8, 8)
    assert net(X).shape == (2, 2, 6, 6)
    state = net._modules["2"].state_dict()
    assert list(state) == ["weight", "bias"] and state["weight"].shape == (2, 4, 3, 3)

    def init_normal(m):
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, mean=0, std=0.01)
            nn.init.zeros_(m.bias)

    def init_constant(m):
        if type(m) is convkit.nn.Conv2d:
            nn.init.constant_(m.weight, 1)

    net.apply(init_normal)
    assert torch.equal(net._modules["0"].bias.data, torch.zeros(4))
    assert net._modules["0"].weight.data.std() < 0.05
    net.apply(init_constant)
    assert torch.equal(net._modules["2"].weight.data, torch.ones(2, 4, 3, 3))


def test_conv2d_layer_learns_edge_kernel():
    torch.manual_seed(0)
    X = torch.ones((6, 8))
    X[:, 2:6] = 0
    K = torch.tensor([[1.0, -1.0]])
    Y = convkit.corr2d(X, K)
    layer = convkit.nn.Conv2D((1, 2))
    assert layer.weight.shape == (1, 2) and torch.equal(layer.bias.data, torch.zeros(1))
    lr = 1e-2  # the scalar bias sees 42 residuals: larger steps diverge
    for _ in range(60):
        loss = ((layer(X) - Y) ** 2).sum()
        layer.zero_grad()
        loss.backward()
        with torch.no_grad():
            layer.weight -= lr * layer.weight.grad
            layer.bias -= lr * layer.bias.grad
    assert loss.item() < 0.1
    torch.testing.assert_close(layer.weight.data, K, atol=0.1, rtol=0)


def test_try_gpu():
    assert convkit.try_gpu() == (torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu"))
    assert convkit.try_gpu(10_000) == torch.device("cpu")
    assert len(convkit.try_all_gpus()) == max(1, torch.cuda.device_count())
