#include "measured_choice.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <vector>

namespace convkit {
namespace cpu {
namespace {

thread_local WinogradChoice current = WinogradChoice::kRules;
std::atomic<bool> enabled{false};

std::mutex& table_mutex() {
  static std::mutex* m = new std::mutex();
  return *m;
}

// Never destroyed, like the other caches: ops may run during shutdown.
std::map<std::vector<int64_t>, WinogradChoice>& table() {
  static auto* t = new std::map<std::vector<int64_t>, WinogradChoice>();
  return *t;
}

// The best of two timed runs, after one that packs weights. Before each, a
// write over `junk` (larger than the caches) evicts the layer's data: inside
// a network the layers between two calls do that, and the choice must hold
// there (timed back to back, Winograd's large transformed filters look
// cheaper than they are).
double seconds(WinogradChoice choice, const std::function<void()>& run, std::vector<char>& junk) {
  const ScopedWinogradChoice scope(choice);
  run();
  double best = 0;
  for (int i = 0; i < 2; ++i) {
    for (size_t b = 0; b < junk.size(); b += 64) junk[b] += 1;
    asm volatile("" : : "r"(junk.data()) : "memory");  // the writes are the point: keep them
    const auto t0 = std::chrono::steady_clock::now();
    run();
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = i == 0 ? t : std::min(best, t);
  }
  return best;
}

}  // namespace

WinogradChoice winograd_choice() { return current; }

bool measuring_enabled() { return enabled.load(std::memory_order_relaxed); }

bool set_measuring(bool on) { return enabled.exchange(on); }

WinogradChoice fastest_choice(const std::vector<int64_t>& key, const std::function<void()>& run) {
  {
    std::lock_guard<std::mutex> lock(table_mutex());
    const auto it = table().find(key);
    if (it != table().end()) return it->second;
  }
  // Measured outside the lock: the runs use every thread.
  std::vector<char> junk(size_t(32) << 20);
  WinogradChoice best = WinogradChoice::kRules;
  const double rules = seconds(best, run, junk);
  double best_time = rules;
  for (const WinogradChoice other : {WinogradChoice::kNever, WinogradChoice::kWherever}) {
    const double t = seconds(other, run, junk);
    if (t < 0.97 * rules && t < best_time) {
      best = other;
      best_time = t;
    }
  }
  std::lock_guard<std::mutex> lock(table_mutex());
  table()[key] = best;
  return best;
}

int64_t measured_shapes() {
  std::lock_guard<std::mutex> lock(table_mutex());
  return int64_t(table().size());
}

ScopedWinogradChoice::ScopedWinogradChoice(WinogradChoice choice) : previous_(current) { current = choice; }

ScopedWinogradChoice::~ScopedWinogradChoice() { current = previous_; }

}  // namespace cpu
}  // namespace convkit
