// `spamward learn --spam|--ham [--domain D] [--forget] PATH...`: teaches the Bayes classifier
// from files, Maildirs and mboxes (mail/message_source.h), into the global database or, with
// --domain, into that recipient domain's ([bayes] per_domain). A message is counted once:
// learning it again as the same class changes nothing, as the other class moves it.
// --forget removes messages instead. On a terminal, a progress line on stderr; at the end a
// summary on stdout. Exit 0 when every path was read, 1 when one could not be (the others
// are still learned), 2 on bad usage or config.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>

#include <fmt/format.h>

#include "bayes/bayes.h"
#include "cli/cli_support.h"
#include "cli/commands.h"
#include "core/strings.h"
#include "mail/message.h"
#include "mail/message_source.h"

namespace spamward::cli {

namespace {

using SteadyClock = std::chrono::steady_clock;

// A progress line that rewrites itself at most ten times a second, only on a terminal.
class Progress {
 public:
  Progress() : enabled_(::isatty(STDERR_FILENO) == 1), started_(SteadyClock::now()) {}
  void update(size_t done) {
    if (!enabled_) return;
    auto now = SteadyClock::now();
    if (now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    std::chrono::duration<double> took = now - started_;
    std::fprintf(stderr, "\r%zu messages (%.0f/s)   ", done,
                 took.count() > 0 ? static_cast<double>(done) / took.count() : 0.0);
    std::fflush(stderr);
  }
  void finish() {
    if (enabled_) std::fprintf(stderr, "\r%60s\r", "");
  }
  double seconds() const {
    return std::chrono::duration<double>(SteadyClock::now() - started_).count();
  }

 private:
  bool enabled_;
  SteadyClock::time_point started_;
  SteadyClock::time_point last_{};
};

}  // namespace

int cmd_learn(const LearnOptions& options) {
  auto config = load_config_reporting(options.config_path);
  if (!config) return 2;
  if (options.domain.find('/') != std::string::npos) {
    std::cerr << "spamward: learn: --domain " << options.domain << " is not a domain name\n";
    return 2;
  }
  SystemClock clock;
  std::unique_ptr<Store> store = open_store_reporting(*config, clock, "learn");
  if (!store) return 1;
  BayesOptions bayes_opts = bayes_options(config->bayes);
  bayes_opts.online_steps = false;  // the model is rebuilt once at the end
  Bayes bayes(*store, clock, bayes_opts);
  const std::string ns = to_lower(options.domain);
  const MessageClass cls = options.spam ? MessageClass::spam : MessageClass::ham;
  const char* cls_name = options.spam ? "spam" : "ham";

  MessageLimits limits;
  limits.max_bytes = static_cast<size_t>(config->limits.max_message_bytes);
  MessageSourceOptions source;
  source.max_message_bytes = limits.max_bytes;
  size_t total = 0, learned = 0, moved = 0, already = 0, forgotten = 0, absent = 0;
  bool failed = false;
  Progress progress;
  auto on_message = [&](RawMessage& raw) {
    Message message = parse_message(raw.data, limits);
    try {
      LearnOutcome outcome =
          options.forget ? bayes.forget(message, ns) : bayes.learn(message, cls, ns);
      switch (outcome) {
        case LearnOutcome::learned:
          ++learned;
          break;
        case LearnOutcome::moved:
          ++moved;
          break;
        case LearnOutcome::already_learned:
          ++already;
          break;
        case LearnOutcome::forgotten:
          ++forgotten;
          break;
        case LearnOutcome::not_learned:
          ++absent;
          break;
      }
    } catch (const StoreError& e) {
      progress.finish();
      std::cerr << "spamward: learn: " << raw.file << ": " << e.what() << "\n";
      failed = true;
      return false;  // the store is broken: stop
    }
    progress.update(++total);
    return true;
  };
  auto on_error = [&](const std::string& path, const std::string& reason) {
    progress.finish();
    std::cerr << "spamward: learn: " << path << ": " << reason << "\n";
    failed = true;
  };
  for_each_message(options.paths, source, on_message, on_error);
  ExpiryResult expired;
  RebuildResult rebuilt;
  try {
    bayes.commit();
    expired = bayes.expire(ns);  // rare, stale tokens; the size bound
    // The logistic model learns from all the learned messages again (docs/bayes.md).
    if (learned + moved + forgotten > 0 || !bayes.model_info(ns).present) {
      rebuilt = bayes.rebuild(ns);
    }
    store->flush();
  } catch (const StoreError& e) {
    progress.finish();
    std::cerr << "spamward: learn: cannot save what was learned: " << e.what() << "\n";
    return 1;
  }
  progress.finish();
  const double seconds = progress.seconds();
  LearnedTotals totals = bayes.totals(ns);
  const std::string db = ns.empty() ? std::string("global database") : "database of " + ns;
  if (options.forget) {
    std::cout << fmt::format("{} messages read: {} forgotten, {} not learned before ({:.1f} s)\n",
                             total, forgotten, absent, seconds);
  } else {
    std::cout << fmt::format(
        "{} messages read as {}: {} learned, {} moved from {}, {} already learned ({:.1f} s, "
        "{:.0f} messages/s)\n",
        total, cls_name, learned, moved, options.spam ? "ham" : "spam", already, seconds,
        seconds > 0 ? static_cast<double>(total) / seconds : 0.0);
  }
  std::cout << fmt::format("{}: {} spam, {} ham learned, {} tokens", db, totals.spam, totals.ham,
                           bayes.token_count(ns));
  if (expired.removed_stale + expired.removed_for_size > 0) {
    std::cout << fmt::format(" ({} rare and stale tokens expired)",
                             expired.removed_stale + expired.removed_for_size);
  }
  const auto min_learned = static_cast<uint64_t>(config->bayes.min_learned);
  if (totals.spam < min_learned || totals.ham < min_learned) {
    std::cout << fmt::format(" (the classifier starts at {} of each: [bayes] min_learned)",
                             config->bayes.min_learned);
  }
  std::cout << "\n";
  if (bayes_opts.model == BayesModel::logistic) {
    const ModelInfo model = bayes.model_info(ns);
    if (model.present) {
      std::cout << fmt::format("model: logistic, trained on {} messages, {} weights{}\n",
                               model.messages, model.weights,
                               rebuilt.built ? " (rebuilt now)" : "");
    } else {
      std::cout << fmt::format(
          "model: none yet, Fisher classifies until {} spam and {} ham are learned with their "
          "tokens\n",
          config->bayes.min_learned, config->bayes.min_learned);
    }
  }
  return failed ? 1 : 0;
}

}  // namespace spamward::cli
