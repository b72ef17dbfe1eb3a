// The naive kernel family: one thread per output element (forward, grad
// input) or one block per reduced element (grad weight, grad bias), strided
// 64-bit indexing throughout. Slow but obviously right; every other family is
// tested against it and it serves any shape, dtype and layout.
#include "common.cuh"
#include "internal.h"

namespace convkit {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t(1) << 20;  // grid-stride loops cover the rest

int64_t blocks_for(int64_t total) {
  int64_t blocks = ceil_div(total, kThreads);
  return blocks < kMaxBlocks ? blocks : kMaxBlocks;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) forward_kernel(ConvShape s, const T* __restrict__ x, Str4 xs,
                                                           const T* __restrict__ w, Str4 ws,
                                                           const T* __restrict__ bias, T* __restrict__ y, Str4 ys) {
  using A = acc_t<T>;
  const int64_t Cg = s.C / s.groups, Kg = s.K / s.groups;
  const int64_t total = s.N * s.K * s.P * s.Q;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t q = i % s.Q;
    int64_t t = i / s.Q;
    const int64_t p = t % s.P;
    t /= s.P;
    const int64_t k = t % s.K, n = t / s.K;
    const int64_t g = k / Kg;
    A acc = bias ? to_acc(bias[k]) : A(0);
    for (int64_t c = 0; c < Cg; ++c) {
      const T* xc = x + n * xs.n + (g * Cg + c) * xs.c;
      const T* wc = w + k * ws.n + c * ws.c;
      for (int64_t r = 0; r < s.R; ++r) {
        const int64_t ih = p * s.stride_h - s.pad_h + r * s.dil_h;
        const bool row_inside = ih >= 0 && ih < s.H;
        for (int64_t u = 0; u < s.S; ++u) {
          const int64_t iw = q * s.stride_w - s.pad_w + u * s.dil_w;
          // Padding is a zero that is multiplied, not skipped: 0 * Inf is NaN, as by definition.
          const A xv = row_inside && iw >= 0 && iw < s.W ? to_acc(xc[ih * xs.h + iw * xs.w]) : A(0);
          acc += xv * to_acc(wc[r * ws.h + u * ws.w]);
        }
      }
    }
    y[n * ys.n + k * ys.c + p * ys.h + q * ys.w] = from_acc<T>(acc);
  }
}

// grad_input[n, c, h, w] gathers grad_output[n, k, p, q] * w[k, c, r, u] over
// the (k, r, u) with h = p * stride - pad + r * dilation (and the same in w).
template <typename T>
__global__ void __launch_bounds__(kThreads) backward_input_kernel(ConvShape s, const T* __restrict__ gy, Str4 gys,
                                                                  const T* __restrict__ w, Str4 ws,
                                                                  T* __restrict__ gx, Str4 gxs) {
  using A = acc_t<T>;
  const int64_t Cg = s.C / s.groups, Kg = s.K / s.groups;
  const int64_t total = s.N * s.C * s.H * s.W;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t iw = i % s.W;
    int64_t t = i / s.W;
    const int64_t ih = t % s.H;
    t /= s.H;
    const int64_t c = t % s.C, n = t / s.C;
    const int64_t g = c / Cg, cl = c - g * Cg;
    A acc = A(0);
    for (int64_t r = 0; r < s.R; ++r) {
      const int64_t th = ih + s.pad_h - r * s.dil_h;
      if (th < 0 || th % s.stride_h != 0) continue;
      const int64_t p = th / s.stride_h;
      if (p >= s.P) continue;
      for (int64_t u = 0; u < s.S; ++u) {
        const int64_t tw = iw + s.pad_w - u * s.dil_w;
        if (tw < 0 || tw % s.stride_w != 0) continue;
        const int64_t q = tw / s.stride_w;
        if (q >= s.Q) continue;
        for (int64_t kk = 0; kk < Kg; ++kk) {
          const int64_t k = g * Kg + kk;
          acc += to_acc(gy[n * gys.n + k * gys.c + p * gys.h + q * gys.w]) *
                 to_acc(w[k * ws.n + cl * ws.c + r * ws.h + u * ws.w]);
        }
      }
    }
    gx[n * gxs.n + c * gxs.c + ih * gxs.h + iw * gxs.w] = from_acc<T>(acc);
  }
}

// One block per weight element (k, c, r, u): a fixed-order block sum over
// every (n, p, q), so the result does not depend on scheduling.
template <typename T>
__global__ void __launch_bounds__(kThreads) backward_weight_kernel(ConvShape s, const T* __restrict__ gy, Str4 gys,
                                                                   const T* __restrict__ x, Str4 xs,
                                                                   T* __restrict__ gw, Str4 gws) {
  using A = acc_t<T>;
  const int64_t Cg = s.C / s.groups, Kg = s.K / s.groups;
  const int64_t e = blockIdx.x;  // (k, c, r, u), u fastest
  const int64_t u = e % s.S;
  int64_t t = e / s.S;
  const int64_t r = t % s.R;
  t /= s.R;
  const int64_t c = t % Cg, k = t / Cg;
  const int64_t g = k / Kg;
  const int64_t pixels = s.N * s.P * s.Q;
  A acc = A(0);
  for (int64_t j = threadIdx.x; j < pixels; j += blockDim.x) {
    const int64_t q = j % s.Q;
    const int64_t np = j / s.Q;
    const int64_t p = np % s.P, n = np / s.P;
    const int64_t ih = p * s.stride_h - s.pad_h + r * s.dil_h;
    const int64_t iw = q * s.stride_w - s.pad_w + u * s.dil_w;
    const bool inside = ih >= 0 && ih < s.H && iw >= 0 && iw < s.W;  // padding: a multiplied zero
    const A xv = inside ? to_acc(x[n * xs.n + (g * Cg + c) * xs.c + ih * xs.h + iw * xs.w]) : A(0);
    acc += to_acc(gy[n * gys.n + k * gys.c + p * gys.h + q * gys.w]) * xv;
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) gw[k * gws.n + c * gws.c + r * gws.h + u * gws.w] = from_acc<T>(acc);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) bias_kernel(ConvShape s, const T* __restrict__ gy, Str4 gys,
                                                        T* __restrict__ gb) {
  using A = acc_t<T>;
  const int64_t k = blockIdx.x;
  const int64_t pixels = s.N * s.P * s.Q;
  A acc = A(0);
  for (int64_t j = threadIdx.x; j < pixels; j += blockDim.x) {
    const int64_t q = j % s.Q;
    const int64_t np = j / s.Q;
    const int64_t p = np % s.P, n = np / s.P;
    acc += to_acc(gy[n * gys.n + k * gys.c + p * gys.h + q * gys.w]);
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) gb[k] = from_acc<T>(acc);
}

}  // namespace

bool naive_supported(const ConvShape& s) {
  // The weight-gradient and bias kernels use one block per reduced element.
  return s.K * (s.C / s.groups) * s.R * s.S <= kMaxGridX;
}

cudaError_t naive_forward(const ConvShape& s, DType dtype, const Operand& x, const Operand& w, const void* bias,
                          const MutableOperand& y, cudaStream_t stream) {
  const int64_t total = s.N * s.K * s.P * s.Q;
  if (total == 0) return cudaSuccess;
  return CONVKIT_DISPATCH(dtype, [&] {
    forward_kernel<T><<<unsigned(blocks_for(total)), kThreads, 0, stream>>>(
        s, static_cast<const T*>(x.data), strides_of(x), static_cast<const T*>(w.data), strides_of(w),
        static_cast<const T*>(bias), static_cast<T*>(y.data), strides_of(y));
    return cudaGetLastError();
  });
}

cudaError_t naive_backward_input(const ConvShape& s, DType dtype, const Operand& gy, const Operand& w,
                                 const MutableOperand& gx, cudaStream_t stream) {
  const int64_t total = s.N * s.C * s.H * s.W;
  if (total == 0) return cudaSuccess;
  return CONVKIT_DISPATCH(dtype, [&] {
    backward_input_kernel<T><<<unsigned(blocks_for(total)), kThreads, 0, stream>>>(
        s, static_cast<const T*>(gy.data), strides_of(gy), static_cast<const T*>(w.data), strides_of(w),
        static_cast<T*>(gx.data), strides_of(gx));
    return cudaGetLastError();
  });
}

cudaError_t naive_backward_weight(const ConvShape& s, DType dtype, const Operand& gy, const Operand& x,
                                  const MutableOperand& gw, cudaStream_t stream) {
  const int64_t total = s.K * (s.C / s.groups) * s.R * s.S;
  if (total == 0) return cudaSuccess;
  if (total > kMaxGridX) return cudaErrorInvalidConfiguration;
  return CONVKIT_DISPATCH(dtype, [&] {
    backward_weight_kernel<T><<<unsigned(total), kThreads, 0, stream>>>(
        s, static_cast<const T*>(gy.data), strides_of(gy), static_cast<const T*>(x.data), strides_of(x),
        static_cast<T*>(gw.data), strides_of(gw));
    return cudaGetLastError();
  });
}

cudaError_t bias_backward(const ConvShape& s, DType dtype, const Operand& gy, void* gb, cudaStream_t stream) {
  if (s.K == 0) return cudaSuccess;
  if (s.K > kMaxGridX) return cudaErrorInvalidConfiguration;
  return CONVKIT_DISPATCH(dtype, [&] {
    bias_kernel<T><<<unsigned(s.K), kThreads, 0, stream>>>(s, static_cast<const T*>(gy.data), strides_of(gy),
                                                           static_cast<T*>(gb));
    return cudaGetLastError();
  });
}

}  // namespace cuda
}  // namespace convkit
