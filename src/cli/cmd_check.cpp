// `spamward check`: score SMTP facts and messages (files, Maildirs, mboxes, `-`) with the
// configured checks, exactly as the daemon would, without changing any state: the store is
// opened only if it exists, and the checks only read it. With PATHs, every message is scored
// at end of message with the given SMTP facts, one result (a JSON line with --json) each.
#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "bayes/bayes.h"
#include "checks/registry.h"
#include "cli/bayes_explain.h"
#include "cli/cli_support.h"
#include "cli/commands.h"
#include "cli/run_to_completion.h"
#include "core/config.h"
#include "core/log.h"
#include "dns/cares_resolver.h"
#include "engine/engine.h"
#include "engine/verdict_json.h"
#include "mail/message.h"
#include "mail/message_source.h"
#include "state/reputation.h"
#include "state/store.h"

namespace spamward::cli {

namespace {

void print_text(const Verdict& verdict) {
  std::cout << "action: " << to_string(verdict.action) << "\n";
  std::cout << "score:  " << verdict.score << "\n";
  for (const auto& s : verdict.symbols) {
    std::cout << "  " << s.name << " " << s.score << " (" << to_string(s.family) << ")";
    if (!s.detail.empty()) std::cout << " " << s.detail;
    std::cout << "\n";
  }
  std::cout << "reason: " << verdict.reason << "\n";
}

}  // namespace

int cmd_check(const CheckOptions& options) {
  std::shared_ptr<const Config> config;
  try {
    config = std::make_shared<const Config>(load_config(options.config_path));
  } catch (const ConfigError& e) {
    std::cerr << "spamward: config error: " << e.what() << "\n";
    return 2;
  }

  Transaction tx;
  tx.id = "check";
  if (!options.ip.empty()) {
    tx.client_address = IpAddress::parse(options.ip);
    if (!tx.client_address) {
      std::cerr << "spamward: check: --ip " << options.ip << " is not an IP address\n";
      return 2;
    }
  }
  tx.helo = options.helo;
  tx.client_name = options.hostname;
  tx.reverse_client_name = options.hostname;
  tx.sender = options.from;
  tx.recipients = options.rcpt;
  tx.recipient_count = static_cast<int64_t>(options.rcpt.size());
  // Decide as the policy server would at the last RCPT: every SMTP-stage check runs.
  tx.stage = Stage::rcpt;
  if (!options.rcpt.empty()) tx.recipient = options.rcpt.back();

  SystemClock clock;
  std::unique_ptr<Store> store;
  try {
    if (config->store.backend == "redis") {
      store = open_store(config->store, clock, StoreUser::command);
    } else if (std::filesystem::exists(config->store.path)) {
      LmdbOptions lmdb;
      lmdb.path = config->store.path;
      store = open_lmdb_store(lmdb, clock);
    } else {
      store = make_memory_store(clock);  // nothing stored yet: an empty store answers the same
    }
  } catch (const StoreError& e) {
    std::cerr << "spamward: check: cannot open the store: " << e.what() << "\n";
    return 1;
  }

  // The verdict is this command's output; the daemon's decision log line would repeat it.
  decision_logger().set_level(spdlog::level::off);
  Metrics metrics;             // private: `check` reports nothing to the daemon's metrics
  boost::asio::io_context io;  // before the resolver: it must outlive it
  std::unique_ptr<Resolver> resolver;
  try {
    resolver = make_resolver(io.get_executor(), config->dns, clock, &metrics);
  } catch (const std::exception& e) {
    std::cerr << "spamward: check: " << e.what() << "\n";
    return 1;
  }
  Env env{&clock, resolver.get(), store.get(), &metrics, {}};  // no loop work: one-shot
  // `check` never changes state: bans are read, greylisting only peeks.
  std::unique_ptr<Reputation> reputation;
  if (store) reputation = std::make_unique<Reputation>(*store, clock, config->reputation);
  env.reputation = reputation.get();
  // Bayes classifies (it only reads); autolearning is off in a read-only Env.
  std::unique_ptr<Bayes> bayes;
  if (store) bayes = std::make_unique<Bayes>(*store, clock, bayes_options(config->bayes));
  env.bayes = bayes.get();
  env.read_only = true;
  std::unique_ptr<Engine> engine_ptr;
  try {
    engine_ptr = std::make_unique<Engine>(config, env, make_checks(*config, env));
  } catch (const ConfigError& e) {
    std::cerr << "spamward: config error: " << e.what() << "\n";
    return 2;
  }
  Engine& engine = *engine_ptr;

  auto evaluate = [&](const Transaction& subject) {
    Verdict verdict;
    auto body = [&]() -> boost::asio::awaitable<void> {
      auto evaluation = engine.evaluate(subject);  // named first: GCC PR 100611
      verdict = co_await std::move(evaluation);
    };
    io.restart();
    auto task = body();
    run_to_completion(io, std::move(task));
    return verdict;
  };

  if (options.paths.empty()) {
    if (options.explain) {
      std::cerr << "spamward: check: --explain explains messages; give a PATH or -\n";
      return 2;
    }
    Verdict verdict;
    try {
      verdict = evaluate(tx);
    } catch (const std::exception& e) {
      std::cerr << "spamward: check: " << e.what() << "\n";
      return 1;
    }
    if (options.json) {
      std::cout << verdict_json(verdict).dump() << "\n";
    } else {
      print_text(verdict);
    }
    return 0;
  }

  // Messages: each one scored at end of message, with the SMTP facts given.
  tx.stage = Stage::eom;
  tx.recipient.clear();
  MessageLimits limits;
  limits.max_bytes = static_cast<size_t>(config->limits.max_message_bytes);
  MessageSourceOptions source;
  source.max_message_bytes = limits.max_bytes;
  bool failed = false;
  std::ios::sync_with_stdio(false);
  constexpr size_t kExplainedClues = 20;
  // The Bayes explanation of one message (a second, read-only classification with texts).
  auto explain_bayes = [&](const Transaction& subject) -> std::optional<BayesResult> {
    if (!options.explain || !bayes) return std::nullopt;
    try {
      return bayes->classify(*subject.message, subject.recipients, kExplainedClues);
    } catch (const StoreError& e) {
      std::cerr << "spamward: check: --explain: " << e.what() << "\n";
      return std::nullopt;
    }
  };
  const uint64_t min_learned = bayes ? bayes->options().min_learned : 0;
  auto on_message = [&](RawMessage& raw) {
    Transaction subject = tx;
    subject.size = static_cast<int64_t>(raw.raw_size);
    subject.message = std::make_shared<const Message>(parse_message(raw.data, limits));
    Verdict verdict;
    try {
      verdict = evaluate(subject);
    } catch (const std::exception& e) {
      std::cerr << "spamward: check: " << raw.file << ": " << e.what() << "\n";
      failed = true;
      return true;
    }
    std::optional<BayesResult> explanation = explain_bayes(subject);
    if (options.json) {
      nlohmann::json j = verdict_json(verdict);
      j["file"] = raw.file;
      if (raw.index > 0) j["index"] = raw.index;
      if (explanation) j["bayes"] = bayes_explanation_json(*explanation, min_learned);
      std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    } else {
      std::cout << "== " << raw.file;
      if (raw.index > 0) std::cout << " #" << raw.index;
      std::cout << "\n";
      print_text(verdict);
      if (explanation) print_bayes_explanation(std::cout, *explanation, min_learned);
    }
    return true;
  };
  auto on_error = [&](const std::string& path, const std::string& reason) {
    std::cerr << "spamward: check: " << path << ": " << reason << "\n";
    failed = true;
  };
  for_each_message(options.paths, source, on_message, on_error);
  std::cout.flush();
  return failed ? 1 : 0;
}

}  // namespace spamward::cli
