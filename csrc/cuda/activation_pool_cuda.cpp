// Torch glue for the fused layer's epilogue on CUDA (cuda/activation_pool.cu):
// checks shared with the CPU backend, contiguous operands, a device guard and
// the current stream.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "../checks.h"
#include "activation_pool_cuda.h"

namespace convkit {
namespace cuda {
namespace {

DType pool_dtype(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kDouble: return DType::Float64;
    case at::kHalf: return DType::Float16;
    case at::kBFloat16: return DType::BFloat16;
    default: return DType::Float32;  // the checks admit floating types only
  }
}

void check_launch(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA kernel launch failed: ", cudaGetErrorString(err));
}

std::tuple<at::Tensor, at::Tensor> activation_avg_pool2d(const at::Tensor& z_any, c10::string_view activation,
                                                         int64_t window) {
  const char* op = "convkit::activation_avg_pool2d";
  Activation act;
  const PoolShape s = check_activation_pool(op, z_any, activation, window, &act);
  const c10::cuda::CUDAGuard guard(z_any.device());
  const at::Tensor z = z_any.contiguous();
  at::Tensor y = at::empty(z.sizes(), z.options());
  at::Tensor pooled = at::empty({z.size(0), z.size(1), s.rows_out(), s.cols_out()}, z.options());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(z.device().index()).stream();
  check_launch(activation_pool_forward(s, act, pool_dtype(z), z.const_data_ptr(), y.mutable_data_ptr(),
                                           pooled.mutable_data_ptr(), stream),
               op);
  return {pooled, y};
}

at::Tensor activation_avg_pool2d_backward(const at::Tensor& grad_pooled_any, const at::Tensor& activated_any,
                                          c10::string_view activation, int64_t window) {
  const char* op = "convkit::activation_avg_pool2d_backward";
  Activation act;
  const PoolShape s = check_activation_pool_backward(op, grad_pooled_any, activated_any, activation, window, &act);
  const c10::cuda::CUDAGuard guard(activated_any.device());
  const at::Tensor gp = grad_pooled_any.contiguous(), y = activated_any.contiguous();
  at::Tensor gz = at::empty(y.sizes(), y.options());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(y.device().index()).stream();
  check_launch(activation_pool_backward(s, act, pool_dtype(y), gp.const_data_ptr(), y.const_data_ptr(),
                                                    gz.mutable_data_ptr(), stream),
               op);
  return gz;
}

}  // namespace

TORCH_LIBRARY_IMPL(convkit, CUDA, m) {
  m.impl("activation_avg_pool2d", &activation_avg_pool2d);
  m.impl("activation_avg_pool2d_backward", &activation_avg_pool2d_backward);
}

}  // namespace cuda
}  // namespace convkit
