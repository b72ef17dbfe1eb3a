// Batch lanes: the kernel family for layers with few channels, small images
// and a large batch (LeNet). Vectors run along the batch, so every
// multiply-add fills a whole vector whatever the image width, and taps that
// would only read the zero border are skipped.
#pragma once
#include <ATen/core/Tensor.h>

#include "../conv_shape.h"

namespace convkit {
namespace cpu {

enum class LanePass { forward, grad_input, grad_weight };

// Whether the batch-lane kernels are the faster ones for this pass of the
// layer (grad_input needs stride 1). CONVKIT_BATCH_LANES=0 turns the family
// off, =1 takes it wherever the geometry allows.
bool batch_lanes_suit(const ConvShape& s, LanePass pass);

// y = input * weight (+ bias); y is (N, K, P, Q), contiguous, allocated by the caller.
void batch_lanes_forward(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias, const ConvShape& s,
                         at::Tensor& y);

// The gradients whose tensor is defined on entry (allocated by the caller,
// contiguous: gx (N, C, H, W), gw (K, C / groups, R, S), gb (K)), in one pass
// over the batch: grad_output is read once for all of them. The weights must
// be finite when gx is asked for.
void batch_lanes_backward(const at::Tensor& gy, const at::Tensor& input, const at::Tensor& weight, const ConvShape& s,
                          at::Tensor& gx, at::Tensor& gw, at::Tensor& gb);

}  // namespace cpu
}  // namespace convkit
