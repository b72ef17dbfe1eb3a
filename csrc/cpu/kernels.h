// Torch-free interface between the torch glue (conv2d_cpu.cpp) and the
// ISA-specific kernel translation units (kernels_avx512.cpp, kernels_avx2.cpp,
// kernels_generic.cpp).
// Every kernel is a plain function reached through a KernelTable, so code
// compiled for AVX2 never leaks into callers that run on other CPUs.
#pragma once
#include <cstdint>

#include "../activation_pool.h"

namespace convkit {
namespace cpu {

// A wide tile is 64 bytes of output channels (16 floats, 8 doubles) whatever
// the vector width, so packed weights and the glue's choices do not depend on the ISA.
constexpr int kTileBytes = 64;

// Register-blocked tiles of pixels x output channels (implicit GEMM): a call
// covers `tiles` (1 .. KernelsT::tiles) adjacent tiles of NR output channels,
// lanes = tiles * NR. For pixel i < npix and lane < nr_valid (<= lanes),
//   out[pix_out[i] + lane * out_lane] = init[lane] + sum over taps t and channels c of
//     in[pix_in[i] + tap_off[t] + c * in_chan] * w[(lane / NR) * w_tile + (t * C + c) * NR + lane % NR].
// Pixels are given by offsets, so tiles run across output rows and any
// input/output layout works. Used for the forward pass and for grad_input
// (on grad_output with transposed, flipped weights).
template <typename T>
struct WideTile {
  const T* in;
  const int64_t* pix_in;
  int64_t in_chan;
  const int64_t* tap_off;
  int64_t ntaps, C;
  const T* w;
  int64_t w_tile, tiles;
  T* out;
  const int64_t* pix_out;
  int64_t out_lane, nr_valid;
  int64_t npix;
  const T* init;  // lanes values, or null for zeros
  // Splitting the reduction over several calls: acc_in (if set) holds the
  // running sums [npix][lanes] to start from instead of init; acc_out (if set)
  // receives them instead of out.
  const T* acc_in;
  T* acc_out;
};

// Output rows of a planar (NCHW) convolution, vectorized along the width:
// out[k*out_k + row*out_row + q] = bias[k] + sum over i < n of
//   w[i*kPlaneKB + k] * in[row*in_row_step + in_off[i] + q]
// for k < kb, row < rows. i runs over the reduction (channel, tap) pairs;
// in_off[i] addresses the pair's input row inside planes stored split into
// stride phases, so every tap reads a contiguous run. Reads run in whole
// vectors, past Q up to a multiple of the vector length (the buffers carry
// that margin).
template <typename T>
struct PlaneRow {
  const T* in;
  const int64_t* in_off;
  int64_t n, in_row_step;
  const T* w;  // packed [n][kPlaneKB], zero past kb
  int64_t kb;  // 1..kPlaneKB output channels
  T* out;
  int64_t out_k, out_row, Q, rows;
  const T* bias;  // kb values or null
};

constexpr int kPlaneKB = 6;

// Vector partial sums of grad_weight: for k < kb and i < nitem,
//   acc[(k*acc_k + i)*L .. +L] += sum over rows and vectors v of
//   gy[k*gy_k + row*gy_row + v*L ..] * x[item_off[i] + row*x_row + v*L ..]
// (lane-wise; the caller sums the lanes). Items are (channel, tap) pairs. gy
// rows are zero beyond their valid width, so whole vectors (qv per row) count.
template <typename T>
struct PlaneWgrad {
  const T* x;
  int64_t x_row;
  const int64_t* item_off;
  int64_t nitem;
  const T* gy;
  int64_t gy_row, gy_k, kb;
  int64_t rows, qv;
  T* acc;
  int64_t acc_k;
};

// grad_weight tile for many output channels: for j < m (<= MR) items and
// lanes = tiles * NR (adjacent output-channel tiles),
//   acc[j*acc_item + lane] += sum over rows and cols of
//     x[item_off[j] + row*x_row + col*x_col] * gy[row*gy_row + col*gy_col + lane]
// (each call sums in registers from zero, then adds them to acc, or stores
// them there when not accumulating: a two-level sum).
template <typename T>
struct WideWgrad {
  const T* x;
  const int64_t* item_off;
  int64_t m, tiles;
  const T* gy;
  int64_t rows, cols, x_row, x_col, gy_row, gy_col;
  T* acc;
  int64_t acc_item;
  bool accumulate;  // acc += the sums, else acc = the sums
};

// Batch lanes: vectors along the batch, L (= batch_lanes) images per vector, in
// buffers laid out [channel][row][col][L]. For output channel k < kb and
// pixel i < npix,
//   out[k*out_k + pix_out[i] .. +L] = init[k] + sum over items j in the segments of
//     w[j*kBatchKB + k] * in[pix_in[i] + item_off[j] .. +L].
// Segments are item ranges [seg[2n], seg[2n + 1]) for n < nseg: the taps
// that read real data for these pixels. Used for the forward pass and for
// grad_input (on grad_output with transposed weights).
template <typename T>
struct BatchTile {
  const T* in;
  const int64_t* pix_in;
  const int64_t* item_off;
  const int64_t* seg;
  int64_t nseg;
  const T* w;  // [item][kBatchKB], zero past kb
  int64_t kb;
  T* out;
  const int64_t* pix_out;
  int64_t out_k, npix;
  const T* init;  // kb values, or null for zeros
};

constexpr int kBatchKB = 4;

// Pixels (or grad_weight items) per batch tile for kb output channels, with
// `regs` vector registers: kb x batch_cols accumulators fill three quarters
// of them (12 of 16, 24 of 32). KernelsT::batch_cols holds the build's values.
constexpr int batch_cols(int64_t kb, int regs) { return int(regs * 3 / 4 / kb); }

// Batch-lane grad_weight: for k < kb (<= kBatchKB) and j < nitem (<= batch_cols[kb]),
//   acc[(k*acc_k + j)*L .. +L] (+)= sum over rows and cols of
//     gy[k*gy_k + row*gy_row + col*L ..] * x[item_off[j] + row*x_row + col*x_col ..]
// (lane-wise: lanes are images; the caller sums them).
template <typename T>
struct BatchWgrad {
  const T* x;
  int64_t x_row, x_col;
  const int64_t* item_off;
  int64_t nitem;
  const T* gy;
  int64_t gy_k, gy_row, kb;
  int64_t rows, cols;
  T* acc;
  int64_t acc_k;
  bool accumulate;  // add to acc (else overwrite it)
};

// Channel lanes (depthwise layers): a vector holds one pixel's channels
// (wide_lanes of them). For output pixel (p, q), p < P, q < Q:
//   out[(p * Q + q) * L ..] = init + sum over t < ntaps of
//     w[t * L ..] * in[p * in_row + q * in_col + tap_off[t] ..]
// (init: L values, or zeros when null). row_taps > 0 says the taps come in
// rows of row_taps adjacent pixels and in_col is L (stride 1): the kernel
// then loads each input vector of a row once for all its taps.
template <typename T>
struct LaneWindow {
  const T* in;
  int64_t in_row, in_col;
  const int64_t* tap_off;
  int64_t ntaps, row_taps;
  const T* w;
  const T* init;
  T* out;
  int64_t P, Q;
};

// Their weight gradient: for t < ntaps,
//   acc[t * L ..] += sum over p < P, q < Q of gy[(p * Q + q) * L ..] * in[p * in_row + q * in_col + tap_off[t] ..].
template <typename T>
struct LaneWindowGrad {
  const T* in;
  int64_t in_row, in_col;
  const int64_t* tap_off;
  int64_t ntaps;
  const T* gy;
  int64_t P, Q;
  T* acc;
};

// Blocked transpose: for item i < n (column i % cols of row i / cols) and lane l < m,
//   out[(i / cols) * out_row + i % cols + l * out_lane] = in[i * in_item + l].
// Blocks are transposed in registers: e.g. channels-last tiles to NCHW output
// (items are pixels, lanes channels) or NCHW rows to channels-last (items are
// channels, lanes pixels) cost vector loads and stores.
template <typename T>
struct Transpose {
  const T* in;
  int64_t in_item, n, cols, m;
  T* out;
  int64_t out_row, out_lane;
};

// Winograd F(2x2, r x r) transforms (r = 3 or 5), vectorized across
// channels. Tile t of a chunk sits at tile row t / tiles_per_row, tile column
// t % tiles_per_row; tiles are 2 x 2 output pixels read from A x A input
// patches, A = r + 1, with A * A transformed values (xi) each.
// Input: for c < C and the A * A (i, j) of each tile,
//   v[(A i + j) * v_xi + t * v_tile + c] = (B^T d B)[i][j],
//   d[r][s] = in[(2 * row(t) + r) * in_row + (2 * col(t) + s) * in_col + c].
template <typename T>
struct WinoInput {
  const T* in;
  int64_t in_row, in_col, C, ntiles, tiles_per_row;
  T* v;
  int64_t v_xi, v_tile;
  int64_t r = 3;  // filter size of the transform
};

// Filters of one wide tile (NR lanes): for c < C, xi < A * A and l < NR,
//   u[xi * u_xi + c * NR + l] = (G g G^T)[xi], g[i][j] = g[(c * rs + tap[r i + j]) * NR + l]
// (zero where tap[r i + j] < 0).
template <typename T>
struct WinoWeights {
  const T* g;
  int64_t rs;
  const int64_t* tap;
  int64_t C;
  T* u;
  int64_t u_xi;
  int64_t r = 3;
};

// Output: for the tiles t0 .. t0 + ntiles - 1 of a chunk and lane l < lanes,
//   out[((2 * row(t) + i) * out_row + 2 * col(t) + j) * lanes + l] = bias[l] + (A^T m A)[i][j],
//   m[A a + b] = m[(A a + b) * m_xi + (t - t0) * lanes + l],
// for the pixels inside rows x cols (tiles at the edges may hang over).
template <typename T>
struct WinoOutput {
  const T* m;
  int64_t m_xi, lanes, t0, ntiles, tiles_per_row;
  const T* bias;  // lanes values, or null
  T* out;
  int64_t out_row, rows, cols;
  int64_t r = 3;
};

// grad_weight of Winograd F(2x2, r x r) as its adjoint: for c < C and l < lanes,
//   out[(c * r * r + r i + j) * out_row + l] = (G^T u G)[i][j], u[xi] = du[xi * du_xi + c * lanes + l].
// The matching grad_output transform (wino_gy) reads 2 x 2 patches with
// WinoInput's fields and writes A dy A^T.
template <typename T>
struct WinoWeightsGrad {
  const T* du;
  int64_t du_xi, C, lanes;
  T* out;
  int64_t out_row;
  int64_t r = 3;
};

// Planes p < shape.planes of rows x cols values, stored one after another:
//   y[p][r][c] = act(z[p][r][c]) everywhere, and
//   pooled[p][i][j] = mean of y[p][k i + a][k j + b] over a, b < k
// for i < rows / k, j < cols / k.
template <typename T>
struct ActPool {
  PoolShape shape;
  Activation act;
  const T* z;
  T* y;
  T* pooled;
};

// Its gradient: gz[p][r][c] = gp[p][r / k][c / k] / k^2 * act'(y[p][r][c]) inside
// the pooled windows and 0 * act'(y) outside (as the unfused layers give),
// act' written with the activation's output y. scratch holds cols + 64 values.
template <typename T>
struct ActPoolGrad {
  PoolShape shape;
  Activation act;
  const T* gp;
  const T* y;
  T* gz;
  T* scratch;
};

template <typename T>
struct KernelsT {
  int lanes;       // elements per vector (plane and Winograd transform kernels)
  int wide_lanes;  // elements per vector of the wide tile kernels (as many, or twice as many with AVX-512)
  int batch_lanes;  // images per batch-lane vector (as many as wide_lanes)
  int mr;     // pixels (or grad_weight items) per wide call
  int nr;     // lanes per wide tile (64 bytes)
  int tiles;  // wide tiles one call may cover
  int wide_block_bytes;  // packed weights of one tile per reduction block (channels per wide call)
  // Whether wide_tile stores planar outputs (out_lane > 1) of full calls
  // whose pixels are one contiguous run by register transposes (else lane by lane).
  bool wide_planar_stores;
  void (*wide_tile)(const WideTile<T>&);
  void (*wide_wgrad)(const WideWgrad<T>&);
  void (*plane_row)(const PlaneRow<T>&);
  void (*plane_wgrad)(const PlaneWgrad<T>&);
  int plane_wgrad_items[kPlaneKB + 1];  // items per plane_wgrad call, by kb
  int batch_cols[kBatchKB + 1];         // pixels (items) per batch_tile (batch_wgrad) call, by kb
  void (*batch_tile)(const BatchTile<T>&);
  void (*batch_wgrad)(const BatchWgrad<T>&);
  void (*transpose)(const Transpose<T>&);
  void (*lane_window)(const LaneWindow<T>&);
  void (*lane_window_grad)(const LaneWindowGrad<T>&);
  void (*wino_weights)(const WinoWeights<T>&);
  void (*wino_input)(const WinoInput<T>&);
  void (*wino_output)(const WinoOutput<T>&);
  void (*wino_gy)(const WinoInput<T>&);
  void (*wino_weights_grad)(const WinoWeightsGrad<T>&);
  // even[i] = src[2i] for 2i < n, odd[i] = src[2i + 1] for 2i + 1 < n.
  void (*deinterleave)(const T* src, int64_t n, T* even, T* odd);
  // dst[2i] = even[i] for 2i < n, dst[2i + 1] = odd[i] for 2i + 1 < n.
  void (*interleave)(const T* even, const T* odd, int64_t n, T* dst);
  // Sum of n values, in a fixed order (lane-wise partial sums, then lanes in order).
  T (*sum)(const T* p, int64_t n);
  // Batch-lane sums: acc[0 .. batch_lanes) (+)= the sum over rows r < rows and
  // columns c < cols of the vectors v[r * row + c * batch_lanes ..].
  void (*lane_sums)(const T* v, int64_t rows, int64_t cols, int64_t row, T* acc, bool accumulate);
  void (*act_pool)(const ActPool<T>&);
  void (*act_pool_grad)(const ActPoolGrad<T>&);
};

struct KernelTable {
  const char* name;
  KernelsT<float> f32;
  KernelsT<double> f64;
  // The yardstick of speed reports: `rounds` rounds of 12 independent chains
  // of float multiply-adds on the wide kernels' vectors; returns the
  // floating-point operations done (a sum goes to *sink, so none is dropped).
  double (*fma_chains)(int64_t rounds, float* sink);
};

const KernelTable& kernels_generic();
const KernelTable& kernels_avx2();
const KernelTable& kernels_avx512();
// The widest the CPU has (avx512, avx2, generic), or a narrower one named by
// CONVKIT_CPU_ISA (generic or avx2).
const KernelTable& kernels();


}  // namespace cpu
}  // namespace convkit
