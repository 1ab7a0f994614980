// `spamward allow|deny add|del|list [ENTRY]` and `spamward ip ADDRESS` (DESIGN §3.2).
//
// `allow add` of an address or network also lifts the bans inside it and forgets their
// offences (an admin's forgiveness), so the firewall exports drop them too.
//
// Both open the store named by [store] in the config. The store may be in use by a running
// `serve` at the same time (LMDB's lock file serialises writers); AdminLists::add/remove
// flush before returning, so a change is durable when the command exits and the daemon
// picks it up within a second.
//
// Exit codes: 0 ok; 1 store failure, or `del` of an entry that is not on the list; 2 bad
// config or bad entry/address.
#include <fmt/format.h>

#include <algorithm>
#include <ctime>
#include <iostream>
#include <memory>

#include "cli/cli_support.h"
#include "cli/commands.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/duration.h"
#include "state/admin_lists.h"
#include "state/greylist.h"
#include "state/reputation.h"
#include "state/store.h"

namespace spamward::cli {

namespace {

std::string format_time(TimePoint t) {
  if (to_unix_ms(t) == 0) return "(date unknown)";
  std::time_t secs = static_cast<std::time_t>(to_unix_ms(t) / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

void print_entries(const std::vector<ListEntry>& entries) {
  size_t width = 0;
  for (const auto& e : entries) width = std::max(width, e.entry.size());
  for (const auto& e : entries) {
    std::cout << e.entry << std::string(width - e.entry.size() + 2, ' ') << format_time(e.added);
    if (!e.comment.empty()) std::cout << "  " << e.comment;
    std::cout << "\n";
  }
}

// The admin-list section of `spamward ip`.
void print_list_facts(AdminLists& lists, const Prefix& query) {
  for (ListKind kind : {ListKind::allow, ListKind::deny}) {
    auto entries = lists.entries_overlapping(kind, query);
    std::cout << "  " << to_string(kind) << " list:";
    if (entries.empty()) {
      std::cout << " no matching entry\n";
      continue;
    }
    std::cout << "\n";
    for (const auto& e : entries) {
      auto p = Prefix::parse(e.entry);
      bool covers = p && p->length() <= query.length();
      std::cout << "    " << e.entry << (covers ? "" : " (inside " + query.to_string() + ")")
                << ", added " << format_time(e.added);
      if (!e.comment.empty()) std::cout << ": " << e.comment;
      std::cout << "\n";
    }
  }
}

void print_offences(const OffenceRecord& r, TimePoint now, Duration half_life) {
  std::cout << fmt::format("{} in all, {:.2f} now after decay; last {}", r.total,
                           r.decayed_at(now, half_life), format_time(r.last))
            << "\n";
  for (const auto& o : r.history) {
    std::cout << "      " << format_time(o.at) << "  " << to_string(o.kind);
    if (!o.detail.empty()) std::cout << ": " << o.detail;
    std::cout << "\n";
  }
}

// The reputation section of `spamward ip`: offences, the current ban, the next ban.
void print_reputation(Reputation& reputation, const Prefix& query, TimePoint now) {
  auto report = reputation.report(query);
  const Duration half_life = reputation.config().offence_half_life;
  std::cout << "  offences: ";
  if (report.offences) {
    print_offences(*report.offences, now, half_life);
  } else {
    std::cout << "none\n";
  }
  std::cout << "  ban: ";
  if (report.ban) {
    std::cout << report.ban->target.to_string() << " until " << format_time(report.ban->until)
              << " (offence " << report.ban->offence_number << ", "
              << (report.ban->permanent ? "5xx, permanent" : "4xx, temporary") << ")";
    if (!report.ban->reason.empty()) std::cout << ": " << report.ban->reason;
    std::cout << "\n";
  } else {
    std::cout << "none\n";
  }
  std::cout << "  next offence: number " << report.next_offence_number << ", ban for "
            << format_duration(report.next_ban_length)
            << (report.next_permanent ? " (5xx)" : " (4xx)") << "\n";
  // A network's own record counts the times it was banned as a whole (its ban lengths grow
  // with that count); its members' offences are counted below.
  for (const auto& [network, record] : report.networks) {
    std::cout << "  network " << network.to_string() << " bans: ";
    if (record) {
      print_offences(*record, now, half_life);
    } else {
      std::cout << "never banned as a whole\n";
    }
  }
  for (const auto& [network, offenders] : report.network_offenders)
    std::cout << "  network " << network.to_string() << ": " << offenders
              << " distinct offending members recently\n";
  for (const auto& [network, clean] : report.network_clean)
    std::cout << "  network " << network.to_string() << ": "
              << (clean ? "has a record of clean mail (never banned wholesale)"
                        : "no record of clean mail")
              << "\n";
}

// The greylisting section of `spamward ip`: the network's standing and its triplets.
void print_greylist(GreylistTable& greylist, const Prefix& query) {
  const auto& gc = greylist.config();
  const IpAddress& a = query.address();
  int length = a.is_v4() ? gc.ipv4_prefix : gc.ipv6_prefix;
  Prefix network(a, std::min(length, query.length()));
  std::string entity = network.to_string();
  std::cout << "  greylist network " << entity << ": ";
  if (auto e = greylist.entity(entity)) {
    std::cout << e->successful_retries << " successful retries, last "
              << format_time(e->last_success);
    if (e->auto_allowed_until)
      std::cout << "; auto-allowed until " << format_time(*e->auto_allowed_until);
    std::cout << "\n";
  } else {
    std::cout << "never passed greylisting\n";
  }
  auto triplets = greylist.triplets(entity, 20);
  for (const auto& t : triplets) {
    std::cout << "    " << t.key.sender << " -> " << t.key.recipient << ": "
              << (t.passed     ? "passed"
                  : t.hammered ? "hammering (never passes)"
                               : "waiting")
              << ", first " << format_time(t.first_seen) << ", last " << format_time(t.last_seen);
    if (t.early_retries) std::cout << ", " << t.early_retries << " early retries";
    std::cout << "\n";
  }
  if (triplets.size() == 20) std::cout << "    (first 20 shown)\n";
}

}  // namespace

int cmd_list(const std::string& config_path, const std::string& list, const std::string& action,
             const std::string& entry, const std::string& comment) {
  auto config = load_config_reporting(config_path);
  if (!config) return 2;
  ListKind kind = list == "allow" ? ListKind::allow : ListKind::deny;
  if (action != "list") {
    try {
      parse_list_entry(entry);  // a bad entry is bad usage, reported before touching the store
    } catch (const ListEntryError& e) {
      std::cerr << "spamward: " << e.what() << "\n";
      return 2;
    }
  }
  SystemClock clock;
  try {
    auto store = open_configured_store(*config, clock);
    AdminLists lists(*store, clock);
    if (action == "add") {
      std::string added = lists.add(kind, entry, comment);
      std::cout << "added " << added << " to the " << list << " list\n";
      ListEntryKey key = parse_list_entry(added);
      if (kind == ListKind::allow && key.type == ListEntryKey::Type::network) {
        Reputation reputation(*store, clock, config->reputation);
        int lifted = reputation.lift(key.prefix);
        if (lifted > 0) std::cout << "lifted " << lifted << " ban(s) inside " << added << "\n";
      }
    } else if (action == "del") {
      std::string normalised = parse_list_entry(entry).text;
      if (!lists.remove(kind, entry)) {
        std::cerr << "spamward: " << normalised << " is not on the " << list << " list\n";
        return 1;
      }
      std::cout << "removed " << normalised << " from the " << list << " list\n";
    } else {
      print_entries(lists.list(kind));
    }
    store->flush();
  } catch (const StoreError& e) {
    std::cerr << "spamward: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

int cmd_ip(const std::string& config_path, const std::string& address) {
  auto config = load_config_reporting(config_path);
  if (!config) return 2;
  auto query = Prefix::parse(address);
  if (!query) {
    std::cerr << "spamward: \"" << address << "\" is not an IPv4/IPv6 address or CIDR network\n";
    return 2;
  }
  SystemClock clock;
  try {
    auto store = open_configured_store(*config, clock);
    AdminLists lists(*store, clock);
    std::cout << query->to_string() << "\n";
    print_list_facts(lists, *query);
    Reputation reputation(*store, clock, config->reputation);
    print_reputation(reputation, *query, clock.now());
    GreylistTable greylist(*store, clock, config->greylist);
    print_greylist(greylist, *query);
  } catch (const StoreError& e) {
    std::cerr << "spamward: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace spamward::cli
