// AddressGuessing: remembers the unknown recipients each client tries, and tells when a
// client is guessing addresses (issue 7, DESIGN §3.3 [recipients]); an offence for the
// reputation system when it is.
//
// Rules (all within `window`, default 10m):
// - Own threshold: a client address, or its network (/24, /64 by default), tried `threshold`
//   distinct unknown recipients and no valid one. A valid recipient from the address or the
//   network clears suspicion for the window: a real sender with one stale address in its
//   list is not a guesser. Typos are never noted (the caller knows them; RecipientList).
// - Campaign (guessing spread over a botnet, below every per-client threshold): at one
//   recipient domain, at least `campaign_networks` networks each tried at least 2 distinct
//   unknown local parts, together at least `campaign_local_parts` distinct ones, and none of
//   those networks sent to a valid recipient. Every participant is guessing, even those that
//   already left: they are returned in `participants` so their offences can be recorded.
//   Many senders writing to one departed user is never a campaign (one local part).
// - A client is flagged at most once per window: one offence per guessing spree, however
//   many more addresses it tries (each further unknown recipient is refused anyway).
//
// When a Reputation is given and `record_offences` is set, note_unknown() records the offences
// itself (kind guessing, with the evidence as detail), for the client and for every newly
// found campaign participant. Without it (dry-run mode) it only reports.
//
// Table "guess", values in state/value_codec.h form, each expiring one window after its last
// change: "a|<address>" (the address's unknown recipients, when it last sent to a valid one,
// when it was flagged), "n|<network>" (the same for a network), "d|<domain>" (the recent
// unknown local parts at a domain, with client and network, for campaigns). Lists are capped
// (64 per address, 256 per network, 1,024 per domain, newest kept) so a flood cannot grow them.
// A value that does not decode is treated as absent. Thread-safe (one mutex: the
// read-modify-write of the three records is one step). Store errors propagate (StoreError).
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "core/duration.h"
#include "core/ip_address.h"
#include "state/reputation.h"
#include "state/store.h"

namespace spamward {

struct AddressGuessingOptions {
  int64_t threshold = 3;
  Duration window = std::chrono::minutes(10);
  int ipv4_prefix = 24;
  int ipv6_prefix = 64;
  int64_t campaign_networks = 5;
  int64_t campaign_local_parts = 4;
  bool record_offences = true;  // false: dry-run mode, report only
};

struct GuessVerdict {
  bool guessing = false;
  bool campaign = false;                // guessing because of a campaign rather than its own count
  bool newly_flagged = false;           // the client's first flag in this window (an offence now)
  std::string evidence;                 // e.g. "3 unknown recipients in 10m: a@x, b@x, c@x"
  std::vector<IpAddress> participants;  // campaign members flagged now, besides the client
  std::optional<Ban> ban;               // the client's ban when an offence was recorded now
};

class AddressGuessing {
 public:
  static constexpr size_t kMaxPerAddress = 64;
  static constexpr size_t kMaxPerNetwork = 256;
  static constexpr size_t kMaxPerDomain = 1024;

  AddressGuessing(Store& store, const Clock& clock, AddressGuessingOptions options,
                  Reputation* reputation);

  // The client sent to a valid recipient.
  void note_valid(const IpAddress& client);
  // The client tried `recipient`, which does not exist (and is not a typo).
  GuessVerdict note_unknown(const IpAddress& client, std::string_view recipient);
  // Whether the client is flagged as guessing in the current window (for `spamward ip`).
  bool flagged(const IpAddress& client);

  const AddressGuessingOptions& options() const { return options_; }

 private:
  struct Entry;
  struct Record;
  Record load(const std::string& key);
  void save(const std::string& key, const Record& record, TimePoint now);
  std::string network_key(const IpAddress& client) const;

  Store& store_;
  const Clock& clock_;
  AddressGuessingOptions options_;
  Reputation* reputation_;
  std::mutex mu_;
};

}  // namespace spamward
