// DNSBL/DNSWL: query names (RFC 5782 §2.1, §2.4), answer classification, the per-list checks
// on a FixtureResolver, and the RFC 5782 §5 health state machine (disable and recovery).
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include "checks/dnsbl_check.h"
#include "checks/dnsbl_health.h"
#include "core/symbol.h"
#include "dns/dnsbl.h"
#include "test_support.h"

namespace spamward {
namespace {

using namespace spamward::test;

ListConfig list(const char* name, const char* zone, double weight = 3.0, bool ipv6 = false) {
  ListConfig l;
  l.name = name;
  l.zone = zone;
  l.weight = weight;
  l.ipv6 = ipv6;
  l.blocked_codes = {*Prefix::parse("127.255.255.0/24")};
  return l;
}

// ::ffff:127.0.0.<last>, as raw bytes (IpAddress would fold it to IPv4).
std::array<uint8_t, 16> mapped(uint8_t last) {
  return {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0x7f, 0, 0, last};
}

// Runs awaitables on one io_context that outlives the health objects of a test.
class DnsblFixture : public ::testing::Test {
 protected:
  template <typename T>
  T run(boost::asio::awaitable<T> task) {
    T result{};
    std::exception_ptr error;
    boost::asio::co_spawn(io_, std::move(task), [&](std::exception_ptr e, T r) {
      error = e;
      result = std::move(r);
    });
    io_.restart();
    io_.run();
    if (error) std::rethrow_exception(error);
    return result;
  }
  void drain() {  // lets background health tests finish
    io_.restart();
    io_.run();
  }
  // The RFC 5782 §5 test points of a healthy list.
  void healthy(const std::string& zone, bool v6 = false) {
    dns_.set("2.0.0.127." + zone, DnsType::a, ok({"127.0.0.2"}));
    if (v6) dns_.set(dnsbl_query_name_v6(mapped(2), zone), DnsType::a, ok({"127.0.0.2"}));
  }
  std::vector<std::unique_ptr<Check>> checks(const Config& config) {
    Env env{&clock_, &dns_, nullptr, &metrics_, {}};
    health_ = std::make_shared<DnsblHealth>(dns_, clock_, &metrics_);
    return make_dnsbl_checks(config, env, health_);
  }
  std::vector<Symbol> run_check(Check& check, const char* client) {
    Transaction tx;
    tx.stage = Stage::connect;
    tx.client_address = ip(client);
    if (auto now = check.run_now(tx)) return *now;
    return run(check.run(tx));
  }

  boost::asio::io_context io_;  // first: outlives the health objects below
  FakeClock clock_;
  FixtureResolver dns_;
  Metrics metrics_;
  std::shared_ptr<DnsblHealth> health_;
};

// ---- names -----------------------------------------------------------------------------

TEST(DnsblNames, Ipv4ReversedOctets) {
  EXPECT_EQ(dnsbl_query_name(ip("192.0.2.1"), "bl.example.org"), "1.2.0.192.bl.example.org");
  EXPECT_EQ(dnsbl_query_name(ip("127.0.0.2"), "bl.example.org."), "2.0.0.127.bl.example.org");
}

TEST(DnsblNames, Ipv6NibblesRfc5782) {
  // RFC 5782 §2.4's example: 2001:db8:1:2:3:4:567:89ab
  EXPECT_EQ(dnsbl_query_name(ip("2001:db8:1:2:3:4:567:89ab"), "ugly.example.com"),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com");
  EXPECT_EQ(dnsbl_query_name(ip("2001:db8::1"), "bl.test"),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test");
  EXPECT_EQ(dnsbl_query_name_v6(mapped(2), "bl.test"),
            "2.0.0.0.0.0.f.7.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.bl.test");
}

TEST(DnsblNames, Symbols) {
  EXPECT_EQ(list_symbol_name("RBL_", "spam-haus_zen2"), "RBL_SPAM_HAUS_ZEN2");
  EXPECT_EQ(list_symbol_name("DNSWL_", "dnswl"), "DNSWL_DNSWL");
}

// ---- classification --------------------------------------------------------------------

TEST(DnsblClassify, WeightCodesAndHighest) {
  ListConfig l = list("x", "bl.test", 2.0);
  l.codes = {{"127.0.0.4", 5.0}, {"127.0.0.10", 1.0}};
  auto plain = classify_dnsbl_answer(l, {"127.0.0.2"});
  EXPECT_TRUE(plain.listed);
  EXPECT_DOUBLE_EQ(plain.score, 2.0);  // not in the map: the weight
  auto mapped = classify_dnsbl_answer(l, {"127.0.0.10"});
  EXPECT_DOUBLE_EQ(mapped.score, 1.0);  // exact code: its score, even below the weight
  auto several = classify_dnsbl_answer(l, {"127.0.0.10", "127.0.0.4", "127.0.0.3"});
  EXPECT_DOUBLE_EQ(several.score, 5.0);
  EXPECT_EQ(several.codes, (std::vector<std::string>{"127.0.0.10", "127.0.0.4", "127.0.0.3"}));
  EXPECT_FALSE(several.alert());
}

TEST(DnsblClassify, BlockedAndOutside127AreNotListings) {
  ListConfig l = list("x", "bl.test");
  auto blocked = classify_dnsbl_answer(l, {"127.255.255.254"});
  EXPECT_FALSE(blocked.listed);
  EXPECT_TRUE(blocked.alert());
  EXPECT_EQ(blocked.blocked, std::vector<std::string>{"127.255.255.254"});
  auto hijack = classify_dnsbl_answer(l, {"198.51.100.7"});
  EXPECT_FALSE(hijack.listed);
  EXPECT_EQ(hijack.not_127, std::vector<std::string>{"198.51.100.7"});
  // A list's own blocked codes (dnswl.org: 127.0.0.255) replace the default.
  ListConfig wl = list("wl", "wl.test");
  wl.blocked_codes = {*Prefix::parse("127.0.0.255")};
  EXPECT_FALSE(classify_dnsbl_answer(wl, {"127.0.0.255"}).listed);
  EXPECT_TRUE(classify_dnsbl_answer(wl, {"127.255.255.254"}).listed);
  // A listing next to a blocked answer still counts; the odd answer raises an alert.
  auto mixed = classify_dnsbl_answer(l, {"127.0.0.2", "127.255.255.252"});
  EXPECT_TRUE(mixed.listed);
  EXPECT_TRUE(mixed.alert());
}

// ---- checks ----------------------------------------------------------------------------

TEST_F(DnsblFixture, ListedUnlistedAndCodes) {
  Config config;
  ListConfig l = list("bl-one", "bl.test", 3.0);
  l.codes = {{"127.0.0.10", 1.5}};
  config.dnsbl = {l};
  healthy("bl.test");
  dns_.set("1.2.0.192.bl.test", DnsType::a, ok({"127.0.0.2"}));
  dns_.set("2.2.0.192.bl.test", DnsType::a, ok({"127.0.0.10"}));
  auto cs = checks(config);
  ASSERT_EQ(cs.size(), 1u);
  EXPECT_EQ(cs[0]->stage(), Stage::connect);
  EXPECT_EQ(cs[0]->family(), Family::dnsbl);
  EXPECT_FALSE(cs[0]->can_only_lower());

  auto hit = run_check(*cs[0], "192.0.2.1");
  ASSERT_EQ(hit.size(), 1u);
  EXPECT_EQ(hit[0].name, "RBL_BL_ONE");
  EXPECT_DOUBLE_EQ(hit[0].score, 3.0);
  EXPECT_EQ(hit[0].detail, "127.0.0.2");
  auto coded = run_check(*cs[0], "192.0.2.2");
  ASSERT_EQ(coded.size(), 1u);
  EXPECT_DOUBLE_EQ(coded[0].score, 1.5);
  EXPECT_TRUE(run_check(*cs[0], "192.0.2.3").empty());
  EXPECT_EQ(metrics_.value("spamward_dnsbl_queries_total", {{"list", "bl-one"}}), 3.0);
  EXPECT_EQ(metrics_.value("spamward_dnsbl_hits_total", {{"list", "bl-one"}}), 2.0);
  EXPECT_EQ(metrics_.histogram_count("spamward_dnsbl_seconds", {{"list", "bl-one"}}), 3);
  EXPECT_EQ(metrics_.value("spamward_dnsbl_healthy", {{"list", "bl-one"}}), 1.0);
}

TEST_F(DnsblFixture, Ipv6OnlyWhenEnabled) {
  Config config;
  config.dnsbl = {list("v4only", "v4.test"), list("both", "v6.test", 2.0, true)};
  healthy("v4.test");
  healthy("v6.test", true);
  const char* client = "2001:db8::1";
  std::string suffix = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.";
  dns_.set(suffix + "v4.test", DnsType::a, ok({"127.0.0.2"}));
  dns_.set(suffix + "v6.test", DnsType::a, ok({"127.0.0.2"}));
  auto cs = checks(config);
  ASSERT_EQ(cs.size(), 2u);
  EXPECT_TRUE(run_check(*cs[0], client).empty());
  auto hit = run_check(*cs[1], client);
  ASSERT_EQ(hit.size(), 1u);
  EXPECT_EQ(hit[0].name, "RBL_BOTH");
  EXPECT_EQ(metrics_.value("spamward_dnsbl_queries_total", {{"list", "v4only"}}), 0.0);
}

TEST_F(DnsblFixture, DnswlSubtractsAndOnlyLowers) {
  Config config;
  config.dnswl = {list("wl", "wl.test", 2.5)};
  healthy("wl.test");
  dns_.set("1.2.0.192.wl.test", DnsType::a, ok({"127.0.10.1"}));
  auto cs = checks(config);
  ASSERT_EQ(cs.size(), 1u);
  EXPECT_TRUE(cs[0]->can_only_lower());
  auto hit = run_check(*cs[0], "192.0.2.1");
  ASSERT_EQ(hit.size(), 1u);
  EXPECT_EQ(hit[0].name, "DNSWL_WL");
  EXPECT_DOUBLE_EQ(hit[0].score, -2.5);
}

TEST_F(DnsblFixture, TimeoutAddsNothing) {
  Config config;
  config.dnsbl = {list("bl", "bl.test")};
  config.dnswl = {list("wl", "wl.test")};
  healthy("bl.test");
  healthy("wl.test");
  dns_.set("1.2.0.192.bl.test", DnsType::a, timeout());
  dns_.set("1.2.0.192.wl.test", DnsType::a, timeout());
  auto cs = checks(config);
  ASSERT_EQ(cs.size(), 2u);
  EXPECT_TRUE(run_check(*cs[0], "192.0.2.1").empty());  // a DNSBL: simply nothing
  EXPECT_EQ(metrics_.value("spamward_dnsbl_errors_total", {{"list", "bl"}}), 1.0);
  // A DNSWL fails, so that the Engine caps the verdict (it could only have lowered it).
  EXPECT_THROW(run_check(*cs[1], "192.0.2.1"), std::runtime_error);
}

TEST_F(DnsblFixture, BlockedAnswerAlertsWithoutScore) {
  Config config;
  config.dnsbl = {list("bl", "bl.test")};
  healthy("bl.test");
  dns_.set("1.2.0.192.bl.test", DnsType::a, ok({"127.255.255.254"}));
  dns_.set("2.2.0.192.bl.test", DnsType::a, ok({"10.0.0.1"}));
  auto cs = checks(config);
  EXPECT_TRUE(run_check(*cs[0], "192.0.2.1").empty());
  EXPECT_TRUE(run_check(*cs[0], "192.0.2.1").empty());
  EXPECT_TRUE(run_check(*cs[0], "192.0.2.2").empty());
  EXPECT_EQ(metrics_.value("spamward_dnsbl_alerts_total", {{"list", "bl"}, {"reason", "blocked"}}),
            2.0);
  EXPECT_EQ(metrics_.value("spamward_dnsbl_alerts_total", {{"list", "bl"}, {"reason", "not_127"}}),
            1.0);
  EXPECT_EQ(metrics_.value("spamward_dnsbl_hits_total", {{"list", "bl"}}), 0.0);
}

TEST_F(DnsblFixture, NoClientAuthenticatedOrLoopbackQueriesNothing) {
  Config config;
  config.dnsbl = {list("bl", "bl.test")};
  auto cs = checks(config);
  Transaction tx;
  tx.stage = Stage::connect;
  ASSERT_TRUE(cs[0]->run_now(tx));
  tx.client_address = ip("192.0.2.1");
  tx.sasl_username = "alice";
  ASSERT_TRUE(cs[0]->run_now(tx));
  EXPECT_TRUE(run_check(*cs[0], "127.0.0.5").empty());
  EXPECT_FALSE(health_->last(0));  // not even a health test
}

TEST_F(DnsblFixture, NoResolverNoChecks) {
  Config config;
  config.dnsbl = {list("bl", "bl.test")};
  Env env{&clock_, nullptr, nullptr, &metrics_, {}};
  EXPECT_TRUE(make_dnsbl_checks(config, env).empty());
}

// ---- health ----------------------------------------------------------------------------

TEST_F(DnsblFixture, HealthReports) {
  healthy("good.test", true);
  auto good = run(test_list_health(dns_, list("good", "good.test", 1.0, true)));
  EXPECT_EQ(good.status, DnsblHealthStatus::healthy);
  EXPECT_TRUE(good.trusted);
  EXPECT_EQ(good.answers.size(), 4u);

  auto empty = run(test_list_health(dns_, list("empty", "empty.test")));  // no 127.0.0.2
  EXPECT_EQ(empty.status, DnsblHealthStatus::broken);
  EXPECT_TRUE(empty.trusted);

  dns_.set("2.0.0.127.world.test", DnsType::a, ok({"127.0.0.2"}));
  dns_.set("1.0.0.127.world.test", DnsType::a, ok({"127.0.0.2"}));
  auto world = run(test_list_health(dns_, list("world", "world.test")));
  EXPECT_EQ(world.status, DnsblHealthStatus::listing_everything);
  EXPECT_FALSE(world.trusted);

  // IPv6 lists: the nibble test point counts too.
  healthy("w6.test", true);
  dns_.set(dnsbl_query_name_v6(mapped(1), "w6.test"), DnsType::a, ok({"127.0.0.2"}));
  EXPECT_EQ(run(test_list_health(dns_, list("w6", "w6.test", 1.0, true))).status,
            DnsblHealthStatus::listing_everything);

  // Blocked answers are not listings: a blocked resolver is "broken", not "lists everything".
  dns_.set("2.0.0.127.blk.test", DnsType::a, ok({"127.255.255.254"}));
  dns_.set("1.0.0.127.blk.test", DnsType::a, ok({"127.255.255.254"}));
  auto blocked = run(test_list_health(dns_, list("blk", "blk.test")));
  EXPECT_EQ(blocked.status, DnsblHealthStatus::broken);
  EXPECT_TRUE(blocked.refused);
  EXPECT_TRUE(blocked.trusted);  // its answers are never listings, so it cannot score wrongly

  dns_.set("2.0.0.127.dead.test", DnsType::a, timeout());
  dns_.set("1.0.0.127.dead.test", DnsType::a, timeout());
  auto dead = run(test_list_health(dns_, list("dead", "dead.test")));
  EXPECT_EQ(dead.status, DnsblHealthStatus::broken);
  EXPECT_FALSE(dead.trusted);
}

TEST_F(DnsblFixture, ListingEverythingDisablesThenRecovers) {
  Config config;
  config.dnsbl = {list("world", "world.test")};
  dns_.set("2.0.0.127.world.test", DnsType::a, ok({"127.0.0.2"}));
  dns_.set("1.0.0.127.world.test", DnsType::a, ok({"127.0.0.2"}));
  dns_.set("1.2.0.192.world.test", DnsType::a, ok({"127.0.0.2"}));
  auto cs = checks(config);

  // The first use awaits the first test: the list is disabled before it could score.
  EXPECT_TRUE(run_check(*cs[0], "192.0.2.1").empty());
  EXPECT_FALSE(health_->enabled(0));
  EXPECT_EQ(metrics_.value("spamward_dnsbl_healthy", {{"list", "world"}}), 0.0);
  EXPECT_EQ(metrics_.value("spamward_dnsbl_queries_total", {{"list", "world"}}), 0.0);

  // The zone is fixed; nothing is re-tested before the interval ...
  dns_.set("1.0.0.127.world.test", DnsType::a, DnsAnswer{DnsAnswer::Status::nxdomain, {}, 0});
  clock_.advance(std::chrono::minutes(5));
  EXPECT_TRUE(run_check(*cs[0], "192.0.2.1").empty());
  drain();
  EXPECT_FALSE(health_->enabled(0));
  // ... after it, a use starts a re-test (in the background: with a real resolver that use
  // still sees the old state; the fixture answers at once),
  clock_.advance(std::chrono::minutes(6));
  run_check(*cs[0], "192.0.2.1");
  drain();
  EXPECT_TRUE(health_->enabled(0));
  EXPECT_EQ(metrics_.value("spamward_dnsbl_healthy", {{"list", "world"}}), 1.0);
  // ... and the next use scores again.
  auto hit = run_check(*cs[0], "192.0.2.1");
  ASSERT_EQ(hit.size(), 1u);
  EXPECT_EQ(hit[0].name, "RBL_WORLD");

  // Listing everything again disables it again.
  dns_.set("1.0.0.127.world.test", DnsType::a, ok({"127.0.0.2"}));
  clock_.advance(std::chrono::minutes(11));
  run_check(*cs[0], "192.0.2.1");
  drain();
  EXPECT_FALSE(health_->enabled(0));
  EXPECT_TRUE(run_check(*cs[0], "192.0.2.1").empty());
}

TEST_F(DnsblFixture, ConcurrentFirstUsesShareOneTest) {
  Config config;
  config.dnsbl = {list("bl", "bl.test")};
  healthy("bl.test");
  dns_.set("1.2.0.192.bl.test", DnsType::a, ok({"127.0.0.2"}));
  auto cs = checks(config);
  Transaction tx;
  tx.stage = Stage::connect;
  tx.client_address = ip("192.0.2.1");
  std::vector<size_t> sizes;
  for (int k = 0; k < 3; ++k) {
    boost::asio::co_spawn(io_, cs[0]->run(tx), [&](std::exception_ptr e, std::vector<Symbol> r) {
      if (!e) sizes.push_back(r.size());
    });
  }
  drain();
  EXPECT_EQ(sizes, (std::vector<size_t>{1, 1, 1}));
  EXPECT_EQ(
      metrics_.value("spamward_dnsbl_health_tests_total", {{"list", "bl"}, {"status", "healthy"}}),
      1.0);
}

TEST_F(DnsblFixture, HealthWithoutAnswerStaysUntrustedAndRetries) {
  Config config;
  config.dnsbl = {list("bl", "bl.test")};
  dns_.set("2.0.0.127.bl.test", DnsType::a, timeout());
  dns_.set("1.0.0.127.bl.test", DnsType::a, timeout());
  dns_.set("1.2.0.192.bl.test", DnsType::a, ok({"127.0.0.2"}));
  auto cs = checks(config);
  EXPECT_TRUE(run_check(*cs[0], "192.0.2.1").empty());  // untested: not trusted
  healthy("bl.test");
  dns_.set("1.0.0.127.bl.test", DnsType::a, DnsAnswer{DnsAnswer::Status::nxdomain, {}, 0});
  clock_.advance(std::chrono::seconds(31));  // the short retry, not the 10 minutes
  run_check(*cs[0], "192.0.2.1");
  drain();
  EXPECT_TRUE(health_->enabled(0));
  EXPECT_EQ(run_check(*cs[0], "192.0.2.1").size(), 1u);
}

}  // namespace
}  // namespace spamward

namespace spamward {
namespace {

TEST_F(DnsblFixture, DaemonTestsEveryListAtStart) {
  Config config;
  config.dnsbl.push_back(list("good", "good.test"));
  config.dnsbl.push_back(list("world", "world.test"));
  healthy("good.test");
  dns_.set("1.0.0.127.world.test", DnsType::a, ok({"127.0.0.2"}));  // lists the world
  healthy("world.test");
  Env env{&clock_, &dns_, nullptr, &metrics_, io_.get_executor()};
  health_ = std::make_shared<DnsblHealth>(dns_, clock_, &metrics_);
  auto made = make_dnsbl_checks(config, env, health_);
  ASSERT_EQ(made.size(), 2u);
  // No mail yet: the tests started with the checks and finish on the loop by themselves.
  EXPECT_FALSE(health_->last(0));
  drain();
  ASSERT_TRUE(health_->last(0));
  ASSERT_TRUE(health_->last(1));
  EXPECT_TRUE(health_->enabled(0));
  EXPECT_FALSE(health_->enabled(1));
}
}  // namespace
}  // namespace spamward
