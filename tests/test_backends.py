"""Measured kernel choice (convkit.set_cpu_benchmark): results stay those of
the layer, each shape is measured once, and shapes with nothing to choose
are not measured."""
import pytest
import torch
import torch.nn.functional as F

import convkit


@pytest.fixture
def measuring():
    previous = convkit.set_cpu_benchmark(True)
    try:
        yield
    finally:
        convkit.set_cpu_benchmark(previous)


def _measured():
    return torch.ops.convkit._cpu_benchmark_shapes()


def test_setting_returns_the_previous_one():
    previous = convkit.set_cpu_benchmark(True)
    try:
        assert convkit.set_cpu_benchmark(False) is True
        assert convkit.set_cpu_benchmark(False) is False
    finally:
        convkit.set_cpu_benchmark(previous)


@pytest.mark.parametrize("kernel,padding,dilation", [(3, 1, 1), (5, 2, 1), (3, 2, 2)])
def test_measured_layers_match_torch(measuring, kernel, padding, dilation):
    torch.manual_seed(kernel * 10 + dilation)
    # Sizes no other test uses, so the first call is the one that measures.
    x = torch.randn(3, 33, 11, 13, dtype=torch.float64, requires_grad=True)
    w = torch.randn(34, 33, kernel, kernel, dtype=torch.float64, requires_grad=True)
    b = torch.randn(34, dtype=torch.float64, requires_grad=True)
    before = _measured()
    for _ in range(2):  # measured, then remembered
        y = convkit.conv2d(x, w, b, padding=padding, dilation=dilation)
        go = torch.randn_like(y)
        grads = torch.autograd.grad(y, (x, w, b), go)
        ref = F.conv2d(x, w, b, padding=padding, dilation=dilation)
        ref_grads = torch.autograd.grad(ref, (x, w, b), go)
        torch.testing.assert_close(y, ref)
        for got, want in zip(grads, ref_grads):
            torch.testing.assert_close(got, want)
        assert _measured() == before + 2  # the forward and the backward, once each


def test_shapes_without_a_choice_are_not_measured(measuring):
    x, w = torch.randn(2, 8, 12, 12), torch.randn(8, 8, 3, 3)
    before = _measured()
    y = convkit.conv2d(x, w, stride=2, padding=1)  # Winograd runs stride 1 only
    torch.testing.assert_close(y, F.conv2d(x, w, stride=2, padding=1), rtol=1e-4, atol=1e-4)
    assert _measured() == before


def test_nothing_is_measured_when_off():
    previous = convkit.set_cpu_benchmark(False)
    try:
        before = _measured()
        x, w = torch.randn(2, 8, 9, 9), torch.randn(8, 8, 3, 3)
        convkit.conv2d(x, w, padding=1)
        assert _measured() == before
    finally:
        convkit.set_cpu_benchmark(previous)
