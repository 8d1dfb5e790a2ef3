// The core's one source of random numbers: SplitMix64 (Steele, Lea & Flood
// 2014), whose output is fixed by its few lines of integer arithmetic, so a
// seed gives the same sequence natively, in wasm and with any standard
// library (std::mt19937_64 fixes its engine too, but the <random>
// distributions differ between libstdc++ and libc++). Users: the induction
// test's tokens, the pruning curve's random orders, the trainer's
// initialisation and batches, the full circuits' token samples, and the
// tests' random data.
//
// The distributions are written out here for the same reason: uniform reals
// from the top 53 bits, bounded integers by rejection (no modulo bias),
// normals by Box-Muller (two per pair of uniforms; the second is kept).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <utility>
#include <vector>

namespace hs {

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}

  std::uint64_t next_u64() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  // Uniform in [0, 1), 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * (1.0 / 9007199254740992.0); }

  // Uniform integer in [0, n), n >= 1: the top partial block of 2^64 is
  // rejected so that every residue is equally likely.
  int below(int n) {
    if (n <= 1) return 0;
    const std::uint64_t un = static_cast<std::uint64_t>(n);
    const std::uint64_t limit =
        std::numeric_limits<std::uint64_t>::max() - std::numeric_limits<std::uint64_t>::max() % un;
    std::uint64_t r;
    do r = next_u64();
    while (r >= limit);
    return static_cast<int>(r % un);
  }

  // Standard normal (Box-Muller).
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1;
    do u1 = uniform();
    while (u1 <= 0.0);
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double a = 6.283185307179586 * u2;
    spare_ = r * std::sin(a);
    has_spare_ = true;
    return r * std::cos(a);
  }

 private:
  std::uint64_t state_;
  bool has_spare_ = false;
  double spare_ = 0;
};

// A uniformly random order of 0 .. n-1: Fisher-Yates over the next draws of
// `rng` (which advances). Its first k entries are a uniform sample of k.
inline std::vector<int> random_order(int n, Rng& rng) {
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  for (int i = n - 1; i > 0; --i) std::swap(order[i], order[rng.below(i + 1)]);
  return order;
}

}  // namespace hs
