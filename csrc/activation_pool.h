// What follows a convolution in a fused layer (convkit.nn.Conv2dActPool): an
// activation, then k x k average pooling with stride k. Torch-free, shared by
// the argument checks, the CPU kernels and the CUDA launchers.
#pragma once
#include <cstdint>

namespace convkit {

enum class Activation : int { None = 0, ReLU = 1, Sigmoid = 2 };

// Planes of rows x cols values pooled over k x k windows; floor mode: rows
// and columns past the last whole window take no part in the pooling.
struct PoolShape {
  int64_t planes = 0, rows = 0, cols = 0, k = 1;
  constexpr int64_t rows_out() const { return rows / k; }
  constexpr int64_t cols_out() const { return cols / k; }
  constexpr int64_t plane_size() const { return rows * cols; }
  constexpr int64_t pooled_plane_size() const { return rows_out() * cols_out(); }
};

}  // namespace convkit
