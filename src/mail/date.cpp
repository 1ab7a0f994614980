#include "mail/date.h"

#include <array>
#include <chrono>
#include <cstdint>

namespace spamward {

namespace {

// A cursor over the date text that skips folding whitespace and (nested) comments.
class Scanner {
 public:
  explicit Scanner(std::string_view text) : s_(text) {}

  void skip_cfws() {
    while (pos_ < s_.size()) {
      char c = s_[pos_];
      if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
        ++pos_;
      } else if (c == '(') {
        int depth = 0;
        while (pos_ < s_.size()) {
          char d = s_[pos_++];
          if (d == '\\' && pos_ < s_.size()) {
            ++pos_;
          } else if (d == '(') {
            ++depth;
          } else if (d == ')' && --depth == 0) {
            break;
          }
        }
      } else {
        return;
      }
    }
  }

  bool done() {
    skip_cfws();
    return pos_ >= s_.size();
  }

  // Up to `max` digits; returns the count read (0: none).
  int digits(int64_t& value, int max) {
    skip_cfws();
    int n = 0;
    value = 0;
    while (pos_ < s_.size() && n < max && s_[pos_] >= '0' && s_[pos_] <= '9') {
      value = value * 10 + (s_[pos_++] - '0');
      ++n;
    }
    // More digits than allowed: not a date.
    if (n == max && pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') return 0;
    return n;
  }

  // A run of ASCII letters (lower-cased into `out`, at most 8 kept).
  std::string_view word(std::array<char, 8>& buf) {
    skip_cfws();
    size_t n = 0;
    size_t start = pos_;
    while (pos_ < s_.size() && ((s_[pos_] | 0x20) >= 'a' && (s_[pos_] | 0x20) <= 'z')) {
      if (n < buf.size()) buf[n++] = static_cast<char>(s_[pos_] | 0x20);
      ++pos_;
    }
    if (pos_ - start > buf.size()) return {};
    return {buf.data(), n};
  }

  bool accept(char c) {
    skip_cfws();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  char peek() {
    skip_cfws();
    return pos_ < s_.size() ? s_[pos_] : '\0';
  }

 private:
  std::string_view s_;
  size_t pos_ = 0;
};

int month_number(std::string_view m) {
  static constexpr std::string_view kMonths[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                                 "jul", "aug", "sep", "oct", "nov", "dec"};
  for (int i = 0; i < 12; ++i) {
    if (m == kMonths[i]) return i + 1;
  }
  return 0;
}

bool is_day_name(std::string_view d) {
  static constexpr std::string_view kDays[] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};
  for (auto name : kDays) {
    if (d == name) return true;
  }
  return false;
}

// Offset in minutes of a named zone, or nullopt.
std::optional<int> named_zone(std::string_view z) {
  struct Zone {
    std::string_view name;
    int minutes;
  };
  static constexpr Zone kZones[] = {{"ut", 0},        {"gmt", 0},       {"utc", 0},
                                    {"z", 0},         {"est", -5 * 60}, {"edt", -4 * 60},
                                    {"cst", -6 * 60}, {"cdt", -5 * 60}, {"mst", -7 * 60},
                                    {"mdt", -6 * 60}, {"pst", -8 * 60}, {"pdt", -7 * 60}};
  for (const auto& zone : kZones) {
    if (z == zone.name) return zone.minutes;
  }
  if (z.size() == 1 && z[0] != 'j') return 0;  // military zones: treated as +0000 (§4.3)
  return std::nullopt;
}

}  // namespace

std::optional<TimePoint> parse_mail_date(std::string_view text) {
  Scanner in(text);
  std::array<char, 8> buf{};
  // [day-name ","]
  if (in.peek() >= 'A') {
    std::string_view day = in.word(buf);
    if (!is_day_name(day)) return std::nullopt;
    in.accept(',');
  }
  int64_t day = 0, year = 0, hour = 0, minute = 0, second = 0;
  if (in.digits(day, 2) == 0) return std::nullopt;
  int month = month_number(in.word(buf));
  if (month == 0) return std::nullopt;
  int year_digits = in.digits(year, 4);
  if (year_digits < 2) return std::nullopt;
  if (year_digits == 2) year += year < 50 ? 2000 : 1900;
  if (year_digits == 3) year += 1900;
  if (in.digits(hour, 2) == 0 || !in.accept(':') || in.digits(minute, 2) == 0) return std::nullopt;
  if (in.accept(':') && in.digits(second, 2) == 0) return std::nullopt;

  int zone_minutes = 0;
  char sign = in.peek();
  if (sign == '+' || sign == '-') {
    in.accept(sign);
    int64_t hhmm = 0;
    if (in.digits(hhmm, 4) != 4) return std::nullopt;
    if (hhmm % 100 > 59) return std::nullopt;
    zone_minutes = static_cast<int>((hhmm / 100) * 60 + hhmm % 100) * (sign == '-' ? -1 : 1);
  } else {
    auto zone = named_zone(in.word(buf));
    if (!zone) return std::nullopt;
    zone_minutes = *zone;
  }
  if (!in.done()) return std::nullopt;

  using namespace std::chrono;
  if (year < 1900 || year > 9999 || hour > 23 || minute > 59 || second > 60) return std::nullopt;
  year_month_day date{std::chrono::year(static_cast<int>(year)),
                      std::chrono::month(static_cast<unsigned>(month)),
                      std::chrono::day(static_cast<unsigned>(day))};
  if (!date.ok()) return std::nullopt;
  if (second == 60) second = 59;  // a leap second: close enough for sanity checks
  auto t = sys_days(date) + hours(hour) + minutes(minute) + seconds(second) - minutes(zone_minutes);
  return time_point_cast<milliseconds>(t);
}

std::optional<TimePoint> received_date(std::string_view received_value) {
  size_t semi = received_value.rfind(';');
  if (semi == std::string_view::npos) return std::nullopt;
  return parse_mail_date(received_value.substr(semi + 1));
}

}  // namespace spamward
