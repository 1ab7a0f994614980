// Engine: runs the checks due at a stage concurrently under one deadline, sums their
// symbols, and turns the sum into a Verdict by the rules of DESIGN §1 and §3.5. It is the
// one place where scores become actions; protocol servers only translate its Verdict.
//
// At end of message from an authenticated or trusted client, the message's Message-ID is
// remembered as one we sent (state/sent_messages.h), never in a read-only evaluation.
//
// After the checks, the greylist gate (engine/greylist_gate.h) decides whether the
// transaction is greylisted; after the decision, a refusal as spam is recorded as a reputation
// offence and clean mail is noted for the client's networks (never when Env::read_only; no
// offence in dry-run mode).
//
// Per decision it writes one log line (DESIGN §3.7) and counts
//   spamward_decisions_total{action}, spamward_symbol_hits_total{symbol},
//   spamward_stage_seconds{stage} (histogram), spamward_check_seconds{check} (histogram),
//   spamward_failopen_total{check}.
//
// Threading: evaluate() runs on the caller's executor; the Engine holds no mutable state
// of its own beyond metrics, so one Engine serves every connection. A config reload builds
// a new Engine; in-flight evaluations finish on the old one (held by shared_ptr).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/verdict.h"
#include "engine/check.h"
#include "engine/env.h"
#include "engine/greylist_gate.h"
#include "engine/transaction.h"
#include "state/sent_messages.h"

namespace spamward {

// What a transaction carries across stages (the milter evaluates at several stages; the
// policy server may keep one per Postfix instance). Checks run once per transaction except
// rcpt-stage checks, which run per recipient and once more for the message after RCPT (with
// tx.recipient empty; tx.recipients holds them all).
struct EvaluationState {
  std::map<std::string, std::vector<Symbol>, std::less<>> results;  // by check name
  std::set<std::string, std::less<>> message_level;  // rcpt-stage checks re-run for the message
  // Facts published by checks for later ones (Check::publish), kept across stages.
  std::string spf_pass_domain;
  std::vector<std::string> dkim_valid_domains;
  bool spf_decided = false;
  bool dkim_decided = false;
  std::vector<std::string> failed;  // checks that failed open so far
  bool failed_lowering = false;     // one of them could only have lowered the score
  GreylistProgress greylist;        // triplets attempted, and whether one was deferred
  bool offence_recorded = false;    // a refusal as spam was recorded (once per transaction)
  bool clean_noted = false;         // clean mail was noted for the client's networks
  // The client is banned and no allow entry outranks it: the checks that would wait (DNS)
  // are not started, now or at later stages (the ban check is the first thing a connection
  // meets).
  bool ban_decided = false;
  // Change no state for this evaluation, as Env::read_only does for a whole Engine (the HTTP
  // check API): greylisting only peeks, no offence or clean mail is recorded.
  bool read_only = false;
};

// The decision facts beyond symbols.
struct DecisionFacts {
  bool trusted = false;           // client in [network] trusted
  bool exempt = false;            // a recipient matches [exempt] recipients
  bool failed_lowering = false;   // a can-only-lower check failed open
  bool greylist_applies = false;  // the greylist gate would defer this new triplet
  std::vector<std::string> failed_checks;
};

// Pure rules: symbols (already carrying [scores] overrides) and facts -> Verdict.
Verdict decide(const Config& config, std::vector<Symbol> symbols, const DecisionFacts& facts);

// Applies [scores] overrides to emitted symbols (by name).
void apply_score_overrides(const Config& config, std::vector<Symbol>& symbols);

// True when `recipient` matches one of the [exempt] patterns ("postmaster@*", "*@dom",
// "user@dom"; case-insensitive, '*' matches any run of characters).
bool matches_exempt(const std::vector<std::string>& patterns, std::string_view recipient);

class Engine {
 public:
  // Throws ConfigError when [greylist] compat_list cannot be read or parsed.
  Engine(std::shared_ptr<const Config> config, Env env, std::vector<std::unique_ptr<Check>> checks);
  ~Engine();

  // Runs the checks due at tx.stage and decides. Never throws for a check's failure.
  boost::asio::awaitable<Verdict> evaluate(const Transaction& tx, EvaluationState& state);

  // Same, with a fresh state (one-shot callers: `check`, HTTP, a policy request).
  boost::asio::awaitable<Verdict> evaluate(const Transaction& tx);

  const Config& config() const { return *config_; }
  std::shared_ptr<const Config> config_ptr() const { return config_; }
  const Env& env() const { return env_; }

 private:
  void record_behaviour(const Transaction& tx, const Verdict& verdict, EvaluationState& state);
  // Autolearning (bayes/bayes.h): after an end-of-message decision, teaches Bayes a message
  // the verdict is sure about. Never in read-only evaluations; errors are logged, not thrown.
  void autolearn(const Transaction& tx, const Verdict& verdict, const EvaluationState& state);

  std::shared_ptr<const Config> config_;
  Env env_;
  std::vector<std::shared_ptr<Check>> checks_;
  std::unique_ptr<GreylistGate> greylist_;
  // Message-IDs our own users sent (authenticated or trusted clients), for the bounce-origin
  // check (checks/bounce_origin_check.h). Null without a store.
  std::unique_ptr<SentMessages> sent_;
  Metrics::CounterHandle greylist_failopen_;
  std::vector<Metrics::CounterHandle> autolearned_;  // spam, ham
  // Metric series resolved at construction (indexed like checks_, Stage, Action).
  std::vector<Metrics::HistogramHandle> check_latency_;
  std::vector<Metrics::CounterHandle> check_failopen_;
  std::vector<Metrics::HistogramHandle> stage_latency_;
  std::vector<Metrics::CounterHandle>
      decisions_;  // shared: a check that missed the deadline may outlive a reload
};

}  // namespace spamward
