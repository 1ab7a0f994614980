// SentMessages: the Message-IDs of the mail our own users sent through spamward, so that a
// bounce naming a Message-ID we never sent is recognised as backscatter (issue 7, the optional
// DSN part of the BATV defence; docs/backscatter.md).
//
// Contract:
// - remember() stores a Message-ID for `keep` ([batv] max_age: a real bounce comes back long
//   before that). IDs are normalised (the <...> part, outer whitespace removed, ASCII
//   lower-cased) and stored as a SHA-256 digest; an empty or over-long (> 998 bytes) ID is
//   ignored.
// - was_sent() answers for an ID as normalised above.
// - remembering_since(): when remembering began. It is kept while remembering goes on and
//   forgotten `keep` after the last remember(), so the evidence is used only after a full
//   `keep` of remembering (a bounce of a mail sent before spamward remembered is no evidence)
//   and stops being used when outbound mail no longer passes through spamward.
// - Table "sent_msgid" on the Store; StoreError propagates. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "core/duration.h"
#include "state/store.h"

namespace spamward {

class SentMessages {
 public:
  SentMessages(Store& store, const Clock& clock, Duration keep);

  void remember(std::string_view message_id);
  bool was_sent(std::string_view message_id);
  std::optional<TimePoint> remembering_since();

 private:
  Store& store_;
  const Clock& clock_;
  Duration keep_;
  std::atomic<int64_t> since_refreshed_ms_{0};  // the "since" record's last refresh (throttle)
};

// "<ABC@Example.ORG> (comment)" -> "<abc@example.org>"; "" when there is no <...>.
std::string normalize_message_id(std::string_view message_id);

// The Message-IDs named by "Message-ID:" lines in `body` (a bounce's attached original:
// case-insensitive field name at the start of a line, folded values joined, at most 1,000
// bytes each), at most `max`, normalised and distinct. Linear in the body; never throws.
std::vector<std::string> message_ids_in_body(std::string_view body, size_t max = 8);

}  // namespace spamward
