"""The functional API: torch.nn.functional.conv2d's signature on convkit's kernels."""
import torch

from . import _args

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


def _plain_call(a, b):
    """Whether an op call on tensors a and b of one device needs no autograd
    graph and runs under no tracer, transform or tensor subclass: then the
    op's Python autograd kernel (a pass-through for such calls, but most of a
    small call's time) can be skipped, and the kernel's own checks cover the rest."""
    return (type(a) is torch.Tensor and type(b) is torch.Tensor
            and (not torch.is_grad_enabled() or not (a.requires_grad or b.requires_grad))
            and a.device == b.device
            and not torch.compiler.is_compiling()
            and not torch._C._are_functorch_transforms_active())


_CPU = torch._C.DispatchKeySet(torch._C.DispatchKey.CPU)


def _straight_to_cpu(a):
    """Whether a plain call may go straight to the CPU kernel, past the
    dispatcher's other layers: nothing (a dispatch mode, the profiler) watches them."""
    return a.is_cpu and not torch._C._len_torch_dispatch_stack() and not torch._C._autograd._profiler_enabled()


def corr2d(X, K):
    """The textbook 2-D cross-correlation of a 2-D input X with a 2-D kernel K:
    Y[i, j] = (X[i:i+h, j:j+w] * K).sum(), output (H-h+1, W-w+1)."""
    if _plain_call(X, K):
        if _straight_to_cpu(X):
            return ops.corr2d.default.redispatch(_CPU, X, K)
        with torch._C._AutoDispatchBelowAutograd():
            return ops.corr2d(X, K)
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
    output = ops.conv2d(input, weight, bias, stride, padding, dilation, groups)
    return output.squeeze(0) if unbatched else output
