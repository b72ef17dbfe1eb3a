#include "checks.h"

#include <c10/util/Exception.h>
#include <c10/util/safe_numerics.h>

namespace convkit {
namespace {

void check_pair(const char* op, const char* name, at::IntArrayRef values) {
  TORCH_CHECK(values.size() == 2, op, ": expected ", name, " to have 2 elements (height, width), got ",
              values.size());
}

void check_floating(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), op, ": expected ", name,
              " to be a floating-point tensor, got ", t.scalar_type());
  TORCH_CHECK(!t.is_cpu() || t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op,
              ": ", t.scalar_type(), " is not supported on CPU; use float32 or float64");
}

void check_same_kind(const char* op, const char* name, const at::Tensor& input, const at::Tensor& other) {
  TORCH_CHECK(other.device() == input.device(), op,
              ": expected all tensors to be on the same device, but input is on ", input.device(), " and ",
              name, " is on ", other.device());
  TORCH_CHECK(other.scalar_type() == input.scalar_type(), op, ": input type (", input.scalar_type(),
              ") and ", name, " type (", other.scalar_type(), ") should be the same");
}

}  // namespace

ConvShape check_conv2d(const char* op, const at::Tensor& input, const at::Tensor& weight,
                       const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                       at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  TORCH_CHECK(input.dim() == 4, op, ": expected 4-D input (N, C, H, W), but got input of size: ",
              input.sizes());
  TORCH_CHECK(weight.dim() == 4, op, ": expected 4-D weight (out_channels, in_channels/groups, kH, kW), but got weight of size: ",
              weight.sizes());
  check_floating(op, "input", input);
  check_same_kind(op, "weight", input, weight);
  check_pair(op, "stride", stride);
  check_pair(op, "padding", padding);
  check_pair(op, "dilation", dilation);
  TORCH_CHECK(groups > 0, op, ": non-positive groups is not supported, got groups=", groups);
  TORCH_CHECK(stride[0] > 0 && stride[1] > 0, op, ": non-positive stride is not supported, got stride=", stride);
  TORCH_CHECK(padding[0] >= 0 && padding[1] >= 0, op, ": negative padding is not supported, got padding=", padding);
  TORCH_CHECK(dilation[0] > 0 && dilation[1] > 0, op, ": dilation should be greater than zero, got dilation=",
              dilation);

  ConvShape s;
  s.N = input.size(0); s.C = input.size(1); s.H = input.size(2); s.W = input.size(3);
  s.K = weight.size(0); s.R = weight.size(2); s.S = weight.size(3);
  s.groups = groups;
  s.stride_h = stride[0]; s.stride_w = stride[1];
  s.pad_h = padding[0]; s.pad_w = padding[1];
  s.dil_h = dilation[0]; s.dil_w = dilation[1];

  TORCH_CHECK(s.R > 0 && s.S > 0, op, ": kernel size must be positive, but got weight of size ", weight.sizes());
  TORCH_CHECK(s.K % groups == 0, op, ": given groups=", groups, ", expected weight to be divisible by ", groups,
              " at dimension 0, but got weight of size ", weight.sizes(), " instead");
  int64_t group_channels = 0;
  TORCH_CHECK(!c10::mul_overflows(weight.size(1), groups, &group_channels) && s.C == group_channels, op, ": given groups=", groups, ", weight of size ", weight.sizes(),
              ", expected input", input.sizes(), " to have ", weight.size(1) * groups, " channels, but got ", s.C,
              " channels instead");
  if (bias.has_value() && bias->defined()) {
    check_same_kind(op, "bias", input, *bias);
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == s.K, op, ": given weight of size ", weight.sizes(),
                ", expected bias to be 1-dimensional with ", s.K, " elements, but got bias of size ",
                bias->sizes(), " instead");
  }

  // Checked arithmetic: a padded size or kernel extent that wrapped around
  // int64 would pass the size check below and send the kernels out of bounds.
  int64_t padded_h = 0, padded_w = 0, extent_h = 0, extent_w = 0;
  const bool overflow = c10::mul_overflows(s.pad_h, int64_t{2}, &padded_h) ||
                        c10::add_overflows(padded_h, s.H, &padded_h) ||
                        c10::mul_overflows(s.pad_w, int64_t{2}, &padded_w) ||
                        c10::add_overflows(padded_w, s.W, &padded_w) ||
                        c10::mul_overflows(s.dil_h, s.R - 1, &extent_h) ||
                        c10::add_overflows(extent_h, int64_t{1}, &extent_h) ||
                        c10::mul_overflows(s.dil_w, s.S - 1, &extent_w) ||
                        c10::add_overflows(extent_w, int64_t{1}, &extent_w) ||
                        // the output size below adds 1 to at most padded - 1
                        padded_h == INT64_MAX || padded_w == INT64_MAX;
  TORCH_CHECK(!overflow, op, ": padding=", padding, " and dilation=", dilation, " with a kernel of size (", s.R,
              " x ", s.S, ") and an input of size (", s.H, " x ", s.W, ") overflow 64-bit sizes");
  TORCH_CHECK(padded_h >= extent_h && padded_w >= extent_w, op, ": calculated padded input size per channel: (",
              padded_h, " x ", padded_w, "). Kernel size: (", extent_h, " x ", extent_w,
              "). Kernel size can't be greater than actual input size");
  s.P = (padded_h - extent_h) / s.stride_h + 1;
  s.Q = (padded_w - extent_w) / s.stride_w + 1;
  return s;
}

ConvShape check_corr2d(const at::Tensor& x, const at::Tensor& k) {
  const char* op = "convkit::corr2d";
  TORCH_CHECK(x.dim() == 2, op, ": expected a 2-D input X (H, W), but got X of size ", x.sizes());
  TORCH_CHECK(k.dim() == 2, op, ": expected a 2-D kernel K (h, w), but got K of size ", k.sizes());
  check_floating(op, "X", x);
  check_same_kind(op, "K", x, k);
  TORCH_CHECK(k.size(0) > 0 && k.size(1) > 0, op, ": the kernel must not be empty, got K of size ", k.sizes());
  TORCH_CHECK(k.size(0) <= x.size(0) && k.size(1) <= x.size(1), op, ": kernel of size ", k.sizes(),
              " is larger than the input of size ", x.sizes());
  ConvShape s;
  s.N = s.C = s.K = 1;
  s.H = x.size(0); s.W = x.size(1);
  s.R = k.size(0); s.S = k.size(1);
  s.P = s.H - s.R + 1; s.Q = s.W - s.S + 1;
  return s;
}

ConvShape check_conv2d_backward(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
                                at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                int64_t groups) {
  const char* op = "convkit::conv2d_backward";
  const ConvShape s = check_conv2d(op, input, weight, std::nullopt, stride, padding, dilation, groups);
  check_same_kind(op, "grad_output", input, grad_output);
  TORCH_CHECK(grad_output.dim() == 4 && grad_output.size(0) == s.N && grad_output.size(1) == s.K &&
                  grad_output.size(2) == s.P && grad_output.size(3) == s.Q,
              op, ": expected grad_output of size [", s.N, ", ", s.K, ", ", s.P, ", ", s.Q, "], but got ",
              grad_output.sizes());
  return s;
}

PoolShape check_activation_pool(const char* op, const at::Tensor& z, c10::string_view activation, int64_t window,
                                Activation* act) {
  TORCH_CHECK(z.dim() == 4, op, ": expected a 4-D input (N, C, H, W), but got input of size: ", z.sizes());
  check_floating(op, "input", z);
  if (activation == "none") *act = Activation::None;
  else if (activation == "relu") *act = Activation::ReLU;
  else if (activation == "sigmoid") *act = Activation::Sigmoid;
  else TORCH_CHECK(false, op, ": activation must be 'none', 'relu' or 'sigmoid', got '", activation, "'");
  TORCH_CHECK(window > 0, op, ": pooling window must be positive, got ", window);
  TORCH_CHECK(window <= z.size(2) && window <= z.size(3), op, ": given input size ", z.sizes(), ", a ", window,
              " x ", window, " pooling window gives an output of size 0; the output size is too small");
  PoolShape s;
  s.planes = z.size(0) * z.size(1);
  s.rows = z.size(2);
  s.cols = z.size(3);
  s.k = window;
  return s;
}

PoolShape check_activation_pool_backward(const char* op, const at::Tensor& grad_pooled, const at::Tensor& activated,
                                         c10::string_view activation, int64_t window, Activation* act) {
  const PoolShape s = check_activation_pool(op, activated, activation, window, act);
  check_same_kind(op, "grad_pooled", activated, grad_pooled);
  TORCH_CHECK(grad_pooled.dim() == 4 && grad_pooled.size(0) == activated.size(0) &&
                  grad_pooled.size(1) == activated.size(1) && grad_pooled.size(2) == s.rows_out() &&
                  grad_pooled.size(3) == s.cols_out(),
              op, ": expected grad_pooled of size [", activated.size(0), ", ", activated.size(1), ", ", s.rows_out(),
              ", ", s.cols_out(), "], got ", grad_pooled.sizes());
  return s;
}

at::MemoryFormat output_memory_format(const at::Tensor& input, const at::Tensor& weight) {
  const bool channels_last = input.suggest_memory_format() == at::MemoryFormat::ChannelsLast ||
                             weight.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  return channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

}  // namespace convkit
