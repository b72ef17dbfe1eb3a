"""The pooled CPU buffers: freed outputs come back to later calls, and reused
(stale) memory never leaks into a result."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import convkit


def _conv(x, w, **kw):
    return convkit.conv2d(x, w, None, **kw)


@pytest.mark.skipif(os.environ.get("CONVKIT_SANITIZED") == "1",
                    reason="sanitizer builds return every block to the system, so each use after free is seen")
def test_freed_output_block_is_reused():
    x, w = torch.randn(2, 8, 64, 64), torch.randn(16, 8, 3, 3)  # 512 KiB output: pooled
    y = _conv(x, w, padding=1)
    ptr = y.data_ptr()
    del y
    assert _conv(x, w, padding=1).data_ptr() == ptr


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stale_blocks_do_not_change_results(dtype):
    torch.manual_seed(0)
    # Fill the pool with large nonzero blocks, then run layers whose outputs,
    # padded copies and workspaces land in them.
    junk = [_conv(torch.randn(4, 16, 48, 48, dtype=dtype), torch.randn(32, 16, 3, 3, dtype=dtype), padding=1)
            for _ in range(3)]
    del junk
    for kw, shape, wshape in [(dict(padding=1), (4, 16, 48, 48), (32, 16, 3, 3)),
                              (dict(padding=2, stride=2), (4, 3, 96, 96), (32, 3, 5, 5)),
                              (dict(padding=1, groups=16), (4, 16, 96, 96), (16, 1, 3, 3)),
                              (dict(), (4, 64, 40, 40), (48, 64, 1, 1))]:
        x = torch.randn(*shape, dtype=dtype, requires_grad=True)
        w = torch.randn(*wshape, dtype=dtype, requires_grad=True)
        y = _conv(x, w, **kw)
        gy = torch.randn_like(y)
        gx, gw = torch.autograd.grad(y, (x, w), gy)
        x_ref, w_ref = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
        y_ref = F.conv2d(x_ref, w_ref, **kw)
        gx_ref, gw_ref = torch.autograd.grad(y_ref, (x_ref, w_ref), gy.double())
        tol = dict(rtol=1e-4, atol=1e-3) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-9)
        torch.testing.assert_close(y.double(), y_ref, **tol)
        torch.testing.assert_close(gx.double(), gx_ref, **tol)
        torch.testing.assert_close(gw.double(), gw_ref, **tol)


def test_cache_off_still_computes():
    code = ("import torch, convkit, torch.nn.functional as F\n"
            "x, w = torch.randn(2, 8, 64, 64), torch.randn(16, 8, 3, 3)\n"
            "for _ in range(3):\n"
            "    torch.testing.assert_close(convkit.conv2d(x, w, padding=1), F.conv2d(x, w, padding=1),"
            " rtol=1e-4, atol=1e-4)\n")
    env = dict(os.environ, CONVKIT_CPU_CACHE_MB="0")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
