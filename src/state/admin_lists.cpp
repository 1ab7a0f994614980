#include "state/admin_lists.h"
#include "core/strings.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <unordered_map>
#include <unordered_set>

namespace spamward {

namespace {

constexpr std::string_view kGenerationTable = "admin_lists";
constexpr std::string_view kGenerationKey = "generation";

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Dot-separated labels of letters, digits, '-' (not at either end) and '_' (seen in real
// sender domains). Returns the lower-cased domain, or nullopt and why.
std::optional<std::string> valid_domain(std::string_view domain, std::string& why) {
  if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
  if (domain.empty()) {
    why = "the domain is empty";
    return std::nullopt;
  }
  if (domain.size() > 253) {
    why = "the domain is longer than 253 characters";
    return std::nullopt;
  }
  for (size_t start = 0; start <= domain.size();) {
    size_t dot = std::min(domain.find('.', start), domain.size());
    std::string_view label = domain.substr(start, dot - start);
    if (label.empty() || label.size() > 63) {
      why = "the domain has an empty label or one longer than 63 characters";
      return std::nullopt;
    }
    for (char c : label) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '_';
      if (!ok) {
        why = std::string("the domain contains '") + c + "'";
        return std::nullopt;
      }
    }
    if (label.front() == '-' || label.back() == '-') {
      why = "a domain label starts or ends with '-'";
      return std::nullopt;
    }
    start = dot + 1;
  }
  return to_lower(domain);
}

bool valid_local_part(std::string_view local) {
  if (local.empty() || local.size() > 64) return false;
  return std::all_of(local.begin(), local.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u < 0x7f && c != '<' && c != '>' && c != '"' && c != ',' && c != '@';
  });
}

std::string address_key(const IpAddress& a) {
  const auto& b = a.bytes();
  return std::string(reinterpret_cast<const char*>(b.data()), a.is_v4() ? 4 : 16);
}

std::string new_generation() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::to_string(rng());
}

ListEntry decode(std::string_view key, std::string_view value) {
  ListEntry e;
  e.entry = std::string(key);
  auto json = nlohmann::json::parse(value, nullptr, false);
  if (json.is_object()) {
    e.comment = json.value("comment", "");
    e.added = from_unix_ms(json.value("added", int64_t{0}));
  }
  return e;
}

}  // namespace

std::string_view to_string(ListKind kind) {
  return kind == ListKind::allow ? "allow" : "deny";
}

ListEntryKey parse_list_entry(std::string_view raw) {
  std::string_view entry = trim(raw);
  if (entry.empty()) throw ListEntryError("empty list entry");
  auto fail = [&](const std::string& why) -> ListEntryError {
    return ListEntryError("invalid list entry \"" + std::string(entry) + "\": " + why);
  };
  ListEntryKey key;
  if (auto at = entry.rfind('@'); at != std::string_view::npos) {
    std::string why;
    auto domain = valid_domain(entry.substr(at + 1), why);
    if (!domain) throw fail(why);
    if (at == 0) {
      key.type = ListEntryKey::Type::domain;
      key.text = "@" + *domain;
      return key;
    }
    std::string_view local = entry.substr(0, at);
    if (!valid_local_part(local)) {
      throw fail(
          "the local part must be 1 to 64 printable characters without spaces, quotes, "
          "commas or angle brackets");
    }
    key.type = ListEntryKey::Type::address;
    key.text = to_lower(local) + "@" + *domain;
    return key;
  }
  auto prefix = Prefix::parse(entry);
  if (!prefix) {
    std::string why;
    if (valid_domain(entry, why)) {
      throw fail("not an address or CIDR; a sender domain is written @" + to_lower(entry));
    }
    throw fail("expected an address, a CIDR, @domain or user@domain");
  }
  key.type = ListEntryKey::Type::network;
  key.prefix = *prefix;
  key.text = prefix->to_string();
  return key;
}

struct AdminLists::Snapshot {
  struct List {
    // Per family, the prefix lengths present, longest first, each with its networks keyed
    // by address bytes: one hash lookup per distinct length.
    std::vector<std::pair<int, std::unordered_map<std::string, std::string>>> v4, v6;
    std::unordered_set<std::string> senders;
  };
  std::string generation;
  List allow, deny;

  const List& of(ListKind kind) const { return kind == ListKind::allow ? allow : deny; }
};

AdminLists::AdminLists(Store& store, const Clock& clock, std::chrono::milliseconds refresh_interval)
    : store_(store),
      clock_(clock),
      snapshot_(store, kGenerationTable, kGenerationKey, refresh_interval, "admin lists") {}

AdminLists::~AdminLists() = default;

std::string AdminLists::add(ListKind kind, std::string_view entry, std::string_view comment) {
  ListEntryKey key = parse_list_entry(entry);
  nlohmann::json value = {{"comment", std::string(comment)}, {"added", to_unix_ms(clock_.now())}};
  store_.put(to_string(kind), key.text,
             value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  bump_generation();
  store_.flush();
  invalidate();
  return key.text;
}

bool AdminLists::remove(ListKind kind, std::string_view entry) {
  ListEntryKey key = parse_list_entry(entry);
  if (!store_.get(to_string(kind), key.text)) return false;
  store_.erase(to_string(kind), key.text);
  bump_generation();
  store_.flush();
  invalidate();
  return true;
}

std::vector<ListEntry> AdminLists::list(ListKind kind) {
  std::vector<ListEntry> out;
  store_.scan(to_string(kind), "", [&out](std::string_view k, std::string_view v) {
    out.push_back(decode(k, v));
    return true;
  });
  return out;
}

std::vector<ListEntry> AdminLists::entries_overlapping(ListKind kind, const Prefix& network) {
  std::vector<ListEntry> out;
  for (auto& e : list(kind)) {
    auto p = Prefix::parse(e.entry);
    if (!p) continue;  // a sender entry
    bool contains = p->length() <= network.length() && p->contains(network.address());
    bool inside = network.length() <= p->length() && network.contains(p->address());
    if (contains || inside) out.push_back(std::move(e));
  }
  return out;
}

void AdminLists::bump_generation() {
  // A random value, not a counter: two processes bumping at once must still both change it.
  store_.put(kGenerationTable, kGenerationKey, new_generation());
}

void AdminLists::invalidate() {
  snapshot_.invalidate();
}

std::shared_ptr<const AdminLists::Snapshot> AdminLists::load(std::string generation) {
  auto snap = std::make_shared<Snapshot>();
  snap->generation = std::move(generation);
  for (ListKind kind : {ListKind::allow, ListKind::deny}) {
    Snapshot::List& list = kind == ListKind::allow ? snap->allow : snap->deny;
    std::map<int, std::unordered_map<std::string, std::string>, std::greater<>> v4, v6;
    store_.scan(to_string(kind), "", [&](std::string_view k, std::string_view) {
      ListEntryKey key;
      try {
        key = parse_list_entry(k);
      } catch (const ListEntryError& e) {
        spdlog::warn("ignoring {} list entry: {}", to_string(kind), e.what());
        return true;
      }
      if (key.type == ListEntryKey::Type::network) {
        auto& by_length = key.prefix.address().is_v4() ? v4 : v6;
        by_length[key.prefix.length()].emplace(address_key(key.prefix.address()), key.text);
      } else {
        list.senders.insert(key.text);
      }
      return true;
    });
    list.v4.assign(std::make_move_iterator(v4.begin()), std::make_move_iterator(v4.end()));
    list.v6.assign(std::make_move_iterator(v6.begin()), std::make_move_iterator(v6.end()));
  }
  return snap;
}

std::shared_ptr<const AdminLists::Snapshot> AdminLists::snapshot() {
  return snapshot_.get([this](std::string generation) { return load(std::move(generation)); });
}

std::optional<std::string> AdminLists::match_client(ListKind kind, const IpAddress& client) {
  auto snap = snapshot();
  const auto& list = snap->of(kind);
  for (const auto& [length, networks] : client.is_v4() ? list.v4 : list.v6) {
    auto it = networks.find(address_key(Prefix(client, length).address()));
    if (it != networks.end()) return it->second;
  }
  return std::nullopt;
}

std::optional<std::string> AdminLists::match_sender(ListKind kind, std::string_view sender) {
  auto at = sender.rfind('@');
  if (sender.empty() || at == std::string_view::npos) return std::nullopt;
  auto snap = snapshot();
  const auto& senders = snap->of(kind).senders;
  if (senders.empty()) return std::nullopt;
  std::string address = to_lower(sender);
  if (senders.contains(address)) return address;
  std::string domain = address.substr(at);
  if (!domain.empty() && domain.back() == '.') domain.pop_back();
  if (senders.contains(domain)) return domain;
  return std::nullopt;
}

}  // namespace spamward
