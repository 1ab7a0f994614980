// What the load generators (policy_load, content_load) share: the latency histogram and the
// kinds of errors they count. Header-only and Asio-free, like the generators themselves.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>

namespace bench {

// Latencies in microseconds: 1 µs buckets below 100 ms, then 1 ms buckets up to 10 minutes;
// percentiles by nearest rank.
class Histogram {
 public:
  static constexpr uint64_t kFineLimitUs = 100'000;    // 1 µs buckets below 100 ms
  static constexpr uint64_t kCoarseBuckets = 600'000;  // then 1 ms buckets up to 10 minutes

  Histogram() : fine_(kFineLimitUs, 0), coarse_(kCoarseBuckets, 0) {}

  void record(uint64_t us) {
    if (us < kFineLimitUs) {
      ++fine_[us];
    } else {
      ++coarse_[std::min<uint64_t>(us / 1000, kCoarseBuckets - 1)];
    }
    ++count_;
    sum_us_ += us;
    max_us_ = std::max(max_us_, us);
  }

  void merge(const Histogram& o) {
    for (size_t i = 0; i < fine_.size(); ++i) fine_[i] += o.fine_[i];
    for (size_t i = 0; i < coarse_.size(); ++i) coarse_[i] += o.coarse_[i];
    count_ += o.count_;
    sum_us_ += o.sum_us_;
    max_us_ = std::max(max_us_, o.max_us_);
  }

  uint64_t count() const { return count_; }
  uint64_t max_us() const { return max_us_; }
  double mean_us() const { return count_ ? static_cast<double>(sum_us_) / count_ : 0.0; }

  // The smallest latency that at least q of the requests did not exceed (nearest rank).
  uint64_t percentile(double q) const {
    if (count_ == 0) return 0;
    auto rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_)));
    rank = std::clamp<uint64_t>(rank, 1, count_);
    uint64_t seen = 0;
    for (uint64_t i = 0; i < fine_.size(); ++i) {
      seen += fine_[i];
      if (seen >= rank) return i;
    }
    for (uint64_t i = 0; i < coarse_.size(); ++i) {
      seen += coarse_[i];
      if (seen >= rank) return std::min(i * 1000 + 999, max_us_);
    }
    return max_us_;
  }

 private:
  std::vector<uint64_t> fine_;
  std::vector<uint64_t> coarse_;
  uint64_t count_ = 0;
  uint64_t sum_us_ = 0;
  uint64_t max_us_ = 0;
};

enum class ErrorKind { connect, io, timeout, bad_reply, closed };
constexpr size_t kErrorKinds = 5;
constexpr std::string_view kErrorNames[kErrorKinds] = {"connect", "io", "timeout", "bad_reply",
                                                       "closed_by_server"};

}  // namespace bench
