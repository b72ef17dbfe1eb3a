"""`python -m convkit check`: convkit against the naive loop and nn.Conv2d on every device, plus a speed line."""
import argparse
import time

import torch
import torch.nn.functional as F

from . import devices, functional, nn, reference

# (N, C_in, C_out, H, W, kernel, stride, padding, dilation, groups)
RANDOM_CASES = [
    (2, 3, 4, 9, 11, 3, 1, 1, 1, 1),
    (1, 4, 6, 12, 10, (3, 2), (2, 1), (1, 0), (1, 2), 2),
    (3, 8, 8, 7, 7, 3, 1, "same", 1, 8),
    (2, 6, 16, 14, 14, 5, 1, 0, 1, 1),
]


def _close(actual, expected, dtype):
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    return torch.allclose(actual, expected, rtol=tol, atol=tol)


def _textbook_checks(device):
    X = torch.arange(9.0, device=device).reshape(3, 3)
    K = torch.arange(4.0, device=device).reshape(2, 2)
    ok = torch.equal(functional.corr2d(X, K), torch.tensor([[19.0, 25.0], [37.0, 43.0]], device=device))
    X = torch.ones(6, 8, device=device)
    X[:, 2:6] = 0
    edges = functional.corr2d(X, torch.tensor([[1.0, -1.0]], device=device))
    return ok and torch.equal(edges, reference.corr2d(X, torch.tensor([[1.0, -1.0]], device=device)))


def _random_checks(device, dtype, generator):
    failures = []
    for n, c, k, h, w, ks, stride, padding, dilation, groups in RANDOM_CASES:
        ks = ks if isinstance(ks, tuple) else (ks, ks)
        x = torch.randn(n, c, h, w, generator=generator, dtype=dtype).to(device).requires_grad_()
        layer = nn.Conv2d(c, k, ks, stride, padding, dilation, groups, device=device, dtype=dtype)
        twin = torch.nn.Conv2d(c, k, ks, stride, padding, dilation, groups, device=device, dtype=dtype)
        twin.load_state_dict(layer.state_dict())
        y, y_torch = layer(x), twin(x)
        grads = torch.autograd.grad(y.sum(), (x, layer.weight, layer.bias))
        grads_torch = torch.autograd.grad(y_torch.sum(), (x, twin.weight, twin.bias))
        naive = reference.conv2d(x.detach(), layer.weight.detach(), layer.bias.detach(), stride, padding, dilation,
                                 groups)
        if not (_close(y, y_torch, dtype) and _close(y.detach(), naive, dtype)
                and all(_close(a, b, dtype) for a, b in zip(grads, grads_torch))):
            failures.append((n, c, k, h, w, ks, stride, padding, dilation, groups))
    return failures


def _speed_line(device):
    x = torch.randn(256, 6, 14, 14, device=device)
    layer = nn.Conv2d(6, 16, 5, device=device)
    twin = torch.nn.Conv2d(6, 16, 5, device=device)
    twin.load_state_dict(layer.state_dict())

    def median_time(fn, reps=15):
        fn()
        times = []
        for _ in range(reps):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        return sorted(times)[len(times) // 2]

    with torch.no_grad():
        ours, theirs = median_time(lambda: layer(x)), median_time(lambda: twin(x))
    return (f"{device}: LeNet conv2 forward (256x6x14x14, 5x5 -> 16): convkit {ours * 1e3:.2f} ms, "
            f"nn.Conv2d {theirs * 1e3:.2f} ms, ratio {ours / theirs:.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="convkit check", description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    generator = torch.Generator().manual_seed(args.seed)
    all_ok = True
    for device in devices.try_all_gpus() + ([torch.device("cpu")] if torch.cuda.is_available() else []):
        ok = _textbook_checks(device)
        print(f"{device}: textbook corr2d examples {'ok' if ok else 'FAILED'}")
        all_ok &= ok
        for dtype in (torch.float64, torch.float32):
            failures = _random_checks(device, dtype, generator)
            print(f"{device}: {len(RANDOM_CASES)} random conv2d cases vs naive loop and nn.Conv2d, {dtype}: "
                  f"{'ok' if not failures else 'FAILED ' + repr(failures)}")
            all_ok &= not failures
        print(_speed_line(device))
    print("convkit check: all good" if all_ok else "convkit check: FAILURES")
    return 0 if all_ok else 1
