// Bayes: the classifier as the rest of spamward uses it (the Bayes check, `spamward learn`,
// `learn-imap`, spamd TELL, the HTTP learn API and autolearning). It ties the tokenizer, the
// classifier and the per-namespace stores together; it knows nothing about protocols.
//
// Contract:
// - Databases: one global database (namespace ""), or with `per_domain` one per recipient
//   domain. A message is classified in its first recipient's domain database once that one
//   has min_learned ham and spam, else in the global one; learning without a domain (the
//   command line, IMAP, TELL) goes to the global database, learning with one to that domain's.
// - classify() is read-only. It answers `active = false` (no symbol) until the database in
//   use has min_learned ham and min_learned spam.
// - learn() counts a message once (by learned_message_digest): learning it again as the same
//   class changes nothing, as the other class moves it. Manual learning always overrides
//   autolearning: autolearn() only learns a message that was never learned, so it never moves
//   one an admin taught, and an admin's later teaching moves an autolearned one.
// - Autolearning (when enabled) is conservative (issue 6): spam only when the verdict's score
//   without Bayes is at or over the reject threshold with at least two non-Bayes families
//   adding 1.0 or more each; ham only when the score without Bayes is at most `ham_below`
//   (clearly negative: an allow list or DNSWL vouched for it). Never for a dry-run or trusted
//   transaction's content it did not score.
// - Writes are buffered per namespace (BayesStore) and committed by commit(), at the latest
//   every `commit_interval` learned messages; the Store then makes them durable.
// - Expiry (BayesStore::expire, options.expiry) runs after `spamward learn` and `learn-imap`
//   for the databases they taught, and in the daemon once a day for those it used.
// - The model ([bayes] model): "logistic" (the default) classifies with the logistic model
//   of the database when it has one, and falls back to Fisher over the counts when it has
//   none yet (fewer than min_learned learned messages of a class with token lists). The
//   model is rebuilt (BayesStore::rebuild) after `spamward learn` and `learn-imap`, within
//   the hour in the daemon after it learned or forgot anything, and daily; between rebuilds
//   learning takes online steps (options.online_steps; the bulk learners turn them off,
//   since they rebuild at the end). "fisher" never uses the model.
// - Store errors throw StoreError; callers fail open (the Bayes check adds nothing).
// - Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "bayes/bayes_store.h"
#include "bayes/classifier.h"
#include "bayes/tokenizer.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/symbol.h"
#include "mail/message.h"
#include "state/store.h"

namespace spamward {

struct BayesOptions {
  uint64_t min_learned = 200;
  bool per_domain = false;
  bool autolearn = true;
  BayesModel model = BayesModel::logistic;
  bool online_steps = true;  // learn() and autolearn() step the model at once
  int max_online_steps = 10;
  RebuildOptions rebuild;             // its min_learned is min_learned
  double autolearn_ham_below = -1.0;  // score without Bayes at most this: clearly ham
  TokenizerOptions tokenizer;
  ClassifierParams params;
  BayesScoring scoring;
  ExpiryPolicy expiry;
};

// The options a [bayes] config section gives (the rest keep their defaults).
BayesOptions bayes_options(const BayesConfig& config);

struct BayesResult {
  Classification classification;
  std::string ns;         // the database used ("" global)
  LearnedTotals totals;   // learned messages of that database
};

class Bayes {
 public:
  Bayes(Store& store, const Clock& clock, BayesOptions options);
  ~Bayes();
  Bayes(const Bayes&) = delete;
  Bayes& operator=(const Bayes&) = delete;

  const BayesOptions& options() const { return options_; }

  // The database a message to `recipients` is learned into ("" unless per_domain).
  std::string namespace_for(const std::vector<std::string>& recipients) const;

  // With `explain` > 0 the result also explains itself (`spamward check --explain`):
  // classification.top holds up to `explain` of the strongest clues with their texts (the
  // logistic model: the tokens with the largest shares of z, either sign; Fisher: the clues
  // farthest from 0.5). Tokenizing then keeps the texts, which costs time: not for the daemon.
  BayesResult classify(const Message& message, const std::vector<std::string>& recipients,
                       size_t explain = 0);

  LearnOutcome learn(const Message& message, MessageClass cls, std::string_view ns = {});
  LearnOutcome forget(const Message& message, std::string_view ns = {});
  // Learns only a message never learned before (see the contract); `learned` tells whether it
  // did.
  LearnOutcome autolearn(const Message& message, MessageClass cls, std::string_view ns,
                         bool& learned);

  LearnedTotals totals(std::string_view ns = {});
  uint64_t token_count(std::string_view ns = {});
  void commit();
  ExpiryResult expire(std::string_view ns = {});
  // Expires every database this object has opened (the daemon, once a day).
  void expire_open();

  ModelInfo model_info(std::string_view ns = {});
  // Rebuilds a database's logistic model (nothing with model = fisher).
  RebuildResult rebuild(std::string_view ns = {});
  // Rebuilds the models of the databases this object learned into or forgot from since their
  // last rebuild (the daemon, hourly), or of all it has opened (`all`, daily).
  void rebuild_changed(bool all = false);

 private:
  BayesStore& store_for(std::string_view ns);

  Store& store_;
  const Clock& clock_;
  BayesOptions options_;
  void mark_changed(std::string_view ns);
  void step(BayesStore& db, const TokenList& tokens, MessageClass cls);

  std::mutex mu_;
  std::map<std::string, std::unique_ptr<BayesStore>, std::less<>> stores_;
  std::set<std::string, std::less<>> changed_;  // namespaces to rebuild
};

// The autolearning rule of the contract above: the class to learn a message as, given the
// verdict's symbols (Bayes symbols are ignored), or nullopt. `reject` is the reject threshold.
std::optional<MessageClass> autolearn_class(const std::vector<Symbol>& symbols, double reject,
                                            double ham_below);

}  // namespace spamward
