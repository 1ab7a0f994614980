// The trap check (checks/trap_check.h): clients that reach an address no MX points to.
#include <gtest/gtest.h>

#include "checks/trap_check.h"
#include "engine/engine.h"
#include "engine_support.h"
#include "test_support.h"

using namespace spamward;
using namespace spamward::test;
using namespace std::chrono_literals;

namespace {

Verdict run(Engine& engine, const Transaction& tx) {
  return evaluate_now(engine, tx);
}

bool has(const Verdict& v, std::string_view name) {
  return std::any_of(v.symbols.begin(), v.symbols.end(),
                     [&](const Symbol& s) { return s.name == name; });
}

class TrapTest : public testing::Test {
 protected:
  TrapTest() { config_.network.trusted.clear(); }

  std::shared_ptr<Engine> engine(Resolver* resolver = nullptr) {
    Env env{&clock_, resolver, store_.get(), nullptr, {}};
    env.reputation = &rep_;
    std::vector<std::unique_ptr<Check>> checks;
    if (auto c = make_trap_check(config_, env)) checks.push_back(std::move(c));
    return std::make_shared<Engine>(std::make_shared<const Config>(config_), env,
                                    std::move(checks));
  }
  static Transaction mail(const char* client, const char* server, int port) {
    Transaction tx;
    tx.stage = Stage::mail;
    tx.client_address = ip(client);
    tx.server_address = ip(server);
    tx.server_port = port;
    tx.sender = "someone@sender.example";
    return tx;
  }

  Config config_;
  FakeClock clock_;
  std::unique_ptr<Store> store_ = make_memory_store(clock_);
  Reputation rep_{*store_, clock_, ReputationConfig{}, 0ms};
};

TEST_F(TrapTest, OffWithoutMxAddresses) {
  Env env{&clock_, nullptr, store_.get(), nullptr, {}};
  EXPECT_EQ(make_trap_check(config_, env), nullptr);
}

TEST_F(TrapTest, AClientAtANonMxAddressIsBannedAtOnce) {
  config_.trap.mx_addresses = {ip("192.0.2.25"), ip("2001:db8::25")};
  auto e = engine();
  auto v = run(*e, mail("198.51.100.7", "192.0.2.26", 25));
  EXPECT_TRUE(has(v, "TRAP_NON_MX"));
  EXPECT_EQ(v.action, Action::tempfail);
  EXPECT_EQ(v.standalone, Standalone::ban);
  auto ban = rep_.ban_for(ip("198.51.100.7"));
  ASSERT_TRUE(ban.has_value());
  EXPECT_EQ(ban->until - ban->since, Duration(10min));  // ban_base
  auto report = rep_.report(Prefix(ip("198.51.100.7"), 32));
  ASSERT_TRUE(report.offences.has_value());
  EXPECT_EQ(report.offences->history.back().kind, OffenceKind::trap);
  // A second transaction of the banned client records no second offence.
  run(*e, mail("198.51.100.7", "192.0.2.26", 25));
  EXPECT_NEAR(rep_.offence_count(ip("198.51.100.7")), 1.0, 0.01);
}

TEST_F(TrapTest, OnlyPortTwentyFiveAndOnlyStrangersCount) {
  config_.trap.mx_addresses = {ip("192.0.2.25")};
  auto e = engine();
  EXPECT_FALSE(has(run(*e, mail("198.51.100.7", "192.0.2.25", 25)), "TRAP_NON_MX"));  // an MX
  EXPECT_FALSE(has(run(*e, mail("198.51.100.7", "192.0.2.26", 587)), "TRAP_NON_MX"));
  auto authenticated = mail("198.51.100.7", "192.0.2.26", 25);
  authenticated.sasl_username = "alice";
  EXPECT_FALSE(has(run(*e, authenticated), "TRAP_NON_MX"));
  auto unknown_port = mail("198.51.100.7", "192.0.2.26", 0);
  EXPECT_FALSE(has(run(*e, unknown_port), "TRAP_NON_MX"));
  config_.network.trusted = {*Prefix::parse("198.51.100.0/24")};
  auto trusting = engine();
  EXPECT_FALSE(has(run(*trusting, mail("198.51.100.7", "192.0.2.26", 25)), "TRAP_NON_MX"));
  EXPECT_FALSE(rep_.ban_for(ip("198.51.100.7")).has_value());
}

TEST_F(TrapTest, ResolvesTheMxOfDomainsAndFailsOpenUntilItCan) {
  config_.trap.mx_domains = {"example.org", "nomx.example"};
  CountingResolver dns;
  dns.fixture.set("example.org", DnsType::mx, ok({"mx1.example.org", "mx2.example.org"}));
  dns.fixture.set("mx1.example.org", DnsType::a, ok({"192.0.2.25"}));
  dns.fixture.set("mx1.example.org", DnsType::aaaa, {DnsAnswer::Status::nodata, {}, 0});
  dns.fixture.set("mx2.example.org", DnsType::a, {DnsAnswer::Status::nodata, {}, 0});
  dns.fixture.set("mx2.example.org", DnsType::aaaa, ok({"2001:db8::25"}));
  dns.fixture.set("nomx.example", DnsType::mx, timeout());
  auto e = engine(&dns);
  // One domain could not be resolved: nothing is judged yet.
  EXPECT_FALSE(has(run(*e, mail("198.51.100.7", "192.0.2.99", 25)), "TRAP_NON_MX"));
  // Once it answers (no MX: the domain is its own MX), the trap works.
  dns.fixture.set("nomx.example", DnsType::mx, {DnsAnswer::Status::nodata, {}, 0});
  dns.fixture.set("nomx.example", DnsType::a, ok({"192.0.2.30"}));
  dns.fixture.set("nomx.example", DnsType::aaaa, {DnsAnswer::Status::nodata, {}, 0});
  clock_.advance(2min);
  EXPECT_FALSE(has(run(*e, mail("198.51.100.8", "2001:db8::25", 25)), "TRAP_NON_MX"));
  EXPECT_FALSE(has(run(*e, mail("198.51.100.8", "192.0.2.30", 25)), "TRAP_NON_MX"));
  EXPECT_TRUE(has(run(*e, mail("198.51.100.8", "192.0.2.99", 25)), "TRAP_NON_MX"));
  // The answer is cached for an hour: no new queries.
  int queries = dns.queries;
  run(*e, mail("198.51.100.9", "192.0.2.25", 25));
  EXPECT_EQ(dns.queries, queries);
}

TEST_F(TrapTest, DryRunRecordsNoOffence) {
  config_.trap.mx_addresses = {ip("192.0.2.25")};
  config_.actions.dry_run = true;
  auto e = engine();
  auto v = run(*e, mail("198.51.100.7", "192.0.2.26", 25));
  EXPECT_TRUE(has(v, "TRAP_NON_MX"));
  EXPECT_EQ(v.applied, Action::accept);
  EXPECT_FALSE(rep_.ban_for(ip("198.51.100.7")).has_value());
}

}  // namespace
