"""Modules: a drop-in nn.Conv2d on convkit's kernels, and the textbook's Conv2D."""
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


class Conv2D(nn.Module):
    """The textbook's learnable 2-D cross-correlation layer: one kernel of
    kernel_size, one scalar bias, forward = corr2d(x, weight) + bias."""

    def __init__(self, kernel_size):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(kernel_size))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return functional.corr2d(x, self.weight) + self.bias


def _converted(conv):
    """A convkit Conv2d sharing conv's parameters (so optimisers keep working)."""
    layer = Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                   dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
                   padding_mode=conv.padding_mode, device="meta")
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
