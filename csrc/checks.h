// Argument validation for the convkit ops. Every op checks its own inputs,
// since users can call torch.ops.convkit.* directly.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include "activation_pool.h"
#include "conv_shape.h"

namespace convkit {

// Validates ranks, dtypes, devices, channel counts and hyper-parameters of a
// conv2d call and returns its geometry. Raises c10::Error (RuntimeError in
// Python) with a message that names the problem.
ConvShape check_conv2d(const char* op, const at::Tensor& input, const at::Tensor& weight,
                       const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                       at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups);

// Validates a 2-D cross-correlation's operands and returns its geometry as a
// single-image, single-channel convolution.
ConvShape check_corr2d(const at::Tensor& x, const at::Tensor& k);

// Validates a conv2d_backward call: the forward's arguments, and a
// grad_output of the shape, dtype and device the forward produced.
ConvShape check_conv2d_backward(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
                                at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                int64_t groups);

// Validates an activation_avg_pool2d call: a 4-D floating-point z, a known
// activation ("none", "relu", "sigmoid") and a window from 1 to z's height and
// width. Returns z's planes and the activation.
PoolShape check_activation_pool(const char* op, const at::Tensor& z, c10::string_view activation, int64_t window,
                                Activation* act);

// Validates its backward: `activated` as the forward's z, and grad_pooled of
// the pooled output's shape, dtype and device.
PoolShape check_activation_pool_backward(const char* op, const at::Tensor& grad_pooled, const at::Tensor& activated,
                                         c10::string_view activation, int64_t window, Activation* act);

// Output (and gradient) layout follows torch's rule: channels_last when either
// operand suggests it.
at::MemoryFormat output_memory_format(const at::Tensor& input, const at::Tensor& weight);

}  // namespace convkit
