// GreylistTable: greylisting state (DESIGN §3.3 [greylist], issue 4) on the Store. It knows
// triplets and the networks that passed, not scores: the Engine decides whether greylisting
// applies to a transaction and asks this table whether each of its triplets may pass.
//
// Tables:
// - "greylist": one entry per triplet key; expires max_wait after its first attempt while it
//   has not passed, auto_allow_ttl after its last pass once it has.
// - "greylist_net": one entry per trust entity (a client network "192.0.2.0/24" or
//   "2001:db8:1:2::/64", or an SPF domain "spf:example.org"): its successful retries and,
//   once it has auto_allow_after of them, the time until which it skips greylisting.
//   Expires auto_allow_ttl after its last success.
//
// Rules:
// - The first attempt of a triplet is deferred (deferred_new). An attempt before min_delay
//   has passed since the first is deferred and counts as an early retry (deferred_early).
// - The first attempt at or after min_delay (and before max_wait) passes (passed_now: one
//   "successful retry" for every trust entity given); later attempts of a passed triplet
//   pass (passed_before) and refresh it.
// - hammering: when a triplet's early retries reach `hammering` and none of the trust
//   entities has ever passed, the attempt reports hammering=true (once; the caller records
//   the offence) and the triplet is marked hammered: it never passes, and every further
//   `hammering` attempts report hammering again. It is forgotten max_wait after its first
//   attempt like any unpassed triplet.
// - An attempt counts once per transaction: a second call with the same tx_id (the policy
//   server asks at RCPT and again at DATA) returns the first answer without counting again,
//   except that hammering is false (the offence was reported to the first call). Only the
//   last transaction of a triplet is remembered; an empty tx_id counts every call.
// - peek=true (the `check` command, dry runs of `spamward ip`) computes the answer without
//   writing anything.
//
// Thread-safe as the Store is; callers on one event loop see their own writes at once.
// Store errors propagate as StoreError (the Engine fails open: no greylisting).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "core/config.h"
#include "state/store.h"

namespace spamward {

struct GreylistKey {
  std::string network;       // the trust entity the key is grouped by (see above)
  std::string sender;        // normalize_sender() of the envelope sender ("<>" for bounces)
  std::string recipient;     // lower-cased recipient
  std::string text() const;  // the store key: network '\x1f' sender '\x1f' recipient (one
                             // over 400 bytes is stored as network '\x1f' "#sha256:" digest)
};

enum class GreylistOutcome { deferred_new, deferred_early, passed_now, passed_before };
std::string_view to_string(GreylistOutcome o);
inline bool deferred(GreylistOutcome o) {
  return o == GreylistOutcome::deferred_new || o == GreylistOutcome::deferred_early;
}

struct GreylistAnswer {
  GreylistOutcome outcome = GreylistOutcome::deferred_new;
  TimePoint first_seen;
  TimePoint retry_at;         // when deferred: the earliest moment a retry counts
  int64_t early_retries = 0;  // of this triplet so far
  bool hammering = false;     // this attempt made (or repeated) a hammering offence
  bool hammered = false;      // the triplet is marked hammered (never passes)
};

struct GreylistTriplet {  // for `spamward ip`
  GreylistKey key;
  TimePoint first_seen;
  TimePoint last_seen;
  int64_t early_retries = 0;
  bool passed = false;
  bool hammered = false;
};

struct GreylistEntity {  // for `spamward ip`
  std::string entity;
  int64_t successful_retries = 0;
  TimePoint last_success;
  std::optional<TimePoint> auto_allowed_until;
};

class GreylistTable {
 public:
  GreylistTable(Store& store, const Clock& clock, GreylistConfig config);

  // The time until which `entity` skips greylisting, when it is auto-allowed now.
  std::optional<TimePoint> auto_allowed_until(std::string_view entity);

  // An auto-allowed entity sent mail that was not refused: its exemption runs auto_allow_ttl
  // from now (a busy network that skips greylisting never earns another success, so without
  // this it would lose the exemption auto_allow_ttl after earning it). Writes at most once a
  // day per entity; does nothing when the entity is not auto-allowed now.
  void renew_auto_allow(std::string_view entity);

  // One attempt of `key` in transaction `tx_id`. `entities` are the trust entities of the
  // client (its network, and the SPF domain when SPF passed); a pass is credited to each.
  GreylistAnswer attempt(const GreylistKey& key, std::span<const std::string> entities,
                         std::string_view tx_id, bool peek = false);

  // True when one of `entities` has ever passed greylisting (a network "with a record of
  // clean mail" for hammering and for reputation's escalation).
  bool ever_passed(std::span<const std::string> entities);

  // Triplets of the network entity `network_prefix` (keys that start with it and '\x1f', so
  // "spf:example.org" does not list "spf:example.org.uk"), at most `limit`, in key order.
  std::vector<GreylistTriplet> triplets(std::string_view network_prefix, size_t limit = 50);
  std::optional<GreylistEntity> entity(std::string_view entity);

  const GreylistConfig& config() const { return config_; }

 private:
  Store& store_;
  const Clock& clock_;
  GreylistConfig config_;
};

}  // namespace spamward
