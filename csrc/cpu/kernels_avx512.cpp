// AVX-512 build of the kernels: the wide kernels hold one 16-float tile row
// in a single 512-bit register and keep 8 pixels x 2 tiles in flight (32
// vector registers: each broadcast feeds two FMAs) and the batch-lane
// kernels 16 images a vector; the plane kernels take 512-bit vectors for the
// stretches of long rows that fill them, 256-bit ones elsewhere.
// Chosen at run time only on CPUs with AVX-512F/VL/BW/DQ (see kernels() in
// conv2d_cpu.cpp). Reduction blocks twice the AVX2 build's (32 KB of weights
// a tile): fewer, longer calls; 1x1 layers of 512+ channels 2-4% faster,
// the rest unchanged (2-vCPU Zen 5).
#if defined(__x86_64__)
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")
#define CONVKIT_ISA_NS avx512
#define CONVKIT_ISA_NAME "avx512"
#define CONVKIT_WIDE_VEC_BYTES 64
#define CONVKIT_WIDE_MR 8
#define CONVKIT_WIDE_TILES 2
#define CONVKIT_WIDE_BLOCK_BYTES 32768
#define CONVKIT_VEC_REGS 32
#define CONVKIT_VEC_CONSTRAINT "v"
#include "kernels_impl.h"

namespace convkit {
namespace cpu {
const KernelTable& kernels_avx512() { return avx512::table(); }
}  // namespace cpu
}  // namespace convkit
#else
#include "kernels.h"
namespace convkit {
namespace cpu {
const KernelTable& kernels_avx512() { return kernels_avx2(); }
}  // namespace cpu
}  // namespace convkit
#endif
