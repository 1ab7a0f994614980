#include "state/greylist.h"

#include "core/digest.h"

namespace spamward {

namespace {

constexpr std::string_view kTripletTable = "greylist";
constexpr std::string_view kEntityTable = "greylist_net";
constexpr char kKeySeparator = '\x1f';

// Store keys are at most 511 bytes (LMDB's limit). A longer triplet key (a hostile or
// absurd sender) is stored as its network, the separator and a digest of the whole key,
// so greylisting still applies to it and it is still listed under its network.
constexpr size_t kMaxDirectKey = 400;
constexpr size_t kMaxEntityKey = 320;  // "spf:" + a 253-byte domain fits
constexpr size_t kMaxStoredTxId = 255;
constexpr size_t kMaxShownPart = 255;  // sender/recipient kept for listing a digested key

// Record layouts, little-endian, first byte the version. A value that does not decode
// exactly is treated as absent: the triplet starts over, which costs one deferral at most.
//
// triplet v1: version, flags (1 passed, 2 hammered, 4 digested key), first_seen ms,
//   last_seen ms, early_retries, then the last transaction's answer: outcome, flags
//   (1 hammering, 2 hammered), early_retries, tx_id (length byte + bytes); for a digested
//   key, sender and recipient (length byte + bytes each).
// entity v1: version, successful_retries, last_success ms, auto_allowed_until ms (0 none).
constexpr uint8_t kTripletVersion = 1;
constexpr uint8_t kEntityVersion = 1;
constexpr uint8_t kPassed = 1, kHammered = 2, kDigested = 4;
constexpr uint8_t kAnswerHammering = 1, kAnswerHammered = 2;

struct TripletRecord {
  bool passed = false;
  bool hammered = false;
  bool digested = false;
  TimePoint first_seen;
  TimePoint last_seen;
  int64_t early_retries = 0;
  // The answer given to last_tx, replayed when the same transaction asks again.
  GreylistOutcome last_outcome = GreylistOutcome::deferred_new;
  bool last_hammering = false;
  bool last_hammered = false;
  int64_t last_early_retries = 0;
  std::string last_tx;
  std::string shown_sender, shown_recipient;  // digested keys only
};

struct EntityRecord {
  int64_t successful_retries = 0;
  TimePoint last_success;
  std::optional<TimePoint> auto_allowed_until;
};

void put_u8(std::string& out, uint8_t v) {
  out += static_cast<char>(v);
}
void put_i64(std::string& out, int64_t v) {
  auto u = static_cast<uint64_t>(v);
  for (int i = 0; i < 8; ++i) out += static_cast<char>((u >> (8 * i)) & 0xff);
}
void put_short_string(std::string& out, std::string_view s) {
  s = s.substr(0, 255);
  put_u8(out, static_cast<uint8_t>(s.size()));
  out += s;
}

// Reads fields off the front of a value; any read past the end marks it bad.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  uint8_t u8() {
    if (data_.empty()) {
      fail();
      return 0;
    }
    auto v = static_cast<uint8_t>(data_.front());
    data_.remove_prefix(1);
    return v;
  }
  int64_t i64() {
    if (data_.size() < 8) {
      fail();
      return 0;
    }
    uint64_t u = 0;
    for (int i = 0; i < 8; ++i) u |= uint64_t{static_cast<uint8_t>(data_[i])} << (8 * i);
    data_.remove_prefix(8);
    return static_cast<int64_t>(u);
  }
  std::string short_string() {
    size_t n = u8();
    if (!ok_ || data_.size() < n) {
      fail();
      return {};
    }
    std::string s(data_.substr(0, n));
    data_.remove_prefix(n);
    return s;
  }
  // True when every read succeeded and nothing is left over.
  bool done() const { return ok_ && data_.empty(); }

 private:
  void fail() {
    ok_ = false;
    data_ = {};
  }
  std::string_view data_;
  bool ok_ = true;
};

std::string encode(const TripletRecord& r) {
  std::string out;
  put_u8(out, kTripletVersion);
  put_u8(out, static_cast<uint8_t>((r.passed ? kPassed : 0) | (r.hammered ? kHammered : 0) |
                                   (r.digested ? kDigested : 0)));
  put_i64(out, to_unix_ms(r.first_seen));
  put_i64(out, to_unix_ms(r.last_seen));
  put_i64(out, r.early_retries);
  put_u8(out, static_cast<uint8_t>(r.last_outcome));
  put_u8(out, static_cast<uint8_t>((r.last_hammering ? kAnswerHammering : 0) |
                                   (r.last_hammered ? kAnswerHammered : 0)));
  put_i64(out, r.last_early_retries);
  put_short_string(out, r.last_tx);
  if (r.digested) {
    put_short_string(out, r.shown_sender);
    put_short_string(out, r.shown_recipient);
  }
  return out;
}

// A stored value is trusted only within ranges no real record leaves (a corrupt or hostile
// value must not make the arithmetic on it overflow): times between 1970 and the year 3000,
// counts below a billion.
bool sane_time(TimePoint t) {
  return to_unix_ms(t) >= 0 && to_unix_ms(t) < int64_t{32'503'680'000'000};
}
bool sane_count(int64_t n) {
  return n >= 0 && n < 1'000'000'000;
}

std::optional<TripletRecord> decode_triplet(std::string_view value) {
  Reader in(value);
  if (in.u8() != kTripletVersion) return std::nullopt;
  TripletRecord r;
  uint8_t flags = in.u8();
  if (flags & ~(kPassed | kHammered | kDigested)) return std::nullopt;
  r.passed = flags & kPassed;
  r.hammered = flags & kHammered;
  r.digested = flags & kDigested;
  r.first_seen = from_unix_ms(in.i64());
  r.last_seen = from_unix_ms(in.i64());
  r.early_retries = in.i64();
  uint8_t outcome = in.u8();
  if (outcome > static_cast<uint8_t>(GreylistOutcome::passed_before)) return std::nullopt;
  r.last_outcome = static_cast<GreylistOutcome>(outcome);
  uint8_t answer_flags = in.u8();
  if (answer_flags & ~(kAnswerHammering | kAnswerHammered)) return std::nullopt;
  r.last_hammering = answer_flags & kAnswerHammering;
  r.last_hammered = answer_flags & kAnswerHammered;
  r.last_early_retries = in.i64();
  r.last_tx = in.short_string();
  if (r.digested) {
    r.shown_sender = in.short_string();
    r.shown_recipient = in.short_string();
  }
  if (!in.done() || !sane_count(r.early_retries) || !sane_count(r.last_early_retries) ||
      !sane_time(r.first_seen) || !sane_time(r.last_seen)) {
    return std::nullopt;
  }
  return r;
}

std::string encode(const EntityRecord& r) {
  std::string out;
  put_u8(out, kEntityVersion);
  put_i64(out, r.successful_retries);
  put_i64(out, to_unix_ms(r.last_success));
  put_i64(out, r.auto_allowed_until ? to_unix_ms(*r.auto_allowed_until) : 0);
  return out;
}

std::optional<EntityRecord> decode_entity(std::string_view value) {
  Reader in(value);
  if (in.u8() != kEntityVersion) return std::nullopt;
  EntityRecord r;
  r.successful_retries = in.i64();
  r.last_success = from_unix_ms(in.i64());
  int64_t until = in.i64();
  if (!in.done() || !sane_count(r.successful_retries) || !sane_time(r.last_success) ||
      !sane_time(from_unix_ms(until))) {
    return std::nullopt;
  }
  if (until != 0) r.auto_allowed_until = from_unix_ms(until);
  return r;
}

struct StorageKey {
  std::string text;
  bool digested = false;
};

StorageKey storage_key(const GreylistKey& key) {
  std::string full = key.text();
  if (full.size() <= kMaxDirectKey) return {std::move(full), false};
  std::string digest = "#sha256:" + sha256_hex(full);
  if (key.network.size() > kMaxEntityKey) return {std::move(digest), true};
  return {key.network + kKeySeparator + digest, true};
}

bool usable_entity(std::string_view entity) {
  return !entity.empty() && entity.size() <= kMaxEntityKey;
}

}  // namespace

std::string GreylistKey::text() const {
  std::string out;
  out.reserve(network.size() + sender.size() + recipient.size() + 2);
  out += network;
  out += kKeySeparator;
  out += sender;
  out += kKeySeparator;
  out += recipient;
  return out;
}

std::string_view to_string(GreylistOutcome o) {
  switch (o) {
    case GreylistOutcome::deferred_new:
      return "deferred_new";
    case GreylistOutcome::deferred_early:
      return "deferred_early";
    case GreylistOutcome::passed_now:
      return "passed_now";
    case GreylistOutcome::passed_before:
      return "passed_before";
  }
  return "unknown";
}

GreylistTable::GreylistTable(Store& store, const Clock& clock, GreylistConfig config)
    : store_(store), clock_(clock), config_(std::move(config)) {}

std::optional<TimePoint> GreylistTable::auto_allowed_until(std::string_view entity) {
  if (!usable_entity(entity)) return std::nullopt;
  auto value = store_.get(kEntityTable, entity);
  if (!value) return std::nullopt;
  auto record = decode_entity(*value);
  if (!record || !record->auto_allowed_until || *record->auto_allowed_until <= clock_.now()) {
    return std::nullopt;
  }
  return record->auto_allowed_until;
}

void GreylistTable::renew_auto_allow(std::string_view entity) {
  if (!usable_entity(entity)) return;
  auto value = store_.get(kEntityTable, entity);
  if (!value) return;
  auto record = decode_entity(*value);
  const TimePoint now = clock_.now();
  if (!record || !record->auto_allowed_until || *record->auto_allowed_until <= now) return;
  const TimePoint renewed = now + config_.auto_allow_ttl;
  if (renewed - *record->auto_allowed_until < std::chrono::hours(24)) return;  // throttle
  record->auto_allowed_until = renewed;
  store_.put(kEntityTable, entity, encode(*record), renewed);
}

bool GreylistTable::ever_passed(std::span<const std::string> entities) {
  for (const auto& entity : entities) {
    if (!usable_entity(entity)) continue;
    auto value = store_.get(kEntityTable, entity);
    if (!value) continue;
    auto record = decode_entity(*value);
    if (record && record->successful_retries > 0) return true;
  }
  return false;
}

GreylistAnswer GreylistTable::attempt(const GreylistKey& key, std::span<const std::string> entities,
                                      std::string_view tx_id, bool peek) {
  const TimePoint now = clock_.now();
  const StorageKey skey = storage_key(key);
  std::optional<TripletRecord> stored;
  if (auto value = store_.get(kTripletTable, skey.text)) stored = decode_triplet(*value);
  // The store hides an unpassed entry from max_wait on; this covers a store whose sweep
  // lags or a clock that was moved.
  if (stored && !stored->passed && now >= stored->first_seen + config_.max_wait) stored.reset();

  auto answer_of = [this](const TripletRecord& r) {
    GreylistAnswer a;
    a.outcome = r.last_outcome;
    a.first_seen = r.first_seen;
    // A hammered triplet never passes: the earliest useful retry is after it is forgotten.
    a.retry_at = r.first_seen + (r.last_hammered ? config_.max_wait : config_.min_delay);
    a.early_retries = r.last_early_retries;
    a.hammering = r.last_hammering;
    a.hammered = r.last_hammered;
    return a;
  };

  const std::string tx(tx_id.substr(0, kMaxStoredTxId));
  // An empty tx_id names no transaction: every such call counts. A replay does not repeat
  // `hammering`: that offence was reported to the first call, and recording it twice would
  // double the sender's ban.
  if (stored && !tx.empty() && stored->last_tx == tx) {
    GreylistAnswer replay = answer_of(*stored);
    replay.hammering = false;
    return replay;
  }

  TripletRecord r;
  GreylistOutcome outcome = GreylistOutcome::deferred_new;
  bool hammering = false;
  if (!stored) {
    r.first_seen = now;
    r.digested = skey.digested;
    if (skey.digested) {
      r.shown_sender = key.sender.substr(0, kMaxShownPart);
      r.shown_recipient = key.recipient.substr(0, kMaxShownPart);
    }
  } else {
    r = std::move(*stored);
    const int64_t threshold = config_.hammering;  // <= 0: hammering detection is off
    if (r.passed) {
      outcome = GreylistOutcome::passed_before;
    } else if (r.hammered) {
      outcome = GreylistOutcome::deferred_early;
      ++r.early_retries;
      hammering = threshold > 0 && r.early_retries % threshold == 0;
    } else if (now < r.first_seen + config_.min_delay) {
      outcome = GreylistOutcome::deferred_early;
      ++r.early_retries;
      // ever_passed is read only at the threshold: most triplets never get there.
      if (threshold > 0 && r.early_retries >= threshold && !ever_passed(entities)) {
        r.hammered = true;
        hammering = true;
      }
    } else {
      outcome = GreylistOutcome::passed_now;
      r.passed = true;
    }
  }
  r.last_seen = now;
  r.last_outcome = outcome;
  r.last_hammering = hammering;
  r.last_hammered = r.hammered;
  r.last_early_retries = r.early_retries;
  r.last_tx = tx;
  GreylistAnswer answer = answer_of(r);
  if (peek) return answer;

  const TimePoint expires =
      r.passed ? now + config_.auto_allow_ttl : r.first_seen + config_.max_wait;
  store_.put(kTripletTable, skey.text, encode(r), expires);
  if (outcome == GreylistOutcome::passed_now) {
    for (const auto& entity : entities) {
      if (!usable_entity(entity)) continue;
      EntityRecord e;
      if (auto value = store_.get(kEntityTable, entity)) {
        e = decode_entity(*value).value_or(EntityRecord{});
      }
      ++e.successful_retries;
      e.last_success = now;
      // auto_allow_after <= 0 turns auto-allowing off (as postgrey's 0 does).
      if (config_.auto_allow_after > 0 && e.successful_retries >= config_.auto_allow_after) {
        e.auto_allowed_until = now + config_.auto_allow_ttl;
      }
      store_.put(kEntityTable, entity, encode(e), now + config_.auto_allow_ttl);
    }
  }
  return answer;
}

std::vector<GreylistTriplet> GreylistTable::triplets(std::string_view network_prefix,
                                                     size_t limit) {
  std::vector<GreylistTriplet> out;
  if (limit == 0 || network_prefix.empty()) return out;
  std::string prefix(network_prefix);
  if (prefix.back() != kKeySeparator) prefix += kKeySeparator;
  store_.scan(kTripletTable, prefix, [&](std::string_view k, std::string_view v) {
    auto record = decode_triplet(v);
    if (!record) return true;
    GreylistTriplet t;
    size_t first = k.find(kKeySeparator);
    size_t second = k.find(kKeySeparator, first + 1);
    t.key.network = std::string(k.substr(0, first));
    if (record->digested) {
      t.key.sender = record->shown_sender;
      t.key.recipient = record->shown_recipient;
    } else if (second != std::string_view::npos) {
      t.key.sender = std::string(k.substr(first + 1, second - first - 1));
      t.key.recipient = std::string(k.substr(second + 1));
    } else {
      return true;  // not a key this table writes
    }
    t.first_seen = record->first_seen;
    t.last_seen = record->last_seen;
    t.early_retries = record->early_retries;
    t.passed = record->passed;
    t.hammered = record->hammered;
    out.push_back(std::move(t));
    return out.size() < limit;
  });
  return out;
}

std::optional<GreylistEntity> GreylistTable::entity(std::string_view entity) {
  if (!usable_entity(entity)) return std::nullopt;
  auto value = store_.get(kEntityTable, entity);
  if (!value) return std::nullopt;
  auto record = decode_entity(*value);
  if (!record) return std::nullopt;
  GreylistEntity e;
  e.entity = std::string(entity);
  e.successful_retries = record->successful_retries;
  e.last_success = record->last_success;
  // Reported only while it holds, as auto_allowed_until() answers.
  if (record->auto_allowed_until && *record->auto_allowed_until > clock_.now()) {
    e.auto_allowed_until = record->auto_allowed_until;
  }
  return e;
}

}  // namespace spamward
