import os

import pytest
import torch
from hypothesis import HealthCheck, settings
from torch.utils._python_dispatch import TorchDispatchMode

import convkit  # noqa: F401  (loads the ops)

# A fixed, modest budget by default; CONVKIT_HYPOTHESIS_PROFILE=thorough for a long run.
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=1000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("CONVKIT_HYPOTHESIS_PROFILE", "ci"))
THOROUGH = os.environ.get("CONVKIT_HYPOTHESIS_PROFILE", "") == "thorough"


def budget(examples):
    """Hypothesis settings for a property test: `examples` per run (10x and
    random in a thorough run), no deadline, the failing blob printed."""
    return settings(max_examples=examples * (10 if THOROUGH else 1), derandomize=not THOROUGH,
                    database=None, deadline=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture(autouse=True)
def exact_float32_on_cuda():
    """torch's CUDA conv and matmul may use TF32 by default (10-bit mantissa):
    comparisons need exact float32, so it is off unless a test turns it on."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def assert_same_format(actual, expected):
    """convkit's output layout follows torch's rule: channels_last when the
    input or the weight suggests it. Two deliberate exceptions are not
    compared: empty results (torch's strides there depend on its internal
    path) and float64 on CUDA, where cuDNN falls back to NCHW while convkit
    keeps the caller's channels_last layout."""
    if expected.dim() != 4 or expected.numel() == 0 or (expected.is_cuda and expected.dtype == torch.float64):
        return
    for fmt in (torch.contiguous_format, torch.channels_last):
        assert actual.is_contiguous(memory_format=fmt) == expected.is_contiguous(memory_format=fmt), (
            f"output strides {actual.stride()} do not follow torch's {expected.stride()}")


def tolerance(dtype):
    return {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-4}


class SeenOps(TorchDispatchMode):
    """Records every op that reaches the Python dispatch key (direct entries must not hide the ops)."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func)
        return func(*args, **(kwargs or {}))
