// Tensor-core implicit GEMM for the forward and grad-input passes.
//
// Operands are channels-last: the activation `act` is NHWC contiguous, the
// weight `wgt` is [G][Ncol][R*S][Cred] contiguous (forward: the KRSC weight;
// grad input: the weight regrouped as [G][C/G][R][S][K/G]). For output pixel
// m and reduction index (r, s, c) the A element is act[n, ih, iw, g*Cred + c],
// so every 16-byte chunk along c is contiguous and is copied with cp.async
// (zero-filled where the tap falls into the padding or past Cred).
//
// A 128-thread block computes a 128 x 64 tile of C; its four warps 64 x 32
// each with mma.sync: m16n8k16 for float16/bfloat16 (fragments by ldmatrix),
// m16n8k8 TF32 for float32 (only when the caller allows TF32). Slices of
// 64 bytes along the reduction (32 halves or 16 floats) go through a
// kStages-deep cp.async ring in shared memory, XOR-swizzled so that both the
// 16-byte copies and the fragment loads are free of bank conflicts.
// Accumulation is float32.
//
// Preconditions (tensorcore_supported_*): dtype float16/bfloat16, or float32
// with TF32 allowed; Cred a multiple of 16 bytes' worth of elements (8 halves,
// 4 floats) and at least 16; Ncol >= 16; 16-byte aligned base pointers (the
// glue ensures it); spatial extents below 2^30; grid limits.
#include "common.cuh"
#include "internal.h"

namespace convkit {
namespace cuda {
namespace {

constexpr int TBM = 128, TBN = 64, kThreads = 128, kStages = 3;
constexpr int kRowBytes = 64;  // one reduction slice per tile row
constexpr int kTileABytes = TBM * kRowBytes, kTileBBytes = TBN * kRowBytes;

// Byte offset of 16-byte chunk `chunk` of tile row `row`. Rows are 64 bytes, so
// eight consecutive rows cover two 128-byte bank lines; XOR-ing the chunk with
// bits 1-2 of the row gives those eight rows eight different bank groups.
__device__ __forceinline__ int swizzle(int row, int chunk) { return row * kRowBytes + ((chunk ^ ((row >> 1) & 3)) << 4); }

__device__ __forceinline__ uint32_t smem_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool pred) {
  const int bytes = pred ? 16 : 0;  // 0: nothing is read, the 16 bytes are zero-filled
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ void ldmatrix_x4(uint32_t addr, uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

template <typename T> struct Mma;

// float16 / bfloat16: m16n8k16, two k-steps per 32-element slice.
template <typename T16>
struct Mma16 {
  static constexpr int kVec = 8;      // elements per 16-byte chunk
  static constexpr int kSliceK = 32;  // elements per 64-byte slice
  using AFrag = uint32_t[4][4];       // [m-fragment][register]
  using BFrag = uint32_t[4][2];       // [n-fragment][register]

  // Fragments of k-step `ks` for a warp tile at (wm, wn) within the block tile.
  __device__ static void load(const uint8_t* a_tile, const uint8_t* b_tile, int ks, int wm, int wn, int lane,
                              AFrag& a, BFrag& b) {
#pragma unroll
    for (int mi = 0; mi < 4; ++mi) {
      const int row = wm + mi * 16 + (lane & 15);
      const int chunk = ks * 2 + (lane >> 4);
      ldmatrix_x4(smem_address(a_tile + swizzle(row, chunk)), a[mi]);
    }
#pragma unroll
    for (int nj = 0; nj < 2; ++nj) {
      // matrices: (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15)
      const int row = wn + nj * 16 + (lane & 7) + ((lane >> 4) << 3);
      const int chunk = ks * 2 + ((lane >> 3) & 1);
      uint32_t r[4];
      ldmatrix_x4(smem_address(b_tile + swizzle(row, chunk)), r);
      b[2 * nj][0] = r[0];
      b[2 * nj][1] = r[1];
      b[2 * nj + 1][0] = r[2];
      b[2 * nj + 1][1] = r[3];
    }
  }
};

template <>
struct Mma<__half> : Mma16<__half> {
  __device__ static void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
};

template <>
struct Mma<__nv_bfloat16> : Mma16<__nv_bfloat16> {
  __device__ static void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
};

// float32 as TF32: m16n8k8, two k-steps per 16-float slice. Fragments are
// read with 32-bit shared loads and rounded to TF32 (round to nearest).
template <>
struct Mma<float> {
  static constexpr int kVec = 4;
  static constexpr int kSliceK = 16;
  using AFrag = uint32_t[4][4];
  using BFrag = uint32_t[4][2];

  __device__ static uint32_t tf32(const uint8_t* tile, int row, int k) {
    const float v = *reinterpret_cast<const float*>(tile + swizzle(row, k >> 2) + ((k & 3) << 2));
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(v));
    return r;
  }
  __device__ static void load(const uint8_t* a_tile, const uint8_t* b_tile, int ks, int wm, int wn, int lane,
                              AFrag& a, BFrag& b) {
    const int group = lane >> 2, tig = lane & 3, k0 = ks * 8;
#pragma unroll
    for (int mi = 0; mi < 4; ++mi) {
      const int row = wm + mi * 16 + group;
      a[mi][0] = tf32(a_tile, row, k0 + tig);
      a[mi][1] = tf32(a_tile, row + 8, k0 + tig);
      a[mi][2] = tf32(a_tile, row, k0 + tig + 4);
      a[mi][3] = tf32(a_tile, row + 8, k0 + tig + 4);
    }
#pragma unroll
    for (int ni = 0; ni < 4; ++ni) {
      const int row = wn + ni * 8 + group;
      b[ni][0] = tf32(b_tile, row, k0 + tig);
      b[ni][1] = tf32(b_tile, row, k0 + tig + 4);
    }
  }
  __device__ static void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
};

struct TcProblem {
  const void* act;   // NHWC [N][act_h][act_w][act_c]
  const void* wgt;   // [G][Ncol][taps][Cred]
  const void* bias;  // forward only, may be null
  void* out;
  Str4 os;           // output strides (n, channel, h, w)
  int act_h, act_w;
  int64_t act_c;     // channels of the activation tensor (= G * Cred)
  int out_h, out_w;  // output pixel grid (forward: P x Q; grad input: H x W)
  int64_t M;         // N * out_h * out_w
  int Cred, Ncol, R, S;
  int stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  FastDivmod div_sh, div_sw;  // grad input: which taps hit a strided output
};

// kBackward: the A gather of the grad-input pass (act = grad_output), where
// output pixel (h, w) meets grad_output pixel p = (h + pad - r*dil) / stride
// when that divides; otherwise the forward gather ih = p*stride - pad + r*dil.
template <typename T, bool kBackward>
__global__ void __launch_bounds__(kThreads) tc_kernel(TcProblem pb) {
  using M = Mma<T>;
  constexpr int kVec = M::kVec, kSliceK = M::kSliceK;
  __shared__ __align__(128) uint8_t smem[kStages * (kTileABytes + kTileBBytes)];
  uint8_t* const a_smem = smem;
  uint8_t* const b_smem = smem + kStages * kTileABytes;

  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const int64_t m0 = int64_t(blockIdx.x) * TBM;
  const int n0 = int(blockIdx.y) * TBN;
  const int g = int(blockIdx.z);
  const T* act = static_cast<const T*>(pb.act);
  const T* wgt = static_cast<const T*>(pb.wgt);
  const int taps = pb.R * pb.S;

  // This thread copies chunk `chunk` of A rows t/4 + 32 i (i < 4) and B rows
  // t/4 + 32 j (j < 2).
  const int chunk = t & 3;
  const int64_t out_hw = int64_t(pb.out_h) * pb.out_w;
  const T* a_img[4];
  int a_h[4], a_w[4];
  bool a_ok[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t m = m0 + (t >> 2) + 32 * i;
    a_ok[i] = m < pb.M;
    const int64_t img = a_ok[i] ? m / out_hw : 0, hw = a_ok[i] ? m - img * out_hw : 0;
    const int oh = int(hw / pb.out_w), ow = int(hw - int64_t(oh) * pb.out_w);
    a_img[i] = act + img * pb.act_h * pb.act_w * pb.act_c + int64_t(g) * pb.Cred;
    a_h[i] = kBackward ? oh + pb.pad_h : oh * pb.stride_h - pb.pad_h;
    a_w[i] = kBackward ? ow + pb.pad_w : ow * pb.stride_w - pb.pad_w;
  }
  const T* b_row[2];
  bool b_ok[2];
#pragma unroll
  for (int j = 0; j < 2; ++j) {
    const int n = n0 + (t >> 2) + 32 * j;
    b_ok[j] = n < pb.Ncol;
    b_row[j] = wgt + (int64_t(g) * pb.Ncol + (b_ok[j] ? n : 0)) * taps * pb.Cred;
  }

  // Reduction order: taps outer, Cred in slices of kSliceK inner.
  const int c_slices = (pb.Cred + kSliceK - 1) / kSliceK;
  const int k_tiles = taps * c_slices;
  int next_r = 0, next_s = 0, next_slice = 0, loaded = 0;

  auto load_tile = [&](int stage) {
    if (loaded < k_tiles) {
      const int c = next_slice * kSliceK + chunk * kVec;
      const bool c_ok = c < pb.Cred;  // Cred % kVec == 0: a chunk is all in or all out
      const int rs = next_r * pb.S + next_s;
      uint8_t* a_dst = a_smem + stage * kTileABytes;
      uint8_t* b_dst = b_smem + stage * kTileBBytes;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        int ih, iw;
        bool ok = a_ok[i] && c_ok;
        if (kBackward) {
          const int hh = a_h[i] - next_r * pb.dil_h, ww = a_w[i] - next_s * pb.dil_w;
          uint32_t qh = 0, rh = 1, qw = 0, rw = 1;
          if (hh >= 0 && ww >= 0) {
            pb.div_sh.divmod(uint32_t(hh), qh, rh);
            pb.div_sw.divmod(uint32_t(ww), qw, rw);
          }
          ok = ok && rh == 0 && rw == 0 && int(qh) < pb.act_h && int(qw) < pb.act_w;
          ih = int(qh);
          iw = int(qw);
        } else {
          ih = a_h[i] + next_r * pb.dil_h;
          iw = a_w[i] + next_s * pb.dil_w;
          ok = ok && ih >= 0 && ih < pb.act_h && iw >= 0 && iw < pb.act_w;
        }
        const T* src = ok ? a_img[i] + (int64_t(ih) * pb.act_w + iw) * pb.act_c + c : act;
        cp_async16(smem_address(a_dst + swizzle((t >> 2) + 32 * i, chunk)), src, ok);
      }
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const bool ok = b_ok[j] && c_ok;
        const T* src = ok ? b_row[j] + int64_t(rs) * pb.Cred + c : wgt;
        cp_async16(smem_address(b_dst + swizzle((t >> 2) + 32 * j, chunk)), src, ok);
      }
      ++loaded;
      if (++next_slice == c_slices) {
        next_slice = 0;
        if (++next_s == pb.S) {
          next_s = 0;
          ++next_r;
        }
      }
    }
    cp_async_commit();  // an empty group past the end keeps the wait counts uniform
  };

  float acc[4][4][4];
#pragma unroll
  for (int mi = 0; mi < 4; ++mi)
#pragma unroll
    for (int ni = 0; ni < 4; ++ni)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mi][ni][e] = 0.f;

  const int wm = (warp & 1) * 64, wn = (warp >> 1) * 32;
#pragma unroll
  for (int st = 0; st < kStages - 1; ++st) load_tile(st);

  for (int kt = 0; kt < k_tiles; ++kt) {
    // Groups committed so far: kStages - 1 + kt; allowing kStages - 2 pending
    // means tile kt has landed (for this thread; the barrier makes it all).
    cp_async_wait<kStages - 2>();
    __syncthreads();
    // Refill the stage computed in the previous iteration: every warp is
    // past that computation, since it is past the barrier above.
    load_tile((kt + kStages - 1) % kStages);

    const int stage = kt % kStages;
    const uint8_t* a_tile = a_smem + stage * kTileABytes;
    const uint8_t* b_tile = b_smem + stage * kTileBBytes;
#pragma unroll
    for (int ks = 0; ks < 2; ++ks) {
      typename M::AFrag a;
      typename M::BFrag b;
      M::load(a_tile, b_tile, ks, wm, wn, lane, a, b);
#pragma unroll
      for (int mi = 0; mi < 4; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) M::mma(acc[mi][ni], a[mi], b[ni]);
    }
  }
  cp_async_wait<0>();

  // Epilogue: c0, c1 at (row lane/4, cols 2*(lane%4) + {0,1}); c2, c3 eight rows down.
  T* out = static_cast<T*>(pb.out);
  const T* bias = static_cast<const T*>(pb.bias);
#pragma unroll
  for (int mi = 0; mi < 4; ++mi) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t m = m0 + wm + mi * 16 + (lane >> 2) + half * 8;
      if (m >= pb.M) continue;
      const int64_t img = m / out_hw, hw = m - img * out_hw;
      const int64_t oh = hw / pb.out_w, ow = hw - oh * pb.out_w;
      T* pixel = out + img * pb.os.n + oh * pb.os.h + ow * pb.os.w;
#pragma unroll
      for (int ni = 0; ni < 4; ++ni) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int n = n0 + wn + ni * 8 + (lane & 3) * 2 + e;
          if (n >= pb.Ncol) continue;
          const int64_t channel = int64_t(g) * pb.Ncol + n;
          float v = acc[mi][ni][half * 2 + e];
          if (!kBackward && bias) v += to_acc(bias[channel]);
          pixel[channel * pb.os.c] = from_acc<T>(v);
        }
      }
    }
  }
}

bool supported(DType dtype, bool allow_tf32, int64_t cred, int64_t ncol, int64_t groups, int64_t M,
               int64_t taps) {
  int vec;
  if (dtype == DType::Float16 || dtype == DType::BFloat16) vec = 8;
  else if (dtype == DType::Float32 && allow_tf32) vec = 4;
  else return false;
  if (cred % vec != 0 || cred < 16 || ncol < 16) return false;
  if (ceil_div(M, TBM) > kMaxGridX || ceil_div(ncol, TBN) > kMaxGridYZ || groups > kMaxGridYZ) return false;
  const int64_t slice = 64 / (dtype == DType::Float32 ? 4 : 2);
  return taps * ceil_div(cred, slice) < (int64_t(1) << 31) && cred < (int64_t(1) << 30) && ncol < (int64_t(1) << 30);
}

bool extents_ok(const ConvShape& s) {
  const int64_t limit = int64_t(1) << 30;
  return s.H + 2 * s.pad_h + s.dil_h * s.R < limit && s.W + 2 * s.pad_w + s.dil_w * s.S < limit &&
         s.P * s.stride_h < limit && s.Q * s.stride_w < limit && s.stride_h < limit && s.stride_w < limit;
}

TcProblem make_problem(const ConvShape& s) {
  TcProblem pb{};
  pb.R = int(s.R); pb.S = int(s.S);
  pb.stride_h = int(s.stride_h); pb.stride_w = int(s.stride_w);
  pb.pad_h = int(s.pad_h); pb.pad_w = int(s.pad_w);
  pb.dil_h = int(s.dil_h); pb.dil_w = int(s.dil_w);
  pb.div_sh = FastDivmod(uint32_t(s.stride_h));
  pb.div_sw = FastDivmod(uint32_t(s.stride_w));
  return pb;
}

template <bool kBackward>
cudaError_t launch(const TcProblem& pb, DType dtype, int64_t groups, cudaStream_t stream) {
  const dim3 grid(unsigned(ceil_div(pb.M, TBM)), unsigned(ceil_div(pb.Ncol, TBN)), unsigned(groups));
  if ((reinterpret_cast<uintptr_t>(pb.act) | reinterpret_cast<uintptr_t>(pb.wgt)) % 16 != 0)
    return cudaErrorMisalignedAddress;
  switch (dtype) {
    case DType::Float16: tc_kernel<__half, kBackward><<<grid, kThreads, 0, stream>>>(pb); break;
    case DType::BFloat16: tc_kernel<__nv_bfloat16, kBackward><<<grid, kThreads, 0, stream>>>(pb); break;
    case DType::Float32: tc_kernel<float, kBackward><<<grid, kThreads, 0, stream>>>(pb); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace

bool tensorcore_supported_forward(const ConvShape& s, DType dtype, bool allow_tf32) {
  return extents_ok(s) && supported(dtype, allow_tf32, s.C / s.groups, s.K / s.groups, s.groups, s.N * s.P * s.Q,
                                    s.R * s.S);
}

bool tensorcore_supported_backward_input(const ConvShape& s, DType dtype, bool allow_tf32) {
  return extents_ok(s) && supported(dtype, allow_tf32, s.K / s.groups, s.C / s.groups, s.groups, s.N * s.H * s.W,
                                    s.R * s.S);
}

cudaError_t tensorcore_forward(const ConvShape& s, DType dtype, const Operand& x, const Operand& w,
                               const void* bias, const MutableOperand& y, cudaStream_t stream) {
  if (s.N * s.K * s.P * s.Q == 0) return cudaSuccess;
  TcProblem pb = make_problem(s);
  pb.act = x.data; pb.wgt = w.data; pb.bias = bias;
  pb.out = y.data; pb.os = strides_of(y);
  pb.act_h = int(s.H); pb.act_w = int(s.W); pb.act_c = s.C;
  pb.out_h = int(s.P); pb.out_w = int(s.Q);
  pb.M = s.N * s.P * s.Q;
  pb.Cred = int(s.C / s.groups); pb.Ncol = int(s.K / s.groups);
  return launch<false>(pb, dtype, s.groups, stream);
}

cudaError_t tensorcore_backward_input(const ConvShape& s, DType dtype, const Operand& gy, const Operand& wt,
                                      const MutableOperand& gx, cudaStream_t stream) {
  if (s.N * s.C * s.H * s.W == 0) return cudaSuccess;
  TcProblem pb = make_problem(s);
  pb.act = gy.data; pb.wgt = wt.data; pb.bias = nullptr;
  pb.out = gx.data; pb.os = strides_of(gx);
  pb.act_h = int(s.P); pb.act_w = int(s.Q); pb.act_c = s.K;
  pb.out_h = int(s.H); pb.out_w = int(s.W);
  pb.M = s.N * s.H * s.W;
  pb.Cred = int(s.K / s.groups); pb.Ncol = int(s.C / s.groups);
  return launch<true>(pb, dtype, s.groups, stream);
}

}  // namespace cuda
}  // namespace convkit
