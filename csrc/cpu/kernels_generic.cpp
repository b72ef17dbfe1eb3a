// Portable build of the kernels (SSE2 on x86-64): runs on any CPU.
#define CONVKIT_ISA_NS generic
#define CONVKIT_ISA_NAME "generic"
#include "kernels_impl.h"

namespace convkit {
namespace cpu {
const KernelTable& kernels_generic() { return generic::table(); }
}  // namespace cpu
}  // namespace convkit
