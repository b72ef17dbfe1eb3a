// Launchers for convkit's CUDA kernels. Torch-free: raw pointers, element
// strides, sizes and a stream in; a cudaError_t out (the torch glue in
// csrc/cuda/ raises on anything but cudaSuccess).
//
// Every launcher accepts tensors with arbitrary (non-negative) element
// strides, except the tensor-core path, whose operands must be channels-last
// contiguous (see Plan::needs_channels_last). The glue asks for a Plan first,
// prepares operands and workspace the way it says, then launches.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "conv_shape.h"

namespace convkit {
namespace cuda {

enum class DType : int { Float32 = 0, Float64 = 1, Float16 = 2, BFloat16 = 3 };

// Which kernel family runs a pass.
enum class Algo : int {
  Auto = 0,        // let the planner choose (the default)
  Naive = 1,       // one thread (or block) per output element: any dtype, shape and layout
  Direct = 2,      // forward only: input tile + halo and weights in shared memory (small layers)
  Gemm = 3,        // SIMT implicit GEMM, register-tiled, split-K for the weight gradient
  TensorCore = 4,  // implicit GEMM on channels-last operands with cp.async + mma.sync
};

// A 4-D operand: base pointer and element strides in (N, C, H, W) order
// (for a weight: out channels, in channels per group, kernel h, kernel w).
struct Operand {
  const void* data = nullptr;
  int64_t stride[4] = {0, 0, 0, 0};
};

struct MutableOperand {
  void* data = nullptr;
  int64_t stride[4] = {0, 0, 0, 0};
};

struct Options {
  bool allow_tf32 = false;     // at::globalContext().allowTF32CuDNN()
  bool deterministic = false;  // at::globalContext().deterministicAlgorithms()
  Algo force = Algo::Auto;     // CONVKIT_CUDA_ALGO (tests pin each path); ignored where its preconditions fail
};

struct Plan {
  Algo algo = Algo::Naive;
  // The tensor-core path reads NHWC-contiguous activations and a KRSC
  // weight (backward input: the weight regrouped as [G, C/G, R, S, K/G]),
  // every base pointer 16-byte aligned.
  bool needs_channels_last = false;
  int splits = 1;               // weight gradient: split-K slices
  int64_t workspace_bytes = 0;  // scratch the glue allocates and passes in
};

Plan plan_forward(const ConvShape& s, DType dtype, const Options& opt);
Plan plan_backward_input(const ConvShape& s, DType dtype, const Options& opt);
Plan plan_backward_weight(const ConvShape& s, DType dtype, const Options& opt);

// y = conv2d(x, w) + bias. bias may be null (contiguous, K elements).
cudaError_t conv2d_forward(const Plan& plan, const ConvShape& s, DType dtype, const Operand& x, const Operand& w,
                           const void* bias, const MutableOperand& y, const Options& opt, cudaStream_t stream);

// grad_input from grad_output and the weight. For the tensor-core plan, `w`
// is the regrouped weight [G, C/G, R, S, K/G] (contiguous; strides ignored).
cudaError_t conv2d_backward_input(const Plan& plan, const ConvShape& s, DType dtype, const Operand& grad_output,
                                  const Operand& w, const MutableOperand& grad_input, const Options& opt,
                                  cudaStream_t stream);

// grad_weight from grad_output and the input; `workspace` holds
// plan.workspace_bytes bytes (may be null when that is 0).
cudaError_t conv2d_backward_weight(const Plan& plan, const ConvShape& s, DType dtype, const Operand& grad_output,
                                   const Operand& x, const MutableOperand& grad_weight, void* workspace,
                                   const Options& opt, cudaStream_t stream);

// grad_bias[k] = sum over (n, p, q) of grad_output[n, k, p, q] (fixed order).
cudaError_t conv2d_backward_bias(const ConvShape& s, DType dtype, const Operand& grad_output, void* grad_bias,
                                 cudaStream_t stream);

const char* algo_name(Algo algo);

}  // namespace cuda
}  // namespace convkit
