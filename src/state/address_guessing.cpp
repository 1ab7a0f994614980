#include "state/address_guessing.h"

#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/strings.h"
#include "state/value_codec.h"

namespace spamward {

namespace {

constexpr std::string_view kTable = "guess";
constexpr uint8_t kVersion = 1;
constexpr size_t kMaxItem = 254;  // an address; longer input is cut (it is unknown anyway)

std::string list_text(const std::vector<std::string>& items, size_t max_items = 5) {
  std::string out;
  for (size_t i = 0; i < items.size() && i < max_items; ++i) {
    if (!out.empty()) out += ", ";
    out += printable(items[i], 64);
  }
  if (items.size() > max_items) out += fmt::format(" and {} more", items.size() - max_items);
  return out;
}

}  // namespace

struct AddressGuessing::Entry {
  TimePoint at;
  std::string client;   // address text
  std::string network;  // network text
  std::string item;     // the recipient (address and network records) or local part (domain)
};

struct AddressGuessing::Record {
  TimePoint valid_at{};    // last valid recipient (epoch: never)
  TimePoint flagged_at{};  // last flagged as guessing (epoch: never)
  std::vector<Entry> entries;

  void drop_before(TimePoint cutoff) {
    std::erase_if(entries, [&](const Entry& e) { return e.at < cutoff; });
  }
  bool has(std::string_view client, std::string_view item) const {
    return std::any_of(entries.begin(), entries.end(), [&](const Entry& e) {
      return e.item == item && (client.empty() || e.client == client);
    });
  }
  void add(Entry e, size_t cap) {
    entries.push_back(std::move(e));
    if (entries.size() > cap) entries.erase(entries.begin(), entries.end() - cap);
  }
  std::vector<std::string> distinct_items() const {
    std::vector<std::string> out;
    for (const auto& e : entries)
      if (std::find(out.begin(), out.end(), e.item) == out.end()) out.push_back(e.item);
    return out;
  }
};

AddressGuessing::AddressGuessing(Store& store, const Clock& clock, AddressGuessingOptions options,
                                 Reputation* reputation)
    : store_(store), clock_(clock), options_(options), reputation_(reputation) {}

AddressGuessing::Record AddressGuessing::load(const std::string& key) {
  Record r;
  auto value = store_.get(kTable, key);
  if (!value) return r;
  VersionedReader in(*value, kVersion);
  r.valid_at = in.time();
  r.flagged_at = in.time();
  uint16_t n = in.u16();
  for (uint16_t i = 0; i < n && in.ok(); ++i) {
    Entry e;
    e.at = in.time();
    e.client = in.text();
    e.network = in.text();
    e.item = in.text();
    r.entries.push_back(std::move(e));
  }
  if (!in.complete()) return Record{};  // not what we wrote: absent
  return r;
}

void AddressGuessing::save(const std::string& key, const Record& record, TimePoint now) {
  VersionedWriter out(kVersion);
  out.time(record.valid_at);
  out.time(record.flagged_at);
  out.u16(static_cast<uint16_t>(record.entries.size()));
  for (const auto& e : record.entries) {
    out.time(e.at);
    out.text(e.client);
    out.text(e.network);
    out.text(e.item);
  }
  store_.put(kTable, key, out.take(), now + options_.window);
}

std::string AddressGuessing::network_key(const IpAddress& client) const {
  int length = client.is_v4() ? options_.ipv4_prefix : options_.ipv6_prefix;
  return Prefix(client, length).to_string();
}

void AddressGuessing::note_valid(const IpAddress& client) {
  std::lock_guard lock(mu_);
  TimePoint now = clock_.now();
  for (const std::string& key : {"a|" + client.to_string(), "n|" + network_key(client)}) {
    Record r = load(key);
    // Written at most once a minute per key: valid mail is the common case.
    if (now - r.valid_at < std::chrono::minutes(1)) continue;
    r.drop_before(now - options_.window);
    r.valid_at = now;
    save(key, r, now);
  }
}

bool AddressGuessing::flagged(const IpAddress& client) {
  std::lock_guard lock(mu_);
  Record r = load("a|" + client.to_string());
  return r.flagged_at != TimePoint{} && clock_.now() - r.flagged_at < options_.window;
}

GuessVerdict AddressGuessing::note_unknown(const IpAddress& client, std::string_view recipient) {
  std::lock_guard lock(mu_);
  GuessVerdict verdict;
  const TimePoint now = clock_.now();
  const TimePoint cutoff = now - options_.window;
  const std::string address = client.to_string();
  const std::string network = network_key(client);
  std::string rcpt = to_lower(recipient.substr(0, kMaxItem));
  const size_t at = rcpt.rfind('@');
  std::string domain = at == std::string::npos ? "" : rcpt.substr(at + 1);
  std::string local = rcpt.substr(0, at == std::string::npos ? rcpt.size() : at);

  const std::string address_key = "a|" + address;
  const std::string network_key_text = "n|" + network;
  Record mine = load(address_key);
  Record net = load(network_key_text);
  mine.drop_before(cutoff);
  net.drop_before(cutoff);
  if (!mine.has("", rcpt)) mine.add({now, address, network, rcpt}, kMaxPerAddress);
  if (!net.has(address, rcpt)) net.add({now, address, network, rcpt}, kMaxPerNetwork);
  const bool address_valid = mine.valid_at >= cutoff && mine.valid_at != TimePoint{};
  const bool network_valid = net.valid_at >= cutoff && net.valid_at != TimePoint{};
  auto mine_items = mine.distinct_items();
  auto net_items = net.distinct_items();
  const std::string window = format_duration(options_.window);

  if (!address_valid && static_cast<int64_t>(mine_items.size()) >= options_.threshold) {
    verdict.guessing = true;
    verdict.evidence = fmt::format("{} unknown recipients in {}: {}", mine_items.size(), window,
                                   list_text(mine_items));
  } else if (!network_valid && !address_valid &&
             static_cast<int64_t>(net_items.size()) >= options_.threshold) {
    verdict.guessing = true;
    verdict.evidence = fmt::format("{} unknown recipients from {} in {}: {}", net_items.size(),
                                   network, window, list_text(net_items));
  }

  // Campaign: the recent unknown local parts at this domain, by network.
  if (!domain.empty()) {
    const std::string domain_key = "d|" + domain;
    Record dom = load(domain_key);
    dom.drop_before(cutoff);
    if (!dom.has(address, local)) dom.add({now, address, network, local}, kMaxPerDomain);
    save(domain_key, dom, now);
    std::map<std::string, std::set<std::string>> parts_by_network;
    for (const auto& e : dom.entries) parts_by_network[e.network].insert(e.item);
    std::vector<std::string> candidates;
    for (const auto& [net_text, parts] : parts_by_network)
      if (parts.size() >= 2) candidates.push_back(net_text);
    if (static_cast<int64_t>(candidates.size()) >= options_.campaign_networks &&
        std::find(candidates.begin(), candidates.end(), network) != candidates.end()) {
      // Only networks that sent nothing valid take part; the rest are senders with stale lists.
      std::set<std::string> members, parts;
      for (const auto& net_text : candidates) {
        Record other = net_text == network ? net : load("n|" + net_text);
        bool other_valid = other.valid_at >= cutoff && other.valid_at != TimePoint{};
        if (other_valid) continue;
        members.insert(net_text);
        parts.insert(parts_by_network[net_text].begin(), parts_by_network[net_text].end());
      }
      if (static_cast<int64_t>(members.size()) >= options_.campaign_networks &&
          static_cast<int64_t>(parts.size()) >= options_.campaign_local_parts &&
          members.contains(network) && !address_valid) {
        std::vector<std::string> part_list(parts.begin(), parts.end());
        std::string evidence =
            fmt::format("campaign at {}: {} networks tried {} unknown local parts in {}: {}",
                        domain, members.size(), parts.size(), window, list_text(part_list));
        if (!verdict.guessing) {
          verdict.guessing = true;
          verdict.campaign = true;
          verdict.evidence = evidence;
        }
        // The other participants, flagged now unless they were already.
        std::set<std::string> seen{address};
        for (const auto& e : dom.entries) {
          if (!members.contains(e.network) || !seen.insert(e.client).second) continue;
          auto other_address = IpAddress::parse(e.client);
          if (!other_address) continue;
          const std::string other_key = "a|" + e.client;
          Record other = load(other_key);
          if (other.valid_at >= cutoff && other.valid_at != TimePoint{}) continue;
          if (other.flagged_at >= cutoff && other.flagged_at != TimePoint{}) continue;
          other.drop_before(cutoff);
          other.flagged_at = now;
          save(other_key, other, now);
          verdict.participants.push_back(*other_address);
          if (reputation_ && options_.record_offences)
            reputation_->record_offence(*other_address, OffenceKind::guessing, evidence);
        }
      }
    }
  }

  if (verdict.guessing && (mine.flagged_at < cutoff || mine.flagged_at == TimePoint{})) {
    verdict.newly_flagged = true;
    mine.flagged_at = now;
  }
  save(address_key, mine, now);
  save(network_key_text, net, now);
  if (verdict.newly_flagged && reputation_ && options_.record_offences)
    verdict.ban = reputation_->record_offence(client, OffenceKind::guessing, verdict.evidence);
  if (verdict.newly_flagged || !verdict.participants.empty()) {
    spdlog::info("recipients: {} is guessing addresses ({}){}", address, verdict.evidence,
                 verdict.participants.empty()
                     ? ""
                     : fmt::format("; {} more participants flagged", verdict.participants.size()));
  }
  return verdict;
}

}  // namespace spamward
