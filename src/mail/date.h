// RFC 5322 date-time parsing for header sanity checks (Date:, the date after a Received
// header's ';').
//
// Contract: parse_mail_date accepts the RFC 5322 §3.3 form and the obsolete forms real mail
// still carries (§4.3): an optional day name, one- or two-digit days, two- and three-digit
// years (RFC 5322 §4.3 rules: < 50 → 20xx, else 19xx; three digits + 1900), optional
// seconds, numeric zones (+hhmm) and the named zones UT, GMT, Z, EST/EDT, CST/CDT, MST/MDT,
// PST/PDT, comments in parentheses, and any amount of folding whitespace. A military zone
// letter counts as +0000 (RFC 5322 says so). It returns nullopt for anything else, and for
// out-of-range fields (month 13, hour 24, second 61, day 31 of a 30-day month, zone over
// ±9959, a year before 1900 or after 9999). No allocation beyond the result; input of any
// length is scanned once.
#pragma once

#include <optional>
#include <string_view>

#include "core/clock.h"

namespace spamward {

std::optional<TimePoint> parse_mail_date(std::string_view text);

// The date of a Received header value: the text after its last ';', parsed as above.
std::optional<TimePoint> received_date(std::string_view received_value);

}  // namespace spamward
