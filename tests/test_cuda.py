"""CUDA kernels: every pass and kernel family against torch in float64.

Each case runs with CONVKIT_CUDA_ALGO pinning one kernel family (naive,
direct, gemm, tensorcore; a family whose preconditions fail falls back to the
planner's choice) and with the planner's own choice (auto).
"""
import math

import pytest
import torch
import torch.nn.functional as F

import convkit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")

ops = torch.ops.convkit
ALGOS = ["auto", "naive", "direct", "gemm", "tensorcore"]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# Error relative to the largest reference value: inputs are drawn in the test
# dtype and the reference computes on those very values in float64, so this
# measures the kernel's accumulation and output rounding only.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
TF32_TOLERANCE = 5e-3

# (N, C, H, W, K, R, S, stride, padding, dilation, groups, bias)
CONFIGS = [
    (2, 3, 9, 11, 4, 3, 3, 1, 1, 1, 1, True),
    (1, 4, 8, 8, 6, 2, 3, (2, 1), (0, 2), 1, 2, False),
    (2, 8, 10, 10, 8, 3, 3, 1, 1, 1, 8, True),            # depthwise
    (1, 4, 7, 9, 8, 3, 3, 2, 1, 1, 4, True),              # depthwise, channel multiplier 2
    (2, 5, 12, 12, 7, 3, 3, 1, 2, 2, 1, True),            # dilation
    (3, 16, 15, 13, 32, 3, 3, 2, 1, 1, 1, True),          # stride 2
    (4, 1, 28, 28, 6, 5, 5, 1, 2, 1, 1, True),            # LeNet c1
    (4, 6, 14, 14, 16, 5, 5, 1, 0, 1, 1, True),           # LeNet c2
    (2, 32, 10, 10, 48, 3, 3, 1, 1, 1, 1, True),          # tensor-core eligible
    (2, 64, 9, 9, 64, 3, 3, 1, 1, 1, 2, True),            # grouped, 32 channels per group
    (2, 32, 11, 11, 40, 3, 3, 2, 1, 1, 1, False),         # strided grad input on tensor cores
    (1, 16, 13, 17, 16, 3, 5, (2, 3), (1, 2), (2, 1), 1, True),
    (3, 64, 7, 7, 80, 1, 1, 1, 0, 1, 1, True),            # pointwise
    (2, 32, 20, 20, 70, 3, 3, 1, 1, 1, 1, True),          # partial 128 x 64 tiles
    (0, 4, 5, 5, 6, 3, 3, 1, 1, 1, 1, True),              # batch 0
    (2, 3, 4, 4, 5, 4, 4, 1, 0, 1, 1, True),              # kernel as large as the input
    (1, 2, 20, 30, 3, 7, 1, 1, 3, 1, 1, True),            # tall kernel
    (8, 32, 32, 32, 32, 3, 3, 1, 1, 1, 1, True),          # split-K weight gradient
    (2, 24, 9, 9, 24, 3, 3, 1, 1, 1, 3, True),            # 8 channels per group: below tensor-core minimum
]


def config_id(cfg):
    n, c, h, w, k, r, s, stride, padding, dilation, groups, bias = cfg
    return f"{n}x{c}x{h}x{w}-k{k}x{r}x{s}-s{stride}-p{padding}-d{dilation}-g{groups}{'-b' if bias else ''}"


@pytest.fixture
def algo(request, monkeypatch):
    monkeypatch.setenv("CONVKIT_CUDA_ALGO", request.param)
    return request.param


def relative_error(out, ref):
    if ref.numel() == 0:
        assert out.numel() == 0
        return 0.0
    scale = ref.abs().max().item()
    return (out.double() - ref).abs().max().item() / max(scale, 1e-30)


def make_case(cfg, dtype, layout="contiguous", seed=0):
    n, c, h, w, k, r, s, stride, padding, dilation, groups, has_bias = cfg
    gen = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(n, c, h, w, device="cuda", generator=gen).to(dtype)
    weight = torch.randn(k, c // groups, r, s, device="cuda", generator=gen).to(dtype)
    bias = torch.randn(k, device="cuda", generator=gen).to(dtype) if has_bias else None
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
        weight = weight.contiguous(memory_format=torch.channels_last)
    elif layout == "sliced":  # non-contiguous views with odd strides
        big = torch.randn(n, c, h + 3, 2 * w, device="cuda", generator=gen).to(dtype)
        big[:, :, 1:h + 1, ::2] = x
        x = big[:, :, 1:h + 1, ::2]
        weight = weight.transpose(2, 3).contiguous().transpose(2, 3)
        assert not x.is_contiguous() and not weight.is_contiguous()
    hyper = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return x, weight, bias, hyper


def check_forward_backward(cfg, dtype, layout="contiguous", tol=None):
    tol = TOLERANCE[dtype] if tol is None else tol
    x, weight, bias, hyper = make_case(cfg, dtype, layout)
    leaves = [t.detach().requires_grad_() for t in (x, weight) + ((bias,) if bias is not None else ())]
    refs = [t.detach().double().requires_grad_() for t in leaves]

    out = convkit.conv2d(leaves[0], leaves[1], leaves[2] if bias is not None else None, **hyper)
    ref = F.conv2d(refs[0], refs[1], refs[2] if bias is not None else None, **hyper)
    assert out.shape == ref.shape and out.dtype == dtype
    expected_format = (torch.channels_last if layout == "channels_last" and out.dim() == 4 and out.numel() > 0
                       else torch.contiguous_format)
    assert out.is_contiguous(memory_format=expected_format)
    assert relative_error(out, ref) <= tol, ("forward", relative_error(out, ref))

    grad = torch.randn(ref.shape, device="cuda", generator=torch.Generator(device="cuda").manual_seed(1)).to(dtype)
    out.backward(grad)
    ref.backward(grad.double())
    for name, leaf, r in zip(("input", "weight", "bias"), leaves, refs):
        assert leaf.grad is not None and leaf.grad.shape == leaf.shape and leaf.grad.dtype == dtype
        err = relative_error(leaf.grad, r.grad)
        assert err <= tol, (f"grad {name}", err)


@pytest.mark.parametrize("algo", ALGOS, indirect=True)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cfg", CONFIGS, ids=config_id)
def test_conv2d_matches_torch(cfg, dtype, algo):
    check_forward_backward(cfg, dtype)


@pytest.mark.parametrize("algo", ["auto", "naive", "tensorcore"], indirect=True)
@pytest.mark.parametrize("layout", ["channels_last", "sliced"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cfg", [CONFIGS[0], CONFIGS[5], CONFIGS[8], CONFIGS[9]], ids=config_id)
def test_conv2d_layouts(cfg, dtype, layout, algo):
    check_forward_backward(cfg, dtype, layout)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_unbatched_and_padding_strings(dtype):
    x = torch.randn(3, 10, 9, device="cuda").to(dtype)
    w = torch.randn(5, 3, 4, 3, device="cuda").to(dtype)
    for padding in ("same", "valid", 2):
        out = convkit.conv2d(x, w, padding=padding)
        ref = F.conv2d(x.double(), w.double(), padding=padding)
        assert out.shape == ref.shape
        assert relative_error(out, ref) <= TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_corr2d(dtype):
    X = torch.tensor([[0.0, 1, 2], [3, 4, 5], [6, 7, 8]], device="cuda", dtype=dtype)
    K = torch.tensor([[0.0, 1], [2, 3]], device="cuda", dtype=dtype)
    assert convkit.corr2d(X, K).tolist() == [[19, 25], [37, 43]]
    X = torch.randn(40, 30, device="cuda").to(dtype).t()  # non-contiguous
    K = torch.randn(3, 5, device="cuda").to(dtype)
    X.requires_grad_()
    K.requires_grad_()
    out = convkit.corr2d(X, K)
    ref = convkit.reference.corr2d(X.detach().double().cpu(), K.detach().double().cpu()).cuda()
    assert relative_error(out, ref) <= TOLERANCE[dtype]
    out.sum().backward()
    assert X.grad.shape == X.shape and K.grad.shape == K.shape


@pytest.mark.parametrize("algo", ALGOS, indirect=True)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_padding_times_inf_is_nan(dtype, algo):
    """Every kernel family multiplies the zero padding, as the definition
    does (torch's own backends differ here): an Inf weight tap that lands on
    padding gives NaN in the output, an Inf in grad_output NaN in grad_weight."""
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(2, 32, 7, 7, generator=gen)
    w = torch.randn(32, 32, 3, 3, generator=gen) / 8
    w[3, 5, 0, 0] = float("inf")
    gy = torch.randn(2, 32, 7, 7, generator=gen)
    gy[1, 4, 0, 6] = float("-inf")
    x, w, gy = (t.to(dtype) for t in (x, w, gy))  # the same values on both sides
    ws = w.cuda().requires_grad_()
    out = convkit.conv2d(x.cuda(), ws, padding=1)
    ours = out, torch.autograd.grad(out, ws, gy.cuda())[0]
    # Reference: the padding made explicit, so torch multiplies its zeros whatever its backend.
    ws = w.double().requires_grad_()
    out = F.conv2d(F.pad(x.double(), (1, 1, 1, 1)), ws)
    theirs = out, torch.autograd.grad(out, ws, gy.double())[0]
    results = [tuple(t.double().cpu() for t in ours), theirs]
    for ours, theirs in zip(*results):
        for mask in (torch.isnan, torch.isposinf, torch.isneginf):
            assert torch.equal(mask(ours), mask(theirs))


def test_tf32_flag_is_honoured(monkeypatch):
    monkeypatch.setenv("CONVKIT_CUDA_ALGO", "auto")
    x = torch.randn(4, 64, 16, 16, device="cuda")
    w = torch.randn(64, 64, 3, 3, device="cuda")
    ref = F.conv2d(x.double(), w.double(), padding=1)
    torch.backends.cudnn.allow_tf32 = False
    exact = relative_error(convkit.conv2d(x, w, padding=1), ref)
    torch.backends.cudnn.allow_tf32 = True
    tf32 = relative_error(convkit.conv2d(x, w, padding=1), ref)
    assert exact < 1e-5, exact
    assert 1e-5 < tf32 < TF32_TOLERANCE, tf32  # rounded to TF32's 10-bit mantissa: visibly less exact


@pytest.mark.parametrize("cfg", [CONFIGS[8], CONFIGS[13]], ids=config_id)
def test_tf32_forward_and_grad_input(cfg, monkeypatch):
    torch.backends.cudnn.allow_tf32 = True
    monkeypatch.setenv("CONVKIT_CUDA_ALGO", "tensorcore")
    check_forward_backward(cfg, torch.float32, tol=TF32_TOLERANCE)


@pytest.mark.parametrize("deterministic", [True, False])
def test_weight_gradient_split_k(deterministic):
    x = torch.randn(16, 32, 32, 32, device="cuda", dtype=torch.float64)
    w = torch.randn(48, 32, 3, 3, device="cuda", dtype=torch.float64)
    gy = torch.randn(16, 48, 32, 32, device="cuda", dtype=torch.float64)
    args = ([1, 1], [1, 1], [1, 1], 1, [False, True, False])
    saved = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    try:
        first = ops.conv2d_backward(gy, x, w, *args)[1]
        second = ops.conv2d_backward(gy, x, w, *args)[1]
    finally:
        torch.use_deterministic_algorithms(saved)
    xr = x.clone().requires_grad_()
    wr = w.clone().requires_grad_()
    F.conv2d(xr, wr, padding=1).backward(gy)
    assert relative_error(first, wr.grad) <= 1e-10
    if deterministic:
        assert torch.equal(first, second)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autocast_like_nn_conv2d(dtype):
    layer = torch.nn.Conv2d(16, 32, 3, padding=1).cuda()
    ours = convkit.convert(torch.nn.Sequential(torch.nn.Conv2d(16, 32, 3, padding=1)).cuda())
    ours[0].load_state_dict(layer.state_dict())
    x = torch.randn(2, 16, 12, 12, device="cuda")
    with torch.autocast("cuda", dtype=dtype):
        ref = layer(x)
        out = ours(x)
        corr = convkit.corr2d(x[0, 0], x[0, 1, :3, :3])
    assert out.dtype == ref.dtype == dtype
    assert corr.dtype == dtype
    assert relative_error(out, ref.double()) <= TOLERANCE[dtype]
    out.float().sum().backward()
    assert ours[0].weight.grad.dtype == torch.float32 and ours[0].bias.grad.dtype == torch.float32
    with torch.autocast("cuda", dtype=dtype):  # float64 is left alone, as nn.Conv2d does
        assert convkit.conv2d(x.double(), layer.weight.double()).dtype == torch.float64


def test_current_stream_is_used():
    """The kernel must run on the caller's stream: on a side stream that is
    still busy (a sleep, then the copy that fills x), a launch on any other
    stream would read x before it is written."""
    src = torch.randn(8, 16, 32, 32, device="cuda")
    w = torch.randn(16, 16, 3, 3, device="cuda")
    x = torch.zeros_like(src)
    expected = convkit.conv2d(src, w, padding=1)
    side = torch.cuda.Stream()
    torch.cuda.synchronize()
    with torch.cuda.stream(side):
        torch.cuda._sleep(50_000_000)
        x.copy_(src)
        out = convkit.conv2d(x, w, padding=1)
        gx, gw, _ = ops.conv2d_backward(out, x, w, [1, 1], [1, 1], [1, 1], 1, [True, True, False])
    torch.cuda.current_stream().wait_stream(side)
    assert torch.equal(out, expected)
    ref_gx, ref_gw, _ = ops.conv2d_backward(expected, src, w, [1, 1], [1, 1], [1, 1], 1, [True, True, False])
    assert torch.allclose(gx, ref_gx) and torch.allclose(gw, ref_gw, rtol=1e-4, atol=1e-3)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_device_guard_second_gpu():
    x = torch.randn(2, 8, 10, 10, device="cuda:1")
    w = torch.randn(8, 8, 3, 3, device="cuda:1")
    with torch.cuda.device(0):
        out = convkit.conv2d(x, w)
    assert out.device == x.device
    assert relative_error(out, F.conv2d(x.double(), w.double())) <= TOLERANCE[torch.float32]


def test_bad_input_on_cuda():
    x = torch.randn(1, 3, 8, 8, device="cuda")
    with pytest.raises(RuntimeError, match="same device"):
        ops.conv2d(x, torch.randn(4, 3, 3, 3), None, [1, 1], [0, 0], [1, 1], 1)
    with pytest.raises(RuntimeError, match="CONVKIT_CUDA_ALGO"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CONVKIT_CUDA_ALGO", "bogus")
            ops.conv2d(x, torch.randn(4, 3, 3, 3, device="cuda"), None, [1, 1], [0, 0], [1, 1], 1)


@pytest.mark.slow
@pytest.mark.parametrize("channels", [1, 16])
def test_more_than_2_31_elements(channels):
    """64-bit indexing: input and output each hold more than 2^31 - 1 elements
    (float16; about 4.3 GB each). Windows at both far corners are checked
    against torch on small crops."""
    side = math.isqrt((2**31 - 1) // channels) + 3  # the output, side - 2 square, passes 2^31 too
    assert channels * side * side > 2**31 - 1
    free, _ = torch.cuda.mem_get_info()
    if free < 40 * 2**30:
        pytest.skip("needs about 40 GiB of free GPU memory")
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(1, channels, side, side, device="cuda", dtype=torch.float16, generator=gen)
    w = torch.randn(channels, channels, 3, 3, device="cuda", dtype=torch.float16, generator=gen) / channels
    x.requires_grad_()
    out = convkit.conv2d(x, w)  # padding 0: out[i, j] sees x[i:i+3, j:j+3]
    assert out.numel() > 2**31 - 1
    crop = 9  # a crop x crop input window gives (crop - 2) x (crop - 2) outputs
    ref = F.conv2d(x.detach()[..., :crop, :crop].double(), w.double())
    assert relative_error(out.detach()[..., : crop - 2, : crop - 2], ref) <= TOLERANCE[torch.float16]
    ref = F.conv2d(x.detach()[..., -crop:, -crop:].double(), w.double())
    assert relative_error(out.detach()[..., -(crop - 2):, -(crop - 2):], ref) <= TOLERANCE[torch.float16]
    # grad input at the far corner: rows/cols fed only by the last crop x crop grad_output block.
    grad = torch.zeros_like(out)
    grad[..., -crop:, -crop:] = torch.randn(1, channels, crop, crop, device="cuda", generator=gen).half()
    del out
    (gx,) = torch.autograd.grad(convkit.conv2d(x, w), x, grad)
    ref = F.conv_transpose2d(grad[..., -crop:, -crop:].double(), w.double())
    assert relative_error(gx[..., -(crop + 2):, -(crop + 2):], ref) <= TOLERANCE[torch.float16]
