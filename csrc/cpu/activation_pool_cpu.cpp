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

// f(first plane, shape of the planes) for ranges of planes, in parallel.
template <typename F>
void for_plane_ranges(const PoolShape& s, const F& f) {
  at::parallel_for(0, s.planes, grain_for(4 * s.plane_size()), [&](int64_t begin, int64_t end) {
    PoolShape range = s;
    range.planes = end - begin;
    f(begin, range);
  });
}

std::tuple<at::Tensor, at::Tensor> activation_avg_pool2d(const at::Tensor& z_any, c10::string_view activation,
                                                         int64_t window) {
  Activation act;
  const PoolShape s = check_activation_pool("convkit::activation_avg_pool2d", z_any, activation, window, &act);
  const at::Tensor z = z_any.contiguous();
  at::Tensor y = empty_pooled(z.sizes(), z.options());
  at::Tensor pooled = empty_pooled({z.size(0), z.size(1), s.rows_out(), s.cols_out()}, z.options());
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "convkit_activation_avg_pool2d", [&] {
    for_plane_ranges(s, [&](int64_t begin, const PoolShape& planes) {
      const ActPool<scalar_t> a{planes, act, z.const_data_ptr<scalar_t>() + begin * s.plane_size(),
                                y.mutable_data_ptr<scalar_t>() + begin * s.plane_size(),
                                pooled.mutable_data_ptr<scalar_t>() + begin * s.pooled_plane_size()};
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
    for_plane_ranges(s, [&](int64_t begin, const PoolShape& planes) {
      WorkBuffer<scalar_t> spread(s.cols + 64);
      const ActPoolGrad<scalar_t> a{planes, act, gp.const_data_ptr<scalar_t>() + begin * s.pooled_plane_size(),
                                    y.const_data_ptr<scalar_t>() + begin * s.plane_size(),
                                    gz.mutable_data_ptr<scalar_t>() + begin * s.plane_size(), spread.data()};
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
