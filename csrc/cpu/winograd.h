// Winograd convolution for stride-1 3x3 and 5x5 layers: F(2x2, 3x3) and
// F(2x2, 5x5), 2.25x and 2.8x fewer multiplies than the direct kernels, on the
// same wide micro-kernel for the products.
#pragma once
#include <ATen/core/Tensor.h>

#include "../conv_shape.h"

namespace convkit {
namespace cpu {

enum class WinogradPass { forward, grad_input, grad_weight };

// Whether the layer's geometry is one the Winograd path computes: 3x3 or 5x5
// filters, stride 1, padding <= the dilated kernel's reach.
bool winograd_applies(const ConvShape& s);

// Whether the Winograd path is the faster one for this pass of the layer
// (3x3 or 5x5, stride 1, padding <= kernel - 1, and sizes where it beat the
// direct kernels, judged per group for grouped layers; the passes below also
// take dilated layers, as one undilated pass over a batch of output phases).
// The passes need finite values: the transforms subtract neighbours, so an
// Inf would turn into NaN where the direct sum keeps it. The forward and
// grad_input passes check their operands themselves (the weights with the
// cached transform, the data in the copy they make) and return false when one
// is not finite; grad_weight's caller checks its result. CONVKIT_WINOGRAD=0 turns the path off, =1 takes it
// wherever the geometry allows; so does a measured choice (measured_choice.h) in force.
bool winograd_suits(const ConvShape& s, WinogradPass pass);

// y = input * weight (+ bias); y is (N, K, P, Q), allocated by the caller in
// any layout. False when a weight or input value is Inf or NaN: y is then unfinished.
bool winograd_forward(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias, const ConvShape& s,
                      at::Tensor& y);

// gx = grad_input of the layer for grad_output gy; gx is (N, C, H, W),
// allocated by the caller. False when a weight or gy value is Inf or NaN: gx is then unfinished.
bool winograd_backward_input(const at::Tensor& gy, const at::Tensor& weight, const ConvShape& s, at::Tensor& gx);

// gw = grad_weight of the layer; gw is (K, C, R, S), contiguous, allocated by
// the caller. With gb set (K values, contiguous), grad_bias too, from sums
// taken while grad_output is copied.
void winograd_backward_weight(const at::Tensor& gy, const at::Tensor& input, const ConvShape& s, at::Tensor& gw,
                              at::Tensor* gb);

}  // namespace cpu
}  // namespace convkit
