// ArrivalSchedule: the intended send times of an open-loop load, fixed in
// advance of the server's behaviour (so a stalled server cannot slow the
// load down: the basis of coordinated-omission-free latencies).
#ifndef MOE_CLIENT_ARRIVAL_SCHEDULE_H_
#define MOE_CLIENT_ARRIVAL_SCHEDULE_H_

#include <cmath>
#include <cstdint>

#include "absl/time/time.h"
#include "common/seeded_random.h"

namespace moe {

class ArrivalSchedule {
 public:
  // `rate_per_s` > 0. Constant: request i at start + i / rate. Poisson:
  // exponential gaps of mean 1 / rate from a seeded generator.
  ArrivalSchedule(absl::Time start, double rate_per_s, bool poisson, uint64_t seed)
      : start_(start), gap_s_(1.0 / rate_per_s), poisson_(poisson), rng_(seed) {}

  // The intended time of the next request.
  absl::Time Next() {
    const absl::Time t = start_ + absl::Seconds(offset_s_);
    double gap = gap_s_;
    if (poisson_) {
      // Inverse transform; 1 - U in (0, 1] avoids log(0).
      gap = -std::log(1.0 - static_cast<double>(rng_.Uniform01())) * gap_s_;
    }
    offset_s_ += gap;
    return t;
  }

 private:
  const absl::Time start_;
  const double gap_s_;
  const bool poisson_;
  SeededRandom rng_;
  double offset_s_ = 0;  // summed gaps, kept in double to avoid drift
};

}  // namespace moe

#endif  // MOE_CLIENT_ARRIVAL_SCHEDULE_H_
