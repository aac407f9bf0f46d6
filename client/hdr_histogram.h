// HdrHistogram: a high-dynamic-range histogram of non-negative integer
// values (latencies in nanoseconds here), in the style of Gil Tene's
// HdrHistogram: buckets are powers of two split into 2^kSubBits linear
// sub-buckets, so every recorded value is kept to a relative precision of
// 2^-kSubBits (~0.1%) from 1 ns to hours, in fixed memory.
//
// Not thread-safe: use one per thread and Merge().
#ifndef MOE_CLIENT_HDR_HISTOGRAM_H_
#define MOE_CLIENT_HDR_HISTOGRAM_H_

#include <cstdint>
#include <vector>

namespace moe {

class HdrHistogram {
 public:
  static constexpr int kSubBits = 10;  // 1024 sub-buckets: <= 0.1% error

  HdrHistogram();

  void Record(int64_t value);  // negative values count as 0
  void Merge(const HdrHistogram& other);
  void Reset();

  int64_t count() const { return count_; }
  int64_t min() const { return count_ ? min_ : 0; }
  int64_t max() const { return max_; }
  double mean() const { return count_ ? sum_ / static_cast<double>(count_) : 0.0; }

  // The smallest recorded-bucket value v such that at least `percentile`%
  // of the values are <= v (percentile in [0, 100]); reported as the
  // bucket's upper bound, clamped to max(). 0 when empty.
  int64_t ValueAtPercentile(double percentile) const;

 private:
  static int BucketIndex(int64_t v);
  static int64_t BucketUpperBound(int index);

  std::vector<int64_t> counts_;
  int64_t count_ = 0;
  int64_t min_ = INT64_MAX;
  int64_t max_ = 0;
  double sum_ = 0;
};

}  // namespace moe

#endif  // MOE_CLIENT_HDR_HISTOGRAM_H_
