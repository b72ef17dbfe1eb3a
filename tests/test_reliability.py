"""Reliability: double backward, NaN/Inf propagation, thread safety,
determinism, and inputs beyond 2**31 - 1 elements."""
import threading

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

import convkit

ops = torch.ops.convkit
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]

# (input shape, weight shape, stride, padding, dilation, groups, bias)
CONFIGS = [
    ((2, 3, 5, 6), (4, 3, 3, 2), 1, 0, 1, 1, True),
    ((1, 4, 7, 6), (4, 2, 3, 3), 2, 1, 1, 2, False),
    ((2, 2, 7, 7), (2, 1, 2, 3), (1, 2), (2, 1), (2, 1), 2, True),
    ((1, 3, 6, 5), (3, 1, 3, 3), 1, "same", 2, 3, True),  # depthwise
    ((3, 5, 5), (2, 3, 2, 2), 2, 0, 1, 1, True),  # unbatched input: (3, 5, 5) is C, H, W
    ((1, 32, 4, 5), (32, 32, 3, 3), 1, 1, 1, 1, True),  # 3x3 stride 1 with channels: Winograd on the CPU
    ((64, 3, 6, 5), (8, 3, 3, 3), 1, 1, 1, 1, True),  # 64 images, few channels: batch lanes on the CPU
]
CONFIG_IDS = ["plain", "stride-pad-groups", "pairs", "depthwise-same", "unbatched", "winograd", "batch-lanes"]
# The gradient checks: the first three and the batch lanes.
GRAD_CONFIGS, GRAD_IDS = CONFIGS[:3] + CONFIGS[-1:], CONFIG_IDS[:3] + CONFIG_IDS[-1:]


def random_operands(config, dtype=torch.float64, device="cpu", seed=0, requires_grad=False):
    x_shape, w_shape, stride, padding, dilation, groups, bias = config
    if len(x_shape) == 3:
        w_shape = (w_shape[0], x_shape[0] // groups) + w_shape[2:]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(x_shape, generator=g, dtype=dtype).to(device).requires_grad_(requires_grad)
    w = torch.randn(w_shape, generator=g, dtype=dtype).to(device).requires_grad_(requires_grad)
    b = torch.randn(w_shape[0], generator=g, dtype=dtype).to(device).requires_grad_(requires_grad) if bias else None
    return x, w, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


# Double backward -------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_gradcheck_and_gradgradcheck(device, config, monkeypatch):
    monkeypatch.setenv("CONVKIT_WINOGRAD", "1")  # the CPU's Winograd path wherever it applies, however small
    x, w, b, hyper = random_operands(config, device=device, requires_grad=True)
    inputs = (x, w) if b is None else (x, w, b)

    def f(*args):
        return convkit.conv2d(*args, **hyper)

    # Thousands of weights (the Winograd config): check random directions
    # (fast mode) rather than every column of the Jacobian.
    fast = sum(t.numel() for t in inputs) > 2000
    assert gradcheck(f, inputs, fast_mode=fast)
    assert gradgradcheck(f, inputs, fast_mode=fast)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
def test_gradgradcheck_nn_conv2d(device, padding_mode):
    layer = convkit.nn.Conv2d(4, 4, 3, stride=2, padding=1, dilation=1, groups=2, padding_mode=padding_mode,
                              dtype=torch.float64, device=device)
    x = torch.randn(1, 4, 5, 4, dtype=torch.float64, device=device, requires_grad=True)
    params = {"weight": layer.weight.detach().requires_grad_(), "bias": layer.bias.detach().requires_grad_()}

    def f(x, weight, bias):
        return torch.func.functional_call(layer, {"weight": weight, "bias": bias}, (x,))

    # torch's reflection-pad backward on CUDA sums with atomics: allow its last-bit jitter
    nondet_tol = 1e-12 if x.is_cuda else 0.0
    assert gradgradcheck(f, (x, params["weight"], params["bias"]), fast_mode=True, nondet_tol=nondet_tol)


@pytest.mark.parametrize("device", DEVICES)
def test_gradgradcheck_corr2d(device):
    x = torch.randn(6, 5, dtype=torch.float64, device=device, requires_grad=True)
    k = torch.randn(2, 3, dtype=torch.float64, device=device, requires_grad=True)
    assert gradcheck(convkit.corr2d, (x, k))
    assert gradgradcheck(convkit.corr2d, (x, k))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_gradient_penalty_matches_torch(device, config):
    """A second-order training objective (a gradient penalty, as in WGAN-GP):
    the gradients of |d out / d x|^2 with respect to x, w and b."""
    results = []
    for conv in (convkit.conv2d, F.conv2d):
        x, w, b, hyper = random_operands(config, device=device, seed=1, requires_grad=True)
        out = conv(x, w, b, **hyper)
        (grad_x,) = torch.autograd.grad((out * out.detach().cos()).sum(), x, create_graph=True)
        leaves = [t for t in (x, w, b) if t is not None]
        results.append(torch.autograd.grad(grad_x.pow(2).sum(), leaves, allow_unused=True))
    for ours, theirs in zip(*results):
        if theirs is None:
            assert ours is None or not ours.any()
        else:
            torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)


# NaN and Inf ---------------------------------------------------------------------------

def assert_same_specials(actual, expected):
    """Identical NaN, +Inf and -Inf positions; finite values close."""
    assert actual.shape == expected.shape
    for name, mask in (("NaN", torch.isnan), ("+Inf", torch.isposinf), ("-Inf", torch.isneginf)):
        ours, theirs = mask(actual), mask(expected)
        assert torch.equal(ours, theirs), (f"{name} positions differ: convkit has {int(ours.sum())}, torch "
                                           f"{int(theirs.sum())}, {int((ours != theirs).sum())} disagree")
    torch.testing.assert_close(actual, expected, equal_nan=True, rtol=1e-9, atol=1e-9)


def sprinkle(t, seed, fraction=0.05):
    """Replaces a few entries of t by NaN, +Inf or -Inf."""
    g = torch.Generator().manual_seed(seed)
    t = t.detach().clone()
    flat = t.view(-1)
    picks = torch.rand(flat.shape, generator=g) < fraction
    kinds = torch.randint(0, 3, flat.shape, generator=g)
    values = torch.tensor([float("nan"), float("inf"), float("-inf")], dtype=t.dtype)
    flat[picks.to(t.device)] = values[kinds[picks]].to(t.device)
    return t


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("where", ["input", "weight", "bias", "all"])
def test_nan_and_inf_propagate_like_torch(device, config, where):
    x, w, b, hyper = random_operands(config, device=device, seed=2)
    if where in ("input", "all"):
        x = sprinkle(x, 3)
    if where in ("weight", "all"):
        w = sprinkle(w, 4, fraction=0.02)
    if where in ("bias", "all") and b is not None:
        b = sprinkle(b, 5, fraction=0.3)
    # The reference is torch on the CPU, which forms every padding product:
    # on CUDA torch drops some 0 * Inf products, depending on cuDNN's algorithm.
    expected = F.conv2d(x.cpu(), w.cpu(), None if b is None else b.cpu(), **hyper)
    assert_same_specials(convkit.conv2d(x, w, b, **hyper).cpu(), expected)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("config", GRAD_CONFIGS, ids=GRAD_IDS)
def test_nan_and_inf_propagate_through_gradients(device, config):
    x, w, b, hyper = random_operands(config, device=device, seed=6)
    x, w = sprinkle(x, 7, fraction=0.02), sprinkle(w, 8, fraction=0.02)
    results = []
    # torch's reference runs on the CPU (see test_nan_and_inf_propagate_like_torch)
    for conv, where in ((convkit.conv2d, device), (F.conv2d, "cpu")):
        leaves = [t.detach().to(where).requires_grad_() for t in (x, w, b) if t is not None]
        out = conv(*leaves[:2], leaves[2] if b is not None else None, **hyper)
        grad_output = sprinkle(torch.ones_like(out), 9, fraction=0.02)
        results.append(torch.autograd.grad(out, leaves, grad_output))
    for ours, theirs in zip(*results):
        assert_same_specials(ours.cpu(), theirs)


@pytest.mark.parametrize("device", DEVICES)
def test_zeros_times_inf_is_nan(device):
    """0 * Inf must reach the sum: no shortcut may skip zero inputs, zero
    weights or the zero padding."""
    opts = dict(dtype=torch.float32, device=device)
    x = torch.zeros(1, 1, 4, 4, **opts)
    x[0, 0, 1, 2] = float("inf")
    w = torch.zeros(1, 1, 2, 2, **opts)
    assert_same_specials(convkit.conv2d(x, w), F.conv2d(x, w))
    assert convkit.conv2d(x, w).isnan().sum() == 4
    w_inf = torch.full((1, 1, 3, 3), float("inf"), **opts)
    zeros = torch.zeros(1, 1, 3, 3, **opts)
    assert convkit.conv2d(zeros, w_inf, padding=1).isnan().all()  # the padded border counts as zeros too
    assert_same_specials(convkit.conv2d(zeros, w_inf, padding=1), F.conv2d(zeros, w_inf, padding=1))


# Threads -------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_one_layer_from_eight_threads_matches_serial_calls(device):
    torch.manual_seed(0)
    layer = convkit.nn.Conv2d(4, 6, 3, padding=1, groups=2, device=device)
    inputs = [torch.randn(2, 4, 24, 20, device=device, requires_grad=True) for _ in range(8)]

    def run(x):
        out = layer(x)
        grads = torch.autograd.grad(out, (x, layer.weight, layer.bias), out.detach().sin())
        return (out.detach(),) + grads

    serial = [run(x) for x in inputs]
    for _ in range(3):
        results, errors = [None] * len(inputs), []
        barrier = threading.Barrier(len(inputs))

        def worker(i):
            try:
                barrier.wait()
                results[i] = run(inputs[i])
            except Exception as error:  # reported below, not lost in the thread
                errors.append(error)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(inputs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        for i, (expected, got) in enumerate(zip(serial, results)):
            for name, a, b in zip(("output", "grad input", "grad weight", "grad bias"), got, expected):
                assert torch.equal(a, b), f"thread {i}: {name} differs from the serial call"


# Determinism ----------------------------------------------------------------------------

DETERMINISM_CONFIGS = [
    ((4, 8, 32, 32), (16, 8, 3, 3), 1, 1, 1, 1, True),
    ((3, 6, 33, 29), (6, 2, 5, 3), (2, 1), (2, 1), (1, 2), 3, True),
]


def forward_and_gradients(config, dtype):
    x, w, b, hyper = random_operands(config, dtype=dtype, seed=10, requires_grad=True)
    out = convkit.conv2d(x, w, b, **hyper)
    grads = torch.autograd.grad(out, (x, w, b), out.detach().cos())
    return (out.detach(),) + grads


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("config", DETERMINISM_CONFIGS, ids=["dense", "grouped-strided"])
def test_repeated_runs_are_bitwise_identical(config, dtype):
    first = forward_and_gradients(config, dtype)
    for _ in range(3):
        for name, a, b in zip(("output", "grad input", "grad weight", "grad bias"), forward_and_gradients(config, dtype),
                              first):
            assert torch.equal(a, b), f"{name} changed between identical runs"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("config", DETERMINISM_CONFIGS, ids=["dense", "grouped-strided"])
def test_results_do_not_depend_on_the_thread_count(config, dtype):
    saved = torch.get_num_threads()
    try:
        by_threads = {}
        for threads in (1, 2, 3, 8):
            torch.set_num_threads(threads)
            by_threads[threads] = forward_and_gradients(config, dtype)
    finally:
        torch.set_num_threads(saved)
    for threads, results in by_threads.items():
        for name, a, b in zip(("output", "grad input", "grad weight", "grad bias"), results, by_threads[1]):
            assert torch.equal(a, b), f"{name} with {threads} threads differs from 1 thread"


# Large tensors -------------------------------------------------------------------------

def available_bytes():
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return 0


def need_memory(gib):
    if available_bytes() < gib * 2**30:
        pytest.skip(f"needs {gib} GiB of free memory, {available_bytes() / 2**30:.1f} GiB available")


# 128 planes of 4096 x 4097 hold 2**31 + 131072 elements: the last plane
# crosses the int32 boundary. Modest planes keep per-plane scratch buffers small.
BIG = (128, 1, 4096, 4097)
KERNEL = (4, 3)
OUT = (5, 3)  # output rows/columns; the strides make the last window end on the last element
STRIDE = ((BIG[2] - KERNEL[0]) // (OUT[0] - 1), (BIG[3] - KERNEL[1]) // (OUT[1] - 1))
assert BIG[0] * BIG[1] * BIG[2] * BIG[3] > 2**31 - 1
assert all((BIG[2 + i] - KERNEL[i]) % (OUT[i] - 1) == 0 and STRIDE[i] > KERNEL[i] for i in range(2))


def big_input(seed):
    """x[n, 0, h, w] = rows[n, h] + cols[w] with random rows and cols: a value
    read from the wrong row, column or image shows; filling it is one parallel
    pass (uniform_ over 2**31 elements is serial and minutes slower)."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.rand(BIG[0], 1, BIG[2], 1, generator=g)
    cols = torch.rand(1, 1, 1, BIG[3], generator=g)
    return torch.add(rows, cols, out=torch.empty(BIG, dtype=torch.float32))


def tap_view(x, r, t):
    """The input elements kernel tap (r, t) meets, one per output position."""
    return x[:, :, r:r + STRIDE[0] * (OUT[0] - 1) + 1:STRIDE[0], t:t + STRIDE[1] * (OUT[1] - 1) + 1:STRIDE[1]]


@pytest.mark.slow
def test_input_beyond_int32_indexing():
    """Forward, weight and bias gradients read a > 2**31 element input up to
    its very last element; the strides keep the output small, so sums over
    strided views check every output and gradient in float64."""
    need_memory(10)
    x = big_input(11)
    g = torch.Generator().manual_seed(12)
    w = torch.randn((2, 1) + KERNEL, generator=g)
    b = torch.randn(2, generator=g)
    hyper = (list(STRIDE), [0, 0], [1, 1], 1)
    out = ops.conv2d(x, w, b, *hyper)
    assert out.shape == (BIG[0], 2) + OUT
    taps = [(r, t) for r in range(KERNEL[0]) for t in range(KERNEL[1])]
    expected = b.double().view(1, -1, 1, 1) + sum(
        tap_view(x, r, t).double() * w[:, 0, r, t].double().view(1, -1, 1, 1) for r, t in taps)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
    assert tap_view(x, *taps[-1])[-1, 0, -1, -1] == x[-1, 0, -1, -1]  # the last element takes part

    grad_output = torch.randn(out.shape, generator=g)
    _, grad_w, grad_b = ops.conv2d_backward(grad_output, x, w, *hyper, [False, True, True])
    expected_w = torch.stack([(tap_view(x, r, t).double() * grad_output.double()).sum(dim=(0, 2, 3))
                              for r, t in taps], -1).view((2, 1) + KERNEL)
    torch.testing.assert_close(grad_w.double(), expected_w, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(grad_b.double(), grad_output.double().sum(dim=(0, 2, 3)), rtol=1e-5, atol=1e-4)


@pytest.mark.slow
def test_input_gradient_beyond_int32_indexing():
    """The input gradient of the same geometry is a > 2**31 element tensor;
    the input itself is only read for its shape here, so a stride-0 expanded
    one stands in for it."""
    need_memory(10)
    g = torch.Generator().manual_seed(13)
    x = torch.zeros(1).expand(BIG)
    w = torch.randn((2, 1) + KERNEL, generator=g)
    grad_output = torch.randn((BIG[0], 2) + OUT, generator=g)
    grad_x, _, _ = ops.conv2d_backward(grad_output, x, w, list(STRIDE), [0, 0], [1, 1], 1, [True, False, False])
    assert grad_x.shape == BIG
    # Windows do not overlap (stride > kernel): each tap owns its own positions ...
    for r in range(KERNEL[0]):
        for t in range(KERNEL[1]):
            expected = (grad_output * w[:, 0, r, t].view(1, -1, 1, 1)).sum(1, keepdim=True)
            torch.testing.assert_close(tap_view(grad_x, r, t), expected, rtol=1e-5, atol=1e-5)
    # ... and everything else is zero.
    assert torch.count_nonzero(grad_x) == BIG[0] * OUT[0] * OUT[1] * KERNEL[0] * KERNEL[1]


@pytest.mark.slow
def test_output_beyond_int32_indexing():
    """33 output channels of 8192 x 8192 make a > 2**31 element output (and
    grad_output) from a small input: out[:, k] = w[k] * x + b[k], and the
    gradients reduce over all of it."""
    need_memory(12)
    g = torch.Generator().manual_seed(14)
    plane = torch.rand(8192, 8192, generator=g)
    channels = 33
    assert channels * plane.numel() > 2**31 - 1
    w = torch.randn(channels, 1, 1, 1, generator=g)
    b = torch.randn(channels, generator=g)
    out = ops.conv2d(plane[None, None], w, b, [1, 1], [0, 0], [1, 1], 1)
    assert out.shape == (1, channels, 8192, 8192)
    rows = torch.cat([torch.tensor([0, 8191]), torch.randperm(8192, generator=g)[:62]])
    for k in range(channels):  # a sample of rows, one channel at a time: no 8 GiB temporaries
        error = (out[0, k, rows] - (plane[rows] * w[k, 0, 0, 0] + b[k])).abs().max().item()
        assert error <= 1e-5, f"channel {k}: off by {error}"
    # Reuse the output as a grad_output of 0s and 1s: channel k marks the
    # pixels below its own threshold, fewer than 2**24 of them, so every sum
    # of it is exact in float32 whatever the order, and a read from the wrong
    # channel shows as a wrong count.
    thresholds = torch.tensor([0.2 * (k + 1) / channels for k in range(channels)])
    for k in range(channels):
        out[0, k].copy_(plane < thresholds[k])
    grad_x, grad_w, grad_b = ops.conv2d_backward(out, plane[None, None], w, [1, 1], [0, 0], [1, 1], 1,
                                                 [True, True, True])
    # bucket i holds the pixels with thresholds[i - 1] <= p < thresholds[i]:
    # pixel p is marked in channel k when its bucket is at most k
    bucket = torch.bucketize(plane, thresholds, right=True).view(-1)
    counts = torch.bincount(bucket, minlength=channels + 1).cumsum(0)[:channels].double()
    sums = torch.bincount(bucket, weights=plane.view(-1).double(), minlength=channels + 1).cumsum(0)[:channels]
    assert torch.equal(grad_b.double(), counts)
    # a read from a neighbouring channel is off by 3 % or more; 1e-4 leaves room for float32 sums of 2**26 terms
    torch.testing.assert_close(grad_w.double().view(-1), sums, rtol=1e-4, atol=1e-3)
    # grad_x[p] = the sum of w[k] over the channels that mark p
    suffix = torch.cat([w.view(-1).double().flip(0).cumsum(0).flip(0), torch.zeros(1, dtype=torch.float64)])
    error = (grad_x.view(-1).double() - suffix[bucket]).abs().max().item()
    assert error <= 1e-4, f"grad input off by {error}"


# float32 accuracy of the reductions ------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_float32_results_as_accurate_as_torch(device):
    """Long float32 reductions (a 1024 x 1024 plane for the weight and bias
    gradients) lose no more digits than torch's own kernels do."""
    g = torch.Generator().manual_seed(15)
    x = torch.rand(1, 2, 1024, 1024, generator=g).to(device)
    w = torch.randn(3, 2, 3, 3, generator=g).to(device)
    b = torch.randn(3, generator=g).to(device)
    grad_output = (torch.rand(1, 3, 1024, 1024, generator=g) + 0.5).to(device)  # positive: running sums grow

    def results(conv, dtype):
        leaves = [t.to(dtype).requires_grad_() for t in (x, w, b)]
        out = conv(*leaves, padding=1)
        return [out.detach()] + list(torch.autograd.grad(out, leaves, grad_output.to(dtype)))

    exact = results(F.conv2d, torch.float64)
    for name, ours, theirs, truth in zip(("output", "grad input", "grad weight", "grad bias"),
                                         results(convkit.conv2d, torch.float32), results(F.conv2d, torch.float32),
                                         exact):
        def error(t):
            return ((t.double() - truth).abs() / truth.abs().clamp_min(1e-3)).max().item()
        # a serial float32 sum of n terms drifts by up to ~n * 6e-8; torch's kernels vary between
        # pairwise and serial sums, so allow a few times its error
        assert error(ours) <= max(4 * error(theirs), 1e-4), f"{name}: {error(ours):.2e} vs torch {error(theirs):.2e}"


@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("where", ["weight", "input", "grad_output"])
def test_inf_reaching_winograd_after_cached_calls(monkeypatch, dilation, where):
    """Winograd checks its operands' finiteness itself (the weights with its
    cached filters, the data in its copy): an Inf written in place after
    finite calls, and taken out again, must reach the forward and grad_input
    as in torch."""
    monkeypatch.setenv("CONVKIT_WINOGRAD", "1")
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 8, 10, 9, generator=g, dtype=torch.float64)
    w = torch.randn(6, 8, 3, 3, generator=g, dtype=torch.float64)
    go = torch.randn(2, 6, 10, 9, generator=g, dtype=torch.float64)
    hyper = ([1, 1], [dilation, dilation], [dilation, dilation], 1)

    def check():
        assert_same_specials(torch.ops.convkit.conv2d(x, w, None, *hyper),
                             F.conv2d(x, w, padding=dilation, dilation=dilation))
        ours = torch.ops.convkit.conv2d_backward(go, x, w, *hyper, [True, False, False])[0]
        theirs = torch.ops.aten.convolution_backward(go, x, w, None, *hyper[:3], False, [0, 0], 1,
                                                     [True, False, False])[0]
        assert_same_specials(ours, theirs)

    target, index = {"weight": (w, (2, 5, 1, 0)), "input": (x, (1, 3, 4, 7)), "grad_output": (go, (0, 2, 9, 8))}[where]
    check()
    check()  # served from the cache
    saved = target[index].item()
    target.data[index] = float("inf")
    check()
    check()
    target.data[index] = saved
    check()


@pytest.mark.parametrize("where", ["input", "grad_output"])
@pytest.mark.parametrize("kernel,stride,channels", [(3, 2, 48), (1, 1, 80), (3, 1, 40)])
def test_nan_and_inf_reach_wide_grad_weight(monkeypatch, where, kernel, stride, channels):
    """The wide grad_weight pass checks its result's finiteness as it writes
    it: an Inf or NaN operand must send grad_weight (and grad_bias) to the
    exact path, with torch's NaN and Inf positions."""
    monkeypatch.setenv("CONVKIT_WINOGRAD", "0")
    g = torch.Generator().manual_seed(13)
    x = torch.randn(2, 24, 9, 10, generator=g, dtype=torch.float64)
    w = torch.randn(channels, 24, kernel, kernel, generator=g, dtype=torch.float64)
    pad = kernel // 2
    go = torch.randn(F.conv2d(x, w, stride=stride, padding=pad).shape, generator=g, dtype=torch.float64)
    if where == "input":
        x = sprinkle(x, 14, fraction=0.01)
    else:
        go = sprinkle(go, 15, fraction=0.01)
    hyper = ([stride, stride], [pad, pad], [1, 1], 1)
    ours = torch.ops.convkit.conv2d_backward(go, x, w, *hyper, [False, True, True])
    theirs = torch.ops.aten.convolution_backward(go, x, w, [channels], *hyper[:3], False, [0, 0], 1,
                                                 [False, True, True])
    assert_same_specials(ours[1], theirs[1])
    assert_same_specials(ours[2], theirs[2])
