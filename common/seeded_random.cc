#include "common/seeded_random.h"

namespace moe {

std::vector<float> SeededRandom::UniformVector(int64_t n, float limit) {
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = Uniform(limit);
  return v;
}

uint64_t DeriveSeed(uint64_t base_seed, absl::string_view name) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : name) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  SeededRandom mix(h ^ (base_seed * 0x9e3779b97f4a7c15ULL));
  return mix.NextU64();
}

}  // namespace moe
