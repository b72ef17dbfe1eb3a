"""corr2d against the textbook loop and its examples."""
import pytest
import torch

import convkit
from convkit import reference
from conftest import SeenOps


def test_textbook_example(device):
    X = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]], device=device)
    K = torch.tensor([[0.0, 1.0], [2.0, 3.0]], device=device)
    assert torch.equal(convkit.corr2d(X, K), torch.tensor([[19.0, 25.0], [37.0, 43.0]], device=device))


def test_edge_detection(device):
    X = torch.ones((6, 8), device=device)
    X[:, 2:6] = 0
    K = torch.tensor([[1.0, -1.0]], device=device)
    Y = convkit.corr2d(X, K)
    expected = torch.zeros((6, 7), device=device)
    expected[:, 1], expected[:, 5] = 1.0, -1.0
    assert torch.equal(Y, expected)
    # The transposed image has no vertical edges left for this kernel.
    assert torch.equal(convkit.corr2d(X.t(), K), torch.zeros((8, 5), device=device))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(4))
def test_matches_naive_loop(device, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    H, W = torch.randint(1, 20, (2,), generator=g).tolist()
    h, w = torch.randint(1, H + 1, (1,), generator=g).item(), torch.randint(1, W + 1, (1,), generator=g).item()
    X = torch.randn(H, W, generator=g, dtype=dtype).to(device)
    K = torch.randn(h, w, generator=g, dtype=dtype).to(device)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(convkit.corr2d(X, K), reference.corr2d(X, K), rtol=tol, atol=tol)


def test_non_contiguous_input(device):
    X = torch.randn(12, 10, dtype=torch.float64, device=device)
    K = torch.randn(3, 2, dtype=torch.float64, device=device)
    torch.testing.assert_close(convkit.corr2d(X.t(), K.t()), reference.corr2d(X.t(), K.t()))
    torch.testing.assert_close(convkit.corr2d(X[::2, 1:], K), reference.corr2d(X[::2, 1:], K))


def test_gradcheck(device):
    X = torch.randn(7, 6, dtype=torch.float64, device=device, requires_grad=True)
    K = torch.randn(3, 2, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(convkit.corr2d, (X, K))
    assert torch.autograd.gradgradcheck(convkit.corr2d, (X, K))


def test_kernel_as_large_as_input(device):
    X = torch.randn(4, 5, dtype=torch.float64, device=device)
    torch.testing.assert_close(convkit.corr2d(X, X), (X * X).sum().reshape(1, 1))


def test_plain_calls_stay_visible(device):
    # Calls without autograd take a short path to the kernel; dispatch modes
    # and the profiler must still see the op.
    X, K = torch.randn(6, 5, device=device), torch.randn(2, 3, device=device)
    with SeenOps() as seen:
        Y = convkit.corr2d(X, K)
    assert torch.ops.convkit.corr2d.default in seen.ops
    torch.testing.assert_close(Y, reference.corr2d(X, K))
    with torch.autograd.profiler.profile() as prof:
        convkit.corr2d(X, K)
    assert any(event.name == "convkit::corr2d" for event in prof.function_events)
