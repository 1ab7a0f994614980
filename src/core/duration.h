// Durations as written in the config: an unsigned integer and a unit, e.g. "500ms", "30s",
// "5m", "48h", "35d". Several terms may be joined ("1h30m"). No unit, a negative value, an
// unknown unit or an overflow is an error (nullopt); the caller names the key.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace spamward {

using Duration = std::chrono::milliseconds;

std::optional<Duration> parse_duration(std::string_view text);
// The shortest exact spelling: 300000ms -> "5m", 90000ms -> "1m30s", 0 -> "0s".
std::string format_duration(Duration d);

}  // namespace spamward
