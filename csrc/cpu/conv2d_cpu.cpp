// CPU kernels for the convkit ops: the torch side. Each pass (forward,
// grad_input, grad_weight) picks a kernel family per shape:
//  - wide: channels-last, register-blocked tiles of pixels x output channels
//    (implicit GEMM over taps x channels), for layers with many channels;
//  - plane: NCHW rows vectorized along the width, for few channels per group
//    (depthwise, corr2d, small batches);
//  - batch lanes (batch_lanes.cpp): vectors along the batch, for few
//    channels and large batches (LeNet);
//  - channel lanes (channel_lanes.cpp): vectors along the channels, for
//    depthwise layers on small images;
//  - Winograd (winograd.cpp) for 3x3 and 5x5 layers with many channels.
// The arithmetic lives in kernels_impl.h, compiled once per ISA; this file
// lays out buffers, packs weights and splits work with at::parallel_for.
// In the backward, a plane grad_weight pass also sums grad_output for
// grad_bias and, with images enough, runs grad_input's units as it goes, so
// grad_output is read once for all three.
//
// Determinism: every output element is reduced by one task in an order fixed
// by the shape alone; grad_weight sums per-chunk partials (the chunking
// depends only on the shape) in chunk order. Results are bitwise independent
// of the thread count.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <optional>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "../checks.h"
#include "batch_lanes.h"
#include "channel_lanes.h"
#include "buffers.h"
#include "common.h"
#include "kernels.h"
#include "measured_choice.h"
#include "winograd.h"

namespace convkit {
namespace cpu {

const KernelTable& kernels() {
  static const KernelTable* table = [] {
    const char* isa = std::getenv("CONVKIT_CPU_ISA");
    const std::string cap = isa ? isa : "avx512";
    TORCH_CHECK(cap == "avx512" || cap == "avx2" || cap == "generic",
                "CONVKIT_CPU_ISA must be avx512, avx2 or generic; got '", cap, "'");
#if defined(__x86_64__) || defined(__i386__)
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
    if (cap == "avx512" && avx512) return &kernels_avx512();
    if (cap != "generic" && avx2) return &kernels_avx2();
#endif
    return &kernels_generic();
  }();
  return *table;
}

namespace {
// ---------------------------------------------------------------------------
// Buffers

// Channels-last copy of `x` (N, C, H, W) with a zero border: (N, H + 2ph, W + 2pw, C).
at::Tensor padded_nhwc(const at::Tensor& x, int64_t ph, int64_t pw) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  at::Tensor buf = empty_pooled({N, H + 2 * ph, W + 2 * pw, C}, x.options());
  if (ph > 0) {
    buf.narrow(1, 0, ph).zero_();
    buf.narrow(1, H + ph, ph).zero_();
  }
  if (pw > 0) {
    buf.narrow(2, 0, pw).zero_();
    buf.narrow(2, W + pw, pw).zero_();
  }
  buf.narrow(1, ph, H).narrow(2, pw, W).copy_(x.permute({0, 2, 3, 1}));
  return buf;
}

// Planar copy for the plane kernels: each (n, c) plane becomes `phases`
// column phases of `rows` x `width` values, zero outside the data.
// Element (h, w) of a source plane goes to row h*row_step + row0, column
// c = w*col_step + col0, stored at phase c % phases, position c / phases.
struct PlaneLayout {
  int64_t phases = 1, rows = 0, width = 0;
  int64_t row0 = 0, row_step = 1, col0 = 0, col_step = 1;
  int64_t data_rows = 0;  // source rows (set by pack_planes)
  int64_t plane() const { return phases * rows * width; }
  // Rows [data_lo, data_hi) may hold nonzero values; the rest are zero.
  int64_t data_lo() const { return row0; }
  int64_t data_hi() const { return row0 + (data_rows - 1) * row_step + 1; }
};

// One source plane (H x W, contiguous) into its layout slot `plane`. A slot
// that already holds zeros outside the data (a zero-initialised buffer reused
// for planes of one layout) needs no zeroing: `zeroed`.
// Only source rows [h_lo, h_hi) are packed when given (a part of a unit that
// reads no others).
template <typename T>
void pack_plane(const T* in, int64_t H, int64_t W, const PlaneLayout& lay, T* plane, bool zeroed = false,
                int64_t h_lo = 0, int64_t h_hi = -1) {
  // A small plane is zeroed in one call: per-row calls for 1-pixel borders
  // cost more than the stores. Larger ones row by row: one large memset may
  // use cache-bypassing stores, and the writes below would then miss on every
  // line. Rows that receive data (without zero insertion) are zeroed only
  // around it: in phase ph, columns c = col0 + w with c % phases == ph sit at
  // [lo, lo + count).
  if (!zeroed && lay.plane() * int64_t(sizeof(T)) <= (64 << 10)) {
    std::memset(plane, 0, sizeof(T) * lay.plane());
    zeroed = true;
  }
  for (int64_t ph = 0; !zeroed && ph < lay.phases; ++ph) {
    const int64_t first = lay.col0 + (ph - lay.col0 % lay.phases + lay.phases) % lay.phases;
    const int64_t lo = first / lay.phases, count = std::max<int64_t>(0, ceil_div(W - (first - lay.col0), lay.phases));
    for (int64_t row = 0; row < lay.rows; ++row) {
      T* dst = plane + (ph * lay.rows + row) * lay.width;
      const bool data = lay.col_step == 1 && row >= lay.row0 && row < lay.row0 + H * lay.row_step &&
                        (lay.row_step == 1 || (row - lay.row0) % lay.row_step == 0);
      if (!data) {
        std::memset(dst, 0, sizeof(T) * lay.width);
      } else {
        std::memset(dst, 0, sizeof(T) * lo);
        std::memset(dst + lo + count, 0, sizeof(T) * (lay.width - lo - count));
      }
    }
  }
  const bool plain = lay.phases == 1 && lay.col_step == 1;
  for (int64_t h = h_lo; h < (h_hi < 0 ? H : h_hi); ++h) {
    const T* src_row = in + h * W;
    // Reads run ahead, past the plane's end into the next one: tasks pack a
    // plane, compute from L1, then pack the plane that follows, and the
    // hardware prefetcher would have stopped meanwhile. Planes of 4 to 32 KiB
    // fetch the next plane's row into L2 (depthwise 3x3 at 56x56, forward +
    // backward -5%: the layer is bound by memory); others run 4 KiB ahead
    // into L1 (a whole plane ahead slowed the 224x224 stem's forward 1.01 ->
    // 1.18 ms).
    const int64_t plane_bytes = int64_t(sizeof(T)) * H * W;
    if (plane_bytes >= 4096 && plane_bytes <= (32 << 10)) {
      const char* ahead = reinterpret_cast<const char*>(src_row) + plane_bytes;
      for (int64_t b = 0; b < int64_t(sizeof(T)) * W; b += 64) __builtin_prefetch(ahead + b, 0, 2);
    } else {
      const char* ahead = reinterpret_cast<const char*>(src_row) + 4096;
      for (int64_t b = 0; b < int64_t(sizeof(T)) * W; b += 64) __builtin_prefetch(ahead + b, 0, 3);
    }
    const int64_t row = h * lay.row_step + lay.row0;
    if (plain) {
      std::memcpy(plane + row * lay.width + lay.col0, src_row, sizeof(T) * W);
      continue;
    }
    T* dst = plane + row * lay.width;
    if (lay.col_step == 1 && lay.phases == 2) {
      // Even source columns land in phase col0 % 2 from position col0 / 2, odd ones in the other.
      const int64_t even = lay.col0 % 2, stride = lay.rows * lay.width;
      kern<T>().deinterleave(src_row, W, dst + even * stride + lay.col0 / 2,
                             dst + (1 - even) * stride + (lay.col0 + 1) / 2);
    } else if (lay.col_step == 1) {
      // Stride phases: phase ph holds columns c = col0 + w with c % phases == ph, at c / phases.
      for (int64_t ph = 0; ph < lay.phases; ++ph) {
        const int64_t first = lay.col0 + (ph - lay.col0 % lay.phases + lay.phases) % lay.phases;
        T* out = dst + ph * lay.rows * lay.width + first / lay.phases;
        for (int64_t w = first - lay.col0; w < W; w += lay.phases) *out++ = src_row[w];
      }
    } else {
      // Zero insertion (layouts never combine it with phases): column col0 + w * col_step.
      T* out = dst + lay.col0;
      for (int64_t w = 0; w < W; ++w) out[w * lay.col_step] = src_row[w];
    }
  }
}

template <typename T>
at::Tensor pack_planes(const at::Tensor& src_any, PlaneLayout& lay) {
  const at::Tensor src = src_any.contiguous();
  const int64_t NC = src.size(0) * src.size(1), H = src.size(2), W = src.size(3);
  lay.data_rows = H;
  const int64_t stride = conflict_free_stride<T>(lay.plane());
  at::Tensor buf = empty_pooled({NC, stride}, src.options()).narrow(1, 0, lay.plane());
  const T* s = src.const_data_ptr<T>();
  T* d = buf.mutable_data_ptr<T>();
  at::parallel_for(0, NC, grain_for(lay.plane()), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) pack_plane(s + i * H * W, H, W, lay, d + i * stride);
  });
  return buf;
}

// The stride-phase-split, zero-padded input for the plane kernels, with room
// for whole-vector reads past the last output column.
template <typename T>
PlaneLayout input_plane_layout(const ConvShape& s, int64_t span) {
  PlaneLayout lay;
  const int64_t Wp = s.W + 2 * s.pad_w;
  lay.phases = s.stride_w;
  lay.rows = s.H + 2 * s.pad_h;
  const int64_t reach = span + (s.S - 1) * s.dil_w / s.stride_w;
  lay.width = std::max(ceil_div(Wp, s.stride_w), reach);
  lay.row0 = s.pad_h;
  lay.col0 = s.pad_w;
  return lay;
}

// ---------------------------------------------------------------------------
// Forward

// Zero-padded copy of `x` in its own layout (channels-last stays channels-last).
template <typename T>
at::Tensor padded_input(const at::Tensor& x, int64_t ph, int64_t pw) {
  if (x.suggest_memory_format() == at::MemoryFormat::ChannelsLast) {
    if (ph == 0 && pw == 0 && x.is_contiguous(at::MemoryFormat::ChannelsLast)) return x;
    return padded_nhwc(x, ph, pw).permute({0, 3, 1, 2});
  }
  if (ph == 0 && pw == 0) return x.contiguous();
  PlaneLayout lay;  // plain zero padding
  lay.rows = x.size(2) + 2 * ph;
  lay.width = x.size(3) + 2 * pw;
  lay.row0 = ph;
  lay.col0 = pw;
  return pack_planes<T>(x, lay).view({x.size(0), x.size(1), lay.rows, lay.width});
}

// Wide tiles over a grid of output pixels: for each image, rows x cols
// pixels whose source pixel advances by in_row / in_col and whose output by
// out_row / out_col, with Cred reduction channels and Kout outputs per group.
// Source reads are in + tap + channel * in_chan; the weights are packed by
// pack_wide_weights. Used by the forward pass and by each stride phase of grad_input.
// A planar (N, C, H, W) input read through a zero border of pad_h rows and
// pad_w columns that is not copied ahead: the grid's offsets address the
// padded tensor (N, C, H + 2 pad_h, Wp), contiguous, which is copied a band
// of rows at a time (PaddedBand) or whole. (Splitting the copy's columns
// into stride phases, so that a stride-2 layer reads consecutive values,
// was 5-9% slower on 3x3 stride-2 layers: the taps then read two phases.)
template <typename T>
struct PaddedSource {
  at::Tensor x;  // undefined: the grid's `in` is the input itself
  int64_t pad_h = 0, pad_w = 0;
  int64_t C = 0, H = 0, W = 0;
  int64_t Wp() const { return W + 2 * pad_w; }

  // Padded rows [row0, row0 + count) of source plane `plane` into dst, rows
  // Wp apart. Only data columns are written (zeros where a row lies in the
  // border): the border columns of dst must hold zeros already.
  void copy_rows(const T* plane, int64_t row0, int64_t count, T* dst) const {
    for (int64_t r = 0, h = row0 - pad_h; r < count; ++r, ++h) {
      if (h >= 0 && h < H) std::memcpy(dst + r * Wp() + pad_w, plane + h * W, sizeof(T) * W);
      else std::memset(dst + r * Wp() + pad_w, 0, sizeof(T) * W);
    }
  }
};

template <typename T>
struct WideGrid {
  const T* in;
  int64_t in_n, in_chan, in_row, in_col;
  PaddedSource<T> source;  // where `in` is null
  std::vector<int64_t> taps;
  T* out;
  int64_t out_n, out_chan, out_row, out_col;
  int64_t N, rows, cols, groups, Cred, Kout;
  const T* bias;  // groups * round_up(Kout, NR) values, or null
};

// Reduction channels per block: a block's packed weights (wide_block_bytes a
// tile) stay in cache for every tile of a band. Blocks are even.
template <typename T>
int64_t wide_channel_block(int64_t Cred, int64_t ntaps) {
  const int64_t fit = std::max<int64_t>(8, kern<T>().wide_block_bytes / (int64_t(sizeof(T)) * kern<T>().nr * std::max<int64_t>(1, ntaps)));
  return ceil_div(Cred, ceil_div(Cred, fit));
}

// Weights for run_wide, packed [g][output tile][channel block][tap][c][NR lanes]
// with zero lanes past Kout: one tile from its lanes_last form ([c][R x S][NR],
// see weight_tile_lanes_last), whole NR-lane rows moved into place.
template <typename T>
void place_wide_tile(const T* lanes_last, int64_t Cred, const WeightView<T>& w, T* tile) {
  const int64_t NR = kern<T>().nr, ntaps = w.tap.size();
  const int64_t Cb = wide_channel_block<T>(Cred, ntaps);
  for (int64_t c0 = 0; c0 < Cred; c0 += Cb) {
    const int64_t len = std::min(Cb, Cred - c0);
    T* dst = tile + c0 * ntaps * NR;
    for (int64_t t = 0; t < ntaps; ++t)
      for (int64_t c = 0; c < len; ++c)
        std::memcpy(dst + (t * len + c) * NR, lanes_last + ((c0 + c) * w.rs + w.tap[t]) * NR, kTileBytes);
  }
}

// Output tile gk packed into `tile` (scratch: Cred * w.rs * NR values). A
// 1 x 1 layer's lanes_last form is the packed layout already.
template <typename T>
void pack_wide_tile(int64_t Kout, int64_t Cred, const WeightView<T>& w, int64_t gk, T* scratch, T* tile) {
  if (w.rs == 1 && w.tap.size() == 1) return weight_tile_lanes_last(Kout, Cred, w, gk, tile);
  weight_tile_lanes_last(Kout, Cred, w, gk, scratch);
  place_wide_tile(scratch, Cred, w, tile);
}

template <typename T>
at::Tensor pack_wide_weights(int64_t G, int64_t Kout, int64_t Cred, const WeightView<T>& w) {
  const int64_t NR = kern<T>().nr, KB = ceil_div(Kout, NR), tile_size = int64_t(w.tap.size()) * Cred * NR;
  at::Tensor packed = empty_pooled({G * KB * tile_size}, at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
  T* base = packed.mutable_data_ptr<T>();
  at::parallel_for(0, G * KB, grain_for(tile_size), [&](int64_t begin, int64_t end) {
    Scratch<T> scratch(Cred * w.rs * NR);
    for (int64_t gk = begin; gk < end; ++gk) pack_wide_tile(Kout, Cred, w, gk, scratch.data(), base + gk * tile_size);
  });
  return packed;
}

// The height of run_wide's bands of output rows (rows x cols pixels). Bands
// of even height (14 rows: 5, 5, 4 rather than 6, 6, 2) keep static task
// ranges balanced; about `target` pixels (96 keep a band's input in L1) a
// band. Up to twice that is allowed where it wastes fewer tile slots (mr
// pixels a call): 56-pixel rows fill tiles of 6 only three rows at a time
// (1.03-1.05x on 56 x 56 layers, 2-core Zen 3).
int64_t wide_band(int64_t rows, int64_t cols, int64_t mr, int64_t target) {
  const int64_t even = ceil_div(rows, ceil_div(rows, std::min(rows, std::max<int64_t>(1, target / cols))));
  const auto slots = [&](int64_t band) {  // every band but the last is `band` rows high
    const int64_t full = ceil_div(rows, band) - 1;
    return full * round_up(band * cols, mr) + round_up((rows - full * band) * cols, mr);
  };
  int64_t best = even;
  for (int64_t band = even + 1; band <= rows && band * cols <= 2 * target; ++band) {
    const bool balanced = rows % band == 0 || rows % band == band - 1;
    if (balanced && slots(band) < slots(best)) best = band;
  }
  return best;
}

// A unit of run_wide's pixels: npix pixels at in + pix_in[i], out + pix_out[i]
// (offsets from the grid's in and out).
struct PixelRun {
  int64_t in, out;
  const int64_t* pix_in;
  const int64_t* pix_out;
  int64_t npix;
};

// run_wide's pixels cut into units: bands of output rows of one image, which
// share one table of offsets. Where an image's pixels leave many calls short
// of mr pixels (7 x 7 outputs: 49 = 6 x 8 + 1, and a one-pixel call is
// latency-bound), the units are runs of whole calls across images instead,
// with a table of every pixel. (Staged planar outputs are transposed as
// rows x cols blocks: bands only.)
struct PixelRuns {
  int64_t rows, cols, band, bands, chunk, count, in_n, in_row, out_n, out_row;
  bool flat;
  std::vector<int64_t> pix_in, pix_out;

  template <typename T>
  PixelRuns(const WideGrid<T>& g, int64_t mr, bool staged, int64_t target)
      : rows(g.rows), cols(g.cols), in_n(g.in_n), in_row(g.in_row), out_n(g.out_n), out_row(g.out_row) {
    band = wide_band(rows, cols, mr, target);
    bands = ceil_div(rows, band);
    const int64_t plane = rows * cols, total = g.N * plane, last = plane - (bands - 1) * band * cols;
    const int64_t band_calls = g.N * ((bands - 1) * ceil_div(band * cols, mr) + ceil_div(last, mr));
    chunk = round_up(band * cols, mr);
    flat = g.N > 1 && !staged && 50 * ceil_div(total, mr) < 49 * band_calls;  // over 2% fewer calls
    count = flat ? ceil_div(total, chunk) : g.N * bands;
    for (int64_t r = 0; r < (flat ? g.N * rows : band); ++r)
      for (int64_t q = 0; q < cols; ++q) {
        const int64_t n = flat ? r / rows : 0, p = flat ? r % rows : r;
        pix_in.push_back(n * g.in_n + p * g.in_row + q * g.in_col);
        pix_out.push_back(n * g.out_n + p * g.out_row + q * g.out_col);
      }
  }

  int64_t max_pixels() const { return flat ? chunk : band * cols; }
  int64_t image(int64_t u) const { return u / bands; }  // (bands only)

  PixelRun operator[](int64_t u) const {
    if (flat) {
      const int64_t j0 = u * chunk;
      return {0, 0, pix_in.data() + j0, pix_out.data() + j0, std::min<int64_t>(chunk, int64_t(pix_in.size()) - j0)};
    }
    const int64_t n = u / bands, p = u % bands * band;
    return {n * in_n + p * in_row, n * out_n + p * out_row, pix_in.data(), pix_out.data(), std::min(band, rows - p) * cols};
  }
};

// A run of a 1x1 layer's planar (NCHW) input pixels, copied for the wide
// tiles as [group of mr pixels][channel][mr]: a call's mr pixels then read
// one contiguous stretch instead of mr values from each of C channel planes,
// C streams that the hardware prefetchers do not follow. The copy also asks
// for the next run's input to be brought into L2 meanwhile. 8 x 256 -> 64
// at 56 x 56 (2-vCPU Xeon, AVX-512): 47-53 -> 81-83 GFLOP/s single thread,
// forward 1.27 -> 0.79 of torch's time on two. (With taps, the copy of
// every tap cost more than it saved: 3 x 3 stride-2 1.13x, 7 x 7 stem 1.6x.)
// Offsets of the copy for the kernels: pixel p at pix[p], channel c at c * mr.
template <typename T>
struct InterleavedRun {
  int64_t mr, C;
  std::vector<int64_t> pix;
  WorkBuffer<T> buf;
  std::vector<char> whole;  // per group: its mr pixels are adjacent values

  InterleavedRun(int64_t mr_, int64_t C_, int64_t max_pixels) : mr(mr_), C(C_), buf(round_up(max_pixels, mr_) * C_) {
    for (int64_t p = 0; p < max_pixels; ++p) pix.push_back(p / mr * C * mr + p % mr);
  }

  // Copies channels [0, C) of `in` (in_chan apart) at the run's pixels;
  // `next` (or null) is the next run's input, at the same offsets.
  void fill(const T* in, int64_t in_chan, const int64_t* pix_in, int64_t npix, const T* next) {
    constexpr int64_t line = 64 / int64_t(sizeof(T));
    const int64_t groups = ceil_div(npix, mr);
    whole.assign(groups, 0);
    for (int64_t q = 0; q * mr + mr <= npix; ++q) {
      whole[q] = 1;
      for (int64_t j = 1; j < mr; ++j) whole[q] &= pix_in[q * mr + j] == pix_in[q * mr] + j;
    }
    for (int64_t c = 0; c < C; ++c) {
      const T* src = in + c * in_chan;
      for (int64_t i = pix_in[0]; next && i < pix_in[npix - 1] + line; i += line) __builtin_prefetch(next + c * in_chan + i, 0, 2);
      for (int64_t q = 0; q < groups; ++q) {
        T* d = buf.data() + (q * C + c) * mr;
        const int64_t* pi = pix_in + q * mr;
        if (whole[q]) {
          for (int64_t j = 0; j < mr; ++j) d[j] = src[pi[0] + j];
        } else {
          for (int64_t j = 0, m = std::min(mr, npix - q * mr); j < m; ++j) d[j] = src[pi[j]];
        }
      }
    }
  }
};

// A padded source's rows, copied by each thread for the (run, group) it
// computes: the wide tiles read the copy at the grid's own offsets, and the
// padded input never goes out to memory and back (8 x 64 -> 128 channels
// 3x3 stride 2 at 56 x 56: 6.9 MB written, then read again, per call;
// forward 1.00 -> 0.87 of torch's time, 2-vCPU Xeon). A copy holds
// [channel][row][Wp] for one group's channels and a run's rows.
// (Copies of several runs at once, so that fewer rows are copied twice, and
// prefetching the next run's rows made no difference.)
template <typename T>
struct PaddedBand {
  const PaddedSource<T>& src;
  const PixelRuns& runs;
  int64_t Cred, row_step, tap_rows, in_chan;
  WorkBuffer<T> buf;  // zeroed once: the border columns stay zero
  int64_t key = -1;   // the (run, group) in buf

  PaddedBand(const PaddedSource<T>& s, const PixelRuns& r, const WideGrid<T>& grid, int64_t tap_rows_)
      : src(s), runs(r), Cred(grid.Cred), row_step(grid.in_row / s.Wp()), tap_rows(tap_rows_),
        in_chan(conflict_free_stride<T>(((runs.band - 1) * row_step + tap_rows) * s.Wp())), buf(Cred * in_chan) {}

  // The input of run u's group g.
  const T* input(int64_t u, int64_t g, int64_t groups) {
    if (u * groups + g == key) return buf.data();
    key = u * groups + g;
    const int64_t first = u % runs.bands * runs.band;
    const int64_t count = (std::min(runs.band, runs.rows - first) - 1) * row_step + tap_rows;
    const T* x = src.x.template const_data_ptr<T>() + (runs.image(u) * src.C + g * Cred) * src.H * src.W;
    for (int64_t c = 0; c < Cred; ++c) src.copy_rows(x + c * src.H * src.W, first * row_step, count, buf.data() + c * in_chan);
    return buf.data();
  }
};

// The weights w (view.tap matching grid.taps) are packed by pack_wide_weights
// ahead of the tiles, or, where they outweigh the input (late layers, small
// images: one band at batch 1, 1024 -> 512 3x3 at 7x7), by each thread into a
// buffer of its own, a pair of output tiles at a time: the units then take
// the tiles outermost, every pixel run meets the tiles' weights while they
// are in cache, and the packed copy never goes out to memory and back
// (512 x 512 3x3 at 7x7: 9.4 MB written and read again per call).
template <typename T>
void run_wide(const WideGrid<T>& grid, const WeightView<T>& view) {
  const KernelsT<T>& kt = kern<T>();
  const int64_t NR = kt.nr, G = grid.groups, Cred = grid.Cred, ntaps = grid.taps.size();
  const int64_t Kpad = round_up(grid.Kout, NR), KB = Kpad / NR, KT = ceil_div(KB, kt.tiles);
  const int64_t Cb = wide_channel_block<T>(Cred, ntaps), nblk = ceil_div(Cred, Cb);
  // Planar outputs (NCHW) are gathered channels-last, then transposed,
  // unless the kernels store them straight (register transposes).
  const bool planar = grid.out_chan != 1 && grid.out_col == 1 && !kt.wide_planar_stores;
  // Tasks are runs of pixels (bands of output rows of one image, mostly);
  // tiles run across the rows of a band, so narrow outputs waste no tile
  // slots at row ends.
  // Planar 1x1 inputs are read through InterleavedRun, in bands of about
  // 224 pixels (4 rows of 56: 1.05x over 1 row and 3, single thread).
  const bool planar_1x1 = grid.in_chan != 1 && ntaps == 1;
  const PixelRuns runs(grid, kt.mr, planar, planar_1x1 ? 224 : 96);
  const int64_t tile_size = ntaps * Cred * NR, GK = G * KT;
  const bool weights_outer = runs.count == 1 || G * KB * tile_size > grid.N * grid.in_n;
  // A padded source is copied a run at a time (PaddedBand) where a run's
  // copy serves all its tiles; otherwise whole, ahead.
  const PaddedSource<T>& source = grid.source;
  if (source.x.defined() && (runs.flat || weights_outer || planar_1x1)) {
    const at::Tensor xb = padded_input<T>(source.x, source.pad_h, source.pad_w);
    WideGrid<T> whole = grid;
    whole.source = {};
    whole.in = xb.const_data_ptr<T>();
    whole.in_n = xb.stride(0);
    whole.in_chan = xb.stride(1);
    return run_wide(whole, view);
  }
  const int64_t tap_rows = source.x.defined() ? *std::max_element(grid.taps.begin(), grid.taps.end()) / source.Wp() + 1 : 0;
  const at::Tensor packed = weights_outer ? at::Tensor() : pack_wide_weights<T>(G, grid.Kout, Cred, view);
  const bool interleave = planar_1x1 && !weights_outer;
  // Units are (pixel run, group, output tiles of one call), tiles fastest,
  // so a thread reuses a run's input across tiles and small batches still
  // split evenly; or (tiles, run), runs fastest, where the weights outweigh the input.
  parallel_for_shared(runs.count * GK, grain_for(runs.max_pixels() * kt.tiles * NR * Cred * ntaps), [&](const auto& claim) {
    WideTile<T> a;
    a.in_chan = grid.in_chan;
    a.tap_off = grid.taps.data();
    a.ntaps = ntaps;
    a.out_lane = grid.out_chan;
    a.w_tile = ntaps * Cred * NR;
    WorkBuffer<T> acc(nblk > 1 || planar ? runs.max_pixels() * kt.tiles * NR : 0);
    Scratch<T> unit_w(weights_outer ? kt.tiles * tile_size : 0), lanes_last(weights_outer ? Cred * view.rs * NR : 0);
    int64_t unit_gk = -1;  // the tiles in unit_w
    // Planar 1x1 input: a run's copy serves all its tiles (tiles fastest).
    std::optional<InterleavedRun<T>> inter;
    if (interleave) inter.emplace(kt.mr, Cred, runs.max_pixels());
    int64_t inter_key = -1;  // the (run, group) in inter
    std::optional<PaddedBand<T>> band;
    if (source.x.defined()) band.emplace(source, runs, grid, tap_rows);
    const int64_t no_tap = 0;
    Transpose<T> st;
    st.in = acc.data();
    st.cols = grid.cols;
    st.out_row = grid.out_row;
    st.out_lane = grid.out_chan;
    for (int64_t begin, end; claim(begin, end);)
      for (int64_t u = begin; u < end; ++u) {
        const int64_t gk = weights_outer ? u / runs.count : u % GK, g = gk / KT, kb = gk % KT * kt.tiles;
        const PixelRun run = runs[weights_outer ? u % runs.count : u / GK];
        a.pix_in = run.pix_in;
        a.pix_out = run.pix_out;
        a.npix = run.npix;
        a.out = grid.out + run.out + (g * grid.Kout + kb * NR) * grid.out_chan;
        a.tiles = std::min<int64_t>(kt.tiles, KB - kb);
        a.nr_valid = std::min(a.tiles * NR, grid.Kout - kb * NR);
        a.init = grid.bias ? grid.bias + g * Kpad + kb * NR : nullptr;
        const T* tiles_w = packed.defined() ? packed.const_data_ptr<T>() + (g * KB + kb) * tile_size : unit_w.data();
        for (int64_t t = 0; weights_outer && gk != unit_gk && t < a.tiles; ++t)
          pack_wide_tile(grid.Kout, Cred, view, g * KB + kb + t, lanes_last.data(), unit_w.data() + t * tile_size);
        unit_gk = gk;
        const T* in = band ? band->input(u / GK, g, G) : grid.in + run.in + g * Cred * grid.in_chan;
        int64_t in_chan = band ? band->in_chan : grid.in_chan;
        if (inter) {
          const int64_t r = u / GK, key = r * G + g;
          if (key != inter_key) {  // the next run is prefetched where it has the same offsets
            const bool next = !runs.flat && r + 1 < runs.count && runs[r + 1].npix == run.npix;
            const int64_t shift = grid.taps[0] + g * Cred * grid.in_chan;
            inter->fill(in + grid.taps[0], in_chan, run.pix_in, run.npix, next ? grid.in + runs[r + 1].in + shift : nullptr);
            inter_key = key;
          }
          in = inter->buf.data();
          in_chan = kt.mr;
          a.pix_in = inter->pix.data();
          a.tap_off = &no_tap;
        }
        a.in_chan = in_chan;
        for (int64_t blk = 0; blk < nblk; ++blk) {
          const int64_t c0 = blk * Cb;
          a.C = std::min(Cb, Cred - c0);
          a.in = in + c0 * in_chan;
          a.w = tiles_w + c0 * ntaps * NR;
          a.acc_in = blk > 0 ? acc.data() : nullptr;
          a.acc_out = blk + 1 < nblk || planar ? acc.data() : nullptr;
          kt.wide_tile(a);
        }
        if (planar) {
          st.in_item = a.tiles * NR;
          st.n = a.npix;
          st.m = a.nr_valid;
          st.out = a.out;
          kt.transpose(st);
        }
      }
  });
}

template <typename T>
void forward_wide(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias, const ConvShape& s,
                  at::Tensor& y) {
  const int64_t NR = kern<T>().nr, G = s.groups, Cg = s.C_per_group(), Kg = s.K_per_group(), RS = s.R * s.S;
  // Planar input with padding: run_wide reads it through its border (see
  // PaddedSource), unless the weights outweigh it: run_wide then takes the
  // output tiles outermost and reads the whole input once per pair of tiles,
  // which a channels-last copy serves better (each pixel's channels one
  // stretch; 8 x 256 -> 512 3x3 stride 2 at 14 x 14, 2-vCPU Xeon: forward
  // 1.09 -> 0.99 of torch's time). Other inputs are read as they are, or
  // copied with the border.
  const int64_t Hp = s.H + 2 * s.pad_h, Wp = s.W + 2 * s.pad_w;
  const bool planar = input.is_contiguous() && RS > 1;
  const bool heavy = round_up(Kg, NR) * G * Cg * RS > s.N * s.C * Hp * Wp;
  const bool through_border = planar && !heavy && (s.pad_h > 0 || s.pad_w > 0);
  const at::Tensor xb = through_border ? at::Tensor()
                        : planar && heavy ? channels_last_padded<T>(input, 1, s.C, s.pad_h, s.pad_w, Hp, Wp).permute({0, 3, 1, 2})
                                          : padded_input<T>(input, s.pad_h, s.pad_w);
  const int64_t xh = through_border ? Wp : xb.stride(2), xw = through_border ? 1 : xb.stride(3);
  const at::Tensor wc = weight.contiguous();
  WeightView<T> view{wc.const_data_ptr<T>(), Kg * Cg * RS, Cg * RS, RS, RS, {}};
  for (int64_t t = 0; t < RS; ++t) view.tap.push_back(t);
  std::vector<T> bpack;
  if (bias.defined()) {
    const int64_t Kpad = round_up(Kg, NR);
    bpack.assign(G * Kpad, T(0));
    const T* bsrc = bias.const_data_ptr<T>();
    for (int64_t g = 0; g < G; ++g)
      for (int64_t k = 0; k < Kg; ++k) bpack[g * Kpad + k] = bsrc[g * Kg + k];
  }
  WideGrid<T> grid;
  if (through_border) {  // offsets into the padded tensor that run_wide copies from
    grid.source = {input, s.pad_h, s.pad_w, s.C, s.H, s.W};
    grid.in = nullptr;
    grid.in_n = s.C * Hp * Wp;
    grid.in_chan = Hp * Wp;
  } else {
    grid.in = xb.const_data_ptr<T>();
    grid.in_n = xb.stride(0);
    grid.in_chan = xb.stride(1);
  }
  grid.in_row = s.stride_h * xh;
  grid.in_col = s.stride_w * xw;
  for (int64_t r = 0; r < s.R; ++r)
    for (int64_t t = 0; t < s.S; ++t) grid.taps.push_back(r * s.dil_h * xh + t * s.dil_w * xw);
  grid.out = y.mutable_data_ptr<T>();
  grid.out_n = y.stride(0);
  grid.out_chan = y.stride(1);
  grid.out_row = y.stride(2);
  grid.out_col = y.stride(3);
  grid.N = s.N;
  grid.rows = s.P;
  grid.cols = s.Q;
  grid.groups = G;
  grid.Cred = Cg;
  grid.Kout = Kg;
  grid.bias = bias.defined() ? bpack.data() : nullptr;
  run_wide(grid, view);
}

// One set of output rows for run_plane_rows: Pout rows (image n, channel k
// at out + (n * Kout + k) * out_k, rows out_row apart) with weights
// w[k][c][R][S] of a grouped convolution (Cin / G reduction channels and
// Kout / G outputs per group). Output row p reads layout rows
// p * row_step + row_origin + r * dh; taps that would only read zero rows of
// the layout are skipped.
template <typename T>
struct PlaneRowsPass {
  std::vector<T> w;  // [g][kblock][r, c, s][kPlaneKB], zero past the group's channels
  std::vector<int64_t> off, r_lo, r_hi;
  const T* bias;
  T* out;
  int64_t Pout, out_row, row_step, row_origin, CS, reach;  // reach: layout rows an output row spans

  // weight(g, k, c, r, t): the weight from reduction channel c to output k of group g at tap (r, t).
  template <typename Weight>
  PlaneRowsPass(const PlaneLayout& lay, int64_t Cred, int64_t Kout, int64_t G, const Weight& weight,
                const T* bias_, T* out_, int64_t Pout_, int64_t out_row_, int64_t R, int64_t S, int64_t row_step_,
                int64_t dh, int64_t dw, int64_t row_origin_, bool skip_zero_rows)
      : bias(bias_), out(out_), Pout(Pout_), out_row(out_row_), row_step(row_step_), row_origin(row_origin_),
        CS(Cred * S), reach((R - 1) * dh + 1) {
    const int64_t Kgrp = Kout / G, nred = R * CS, kblocks = ceil_div(Kgrp, kPlaneKB);
    // Reduction in (r, c, s) order, so the taps of a range of kernel rows are
    // a contiguous slice. (Plain loops rather than tensor ops: tiny
    // convolutions are all overhead.)
    w.assign(G * kblocks * nred * kPlaneKB, T(0));
    for (int64_t g = 0; g < G; ++g)
      for (int64_t k = 0; k < Kgrp; ++k)
        for (int64_t c = 0; c < Cred; ++c)
          for (int64_t r = 0; r < R; ++r)
            for (int64_t t = 0; t < S; ++t)
              w[((g * kblocks + k / kPlaneKB) * nred + (r * Cred + c) * S + t) * kPlaneKB + k % kPlaneKB] =
                  weight(g, k, c, r, t);
    off.resize(nred);
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < Cred; ++c)
        for (int64_t t = 0; t < S; ++t)
          off[(r * Cred + c) * S + t] = c * lay.plane() + r * dh * lay.width +
                                        (t * dw % lay.phases) * lay.rows * lay.width + t * dw / lay.phases;
    // Kernel rows whose input row holds data, per output row: [r_lo, r_hi).
    // Skipping the others is exact only when no weight is Inf or NaN (0 * Inf
    // must reach the sum, as in torch).
    r_lo.assign(Pout, 0);
    r_hi.assign(Pout, R);
    for (int64_t p = 0; skip_zero_rows && p < Pout; ++p) {
      const int64_t base = p * row_step + row_origin;
      r_lo[p] = std::min(R, std::max<int64_t>(0, ceil_div(std::max<int64_t>(0, lay.data_lo() - base), dh)));
      r_hi[p] = std::max(r_lo[p], std::min(R, floor_div(lay.data_hi() - 1 - base, dh) + 1));
    }
  }
};

// Plane passes over the planes of `src` (N, Cin, H, W) placed in `lay`
// (lay.data_rows must be H): Qout-wide output rows, output planes out_k apart.
// A unit (image, group) packs its planes into a small buffer and runs every
// pass from there: the source is read once, no full-size copy. run() takes
// the units in parallel; other passes (grad_weight) may run units themselves.
template <typename T>
struct PlaneRows {
  at::Tensor src;
  PlaneLayout lay;
  int64_t col_origin = 0, Kout = 0, G = 1, Qout = 0, out_k = 0;
  std::vector<PlaneRowsPass<T>> passes;

  int64_t Cred() const { return src.size(1) / G; }
  // A unit's buffer: zero before the first unit, then every unit packs its
  // data into the same slots.
  int64_t buffer_size() const { return Cred() * lay.plane(); }

  // Output rows [Pout * part / parts, Pout * (part + 1) / parts) of every pass.
  void unit(int64_t n, int64_t g, T* buf, int64_t part = 0, int64_t parts = 1) const {
    const KernelsT<T>& kt = kern<T>();
    const int64_t Cin = src.size(1), H = src.size(2), W = src.size(3), Cr = Cred();
    const int64_t Kgrp = Kout / G, kblocks = ceil_div(Kgrp, kPlaneKB);
    const T* source = src.const_data_ptr<T>();
    // The source rows this part's output rows read.
    int64_t h_lo = 0, h_hi = H;
    if (parts > 1) {
      int64_t lo = lay.rows, hi = 0;
      for (const auto& pass : passes) {
        const int64_t pa = pass.Pout * part / parts, pb = pass.Pout * (part + 1) / parts;
        if (pa >= pb) continue;
        lo = std::min(lo, pa * pass.row_step + pass.row_origin);
        hi = std::max(hi, (pb - 1) * pass.row_step + pass.row_origin + pass.reach);
      }
      h_lo = std::max<int64_t>(0, ceil_div(lo - lay.row0, lay.row_step));
      h_hi = std::min(H, std::max(h_lo, ceil_div(hi - lay.row0, lay.row_step)));
    }
    for (int64_t c = 0; c < Cr; ++c)
      pack_plane(source + (n * Cin + g * Cr + c) * H * W, H, W, lay, buf + c * lay.plane(), true, h_lo, h_hi);
    PlaneRow<T> a;
    a.out_k = out_k;
    a.Q = Qout;
    for (const auto& pass : passes) {
      const int64_t nred = pass.off.size(), CS = pass.CS;
      const T* in = buf + col_origin + pass.row_origin * lay.width;
      a.in_row_step = pass.row_step * lay.width;
      a.out_row = pass.out_row;
      // Bands of output rows whose input fits in L1 take every output-channel
      // block in turn, so all blocks read the band from L1 (7x7/2 and 3x3/2
      // RGB stems: 1.15-1.6x over block after block across all rows).
      const int64_t p_begin = pass.Pout * part / parts, p_end = pass.Pout * (part + 1) / parts;
      const int64_t band_input_rows = (32 << 10) / int64_t(sizeof(T) * Cr * lay.phases * lay.width);
      const int64_t band_rows = std::max<int64_t>(1, (band_input_rows - pass.reach) / pass.row_step + 1);
      for (int64_t b0 = p_begin; b0 < p_end; b0 += band_rows) {
        const int64_t b1 = std::min(p_end, b0 + band_rows);
        for (int64_t kbi = 0; kbi < kblocks; ++kbi) {
          const int64_t k0 = g * Kgrp + kbi * kPlaneKB;
          a.kb = std::min<int64_t>(kPlaneKB, Kgrp - kbi * kPlaneKB);
          a.bias = pass.bias ? pass.bias + k0 : nullptr;
          const T* wblock = pass.w.data() + (g * kblocks + kbi) * nred * kPlaneKB;
          // Runs of rows with the same tap range share one call.
          for (int64_t p = b0, p1; p < b1; p = p1) {
            p1 = p + 1;
            while (p1 < b1 && pass.r_lo[p1] == pass.r_lo[p] && pass.r_hi[p1] == pass.r_hi[p]) ++p1;
            a.rows = p1 - p;
            a.in_off = pass.off.data() + pass.r_lo[p] * CS;
            a.n = (pass.r_hi[p] - pass.r_lo[p]) * CS;
            a.w = wblock + pass.r_lo[p] * CS * kPlaneKB;
            a.in = in + p * pass.row_step * lay.width;
            a.out = pass.out + (n * Kout + k0) * out_k + p * pass.out_row;
            kt.plane_row(a);
          }
        }
      }
    }
  }

  void run() const {
    int64_t unit_work = 0, rows = 0;
    for (const auto& pass : passes) {
      unit_work += Kout / G * pass.Pout * Qout * int64_t(pass.off.size());
      rows = std::max(rows, pass.Pout);
    }
    // Fewer units than threads (batch 1): each unit's rows are split into
    // parts, each of which packs the rows it reads into a buffer of its own
    // thread -- while those buffers stay small. (Every output is computed the
    // same way whatever the split.)
    const int64_t units = src.size(0) * G, threads = at::get_num_threads();
    const bool small = buffer_size() * int64_t(sizeof(T)) <= (16 << 20);
    const int64_t parts = units >= 2 * threads || !small ? 1 : std::max<int64_t>(1, std::min(rows, ceil_div(4 * threads, units)));
    parallel_for_shared(units * parts, grain_for(unit_work / parts), [&](const auto& claim) {
      WorkBuffer<T> buf(buffer_size());
      for (int64_t begin, end; claim(begin, end);)
        for (int64_t u = begin; u < end; ++u) unit(u / parts / G, u / parts % G, buf.data(), u % parts, parts);
    });
  }
};

template <typename T>
void forward_plane(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias, const ConvShape& s,
                   at::Tensor& y) {
  PlaneRows<T> job;
  job.src = input.contiguous();
  job.lay = input_plane_layout<T>(s, round_up(s.Q, kern<T>().lanes));
  job.lay.data_rows = s.H;
  job.Kout = s.K;
  job.G = s.groups;
  job.Qout = s.Q;
  job.out_k = s.P * s.Q;
  if (!y.is_contiguous()) y = empty_pooled({s.N, s.K, s.P, s.Q}, input.options());
  const at::Tensor wc = weight.contiguous();
  const T* wp = wc.const_data_ptr<T>();
  const int64_t Cg = s.C_per_group(), Kg = s.K_per_group();
  const auto w_at = [&](int64_t g, int64_t k, int64_t c, int64_t r, int64_t t) {
    return wp[(((g * Kg + k) * Cg + c) * s.R + r) * s.S + t];
  };
  job.passes.emplace_back(job.lay, Cg, s.K, s.groups, w_at,
                          bias.defined() ? bias.const_data_ptr<T>() : nullptr, y.mutable_data_ptr<T>(), s.P, s.Q, s.R,
                          s.S, s.stride_h, s.dil_h, s.dil_w, 0, all_finite<T>(weight));
  job.run();
}

// A 1 x 1 layer with stride reads only every stride-th pixel: it is the
// stride-1 layer on those pixels, copied together so the kernels read them
// densely. (It paid from 128 channels on: below, the strided reads stay in cache.)
// The P x Q pixels of t (N, C, H, W) that such a layer reads, as a strided view.
at::Tensor read_pixels(const at::Tensor& t, const ConvShape& s) {
  return t.slice(2, 0, s.H, s.stride_h).slice(3, 0, s.W, s.stride_w).narrow(2, 0, s.P).narrow(3, 0, s.Q);
}

// NCHW inputs are read row by row: every stride_w-th value of each read row
// (a deinterleave for stride 2) into dense NCHW planes, which the wide
// kernels read as any NCHW input. (2-core Zen 5, float32, 1x1/2 256 -> 512
// channels at 28 x 28: forward 1.05x, forward + backward 1.05x over a
// channels-last copy.) Other layouts take that copy.
template <typename T>
at::Tensor subsampled(const at::Tensor& input, const ConvShape& s) {
  if (!input.is_contiguous()) {
    at::Tensor dense = empty_pooled({s.N, s.C, s.P, s.Q}, input.options().memory_format(at::MemoryFormat::ChannelsLast));
    return dense.copy_(read_pixels(input, s));
  }
  at::Tensor dense = empty_pooled({s.N, s.C, s.P, s.Q}, input.options());
  const T* x = input.const_data_ptr<T>();
  T* d = dense.mutable_data_ptr<T>();
  at::parallel_for(0, s.N * s.C, grain_for(s.P * s.W), [&](int64_t begin, int64_t end) {
    WorkBuffer<T> odd(s.W);  // the columns a stride-2 row drops
    for (int64_t plane = begin; plane < end; ++plane)
      for (int64_t p = 0; p < s.P; ++p) {
        const T* row = x + (plane * s.H + p * s.stride_h) * s.W;
        T* out = d + (plane * s.P + p) * s.Q;
        if (s.stride_w == 2) kern<T>().deinterleave(row, std::min(s.W, 2 * s.Q), out, odd.data());
        else for (int64_t q = 0; q < s.Q; ++q) out[q] = row[q * s.stride_w];
      }
  });
  return dense;
}

// The inverse for grad_input: a dense gradient spread over the pixels the
// layer reads, zeros elsewhere, in the input's layout.
template <typename T>
at::Tensor spread_subsampled(const at::Tensor& dense, const at::Tensor& input, const ConvShape& s) {
  if (!dense.is_contiguous() || input.suggest_memory_format() != at::MemoryFormat::Contiguous) {
    at::Tensor gx = zeros_pooled(input.sizes(), input.options().memory_format(input.suggest_memory_format()));
    read_pixels(gx, s).copy_(dense);
    return gx;
  }
  at::Tensor gx = empty_pooled(input.sizes(), input.options());
  const T* d = dense.const_data_ptr<T>();
  T* g = gx.mutable_data_ptr<T>();
  at::parallel_for(0, s.N * s.C, grain_for(s.H * s.W), [&](int64_t begin, int64_t end) {
    WorkBuffer<T> zeros(s.Q);  // the columns between read pixels
    for (int64_t plane = begin; plane < end; ++plane) {
      T* out = g + plane * s.H * s.W;
      std::fill(out, out + s.H * s.W, T(0));
      for (int64_t p = 0; p < s.P; ++p) {
        const T* in = d + (plane * s.P + p) * s.Q;
        T* row = out + p * s.stride_h * s.W;
        if (s.stride_w == 2) kern<T>().interleave(in, zeros.data(), s.W, row);
        else for (int64_t q = 0; q < s.Q; ++q) row[q * s.stride_w] = in[q];
      }
    }
  });
  return gx;
}

// Layers with few input channels per group (RGB stems): the wide tiles
// reduce over only that many values per tap, and the plane kernels ran
// faster (2-core Zen 3, float32; 7x7/2 and 3x3/2 stems, 3x3 and 5x5 on 3 or
// 4 channels): forward 1.05-2.1x, grad_weight 1.0-1.8x from 4 images on
// (0.55-0.7x at batch 1, where the wide pass splits pixels finer).
// (Planes of a unit past 16 MiB would take a buffer that size per thread.)
// With 512-bit wide tiles (2-core Zen 5) the wide kernels won the larger
// kernels against 256-bit plane kernels (7x7/2 stem forward 1.34-1.49x,
// 5x5/2 1.17x, 4x4/4 1.4x). The plane kernels now take 512-bit vectors too
// where rows fill them, and win those kernels' forward back where rows hold
// two vectors or more and the stride is at most 2 (2-vCPU Xeon: 7x7/2 stem
// 1.08 -> 0.99 ms at batch 1, 7.96 -> 6.85 at batch 8; 5x5 3 -> 32 at 32x32
// 1.86 -> 1.69), not their grad_weight (the batch-8 stem 1.25x slower) nor
// patches (4x4/4 1.04x, 16x16/16 2.1x slower: rows of 56 and 14 pixels).
bool few_input_channels(const ConvShape& s, bool grad_weight) {
  if (wide_vectors_wider() && s.R * s.S > 9 && (grad_weight || s.stride_w > 2 || s.Q < 32)) return false;
  const int64_t unit_bytes = s.C_per_group() * (s.H + 2 * s.pad_h) * (s.W + 2 * s.pad_w) * int64_t(sizeof(double));
  return s.C_per_group() <= 4 && unit_bytes <= (16 << 20) && (!grad_weight || s.N >= 4);
}

bool reads_subsampled(const ConvShape& s) {
  return s.R * s.S == 1 && s.pad_h == 0 && s.pad_w == 0 && s.stride_h * s.stride_w > 1 && s.C_per_group() >= 128;
}

ConvShape unit_stride(ConvShape s) {
  s.H = s.P;
  s.W = s.Q;
  s.stride_h = s.stride_w = 1;
  return s;
}

at::Tensor forward(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias_opt,
                   const ConvShape& s, at::MemoryFormat format) {
  at::Tensor y = empty_pooled({s.N, s.K, s.P, s.Q}, input.options().memory_format(format));
  if (y.numel() == 0) return y;
  const at::Tensor bias = bias_opt.has_value() && bias_opt->defined() ? bias_opt->contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "convkit_conv2d_cpu", [&] {
    // (Winograd checks its operands' finiteness itself, on the way.)
    if (winograd_suits(s, WinogradPass::forward) && winograd_forward(input, weight, bias, s, y)) return;
    if (batch_lanes_suit(s, LanePass::forward)) {
      if (!y.is_contiguous()) y = empty_pooled({s.N, s.K, s.P, s.Q}, input.options());
      batch_lanes_forward(input, weight, bias, s, y);
    } else if (use_wide<scalar_t>(s.K_per_group()) && reads_subsampled(s))
      forward_wide<scalar_t>(subsampled<scalar_t>(input, s), weight, bias, unit_stride(s), y);
    else if (use_wide<scalar_t>(s.K_per_group()) && !few_input_channels(s, false))
      forward_wide<scalar_t>(input, weight, bias, s, y);
    else if (channel_lanes_suit(s, LanePass::forward))
      channel_lanes_forward(input, weight, bias, s, y);
    else
      forward_plane<scalar_t>(input, weight, bias, s, y);
  });
  return y;
}

// ---------------------------------------------------------------------------
// grad_input

// Rows of planar (N, C, H, W) `out` from column phases: column w of a row is
// column (w + pad) / stride - lo_b of phases[b], b = (w + pad) % stride,
// where lo_b is the phase's first column: column w = 0 is column 0 of its phase.
template <typename T>
void interleave_column_phases(const std::vector<at::Tensor>& phases, int64_t pad, at::Tensor& out) {
  const int64_t sw = phases.size(), rows = out.size(0) * out.size(1) * out.size(2), W = out.size(3);
  T* dst = out.mutable_data_ptr<T>();
  std::vector<const T*> src(sw);
  std::vector<int64_t> width(sw), first(sw);
  for (int64_t b = 0; b < sw; ++b) {
    src[b] = phases[b].const_data_ptr<T>();
    width[b] = phases[b].size(3);
    first[b] = (b - pad % sw + sw) % sw;  // the first column of out in phase b
  }
  at::parallel_for(0, rows, grain_for(W), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      T* row = dst + r * W;
      if (sw == 2) {
        kern<T>().interleave(src[pad % 2] + r * width[pad % 2], src[1 - pad % 2] + r * width[1 - pad % 2], W, row);
        continue;
      }
      for (int64_t b = 0; b < sw; ++b)
        for (int64_t w = first[b], j = 0; w < W; w += sw, ++j) row[w] = src[b][r * width[b] + j];
    }
  });
}

// Wide: grad_input is split into stride phases (a, b); in each phase every
// input pixel gathers the same taps from a contiguous run of grad_output, so
// the forward tile kernel applies with transposed, per-phase packed weights.
template <typename T>
void backward_input_wide(const at::Tensor& gy, const at::Tensor& weight, const ConvShape& s, at::MemoryFormat format,
                         at::Tensor& gx) {
  const int64_t G = s.groups, Cg = s.C_per_group(), Kg = s.K_per_group();
  const int64_t sh = s.stride_h, sw = s.stride_w;

  // Per phase and axis: the valid taps, their offsets into grad_output, and the
  // range of phase positions i whose padded coordinate a + stride*i is real input.
  struct Axis {
    std::vector<std::vector<int64_t>> taps, offs;  // [phase]
    std::vector<int64_t> lo, hi;                   // [phase] inclusive range of i
    int64_t border_lo = 0, border_hi = 0;          // grad_output rows needed outside [0, P)
  };
  auto make_axis = [](int64_t stride, int64_t pad, int64_t dil, int64_t k, int64_t in, int64_t out) {
    Axis ax;
    ax.taps.resize(stride);
    ax.offs.resize(stride);
    ax.lo.resize(stride);
    ax.hi.resize(stride);
    for (int64_t a = 0; a < stride; ++a) {
      ax.lo[a] = ceil_div(std::max<int64_t>(pad - a, 0), stride);
      ax.hi[a] = floor_div(pad + in - 1 - a, stride);
      for (int64_t r = 0; r < k; ++r) {
        const int64_t d = a - r * dil;
        if (((d % stride) + stride) % stride != 0) continue;
        const int64_t off = floor_div(d, stride);
        ax.taps[a].push_back(r);
        ax.offs[a].push_back(off);
        if (ax.lo[a] <= ax.hi[a]) {
          ax.border_lo = std::max(ax.border_lo, -(ax.lo[a] + off));
          ax.border_hi = std::max(ax.border_hi, ax.hi[a] + off - (out - 1));
        }
      }
    }
    return ax;
  };
  const Axis ah = make_axis(sh, s.pad_h, s.dil_h, s.R, s.H, s.P);
  const Axis aw = make_axis(sw, s.pad_w, s.dil_w, s.S, s.W, s.Q);
  const int64_t Pb = s.P + ah.border_lo + ah.border_hi, Qb = s.Q + aw.border_lo + aw.border_hi;

  // grad_output with a zero border, in its own layout: (N, K, Pb, Qb); as
  // it is where no border is needed (the kernel reads any strides). With
  // stride, channels-last: each phase has only a few of the taps, and
  // reading a few values from each of K planes a call left the kernels
  // waiting on memory (stride 2 as above: 13.7 -> 11.7 ms).
  at::Tensor gyb;
  if (sh * sw > 1 && gy.suggest_memory_format() != at::MemoryFormat::ChannelsLast) {
    gyb = channels_last_padded<T>(gy, 1, s.K, ah.border_lo, aw.border_lo, Pb, Qb).permute({0, 3, 1, 2});
  } else if (Pb == s.P && Qb == s.Q) {
    gyb = gy;
  } else if (gy.suggest_memory_format() == at::MemoryFormat::ChannelsLast) {
    gyb = zeros_pooled({s.N, s.K, Pb, Qb}, gy.options().memory_format(at::MemoryFormat::ChannelsLast));
    gyb.narrow(2, ah.border_lo, s.P).narrow(3, aw.border_lo, s.Q).copy_(gy);
  } else {
    PlaneLayout glay;
    glay.rows = Pb;
    glay.width = Qb;
    glay.row0 = ah.border_lo;
    glay.col0 = aw.border_lo;
    gyb = pack_planes<T>(gy, glay).view({s.N, s.K, Pb, Qb});
  }
  const int64_t bn = gyb.stride(0), bk = gyb.stride(1), bp = gyb.stride(2), bq = gyb.stride(3);

  gx = empty_pooled({s.N, s.C, s.H, s.W}, gy.options().memory_format(format));
  const int64_t xw = gx.stride(3);
  // Planar grad_input with a column stride: the column phases' pixels
  // alternate along every row, and phases writing in place would each fetch
  // and write back every line (stride 2: four passes over all of grad_input).
  // Column phase b writes dense planes of its own, (N, C, H, columns of b),
  // and one pass interleaves them. (8 x 64 -> 128 3x3 stride 2 at 56 x 56,
  // one thread of a Xeon: grad_input 15.9 -> 13.7 ms.)
  const bool column_phases = sw > 1 && xw == 1;
  std::vector<at::Tensor> col_planes(sw);
  for (int64_t b = 0; column_phases && b < sw; ++b)
    col_planes[b] = empty_pooled({s.N, s.C, s.H, std::max<int64_t>(0, aw.hi[b] - aw.lo[b] + 1)}, gy.options());
  const at::Tensor wc = weight.contiguous();
  const T* w = wc.const_data_ptr<T>();
  // Phase (a, b) holds grad_input pixels (a + sh*i - pad_h, b + sw*j - pad_w)
  // for i, j in the axes' ranges: a grid of its own, with its own taps and
  // transposed weights (reduction over grad_output channels k, outputs c).
  for (int64_t a = 0; a < sh; ++a)
    for (int64_t b = 0; b < sw; ++b) {
      if (ah.lo[a] > ah.hi[a] || aw.lo[b] > aw.hi[b]) continue;
      WideGrid<T> grid;
      // Transposed weights: outputs c, reduction over k; taps are (r, s) offsets inside a weight's R x S.
      WeightView<T> view{w, Kg * Cg * s.R * s.S, s.R * s.S, Cg * s.R * s.S, s.R * s.S, {}};
      for (size_t i = 0; i < ah.taps[a].size(); ++i)
        for (size_t j = 0; j < aw.taps[b].size(); ++j) {
          grid.taps.push_back(ah.offs[a][i] * bp + aw.offs[b][j] * bq);
          view.tap.push_back(ah.taps[a][i] * s.S + aw.taps[b][j]);
        }
      grid.in = gyb.const_data_ptr<T>() + (ah.border_lo + ah.lo[a]) * bp + (aw.border_lo + aw.lo[b]) * bq;
      grid.in_n = bn;
      grid.in_chan = bk;
      grid.in_row = bp;
      grid.in_col = bq;
      const at::Tensor& out = column_phases ? col_planes[b] : gx;
      const int64_t oh = out.stride(2), first_col = column_phases ? 0 : b + sw * aw.lo[b] - s.pad_w;
      grid.out = out.mutable_data_ptr<T>() + (a + sh * ah.lo[a] - s.pad_h) * oh + first_col * out.stride(3);
      grid.out_n = out.stride(0);
      grid.out_chan = out.stride(1);
      grid.out_row = sh * oh;
      grid.out_col = column_phases ? 1 : sw * xw;
      grid.N = s.N;
      grid.rows = ah.hi[a] - ah.lo[a] + 1;
      grid.cols = aw.hi[b] - aw.lo[b] + 1;
      grid.groups = G;
      grid.Cred = Kg;
      grid.Kout = Cg;
      grid.bias = nullptr;
      run_wide(grid, view);
    }
  if (column_phases) interleave_column_phases<T>(col_planes, s.pad_w, gx);
}

// Plane: grad_input is the stride-1 convolution of the padded grad_output,
// zero-inserted between columns, with the transposed, flipped kernel. Rows
// split into stride phases instead: grad_input row h = a + sh * i reads only
// the flipped taps r with (h + pad_h - (R-1) * dh + r * dh) divisible by sh,
// whose grad_output rows are consecutive (dilation dh / gcd(sh, dh)), so each
// phase convolves the compact rows with its own taps. Allocates gx and
// returns the job that fills it (run by itself or by the plane grad_weight pass).
template <typename T>
PlaneRows<T> backward_input_plane(const at::Tensor& gy, const at::Tensor& weight, const ConvShape& s, at::Tensor& gx) {
  const int64_t G = s.groups, Cg = s.C_per_group(), Kg = s.K_per_group(), sh = s.stride_h, dh = s.dil_h;
  const int64_t c0 = s.pad_h - (s.R - 1) * dh;  // row h reads zero-inserted row h + c0 + r * dh
  const int64_t step = sh / std::gcd(sh, dh), row_dil = dh / std::gcd(sh, dh);
  // Per phase: first tap, tap count, and the grad_output row its row i = 0 reads first.
  std::vector<int64_t> first(sh), count(sh, 0), base(sh, 0);
  int64_t top = 0;  // zero rows above grad_output so every phase reads inside the layout
  for (int64_t a = 0; a < std::min(sh, s.H); ++a) {
    first[a] = 0;
    while (first[a] < std::min(step, s.R) && ((a + c0 + first[a] * dh) % sh + sh) % sh != 0) ++first[a];
    if (first[a] >= std::min(step, s.R)) continue;
    count[a] = ceil_div(s.R - first[a], step);
    base[a] = floor_div(a + c0 + first[a] * dh, sh);
    top = std::max(top, -base[a]);
  }
  const int64_t bw = std::max<int64_t>(0, (s.S - 1) * s.dil_w - s.pad_w);
  const int64_t col_origin = s.pad_w - (s.S - 1) * s.dil_w + bw;  // >= 0
  PlaneRows<T> job;
  job.src = gy.contiguous();
  job.col_origin = col_origin;
  job.Kout = s.C;
  job.G = G;
  job.Qout = s.W;
  job.out_k = s.H * s.W;
  PlaneLayout& lay = job.lay;
  lay.rows = top + s.P;
  for (int64_t a = 0; a < std::min(sh, s.H); ++a)
    if (count[a]) lay.rows = std::max(lay.rows, top + base[a] + ceil_div(s.H - a, sh) + (count[a] - 1) * row_dil);
  lay.width = std::max(col_origin + round_up(s.W, kern<T>().lanes) + (s.S - 1) * s.dil_w,
                       bw + (s.Q - 1) * s.stride_w + 1);
  lay.row0 = top;
  lay.col0 = bw;
  lay.col_step = s.stride_w;
  lay.data_rows = s.P;
  gx = empty_pooled({s.N, s.C, s.H, s.W}, gy.options());
  const at::Tensor wc = weight.contiguous();
  const T* wp = wc.const_data_ptr<T>();
  for (int64_t a = 0; a < std::min(sh, s.H); ++a) {
    if (count[a] == 0) {  // no tap reaches these rows
      gx.slice(2, a, s.H, sh).zero_();
      continue;
    }
    // Output c (an input channel) of group g reduces over k (grad_output
    // channels) with the flipped taps of this phase: kernel row R-1-(first + j*step).
    const auto wt = [&, a](int64_t g, int64_t c, int64_t k, int64_t j, int64_t t) {
      return wp[(((g * Kg + k) * Cg + c) * s.R + s.R - 1 - (first[a] + j * step)) * s.S + s.S - 1 - t];
    };
    job.passes.emplace_back(lay, Kg, s.C, G, wt, nullptr, gx.mutable_data_ptr<T>() + a * s.W, ceil_div(s.H - a, sh),
                        sh * s.W, count[a], s.S, 1, row_dil, s.dil_w, top + base[a], true);
  }
  return job;
}

// grad_input by definition: every (output pixel, tap) pair scatters its one
// product into the input pixel it read. It never multiplies a weight by the
// zeros of padding or stride gaps, so Inf and NaN weights propagate exactly as
// in torch; the fast kernels above serve all finite weights.
template <typename T>
void backward_input_exact(const at::Tensor& gy_any, const at::Tensor& weight, const ConvShape& s, at::Tensor& gx) {
  const at::Tensor gyc = gy_any.contiguous(), wc = weight.contiguous();
  const T* gy = gyc.const_data_ptr<T>();
  const T* w = wc.const_data_ptr<T>();
  gx = zeros_pooled({s.N, s.C, s.H, s.W}, gy_any.options());
  T* out = gx.mutable_data_ptr<T>();
  const int64_t Cg = s.C_per_group(), Kg = s.K_per_group();
  at::parallel_for(0, s.N * s.C, grain_for(s.P * s.Q * Kg * s.R * s.S), [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; ++nc) {
      const int64_t n = nc / s.C, c = nc % s.C, g = c / Cg;
      T* plane = out + nc * s.H * s.W;
      for (int64_t k = g * Kg; k < (g + 1) * Kg; ++k) {
        const T* grad = gy + (n * s.K + k) * s.P * s.Q;
        const T* taps = w + (k * Cg + c - g * Cg) * s.R * s.S;
        for (int64_t r = 0; r < s.R; ++r)
          for (int64_t p = 0; p < s.P; ++p) {
            const int64_t h = p * s.stride_h + r * s.dil_h - s.pad_h;
            if (h < 0 || h >= s.H) continue;
            for (int64_t t = 0; t < s.S; ++t)
              for (int64_t q = 0; q < s.Q; ++q) {
                const int64_t x = q * s.stride_w + t * s.dil_w - s.pad_w;
                if (x >= 0 && x < s.W) plane[h * s.W + x] += taps[r * s.S + t] * grad[p * s.Q + q];
              }
          }
      }
    }
  });
}

// ---------------------------------------------------------------------------
// grad_weight

// Chunks of the reduction over (image, output row): fixed by the shape so the
// summation order never depends on the thread count.
int64_t reduction_chunks(int64_t rows, int64_t work) {
  return std::max<int64_t>(1, std::min<int64_t>({rows, 16, work / (1 << 18)}));
}

// Reduction chunks of the plane grad_weight pass (one or more images each).
int64_t plane_wgrad_chunks(const ConvShape& s) { return reduction_chunks(s.N, s.flops() / 2); }

// grad_weight for few output channels per group, as lane-wise dot products
// along output rows (planar data, no transposes). The reduction over images
// is cut into chunks fixed by the shape; a task takes one chunk, packs each
// image's planes into per-thread buffers, keeps vector partial sums for every
// weight, then sums lanes in order. Chunks are added in chunk order.
// out[i] = sum over chunks of partial[chunk * total + i], always in chunk
// order, so the result does not depend on how threads were scheduled.
template <typename T>
void sum_chunk_partials(const T* partial, int64_t chunks, int64_t total, T* out) {
  at::parallel_for(0, total, grain_for(chunks * 64), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      T v = partial[i];
      for (int64_t chunk = 1; chunk < chunks; ++chunk) v += partial[chunk * total + i];
      out[i] = v;
    }
  });
}

// plane_sums (if set) receives the sum of every grad_output plane, [n][k], as
// backward_bias would compute it; gx_job (if set) runs its grad_input unit
// for each (image, group) right after that unit's grad_weight. The planes pass
// through cache here anyway: a layer bound by memory (depthwise) reads
// grad_output once for all three gradients.
template <typename T>
void backward_weight(const at::Tensor& gy_any, const at::Tensor& input_any, const ConvShape& s, at::Tensor& gw,
                     T* plane_sums, const PlaneRows<T>* gx_job) {
  const KernelsT<T>& kt = kern<T>();
  const int64_t L = kt.lanes, G = s.groups, Cg = s.C_per_group(), Kg = s.K_per_group(), RS = s.R * s.S;
  const int64_t items = Cg * RS;
  const at::Tensor input = input_any.contiguous(), gy = gy_any.contiguous();
  PlaneLayout lay = input_plane_layout<T>(s, round_up(s.Q, L));
  lay.data_rows = s.H;
  // grad_output rows zero-padded to whole vectors. Rows that are whole
  // vectors already (and 32-byte aligned) are read where they are: copying
  // them would cost more loads and stores than the kernel's own.
  PlaneLayout glay;
  glay.rows = s.P;
  glay.width = round_up(s.Q, L);
  glay.data_rows = s.P;
  std::vector<int64_t> item_off(items);
  for (int64_t c = 0; c < Cg; ++c)
    for (int64_t r = 0; r < s.R; ++r)
      for (int64_t t = 0; t < s.S; ++t) {
        const int64_t col = t * s.dil_w;
        item_off[(c * s.R + r) * s.S + t] = c * lay.plane() + r * s.dil_h * lay.width +
                                             (col % lay.phases) * lay.rows * lay.width + col / lay.phases;
      }
  // Output channels per pass and the items the kernel pairs with them (see plane_wgrad).
  const int64_t kb_max = Kg >= 6 && Kg % 6 == 0 && Kg % 4 != 0 ? 6 : std::min<int64_t>(Kg, 4);

  const int64_t nch = plane_wgrad_chunks(s);
  at::Tensor part = empty_pooled({nch, s.K * items}, gy.options());
  const T* x = input.const_data_ptr<T>();
  const T* g = gy.const_data_ptr<T>();
  const bool gy_in_place = s.Q % L == 0 && reinterpret_cast<uintptr_t>(g) % 32 == 0;
  T* partial = part.mutable_data_ptr<T>();
  parallel_for_shared(nch, 1, [&](const auto& claim) {
    // The plane buffers are zeroed once: every image packs its data into the same slots.
    WorkBuffer<T> scratch(s.K * items * L), xbuf(Cg * lay.plane()), gbuf(gy_in_place ? 0 : Kg * glay.plane());
    WorkBuffer<T> gxbuf(gx_job ? gx_job->buffer_size() : 0);
    PlaneWgrad<T> a;
    a.x_row = s.stride_h * lay.width;
    a.gy_row = glay.width;
    a.gy_k = glay.plane();
    a.rows = s.P;
    a.qv = glay.width / L;
    a.acc_k = items;
    for (int64_t begin, end; claim(begin, end);)
      for (int64_t ch = begin; ch < end; ++ch) {
        std::fill(scratch.begin(), scratch.end(), T(0));
        for (int64_t n = s.N * ch / nch; n < s.N * (ch + 1) / nch; ++n)
          for (int64_t gi = 0; gi < G; ++gi) {
            for (int64_t c = 0; c < Cg; ++c)
              pack_plane(x + (n * s.C + gi * Cg + c) * s.H * s.W, s.H, s.W, lay, xbuf.data() + c * lay.plane(), true);
            const T* gy_planes = g + (n * s.K + gi * Kg) * s.P * s.Q;
            for (int64_t k = 0; k < Kg; ++k) {
              const T* plane = gy_planes + k * s.P * s.Q;
              if (!gy_in_place) pack_plane(plane, s.P, s.Q, glay, gbuf.data() + k * glay.plane(), true);
              if (plane_sums) plane_sums[n * s.K + gi * Kg + k] = kt.sum(plane, s.P * s.Q);
            }
            a.x = xbuf.data();
            for (int64_t k1 = 0; k1 < Kg; k1 += kb_max) {
              a.kb = std::min(kb_max, Kg - k1);
              const int64_t tb = kt.plane_wgrad_items[a.kb];
              a.gy = (gy_in_place ? gy_planes : gbuf.data()) + k1 * glay.plane();
              for (int64_t i0 = 0; i0 < items; i0 += tb) {
                a.item_off = item_off.data() + i0;
                a.nitem = std::min(tb, items - i0);
                a.acc = scratch.data() + ((gi * Kg + k1) * items + i0) * L;
                kt.plane_wgrad(a);
              }
            }
            if (gx_job) gx_job->unit(n, gi, gxbuf.data());
          }
        T* dst = partial + ch * s.K * items;
        for (int64_t i = 0; i < s.K * items; ++i) {
          const T* lanes = scratch.data() + i * L;
          T total = lanes[0];
          for (int64_t l = 1; l < L; ++l) total += lanes[l];
          dst[i] = total;
        }
      }
  });
  sum_chunk_partials(partial, nch, s.K * items, gw.mutable_data_ptr<T>());
}

// grad_weight by definition: each tap's products with the padded input, zero
// padding included (as torch computes it) and nothing past it, so Inf and NaN
// propagate as in torch; the kernels above, whose vector lanes may pair a
// value with a zero lane, serve all finite operands.
template <typename T>
void backward_weight_exact(const at::Tensor& gy_any, const at::Tensor& input, const ConvShape& s, at::Tensor& gw) {
  const at::Tensor gyc = gy_any.contiguous(), xc = input.contiguous();
  const T* gy = gyc.const_data_ptr<T>();
  const T* x = xc.const_data_ptr<T>();
  T* out = gw.mutable_data_ptr<T>();
  const int64_t Cg = s.C_per_group(), Kg = s.K_per_group();
  at::parallel_for(0, s.K * Cg, grain_for(s.N * s.P * s.Q * s.R * s.S), [&](int64_t begin, int64_t end) {
    for (int64_t kc = begin; kc < end; ++kc) {
      const int64_t k = kc / Cg, c = (k / Kg) * Cg + kc % Cg;
      for (int64_t r = 0; r < s.R; ++r)
        for (int64_t t = 0; t < s.S; ++t) {
          T total = 0;
          for (int64_t n = 0; n < s.N; ++n)
            for (int64_t p = 0; p < s.P; ++p) {
              const int64_t h = p * s.stride_h + r * s.dil_h - s.pad_h;
              for (int64_t q = 0; q < s.Q; ++q) {
                const int64_t w = q * s.stride_w + t * s.dil_w - s.pad_w;
                const bool inside = h >= 0 && h < s.H && w >= 0 && w < s.W;
                const T value = inside ? x[((n * s.C + c) * s.H + h) * s.W + w] : T(0);
                total += gy[((n * s.K + k) * s.P + p) * s.Q + q] * value;
              }
            }
          out[(kc * s.R + r) * s.S + t] = total;
        }
    }
  });
}

// What a wide grad_weight pass did besides grad_weight: grad_bias (when asked
// for, with planar grad_output), and whether it found every sum finite.
struct WideWgradDone {
  bool bias = false;
  bool finite = false;
};

// grad_weight for many output channels: register tiles of (channel, tap)
// items x output-channel lanes, accumulated over the pixels of one reduction
// chunk (input in its own layout, grad_output channels-last). Each task walks
// its rows in bands small enough to stay in L1.
template <typename T>
WideWgradDone backward_weight_wide(const at::Tensor& gy, const at::Tensor& input, const ConvShape& s, at::Tensor& gw,
                                   at::Tensor* gb) {
  const KernelsT<T>& kt = kern<T>();
  const int64_t NR = kt.nr, MR = kt.mr, G = s.groups, Cg = s.C_per_group(), Kg = s.K_per_group();
  const int64_t RS = s.R * s.S, items = Cg * RS;
  const int64_t Kpad = round_up(Kg, NR), KB = Kpad / NR;
  // The input as it is (plus padding): the kernel broadcasts scalars, so any layout and stride works.
  const at::Tensor xb = padded_input<T>(input, s.pad_h, s.pad_w);
  const int64_t xn = xb.stride(0), xc = xb.stride(1), xh = xb.stride(2), xw = xb.stride(3);
  // Planar grad_output is transposed a band at a time into a buffer of the
  // task (channels-last, the task's channels), where the kernels and the
  // grad_bias sums read it from L1; a whole channels-last copy would go out
  // to memory and back, and grad_bias would read grad_output once more
  // (7x7/2 RGB stem, batch 8: 25.7 MB each; 2-vCPU Xeon, forward + backward:
  // stem batch 1 1.01 -> 0.92 of torch's time, batch 8 0.54 -> 0.45, dilated
  // 3x3 0.94 -> 0.88, the rest unchanged). Other layouts take that copy.
  const bool banded = gy.is_contiguous();
  const at::Tensor gyb = banded ? gy : channels_last_padded<T>(gy, G, Kpad);
  std::vector<int64_t> item_off(items);
  for (int64_t c = 0; c < Cg; ++c)
    for (int64_t r = 0; r < s.R; ++r)
      for (int64_t t = 0; t < s.S; ++t) item_off[(c * s.R + r) * s.S + t] = c * xc + r * s.dil_h * xh + t * s.dil_w * xw;
  const int64_t rows = s.N * s.P;
  // Tasks are (reduction chunk, group, super-block of up to 4 output-channel
  // tiles). Chunks of at least ~256 pixels, and only as many as it takes to
  // make ~8 tasks: every chunk adds a full set of partial sums to reduce.
  const int64_t kbs = std::min<int64_t>(KB, 4), supers = ceil_div(KB, kbs);
  const int64_t nch = std::max<int64_t>(1, std::min<int64_t>({ceil_div(8, G * supers), rows, rows * s.Q / 256}));
  const int64_t band = std::max<int64_t>(1, 128 / s.Q);
  // Each task accumulates into its own slice, in tile order [item][kbs * NR
  // lanes], and with a banded grad_output, grad_bias's lanes after the items.
  const int64_t lanes = kbs * NR, bias_rows = banded && gb ? 1 : 0, slice = (items + bias_rows) * lanes;
  at::Tensor part = empty_pooled({nch * G * supers * slice}, gy.options());
  const T* x = xb.const_data_ptr<T>();
  const T* g = gyb.const_data_ptr<T>();
  T* partial = part.mutable_data_ptr<T>();
  parallel_for_shared(nch * G * supers, 1, [&](const auto& claim) {
    WorkBuffer<T> gband(banded ? band * s.Q * lanes : 0);  // zeroed: lanes past Kg stay zero
    WideWgrad<T> a;
    a.cols = s.Q;
    a.x_row = s.stride_h * xh;
    a.x_col = s.stride_w * xw;
    a.gy_row = banded ? s.Q * lanes : gyb.stride(1);
    a.gy_col = banded ? lanes : gyb.stride(2);
    a.acc_item = lanes;
    Transpose<T> tr;  // a grad_output row: channels (items) x pixels (lanes)
    tr.in_item = s.P * s.Q;
    tr.m = s.Q;
    tr.out_row = 0;
    tr.out_lane = lanes;
    for (int64_t begin, end; claim(begin, end);)
      for (int64_t task = begin; task < end; ++task) {
        const int64_t ch = task / (G * supers), gi = task / supers % G, kb0 = task % supers * kbs;
        const int64_t kb1 = std::min(KB, kb0 + kbs), k0 = gi * Kg + kb0 * NR, valid = std::min(lanes, Kg - kb0 * NR);
        T* acc = partial + task * slice;
        // The first band's calls store their sums and later ones add to
        // them; a super-block short of tiles has lanes no call writes, so it
        // starts from zeros instead.
        const bool full = kb1 - kb0 == kbs;
        if (!full) std::fill(acc, acc + slice, T(0));
        const int64_t row_begin = rows * ch / nch, row_end = rows * (ch + 1) / nch;
        for (int64_t row = row_begin; row < row_end;) {
          a.accumulate = !full || row > row_begin;
          const int64_t n = row / s.P, p = row % s.P;
          a.rows = std::min({band, row_end - row, s.P - p});
          a.x = x + n * xn + gi * Cg * xc + p * s.stride_h * xh;
          if (banded) {
            tr.n = tr.cols = valid;
            for (int64_t r = 0; r < a.rows; ++r) {
              tr.in = g + ((n * s.K + k0) * s.P + p + r) * s.Q;
              tr.out = gband.data() + r * s.Q * lanes;
              kt.transpose(tr);
            }
            if (bias_rows) {
              T* bias_acc = acc + items * lanes;
              if (!a.accumulate) std::fill(bias_acc, bias_acc + lanes, T(0));
              for (int64_t i = 0; i < a.rows * s.Q; ++i)
                for (int64_t l = 0; l < valid; ++l) bias_acc[l] += gband.data()[i * lanes + l];
            }
          }
          // One call's output-channel tiles at a time: their band of grad_output
          // (a cache line or two per pixel) stays in L1 while every item group reuses it;
          // the input band streams from L2 in order.
          for (int64_t kb = kb0; kb < kb1; kb += a.tiles) {
            a.tiles = std::min<int64_t>(kt.tiles, kb1 - kb);
            a.gy = banded ? gband.data() + (kb - kb0) * NR : g + n * gyb.stride(0) + p * a.gy_row + gi * Kpad + kb * NR;
            for (int64_t j = 0; j < items; j += MR) {
              a.item_off = item_off.data() + j;
              a.m = std::min(MR, items - j);
              a.acc = acc + j * kbs * NR + (kb - kb0) * NR;
              kt.wide_wgrad(a);
            }
          }
          row += a.rows;
        }
      }
  });
  // Chunks summed in chunk order into the first chunk's slices, then
  // transposed into grad_weight [k][item], in blocks of items; each block's
  // finiteness is checked on the way (lanes past the group's channels hold
  // sums of products with zeros, non-finite only if a product was).
  const int64_t stride = G * supers * slice, iblock = 256, nib = ceil_div(items, iblock);
  T* out = gw.mutable_data_ptr<T>();
  std::atomic<bool> finite{true};
  at::parallel_for(0, G * supers * nib, grain_for(nch * iblock * lanes), [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      const int64_t gs = u / nib, i0 = u % nib * iblock, len = std::min(iblock, items - i0);
      const int64_t gi = gs / supers, k0 = gs % supers * lanes;
      T* total = partial + gs * slice + i0 * lanes;
      for (int64_t ch = 1; ch < nch; ++ch) {
        const T* chunk = total + ch * stride;
        for (int64_t v = 0; v < len * lanes; ++v) total[v] += chunk[v];
      }
      if (!std::isfinite(kt.sum(total, len * lanes))) finite = false;
      Transpose<T> tr;
      tr.in = total;
      tr.in_item = lanes;
      tr.n = tr.cols = len;
      tr.m = std::min(lanes, Kg - k0);
      tr.out = out + (gi * Kg + k0) * items + i0;
      tr.out_row = 0;
      tr.out_lane = items;
      kt.transpose(tr);
    }
  });
  WideWgradDone done;
  done.finite = finite;
  if (!bias_rows) return done;
  done.bias = true;
  T* bias = gb->mutable_data_ptr<T>();
  for (int64_t gs = 0; gs < G * supers; ++gs) {
    const int64_t gi = gs / supers, k0 = gs % supers * lanes;
    for (int64_t l = 0; l < std::min(lanes, Kg - k0); ++l) {
      T total = 0;
      for (int64_t ch = 0; ch < nch; ++ch) total += partial[ch * stride + gs * slice + items * lanes + l];
      bias[gi * Kg + k0 + l] = total;
    }
  }
  return done;
}

// plane_sums: the grad_output plane sums [n][k] if a grad_weight pass made
// them, else empty (then computed here).
template <typename T>
void backward_bias(const at::Tensor& gy_any, const ConvShape& s, at::Tensor& gb, std::vector<T>& sums) {
  const KernelsT<T>& kt = kern<T>();
  T* dst = gb.mutable_data_ptr<T>();
  if (sums.empty()) {
    // Plane sums in memory order (one stream per thread), then per channel in image order.
    const at::Tensor gy = gy_any.contiguous();
    const T* g = gy.const_data_ptr<T>();
    const int64_t plane = s.P * s.Q;
    sums.resize(s.N * s.K);
    at::parallel_for(0, s.N * s.K, grain_for(plane), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) sums[i] = kt.sum(g + i * plane, plane);
    });
  }
  for (int64_t k = 0; k < s.K; ++k) {
    T total = 0;
    for (int64_t n = 0; n < s.N; ++n) total += sums[n * s.K + k];
    dst[k] = total;
  }
}

// ---------------------------------------------------------------------------
// Ops

// call() under the measured Winograd choice for this shape, when measuring
// is on (measured_choice.h) and Winograd could run; `key` holds what besides
// the shape tells calls apart (op, dtype, layouts, gradients asked for).
template <typename F>
auto run_measured(const ConvShape& s, std::vector<int64_t> key, const F& call) -> decltype(call()) {
  if (!measuring_enabled() || !winograd_applies(s)) return call();
  key.insert(key.end(), {s.N, s.C, s.H, s.W, s.K, s.R, s.S, s.groups, s.stride_h, s.stride_w, s.pad_h, s.pad_w,
                         s.dil_h, s.dil_w, int64_t(at::get_num_threads())});
  const ScopedWinogradChoice choice(fastest_choice(key, [&] { call(); }));
  return call();
}

at::Tensor conv2d(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  const ConvShape s = check_conv2d("convkit::conv2d", input, weight, bias, stride, padding, dilation, groups);
  const at::MemoryFormat format = output_memory_format(input, weight);
  const std::vector<int64_t> key{0, int64_t(input.scalar_type()), int64_t(format), bias.has_value() && bias->defined()};
  return run_measured(s, key, [&] { return forward(input, weight, bias, s, format).contiguous(format); });
}

// One plane (the conv layer's plane path runs a plane per task as well), on
// raw buffers: at this size views, packed weight tables and tasks would cost
// more than the arithmetic.
template <typename T>
void corr2d_plane(const T* x, const T* k, const ConvShape& s, T* y) {
  PlaneLayout lay = input_plane_layout<T>(s, round_up(s.Q, kern<T>().lanes));
  WorkBuffer<T> in(lay.plane());
  pack_plane(x, s.H, s.W, lay, in.data());
  const int64_t taps = s.R * s.S;
  std::vector<T> w(taps * kPlaneKB, T(0));
  std::vector<int64_t> off(taps);
  for (int64_t r = 0; r < s.R; ++r)
    for (int64_t t = 0; t < s.S; ++t) {
      w[(r * s.S + t) * kPlaneKB] = k[r * s.S + t];
      off[r * s.S + t] = r * lay.width + t;
    }
  PlaneRow<T> a;
  a.in = in.data();
  a.in_off = off.data();
  a.n = taps;
  a.in_row_step = lay.width;
  a.w = w.data();
  a.kb = 1;
  a.out = y;
  a.out_k = s.P * s.Q;
  a.out_row = s.Q;
  a.Q = s.Q;
  a.rows = s.P;
  a.bias = nullptr;
  kern<T>().plane_row(a);
}

at::Tensor corr2d(const at::Tensor& x_any, const at::Tensor& k_any) {
  const ConvShape s = check_corr2d(x_any, k_any);
  const at::Tensor x = x_any.contiguous(), k = k_any.contiguous();
  at::Tensor y = at::empty({s.P, s.Q}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "convkit_corr2d_cpu", [&] {
    corr2d_plane<scalar_t>(x.const_data_ptr<scalar_t>(), k.const_data_ptr<scalar_t>(), s, y.mutable_data_ptr<scalar_t>());
  });
  return y;
}

// Non-overlapping patches (stride = kernel size, no padding or dilation: ViT
// and ConvNeXt stems). Input pixel (p * R + a, q * S + b) meets only tap (a, b)
// of output pixel (p, q), so grad_input is a 1 x 1 layer from the K output
// channels to C * R * S values per pixel, spread to their pixels (a
// depth-to-space copy; pixels past the last patch get zeros). The stride
// phases of the other paths compute the zero-inserted columns as well:
// 2-vCPU Xeon, 8 x 3 -> 192, 16 x 16 patches of 224 x 224: 47.7 -> 2.5 ms
// (torch 22.6); 4 x 4 patches, 3 -> 96: 9.3 -> 2.35 ms (torch 8.9). (Their
// forward as a 1 x 1 layer on a space-to-depth copy ran 1.0-1.6x slower than
// the direct kernels.)
bool non_overlapping_patches(const ConvShape& s) {
  return s.R * s.S > 1 && s.stride_h == s.R && s.stride_w == s.S && s.pad_h == 0 && s.pad_w == 0 && s.dil_h == 1 &&
         s.dil_w == 1;
}

at::Tensor patch_grad_input(const at::Tensor& gy, const at::Tensor& weight, const ConvShape& s) {
  const int64_t G = s.groups, Cg = s.C_per_group(), Kg = s.K_per_group(), RS = s.R * s.S;
  // The 1 x 1 layer's weight [(g, c, a, b)][k] = weight[g * Kg + k][c][a][b].
  const at::Tensor w1 = weight.reshape({G, Kg, Cg * RS}).transpose(1, 2).reshape({G * Cg * RS, Kg, 1, 1}).contiguous();
  ConvShape s1;
  s1.N = s.N;
  s1.C = s.K;
  s1.H = s1.P = s.P;
  s1.W = s1.Q = s.Q;
  s1.K = s.C * RS;
  s1.R = s1.S = 1;
  s1.groups = G;
  const at::Tensor z = forward(gy, w1, std::nullopt, s1, at::MemoryFormat::Contiguous).contiguous();
  const bool covered = s.H == s.P * s.R && s.W == s.Q * s.S;
  const std::vector<int64_t> size{s.N, s.C, s.H, s.W};
  at::Tensor gx = covered ? empty_pooled(size, gy.options()) : zeros_pooled(size, gy.options());
  gx.narrow(2, 0, s.P * s.R).narrow(3, 0, s.Q * s.S).unflatten(3, {s.Q, s.S}).unflatten(2, {s.P, s.R})
      .copy_(z.view({s.N, s.C, s.R, s.S, s.P, s.Q}).permute({0, 1, 4, 2, 5, 3}));
  return gx;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(const at::Tensor& grad_output, const at::Tensor& input,
                                                       const at::Tensor& weight, const ConvShape& s,
                                                       std::array<bool, 3> output_mask) {
  // Gradients nobody asked for come back as empty tensors and cost nothing.
  at::Tensor grad_input = empty_pooled({0}, input.options());
  at::Tensor grad_weight = empty_pooled({0}, input.options());
  at::Tensor grad_bias = empty_pooled({0}, input.options());
  const bool empty_gy = grad_output.numel() == 0;

  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "convkit_conv2d_backward_cpu", [&] {
    std::vector<scalar_t> plane_sums;  // grad_output plane sums, when grad_weight's pass makes them
    std::optional<PlaneRows<scalar_t>> gx_job;  // grad_input by plane units, run below
    // The batch-lane family computes its gradients in one pass; the others follow.
    const bool lanes_gx = output_mask[0] && input.numel() > 0 && !empty_gy &&
                          batch_lanes_suit(s, LanePass::grad_input) && all_finite<scalar_t>(weight);
    const bool lanes_gw = output_mask[1] && !empty_gy && weight.numel() > 0 && batch_lanes_suit(s, LanePass::grad_weight);
    const bool lanes_gb = output_mask[2] && !empty_gy && (lanes_gx || lanes_gw);
    if (lanes_gx || lanes_gw) {
      at::Tensor gx, gw, gb;
      if (lanes_gx) grad_input = gx = empty_pooled(input.sizes(), input.options());
      if (lanes_gw) grad_weight = gw = empty_pooled(weight.sizes(), weight.options());
      if (lanes_gb) grad_bias = gb = empty_pooled({s.K}, input.options());
      batch_lanes_backward(grad_output, input, weight, s, gx, gw, gb);
    }
    const auto winograd_gx = [&] {
      if (!winograd_suits(s, WinogradPass::grad_input)) return false;
      grad_input = empty_pooled(input.sizes(), input.options().memory_format(input.suggest_memory_format()));
      return winograd_backward_input(grad_output, weight, s, grad_input);
    };
    if (output_mask[0] && !lanes_gx) {
      if (input.numel() == 0) {
        grad_input = empty_pooled(input.sizes(), input.options());
      } else if (empty_gy) {
        grad_input = zeros_pooled(input.sizes(), input.options());
      } else if (winograd_gx()) {
        // done (Winograd checks its operands' finiteness itself, on the way)
      } else if (non_overlapping_patches(s)) {
        grad_input = patch_grad_input(grad_output, weight, s);  // every product a real one: exact for Inf and NaN too
      } else if (!all_finite<scalar_t>(weight)) {
        backward_input_exact<scalar_t>(grad_output, weight, s, grad_input);
      } else if (use_wide<scalar_t>(s.C_per_group()) && reads_subsampled(s)) {
        // The stride-1 layer's grad_input on the pixels the layer reads, spread into zeros.
        at::Tensor dense;
        backward_input_wide<scalar_t>(grad_output, weight, unit_stride(s), input.suggest_memory_format(), dense);
        grad_input = spread_subsampled<scalar_t>(dense, input, s);
      } else if (use_wide<scalar_t>(s.C_per_group())) {
        backward_input_wide<scalar_t>(grad_output, weight, s, input.suggest_memory_format(), grad_input);
      } else if (channel_lanes_suit(s, LanePass::grad_input)) {
        grad_input = empty_pooled(input.sizes(), input.options().memory_format(input.suggest_memory_format()));
        channel_lanes_backward_input(grad_output, weight, s, grad_input);
      } else {
        gx_job = backward_input_plane<scalar_t>(grad_output, weight, s, grad_input);
      }
    }
    bool gx_done = !gx_job;
    bool bias_done = false;  // by the Winograd grad_weight pass
    WideWgradDone wide_done;
    if (output_mask[2] && !lanes_gb && !empty_gy) grad_bias = empty_pooled({s.K}, input.options());
    if (output_mask[1]) {
      if (empty_gy || weight.numel() == 0) {
        grad_weight = zeros_pooled(weight.sizes(), weight.options());
      } else if (!lanes_gw) {
        grad_weight = empty_pooled(weight.sizes(), weight.options());
        if (winograd_suits(s, WinogradPass::grad_weight)) {
          winograd_backward_weight(grad_output, input, s, grad_weight, output_mask[2] ? &grad_bias : nullptr);
          bias_done = output_mask[2];
        } else if (use_wide<scalar_t>(s.K_per_group()) && reads_subsampled(s))
          wide_done = backward_weight_wide<scalar_t>(grad_output, subsampled<scalar_t>(input, s), unit_stride(s),
                                                     grad_weight, output_mask[2] ? &grad_bias : nullptr);
        else if (use_wide<scalar_t>(s.K_per_group()) && !few_input_channels(s, true))
          wide_done = backward_weight_wide<scalar_t>(grad_output, input, s, grad_weight, output_mask[2] ? &grad_bias : nullptr);
        else if (channel_lanes_suit(s, LanePass::grad_weight))
          channel_lanes_backward_weight(grad_output, input, s, grad_weight);
        else {
          if (output_mask[2]) plane_sums.resize(s.N * s.K);
          // grad_input's units ride along when the reduction has chunks for every thread.
          const bool fuse = !gx_done && plane_wgrad_chunks(s) >= 2 * at::get_num_threads();
          backward_weight<scalar_t>(grad_output, input, s, grad_weight, output_mask[2] ? plane_sums.data() : nullptr,
                                    fuse ? &*gx_job : nullptr);
          gx_done = gx_done || fuse;
        }
      }
      if (grad_weight.numel() > 0 && !empty_gy) {
        // The fast kernels sum every real product and some products with
        // zeros, so a finite result means every product was finite and the
        // sums are exact ones. An Inf or NaN operand (or an overflow) shows up
        // in the small result: recompute that by definition. (Checking the
        // result costs nothing next to scanning both operands; the wide pass
        // checks it as it writes it.)
        if (!wide_done.finite && !all_finite<scalar_t>(grad_weight))
          backward_weight_exact<scalar_t>(grad_output, input, s, grad_weight);
      }
      grad_weight = grad_weight.contiguous(weight.suggest_memory_format());
    }
    if (!gx_done) gx_job->run();
    if (output_mask[0]) grad_input = grad_input.contiguous(input.suggest_memory_format());
    if (output_mask[2] && !lanes_gb && !bias_done && !wide_done.bias) {
      if (empty_gy) grad_bias = zeros_pooled({s.K}, input.options());
      else backward_bias<scalar_t>(grad_output, s, grad_bias, plane_sums);
    }
  });
  return {grad_input, grad_weight, grad_bias};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv2d_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                                              const at::Tensor& weight, at::IntArrayRef stride,
                                                              at::IntArrayRef padding, at::IntArrayRef dilation,
                                                              int64_t groups, std::array<bool, 3> output_mask) {
  const ConvShape s = check_conv2d_backward(grad_output, input, weight, stride, padding, dilation, groups);
  const std::vector<int64_t> key{1,
                                 int64_t(input.scalar_type()),
                                 int64_t(grad_output.suggest_memory_format()),
                                 int64_t(input.suggest_memory_format()),
                                 int64_t(weight.suggest_memory_format()),
                                 output_mask[0] + 2 * output_mask[1] + 4 * output_mask[2]};
  return run_measured(s, key, [&] { return backward(grad_output, input, weight, s, output_mask); });
}

std::string cpu_isa() { return kernels().name; }

// The machine's float multiply-add ceiling now, in GFLOP/s over all threads
// (each runs `rounds` rounds of independent chains): on a shared machine it
// moves from minute to minute, and speed reports set measured GFLOP/s against it.
double cpu_fma_peak(int64_t rounds) {
  TORCH_CHECK(rounds > 0, "convkit::_cpu_fma_peak: rounds must be positive, got ", rounds);
  const int64_t threads = at::get_num_threads();
  std::vector<float> sinks(threads);
  std::atomic<int64_t> ops{0};
  const auto t0 = std::chrono::steady_clock::now();
  at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) ops += int64_t(kernels().fma_chains(rounds, &sinks[i]));
  });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return double(ops.load()) / seconds / 1e9;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(convkit, m) {
  // Which CPU kernel build runs ("avx2" or "generic"); for tests and reports.
  m.def("_cpu_isa() -> str", &cpu_isa);
  // The FMA ceiling of the machine now, GFLOP/s on all threads (speed reports).
  m.def("_cpu_fma_peak(int rounds=10000000) -> float", &cpu_fma_peak);
  // Measured kernel choice (measured_choice.h): on or off, returning the
  // previous setting; and how many shapes have been measured (tests).
  m.def("_set_cpu_benchmark(bool enabled) -> bool", &set_measuring);
  m.def("_cpu_benchmark_shapes() -> int", &measured_shapes);
}

TORCH_LIBRARY_IMPL(convkit, CPU, m) {
  m.impl("corr2d", &corr2d);
  m.impl("conv2d", &conv2d);
  m.impl("conv2d_backward", &conv2d_backward);
}

}  // namespace cpu
}  // namespace convkit
