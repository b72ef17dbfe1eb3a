"""Fake (meta) kernels: output shapes, dtypes and layouts without computing,
so torch.compile and torch.library.opcheck can trace the ops."""
import torch
from torch._prims_common import suggest_memory_format


def _output_memory_format(input, weight):
    channels_last = torch.channels_last in (suggest_memory_format(input), suggest_memory_format(weight))
    return torch.channels_last if channels_last else torch.contiguous_format


def _output_size(size, kernel, stride, padding, dilation):
    extent = dilation * (kernel - 1) + 1
    torch._check(size + 2 * padding >= extent, lambda: "Kernel size can't be greater than actual input size")
    return (size + 2 * padding - extent) // stride + 1


@torch.library.register_fake("convkit::corr2d")
def _corr2d_fake(x, k):
    torch._check(x.dim() == 2 and k.dim() == 2, lambda: "convkit::corr2d expects 2-D X and K")
    return x.new_empty((x.shape[0] - k.shape[0] + 1, x.shape[1] - k.shape[1] + 1))


@torch.library.register_fake("convkit::conv2d")
def _conv2d_fake(input, weight, bias, stride, padding, dilation, groups):
    torch._check(input.dim() == 4 and weight.dim() == 4, lambda: "convkit::conv2d expects 4-D input and weight")
    torch._check(input.shape[1] == weight.shape[1] * groups, lambda: "convkit::conv2d: channel mismatch")
    out_h = _output_size(input.shape[2], weight.shape[2], stride[0], padding[0], dilation[0])
    out_w = _output_size(input.shape[3], weight.shape[3], stride[1], padding[1], dilation[1])
    return input.new_empty((input.shape[0], weight.shape[0], out_h, out_w)).contiguous(
        memory_format=_output_memory_format(input, weight))


@torch.library.register_fake("convkit::conv2d_backward")
def _conv2d_backward_fake(grad_output, input, weight, stride, padding, dilation, groups, output_mask):
    def gradient(wanted, size, like=None):
        if not wanted:
            return grad_output.new_empty((0,))
        empty = grad_output.new_empty(size)
        return empty if like is None else empty.contiguous(memory_format=suggest_memory_format(like))

    return (gradient(output_mask[0], input.shape, input),
            gradient(output_mask[1], weight.shape, weight),
            gradient(output_mask[2], (weight.shape[0],)))


def _check_pool(z, window):
    torch._check(z.dim() == 4, lambda: "convkit::activation_avg_pool2d expects a 4-D input")
    torch._check(0 < window <= min(z.shape[2], z.shape[3]), lambda: "Output size is too small")


@torch.library.register_fake("convkit::activation_avg_pool2d")
def _activation_avg_pool2d_fake(z, activation, window):
    _check_pool(z, window)
    return z.new_empty((z.shape[0], z.shape[1], z.shape[2] // window, z.shape[3] // window)), z.new_empty(z.shape)


@torch.library.register_fake("convkit::activation_avg_pool2d_backward")
def _activation_avg_pool2d_backward_fake(grad_pooled, activated, activation, window):
    _check_pool(activated, window)
    return activated.new_empty(activated.shape)
