// AVX2 + FMA build of the kernels; chosen at run time only on CPUs that have
// both (see kernels() in conv2d_cpu.cpp). Everything here lives in its own
// namespace so no AVX2 code can stand in for a generic definition.
#if defined(__x86_64__) || defined(__i386__)
#pragma GCC target("avx2,fma")
#define CONVKIT_ISA_NS avx2
#define CONVKIT_ISA_NAME "avx2"
#define CONVKIT_VEC_CONSTRAINT "x"
#include "kernels_impl.h"

namespace convkit {
namespace cpu {
const KernelTable& kernels_avx2() { return avx2::table(); }
}  // namespace cpu
}  // namespace convkit
#else
#include "kernels.h"
namespace convkit {
namespace cpu {
const KernelTable& kernels_avx2() { return kernels_generic(); }
}  // namespace cpu
}  // namespace convkit
#endif
