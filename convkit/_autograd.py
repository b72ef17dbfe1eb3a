"""Autograd for the convkit ops, attached with torch.library.register_autograd.

The backward of conv2d is convkit::conv2d_backward, and that op's own backward
is written with conv2d and conv2d_backward again, so gradients of any order
(gradgradcheck, double backward) run on convkit's kernels.
"""
import torch

from ._args import pair
from ._ops import extension

ops = torch.ops.convkit


def _wanted(grad):
    return grad is not None and grad.numel() > 0


# conv2d ---------------------------------------------------------------------

def direct_route(*tensors):
    """True where conv2d and its backward may call convkit._C's direct entries
    instead of the boxed op: unboxed, below the autograd layer when no graph is
    recorded, and for convkit.conv2d with its graph recorded by a C++ node
    (as torch records nn.Conv2d's) rather than the op's Python autograd layer.
    That is in eager mode (compiled graphs trace the op) and for tensors
    without __torch_function__ overrides (those see the op)."""
    return not torch.compiler.is_compiling() and not torch._C._has_torch_function(tensors)


def _conv2d_setup_context(ctx, inputs, output):
    input, weight, bias, stride, padding, dilation, groups = inputs
    ctx.save_for_backward(input, weight)
    ctx.hyper = (stride, padding, dilation, groups)
    ctx.has_bias = bias is not None


def _below_autograd(op, *args):
    """op(*args), past op's own autograd layer when no graph is being recorded
    (a first-order backward): the layer would only pass the call on, after
    Python work that costs more than a small layer's kernels. Dispatch modes,
    the profiler and tracing still see the call."""
    if torch.is_grad_enabled():
        return op(*args)
    with torch._C._AutoDispatchBelowAutograd():
        return op(*args)


def _conv2d_backward(ctx, grad_output):
    input, weight = ctx.saved_tensors
    mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
    if direct_route(grad_output, input, weight):
        grad_input, grad_weight, grad_bias = extension.conv2d_backward(grad_output, input, weight, *ctx.hyper, mask)
    else:
        grad_input, grad_weight, grad_bias = _below_autograd(ops.conv2d_backward, grad_output, input, weight,
                                                             *ctx.hyper, mask)
    return (grad_input if mask[0] else None, grad_weight if mask[1] else None, grad_bias if mask[2] else None,
            None, None, None, None)


torch.library.register_autograd("convkit::conv2d", _conv2d_backward, setup_context=_conv2d_setup_context)


# conv2d_backward: gi = conv_transpose(go, w), gw = corr(x, go), gb = sum(go) ---

def _conv2d_backward_setup_context(ctx, inputs, output):
    grad_output, input, weight, stride, padding, dilation, groups, output_mask = inputs
    ctx.save_for_backward(grad_output, input, weight)
    ctx.hyper = (stride, padding, dilation, groups)
    ctx.output_mask = output_mask


def _conv2d_backward_backward(ctx, grad_grad_input, grad_grad_weight, grad_grad_bias):
    grad_output, input, weight = ctx.saved_tensors
    stride, padding, dilation, groups = ctx.hyper
    need_grad_output, need_input, need_weight = ctx.needs_input_grad[:3]
    ggi = grad_grad_input if ctx.output_mask[0] and _wanted(grad_grad_input) else None
    ggw = grad_grad_weight if ctx.output_mask[1] and _wanted(grad_grad_weight) else None
    ggb = grad_grad_bias if ctx.output_mask[2] and _wanted(grad_grad_bias) else None

    d_grad_output = d_input = d_weight = None
    if need_grad_output:
        d_grad_output = torch.zeros_like(grad_output)
        if ggi is not None:
            d_grad_output = d_grad_output + ops.conv2d(ggi, weight, None, stride, padding, dilation, groups)
        if ggw is not None:
            d_grad_output = d_grad_output + ops.conv2d(input, ggw, None, stride, padding, dilation, groups)
        if ggb is not None:
            d_grad_output = d_grad_output + ggb.view(1, -1, 1, 1)
    if need_input and ggw is not None:
        d_input = ops.conv2d_backward(grad_output, input, ggw, stride, padding, dilation, groups,
                                      [True, False, False])[0]
    if need_weight and ggi is not None:
        d_weight = ops.conv2d_backward(grad_output, ggi, weight, stride, padding, dilation, groups,
                                       [False, True, False])[1]
    return d_grad_output, d_input, d_weight, None, None, None, None, None


torch.library.register_autograd("convkit::conv2d_backward", _conv2d_backward_backward,
                                setup_context=_conv2d_backward_setup_context)


# activation_avg_pool2d: a fused layer's epilogue -------------------------------

def _slope(activated, activation):
    """The activation's derivative, written with its output."""
    if activation == "sigmoid":
        return activated * (1 - activated)
    if activation == "relu":
        return (activated > 0).to(activated.dtype)
    return torch.ones_like(activated)


def _activation_pool_setup_context(ctx, inputs, output):
    z, activation, window = inputs
    ctx.save_for_backward(output[1])
    ctx.hyper = (activation, window)
    ctx.set_materialize_grads(False)  # `activated` is rarely used: no zero gradient for it


def _activation_pool_backward(ctx, grad_pooled, grad_activated):
    (activated,) = ctx.saved_tensors
    grad_z = None
    if grad_pooled is not None:
        grad_z = _below_autograd(ops.activation_avg_pool2d_backward, grad_pooled, activated, *ctx.hyper)
    if grad_activated is not None:
        term = grad_activated * _slope(activated, ctx.hyper[0])
        grad_z = term if grad_z is None else grad_z + term
    return grad_z, None, None


torch.library.register_autograd("convkit::activation_avg_pool2d", _activation_pool_backward,
                                setup_context=_activation_pool_setup_context)


# Its backward is grad_z = spread(grad_pooled) * slope(activated), spread being
# the pooling's adjoint (the "none" activation's backward).

def _activation_pool_backward_setup_context(ctx, inputs, output):
    grad_pooled, activated, activation, window = inputs
    ctx.save_for_backward(grad_pooled, activated)
    ctx.hyper = (activation, window)


def _activation_pool_backward_backward(ctx, grad_grad_z):
    grad_pooled, activated = ctx.saved_tensors
    activation, window = ctx.hyper
    d_grad_pooled = d_activated = None
    if ctx.needs_input_grad[0]:
        d_grad_pooled = torch.nn.functional.avg_pool2d(grad_grad_z * _slope(activated, activation), window)
    if ctx.needs_input_grad[1] and activation == "sigmoid":  # the other slopes are constant where defined
        spread = ops.activation_avg_pool2d_backward(grad_pooled, activated, "none", window)
        d_activated = grad_grad_z * spread * (1 - 2 * activated)
    return d_grad_pooled, d_activated, None, None


torch.library.register_autograd("convkit::activation_avg_pool2d_backward", _activation_pool_backward_backward,
                                setup_context=_activation_pool_backward_setup_context)


# corr2d: the single-channel case of conv2d -----------------------------------

def _corr2d_setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _corr2d_backward(ctx, grad_output):
    x, k = ctx.saved_tensors
    mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], False]
    grad_x, grad_k, _ = ops.conv2d_backward(grad_output[None, None], x[None, None], k[None, None],
                                            [1, 1], [0, 0], [1, 1], 1, mask)
    return (grad_x[0, 0] if mask[0] else None, grad_k[0, 0] if mask[1] else None)


torch.library.register_autograd("convkit::corr2d", _corr2d_backward, setup_context=_corr2d_setup_context)


class Conv2dFunction(torch.autograd.Function):
    """conv2d as an explicit autograd Function:
    Conv2dFunction.apply(input, weight, bias, stride, padding, dilation, groups)
    with 4-D input, int-or-pair hyper-parameters and numeric padding. Its
    backward runs convkit::conv2d_backward for the inputs that need gradients."""

    @staticmethod
    def forward(input, weight, bias, stride, padding, dilation, groups):
        return ops.conv2d(input, weight, bias, pair(stride, "stride"), pair(padding, "padding"),
                          pair(dilation, "dilation"), groups)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, weight, bias, stride, padding, dilation, groups = inputs
        ctx.save_for_backward(input, weight)
        ctx.hyper = (pair(stride, "stride"), pair(padding, "padding"), pair(dilation, "dilation"), groups)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, grad_output):
        return _conv2d_backward(ctx, grad_output)
