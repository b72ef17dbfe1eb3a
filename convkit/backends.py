"""Settings of convkit's CPU kernels."""
import torch

from . import _ops  # noqa: F401  (registers the ops)


def set_cpu_benchmark(enabled):
    """Measured kernel choice, like torch.backends.cudnn.benchmark: when on,
    the first call of conv2d (or its backward) for each shape runs it with
    each choice between the Winograd and the direct kernels, and later calls
    of that shape run the fastest. The built-in rules were measured on a few
    machines; on others the faster family can differ. The first call of a
    shape then costs several passes, so it pays where shapes repeat (training,
    inference loops). Off by default. Returns the previous setting."""
    return torch.ops.convkit._set_cpu_benchmark(bool(enabled))
