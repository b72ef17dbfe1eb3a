// Shared device helpers for convkit's kernels: element types and their
// accumulators, fast division by run-time constants, a deterministic block
// reduction and the dtype dispatch used by every launcher.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "conv2d_cuda.h"

namespace convkit {
namespace cuda {

// Accumulate float16/bfloat16/float32 in float32 and float64 in float64.
template <typename T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };
template <typename T> using acc_t = typename AccOf<T>::type;

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_acc(acc_t<T> v);
template <> __device__ __forceinline__ float from_acc<float>(float v) { return v; }
template <> __device__ __forceinline__ double from_acc<double>(double v) { return v; }
template <> __device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Division by a run-time constant d (1 <= d < 2^31) of a numerator
// 0 <= n < 2^31 with a multiply-high and a shift ("division by invariant
// integers using multiplication"): m = ceil(2^p / d), p = 31 + ceil(log2 d).
struct FastDivmod {
  uint32_t divisor = 1, multiplier = 0, shift = 0;

  FastDivmod() = default;
  explicit FastDivmod(uint32_t d) : divisor(d) {
    if (d <= 1) return;  // multiplier 0 marks "divide by one"
    uint32_t log2_ceil = 0;
    while ((uint64_t(1) << log2_ceil) < d) ++log2_ceil;
    const uint32_t p = 31 + log2_ceil;
    multiplier = uint32_t(((uint64_t(1) << p) + d - 1) / d);
    shift = p - 32;
  }
  __host__ __device__ __forceinline__ uint32_t div(uint32_t n) const {
#ifdef __CUDA_ARCH__
    return multiplier ? __umulhi(n, multiplier) >> shift : n;
#else
    return multiplier ? uint32_t((uint64_t(n) * multiplier) >> 32) >> shift : n;
#endif
  }
  __host__ __device__ __forceinline__ void divmod(uint32_t n, uint32_t& q, uint32_t& r) const {
    q = div(n);
    r = n - q * divisor;
  }
};

// Sum of one value per thread over the block, in a fixed order (warp
// shuffles, then one warp over the per-warp sums): deterministic. Every
// thread of the block must call it; the result is valid in thread 0.
template <typename A>
__device__ __forceinline__ A block_sum(A v) {
  __shared__ A warp_sums[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  const int warps = (blockDim.x + 31) >> 5;
  v = threadIdx.x < warps ? warp_sums[threadIdx.x] : A(0);
  if (warp == 0) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  }
  return v;
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Runs `body` with T bound to the element type of `dtype`.
#define CONVKIT_DISPATCH(dtype, ...)                                    \
  [&]() -> cudaError_t {                                                \
    switch (dtype) {                                                    \
      case ::convkit::cuda::DType::Float32: {                           \
        using T = float;                                                \
        return __VA_ARGS__();                                           \
      }                                                                 \
      case ::convkit::cuda::DType::Float64: {                           \
        using T = double;                                               \
        return __VA_ARGS__();                                           \
      }                                                                 \
      case ::convkit::cuda::DType::Float16: {                           \
        using T = __half;                                               \
        return __VA_ARGS__();                                           \
      }                                                                 \
      case ::convkit::cuda::DType::BFloat16: {                          \
        using T = __nv_bfloat16;                                        \
        return __VA_ARGS__();                                           \
      }                                                                 \
    }                                                                   \
    return cudaErrorInvalidValue;                                       \
  }()

inline int dtype_size(DType dtype) {
  switch (dtype) {
    case DType::Float64: return 8;
    case DType::Float32: return 4;
    default: return 2;
  }
}

// Largest grid extents the launchers rely on.
constexpr int64_t kMaxGridX = 2147483647;
constexpr int64_t kMaxGridYZ = 65535;

}  // namespace cuda
}  // namespace convkit
