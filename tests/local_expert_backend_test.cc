// LocalExpertBackend's two threading plans (one job at a time on every
// thread; int8 and int4 jobs of at most kLaneRows rows side by side, one
// per thread) give the same bits, whatever the mix of jobs, and an
// unhosted expert is refused.
#include "experts/local_expert_backend.h"

#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "common/seeded_random.h"
#include "experts/openmp_threads.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/naive_reference.h"
#include "tests/status_matchers.h"

namespace moe {
namespace {

using ::moe::testing::RandomTokens;
using ::moe::testing::StatusIs;
using ::testing::HasSubstr;

constexpr int64_t kDModel = 96;  // three activation groups
constexpr int kExperts = 5;

FfnWeights MakeWeights(const FfnSpec& s, uint64_t seed) {
  SeededRandom rng(seed);
  const float li = 1.0f / std::sqrt(static_cast<float>(s.d_model));
  const float lf = 1.0f / std::sqrt(static_cast<float>(s.d_ff));
  FfnWeights w;
  w.w1 = Tensor::FromFloats(DType::kF32, {s.d_ff, s.d_model},
                            rng.UniformVector(s.d_ff * s.d_model, li));
  w.w3 = Tensor::FromFloats(DType::kF32, {s.d_ff, s.d_model},
                            rng.UniformVector(s.d_ff * s.d_model, li));
  w.w2 = Tensor::FromFloats(DType::kF32, {s.d_model, s.d_ff},
                            rng.UniformVector(s.d_model * s.d_ff, lf));
  return w;
}

// kExperts SwiGLU experts (96 -> 200) in `compute`; expert 3 not hosted.
std::unique_ptr<LocalExpertBackend> MakeBackend(DType compute, MatmulCacheRegistry* registry) {
  const FfnSpec spec = MakeFfnSpec(kDModel, 200, Activation::kSilu, true, false);
  std::vector<std::unique_ptr<DenseFfn>> experts(kExperts);
  for (int e = 0; e < kExperts; ++e) {
    if (e == 3) continue;
    auto ffn = DenseFfn::Create(spec, MakeWeights(spec, 100 + e), compute, registry, "expert");
    EXPECT_TRUE(ffn.ok()) << ffn.status();
    experts[static_cast<size_t>(e)] = *std::move(ffn);
  }
  return std::make_unique<LocalExpertBackend>(std::move(experts));
}

class LocalExpertBackendTest : public ::testing::TestWithParam<DType> {};

TEST_P(LocalExpertBackendTest, SideBySideJobsGiveTheBitsOfJobsRunAlone) {
  if (OpenMpMaxThreads() < 2) {
    GTEST_SKIP() << "one OpenMP thread: jobs never run side by side here";
  }
  MatmulCacheRegistry registry;
  auto backend = MakeBackend(GetParam(), &registry);
  // Batches of jobs: all small (side by side for int8 and int4), one
  // above kLaneRows (one at a time), repeated experts.
  const std::vector<std::vector<std::pair<int, int64_t>>> batches = {
      {{0, 1}, {1, 1}},
      {{0, 1}, {1, 2}, {2, 3}, {4, 4}},
      {{4, 2}, {0, 4}, {2, 1}},
      {{0, 1}, {1, LocalExpertBackend::kLaneRows + 1}, {2, 2}},
      {{2, 3}, {2, 3}, {2, 3}}};
  for (size_t b = 0; b < batches.size(); ++b) {
    const auto& spec = batches[b];
    std::vector<std::vector<float>> in, together, alone;
    for (size_t j = 0; j < spec.size(); ++j) {
      in.push_back(RandomTokens(spec[j].second * kDModel, static_cast<uint32_t>(10 * b + j)));
      together.emplace_back(in.back().size(), -1.0f);
      alone.emplace_back(in.back().size(), -2.0f);
    }
    std::vector<ExpertJob> jobs;
    for (size_t j = 0; j < spec.size(); ++j) {
      jobs.push_back({spec[j].first, in[j].data(), spec[j].second, together[j].data()});
    }
    ASSERT_OK(backend->Run(jobs));
    for (size_t j = 0; j < spec.size(); ++j) {
      ExpertJob one = jobs[j];
      one.out = alone[j].data();
      ASSERT_OK(backend->Run({one}));
      EXPECT_EQ(0, std::memcmp(together[j].data(), alone[j].data(), alone[j].size() * 4))
          << "batch " << b << ", job " << j << " (expert " << spec[j].first << ")";
    }
  }
}

TEST_P(LocalExpertBackendTest, UnhostedExpertIsRefusedBeforeAnyJobRuns) {
  MatmulCacheRegistry registry;
  auto backend = MakeBackend(GetParam(), &registry);
  std::vector<float> x = RandomTokens(kDModel, 1), y0(kDModel, 7.0f), y3(kDModel);
  EXPECT_THAT(
      backend->Run({ExpertJob{0, x.data(), 1, y0.data()}, ExpertJob{3, x.data(), 1, y3.data()}}),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("expert 3")));
  EXPECT_EQ(y0[0], 7.0f);  // checked up front: expert 0 did not run either
}

INSTANTIATE_TEST_SUITE_P(Dtypes, LocalExpertBackendTest,
                         ::testing::Values(DType::kI8, DType::kI4, DType::kBF16, DType::kF32),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(DTypeName(info.param));
                         });

}  // namespace
}  // namespace moe
