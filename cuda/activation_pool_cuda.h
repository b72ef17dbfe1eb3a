// Launchers for the fused layer's epilogue (convkit::activation_avg_pool2d):
// torch-free, contiguous NCHW planes in, a cudaError_t out.
#pragma once
#include <cuda_runtime_api.h>

#include "activation_pool.h"
#include "conv2d_cuda.h"

namespace convkit {
namespace cuda {

// y = act(z) everywhere; pooled = mean of y over each k x k window (stride k).
cudaError_t activation_pool_forward(const PoolShape& s, Activation act, DType dtype, const void* z, void* y,
                                  void* pooled, cudaStream_t stream);

// grad_z = spread(grad_pooled) / k^2 * act'(y), spread = 0 outside the windows.
cudaError_t activation_pool_backward(const PoolShape& s, Activation act, DType dtype, const void* grad_pooled,
                                           const void* y, void* grad_z, cudaStream_t stream);

}  // namespace cuda
}  // namespace convkit
