// Geometry of one 2-D convolution, shared by the argument checks, the CPU
// kernels and the CUDA launchers. Torch-free so plain nvcc can include it.
#pragma once
#include <cstdint>

namespace convkit {

struct ConvShape {
  int64_t N = 0, C = 0, H = 0, W = 0;  // input: batch, channels, height, width
  int64_t K = 0, R = 0, S = 0;         // weight: out channels, kernel height, width
  int64_t P = 0, Q = 0;                // output height, width
  int64_t groups = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dil_h = 1, dil_w = 1;

  int64_t C_per_group() const { return C / groups; }
  int64_t K_per_group() const { return K / groups; }
  // One output channel's multiply-adds per pixel.
  int64_t reduction_size() const { return C_per_group() * R * S; }
  int64_t flops() const { return 2 * N * K * P * Q * reduction_size(); }
};

}  // namespace convkit
