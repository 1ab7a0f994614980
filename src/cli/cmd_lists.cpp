// `spamward allow|deny add|del|list [ENTRY]` and `spamward ip ADDRESS` (DESIGN §3.2).
//
// Both open the store named by [store] in the config. The store may be in use by a running
// `serve` at the same time (LMDB's lock file serialises writers); AdminLists::add/remove
// flush before returning, so a change is durable when the command exits and the daemon
// picks it up within a second.
//
// Exit codes: 0 ok; 1 store failure, or `del` of an entry that is not on the list; 2 bad
// config or bad entry/address.
#include <ctime>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "core/clock.h"
#include "core/config.h"
#include "state/admin_lists.h"
#include "state/store.h"

namespace spamward::cli {

namespace {

// Loads the config; nullopt after printing the one-line error.
std::optional<Config> load(const std::string& config_path) {
  try {
    return load_config(config_path);
  } catch (const ConfigError& e) {
    std::cerr << "spamward: config error: " << e.what() << "\n";
    return std::nullopt;
  }
}

// Throws StoreError.
std::unique_ptr<Store> open_store(const Config& config, const Clock& clock) {
  if (config.store.backend != "lmdb") {
    throw StoreError("the \"" + config.store.backend +
                     "\" store backend is not available in this build of spamward");
  }
  LmdbOptions options;
  options.path = config.store.path;
  options.batch_interval = Duration(0);  // one-shot commands: nothing to gather
  return open_lmdb_store(options, clock);
}

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

}  // namespace

int cmd_list(const std::string& config_path, const std::string& list, const std::string& action,
             const std::string& entry, const std::string& comment) {
  auto config = load(config_path);
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
    auto store = open_store(*config, clock);
    AdminLists lists(*store, clock);
    if (action == "add") {
      std::string added = lists.add(kind, entry, comment);
      std::cout << "added " << added << " to the " << list << " list\n";
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
  auto config = load(config_path);
  if (!config) return 2;
  auto query = Prefix::parse(address);
  if (!query) {
    std::cerr << "spamward: \"" << address << "\" is not an IPv4/IPv6 address or CIDR network\n";
    return 2;
  }
  SystemClock clock;
  try {
    auto store = open_store(*config, clock);
    AdminLists lists(*store, clock);
    std::cout << query->to_string() << "\n";
    print_list_facts(lists, *query);
    // Greylist, reputation (offences, bans) and network facts are printed here as their
    // modules land, each as one more "  <topic>: ..." section.
  } catch (const StoreError& e) {
    std::cerr << "spamward: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace spamward::cli
