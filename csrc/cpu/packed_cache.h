// Packed (or transformed) weights, kept for the next call with the same
// weights: inference and evaluation loops run a layer with unchanged filters
// call after call, and on small inputs packing them is a large share of a
// pass (Winograd at batch 1: a quarter).
#pragma once
#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace convkit {
namespace cpu {

// Packed weights, and whether every weight they came from is finite (the
// passes that need it then skip a scan of the weights on a hit).
struct Packing {
  at::Tensor packed;
  bool finite;
};

// The packing of the `bytes` bytes of weights at `weights` under `key` (what
// the packing depends on besides the values: kind, sizes, strides, dtype),
// from pack() on a miss. An entry holds a copy of the weights it came from
// and serves only while they compare equal byte for byte, so no in-place
// update (an optimizer step, a write through .data) can meet stale packed
// weights. The packed tensor must not be written.
// CONVKIT_PACKED_CACHE_MB (default 64) bounds the entries; 0 turns it off.
Packing cached_packing(const void* weights, size_t bytes, std::vector<int64_t> key,
                       const std::function<Packing()>& pack);

}  // namespace cpu
}  // namespace convkit
