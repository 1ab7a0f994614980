// libFuzzer target for parse_mta_log_line (state/mta_log.h): log lines from the MTA, full of
// text that SMTP clients chose (HELO, sender, recipient).
//
// Input: a log file's worth of bytes; each line (split at '\n', as the follower does) is
// parsed. Besides the sanitizers (bounded, linear parsing: a slow unit shows up as a
// timeout), it checks what the header promises:
// - never throws;
// - an event's recipient is non-empty, at most 1024 bytes, and appears in the line; its HELO
//   appears in the line too (both are copied as logged, never built);
// - a trailing CR changes nothing; parsing is deterministic.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "state/mta_log.h"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

std::optional<spamward::UnknownRecipientEvent> parse(std::string_view line) {
  try {
    return spamward::parse_mta_log_line(line);
  } catch (...) {
    check(false);  // documented as never throwing
  }
  return std::nullopt;
}

bool same(const std::optional<spamward::UnknownRecipientEvent>& a,
          const std::optional<spamward::UnknownRecipientEvent>& b) {
  if (a.has_value() != b.has_value()) return false;
  return !a || (a->client == b->client && a->recipient == b->recipient && a->helo == b->helo);
}

void check_line(std::string_view line) {
  const auto event = parse(line);
  check(same(event, parse(line)));
  if (line.empty() || line.back() != '\r') check(same(event, parse(std::string(line) + "\r")));
  if (!event) return;
  check(!event->recipient.empty());
  check(event->recipient.size() <= 1024);
  check(line.find(event->recipient) != std::string_view::npos);
  check(line.find(event->helo) != std::string_view::npos);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  while (true) {
    const size_t nl = input.find('\n');
    check_line(input.substr(0, nl));
    if (nl == std::string_view::npos) break;
    input.remove_prefix(nl + 1);
  }
  return 0;
}
