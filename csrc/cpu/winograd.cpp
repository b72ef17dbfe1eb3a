// Winograd F(2x2, 3x3) (Lavin and Gray, 2016): each 2 x 2 output tile is
//   Y = A^T [ sum over c of (G g G^T) .* (B^T d B) ] A
// for 4 x 4 input patches d and 3 x 3 filters g: 16 products per tile and
// channel pair instead of 36. The 16 sums over c are 16 matrix products
// (tiles x channels) x (channels x outputs), run by the wide tile kernel with
// a single tap; the transforms are vector kernels across channels.
//
// 5 x 5 filters run F(2x2, 5x5) the same way on 6 x 6 patches: 36 products
// per tile and channel pair instead of 100. Other sizes (3 x 5, 5 x 3) are
// cut into 3 x 3 blocks, zero past the edges:
// block b reads the patches shifted by its offset, and the products reduce
// over (block, channel) pairs.
//
// Data flow per task (a chunk of tiles of one image, a range of output tiles):
// channels-last padded input -> transformed patches V[xi][tile][block, c] (L2) ->
// per block of tiles, the products M[xi][tile][lanes] (L1/L2) -> output
// transform into a channels-last staging block -> the output's own layout.
#include "winograd.h"

#include <ATen/Dispatch.h>

#include <cstdlib>
#include <cstring>

#include "common.h"
#include "measured_choice.h"
#include "packed_cache.h"

namespace convkit {
namespace cpu {
namespace {

// An R x S filter as k x k blocks, run by F(2x2, k x k) (k = 3 or 5):
// block b covers taps (k * (b / bs) + r, k * (b % bs) + s).
struct Blocks {
  int64_t R, S, k, br, bs;
  Blocks(int64_t R_, int64_t S_, int64_t k_) : R(R_), S(S_), k(k_), br(ceil_div(R_, k_)), bs(ceil_div(S_, k_)) {}
  int64_t count() const { return br * bs; }
  int64_t row(int64_t b) const { return k * (b / bs); }
  int64_t col(int64_t b) const { return k * (b % bs); }
  int64_t xi() const { return (k + 1) * (k + 1); }  // transformed values per tile
  // Tap index (r * S + s) of block b's tap (r, s), or -1 past the filter's edge.
  int64_t tap(int64_t b, int64_t r, int64_t s) const {
    return row(b) + r < R && col(b) + s < S ? (row(b) + r) * S + col(b) + s : -1;
  }
};

// The blocks of every pass: a 5 x 5 filter is one F(2x2, 5x5) block.
Blocks pass_blocks(int64_t R, int64_t S) { return Blocks(R, S, R == 5 && S == 5 ? 5 : 3); }

// Transformed filters U = G g G^T, packed [output tile][xi][block, c][NR lanes]
// for the wide kernel (a call covering tiles kb, kb+1 finds the second at + xi * Ctot * NR).
template <typename T>
at::Tensor transform_weights(int64_t Kout, int64_t Cred, const WeightView<T>& w, const Blocks& blk,
                             const at::TensorOptions& options) {
  const int64_t NR = kern<T>().nr, KB = ceil_div(Kout, NR), Ctot = blk.count() * Cred, xi = blk.xi(), kk = blk.k * blk.k;
  at::Tensor packed = empty_pooled({KB * xi * Ctot * NR}, options);
  T* base = packed.mutable_data_ptr<T>();
  std::vector<int64_t> taps(blk.count() * kk);
  for (int64_t b = 0; b < blk.count(); ++b)
    for (int64_t t = 0; t < kk; ++t) {
      const int64_t tap = blk.tap(b, t / blk.k, t % blk.k);
      taps[b * kk + t] = tap < 0 ? -1 : w.tap[tap];
    }
  for_each_weight_tile<T>(1, Kout, Cred, w, [&](int64_t kb, const T* lanes_last) {
    for (int64_t b = 0; b < blk.count(); ++b) {
      WinoWeights<T> a{lanes_last, w.rs, taps.data() + b * kk, Cred, base + (kb * xi * Ctot + b * Cred) * NR, Ctot * NR,
                       blk.k};
      kern<T>().wino_weights(a);
    }
  });
  return packed;
}

// Channels-last copy of src with `top` zero rows and `left` zero columns
// before it and zeros after, covering every patch of the tiles that read it.
// Image n's pixel (i, j) is at buf + offset + n * in_n + i * in_row + j * in_col.
struct TileInput {
  at::Tensor buf;
  int64_t in_col, in_row, in_n, offset = 0;
};

// The input rows (or columns) that TP tile rows (columns) of every block read.
int64_t tile_rows(int64_t TP, const Blocks& blk) { return 2 * TP + blk.k - 1 + blk.row(blk.count() - 1); }
int64_t tile_cols(int64_t TQ, const Blocks& blk) { return 2 * TQ + blk.k - 1 + blk.col(blk.count() - 1); }

// rows x cols pixels; with `finite` set, *finite tells whether every value copied is finite.
template <typename T>
TileInput tile_input(const at::Tensor& src, int64_t top, int64_t left, int64_t rows, int64_t cols,
                     bool* finite = nullptr) {
  at::Tensor sums;
  const at::Tensor buf = channels_last_padded<T>(src, 1, src.size(1), top, left, rows, cols, finite ? &sums : nullptr);
  if (finite) *finite = all_finite<T>(sums);
  return {buf, buf.stride(2), buf.stride(1), buf.stride(0)};
}

// Transformed patches of `ntiles` tiles (tiles_per_row per row) starting at x,
// for every block: v[xi * v_xi + t * v_tile + b * C + c], v_tile >= blocks * C.
template <typename T>
void transform_patches(const T* x, const TileInput& in, int64_t C, const Blocks& blk, int64_t ntiles,
                       int64_t tiles_per_row, T* v, int64_t v_xi, int64_t v_tile) {
  for (int64_t b = 0; b < blk.count(); ++b) {
    WinoInput<T> wi{x + blk.row(b) * in.in_row + blk.col(b) * in.in_col, in.in_row, in.in_col, C, ntiles,
                    tiles_per_row, v + b * C, v_xi, v_tile, blk.k};
    kern<T>().wino_input(wi);
  }
}

// y (N, Kout, P, Q), any strides, = correlation of the N images of `in`
// (Cred channels, zero-padded as the copy placed them) with the R x S weights
// seen through w (lanes: outputs), + bias. False, with nothing written, when
// a weight is Inf or NaN (the input's copy checks its own values).
template <typename T>
bool winograd_pass(const TileInput& in, int64_t N, const WeightView<T>& w, const Blocks& blk, int64_t Cred,
                   int64_t Kout, const T* bias, at::Tensor& y) {
  const KernelsT<T>& kt = kern<T>();
  const int64_t P = y.size(2), Q = y.size(3), Ctot = blk.count() * Cred, nxi = blk.xi();
  const int64_t NR = kt.nr, KB = ceil_div(Kout, NR), KT = ceil_div(KB, kt.tiles), LANES = kt.tiles * NR;
  // The weights' finiteness comes with their transform: a hit skips scanning them.
  std::vector<int64_t> key{'W', int64_t(in.buf.scalar_type()), Kout, Cred, w.g_stride, w.k_stride, w.c_stride, w.rs, blk.R, blk.S, blk.k};
  key.insert(key.end(), w.tap.begin(), w.tap.end());
  const int64_t nweights = Kout * Cred * w.rs;
  const Packing packing = cached_packing(w.src, sizeof(T) * nweights, std::move(key), [&] {
    return Packing{transform_weights<T>(Kout, Cred, w, blk, in.buf.options()), all_finite(w.src, nweights)};
  });
  if (!packing.finite) return false;
  const at::Tensor& U = packing.packed;

  const int64_t Cv = conflict_free_stride<T>(Ctot);  // tile stride of the transformed patches
  const int64_t TP = ceil_div(P, 2), TQ = ceil_div(Q, 2);
  const T* x = in.buf.const_data_ptr<T>() + in.offset;
  std::vector<T> bpack(KB * NR, T(0));
  if (bias) std::copy(bias, bias + Kout, bpack.begin());

  // Chunks of tiles whose transformed input stays in L2: whole tile rows
  // when they fit, else runs of one row.
  const int64_t block = 2 * kt.mr;  // tiles per round of products
  const int64_t budget = std::max<int64_t>(block, (384 * 1024 / int64_t(sizeof(T))) / (nxi * Ctot));
  const int64_t col_chunks = ceil_div(TQ, budget), tpr = ceil_div(TQ, col_chunks);
  const int64_t row_units = ceil_div(TP, std::max<int64_t>(1, std::min(TP, budget / tpr)));
  const int64_t rows_per = ceil_div(TP, row_units);
  const int64_t chunks = N * row_units * col_chunks;
  // Few chunks (batch 1): split the outputs too, into a multiple of the
  // thread count where possible. (Every output is computed the same way
  // whatever the split, so results do not depend on it.)
  const int64_t threads = at::get_num_threads();
  int64_t kparts = std::min(KT, std::max<int64_t>(1, ceil_div(4 * threads, chunks)));
  while (kparts < KT && chunks * kparts % threads != 0) ++kparts;
  const int64_t kpt = ceil_div(KT, kparts);
  const int64_t Cb = ceil_div(Ctot, ceil_div(Ctot, std::max<int64_t>(8, 16384 / (int64_t(sizeof(T)) * NR))));
  const int64_t max_tiles = rows_per * tpr;
  std::vector<int64_t> pix(block);
  for (int64_t j = 0; j < block; ++j) pix[j] = j * Cv;
  const int64_t zero_tap = 0;
  const int64_t yn = y.stride(0), yk = y.stride(1), yrow = y.stride(2), ycol = y.stride(3);
  T* const yout = y.mutable_data_ptr<T>();
  const T* const ub = U.const_data_ptr<T>();

  parallel_for_shared(chunks * kparts, 1, [&](const auto& claim) {
    const Scratch<T> V(nxi * max_tiles * Cv), M(nxi * block * LANES), stage(4 * max_tiles * LANES);
    int64_t cached = -1;
    WideTile<T> a;
    a.pix_in = pix.data();
    a.pix_out = pix.data();  // unused: results go to acc_out
    a.in_chan = 1;
    a.tap_off = &zero_tap;
    a.ntaps = 1;
    a.w_tile = nxi * Ctot * NR;
    a.out = nullptr;
    a.out_lane = 1;
    a.init = nullptr;
    for (int64_t begin, end; claim(begin, end);)
      for (int64_t u = begin; u < end; ++u) {
        const int64_t chunk = u / kparts, kp = u % kparts;
        const int64_t n = chunk / (row_units * col_chunks), tr0 = chunk / col_chunks % row_units * rows_per,
                      tc0 = chunk % col_chunks * tpr;
        const int64_t trows = std::min(rows_per, TP - tr0), tcols = std::min(tpr, TQ - tc0), ntiles = trows * tcols;
        const int64_t p0 = 2 * tr0, q0 = 2 * tc0, prows = std::min(2 * trows, P - p0), pcols = std::min(2 * tcols, Q - q0);
        const int64_t v_xi = max_tiles * Cv;
        if (chunk != cached) {
          transform_patches(x + n * in.in_n + p0 * in.in_row + q0 * in.in_col, in, Cred, blk, ntiles, tcols, V.data(), v_xi,
                            Cv);
          cached = chunk;
        }
        for (int64_t kg = kp * kpt; kg < std::min(KT, (kp + 1) * kpt); ++kg) {
          const int64_t kb = kg * kt.tiles;
          a.tiles = std::min<int64_t>(kt.tiles, KB - kb);
          a.nr_valid = std::min(a.tiles * NR, Kout - kb * NR);
          const int64_t lanes = a.tiles * NR;
          for (int64_t t0 = 0; t0 < ntiles; t0 += block) {
            a.npix = std::min(block, ntiles - t0);
            for (int64_t xi = 0; xi < nxi; ++xi) {
              T* m = M.data() + xi * block * lanes;
              for (int64_t c0 = 0; c0 < Ctot; c0 += Cb) {
                a.C = std::min(Cb, Ctot - c0);
                a.in = V.data() + xi * v_xi + t0 * Cv + c0;
                a.w = ub + (kb * nxi + xi) * Ctot * NR + c0 * NR;
                a.acc_in = c0 > 0 ? m : nullptr;
                a.acc_out = m;
                kt.wide_tile(a);
              }
            }
            WinoOutput<T> wo{M.data(), block * lanes, lanes, t0, a.npix, tcols, bias ? bpack.data() + kb * NR : nullptr,
                             stage.data(), pcols, prows, pcols, blk.k};
            kt.wino_output(wo);
          }
          T* out = yout + n * yn + kb * NR * yk + p0 * yrow + q0 * ycol;
          if (yk == 1) {  // channels-last: rows of lanes
            for (int64_t i = 0; i < prows; ++i)
              for (int64_t j = 0; j < pcols; ++j)
                std::memcpy(out + i * yrow + j * ycol, stage.data() + (i * pcols + j) * lanes, sizeof(T) * a.nr_valid);
          } else {  // planar
            Transpose<T> tr{stage.data(), lanes, prows * pcols, pcols, a.nr_valid, out, yrow, yk};
            kt.transpose(tr);
          }
        }
      }
  });
  return true;
}

// The correlation of input (N, C, H, W) with padding (ph, pw) and dilation
// (dh, dw) into y (N, K, P, Q). A dilated layer is undilated per output
// phase: phase (a, b), the pixels (a + dh * i, b + dw * j), is the valid
// correlation of phase (a, b) of the padded input with the filters. One
// channels-last copy of the padded input serves every phase (a phase reads
// its rows dh and its columns dw apart); each phase's pass writes planar
// outputs, merged back at the end. (One copy per phase on strided views lost
// to the direct kernels, 2-core Zen 3; a planar copy of the phases ahead of
// the pass's own copy cost 0.87 of 6.7 ms at 8 x 64 -> 64 at 56x56,
// dilation 2, 2-vCPU Xeon.) The tiles at the bottom and right edges may read
// past the padded input: the copy has zeros there, and checks the values'
// finiteness on the way.
template <typename T>
bool winograd_dilated(const at::Tensor& input, int64_t ph, int64_t pw, int64_t dh, int64_t dw, const WeightView<T>& w,
                      const Blocks& blk, int64_t C, int64_t K, const T* bias, at::Tensor& y) {
  const int64_t N = input.size(0), H = input.size(2), W = input.size(3), P = y.size(2), Q = y.size(3);
  const int64_t Hq = ceil_div(H + 2 * ph, dh), Wq = ceil_div(W + 2 * pw, dw);
  const int64_t Pq = Hq - blk.R + 1, Qq = Wq - blk.S + 1, phases = dh * dw;
  bool finite = true;
  const TileInput whole = tile_input<T>(input, ph, pw, dh * tile_rows(ceil_div(Pq, 2), blk),
                                        dw * tile_cols(ceil_div(Qq, 2), blk), &finite);
  if (!finite) return false;
  if (phases == 1) return winograd_pass<T>(whole, N, w, blk, C, K, bias, y);
  at::Tensor out = empty_pooled({phases * N, K, Pq, Qq}, input.options());
  for (int64_t a = 0; a < dh; ++a)
    for (int64_t b = 0; b < dw; ++b) {
      TileInput phase = whole;
      phase.in_row *= dh;
      phase.in_col *= dw;
      phase.offset = a * whole.in_row + b * whole.in_col;
      at::Tensor phase_out = out.narrow(0, (a * dw + b) * N, N);
      if (!winograd_pass<T>(phase, N, w, blk, C, K, bias, phase_out)) return false;
    }
  const KernelsT<T>& kt = kern<T>();
  const bool planar = y.is_contiguous();
  at::Tensor dense = planar ? y : empty_pooled({N, K, P, Q}, y.options());
  const T* op = out.const_data_ptr<T>();
  T* yp = dense.mutable_data_ptr<T>();
  at::parallel_for(0, N * K, grain_for(P * Q), [&](int64_t begin, int64_t end) {
    for (int64_t nk = begin; nk < end; ++nk)
      for (int64_t p = 0; p < P; ++p) {
        T* row = yp + (nk * P + p) * Q;
        const auto phase_row = [&](int64_t b) { return op + (((p % dh) * dw + b) * N * K + nk) * Pq * Qq + p / dh * Qq; };
        if (dw == 2) {
          kt.interleave(phase_row(0), phase_row(1), Q, row);
          continue;
        }
        for (int64_t b = 0; b < dw; ++b) {
          const T* src = phase_row(b);
          for (int64_t q = b, j = 0; q < Q; q += dw, ++j) row[q] = src[j];
        }
      }
  });
  if (!planar) y.copy_(dense);
  return true;
}

// grad_weight as the adjoint of the forward pass: per tile,
//   dU[xi][c][k] += (B^T d B)[xi][c] * (A dy A^T)[xi][k],
// summed over every tile of every image (and phase), then gw = G^T dU G.
// du is [kparts][16][block, c][kpt_lanes]; this adds one phase: src (N, Cred, H, W)
// with `top` / `left` zeros before it, gy (N, K, P, Q) its outputs. With
// `bias` set, the phase's grad_output sums are added to bias[k] too.
template <typename T>
void winograd_wgrad_phase(const at::Tensor& src, int64_t top, int64_t left, const at::Tensor& gy, const Blocks& blk,
                          int64_t Cred, int64_t kparts, int64_t kpt_lanes, T* du, T* bias) {
  const KernelsT<T>& kt = kern<T>();
  const int64_t N = src.size(0), K = gy.size(1), P = gy.size(2), Q = gy.size(3), MR = kt.mr, lanes = kt.tiles * kt.nr;
  const int64_t TP = ceil_div(P, 2), TQ = ceil_div(Q, 2), Kbuf = kparts * kpt_lanes, Ctot = blk.count() * Cred,
                nxi = blk.xi();
  const TileInput in = tile_input<T>(src, top, left, tile_rows(TP, blk), tile_cols(TQ, blk));
  // grad_output channels-last, zero up to even sizes and Kbuf channels;
  // grad_bias from the sums of its rows, taken during the copy.
  at::Tensor row_sums;
  const at::Tensor gyb = channels_last_padded<T>(gy, 1, Kbuf, 0, 0, 2 * TP, 2 * TQ, bias ? &row_sums : nullptr);
  const T* sums = bias ? row_sums.const_data_ptr<T>() : nullptr;
  for (int64_t r = 0; bias && r < N * P; ++r)
    for (int64_t k = 0; k < K; ++k) bias[k] += sums[r * K + k];
  const int64_t gy_col = gyb.stride(2), gy_row = gyb.stride(1), gy_n = gyb.stride(0);
  const T* x = in.buf.const_data_ptr<T>();
  const T* g = gyb.const_data_ptr<T>();

  // Chunks of tiles whose transforms stay in L2; reduction groups of chunks
  // (fixed by the shape, summed in order) x output parts make ~8 tasks.
  const int64_t budget = std::max<int64_t>(MR, (384 * 1024 / int64_t(sizeof(T))) / (nxi * (Ctot + kpt_lanes)));
  const int64_t col_chunks = ceil_div(TQ, budget), tpr = ceil_div(TQ, col_chunks);
  const int64_t row_units = ceil_div(TP, std::max<int64_t>(1, std::min(TP, budget / tpr)));
  const int64_t rows_per = ceil_div(TP, row_units), chunks = N * row_units * col_chunks;
  const int64_t groups = std::min(chunks, ceil_div(8, kparts));
  const int64_t max_tiles = rows_per * tpr, slice = nxi * Ctot * kpt_lanes;
  const int64_t Cv = conflict_free_stride<T>(Ctot), Zs = conflict_free_stride<T>(kpt_lanes);  // tile strides
  // Group 0 adds straight into du; the others into partial sums added after it.
  const Scratch<T> partial((groups - 1) * kparts * slice);
  std::fill(partial.data(), partial.data() + (groups - 1) * kparts * slice, T(0));
  std::vector<int64_t> item(MR);
  for (int64_t j = 0; j < MR; ++j) item[j] = j;
  parallel_for_shared(groups * kparts, 1, [&](const auto& claim) {
    const Scratch<T> V(nxi * max_tiles * Cv), Z(nxi * max_tiles * Zs);
    WideWgrad<T> a;
    a.item_off = item.data();
    a.tiles = kt.tiles;
    a.rows = 1;
    a.x_row = a.gy_row = 0;
    a.x_col = Cv;
    a.gy_col = Zs;
    a.acc_item = kpt_lanes;
    a.accumulate = true;
    for (int64_t begin, end; claim(begin, end);)
      for (int64_t task = begin; task < end; ++task) {
        const int64_t grp = task / kparts, kp = task % kparts;
        T* acc = grp == 0 ? du + kp * slice : partial.data() + (task - kparts) * slice;
        for (int64_t chunk = chunks * grp / groups; chunk < chunks * (grp + 1) / groups; ++chunk) {
          const int64_t n = chunk / (row_units * col_chunks), tr0 = chunk / col_chunks % row_units * rows_per,
                        tc0 = chunk % col_chunks * tpr;
          const int64_t tcols = std::min(tpr, TQ - tc0), ntiles = std::min(rows_per, TP - tr0) * tcols;
          transform_patches(x + n * in.in_n + 2 * tr0 * in.in_row + 2 * tc0 * in.in_col, in, Cred, blk, ntiles, tcols,
                            V.data(), max_tiles * Cv, Cv);
          WinoInput<T> wg{g + n * gy_n + 2 * tr0 * gy_row + 2 * tc0 * gy_col + kp * kpt_lanes, gy_row, gy_col, kpt_lanes,
                          ntiles, tcols, Z.data(), max_tiles * Zs, Zs, blk.k};
          kt.wino_gy(wg);
          a.cols = ntiles;
          for (int64_t xi = 0; xi < nxi; ++xi)
            for (int64_t k0 = 0; k0 < kpt_lanes; k0 += lanes)
              for (int64_t c0 = 0; c0 < Ctot; c0 += MR) {
                a.x = V.data() + xi * max_tiles * Cv + c0;
                a.m = std::min(MR, Ctot - c0);
                a.gy = Z.data() + xi * max_tiles * Zs + k0;
                a.acc = acc + (xi * Ctot + c0) * kpt_lanes + k0;
                kt.wide_wgrad(a);
              }
        }
      }
  });
  // Groups added in group order: the sums depend on the shape alone.
  if (groups == 1) return;
  at::parallel_for(0, kparts * slice, grain_for(groups * 256), [&](int64_t begin, int64_t end) {
    for (int64_t grp = 1; grp < groups; ++grp) {
      const T* part = partial.data() + (grp - 1) * kparts * slice;
      for (int64_t i = begin; i < end; ++i) du[i] += part[i];
    }
  });
}

// The weight tensor (K, C, R, S) as the Winograd pass sees it: lanes are
// outputs and the reduction runs over inputs; grad_input swaps the two and
// flips the taps.
template <typename T>
WeightView<T> weight_view(const at::Tensor& wc, const ConvShape& s, bool transposed) {
  const int64_t RS = s.R * s.S;
  WeightView<T> v{wc.const_data_ptr<T>(), 0, transposed ? RS : s.C * RS, transposed ? s.C * RS : RS, RS, {}};
  for (int64_t t = 0; t < RS; ++t) v.tap.push_back(transposed ? RS - 1 - t : t);
  return v;
}

// gw (K, C, R, S) = grad_weight of the layer: the phases' dU summed, then
// G^T dU G per block into [block, c][k x k][lanes], gathered into [c][R x S][lanes]
// and transposed into place.
template <typename T>
void winograd_wgrad(const at::Tensor& input, const at::Tensor& gy, const ConvShape& s, at::Tensor& gw, T* bias) {
  const KernelsT<T>& kt = kern<T>();
  const Blocks blk = pass_blocks(s.R, s.S);
  const int64_t lanes = kt.tiles * kt.nr, KT = ceil_div(s.K, lanes), Ctot = blk.count() * s.C, RS = s.R * s.S,
                nxi = blk.xi(), kk = blk.k * blk.k;
  // Split the outputs when the images give few tiles (batch 1), so both cores work.
  const int64_t tiles = s.N * ceil_div(s.P, 2) * ceil_div(s.Q, 2);
  const int64_t kparts = std::min(KT, std::max<int64_t>(1, ceil_div(8 * 64, tiles)));
  const int64_t kpt_lanes = ceil_div(KT, kparts) * lanes, Kbuf = kparts * kpt_lanes;
  const int64_t du_size = kparts * nxi * Ctot * kpt_lanes;
  const Scratch<T> du(du_size);
  std::fill(du.data(), du.data() + du_size, T(0));
  const int64_t H = s.H, W = s.W, P = s.P, Q = s.Q, dh = s.dil_h, dw = s.dil_w;
  if (bias) std::fill(bias, bias + s.K, T(0));
  for (int64_t a = 0; a < std::min(dh, P); ++a)
    for (int64_t b = 0; b < std::min(dw, Q); ++b) {
      const int64_t e = a - s.pad_h - dh * floor_div(a - s.pad_h, dh), top = (s.pad_h - a + e) / dh;
      const int64_t f = b - s.pad_w - dw * floor_div(b - s.pad_w, dw), left = (s.pad_w - b + f) / dw;
      winograd_wgrad_phase<T>(input.slice(2, std::min(e, H), H, dh).slice(3, std::min(f, W), W, dw), top, left,
                              gy.slice(2, a, P, dh).slice(3, b, Q, dw), blk, s.C, kparts, kpt_lanes, du.data(), bias);
    }
  // One block: [block, c][k x k] is already [c][R x S].
  const Scratch<T> taps_k(s.C * RS * Kbuf), blocks(blk.count() > 1 ? Ctot * kk * Kbuf : 0);
  T* const block_taps = blk.count() > 1 ? blocks.data() : taps_k.data();
  at::parallel_for(0, kparts, 1, [&](int64_t begin, int64_t end) {
    for (int64_t kp = begin; kp < end; ++kp) {
      WinoWeightsGrad<T> a{du.data() + kp * nxi * Ctot * kpt_lanes, Ctot * kpt_lanes, Ctot, kpt_lanes,
                           block_taps + kp * kpt_lanes, Kbuf, blk.k};
      kt.wino_weights_grad(a);
    }
  });
  for (int64_t bl = 0; bl < blk.count() && blk.count() > 1; ++bl)
    for (int64_t c = 0; c < s.C; ++c)
      for (int64_t t = 0; t < kk; ++t) {
        const int64_t tap = blk.tap(bl, t / blk.k, t % blk.k);
        if (tap >= 0)
          std::memcpy(taps_k.data() + (c * RS + tap) * Kbuf, block_taps + ((bl * s.C + c) * kk + t) * Kbuf,
                      sizeof(T) * Kbuf);
      }
  Transpose<T> tr{taps_k.data(), Kbuf, s.C * RS, s.C * RS, s.K, gw.mutable_data_ptr<T>(), 0, s.C * RS};
  kt.transpose(tr);
}

// One group of the layer as a layer of its own.
ConvShape one_group(ConvShape s) {
  s.C = s.C_per_group();
  s.K = s.K_per_group();
  s.groups = 1;
  return s;
}

// Grouped layers run one Winograd pass per group, on channel slices of the
// tensors (each pass spreads over the threads itself): f(group's shape, g).
template <typename F>
void for_each_group(const ConvShape& s, const F& f) {
  const ConvShape sg = one_group(s);
  for (int64_t g = 0; g < s.groups; ++g) f(sg, g);
}

}  // namespace

bool winograd_applies(const ConvShape& s) {
  const auto size_fits = [](int64_t k) { return k == 3 || k == 5; };
  return size_fits(s.R) && size_fits(s.S) && s.stride_h == 1 && s.stride_w == 1 && s.pad_h <= (s.R - 1) * s.dil_h &&
         s.pad_w <= (s.S - 1) * s.dil_w;
}

bool winograd_suits(const ConvShape& s, WinogradPass pass) {
  const char* env = std::getenv("CONVKIT_WINOGRAD");  // read per call: cheap, and A/B runs toggle it
  if ((env && std::strcmp(env, "0") == 0) || winograd_choice() == WinogradChoice::kNever || !winograd_applies(s))
    return false;
  if (env && std::strcmp(env, "1") == 0) return true;  // wherever it applies (tests cover every shape with it)
  if (winograd_choice() != WinogradChoice::kRules) return winograd_choice() == WinogradChoice::kWherever;
  // Grouped layers: a pass per group, judged as that group's layer (2-core Zen 5,
  // batch 8, forward: 4 x 32 channels at 28x28 1.15 -> 0.80 ms, 8 x 32 2.74 -> 2.26 ms,
  // 2 x 64 at 56x56 9.1 -> 6.4 ms; forward + backward 0.7-0.77x).
  if (s.groups > 1) return winograd_suits(one_group(s), pass);
  // Measured against the direct kernels (2-core Zen 3, float32): F(2x2, 3x3)
  // wins from 32 channels on, while its transformed filters (16 values per
  // channel pair) stay in cache (up to 256 x 256 channels) and the layer has
  // tiles enough to reuse them. Dilated layers as a batch of phases won too
  // (forward 1.02-1.4x, grad_input 1.2-1.4x), except in grad_weight (0.7-0.76x).
  // grad_weight sums over tiles into 16 values per pair, so it needs the
  // longest reductions. F(2x2, 5x5) saves more (2.8x the multiplies): it won
  // every pass from 16 x 32 channels on (forward 1.2-1.9x, grad_input
  // 1.2-1.75x, grad_weight 1.05-1.65x, dilated too), and lost at 16 x 16
  // (0.8-0.97x).
  const int64_t tiles = s.N * ceil_div(s.P, 2) * ceil_div(s.Q, 2);
  const bool wgrad = pass == WinogradPass::grad_weight, dilated = s.dil_h > 1 || s.dil_w > 1;
  if (pass_blocks(s.R, s.S).k == 5)
    return s.C >= 16 && s.K >= 16 && s.C * s.K >= 512 && s.C * s.K <= 256 * 256 && tiles >= 32;
  if (wgrad && (s.R != 3 || s.S != 3 || dilated)) return false;
  // With 512-bit wide tiles (2-core Zen 5) the direct kernels won dilated
  // layers of 32 channels (16 x 32 -> 32 at 64x64, dilation 2: 0.73x forward,
  // 0.79x forward + backward); at 64 channels F(2x2, 3x3) still won (1.13x at 56x56).
  const int64_t min_channels = dilated && wide_vectors_wider() ? 64 : 32;
  // There too, dilation 4 (16 phases of a quarter the size) lost at 64 channels
  // (28x28: forward 1.18x, forward + backward 1.64x; 56x56: 1.03x, 1.06x), dilation 2 won (0.78x at 28x28).
  if (dilated && wide_vectors_wider() && s.dil_h * s.dil_w > 4) return false;
  // On a 2-vCPU Xeon (512-bit tiles, batch 8), 32 channels on 14x14 images
  // ran faster direct (forward 8 groups of 32: 1.03 against 1.24 ms,
  // batch 32: 4.57 against 5.46; 32 -> 32: 0.153 against 0.171; forward +
  // backward 0.9-0.97x) while 64 channels there, and 32 on 28x28 and
  // larger, still won with F(2x2, 3x3).
  const int64_t image_tiles = ceil_div(s.P, 2) * ceil_div(s.Q, 2);
  if (wide_vectors_wider() && std::min(s.C, s.K) < 64 && image_tiles < 196) return false;
  // Larger filters stream from L3 once per image's chunk of tiles; with
  // 512-bit tiles F(2x2, 3x3) still won the forward and grad_input while an
  // image had tiles enough (batch 8, forward: 512 x 512 at 7x7 0.82x, at
  // 14x14 0.56x, 1024 x 1024 at 14x14 0.89x; forward + backward 0.72-0.9x),
  // and tied or lost at 1024 x 512 on 7x7 (1.0x, 1.08x).
  const int64_t CK = s.C * s.K;
  const bool filters_fit = CK <= 256 * 256 || (wide_vectors_wider() && !wgrad && CK <= 1024 * 1024 &&
                                               CK <= 24576 * image_tiles);
  return s.C >= min_channels && s.K >= min_channels && filters_fit && tiles >= (wgrad ? 1024 : 32);
}

bool winograd_forward(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias, const ConvShape& s,
                      at::Tensor& y) {
  const at::Tensor wc = weight.contiguous();
  bool done = true;
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "convkit_winograd_forward", [&] {
    const scalar_t* b = bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr;
    for_each_group(s, [&](const ConvShape& sg, int64_t g) {
      at::Tensor yg = y.narrow(1, g * sg.K, sg.K);
      done = done && winograd_dilated<scalar_t>(input.narrow(1, g * sg.C, sg.C), s.pad_h, s.pad_w, s.dil_h, s.dil_w,
                                                weight_view<scalar_t>(wc.narrow(0, g * sg.K, sg.K), sg, false),
                                                pass_blocks(s.R, s.S), sg.C, sg.K, b ? b + g * sg.K : nullptr, yg);
    });
  });
  return done;
}

bool winograd_backward_input(const at::Tensor& gy, const at::Tensor& weight, const ConvShape& s, at::Tensor& gx) {
  const at::Tensor wc = weight.contiguous();
  bool done = true;
  AT_DISPATCH_FLOATING_TYPES(gy.scalar_type(), "convkit_winograd_backward_input", [&] {
    // The forward correlation of grad_output with the flipped, transposed
    // filters, padded so the output is the input's size.
    for_each_group(s, [&](const ConvShape& sg, int64_t g) {
      at::Tensor gxg = gx.narrow(1, g * sg.C, sg.C);
      done = done && winograd_dilated<scalar_t>(gy.narrow(1, g * sg.K, sg.K), (s.R - 1) * s.dil_h - s.pad_h,
                                                (s.S - 1) * s.dil_w - s.pad_w, s.dil_h, s.dil_w,
                                                weight_view<scalar_t>(wc.narrow(0, g * sg.K, sg.K), sg, true),
                                                pass_blocks(s.R, s.S), sg.K, sg.C, nullptr, gxg);
    });
  });
  return done;
}

void winograd_backward_weight(const at::Tensor& gy, const at::Tensor& input, const ConvShape& s, at::Tensor& gw,
                              at::Tensor* gb) {
  AT_DISPATCH_FLOATING_TYPES(gy.scalar_type(), "convkit_winograd_backward_weight", [&] {
    for_each_group(s, [&](const ConvShape& sg, int64_t g) {
      at::Tensor gwg = gw.narrow(0, g * sg.K, sg.K);  // contiguous: whole rows of gw
      winograd_wgrad<scalar_t>(input.narrow(1, g * sg.C, sg.C), gy.narrow(1, g * sg.K, sg.K), sg, gwg,
                               gb ? gb->mutable_data_ptr<scalar_t>() + g * sg.K : nullptr);
    });
  });
}

}  // namespace cpu
}  // namespace convkit
