// Reputation (contract in reputation.h): offences, bans and their escalation on the Store,
// with an in-memory ban snapshot for the hot path.
#include "state/reputation.h"

#include "state/value_codec.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <unordered_map>
#include <utility>

namespace spamward {

namespace {

constexpr std::string_view kOffenceTable = "offence";
constexpr std::string_view kBanTable = "ban";
constexpr std::string_view kNetTable = "rep_net";
constexpr std::string_view kCleanTable = "rep_clean";
constexpr std::string_view kGenerationTable = "reputation";
constexpr std::string_view kGenerationKey = "generation";

// First byte of every value; a value of another version is treated as absent.
constexpr uint8_t kValueVersion = 1;
// An offence record is forgotten once its decayed count falls below this.
constexpr double kForgottenCount = 1.0 / 64;
// rep_clean: at most one write per network per hour (clean mail is the common case, and
// the record only needs to exist); kept for this many half-lives.
constexpr Duration kCleanWriteInterval = std::chrono::hours(1);
constexpr double kCleanHalfLives = 4;
// IPv6 networks are also aggregated at /48, the usual end-site assignment.
constexpr int kSiteLength = 48;
// Members remembered per network: enough to reach any sensible network_after, bounded so a
// rotating IPv6 sender cannot grow one value without limit.
constexpr int64_t kMinNetworkMembers = 256;
constexpr int64_t kMaxNetworkMembers = 4096;
// No store entry is kept longer than this, whatever the half-life says.
constexpr double kMaxLifetimeMs = 100.0 * 365 * 24 * 3600 * 1000;

// Values: a version byte, then little-endian fixed-width fields (state/value_codec.h).
class ValueWriter : public VersionedWriter {
 public:
  ValueWriter() : VersionedWriter(kValueVersion) {}
};
class ValueReader : public VersionedReader {
 public:
  explicit ValueReader(std::string_view in) : VersionedReader(in, kValueVersion) {}
};

std::string encode_offences(const OffenceRecord& record) {
  ValueWriter w;
  w.f64(record.decayed);
  w.time(record.last);
  w.i64(record.total);
  w.u8(static_cast<uint8_t>(record.history.size()));
  for (const auto& offence : record.history) {
    w.time(offence.at);
    w.u8(static_cast<uint8_t>(offence.kind));
    w.text(offence.detail);
  }
  return w.take();
}

std::optional<OffenceRecord> decode_offences(std::string_view value) {
  ValueReader r(value);
  OffenceRecord record;
  record.decayed = r.f64();
  record.last = r.time();
  record.total = r.i64();
  size_t entries = r.u8();
  if (!r.ok() || entries > Reputation::kMaxHistory) return std::nullopt;
  for (size_t i = 0; i < entries && r.ok(); ++i) {
    Offence offence;
    offence.at = r.time();
    uint8_t kind = r.u8();
    offence.detail = r.text();
    if (kind > static_cast<uint8_t>(OffenceKind::guessing)) return std::nullopt;
    if (offence.detail.size() > Reputation::kMaxDetail) return std::nullopt;
    offence.kind = static_cast<OffenceKind>(kind);
    record.history.push_back(std::move(offence));
  }
  if (!r.complete() || !std::isfinite(record.decayed) || record.decayed < 0 || record.total < 0) {
    return std::nullopt;
  }
  return record;
}

// The target is the key's business, not the value's.
std::string encode_ban(const Ban& ban) {
  ValueWriter w;
  w.time(ban.since);
  w.time(ban.until);
  w.u8(ban.permanent ? 1 : 0);
  w.i64(ban.offence_number);
  w.text(ban.reason);
  return w.take();
}

std::optional<Ban> decode_ban(std::string_view value) {
  ValueReader r(value);
  Ban ban;
  ban.since = r.time();
  ban.until = r.time();
  uint8_t permanent = r.u8();
  ban.offence_number = r.i64();
  ban.reason = r.text();
  if (!r.complete() || permanent > 1 || ban.offence_number < 1) return std::nullopt;
  ban.permanent = permanent == 1;
  return ban;
}

// A network's offending members (addresses, or the /64s of a /48) and their last offence.
struct Member {
  Prefix prefix;
  TimePoint last;
};

std::string encode_members(const std::vector<Member>& members) {
  ValueWriter w;
  w.u16(static_cast<uint16_t>(members.size()));
  for (const auto& m : members) {
    w.u8(static_cast<uint8_t>(m.prefix.length()));
    w.raw(m.prefix.address().bytes().data(), 16);
    w.time(m.last);
  }
  return w.take();
}

// Members of `network`; anything that is not one (wrong family, outside it) makes the whole
// value undecodable.
std::optional<std::vector<Member>> decode_members(std::string_view value, const Prefix& network) {
  ValueReader r(value);
  size_t count = r.u16();
  std::vector<Member> members;
  for (size_t i = 0; i < count && r.ok(); ++i) {
    int length = r.u8();
    std::array<uint8_t, 16> bytes{};
    r.raw(bytes.data(), bytes.size());
    TimePoint last = r.time();
    IpAddress address;
    if (network.address().is_v4()) {
      address = IpAddress::v4((uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) |
                              (uint32_t{bytes[2]} << 8) | uint32_t{bytes[3]});
    } else {
      address = IpAddress::v6(bytes);
    }
    if (length > address.bits() || !network.contains(address)) return std::nullopt;
    members.push_back({Prefix(address, length), last});
  }
  if (!r.complete()) return std::nullopt;
  return members;
}

std::string encode_clean(TimePoint at) {
  ValueWriter w;
  w.time(at);
  return w.take();
}

std::optional<TimePoint> decode_clean(std::string_view value) {
  ValueReader r(value);
  TimePoint at = r.time();
  if (!r.complete()) return std::nullopt;
  return at;
}

// ---- Keys ----

std::string target_key(const Prefix& target) {
  return target.is_host() ? target.address().to_string() : reputation_network_key(target);
}

// The target a ban/offence/rep_net key names; nullopt for a key we did not write.
std::optional<Prefix> parse_target_key(std::string_view key) {
  if (key.starts_with("n4:") || key.starts_with("n6:")) {
    auto prefix = Prefix::parse(key.substr(3));
    if (!prefix || prefix->address().is_v4() != (key[1] == '4')) return std::nullopt;
    return prefix;
  }
  auto address = IpAddress::parse(key);
  if (!address) return std::nullopt;
  return Prefix(*address, address->bits());
}

// A hashable form of an address's bytes; the family is kept apart by the snapshot.
struct AddressKey {
  uint64_t high = 0;
  uint64_t low = 0;
  bool operator==(const AddressKey&) const = default;
};

struct AddressKeyHash {
  size_t operator()(const AddressKey& k) const {
    uint64_t h = k.high * 0x9e3779b97f4a7c15ULL ^ k.low;
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ULL;
    h ^= h >> 32;
    return static_cast<size_t>(h);
  }
};

AddressKey address_key(const IpAddress& a) {
  std::array<uint8_t, 16> bytes{};
  std::copy_n(a.bytes().begin(), a.bits() / 8, bytes.begin());
  AddressKey key;
  std::memcpy(&key.high, bytes.data(), 8);
  std::memcpy(&key.low, bytes.data() + 8, 8);
  return key;
}

// ---- Rules ----

// The networks an offence of `target`'s address counts for, each with the member the
// address counts as. Only levels no longer than `target` (all of them for an address).
struct Level {
  Prefix network;
  Prefix member;
};

std::vector<Level> levels_for(const Prefix& target, const ReputationConfig& config) {
  const IpAddress& a = target.address();
  std::vector<Level> levels;
  auto add = [&](int network_length, int member_length) {
    if (network_length <= target.length()) {
      levels.push_back({Prefix(a, network_length), Prefix(a, member_length)});
    }
  };
  if (a.is_v4()) {
    if (config.ipv4_prefix < 32) add(config.ipv4_prefix, 32);
  } else {
    if (config.ipv6_prefix < 128) add(config.ipv6_prefix, 128);
    if (config.ipv6_prefix > kSiteLength) add(kSiteLength, config.ipv6_prefix);
  }
  return levels;
}

std::string members_noun(const Level& level) {
  return level.member.is_host() ? "addresses"
                                : "/" + std::to_string(level.member.length()) + " networks";
}

Duration ban_length_for(int64_t n, const ReputationConfig& config) {
  n = std::max<int64_t>(n, 1);
  double ms = static_cast<double>(config.ban_base.count()) *
              std::pow(config.ban_factor, static_cast<double>(n - 1));
  double cap = static_cast<double>(config.ban_max.count());
  if (!(ms < cap)) ms = cap;  // also catches an overflow to infinity
  return Duration(std::llround(std::max(ms, 0.0)));
}

bool permanent_for(int64_t n, const ReputationConfig& config) {
  return n >= config.permanent_after;
}

int64_t offence_number(double earlier_decayed) {
  // Bounded so that a corrupt count cannot overflow the conversion.
  return 1 + std::llround(std::clamp(earlier_decayed, 0.0, 1e15));
}

// `from` plus `ms`, with `ms` bounded to a sane store lifetime and the sum saturated (a
// corrupt stored time must not overflow).
TimePoint after(TimePoint from, double ms) {
  int64_t add = std::llround(std::clamp(ms, 1.0, kMaxLifetimeMs));
  int64_t base = to_unix_ms(from);
  if (base > std::numeric_limits<int64_t>::max() - add) {
    return from_unix_ms(std::numeric_limits<int64_t>::max());
  }
  return from_unix_ms(base + add);
}

// When the record's count will have decayed below kForgottenCount.
TimePoint offence_expiry(const OffenceRecord& record, Duration half_life) {
  double ratio = record.decayed / kForgottenCount;
  double half_lives = ratio > 1 ? std::log2(ratio) : 0;
  return after(record.last, half_lives * static_cast<double>(half_life.count()));
}

// At most kMaxDetail bytes, not cutting a UTF-8 sequence in two.
std::string truncate_detail(std::string_view detail) {
  if (detail.size() <= Reputation::kMaxDetail) return std::string(detail);
  size_t cut = Reputation::kMaxDetail;
  auto continuation = [&](size_t i) { return (static_cast<uint8_t>(detail[i]) & 0xc0) == 0x80; };
  for (int i = 0; i < 3 && cut > 0 && continuation(cut); ++i) --cut;
  return std::string(detail.substr(0, cut));
}

std::string new_generation() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::to_string(rng());
}

}  // namespace

// ---- Public helpers ----

std::string_view to_string(OffenceKind kind) {
  switch (kind) {
    case OffenceKind::spam:
      return "spam";
    case OffenceKind::hammering:
      return "hammering";
    case OffenceKind::trap:
      return "trap";
    case OffenceKind::guessing:
      return "guessing";
  }
  return "spam";
}

std::string ban_length_text(const Ban& ban) {
  return format_duration(Duration(ban.until - ban.since)) + (ban.permanent ? " (5xx)" : "");
}

std::string reputation_network_key(const Prefix& network) {
  // Always with the length, so a network key never reads like an address key.
  return (network.address().is_v4() ? "n4:" : "n6:") + network.address().to_string() + "/" +
         std::to_string(network.length());
}

double OffenceRecord::decayed_at(TimePoint now, Duration half_life) const {
  if (decayed <= 0) return 0;
  if (half_life.count() <= 0 || now <= last) return decayed;  // a clock step back never adds
  // In doubles: a corrupt `last` far in the past must not overflow the subtraction.
  double elapsed = static_cast<double>(to_unix_ms(now)) - static_cast<double>(to_unix_ms(last));
  double half_lives = elapsed / static_cast<double>(half_life.count());
  return decayed * std::exp2(-half_lives);
}

// ---- Snapshot ----

struct Reputation::Snapshot {
  using BanMap = std::unordered_map<AddressKey, Ban, AddressKeyHash>;
  struct Family {
    BanMap hosts;
    // The network lengths that have bans, longest first: one hash lookup per length.
    std::vector<std::pair<int, BanMap>> networks;
  };
  std::string generation;
  Family v4, v6;

  const Family& of(const IpAddress& a) const { return a.is_v4() ? v4 : v6; }
};

Reputation::Reputation(Store& store, const Clock& clock, ReputationConfig config,
                       std::chrono::milliseconds refresh_interval)
    : store_(store),
      clock_(clock),
      config_(config),
      snapshot_(store, kGenerationTable, kGenerationKey, refresh_interval, "reputation") {}

Reputation::~Reputation() = default;

void Reputation::reconfigure(const ReputationConfig& config) {
  std::lock_guard lock(mu_);
  config_ = config;
}

ReputationConfig Reputation::config() const {
  std::lock_guard lock(mu_);
  return config_;
}

Duration Reputation::ban_length(int64_t n) const {
  return ban_length_for(n, config());
}

bool Reputation::is_permanent(int64_t n) const {
  return permanent_for(n, config());
}

void Reputation::on_change(std::function<void()> callback) {
  std::lock_guard lock(mu_);
  callback_ = std::move(callback);
}

void Reputation::changed() {
  std::function<void()> callback;
  {
    std::lock_guard lock(mu_);
    callback = callback_;
  }
  if (callback) callback();
}

void Reputation::bump_generation() {
  // A random value, not a counter: two processes bumping at once must still both change it.
  std::string generation = new_generation();
  {
    // Before the write, so a concurrent reload never mistakes it for another process's.
    std::lock_guard lock(mu_);
    own_generation_ = generation;
  }
  store_.put(kGenerationTable, kGenerationKey, generation);
  snapshot_.invalidate();  // this object sees its own change at once
}

std::shared_ptr<const Reputation::Snapshot> Reputation::load(std::string generation) {
  auto snap = std::make_shared<Snapshot>();
  snap->generation = std::move(generation);
  std::map<int, Snapshot::BanMap, std::greater<>> v4_networks, v6_networks;
  store_.scan(kBanTable, "", [&](std::string_view key, std::string_view value) {
    auto target = parse_target_key(key);
    auto ban = decode_ban(value);
    if (!target || !ban) {
      spdlog::debug("reputation: ignoring undecodable ban entry");
      return true;
    }
    ban->target = *target;
    AddressKey k = address_key(target->address());
    bool v4 = target->address().is_v4();
    if (target->is_host()) {
      (v4 ? snap->v4 : snap->v6).hosts.insert_or_assign(k, std::move(*ban));
    } else {
      (v4 ? v4_networks : v6_networks)[target->length()].insert_or_assign(k, std::move(*ban));
    }
    return true;
  });
  snap->v4.networks.assign(std::make_move_iterator(v4_networks.begin()),
                           std::make_move_iterator(v4_networks.end()));
  snap->v6.networks.assign(std::make_move_iterator(v6_networks.begin()),
                           std::make_move_iterator(v6_networks.end()));
  return snap;
}

std::shared_ptr<const Reputation::Snapshot> Reputation::snapshot(bool force, bool* reloaded) {
  auto load = [this](std::string generation) { return this->load(std::move(generation)); };
  GenerationSnapshot<Snapshot>::Reload reload;
  auto snap = force ? snapshot_.recheck(load, &reload) : snapshot_.get(load, &reload);
  if (reloaded) *reloaded = reload.reloaded;
  // The first load is no change; a generation this object wrote was reported when made.
  if (reload.reloaded && reload.had_previous) {
    bool foreign;
    {
      std::lock_guard lock(mu_);
      foreign = snap->generation != own_generation_;
    }
    if (foreign) changed();
  }
  return snap;
}

bool Reputation::refresh() {
  bool reloaded = false;
  snapshot(true, &reloaded);
  return reloaded;
}

// ---- Lookups ----

std::optional<Ban> Reputation::ban_for(const IpAddress& client) {
  auto snap = snapshot();
  TimePoint now = clock_.now();
  const auto& family = snap->of(client);
  // The most severe ban that covers the client: a permanent one before a temporary one,
  // then the one that lasts longest, then the most specific. (A short 4xx ban of the address
  // must not hide the 5xx ban of its network.) At most 1 + (levels with bans) lookups.
  const Ban* best = nullptr;
  auto consider = [&](const Ban& ban) {
    if (ban.until <= now) return;
    if (!best || (ban.permanent && !best->permanent) ||
        (ban.permanent == best->permanent && ban.until > best->until))
      best = &ban;
  };
  if (auto it = family.hosts.find(address_key(client)); it != family.hosts.end())
    consider(it->second);
  for (const auto& [length, bans] : family.networks) {
    auto it = bans.find(address_key(Prefix(client, length).address()));
    if (it != bans.end()) consider(it->second);
  }
  if (!best) return std::nullopt;
  return *best;
}

std::vector<Ban> Reputation::bans() {
  auto snap = snapshot();
  TimePoint now = clock_.now();
  std::vector<Ban> out;
  auto collect = [&](const Snapshot::BanMap& bans) {
    for (const auto& [key, ban] : bans) {
      if (ban.until > now) out.push_back(ban);
    }
  };
  for (const auto* family : {&snap->v4, &snap->v6}) {
    collect(family->hosts);
    for (const auto& [length, bans] : family->networks) collect(bans);
  }
  std::sort(out.begin(), out.end(), [](const Ban& a, const Ban& b) { return a.target < b.target; });
  return out;
}

double Reputation::offence_count(const IpAddress& client) {
  auto value = store_.get(kOffenceTable, client.to_string());
  if (!value) return 0;
  auto record = decode_offences(*value);
  return record ? record->decayed_at(clock_.now(), config().offence_half_life) : 0;
}

int64_t Reputation::ban_count() {
  return store_.count(kBanTable);
}

int64_t Reputation::offence_record_count() {
  return store_.count(kOffenceTable);
}

// ---- Offences ----

Ban Reputation::ban_target(const Prefix& target, std::string_view offence_key, OffenceKind kind,
                           std::string_view detail, std::string reason,
                           const ReputationConfig& config, TimePoint now) {
  OffenceRecord record;
  if (auto value = store_.get(kOffenceTable, offence_key)) {
    record = decode_offences(*value).value_or(OffenceRecord{});
  }
  double earlier = record.decayed_at(now, config.offence_half_life);
  int64_t n = offence_number(earlier);
  record.decayed = earlier + 1;
  record.last = now;
  if (record.total < std::numeric_limits<int64_t>::max()) ++record.total;
  record.history.push_back({now, kind, std::string(detail)});
  if (record.history.size() > kMaxHistory) {
    record.history.erase(record.history.begin(),
                         record.history.end() - static_cast<std::ptrdiff_t>(kMaxHistory));
  }
  store_.put(kOffenceTable, offence_key, encode_offences(record),
             offence_expiry(record, config.offence_half_life));

  Ban ban;
  ban.target = target;
  ban.since = now;
  ban.until = now + ban_length_for(n, config);
  ban.permanent = permanent_for(n, config);
  ban.offence_number = n;
  ban.reason = std::move(reason);
  std::string ban_key = target_key(target);
  if (auto value = store_.get(kBanTable, ban_key)) {
    // A reconfigured (shorter) formula or a decayed count never shortens a ban in force.
    if (auto existing = decode_ban(*value); existing && existing->until >= ban.until) {
      ban.until = existing->until;
      ban.permanent = ban.permanent || existing->permanent;
    }
  }
  store_.put(kBanTable, ban_key, encode_ban(ban), ban.until);
  return ban;
}

void Reputation::escalate(const Prefix& network, const Prefix& member, OffenceKind kind,
                          const ReputationConfig& config, TimePoint now) {
  std::string key = reputation_network_key(network);
  std::vector<Member> members;
  if (auto value = store_.get(kNetTable, key)) {
    members = decode_members(*value, network).value_or(std::vector<Member>{});
  }
  auto it = std::find_if(members.begin(), members.end(),
                         [&](const Member& m) { return m.prefix == member; });
  if (it != members.end()) {
    it->last = now;
  } else {
    members.push_back({member, now});
  }
  // Only members that offended within one half-life count.
  TimePoint horizon = now - config.offence_half_life;
  std::erase_if(members, [&](const Member& m) { return m.last <= horizon; });
  auto cap = static_cast<size_t>(
      std::max(kMinNetworkMembers, std::min(config.network_after, kMaxNetworkMembers)));
  if (members.size() > cap) {
    std::sort(members.begin(), members.end(),
              [](const Member& a, const Member& b) { return a.last > b.last; });
    members.resize(cap);
  }
  store_.put(kNetTable, key, encode_members(members),
             after(now, static_cast<double>(config.offence_half_life.count())));

  auto offenders = static_cast<int64_t>(members.size());
  if (offenders < config.network_after) return;
  // A network that also sends clean mail is a shared pool: never banned wholesale.
  if (auto value = store_.get(kCleanTable, key); value && decode_clean(*value)) return;
  if (auto value = store_.get(kBanTable, key)) {
    if (auto existing = decode_ban(*value); existing && existing->until > now) return;
  }
  std::string detail =
      std::to_string(offenders) + " offending " + members_noun(Level{network, member});
  ban_target(network, key, kind, detail, "network: " + detail, config, now);
}

Ban Reputation::record_offence(const IpAddress& client, OffenceKind kind, std::string_view detail,
                               bool flush) {
  Ban ban;
  {
    std::lock_guard writing(write_mu_);
    ReputationConfig config = this->config();
    TimePoint now = clock_.now();
    std::string kept = truncate_detail(detail);
    std::string reason(to_string(kind));
    if (!kept.empty()) reason += ": " + kept;
    Prefix host(client, client.bits());
    ban = ban_target(host, client.to_string(), kind, kept, std::move(reason), config, now);
    for (const auto& level : levels_for(host, config)) {
      escalate(level.network, level.member, kind, config, now);
    }
    bump_generation();
    if (flush) store_.flush();
  }
  changed();
  return ban;
}

void Reputation::note_clean(const IpAddress& client) {
  std::lock_guard writing(write_mu_);
  ReputationConfig config = this->config();
  TimePoint now = clock_.now();
  for (const auto& level : levels_for(Prefix(client, client.bits()), config)) {
    std::string key = reputation_network_key(level.network);
    if (auto value = store_.get(kCleanTable, key)) {
      if (auto at = decode_clean(*value); at && *at > now - kCleanWriteInterval) continue;
    }
    store_.put(kCleanTable, key, encode_clean(now),
               after(now, kCleanHalfLives * static_cast<double>(config.offence_half_life.count())));
  }
}

int Reputation::lift(const Prefix& network) {
  int lifted = 0;
  {
    std::lock_guard writing(write_mu_);
    ReputationConfig config = this->config();
    auto inside = [&](const Prefix& t) {
      return t.length() >= network.length() && network.contains(t.address());
    };
    auto containing = [&](const Prefix& t) {
      return t.length() <= network.length() && t.contains(network.address());
    };
    // Keys are gathered first and erased after: a backend may not allow writes mid-scan.
    auto matching = [&](std::string_view table, const auto& matches) {
      std::vector<std::string> keys;
      store_.scan(table, "", [&](std::string_view key, std::string_view) {
        if (auto target = parse_target_key(key); target && matches(*target)) {
          keys.emplace_back(key);
        }
        return true;
      });
      return keys;
    };

    auto bans = matching(kBanTable, [&](const Prefix& t) { return inside(t) || containing(t); });
    for (const auto& key : bans) store_.erase(kBanTable, key);
    lifted = static_cast<int>(bans.size());

    for (const auto& key : matching(kOffenceTable, inside)) store_.erase(kOffenceTable, key);

    // Networks inside: forgotten. Networks containing it: the lifted members stop counting.
    for (const auto& key : matching(kNetTable, [&](const Prefix& t) { return inside(t); })) {
      store_.erase(kNetTable, key);
    }
    for (const auto& key : matching(kNetTable, containing)) {
      auto value = store_.get(kNetTable, key);
      auto net = parse_target_key(key);
      if (!value || !net) continue;
      auto members = decode_members(*value, *net);
      if (!members) continue;
      size_t before = members->size();
      std::erase_if(*members, [&](const Member& m) { return inside(m.prefix); });
      if (members->size() == before) continue;
      if (members->empty()) {
        store_.erase(kNetTable, key);
        continue;
      }
      TimePoint last = std::max_element(members->begin(), members->end(), [](auto& a, auto& b) {
                         return a.last < b.last;
                       })->last;
      store_.put(kNetTable, key, encode_members(*members),
                 after(last, static_cast<double>(config.offence_half_life.count())));
    }
    bump_generation();
    store_.flush();
  }
  changed();
  return lifted;
}

// ---- Report ----

Reputation::Report Reputation::report(const Prefix& target) {
  ReputationConfig config = this->config();
  TimePoint now = clock_.now();
  auto read_offences = [&](const std::string& key) -> std::optional<OffenceRecord> {
    auto value = store_.get(kOffenceTable, key);
    return value ? decode_offences(*value) : std::nullopt;
  };

  Report report;
  report.target = target;
  report.offences = read_offences(target_key(target));

  // Its own ban, else the longest network ban containing it: what ban_for would answer.
  if (auto value = store_.get(kBanTable, target_key(target))) {
    if (auto ban = decode_ban(*value); ban && ban->until > now) {
      ban->target = target;
      report.ban = std::move(ban);
    }
  }
  if (!report.ban) {
    std::string_view family = target.address().is_v4() ? "n4:" : "n6:";
    store_.scan(kBanTable, family, [&](std::string_view key, std::string_view value) {
      auto network = parse_target_key(key);
      if (!network || network->length() >= target.length() ||
          !network->contains(target.address())) {
        return true;
      }
      auto ban = decode_ban(value);
      if (!ban || ban->until <= now) return true;
      if (!report.ban || report.ban->target.length() < network->length()) {
        ban->target = *network;
        report.ban = std::move(ban);
      }
      return true;
    });
  }

  double decayed = report.offences ? report.offences->decayed_at(now, config.offence_half_life) : 0;
  report.next_offence_number = offence_number(decayed);
  report.next_ban_length = ban_length_for(report.next_offence_number, config);
  report.next_permanent = permanent_for(report.next_offence_number, config);

  TimePoint horizon = now - config.offence_half_life;
  for (const auto& level : levels_for(target, config)) {
    std::string key = reputation_network_key(level.network);
    report.networks.emplace_back(level.network, read_offences(key));
    int64_t offenders = 0;
    if (auto value = store_.get(kNetTable, key)) {
      if (auto members = decode_members(*value, level.network)) {
        offenders = std::count_if(members->begin(), members->end(),
                                  [&](const Member& m) { return m.last > horizon; });
      }
    }
    report.network_offenders.emplace_back(level.network, offenders);
    auto clean = store_.get(kCleanTable, key);
    report.network_clean.emplace_back(level.network, clean && decode_clean(*clean));
  }
  return report;
}

}  // namespace spamward
