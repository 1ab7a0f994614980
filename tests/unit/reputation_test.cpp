// Reputation: offences, bans, network escalation, lifting and the ban snapshot
// (state/reputation.h).
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "state/reputation.h"
#include "test_support.h"

using namespace spamward;
using namespace std::chrono_literals;

namespace {

using namespace spamward::test;

IpAddress addr(const std::string& text) {
  return ip(text.c_str());
}

Prefix net(const char* text) {
  auto p = Prefix::parse(text);
  if (!p) throw std::invalid_argument(text);
  return *p;
}

Prefix host(const IpAddress& a) {
  return Prefix(a, a.bits());
}

Duration length_of(const Ban& ban) {
  return ban.until - ban.since;
}

// Forwards to a memory store; counts flushes and can fail every read on demand.
class InstrumentedStore final : public Store {
 public:
  explicit InstrumentedStore(const Clock& clock) : inner_(make_memory_store(clock)) {}
  std::atomic<int> flushes{0};
  std::atomic<bool> fail_reads{false};
  std::atomic<bool> slow_reads{false};

  std::optional<std::string> get(std::string_view table, std::string_view key) override {
    if (fail_reads) throw StoreError("injected read failure");
    auto value = inner_->get(table, key);
    // After the read: what a racing writer does meanwhile is what this value misses.
    if (slow_reads) std::this_thread::sleep_for(std::chrono::microseconds(50));
    return value;
  }
  void put(std::string_view table, std::string_view key, std::string_view value,
           std::optional<TimePoint> expires_at) override {
    inner_->put(table, key, value, expires_at);
  }
  void erase(std::string_view table, std::string_view key) override { inner_->erase(table, key); }
  void flush() override {
    ++flushes;
    inner_->flush();
  }
  void scan(std::string_view table, std::string_view prefix, const Visitor& visit) override {
    if (fail_reads) throw StoreError("injected read failure");
    inner_->scan(table, prefix, visit);
  }
  int64_t count(std::string_view table) override { return inner_->count(table); }
  int64_t sweep_expired() override { return inner_->sweep_expired(); }

 private:
  std::unique_ptr<Store> inner_;
};

class ReputationTest : public testing::Test {
 protected:
  FakeClock clock_;
  std::unique_ptr<Store> store_ = make_memory_store(clock_);
  Reputation rep_{*store_, clock_, ReputationConfig{}, 0ms};

  Ban offend(const std::string& address, std::string_view detail = "score 17.2") {
    return rep_.record_offence(addr(address), OffenceKind::spam, detail);
  }
  // Offences by `count` distinct addresses "<base><i>", i = first.. (no waiting between).
  void offend_many(const std::string& base, int first, int count) {
    for (int i = first; i < first + count; ++i) offend(base + std::to_string(i));
  }
};

// ---- Ban lengths ----

TEST(ReputationNames, NetworkKeysAndKindNames) {
  EXPECT_EQ(reputation_network_key(net("192.0.2.0/24")), "n4:192.0.2.0/24");
  EXPECT_EQ(reputation_network_key(net("2001:db8:1:2::/64")), "n6:2001:db8:1:2::/64");
  EXPECT_EQ(reputation_network_key(net("192.0.2.7")), "n4:192.0.2.7/32");  // never bare
  EXPECT_EQ(to_string(OffenceKind::spam), "spam");
  EXPECT_EQ(to_string(OffenceKind::hammering), "hammering");
  EXPECT_EQ(to_string(OffenceKind::trap), "trap");
  EXPECT_EQ(to_string(OffenceKind::guessing), "guessing");
}

TEST_F(ReputationTest, BanLengthFormula) {
  EXPECT_EQ(rep_.ban_length(1), 10min);
  EXPECT_EQ(rep_.ban_length(2), 40min);
  EXPECT_EQ(rep_.ban_length(3), 160min);
  EXPECT_EQ(rep_.ban_length(4), 640min);
  EXPECT_EQ(rep_.ban_length(5), 24h);        // 2560m, capped at ban_max
  EXPECT_EQ(rep_.ban_length(100'000), 24h);  // no overflow
  EXPECT_EQ(rep_.ban_length(0), 10min);      // n below 1 counts as 1
  EXPECT_FALSE(rep_.is_permanent(4));
  EXPECT_TRUE(rep_.is_permanent(5));

  ReputationConfig config;
  config.ban_base = 1min;
  config.ban_factor = 2;
  config.ban_max = 1h;
  config.permanent_after = 3;
  rep_.reconfigure(config);
  EXPECT_EQ(rep_.ban_length(1), 1min);
  EXPECT_EQ(rep_.ban_length(6), 32min);
  EXPECT_EQ(rep_.ban_length(7), 1h);  // 64m capped
  EXPECT_FALSE(rep_.is_permanent(2));
  EXPECT_TRUE(rep_.is_permanent(3));
  EXPECT_EQ(rep_.config().ban_base, 1min);
}

TEST_F(ReputationTest, BansGrowTenFortyOneSixtySixFortyThenOneDay) {
  const IpAddress client = ip("192.0.2.7");
  const Duration expected[] = {10min, 40min, 160min, 640min, 24h, 24h};
  for (int i = 0; i < 6; ++i) {
    SCOPED_TRACE(i);
    EXPECT_FALSE(rep_.ban_for(client));
    Ban ban = rep_.record_offence(client, OffenceKind::spam, "score 17.2");
    EXPECT_EQ(ban.since, clock_.now());
    EXPECT_EQ(length_of(ban), expected[i]);
    EXPECT_EQ(ban.offence_number, i + 1);
    EXPECT_EQ(ban.permanent, i >= 4);  // permanent_after = 5
    EXPECT_EQ(ban.target, host(client));
    EXPECT_EQ(ban.reason, "spam: score 17.2");
    auto found = rep_.ban_for(client);
    ASSERT_TRUE(found);
    EXPECT_EQ(found->until, ban.until);
    EXPECT_EQ(found->permanent, ban.permanent);
    clock_.advance(expected[i] - 1ms);
    EXPECT_TRUE(rep_.ban_for(client));  // still in force
    clock_.advance(1ms);
    EXPECT_FALSE(rep_.ban_for(client));  // over at `until`, without any store change
  }
  // One address offending again and again never condemns its network.
  EXPECT_FALSE(rep_.ban_for(ip("192.0.2.8")));
}

TEST_F(ReputationTest, PermanenceFollowsPermanentAfter) {
  ReputationConfig config;
  config.permanent_after = 3;
  rep_.reconfigure(config);
  const IpAddress client = ip("2001:db8::7");
  for (int n = 1; n <= 3; ++n) {
    Ban ban = rep_.record_offence(client, OffenceKind::trap, "");
    EXPECT_EQ(ban.permanent, n == 3) << n;
    EXPECT_EQ(ban.reason, "trap");  // no detail, no colon
    ASSERT_TRUE(rep_.ban_for(client));
    EXPECT_EQ(rep_.ban_for(client).value().permanent, n == 3);
    clock_.advance(length_of(ban));
  }
}

// ---- Decay ----

TEST_F(ReputationTest, OffencesHalveEveryHalfLife) {
  const IpAddress client = ip("192.0.2.7");
  EXPECT_EQ(rep_.offence_count(client), 0);
  offend("192.0.2.7");
  EXPECT_DOUBLE_EQ(rep_.offence_count(client), 1);
  clock_.advance(30 * 24h);
  EXPECT_NEAR(rep_.offence_count(client), 0.5, 1e-9);
  offend("192.0.2.7");  // n = 1 + round(0.5) = 2
  EXPECT_NEAR(rep_.offence_count(client), 1.5, 1e-9);
  clock_.advance(30 * 24h);
  EXPECT_NEAR(rep_.offence_count(client), 0.75, 1e-9);
  // The decayed count, not the total, picks the next ban: 1 + round(0.75) = 2.
  Ban ban = offend("192.0.2.7");
  EXPECT_EQ(ban.offence_number, 2);
  EXPECT_EQ(length_of(ban), 40min);
}

TEST_F(ReputationTest, ForgivesAfterALongCleanPeriod) {
  const IpAddress client = ip("2001:db8::25");
  for (int i = 0; i < 5; ++i) {
    Ban ban = rep_.record_offence(client, OffenceKind::spam, "");
    clock_.advance(length_of(ban));
  }
  EXPECT_GT(rep_.offence_count(client), 4.5);
  clock_.advance(200 * 24h);
  double left = rep_.offence_count(client);
  EXPECT_GT(left, 0);    // still remembered (5 * 2^(-200/30) ~ 0.05)...
  EXPECT_LT(left, 0.5);  // ...but it rounds to nothing
  Ban ban = rep_.record_offence(client, OffenceKind::spam, "");
  EXPECT_EQ(ban.offence_number, 1);
  EXPECT_EQ(length_of(ban), 10min);
  EXPECT_FALSE(ban.permanent);
  EXPECT_EQ(rep_.report(host(client)).offences.value().total, 6);
}

// ---- Networks ----

TEST_F(ReputationTest, Ipv6RotationInsideA64BansThe64) {
  offend_many("2001:db8:1:2::", 1, 4);
  EXPECT_FALSE(rep_.ban_for(ip("2001:db8:1:2::ffff")));
  offend("2001:db8:1:2::5");
  auto ban = rep_.ban_for(ip("2001:db8:1:2:aaaa::1"));  // an address never seen
  ASSERT_TRUE(ban);
  EXPECT_EQ(ban->target, net("2001:db8:1:2::/64"));
  EXPECT_EQ(length_of(*ban), 10min);
  EXPECT_EQ(ban->offence_number, 1);
  EXPECT_FALSE(ban->permanent);
  EXPECT_EQ(ban->reason, "network: 5 offending addresses");
  EXPECT_FALSE(rep_.ban_for(ip("2001:db8:1:3::1")));  // the neighbouring /64
  // An offender's own ban comes first.
  EXPECT_EQ(rep_.ban_for(ip("2001:db8:1:2::5")).value().target, net("2001:db8:1:2::5"));
  // One /64 is one member of its /48: no /48 ban.
  EXPECT_FALSE(rep_.ban_for(ip("2001:db8:1:ffff::1")));
}

TEST_F(ReputationTest, Ipv4SlashTwentyFourEscalates) {
  offend_many("192.0.2.", 1, 4);
  EXPECT_FALSE(rep_.ban_for(ip("192.0.2.200")));
  offend("192.0.2.5");
  auto ban = rep_.ban_for(ip("192.0.2.200"));
  ASSERT_TRUE(ban);
  EXPECT_EQ(ban->target, net("192.0.2.0/24"));
  EXPECT_EQ(length_of(*ban), 10min);
  EXPECT_EQ(ban->reason, "network: 5 offending addresses");
  EXPECT_FALSE(rep_.ban_for(ip("192.0.3.1")));
  // An IPv6 address with the same leading bytes is not in the IPv4 network.
  EXPECT_FALSE(rep_.ban_for(ip("c000:200::1")));
  EXPECT_EQ(rep_.ban_count(), 6);             // 5 addresses and the /24
  EXPECT_EQ(rep_.offence_record_count(), 6);  // 5 addresses and the /24's ban count
}

TEST_F(ReputationTest, Slash48EscalatesAfterDistinctSlash64s) {
  for (int i = 1; i <= 4; ++i) offend("2001:db8:1:" + std::to_string(i) + "::1");
  EXPECT_FALSE(rep_.ban_for(ip("2001:db8:1:ff::1")));
  offend("2001:db8:1:5::1");
  auto ban = rep_.ban_for(ip("2001:db8:1:ff::1"));
  ASSERT_TRUE(ban);
  EXPECT_EQ(ban->target, net("2001:db8:1::/48"));
  EXPECT_EQ(ban->reason, "network: 5 offending /64 networks");
  EXPECT_FALSE(rep_.ban_for(ip("2001:db8:2::1")));

  // The longest banned prefix wins: now ban 2001:db8:1:1::/64 too.
  offend_many("2001:db8:1:1::", 2, 4);
  EXPECT_EQ(rep_.ban_for(ip("2001:db8:1:1::99")).value().target, net("2001:db8:1:1::/64"));
  EXPECT_EQ(rep_.ban_for(ip("2001:db8:1:7::1")).value().target, net("2001:db8:1::/48"));
}

TEST_F(ReputationTest, ConfiguredIpv6PrefixSetsBothLevels) {
  ReputationConfig config;
  config.ipv6_prefix = 56;
  rep_.reconfigure(config);
  // Five /64s of one /56: five addresses of the /56, but one member of the /48.
  for (int i = 1; i <= 5; ++i) offend("2001:db8:1:20" + std::to_string(i) + "::1");
  EXPECT_EQ(rep_.ban_for(ip("2001:db8:1:2ff::1")).value().target, net("2001:db8:1:200::/56"));
  EXPECT_FALSE(rep_.ban_for(ip("2001:db8:1:300::1")));
  auto report = rep_.report(net("2001:db8:1:2ff::1"));
  ASSERT_EQ(report.network_offenders.size(), 2u);
  EXPECT_EQ(report.network_offenders[0], std::make_pair(net("2001:db8:1:200::/56"), int64_t{5}));
  EXPECT_EQ(report.network_offenders[1], std::make_pair(net("2001:db8:1::/48"), int64_t{1}));
}

TEST_F(ReputationTest, NoNetworkBanForANetworkThatSendsCleanMail) {
  rep_.note_clean(ip("2001:db8:1:2::abcd"));
  rep_.note_clean(ip("192.0.2.250"));
  offend_many("2001:db8:1:2::", 1, 6);
  offend_many("192.0.2.", 1, 6);
  EXPECT_FALSE(rep_.ban_for(ip("2001:db8:1:2::ffff")));
  EXPECT_FALSE(rep_.ban_for(ip("192.0.2.200")));
  // The offenders themselves are banned all the same.
  EXPECT_TRUE(rep_.ban_for(ip("2001:db8:1:2::1")));
  EXPECT_TRUE(rep_.ban_for(ip("192.0.2.1")));
  // A network without clean mail next door is banned.
  offend_many("192.0.3.", 1, 5);
  EXPECT_TRUE(rep_.ban_for(ip("192.0.3.200")));
}

TEST_F(ReputationTest, NoSlash48BanWhenOneOfItsSlash64sSendsCleanMail) {
  rep_.note_clean(ip("2001:db8:1:99::1"));
  for (int i = 1; i <= 6; ++i) offend("2001:db8:1:" + std::to_string(i) + "::1");
  EXPECT_FALSE(rep_.ban_for(ip("2001:db8:1:ff::1")));
  for (int i = 1; i <= 5; ++i) offend("2001:db8:2:" + std::to_string(i) + "::1");
  EXPECT_TRUE(rep_.ban_for(ip("2001:db8:2:ff::1")));
}

TEST_F(ReputationTest, OnlyOffendersWithinOneHalfLifeCount) {
  offend_many("192.0.2.", 1, 4);
  clock_.advance(30 * 24h);
  offend("192.0.2.5");
  EXPECT_FALSE(rep_.ban_for(ip("192.0.2.200")));  // the first four are a half-life old
  offend_many("192.0.2.", 6, 3);
  EXPECT_FALSE(rep_.ban_for(ip("192.0.2.200")));  // 4 recent offenders
  offend("192.0.2.9");
  EXPECT_TRUE(rep_.ban_for(ip("192.0.2.200")));
}

TEST_F(ReputationTest, OldOffendersLeaveARecordThatNewOffencesKeepAlive) {
  offend_many("198.51.100.", 1, 2);
  clock_.advance(20 * 24h);
  offend("198.51.100.3");    // rewrites the record: its first two members are still in it
  clock_.advance(15 * 24h);  // ...but now 35 days old
  offend_many("198.51.100.", 4, 3);
  EXPECT_FALSE(rep_.ban_for(ip("198.51.100.200")));  // 4 offenders within a half-life
  EXPECT_EQ(rep_.report(net("198.51.100.0/24")).network_offenders.at(0).second, 4);
  offend("198.51.100.7");
  EXPECT_TRUE(rep_.ban_for(ip("198.51.100.200")));
}

TEST_F(ReputationTest, NetworkBansGrowWithTheNetworksOwnBans) {
  offend_many("192.0.2.", 1, 5);
  Ban first = rep_.ban_for(ip("192.0.2.200")).value();
  EXPECT_EQ(first.offence_number, 1);
  // A member offending while the network ban is in force does not escalate it again.
  clock_.advance(1min);
  offend("192.0.2.6");
  Ban same = rep_.ban_for(ip("192.0.2.200")).value();
  EXPECT_EQ(same.offence_number, 1);
  EXPECT_EQ(same.until, first.until);
  // After it: the network's second ban, 40 minutes.
  clock_.advance(10min);
  EXPECT_FALSE(rep_.ban_for(ip("192.0.2.200")));
  offend("192.0.2.7");
  auto second = rep_.ban_for(ip("192.0.2.200"));
  ASSERT_TRUE(second);
  EXPECT_EQ(second->target, net("192.0.2.0/24"));
  EXPECT_EQ(second->offence_number, 2);
  EXPECT_EQ(length_of(*second), 40min);
  EXPECT_EQ(second->reason, "network: 7 offending addresses");
  auto report = rep_.report(net("192.0.2.0/24"));
  ASSERT_TRUE(report.offences);
  EXPECT_EQ(report.offences->total, 2);
  EXPECT_EQ(report.next_offence_number, 3);
  EXPECT_EQ(report.next_ban_length, 160min);
}

// ---- Lifting ----

TEST_F(ReputationTest, LiftingANetworkRemovesBansAndOffencesInside) {
  offend_many("192.0.2.", 1, 5);
  offend("198.51.100.1");
  ASSERT_TRUE(rep_.ban_for(ip("192.0.2.200")));
  EXPECT_EQ(rep_.lift(net("192.0.2.0/24")), 6);  // five addresses and the /24
  for (int i = 1; i <= 5; ++i) {
    SCOPED_TRACE(i);
    EXPECT_FALSE(rep_.ban_for(addr("192.0.2." + std::to_string(i))));
    EXPECT_EQ(rep_.offence_count(addr("192.0.2." + std::to_string(i))), 0);
  }
  EXPECT_FALSE(rep_.ban_for(ip("192.0.2.200")));
  EXPECT_TRUE(rep_.ban_for(ip("198.51.100.1")));  // outside: untouched
  EXPECT_EQ(rep_.offence_count(ip("198.51.100.1")), 1);
  // Forgotten: a first offence again, and the network counts afresh.
  Ban ban = offend("192.0.2.1");
  EXPECT_EQ(ban.offence_number, 1);
  EXPECT_FALSE(rep_.ban_for(ip("192.0.2.200")));
  auto report = rep_.report(net("192.0.2.1"));
  EXPECT_EQ(report.network_offenders.at(0).second, 1);
  EXPECT_FALSE(report.networks.at(0).second);  // the /24's ban count is forgotten too
  EXPECT_EQ(rep_.lift(net("203.0.113.0/24")), 0);
}

TEST_F(ReputationTest, LiftingAnAddressLiftsTheNetworkBanContainingIt) {
  offend_many("2001:db8:1:2::", 1, 5);
  ASSERT_TRUE(rep_.ban_for(ip("2001:db8:1:2::ffff")));
  EXPECT_EQ(rep_.lift(net("2001:db8:1:2::3")), 2);  // the address and its /64
  EXPECT_FALSE(rep_.ban_for(ip("2001:db8:1:2::3")));
  EXPECT_FALSE(rep_.ban_for(ip("2001:db8:1:2::ffff")));
  EXPECT_TRUE(rep_.ban_for(ip("2001:db8:1:2::1")));  // its neighbours keep their own bans
  EXPECT_EQ(rep_.offence_count(ip("2001:db8:1:2::3")), 0);
  EXPECT_EQ(rep_.offence_count(ip("2001:db8:1:2::1")), 1);
  // The lifted address no longer counts as an offender of its /64.
  auto report = rep_.report(net("2001:db8:1:2::/64"));
  ASSERT_EQ(report.network_offenders.size(), 2u);
  EXPECT_EQ(report.network_offenders[0].second, 4);
  offend("2001:db8:1:2::6");  // 5 again: banned again, the network's second ban
  auto again = rep_.ban_for(ip("2001:db8:1:2::ffff"));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->offence_number, 2);
}

// ---- Snapshot, generations and the change callback ----

TEST_F(ReputationTest, ASecondObjectSeesBansOfTheFirst) {
  Reputation other{*store_, clock_, ReputationConfig{}, 0ms};
  int changes = 0;
  other.on_change([&] { ++changes; });
  const IpAddress client = ip("192.0.2.7");
  EXPECT_FALSE(other.ban_for(client));  // the first load is no change
  EXPECT_EQ(changes, 0);
  offend("192.0.2.7");
  EXPECT_TRUE(other.refresh());
  EXPECT_EQ(changes, 1);
  EXPECT_FALSE(other.refresh());  // no new generation
  EXPECT_EQ(changes, 1);
  auto ban = other.ban_for(client);
  ASSERT_TRUE(ban);
  EXPECT_EQ(length_of(*ban), 10min);
  EXPECT_EQ(other.bans().size(), 1u);
  rep_.lift(host(client));
  EXPECT_FALSE(other.ban_for(client));  // the lookup's own re-check found the lift
  EXPECT_EQ(changes, 2);
}

TEST_F(ReputationTest, ARefreshIntervalDefersReloads) {
  Reputation other{*store_, clock_, ReputationConfig{}, std::chrono::hours(1)};
  const IpAddress client = ip("192.0.2.7");
  EXPECT_FALSE(other.ban_for(client));
  offend("192.0.2.7");
  EXPECT_FALSE(other.ban_for(client));  // not re-checked within the interval
  EXPECT_TRUE(other.refresh());
  EXPECT_TRUE(other.ban_for(client));
  // Its own changes are seen at once, whatever the interval.
  Ban ban = other.record_offence(ip("192.0.2.8"), OffenceKind::guessing, "4 unknown recipients");
  auto own = other.ban_for(ip("192.0.2.8"));
  ASSERT_TRUE(own);
  EXPECT_EQ(own->target, net("192.0.2.8"));
  EXPECT_EQ(own->reason, "guessing: 4 unknown recipients");
  EXPECT_EQ(own->until, ban.until);
}

TEST_F(ReputationTest, CallsBackOnceForEachOwnChange) {
  int changes = 0;
  size_t bans_seen = 0;
  // The callback may use the object: it is called without any lock held.
  rep_.on_change([&] {
    ++changes;
    bans_seen = rep_.bans().size();
  });
  offend("192.0.2.7");
  EXPECT_EQ(changes, 1);
  EXPECT_EQ(bans_seen, 1u);
  EXPECT_TRUE(rep_.ban_for(ip("192.0.2.7")));  // reloads its own generation: no second call
  EXPECT_FALSE(rep_.refresh());
  EXPECT_EQ(changes, 1);
  rep_.note_clean(ip("192.0.2.7"));  // no ban changed
  EXPECT_EQ(changes, 1);
  rep_.lift(net("192.0.2.0/24"));
  EXPECT_EQ(changes, 2);
  EXPECT_EQ(bans_seen, 0u);
}

TEST_F(ReputationTest, BansListsTheBansInForce) {
  offend("2001:db8::1");
  clock_.advance(5min);
  offend("192.0.2.1");
  auto bans = rep_.bans();
  ASSERT_EQ(bans.size(), 2u);
  EXPECT_EQ(bans[0].target, net("192.0.2.1"));  // IPv4 first
  EXPECT_EQ(bans[1].target, net("2001:db8::1"));
  clock_.advance(5min);  // the IPv6 ban is over
  bans = rep_.bans();
  ASSERT_EQ(bans.size(), 1u);
  EXPECT_EQ(bans[0].target, net("192.0.2.1"));
}

TEST(ReputationStore, FlushesWhenAskedAndOnLift) {
  FakeClock clock;
  InstrumentedStore store(clock);
  Reputation rep(store, clock, ReputationConfig{}, 0ms);
  rep.record_offence(ip("192.0.2.7"), OffenceKind::spam, "");
  EXPECT_EQ(store.flushes, 0);  // the daemon relies on the store's batching
  rep.record_offence(ip("192.0.2.7"), OffenceKind::spam, "", true);
  EXPECT_EQ(store.flushes, 1);
  rep.lift(net("192.0.2.7"));
  EXPECT_EQ(store.flushes, 2);
}

TEST(ReputationStore, AFailedRefreshKeepsThePreviousSnapshot) {
  FakeClock clock;
  InstrumentedStore store(clock);
  Reputation rep(store, clock, ReputationConfig{}, 0ms);
  rep.record_offence(ip("192.0.2.7"), OffenceKind::spam, "");
  ASSERT_TRUE(rep.ban_for(ip("192.0.2.7")));
  store.fail_reads = true;
  EXPECT_TRUE(rep.ban_for(ip("192.0.2.7")));
  EXPECT_THROW(rep.offence_count(ip("192.0.2.7")), StoreError);  // other errors propagate
  Reputation fresh(store, clock, ReputationConfig{}, 0ms);
  EXPECT_THROW(fresh.ban_for(ip("192.0.2.7")), StoreError);  // nothing to fall back on
  store.fail_reads = false;
  EXPECT_TRUE(fresh.ban_for(ip("192.0.2.7")));
}

// ---- Values ----

TEST_F(ReputationTest, GarbageValuesAreTreatedAsAbsent) {
  store_->put("offence", "192.0.2.1", "garbage");
  store_->put("offence", "192.0.2.2", "");
  store_->put("offence", "192.0.2.3", std::string(1, '\x01'));  // a version byte alone
  store_->put("ban", "192.0.2.1", "\x01garbage");
  store_->put("ban", "not an address", "x");
  store_->put("ban", "n4:garbage", "x");
  // A well-formed ban under a key of the wrong family ("n6:" with an IPv4 network).
  rep_.record_offence(ip("203.0.113.1"), OffenceKind::spam, "");
  store_->put("ban", "n6:198.51.100.0/24", store_->get("ban", "203.0.113.1").value());
  rep_.lift(net("203.0.113.1"));
  store_->put("rep_net", "n4:192.0.2.0/24", "\xff\xff");
  store_->put("rep_clean", "n4:192.0.2.0/24", "junk");
  store_->put("reputation", "generation", std::string("\x00\xff", 2));
  EXPECT_FALSE(rep_.ban_for(ip("192.0.2.1")));
  EXPECT_FALSE(rep_.ban_for(ip("198.51.100.7")));
  EXPECT_TRUE(rep_.bans().empty());
  for (const char* a : {"192.0.2.1", "192.0.2.2", "192.0.2.3"}) {
    EXPECT_EQ(rep_.offence_count(ip(a)), 0) << a;
  }
  auto report = rep_.report(net("192.0.2.1"));
  EXPECT_FALSE(report.offences);
  EXPECT_FALSE(report.ban);
  EXPECT_EQ(report.network_offenders.at(0).second, 0);
  EXPECT_FALSE(report.network_clean.at(0).second);  // an unreadable clean record is none
  // Writing over garbage works.
  Ban ban = offend("192.0.2.1");
  EXPECT_EQ(ban.offence_number, 1);
  EXPECT_EQ(rep_.ban_for(ip("192.0.2.1")).value().until, ban.until);
  offend_many("192.0.2.", 2, 4);
  EXPECT_TRUE(rep_.ban_for(ip("192.0.2.200")));

  // Random bytes, most starting with the version byte to get past the first check.
  std::mt19937 rng(42);
  for (int round = 0; round < 2000; ++round) {
    std::string value(rng() % 64, '\0');
    for (auto& c : value) c = static_cast<char>(rng());
    if (!value.empty() && round % 4 != 0) value[0] = '\x01';
    const char* table = std::array{"offence", "ban", "rep_net", "rep_clean"}[round % 4];
    const char* key = round % 8 < 4 ? "192.0.2.9" : "n4:192.0.2.0/24";
    store_->put(table, key, value);
    store_->put("reputation", "generation", std::to_string(round));
    EXPECT_NO_THROW({
      rep_.ban_for(ip("192.0.2.9"));
      rep_.offence_count(ip("192.0.2.9"));
      rep_.report(net("192.0.2.9"));
      rep_.note_clean(ip("192.0.2.9"));
      rep_.record_offence(ip("192.0.2.9"), OffenceKind::spam, "");
    }) << round;
  }
}

TEST_F(ReputationTest, TruncatedOrExtendedValuesAreAbsent) {
  rep_.note_clean(ip("192.0.2.1"));  // first, so that no /24 ban hides the address's own
  offend("192.0.2.1", "first");
  offend("192.0.2.1", "second");
  offend_many("192.0.2.", 2, 4);  // rep_net members of the /24
  struct Case {
    const char* table;
    const char* key;
  };
  for (auto [table, key] :
       {Case{"offence", "192.0.2.1"}, Case{"ban", "192.0.2.1"}, Case{"rep_net", "n4:192.0.2.0/24"},
        Case{"rep_clean", "n4:192.0.2.0/24"}}) {
    SCOPED_TRACE(table);
    const std::string good = store_->get(table, key).value();
    // Whether the entry reads as present, through the public interface.
    int generation = 0;
    auto present = [&, table = std::string(table)] {
      store_->put("reputation", "generation", "g" + std::to_string(++generation));
      auto report = rep_.report(net("192.0.2.1"));
      if (table == "offence") return rep_.offence_count(ip("192.0.2.1")) > 0;
      if (table == "ban") return rep_.ban_for(ip("192.0.2.1")).has_value();
      if (table == "rep_net") return report.network_offenders.at(0).second > 0;
      return bool(report.network_clean.at(0).second);
    };
    ASSERT_TRUE(present());
    for (size_t size = 0; size < good.size(); ++size) {
      store_->put(table, key, good.substr(0, size));
      EXPECT_FALSE(present()) << size;
    }
    store_->put(table, key, good + "x");
    EXPECT_FALSE(present());
    std::string other_version = good;
    other_version[0] = '\x02';
    store_->put(table, key, other_version);
    EXPECT_FALSE(present());
    store_->put(table, key, good);
    EXPECT_TRUE(present());
  }
}

// ---- Report ----

TEST_F(ReputationTest, ReportShowsHistoryNetworksAndTheNextBan) {
  const IpAddress client = ip("2001:db8:1:2::7");
  const TimePoint t0 = clock_.now();
  rep_.record_offence(client, OffenceKind::spam, "score 17.2");
  clock_.advance(11min);
  rep_.record_offence(client, OffenceKind::hammering, "12 early retries");
  auto report = rep_.report(host(client));
  EXPECT_EQ(report.target, host(client));
  ASSERT_TRUE(report.offences);
  EXPECT_EQ(report.offences->total, 2);
  ASSERT_EQ(report.offences->history.size(), 2u);
  EXPECT_EQ(report.offences->history[0].at, t0);
  EXPECT_EQ(report.offences->history[0].kind, OffenceKind::spam);
  EXPECT_EQ(report.offences->history[0].detail, "score 17.2");
  EXPECT_EQ(report.offences->history[1].kind, OffenceKind::hammering);
  EXPECT_EQ(report.offences->last, clock_.now());
  ASSERT_TRUE(report.ban);
  EXPECT_EQ(report.ban->offence_number, 2);
  EXPECT_EQ(report.ban->reason, "hammering: 12 early retries");
  EXPECT_EQ(report.next_offence_number, 3);
  EXPECT_EQ(report.next_ban_length, 160min);
  EXPECT_FALSE(report.next_permanent);
  ASSERT_EQ(report.networks.size(), 2u);
  EXPECT_EQ(report.networks[0].first, net("2001:db8:1:2::/64"));
  EXPECT_FALSE(report.networks[0].second);  // never banned
  EXPECT_EQ(report.networks[1].first, net("2001:db8:1::/48"));
  EXPECT_EQ(report.network_offenders,
            (std::vector<std::pair<Prefix, int64_t>>{{net("2001:db8:1:2::/64"), 1},
                                                     {net("2001:db8:1::/48"), 1}}));
  EXPECT_EQ(report.network_clean,
            (std::vector<std::pair<Prefix, bool>>{{net("2001:db8:1:2::/64"), false},
                                                  {net("2001:db8:1::/48"), false}}));
  rep_.note_clean(client);
  report = rep_.report(host(client));
  EXPECT_TRUE(report.network_clean.at(0).second);
  EXPECT_TRUE(report.network_clean.at(1).second);

  // Two more offences: the next one is the permanent, capped one.
  for (int i = 0; i < 2; ++i) {
    clock_.advance(length_of(rep_.record_offence(client, OffenceKind::spam, "")));
  }
  report = rep_.report(host(client));
  EXPECT_FALSE(report.ban);  // over
  EXPECT_EQ(report.next_offence_number, 5);
  EXPECT_EQ(report.next_ban_length, 24h);
  EXPECT_TRUE(report.next_permanent);

  // Nothing known: a first offence next.
  report = rep_.report(net("2001:db8:9::1"));
  EXPECT_FALSE(report.offences);
  EXPECT_EQ(report.next_offence_number, 1);
  EXPECT_EQ(report.next_ban_length, 10min);
}

TEST_F(ReputationTest, ReportOfANetworkAndOfAnAddressItCovers) {
  offend_many("192.0.2.", 1, 5);
  auto report = rep_.report(net("192.0.2.0/24"));
  ASSERT_TRUE(report.offences);
  EXPECT_EQ(report.offences->total, 1);  // one network ban so far
  ASSERT_TRUE(report.ban);
  EXPECT_EQ(report.ban->target, net("192.0.2.0/24"));
  EXPECT_EQ(report.next_offence_number, 2);
  EXPECT_EQ(report.next_ban_length, 40min);
  EXPECT_EQ(report.network_offenders,
            (std::vector<std::pair<Prefix, int64_t>>{{net("192.0.2.0/24"), 5}}));
  // An address with no ban of its own is shown the network's.
  report = rep_.report(net("192.0.2.200"));
  EXPECT_FALSE(report.offences);
  ASSERT_TRUE(report.ban);
  EXPECT_EQ(report.ban->target, net("192.0.2.0/24"));
  // A network wider than the configured levels has no containing networks.
  EXPECT_TRUE(rep_.report(net("192.0.0.0/16")).networks.empty());
}

TEST_F(ReputationTest, HistoryIsBoundedAndDetailsTruncated) {
  for (int i = 0; i < 20; ++i) offend("192.0.2.7", "d" + std::to_string(i));
  auto report = rep_.report(net("192.0.2.7"));
  ASSERT_TRUE(report.offences);
  EXPECT_EQ(report.offences->total, 20);
  ASSERT_EQ(report.offences->history.size(), Reputation::kMaxHistory);
  EXPECT_EQ(report.offences->history.front().detail, "d4");
  EXPECT_EQ(report.offences->history.back().detail, "d19");

  Ban ban = offend("192.0.2.8", std::string(300, 'x'));
  EXPECT_EQ(ban.reason, "spam: " + std::string(200, 'x'));
  EXPECT_EQ(rep_.report(net("192.0.2.8")).offences.value().history.back().detail,
            std::string(200, 'x'));
  // A two-byte character across the limit is dropped whole, not cut in half.
  offend("192.0.2.9", std::string(199, 'a') + "\xc3\xa9" + "tail");
  EXPECT_EQ(rep_.report(net("192.0.2.9")).offences.value().history.back().detail,
            std::string(199, 'a'));
}

// ---- Store lifetimes ----

TEST_F(ReputationTest, StoreEntriesExpireOnTime) {
  const TimePoint t0 = clock_.now();
  offend("192.0.2.1");  // decayed 1: forgotten after 6 half-lives (1/64)
  offend("198.51.100.1");
  offend("198.51.100.1");  // decayed 2: after 7
  auto offences_of = [&](const char* a) { return store_->get("offence", a).has_value(); };
  EXPECT_EQ(store_->count("ban"), 2);
  EXPECT_EQ(store_->count("rep_net"), 2);
  clock_.set(t0 + 40min);  // the second ban of 198.51.100.1 started at t0: 40 minutes
  EXPECT_EQ(store_->count("ban"), 0);

  clock_.set(t0 + 30 * 24h - 1s);
  EXPECT_EQ(store_->count("rep_net"), 2);
  clock_.set(t0 + 30 * 24h);
  EXPECT_EQ(store_->count("rep_net"), 0);

  clock_.set(t0 + 180 * 24h - 1s);
  EXPECT_TRUE(offences_of("192.0.2.1"));
  clock_.set(t0 + 180 * 24h + 1s);
  EXPECT_FALSE(offences_of("192.0.2.1"));
  EXPECT_TRUE(offences_of("198.51.100.1"));
  clock_.set(t0 + 210 * 24h - 1s);
  EXPECT_TRUE(offences_of("198.51.100.1"));
  clock_.set(t0 + 210 * 24h + 1s);
  EXPECT_FALSE(offences_of("198.51.100.1"));
}

TEST_F(ReputationTest, CleanRecordsLastFourHalfLivesAndAreWrittenHourly) {
  const TimePoint t0 = clock_.now();
  auto clean = [&](const char* a) { return rep_.report(net(a)).network_clean.at(0).second; };
  rep_.note_clean(ip("192.0.2.1"));
  rep_.note_clean(ip("198.51.100.1"));
  clock_.advance(30min);
  rep_.note_clean(ip("192.0.2.2"));  // within the hour: not written, its expiry stays
  clock_.advance(90min);
  rep_.note_clean(ip("198.51.100.2"));  // two hours on: written again, its expiry moves
  clock_.set(t0 + 120 * 24h - 1s);
  EXPECT_TRUE(clean("192.0.2.1"));
  EXPECT_TRUE(clean("198.51.100.1"));
  clock_.set(t0 + 120 * 24h + 1s);
  EXPECT_FALSE(clean("192.0.2.1"));
  EXPECT_TRUE(clean("198.51.100.1"));
  // Without its clean record, the network can be banned again.
  offend_many("192.0.2.", 1, 5);
  EXPECT_TRUE(rep_.ban_for(ip("192.0.2.200")));
}

// ---- Configuration and threads ----

TEST_F(ReputationTest, ReconfigureKeepsExistingBans) {
  const TimePoint t0 = clock_.now();
  offend("192.0.2.7");
  ReputationConfig config;
  config.ban_base = 1min;
  config.ban_factor = 1;
  config.ban_max = 1min;
  rep_.reconfigure(config);
  EXPECT_EQ(rep_.ban_for(ip("192.0.2.7")).value().until, t0 + 10min);
  // A new, shorter ban never cuts the one in force.
  clock_.advance(1min);
  Ban ban = offend("192.0.2.7");
  EXPECT_EQ(ban.offence_number, 2);
  EXPECT_EQ(ban.until, t0 + 10min);
  EXPECT_EQ(rep_.ban_for(ip("192.0.2.7")).value().until, t0 + 10min);
  // After it, the new formula applies.
  clock_.set(t0 + 10min);
  ban = offend("192.0.2.7");
  EXPECT_EQ(length_of(ban), 1min);
}

TEST(ReputationThreads, ConcurrentOffencesAreAllCounted) {
  FakeClock clock;
  InstrumentedStore store(clock);
  store.slow_reads = true;  // widens the window between reading a record and writing it back
  Reputation rep(store, clock, ReputationConfig{}, 0ms);
  constexpr int kThreads = 4;
  constexpr int kEach = 25;
  std::vector<std::thread> threads;
  std::atomic<int> banned_lookups{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kEach; ++i) {
        rep.record_offence(ip("192.0.2.7"), OffenceKind::spam, "");
        if (rep.ban_for(ip("192.0.2.7"))) ++banned_lookups;
      }
    });
  }
  for (auto& t : threads) t.join();
  auto report = rep.report(net("192.0.2.7"));
  ASSERT_TRUE(report.offences);
  EXPECT_EQ(report.offences->total, kThreads * kEach);
  EXPECT_DOUBLE_EQ(rep.offence_count(ip("192.0.2.7")), kThreads * kEach);
  EXPECT_EQ(banned_lookups, kThreads * kEach);
}

}  // namespace

TEST_F(ReputationTest, TheMostSevereCoveringBanIsAnswered) {
  // 192.0.2.1's own ban (10m from now) ends before the /24's ban made a minute later: the
  // client meets the one that lasts longer.
  offend("192.0.2.1");
  auto own = rep_.ban_for(ip("192.0.2.1"));
  ASSERT_TRUE(own);
  EXPECT_EQ(own->target, net("192.0.2.1/32"));
  clock_.advance(1min);
  offend_many("192.0.2.", 2, 4);  // the 5th distinct offender: the /24 is banned
  auto answered = rep_.ban_for(ip("192.0.2.1"));
  ASSERT_TRUE(answered);
  EXPECT_EQ(answered->target, net("192.0.2.0/24"));
  EXPECT_GT(answered->until, own->until);
}
