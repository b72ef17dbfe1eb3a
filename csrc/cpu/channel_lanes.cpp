// Channel lanes. A unit takes one image and a block of L channels (L =
// elements per wide vector: 16 floats with AVX-512, 8 with AVX2), moves its
// planes channels-last into a zero-bordered buffer that stays in cache, runs
// the taps there (lane_window) and moves the result back into the output's
// layout. grad_input is the same pass over grad_output with the taps
// flipped; grad_weight sums a block's products over the batch in image
// order, so its results depend on the shape alone.
#include "channel_lanes.h"

#include <ATen/Dispatch.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common.h"

namespace convkit {
namespace cpu {
namespace {

// The strides of an (N, C, rows, cols) tensor, any layout.
struct Strides {
  int64_t n, c, h, w;
  explicit Strides(const at::Tensor& t) : n(t.stride(0)), c(t.stride(1)), h(t.stride(2)), w(t.stride(3)) {}
};

// m channels of one image (H x W planes at src, strides st) into buf as
// rows x cols pixels of L lanes: the image at (top, left), zeros around it
// and in lanes m..L. dense: scratch for H * W * L values.
template <typename T>
void to_lanes(const T* src, const Strides& st, int64_t H, int64_t W, int64_t m, int64_t L, int64_t top, int64_t left,
              int64_t rows, int64_t cols, T* dense, T* buf) {
  // Zeros around the image only: rows above and below it, columns beside it.
  std::fill(buf, buf + top * cols * L, T(0));
  std::fill(buf + (top + H) * cols * L, buf + rows * cols * L, T(0));
  for (int64_t h = 0; h < H; ++h) {
    T* row = buf + (top + h) * cols * L;
    std::fill(row, row + left * L, T(0));
    std::fill(row + (left + W) * L, row + cols * L, T(0));
  }
  if (st.w == 1 && st.h == W) {  // planar: one transpose of the block's planes (items: channels, lanes: pixels)
    if (m < L) std::fill(dense, dense + H * W * L, T(0));
    kern<T>().transpose(Transpose<T>{src, st.c, m, m, H * W, dense, 0, L});
    for (int64_t h = 0; h < H; ++h)
      std::memcpy(buf + ((top + h) * cols + left) * L, dense + h * W * L, sizeof(T) * W * L);
    return;
  }
  for (int64_t h = 0; h < H; ++h)
    for (int64_t w = 0; w < W; ++w) {
      T* px = buf + ((top + h) * cols + left + w) * L;
      for (int64_t c = 0; c < L; ++c) px[c] = c < m ? src[h * st.h + w * st.w + c * st.c] : T(0);
    }
}

// Lanes [0, m) of P x Q pixels of L lanes into m channels of one image (dst, strides st).
template <typename T>
void from_lanes(const T* stage, int64_t P, int64_t Q, int64_t m, int64_t L, const Strides& st, T* dst) {
  if (st.w == 1 && st.h == Q) {  // planar: items are pixels, lanes channels
    kern<T>().transpose(Transpose<T>{stage, L, P * Q, P * Q, m, dst, 0, st.c});
    return;
  }
  for (int64_t p = 0; p < P; ++p)
    for (int64_t q = 0; q < Q; ++q)
      for (int64_t c = 0; c < m; ++c) dst[p * st.h + q * st.w + c * st.c] = stage[(p * Q + q) * L + c];
}

// Depthwise weights (C, 1, R, S) as [block of L channels][tap][L], zero
// lanes past C; flipped, tap t holds tap R * S - 1 - t.
template <typename T>
std::vector<T> lane_weights(const at::Tensor& weight, int64_t L, bool flipped) {
  const at::Tensor wc = weight.contiguous();
  const int64_t C = wc.size(0), RS = wc.size(2) * wc.size(3);
  std::vector<T> out(ceil_div(C, L) * RS * L, T(0));
  const T* w = wc.const_data_ptr<T>();
  for (int64_t c = 0; c < C; ++c)
    for (int64_t t = 0; t < RS; ++t) out[(c / L * RS + t) * L + c % L] = w[c * RS + (flipped ? RS - 1 - t : t)];
  return out;
}

// The buffer geometry of one unit: src's H x W image at (top, left) in
// rows x cols pixels, enough for every tap of every output, and the taps'
// offsets in it.
struct LaneGrid {
  int64_t top, left, rows, cols;
  std::vector<int64_t> taps;
  int64_t row_taps;  // S where a kernel row's taps are adjacent pixels, else 0

  LaneGrid(int64_t H, int64_t W, int64_t top_, int64_t left_, const ConvShape& s, int64_t P, int64_t Q, int64_t sh,
           int64_t sw, int64_t L)
      : top(top_), left(left_) {
    rows = std::max(top + H, (P - 1) * sh + (s.R - 1) * s.dil_h + 1);
    cols = std::max(left + W, (Q - 1) * sw + (s.S - 1) * s.dil_w + 1);
    for (int64_t r = 0; r < s.R; ++r)
      for (int64_t t = 0; t < s.S; ++t) taps.push_back((r * s.dil_h * cols + t * s.dil_w) * L);
    row_taps = s.dil_w == 1 ? s.S : 0;
  }
};

// dst (N, C, P, Q) = the depthwise correlation of src (N, C, H, W), placed
// as g says, with weights w (lane_weights) at strides (sh, sw), + bias.
template <typename T>
void window_pass(const at::Tensor& src, const LaneGrid& g, int64_t sh, int64_t sw, const std::vector<T>& w,
                 const T* bias, at::Tensor& dst) {
  const KernelsT<T>& kt = kern<T>();
  const int64_t N = src.size(0), C = src.size(1), H = src.size(2), W = src.size(3), P = dst.size(2), Q = dst.size(3);
  const int64_t L = kt.wide_lanes, CB = ceil_div(C, L), ntaps = g.taps.size();
  std::vector<T> init(bias ? CB * L : 0, T(0));
  if (bias) std::copy(bias, bias + C, init.begin());
  const Strides ss(src), ds(dst);
  const T* x = src.const_data_ptr<T>();
  T* y = dst.mutable_data_ptr<T>();
  parallel_for_shared(N * CB, grain_for(P * Q * L * ntaps), [&](const auto& claim) {
    const Scratch<T> buf(g.rows * g.cols * L), dense(H * W * L), stage(P * Q * L);
    LaneWindow<T> a{buf.data(), sh * g.cols * L, sw * L, g.taps.data(), ntaps, g.row_taps, nullptr, nullptr, stage.data(),
                    P, Q};
    for (int64_t begin, end; claim(begin, end);)
      for (int64_t u = begin; u < end; ++u) {
        const int64_t n = u / CB, c0 = u % CB * L, m = std::min(L, C - c0);
        to_lanes(x + n * ss.n + c0 * ss.c, ss, H, W, m, L, g.top, g.left, g.rows, g.cols, dense.data(), buf.data());
        a.w = w.data() + c0 * ntaps;
        a.init = bias ? init.data() + c0 : nullptr;
        kt.lane_window(a);
        from_lanes(stage.data(), P, Q, m, L, ds, y + n * ds.n + c0 * ds.c);
      }
  });
}

template <typename T>
void window_wgrad(const at::Tensor& gy, const at::Tensor& input, const ConvShape& s, at::Tensor& gw) {
  const KernelsT<T>& kt = kern<T>();
  const int64_t L = kt.wide_lanes, C = s.C, CB = ceil_div(C, L), RS = s.R * s.S, P = s.P, Q = s.Q;
  const LaneGrid g(s.H, s.W, s.pad_h, s.pad_w, s, P, Q, s.stride_h, s.stride_w, L);
  const Strides xs(input), gs(gy);
  const T* x = input.const_data_ptr<T>();
  const T* gp = gy.const_data_ptr<T>();
  T* out = gw.mutable_data_ptr<T>();
  at::parallel_for(0, CB, 1, [&](int64_t begin, int64_t end) {
    const Scratch<T> buf(g.rows * g.cols * L), dense(std::max(s.H * s.W, P * Q) * L), gstage(P * Q * L), acc(RS * L);
    LaneWindowGrad<T> a{buf.data(), s.stride_h * g.cols * L, s.stride_w * L, g.taps.data(), RS, gstage.data(), P, Q,
                        acc.data()};
    for (int64_t cb = begin; cb < end; ++cb) {
      const int64_t c0 = cb * L, m = std::min(L, C - c0);
      std::fill(acc.data(), acc.data() + RS * L, T(0));
      for (int64_t n = 0; n < s.N; ++n) {
        to_lanes(x + n * xs.n + c0 * xs.c, xs, s.H, s.W, m, L, g.top, g.left, g.rows, g.cols, dense.data(), buf.data());
        to_lanes(gp + n * gs.n + c0 * gs.c, gs, P, Q, m, L, 0, 0, P, Q, dense.data(), gstage.data());
        kt.lane_window_grad(a);
      }
      for (int64_t l = 0; l < m; ++l)
        for (int64_t t = 0; t < RS; ++t) out[(c0 + l) * RS + t] = acc[t * L + l];
    }
  });
}

}  // namespace

bool channel_lanes_suit(const ConvShape& s, LanePass pass) {
  const char* env = std::getenv("CONVKIT_CHANNEL_LANES");  // read per call: cheap, and A/B runs toggle it
  const bool depthwise = s.groups == s.C && s.K == s.C;
  if ((env && std::strcmp(env, "0") == 0) || !depthwise || s.N == 0 || s.C == 0 || s.P == 0 || s.Q == 0) return false;
  if (pass == LanePass::grad_input &&
      (s.stride_h != 1 || s.stride_w != 1 || s.pad_h > (s.R - 1) * s.dil_h || s.pad_w > (s.S - 1) * s.dil_w))
    return false;
  if (env && std::strcmp(env, "1") == 0) return true;  // wherever it applies (tests cover every shape with it)
  // Measured against the plane kernels (2-core Zen 5, batch 8, float32):
  // the lanes won wherever output rows are 28 pixels or fewer (7x7: 0.3-0.38x
  // forward + backward, 14x14: 0.47-0.56x, 28x28: 0.7-0.87x; stride 2 from
  // 56x56: forward 0.85-0.94x) and lost from 56 on (1.3-1.75x, batch 1 at
  // 112: 2.2x), where the plane kernels' rows fill their vectors.
  return s.Q <= 28 && s.C >= kern<float>().wide_lanes;
}

void channel_lanes_forward(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                           const ConvShape& s, at::Tensor& y) {
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "convkit_channel_lanes_forward", [&] {
    const LaneGrid g(s.H, s.W, s.pad_h, s.pad_w, s, s.P, s.Q, s.stride_h, s.stride_w, kern<scalar_t>().wide_lanes);
    window_pass<scalar_t>(input, g, s.stride_h, s.stride_w,
                          lane_weights<scalar_t>(weight, kern<scalar_t>().wide_lanes, false),
                          bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr, y);
  });
}

void channel_lanes_backward_input(const at::Tensor& gy, const at::Tensor& weight, const ConvShape& s, at::Tensor& gx) {
  AT_DISPATCH_FLOATING_TYPES(gy.scalar_type(), "convkit_channel_lanes_backward_input", [&] {
    // The stride-1 correlation of grad_output, padded to the input's size, with the flipped taps.
    const LaneGrid g(s.P, s.Q, (s.R - 1) * s.dil_h - s.pad_h, (s.S - 1) * s.dil_w - s.pad_w, s, s.H, s.W, 1, 1,
                     kern<scalar_t>().wide_lanes);
    window_pass<scalar_t>(gy, g, 1, 1, lane_weights<scalar_t>(weight, kern<scalar_t>().wide_lanes, true), nullptr, gx);
  });
}

void channel_lanes_backward_weight(const at::Tensor& gy, const at::Tensor& input, const ConvShape& s, at::Tensor& gw) {
  AT_DISPATCH_FLOATING_TYPES(gy.scalar_type(), "convkit_channel_lanes_backward_weight",
                             [&] { window_wgrad<scalar_t>(gy, input, s, gw); });
}

}  // namespace cpu
}  // namespace convkit
