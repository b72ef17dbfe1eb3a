// The convkit operator library: schemas only. Each device registers its
// kernels with TORCH_LIBRARY_IMPL in its own file; autograd and fake kernels
// are attached from Python (convkit/_meta.py, convkit/_autograd.py).
#include <torch/library.h>

#ifndef CONVKIT_TORCH_VERSION
#define CONVKIT_TORCH_VERSION "unknown"
#endif

namespace convkit {
namespace {

std::string build_torch_version() { return CONVKIT_TORCH_VERSION; }

}  // namespace

TORCH_LIBRARY(convkit, m) {
  m.def("corr2d(Tensor x, Tensor k) -> Tensor");
  m.def(
      "conv2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[2] padding, int[2] dilation, "
      "int groups) -> Tensor");
  m.def(
      "conv2d_backward(Tensor grad_output, Tensor input, Tensor weight, int[2] stride, int[2] padding, "
      "int[2] dilation, int groups, bool[3] output_mask) -> (Tensor, Tensor, Tensor)");
  // A fused layer's epilogue (convkit.nn.Conv2dActPool): pooled = k x k average
  // pooling (stride k) of activated = activation(z); the backward gives grad_z.
  m.def("activation_avg_pool2d(Tensor z, str activation, int window) -> (Tensor pooled, Tensor activated)");
  m.def(
      "activation_avg_pool2d_backward(Tensor grad_pooled, Tensor activated, str activation, int window) -> "
      "Tensor");
  // The torch version this library was compiled against, checked at import.
  m.def("_build_torch_version() -> str", &build_torch_version);
}

}  // namespace convkit
