"""convkit's CPU kernels against F.conv2d: forward and all three gradients over
random shapes that reach every kernel family (wide channels-last tiles, planar
rows, stride phases, tails). CI runs this file with the widest kernels the
CPU has and again with CONVKIT_CPU_ISA=avx2 and =generic (narrower builds of
the same kernel source)."""
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings, strategies as st

import convkit  # noqa: F401  (registers the ops)

ops = torch.ops.convkit


@st.composite
def conv_configs(draw, batches=(0, 1, 1, 2, 3)):
    groups = draw(st.sampled_from([1, 1, 1, 2, 3]))
    cg = draw(st.sampled_from([1, 2, 3, 5, 8, 13, 17]))
    kg = draw(st.sampled_from([1, 2, 4, 6, 7, 8, 9, 16, 19, 33]))
    depthwise = draw(st.booleans()) and draw(st.booleans())
    if depthwise:
        groups, cg, kg = draw(st.sampled_from([1, 3, 8, 12])), 1, draw(st.sampled_from([1, 2]))
    R, S = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    H = draw(st.integers(max(1, dilation[0] * (R - 1) + 1 - 2 * padding[0]), 20))
    W = draw(st.integers(max(1, dilation[1] * (S - 1) + 1 - 2 * padding[1]), 41))
    return dict(N=draw(st.sampled_from(batches)), C=groups * cg, K=groups * kg, H=H, W=W, R=R, S=S,
                stride=stride, padding=padding, dilation=dilation, groups=groups, bias=draw(st.booleans()),
                layout=draw(st.sampled_from(["contiguous", "channels_last", "sliced"])),
                dtype=draw(st.sampled_from([torch.float64, torch.float64, torch.float32])))


def make_input(cfg, gen):
    shape = (cfg["N"], cfg["C"], cfg["H"], cfg["W"])
    if cfg["layout"] == "sliced":
        big = torch.randn(shape[0], shape[1], shape[2] + 1, 2 * shape[3], generator=gen, dtype=cfg["dtype"])
        return big[:, :, 1:, ::2]
    x = torch.randn(shape, generator=gen, dtype=cfg["dtype"])
    return x.contiguous(memory_format=torch.channels_last) if cfg["layout"] == "channels_last" else x


def check(cfg, seed=0):
    gen = torch.Generator().manual_seed(seed)
    dt = cfg["dtype"]
    x = make_input(cfg, gen).requires_grad_()
    w = torch.randn(cfg["K"], cfg["C"] // cfg["groups"], cfg["R"], cfg["S"], generator=gen, dtype=dt, requires_grad=True)
    b = torch.randn(cfg["K"], generator=gen, dtype=dt, requires_grad=True) if cfg["bias"] else None
    hyper = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"], groups=cfg["groups"])
    y = convkit.conv2d(x, w, b, **hyper)
    y_ref = F.conv2d(x, w, b, **hyper)
    tol = dict(rtol=1e-10, atol=1e-10) if dt == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    assert y.shape == y_ref.shape
    assert y.is_contiguous(memory_format=torch.channels_last) == y_ref.is_contiguous(memory_format=torch.channels_last)
    # Rounding scales with the sums' largest terms (Winograd's transforms
    # add several): atol is relative to the largest output, as for the gradients.
    scale = max(1.0, float(y_ref.abs().max())) if y_ref.numel() else 1.0
    torch.testing.assert_close(y, y_ref, rtol=tol["rtol"], atol=tol["atol"] * scale)
    go = torch.randn(y.shape, generator=gen, dtype=dt)
    inputs = [x, w] + ([b] if b is not None else [])
    got = torch.autograd.grad(y, inputs, go, allow_unused=True)
    want = torch.autograd.grad(y_ref, inputs, go, allow_unused=True)
    for g1, g2, name in zip(got, want, ["input", "weight", "bias"]):
        scale = max(1.0, float(g2.abs().max())) if g2.numel() else 1.0
        torch.testing.assert_close(g1, g2, rtol=tol["rtol"], atol=tol["atol"] * scale, msg=lambda m: f"grad {name}: {m}")


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(conv_configs())
def test_random_configs_match_torch(cfg):
    check(cfg)


# Shapes that pin each kernel family and its edges explicitly.
FIXED = [
    dict(N=2, C=1, K=6, H=28, W=28, R=5, S=5, stride=(1, 1), padding=(2, 2), dilation=(1, 1), groups=1),  # LeNet c1
    dict(N=2, C=6, K=16, H=14, W=14, R=5, S=5, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1),  # LeNet c2
    dict(N=1, C=16, K=32, H=9, W=13, R=3, S=3, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1),
    dict(N=2, C=16, K=24, H=11, W=11, R=3, S=3, stride=(2, 2), padding=(1, 1), dilation=(1, 1), groups=1),
    dict(N=1, C=3, K=16, H=23, W=23, R=7, S=7, stride=(2, 2), padding=(3, 3), dilation=(1, 1), groups=1),  # stem
    # A stem on an image whose rows run in several L1 bands, each through every output-channel block.
    dict(N=1, C=3, K=13, H=150, W=141, R=7, S=7, stride=(2, 2), padding=(3, 3), dilation=(1, 1), groups=1),
    dict(N=2, C=32, K=16, H=7, W=9, R=1, S=1, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1),
    dict(N=1, C=32, K=16, H=8, W=8, R=1, S=1, stride=(2, 2), padding=(0, 0), dilation=(1, 1), groups=1),
    # 1 x 1 with stride and many channels: the subsampled copy (odd sizes, unequal strides;
    # stride 2 along rows takes the deinterleave, odd widths a half pair at the end).
    dict(N=2, C=130, K=20, H=9, W=8, R=1, S=1, stride=(2, 3), padding=(0, 0), dilation=(1, 1), groups=1),
    dict(N=2, C=128, K=36, H=11, W=13, R=1, S=1, stride=(3, 2), padding=(0, 0), dilation=(1, 1), groups=1),
    dict(N=1, C=136, K=16, H=28, W=27, R=1, S=1, stride=(2, 2), padding=(0, 0), dilation=(1, 1), groups=1),
    # 1 x 1 on planar input, copied a band at a time into pixel groups: several bands
    # of rows (the last shorter, partial groups at row ends), groups, channel blocks;
    # 7 x 7 planes, whose pixel runs cross images.
    dict(N=2, C=70, K=34, H=23, W=30, R=1, S=1, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=2),
    dict(N=2, C=600, K=20, H=9, W=13, R=1, S=1, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1),
    dict(N=3, C=48, K=40, H=7, W=7, R=1, S=1, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1),
    dict(N=2, C=16, K=16, H=12, W=12, R=3, S=3, stride=(1, 1), padding=(2, 2), dilation=(2, 2), groups=1),
    dict(N=2, C=16, K=16, H=10, W=10, R=3, S=3, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=16),
    # Wide tiles on planar input read through its zero border, a band of rows at a
    # time: bands whose rows reach past the top and bottom, a shorter last band,
    # groups, unequal padding, stride and dilation along either axis, odd widths.
    # (Their grad_input with a column stride: column phases interleaved at the end.)
    dict(N=2, C=32, K=40, H=30, W=26, R=3, S=5, stride=(2, 1), padding=(2, 1), dilation=(1, 2), groups=2),
    dict(N=2, C=24, K=20, H=17, W=29, R=3, S=3, stride=(1, 2), padding=(0, 2), dilation=(2, 1), groups=1),
    dict(N=2, C=20, K=24, H=19, W=31, R=4, S=4, stride=(3, 3), padding=(1, 2), dilation=(1, 1), groups=1),
    dict(N=2, C=16, K=16, H=11, W=11, R=3, S=3, stride=(2, 2), padding=(1, 1), dilation=(1, 1), groups=16),
    # Depthwise with images enough that grad_input runs inside grad_weight's pass.
    dict(N=6, C=32, K=32, H=28, W=27, R=3, S=3, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=32),
    dict(N=5, C=16, K=32, H=61, W=60, R=3, S=3, stride=(2, 2), padding=(1, 1), dilation=(1, 1), groups=16),
    # Depthwise 3 x 3 rows with weights (forward) or grad_output (grad_weight) in
    # registers: row counts off their blocks of 3 and 6, a partial last vector.
    dict(N=3, C=8, K=8, H=17, W=21, R=3, S=3, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=8),
    # Depthwise on channel lanes: a tail block of channels (35 = 2 x 16 + 3),
    # stride, dilation and uneven padding; 7x7 outputs of a 5 x 5 filter.
    dict(N=2, C=35, K=35, H=9, W=8, R=5, S=5, stride=(2, 1), padding=(2, 1), dilation=(1, 2), groups=35),
    dict(N=3, C=20, K=20, H=7, W=7, R=5, S=5, stride=(1, 1), padding=(2, 2), dilation=(1, 1), groups=20),
    # Whole-vector grad_output rows, which grad_weight reads in place.
    dict(N=4, C=8, K=8, H=7, W=16, R=3, S=3, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=8),
    dict(N=1, C=32, K=64, H=6, W=6, R=3, S=3, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=2),
    dict(N=1, C=8, K=8, H=5, W=5, R=3, S=3, stride=(3, 3), padding=(3, 3), dilation=(1, 1), groups=1),
    # Wide tiles on small images: pixel runs across images (5 x 5 and 3 x 5
    # outputs leave calls short of a tile), filters outweighing the input
    # (packed per thread, output tiles outermost).
    dict(N=3, C=96, K=80, H=5, W=5, R=3, S=3, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1),
    dict(N=5, C=64, K=96, H=3, W=5, R=1, S=1, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1),
    # Winograd F(2x2, 3x3): odd sizes (tiles hanging over the edges), channel
    # tails, paddings up to 2, tiny images, channel blocks (C > 256), dilation phases
    # (even and odd paddings of 2-phase axes).
    dict(N=2, C=33, K=47, H=7, W=9, R=3, S=3, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1),
    dict(N=1, C=40, K=32, H=6, W=5, R=3, S=3, stride=(1, 1), padding=(2, 0), dilation=(1, 1), groups=1),
    dict(N=3, C=32, K=36, H=1, W=2, R=3, S=3, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1),
    dict(N=1, C=300, K=40, H=5, W=6, R=3, S=3, stride=(1, 1), padding=(2, 2), dilation=(1, 1), groups=1),
    dict(N=2, C=32, K=33, H=9, W=7, R=3, S=3, stride=(1, 1), padding=(3, 1), dilation=(2, 3), groups=1),
    dict(N=2, C=32, K=32, H=13, W=12, R=3, S=3, stride=(1, 1), padding=(2, 1), dilation=(2, 2), groups=1),
    dict(N=1, C=32, K=34, H=11, W=14, R=3, S=3, stride=(1, 1), padding=(0, 3), dilation=(3, 2), groups=1),
    # Grouped layers as one Winograd pass per group (channel slices), dilated too.
    dict(N=2, C=64, K=66, H=9, W=7, R=3, S=3, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=2),
    dict(N=2, C=96, K=96, H=12, W=11, R=3, S=3, stride=(1, 1), padding=(2, 1), dilation=(2, 1), groups=3),
    dict(N=3, C=64, K=64, H=8, W=9, R=5, S=5, stride=(1, 1), padding=(2, 2), dilation=(1, 1), groups=2),
    # 5 x 5 filters on F(2x2, 5x5); 5 x 3 as 3 x 3 Winograd blocks.
    dict(N=2, C=32, K=40, H=9, W=8, R=5, S=5, stride=(1, 1), padding=(2, 2), dilation=(1, 1), groups=1),
    dict(N=1, C=35, K=32, H=7, W=9, R=5, S=3, stride=(1, 1), padding=(4, 0), dilation=(1, 2), groups=1),
    # Non-overlapping patches (stride = kernel size), whose grad_input is a 1 x 1
    # layer spread to the patches: rows and columns past the last patch, groups,
    # unequal sides, 16 x 16 patches of a ViT stem.
    dict(N=2, C=3, K=24, H=34, W=29, R=4, S=4, stride=(4, 4), padding=(0, 0), dilation=(1, 1), groups=1),
    dict(N=2, C=6, K=8, H=12, W=15, R=2, S=3, stride=(2, 3), padding=(0, 0), dilation=(1, 1), groups=2),
    dict(N=1, C=3, K=40, H=32, W=48, R=16, S=16, stride=(16, 16), padding=(0, 0), dilation=(1, 1), groups=1),
    # Batch lanes (vectors along the batch): a tail block of images, padding
    # (taps skipped at the borders), stride and dilation, 1 -> 6 channels.
    dict(N=70, C=6, K=16, H=14, W=14, R=5, S=5, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1),
    dict(N=67, C=3, K=9, H=11, W=10, R=3, S=3, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=1),
    dict(N=64, C=1, K=6, H=12, W=12, R=5, S=5, stride=(1, 1), padding=(2, 2), dilation=(1, 1), groups=1),
]


# Paths forced wherever they apply, beside the speed rules.
FORCED = {"by-speed": None, "winograd-everywhere": "CONVKIT_WINOGRAD", "batch-lanes-everywhere": "CONVKIT_BATCH_LANES",
          "channel-lanes-everywhere": "CONVKIT_CHANNEL_LANES"}


@pytest.mark.parametrize("path", list(FORCED))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("idx", range(len(FIXED)))
def test_fixed_shapes(idx, layout, dtype, path, monkeypatch):
    # The speed rules send small layers to the direct kernels; forcing
    # Winograd or the batch lanes covers their every pass and edge case on the same shapes.
    if FORCED[path]:
        monkeypatch.setenv(FORCED[path], "1")
    check(dict(FIXED[idx], bias=True, layout=layout, dtype=dtype), seed=idx)


def check_forced(cfg, path):
    """check(cfg) with the kernel family FORCED[path] taken wherever it applies.
    (Hypothesis runs many examples per test: no per-test monkeypatch.)"""
    os.environ[FORCED[path]] = "1"
    try:
        check(cfg)
    finally:
        del os.environ[FORCED[path]]


@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(conv_configs(batches=(1, 3, 9, 13)))
def test_random_configs_on_batch_lanes(cfg):
    check_forced(cfg, "batch-lanes-everywhere")


@st.composite
def depthwise_configs(draw):
    """Depthwise layers (one input channel and one output per group), any geometry."""
    C = draw(st.sampled_from([1, 3, 8, 16, 17, 33]))
    cfg = draw(conv_configs(batches=(1, 2, 3)))
    return dict(cfg, C=C, K=C, groups=C)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(depthwise_configs())
def test_random_depthwise_on_channel_lanes(cfg):
    check_forced(cfg, "channel-lanes-everywhere")


@pytest.mark.parametrize("size", [3, 5])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_winograd_agrees_with_direct_kernels(layout, size, monkeypatch):
    """The Winograd paths (F(2x2, 3x3) and F(2x2, 5x5), stride 1) and the
    direct kernels (CONVKIT_WINOGRAD=0) compute the same forward and gradients."""
    gen = torch.Generator().manual_seed(11 + size)
    x = torch.randn(2, 40, 13, 10, generator=gen, dtype=torch.float64)
    x = x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x
    w = torch.randn(48, 40, size, size, generator=gen, dtype=torch.float64)
    b = torch.randn(48, generator=gen, dtype=torch.float64)
    go = torch.randn(2, 48, 13, 10, generator=gen, dtype=torch.float64)
    pad = [size // 2] * 2

    def run():
        y = ops.conv2d(x, w, b, [1, 1], pad, [1, 1], 1)
        return (y, *ops.conv2d_backward(go, x, w, [1, 1], pad, [1, 1], 1, [True, True, False])[:2])

    monkeypatch.setenv("CONVKIT_WINOGRAD", "1")
    winograd = run()
    monkeypatch.setenv("CONVKIT_WINOGRAD", "0")
    direct = run()
    for a, d in zip(winograd, direct):
        assert a.stride() == d.stride()
        torch.testing.assert_close(a, d, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("channels", [(32, 33), (176, 180)])  # the second: 2.3 MB of weights, compared in parts
def test_packed_weights_never_go_stale(channels, monkeypatch):
    """Packed weights are cached across calls; every way of changing the
    weights in place (an in-place op, a write through .data, one element)
    must reach the next call, in the forward and in grad_input."""
    monkeypatch.setenv("CONVKIT_WINOGRAD", "1")
    C, K = channels
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, C, 9, 8, generator=gen, dtype=torch.float64)
    go = torch.randn(2, K, 9, 8, generator=gen, dtype=torch.float64)
    w = torch.randn(K, C, 3, 3, generator=gen, dtype=torch.float64)
    hyper = ([1, 1], [1, 1], [1, 1], 1)

    def check():
        torch.testing.assert_close(ops.conv2d(x, w, None, *hyper), F.conv2d(x, w, None, 1, 1))
        grad_input = ops.conv2d_backward(go, x, w, *hyper, [True, False, False])[0]
        torch.testing.assert_close(grad_input, torch.ops.aten.convolution_backward(
            go, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [True, False, False])[0])

    check()
    check()  # served from the cache
    w.mul_(-0.5)
    check()
    w.data[3, 7, 1, 2] += 1.0
    check()
    w.data[-1, -1, -1, -1] += 1.0  # the last part of a large block
    check()
    w.data.copy_(torch.randn(w.shape, generator=gen, dtype=torch.float64))
    check()
    # Another tensor with the same values shares the packed form; a different one does not.
    w = w.clone()
    check()
    w[0, 0, 0, 0] = -w[0, 0, 0, 0]
    check()


def test_corr2d_matches_torch():
    for h, w, kh, kw in [(28, 28, 5, 5), (1, 1, 1, 1), (6, 8, 1, 2), (40, 3, 7, 3)]:
        x, k = torch.randn(h, w, dtype=torch.float64), torch.randn(kh, kw, dtype=torch.float64)
        torch.testing.assert_close(convkit.corr2d(x, k), F.conv2d(x[None, None], k[None, None])[0, 0])


def test_grad_input_not_computed_when_not_requested():
    x = torch.randn(2, 1, 8, 8)
    w = torch.randn(6, 1, 5, 5)
    go = torch.randn(2, 6, 4, 4)
    gi, gw, gb = ops.conv2d_backward(go, x, w, [1, 1], [0, 0], [1, 1], 1, [False, True, True])
    assert gi.numel() == 0 and gw.shape == w.shape and gb.shape == (6,)


def _grads(dtype=torch.float32):
    gen = torch.Generator().manual_seed(1)
    out = []
    for (N, C, K, H, R, s, p, g) in [(4, 32, 48, 15, 3, 1, 1, 1), (8, 1, 6, 28, 5, 1, 2, 1),
                                     (3, 16, 16, 17, 3, 2, 1, 16), (5, 24, 32, 9, 3, 2, 1, 1),
                                     (72, 6, 16, 14, 5, 1, 0, 1)]:
        x = torch.randn(N, C, H, H, generator=gen, dtype=dtype)
        w = torch.randn(K, C // g, R, R, generator=gen, dtype=dtype)
        y = ops.conv2d(x, w, None, [s, s], [p, p], [1, 1], g)
        go = torch.randn(y.shape, generator=gen, dtype=dtype)
        out += [y, *ops.conv2d_backward(go, x, w, [s, s], [p, p], [1, 1], g, [True, True, True])]
    return out


def test_bitwise_independent_of_thread_count():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _grads()
        torch.set_num_threads(max(2, before))
        many = _grads()
        again = _grads()
    finally:
        torch.set_num_threads(before)
    for a, b, c in zip(one, many, again):
        assert torch.equal(a, b) and torch.equal(b, c)


def _isa_available(isa):
    if isa == "generic":
        return True
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    need = {"avx2": ["avx2", "fma"], "avx512": ["avx2", "fma", "avx512f", "avx512vl", "avx512bw", "avx512dq"]}[isa]
    return all(f" {flag}" in flags for flag in need)


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_every_isa_agrees(isa):
    """Each kernel build (forced with CONVKIT_CPU_ISA) agrees with this process's."""
    if not _isa_available(isa):
        pytest.skip(f"this CPU has no {isa}")
    here = os.path.dirname(os.path.abspath(__file__))
    code = ("import sys, torch\n"
            "sys.path.insert(0, sys.argv[2])\n"
            "from test_cpu_kernels import _grads\n"
            "assert torch.ops.convkit._cpu_isa() == sys.argv[3], torch.ops.convkit._cpu_isa()\n"
            "torch.save(_grads(torch.float64), sys.argv[1])\n")
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"convkit_{isa}_{os.getpid()}.pt")
    # The child imports the same convkit as this process.
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(convkit.__file__)))
    env = dict(os.environ, CONVKIT_CPU_ISA=isa,
               PYTHONPATH=package_root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-c", code, path, here, isa], check=True, env=env)
    theirs = torch.load(path)
    os.remove(path)
    for a, b in zip(_grads(torch.float64), theirs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_unknown_isa_is_refused():
    env = dict(os.environ, CONVKIT_CPU_ISA="sse9",
               PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(convkit.__file__))))
    code = "import torch, convkit; torch.ops.convkit.conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 2, 2), None, [1, 1], [0, 0], [1, 1], 1)"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "CONVKIT_CPU_ISA must be avx512, avx2 or generic" in result.stderr


def test_fma_peak_is_a_measurement():
    # The speed reports' yardstick: a finite, positive rate measured on the
    # kernels' own vectors; nonsense round counts are refused.
    peak = torch.ops.convkit._cpu_fma_peak(200000)
    assert math.isfinite(peak) and peak > 0.1
    with pytest.raises(RuntimeError, match="rounds must be positive"):
        torch.ops.convkit._cpu_fma_peak(0)
