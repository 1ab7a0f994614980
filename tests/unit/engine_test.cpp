// Engine and decision rules (DESIGN §1, §3.5).
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <stdexcept>

#include "bayes/bayes.h"
#include "core/config.h"
#include "engine/engine.h"
#include "mail/message.h"
#include "state/store.h"

using namespace spamward;
namespace asio = boost::asio;

namespace {

Symbol sym(std::string name, double score, Family family, std::string detail = "") {
  Symbol s;
  s.name = std::move(name);
  s.score = score;
  s.family = family;
  s.detail = std::move(detail);
  return s;
}

// A check whose behaviour the test sets: its symbols, a delay, or an exception.
class ScriptedCheck : public Check {
 public:
  ScriptedCheck(std::string name, Stage stage, std::vector<Symbol> symbols, int* runs = nullptr)
      : name_(std::move(name)), stage_(stage), symbols_(std::move(symbols)), runs_(runs) {}
  std::string_view name() const override { return name_; }
  Stage stage() const override { return stage_; }
  Family family() const override { return symbols_.empty() ? Family::rfc : symbols_[0].family; }
  bool can_only_lower() const override { return lowers_; }
  asio::awaitable<std::vector<Symbol>> run(const Transaction&) override {
    if (runs_) ++*runs_;
    if (delay_.count() > 0) {
      auto ex = co_await asio::this_coro::executor;
      asio::steady_timer timer(ex, delay_);
      auto wait = timer.async_wait(asio::use_awaitable);
      co_await std::move(wait);
    }
    if (throws_) throw std::runtime_error("boom");
    co_return symbols_;
  }
  ScriptedCheck& delay(std::chrono::milliseconds d) {
    delay_ = d;
    return *this;
  }
  ScriptedCheck& throws() {
    throws_ = true;
    return *this;
  }
  ScriptedCheck& lowers() {
    lowers_ = true;
    return *this;
  }

 private:
  std::string name_;
  Stage stage_;
  std::vector<Symbol> symbols_;
  int* runs_;
  std::chrono::milliseconds delay_{0};
  bool throws_ = false;
  bool lowers_ = false;
};

Config test_config() {
  Config c;
  c.network.trusted.clear();
  c.engine.stage_deadline = std::chrono::milliseconds(200);
  return c;
}

Transaction rcpt_tx(const char* ip = "192.0.2.1", const char* rcpt = "bob@example.org") {
  Transaction tx;
  tx.id = "T1";
  tx.stage = Stage::rcpt;
  tx.client_address = IpAddress::parse(ip);
  tx.helo = "mx.example.net";
  tx.sender = "alice@example.net";
  tx.recipient = rcpt;
  tx.recipients = {rcpt};
  return tx;
}

struct Harness {
  Metrics metrics;
  FakeClock clock;
  Env env{&clock, nullptr, nullptr, &metrics, {}};
  std::vector<std::unique_ptr<Check>> checks;
  Config config = test_config();

  ScriptedCheck& add(std::string name, Stage stage, std::vector<Symbol> symbols,
                     int* runs = nullptr) {
    auto c = std::make_unique<ScriptedCheck>(std::move(name), stage, std::move(symbols), runs);
    auto& ref = *c;
    checks.push_back(std::move(c));
    return ref;
  }
  std::shared_ptr<Engine> engine() {
    return std::make_shared<Engine>(std::make_shared<const Config>(config), env, std::move(checks));
  }
};

Verdict evaluate(Engine& engine, const Transaction& tx, EvaluationState* state = nullptr) {
  asio::io_context io;
  Verdict out;
  EvaluationState local;
  EvaluationState& st = state ? *state : local;
  // Stops the loop as soon as the verdict is there: a check that missed the deadline may
  // still be sleeping, and the caller must not wait for it.
  auto body = [&]() -> asio::awaitable<void> {
    auto evaluation = engine.evaluate(tx, st);
    out = co_await std::move(evaluation);
    io.stop();
  };
  auto task = body();
  asio::co_spawn(io, std::move(task), [](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
  });
  io.run();
  return out;
}

}  // namespace

TEST(Decide, AcceptsBelowThresholds) {
  Config c = test_config();
  auto v = decide(c, {sym("RDNS_NONE", 1.0, Family::rfc)}, {});
  EXPECT_EQ(v.action, Action::accept);
  EXPECT_DOUBLE_EQ(v.score, 1.0);
  EXPECT_EQ(v.applied, Action::accept);
}

TEST(Decide, RejectNeedsTwoFamiliesEachAddingOnePoint) {
  Config c = test_config();
  // 16 points from one family: tagged, not rejected.
  auto one = decide(c, {sym("RBL_A", 10, Family::dnsbl), sym("RBL_B", 6, Family::dnsbl)}, {});
  EXPECT_EQ(one.action, Action::tag);
  EXPECT_EQ(one.families.size(), 1u);
  // A second family that adds only 0.9 does not count.
  auto weak =
      decide(c, {sym("RBL_A", 15, Family::dnsbl), sym("HELO_NOT_FQDN", 0.9, Family::rfc)}, {});
  EXPECT_EQ(weak.action, Action::tag);
  // Two families each >= 1.0 and score >= reject: reject.
  auto two = decide(c, {sym("RBL_A", 14, Family::dnsbl), sym("RDNS_NONE", 1.0, Family::rfc)}, {});
  EXPECT_EQ(two.action, Action::reject);
  EXPECT_EQ(two.standalone, Standalone::none);
  EXPECT_EQ(two.families.size(), 2u);
  // A family whose symbols net below 1.0 does not count even if one symbol is above.
  auto net = decide(
      c, {sym("RBL_A", 15, Family::dnsbl), sym("X", 2, Family::rfc), sym("Y", -1.5, Family::rfc)},
      {});
  EXPECT_EQ(net.action, Action::tag);
  // reject_min_families = 1 lets one family reject.
  c.actions.reject_min_families = 1;
  EXPECT_EQ(decide(c, {sym("RBL_A", 16, Family::dnsbl)}, {}).action, Action::reject);
}

TEST(Decide, AdminFamilyIsNotEvidence) {
  Config c = test_config();
  auto v = decide(c, {sym("RBL_A", 14, Family::dnsbl), sym("OTHER_ADMIN", 5, Family::admin)}, {});
  EXPECT_EQ(v.action, Action::tag);
}

TEST(Decide, GreylistsOnlyWhenTheGateApplies) {
  Config c = test_config();
  std::vector<Symbol> s = {sym("RDNS_NONE", 3.5, Family::rfc)};
  EXPECT_EQ(decide(c, s, {}).action, Action::accept);
  DecisionFacts gate;
  gate.greylist_applies = true;
  EXPECT_EQ(decide(c, s, gate).action, Action::greylist);
  // Past reject without enough families, a greylist gate still defers rather than tags.
  EXPECT_EQ(decide(c, {sym("RBL_A", 20, Family::dnsbl)}, gate).action, Action::greylist);
}

TEST(Decide, StandaloneRefusals) {
  Config c = test_config();
  auto deny = decide(c, {sym("DENYLIST", 20, Family::admin, "192.0.2.0/24")}, {});
  EXPECT_EQ(deny.action, Action::reject);
  EXPECT_EQ(deny.standalone, Standalone::denylist);
  EXPECT_NE(deny.reason.find("192.0.2.0/24"), std::string::npos);

  Symbol ban = sym("REPUTATION_BANNED", 0, Family::behaviour);
  auto temp = decide(c, {ban}, {});
  EXPECT_EQ(temp.action, Action::tempfail);
  EXPECT_EQ(temp.standalone, Standalone::ban);
  ban.permanent = true;
  auto perm = decide(c, {ban}, {});
  EXPECT_EQ(perm.action, Action::reject);
  EXPECT_TRUE(perm.permanent_ban);

  auto unknown = decide(c, {sym("RCPT_UNKNOWN", 0, Family::behaviour)}, {});
  EXPECT_EQ(unknown.action, Action::reject);
  EXPECT_EQ(unknown.standalone, Standalone::unknown_recipient);
  EXPECT_EQ(decide(c, {sym("GTUBE", 1000, Family::admin)}, {}).standalone, Standalone::gtube);

  // BACKSCATTER refuses alone only when [batv] enforce is on.
  auto bs = decide(c, {sym("BACKSCATTER", 5, Family::behaviour)}, {});
  EXPECT_EQ(bs.action, Action::accept);
  c.batv.enforce = true;
  EXPECT_EQ(decide(c, {sym("BACKSCATTER", 5, Family::behaviour)}, {}).standalone,
            Standalone::backscatter);
}

TEST(Decide, NoOtherSymbolRefusesAlone) {
  Config c = test_config();
  for (const auto& info : known_symbols()) {
    std::string n(info.name);
    if (n == "DENYLIST" || n == "REPUTATION_BANNED" || n == "RCPT_UNKNOWN" || n == "GTUBE" ||
        n == "BACKSCATTER") {
      continue;
    }
    auto v = decide(c, {sym(n, 1000, info.family)}, {});
    EXPECT_NE(v.action, Action::reject) << n;
    EXPECT_EQ(v.standalone, Standalone::none) << n;
  }
}

TEST(Decide, AllowListBeatsDenyAndScore) {
  Config c = test_config();
  auto v =
      decide(c,
             {sym("ALLOWLIST", -20, Family::admin, "192.0.2.1"), sym("DENYLIST", 20, Family::admin),
              sym("RBL_A", 30, Family::dnsbl), sym("RDNS_NONE", 5, Family::rfc)},
             {});
  EXPECT_EQ(v.action, Action::accept);
}

TEST(Decide, ExemptRecipientsAreOnlyRefusedByABan) {
  Config c = test_config();
  DecisionFacts exempt;
  exempt.exempt = true;
  auto spam =
      decide(c, {sym("RBL_A", 14, Family::dnsbl), sym("RDNS_NONE", 3, Family::rfc)}, exempt);
  EXPECT_EQ(spam.action, Action::tag);
  auto deny = decide(c, {sym("DENYLIST", 20, Family::admin)}, exempt);
  EXPECT_EQ(deny.action, Action::tag);
  auto ban = decide(c, {sym("REPUTATION_BANNED", 0, Family::behaviour)}, exempt);
  EXPECT_EQ(ban.action, Action::tempfail);
}

TEST(Decide, FailedLoweringCheckCapsAtTempfail) {
  Config c = test_config();
  DecisionFacts f;
  f.failed_lowering = true;
  auto v = decide(c, {sym("RBL_A", 14, Family::dnsbl), sym("RDNS_NONE", 3, Family::rfc)}, f);
  EXPECT_EQ(v.action, Action::tempfail);
  auto deny = decide(c, {sym("DENYLIST", 20, Family::admin)}, f);
  EXPECT_EQ(deny.action, Action::tempfail);
}

TEST(Decide, DryRunDecidesButNeverRefuses) {
  Config c = test_config();
  c.actions.dry_run = true;
  auto v = decide(c, {sym("RBL_A", 14, Family::dnsbl), sym("RDNS_NONE", 3, Family::rfc)}, {});
  EXPECT_EQ(v.action, Action::reject);
  EXPECT_TRUE(v.dry_run);
  EXPECT_EQ(v.applied, Action::tag);
  auto deny = decide(c, {sym("DENYLIST", 20, Family::admin)}, {});
  EXPECT_EQ(deny.action, Action::reject);
  EXPECT_NE(deny.applied, Action::reject);
  EXPECT_NE(deny.applied, Action::tempfail);
}

TEST(Decide, ScoreOverrides) {
  Config c = test_config();
  c.scores["RDNS_NONE"] = 7.5;
  std::vector<Symbol> s = {sym("RDNS_NONE", 1.0, Family::rfc),
                           sym("HELO_NOT_FQDN", 0.5, Family::rfc)};
  apply_score_overrides(c, s);
  EXPECT_DOUBLE_EQ(s[0].score, 7.5);
  EXPECT_DOUBLE_EQ(s[1].score, 0.5);
  EXPECT_EQ(decide(c, s, {}).action, Action::tag);
}

// Symbols scored by confidence (BAYES_*): an override sets the full score, each message keeps
// its fraction of it.
TEST(Decide, OverrideOfAScaledSymbolKeepsItsFraction) {
  Config c = test_config();
  c.scores["BAYES_SPAM"] = 5.0;
  Symbol half = sym("BAYES_SPAM", 3.5, Family::content);
  half.scale = 0.5;
  Symbol full = sym("BAYES_SPAM", 7.0, Family::content);
  full.scale = 1.0;
  std::vector<Symbol> s = {half, full};
  apply_score_overrides(c, s);
  EXPECT_DOUBLE_EQ(s[0].score, 2.5);
  EXPECT_DOUBLE_EQ(s[1].score, 5.0);
}

TEST(Exempt, Patterns) {
  std::vector<std::string> p = {"postmaster@*", "abuse@*", "*@vip.example"};
  EXPECT_TRUE(matches_exempt(p, "Postmaster@Example.org"));
  EXPECT_TRUE(matches_exempt(p, "abuse@x.y"));
  EXPECT_TRUE(matches_exempt(p, "anyone@VIP.example"));
  EXPECT_FALSE(matches_exempt(p, "postmasterx@example.org"));
  EXPECT_FALSE(matches_exempt(p, "bob@example.org"));
  EXPECT_FALSE(matches_exempt(p, ""));
}

TEST(Engine, SumsChecksOfTheStage) {
  Harness h;
  h.add("dnsbl", Stage::connect, {sym("RBL_A", 10, Family::dnsbl)});
  h.add("rdns", Stage::connect, {sym("RDNS_NONE", 5, Family::rfc)});
  h.add("content", Stage::eom, {sym("BAYES_SPAM", 5, Family::content)});  // not due at rcpt
  auto engine = h.engine();
  auto v = evaluate(*engine, rcpt_tx());
  EXPECT_EQ(v.action, Action::reject);
  EXPECT_DOUBLE_EQ(v.score, 15.0);
  EXPECT_EQ(v.symbols.size(), 2u);
  EXPECT_EQ(h.metrics.value("spamward_decisions_total", {{"action", "reject"}}), 1);
  EXPECT_EQ(h.metrics.value("spamward_symbol_hits_total", {{"symbol", "RBL_A"}}), 1);
  EXPECT_EQ(h.metrics.histogram_count("spamward_stage_seconds", {{"stage", "rcpt"}}), 1);
}

TEST(Engine, RunsChecksConcurrentlyUnderOneDeadline) {
  Harness h;
  h.config.engine.stage_deadline = std::chrono::milliseconds(1000);
  for (int i = 0; i < 5; ++i) {
    h.add("slow" + std::to_string(i), Stage::connect,
          {sym("S" + std::to_string(i), 1, Family::rfc)})
        .delay(std::chrono::milliseconds(150));
  }
  auto engine = h.engine();
  auto start = std::chrono::steady_clock::now();
  auto v = evaluate(*engine, rcpt_tx());
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(v.symbols.size(), 5u);
  // Sequential would take 750 ms; concurrent takes ~150 ms. (A bound, not a timing claim.)
  EXPECT_LT(took, std::chrono::milliseconds(700));
}

TEST(Engine, CheckThatThrowsOrTimesOutFailsOpen) {
  Harness h;
  h.config.engine.stage_deadline = std::chrono::milliseconds(100);
  h.add("good", Stage::connect, {sym("RDNS_NONE", 1, Family::rfc)});
  h.add("thrower", Stage::connect, {sym("RBL_A", 50, Family::dnsbl)}).throws();
  h.add("sleeper", Stage::connect, {sym("RBL_B", 50, Family::dnsbl)})
      .delay(std::chrono::seconds(5));
  auto engine = h.engine();
  auto start = std::chrono::steady_clock::now();
  auto v = evaluate(*engine, rcpt_tx());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));  // did not wait 5 s
  EXPECT_EQ(v.action, Action::accept);
  EXPECT_DOUBLE_EQ(v.score, 1.0);
  ASSERT_EQ(v.failed_checks.size(), 2u);
  EXPECT_EQ(h.metrics.value("spamward_failopen_total", {{"check", "thrower"}}), 1);
  EXPECT_EQ(h.metrics.value("spamward_failopen_total", {{"check", "sleeper"}}), 1);
}

TEST(Engine, FailedAllowListCapsAtTempfail) {
  Harness h;
  h.add("dnsbl", Stage::connect, {sym("RBL_A", 14, Family::dnsbl)});
  h.add("rdns", Stage::connect, {sym("RDNS_NONE", 3, Family::rfc)});
  h.add("allowlist", Stage::connect, {}).lowers().throws();
  auto engine = h.engine();
  auto v = evaluate(*engine, rcpt_tx());
  EXPECT_EQ(v.action, Action::tempfail);
}

TEST(Engine, TrustedClientsAreNeverChecked) {
  Harness h;
  h.config.network.trusted = {*Prefix::parse("192.0.2.0/24")};
  int runs = 0;
  h.add("deny", Stage::connect, {sym("DENYLIST", 20, Family::admin)}, &runs);
  auto engine = h.engine();
  auto v = evaluate(*engine, rcpt_tx("192.0.2.9"));
  EXPECT_EQ(v.action, Action::accept);
  EXPECT_TRUE(v.trusted);
  EXPECT_EQ(runs, 0);
  auto outside = evaluate(*engine, rcpt_tx("198.51.100.9"));
  EXPECT_EQ(outside.action, Action::reject);
  EXPECT_EQ(runs, 1);
}

TEST(Engine, ExemptRecipientFromConfig) {
  Harness h;
  h.add("deny", Stage::connect, {sym("DENYLIST", 20, Family::admin)});
  auto engine = h.engine();
  auto exempt = evaluate(*engine, rcpt_tx("192.0.2.1", "postmaster@example.org"));
  EXPECT_LT(exempt.action, Action::greylist);  // tagged at most, never refused
  EXPECT_EQ(evaluate(*engine, rcpt_tx("192.0.2.1", "bob@example.org")).action, Action::reject);
}

TEST(Engine, RunsEachCheckOncePerTransactionExceptRcptChecks) {
  Harness h;
  int connect_runs = 0, rcpt_runs = 0;
  h.add("conn", Stage::connect, {sym("RDNS_NONE", 1, Family::rfc)}, &connect_runs);
  h.add("rcpt", Stage::rcpt, {sym("RCPT_CHECK", 1, Family::behaviour)}, &rcpt_runs);
  auto engine = h.engine();
  EvaluationState state;
  Transaction tx = rcpt_tx();
  tx.stage = Stage::connect;
  evaluate(*engine, tx, &state);
  tx.stage = Stage::rcpt;
  auto first = evaluate(*engine, tx, &state);
  evaluate(*engine, tx, &state);
  EXPECT_EQ(connect_runs, 1);
  EXPECT_EQ(rcpt_runs, 2);
  EXPECT_DOUBLE_EQ(first.score, 2.0);
  tx.stage = Stage::data;
  tx.recipient.clear();
  auto data = evaluate(*engine, tx, &state);
  EXPECT_EQ(rcpt_runs, 3);  // once more for the whole message
  EXPECT_DOUBLE_EQ(data.score, 2.0);
  tx.stage = Stage::eom;
  evaluate(*engine, tx, &state);
  EXPECT_EQ(rcpt_runs, 3);
  EXPECT_EQ(connect_runs, 1);
}

TEST(Engine, ScoreOverridesApply) {
  Harness h;
  h.config.scores["RDNS_NONE"] = 8.0;
  h.add("rdns", Stage::connect, {sym("RDNS_NONE", 1, Family::rfc)});
  auto engine = h.engine();
  auto v = evaluate(*engine, rcpt_tx());
  EXPECT_DOUBLE_EQ(v.score, 8.0);
  EXPECT_EQ(v.action, Action::tag);
}

namespace {
// Publishes an SPF pass for the sender's domain, as the SPF check does.
class PublishingCheck : public ScriptedCheck {
 public:
  PublishingCheck() : ScriptedCheck("spf", Stage::mail, {sym("SPF_PASS", 0, Family::auth)}) {}
  void publish(const std::vector<Symbol>&, Transaction& tx) const override {
    tx.spf_pass_domain = "example.net";
  }
};
// Emits a symbol only when an earlier check published the SPF pass.
class ReadingCheck : public Check {
 public:
  std::string_view name() const override { return "reader"; }
  Stage stage() const override { return Stage::rcpt; }
  Family family() const override { return Family::admin; }
  asio::awaitable<std::vector<Symbol>> run(const Transaction& tx) override {
    std::vector<Symbol> out;
    if (tx.spf_pass_domain == "example.net") out.push_back(sym("SAW_SPF", 1, Family::auth));
    co_return out;
  }
};
}  // namespace

TEST(Engine, LaterStagesSeePublishedFactsInOneEvaluation) {
  Harness h;
  h.checks.push_back(std::make_unique<ReadingCheck>());  // registered first on purpose
  h.checks.push_back(std::make_unique<PublishingCheck>());
  auto engine = h.engine();
  EvaluationState state;
  auto v = evaluate(*engine, rcpt_tx(), &state);
  bool saw = false;
  for (const auto& s : v.symbols) saw |= s.name == "SAW_SPF";
  EXPECT_TRUE(saw);
  EXPECT_EQ(state.spf_pass_domain, "example.net");
}

namespace {
// Publishes a DKIM pass at eom, after a delay (a key lookup), as the DKIM check does.
class DkimLikeCheck : public ScriptedCheck {
 public:
  DkimLikeCheck() : ScriptedCheck("dkim", Stage::eom, {sym("DKIM_VALID", 0, Family::auth)}) {
    delay(std::chrono::milliseconds(20));
  }
  void publish(const std::vector<Symbol>&, Transaction& tx) const override {
    tx.dkim_valid_domains = {"example.net"};
  }
};
// An eom check that reads what the DKIM check publishes (like allowlist_sender_dkim).
class DkimReader : public Check {
 public:
  explicit DkimReader(bool declares) : declares_(declares) {}
  std::string_view name() const override { return "dkim_reader"; }
  Stage stage() const override { return Stage::eom; }
  Family family() const override { return Family::admin; }
  bool reads_published() const override { return declares_; }
  asio::awaitable<std::vector<Symbol>> run(const Transaction& tx) override {
    std::vector<Symbol> out;
    if (!tx.dkim_valid_domains.empty()) out.push_back(sym("SAW_DKIM", 1, Family::auth));
    co_return out;
  }

 private:
  bool declares_;
};
}  // namespace

TEST(Engine, ReaderOfPublishedFactsRunsAfterItsStagesPublishers) {
  for (bool declares : {true, false}) {
    Harness h;
    h.checks.push_back(std::make_unique<DkimReader>(declares));  // registered first on purpose
    h.checks.push_back(std::make_unique<DkimLikeCheck>());
    auto engine = h.engine();
    Transaction tx = rcpt_tx();
    tx.stage = Stage::eom;
    auto v = evaluate(*engine, tx);
    bool saw = false;
    for (const auto& s : v.symbols) saw |= s.name == "SAW_DKIM";
    // Without reads_published the two run concurrently and the reader sees nothing: the
    // declaration is what makes the difference.
    EXPECT_EQ(saw, declares) << "reads_published=" << declares;
  }
}

TEST(Decide, MaxScoreHoldsAgainstOverrides) {
  Config c = test_config();
  c.scores["RDNS_NONE"] = 4.0;
  Symbol v6 = sym("RDNS_NONE", 0.1, Family::rfc);
  v6.max_score = 0.1;
  std::vector<Symbol> s = {v6, sym("RDNS_NONE", 1.0, Family::rfc)};
  apply_score_overrides(c, s);
  EXPECT_DOUBLE_EQ(s[0].score, 0.1);
  EXPECT_DOUBLE_EQ(s[1].score, 4.0);
}

// DESIGN §3.7: one decision per message. A protocol's intermediate stages are not decisions
// unless they refuse; the milter's CONNECT and HELO evaluations never are.
TEST(Engine, OnlyReportedVerdictsAreLoggedAndCountedAsDecisions) {
  Harness h;
  h.add("dnsbl", Stage::connect, {sym("RBL_A", 2, Family::dnsbl)});
  auto engine = h.engine();
  auto decisions = [&] {
    double n = 0;
    for (const char* a : {"accept", "tag", "greylist", "tempfail", "reject"})
      n += h.metrics.value("spamward_decisions_total", {{"action", a}});
    return n;
  };
  Transaction tx = rcpt_tx();
  tx.report = Transaction::Report::never;
  evaluate(*engine, tx);
  EXPECT_EQ(decisions(), 0);
  tx.report = Transaction::Report::refusals;  // accepted at RCPT: not a decision
  evaluate(*engine, tx);
  EXPECT_EQ(decisions(), 0);
  tx.report = Transaction::Report::always;
  evaluate(*engine, tx);
  EXPECT_EQ(decisions(), 1);
}

TEST(Engine, IntermediateRefusalIsADecision) {
  Harness h;
  h.add("dnsbl", Stage::connect, {sym("RBL_A", 10, Family::dnsbl)});
  h.add("rdns", Stage::connect, {sym("RDNS_NONE", 6, Family::rfc)});
  auto engine = h.engine();
  Transaction tx = rcpt_tx();
  tx.report = Transaction::Report::refusals;
  auto v = evaluate(*engine, tx);
  EXPECT_EQ(v.action, Action::reject);
  EXPECT_EQ(h.metrics.value("spamward_decisions_total", {{"action", "reject"}}), 1);
}

// Autolearning through the Engine (bayes/bayes.h): a sure spam verdict at end of message is
// learned as spam, a clearly negative one as ham; never in a read-only evaluation, never
// before end of message, never when [bayes] autolearn is off.
TEST(Engine, AutolearnsSureVerdictsAtEndOfMessage) {
  auto message_tx = [](const std::string& subject) {
    Transaction tx = rcpt_tx();
    tx.stage = Stage::eom;
    tx.recipient.clear();
    tx.message = std::make_shared<const Message>(
        parse_message("From: a@example.net\r\nSubject: " + subject + "\r\n\r\nbody\r\n"));
    return tx;
  };
  Harness h;
  std::unique_ptr<Store> store = make_memory_store(h.clock);
  Bayes bayes(*store, h.clock, BayesOptions{});
  h.env.bayes = &bayes;
  h.add("dnsbl", Stage::eom, {sym("RBL_A", 10, Family::dnsbl)});
  h.add("rdns", Stage::eom, {sym("RDNS_NONE", 6, Family::rfc)});
  auto engine = h.engine();
  auto v = evaluate(*engine, message_tx("one"));
  EXPECT_EQ(v.action, Action::reject);
  EXPECT_EQ(bayes.totals().spam, 1u);
  EXPECT_EQ(h.metrics.value("spamward_bayes_autolearned_total", {{"class", "spam"}}), 1);
  // The same message again: already learned, not counted twice.
  evaluate(*engine, message_tx("one"));
  EXPECT_EQ(bayes.totals().spam, 1u);
  // Read-only (the HTTP check API): nothing learned.
  EvaluationState read_only;
  read_only.read_only = true;
  evaluate(*engine, message_tx("two"), &read_only);
  EXPECT_EQ(bayes.totals().spam, 1u);
  // Before end of message there is nothing to learn.
  Transaction at_rcpt = message_tx("three");
  at_rcpt.stage = Stage::rcpt;
  evaluate(*engine, at_rcpt);
  EXPECT_EQ(bayes.totals().spam, 1u);

  // A clearly negative verdict is ham; with autolearn off nothing is learned.
  Harness g;
  g.env.bayes = &bayes;
  g.add("dnswl", Stage::eom, {sym("DNSWL_A", -2, Family::dnsbl)});
  auto allow = g.engine();
  evaluate(*allow, message_tx("four"));
  EXPECT_EQ(bayes.totals().ham, 1u);
  Harness off;
  off.env.bayes = &bayes;
  off.config.bayes.autolearn = false;
  off.add("dnswl", Stage::eom, {sym("DNSWL_A", -2, Family::dnsbl)});
  auto quiet = off.engine();
  evaluate(*quiet, message_tx("five"));
  EXPECT_EQ(bayes.totals().ham, 1u);
}
