import os

import pytest
import torch
from hypothesis import HealthCheck, settings

import convkit  # noqa: F401  (loads the ops)

# A fixed, modest budget by default; CONVKIT_HYPOTHESIS_PROFILE=thorough for a long run.
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=1000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("CONVKIT_HYPOTHESIS_PROFILE", "ci"))

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


def tolerance(dtype):
    return {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-4}
