#include "bayes/bayes.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <unordered_map>

#include "core/strings.h"

namespace spamward {

namespace {

bool is_bayes_symbol(const Symbol& s) {
  return s.name == "BAYES_SPAM" || s.name == "BAYES_HAM";
}

}  // namespace

BayesOptions bayes_options(const BayesConfig& config) {
  BayesOptions options;
  options.min_learned = static_cast<uint64_t>(std::max<int64_t>(config.min_learned, 1));
  options.autolearn = config.autolearn;
  options.per_domain = config.per_domain;
  options.model = config.model == "fisher" ? BayesModel::fisher : BayesModel::logistic;
  return options;
}

Bayes::Bayes(Store& store, const Clock& clock, BayesOptions options)
    : store_(store), clock_(clock), options_(std::move(options)) {
  options_.params.min_learned = options_.min_learned;
  options_.rebuild.min_learned = options_.min_learned;
}

Bayes::~Bayes() {
  try {
    commit();
  } catch (...) {  // NOLINT(bugprone-empty-catch): the BayesStores' destructors retry, quietly
  }
}

std::string Bayes::namespace_for(const std::vector<std::string>& recipients) const {
  if (!options_.per_domain || recipients.empty()) return {};
  const std::string& rcpt = recipients.front();
  const size_t at = rcpt.rfind('@');
  if (at == std::string::npos) return {};
  std::string domain = to_lower(std::string_view(rcpt).substr(at + 1));
  while (!domain.empty() && (domain.back() == '.' || domain.back() == '>')) domain.pop_back();
  // A namespace never contains '/' (BayesStore); a domain never does, but input is input.
  if (domain.empty() || domain.find('/') != std::string::npos) return {};
  return domain;
}

BayesStore& Bayes::store_for(std::string_view ns) {
  std::lock_guard lock(mu_);
  auto it = stores_.find(ns);
  if (it == stores_.end()) {
    it =
        stores_
            .emplace(std::string(ns), std::make_unique<BayesStore>(store_, clock_, std::string(ns)))
            .first;
  }
  return *it->second;
}

BayesResult Bayes::classify(const Message& message, const std::vector<std::string>& recipients,
                            size_t explain) {
  BayesResult result;
  result.ns = namespace_for(recipients);
  BayesStore* db = &store_for(result.ns);
  result.totals = db->totals();
  const auto ready = [&](const LearnedTotals& t) {
    return t.spam >= options_.min_learned && t.ham >= options_.min_learned;
  };
  if (!result.ns.empty() && !ready(result.totals)) {  // a young domain database: the global one
    result.ns.clear();
    db = &store_for(result.ns);
    result.totals = db->totals();
  }
  if (!ready(result.totals)) return result;  // inactive: no symbol
  TokenizerOptions tokenizer = options_.tokenizer;
  tokenizer.keep_text = explain > 0;
  const TokenList tokens = tokenize(message, tokenizer);
  Classification& c = result.classification;
  if (options_.model == BayesModel::logistic) {
    if (auto model = db->model_weights(tokens.hashes)) {
      const LogisticParams& params = options_.rebuild.params;
      c.active = true;
      c.model = BayesModel::logistic;
      c.tokens = tokens.hashes.size();
      c.bias = model->bias;
      c.log_odds = logistic_score(model->weights, model->bias, params);
      c.probability = 1.0 / (1.0 + std::exp(-c.log_odds));
      c.clues_used = static_cast<size_t>(std::count_if(model->weights.begin(), model->weights.end(),
                                                       [](float w) { return w != 0; }));
      if (explain > 0) {
        const double value = logistic_feature_value(tokens.hashes.size(), params);
        for (size_t i = 0; i < tokens.hashes.size(); ++i) {
          if (model->weights[i] == 0) continue;
          Clue clue;
          clue.hash = tokens.hashes[i];
          clue.group = i < tokens.groups.size() ? tokens.groups[i] : uint16_t{0};
          clue.weight = model->weights[i] * value;
          c.top.push_back(std::move(clue));
        }
        std::sort(c.top.begin(), c.top.end(), [](const Clue& a, const Clue& b) {
          const double wa = std::fabs(a.weight), wb = std::fabs(b.weight);
          return wa != wb ? wa > wb : a.hash < b.hash;
        });
        if (c.top.size() > explain) c.top.resize(explain);
      }
    }
  }
  if (!c.active) {
    ClassifierParams params = options_.params;
    if (explain > 0) params.top_clues = explain;
    std::vector<TokenCounts> counts = db->lookup(tokens.hashes);
    c = spamward::classify(tokens.hashes, counts, result.totals, params, tokens.groups);
  }
  if (explain > 0) {  // name the clues: hashes -> texts
    std::unordered_map<uint64_t, size_t> index;
    for (size_t i = 0; i < tokens.hashes.size(); ++i) index.emplace(tokens.hashes[i], i);
    for (Clue& clue : c.top) {
      if (auto it = index.find(clue.hash); it != index.end() && it->second < tokens.texts.size())
        clue.text = tokens.texts[it->second];
    }
  }
  return result;
}

void Bayes::mark_changed(std::string_view ns) {
  std::lock_guard lock(mu_);
  changed_.emplace(ns);
}

void Bayes::step(BayesStore& db, const TokenList& tokens, MessageClass cls) {
  if (options_.model != BayesModel::logistic || !options_.online_steps) return;
  db.step(tokens.hashes, cls, options_.rebuild.params, options_.max_online_steps);
}

LearnOutcome Bayes::learn(const Message& message, MessageClass cls, std::string_view ns) {
  TokenList tokens = tokenize(message, options_.tokenizer);
  BayesStore& db = store_for(ns);
  LearnOutcome outcome = db.learn(learned_message_digest(message), tokens.hashes, cls);
  if (outcome == LearnOutcome::learned || outcome == LearnOutcome::moved) {
    step(db, tokens, cls);
    mark_changed(ns);
  }
  return outcome;
}

LearnOutcome Bayes::forget(const Message& message, std::string_view ns) {
  TokenList tokens = tokenize(message, options_.tokenizer);
  LearnOutcome outcome = store_for(ns).forget(learned_message_digest(message), tokens.hashes);
  // The model keeps what it learned from the message until the next rebuild.
  if (outcome == LearnOutcome::forgotten) mark_changed(ns);
  return outcome;
}

LearnOutcome Bayes::autolearn(const Message& message, MessageClass cls, std::string_view ns,
                              bool& learned) {
  learned = false;
  BayesStore& db = store_for(ns);
  const std::string digest = learned_message_digest(message);
  if (auto before = db.learned_as(digest)) {
    return *before == cls ? LearnOutcome::already_learned : LearnOutcome::not_learned;
  }
  TokenList tokens = tokenize(message, options_.tokenizer);
  LearnOutcome outcome = db.learn(digest, tokens.hashes, cls);
  learned = outcome == LearnOutcome::learned;
  if (learned) {
    step(db, tokens, cls);
    mark_changed(ns);
  }
  db.commit();  // the daemon learns one message at a time: make it durable soon
  return outcome;
}

LearnedTotals Bayes::totals(std::string_view ns) {
  return store_for(ns).totals();
}

uint64_t Bayes::token_count(std::string_view ns) {
  return store_for(ns).token_count();
}

void Bayes::commit() {
  std::vector<BayesStore*> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [ns, db] : stores_) all.push_back(db.get());
  }
  for (BayesStore* db : all) db->commit();
}

ExpiryResult Bayes::expire(std::string_view ns) {
  return store_for(ns).expire(options_.expiry);
}

void Bayes::expire_open() {
  std::vector<BayesStore*> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [ns, db] : stores_) all.push_back(db.get());
  }
  for (BayesStore* db : all) db->expire(options_.expiry);
}

ModelInfo Bayes::model_info(std::string_view ns) {
  return store_for(ns).model_info();
}

RebuildResult Bayes::rebuild(std::string_view ns) {
  if (options_.model != BayesModel::logistic) return {};
  {
    std::lock_guard lock(mu_);
    if (auto it = changed_.find(ns); it != changed_.end()) changed_.erase(it);
  }
  return store_for(ns).rebuild(options_.rebuild);
}

void Bayes::rebuild_changed(bool all) {
  std::vector<std::string> names;
  {
    std::lock_guard lock(mu_);
    if (all) {
      for (const auto& [ns, db] : stores_) names.push_back(ns);
    } else {
      names.assign(changed_.begin(), changed_.end());
    }
  }
  for (const auto& ns : names) rebuild(ns);
}

std::optional<MessageClass> autolearn_class(const std::vector<Symbol>& symbols, double reject,
                                            double ham_below) {
  double total = 0.0;
  double without_bayes = 0.0;
  std::set<Family> strong_families;  // non-Bayes families adding at least 1.0
  std::map<Family, double> by_family;
  for (const auto& s : symbols) {
    if (s.name == "GTUBE") return std::nullopt;  // an admin's test, not mail
    total += s.score;
    if (is_bayes_symbol(s)) continue;
    without_bayes += s.score;
    by_family[s.family] += s.score;
  }
  for (const auto& [family, score] : by_family) {
    if (family != Family::admin && score >= 1.0) strong_families.insert(family);
  }
  if (total >= reject && strong_families.size() >= 2) return MessageClass::spam;
  if (without_bayes <= ham_below) return MessageClass::ham;
  return std::nullopt;
}

}  // namespace spamward
