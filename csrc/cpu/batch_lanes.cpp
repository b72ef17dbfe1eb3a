// Batch lanes. A task takes a block of L images (L = elements per vector, as
// wide as the wide kernels' vectors: 8 floats, 16 with AVX-512),
// transposes them into [channel][row][col][L] buffers that stay in L2,
// runs the pass there and transposes the result back. Per pass:
//  - forward: y = correlation of the input with the weights;
//  - grad_input (stride 1): the correlation of grad_output with the
//    transposed weights, read in the other direction (tap t at offset
//    pad - t * dil);
//  - grad_weight: vector partial sums over pixels, lanes summed per chunk of
//    blocks, chunks summed in order (the chunking depends on the shape only).
// The backward runs all three per block, so grad_output is transposed once.
#include "batch_lanes.h"

#include <ATen/Dispatch.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "common.h"
#include "winograd.h"

namespace convkit {
namespace cpu {
namespace {

// One axis of a batch-lane correlation: output o reads input position
// o * stride + off[t] for tap t. Positions outside [0, I) read the buffer's
// zero margins, which cover every output and tap.
struct LaneAxis {
  int64_t O = 0, I = 0, stride = 1;
  std::vector<int64_t> off;

  int64_t lo() const { return std::max<int64_t>(0, -*std::min_element(off.begin(), off.end())); }
  int64_t hi() const {
    return std::max<int64_t>(0, (O - 1) * stride + *std::max_element(off.begin(), off.end()) - (I - 1));
  }
  int64_t extent() const { return lo() + I + hi(); }
  // The taps that read real input for some output in [o0, o1), as one range
  // [first, last) (every tap when skipping is off).
  std::pair<int64_t, int64_t> taps(int64_t o0, int64_t o1, bool skip) const {
    const int64_t T = off.size();
    if (!skip) return {0, T};
    int64_t first = T, last = 0;
    for (int64_t o = o0; o < o1; ++o)
      for (int64_t t = 0; t < T; ++t)
        if (o * stride + off[t] >= 0 && o * stride + off[t] < I) {
          first = std::min(first, t);
          last = std::max(last, t + 1);
        }
    if (first >= last) first = last = 0;
    return {first, last};
  }
};

LaneAxis forward_axis(int64_t O, int64_t I, int64_t stride, int64_t pad, int64_t dil, int64_t taps) {
  LaneAxis a{O, I, stride, {}};
  for (int64_t t = 0; t < taps; ++t) a.off.push_back(t * dil - pad);
  return a;
}

// grad_input of a stride-1 axis: input position i received output i + pad - t * dil.
LaneAxis grad_input_axis(int64_t I, int64_t O, int64_t pad, int64_t dil, int64_t taps) {
  LaneAxis a{I, O, 1, {}};
  for (int64_t t = 0; t < taps; ++t) a.off.push_back(pad - t * dil);
  return a;
}

// A block's output lines, fetched into cache a few at a time between the
// kernel calls that compute it, so the transposes that write the block out
// find them there instead of waiting on each line (each call right after
// torch's, as in the report: LeNet c1 forward -10%, c2 forward -3%).
// Blocks over 512 KB gained nothing (CIFAR's 16 -> 16 at 32 x 32): their
// lines would only push the block's own buffers out of L2.
class WriteAhead {
 public:
  WriteAhead(void* out, int64_t bytes, int64_t steps)
      : at_(static_cast<const char*>(out)), end_(at_ + (bytes <= (512 << 10) ? bytes : 0)),
        per_(steps > 0 ? ceil_div(bytes, 64 * steps) : 0) {}
  void step() {
    for (int64_t k = 0; k < per_ && at_ < end_; ++k, at_ += 64) __builtin_prefetch(at_, 1, 2);
  }

 private:
  const char* at_;
  const char* end_;
  int64_t per_;
};

// Block boundaries for n pixels of a run (pixel i reads column taps
// taps[i] = [first, last), and items_per_tap items per column tap), blocks of
// at most M pixels for kb output channels. A block computes the union of its
// pixels' taps for every pixel, so merging edge pixels costs products with
// the zero margins (LeNet c2's grad_input in even blocks of 8: 22% more than
// the real ones). Blocks are even unless a split found by dynamic
// programming is estimated at least 3% faster. The estimate, in cycles: per
// item, a kb x m tile issues kb * m FMAs on two ports and kb + m loads on two,
// and takes at least one FMA latency (4 cycles); each call costs a few more.
// (Single thread, 2-vCPU Xeon, LeNet c2 grad_input: 1.21 -> 1.08 ms; the
// even blocks of LeNet c1's forward ran 1-4% faster than an equally
// estimated split.)
std::vector<int64_t> lane_blocks(const std::vector<std::pair<int64_t, int64_t>>& taps, int64_t M, int64_t kb,
                                 int64_t items_per_tap) {
  const int64_t n = taps.size();
  // A block of m pixels reading `span` column taps.
  const auto cost = [&](int64_t span, int64_t m) {
    return double(span * items_per_tap) * std::max({kb * m / 2.0, (kb + m) / 2.0, 4.0}) + 24.0;
  };
  // The union of a block's column taps.
  struct Union {
    int64_t first = std::numeric_limits<int64_t>::max(), last = 0;
    void add(const std::pair<int64_t, int64_t>& t) {
      if (t.first < t.second) {
        first = std::min(first, t.first);
        last = std::max(last, t.second);
      }
    }
    int64_t span() const { return std::max<int64_t>(0, last - first); }
  };
  std::vector<int64_t> even;
  double even_cost = 0;
  const int64_t nblocks = ceil_div(n, M);
  for (int64_t b = 0; b <= nblocks; ++b) even.push_back(n * b / nblocks);
  for (int64_t b = 0; b < nblocks; ++b) {
    Union u;
    for (int64_t i = even[b]; i < even[b + 1]; ++i) u.add(taps[i]);
    even_cost += cost(u.span(), even[b + 1] - even[b]);
  }
  std::vector<double> best(n + 1, 0.0);
  std::vector<int64_t> from(n + 1, 0);
  for (int64_t i = 1; i <= n; ++i) {
    best[i] = -1;
    Union u;
    for (int64_t m = 1; m <= std::min(M, i); ++m) {
      u.add(taps[i - m]);
      const double c = best[i - m] + cost(u.span(), m);
      if (best[i] < 0 || c < best[i]) {
        best[i] = c;
        from[i] = i - m;
      }
    }
  }
  if (best[n] > 0.97 * even_cost) return even;
  std::vector<int64_t> bounds{n};
  while (bounds.back() > 0) bounds.push_back(from[bounds.back()]);
  std::reverse(bounds.begin(), bounds.end());
  return bounds;
}

// The blocks of a grouped batch-lane correlation: out [G * Kout][ah.O][aw.O][L]
// from in [G * Cred][ah.extent()][aw.extent()][L] (the input at (ah.lo(), aw.lo())).
// It depends on the shape only, so a layer's plan is built once (lane_plan).
struct LanePlan {
  LaneAxis ah, aw;
  int64_t G, Cred, Kout, L, width, chan, kb, kblocks, items;
  std::vector<int64_t> item_off, seg, pix_in, pix_out;
  // Blocks of up to batch_cols[kb] output pixels and the item segments
  // (taps) they read: the rows of a block read the same kernel rows, its
  // columns the span of their kernel columns.
  struct Call {
    int64_t pix0, npix, seg0, nseg;
  };
  std::vector<Call> calls;

  // chan: the input buffer's channel stride; batch_cols[kb]: pixels per block for kb outputs.
  LanePlan(LaneAxis ah_, LaneAxis aw_, int64_t G_, int64_t Cred_, int64_t Kout_, bool skip, int64_t L_, int64_t chan_,
           const int* batch_cols)
      : ah(std::move(ah_)), aw(std::move(aw_)), G(G_), Cred(Cred_), Kout(Kout_), L(L_), width(aw.extent()),
        chan(chan_) {
    const int64_t R = ah.off.size(), S = aw.off.size();
    kblocks = ceil_div(Kout, kBatchKB);
    kb = ceil_div(Kout, kblocks);  // even blocks: 6 outputs are 3 + 3, not 4 + 2
    items = R * S * Cred;
    item_off.resize(items);
    for (int64_t r = 0; r < R; ++r)
      for (int64_t t = 0; t < S; ++t)
        for (int64_t c = 0; c < Cred; ++c) item_off[(r * S + t) * Cred + c] = c * chan + (ah.off[r] * width + aw.off[t]) * L;
    // Rows by the kernel rows they read; inside each run of rows, pixels
    // column by column, so a block's columns are neighbours.
    const int64_t M = batch_cols[kb];
    for (int64_t p = 0, p1; p < ah.O; p = p1) {
      const auto rt = ah.taps(p, p + 1, skip);
      for (p1 = p + 1; p1 < ah.O && ah.taps(p1, p1 + 1, skip) == rt;) ++p1;
      const int64_t n = (p1 - p) * aw.O;
      std::vector<std::pair<int64_t, int64_t>> col_taps(n);
      for (int64_t i = 0; i < n; ++i) col_taps[i] = aw.taps(i / (p1 - p), i / (p1 - p) + 1, skip);
      const std::vector<int64_t> bounds = lane_blocks(col_taps, M, kb, (rt.second - rt.first) * Cred);
      for (size_t blk = 0; blk + 1 < bounds.size(); ++blk) {
        const int64_t i0 = bounds[blk], i1 = bounds[blk + 1];
        Call call{int64_t(pix_in.size()), i1 - i0, int64_t(seg.size()) / 2, 0};
        int64_t first = S, last = 0;
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t row = p + i % (p1 - p), col = i / (p1 - p);
          pix_in.push_back(((row * ah.stride + ah.lo()) * width + col * aw.stride + aw.lo()) * L);
          pix_out.push_back((row * aw.O + col) * L);
          if (col_taps[i].first < col_taps[i].second) {
            first = std::min(first, col_taps[i].first);
            last = std::max(last, col_taps[i].second);
          }
        }
        for (int64_t r = rt.first; r < rt.second && first < last; ++r) {
          const int64_t b = (r * S + first) * Cred, e = (r * S + last) * Cred;
          if (call.nseg > 0 && seg.back() == b) {
            seg.back() = e;  // whole kernel rows run on into the next
          } else {
            seg.push_back(b);
            seg.push_back(e);
            ++call.nseg;
          }
        }
        calls.push_back(call);
      }
    }
  }

  int64_t in_size() const { return G * Cred * chan; }
  int64_t out_plane() const { return ah.O * aw.O * L; }
  int64_t calls_per_run() const { return G * int64_t(calls.size()) * kblocks; }
};

// The plan of a shape, built on its first call and kept (at most 256):
// right after torch's call, planning and packing took 70 of the 2000 us of
// LeNet c2's forward + backward; the weights change every training step,
// the shapes do not.
template <typename T>
std::shared_ptr<const LanePlan> lane_plan(LaneAxis ah, LaneAxis aw, int64_t G, int64_t Cred, int64_t Kout, bool skip) {
  std::vector<int64_t> key{int64_t(sizeof(T)), G, Cred, Kout, skip};
  for (const LaneAxis* a : {&ah, &aw}) {
    key.insert(key.end(), {a->O, a->I, a->stride, int64_t(a->off.size())});
    key.insert(key.end(), a->off.begin(), a->off.end());
  }
  static std::mutex mutex;
  static std::map<std::vector<int64_t>, std::shared_ptr<const LanePlan>> plans;
  {
    std::lock_guard<std::mutex> lock(mutex);
    const auto it = plans.find(key);
    if (it != plans.end()) return it->second;
  }
  const int64_t L = kern<T>().batch_lanes, chan = conflict_free_stride<T>(ah.extent() * aw.extent() * L);
  auto plan = std::make_shared<const LanePlan>(std::move(ah), std::move(aw), G, Cred, Kout, skip, L, chan,
                                               kern<T>().batch_cols);
  std::lock_guard<std::mutex> lock(mutex);
  if (plans.size() >= 256) plans.clear();
  plans.emplace(std::move(key), plan);
  return plan;
}

// A grouped correlation over one block of images: the plan of its shape and
// the weights packed for it.
template <typename T>
struct LaneCorr {
  std::shared_ptr<const LanePlan> plan;
  std::vector<T> w;  // [g][kblock][item (r, s, c)][kBatchKB], zero past the block's channels
  const T* bias;

  // weight(g, o, c, r, t): the weight from reduction channel c to output o of group g.
  template <typename Weight>
  LaneCorr(LaneAxis ah, LaneAxis aw, int64_t G, int64_t Cred, int64_t Kout, bool skip, const Weight& weight,
           const T* bias_)
      : plan(lane_plan<T>(std::move(ah), std::move(aw), G, Cred, Kout, skip)), bias(bias_) {
    const LanePlan& p = *plan;
    const int64_t R = p.ah.off.size(), S = p.aw.off.size();
    w.assign(G * p.kblocks * p.items * kBatchKB, T(0));
    for (int64_t g = 0; g < G; ++g)
      for (int64_t o = 0; o < Kout; ++o)
        for (int64_t r = 0; r < R; ++r)
          for (int64_t t = 0; t < S; ++t)
            for (int64_t c = 0; c < Cred; ++c)
              w[((g * p.kblocks + o / p.kb) * p.items + (r * S + t) * Cred + c) * kBatchKB + o % p.kb] =
                  weight(g, o, c, r, t);
  }

  void run(const T* in, T* out, WriteAhead& ahead) const {
    const LanePlan& p = *plan;
    BatchTile<T> a;
    a.item_off = p.item_off.data();
    a.out_k = p.out_plane();
    for (int64_t g = 0; g < p.G; ++g)
      for (const LanePlan::Call& call : p.calls) {
        // The output-channel blocks of a pixel block read the same input: it stays in L1.
        a.in = in + g * p.Cred * p.chan;
        a.pix_in = p.pix_in.data() + call.pix0;
        a.pix_out = p.pix_out.data() + call.pix0;
        a.npix = call.npix;
        a.seg = p.seg.data() + 2 * call.seg0;
        a.nseg = call.nseg;
        for (int64_t kbi = 0; kbi < p.kblocks; ++kbi) {
          const int64_t k0 = kbi * p.kb;
          a.kb = std::min(p.kb, p.Kout - k0);
          if (a.kb <= 0) break;
          a.w = w.data() + (g * p.kblocks + kbi) * p.items * kBatchKB;
          a.init = bias ? bias + g * p.Kout + k0 : nullptr;
          a.out = out + (g * p.Kout + k0) * p.out_plane();
          kern<T>().batch_tile(a);
          ahead.step();
        }
      }
  }
};

// Images [0, nv) of src (images image_stride apart, C x H x W each, contiguous)
// into lanes [0, nv) of buf [c][row][col][L]: channel c at buf + c * chan,
// rows of `width` pixels, the image at (top, left).
template <typename T>
void to_lanes(const T* src, int64_t image_stride, int64_t nv, int64_t C, int64_t H, int64_t W, T* buf, int64_t chan,
              int64_t width, int64_t top, int64_t left) {
  const KernelsT<T>& kt = kern<T>();
  Transpose<T> t;  // items: images; lanes: pixels
  t.in_item = image_stride;
  t.n = t.cols = nv;
  t.out_row = 0;
  t.out_lane = kt.batch_lanes;
  if (top == 0 && left == 0 && width == W && chan == H * W * kt.batch_lanes) {
    t.in = src;
    t.m = C * H * W;
    t.out = buf;
    kt.transpose(t);
    return;
  }
  t.m = W;
  for (int64_t c = 0; c < C; ++c)
    for (int64_t h = 0; h < H; ++h) {
      t.in = src + (c * H + h) * W;
      t.out = buf + c * chan + ((top + h) * width + left) * kt.batch_lanes;
      kt.transpose(t);
    }
}

// Lanes [0, nv) of buf [count][L] into images dst + n * count.
template <typename T>
void from_lanes(const T* buf, int64_t count, int64_t nv, T* dst) {
  Transpose<T> t;  // items: values; lanes: images
  t.in = buf;
  t.in_item = kern<T>().batch_lanes;
  t.n = t.cols = count;
  t.m = nv;
  t.out = dst;
  t.out_row = 0;
  t.out_lane = count;
  kern<T>().transpose(t);
}

template <typename T>
void forward_lanes(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias, const ConvShape& s,
                   at::Tensor& y) {
  const int64_t L = kern<T>().batch_lanes, G = s.groups, Cg = s.C_per_group(), Kg = s.K_per_group();
  const at::Tensor wc = weight.contiguous(), x = input.contiguous();
  const T* wp = wc.const_data_ptr<T>();
  const LaneCorr<T> corr(forward_axis(s.P, s.H, s.stride_h, s.pad_h, s.dil_h, s.R),
                         forward_axis(s.Q, s.W, s.stride_w, s.pad_w, s.dil_w, s.S), G, Cg, Kg, all_finite<T>(weight),
                         [&](int64_t g, int64_t o, int64_t c, int64_t r, int64_t t) {
                           return wp[(((g * Kg + o) * Cg + c) * s.R + r) * s.S + t];
                         },
                         bias.defined() ? bias.const_data_ptr<T>() : nullptr);
  const T* xp = x.const_data_ptr<T>();
  T* yp = y.mutable_data_ptr<T>();
  const int64_t chw = s.C * s.H * s.W, kpq = s.K * s.P * s.Q;
  parallel_for_shared(ceil_div(s.N, L), 1, [&](const auto& claim) {
    WorkBuffer<T> in(corr.plan->in_size()), out(s.K * corr.plan->out_plane());  // margins stay zero
    for (int64_t begin, end; claim(begin, end);)
      for (int64_t blk = begin; blk < end; ++blk) {
        const int64_t n0 = blk * L, nv = std::min(L, s.N - n0);
        if (nv < L) std::fill(in.begin(), in.end(), T(0));
        to_lanes(xp + n0 * chw, chw, nv, s.C, s.H, s.W, in.data(), corr.plan->chan, corr.plan->width, corr.plan->ah.lo(),
                 corr.plan->aw.lo());
        WriteAhead ahead(yp + n0 * kpq, nv * kpq * sizeof(T), corr.plan->calls_per_run());
        corr.run(in.data(), out.data(), ahead);
        from_lanes(out.data(), kpq, nv, yp + n0 * kpq);
      }
  });
}

template <typename T>
void backward_lanes(const at::Tensor& gy_any, const at::Tensor& input, const at::Tensor& weight, const ConvShape& s,
                    at::Tensor& gx, at::Tensor& gw, at::Tensor& gb) {
  const KernelsT<T>& kt = kern<T>();
  const int64_t L = kt.batch_lanes, G = s.groups, Cg = s.C_per_group(), Kg = s.K_per_group(), RS = s.R * s.S;
  const at::Tensor wc = weight.contiguous(), gyc = gy_any.contiguous();
  const T* wp = wc.const_data_ptr<T>();
  const bool want_gx = gx.defined(), want_gw = gw.defined(), want_gb = gb.defined();
  // grad_input: outputs are input channels, the reduction runs over grad_output channels.
  std::optional<LaneCorr<T>> gxcorr;
  if (want_gx)
    gxcorr.emplace(grad_input_axis(s.H, s.P, s.pad_h, s.dil_h, s.R), grad_input_axis(s.W, s.Q, s.pad_w, s.dil_w, s.S),
                   G, Kg, Cg, true,
                   [&](int64_t g, int64_t o, int64_t k, int64_t r, int64_t t) {
                     return wp[(((g * Kg + k) * Cg + o) * s.R + r) * s.S + t];
                   },
                   nullptr);
  // grad_output in grad_input's layout (with its margins), or dense.
  const int64_t gchan = want_gx ? gxcorr->plan->chan : conflict_free_stride<T>(s.P * s.Q * L), gwidth = want_gx ? gxcorr->plan->width : s.Q;
  const int64_t gtop = want_gx ? gxcorr->plan->ah.lo() : 0, gleft = want_gx ? gxcorr->plan->aw.lo() : 0;
  // The input in the forward's layout, for grad_weight: items (c, r, t) of a group.
  const LaneAxis fh = forward_axis(s.P, s.H, s.stride_h, s.pad_h, s.dil_h, s.R);
  const LaneAxis fw = forward_axis(s.Q, s.W, s.stride_w, s.pad_w, s.dil_w, s.S);
  const int64_t xwidth = fw.extent(), xchan = conflict_free_stride<T>(fh.extent() * xwidth * L), items = Cg * RS;
  std::vector<int64_t> item_off(items);
  for (int64_t c = 0; c < Cg; ++c)
    for (int64_t r = 0; r < s.R; ++r)
      for (int64_t t = 0; t < s.S; ++t) item_off[(c * s.R + r) * s.S + t] = c * xchan + (fh.off[r] * xwidth + fw.off[t]) * L;
  const int64_t wkblocks = ceil_div(Kg, kBatchKB), wkb = ceil_div(Kg, wkblocks), jb = kt.batch_cols[wkb];

  const at::Tensor xc = want_gw ? input.contiguous() : input;
  const T* xp = want_gw ? xc.const_data_ptr<T>() : nullptr;
  const T* gyp = gyc.const_data_ptr<T>();
  T* gxp = want_gx ? gx.mutable_data_ptr<T>() : nullptr;
  const int64_t chw = s.C * s.H * s.W, kpq = s.K * s.P * s.Q, nblocks = ceil_div(s.N, L);
  // Chunks of blocks. A chunk sums its blocks' products lane-wise [sum][L],
  // then its lanes in lane order, into totals [chunk][sum]; chunks are added in
  // chunk order at the end. The chunking depends on the shape only.
  const int64_t nch = std::min<int64_t>(nblocks, 8), sums = (want_gw ? s.K * items : 0) + (want_gb ? s.K : 0);
  const Scratch<T> totals(nch * sums);
  parallel_for_shared(nch, 1, [&](const auto& claim) {
    WorkBuffer<T> gyb(s.K * gchan), xb(want_gw ? s.C * xchan : 0), gxb(want_gx ? s.C * gxcorr->plan->out_plane() : 0);
    const Scratch<T> lanes(sums * L), by_lane(sums * L);
    BatchWgrad<T> a;
    a.x_row = s.stride_h * xwidth * L;
    a.x_col = s.stride_w * L;
    a.gy_k = gchan;
    a.gy_row = gwidth * L;
    a.rows = s.P;
    a.cols = s.Q;
    a.acc_k = items;
    for (int64_t begin, end; claim(begin, end);)
      for (int64_t ch = begin; ch < end; ++ch) {
        T* acc = lanes.data();
        const int64_t blk0 = nblocks * ch / nch;
        for (int64_t blk = blk0; blk < nblocks * (ch + 1) / nch; ++blk) {
          a.accumulate = blk > blk0;  // the chunk's first block writes its sums
          const int64_t n0 = blk * L, nv = std::min(L, s.N - n0);
          if (nv < L) {  // lanes past the batch must hold zeros: grad_weight sums them
            std::fill(gyb.begin(), gyb.end(), T(0));
            std::fill(xb.begin(), xb.end(), T(0));
          }
          to_lanes(gyp + n0 * kpq, kpq, nv, s.K, s.P, s.Q, gyb.data(), gchan, gwidth, gtop, gleft);
          const T* g0 = gyb.data() + (gtop * gwidth + gleft) * L;  // grad_output pixel (0, 0)
          WriteAhead ahead(want_gx ? gxp + n0 * chw : nullptr, want_gx ? nv * chw * sizeof(T) : 0,
                           (want_gw ? G * wkblocks * ceil_div(items, jb) : 0) + (want_gx ? gxcorr->plan->calls_per_run() : 0));
          if (want_gw) {
            to_lanes(xp + n0 * chw, chw, nv, s.C, s.H, s.W, xb.data(), xchan, xwidth, fh.lo(), fw.lo());
            for (int64_t g = 0; g < G; ++g)
              for (int64_t kbi = 0; kbi < wkblocks; ++kbi) {
                const int64_t k0 = g * Kg + kbi * wkb;
                a.kb = std::min(wkb, Kg - kbi * wkb);
                if (a.kb <= 0) break;
                a.gy = g0 + k0 * gchan;
                a.x = xb.data() + g * Cg * xchan + (fh.lo() * xwidth + fw.lo()) * L;
                for (int64_t j = 0; j < items; j += jb) {
                  a.item_off = item_off.data() + j;
                  a.nitem = std::min(jb, items - j);
                  a.acc = acc + (k0 * items + j) * L;
                  kt.batch_wgrad(a);
                  ahead.step();
                }
              }
          }
          if (want_gb)
            for (int64_t k = 0; k < s.K; ++k)
              kt.lane_sums(g0 + k * gchan, s.P, s.Q, gwidth * L, acc + ((want_gw ? s.K * items : 0) + k) * L,
                           a.accumulate);
          if (want_gx) {
            gxcorr->run(gyb.data(), gxb.data(), ahead);
            from_lanes(gxb.data(), chw, nv, gxp + n0 * chw);
          }
        }
        // Lanes in order, while the chunk's sums are in cache: [sum][L] -> [L][sum], rows added.
        from_lanes(lanes.data(), sums, L, by_lane.data());
        T* total = totals.data() + ch * sums;
        std::copy(by_lane.data(), by_lane.data() + sums, total);
        for (int64_t l = 1; l < L; ++l)
          for (int64_t i = 0; i < sums; ++i) total[i] += by_lane[l * sums + i];
      }
  });
  T* dst_w = want_gw ? gw.mutable_data_ptr<T>() : nullptr;
  T* dst_b = want_gb ? gb.mutable_data_ptr<T>() : nullptr;
  for (int64_t i = 0; i < sums; ++i) {
    T sum = totals[i];
    for (int64_t ch = 1; ch < nch; ++ch) sum += totals[ch * sums + i];
    if (want_gw && i < s.K * items)
      dst_w[i] = sum;
    else
      dst_b[i - (want_gw ? s.K * items : 0)] = sum;
  }
}

}  // namespace

bool batch_lanes_suit(const ConvShape& s, LanePass pass) {
  const char* env = std::getenv("CONVKIT_BATCH_LANES");  // read per call: cheap, and A/B runs toggle it
  if ((env && std::strcmp(env, "0") == 0) || s.N == 0 ||
      (pass == LanePass::grad_input && (s.stride_h != 1 || s.stride_w != 1)))
    return false;
  if (env && std::strcmp(env, "1") == 0) return true;  // wherever it applies (tests cover every shape with it)
  // Winograd F(2x2, 5x5) ran the whole backward of the 5 x 5 layers it takes
  // faster (1.06-1.4x at 16..32 channels, batch 64..256).
  if (pass != LanePass::forward && s.R == 5 && s.S == 5 && winograd_suits(s, WinogradPass::grad_weight)) return false;
  // Measured against the plane and wide kernels (2-core Zen 3, float32,
  // batch 32..256): the lanes won from 64 images on, for up to 32 x 32
  // channels (LeNet's 6 -> 16 at 14x14: 1.16x forward, 1.2x backward; CIFAR's
  // 16 -> 16 at 32x32: 1.2x, 1.34x; 3 -> 16: 1.1x, 1.8x) while a block's
  // buffers stay near L2. They lost where a register tile is not full: the
  // forward of 1 -> 6 channels (0.85x) and grad_input into 1 channel (0.7x).
  // (Sizes count 32-byte lanes: 512-bit lanes take twice that, on CPUs whose
  // L2 is twice Zen 3's; CIFAR's 16 -> 16 still won 1.2x there, Zen 5.)
  const int64_t in_bytes = s.C * (s.H + 2 * s.pad_h) * (s.W + 2 * s.pad_w) * 32, out_bytes = s.K * s.P * s.Q * 32;
  if (s.groups != 1 || s.N < 64 || s.C > 32 || s.K > 32 || in_bytes + out_bytes > (2 << 20)) return false;
  // With 512-bit lanes (16 images a vector; Zen 5, batch 64..256, float32)
  // the lanes also won the forward of 4..6 output channels where each pixel
  // sums 25 or more taps per channel or 48 or more products (1 -> 6 at 5x5:
  // 0.71-0.75x, 8 -> 6 at 3x3: 0.54-0.65x) and lost below (3 -> 6 at 3x3 on
  // 32x32: 1.3x); grad_input into 2 channels won (0.75-0.84x).
  const bool wide = wide_vectors_wider(), deep = s.R * s.S >= 25 || s.C * s.R * s.S >= 48;
  switch (pass) {
    case LanePass::forward: return s.K >= 8 || (wide && s.K >= 4 && deep);
    case LanePass::grad_input: return s.C >= (wide ? 2 : 3);
    default: return s.K >= 4;
  }
}

void batch_lanes_forward(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias, const ConvShape& s,
                         at::Tensor& y) {
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "convkit_batch_lanes_forward",
                             [&] { forward_lanes<scalar_t>(input, weight, bias, s, y); });
}

void batch_lanes_backward(const at::Tensor& gy, const at::Tensor& input, const at::Tensor& weight, const ConvShape& s,
                          at::Tensor& gx, at::Tensor& gw, at::Tensor& gb) {
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "convkit_batch_lanes_backward",
                             [&] { backward_lanes<scalar_t>(gy, input, weight, s, gx, gw, gb); });
}

}  // namespace cpu
}  // namespace convkit
