// CPU kernels for the convkit ops: direct convolution loops over NCHW planes,
// parallel over independent output planes with at::parallel_for. Every output
// element is reduced by one thread in a fixed order, so results are bitwise
// reproducible and independent of the thread count.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../checks.h"

namespace convkit {
namespace cpu {
namespace {

// Work below this many multiply-adds per task is not worth a thread.
constexpr int64_t kMinTaskWork = 1 << 15;

int64_t grain_for(int64_t work_per_item) { return std::max<int64_t>(1, kMinTaskWork / std::max<int64_t>(1, work_per_item)); }

// Contiguous NCHW copy of `input` with a zero border of the padding's width.
at::Tensor padded_contiguous(const at::Tensor& input, const ConvShape& s) {
  if (s.pad_h == 0 && s.pad_w == 0) return input.contiguous();
  at::Tensor padded = at::zeros({s.N, s.C, s.H + 2 * s.pad_h, s.W + 2 * s.pad_w}, input.options());
  padded.narrow(2, s.pad_h, s.H).narrow(3, s.pad_w, s.W).copy_(input);
  return padded;
}

// out[q] += w * in[q * stride] for q < n: the innermost loop of every pass.
template <typename T>
inline void axpy_strided(int64_t n, T w, const T* in, int64_t stride, T* out) {
  if (stride == 1) {
    for (int64_t q = 0; q < n; ++q) out[q] += w * in[q];
  } else {
    for (int64_t q = 0; q < n; ++q) out[q] += w * in[q * stride];
  }
}

// acc[q] += a[q] * b[q * stride]: elementwise products kept per lane so the
// loop vectorizes without reassociating a floating-point sum.
template <typename T>
inline void multiply_accumulate_strided(int64_t n, const T* a, const T* b, int64_t stride, T* acc) {
  if (stride == 1) {
    for (int64_t q = 0; q < n; ++q) acc[q] += a[q] * b[q];
  } else {
    for (int64_t q = 0; q < n; ++q) acc[q] += a[q] * b[q * stride];
  }
}

template <typename T>
inline T sum(const T* v, int64_t n) {
  T total = 0;
  for (int64_t i = 0; i < n; ++i) total += v[i];
  return total;
}

template <typename T>
void forward_kernel(const ConvShape& s, const T* xp, const T* w, const T* bias, T* y) {
  const int64_t Hp = s.H + 2 * s.pad_h, Wp = s.W + 2 * s.pad_w;
  const int64_t Cg = s.C_per_group(), Kg = s.K_per_group();
  at::parallel_for(0, s.N * s.K, grain_for(s.P * s.Q * s.reduction_size()), [&](int64_t begin, int64_t end) {
    for (int64_t nk = begin; nk < end; ++nk) {
      const int64_t n = nk / s.K, k = nk % s.K, g = k / Kg;
      T* out = y + nk * s.P * s.Q;
      std::fill(out, out + s.P * s.Q, bias ? bias[k] : T(0));
      for (int64_t c = 0; c < Cg; ++c) {
        const T* plane = xp + (n * s.C + g * Cg + c) * Hp * Wp;
        const T* taps = w + (k * Cg + c) * s.R * s.S;
        for (int64_t r = 0; r < s.R; ++r)
          for (int64_t t = 0; t < s.S; ++t)
            for (int64_t p = 0; p < s.P; ++p)
              axpy_strided(s.Q, taps[r * s.S + t], plane + (p * s.stride_h + r * s.dil_h) * Wp + t * s.dil_w,
                           s.stride_w, out + p * s.Q);
      }
    }
  });
}

// grad_input: each (image, input channel) plane gathers the contributions of
// every output channel of its group into a padded scratch plane.
template <typename T>
void backward_input_kernel(const ConvShape& s, const T* gy, const T* w, T* gx) {
  const int64_t Hp = s.H + 2 * s.pad_h, Wp = s.W + 2 * s.pad_w;
  const int64_t Cg = s.C_per_group(), Kg = s.K_per_group();
  at::parallel_for(0, s.N * s.C, grain_for(s.P * s.Q * Kg * s.R * s.S), [&](int64_t begin, int64_t end) {
    std::vector<T> scratch(Hp * Wp);
    for (int64_t nc = begin; nc < end; ++nc) {
      const int64_t n = nc / s.C, c = nc % s.C, g = c / Cg;
      std::fill(scratch.begin(), scratch.end(), T(0));
      for (int64_t kk = 0; kk < Kg; ++kk) {
        const int64_t k = g * Kg + kk;
        const T* grad_plane = gy + (n * s.K + k) * s.P * s.Q;
        const T* taps = w + (k * Cg + (c - g * Cg)) * s.R * s.S;
        for (int64_t r = 0; r < s.R; ++r)
          for (int64_t t = 0; t < s.S; ++t)
            for (int64_t p = 0; p < s.P; ++p) {
              T* row = scratch.data() + (p * s.stride_h + r * s.dil_h) * Wp + t * s.dil_w;
              const T tap = taps[r * s.S + t];
              const T* grad_row = grad_plane + p * s.Q;
              for (int64_t q = 0; q < s.Q; ++q) row[q * s.stride_w] += tap * grad_row[q];
            }
      }
      T* out = gx + nc * s.H * s.W;
      for (int64_t h = 0; h < s.H; ++h)
        std::copy_n(scratch.data() + (h + s.pad_h) * Wp + s.pad_w, s.W, out + h * s.W);
    }
  });
}

// grad_weight: one task per (output channel, input channel) pair, reducing
// over the batch and the output plane.
template <typename T>
void backward_weight_kernel(const ConvShape& s, const T* gy, const T* xp, T* gw) {
  const int64_t Hp = s.H + 2 * s.pad_h, Wp = s.W + 2 * s.pad_w;
  const int64_t Cg = s.C_per_group(), Kg = s.K_per_group();
  at::parallel_for(0, s.K * Cg, grain_for(s.N * s.P * s.Q * s.R * s.S), [&](int64_t begin, int64_t end) {
    std::vector<T> acc(s.Q);
    for (int64_t kc = begin; kc < end; ++kc) {
      const int64_t k = kc / Cg, c = kc % Cg, g = k / Kg;
      for (int64_t r = 0; r < s.R; ++r)
        for (int64_t t = 0; t < s.S; ++t) {
          std::fill(acc.begin(), acc.end(), T(0));
          for (int64_t n = 0; n < s.N; ++n) {
            const T* plane = xp + (n * s.C + g * Cg + c) * Hp * Wp + r * s.dil_h * Wp + t * s.dil_w;
            const T* grad_plane = gy + (n * s.K + k) * s.P * s.Q;
            for (int64_t p = 0; p < s.P; ++p)
              multiply_accumulate_strided(s.Q, grad_plane + p * s.Q, plane + p * s.stride_h * Wp, s.stride_w,
                                          acc.data());
          }
          gw[kc * s.R * s.S + r * s.S + t] = sum(acc.data(), s.Q);
        }
    }
  });
}

template <typename T>
void backward_bias_kernel(const ConvShape& s, const T* gy, T* gb) {
  at::parallel_for(0, s.K, grain_for(s.N * s.P * s.Q), [&](int64_t begin, int64_t end) {
    std::vector<T> acc(s.P * s.Q);
    for (int64_t k = begin; k < end; ++k) {
      std::fill(acc.begin(), acc.end(), T(0));
      for (int64_t n = 0; n < s.N; ++n) {
        const T* plane = gy + (n * s.K + k) * s.P * s.Q;
        for (int64_t i = 0; i < s.P * s.Q; ++i) acc[i] += plane[i];
      }
      gb[k] = sum(acc.data(), s.P * s.Q);
    }
  });
}

at::Tensor forward(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                   const ConvShape& s) {
  at::Tensor y = at::empty({s.N, s.K, s.P, s.Q}, input.options());
  if (y.numel() == 0) return y;
  const at::Tensor xp = padded_contiguous(input, s);
  const at::Tensor w = weight.contiguous();
  const at::Tensor b = bias.has_value() && bias->defined() ? bias->contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "convkit_conv2d_cpu", [&] {
    forward_kernel<scalar_t>(s, xp.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
                             b.defined() ? b.const_data_ptr<scalar_t>() : nullptr, y.mutable_data_ptr<scalar_t>());
  });
  return y;
}

at::Tensor conv2d(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  const ConvShape s = check_conv2d("convkit::conv2d", input, weight, bias, stride, padding, dilation, groups);
  return forward(input, weight, bias, s).contiguous(output_memory_format(input, weight));
}

at::Tensor corr2d(const at::Tensor& x, const at::Tensor& k) {
  check_corr2d(x, k);
  ConvShape s;
  s.N = s.C = s.K = 1;
  s.H = x.size(0); s.W = x.size(1);
  s.R = k.size(0); s.S = k.size(1);
  s.P = s.H - s.R + 1; s.Q = s.W - s.S + 1;
  return forward(x.view({1, 1, s.H, s.W}), k.view({1, 1, s.R, s.S}), std::nullopt, s).view({s.P, s.Q});
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv2d_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                                              const at::Tensor& weight, at::IntArrayRef stride,
                                                              at::IntArrayRef padding, at::IntArrayRef dilation,
                                                              int64_t groups, std::array<bool, 3> output_mask) {
  const char* op = "convkit::conv2d_backward";
  const ConvShape s = check_conv2d(op, input, weight, std::nullopt, stride, padding, dilation, groups);
  check_grad_output(op, grad_output, input, s);
  const at::Tensor gy = grad_output.contiguous();
  // Gradients nobody asked for come back as empty tensors and cost nothing.
  at::Tensor grad_input = at::empty({0}, input.options());
  at::Tensor grad_weight = at::empty({0}, input.options());
  at::Tensor grad_bias = at::empty({0}, input.options());

  if (output_mask[0]) {
    grad_input = at::empty(input.sizes(), input.options());
    if (grad_input.numel() > 0) {
      if (gy.numel() == 0) {
        grad_input.zero_();
      } else {
        const at::Tensor w = weight.contiguous();
        AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "convkit_conv2d_backward_input_cpu", [&] {
          backward_input_kernel<scalar_t>(s, gy.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
                                          grad_input.mutable_data_ptr<scalar_t>());
        });
      }
    }
    grad_input = grad_input.contiguous(input.suggest_memory_format());
  }
  if (output_mask[1]) {
    grad_weight = at::zeros(weight.sizes(), weight.options());
    if (gy.numel() > 0 && grad_weight.numel() > 0) {
      const at::Tensor xp = padded_contiguous(input, s);
      AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "convkit_conv2d_backward_weight_cpu", [&] {
        backward_weight_kernel<scalar_t>(s, gy.const_data_ptr<scalar_t>(), xp.const_data_ptr<scalar_t>(),
                                         grad_weight.mutable_data_ptr<scalar_t>());
      });
    }
    grad_weight = grad_weight.contiguous(weight.suggest_memory_format());
  }
  if (output_mask[2]) {
    grad_bias = at::zeros({s.K}, input.options());
    if (gy.numel() > 0) {
      AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "convkit_conv2d_backward_bias_cpu", [&] {
        backward_bias_kernel<scalar_t>(s, gy.const_data_ptr<scalar_t>(), grad_bias.mutable_data_ptr<scalar_t>());
      });
    }
  }
  return {grad_input, grad_weight, grad_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(convkit, CPU, m) {
  m.impl("corr2d", &corr2d);
  m.impl("conv2d", &conv2d);
  m.impl("conv2d_backward", &conv2d_backward);
}

}  // namespace cpu
}  // namespace convkit
