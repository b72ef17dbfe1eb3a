#include "packed_cache.h"

#include "buffers.h"

#include <ATen/Parallel.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <list>
#include <mutex>
#include <optional>
#include <utility>

namespace convkit {
namespace cpu {
namespace {

struct Entry {
  std::vector<int64_t> key;
  at::Tensor source;  // bytes: the weights the packing came from (pooled, so a miss costs no page faults)
  Packing packing;
  size_t cost() const { return source.nbytes() + packing.packed.nbytes(); }
};

// memcmp(a, b, n) == 0, parts of a large block compared by threads of their
// own: a hit compares megabytes (256 x 256 3x3 filters: 2.4 MB, as much
// memory traffic as the packing it saves). Batch-1 256-channel 3x3 layer,
// 2-vCPU Xeon: forward 0.69 -> 0.63 of torch's time, forward + backward
// 0.97 -> 0.92.
bool same_bytes(const void* a, const void* b, size_t n) {
  constexpr int64_t kPart = 1 << 20;
  if (n < size_t(2 * kPart)) return std::memcmp(a, b, n) == 0;
  std::atomic<bool> same{true};
  const auto* pa = static_cast<const char*>(a);
  const auto* pb = static_cast<const char*>(b);
  at::parallel_for(0, int64_t(n), kPart, [&](int64_t begin, int64_t end) {
    if (same.load(std::memory_order_relaxed) && std::memcmp(pa + begin, pb + begin, end - begin) != 0) same = false;
  });
  return same;
}

size_t cache_limit() {
  const char* env = std::getenv("CONVKIT_PACKED_CACHE_MB");
  return (env && *env ? size_t(std::strtoull(env, nullptr, 10)) : size_t(64)) << 20;
}

class PackedCache {
 public:
  std::optional<Packing> find(const void* weights, size_t bytes, const std::vector<int64_t>& key) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = entries_.begin(); it != entries_.end(); ++it)
      if (it->key == key && it->source.nbytes() == bytes && same_bytes(it->source.const_data_ptr(), weights, bytes)) {
        entries_.splice(entries_.begin(), entries_, it);  // most recently used first
        return it->packing;
      }
    return std::nullopt;
  }

  void add(const void* weights, size_t bytes, std::vector<int64_t> key, const Packing& packing) {
    if (bytes + packing.packed.nbytes() > limit_) return;
    Entry entry{std::move(key), empty_pooled({int64_t(bytes)}, at::TensorOptions().dtype(at::kByte)), packing};
    std::memcpy(entry.source.mutable_data_ptr(), weights, bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    used_ += entry.cost();
    entries_.push_front(std::move(entry));
    while (used_ > limit_) {
      used_ -= entries_.back().cost();
      entries_.pop_back();
    }
  }

  bool enabled() const { return limit_ > 0; }

 private:
  std::mutex mutex_;
  std::list<Entry> entries_;
  size_t used_ = 0;
  const size_t limit_ = cache_limit();
};

// Never destroyed: cached tensors may outlive static destruction order.
PackedCache& cache() {
  static PackedCache* instance = new PackedCache();
  return *instance;
}

}  // namespace

Packing cached_packing(const void* weights, size_t bytes, std::vector<int64_t> key,
                       const std::function<Packing()>& pack) {
  PackedCache& c = cache();
  if (!c.enabled()) return pack();
  if (std::optional<Packing> hit = c.find(weights, bytes, key)) return *hit;
  Packing packing = pack();
  c.add(weights, bytes, std::move(key), packing);
  return packing;
}

}  // namespace cpu
}  // namespace convkit
