// A small, fully specified pseudo-random generator (SplitMix64), used for
// synthetic weights and test tokens. Unlike std::normal_distribution its
// output is the same on every standard library and platform, so a preset
// seed names the same weights everywhere.
#ifndef MOE_COMMON_SEEDED_RANDOM_H_
#define MOE_COMMON_SEEDED_RANDOM_H_

#include <cstdint>
#include <vector>

#include "absl/strings/string_view.h"

namespace moe {

class SeededRandom {
 public:
  explicit SeededRandom(uint64_t seed) : state_(seed) {}

  uint64_t NextU64() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  // Uniform in [0, 1), 24 random bits.
  float Uniform01() { return static_cast<float>(NextU64() >> 40) * (1.0f / 16777216.0f); }

  // Uniform in [-limit, limit).
  float Uniform(float limit) { return (2.0f * Uniform01() - 1.0f) * limit; }

  // n values uniform in [-limit, limit).
  std::vector<float> UniformVector(int64_t n, float limit);

 private:
  uint64_t state_;
};

// A 64-bit seed derived from a base seed and a name (FNV-1a of the name mixed
// with the seed), so every tensor of a preset has its own reproducible
// stream that does not depend on the order tensors are generated in.
uint64_t DeriveSeed(uint64_t base_seed, absl::string_view name);

}  // namespace moe

#endif  // MOE_COMMON_SEEDED_RANDOM_H_
