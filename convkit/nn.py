"""Modules: a drop-in nn.Conv2d on convkit's kernels, its fused form with an
activation and average pooling, and the textbook's Conv2D."""
import torch
from torch import nn

from . import functional


class Conv2d(nn.Conv2d):
    """Drop-in replacement for torch.nn.Conv2d: same constructor, parameters,
    initialisation, repr and state_dict; only the arithmetic is convkit's."""

    def _conv_forward(self, input, weight, bias):
        if self.padding_mode != "zeros":
            input = nn.functional.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return functional.conv2d(input, weight, bias, self.stride, 0, self.dilation, self.groups)
        return functional.conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class Conv2dActPool(Conv2d):
    """Conv2d, then an activation ('none', 'relu' or 'sigmoid') and pool x pool
    average pooling with stride pool, the last two in one pass over the
    convolution's output (and one pass back): what Conv2d -> Sigmoid ->
    AvgPool2d computes, in fewer trips through memory. Parameters and
    state_dict are the Conv2d's. convkit.fuse builds these from such runs."""

    def __init__(self, *args, activation="none", pool=1, **kwargs):
        super().__init__(*args, **kwargs)
        if activation not in functional.ACTIVATIONS:
            raise ValueError(f"activation must be one of {functional.ACTIVATIONS}, got {activation!r}")
        self.activation = activation
        self.pool = pool

    def forward(self, input):
        return functional.activation_avg_pool2d(super().forward(input), self.activation, self.pool)

    def extra_repr(self):
        return f"{super().extra_repr()}, activation={self.activation!r}, pool={self.pool}"


class Conv2D(nn.Module):
    """The textbook's learnable 2-D cross-correlation layer: one kernel of
    kernel_size, one scalar bias, forward = corr2d(x, weight) + bias."""

    def __init__(self, kernel_size):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(kernel_size))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return functional.corr2d(x, self.weight) + self.bias


def _converted(conv, cls=Conv2d, **extra):
    """A convkit cls layer sharing conv's parameters (so optimisers keep working)."""
    layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
                padding_mode=conv.padding_mode, device="meta", **extra)
    layer.weight = conv.weight
    layer.bias = conv.bias
    layer.train(conv.training)
    return layer


def convert(module):
    """Replaces every torch nn.Conv2d in a module tree with convkit.nn.Conv2d
    carrying the same parameters, device and dtype. Returns the module (a new
    one when module itself is an nn.Conv2d)."""
    if isinstance(module, nn.Conv2d) and not isinstance(module, Conv2d):
        return _converted(module)
    for name, child in module.named_children():
        setattr(module, name, convert(child))
    return module


_FUSED_ACTIVATIONS = {nn.Sigmoid: "sigmoid", nn.ReLU: "relu"}


def _pool_window(pool):
    """The window of an AvgPool2d that Conv2dActPool can take over (square,
    stride = window, no padding, floor mode, plain mean), else None."""
    if not isinstance(pool, nn.AvgPool2d) or pool.ceil_mode or pool.divisor_override is not None:
        return None
    k, stride, padding = (v if isinstance(v, tuple) else (v, v) for v in (pool.kernel_size, pool.stride, pool.padding))
    if k[0] != k[1] or stride != k or padding != (0, 0):
        return None
    return k[0]


def fuse(module):
    """convert(module), then every run Conv2d -> [Sigmoid | ReLU] -> AvgPool2d
    inside an nn.Sequential becomes one Conv2dActPool; the activation and the
    pooling layer become nn.Identity, so the state_dict keeps its keys.
    Returns the module (see convert)."""
    module = convert(module)
    for name, child in module.named_children():
        setattr(module, name, fuse(child))
    if not isinstance(module, nn.Sequential):
        return module
    layers = list(module)
    for i, conv in enumerate(layers):
        if type(conv) is not Conv2d:
            continue
        act = type(layers[i + 1]) if i + 1 < len(layers) else None
        at = i + 2 if act in _FUSED_ACTIVATIONS else i + 1
        window = _pool_window(layers[at]) if at < len(layers) else None
        if window is None:
            continue
        module[i] = _converted(conv, Conv2dActPool, activation=_FUSED_ACTIVATIONS.get(act, "none"), pool=window)
        for j in range(i + 1, at + 1):
            module[j] = nn.Identity()
    return module
