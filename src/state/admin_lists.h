// AdminLists: the admin's allow and deny lists (DESIGN §3.2), stored in the Store tables
// "allow" and "deny", and matched on the policy hot path.
//
// Entries:
// - an address or CIDR ("192.0.2.7", "2001:db8::/32", "::ffff:192.0.2.0/120") matches the
//   client address. It is normalised through Prefix: host bits cleared, v4-mapped IPv6
//   folded to IPv4, canonical spelling (so "192.0.2.7/24" is stored as "192.0.2.0/24");
// - "@domain" matches an envelope sender in exactly that domain (not its subdomains);
// - "user@domain" matches that envelope sender. Both are lower-cased.
// Anything else is refused with ListEntryError saying what is wrong.
//
// Each stored value is a small JSON object: {"comment": "...", "added": unix_ms}.
//
// Matching works on an in-memory snapshot of both lists. Every change (by this or any other
// process) writes a fresh random value under ("admin_lists", "generation"); a lookup re-reads
// that key at most every `refresh_interval` and reloads the snapshot when it changed, so a
// running daemon sees a change made by `spamward allow add` within about that interval,
// without a reload. A change made through this object is seen at once.
//
// Whether a sender entry may be trusted (allow list: only when SPF or DKIM vouches for the
// sender's domain) is the checks' business, not this class's.
//
// Thread-safe. Store errors propagate as StoreError, except that a failed refresh keeps
// serving the previous snapshot (stale lists beat no lists) and retries on a later lookup.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "core/ip_address.h"
#include "state/generation_snapshot.h"
#include "state/store.h"

namespace spamward {

enum class ListKind { allow, deny };
std::string_view to_string(ListKind kind);  // "allow" | "deny" (also the table name)

class ListEntryError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// A parsed, normalised entry.
struct ListEntryKey {
  enum class Type { network, domain, address };
  Type type = Type::network;
  std::string text;  // the normalised spelling, also the store key
  Prefix prefix;     // for Type::network
};

// Throws ListEntryError.
ListEntryKey parse_list_entry(std::string_view entry);

struct ListEntry {
  std::string entry;  // normalised
  std::string comment;
  TimePoint added;
};

class AdminLists {
 public:
  static constexpr std::chrono::milliseconds kDefaultRefresh{200};

  // `refresh_interval` 0: re-read the generation on every lookup (tests).
  AdminLists(Store& store, const Clock& clock,
             std::chrono::milliseconds refresh_interval = kDefaultRefresh);
  ~AdminLists();

  // Adds or replaces an entry; returns its normalised spelling. Flushed before returning, so
  // other processes see it. Throws ListEntryError, StoreError.
  std::string add(ListKind kind, std::string_view entry, std::string_view comment);
  // Removes an entry; false when it was not on the list. Throws ListEntryError, StoreError.
  bool remove(ListKind kind, std::string_view entry);
  // Every entry, in key order (read from the store, not the cache).
  std::vector<ListEntry> list(ListKind kind);

  // The most specific network entry containing `client`, if any.
  std::optional<std::string> match_client(ListKind kind, const IpAddress& client);
  // The "user@domain" entry equal to `sender`, else the "@domain" entry of its domain.
  // Case-insensitive; an empty sender (a bounce) matches nothing.
  std::optional<std::string> match_sender(ListKind kind, std::string_view sender);
  // Entries overlapping `network`: those containing it and those inside it (`spamward ip`).
  std::vector<ListEntry> entries_overlapping(ListKind kind, const Prefix& network);

  // Forces the next lookup to re-check the generation.
  void invalidate();

 private:
  struct Snapshot;
  std::shared_ptr<const Snapshot> snapshot();
  std::shared_ptr<const Snapshot> load(std::string generation);
  void bump_generation();

  Store& store_;
  const Clock& clock_;
  GenerationSnapshot<Snapshot> snapshot_;
};

}  // namespace spamward
