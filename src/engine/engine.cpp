#include "engine/engine.h"

#include <spdlog/spdlog.h>
#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>

#include "bayes/bayes.h"
#include "core/duration.h"
#include "engine/decision_log.h"

namespace spamward {

namespace asio = boost::asio;

namespace {

// Shared between evaluate() and the check coroutines it spawns. A check that misses the
// deadline runs on until its own timeouts end it (every DNS query has one); it holds this
// (and its Check and Transaction) by shared_ptr, so nothing it touches dies under it, and
// its late result is simply dropped. (Per-task cancellation signals were tried: a signal
// must outlive the spawned thread's slot, which Asio 1.81 clears after the frame is gone.)
struct StageRun {
  explicit StageRun(asio::any_io_executor ex, size_t n) : timer(ex), results(n), errors(n) {}
  asio::steady_timer timer;
  size_t pending = 0;
  std::vector<std::optional<std::vector<Symbol>>> results;
  std::vector<std::string> errors;  // non-empty: the check threw
};

void describe_metrics(Metrics& m) {
  m.describe("spamward_decisions_total", Metrics::Type::counter,
             "Decisions by action (the decided action, also in dry-run mode)");
  m.describe("spamward_symbol_hits_total", Metrics::Type::counter, "Symbols emitted, by name");
  m.describe("spamward_stage_seconds", Metrics::Type::histogram, "Time to evaluate one stage");
  m.describe("spamward_check_seconds", Metrics::Type::histogram, "Time one check took");
  m.describe("spamward_failopen_total", Metrics::Type::counter,
             "Checks that threw or missed the stage deadline and added nothing");
  m.describe("spamward_bayes_autolearned_total", Metrics::Type::counter,
             "Messages the Bayes classifier learned on its own from sure verdicts, by class");
}

bool has_symbol(const std::vector<Symbol>& symbols, std::string_view name) {
  return std::any_of(symbols.begin(), symbols.end(),
                     [&](const Symbol& s) { return s.name == name; });
}

// True when the results so far (this group's synchronous answers and earlier ones) hold a ban
// and no allow-list entry, which the rules of decide() put above a ban.
bool ban_decides(const std::vector<std::optional<std::vector<Symbol>>>& group_results,
                 const EvaluationState& state) {
  bool banned = false, allowed = false;
  auto look = [&](const std::vector<Symbol>& symbols) {
    banned = banned || has_symbol(symbols, "REPUTATION_BANNED");
    allowed = allowed || has_symbol(symbols, "ALLOWLIST");
  };
  for (const auto& r : group_results)
    if (r) look(*r);
  for (const auto& [name, symbols] : state.results) look(symbols);
  return banned && !allowed;
}

asio::awaitable<void> run_check(std::shared_ptr<Check> check, std::shared_ptr<const Transaction> tx,
                                std::shared_ptr<StageRun> run, size_t index,
                                Metrics::HistogramHandle latency) {
  auto started = std::chrono::steady_clock::now();
  try {
    auto pending_run = check->run(*tx);  // named first: GCC PR 100611
    auto symbols = co_await std::move(pending_run);
    run->results[index] = std::move(symbols);
  } catch (const std::exception& e) {
    run->errors[index] = e.what();
  } catch (...) {
    run->errors[index] = "unknown exception";
  }
  std::chrono::duration<double> took = std::chrono::steady_clock::now() - started;
  latency.observe(took.count());
  if (--run->pending == 0) run->timer.cancel();
}

}  // namespace

Engine::Engine(std::shared_ptr<const Config> config, Env env,
               std::vector<std::unique_ptr<Check>> checks)
    : config_(std::move(config)), env_(env) {
  for (auto& c : checks) checks_.push_back(std::shared_ptr<Check>(std::move(c)));
  greylist_ = std::make_unique<GreylistGate>(*config_, env_, load_greylist_compat(*config_));
  if (env_.store && env_.clock)
    sent_ = std::make_unique<SentMessages>(*env_.store, *env_.clock, config_->batv.max_age);
  if (Metrics* m = env_.metrics) {
    describe_metrics(*m);
    // Series resolved once: the hot path must not build label strings per request.
    for (const auto& c : checks_) {
      std::string name(c->name());
      check_latency_.push_back(m->histogram("spamward_check_seconds", {{"check", name}}));
      check_failopen_.push_back(m->counter("spamward_failopen_total", {{"check", name}}));
    }
    for (Stage st :
         {Stage::connect, Stage::helo, Stage::mail, Stage::rcpt, Stage::data, Stage::eom}) {
      stage_latency_.push_back(
          m->histogram("spamward_stage_seconds", {{"stage", std::string(to_string(st))}}));
    }
    for (Action a :
         {Action::accept, Action::tag, Action::greylist, Action::tempfail, Action::reject}) {
      decisions_.push_back(
          m->counter("spamward_decisions_total", {{"action", std::string(to_string(a))}}));
    }
    greylist_failopen_ = m->counter("spamward_failopen_total", {{"check", "greylist"}});
    for (const char* cls : {"spam", "ham"})
      autolearned_.push_back(m->counter("spamward_bayes_autolearned_total", {{"class", cls}}));
  } else {
    autolearned_.resize(2);
    check_latency_.resize(checks_.size());
    check_failopen_.resize(checks_.size());
    stage_latency_.resize(6);
    decisions_.resize(5);
  }
}

Engine::~Engine() = default;

void Engine::record_behaviour(const Transaction& tx, const Verdict& verdict,
                              EvaluationState& state) {
  Reputation* reputation = env_.reputation;
  if (!reputation || env_.read_only || state.read_only || !tx.client_address) return;
  try {
    if (verdict.action == Action::reject && verdict.standalone == Standalone::none &&
        !verdict.dry_run && !state.offence_recorded) {
      // Refused as spam: an offence (DESIGN §1 principle 2). Monitor-only mode never bans.
      state.offence_recorded = true;
      Ban ban = reputation->record_offence(*tx.client_address, OffenceKind::spam,
                                           fmt::format("score {:.2f}", verdict.score));
      spdlog::info("reputation: offence by {} (refused as spam, score {:.2f}); banned for {}",
                   tx.client_address->to_string(), verdict.score, ban_length_text(ban));
      return;
    }
    bool passed_greylisting =
        std::any_of(verdict.symbols.begin(), verdict.symbols.end(), [](const Symbol& s) {
          return s.name == "GREYLIST_PASSED" || s.name == "GREYLIST_AUTO_ALLOWED";
        });
    bool clean = verdict.action == Action::accept && verdict.standalone == Standalone::none &&
                 verdict.score < config_->actions.greylist && tx.stage >= Stage::rcpt &&
                 std::none_of(verdict.symbols.begin(), verdict.symbols.end(),
                              [](const Symbol& s) { return s.name == "ALLOWLIST"; });
    if ((clean || passed_greylisting) && !state.clean_noted) {
      state.clean_noted = true;
      reputation->note_clean(*tx.client_address);
    }
  } catch (const std::exception& e) {
    spdlog::warn("reputation: cannot record for {}: {}", tx.client_address->to_string(), e.what());
  }
}

void Engine::autolearn(const Transaction& tx, const Verdict& verdict,
                       const EvaluationState& state) {
  Bayes* bayes = env_.bayes;
  if (!bayes || !config_->bayes.autolearn || env_.read_only || state.read_only || !tx.message ||
      tx.stage != Stage::eom)
    return;
  auto cls = autolearn_class(verdict.symbols, config_->actions.reject,
                             bayes->options().autolearn_ham_below);
  if (!cls) return;
  try {
    bool learned = false;
    bayes->autolearn(*tx.message, *cls, bayes->namespace_for(tx.recipients), learned);
    if (learned) {
      autolearned_[*cls == MessageClass::spam ? 0 : 1].inc();
      spdlog::debug("bayes: autolearned {} as {} (score {:.2f})", tx.id,
                    *cls == MessageClass::spam ? "spam" : "ham", verdict.score);
    }
  } catch (const std::exception& e) {
    spdlog::warn("bayes: autolearning {} failed: {}", tx.id, e.what());
  }
}

asio::awaitable<Verdict> Engine::evaluate(const Transaction& tx) {
  EvaluationState state;
  auto evaluation = evaluate(tx, state);  // named first: GCC PR 100611
  auto verdict = co_await std::move(evaluation);
  co_return verdict;
}

asio::awaitable<Verdict> Engine::evaluate(const Transaction& tx, EvaluationState& state) {
  const Config& config = *config_;
  auto started = std::chrono::steady_clock::now();
  DecisionFacts facts;

  bool trusted = false;
  if (tx.client_address) {
    for (const auto& p : config.network.trusted) {
      if (p.contains(*tx.client_address)) {
        trusted = true;
        break;
      }
    }
  }

  std::vector<Symbol> symbols;
  if (trusted) {
    facts.trusted = true;
  } else {
    // Which checks are due: once per transaction, except rcpt-stage checks, which run for
    // every recipient and then once more for the whole message (no current recipient), so
    // that the last recipient's answer is not taken for the message's.
    std::vector<size_t> due;
    for (size_t i = 0; i < checks_.size(); ++i) {
      const Check& c = *checks_[i];
      if (c.stage() > tx.stage) continue;
      bool again = false;
      if (c.stage() == Stage::rcpt && tx.stage == Stage::rcpt) again = true;
      if (c.stage() == Stage::rcpt && tx.stage > Stage::rcpt &&
          !state.message_level.contains(c.name())) {
        again = true;
        state.message_level.emplace(c.name());
      }
      if (again || !state.results.contains(c.name())) due.push_back(i);
    }
    if (state.ban_decided) due.clear();  // an earlier stage met the ban: nothing more to ask
    // Groups run in stage order; within a stage, the checks that read what others publish
    // run last (Check::reads_published).
    auto group_of = [&](size_t i) {
      return std::pair(checks_[i]->stage(), checks_[i]->reads_published());
    };
    std::stable_sort(due.begin(), due.end(),
                     [&](size_t a, size_t b) { return group_of(a) < group_of(b); });

    // The working copy the checks see: the MTA's facts plus what earlier checks published
    // (SPF's pass domain, DKIM's valid domains).
    // Shared with the coroutines of async checks; copied before a publish only while a check
    // that missed the deadline still reads it (copy on write).
    auto working = std::make_shared<Transaction>(tx);
    if (working->spf_pass_domain.empty()) working->spf_pass_domain = state.spf_pass_domain;
    if (working->dkim_valid_domains.empty()) working->dkim_valid_domains = state.dkim_valid_domains;
    working->spf_decided = working->spf_decided || state.spf_decided;
    working->dkim_decided = working->dkim_decided || state.dkim_decided;
    working->read_only = working->read_only || env_.read_only || state.read_only;

    // Due checks run in groups by their stage, in stage order, so a check sees the facts of
    // earlier stages even when one request covers several (a policy request at RCPT); each
    // group runs concurrently, and all of them share the one deadline. A stage's checks that
    // read published facts form a group of their own after it.
    auto deadline = std::chrono::steady_clock::now() + config.engine.stage_deadline;
    size_t next = 0;
    while (next < due.size()) {
      auto group_key = group_of(due[next]);
      std::vector<size_t> group;
      for (size_t i : due) {
        if (group_of(i) == group_key) group.push_back(i);
      }
      next += group.size();

      // Synchronous answers first; only checks that must wait get a coroutine, and only
      // then is there a timer to arm.
      std::vector<std::optional<std::vector<Symbol>>> results(group.size());
      std::vector<std::string> errors(group.size());
      std::vector<size_t> waiting;
      for (size_t k = 0; k < group.size(); ++k) {
        Check& c = *checks_[group[k]];
        auto check_started = std::chrono::steady_clock::now();
        try {
          results[k] = c.run_now(*working);
        } catch (const std::exception& e) {
          errors[k] = e.what();
        } catch (...) {
          errors[k] = "unknown exception";
        }
        if (!results[k] && errors[k].empty()) {
          waiting.push_back(k);
        } else {
          std::chrono::duration<double> took = std::chrono::steady_clock::now() - check_started;
          check_latency_[group[k]].observe(took.count());
        }
      }
      // A ban is the first thing a connection meets (issue 4): once the synchronous ban check
      // said so, and no network allow entry outranks it, the checks that would wait (DNS)
      // are not started. An attack from a banned client costs no DNS query.
      if (!waiting.empty() && ban_decides(results, state)) {
        state.ban_decided = true;
        waiting.clear();
      }
      if (!waiting.empty()) {
        auto ex = co_await asio::this_coro::executor;
        auto run = std::make_shared<StageRun>(ex, waiting.size());
        std::shared_ptr<const Transaction> snapshot = working;
        run->pending = waiting.size();
        for (size_t w = 0; w < waiting.size(); ++w) {
          auto task = run_check(checks_[group[waiting[w]]], snapshot, run, w,
                                check_latency_[group[waiting[w]]]);
          asio::co_spawn(ex, std::move(task), asio::detached);
        }
        if (run->pending > 0) {
          run->timer.expires_at(deadline);
          boost::system::error_code ec;
          auto wait = run->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
          co_await std::move(wait);
        }
        for (size_t w = 0; w < waiting.size(); ++w) {
          results[waiting[w]] = std::move(run->results[w]);
          errors[waiting[w]] = std::move(run->errors[w]);
        }
      }
      for (size_t k = 0; k < group.size(); ++k) {
        const Check& c = *checks_[group[k]];
        std::string name(c.name());
        if (results[k]) {
          if (working.use_count() > 1) working = std::make_shared<Transaction>(*working);
          c.publish(*results[k], *working);
          state.results[name] = std::move(*results[k]);
          continue;
        }
        if (errors[k].empty() && state.ban_decided) continue;  // not started: banned
        // Failed open: adds nothing (DESIGN §1). A later stage may try it again.
        std::string why = errors[k].empty() ? "missed the stage deadline" : "failed: " + errors[k];
        spdlog::warn("check {} {} (id={}); failing open", name, why, tx.id);
        check_failopen_[group[k]].inc();
        state.failed.push_back(name);
        if (c.can_only_lower()) state.failed_lowering = true;
        state.results.erase(name);
      }
      if (state.ban_decided) break;
    }
    state.spf_pass_domain = working->spf_pass_domain;
    state.dkim_valid_domains = working->dkim_valid_domains;
    state.spf_decided = working->spf_decided;
    state.dkim_decided = working->dkim_decided;

    // Gather: every check's latest symbols.
    for (const auto& c : checks_) {
      auto it = state.results.find(c->name());
      if (it == state.results.end()) continue;
      symbols.insert(symbols.end(), it->second.begin(), it->second.end());
    }
    apply_score_overrides(config, symbols);

    if (!tx.recipient.empty() && matches_exempt(config.exempt.recipients, tx.recipient))
      facts.exempt = true;
    if (tx.stage > Stage::rcpt) {
      for (const auto& r : tx.recipients) {
        if (matches_exempt(config.exempt.recipients, r)) facts.exempt = true;
      }
    }
    facts.failed_lowering = state.failed_lowering;
    facts.failed_checks = state.failed;
  }

  // Greylisting depends on the score, so it comes after the checks (greylist_gate.h).
  std::string greylist_reply;
  if (!trusted && greylist_ && config.greylist.mode != "off") {
    try {
      Verdict provisional = decide(config, symbols, facts);
      GreylistDecision grey = greylist_->apply(
          tx, tx.spf_pass_domain.empty() ? state.spf_pass_domain : tx.spf_pass_domain, symbols,
          provisional.score, provisional.action >= Action::tempfail, state.greylist,
          state.read_only);
      symbols.insert(symbols.end(), grey.symbols.begin(), grey.symbols.end());
      facts.greylist_applies = grey.defer;
      greylist_reply = std::move(grey.reply_text);
    } catch (const std::exception& e) {
      // Fail open: no greylisting for this transaction (DESIGN §1).
      spdlog::warn("greylisting failed: {} (id={}); failing open", e.what(), tx.id);
      greylist_failopen_.inc();
      facts.failed_checks.push_back("greylist");
    }
  }

  Verdict verdict = decide(config, std::move(symbols), facts);
  if (verdict.action == Action::greylist && !greylist_reply.empty())
    verdict.reply_text = std::move(greylist_reply);
  if (!trusted) record_behaviour(tx, verdict, state);
  if (sent_ && (trusted || tx.authenticated()) && tx.stage == Stage::eom && tx.message &&
      !env_.read_only && !state.read_only) {
    if (const HeaderField* id = tx.message->header("Message-ID")) {
      try {
        sent_->remember(id->value);
      } catch (const std::exception& e) {
        spdlog::warn("cannot remember the Message-ID of {}: {}", tx.id, e.what());
      }
    }
  }

  std::chrono::duration<double> took = std::chrono::steady_clock::now() - started;
  stage_latency_[static_cast<size_t>(tx.stage)].observe(took.count());
  const bool is_decision =
      tx.report == Transaction::Report::always ||
      (tx.report == Transaction::Report::refusals &&
       verdict.action >= (tx.stage < Stage::data ? Action::tempfail : Action::greylist));
  if (is_decision) {
    decisions_[static_cast<size_t>(verdict.action)].inc();
    if (Metrics* m = env_.metrics) {
      for (const auto& s : verdict.symbols)
        m->inc("spamward_symbol_hits_total", {{"symbol", s.name}});
    }
    log_decision(tx, verdict, config.log.format == "json");
    if (!trusted) autolearn(tx, verdict, state);
  }
  co_return verdict;
}

}  // namespace spamward
