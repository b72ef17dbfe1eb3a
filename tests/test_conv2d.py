"""conv2d forward and gradients against F.conv2d and the naive loop."""
import threading
import time

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

import convkit
from convkit import reference
from conftest import DEVICES, SeenOps, assert_same_format, tolerance

LAYOUTS = ["contiguous", "channels_last", "transposed", "sliced"]


def in_layout(t, layout):
    """The same values as t in another memory layout."""
    if layout == "channels_last":
        return t.contiguous(memory_format=torch.channels_last)
    if layout == "transposed":
        return t.transpose(2, 3).contiguous().transpose(2, 3)
    if layout == "sliced":
        big = torch.zeros(t.shape[0], t.shape[1] + 1, t.shape[2] + 2, t.shape[3] * 2, dtype=t.dtype, device=t.device)
        view = big[:, 1:, 2:, ::2]
        view.copy_(t)
        return view
    return t.contiguous()


@st.composite
def conv_configs(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    depthwise = draw(st.booleans()) and groups > 1
    c_per_group = 1 if depthwise else draw(st.integers(1, 4))
    k_per_group = draw(st.integers(1, 4))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.sampled_from(["int", "pair", "same", "valid"]))
    if padding == "same" and stride != (1, 1):
        padding = "valid"
    pad = {"int": draw(st.integers(0, 2)), "pair": (draw(st.integers(0, 2)), draw(st.integers(0, 2))),
           "same": "same", "valid": "valid"}[padding]
    pad_pair = (0, 0) if isinstance(pad, str) else (pad, pad) if isinstance(pad, int) else pad
    size = [max(1, d * (k - 1) + 1 - 2 * p) + draw(st.integers(0, 6)) for d, k, p in zip(dilation, kernel, pad_pair)]
    return dict(n=draw(st.sampled_from([0, 1, 2, 3])), c=c_per_group * groups, k=k_per_group * groups, h=size[0],
                w=size[1], kernel=kernel, stride=stride, padding=pad, dilation=dilation, groups=groups,
                bias=draw(st.booleans()), layout=draw(st.sampled_from(LAYOUTS)), unbatched=draw(st.booleans()))


def make_operands(cfg, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(cfg["n"], cfg["c"], cfg["h"], cfg["w"], generator=g, dtype=dtype).to(device)
    w = torch.randn(cfg["k"], cfg["c"] // cfg["groups"], *cfg["kernel"], generator=g, dtype=dtype).to(device)
    b = torch.randn(cfg["k"], generator=g, dtype=dtype).to(device) if cfg["bias"] else None
    x = in_layout(x, cfg["layout"])
    if cfg["unbatched"]:
        x = x[0] if cfg["n"] > 0 else x.new_zeros(0)  # an empty batch has no unbatched form
    return x, w, b


def hyper(cfg):
    return dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"], groups=cfg["groups"])


def check_against_torch(cfg, dtype, device):
    x, w, b = make_operands(cfg, dtype, device)
    if x.numel() == 0 and x.dim() == 1:
        return
    leaves = [t.requires_grad_() for t in (x, w, b) if t is not None]
    y = convkit.conv2d(x, w, b, **hyper(cfg))
    y_ref = F.conv2d(x, w, b, **hyper(cfg))
    torch.testing.assert_close(y, y_ref, **tolerance(dtype))
    assert_same_format(y, y_ref)
    grad = torch.randn_like(y_ref)
    ours = torch.autograd.grad(y, leaves, grad, allow_unused=True)
    theirs = torch.autograd.grad(y_ref, leaves, grad, allow_unused=True)
    for a, e in zip(ours, theirs):
        torch.testing.assert_close(a, e, **tolerance(dtype))


@pytest.mark.parametrize("device_name", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@given(cfg=conv_configs())
def test_forward_and_gradients_match_torch(device_name, dtype, cfg):
    check_against_torch(cfg, dtype, torch.device(device_name))


@pytest.mark.parametrize("seed", range(6))
def test_matches_naive_loop(device, seed):
    g = torch.Generator().manual_seed(seed)
    groups = [1, 2, 3][seed % 3]
    x = torch.randn(2, 2 * groups, 7 + seed, 6, generator=g, dtype=torch.float64).to(device)
    w = torch.randn(groups * 2, 2, 3, 2, generator=g, dtype=torch.float64).to(device)
    b = torch.randn(groups * 2, generator=g, dtype=torch.float64).to(device)
    args = dict(stride=(1 + seed % 2, 1), padding=(seed % 3, 1), dilation=(1, 1 + seed % 2), groups=groups)
    torch.testing.assert_close(convkit.conv2d(x, w, b, **args), reference.conv2d(x, w, b, **args))


def test_reference_loop_matches_torch():
    """The ground truth itself is checked once against torch."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 8, 7, generator=g, dtype=torch.float64)
    w = torch.randn(6, 2, 3, 2, generator=g, dtype=torch.float64)
    for padding in ("same", 1, (0, 2)):
        torch.testing.assert_close(reference.conv2d(x, w, None, 1, padding, (2, 1), 2),
                                   F.conv2d(x, w, None, 1, padding, (2, 1), 2))


@pytest.mark.parametrize("kernel", [(2, 2), (4, 3), (3, 3)])
def test_same_padding_even_kernels(device, kernel):
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64, device=device)
    w = torch.randn(4, 3, *kernel, dtype=torch.float64, device=device)
    for dilation in (1, 2):
        y = convkit.conv2d(x, w, padding="same", dilation=dilation)
        assert y.shape[2:] == x.shape[2:]
        torch.testing.assert_close(y, F.conv2d(x, w, padding="same", dilation=dilation))


def test_gradcheck(device):
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64, device=device, requires_grad=True)
    w = torch.randn(6, 2, 3, 2, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, device=device, requires_grad=True)
    for args in [dict(groups=2), dict(stride=2, padding=1, groups=2), dict(padding="same", dilation=2, groups=2)]:
        assert torch.autograd.gradcheck(lambda *t: convkit.conv2d(*t, **args), (x, w, b))
        assert torch.autograd.gradgradcheck(lambda *t: convkit.conv2d(*t, **args), (x, w, b))


def test_conv2d_function(device):
    x = torch.randn(2, 4, 7, 6, dtype=torch.float64, device=device, requires_grad=True)
    w = torch.randn(6, 2, 3, 3, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, device=device, requires_grad=True)
    y = convkit.Conv2dFunction.apply(x, w, b, 2, (1, 0), 1, 2)
    torch.testing.assert_close(y, F.conv2d(x, w, b, 2, (1, 0), 1, 2))
    assert torch.autograd.gradcheck(lambda *t: convkit.Conv2dFunction.apply(*t, (1, 2), 1, (2, 1), 2), (x, w, b))
    w_full = torch.randn(3, 4, 2, 2, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: convkit.Conv2dFunction.apply(*t, None, 1, 0, 1, 1), (x, w_full))


def test_eager_route_matches_the_op_and_stays_visible(device):
    # In eager mode convkit.conv2d records its graph with its own autograd
    # Function instead of the op's autograd layer: same values and gradients
    # as the op called directly, and dispatch modes and the profiler still see
    # the op.
    x = torch.randn(2, 4, 7, 6, dtype=torch.float64, device=device, requires_grad=True)
    w = torch.randn(6, 2, 3, 3, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, device=device, requires_grad=True)
    go = torch.randn(2, 6, 4, 6, dtype=torch.float64, device=device)
    hyper = ([2, 1], [1, 2], [1, 2], 2)
    y = convkit.conv2d(x, w, b, *hyper)
    y_op = torch.ops.convkit.conv2d(x, w, b, *hyper)
    assert type(y.grad_fn) is not type(y_op.grad_fn)
    torch.testing.assert_close(y, y_op)
    with BackwardMasks() as recorder:
        grads = torch.autograd.grad(y, (x, w, b), go)
    assert recorder.masks == [[True, True, True]]
    torch.testing.assert_close(grads, torch.autograd.grad(y_op, (x, w, b), go))
    with torch.autograd.profiler.profile() as prof:
        convkit.conv2d(x, w, b, *hyper).backward(go)
    assert {"convkit::conv2d", "convkit::conv2d_backward"} <= {event.name for event in prof.function_events}
    # Calls without a graph go straight to the op's direct entry; a dispatch
    # mode still sees the op.
    with torch.no_grad(), SeenOps() as seen:
        y_plain = convkit.conv2d(x, w, b, *hyper)
    assert seen.ops == [torch.ops.convkit.conv2d.default] and y_plain.grad_fn is None
    torch.testing.assert_close(y_plain, y_op.detach())


def test_direct_entries_release_the_gil():
    # Another Python thread runs while a layer's kernels do (as with torch's own ops).
    x, w = torch.randn(8, 64, 56, 56), torch.randn(64, 64, 3, 3)
    done, ticks = threading.Event(), [0]

    def count():
        while not done.is_set():
            ticks[0] += 1

    counter = threading.Thread(target=count)
    counter.start()
    try:
        time.sleep(0.01)
        before = ticks[0]
        convkit.conv2d(x, w, padding=1)
        during = ticks[0] - before
    finally:
        done.set()
        counter.join()
    assert during > 1000


def test_tensor_subclasses_see_the_op():
    # Tensors with __torch_function__ overrides take the op's boxed call, which honours them.
    class Logged(torch.Tensor):
        calls = []

        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            cls.calls.append(func)
            return super().__torch_function__(func, types, args, kwargs or {})

    x = torch.randn(1, 2, 5, 5, dtype=torch.float64).as_subclass(Logged)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    y = convkit.conv2d(x, w)
    assert torch.ops.convkit.conv2d.default in Logged.calls or torch.ops.convkit.conv2d in Logged.calls
    torch.testing.assert_close(y.as_subclass(torch.Tensor), F.conv2d(x.as_subclass(torch.Tensor), w))


class BackwardMasks(TorchDispatchMode):
    """Records the output_mask of every convkit::conv2d_backward call."""

    def __init__(self):
        super().__init__()
        self.masks = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.convkit.conv2d_backward.default:
            self.masks.append(list(args[7]))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("use_function", [False, True])
@pytest.mark.parametrize("needs", [(False, True, True), (True, False, False), (False, False, True),
                                   (True, True, None), (False, True, None)])
def test_backward_computes_only_requested_gradients(use_function, needs):
    # needs[2] None: no bias (the graph then has no edge for it).
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=needs[0])
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=needs[1])
    b = None if needs[2] is None else torch.randn(4, dtype=torch.float64, requires_grad=needs[2])
    with BackwardMasks() as recorder:
        if use_function:
            y = convkit.Conv2dFunction.apply(x, w, b, 1, 1, 1, 1)
        else:
            y = convkit.conv2d(x, w, b, padding=1)
        y.sum().backward()
    assert recorder.masks == [[bool(n) for n in needs]]
    for t, wanted in zip((x, w), needs):
        assert (t.grad is not None) == wanted
    if b is not None:
        assert (b.grad is not None) == needs[2]
    for t in [t for t in (x, w) if t.requires_grad]:
        torch.testing.assert_close(t.grad, torch.autograd.grad(F.conv2d(x, w, b, padding=1).sum(), t)[0])


def test_batch_zero_and_unbatched(device):
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, device=device, requires_grad=True)
    x0 = torch.randn(0, 3, 8, 8, dtype=torch.float64, device=device, requires_grad=True)
    y0 = convkit.conv2d(x0, w, padding=1)
    assert y0.shape == (0, 4, 8, 8)
    y0.sum().backward()
    assert torch.equal(w.grad, torch.zeros_like(w))
    x = torch.randn(3, 8, 8, dtype=torch.float64, device=device)
    torch.testing.assert_close(convkit.conv2d(x, w), F.conv2d(x, w))
