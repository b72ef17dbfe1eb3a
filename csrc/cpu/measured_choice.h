// Measured kernel choice (convkit.set_cpu_benchmark, like
// torch.backends.cudnn.benchmark). The rules that pick Winograd or the direct
// kernels were measured on a few machines, and elsewhere the faster one can
// differ: a 16 -> 32 5x5 layer at batch 256 runs faster on Winograd on a
// Zen 5 and on the direct kernels on a Xeon. When measuring is on, the first
// call of an op for a shape runs it under each choice, and later calls of
// that shape run the fastest.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

namespace convkit {
namespace cpu {

// Where Winograd runs on this thread now: by the rules (kRules), nowhere
// (kNever), or wherever the geometry allows (kWherever).
enum class WinogradChoice : int { kRules = -1, kNever = 0, kWherever = 1 };
WinogradChoice winograd_choice();

bool measuring_enabled();
bool set_measuring(bool enabled);  // returns the previous setting

// The fastest choice for `key` (the op, its shape, dtype and threads): on the
// first meeting it times run() under each choice (each run computes the whole
// result) and remembers the fastest. The rules keep their choice unless
// another is at least 3% faster: timings of a few runs are noisy.
WinogradChoice fastest_choice(const std::vector<int64_t>& key, const std::function<void()>& run);

// Number of shapes measured so far (tests).
int64_t measured_shapes();

// Sets this thread's choice for its lifetime.
class ScopedWinogradChoice {
 public:
  explicit ScopedWinogradChoice(WinogradChoice choice);
  ~ScopedWinogradChoice();
  ScopedWinogradChoice(const ScopedWinogradChoice&) = delete;
  ScopedWinogradChoice& operator=(const ScopedWinogradChoice&) = delete;

 private:
  WinogradChoice previous_;
};

}  // namespace cpu
}  // namespace convkit
