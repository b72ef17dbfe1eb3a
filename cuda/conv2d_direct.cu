// Direct forward convolution for small layers (LeNet-sized, depthwise): a
// block stages one image's input tile plus its halo for every input channel
// of a group, and the weights of up to kKB output channels, in shared memory;
// each thread then computes one output pixel for those channels.
//
// Preconditions (direct_supported): the staged tile and weights fit in 48 KiB
// of shared memory; grid limits hold. Any stride, padding, dilation, groups,
// dtype and operand strides.
#include "common.cuh"
#include "internal.h"

namespace convkit {
namespace cuda {
namespace {

constexpr int kTH = 16, kTW = 16;  // output tile per block
constexpr int kThreads = kTH * kTW;
constexpr int kKB = 16;            // output channels per block
constexpr int64_t kMaxSmem = 48 * 1024;

struct DirectGeometry {
  int64_t tile_h, tile_w;  // staged input rows/cols: (kTH - 1) * stride + (R - 1) * dilation + 1
  int64_t tiles_p, tiles_q, kblocks;
  int64_t smem_elements;
};

DirectGeometry geometry(const ConvShape& s) {
  DirectGeometry d;
  const int64_t Cg = s.C / s.groups, Kg = s.K / s.groups;
  d.tile_h = (kTH - 1) * s.stride_h + (s.R - 1) * s.dil_h + 1;
  d.tile_w = (kTW - 1) * s.stride_w + (s.S - 1) * s.dil_w + 1;
  d.tiles_p = ceil_div(s.P, kTH);
  d.tiles_q = ceil_div(s.Q, kTW);
  d.kblocks = ceil_div(Kg, kKB);
  d.smem_elements = Cg * d.tile_h * d.tile_w + kKB * Cg * s.R * s.S;
  return d;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) direct_kernel(ConvShape s, DirectGeometry d, const T* __restrict__ x,
                                                          Str4 xs, const T* __restrict__ w, Str4 ws,
                                                          const T* __restrict__ bias, T* __restrict__ y, Str4 ys) {
  using A = acc_t<T>;
  extern __shared__ unsigned char smem_raw[];
  A* x_tile = reinterpret_cast<A*>(smem_raw);  // [Cg][tile_h][tile_w]
  const int Cg = int(s.C / s.groups), Kg = int(s.K / s.groups);
  const int R = int(s.R), S = int(s.S);
  const int tile_h = int(d.tile_h), tile_w = int(d.tile_w);
  A* w_tile = x_tile + int64_t(Cg) * tile_h * tile_w;  // [kKB][Cg][R][S]

  // blockIdx.x -> (n, tile row, tile col); blockIdx.y -> (group, block of output channels)
  const int64_t tiles = d.tiles_p * d.tiles_q;
  const int64_t n = blockIdx.x / tiles;
  const int64_t tile = blockIdx.x - n * tiles;
  const int64_t p0 = (tile / d.tiles_q) * kTH, q0 = (tile % d.tiles_q) * kTW;
  const int g = int(blockIdx.y / d.kblocks);
  const int kb0 = int(blockIdx.y % d.kblocks) * kKB;
  const int kn = min(kKB, Kg - kb0);

  // Stage the input tile (zeros where it overhangs the padded border).
  const int64_t h_origin = p0 * s.stride_h - s.pad_h, w_origin = q0 * s.stride_w - s.pad_w;
  const T* x_image = x + n * xs.n + int64_t(g) * Cg * xs.c;
  const int plane = tile_h * tile_w;
  for (int i = threadIdx.x; i < Cg * plane; i += kThreads) {
    const int c = i / plane, rem = i - c * plane;
    const int th = rem / tile_w, tw = rem - th * tile_w;
    const int64_t ih = h_origin + th, iw = w_origin + tw;
    A v = A(0);
    if (ih >= 0 && ih < s.H && iw >= 0 && iw < s.W) v = to_acc(x_image[c * xs.c + ih * xs.h + iw * xs.w]);
    x_tile[i] = v;
  }
  const int taps = R * S;
  for (int i = threadIdx.x; i < kn * Cg * taps; i += kThreads) {
    const int kb = i / (Cg * taps), rem = i - kb * Cg * taps;
    const int c = rem / taps, rs = rem - c * taps;
    const int r = rs / S, u = rs - r * S;
    const int64_t k = int64_t(g) * Kg + kb0 + kb;
    w_tile[i] = to_acc(w[k * ws.n + c * ws.c + r * ws.h + u * ws.w]);
  }
  __syncthreads();

  const int ty = threadIdx.x / kTW, tx = threadIdx.x % kTW;
  const int64_t p = p0 + ty, q = q0 + tx;
  if (p >= s.P || q >= s.Q) return;

  A acc[kKB];
#pragma unroll
  for (int kb = 0; kb < kKB; ++kb) acc[kb] = (bias && kb < kn) ? to_acc(bias[int64_t(g) * Kg + kb0 + kb]) : A(0);

  const int sh = int(s.stride_h), sw = int(s.stride_w), dh = int(s.dil_h), dw = int(s.dil_w);
  for (int c = 0; c < Cg; ++c) {
    const A* xc = x_tile + c * plane + (ty * sh) * tile_w + tx * sw;
    const A* wc = w_tile + c * taps;
    for (int r = 0; r < R; ++r) {
      for (int u = 0; u < S; ++u) {
        const A xv = xc[r * dh * tile_w + u * dw];
        const int tap = r * S + u;
#pragma unroll
        for (int kb = 0; kb < kKB; ++kb)
          if (kb < kn) acc[kb] += xv * wc[kb * Cg * taps + tap];
      }
    }
  }
#pragma unroll
  for (int kb = 0; kb < kKB; ++kb) {
    if (kb < kn) {
      const int64_t k = int64_t(g) * Kg + kb0 + kb;
      y[n * ys.n + k * ys.c + p * ys.h + q * ys.w] = from_acc<T>(acc[kb]);
    }
  }
}

}  // namespace

bool direct_supported(const ConvShape& s, DType dtype) {
  const DirectGeometry d = geometry(s);
  const int acc_bytes = dtype == DType::Float64 ? 8 : 4;
  if (d.smem_elements * acc_bytes > kMaxSmem) return false;
  if (s.N * d.tiles_p * d.tiles_q > kMaxGridX) return false;
  if (s.groups * d.kblocks > kMaxGridYZ) return false;
  return true;
}

cudaError_t direct_forward(const ConvShape& s, DType dtype, const Operand& x, const Operand& w, const void* bias,
                           const MutableOperand& y, cudaStream_t stream) {
  if (s.N * s.K * s.P * s.Q == 0) return cudaSuccess;
  if (!direct_supported(s, dtype)) return cudaErrorInvalidConfiguration;
  const DirectGeometry d = geometry(s);
  const dim3 grid(unsigned(s.N * d.tiles_p * d.tiles_q), unsigned(s.groups * d.kblocks));
  return CONVKIT_DISPATCH(dtype, [&] {
    const size_t smem = size_t(d.smem_elements) * sizeof(acc_t<T>);
    direct_kernel<T><<<grid, kThreads, smem, stream>>>(
        s, d, static_cast<const T*>(x.data), strides_of(x), static_cast<const T*>(w.data), strides_of(w),
        static_cast<const T*>(bias), static_cast<T*>(y.data), strides_of(y));
    return cudaGetLastError();
  });
}

}  // namespace cuda
}  // namespace convkit
