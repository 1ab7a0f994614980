#include "core/duration.h"

#include <cstdint>
#include <limits>

namespace spamward {

std::optional<Duration> parse_duration(std::string_view text) {
  if (text.empty() || text.size() > 64) return std::nullopt;
  int64_t total = 0;
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] < '0' || text[i] > '9') return std::nullopt;
    int64_t value = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (value > (std::numeric_limits<int64_t>::max() - 9) / 10) return std::nullopt;
      value = value * 10 + (text[i] - '0');
      ++i;
    }
    size_t unit_start = i;
    while (i < text.size() &&
           ((text[i] >= 'a' && text[i] <= 'z') || (text[i] >= 'A' && text[i] <= 'Z')))
      ++i;
    std::string_view unit = text.substr(unit_start, i - unit_start);
    int64_t ms_per_unit;
    if (unit == "ms")
      ms_per_unit = 1;
    else if (unit == "s")
      ms_per_unit = 1000;
    else if (unit == "m")
      ms_per_unit = 60'000;
    else if (unit == "h")
      ms_per_unit = 3'600'000;
    else if (unit == "d")
      ms_per_unit = 86'400'000;
    else if (unit == "w")
      ms_per_unit = 7 * 86'400'000LL;
    else
      return std::nullopt;
    if (value > std::numeric_limits<int64_t>::max() / ms_per_unit) return std::nullopt;
    int64_t term = value * ms_per_unit;
    if (total > std::numeric_limits<int64_t>::max() - term) return std::nullopt;
    total += term;
  }
  return Duration(total);
}

std::string format_duration(Duration d) {
  int64_t ms = d.count();
  if (ms == 0) return "0s";
  std::string out;
  if (ms < 0) {
    out = "-";
    ms = -ms;
  }
  struct Unit {
    const char* name;
    int64_t ms;
  };
  static constexpr Unit kUnits[] = {
      {"d", 86'400'000}, {"h", 3'600'000}, {"m", 60'000}, {"s", 1000}, {"ms", 1}};
  for (const auto& u : kUnits) {
    if (ms >= u.ms) {
      out += std::to_string(ms / u.ms) + u.name;
      ms %= u.ms;
    }
  }
  return out;
}

}  // namespace spamward
