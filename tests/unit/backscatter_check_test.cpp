// The BACKSCATTER check (checks/backscatter_check.h), alone and through the Engine with
// [batv] enforce on and off.
#include "checks/backscatter_check.h"

#include <gtest/gtest.h>

#include <chrono>

#include "auth/batv.h"
#include "checks/registry.h"
#include "core/config.h"
#include "engine/engine.h"
#include "server/milter_protocol.h"
#include "server/policy_protocol.h"
#include "test_support.h"

using namespace spamward;

namespace {

const std::string kKey = "backscatter-test-key-0001";

Config batv_config(bool enforce = false) {
  Config c;
  c.network.trusted.clear();
  c.batv.keys = {kKey};
  c.batv.enforce = enforce;
  return c;
}

Transaction bounce(std::string recipient, std::string sender = "") {
  Transaction tx;
  tx.id = "T1";
  tx.stage = Stage::rcpt;
  tx.client_address = test::ip("198.51.100.7");
  tx.helo = "mx.example.net";
  tx.sender = std::move(sender);
  tx.recipient = recipient;
  tx.recipients = {recipient};
  return tx;
}

std::vector<Symbol> run_check(Check& check, const Transaction& tx) {
  auto now = check.run_now(tx);
  EXPECT_TRUE(now.has_value()) << "the check is synchronous";
  auto later = test::run_sync(check.run(tx));
  EXPECT_EQ(now ? now->size() : 99, later.size());
  return now ? *now : later;
}

std::string detail_of(const std::vector<Symbol>& symbols) {
  return symbols.size() == 1 && symbols[0].name == "BACKSCATTER" ? symbols[0].detail : "";
}

TEST(BackscatterCheck, ExistsOnlyWithKeysAndAClock) {
  FakeClock clock;
  Env env;
  env.clock = &clock;
  Config none;
  EXPECT_EQ(make_backscatter_check(none, env), nullptr);
  Env no_clock;
  EXPECT_EQ(make_backscatter_check(batv_config(), no_clock), nullptr);
  auto check = make_backscatter_check(batv_config(), env);
  ASSERT_NE(check, nullptr);
  EXPECT_EQ(check->name(), "backscatter");
  EXPECT_EQ(check->stage(), Stage::rcpt);
  EXPECT_EQ(check->family(), Family::behaviour);
  // The registry builds it from the config.
  bool found = false;
  for (const auto& c : make_checks(batv_config(), env)) found = found || c->name() == "backscatter";
  EXPECT_TRUE(found);
  for (const auto& c : make_checks(none, env)) EXPECT_NE(c->name(), "backscatter");
}

TEST(BackscatterCheck, BounceToTaggedUntaggedExpiredForgedAndMalformed) {
  FakeClock clock;
  Env env;
  env.clock = &clock;
  Config config = batv_config();
  auto check = make_backscatter_check(config, env);
  ASSERT_NE(check, nullptr);
  const std::string tagged =
      batv_sign("bob@example.org", config.batv.keys, clock.now(), config.batv.max_age);
  ASSERT_TRUE(batv_is_tagged(tagged));

  EXPECT_TRUE(run_check(*check, bounce(tagged)).empty());
  EXPECT_TRUE(run_check(*check, bounce("<" + tagged + ">")).empty());
  EXPECT_EQ(detail_of(run_check(*check, bounce("bob@example.org"))), "bounce to untagged address");
  EXPECT_EQ(detail_of(run_check(*check, bounce("prvs=0682000000=bob@example.org"))),
            "bad BATV signature");
  EXPECT_EQ(detail_of(run_check(*check, bounce("prvs=0682zz=bob@example.org"))),
            "malformed BATV tag");
  auto symbols = run_check(*check, bounce("bob@example.org"));
  ASSERT_EQ(symbols.size(), 1u);
  EXPECT_EQ(symbols[0].family, Family::behaviour);
  EXPECT_GT(symbols[0].score, 0.0);

  // max_age (7 days) later the tag is still good; a day after that it has expired.
  clock.advance(std::chrono::hours(24 * 7));
  EXPECT_TRUE(run_check(*check, bounce(tagged)).empty());
  clock.advance(std::chrono::hours(24));
  EXPECT_EQ(detail_of(run_check(*check, bounce(tagged))), "expired BATV tag");
}

TEST(BackscatterCheck, OnlyBouncesAndNeverPostmasterOrAbuse) {
  FakeClock clock;
  Env env;
  env.clock = &clock;
  auto check = make_backscatter_check(batv_config(), env);
  ASSERT_NE(check, nullptr);
  // Not a bounce.
  EXPECT_TRUE(run_check(*check, bounce("bob@example.org", "alice@example.net")).empty());
  // No recipient yet.
  EXPECT_TRUE(run_check(*check, bounce("")).empty());
  // Double bounces and reports to postmaster@ and abuse@ are legitimate and untagged.
  EXPECT_TRUE(run_check(*check, bounce("postmaster@example.org")).empty());
  EXPECT_TRUE(run_check(*check, bounce("PostMaster@example.org")).empty());
  EXPECT_TRUE(run_check(*check, bounce("abuse@example.org")).empty());
  EXPECT_TRUE(run_check(*check, bounce("postmaster")).empty());
  // An authenticated user's own null-sender mail (a read receipt) goes out, not in.
  Transaction mdn = bounce("someone@example.net");
  mdn.sasl_username = "bob";
  EXPECT_TRUE(run_check(*check, mdn).empty());
  // But postmaster-lookalikes are not exempt.
  EXPECT_EQ(detail_of(run_check(*check, bounce("postmaster2@example.org"))),
            "bounce to untagged address");
}

// Through the Engine (registry checks, real decide()): enforce makes it a standalone refusal.
Verdict evaluate(const Config& config, const Transaction& tx, FakeClock& clock) {
  Metrics metrics;
  Env env;
  env.clock = &clock;
  env.metrics = &metrics;
  auto shared = std::make_shared<const Config>(config);
  Engine engine(shared, env, make_checks(*shared, env));
  return test::run_sync(engine.evaluate(tx));
}

TEST(BackscatterCheck, EngineRefusesWithEnforceAndOnlyScoresWithout) {
  FakeClock clock;
  Config enforce = batv_config(true);
  Verdict refused = evaluate(enforce, bounce("bob@example.org"), clock);
  EXPECT_EQ(refused.action, Action::reject);
  EXPECT_EQ(refused.applied, Action::reject);
  EXPECT_EQ(refused.standalone, Standalone::backscatter);
  std::string policy = format_policy_reply(refused, Stage::rcpt);
  EXPECT_NE(policy.find("REJECT"), std::string::npos) << policy;
  std::string milter_out;
  ASSERT_TRUE(append_refusal(refused, Stage::rcpt, milter_out));
  EXPECT_NE(milter_out.find("550 5.7.1"), std::string::npos);

  // A bounce to a correctly tagged address passes, enforce or not.
  std::string tagged =
      batv_sign("bob@example.org", enforce.batv.keys, clock.now(), enforce.batv.max_age);
  Verdict passed = evaluate(enforce, bounce(tagged), clock);
  EXPECT_EQ(passed.action, Action::accept);
  for (const auto& s : passed.symbols) EXPECT_NE(s.name, "BACKSCATTER");

  // Without enforce: the symbol scores, but alone it refuses nothing.
  Config score_only = batv_config(false);
  Verdict scored = evaluate(score_only, bounce("bob@example.org"), clock);
  EXPECT_NE(scored.action, Action::reject);
  EXPECT_EQ(scored.standalone, Standalone::none);
  bool has = false;
  for (const auto& s : scored.symbols) has = has || s.name == "BACKSCATTER";
  EXPECT_TRUE(has);
  EXPECT_GT(scored.score, 0.0);

  // Without keys there is no check at all.
  Config no_keys;
  no_keys.network.trusted.clear();
  Verdict plain = evaluate(no_keys, bounce("bob@example.org"), clock);
  for (const auto& s : plain.symbols) EXPECT_NE(s.name, "BACKSCATTER");
}

}  // namespace
