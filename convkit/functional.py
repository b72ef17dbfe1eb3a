"""The functional API: torch.nn.functional.conv2d's signature on convkit's kernels."""
import torch

from . import _args
from ._autograd import direct_route
from ._ops import extension

ops = torch.ops.convkit


def _check_tensor(value, name, like):
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise RuntimeError(f"convkit: expected a floating-point {name}, got {value.dtype}")
    if like is not None:
        if value.device != like.device:
            raise RuntimeError(f"Expected all tensors to be on the same device, but {name} is on {value.device} "
                               f"and input is on {like.device}")
        if value.dtype != like.dtype:
            raise RuntimeError(f"Input type ({like.dtype}) and {name} type ({value.dtype}) should be the same")


def corr2d(X, K):
    """The textbook 2-D cross-correlation of a 2-D input X with a 2-D kernel K:
    Y[i, j] = (X[i:i+h, j:j+w] * K).sum(), output (H-h+1, W-w+1)."""
    if type(X) is torch.Tensor and type(K) is torch.Tensor and not torch.compiler.is_compiling():
        # Plain tensors: the op from C++ (the boxed Python call costs more than a small correlation).
        return extension.corr2d(X, K)
    _check_tensor(X, "X", None)
    _check_tensor(K, "K", X)
    return ops.corr2d(X, K)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Same signature and semantics as torch.nn.functional.conv2d."""
    input, stride, padding, dilation, unbatched = _args.normalize(input, weight, stride, padding, dilation)
    _check_tensor(input, "input", None)
    _check_tensor(weight, "weight", input)
    if bias is not None:
        _check_tensor(bias, "bias", input)
    if isinstance(groups, bool) or not isinstance(groups, int):
        raise TypeError(f"groups must be an int, got {groups!r}")
    if direct_route(input, weight, bias):
        output = extension.conv2d(input, weight, bias, stride, padding, dilation, groups)
    else:
        output = ops.conv2d(input, weight, bias, stride, padding, dilation, groups)
    return output.squeeze(0) if unbatched else output


ACTIVATIONS = ("none", "relu", "sigmoid")


def activation_avg_pool2d(z, activation, window):
    """avg_pool2d(act(z), window) (stride window, floor mode, no padding) in one
    pass over z, act one of 'none', 'relu', 'sigmoid'; 3-D (unbatched) or 4-D z."""
    _check_tensor(z, "input", None)
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if isinstance(window, bool) or not isinstance(window, int):
        raise TypeError(f"window must be an int, got {window!r}")
    if z.dim() == 3:
        return ops.activation_avg_pool2d(z.unsqueeze(0), activation, window)[0].squeeze(0)
    return ops.activation_avg_pool2d(z, activation, window)[0]
