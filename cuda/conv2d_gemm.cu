// SIMT implicit GEMM: every pass of the convolution as a per-group matrix
// product whose operands are gathered from the tensors on the fly (no im2col
// buffer). A 256-thread block computes a 64 x 64 tile of C = A * B, each thread
// a 4 x 4 register tile; 64 x 16 / 16 x 64 slices of A and B go through
// double-buffered shared memory with the next slice prefetched into
// registers while the current one is multiplied.
//
//   pass          M (rows)        N (cols)   reduction      C
//   forward       N * P * Q       K / G      C/G * R * S     y
//   grad input    N * H * W       C / G      K/G * R * S     grad_input
//   grad weight   C/G * R * S     K / G      N * P * Q       grad_weight (split-K)
//
// Preconditions (gemm_supported_*): the reduction length fits in 31 bits
// (fast division); grid limits. Any stride, padding, dilation, groups, dtype
// and operand strides; all other indexing is 64-bit.
#include <algorithm>

#include "common.cuh"
#include "internal.h"

namespace convkit {
namespace cuda {
namespace {

constexpr int BM = 64, BN = 64, BK = 16, kThreads = 256;
constexpr int kTargetBlocks = 528;  // weight gradient: split until about this many blocks (fixed: reproducible)
constexpr int kMaxSplits = 64;
constexpr int64_t kMaxWorkspace = int64_t(256) << 20;

enum class Store : int { Direct = 0, Partial = 1, Atomic = 2 };

// ---- problems: how a pass reads A and B and writes C -------------------------

template <typename T>
struct ForwardProblem {
  using A = acc_t<T>;
  static constexpr bool kRowFastLoads = true;  // consecutive rows are consecutive output columns q
  static constexpr bool kSplitK = false;
  ConvShape s;
  const T* x; Str4 xs;
  const T* w; Str4 ws;
  const T* bias;
  T* y; Str4 ys;
  int64_t M, N, Cg, Kg;
  uint32_t Kred;
  FastDivmod div_rs, div_s;

  struct Row { const T* base; int64_t h0, w0; bool valid; };
  struct Col { const T* base; bool valid; };

  __device__ Row row(int g, int64_t m) const {
    Row row{x, 0, 0, m < M};
    if (row.valid) {
      const int64_t n = m / (s.P * s.Q), pq = m - n * s.P * s.Q;
      const int64_t p = pq / s.Q, q = pq - p * s.Q;
      row.base = x + n * xs.n + g * Cg * xs.c;
      row.h0 = p * s.stride_h - s.pad_h;
      row.w0 = q * s.stride_w - s.pad_w;
    }
    return row;
  }
  __device__ A a(const Row& row, uint32_t kk) const {
    if (!row.valid || kk >= Kred) return A(0);
    uint32_t c, rs, r, u;
    div_rs.divmod(kk, c, rs);
    div_s.divmod(rs, r, u);
    const int64_t ih = row.h0 + int64_t(r) * s.dil_h, iw = row.w0 + int64_t(u) * s.dil_w;
    if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) return A(0);
    return to_acc(row.base[int64_t(c) * xs.c + ih * xs.h + iw * xs.w]);
  }
  __device__ Col col(int g, int64_t n) const { return Col{w + (g * Kg + n) * ws.n, n < N}; }
  __device__ A b(const Col& col, uint32_t kk) const {
    if (!col.valid || kk >= Kred) return A(0);
    uint32_t c, rs, r, u;
    div_rs.divmod(kk, c, rs);
    div_s.divmod(rs, r, u);
    return to_acc(col.base[int64_t(c) * ws.c + int64_t(r) * ws.h + int64_t(u) * ws.w]);
  }
  __device__ void store(int g, int64_t m, int64_t n, A v) const {
    const int64_t img = m / (s.P * s.Q), pq = m - img * s.P * s.Q;
    const int64_t p = pq / s.Q, q = pq - p * s.Q;
    const int64_t k = g * Kg + n;
    if (bias) v += to_acc(bias[k]);
    y[img * ys.n + k * ys.c + p * ys.h + q * ys.w] = from_acc<T>(v);
  }
};

// grad_input[n, c, h, w] = sum over (k, r, u) of grad_output[n, k, p, q] *
// w[k, c, r, u] where h + pad - r * dil = p * stride (same for w / q): the
// transposed convolution as a gather, so no flipped weight copy is needed.
template <typename T>
struct BackwardInputProblem {
  using A = acc_t<T>;
  static constexpr bool kRowFastLoads = true;
  static constexpr bool kSplitK = false;
  ConvShape s;
  const T* gy; Str4 gys;
  const T* w; Str4 ws;
  T* gx; Str4 gxs;
  int64_t M, N, Cg, Kg;
  uint32_t Kred;
  FastDivmod div_rs, div_s, div_sh, div_sw;

  struct Row { const T* base; int64_t th, tw; bool valid; };
  struct Col { const T* base; bool valid; };

  __device__ Row row(int g, int64_t m) const {
    Row row{gy, 0, 0, m < M};
    if (row.valid) {
      const int64_t n = m / (s.H * s.W), hw = m - n * s.H * s.W;
      const int64_t h = hw / s.W, wi = hw - h * s.W;
      row.base = gy + n * gys.n + g * Kg * gys.c;
      row.th = h + s.pad_h;
      row.tw = wi + s.pad_w;
    }
    return row;
  }
  __device__ A a(const Row& row, uint32_t kk) const {
    if (!row.valid || kk >= Kred) return A(0);
    uint32_t k, rs, r, u;
    div_rs.divmod(kk, k, rs);
    div_s.divmod(rs, r, u);
    const int64_t hh = row.th - int64_t(r) * s.dil_h, ww = row.tw - int64_t(u) * s.dil_w;
    if (hh < 0 || ww < 0) return A(0);
    uint32_t p, ph, q, pw;
    div_sh.divmod(uint32_t(hh), p, ph);
    div_sw.divmod(uint32_t(ww), q, pw);
    if (ph != 0 || pw != 0 || p >= s.P || q >= s.Q) return A(0);
    return to_acc(row.base[int64_t(k) * gys.c + int64_t(p) * gys.h + int64_t(q) * gys.w]);
  }
  __device__ Col col(int g, int64_t n) const { return Col{w + g * Kg * ws.n + n * ws.c, n < N}; }
  __device__ A b(const Col& col, uint32_t kk) const {
    if (!col.valid || kk >= Kred) return A(0);
    uint32_t k, rs, r, u;
    div_rs.divmod(kk, k, rs);
    div_s.divmod(rs, r, u);
    return to_acc(col.base[int64_t(k) * ws.n + int64_t(r) * ws.h + int64_t(u) * ws.w]);
  }
  __device__ void store(int g, int64_t m, int64_t n, A v) const {
    const int64_t img = m / (s.H * s.W), hw = m - img * s.H * s.W;
    const int64_t h = hw / s.W, wi = hw - h * s.W;
    gx[img * gxs.n + (g * Cg + n) * gxs.c + h * gxs.h + wi * gxs.w] = from_acc<T>(v);
  }
};

// grad_weight[k, c, r, u] = sum over (n, p, q) of x[n, c, p*stride - pad + r*dil, ...]
// * grad_output[n, k, p, q]: rows are (c, r, u), columns k, reduction pixels.
template <typename T>
struct BackwardWeightProblem {
  using A = acc_t<T>;
  static constexpr bool kRowFastLoads = false;  // consecutive reduction indices are consecutive q
  static constexpr bool kSplitK = true;
  ConvShape s;
  const T* x; Str4 xs;
  const T* gy; Str4 gys;
  T* gw; Str4 gws;
  int64_t M, N, Cg, Kg;
  uint32_t Kred;
  FastDivmod div_pq, div_q;

  struct Row { const T* base; int64_t h0, w0; bool valid; };
  struct Col { const T* base; bool valid; };

  __device__ Row row(int g, int64_t m) const {
    Row row{x, 0, 0, m < M};
    if (row.valid) {
      const int64_t taps = s.R * s.S;
      const int64_t c = m / taps, rs = m - c * taps;
      const int64_t r = rs / s.S, u = rs - r * s.S;
      row.base = x + (g * Cg + c) * xs.c;
      row.h0 = r * s.dil_h - s.pad_h;
      row.w0 = u * s.dil_w - s.pad_w;
    }
    return row;
  }
  __device__ A a(const Row& row, uint32_t kk) const {
    if (!row.valid || kk >= Kred) return A(0);
    uint32_t n, pq, p, q;
    div_pq.divmod(kk, n, pq);
    div_q.divmod(pq, p, q);
    const int64_t ih = int64_t(p) * s.stride_h + row.h0, iw = int64_t(q) * s.stride_w + row.w0;
    if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) return A(0);
    return to_acc(row.base[int64_t(n) * xs.n + ih * xs.h + iw * xs.w]);
  }
  __device__ Col col(int g, int64_t n) const { return Col{gy + (g * Kg + n) * gys.c, n < N}; }
  __device__ A b(const Col& col, uint32_t kk) const {
    if (!col.valid || kk >= Kred) return A(0);
    uint32_t n, pq, p, q;
    div_pq.divmod(kk, n, pq);
    div_q.divmod(pq, p, q);
    return to_acc(col.base[int64_t(n) * gys.n + int64_t(p) * gys.h + int64_t(q) * gys.w]);
  }
  __device__ void store(int g, int64_t m, int64_t n, A v) const {
    const int64_t taps = s.R * s.S;
    const int64_t c = m / taps, rs = m - c * taps;
    const int64_t r = rs / s.S, u = rs - r * s.S;
    gw[(g * Kg + n) * gws.n + c * gws.c + r * gws.h + u * gws.w] = from_acc<T>(v);
  }
};

// ---- the kernel ----------------------------------------------------------------

// Thread t owns C rows m0 + (t % 16) + 16 i and columns n0 + (t / 16) + 16 j
// (i, j < 4): neighbouring threads write neighbouring rows, which are
// neighbouring output pixels in NCHW. Split s of `splits` reduces k-tiles
// [s * tiles_per_split, (s + 1) * tiles_per_split).
template <typename T, class Problem>
__global__ void __launch_bounds__(kThreads) gemm_kernel(Problem prob, int splits, int64_t tiles_per_split,
                                                        Store mode, acc_t<T>* workspace) {
  using A = acc_t<T>;
  __shared__ A As[2][BK][BM + 1];  // +1: the k-fast stores below do not collide in one bank
  __shared__ A Bs[2][BK][BN + 1];

  const int t = threadIdx.x;
  const int64_t m0 = int64_t(blockIdx.x) * BM, n0 = int64_t(blockIdx.y) * BN;
  const int g = int(blockIdx.z) / splits, split = int(blockIdx.z) % splits;
  const int64_t k_tiles = (int64_t(prob.Kred) + BK - 1) / BK;
  const int64_t kt_begin = split * tiles_per_split;
  const int64_t kt_end = min(kt_begin + tiles_per_split, k_tiles);

  // Which A/B elements this thread loads: row/column fixed, reduction index
  // offset within the tile.
  int a_m[4], a_k[4], b_n[4];
  const int b_k = t % BK;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if (Problem::kRowFastLoads) {
      a_m[i] = t % BM;
      a_k[i] = t / BM + i * (kThreads / BM);
    } else {
      a_m[i] = t / BK + i * (kThreads / BK);
      a_k[i] = t % BK;
    }
    b_n[i] = t / BK + i * (kThreads / BK);
  }
  typename Problem::Row rows[4];
  typename Problem::Col cols[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    rows[i] = prob.row(g, m0 + a_m[i]);
    cols[i] = prob.col(g, n0 + b_n[i]);
  }

  A ra[4], rb[4];
  auto load = [&](int64_t kt) {
    const uint32_t k0 = uint32_t(kt * BK);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      ra[i] = prob.a(rows[i], k0 + a_k[i]);
      rb[i] = prob.b(cols[i], k0 + b_k);
    }
  };
  auto stash = [&](int buf) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      As[buf][a_k[i]][a_m[i]] = ra[i];
      Bs[buf][b_k][b_n[i]] = rb[i];
    }
  };

  A acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = A(0);

  const int tm = t % 16, tn = t / 16;
  if (kt_begin < kt_end) {
    load(kt_begin);
    stash(0);
    __syncthreads();
    for (int64_t kt = kt_begin; kt < kt_end; ++kt) {
      const int buf = int((kt - kt_begin) & 1);
      const bool more = kt + 1 < kt_end;
      if (more) load(kt + 1);  // global loads in flight during the FMAs below
#pragma unroll
      for (int kk = 0; kk < BK; ++kk) {
        A av[4], bv[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) av[i] = As[buf][kk][tm + 16 * i];
#pragma unroll
        for (int j = 0; j < 4; ++j) bv[j] = Bs[buf][kk][tn + 16 * j];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) acc[i][j] += av[i] * bv[j];
      }
      if (more) stash(buf ^ 1);  // the other buffer was last read before the previous barrier
      __syncthreads();
    }
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t m = m0 + tm + 16 * i;
    if (m >= prob.M) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t n = n0 + tn + 16 * j;
      if (n >= prob.N) continue;
      if (mode == Store::Direct) {
        prob.store(g, m, n, acc[i][j]);
      } else {
        // workspace layout [split][group][n][m]: m fastest, as threads write.
        const int64_t groups = int64_t(gridDim.z) / splits;
        if (mode == Store::Partial)
          workspace[((int64_t(split) * groups + g) * prob.N + n) * prob.M + m] = acc[i][j];
        else
          atomicAdd(&workspace[(int64_t(g) * prob.N + n) * prob.M + m], acc[i][j]);
      }
    }
  }
}

// Sums the split-K slices in split order (deterministic) and stores C.
template <typename T, class Problem>
__global__ void __launch_bounds__(kThreads) reduce_kernel(Problem prob, int64_t groups, int splits,
                                                          const acc_t<T>* __restrict__ workspace) {
  using A = acc_t<T>;
  const int64_t slice = groups * prob.N * prob.M;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < slice; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = i % prob.M, gn = i / prob.M;
    const int64_t n = gn % prob.N, g = gn / prob.N;
    A v = A(0);
    for (int sp = 0; sp < splits; ++sp) v += workspace[sp * slice + i];
    prob.store(int(g), m, n, v);
  }
}

int64_t k_tiles(int64_t kred) { return ceil_div(kred, BK); }

bool grid_ok(int64_t M, int64_t N, int64_t z) {
  return ceil_div(M, BM) <= kMaxGridX && ceil_div(N, BN) <= kMaxGridYZ && z <= kMaxGridYZ;
}

template <typename T, class Problem>
cudaError_t run(const Problem& prob, int64_t groups, int splits, Store mode, void* workspace, cudaStream_t stream) {
  using A = acc_t<T>;
  const int64_t tiles_per_split = ceil_div(k_tiles(prob.Kred), splits);
  const dim3 grid(unsigned(ceil_div(prob.M, BM)), unsigned(ceil_div(prob.N, BN)), unsigned(groups * splits));
  A* ws = static_cast<A*>(workspace);
  if (mode == Store::Atomic) {
    const cudaError_t err = cudaMemsetAsync(ws, 0, size_t(groups * prob.N * prob.M) * sizeof(A), stream);
    if (err != cudaSuccess) return err;
  }
  gemm_kernel<T, Problem><<<grid, kThreads, 0, stream>>>(prob, splits, tiles_per_split, mode, ws);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess || mode == Store::Direct) return err;
  if constexpr (Problem::kSplitK) {  // only the weight gradient splits the reduction
    const int64_t slice = groups * prob.N * prob.M;
    const int64_t blocks = std::min<int64_t>(ceil_div(slice, kThreads), int64_t(1) << 16);
    reduce_kernel<T, Problem>
        <<<unsigned(blocks), kThreads, 0, stream>>>(prob, groups, mode == Store::Atomic ? 1 : splits, ws);
    return cudaGetLastError();
  }
  return cudaErrorInvalidConfiguration;
}

}  // namespace

bool gemm_supported_forward(const ConvShape& s) {
  const int64_t kred = (s.C / s.groups) * s.R * s.S;
  return kred < (int64_t(1) << 31) && grid_ok(s.N * s.P * s.Q, s.K / s.groups, s.groups);
}

bool gemm_supported_backward_input(const ConvShape& s) {
  const int64_t kred = (s.K / s.groups) * s.R * s.S;
  const bool extents_ok = s.H + s.pad_h < (int64_t(1) << 31) && s.W + s.pad_w < (int64_t(1) << 31);
  return extents_ok && kred < (int64_t(1) << 31) && grid_ok(s.N * s.H * s.W, s.C / s.groups, s.groups);
}

bool gemm_supported_backward_weight(const ConvShape& s) {
  const int64_t kred = s.N * s.P * s.Q;
  return kred < (int64_t(1) << 31) && grid_ok((s.C / s.groups) * s.R * s.S, s.K / s.groups, s.groups);
}

int gemm_weight_splits(const ConvShape& s, DType dtype) {
  const int64_t M = (s.C / s.groups) * s.R * s.S, N = s.K / s.groups;
  const int64_t tiles = ceil_div(M, BM) * ceil_div(N, BN) * s.groups;
  const int64_t kt = k_tiles(s.N * s.P * s.Q);
  int64_t splits = ceil_div(kTargetBlocks, tiles);
  splits = std::min<int64_t>({splits, kMaxSplits, std::max<int64_t>(kt, 1), kMaxGridYZ / s.groups});
  const int64_t acc_bytes = dtype == DType::Float64 ? 8 : 4;
  while (splits > 1 && splits * s.groups * M * N * acc_bytes > kMaxWorkspace) splits /= 2;
  if (splits < 1) splits = 1;
  // No empty slices: every split gets ceil(kt / splits) tiles but the last.
  const int64_t per = ceil_div(std::max<int64_t>(kt, 1), splits);
  return int(ceil_div(std::max<int64_t>(kt, 1), per));
}

int64_t gemm_weight_workspace_bytes(const ConvShape& s, DType dtype, int splits, bool deterministic) {
  if (splits <= 1) return 0;
  const int64_t M = (s.C / s.groups) * s.R * s.S, N = s.K / s.groups;
  const int64_t acc_bytes = dtype == DType::Float64 ? 8 : 4;
  return (deterministic ? splits : 1) * s.groups * M * N * acc_bytes;
}

cudaError_t gemm_forward(const ConvShape& s, DType dtype, const Operand& x, const Operand& w, const void* bias,
                         const MutableOperand& y, cudaStream_t stream) {
  if (s.N * s.K * s.P * s.Q == 0) return cudaSuccess;
  if (!gemm_supported_forward(s)) return cudaErrorInvalidConfiguration;
  return CONVKIT_DISPATCH(dtype, [&] {
    ForwardProblem<T> prob;
    prob.s = s;
    prob.x = static_cast<const T*>(x.data); prob.xs = strides_of(x);
    prob.w = static_cast<const T*>(w.data); prob.ws = strides_of(w);
    prob.bias = static_cast<const T*>(bias);
    prob.y = static_cast<T*>(y.data); prob.ys = strides_of(y);
    prob.Cg = s.C / s.groups; prob.Kg = s.K / s.groups;
    prob.M = s.N * s.P * s.Q; prob.N = prob.Kg;
    prob.Kred = uint32_t(prob.Cg * s.R * s.S);
    prob.div_rs = FastDivmod(uint32_t(s.R * s.S));
    prob.div_s = FastDivmod(uint32_t(s.S));
    return run<T>(prob, s.groups, 1, Store::Direct, nullptr, stream);
  });
}

cudaError_t gemm_backward_input(const ConvShape& s, DType dtype, const Operand& gy, const Operand& w,
                                const MutableOperand& gx, cudaStream_t stream) {
  if (s.N * s.C * s.H * s.W == 0) return cudaSuccess;
  if (!gemm_supported_backward_input(s)) return cudaErrorInvalidConfiguration;
  return CONVKIT_DISPATCH(dtype, [&] {
    BackwardInputProblem<T> prob;
    prob.s = s;
    prob.gy = static_cast<const T*>(gy.data); prob.gys = strides_of(gy);
    prob.w = static_cast<const T*>(w.data); prob.ws = strides_of(w);
    prob.gx = static_cast<T*>(gx.data); prob.gxs = strides_of(gx);
    prob.Cg = s.C / s.groups; prob.Kg = s.K / s.groups;
    prob.M = s.N * s.H * s.W; prob.N = prob.Cg;
    prob.Kred = uint32_t(prob.Kg * s.R * s.S);
    prob.div_rs = FastDivmod(uint32_t(s.R * s.S));
    prob.div_s = FastDivmod(uint32_t(s.S));
    prob.div_sh = FastDivmod(uint32_t(s.stride_h));
    prob.div_sw = FastDivmod(uint32_t(s.stride_w));
    return run<T>(prob, s.groups, 1, Store::Direct, nullptr, stream);
  });
}

cudaError_t gemm_backward_weight(const ConvShape& s, DType dtype, const Operand& gy, const Operand& x,
                                 const MutableOperand& gw, int splits, bool deterministic, void* workspace,
                                 cudaStream_t stream) {
  if (s.K * (s.C / s.groups) * s.R * s.S == 0) return cudaSuccess;
  if (!gemm_supported_backward_weight(s) || splits < 1) return cudaErrorInvalidConfiguration;
  if (splits > 1 && workspace == nullptr) return cudaErrorInvalidValue;
  return CONVKIT_DISPATCH(dtype, [&] {
    BackwardWeightProblem<T> prob;
    prob.s = s;
    prob.x = static_cast<const T*>(x.data); prob.xs = strides_of(x);
    prob.gy = static_cast<const T*>(gy.data); prob.gys = strides_of(gy);
    prob.gw = static_cast<T*>(gw.data); prob.gws = strides_of(gw);
    prob.Cg = s.C / s.groups; prob.Kg = s.K / s.groups;
    prob.M = prob.Cg * s.R * s.S; prob.N = prob.Kg;
    prob.Kred = uint32_t(s.N * s.P * s.Q);
    prob.div_pq = FastDivmod(uint32_t(s.P * s.Q));
    prob.div_q = FastDivmod(uint32_t(s.Q));
    const Store mode = splits == 1 ? Store::Direct : (deterministic ? Store::Partial : Store::Atomic);
    return run<T>(prob, s.groups, splits, mode, workspace, stream);
  });
}

}  // namespace cuda
}  // namespace convkit
