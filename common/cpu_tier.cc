#include "common/cpu_tier.h"

#include <cpuid.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdint>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace moe {
namespace {

struct CpuFeatures {
  bool baseline = false;  // AVX2, FMA, F16C with the OS saving YMM state
  bool avx512 = false;    // F, DQ, BW, VL with the OS saving ZMM state
  bool avx512_bf16 = false;
  bool avx512_vnni = false;
  bool amx = false;  // TILE, BF16, INT8 with the OS saving tile state
};

uint64_t Xcr0() {
  uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

CpuFeatures ReadCpuFeatures() {
  CpuFeatures f;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1,
             f16c = (c >> 29) & 1;
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = Xcr0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6;
  const bool zmm_state = (xcr0 & 0xe6) == 0xe6;
  const bool tile_state = (xcr0 & 0x60000) == 0x60000;
  unsigned max_leaf = __get_cpuid_max(0, nullptr);
  if (max_leaf < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx2 = (b >> 5) & 1;
  const bool avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512bw = (b >> 30) & 1,
             avx512vl = (b >> 31) & 1;
  const bool vnni = (c >> 11) & 1;
  const bool amx_bf16 = (d >> 22) & 1, amx_tile = (d >> 24) & 1, amx_int8 = (d >> 25) & 1;
  const unsigned subleaves = a;
  bool bf16 = false;
  if (subleaves >= 1) {
    unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0;
    __cpuid_count(7, 1, a1, b1, c1, d1);
    bf16 = (a1 >> 5) & 1;
  }
  f.baseline = ymm_state && avx2 && fma && f16c;
  f.avx512 = f.baseline && zmm_state && avx512f && avx512dq && avx512bw && avx512vl;
  f.avx512_vnni = f.avx512 && vnni;
  f.avx512_bf16 = f.avx512_vnni && bf16;
  f.amx = f.avx512_bf16 && tile_state && amx_tile && amx_bf16 && amx_int8;
  return f;
}

const CpuFeatures& Features() {
  static const CpuFeatures features = ReadCpuFeatures();
  return features;
}

absl::Mutex cap_mu(absl::kConstInit);
bool cap_set ABSL_GUARDED_BY(cap_mu) = false;
CpuTier cap_value ABSL_GUARDED_BY(cap_mu) = CpuTier::kAmx;
// Set once, by the first ActiveCpuTier(): -1 until then.
std::atomic<int> active_tier{-1};
bool cap_from_flag ABSL_GUARDED_BY(cap_mu) = false;

}  // namespace

const char* CpuTierName(CpuTier tier) {
  switch (tier) {
    case CpuTier::kAvx2:
      return "avx2";
    case CpuTier::kAvx512:
      return "avx512";
    case CpuTier::kAvx512Bf16:
      return "avx512_bf16";
    case CpuTier::kAmx:
      return "amx";
  }
  return "?";
}

absl::StatusOr<CpuTier> ParseCpuTier(absl::string_view name) {
  std::string n(name);
  for (char& ch : n) ch = ch == '-' ? '_' : static_cast<char>(std::tolower(ch));
  for (CpuTier t : kAllCpuTiers) {
    if (n == CpuTierName(t)) return t;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown CPU tier '", name, "' (expected avx2, avx512, avx512_bf16 or amx)"));
}

bool CpuMeetsBaseline() { return Features().baseline; }

bool CpuSupportsTier(CpuTier tier) {
  const CpuFeatures& f = Features();
  switch (tier) {
    case CpuTier::kAvx2:
      return f.baseline;
    case CpuTier::kAvx512:
      return f.avx512;
    case CpuTier::kAvx512Bf16:
      return f.avx512_bf16;
    case CpuTier::kAmx:
      return f.amx;
  }
  return false;
}

CpuTier DetectedCpuTier() {
  CpuTier best = CpuTier::kAvx2;
  for (CpuTier t : kAllCpuTiers) {
    if (CpuSupportsTier(t)) best = t;
  }
  return best;
}

absl::Status SetMaxCpuTier(CpuTier cap) {
  absl::MutexLock lock(&cap_mu);
  if (active_tier.load() >= 0 && !(cap_set && cap_value == cap)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the CPU tier is already fixed at ", CpuTierName(static_cast<CpuTier>(active_tier.load())),
        "; --max_isa=", CpuTierName(cap), " must be applied before any kernel is created"));
  }
  cap_set = true;
  cap_value = cap;
  cap_from_flag = true;
  return absl::OkStatus();
}

absl::StatusOr<CpuTier> MaxCpuTierFromEnvironment() {
  const char* env = std::getenv("MOE_MAX_ISA");
  if (env == nullptr || *env == '\0') return CpuTier::kAmx;
  auto tier = ParseCpuTier(env);
  if (!tier.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("MOE_MAX_ISA: ", tier.status().message()));
  }
  return *tier;
}

CpuTier ActiveCpuTier() {
  const int now = active_tier.load(std::memory_order_acquire);
  if (now >= 0) return static_cast<CpuTier>(now);
  absl::MutexLock lock(&cap_mu);
  if (active_tier.load() >= 0) return static_cast<CpuTier>(active_tier.load());
  CpuTier cap = cap_value;
  if (!cap_set) {
    auto env = MaxCpuTierFromEnvironment();
    cap = env.ok() ? *env : CpuTier::kAmx;
  }
  const CpuTier active = std::min(cap, DetectedCpuTier());
  active_tier.store(static_cast<int>(active), std::memory_order_release);
  return active;
}

absl::StatusOr<CpuTier> ApplyMaxIsa(const std::string& flag) {
  if (!flag.empty()) {
    auto cap = ParseCpuTier(flag);
    if (!cap.ok())
      return absl::InvalidArgumentError(absl::StrCat("--max_isa: ", cap.status().message()));
    auto st = SetMaxCpuTier(*cap);
    if (!st.ok()) return st;
  } else {
    auto env = MaxCpuTierFromEnvironment();
    if (!env.ok()) return env.status();
  }
  return ActiveCpuTier();
}

std::string CpuTierDescription() {
  const CpuTier active = ActiveCpuTier();
  const CpuTier detected = DetectedCpuTier();
  std::string s = absl::StrCat(CpuTierName(active), " (CPU: ", CpuTierName(detected));
  if (active != detected) {
    absl::MutexLock lock(&cap_mu);
    if (cap_from_flag) {
      absl::StrAppend(&s, ", capped by --max_isa=", CpuTierName(cap_value));
    } else if (const char* env = std::getenv("MOE_MAX_ISA")) {
      absl::StrAppend(&s, ", capped by MOE_MAX_ISA=", env);
    }
  }
  absl::StrAppend(&s, ")");
  return s;
}

}  // namespace moe
