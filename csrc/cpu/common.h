// Helpers shared by the CPU passes (conv2d_cpu.cpp, winograd.cpp): the
// kernel table for a dtype, work splitting, finiteness checks, and the two
// layout changes every wide pass needs (channels-last activations, weights
// with output channels as vector lanes).
#pragma once
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <vector>

#include "buffers.h"
#include "kernels.h"

namespace convkit {
namespace cpu {
namespace {

template <typename T>
const KernelsT<T>& kern();
template <>
inline const KernelsT<float>& kern<float>() { return kernels().f32; }
template <>
inline const KernelsT<double>& kern<double>() { return kernels().f64; }

// Work below this many multiply-adds per task is not worth a thread.
constexpr int64_t kMinTaskWork = 1 << 16;

inline int64_t grain_for(int64_t work_per_item) {
  return std::max<int64_t>(1, kMinTaskWork / std::max<int64_t>(1, work_per_item));
}

inline int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
// Floor division for possibly negative numerators (b > 0).
inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// at::parallel_for over [0, n), with the range handed out in chunks to
// whichever thread is free: on a shared machine one thread may run slower
// than the other, and equal static shares would leave the faster one waiting
// (medians 1.05-1.2x on 2 shared vCPUs). Chunks shrink as the range runs out
// (a 1 / (2 * threads) share of what is left, at least `grain` units), so the
// threads finish close together (about 0.98x in time across the benchmark
// cases against fixed chunks of n / (8 * threads), 2-core Zen 5). f(claim)
// runs once per thread (set-up such as buffers once), and claim(begin, end)
// gives it the next chunk, false when none is left. Each unit is computed the
// same way whichever thread takes it, so results do not depend on the schedule.
template <typename F>
void parallel_for_shared(int64_t n, int64_t grain, const F& f) {
  const int64_t threads = at::in_parallel_region() ? 1 : std::min<int64_t>(at::get_num_threads(), ceil_div(n, grain));
  std::atomic<int64_t> next{0};
  const auto claim = [&](int64_t& begin, int64_t& end) {
    begin = next.load(std::memory_order_relaxed);
    int64_t size;
    do size = threads <= 1 ? n - begin : std::max(grain, (n - begin) / (2 * threads));
    while (begin < n && !next.compare_exchange_weak(begin, begin + size, std::memory_order_relaxed));
    end = std::min(n, begin + size);
    return begin < n;
  };
  if (threads <= 1) return f(claim);
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) { f(claim); });
}

// A stride of at least n elements for rows (pixels, planes, tiles) that a
// kernel walks one after another: rows of 512 bytes or more get an odd
// number of cache lines, so they fall into different L1 sets (a stride of a
// power-of-two number of lines puts every row into the same few sets).
template <typename T>
int64_t conflict_free_stride(int64_t n) {
  constexpr int64_t line = 64 / int64_t(sizeof(T));
  if (n * int64_t(sizeof(T)) < 512) return n;
  const int64_t lines = ceil_div(n, line);
  return (lines % 2 == 0 ? lines + 1 : lines) * line;
}

// A pass runs the wide kernels when its vector dimension (output channels
// for forward and grad_weight, input channels for grad_input) fills at least
// half of a wide tile's lanes.
template <typename T>
bool use_wide(int64_t vector_channels) {
  return vector_channels * 2 >= kern<T>().nr;
}

// Whether the wide kernels run wider vectors than the plane kernels
// (AVX-512: 512 against 256 bits). Then the few-channel layers with kernels
// larger than 3 x 3, which the plane kernels won on AVX2, go to the wide
// kernels (see few_input_channels).
inline bool wide_vectors_wider() {
  const KernelsT<float>& kt = kern<float>();
  return kt.wide_lanes > kt.lanes;
}

// Whether every value is finite: then products with padding zeros are exact
// zeros, and kernels may skip them or add them as they find fastest. A block
// holding Inf or NaN has a non-finite sum; finite values whose sum overflows
// only send the caller to its exact (slower) path.
template <typename T>
bool all_finite(const T* p, int64_t n) {
  const int64_t block = 1 << 14;
  std::atomic<bool> finite{true};
  at::parallel_for(0, ceil_div(n, block), grain_for(block), [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end && finite.load(std::memory_order_relaxed); ++b) {
      const int64_t lo = b * block;
      if (!std::isfinite(kern<T>().sum(p + lo, std::min(block, n - lo)))) finite = false;
    }
  });
  return finite;
}

template <typename T>
bool all_finite(const at::Tensor& values) {
  const at::Tensor dense = values.is_non_overlapping_and_dense() ? values : values.contiguous();
  return all_finite(dense.const_data_ptr<T>(), dense.numel());
}

// A weight tensor seen as (group, output k, reduction channel c, tap t):
// element at src[g * g_stride + k * k_stride + c * c_stride + tap[t]], where
// each (k, c) holds rs contiguous values (a weight's R x S) and tap[t] < rs.
template <typename T>
struct WeightView {
  const T* src;
  int64_t g_stride, k_stride, c_stride, rs;
  std::vector<int64_t> tap;
};

// Output tile gk (g * ceil(Kout / NR) + k0 / NR) of the weights as
// lanes_last [c][rs][NR lanes] (zero lanes past Kout). Register transposes do
// the gather: a lane's weights are strided by k_stride in the source.
template <typename T>
void weight_tile_lanes_last(int64_t Kout, int64_t Cred, const WeightView<T>& w, int64_t gk, T* lanes_last) {
  const KernelsT<T>& kt = kern<T>();
  const int64_t NR = kt.nr, KB = ceil_div(Kout, NR), rs = w.rs;
  const int64_t g = gk / KB, k0 = gk % KB * NR, lanes = std::min(NR, Kout - k0);
  if (lanes < NR) std::fill(lanes_last, lanes_last + Cred * rs * NR, T(0));
  Transpose<T> tr;  // items: the tile's lanes k; values: (c, r) pairs
  tr.in_item = w.k_stride;
  tr.n = tr.cols = lanes;
  tr.out_row = 0;
  tr.out_lane = NR;
  const T* src = w.src + g * w.g_stride + k0 * w.k_stride;
  if (w.k_stride == 1 && rs == 1) {  // lanes side by side (1 x 1 grad_input): rows copied as they are
    for (int64_t c = 0; c < Cred; ++c) {
      if (lanes == NR)  // a whole tile row: a fixed-size copy, no library call
        std::memcpy(lanes_last + c * NR, src + c * w.c_stride, kTileBytes);
      else
        std::copy_n(src + c * w.c_stride, lanes, lanes_last + c * NR);
    }
    return;
  }
  if (w.c_stride == rs) {  // a lane's weights are one run over (c, r)
    tr.in = src;
    tr.m = Cred * rs;
    tr.out = lanes_last;
    kt.transpose(tr);
    return;
  }
  for (int64_t c = 0; c < Cred; ++c) {
    tr.in = src + c * w.c_stride;
    tr.m = rs;
    tr.out = lanes_last + c * rs * NR;
    kt.transpose(tr);
  }
}

// Calls place(tile, lanes_last) for every output tile of the weights, in
// parallel, with lanes_last holding weight_tile_lanes_last's result.
template <typename T, typename Place>
void for_each_weight_tile(int64_t G, int64_t Kout, int64_t Cred, const WeightView<T>& w, const Place& place) {
  const int64_t NR = kern<T>().nr, KB = ceil_div(Kout, NR);
  at::parallel_for(0, G * KB, grain_for(Cred * w.rs * NR), [&](int64_t begin, int64_t end) {
    Scratch<T> lanes_last(Cred * w.rs * NR);
    for (int64_t gk = begin; gk < end; ++gk) {
      weight_tile_lanes_last(Kout, Cred, w, gk, lanes_last.data());
      place(gk, lanes_last.data());
    }
  });
}

// x (N, G*Cg, H, W) as (N, rows, cols, G, Cpad): channels-last with each
// group's channels zero-padded to Cpad lanes, the image at (top, left),
// zeros around it, and what lies past rows x cols left out. Pixels lie
// conflict_free_stride(G * Cpad) apart: callers read the strides.
// With `row_sums` set, it receives the sums of the rows copied, (N, Hc, C)
// for the Hc rows copied, taken as the rows pass through cache: their
// finiteness is the values' (as all_finite), and they sum to grad_bias.
template <typename T>
at::Tensor channels_last_padded(const at::Tensor& x_any, int64_t G, int64_t Cpad, int64_t top = 0, int64_t left = 0,
                                int64_t rows = -1, int64_t cols = -1, at::Tensor* row_sums = nullptr) {
  const int64_t N = x_any.size(0), C = x_any.size(1), H = x_any.size(2), W = x_any.size(3), Cg = C / G;
  if (rows < 0) rows = H;
  if (cols < 0) cols = W;
  const int64_t Co = G * Cpad, Cs = conflict_free_stride<T>(Co);
  const int64_t Hc = std::max<int64_t>(0, std::min(H, rows - top)), Wc = std::max<int64_t>(0, std::min(W, cols - left));
  if (Cpad == Cg && x_any.suggest_memory_format() == at::MemoryFormat::ChannelsLast) {
    const bool whole = top == 0 && left == 0 && rows == H && cols == W;
    at::Tensor out = (whole ? empty_pooled({N, rows, cols, Cs}, x_any.options())
                            : zeros_pooled({N, rows, cols, Cs}, x_any.options())).narrow(3, 0, Co);
    out.narrow(1, top, Hc).narrow(2, left, Wc).copy_(x_any.narrow(2, 0, Hc).narrow(3, 0, Wc).permute({0, 2, 3, 1}));
    if (row_sums) *row_sums = x_any.narrow(2, 0, Hc).narrow(3, 0, Wc).sum(3).permute({0, 2, 1}).contiguous();
    return out;
  }
  // Rows read in place where pixels are contiguous (a channel slice of a planar tensor, say).
  const at::Tensor x = x_any.stride(3) == 1 ? x_any : x_any.contiguous();
  const int64_t xn = x.stride(0), xc = x.stride(1), xh = x.stride(2);
  at::Tensor out = empty_pooled({N, rows, cols, Cs}, x.options()).narrow(3, 0, Co);
  const T* src = x.const_data_ptr<T>();
  T* dst = out.mutable_data_ptr<T>();
  const KernelsT<T>& kt = kern<T>();
  T* sums = nullptr;
  if (row_sums) {
    *row_sums = empty_pooled({N, Hc, C}, x.options());
    sums = row_sums->mutable_data_ptr<T>();
  }
  at::parallel_for(0, N * rows, grain_for(cols * Co), [&](int64_t begin, int64_t end) {
    Transpose<T> t;  // one row: channels (items) x pixels (lanes)
    t.in_item = xc;
    t.n = t.cols = Cg;
    t.m = Wc;
    t.out_row = 0;
    t.out_lane = Cs;
    for (int64_t nr = begin; nr < end; ++nr) {
      const int64_t n = nr / rows, h = nr % rows - top;
      T* row = dst + nr * cols * Cs;
      if (h < 0 || h >= Hc) {
        std::fill(row, row + cols * Cs, T(0));
        continue;
      }
      std::fill(row, row + left * Cs, T(0));
      std::fill(row + (left + Wc) * Cs, row + cols * Cs, T(0));
      for (int64_t g = 0; g < G; ++g) {
        t.in = src + n * xn + g * Cg * xc + h * xh;
        t.out = row + left * Cs + g * Cpad;
        kt.transpose(t);
        for (int64_t c = 0; sums && c < Cg; ++c) sums[(n * Hc + h) * C + g * Cg + c] = kt.sum(t.in + c * xc, Wc);
        for (int64_t c = Cg; c < Cpad; ++c)
          for (int64_t q = 0; q < Wc; ++q) row[(left + q) * Cs + g * Cpad + c] = T(0);
      }
    }
  });
  return out;
}

}  // namespace
}  // namespace cpu
}  // namespace convkit
