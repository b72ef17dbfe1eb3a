// CPU ops for the epilogue of a fused layer: activation and average pooling
// of a convolution's output in one pass over it, and their gradient in one
// pass back (torch's unfused layers take two passes each way, plus a zeroed
// gradient buffer). Planes are split across threads; the arithmetic is in
// kernels_impl.h.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <tuple>

#include "../checks.h"
#include "buffers.h"
#include "common.h"
#include "kernels.h"

namespace convkit {
namespace cpu {
namespace {

std::tuple<at::Tensor, at::Tensor> activation_avg_pool2d(const at::Tensor& z_any, c10::string_view activation,
                                                         int64_t window) {
  Activation act;
  const PoolShape s = check_activation_pool("convkit::activation_avg_pool2d", z_any, activation, window, &act);
  const at::Tensor z = z_any.contiguous();
  at::Tensor y = empty_pooled(z.sizes(), z.options());
  at::Tensor pooled = empty_pooled({z.size(0), z.size(1), s.rows_out(), s.cols_out()}, z.options());
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "convkit_activation_avg_pool2d", [&] {
    const int64_t plane = s.rows * s.cols, plane_out = s.rows_out() * s.cols_out();
    at::parallel_for(0, s.planes, grain_for(4 * plane), [&](int64_t begin, int64_t end) {
      ActPool<scalar_t> a;
      a.z = z.const_data_ptr<scalar_t>() + begin * plane;
      a.y = y.mutable_data_ptr<scalar_t>() + begin * plane;
      a.pooled = pooled.mutable_data_ptr<scalar_t>() + begin * plane_out;
      a.planes = end - begin;
      a.rows = s.rows;
      a.cols = s.cols;
      a.k = s.k;
      a.act = act;
      kern<scalar_t>().act_pool(a);
    });
  });
  return {pooled, y};
}

at::Tensor activation_avg_pool2d_backward(const at::Tensor& grad_pooled_any, const at::Tensor& activated_any,
                                          c10::string_view activation, int64_t window) {
  Activation act;
  const PoolShape s = check_activation_pool_backward("convkit::activation_avg_pool2d_backward", grad_pooled_any,
                                                     activated_any, activation, window, &act);
  const at::Tensor gp = grad_pooled_any.contiguous(), y = activated_any.contiguous();
  at::Tensor gz = empty_pooled(y.sizes(), y.options());
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "convkit_activation_avg_pool2d_backward", [&] {
    const int64_t plane = s.rows * s.cols, plane_out = s.rows_out() * s.cols_out();
    at::parallel_for(0, s.planes, grain_for(4 * plane), [&](int64_t begin, int64_t end) {
      WorkBuffer<scalar_t> spread(s.cols + 64);
      ActPoolGrad<scalar_t> a;
      a.gp = gp.const_data_ptr<scalar_t>() + begin * plane_out;
      a.y = y.const_data_ptr<scalar_t>() + begin * plane;
      a.gz = gz.mutable_data_ptr<scalar_t>() + begin * plane;
      a.planes = end - begin;
      a.rows = s.rows;
      a.cols = s.cols;
      a.k = s.k;
      a.act = act;
      a.scratch = spread.data();
      kern<scalar_t>().act_pool_grad(a);
    });
  });
  return gz;
}

}  // namespace

TORCH_LIBRARY_IMPL(convkit, CPU, m) {
  m.impl("activation_avg_pool2d", &activation_avg_pool2d);
  m.impl("activation_avg_pool2d_backward", &activation_avg_pool2d_backward);
}

}  // namespace cpu
}  // namespace convkit
