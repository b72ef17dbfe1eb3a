// The kernel source shared by every ISA translation unit. The includer defines
// CONVKIT_ISA_NS (the namespace everything lands in) and, before including,
// selects the target ISA (e.g. `#pragma GCC target("avx2,fma")`). GCC vector
// extensions make the same source compile to AVX-512, AVX2+FMA or SSE2 pairs.
// CONVKIT_WIDE_VEC_BYTES (default 32) is the vector width of the wide
// kernels, CONVKIT_WIDE_MR (default 6) their pixels (or items) per call and
// CONVKIT_WIDE_TILES (default 1) the output-channel tiles a call may cover,
// CONVKIT_WIDE_BLOCK_BYTES (default 16 KB, L1-sized) the packed weights of one
// tile and reduction block;
// CONVKIT_VEC_REGS (default 16) is the number of vector registers;
// the batch-lane kernels use it too (a vector is a block of images); the
// plane kernels use 32-byte vectors (their rows are narrow), and the wide
// kernels' vectors for the stretches of a row that fill them.
//
// No standard-library templates are used here on purpose: an inline template
// instantiated under AVX2 could be picked by the linker for a generic caller.
#include <cstdint>
#include <cstring>

#include "kernels.h"

#ifndef CONVKIT_WIDE_VEC_BYTES
#define CONVKIT_WIDE_VEC_BYTES 32
#endif
#ifndef CONVKIT_WIDE_MR
#define CONVKIT_WIDE_MR 6
#endif
#ifndef CONVKIT_WIDE_TILES
#define CONVKIT_WIDE_TILES 1
#endif
#ifndef CONVKIT_WIDE_BLOCK_BYTES
#define CONVKIT_WIDE_BLOCK_BYTES 16384
#endif
#ifndef CONVKIT_VEC_REGS
#define CONVKIT_VEC_REGS 16
#endif

namespace convkit {
namespace cpu {
namespace CONVKIT_ISA_NS {
namespace {

constexpr int kVecBytes = 32;                      // plane kernels and sums
constexpr int kLaneBytes = CONVKIT_WIDE_VEC_BYTES;  // batch-lane kernels
constexpr int kPlaneRegs = CONVKIT_VEC_REGS;
constexpr int kWideBytes = CONVKIT_WIDE_VEC_BYTES;  // wide kernels

template <typename T, int Bytes = kVecBytes>
struct Vec {
  typedef T type __attribute__((vector_size(Bytes)));
  static constexpr int L = Bytes / sizeof(T);
};

template <typename T, int Bytes = kVecBytes>
using V = typename Vec<T, Bytes>::type;

template <typename T, int Bytes = kVecBytes>
inline V<T, Bytes> loadu(const T* p) {
  V<T, Bytes> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T, int Bytes = kVecBytes>
inline void storeu(T* p, V<T, Bytes> v) {
  std::memcpy(p, &v, sizeof(v));
}

template <typename T, int Bytes = kVecBytes>
inline V<T, Bytes> splat(T x) {
  // x - 0 is x for every x (0 + x is not, for x = -0): a plain broadcast, no add.
  return x - V<T, Bytes>{};
}

// Lanes summed in index order: a fixed order, so results never depend on the caller.
template <typename T>
inline T hsum(V<T> v) {
  T lanes[Vec<T>::L];
  std::memcpy(lanes, &v, sizeof(v));
  T total = lanes[0];
  for (int i = 1; i < Vec<T>::L; ++i) total += lanes[i];
  return total;
}

// Stores the first n (< L) lanes.
template <typename T>
inline void store_partial(T* p, V<T> v, int64_t n) {
  T lanes[Vec<T>::L];
  std::memcpy(lanes, &v, sizeof(v));
  for (int64_t i = 0; i < n; ++i) p[i] = lanes[i];
}

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// v, kept in a register: for a loaded vector that several FMAs use, GCC may
// otherwise fold the load into each of them (a memory operand each), repeating
// it once per use. (CONVKIT_VEC_CONSTRAINT: the includer's asm register class.)
template <typename Vt>
inline Vt in_register(Vt v) {
#ifdef CONVKIT_VEC_CONSTRAINT
  asm("" : "+" CONVKIT_VEC_CONSTRAINT(v));
#endif
  return v;
}

// ---------------------------------------------------------------------------
// Wide tiles: M pixels (or items) x TT tiles of 64 bytes of output channels.
constexpr int kMR = CONVKIT_WIDE_MR;
constexpr int kTiles = CONVKIT_WIDE_TILES;

template <typename T>
struct Wide {
  static constexpr int L = Vec<T, kWideBytes>::L;
  static constexpr int NV = kTileBytes / kWideBytes;  // vectors per tile
  static constexpr int NR = L * NV;                   // lanes per tile
  using type = V<T, kWideBytes>;
};

inline void transpose(V<float> (&r)[8]);
inline void transpose(V<double> (&r)[4]);

// Planar outputs take register transposes where a call's M pixels are one
// run of M (whole 32-byte vectors of pixels): rows of lanes stored straight
// into their planes.
template <typename T>
constexpr bool wide_planar_stores() {
  return kMR % Vec<T>::L == 0;
}

// Piece h (32 bytes) of a wide vector.
template <typename T, typename W>
inline V<T> piece(const W& w, int h) {
  V<T> p;
  std::memcpy(&p, reinterpret_cast<const char*>(&w) + h * sizeof(V<T>), sizeof(p));
  return p;
}

template <typename T, int M, int TT>
void wide_tile_m(const WideTile<T>& a, int64_t first, const int64_t* pix_in, const int64_t* pix_out) {
  constexpr int L = Wide<T>::L, NVT = Wide<T>::NV, NV = NVT * TT, LANES = L * NV;
  using W = typename Wide<T>::type;
  W acc[M][NV], init[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) init[v] = a.init ? loadu<T, kWideBytes>(a.init + v * L) : W{};
  int64_t po[M];
#pragma GCC unroll 16
  for (int j = 0; j < M; ++j) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[j][v] = a.acc_in ? loadu<T, kWideBytes>(a.acc_in + (first + j) * LANES + v * L) : init[v];
    po[j] = pix_in[j];
  }
  const T* w = a.w;
  const int64_t C = a.C, cs = a.in_chan, wt = a.w_tile;
  for (int64_t t = 0; t < a.ntaps; ++t) {
    const T* src = a.in + a.tap_off[t];
    for (int64_t c = 0; c < C; ++c) {
      W wv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) wv[v] = loadu<T, kWideBytes>(w + v / NVT * wt + v % NVT * L);
      w += Wide<T>::NR;
#pragma GCC unroll 16
      for (int j = 0; j < M; ++j) {
        const T b = src[po[j]];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[j][v] += b * wv[v];
      }
      src += cs;
    }
  }
  if (a.acc_out) {  // partial sums, continued by a later call
#pragma GCC unroll 16
    for (int j = 0; j < M; ++j)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) storeu<T, kWideBytes>(a.acc_out + (first + j) * LANES + v * L, acc[j][v]);
    return;
  }
  if (a.out_lane == 1 && a.nr_valid == LANES) {
#pragma GCC unroll 16
    for (int j = 0; j < M; ++j)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) storeu<T, kWideBytes>(a.out + pix_out[j] + v * L, acc[j][v]);
    return;
  }
  if constexpr (M == kMR && wide_planar_stores<T>()) {
    bool run = a.out_lane != 1;  // planar: lanes are whole planes apart
#pragma GCC unroll 16
    for (int j = 1; j < M; ++j) run = run && pix_out[j] == pix_out[0] + j;
    if (run) {
      constexpr int VL = Vec<T>::L, PIECES = L / VL;
#pragma GCC unroll 2
      for (int j0 = 0; j0 < M; j0 += VL)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v)
#pragma GCC unroll 2
          for (int h = 0; h < PIECES; ++h) {
            V<T> r[VL];
#pragma GCC unroll 8
            for (int j = 0; j < VL; ++j) r[j] = piece<T>(acc[j0 + j][v], h);
            transpose(r);
            const int64_t lane0 = v * L + h * VL;
#pragma GCC unroll 8
            for (int l = 0; l < VL; ++l)
              if (lane0 + l < a.nr_valid) storeu(a.out + pix_out[j0] + (lane0 + l) * a.out_lane, r[l]);
          }
      return;
    }
  }
  // Scattered store (e.g. strided planar output, a call's last pixels): cheap next to the reduction.
  T tile[M][LANES];
#pragma GCC unroll 16
  for (int j = 0; j < M; ++j)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) storeu<T, kWideBytes>(tile[j] + v * L, acc[j][v]);
  for (int j = 0; j < M; ++j) {
    T* dst = a.out + pix_out[j];
    for (int64_t l = 0; l < a.nr_valid; ++l) dst[l * a.out_lane] = tile[j][l];
  }
}

// The tile kernel for exactly m (1..M) pixels.
template <typename T, int M, int TT>
void wide_tile_upto(const WideTile<T>& a, int64_t first, int64_t m) {
  if constexpr (M > 1) {
    if (m < M) return wide_tile_upto<T, M - 1, TT>(a, first, m);
  }
  wide_tile_m<T, M, TT>(a, first, a.pix_in + first, a.pix_out + first);
}

template <typename T, int TT>
void wide_tiles(const WideTile<T>& a) {
  for (int64_t q = 0; q < a.npix; q += kMR) wide_tile_upto<T, kMR, TT>(a, q, min64(kMR, a.npix - q));
}

// The tile kernel for a call of `tiles` (1..TT) tiles.
template <typename T, int TT>
void wide_tiles_upto(const WideTile<T>& a) {
  if constexpr (TT > 1) {
    if (a.tiles < TT) return wide_tiles_upto<T, TT - 1>(a);
  }
  wide_tiles<T, TT>(a);
}

template <typename T>
void wide_tile(const WideTile<T>& a) {
  wide_tiles_upto<T, kTiles>(a);
}

// ---------------------------------------------------------------------------
// Wide grad_weight: M (channel, tap) items x TT tiles of output channels.
template <typename T, int M, int TT>
void wide_wgrad_m(const WideWgrad<T>& a) {
  constexpr int L = Wide<T>::L, NV = Wide<T>::NV * TT;
  using W = typename Wide<T>::type;
  // The call's sums start from zero and are added to acc at the end: a
  // two-level sum, so long reductions lose no more accuracy than short ones.
  W acc[M][NV] = {};
  int64_t off[M];
#pragma GCC unroll 16
  for (int j = 0; j < M; ++j) off[j] = a.item_off[j];
  for (int64_t row = 0; row < a.rows; ++row) {
    const T* x = a.x + row * a.x_row;
    const T* g = a.gy + row * a.gy_row;
    for (int64_t col = 0; col < a.cols; ++col) {
      W gv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) gv[v] = loadu<T, kWideBytes>(g + v * L);
#pragma GCC unroll 16
      for (int j = 0; j < M; ++j) {
        const T b = x[off[j]];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[j][v] += b * gv[v];
      }
      x += a.x_col;
      g += a.gy_col;
    }
  }
#pragma GCC unroll 16
  for (int j = 0; j < M; ++j)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      T* dst = a.acc + j * a.acc_item + v * L;
      storeu<T, kWideBytes>(dst, a.accumulate ? loadu<T, kWideBytes>(dst) + acc[j][v] : acc[j][v]);
    }
}

template <typename T, int M, int TT>
void wide_wgrad_upto(const WideWgrad<T>& a) {
  if constexpr (M > 1) {
    if (a.m < M) return wide_wgrad_upto<T, M - 1, TT>(a);
  }
  wide_wgrad_m<T, M, TT>(a);
}

template <typename T, int TT>
void wide_wgrad_tiles(const WideWgrad<T>& a) {
  if constexpr (TT > 1) {
    if (a.tiles < TT) return wide_wgrad_tiles<T, TT - 1>(a);
  }
  wide_wgrad_upto<T, kMR, TT>(a);
}

template <typename T>
void wide_wgrad(const WideWgrad<T>& a) {
  wide_wgrad_tiles<T, kTiles>(a);
}

// ---------------------------------------------------------------------------
// One row's block of KB output channels x QB vectors (of Bytes) at column q0.
template <typename T, int KB, int QB, int Bytes = kVecBytes>
inline void store_plane_block(const PlaneRow<T>& a, T* out, int64_t q0, const V<T, Bytes> (&acc)[KB][QB]) {
  constexpr int L = Vec<T, Bytes>::L;
  if (q0 + QB * L <= a.Q) {
#pragma GCC unroll 8
    for (int k = 0; k < KB; ++k)
#pragma GCC unroll 8
      for (int v = 0; v < QB; ++v) storeu<T, Bytes>(out + k * a.out_k + q0 + v * L, acc[k][v]);
  } else {
    // Last block of the row: through a buffer (a branch per vector here
    // would keep the accumulators out of registers).
    T tile[KB][QB * L];
#pragma GCC unroll 8
    for (int k = 0; k < KB; ++k)
#pragma GCC unroll 8
      for (int v = 0; v < QB; ++v) storeu<T, Bytes>(tile[k] + v * L, acc[k][v]);
    for (int k = 0; k < KB; ++k) std::memcpy(out + k * a.out_k + q0, tile[k], sizeof(T) * (a.Q - q0));
  }
}

// A block size as a type, so one generic lambda serves every size.
template <int N>
struct Vecs {
  static constexpr int n = N;
};

// The blocks of one output row set: whole blocks of QB vectors, then one
// block of the vectors left (the last one partial where Q is not a whole
// number of vectors), so no block computes past the row's last vector.
template <typename T, int QB, typename Block, int L = Vec<T>::L>
inline void along_row(int64_t Q, const Block& block) {
  int64_t q0 = 0;
  for (; q0 + QB * L <= Q; q0 += QB * L) block(q0, Vecs<QB>{});
  const int64_t rest = (Q - q0 + L - 1) / L;
  if (rest == 1) block(q0, Vecs<1>{});
  if constexpr (QB >= 2) if (rest == 2) block(q0, Vecs<2>{});
  if constexpr (QB >= 3) if (rest == 3) block(q0, Vecs<3>{});
  if constexpr (QB >= 4) if (rest == 4) block(q0, Vecs<4>{});
  static_assert(QB <= 4, "along_row takes blocks of up to 4 vectors");
}

// Plane rows: RB rows x KB output channels x QB vectors (of Bytes) along
// the width. (One output channel runs two rows at once: twice the independent sums.)
template <typename T, int KB, int QB, int RB, int Bytes>
void plane_rows_kq(const PlaneRow<T>& a, int64_t row) {
  constexpr int L = Vec<T, Bytes>::L;
  using Vb = V<T, Bytes>;
  const T* in_row = a.in + row * a.in_row_step;
  T* out_row = a.out + row * a.out_row;
  auto block = [&](int64_t q0, auto vecs) {
    constexpr int B = decltype(vecs)::n;
    Vb acc[RB][KB][B];
#pragma GCC unroll 8
    for (int k = 0; k < KB; ++k) {
      const Vb b = a.bias ? splat<T, Bytes>(a.bias[k]) : Vb{};
#pragma GCC unroll 8
      for (int r = 0; r < RB; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < B; ++v) acc[r][k][v] = b;
    }
    const T* base = in_row + q0;
    const T* w = a.w;
    const int64_t* off = a.in_off;
    for (int64_t i = 0; i < a.n; ++i) {
      const T* src = base + off[i];
      Vb x[RB][B];
#pragma GCC unroll 8
      for (int r = 0; r < RB; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < B; ++v) x[r][v] = in_register(loadu<T, Bytes>(src + r * a.in_row_step + v * L));
#pragma GCC unroll 8
      for (int k = 0; k < KB; ++k) {
        const Vb wk = in_register(splat<T, Bytes>(w[k]));
#pragma GCC unroll 8
        for (int r = 0; r < RB; ++r)
#pragma GCC unroll 8
          for (int v = 0; v < B; ++v) acc[r][k][v] += wk * x[r][v];
      }
      w += kPlaneKB;
    }
#pragma GCC unroll 8
    for (int r = 0; r < RB; ++r) store_plane_block<T, KB, B, Bytes>(a, out_row + r * a.out_row, q0, acc[r]);
  };
  along_row<T, QB, decltype(block), L>(a.Q, block);
}

// Vectors per block along the width with kb output channels: kb * qb
// accumulators, qb input vectors and a weight fit the vector registers.
constexpr int plane_qb(int kb) {
  const int qb = (kPlaneRegs - 1) / (kb + 1);
  return kb == 1 ? 4 : qb < 4 ? qb : 4;
}

template <typename T, int KB, int Bytes>
void plane_row_kq(const PlaneRow<T>& a) {
  constexpr int RB = KB == 1 ? 2 : 1;
  int64_t row = 0;
  for (; row + RB <= a.rows; row += RB) plane_rows_kq<T, KB, plane_qb(KB), RB, Bytes>(a, row);
  for (; row < a.rows; ++row) plane_rows_kq<T, KB, plane_qb(KB), 1, Bytes>(a, row);
}

// Where the wide kernels' vectors are wider than the plane kernels' (AVX-512),
// the columns that fill whole wide vectors take those, the rest the narrow
// ones (whose reads stay within the margin the buffers carry, a multiple of
// the narrow vector). Twice the products an instruction: 2-vCPU Xeon,
// forward, 3x3/2 3 -> 32 stem at 224x224 0.30 -> 0.22 ms, 3x3 3 -> 64 at
// 224x224 1.80 -> 0.89 ms (batch 1). Rows of fewer than four wide vectors
// that do not fill them keep the narrow ones: their second call per row cost
// more than it saved (28-pixel rows, 4 channels per group: 1.04-1.10x).
template <typename T, int KB>
void plane_row_kb(const PlaneRow<T>& a) {
  int64_t whole = 0;  // columns on the wide vectors
  if constexpr (kWideBytes > kVecBytes) {
    constexpr int64_t WL = Vec<T, kWideBytes>::L;
    if (a.Q % WL == 0 || a.Q >= 4 * WL) whole = a.Q / WL * WL;
  }
  if (whole > 0) {
    PlaneRow<T> wide = a;
    wide.Q = whole;
    plane_row_kq<T, KB, kWideBytes>(wide);
  }
  if (whole < a.Q) {
    PlaneRow<T> rest = a;
    rest.in += whole;
    rest.out += whole;
    rest.Q -= whole;
    plane_row_kq<T, KB, kVecBytes>(rest);
  }
}

// One channel, a dense K x K window, stride 1 (depthwise rows, forward or
// grad_input): neighbouring output rows read the same input rows, so RB rows
// keep the K * K weights in registers and load each input vector once for up
// to K of them (3 x 3: 0.55 loads per multiply-add instead of 1.1, 1.5x
// faster in L1; 5 x 5 on 32 registers: 0.6). Same products in the same
// order as plane_rows_kq, so the same results.
template <typename T, int K, int RB, int QB>
void plane_rows_dense(const PlaneRow<T>& a, int64_t row) {
  constexpr int L = Vec<T>::L;
  const int64_t step = a.in_row_step;
  const T* in_row = a.in + a.in_off[0] + row * step;
  T* out_row = a.out + row * a.out_row;
  V<T> w[K * K];
#pragma GCC unroll 25
  for (int i = 0; i < K * K; ++i) w[i] = splat(a.w[i * kPlaneKB]);
  const V<T> b = a.bias ? splat(a.bias[0]) : V<T>{};
  along_row<T, QB>(a.Q, [&](int64_t q0, auto vecs) {
    constexpr int B = decltype(vecs)::n;
    V<T> acc[RB][1][B];
#pragma GCC unroll 8
    for (int r = 0; r < RB; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < B; ++v) acc[r][0][v] = b;
#pragma GCC unroll 8
    for (int j = 0; j < RB + K - 1; ++j)  // input rows
#pragma GCC unroll 5
      for (int t = 0; t < K; ++t)
#pragma GCC unroll 8
        for (int v = 0; v < B; ++v) {
          const V<T> x = in_register(loadu(in_row + j * step + q0 + v * L + t));
#pragma GCC unroll 8
          for (int r = 0; r < RB; ++r)
            if (j - r >= 0 && j - r < K) acc[r][0][v] += w[(j - r) * K + t] * x;
        }
#pragma GCC unroll 8
    for (int r = 0; r < RB; ++r) store_plane_block<T, 1, B>(a, out_row + r * a.out_row, q0, acc[r]);
  });
}

// The window size K (3, or 5 where 25 weights fit the registers) when one
// channel's n taps at offsets off are a dense K x K window over rows `row`
// apart, consecutive output rows also `row` apart (stride 1); else 0.
inline int dense_window(int64_t kb, int64_t n, const int64_t* off, int64_t row) {
  const int K = n == 9 ? 3 : n == 25 && kPlaneRegs >= 32 ? 5 : 0;
  if (kb != 1 || K == 0) return 0;
  for (int i = 0; i < K * K; ++i)
    if (off[i] != off[0] + i / K * row + i % K) return 0;
  return K;
}

template <typename T, int K, int RB, int QB>
void plane_rows_window(const PlaneRow<T>& a) {
  int64_t row = 0;
  for (; row + RB <= a.rows; row += RB) plane_rows_dense<T, K, RB, QB>(a, row);
  for (; row < a.rows; ++row) plane_rows_dense<T, K, 1, QB>(a, row);
}

template <typename T>
void plane_row(const PlaneRow<T>& a) {
  switch (dense_window(a.kb, a.n, a.in_off, a.in_row_step)) {
    case 3: return plane_rows_window<T, 3, 3, 2>(a);
    case 5: return plane_rows_window<T, 5, 2, 2>(a);
  }
  switch (a.kb) {
    case 6: plane_row_kb<T, 6>(a); break;
    case 5: plane_row_kb<T, 5>(a); break;
    case 4: plane_row_kb<T, 4>(a); break;
    case 3: plane_row_kb<T, 3>(a); break;
    case 2: plane_row_kb<T, 2>(a); break;
    default: plane_row_kb<T, 1>(a); break;
  }
}

// ---------------------------------------------------------------------------
// Channel lanes: QB output pixels of a row at once, so each tap's weight
// vector is loaded once for QB multiply-adds. With taps in rows of S
// adjacent pixels (S > 0, stride 1), a row's QB + S - 1 input vectors are
// also loaded once for its S taps.
template <typename T, int QB, int S>
void lane_window_q(const LaneWindow<T>& a, int64_t p, int64_t q) {
  constexpr int L = Wide<T>::L;
  using W = typename Wide<T>::type;
  const W init = a.init ? loadu<T, kWideBytes>(a.init) : W{};
  W acc[QB];
#pragma GCC unroll 8
  for (int j = 0; j < QB; ++j) acc[j] = init;
  const T* base = a.in + p * a.in_row + q * a.in_col;
  if constexpr (S == 0) {
    for (int64_t t = 0; t < a.ntaps; ++t) {
      const W wt = loadu<T, kWideBytes>(a.w + t * L);
      const T* src = base + a.tap_off[t];
#pragma GCC unroll 8
      for (int j = 0; j < QB; ++j) acc[j] += wt * loadu<T, kWideBytes>(src + j * a.in_col);
    }
  } else {
    const T* w = a.w;
    for (int64_t r = 0; r < a.ntaps; r += S, w += S * L) {
      const T* src = base + a.tap_off[r];
      W x[QB + S - 1];
#pragma GCC unroll 16
      for (int i = 0; i < QB + S - 1; ++i) x[i] = loadu<T, kWideBytes>(src + i * L);
#pragma GCC unroll 5
      for (int t = 0; t < S; ++t) {
        const W wt = loadu<T, kWideBytes>(w + t * L);
#pragma GCC unroll 8
        for (int j = 0; j < QB; ++j) acc[j] += wt * x[j + t];
      }
    }
  }
  T* out = a.out + (p * a.Q + q) * L;
#pragma GCC unroll 8
  for (int j = 0; j < QB; ++j) storeu<T, kWideBytes>(out + j * L, acc[j]);
}

// The kernel for m (1..QB) pixels: S taps a row (3 or 5), or any taps (S = 0).
template <typename T, int QB, int S>
void lane_window_upto(const LaneWindow<T>& a, int64_t p, int64_t q, int64_t m) {
  if constexpr (QB > 1) {
    if (m < QB) return lane_window_upto<T, QB - 1, S>(a, p, q, m);
  }
  lane_window_q<T, QB, S>(a, p, q);
}

template <typename T, int S>
void lane_window_s(const LaneWindow<T>& a) {
  constexpr int QB = kPlaneRegs >= 32 ? 8 : 4;  // QB sums + QB + S - 1 inputs in registers
  for (int64_t p = 0; p < a.P; ++p)
    for (int64_t q = 0; q < a.Q; q += QB) lane_window_upto<T, QB, S>(a, p, q, min64(QB, a.Q - q));
}

template <typename T>
void lane_window(const LaneWindow<T>& a) {
  const bool rows = a.in_col == Wide<T>::L;
  if (rows && a.row_taps == 3) return lane_window_s<T, 3>(a);
  if (rows && a.row_taps == 5) return lane_window_s<T, 5>(a);
  lane_window_s<T, 0>(a);
}

// Their weight gradient, TB taps per sweep over the pixels (TB sums in registers).
template <typename T, int TB>
void lane_window_grad_t(const LaneWindowGrad<T>& a, int64_t t0) {
  constexpr int L = Wide<T>::L;
  using W = typename Wide<T>::type;
  W acc[TB] = {};
  int64_t off[TB];
#pragma GCC unroll 16
  for (int j = 0; j < TB; ++j) off[j] = a.tap_off[t0 + j];
  for (int64_t p = 0; p < a.P; ++p) {
    const T* g = a.gy + p * a.Q * L;
    const T* base = a.in + p * a.in_row;
    for (int64_t q = 0; q < a.Q; ++q, g += L, base += a.in_col) {
      const W gv = loadu<T, kWideBytes>(g);
#pragma GCC unroll 16
      for (int j = 0; j < TB; ++j) acc[j] += gv * loadu<T, kWideBytes>(base + off[j]);
    }
  }
#pragma GCC unroll 16
  for (int j = 0; j < TB; ++j) {
    T* dst = a.acc + (t0 + j) * L;
    storeu<T, kWideBytes>(dst, loadu<T, kWideBytes>(dst) + acc[j]);
  }
}

template <typename T, int TB>
void lane_window_grad_upto(const LaneWindowGrad<T>& a, int64_t t0, int64_t m) {
  if constexpr (TB > 1) {
    if (m < TB) return lane_window_grad_upto<T, TB - 1>(a, t0, m);
  }
  lane_window_grad_t<T, TB>(a, t0);
}

template <typename T>
void lane_window_grad(const LaneWindowGrad<T>& a) {
  constexpr int TB = 13;  // 3 x 3 in one sweep, 5 x 5 in two
  for (int64_t t0 = 0; t0 < a.ntaps; t0 += TB) lane_window_grad_upto<T, TB>(a, t0, min64(TB, a.ntaps - t0));
}

// ---------------------------------------------------------------------------
// Plane grad_weight: KB output channels x TB items of vector accumulators.
// Surplus channels/items repeat the last real one and are not stored.
template <typename T, int KB, int TB>
void plane_wgrad_kt(const PlaneWgrad<T>& a) {
  constexpr int L = Vec<T>::L;
  V<T> acc[KB][TB];
  int64_t toff[TB], goff[KB], aoff[KB][TB];
#pragma GCC unroll 16
  for (int t = 0; t < TB; ++t) toff[t] = a.item_off[min64(t, a.nitem - 1)];
#pragma GCC unroll 16
  for (int k = 0; k < KB; ++k) goff[k] = min64(k, a.kb - 1) * a.gy_k;
#pragma GCC unroll 16
  for (int k = 0; k < KB; ++k)
#pragma GCC unroll 16
    for (int t = 0; t < TB; ++t) {
      aoff[k][t] = (min64(k, a.kb - 1) * a.acc_k + min64(t, a.nitem - 1)) * L;
      acc[k][t] = V<T>{};  // a two-level sum, as in wide_wgrad_m
    }
  for (int64_t row = 0; row < a.rows; ++row) {
    const T* x = a.x + row * a.x_row;
    const T* g = a.gy + row * a.gy_row;
    for (int64_t v = 0; v < a.qv; ++v) {
      const int64_t o = v * L;
      if constexpr (KB >= TB) {
        V<T> xv[TB];
#pragma GCC unroll 16
        for (int t = 0; t < TB; ++t) xv[t] = in_register(loadu(x + toff[t] + o));
#pragma GCC unroll 16
        for (int k = 0; k < KB; ++k) {
          const V<T> gv = in_register(loadu(g + goff[k] + o));
#pragma GCC unroll 16
          for (int t = 0; t < TB; ++t) acc[k][t] += gv * xv[t];
        }
      } else {
        V<T> gv[KB];
#pragma GCC unroll 16
        for (int k = 0; k < KB; ++k) gv[k] = loadu(g + goff[k] + o);
#pragma GCC unroll 16
        for (int t = 0; t < TB; ++t) {
          const V<T> xv = in_register(loadu(x + toff[t] + o));
#pragma GCC unroll 16
          for (int k = 0; k < KB; ++k) acc[k][t] += gv[k] * xv;
        }
      }
    }
  }
  // Only real slots are stored (surplus ones hold copies of the same sums).
#pragma GCC unroll 16
  for (int k = KB - 1; k >= 0; --k)
#pragma GCC unroll 16
    for (int t = TB - 1; t >= 0; --t)
      if (k < a.kb && t < a.nitem) storeu(a.acc + aoff[k][t], loadu(a.acc + aoff[k][t]) + acc[k][t]);
}

// One channel's dense 3 x 3 taps at stride 1 (a depthwise layer): x row j
// pairs with grad_output rows j - 2 .. j, so RB grad_output rows are held in
// registers and each x vector is loaded once for up to three taps (0.6 loads
// per multiply-add instead of 1.1).
template <typename T, int RB>
inline void plane_wgrad_3x3_rows(const PlaneWgrad<T>& a, int64_t row, V<T> (&acc)[9]) {
  constexpr int L = Vec<T>::L;
  const T* x = a.x + a.item_off[0] + row * a.x_row;
  const T* g = a.gy + row * a.gy_row;
  for (int64_t v = 0; v < a.qv; ++v) {
    const int64_t o = v * L;
    V<T> gv[RB];
#pragma GCC unroll 8
    for (int r = 0; r < RB; ++r) gv[r] = loadu(g + r * a.gy_row + o);
#pragma GCC unroll 8
    for (int j = 0; j < RB + 2; ++j)
#pragma GCC unroll 3
      for (int t = 0; t < 3; ++t) {
        const V<T> xv = in_register(loadu(x + j * a.x_row + o + t));
#pragma GCC unroll 8
        for (int r = 0; r < RB; ++r)
          if (j - r >= 0 && j - r < 3) acc[(j - r) * 3 + t] += gv[r] * xv;
      }
  }
}

template <typename T>
void plane_wgrad_3x3(const PlaneWgrad<T>& a) {
  constexpr int RB = 6;
  V<T> acc[9];
#pragma GCC unroll 9
  for (int i = 0; i < 9; ++i) acc[i] = V<T>{};
  int64_t row = 0;
  for (; row + RB <= a.rows; row += RB) plane_wgrad_3x3_rows<T, RB>(a, row, acc);
  for (; row < a.rows; ++row) plane_wgrad_3x3_rows<T, 1>(a, row, acc);
#pragma GCC unroll 9
  for (int i = 0; i < 9; ++i) storeu(a.acc + i * Vec<T>::L, loadu(a.acc + i * Vec<T>::L) + acc[i]);
}

// Items per plane grad_weight call for kb output channels: the kb x items
// accumulators fill about three quarters of the vector registers (one
// channel keeps 12; calls with at most 9 items, a 3 x 3 depthwise layer's, take 9).
constexpr int plane_wgrad_items(int64_t kb) { return kb == 1 ? 12 : kPlaneRegs * 3 / 4 / (kb == 5 ? 6 : kb); }

template <typename T>
void plane_wgrad(const PlaneWgrad<T>& a) {
  switch (a.kb > 6 ? 6 : a.kb) {
    case 1:  // a 3 x 3 depthwise layer's 9 items in 9 accumulators, not 12 (surplus ones would repeat the 9th)
      if (dense_window(a.kb, a.nitem, a.item_off, a.x_row) == 3) return plane_wgrad_3x3(a);
      if (a.nitem <= 9) return plane_wgrad_kt<T, 1, 9>(a);
      plane_wgrad_kt<T, 1, plane_wgrad_items(1)>(a);
      break;
    case 2: plane_wgrad_kt<T, 2, plane_wgrad_items(2)>(a); break;
    case 3: plane_wgrad_kt<T, 3, plane_wgrad_items(3)>(a); break;
    case 4: plane_wgrad_kt<T, 4, plane_wgrad_items(4)>(a); break;
    default: plane_wgrad_kt<T, 6, plane_wgrad_items(6)>(a); break;
  }
}

// ---------------------------------------------------------------------------
// Batch lanes: KB output channels x M pixels of vector accumulators, one
// vector of images each; weights are broadcast.
template <typename T, int KB, int M>
void batch_tile_km(const BatchTile<T>& a, int64_t first) {
  V<T, kLaneBytes> acc[KB][M];
#pragma GCC unroll 4
  for (int k = 0; k < KB; ++k) {
    const V<T, kLaneBytes> b = a.init ? splat<T, kLaneBytes>(a.init[k]) : V<T, kLaneBytes>{};
#pragma GCC unroll 24
    for (int m = 0; m < M; ++m) acc[k][m] = b;
  }
  const T* src[M];
#pragma GCC unroll 24
  for (int m = 0; m < M; ++m) src[m] = a.in + a.pix_in[first + m];
  for (int64_t sg = 0; sg < a.nseg; ++sg) {
    const T* w = a.w + a.seg[2 * sg] * kBatchKB;
    for (int64_t j = a.seg[2 * sg]; j < a.seg[2 * sg + 1]; ++j) {
      const int64_t off = a.item_off[j];
      // The smaller operand set stays in registers beside the accumulators.
      if constexpr (KB < M) {
        V<T, kLaneBytes> wk[KB];
#pragma GCC unroll 4
        for (int k = 0; k < KB; ++k) wk[k] = splat<T, kLaneBytes>(w[k]);
#pragma GCC unroll 24
        for (int m = 0; m < M; ++m) {
          const V<T, kLaneBytes> x = in_register(loadu<T, kLaneBytes>(src[m] + off));
#pragma GCC unroll 4
          for (int k = 0; k < KB; ++k) acc[k][m] += wk[k] * x;
        }
      } else {
        V<T, kLaneBytes> x[M];
#pragma GCC unroll 24
        for (int m = 0; m < M; ++m) x[m] = in_register(loadu<T, kLaneBytes>(src[m] + off));
#pragma GCC unroll 4
        for (int k = 0; k < KB; ++k) {
          const V<T, kLaneBytes> wk = splat<T, kLaneBytes>(w[k]);
#pragma GCC unroll 24
          for (int m = 0; m < M; ++m) acc[k][m] += wk * x[m];
        }
      }
      w += kBatchKB;
    }
  }
#pragma GCC unroll 24
  for (int m = 0; m < M; ++m) {
    T* out = a.out + a.pix_out[first + m];
#pragma GCC unroll 4
    for (int k = 0; k < KB; ++k) storeu<T, kLaneBytes>(out + k * a.out_k, acc[k][m]);
  }
}

// The last n (1..M) pixels.
template <typename T, int KB, int M>
void batch_tile_tail(const BatchTile<T>& a, int64_t first, int64_t n) {
  if constexpr (M > 1) {
    if (n < M) return batch_tile_tail<T, KB, M - 1>(a, first, n);
  }
  batch_tile_km<T, KB, M>(a, first);
}

template <typename T, int KB>
void batch_tiles(const BatchTile<T>& a) {
  constexpr int M = batch_cols(KB, kPlaneRegs);
  int64_t i = 0;
  for (; i + M <= a.npix; i += M) batch_tile_km<T, KB, M>(a, i);
  if (i < a.npix) batch_tile_tail<T, KB, M>(a, i, a.npix - i);
}

template <typename T>
void batch_tile(const BatchTile<T>& a) {
  switch (a.kb) {
    case 4: batch_tiles<T, 4>(a); break;
    case 3: batch_tiles<T, 3>(a); break;
    case 2: batch_tiles<T, 2>(a); break;
    default: batch_tiles<T, 1>(a); break;
  }
}

// Batch-lane grad_weight: KB output channels x JB items of vector
// accumulators. Surplus channels/items repeat the last real one and are not stored.
template <typename T, int KB, int JB>
void batch_wgrad_kj(const BatchWgrad<T>& a) {
  constexpr int L = Vec<T, kLaneBytes>::L;
  V<T, kLaneBytes> acc[KB][JB] = {};  // a two-level sum, as in wide_wgrad_m
  int64_t xoff[JB], goff[KB];
#pragma GCC unroll 24
  for (int j = 0; j < JB; ++j) xoff[j] = a.item_off[min64(j, a.nitem - 1)];
#pragma GCC unroll 4
  for (int k = 0; k < KB; ++k) goff[k] = min64(k, a.kb - 1) * a.gy_k;
  for (int64_t row = 0; row < a.rows; ++row) {
    const T* x = a.x + row * a.x_row;
    const T* g = a.gy + row * a.gy_row;
    for (int64_t col = 0; col < a.cols; ++col) {
      if constexpr (KB < JB) {  // the smaller operand set stays in registers
        V<T, kLaneBytes> gv[KB];
#pragma GCC unroll 4
        for (int k = 0; k < KB; ++k) gv[k] = loadu<T, kLaneBytes>(g + goff[k]);
#pragma GCC unroll 24
        for (int j = 0; j < JB; ++j) {
          const V<T, kLaneBytes> xv = in_register(loadu<T, kLaneBytes>(x + xoff[j]));
#pragma GCC unroll 4
          for (int k = 0; k < KB; ++k) acc[k][j] += gv[k] * xv;
        }
      } else {
        V<T, kLaneBytes> xv[JB];
#pragma GCC unroll 24
        for (int j = 0; j < JB; ++j) xv[j] = in_register(loadu<T, kLaneBytes>(x + xoff[j]));
#pragma GCC unroll 4
        for (int k = 0; k < KB; ++k) {
          const V<T, kLaneBytes> gv = in_register(loadu<T, kLaneBytes>(g + goff[k]));
#pragma GCC unroll 24
          for (int j = 0; j < JB; ++j) acc[k][j] += gv * xv[j];
        }
      }
      x += a.x_col;
      g += L;
    }
  }
#pragma GCC unroll 4
  for (int k = 0; k < KB; ++k)
#pragma GCC unroll 24
    for (int j = 0; j < JB; ++j)
      if (k < a.kb && j < a.nitem) {
        T* dst = a.acc + (k * a.acc_k + j) * L;
        storeu<T, kLaneBytes>(dst, a.accumulate ? loadu<T, kLaneBytes>(dst) + acc[k][j] : acc[k][j]);
      }
}

// A last call with fewer items than the tile holds runs a narrower tile
// (LeNet's 25 items of 1 x 5 x 5 in tiles of 4: 28 computed instead of 25).
template <typename T, int KB, int JB>
void batch_wgrad_upto(const BatchWgrad<T>& a) {
  if constexpr (JB > 1) {
    if (a.nitem < JB) return batch_wgrad_upto<T, KB, JB - 1>(a);
  }
  batch_wgrad_kj<T, KB, JB>(a);
}

template <typename T>
void batch_wgrad(const BatchWgrad<T>& a) {
  switch (a.kb) {
    case 4: batch_wgrad_upto<T, 4, batch_cols(4, kPlaneRegs)>(a); break;
    case 3: batch_wgrad_upto<T, 3, batch_cols(3, kPlaneRegs)>(a); break;
    case 2: batch_wgrad_upto<T, 2, batch_cols(2, kPlaneRegs)>(a); break;
    default: batch_wgrad_upto<T, 1, batch_cols(1, kPlaneRegs)>(a); break;
  }
}

// ---------------------------------------------------------------------------
// Transposes: L x L blocks in registers (unpack, then pair, then
// half exchanges for 8 lanes; unpack, then half exchanges for 4).
inline void transpose(V<float> (&r)[8]) {
  V<float> a[8], b[8];
  for (int i = 0; i < 8; i += 2) {
    a[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    a[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int h = 0; h < 8; h += 4)
    for (int j = 0; j < 2; ++j) {
      b[h + 2 * j] = __builtin_shufflevector(a[h + j], a[h + j + 2], 0, 1, 8, 9, 4, 5, 12, 13);
      b[h + 2 * j + 1] = __builtin_shufflevector(a[h + j], a[h + j + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    }
  for (int c = 0; c < 4; ++c) {
    r[c] = __builtin_shufflevector(b[c], b[c + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    r[c + 4] = __builtin_shufflevector(b[c], b[c + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
}

inline void transpose(V<double> (&r)[4]) {
  const V<double> a0 = __builtin_shufflevector(r[0], r[1], 0, 4, 2, 6), a1 = __builtin_shufflevector(r[0], r[1], 1, 5, 3, 7);
  const V<double> a2 = __builtin_shufflevector(r[2], r[3], 0, 4, 2, 6), a3 = __builtin_shufflevector(r[2], r[3], 1, 5, 3, 7);
  r[0] = __builtin_shufflevector(a0, a2, 0, 1, 4, 5);
  r[1] = __builtin_shufflevector(a1, a3, 0, 1, 4, 5);
  r[2] = __builtin_shufflevector(a0, a2, 2, 3, 6, 7);
  r[3] = __builtin_shufflevector(a1, a3, 2, 3, 6, 7);
}

#if CONVKIT_WIDE_VEC_BYTES == 64  // only the AVX-512 build runs 512-bit transposes
// One butterfly stage of an N x N transpose: rows i and i + D (i & D == 0)
// become lo(a, b) and hi(a, b), which swap their off-diagonal D x D blocks.
template <int N, int D, typename Vt, typename Lo, typename Hi>
inline void swap_blocks(Vt (&r)[N], const Lo& lo, const Hi& hi) {
#pragma GCC unroll 16
  for (int i = 0; i < N; ++i)
    if ((i & D) == 0) {
      const Vt a = r[i], b = r[i + D];
      r[i] = lo(a, b);
      r[i + D] = hi(a, b);
    }
}

// 512-bit rows (16 floats, 8 doubles): blocks of every size swap, the largest first.
inline void transpose(V<float, 64> (&r)[16]) {
  using F = V<float, 64>;
  swap_blocks<16, 8>(
      r, [](F a, F b) { return __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23); },
      [](F a, F b) { return __builtin_shufflevector(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31); });
  swap_blocks<16, 4>(
      r, [](F a, F b) { return __builtin_shufflevector(a, b, 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27); },
      [](F a, F b) { return __builtin_shufflevector(a, b, 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31); });
  swap_blocks<16, 2>(
      r, [](F a, F b) { return __builtin_shufflevector(a, b, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29); },
      [](F a, F b) { return __builtin_shufflevector(a, b, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31); });
  swap_blocks<16, 1>(
      r, [](F a, F b) { return __builtin_shufflevector(a, b, 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30); },
      [](F a, F b) { return __builtin_shufflevector(a, b, 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31); });
}

inline void transpose(V<double, 64> (&r)[8]) {
  using D = V<double, 64>;
  swap_blocks<8, 4>(r, [](D a, D b) { return __builtin_shufflevector(a, b, 0, 1, 2, 3, 8, 9, 10, 11); },
                    [](D a, D b) { return __builtin_shufflevector(a, b, 4, 5, 6, 7, 12, 13, 14, 15); });
  swap_blocks<8, 2>(r, [](D a, D b) { return __builtin_shufflevector(a, b, 0, 1, 8, 9, 4, 5, 12, 13); },
                    [](D a, D b) { return __builtin_shufflevector(a, b, 2, 3, 10, 11, 6, 7, 14, 15); });
  swap_blocks<8, 1>(r, [](D a, D b) { return __builtin_shufflevector(a, b, 0, 8, 2, 10, 4, 12, 6, 14); },
                    [](D a, D b) { return __builtin_shufflevector(a, b, 1, 9, 3, 11, 5, 13, 7, 15); });
}
#endif

// Start of the block after `at` along a dimension of n, in blocks of L: the
// last block overlaps the one before (it writes the same values again), so
// only dimensions shorter than L need scalar code; -1 when done.
inline int64_t next_block(int64_t at, int64_t n, int L) {
  if (at >= n || n < L) return -1;
  return at + L <= n ? at : n - L;
}

// One run of n items (n, a.m >= L) in blocks of L x L values, L = Vec<T, Bytes>::L.
template <typename T, int Bytes>
void transpose_run(const Transpose<T>& a, const T* src, T* dst, int64_t n) {
  constexpr int L = Vec<T, Bytes>::L;
  for (int64_t q = 0; (q = next_block(q, n, L)) >= 0; q += L)
    for (int64_t l0 = 0; (l0 = next_block(l0, a.m, L)) >= 0; l0 += L) {
      V<T, Bytes> r[L];
#pragma GCC unroll 16
      for (int p = 0; p < L; ++p) r[p] = loadu<T, Bytes>(src + (q + p) * a.in_item + l0);
      transpose(r);
#pragma GCC unroll 16
      for (int l = 0; l < L; ++l) storeu<T, Bytes>(dst + (l0 + l) * a.out_lane + q, r[l]);
    }
}

template <typename T>
void transpose(const Transpose<T>& a) {
  constexpr int L = Vec<T>::L, LW = Vec<T, kWideBytes>::L;
  // Rows that follow each other in the output are one run: fewer tails.
  const int64_t cols = a.out_row == a.cols ? a.n : a.cols;
  for (int64_t i0 = 0; i0 < a.n; i0 += cols) {
    const T* src = a.in + i0 * a.in_item;
    T* dst = a.out + i0 / a.cols * a.out_row;
    const int64_t n = min64(cols, a.n - i0);
    if (n < L || a.m < L) {
      for (int64_t q = 0; q < n; ++q)
        for (int64_t l = 0; l < a.m; ++l) dst[l * a.out_lane + q] = src[q * a.in_item + l];
      continue;
    }
    // Wide vectors where both sides fill them: 16 x 16 floats cost 64
    // shuffles, four 8 x 8 blocks 96 (and half the loads and stores).
    if constexpr (LW > L) {
      if (n >= LW && a.m >= LW) {
        transpose_run<T, kWideBytes>(a, src, dst, n);
        continue;
      }
    }
    transpose_run<T, kVecBytes>(a, src, dst, n);
  }
}

// ---------------------------------------------------------------------------
// Winograd F(2x2, 3x3). One source serves vectors of channels and the scalar
// channel tail: X is a wide vector or T itself.
template <typename X, typename T>
inline X load_as(const T* p) {
  X x;
  std::memcpy(&x, p, sizeof(X));
  return x;
}

template <typename X, typename T>
inline void store_as(T* p, X x) {
  std::memcpy(p, &x, sizeof(X));
}

// Winograd F(2x2, r x r) transforms, one struct per filter size r: patches
// of A = r + 1 values per axis, 1-D transforms
//   bt: d (A) -> B^T d,  g: filter (r) -> G g,  at: products (A) -> A^T m (2),
// and the adjoints for grad_weight: a: grad_output (2) -> A dy, gt: (A) -> G^T u (r).
// F(2, 3) interpolates at 0, 1, -1 and infinity; F(2, 5) at 0, 1, -1, 2, -2
// and infinity, with G's rows scaled by 1/4, -1/6, -1/6, 1/24, 1/24, 1.
struct WinoF23 {
  static constexpr int A = 4, R = 3;
  template <typename X, typename T>
  static void bt(const X (&d)[4], X (&e)[4]) {
    e[0] = d[0] - d[2];
    e[1] = d[1] + d[2];
    e[2] = d[2] - d[1];
    e[3] = d[1] - d[3];
  }
  template <typename X, typename T>
  static void g(const X (&g)[3], X (&a)[4]) {
    a[0] = g[0];
    a[1] = T(0.5) * (g[0] + g[1] + g[2]);
    a[2] = T(0.5) * (g[0] - g[1] + g[2]);
    a[3] = g[2];
  }
  template <typename X, typename T>
  static void at(const X (&m)[4], X (&y)[2]) {
    y[0] = m[0] + m[1] + m[2];
    y[1] = m[1] - m[2] - m[3];
  }
  template <typename X, typename T>
  static void a(const X (&y)[2], X (&z)[4]) {
    z[0] = y[0];
    z[1] = y[0] + y[1];
    z[2] = y[0] - y[1];
    z[3] = -y[1];
  }
  template <typename X, typename T>
  static void gt(const X (&u)[4], X (&g)[3]) {
    g[0] = u[0] + T(0.5) * (u[1] + u[2]);
    g[1] = T(0.5) * (u[1] - u[2]);
    g[2] = T(0.5) * (u[1] + u[2]) + u[3];
  }
};

struct WinoF25 {
  static constexpr int A = 6, R = 5;
  template <typename X, typename T>
  static void bt(const X (&d)[6], X (&e)[6]) {
    const X s = d[4] - T(4) * d[2], t = d[3] - T(4) * d[1], u = d[4] - d[2], v = T(2) * (d[3] - d[1]);
    e[0] = T(4) * d[0] - T(5) * d[2] + d[4];
    e[1] = s + t;
    e[2] = s - t;
    e[3] = u + v;
    e[4] = u - v;
    e[5] = T(4) * d[1] - T(5) * d[3] + d[5];
  }
  template <typename X, typename T>
  static void g(const X (&g)[5], X (&a)[6]) {
    const X even = g[0] + g[2] + g[4], odd = g[1] + g[3];
    const X even4 = g[0] + T(4) * g[2] + T(16) * g[4], odd4 = T(2) * g[1] + T(8) * g[3];
    a[0] = T(0.25) * g[0];
    a[1] = T(-1.0 / 6) * (even + odd);
    a[2] = T(-1.0 / 6) * (even - odd);
    a[3] = T(1.0 / 24) * (even4 + odd4);
    a[4] = T(1.0 / 24) * (even4 - odd4);
    a[5] = g[4];
  }
  template <typename X, typename T>
  static void at(const X (&m)[6], X (&y)[2]) {
    y[0] = m[0] + m[1] + m[2] + m[3] + m[4];
    y[1] = m[1] - m[2] + T(2) * (m[3] - m[4]) + m[5];
  }
  template <typename X, typename T>
  static void a(const X (&y)[2], X (&z)[6]) {
    z[0] = y[0];
    z[1] = y[0] + y[1];
    z[2] = y[0] - y[1];
    z[3] = y[0] + T(2) * y[1];
    z[4] = y[0] - T(2) * y[1];
    z[5] = y[1];
  }
  template <typename X, typename T>
  static void gt(const X (&u)[6], X (&g)[5]) {
    const X p = u[1] + u[2], m = u[1] - u[2], P = u[3] + u[4], M = u[3] - u[4];
    g[0] = T(0.25) * u[0] - T(1.0 / 6) * p + T(1.0 / 24) * P;
    g[1] = T(1.0 / 12) * M - T(1.0 / 6) * m;
    g[2] = T(1.0 / 6) * (P - p);
    g[3] = T(1.0 / 3) * M - T(1.0 / 6) * m;
    g[4] = T(2.0 / 3) * P - T(1.0 / 6) * p + u[5];
  }
};

// at(x, i) for i in [0, n): whole Wide vectors first (x a Wide<T>::type), then
// single values (x a T); x only names the type a transform runs on.
template <typename T, typename At>
inline void across(int64_t n, const At& at) {
  constexpr int L = Wide<T>::L;
  int64_t i = 0;
  for (; i + L <= n; i += L) at(typename Wide<T>::type{}, i);
  for (; i < n; ++i) at(T{}, i);
}

template <typename F, typename T>
void wino_weights_f(const WinoWeights<T>& a) {
  using X = typename Wide<T>::type;
  constexpr int NR = Wide<T>::NR, L = Wide<T>::L, A = F::A, R = F::R;
  for (int64_t c = 0; c < a.C; ++c)
    for (int l = 0; l < NR; l += L) {
      const T* g = a.g + c * a.rs * NR + l;
      X cols[R][A];  // cols[s]: column s of the filter, transformed along its rows
#pragma GCC unroll 5
      for (int s = 0; s < R; ++s) {
        X col[R];
#pragma GCC unroll 5
        for (int r = 0; r < R; ++r) col[r] = a.tap[R * r + s] < 0 ? X{} : load_as<X>(g + a.tap[R * r + s] * NR);
        F::template g<X, T>(col, cols[s]);
      }
#pragma GCC unroll 6
      for (int i = 0; i < A; ++i) {
        X row[R], u[A];
#pragma GCC unroll 5
        for (int s = 0; s < R; ++s) row[s] = cols[s][i];
        F::template g<X, T>(row, u);
#pragma GCC unroll 6
        for (int j = 0; j < A; ++j) store_as(a.u + (A * i + j) * a.u_xi + c * NR + l, u[j]);
      }
    }
}

template <typename T>
void wino_weights(const WinoWeights<T>& a) {
  a.r == 5 ? wino_weights_f<WinoF25>(a) : wino_weights_f<WinoF23>(a);
}

template <typename F, typename T, typename X>
inline void wino_input_at(const WinoInput<T>& a, int64_t t, int64_t c) {
  constexpr int A = F::A;
  const T* src = a.in + 2 * (t / a.tiles_per_row) * a.in_row + 2 * (t % a.tiles_per_row) * a.in_col + c;
  X rows[A][A];  // rows[r][j]: row r of the patch, transformed along its columns
#pragma GCC unroll 6
  for (int r = 0; r < A; ++r) {
    X d[A];
#pragma GCC unroll 6
    for (int s = 0; s < A; ++s) d[s] = load_as<X>(src + r * a.in_row + s * a.in_col);
    F::template bt<X, T>(d, rows[r]);
  }
  T* dst = a.v + t * a.v_tile + c;
#pragma GCC unroll 6
  for (int j = 0; j < A; ++j) {
    X d[A], e[A];
#pragma GCC unroll 6
    for (int r = 0; r < A; ++r) d[r] = rows[r][j];
    F::template bt<X, T>(d, e);
#pragma GCC unroll 6
    for (int i = 0; i < A; ++i) store_as(dst + (A * i + j) * a.v_xi, e[i]);
  }
}

template <typename F, typename T>
void wino_input_f(const WinoInput<T>& a) {
  for (int64_t t = 0; t < a.ntiles; ++t)
    across<T>(a.C, [&](auto x, int64_t c) { wino_input_at<F, T, decltype(x)>(a, t, c); });
}

template <typename T>
void wino_input(const WinoInput<T>& a) {
  a.r == 5 ? wino_input_f<WinoF25>(a) : wino_input_f<WinoF23>(a);
}

template <typename F, typename T, typename X>
inline void wino_output_at(const WinoOutput<T>& a, int64_t t, int64_t l) {
  constexpr int A = F::A;
  const T* src = a.m + (t - a.t0) * a.lanes + l;
  X u[2][A];  // A^T along the first index
#pragma GCC unroll 6
  for (int b = 0; b < A; ++b) {
    X m[A], y[2];
#pragma GCC unroll 6
    for (int i = 0; i < A; ++i) m[i] = load_as<X>(src + (A * i + b) * a.m_xi);
    F::template at<X, T>(m, y);
    u[0][b] = y[0];
    u[1][b] = y[1];
  }
  const X bias = a.bias ? load_as<X>(a.bias + l) : X{};
  const int64_t row = 2 * (t / a.tiles_per_row), col = 2 * (t % a.tiles_per_row);
#pragma GCC unroll 2
  for (int i = 0; i < 2; ++i) {
    if (row + i >= a.rows) break;
    X y[2];
    F::template at<X, T>(u[i], y);
    T* dst = a.out + ((row + i) * a.out_row + col) * a.lanes + l;
    store_as(dst, bias + y[0]);
    if (col + 1 < a.cols) store_as(dst + a.lanes, bias + y[1]);
  }
}

template <typename F, typename T>
void wino_output_f(const WinoOutput<T>& a) {
  for (int64_t t = a.t0; t < a.t0 + a.ntiles; ++t)
    across<T>(a.lanes, [&](auto x, int64_t l) { wino_output_at<F, T, decltype(x)>(a, t, l); });
}

template <typename T>
void wino_output(const WinoOutput<T>& a) {
  a.r == 5 ? wino_output_f<WinoF25>(a) : wino_output_f<WinoF23>(a);
}

template <typename F, typename T, typename X>
inline void wino_gy_at(const WinoInput<T>& a, int64_t t, int64_t c) {
  constexpr int A = F::A;
  const T* src = a.in + 2 * (t / a.tiles_per_row) * a.in_row + 2 * (t % a.tiles_per_row) * a.in_col + c;
  X rows[2][A];
#pragma GCC unroll 2
  for (int r = 0; r < 2; ++r) {
    const X y[2] = {load_as<X>(src + r * a.in_row), load_as<X>(src + r * a.in_row + a.in_col)};
    F::template a<X, T>(y, rows[r]);
  }
  T* dst = a.v + t * a.v_tile + c;
#pragma GCC unroll 6
  for (int j = 0; j < A; ++j) {
    const X y[2] = {rows[0][j], rows[1][j]};
    X z[A];
    F::template a<X, T>(y, z);
#pragma GCC unroll 6
    for (int i = 0; i < A; ++i) store_as(dst + (A * i + j) * a.v_xi, z[i]);
  }
}

template <typename F, typename T>
void wino_gy_f(const WinoInput<T>& a) {
  for (int64_t t = 0; t < a.ntiles; ++t)
    across<T>(a.C, [&](auto x, int64_t c) { wino_gy_at<F, T, decltype(x)>(a, t, c); });
}

template <typename T>
void wino_gy(const WinoInput<T>& a) {
  a.r == 5 ? wino_gy_f<WinoF25>(a) : wino_gy_f<WinoF23>(a);
}

template <typename F, typename T, typename X>
inline void wino_weights_grad_at(const WinoWeightsGrad<T>& a, int64_t c, int64_t l) {
  constexpr int A = F::A, R = F::R;
  const T* src = a.du + c * a.lanes + l;
  X cols[A][R];  // cols[j]: column j of u, reduced along its rows
#pragma GCC unroll 6
  for (int j = 0; j < A; ++j) {
    X u[A];
#pragma GCC unroll 6
    for (int i = 0; i < A; ++i) u[i] = load_as<X>(src + (A * i + j) * a.du_xi);
    F::template gt<X, T>(u, cols[j]);
  }
  T* dst = a.out + c * R * R * a.out_row + l;
#pragma GCC unroll 5
  for (int r = 0; r < R; ++r) {
    X u[A], g[R];
#pragma GCC unroll 6
    for (int j = 0; j < A; ++j) u[j] = cols[j][r];
    F::template gt<X, T>(u, g);
#pragma GCC unroll 5
    for (int s = 0; s < R; ++s) store_as(dst + (R * r + s) * a.out_row, g[s]);
  }
}

template <typename F, typename T>
void wino_weights_grad_f(const WinoWeightsGrad<T>& a) {
  for (int64_t c = 0; c < a.C; ++c)
    across<T>(a.lanes, [&](auto x, int64_t l) { wino_weights_grad_at<F, T, decltype(x)>(a, c, l); });
}

template <typename T>
void wino_weights_grad(const WinoWeightsGrad<T>& a) {
  a.r == 5 ? wino_weights_grad_f<WinoF25>(a) : wino_weights_grad_f<WinoF23>(a);
}

// Even and odd elements of a row (the two column phases of a stride-2 layout).
inline void split_even_odd(V<float> a, V<float> b, V<float>& even, V<float>& odd) {
  even = __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14);
  odd = __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15);
}

inline void split_even_odd(V<double> a, V<double> b, V<double>& even, V<double>& odd) {
  even = __builtin_shufflevector(a, b, 0, 2, 4, 6);
  odd = __builtin_shufflevector(a, b, 1, 3, 5, 7);
}

template <typename T>
void deinterleave(const T* src, int64_t n, T* even, T* odd) {
  constexpr int L = Vec<T>::L;
  int64_t i = 0;
  for (; 2 * (i + L) <= n; i += L) {
    V<T> e, o;
    split_even_odd(loadu(src + 2 * i), loadu(src + 2 * i + L), e, o);
    storeu(even + i, e);
    storeu(odd + i, o);
  }
  for (; 2 * i < n; ++i) {
    even[i] = src[2 * i];
    if (2 * i + 1 < n) odd[i] = src[2 * i + 1];
  }
}

// The inverse: two column phases woven back into one row.
inline void join_even_odd(V<float> even, V<float> odd, V<float>& lo, V<float>& hi) {
  lo = __builtin_shufflevector(even, odd, 0, 8, 1, 9, 2, 10, 3, 11);
  hi = __builtin_shufflevector(even, odd, 4, 12, 5, 13, 6, 14, 7, 15);
}

inline void join_even_odd(V<double> even, V<double> odd, V<double>& lo, V<double>& hi) {
  lo = __builtin_shufflevector(even, odd, 0, 4, 1, 5);
  hi = __builtin_shufflevector(even, odd, 2, 6, 3, 7);
}

template <typename T>
void interleave(const T* even, const T* odd, int64_t n, T* dst) {
  constexpr int L = Vec<T>::L;
  int64_t i = 0;
  for (; 2 * (i + L) <= n; i += L) {
    V<T> lo, hi;
    join_even_odd(loadu(even + i), loadu(odd + i), lo, hi);
    storeu(dst + 2 * i, lo);
    storeu(dst + 2 * i + L, hi);
  }
  for (; 2 * i < n; ++i) {
    dst[2 * i] = even[i];
    if (2 * i + 1 < n) dst[2 * i + 1] = odd[i];
  }
}

template <typename T>
T sum(const T* p, int64_t n) {
  constexpr int L = Vec<T>::L;
  V<T> acc[4] = {};
  int64_t i = 0;
  for (; i + 4 * L <= n; i += 4 * L)
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u) acc[u] += loadu(p + i + u * L);
  for (; i + L <= n; i += L) acc[0] += loadu(p + i);
  T total = hsum<T>((acc[0] + acc[1]) + (acc[2] + acc[3]));
  for (; i < n; ++i) total += p[i];
  return total;
}

template <typename T>
void lane_sums(const T* v, int64_t rows, int64_t cols, int64_t row, T* acc, bool accumulate) {
  constexpr int L = Vec<T, kLaneBytes>::L;
  V<T, kLaneBytes> part[4] = {};  // four chains: the adds overlap
  for (int64_t r = 0; r < rows; ++r) {
    const T* p = v + r * row;
    int64_t c = 0;
    for (; c + 4 <= cols; c += 4)
#pragma GCC unroll 4
      for (int u = 0; u < 4; ++u) part[u] += loadu<T, kLaneBytes>(p + (c + u) * L);
    for (; c < cols; ++c) part[0] += loadu<T, kLaneBytes>(p + c * L);
  }
  const V<T, kLaneBytes> total = (part[0] + part[1]) + (part[2] + part[3]);
  storeu<T, kLaneBytes>(acc, accumulate ? loadu<T, kLaneBytes>(acc) + total : total);
}

// ---------------------------------------------------------------------------
// Activation and average pooling after a convolution (ActPool, ActPoolGrad).

// e^x in every lane: 2^n e^r with n = round(x / ln 2) and |r| <= ln 2 / 2, e^r
// by a degree-7 Taylor-like polynomial (Cephes' expf coefficients, about 1
// ulp). x is clamped to [-87, 88], where 2^n stays a normal float.
template <int B>
inline V<float, B> exp_lanes(V<float, B> x) {
  using VF = V<float, B>;
  using VI = V<int32_t, B>;
  const VF hi = splat<float, B>(88.0f), lo = splat<float, B>(-87.0f);
  x = x > hi ? hi : x;
  x = x < lo ? lo : x;
  const VF magic = splat<float, B>(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  const VF t = x * splat<float, B>(1.44269504088896341f) + magic;
  const VF n = t - magic;
  const VF r = (x - n * splat<float, B>(0.693359375f)) - n * splat<float, B>(-2.12194440e-4f);
  VF p = splat<float, B>(1.9875691500e-4f);
  p = p * r + splat<float, B>(1.3981999507e-3f);
  p = p * r + splat<float, B>(8.3334519073e-3f);
  p = p * r + splat<float, B>(4.1665795894e-2f);
  p = p * r + splat<float, B>(1.6666665459e-1f);
  p = p * r + splat<float, B>(5.0000001201e-1f);
  p = p * (r * r) + r + splat<float, B>(1.0f);
  const VI scale = ((VI)t - (VI)magic + 127) << 23;  // the float 2^n
  return p * (VF)scale;
}

// float64 serves checks, not speed: the C library's exp, lane by lane.
template <int B>
inline V<double, B> exp_lanes(V<double, B> x) {
  for (int i = 0; i < Vec<double, B>::L; ++i) x[i] = __builtin_exp(x[i]);
  return x;
}

// The activation on vectors of B bytes (by default the widest the build has).
template <typename T, Activation A, int B = kLaneBytes>
inline V<T, B> activate(V<T, B> z) {
  if constexpr (A == Activation::ReLU) return z < V<T, B>{} ? V<T, B>{} : z;  // NaN stays NaN, as torch.relu
  else if constexpr (A == Activation::Sigmoid) return splat<T, B>(1) / (splat<T, B>(1) + exp_lanes<B>(-z));
  else return z;
}

// The activation's derivative, from its output y.
template <typename T, Activation A, int B = kLaneBytes>
inline V<T, B> slope(V<T, B> y) {
  if constexpr (A == Activation::ReLU) return y > V<T, B>{} ? splat<T, B>(1) : V<T, B>{};
  else if constexpr (A == Activation::Sigmoid) return y * (splat<T, B>(1) - y);
  else return splat<T, B>(1);
}

template <typename T, int B>
inline V<T, B> load_first(const T* p, int64_t n) {
  V<T, B> v{};
  std::memcpy(&v, p, n * sizeof(T));
  return v;
}

// out[i] = f(in[i]...) for i < n on vectors of B bytes (the last one partial).
template <int B, typename T, typename F, typename... P>
inline void map_lanes(T* out, int64_t n, const F& f, const P*... in) {
  constexpr int L = Vec<T, B>::L;
  int64_t i = 0;
  for (; i + L <= n; i += L) storeu<T, B>(out + i, f(loadu<T, B>(in + i)...));
  if (i < n) {
    const V<T, B> last = f(load_first<T, B>(in + i, n - i)...);
    std::memcpy(out + i, &last, (n - i) * sizeof(T));
  }
}

// Rows here are short (LeNet's 28 or 10 values), so the 2 x 2 windows run in
// whole vectors past a row's end: a vector's extra lanes read the next row
// and the stores that hang over are rewritten when the next row comes. Only
// where that would reach past the planes of the call (the last rows) does a
// row take the exact, scalar path.
template <typename T, Activation A>
void act_pool_planes(const ActPool<T>& a) {
  constexpr int L = Vec<T>::L;
  const PoolShape& s = a.shape;
  const int64_t C = s.cols, k = s.k, rows_out = s.rows_out(), cols_out = s.cols_out(), plane = s.plane_size();
  const int64_t total = s.planes * plane, total_out = s.planes * s.pooled_plane_size();
  const T inv = T(1) / T(k * k);
  constexpr int LW = Vec<T, kLaneBytes>::L;
  int64_t done = 0;  // y[0, done) is computed; in whole vectors but at the very end
  const auto activate_to = [&](int64_t target) {
    if (target <= done) return;
    const int64_t n = min64((target - done + LW - 1) / LW * LW, total - done);
    map_lanes<kLaneBytes>(a.y + done, n, [](V<T, kLaneBytes> z) { return activate<T, A>(z); }, a.z + done);
    done += n;
  };
  for (int64_t p = 0; p < s.planes; ++p) {
    activate_to((p + 1) * plane + 2 * L);  // the 2 x 2 vectors of the last row read 2 L values on
    for (int64_t i = 0; i < rows_out; ++i) {
      const int64_t top = p * plane + i * k * C, first_out = (p * rows_out + i) * cols_out;
      const T* y = a.y + top;
      T* out = a.pooled + first_out;
      const int64_t vectors = (cols_out + L - 1) / L;
      if (k == 2 && top + C + 2 * L * vectors <= done) {
        for (int64_t j = 0; j < cols_out; j += L) {  // column pairs split into even and odd columns
          V<T> even, odd;
          split_even_odd(loadu(y + 2 * j) + loadu(y + C + 2 * j), loadu(y + 2 * j + L) + loadu(y + C + 2 * j + L),
                         even, odd);
          const V<T> mean = (even + odd) * splat<T>(inv);
          if (first_out + j + L <= total_out) storeu(out + j, mean);
          else store_partial(out + j, mean, cols_out - j);
        }
        continue;
      }
      for (int64_t j = 0; j < cols_out; ++j) {  // in the vectors' order: column sums, then across
        T sum = 0;
        for (int64_t c = 0; c < k; ++c) {
          T column = 0;
          for (int64_t r = 0; r < k; ++r) column += y[r * C + k * j + c];
          sum += column;
        }
        out[j] = sum * inv;
      }
    }
  }
  activate_to(total);
}

template <typename T, Activation A>
void act_pool_grad_planes(const ActPoolGrad<T>& a) {
  constexpr int L = Vec<T>::L;
  const PoolShape& s = a.shape;
  const int64_t C = s.cols, k = s.k, rows_out = s.rows_out(), cols_out = s.cols_out(), plane = s.plane_size();
  const T inv = T(1) / T(k * k);
  const int64_t row_vectors = (C + L - 1) / L;
  T* spread = a.scratch;  // one pooled row's gradient spread over its windows' columns
  // 32-byte vectors: on rows this short, wider ones measured slower.
  const auto times_slope = [](V<T> g, V<T> y) { return g * slope<T, A, kVecBytes>(y); };
  for (int64_t p = 0; p < s.planes; ++p) {
    for (int64_t i = 0; i < (s.rows + k - 1) / k; ++i) {
      const int64_t first_out = (p * rows_out + i) * cols_out;
      const T* g = a.gp + first_out;
      int64_t filled = 0;  // spread[0, filled) holds the windows' values
      if (i < rows_out) {
        if (k == 2 && first_out + (cols_out + L - 1) / L * L <= s.planes * s.pooled_plane_size()) {
          for (int64_t j = 0; j < cols_out; j += L) {
            V<T> lo, hi;
            const V<T> gi = loadu(g + j) * splat<T>(inv);
            join_even_odd(gi, gi, lo, hi);
            storeu(spread + 2 * j, lo);
            storeu(spread + 2 * j + L, hi);
          }
        } else {
          for (int64_t j = 0; j < cols_out; ++j)
            for (int64_t c = 0; c < k; ++c) spread[k * j + c] = g[j] * inv;
        }
        filled = k * cols_out;
      }
      // Columns past the last window, and rows below the last one, get 0 * act'(y), as from the unfused layers.
      for (int64_t c = filled; c < C; ++c) spread[c] = 0;
      for (int64_t r = i * k; r < min64(s.rows, (i + 1) * k); ++r) {
        const int64_t at = p * plane + r * C;
        const int64_t n = at + row_vectors * L <= s.planes * plane ? row_vectors * L : C;
        map_lanes<kVecBytes>(a.gz + at, n, times_slope, spread, a.y + at);
      }
    }
  }
}

template <Activation A>
struct ActivationTag {
  static constexpr Activation value = A;
};

// f(ActivationTag<act>{}): the activation as a compile-time constant.
template <typename F>
inline void with_activation(Activation act, const F& f) {
  switch (act) {
    case Activation::ReLU: return f(ActivationTag<Activation::ReLU>{});
    case Activation::Sigmoid: return f(ActivationTag<Activation::Sigmoid>{});
    default: return f(ActivationTag<Activation::None>{});
  }
}

template <typename T>
void act_pool(const ActPool<T>& a) {
  with_activation(a.act, [&](auto tag) { act_pool_planes<T, decltype(tag)::value>(a); });
}

template <typename T>
void act_pool_grad(const ActPoolGrad<T>& a) {
  with_activation(a.act, [&](auto tag) { act_pool_grad_planes<T, decltype(tag)::value>(a); });
}

double fma_chains(int64_t rounds, float* sink) {
  using W = typename Wide<float>::type;
  constexpr int kChains = 12;  // enough independent chains to cover the multiply-add latency
  W acc[kChains];
  const W b = splat<float, kWideBytes>(1.0000001f), c = splat<float, kWideBytes>(1e-7f);
#pragma GCC unroll 12
  for (int i = 0; i < kChains; ++i) acc[i] = splat<float, kWideBytes>(float(i));
  for (int64_t r = 0; r < rounds; ++r)
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = acc[i] * b + c;
  W total = acc[0];
  for (int i = 1; i < kChains; ++i) total += acc[i];
  *sink = total[0];
  return 2.0 * kChains * Wide<float>::L * double(rounds);
}

template <typename T>
KernelsT<T> make_kernels() {
  KernelsT<T> k;
  k.lanes = Vec<T>::L;
  k.wide_lanes = Wide<T>::L;
  k.batch_lanes = Vec<T, kLaneBytes>::L;
  k.mr = kMR;
  k.nr = Wide<T>::NR;
  k.tiles = kTiles;
  k.wide_block_bytes = CONVKIT_WIDE_BLOCK_BYTES;
  k.wide_planar_stores = wide_planar_stores<T>();
  k.wide_tile = &wide_tile<T>;
  k.wide_wgrad = &wide_wgrad<T>;
  k.plane_row = &plane_row<T>;
  k.plane_wgrad = &plane_wgrad<T>;
  for (int kb = 1; kb <= kPlaneKB; ++kb) k.plane_wgrad_items[kb] = plane_wgrad_items(kb);
  for (int kb = 1; kb <= kBatchKB; ++kb) k.batch_cols[kb] = batch_cols(kb, kPlaneRegs);
  k.batch_tile = &batch_tile<T>;
  k.batch_wgrad = &batch_wgrad<T>;
  k.transpose = &transpose<T>;
  k.lane_window = &lane_window<T>;
  k.lane_window_grad = &lane_window_grad<T>;
  k.wino_weights = &wino_weights<T>;
  k.wino_input = &wino_input<T>;
  k.wino_output = &wino_output<T>;
  k.wino_gy = &wino_gy<T>;
  k.wino_weights_grad = &wino_weights_grad<T>;
  k.deinterleave = &deinterleave<T>;
  k.interleave = &interleave<T>;
  k.sum = &sum<T>;
  k.lane_sums = &lane_sums<T>;
  k.act_pool = &act_pool<T>;
  k.act_pool_grad = &act_pool_grad<T>;
  return k;
}

}  // namespace

const KernelTable& table() {
  static const KernelTable t = {CONVKIT_ISA_NAME, make_kernels<float>(), make_kernels<double>(), &fma_chains};
  return t;
}

}  // namespace CONVKIT_ISA_NS
}  // namespace cpu
}  // namespace convkit
