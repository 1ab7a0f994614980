// libFuzzer target for the stored-value decoders of GreylistTable (state/greylist.h) and
// Reputation (state/reputation.h): whatever bytes a store holds (a corrupt file, another
// version, a bug elsewhere), reading them must never crash; a value that does not decode is
// treated as absent.
//
// Input: byte 0 picks settings (hammering threshold, delays, half-life, network_after),
// byte 1 how far the clock moves between operations; then records, each
//   [slot u8] [length u16 little-endian] [value bytes]
// that put the value under one of the realistic (table, key) slots below: greylist
// triplets (one a digested long key), greylist entities, offence records, bans, network
// members, clean-mail records, the ban generation. Then the table and the reputation are
// driven through a store holding that garbage: attempt (new, replayed, peek), ever_passed,
// auto-allow, triplets, entity; ban_for, bans, offence_count, report, record_offence,
// note_clean, lift. Besides the sanitizers, it checks properties:
// - a replayed transaction gets the first answer again, without hammering;
// - ban_for answers only a ban in force that covers the client; after record_offence the
//   client is banned and its offence count is at least 1; after lift of a network no
//   address inside it is banned;
// - nothing throws (the memory store never fails).
#include <spdlog/spdlog.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/digest.h"
#include "state/greylist.h"
#include "state/reputation.h"
#include "state/store.h"

namespace {

using namespace spamward;
using namespace std::chrono_literals;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

const TimePoint kStart = from_unix_ms(1'780'000'000'000);  // 2026-05-28

struct Triplet {
  GreylistKey key;
  std::vector<std::string> entities;
};

const std::vector<Triplet>& triplets() {
  static const std::vector<Triplet> all = {
      {{"192.0.2.0/24", "win@lottery.example", "f@local.example.test"}, {"192.0.2.0/24"}},
      {{"2001:db8:66::/64", "<>", "postmaster@local.example.test"}, {"2001:db8:66::/64"}},
      {{"spf:example.org", "news@example.org", "a@local.example.test"},
       {"192.0.2.0/24", "spf:example.org"}},
      // Over 400 bytes: stored under network, separator, "#sha256:" digest.
      {{"192.0.2.0/24", std::string(450, 'x') + "@example.org", "b@local.example.test"},
       {"192.0.2.0/24"}},
  };
  return all;
}

struct Slot {
  std::string table;
  std::string key;
};

const std::vector<Slot>& slots() {
  static const std::vector<Slot> all = [] {
    std::vector<Slot> s;
    for (const Triplet& t : triplets()) {
      std::string text = t.key.text();
      if (text.size() > 400) text = t.key.network + '\x1f' + "#sha256:" + sha256_hex(text);
      s.push_back({"greylist", text});
    }
    for (const char* entity : {"192.0.2.0/24", "2001:db8:66::/64", "spf:example.org"}) {
      s.push_back({"greylist_net", entity});
    }
    const char* targets[] = {"192.0.2.66",        "2001:db8:66::1",      "n4:192.0.2.0/24",
                             "n6:2001:db8:66::/64", "n6:2001:db8:66::/48",  "n4:192.0.0.0/16",
                             "::ffff:192.0.2.67", "n6:192.0.2.0/24",    "n4:192.0.2.66/32"};
    for (const char* target : targets) s.push_back({"offence", target});
    for (const char* target : targets) s.push_back({"ban", target});
    for (const char* network : {"n4:192.0.2.0/24", "n6:2001:db8:66::/64", "n6:2001:db8:66::/48"}) {
      s.push_back({"rep_net", network});
      s.push_back({"rep_clean", network});
    }
    s.push_back({"reputation", "generation"});
    return s;
  }();
  return all;
}

// Reads the records off the input into the store.
void fill(Store& store, std::string_view in) {
  while (in.size() >= 3) {
    const Slot& slot = slots()[static_cast<uint8_t>(in[0]) % slots().size()];
    size_t length = static_cast<uint8_t>(in[1]) | (size_t{static_cast<uint8_t>(in[2])} << 8);
    in.remove_prefix(3);
    length = std::min(length, in.size());
    store.put(slot.table, slot.key, in.substr(0, length));
    in.remove_prefix(length);
  }
}

void check_ban(Reputation& reputation, const Clock& clock, const IpAddress& client) {
  auto ban = reputation.ban_for(client);
  if (ban) {
    check(ban->until > clock.now());
    check(ban->target.contains(client));
  }
}

void drive_greylist(GreylistTable& table, FakeClock& clock, Duration step) {
  for (const Triplet& t : triplets()) {
    auto first = table.attempt(t.key, t.entities, "tx-1");
    auto replay = table.attempt(t.key, t.entities, "tx-1");
    check(replay.outcome == first.outcome);
    check(replay.early_retries == first.early_retries);
    check(replay.hammered == first.hammered);
    check(!replay.hammering);
    check(first.early_retries >= 0);
    table.attempt(t.key, t.entities, "tx-2", /*peek=*/true);
    clock.advance(step);
    table.attempt(t.key, t.entities, "");
    table.attempt(t.key, t.entities, "tx-3");
    table.ever_passed(t.entities);
    for (const std::string& entity : t.entities) {
      table.auto_allowed_until(entity);
      table.renew_auto_allow(entity);
      table.entity(entity);
      table.triplets(entity);
    }
  }
}

void drive_reputation(Reputation& reputation, FakeClock& clock, Duration step, bool lift) {
  const IpAddress v4 = *IpAddress::parse("192.0.2.66");
  const IpAddress v4_other = *IpAddress::parse("192.0.2.67");
  const IpAddress v6 = *IpAddress::parse("2001:db8:66::1");
  const IpAddress v6_other = *IpAddress::parse("2001:db8:66:1::9");
  const IpAddress clients[] = {v4, v4_other, v6, v6_other};

  for (const IpAddress& c : clients) {
    check_ban(reputation, clock, c);
    reputation.offence_count(c);
    reputation.report(Prefix(c, c.bits()));
  }
  for (const char* network : {"192.0.2.0/24", "2001:db8:66::/64", "2001:db8:66::/48", "192.0.0.0/16"}) {
    reputation.report(*Prefix::parse(network));
  }
  for (const Ban& ban : reputation.bans()) check(ban.until > clock.now());
  reputation.ban_count();
  reputation.offence_record_count();

  clock.advance(step);
  for (const IpAddress& c : {v4, v6}) {
    reputation.note_clean(c);
    Ban ban = reputation.record_offence(c, OffenceKind::hammering, "3 early retries");
    check(ban.until > clock.now());
    check(ban.target == Prefix(c, c.bits()));
    check(reputation.ban_for(c).has_value());
    check(reputation.offence_count(c) >= 1.0);
    reputation.record_offence(c, OffenceKind::spam, "score 17.20");
    check_ban(reputation, clock, c);
    reputation.report(Prefix(c, c.bits()));
  }
  for (const Ban& ban : reputation.bans()) check(ban.until > clock.now());

  if (lift) {
    const Prefix network = *Prefix::parse("192.0.2.0/24");
    reputation.lift(network);
    check(!reputation.ban_for(v4).has_value());
    check(!reputation.ban_for(v4_other).has_value());
    reputation.lift(*Prefix::parse("2001:db8:66::1"));
    check(!reputation.ban_for(v6).has_value());
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);  // undecodable entries are logged at debug level
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t flags = data[0];
  const Duration step = std::chrono::seconds(data[1]) * (data[1] & 1 ? 60 : 1);

  GreylistConfig grey;
  grey.mode = "always";
  constexpr int64_t kHammering[] = {10, 3, 1, 0};
  grey.hammering = kHammering[flags & 3];
  grey.min_delay = flags & 4 ? Duration(1s) : Duration(5min);
  grey.max_wait = flags & 4 ? Duration(2min) : Duration(48h);
  grey.auto_allow_after = flags & 8 ? 1 : 3;

  ReputationConfig rep;
  rep.ban_base = 10min;
  rep.offence_half_life = flags & 16 ? Duration(1h) : Duration(24h * 30);
  rep.network_after = flags & 32 ? 1 : 5;
  rep.permanent_after = flags & 32 ? 2 : 5;

  FakeClock clock(kStart);
  std::unique_ptr<Store> store = make_memory_store(clock);
  fill(*store, std::string_view(reinterpret_cast<const char*>(data + 2), size - 2));
  try {
    GreylistTable table(*store, clock, grey);
    drive_greylist(table, clock, step);
    Reputation reputation(*store, clock, rep, std::chrono::milliseconds(0));
    drive_reputation(reputation, clock, step, flags & 64);
  } catch (...) {
    check(false);  // the memory store never fails, and a bad value is never an error
  }
  return 0;
}
