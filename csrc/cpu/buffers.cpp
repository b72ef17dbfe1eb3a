#include "buffers.h"

#include <ATen/EmptyTensor.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace convkit {
namespace cpu {
namespace {

// From malloc's default mmap threshold on: larger blocks would be mapped, faulted
// in and unmapped again on every call.
constexpr size_t kPooledBytes = size_t(128) << 10;
constexpr size_t kHugePage = size_t(2) << 20;

// Blocks come in 64 KiB steps below 2 MiB and in whole 2 MiB pages above,
// so a size seen again finds its block.
size_t capacity_for(size_t bytes) {
  const size_t step = bytes >= kHugePage ? kHugePage : size_t(64) << 10;
  return (bytes + step - 1) / step * step;
}

// Blocks of whole 2 MiB pages are mapped 2 MiB-aligned and marked for
// transparent huge pages: a first touch then faults once per 2 MiB.
void* map_block(size_t capacity) {
#if defined(__linux__)
  if (capacity >= kHugePage) {
    void* raw = mmap(nullptr, capacity + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return nullptr;
    const uintptr_t start = reinterpret_cast<uintptr_t>(raw), end = start + capacity + kHugePage;
    const uintptr_t aligned = (start + kHugePage - 1) / kHugePage * kHugePage;
    if (aligned > start) munmap(raw, aligned - start);
    if (end > aligned + capacity) munmap(reinterpret_cast<void*>(aligned + capacity), end - aligned - capacity);
#ifdef MADV_HUGEPAGE
    madvise(reinterpret_cast<void*>(aligned), capacity, MADV_HUGEPAGE);
#endif
    return reinterpret_cast<void*>(aligned);
  }
#endif
  return std::aligned_alloc(64, capacity);
}

void unmap_block(void* data, size_t capacity) {
#if defined(__linux__)
  if (capacity >= kHugePage) {
    munmap(data, capacity);
    return;
  }
#endif
  std::free(data);
}

struct Block {
  void* data;
  size_t capacity;
};

size_t cache_limit() {
#if defined(__SANITIZE_ADDRESS__)
  return 0;  // every block goes back to the system, so AddressSanitizer sees each use after free
#else
  const char* env = std::getenv("CONVKIT_CPU_CACHE_MB");
  return (env && *env ? size_t(std::strtoull(env, nullptr, 10)) : size_t(1024)) << 20;
#endif
}

// Free blocks by capacity; a request takes the smallest that fits with at
// most a quarter to spare (of those, the one freed last). Past the limit,
// the smallest free blocks go first.
class BlockPool {
 public:
  Block* take(size_t bytes) {
    const size_t capacity = capacity_for(bytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto it = free_.lower_bound(capacity);
      if (it != free_.end() && it->first <= capacity + capacity / 4) {
        Block* block = it->second;
        free_.erase(it);
        cached_ -= block->capacity;
        return block;
      }
    }
    void* data = map_block(capacity);
    if (!data) {
      release_all();
      data = map_block(capacity);
    }
    TORCH_CHECK(data, "convkit: out of memory (could not allocate ", capacity, " bytes)");
    return new Block{data, capacity};
  }

  void give(Block* block) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      while (cached_ + block->capacity > limit_ && !free_.empty()) evict(free_.begin());
      if (cached_ + block->capacity <= limit_) {
        // First among its capacity: the next request takes the block freed last, still in cache.
        free_.emplace_hint(free_.lower_bound(block->capacity), block->capacity, block);
        cached_ += block->capacity;
        return;
      }
    }
    unmap_block(block->data, block->capacity);
    delete block;
  }

 private:
  void evict(std::multimap<size_t, Block*>::iterator it) {
    cached_ -= it->second->capacity;
    unmap_block(it->second->data, it->second->capacity);
    delete it->second;
    free_.erase(it);
  }

  void release_all() {
    std::lock_guard<std::mutex> lock(mutex_);
    while (!free_.empty()) evict(free_.begin());
  }

  std::mutex mutex_;
  std::multimap<size_t, Block*> free_;
  size_t cached_ = 0;
  const size_t limit_ = cache_limit();
};

// Never destroyed: tensors may free their blocks during interpreter shutdown.
BlockPool& pool() {
  static BlockPool* instance = new BlockPool();
  return *instance;
}

void give_back(void* ctx) { pool().give(static_cast<Block*>(ctx)); }

class PooledAllocator final : public c10::Allocator {
 public:
  at::DataPtr allocate(size_t bytes) override {
    if (bytes < kPooledBytes) return c10::GetCPUAllocator()->allocate(bytes);
    Block* block = pool().take(bytes);
    return {block->data, block, &give_back, at::Device(at::kCPU)};
  }
  void copy_data(void* dest, const void* src, size_t count) const override { default_copy_data(dest, src, count); }
};

}  // namespace

c10::Allocator* pooled_allocator() {
  static PooledAllocator* allocator = new PooledAllocator();  // outlives every tensor, like the pool
  return allocator;
}

at::Tensor empty_pooled(at::IntArrayRef sizes, const at::TensorOptions& options) {
  TORCH_INTERNAL_ASSERT(options.device().is_cpu());
  return at::detail::empty_generic(sizes, pooled_allocator(), c10::DispatchKeySet(c10::DispatchKey::CPU),
                                   options.dtype().toScalarType(), options.memory_format_opt());
}

at::Tensor zeros_pooled(at::IntArrayRef sizes, const at::TensorOptions& options) {
  return empty_pooled(sizes, options).zero_();
}

}  // namespace cpu
}  // namespace convkit
