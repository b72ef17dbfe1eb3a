// Kernel families behind the public launchers of conv2d_cuda.h. Each family
// states when it applies (`*_supported`); the planner in conv2d_dispatch.cu
// picks one and the naive family is always available.
#pragma once
#include "conv2d_cuda.h"

namespace convkit {
namespace cuda {

// Element strides of a 4-D operand, in a struct kernels take by value.
struct Str4 {
  int64_t n, c, h, w;
};

inline Str4 strides_of(const Operand& t) { return {t.stride[0], t.stride[1], t.stride[2], t.stride[3]}; }
inline Str4 strides_of(const MutableOperand& t) { return {t.stride[0], t.stride[1], t.stride[2], t.stride[3]}; }

// Naive: simple loops, any shape, dtype and strides. Reference for the others.
cudaError_t naive_forward(const ConvShape& s, DType dtype, const Operand& x, const Operand& w, const void* bias,
                          const MutableOperand& y, cudaStream_t stream);
cudaError_t naive_backward_input(const ConvShape& s, DType dtype, const Operand& gy, const Operand& w,
                                 const MutableOperand& gx, cudaStream_t stream);
cudaError_t naive_backward_weight(const ConvShape& s, DType dtype, const Operand& gy, const Operand& x,
                                  const MutableOperand& gw, cudaStream_t stream);
cudaError_t bias_backward(const ConvShape& s, DType dtype, const Operand& gy, void* gb, cudaStream_t stream);
bool naive_supported(const ConvShape& s);

// Direct forward for small layers (LeNet-sized, depthwise).
bool direct_supported(const ConvShape& s, DType dtype);
cudaError_t direct_forward(const ConvShape& s, DType dtype, const Operand& x, const Operand& w, const void* bias,
                           const MutableOperand& y, cudaStream_t stream);

// SIMT implicit GEMM.
bool gemm_supported_forward(const ConvShape& s);
bool gemm_supported_backward_input(const ConvShape& s);
bool gemm_supported_backward_weight(const ConvShape& s);
int gemm_weight_splits(const ConvShape& s, DType dtype);
int64_t gemm_weight_workspace_bytes(const ConvShape& s, DType dtype, int splits, bool deterministic);
cudaError_t gemm_forward(const ConvShape& s, DType dtype, const Operand& x, const Operand& w, const void* bias,
                         const MutableOperand& y, cudaStream_t stream);
cudaError_t gemm_backward_input(const ConvShape& s, DType dtype, const Operand& gy, const Operand& w,
                                const MutableOperand& gx, cudaStream_t stream);
cudaError_t gemm_backward_weight(const ConvShape& s, DType dtype, const Operand& gy, const Operand& x,
                                 const MutableOperand& gw, int splits, bool deterministic, void* workspace,
                                 cudaStream_t stream);

// Tensor-core implicit GEMM (channels-last operands).
bool tensorcore_supported_forward(const ConvShape& s, DType dtype, bool allow_tf32);
bool tensorcore_supported_backward_input(const ConvShape& s, DType dtype, bool allow_tf32);
cudaError_t tensorcore_forward(const ConvShape& s, DType dtype, const Operand& x, const Operand& w,
                               const void* bias, const MutableOperand& y, cudaStream_t stream);
cudaError_t tensorcore_backward_input(const ConvShape& s, DType dtype, const Operand& gy, const Operand& wt,
                                      const MutableOperand& gx, cudaStream_t stream);

}  // namespace cuda
}  // namespace convkit
