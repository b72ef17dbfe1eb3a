// Torch glue for the CUDA kernels in cuda/: argument checks (shared with the
// CPU backend), a device guard and the current stream for every launch,
// operand preparation as the kernel plan asks, error checking, and the
// CUDA and AutocastCUDA registrations of the convkit ops.
#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdlib>
#include <cstring>

#include "../checks.h"
#include "conv2d_cuda.h"

namespace convkit {
namespace cuda {
namespace {

DType dtype_of(const char* op, const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::Float32;
    case at::kDouble: return DType::Float64;
    case at::kHalf: return DType::Float16;
    case at::kBFloat16: return DType::BFloat16;
    default: TORCH_CHECK(false, op, ": ", t.scalar_type(), " is not supported on CUDA");
  }
  return DType::Float32;
}

Operand operand(const at::Tensor& t) {
  Operand o;
  o.data = t.const_data_ptr();
  for (int i = 0; i < 4; ++i) o.stride[i] = t.stride(i);
  return o;
}

MutableOperand mutable_operand(const at::Tensor& t) {
  MutableOperand o;
  o.data = t.mutable_data_ptr();
  for (int i = 0; i < 4; ++i) o.stride[i] = t.stride(i);
  return o;
}

// CONVKIT_CUDA_ALGO=naive|direct|gemm|tensorcore pins a kernel family (where
// its preconditions hold), so tests can check each one against the others.
Algo forced_algo() {
  const char* env = std::getenv("CONVKIT_CUDA_ALGO");
  if (env == nullptr || *env == '\0' || std::strcmp(env, "auto") == 0) return Algo::Auto;
  for (Algo a : {Algo::Naive, Algo::Direct, Algo::Gemm, Algo::TensorCore})
    if (std::strcmp(env, algo_name(a)) == 0) return a;
  TORCH_CHECK(false, "CONVKIT_CUDA_ALGO must be one of auto, naive, direct, gemm, tensorcore; got '", env, "'");
  return Algo::Auto;
}

Options options() {
  Options opt;
  opt.allow_tf32 = at::globalContext().allowTF32CuDNN();
  opt.deterministic = at::globalContext().deterministicAlgorithms();
  opt.force = forced_algo();
  return opt;
}

void check_launch(cudaError_t err, const char* op, const char* pass, const Plan& plan) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA kernel launch failed (", pass, ", ", algo_name(plan.algo),
              " kernels): ", cudaGetErrorString(err));
}

// The tensor-core kernels read NHWC-contiguous operands through 16-byte copies.
at::Tensor channels_last_aligned(const at::Tensor& t) {
  at::Tensor c = t.contiguous(at::MemoryFormat::ChannelsLast);
  if (reinterpret_cast<uintptr_t>(c.const_data_ptr()) % 16 != 0) c = c.clone(at::MemoryFormat::ChannelsLast);
  return c;
}

// Weight [K, C/G, R, S] regrouped as [G, C/G, R, S, K/G] for grad input: the
// transposed problem's "output channels" are the input channels.
at::Tensor regrouped_weight(const at::Tensor& weight, const ConvShape& s) {
  return weight.contiguous()
      .view({s.groups, s.K / s.groups, s.C / s.groups, s.R, s.S})
      .permute({0, 2, 3, 4, 1})
      .contiguous();
}

at::Tensor forward(const char* op, const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                   const ConvShape& s, at::Tensor y) {
  if (y.numel() == 0) return y;
  const Options opt = options();
  const DType dtype = dtype_of(op, input);
  const Plan plan = plan_forward(s, dtype, opt);
  const at::Tensor x = plan.needs_channels_last ? channels_last_aligned(input) : input;
  const at::Tensor w = plan.needs_channels_last ? channels_last_aligned(weight) : weight;
  const at::Tensor b = bias.defined() ? bias.contiguous() : bias;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(input.device().index()).stream();
  check_launch(conv2d_forward(plan, s, dtype, operand(x), operand(w), b.defined() ? b.const_data_ptr() : nullptr,
                              mutable_operand(y), opt, stream),
               op, "forward", plan);
  return y;
}

at::Tensor conv2d(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  const char* op = "convkit::conv2d";
  const ConvShape s = check_conv2d(op, input, weight, bias, stride, padding, dilation, groups);
  const c10::cuda::CUDAGuard guard(input.device());
  at::Tensor y = at::empty({s.N, s.K, s.P, s.Q},
                           input.options().memory_format(output_memory_format(input, weight)));
  return forward(op, input, weight, bias.has_value() ? *bias : at::Tensor(), s, y);
}

at::Tensor corr2d(const at::Tensor& x, const at::Tensor& k) {
  const char* op = "convkit::corr2d";
  const ConvShape s = check_corr2d(x, k);
  const c10::cuda::CUDAGuard guard(x.device());
  // 4-D views keep the operands' own strides: no copies.
  const at::Tensor x4 = x.unsqueeze(0).unsqueeze(0), k4 = k.unsqueeze(0).unsqueeze(0);
  at::Tensor y = at::empty({1, 1, s.P, s.Q}, x.options());
  return forward(op, x4, k4, at::Tensor(), s, y).view({s.P, s.Q});
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv2d_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                                              const at::Tensor& weight, at::IntArrayRef stride,
                                                              at::IntArrayRef padding, at::IntArrayRef dilation,
                                                              int64_t groups, std::array<bool, 3> output_mask) {
  const char* op = "convkit::conv2d_backward";
  const ConvShape s = check_conv2d_backward(grad_output, input, weight, stride, padding, dilation, groups);
  const c10::cuda::CUDAGuard guard(input.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(input.device().index()).stream();
  const Options opt = options();
  const DType dtype = dtype_of(op, input);
  const bool no_grad_output = grad_output.numel() == 0;
  // Gradients nobody asked for come back as empty tensors and cost nothing.
  at::Tensor grad_input = at::empty({0}, input.options());
  at::Tensor grad_weight = at::empty({0}, input.options());
  at::Tensor grad_bias = at::empty({0}, input.options());

  if (output_mask[0]) {
    grad_input = at::empty(input.sizes(), input.options().memory_format(input.suggest_memory_format()));
    if (grad_input.numel() > 0) {
      if (no_grad_output) {
        grad_input.zero_();
      } else {
        const Plan plan = plan_backward_input(s, dtype, opt);
        const at::Tensor gy = plan.needs_channels_last ? channels_last_aligned(grad_output) : grad_output;
        const at::Tensor w = plan.needs_channels_last ? regrouped_weight(weight, s) : weight;
        check_launch(conv2d_backward_input(plan, s, dtype, operand(gy), operand(w), mutable_operand(grad_input), opt,
                                           stream),
                     op, "grad input", plan);
      }
    }
  }
  if (output_mask[1]) {
    grad_weight = at::empty(weight.sizes(), weight.options().memory_format(weight.suggest_memory_format()));
    if (grad_weight.numel() > 0) {
      if (no_grad_output) {
        grad_weight.zero_();
      } else {
        const Plan plan = plan_backward_weight(s, dtype, opt);
        at::Tensor workspace;
        if (plan.workspace_bytes > 0) workspace = at::empty({plan.workspace_bytes}, input.options().dtype(at::kByte));
        check_launch(conv2d_backward_weight(plan, s, dtype, operand(grad_output), operand(input),
                                            mutable_operand(grad_weight),
                                            workspace.defined() ? workspace.mutable_data_ptr() : nullptr, opt, stream),
                     op, "grad weight", plan);
      }
    }
  }
  if (output_mask[2]) {
    grad_bias = at::empty({s.K}, input.options());
    if (s.K > 0) {
      if (no_grad_output) {
        grad_bias.zero_();
      } else {
        Plan plan;
        check_launch(conv2d_backward_bias(s, dtype, operand(grad_output), grad_bias.mutable_data_ptr(), stream), op,
                     "grad bias", plan);
      }
    }
  }
  return {grad_input, grad_weight, grad_bias};
}

// Autocast: like nn.Conv2d, run in the autocast dtype (float64 stays float64).
at::Tensor conv2d_autocast(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                           at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                           int64_t groups) {
  const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCUDA);
  const at::ScalarType to = at::autocast::get_autocast_dtype(at::kCUDA);
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("convkit::conv2d", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                                               at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, int64_t)>();
  return op.call(at::autocast::cached_cast(to, input, c10::DeviceType::CUDA),
                 at::autocast::cached_cast(to, weight, c10::DeviceType::CUDA),
                 at::autocast::cached_cast(to, bias, c10::DeviceType::CUDA), stride, padding, dilation, groups);
}

at::Tensor corr2d_autocast(const at::Tensor& x, const at::Tensor& k) {
  const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCUDA);
  const at::ScalarType to = at::autocast::get_autocast_dtype(at::kCUDA);
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("convkit::corr2d", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&)>();
  return op.call(at::autocast::cached_cast(to, x, c10::DeviceType::CUDA),
                 at::autocast::cached_cast(to, k, c10::DeviceType::CUDA));
}

}  // namespace

TORCH_LIBRARY_IMPL(convkit, CUDA, m) {
  m.impl("corr2d", &corr2d);
  m.impl("conv2d", &conv2d);
  m.impl("conv2d_backward", &conv2d_backward);
}

// conv2d_backward falls through: autograd hands it the (already cast) saved
// tensors and the grad of the cast output.
TORCH_LIBRARY_IMPL(convkit, AutocastCUDA, m) {
  m.impl("corr2d", &corr2d_autocast);
  m.impl("conv2d", &conv2d_autocast);
}

}  // namespace cuda
}  // namespace convkit
