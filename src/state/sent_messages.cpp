#include "state/sent_messages.h"

#include <algorithm>
#include <string>

#include "core/digest.h"
#include "core/strings.h"

namespace spamward {

namespace {

constexpr std::string_view kTable = "sent_msgid";
constexpr std::string_view kSinceKey = "since";
constexpr size_t kMaxId = 998;  // RFC 5322 line length
// The "since" record is rewritten at most this often (it only needs to outlive `keep`).
constexpr int64_t kSinceRefreshMs = 3600 * 1000;

std::string id_key(const std::string& normalized) {
  return "m|" + sha256_hex(normalized).substr(0, 32);
}

}  // namespace

std::string normalize_message_id(std::string_view message_id) {
  size_t open = message_id.find('<');
  if (open == std::string_view::npos) return "";
  size_t close = message_id.find('>', open);
  if (close == std::string_view::npos || close == open + 1) return "";
  std::string_view id = message_id.substr(open, close - open + 1);
  if (id.size() > kMaxId) return "";
  return to_lower(id);
}

SentMessages::SentMessages(Store& store, const Clock& clock, Duration keep)
    : store_(store), clock_(clock), keep_(keep) {}

void SentMessages::remember(std::string_view message_id) {
  std::string id = normalize_message_id(message_id);
  if (id.empty()) return;
  const TimePoint now = clock_.now();
  store_.put(kTable, id_key(id), "1", now + keep_);
  const int64_t now_ms = to_unix_ms(now);
  int64_t refreshed = since_refreshed_ms_.load();
  if (now_ms - refreshed < kSinceRefreshMs && refreshed != 0) return;
  since_refreshed_ms_ = now_ms;
  // Keep the first time, extend the expiry.
  std::string since = std::to_string(now_ms);
  if (auto old = store_.get(kTable, kSinceKey)) {
    try {
      if (std::stoll(*old) > 0 && std::stoll(*old) <= now_ms) since = *old;
    } catch (const std::exception&) {
    }
  }
  store_.put(kTable, kSinceKey, since, now + keep_);
}

bool SentMessages::was_sent(std::string_view message_id) {
  std::string id = normalize_message_id(message_id);
  if (id.empty()) return false;
  return store_.get(kTable, id_key(id)).has_value();
}

std::optional<TimePoint> SentMessages::remembering_since() {
  auto value = store_.get(kTable, kSinceKey);
  if (!value) return std::nullopt;
  try {
    int64_t ms = std::stoll(*value);
    if (ms <= 0) return std::nullopt;
    return from_unix_ms(ms);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::vector<std::string> message_ids_in_body(std::string_view body, size_t max) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < body.size() && out.size() < max) {
    size_t end = body.find('\n', pos);
    if (end == std::string_view::npos) end = body.size();
    std::string_view line = body.substr(pos, end - pos);
    pos = end + 1;
    if (line.size() < 11 || !iequals(line.substr(0, 11), "message-id:")) continue;
    std::string value(line.substr(11));
    // A folded value continues on lines that start with whitespace.
    while (pos < body.size() && (body[pos] == ' ' || body[pos] == '\t') && value.size() < 1000) {
      size_t next = body.find('\n', pos);
      if (next == std::string_view::npos) next = body.size();
      value += body.substr(pos, next - pos);
      pos = next + 1;
    }
    std::string id = normalize_message_id(value);
    if (!id.empty() && std::find(out.begin(), out.end(), id) == out.end()) out.push_back(id);
  }
  return out;
}

}  // namespace spamward
