"""`python -m convkit bench [--quick] [--out DIR]`: convkit against torch's nn.Conv2d.

Times each case's forward and forward + backward pass for convkit and torch
interleaved in one process (alternating calls, medians), so both see the same
machine load, and writes the table as markdown (bench.md) and a bar chart of
the time ratios (bench.png). benchmarks/ (pytest-benchmark) reuses the case
list and the timing helper defined here.
"""
import argparse
import copy
import os
import platform
import statistics
import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

# FMA peak of the reference machine (2-core AMD EPYC Zen, AVX2 + FMA, float32).
PEAK_GFLOPS = {1: 90.0, 2: 177.0}
PEAK_PER_THREAD = 88.5


def peak_gflops(threads=None):
    threads = threads or torch.get_num_threads()
    return PEAK_GFLOPS.get(threads, PEAK_PER_THREAD * threads)


@dataclass
class Case:
    name: str
    N: int = 1
    C: int = 1
    K: int = 1
    H: int = 1
    W: int = 1
    R: int = 3
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    kind: str = "conv"        # conv, corr2d, lenet-step
    input_grad: bool = True   # the first layer's input needs no gradient
    fused: bool = True        # lenet-step: convkit.fuse(model), else the Conv2d layers swapped only
    quick: bool = False       # part of the quick (CI) subset
    targets: dict = field(default_factory=lambda: {"forward": 1.0, "forward+backward": 1.0})
    min_gflops: float = 0.0   # forward target for large layers, GFLOP/s
    min_naive_speedup: float = 0.0  # times faster than the textbook loop, where one runs

    def flops(self):
        if self.kind == "corr2d":
            return 2 * (self.H - self.R + 1) * (self.W - self.R + 1) * self.R * self.R
        if self.kind != "conv":
            return 0
        P = (self.H + 2 * self.padding - self.dilation * (self.R - 1) - 1) // self.stride + 1
        Q = (self.W + 2 * self.padding - self.dilation * (self.R - 1) - 1) // self.stride + 1
        return 2 * self.N * self.K * P * Q * (self.C // self.groups) * self.R * self.R

    def passes(self):
        return ["forward"] if self.kind == "corr2d" else (["step"] if self.kind == "lenet-step" else
                                                          ["forward", "forward+backward"])

    def describe(self):
        if self.kind == "corr2d":
            return f"{self.H}x{self.W}, {self.R}x{self.R} kernel"
        if self.kind == "lenet-step":
            return f"SGD step, batch {self.N}, " + ("convkit.fuse" if self.fused else "Conv2d layers only")
        extra = "".join([f", stride {self.stride}" if self.stride > 1 else "",
                         f", groups {self.groups}" if self.groups > 1 else "",
                         f", dilation {self.dilation}" if self.dilation > 1 else ""])
        return f"{self.N}, {self.C}->{self.K}, {self.H}x{self.W}, k{self.R}, pad {self.padding}{extra}"


def _t(fwd, fb):
    return {"forward": fwd, "forward+backward": fb}


CASES = [
    Case("lenet-c1", 256, 1, 6, 28, 28, 5, padding=2, input_grad=False, quick=True, targets=_t(1.0, 0.25)),
    # The same layer with an input that needs a gradient (as in a middle layer).
    Case("lenet-c1-xgrad", 256, 1, 6, 28, 28, 5, padding=2),
    Case("lenet-c2", 256, 6, 16, 14, 14, 5, quick=True, targets=_t(1.0, 0.5)),
    Case("resnet-3x3", 8, 64, 64, 56, 56, 3, padding=1, quick=True, min_gflops=140),
    Case("vgg-3x3", 8, 128, 128, 28, 28, 3, padding=1, min_gflops=140),
    Case("stride2-3x3", 8, 64, 128, 56, 56, 3, stride=2, padding=1),
    Case("depthwise-3x3", 8, 128, 128, 56, 56, 3, padding=1, groups=128, quick=True, targets=_t(0.2, 0.2)),
    Case("pointwise-1x1", 8, 256, 64, 56, 56, 1),
    Case("stem-7x7-s2", 1, 3, 64, 224, 224, 7, stride=2, padding=3, input_grad=False),
    Case("stem-7x7-s2-b8", 8, 3, 64, 224, 224, 7, stride=2, padding=3, input_grad=False),
    Case("5x5", 8, 32, 64, 28, 28, 5, padding=2),
    Case("3x3-batch1", 1, 256, 256, 14, 14, 3, padding=1),
    Case("1x1-stride2", 8, 256, 512, 28, 28, 1, stride=2),
    Case("grouped-3x3", 8, 128, 128, 28, 28, 3, padding=1, groups=32),
    Case("depthwise-s2", 8, 96, 96, 56, 56, 3, stride=2, padding=1, groups=96),
    Case("dilated-3x3", 8, 64, 64, 56, 56, 3, padding=2, dilation=2),
    Case("cifar-b256", 256, 16, 16, 32, 32, 3, padding=1),
    Case("corr2d", H=28, W=28, R=5, kind="corr2d", quick=True, targets={"forward": 0.5}, min_naive_speedup=1000),
    Case("lenet-step", N=256, kind="lenet-step", quick=True, targets={"step": 0.6}),
    Case("lenet-step-layers", N=256, kind="lenet-step", fused=False, targets={"step": 1.0}),
]


def time_interleaved(fns, min_time=1.0, min_rounds=5, max_rounds=200, sample_time=2e-3):
    """Median seconds per call of each function in `fns` (name -> callable),
    calling them in alternation so they share the machine's state."""
    inner = {}
    for name, fn in fns.items():
        fn()  # warm-up: allocations, caches, lazy init
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        inner[name] = max(1, int(sample_time / max(dt, 1e-7)))
    samples = {name: [] for name in fns}
    start = time.perf_counter()
    rounds = 0
    while rounds < min_rounds or (time.perf_counter() - start < min_time and rounds < max_rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner[name]):
                fn()
            samples[name].append((time.perf_counter() - t0) / inner[name])
        rounds += 1
    return {name: statistics.median(v) for name, v in samples.items()}


def _lenet(conv):
    return nn.Sequential(
        conv(1, 6, kernel_size=5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2, 2),
        conv(6, 16, kernel_size=5), nn.Sigmoid(), nn.AvgPool2d(2, 2), nn.Flatten(),
        nn.Linear(400, 120), nn.Sigmoid(), nn.Linear(120, 84), nn.Sigmoid(), nn.Linear(84, 10))


def make_callables(case, pass_name, include_naive=True):
    """name -> zero-argument callable for one case and pass: 'convkit', 'torch'
    and, where it finishes in seconds, 'naive' (the textbook loop)."""
    import convkit
    import convkit.nn
    import convkit.reference

    gen = torch.Generator().manual_seed(0)
    if case.kind == "corr2d":
        X, Kr = torch.randn(case.H, case.W, generator=gen), torch.randn(case.R, case.R, generator=gen)
        fns = {"convkit": lambda: convkit.corr2d(X, Kr), "torch": lambda: F.conv2d(X[None, None], Kr[None, None])}
        if include_naive:
            fns["naive"] = lambda: convkit.reference.corr2d(X, Kr)
        return fns
    if case.kind == "lenet-step":
        torch.manual_seed(0)
        ref = _lenet(nn.Conv2d)
        mine = _lenet(convkit.nn.Conv2d)
        mine.load_state_dict(ref.state_dict())
        if case.fused:  # conv, sigmoid and pooling as one layer each time
            mine = convkit.fuse(mine)
        xb = torch.randn(case.N, 1, 28, 28, generator=gen)
        yb = torch.randint(0, 10, (case.N,), generator=gen)

        def step_fn(net):
            opt = torch.optim.SGD(net.parameters(), lr=0.9)

            def step():
                opt.zero_grad()
                F.cross_entropy(net(xb), yb).backward()
                opt.step()
            return step
        return {"convkit": step_fn(mine), "torch": step_fn(ref)}

    x = torch.randn(case.N, case.C, case.H, case.W, generator=gen).requires_grad_(case.input_grad)
    args = (case.C, case.K, case.R)
    kw = dict(stride=case.stride, padding=case.padding, dilation=case.dilation, groups=case.groups)
    ref = nn.Conv2d(*args, **kw)
    mine = convkit.nn.Conv2d(*args, **kw)
    mine.load_state_dict(ref.state_dict())
    if pass_name == "forward":
        return {"convkit": lambda: mine(x), "torch": lambda: ref(x)}
    go = torch.randn(ref(x).shape, generator=gen)

    # Each side has its own input: a call drops the input gradient its side
    # made the call before, and freeing torch's (a fresh mapping for some
    # shapes) must not be timed as convkit's.
    def fb(m, inp):
        def run():
            inp.grad = None
            m.zero_grad(set_to_none=True)
            m(inp).backward(go)
        return run
    return {"convkit": fb(mine, x), "torch": fb(ref, x.detach().clone().requires_grad_(case.input_grad))}


def measure(case, pass_name, quick=False, include_naive=True):
    """Interleaved medians for one case and pass, as a result row (dict).
    The FMA ceiling is measured right before (a shared machine's moves from
    minute to minute): % peak is against the reference machine's nominal
    peak, % peak now against that measurement."""
    fns = make_callables(case, pass_name, include_naive=include_naive)
    peak_now = torch.ops.convkit._cpu_fma_peak()
    times = time_interleaved(fns, min_time=0.3 if quick else 2.0, min_rounds=3 if quick else 5)
    flops = case.flops() * (1 if pass_name == "forward" else (3 if case.input_grad else 2))
    t_mine, t_ref = times["convkit"], times["torch"]
    row = {"case": case.name, "shape": case.describe(), "pass": pass_name,
           "torch_ms": t_ref * 1e3, "convkit_ms": t_mine * 1e3, "ratio": t_mine / t_ref,
           "gflops": flops / t_mine / 1e9 if flops else None,
           "peak_pct": 100 * flops / t_mine / 1e9 / peak_gflops() if flops else None,
           "peak_now_gflops": peak_now, "peak_now_pct": 100 * flops / t_mine / 1e9 / peak_now if flops else None,
           "naive_ms": times["naive"] * 1e3 if "naive" in times else None,
           "target": case.targets.get(pass_name)}
    row["met"] = row["target"] is None or row["ratio"] <= row["target"]
    if pass_name == "forward" and case.min_gflops:
        row["met"] = row["met"] and row["gflops"] >= case.min_gflops
        row["target_gflops"] = case.min_gflops
    if row["naive_ms"]:
        row["naive_speedup"] = row["naive_ms"] / row["convkit_ms"]
        if case.min_naive_speedup:
            row["met"] = row["met"] and row["naive_speedup"] >= case.min_naive_speedup
            row["target_naive"] = case.min_naive_speedup
    return row


def format_table(rows):
    head = ("| case | shape | pass | torch ms | convkit ms | ratio | target | GFLOP/s | % peak | peak now | % peak now | met |\n"
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|:---:|\n")
    lines = []
    for r in rows:
        target = f"<= {r['target']:.2f}" if r["target"] is not None else ""
        if r.get("target_gflops"):
            target += f", >= {r['target_gflops']:.0f} GF/s"
        if r.get("target_naive"):
            target += f", >= {r['target_naive']:.0f}x naive"
        gf = f"{r['gflops']:.1f}" if r["gflops"] else ""
        pk = f"{r['peak_pct']:.0f}%" if r["peak_pct"] else ""
        now = f"{r['peak_now_gflops']:.0f} | " + (f"{r['peak_now_pct']:.0f}%" if r["peak_now_pct"] else "")
        extra = f" (naive {r['naive_ms']:.1f} ms, {r['naive_speedup']:.0f}x)" if r.get("naive_ms") else ""
        lines.append(f"| {r['case']} | {r['shape']} | {r['pass']} | {r['torch_ms']:.3f} | "
                     f"{r['convkit_ms']:.3f}{extra} | {r['ratio']:.2f} | {target} | {gf} | {pk} | {now} | "
                     f"{'yes' if r['met'] else 'NO'} |")
    return head + "\n".join(lines) + "\n"


def machine_line():
    import convkit  # noqa: F401
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"float32, convkit kernels: {torch.ops.convkit._cpu_isa()}; peak {peak_gflops():.0f} GFLOP/s")


def write_chart(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = [f"{r['case']} {r['pass'].replace('forward+backward', 'fwd+bwd').replace('forward', 'fwd')}" for r in rows]
    ratios = [r["ratio"] for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(rows) + 1.5))
    colors = ["tab:green" if r["met"] else "tab:red" for r in rows]
    ax.barh(range(len(rows)), ratios, color=colors)
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("convkit time / torch nn.Conv2d time (lower is better)")
    ax.set_title("convkit vs torch on CPU (green: target met)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def selected_cases(quick):
    return [c for c in CASES if c.quick or not quick]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="convkit bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few cases, short timing (CI)")
    parser.add_argument("--out", default=".", help="folder for bench.md and bench.png")
    parser.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    args = parser.parse_args(argv)
    names = [n for n in args.cases.split(",") if n]
    cases = [c for c in selected_cases(args.quick) if not names or c.name in names]
    rows = []
    for case in cases:
        for pass_name in case.passes():
            row = measure(case, pass_name, quick=args.quick)
            rows.append(row)
            print(f"{row['case']:16s} {row['pass']:17s} torch {row['torch_ms']:8.3f} ms  convkit "
                  f"{row['convkit_ms']:8.3f} ms  ratio {row['ratio']:.2f}", flush=True)
    os.makedirs(args.out, exist_ok=True)
    md = f"# convkit CPU benchmark\n\nMachine: {machine_line()}\n\n" + format_table(rows)
    with open(os.path.join(args.out, "bench.md"), "w") as f:
        f.write(md)
    write_chart(rows, os.path.join(args.out, "bench.png"))
    print(md)
    met = sum(r["met"] for r in rows)
    print(f"{met}/{len(rows)} targets met; wrote {os.path.join(args.out, 'bench.md')} and bench.png")
    return 0
