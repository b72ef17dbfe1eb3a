// Planner and public launchers: choose a kernel family per pass from the
// shape, dtype and options, falling back to the naive family whenever a fast
// family's preconditions do not hold.
#include "common.cuh"
#include "internal.h"

namespace convkit {
namespace cuda {
namespace {

// LeNet-sized or depthwise: few input channels per group, few outputs.
bool small_layer(const ConvShape& s) {
  const int64_t Cg = s.C / s.groups, Kg = s.K / s.groups;
  return Cg == 1 || (Cg <= 16 && Kg <= 64);
}

}  // namespace

const char* algo_name(Algo algo) {
  switch (algo) {
    case Algo::Auto: return "auto";
    case Algo::Naive: return "naive";
    case Algo::Direct: return "direct";
    case Algo::Gemm: return "gemm";
    case Algo::TensorCore: return "tensorcore";
  }
  return "unknown";
}

Plan plan_forward(const ConvShape& s, DType dtype, const Options& opt) {
  Plan plan;
  const bool tc = tensorcore_supported_forward(s, dtype, opt.allow_tf32);
  const bool direct = direct_supported(s, dtype);
  const bool gemm = gemm_supported_forward(s);
  switch (opt.force) {
    case Algo::Naive: plan.algo = Algo::Naive; return plan;
    case Algo::Direct: if (direct) { plan.algo = Algo::Direct; return plan; } break;
    case Algo::Gemm: if (gemm) { plan.algo = Algo::Gemm; return plan; } break;
    case Algo::TensorCore:
      if (tc) { plan.algo = Algo::TensorCore; plan.needs_channels_last = true; return plan; }
      break;
    case Algo::Auto: break;
  }
  if (direct && small_layer(s)) {
    plan.algo = Algo::Direct;
  } else if (tc) {
    plan.algo = Algo::TensorCore;
    plan.needs_channels_last = true;
  } else if (gemm) {
    plan.algo = Algo::Gemm;
  } else if (direct) {
    plan.algo = Algo::Direct;
  } else {
    plan.algo = Algo::Naive;
  }
  return plan;
}

Plan plan_backward_input(const ConvShape& s, DType dtype, const Options& opt) {
  Plan plan;
  const bool tc = tensorcore_supported_backward_input(s, dtype, opt.allow_tf32);
  const bool gemm = gemm_supported_backward_input(s);
  switch (opt.force) {
    case Algo::Naive: plan.algo = Algo::Naive; return plan;
    case Algo::Gemm: if (gemm) { plan.algo = Algo::Gemm; return plan; } break;
    case Algo::TensorCore:
      if (tc) { plan.algo = Algo::TensorCore; plan.needs_channels_last = true; return plan; }
      break;
    default: break;
  }
  const int64_t Cg = s.C / s.groups, Kg = s.K / s.groups;
  if (tc) {
    plan.algo = Algo::TensorCore;
    plan.needs_channels_last = true;
  } else if (gemm && Cg >= 16 && Kg * s.R * s.S >= 32) {
    plan.algo = Algo::Gemm;  // a 64-wide tile would be mostly idle on fewer channels
  } else {
    plan.algo = Algo::Naive;
  }
  return plan;
}

Plan plan_backward_weight(const ConvShape& s, DType dtype, const Options& opt) {
  Plan plan;
  const bool gemm = gemm_supported_backward_weight(s);
  const int64_t rows = (s.C / s.groups) * s.R * s.S, cols = s.K / s.groups;
  bool use_gemm = gemm && rows >= 32 && cols >= 16;
  if (opt.force == Algo::Naive && naive_supported(s)) use_gemm = false;
  if (opt.force == Algo::Gemm && gemm) use_gemm = true;
  if (!naive_supported(s)) use_gemm = gemm;
  if (use_gemm) {
    plan.algo = Algo::Gemm;
    plan.splits = gemm_weight_splits(s, dtype);
    plan.workspace_bytes = gemm_weight_workspace_bytes(s, dtype, plan.splits, opt.deterministic);
  } else {
    plan.algo = Algo::Naive;
  }
  return plan;
}

cudaError_t conv2d_forward(const Plan& plan, const ConvShape& s, DType dtype, const Operand& x, const Operand& w,
                           const void* bias, const MutableOperand& y, const Options& opt, cudaStream_t stream) {
  (void)opt;
  switch (plan.algo) {
    case Algo::Direct: return direct_forward(s, dtype, x, w, bias, y, stream);
    case Algo::Gemm: return gemm_forward(s, dtype, x, w, bias, y, stream);
    case Algo::TensorCore: return tensorcore_forward(s, dtype, x, w, bias, y, stream);
    default: return naive_forward(s, dtype, x, w, bias, y, stream);
  }
}

cudaError_t conv2d_backward_input(const Plan& plan, const ConvShape& s, DType dtype, const Operand& grad_output,
                                  const Operand& w, const MutableOperand& grad_input, const Options& opt,
                                  cudaStream_t stream) {
  (void)opt;
  switch (plan.algo) {
    case Algo::Gemm: return gemm_backward_input(s, dtype, grad_output, w, grad_input, stream);
    case Algo::TensorCore: return tensorcore_backward_input(s, dtype, grad_output, w, grad_input, stream);
    default: return naive_backward_input(s, dtype, grad_output, w, grad_input, stream);
  }
}

cudaError_t conv2d_backward_weight(const Plan& plan, const ConvShape& s, DType dtype, const Operand& grad_output,
                                   const Operand& x, const MutableOperand& grad_weight, void* workspace,
                                   const Options& opt, cudaStream_t stream) {
  if (plan.algo == Algo::Gemm)
    return gemm_backward_weight(s, dtype, grad_output, x, grad_weight, plan.splits, opt.deterministic, workspace,
                                stream);
  return naive_backward_weight(s, dtype, grad_output, x, grad_weight, stream);
}

cudaError_t conv2d_backward_bias(const ConvShape& s, DType dtype, const Operand& grad_output, void* grad_bias,
                                 cudaStream_t stream) {
  return bias_backward(s, dtype, grad_output, grad_bias, stream);
}

}  // namespace cuda
}  // namespace convkit
