// Reputation: offences, bans and their escalation (DESIGN §1 principle 2, §3.3 [reputation],
// issue 4) on the Store.
//
// Offences. Each offence (refused spam, hammering, trap hit, address guessing) is recorded
// for the client address, with a decayed count: every offence_half_life the count halves.
// The offence gets number n = 1 + round(decayed count of earlier offences), and bans the
// address for ban_base * ban_factor^(n-1), capped at ban_max. With the defaults: 10m, 40m,
// 160m, 640m, then 1d. A ban is permanent (answered 5xx) when n >= permanent_after; else 4xx.
// A reformed sender is forgiven: after a long clean period n falls back to 1.
//
// Networks. Every offence also counts for the client's network ([reputation] ipv4_prefix,
// ipv6_prefix: /24 and /64 by default) and, for IPv6, for its /48. A network is banned as a
// whole only when network_after distinct members offended within one offence_half_life
// (members: addresses of the /24 or /64; /64s of the /48) AND it has no record of clean
// mail (note_clean: clean deliveries, greylist passes, auto-allow). A network ban's length
// follows the same formula over the network's own decayed ban count: a network's "offence"
// record counts its network bans (each escalation is one offence of the network), not the
// offences of its members. A network is not escalated again while its ban is in force.
// No network level applies when it would be the address itself (ipv4_prefix 32,
// ipv6_prefix 128); the /48 level applies only when ipv6_prefix is longer than 48.
// Members are remembered up to max(256, min(network_after, 4096)) per network, newest kept.
//
// Ban lookups (ban_for) are the first thing a connection meets: O(1) hash lookups on an
// in-memory snapshot of the ban table (address, then each banned network length). Every
// change (here or in another process, e.g. `spamward allow` lifting a ban) writes a fresh
// value under ("reputation", "generation"); lookups re-read it at most every
// refresh_interval and reload the snapshot when it changed.
//
// Tables: "offence" (key: address or network text; value: decayed count, totals and the
// last kMaxHistory offences; expires when the count has decayed below 1/64),
// "ban" (key: address or network text; expires with the ban), "rep_net" (network members,
// expires one half-life after the last offence), "rep_clean" (networks with clean mail;
// expires after 4 half-lives; writes throttled to one per network per hour).
// Address keys are IpAddress::to_string(); network keys are reputation_network_key().
// Values are compact binary with a leading version byte; a value that does not decode is
// treated as absent (and overwritten by the next write), never an error.
// A new address ban never shortens a ban in force for the same address.
//
// Thread-safe. Store errors propagate as StoreError, except that a failed snapshot refresh
// keeps the previous snapshot.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "core/config.h"
#include "core/ip_address.h"
#include "state/generation_snapshot.h"
#include "state/store.h"

namespace spamward {

enum class OffenceKind { spam, hammering, trap, guessing };
std::string_view to_string(OffenceKind kind);  // "spam" | "hammering" | "trap" | "guessing"

struct Offence {
  TimePoint at;
  OffenceKind kind = OffenceKind::spam;
  std::string detail;  // e.g. "score 17.2", "12 early retries"; at most 200 bytes kept
};

struct OffenceRecord {
  double decayed = 0.0;          // decayed count as of `last`
  TimePoint last;                // time of the last offence
  int64_t total = 0;             // every offence ever recorded (while the record lived)
  std::vector<Offence> history;  // most recent last, at most kMaxHistory
  // The decayed count at `now`.
  double decayed_at(TimePoint now, Duration half_life) const;
};

struct Ban {
  Prefix target;  // a host prefix for an address ban
  TimePoint since;
  TimePoint until;
  bool permanent = false;      // answered 5xx
  int64_t offence_number = 1;  // n
  std::string reason;          // e.g. "spam: score 17.2", "network: 5 offending addresses"
};

class Reputation {
 public:
  static constexpr size_t kMaxHistory = 16;
  static constexpr size_t kMaxDetail = 200;  // bytes of an offence's detail kept
  static constexpr std::chrono::milliseconds kDefaultRefresh{200};

  Reputation(Store& store, const Clock& clock, ReputationConfig config,
             std::chrono::milliseconds refresh_interval = kDefaultRefresh);
  ~Reputation();

  // New settings (SIGHUP); existing bans keep their lengths.
  void reconfigure(const ReputationConfig& config);
  ReputationConfig config() const;

  // The most severe ban covering `client` now (its address's or a network's): a permanent
  // one before a temporary one, then the one that ends last.
  std::optional<Ban> ban_for(const IpAddress& client);

  // The decayed offence count of `client` now (0 when none). One store read.
  double offence_count(const IpAddress& client);

  // Records an offence and bans the address (and escalates to its networks when the rules
  // above say so). Returns the address's new ban. Flushed before returning when
  // `flush` (CLI use); the daemon relies on the store's batching.
  Ban record_offence(const IpAddress& client, OffenceKind kind, std::string_view detail,
                     bool flush = false);

  // Clean mail from `client`: its networks get a record of clean mail and are never banned
  // wholesale while it lasts.
  void note_clean(const IpAddress& client);

  // Lifts every ban inside or equal to `network` (and network bans containing it) and
  // forgets the offences of those addresses and networks (`spamward allow`); they no longer
  // count as offending members of the networks containing them. Returns how many bans were
  // lifted. Flushed before returning.
  int lift(const Prefix& network);

  // Ban length for offence number n (n >= 1), and whether it is permanent.
  Duration ban_length(int64_t n) const;
  bool is_permanent(int64_t n) const;

  struct Report {
    Prefix target;
    std::optional<OffenceRecord> offences;  // of the address (or the network given)
    std::optional<Ban> ban;                 // ban_for (address) or the network's ban
    int64_t next_offence_number = 1;
    Duration next_ban_length{};
    bool next_permanent = false;
    std::vector<std::pair<Prefix, std::optional<OffenceRecord>>> networks;  // containing networks
    std::vector<std::pair<Prefix, int64_t>> network_offenders;  // distinct offending members
    std::vector<std::pair<Prefix, bool>> network_clean;         // record of clean mail
  };
  // For `spamward ip`: read from the store, not the snapshot.
  Report report(const Prefix& target);

  // Every ban in force now (from the snapshot; refreshes first when due).
  std::vector<Ban> bans();
  // Re-reads the generation now and reloads the snapshot when it changed; true when it did.
  bool refresh();

  // Called after the ban set changed: a ban recorded or lifted here, or a change by another
  // process found by a refresh. Runs on the thread that noticed; keep it short (the export
  // service only sets a flag). Set once, before use.
  void on_change(std::function<void()> callback);

  // Number of ban and offence entries (metrics: spamward_reputation_entries{table}).
  int64_t ban_count();
  int64_t offence_record_count();

 private:
  struct Snapshot;
  // The snapshot for a lookup: re-checks the generation when refresh_interval has passed
  // (always with `force`). Calls the callback when another process changed the bans.
  std::shared_ptr<const Snapshot> snapshot(bool force = false, bool* reloaded = nullptr);
  std::shared_ptr<const Snapshot> load(std::string generation);
  void bump_generation();  // and makes the next lookup re-check
  void changed();          // calls the callback, without holding mu_
  // Counts `member` for `network` and bans the network when the escalation rules say so.
  void escalate(const Prefix& network, const Prefix& member, OffenceKind kind,
                const ReputationConfig& config, TimePoint now);
  // Adds one offence to the record under `offence_key` and bans `target` for its number.
  Ban ban_target(const Prefix& target, std::string_view offence_key, OffenceKind kind,
                 std::string_view detail, std::string reason, const ReputationConfig& config,
                 TimePoint now);

  Store& store_;
  const Clock& clock_;
  mutable std::mutex mu_;  // guards config_, callback_, own_generation_
  ReputationConfig config_;
  GenerationSnapshot<Snapshot> snapshot_;
  std::function<void()> callback_;
  std::string own_generation_;  // the last generation this object wrote
  // Serialises this object's read-modify-write sequences (offences, clean notes, lifts), so
  // two threads recording for one address never lose a count. Taken before mu_, never after.
  std::mutex write_mu_;
};

// Canonical network keys used by the tables: "n4:192.0.2.0/24", "n6:2001:db8:1:2::/64".
// (Exposed for `spamward ip` and tests.)
std::string reputation_network_key(const Prefix& network);

// A ban's length for log lines: "10m", or "1d (5xx)" for a permanent one.
std::string ban_length_text(const Ban& ban);

}  // namespace spamward
