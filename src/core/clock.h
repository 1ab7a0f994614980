// Clock: the one source of wall-clock time for everything that stores or compares times
// (greylist entries, bans, TTLs). Injected so tests and `replay` can drive time.
// Timeouts on sockets and the engine's stage deadline use Asio's steady timers instead: they
// measure elapsed real time, which a virtual clock must not stretch.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "core/duration.h"

namespace spamward {

using TimePoint = std::chrono::time_point<std::chrono::system_clock, std::chrono::milliseconds>;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint now() const = 0;
};

class SystemClock final : public Clock {
 public:
  TimePoint now() const override {
    return std::chrono::time_point_cast<std::chrono::milliseconds>(
        std::chrono::system_clock::now());
  }
};

// A clock that moves only when told; thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(TimePoint start = TimePoint(std::chrono::milliseconds(1'700'000'000'000)))
      : ms_(start.time_since_epoch().count()) {}
  TimePoint now() const override { return TimePoint(std::chrono::milliseconds(ms_.load())); }
  void advance(Duration d) { ms_ += d.count(); }
  void set(TimePoint t) { ms_ = t.time_since_epoch().count(); }

 private:
  std::atomic<int64_t> ms_;
};

inline int64_t to_unix_ms(TimePoint t) {
  return t.time_since_epoch().count();
}
inline TimePoint from_unix_ms(int64_t ms) {
  return TimePoint(std::chrono::milliseconds(ms));
}

}  // namespace spamward
