"""convkit: fast C++/CUDA 2-D convolution and cross-correlation for PyTorch."""
from . import _ops  # noqa: F401  (loads the operator library first)
from . import _meta  # noqa: F401  (fake kernels)
from ._autograd import Conv2dFunction
from . import backends, data, functional, models, nn, reference
from .backends import set_cpu_benchmark
from .devices import try_all_gpus, try_gpu
from .functional import conv2d, corr2d
from .nn import convert, fuse

__version__ = "0.1.0"
__all__ = ["Conv2dFunction", "conv2d", "convert", "corr2d", "fuse", "set_cpu_benchmark", "backends", "data",
           "functional", "models", "nn", "reference", "try_all_gpus", "try_gpu"]
