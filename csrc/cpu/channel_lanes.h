// Channel lanes: the kernel family for depthwise layers on small images
// (the late blocks of MobileNet and EfficientNet: 14 x 14, 7 x 7), where the
// plane kernels' vectors along a row of 7 or 14 pixels run half empty. A
// vector holds one pixel's channels instead, so every multiply-add fills it
// whatever the image width.
#pragma once
#include <ATen/core/Tensor.h>

#include "../conv_shape.h"
#include "batch_lanes.h"

namespace convkit {
namespace cpu {

// Whether the channel-lane kernels are the faster ones for this pass of a
// depthwise layer (one input channel per group, one output per input;
// grad_input needs stride 1 and padding up to the dilated kernel's reach).
// CONVKIT_CHANNEL_LANES=0 turns the family off, =1 takes it wherever the
// geometry allows.
bool channel_lanes_suit(const ConvShape& s, LanePass pass);

// y = input * weight (+ bias); y is (N, K, P, Q), any layout, allocated by the caller.
void channel_lanes_forward(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                           const ConvShape& s, at::Tensor& y);

// gx = grad_input for grad_output gy; gx is (N, C, H, W), any layout, allocated by the caller.
void channel_lanes_backward_input(const at::Tensor& gy, const at::Tensor& weight, const ConvShape& s, at::Tensor& gx);

// gw = grad_weight (K, 1, R, S), contiguous, allocated by the caller.
void channel_lanes_backward_weight(const at::Tensor& gy, const at::Tensor& input, const ConvShape& s, at::Tensor& gw);

}  // namespace cpu
}  // namespace convkit
