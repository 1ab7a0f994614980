// Greylisting and reputation as a sender meets them (issue 4, point 4: unit scenarios):
// the Engine with its greylist gate, a memory store, a Reputation and a fake clock.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include "core/config.h"
#include "engine/engine.h"
#include "state/reputation.h"
#include "state/store.h"
#include "test_support.h"

using namespace spamward;
using spamward::test::ip;
using namespace std::chrono_literals;

namespace {

// Emits whatever the test put in `symbols` at the time of the evaluation.
class SettableCheck final : public Check {
 public:
  explicit SettableCheck(std::shared_ptr<std::vector<Symbol>> symbols)
      : symbols_(std::move(symbols)) {}
  std::string_view name() const override { return "settable"; }
  Stage stage() const override { return Stage::connect; }
  Family family() const override { return Family::rfc; }
  std::optional<std::vector<Symbol>> run_now(const Transaction&) override { return *symbols_; }
  boost::asio::awaitable<std::vector<Symbol>> run(const Transaction&) override {
    co_return *symbols_;
  }

 private:
  std::shared_ptr<std::vector<Symbol>> symbols_;
};

// An asynchronous check (as a DNS check is) that counts how often it was started.
class CountingAsyncCheck final : public Check {
 public:
  explicit CountingAsyncCheck(int* runs) : runs_(runs) {}
  std::string_view name() const override { return "counting_async"; }
  Stage stage() const override { return Stage::helo; }
  Family family() const override { return Family::dnsbl; }
  boost::asio::awaitable<std::vector<Symbol>> run(const Transaction&) override {
    ++*runs_;
    co_return std::vector<Symbol>{};
  }

 private:
  int* runs_;
};

Symbol sym(std::string name, double score, Family family) {
  Symbol s;
  s.name = std::move(name);
  s.score = score;
  s.family = family;
  return s;
}

bool has(const Verdict& v, std::string_view name) {
  for (const auto& s : v.symbols)
    if (s.name == name) return true;
  return false;
}

class Scenario : public ::testing::Test {
 protected:
  FakeClock clock;
  Metrics metrics;
  std::unique_ptr<Store> store = make_memory_store(clock);
  Config config;
  std::unique_ptr<Reputation> reputation;
  std::shared_ptr<std::vector<Symbol>> symbols = std::make_shared<std::vector<Symbol>>();
  std::shared_ptr<Engine> engine_;
  int next_tx = 0;
  int async_runs = 0;

  void SetUp() override {
    config.network.trusted.clear();
    config.greylist.mode = "always";
    config.greylist.auto_allow_after = 3;
  }

  Engine& engine() {
    if (!engine_) {
      reputation = std::make_unique<Reputation>(*store, clock, config.reputation,
                                                std::chrono::milliseconds(0));
      Env env{&clock, nullptr, store.get(), &metrics, {}};
      env.reputation = reputation.get();
      std::vector<std::unique_ptr<Check>> checks;
      checks.push_back(make_reputation_check_for_test(env));
      checks.push_back(std::make_unique<SettableCheck>(symbols));
      checks.push_back(std::make_unique<CountingAsyncCheck>(&async_runs));
      engine_ =
          std::make_shared<Engine>(std::make_shared<const Config>(config), env, std::move(checks));
    }
    return *engine_;
  }
  static std::unique_ptr<Check> make_reputation_check_for_test(const Env& env);

  Transaction tx(const char* client, const char* sender, const char* rcpt,
                 Stage stage = Stage::rcpt) {
    Transaction t;
    t.id = t.instance = "tx" + std::to_string(++next_tx);
    t.stage = stage;
    t.client_address = ip(client);
    t.helo = "mx.example.net";
    t.sender = sender;
    t.recipient = rcpt;
    if (*rcpt) t.recipients = {rcpt};
    return t;
  }

  Verdict evaluate(const Transaction& t, EvaluationState* state = nullptr) {
    EvaluationState local;
    auto task = engine().evaluate(t, state ? *state : local);
    return spamward::test::run_sync(std::move(task));
  }
  Verdict attempt(const char* client, const char* sender = "news@sender.example",
                  const char* rcpt = "bob@local.example") {
    return evaluate(tx(client, sender, rcpt));
  }
};

}  // namespace

#include "checks/reputation_check.h"

std::unique_ptr<Check> Scenario::make_reputation_check_for_test(const Env& env) {
  return make_reputation_check(env);
}

TEST_F(Scenario, CorrectMtaRetryingAfterFiveMinutesPassesThenIsAutoAllowed) {
  for (int i = 0; i < 3; ++i) {
    std::string rcpt = "user" + std::to_string(i) + "@local.example";
    Verdict first = attempt("192.0.2.10", "news@sender.example", rcpt.c_str());
    ASSERT_EQ(first.action, Action::greylist) << first.reason;
    EXPECT_TRUE(has(first, "GREYLIST"));
    EXPECT_NE(first.reply_text.find("try again in 5 minutes"), std::string::npos)
        << first.reply_text;
    clock.advance(60s);  // a retry every minute never reaches `hammering` and does not count
    EXPECT_EQ(attempt("192.0.2.10", "news@sender.example", rcpt.c_str()).action, Action::greylist);
    clock.advance(4min + 1s);
    Verdict retry = attempt("192.0.2.10", "news@sender.example", rcpt.c_str());
    EXPECT_EQ(retry.action, Action::accept) << retry.reason;
    EXPECT_TRUE(has(retry, "GREYLIST_PASSED"));
  }
  // Three successful retries: a new triplet from the same /24 is not delayed at all.
  Verdict fresh = attempt("192.0.2.77", "other@else.example", "carol@local.example");
  EXPECT_EQ(fresh.action, Action::accept) << fresh.reason;
  EXPECT_TRUE(has(fresh, "GREYLIST_AUTO_ALLOWED"));
  // Another network earned nothing.
  EXPECT_EQ(attempt("198.51.100.1", "other@else.example", "carol@local.example").action,
            Action::greylist);
}

TEST_F(Scenario, FarmRetryingFromAnotherSpfAuthorisedNetworkPasses) {
  auto first = tx("198.51.100.7", "bulk@farm.example", "bob@local.example");
  first.spf_pass_domain = "farm.example";
  ASSERT_EQ(evaluate(first).action, Action::greylist);
  clock.advance(6min);
  auto retry = tx("203.0.113.9", "bulk@farm.example", "bob@local.example");
  retry.spf_pass_domain = "farm.example";
  Verdict v = evaluate(retry);
  EXPECT_EQ(v.action, Action::accept) << v.reason;
  EXPECT_TRUE(has(v, "GREYLIST_PASSED"));
  // Without SPF the key is the client network: the other network is a new triplet.
  auto plain = tx("198.51.100.8", "x@plain.example", "bob@local.example");
  ASSERT_EQ(evaluate(plain).action, Action::greylist);
  clock.advance(6min);
  EXPECT_EQ(evaluate(tx("203.0.113.10", "x@plain.example", "bob@local.example")).action,
            Action::greylist);
}

TEST_F(Scenario, BotResendingEveryTenSecondsNeverPassesAndEndsBanned) {
  int deferred = 0, banned = 0, accepted = 0;
  for (int i = 0; i < 200; ++i) {  // 2000 s: well past min_delay and the first ban
    Verdict v = attempt("192.0.2.66", "win@lottery.example", "bob@local.example");
    if (v.action == Action::greylist) ++deferred;
    if (v.action == Action::tempfail && v.standalone == Standalone::ban) ++banned;
    if (v.action == Action::accept) ++accepted;
    clock.advance(10s);
  }
  EXPECT_EQ(accepted, 0);
  EXPECT_GE(deferred, 10);
  EXPECT_GT(banned, 0);
  auto report = reputation->report(Prefix(ip("192.0.2.66"), 32));
  ASSERT_TRUE(report.offences.has_value());
  EXPECT_GE(report.offences->total, 2);  // it came back after the first ban and offended again
  EXPECT_EQ(report.offences->history.front().kind, OffenceKind::hammering);
}

TEST_F(Scenario, RepeatedSpamGivesBansOf10m40m160mThenForgiven) {
  *symbols = {sym("RBL_X", 10, Family::dnsbl), sym("RDNS_NONE", 10, Family::rfc)};
  config.greylist.mode = "off";
  std::vector<Duration> lengths;
  for (int i = 0; i < 3; ++i) {
    Verdict v = attempt("192.0.2.99");
    ASSERT_EQ(v.action, Action::reject) << v.reason;
    ASSERT_EQ(v.standalone, Standalone::none);
    auto ban = reputation->ban_for(ip("192.0.2.99"));
    ASSERT_TRUE(ban.has_value());
    lengths.push_back(Duration(ban->until - ban->since));
    // During the ban the client meets REPUTATION_BANNED before anything else.
    Verdict during = attempt("192.0.2.99");
    EXPECT_EQ(during.standalone, Standalone::ban);
    EXPECT_EQ(during.action, Action::tempfail);
    clock.set(ban->until + 1s);
  }
  EXPECT_EQ(lengths, (std::vector<Duration>{10min, 40min, 160min}));
  // A long clean period: the offences decay (half-life 30 days) and the next ban is short.
  clock.advance(std::chrono::hours(24 * 200));
  ASSERT_EQ(attempt("192.0.2.99").action, Action::reject);
  auto ban = reputation->ban_for(ip("192.0.2.99"));
  ASSERT_TRUE(ban.has_value());
  EXPECT_EQ(Duration(ban->until - ban->since), Duration(10min));
}

TEST_F(Scenario, Ipv6RotationInsideA64IsCaught) {
  // Greylisting keys on the /64: a host hopping through its /64 is one sender, so its quick
  // re-sends are early retries of one key, and it never passes, even after min_delay.
  ASSERT_EQ(attempt("2001:db8:1:2::1").action, Action::greylist);
  double offences = 0;
  for (int i = 2; i < 42; ++i) {
    std::string a = "2001:db8:1:2::" + std::to_string(i);
    Verdict v = attempt(a.c_str());
    EXPECT_NE(v.action, Action::accept) << a;
    clock.advance(10s);
  }
  for (int i = 2; i < 42; ++i)
    offences += reputation->offence_count(ip(("2001:db8:1:2::" + std::to_string(i)).c_str()));
  EXPECT_GE(offences, 3.0);  // hammering at the 10th early retry, then every 10 more
  // Spam from rotating addresses: after network_after distinct offenders the /64 is banned,
  // so a fresh address of it meets the ban at once.
  config.greylist.mode = "off";
  engine_.reset();
  *symbols = {sym("RBL_X", 10, Family::dnsbl), sym("RDNS_NONE", 10, Family::rfc)};
  for (int i = 100; i < 100 + config.reputation.network_after; ++i) {
    std::string a = "2001:db8:1:2::" + std::to_string(i);
    attempt(a.c_str());
  }
  Verdict fresh = attempt("2001:db8:1:2:ffff::1");
  EXPECT_EQ(fresh.standalone, Standalone::ban) << fresh.reason;
  auto ban = reputation->ban_for(ip("2001:db8:1:2:ffff::1"));
  ASSERT_TRUE(ban.has_value());
  EXPECT_EQ(ban->target.length(), 64);
}

TEST_F(Scenario, MultiRecipientMessageIsDeferredAndAcceptedAsAWhole) {
  config.greylist.mode = "selective";
  *symbols = {sym("RDNS_NONE", 4, Family::rfc)};  // over greylist 3, under tag 6
  auto deliver = [&](Action want_rcpt2) {
    EvaluationState state;
    auto r1 = tx("192.0.2.44", "list@example.org", "one@local.example");
    Verdict v1 = evaluate(r1, &state);
    auto r2 = tx("192.0.2.44", "list@example.org", "postmaster@local.example");
    r2.id = r2.instance = r1.id;
    Verdict v2 = evaluate(r2, &state);
    EXPECT_EQ(v2.action, want_rcpt2);
    auto data = tx("192.0.2.44", "list@example.org", "", Stage::data);
    data.id = data.instance = r1.id;
    data.recipients = {"one@local.example", "postmaster@local.example"};
    Verdict vd = evaluate(data, &state);
    return std::pair{v1.action, vd.action};
  };
  // First delivery: one@ is new (deferred at RCPT); postmaster@ is exempt and gets 250, but
  // the message is deferred at DATA, so nobody gets it alone.
  auto first = deliver(Action::accept);
  EXPECT_EQ(first.first, Action::greylist);
  EXPECT_EQ(first.second, Action::greylist);
  clock.advance(6min);
  auto second = deliver(Action::accept);
  EXPECT_EQ(second.first, Action::accept);
  EXPECT_EQ(second.second, Action::accept);
}

TEST_F(Scenario, MilterStyleDecisionAtDataGatesEveryRecipient) {
  // The milter decides at DATA with every recipient known: one new triplet defers all.
  config.greylist.mode = "always";
  auto data = tx("192.0.2.55", "a@b.example", "", Stage::data);
  data.recipients = {"x@local.example", "y@local.example"};
  EXPECT_EQ(evaluate(data).action, Action::greylist);
  clock.advance(6min);
  data.id = data.instance = "retry";
  Verdict v = evaluate(data);
  EXPECT_EQ(v.action, Action::accept) << v.reason;
}

TEST_F(Scenario, ReadOnlyEnvironmentChangesNothing) {
  Env env{&clock, nullptr, store.get(), &metrics, {}};
  env.read_only = true;
  reputation =
      std::make_unique<Reputation>(*store, clock, config.reputation, std::chrono::milliseconds(0));
  env.reputation = reputation.get();
  std::vector<std::unique_ptr<Check>> checks;
  checks.push_back(std::make_unique<SettableCheck>(symbols));
  Engine engine(std::make_shared<const Config>(config), env, std::move(checks));
  for (int i = 0; i < 3; ++i) {
    Transaction t = tx("192.0.2.88", "a@b.example", "c@local.example");  // outlives the task
    auto task = engine.evaluate(t);
    EXPECT_EQ(spamward::test::run_sync(std::move(task)).action, Action::greylist);
    clock.advance(10min);
  }
  EXPECT_EQ(store->count("greylist"), 0);
}

TEST_F(Scenario, DryRunRecordsNoOffence) {
  config.actions.dry_run = true;
  config.greylist.mode = "off";
  *symbols = {sym("RBL_X", 10, Family::dnsbl), sym("RDNS_NONE", 10, Family::rfc)};
  Verdict v = attempt("192.0.2.12");
  EXPECT_EQ(v.action, Action::reject);
  EXPECT_EQ(v.applied, Action::tag);  // monitor-only: tagging changes no delivery
  EXPECT_FALSE(reputation->ban_for(ip("192.0.2.12")).has_value());
  EXPECT_EQ(reputation->offence_count(ip("192.0.2.12")), 0.0);
}

TEST_F(Scenario, ABannedClientCostsNoDnsQuery) {
  config.greylist.mode = "off";
  *symbols = {sym("RBL_X", 10, Family::dnsbl), sym("RDNS_NONE", 10, Family::rfc)};
  ASSERT_EQ(attempt("192.0.2.31").action, Action::reject);  // the offence: banned now
  EXPECT_EQ(async_runs, 1);
  Verdict banned = attempt("192.0.2.31");
  EXPECT_EQ(banned.standalone, Standalone::ban);
  EXPECT_EQ(async_runs, 1) << "the asynchronous (DNS) check ran for a banned client";
  EXPECT_TRUE(banned.failed_checks.empty());  // skipped is not failed open
  // An allow-listed network outranks the ban, so its checks run as usual.
  *symbols = {sym("ALLOWLIST", -20, Family::admin)};
  Verdict allowed = attempt("192.0.2.31");
  EXPECT_EQ(allowed.action, Action::accept);
  EXPECT_EQ(async_runs, 2);
}
