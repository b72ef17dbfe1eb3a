// CPU micro-kernels against the machine's FMA peak, with all data in L1:
// separates kernel efficiency from everything around it (packing, caches,
// threads). Torch-free; see DEVELOPERS.md for the build line. Each row
// measures the peak right before the kernels, so a shared machine's swings
// cancel out. The wide AVX-512 tiles run where the CPU has AVX-512; the AVX2
// plane kernels of a 3 x 3 depthwise layer (56 x 56 plane) run everywhere.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <immintrin.h>
#include <vector>

#include "../csrc/cpu/kernels.h"

namespace convkit {
namespace cpu {
const KernelTable& kernels() { return kernels_avx512(); }
}  // namespace cpu
}  // namespace convkit
using namespace convkit::cpu;

template <typename F>
double gflops(F run, double flops_per_call, long calls) {
  const auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < calls; ++i) run();
  return flops_per_call * calls / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 1e9;
}

__attribute__((target("avx512f"))) double fma_peak() {
  __m512 acc[12];
  const __m512 b = _mm512_set1_ps(1.0000001f), c = _mm512_set1_ps(1e-7f);
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(float(i));
  const long n = 40000000;
  const auto t0 = std::chrono::steady_clock::now();
  for (long k = 0; k < n; ++k)
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], b, c);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  float sink = 0;
  for (int i = 0; i < 12; ++i) sink += _mm512_reduce_add_ps(acc[i]);
  return sink == 1.5f ? 0 : 12.0 * 32 * n / s / 1e9;
}

// One 56 x 56 plane of a 3 x 3 depthwise layer: forward rows and grad_weight.
void plane_rows() {
  const KernelTable& tab = kernels_avx2();
  const int H = 56, W = 56, width = 64;
  // 64-byte aligned, as the op's buffers are (a vector load across two cache lines costs two).
  auto buffer = [](size_t n, float v) {
    float* p = static_cast<float*>(std::aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64));
    std::fill(p, p + n, v);
    return p;
  };
  float *in = buffer((H + 2) * width + 64, 0.5f), *out = buffer(H * W + 64, 0.f), *gy = buffer(H * W + 64, 0.25f),
        *acc = buffer(9 * 8, 0.f);
  std::vector<float> w(9 * kPlaneKB, 0.1f);
  std::vector<int64_t> off(9);
  for (int t = 0; t < 9; ++t) off[t] = t / 3 * width + t % 3;
  PlaneRow<float> f{};
  f.in = in, f.in_off = off.data(), f.n = 9, f.in_row_step = width, f.w = w.data(), f.kb = 1;
  f.out = out, f.out_k = H * W, f.out_row = W, f.Q = W, f.rows = H;
  PlaneWgrad<float> g{};
  g.x = in, g.x_row = width, g.item_off = off.data(), g.nitem = 9, g.gy = gy, g.gy_row = W;
  g.gy_k = H * W, g.kb = 1, g.rows = H, g.qv = W / 8, g.acc = acc, g.acc_k = 9;
  const double flops = 2.0 * H * W * 9;
  for (int rep = 0; rep < 3; ++rep) {
    float sink = 0;
    const auto t0 = std::chrono::steady_clock::now();
    const double peak = tab.fma_chains(20000000, &sink) /
                        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 1e9;
    const double fwd = gflops([&] { tab.f32.plane_row(f); }, flops, 20000);
    const double wgrad = gflops([&] { tab.f32.plane_wgrad(g); }, flops, 20000);
    std::printf("avx2 fma peak %5.1f GFLOP/s | depthwise 3x3 rows %5.1f (%3.0f%%) | grad_weight %5.1f (%3.0f%%)\n", peak,
                fwd, 100 * fwd / peak, wgrad, 100 * wgrad / peak);
  }
}

int main() {
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) plane_rows();
  if (!__builtin_cpu_supports("avx512f")) return 0;
  const KernelsT<float>& kt = kernels_avx512().f32;
  const int NR = kt.nr, lanes = kt.tiles * NR, taps = 9, C = 16, M = kt.mr;
  // Forward tile: M pixels of one row, 3x3 taps, C channels, planar input.
  std::vector<float> in(C * 8 * 40, 1.0f), w(2 * taps * C * NR, 0.1f), out(M * lanes);
  std::vector<int64_t> pix_in(M), pix_out(M), tap(taps);
  for (int j = 0; j < M; ++j) pix_in[j] = j, pix_out[j] = j * lanes;
  for (int t = 0; t < taps; ++t) tap[t] = t / 3 * 40 + t % 3;
  WideTile<float> f{};
  f.in = in.data(), f.pix_in = pix_in.data(), f.in_chan = 320, f.tap_off = tap.data(), f.ntaps = taps, f.C = C;
  f.w = w.data(), f.w_tile = taps * C * NR, f.tiles = kt.tiles, f.out = out.data(), f.pix_out = pix_out.data();
  f.out_lane = 1, f.nr_valid = lanes, f.npix = M;
  // grad_weight tile: M (channel, tap) items over 4 rows x 28 columns.
  const int rows = 4, cols = 28;
  std::vector<float> x(2 * 6 * 30, 1.0f), gy(rows * cols * lanes, 0.5f), acc(M * lanes);
  std::vector<int64_t> item(M);
  for (int j = 0; j < M; ++j) item[j] = j / 9 * 180 + j % 9 / 3 * 30 + j % 3;
  WideWgrad<float> g{};
  g.x = x.data(), g.item_off = item.data(), g.m = M, g.tiles = kt.tiles, g.gy = gy.data();
  g.rows = rows, g.cols = cols, g.x_row = 30, g.x_col = 1, g.gy_row = cols * lanes, g.gy_col = lanes;
  g.acc = acc.data(), g.acc_item = lanes;
  for (int rep = 0; rep < 3; ++rep) {
    const double peak = fma_peak();
    const double fwd = gflops([&] { kt.wide_tile(f); }, 2.0 * M * lanes * taps * C, 400000);
    const double wgrad = gflops([&] { kt.wide_wgrad(g); }, 2.0 * M * lanes * rows * cols, 200000);
    std::printf("fma peak %5.1f GFLOP/s | forward tile %5.1f (%3.0f%%) | grad_weight tile %5.1f (%3.0f%%)\n", peak, fwd,
                100 * fwd / peak, wgrad, 100 * wgrad / peak);
  }
}
