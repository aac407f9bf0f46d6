#include "client/hdr_histogram.h"

#include <algorithm>
#include <cmath>

namespace moe {
namespace {

constexpr int kSub = 1 << HdrHistogram::kSubBits;
// Values below kSub are exact (one bucket each); above, each power of two
// [2^e, 2^(e+1)) with e >= kSubBits has kSub/2 buckets of width 2^(e-kSubBits+1).
constexpr int kHalf = kSub / 2;
constexpr int kMaxExponent = 62;
constexpr int kBuckets = kSub + (kMaxExponent - HdrHistogram::kSubBits + 1) * kHalf;

int Msb(uint64_t v) { return 63 - __builtin_clzll(v); }

}  // namespace

HdrHistogram::HdrHistogram() : counts_(kBuckets, 0) {}

int HdrHistogram::BucketIndex(int64_t v) {
  if (v < kSub) return static_cast<int>(std::max<int64_t>(v, 0));
  const int e = Msb(static_cast<uint64_t>(v));           // >= kSubBits
  const int shift = e - HdrHistogram::kSubBits + 1;      // bucket width 2^shift
  const int sub = static_cast<int>(v >> shift) - kHalf;  // in [0, kHalf)
  return kSub + (e - HdrHistogram::kSubBits) * kHalf + sub;
}

int64_t HdrHistogram::BucketUpperBound(int index) {
  if (index < kSub) return index;
  const int rel = index - kSub;
  const int e = rel / kHalf + HdrHistogram::kSubBits;
  const int sub = rel % kHalf;
  const int shift = e - HdrHistogram::kSubBits + 1;
  return ((static_cast<int64_t>(sub + kHalf) + 1) << shift) - 1;
}

void HdrHistogram::Record(int64_t value) {
  value = std::max<int64_t>(value, 0);
  ++counts_[static_cast<size_t>(BucketIndex(value))];
  ++count_;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
  sum_ += static_cast<double>(value);
}

void HdrHistogram::Merge(const HdrHistogram& o) {
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += o.counts_[i];
  count_ += o.count_;
  if (o.count_ > 0) {
    min_ = std::min(min_, o.min_);
    max_ = std::max(max_, o.max_);
  }
  sum_ += o.sum_;
}

void HdrHistogram::Reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  count_ = 0;
  min_ = INT64_MAX;
  max_ = 0;
  sum_ = 0;
}

int64_t HdrHistogram::ValueAtPercentile(double percentile) const {
  if (count_ == 0) return 0;
  percentile = std::clamp(percentile, 0.0, 100.0);
  // The rank (1-based) of the value at this percentile, as a sorted-array
  // reference computes it: ceil(p/100 * n), at least 1.
  const int64_t rank = std::max<int64_t>(
      1, static_cast<int64_t>(std::ceil(percentile / 100.0 * static_cast<double>(count_))));
  int64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::min(BucketUpperBound(static_cast<int>(i)), max_);
  }
  return max_;
}

}  // namespace moe
