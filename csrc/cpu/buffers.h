// Large CPU buffers from a pool of reused blocks: outputs, padded copies and
// per-task workspaces. A fresh multi-megabyte allocation costs a page fault
// (and the kernel zeroing a page) per 4 KiB touched, often more than the
// convolution that writes it; blocks that come back from the pool are
// already mapped. Tensors made here free into the pool when their storage
// dies, so a training loop reuses the same blocks step after step.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/Allocator.h>

#include <algorithm>
#include <cstdint>
#include <utility>

namespace convkit {
namespace cpu {

// The pooled allocator: blocks of at least kPooledBytes are cached after use
// (up to CONVKIT_CPU_CACHE_MB, default 1024, in all; 0 turns caching off);
// smaller ones go to torch's CPU allocator.
c10::Allocator* pooled_allocator();

// at::empty / at::zeros (CPU options, memory format included) with storage
// from the pooled allocator.
at::Tensor empty_pooled(at::IntArrayRef sizes, const at::TensorOptions& options);
at::Tensor zeros_pooled(at::IntArrayRef sizes, const at::TensorOptions& options);

// An uninitialised array of n T from the pool, returned when it goes out of scope.
template <typename T>
class Scratch {
 public:
  explicit Scratch(int64_t n) : ptr_(pooled_allocator()->allocate(sizeof(T) * static_cast<size_t>(n))) {}
  T* data() const { return static_cast<T*>(ptr_.get()); }
  T& operator[](int64_t i) const { return data()[i]; }

 private:
  at::DataPtr ptr_;
};

// A zeroed work buffer of n T that vector kernels load from and store to.
// Pool blocks and torch's CPU allocator align to 64 bytes (malloc's 16 would
// split every other 32-byte load across two cache lines), and a large block
// that comes back from the pool is already mapped (no page faults per call).
template <typename T>
class WorkBuffer {
 public:
  explicit WorkBuffer(int64_t n) : scratch_(n), size_(n) { std::fill(begin(), end(), T(0)); }
  T* data() const { return scratch_.data(); }
  int64_t size() const { return size_; }
  T* begin() const { return data(); }
  T* end() const { return data() + size_; }

 private:
  Scratch<T> scratch_;
  int64_t size_;
};

}  // namespace cpu
}  // namespace convkit
