// The fused layer's epilogue on the GPU: elementwise kernels, one thread per
// value (grid-stride), in the element type's accumulator precision.
#include "activation_pool_cuda.h"
#include <algorithm>

#include "common.cuh"

namespace convkit {
namespace cuda {
namespace {

constexpr int kThreads = 256;

template <typename A>
__device__ __forceinline__ A activate(A z, Activation act) {
  switch (act) {
    case Activation::ReLU: return z < A(0) ? A(0) : z;  // NaN stays NaN, as torch.relu
    case Activation::Sigmoid: return A(1) / (A(1) + exp(-z));
    default: return z;
  }
}

// The activation's derivative, from its output y.
template <typename A>
__device__ __forceinline__ A slope(A y, Activation act) {
  switch (act) {
    case Activation::ReLU: return y > A(0) ? A(1) : A(0);
    case Activation::Sigmoid: return y * (A(1) - y);
    default: return A(1);
  }
}

template <typename T>
__global__ void activate_kernel(const T* z, T* y, int64_t n, Activation act) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = from_acc<T>(activate(to_acc(z[i]), act));
}

template <typename T>
__global__ void avg_pool_kernel(const T* y, T* pooled, PoolShape s) {
  using A = acc_t<T>;
  const int64_t rows_out = s.rows_out(), cols_out = s.cols_out(), n = s.planes * rows_out * cols_out;
  const A inv = A(1) / A(s.k * s.k);
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < n; o += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = o % cols_out, i = o / cols_out % rows_out, p = o / (cols_out * rows_out);
    const T* window = y + (p * s.rows + i * s.k) * s.cols + j * s.k;
    A sum = 0;
    for (int64_t r = 0; r < s.k; ++r)
      for (int64_t c = 0; c < s.k; ++c) sum += to_acc(window[r * s.cols + c]);
    pooled[o] = from_acc<T>(sum * inv);
  }
}

template <typename T>
__global__ void activation_pool_grad_kernel(const T* gp, const T* y, T* gz, PoolShape s, Activation act) {
  using A = acc_t<T>;
  const int64_t rows_out = s.rows_out(), cols_out = s.cols_out(), n = s.planes * s.rows * s.cols;
  const A inv = A(1) / A(s.k * s.k);
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = e % s.cols, r = e / s.cols % s.rows, p = e / (s.cols * s.rows);
    const int64_t i = r / s.k, j = c / s.k;
    // Outside every window: 0 * act'(y), as the unfused layers give.
    const A g = i < rows_out && j < cols_out ? to_acc(gp[(p * rows_out + i) * cols_out + j]) * inv : A(0);
    gz[e] = from_acc<T>(g * slope(to_acc(y[e]), act));
  }
}

unsigned blocks_for(int64_t n) { return unsigned(std::min<int64_t>(ceil_div(n, kThreads), 1 << 20)); }

}  // namespace

cudaError_t activation_pool_forward(const PoolShape& s, Activation act, DType dtype, const void* z, void* y,
                                  void* pooled, cudaStream_t stream) {
  const int64_t n = s.planes * s.rows * s.cols, n_out = s.planes * s.rows_out() * s.cols_out();
  if (n == 0) return cudaSuccess;
  return CONVKIT_DISPATCH(dtype, [&] {
    activate_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const T*>(z), static_cast<T*>(y), n, act);
    if (n_out > 0)
      avg_pool_kernel<T><<<blocks_for(n_out), kThreads, 0, stream>>>(static_cast<const T*>(y), static_cast<T*>(pooled), s);
    return cudaGetLastError();
  });
}

cudaError_t activation_pool_backward(const PoolShape& s, Activation act, DType dtype, const void* grad_pooled,
                                           const void* y, void* grad_z, cudaStream_t stream) {
  const int64_t n = s.planes * s.rows * s.cols;
  if (n == 0) return cudaSuccess;
  return CONVKIT_DISPATCH(dtype, [&] {
    activation_pool_grad_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(
        static_cast<const T*>(grad_pooled), static_cast<const T*>(y), static_cast<T*>(grad_z), s, act);
    return cudaGetLastError();
  });
}

}  // namespace cuda
}  // namespace convkit
