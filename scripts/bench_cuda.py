"""convkit vs nn.Conv2d (cuDNN) on one GPU: forward and forward + backward,
float32 with TF32 off and on, and bfloat16, on the benchmark shapes. Timings
are CUDA-event medians with convkit and cuDNN interleaved on the same
tensors. Prints a markdown table and writes it to --out.

    python scripts/bench_cuda.py [--out bench_cuda.md] [--iters 20] [--cases resnet,vgg]
"""
import argparse
import statistics
import sys
import time

import torch

import convkit

# name: (N, Cin, Cout, H, W, kernel, stride, padding, groups, input needs grad)
CASES = {
    "lenet-c1": (256, 1, 6, 28, 28, 5, 1, 2, 1, False),
    "lenet-c2": (256, 6, 16, 14, 14, 5, 1, 0, 1, True),
    "resnet": (8, 64, 64, 56, 56, 3, 1, 1, 1, True),
    "vgg": (8, 128, 128, 28, 28, 3, 1, 1, 1, True),
    "stride2": (8, 64, 128, 56, 56, 3, 2, 1, 1, True),
    "depthwise": (8, 128, 128, 56, 56, 3, 1, 1, 128, True),
    "pointwise": (8, 256, 64, 56, 56, 1, 1, 0, 1, True),
}
MODES = [("fp32", torch.float32, False), ("fp32+tf32", torch.float32, True), ("bf16", torch.bfloat16, False)]


def time_ms(fn, iters):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / iters


def bench_case(name, cfg, dtype, tf32, iters, reps):
    n, cin, cout, h, w, k, stride, pad, groups, input_grad = cfg
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    ref = torch.nn.Conv2d(cin, cout, k, stride, pad, groups=groups).cuda().to(dtype)
    ours = convkit.nn.Conv2d(cin, cout, k, stride, pad, groups=groups).cuda().to(dtype)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(n, cin, h, w, device="cuda", dtype=dtype, requires_grad=input_grad)
    out = ref(x)
    grad = torch.randn_like(out)
    p = (h + 2 * pad - k) // stride + 1
    q = (w + 2 * pad - k) // stride + 1
    flops = 2 * n * cout * p * q * (cin // groups) * k * k
    # forward + backward: grad weight always, grad input when the input needs it
    flops_fb = flops * (3 if input_grad else 2)

    def forward(layer):
        return lambda: layer(x)

    def forward_backward(layer):
        def step():
            layer.zero_grad(set_to_none=True)
            if x.grad is not None:
                x.grad = None
            layer(x).backward(grad)
        return step

    rows = []
    for pass_name, make, work in (("fwd", forward, flops), ("fwd+bwd", forward_backward, flops_fb)):
        fns = {"convkit": make(ours), "cudnn": make(ref)}
        for fn in fns.values():  # warm-up: cuDNN heuristics, caching allocator, first-call costs
            for _ in range(3):
                fn()
        torch.cuda.synchronize()
        samples = {key: [] for key in fns}
        for _ in range(reps):  # interleaved
            for key, fn in fns.items():
                samples[key].append(time_ms(fn, iters))
        t_ours, t_ref = statistics.median(samples["convkit"]), statistics.median(samples["cudnn"])
        rows.append((name, MODE_NAMES[(dtype, tf32)], pass_name, t_ours, t_ref, work / t_ours / 1e9,
                     work / t_ref / 1e9, t_ours / t_ref))
    return rows


MODE_NAMES = {(d, t): n for n, d, t in MODES}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_cuda: no GPU")
    torch.backends.cudnn.benchmark = True  # let cuDNN pick its fastest algorithm
    began = time.time()
    rows = []
    for name in args.cases.split(","):
        for _, dtype, tf32 in MODES:
            try:
                rows.extend(bench_case(name, CASES[name], dtype, tf32, args.iters, args.reps))
            except Exception as error:  # a failing case must not hide the others
                rows.append((name, MODE_NAMES[(dtype, tf32)], f"error: {error}".replace("|", "/")[:80],
                             float("nan"), float("nan"), float("nan"), float("nan"), float("nan")))
            print(f"  {name} {MODE_NAMES[(dtype, tf32)]} done", file=sys.stderr, flush=True)
    props = torch.cuda.get_device_properties(0)
    lines = [f"convkit vs nn.Conv2d (cuDNN {torch.backends.cudnn.version()}, benchmark mode) on {props.name}, "
             f"torch {torch.__version__}; CUDA-event medians of {args.reps} x {args.iters} calls; "
             f"ratio = convkit / cuDNN time (lower is better)", "",
             "| case | mode | pass | convkit ms | cuDNN ms | convkit TFLOP/s | cuDNN TFLOP/s | ratio |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for name, mode, pass_name, t_ours, t_ref, f_ours, f_ref, ratio in rows:
        lines.append(f"| {name} | {mode} | {pass_name} | {t_ours:.3f} | {t_ref:.3f} | {f_ours:.2f} | {f_ref:.2f} "
                     f"| {ratio:.2f} |")
    lines.append("")
    lines.append(f"({time.time() - began:.0f} s)")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
