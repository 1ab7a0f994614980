// bench/accuracy: accuracy and speed of spamward's Bayes classifier on a labelled corpus
// (issue 6). Trains on the `train` split of SPLIT.tsv, classifies the `test` split, prints:
// - the action the BAYES_* score alone gives at the default thresholds (greylist 3, tag 6,
//   reject 15), with false positives (ham at tag or over) and spam recall;
// - recall and false positives for "probability >= p" over a range of p;
// - spam recall at FP <= 0.1% and FP <= 0.5% of the test ham (best threshold, ties broken
//   against us: a spam tied with the highest ham allowed through counts as missed);
// - learning and classification rates (messages/s, one process, one thread), including
//   reading, parsing and tokenizing, and the database size (entries, bytes on disk for LMDB).
//
// Usage:
//   accuracy --corpus DIR [--split FILE] [--lmdb DIR | --redis URL] [--dump FILE] [tuning options]
// DIR holds ham/ and spam/ as unpacked from shared/corpus (tar xzf into a temp dir); --split
// defaults to DIR/../SPLIT.tsv, then DIR/SPLIT.tsv. --lmdb keeps the database in LMDB at DIR
// (created; must not exist or be empty), --redis keeps it in the Redis database at URL
// (redis://HOST:PORT/DB; use an empty database: it is not cleared), else it is in memory. --dump
// writes "label<TAB>probability<TAB>score<TAB>path" per test message. Tuning options: --osb N,
// --html-markup, --robs X, --robx X, --min-dev X, --max-clues N, --max-group-clues N (0: off),
// --max-tokens N, --min-learned N.
// --model logistic|fisher (default logistic, as the daemon): learning and classifying go
// through the Bayes service the daemon uses (bayes/bayes.h): learn every train message (no
// online steps, as `spamward learn`), commit, rebuild the model (timed apart), classify.
// For the logistic model the ranking score is the log-odds z, for Fisher the probability.
// --cv K: first a K-fold cross-validation on the TRAIN split alone (message i of each class
// in fold i mod K; the test split is not read), pooled over the folds; Fisher: counts in
// memory; logistic: per fold a memory store, the service learns the other folds and rebuilds.
// --cv-only stops after it. Parameter choices are judged on it, the test split confirms.
// --model lr: the discriminative-model EXPERIMENT (docs/bayes.md, "How the logistic model
// was chosen"): online logistic regression (bayes/logistic.h) on the same tokens, in memory,
// beside the Fisher classifier and their combinations; with --cv K first on the train split,
// then trained on train and run on test. Options: --lr-rate X (1), --lr-passes N (20),
// --lr-thick X (0.1; 0: train on every message; else only when |y - p| > X), --lr-raw (feature
// value 1, not 1/sqrt(n)), --lr-osb N (OSB window of the LR's tokens; 1), --lr-ngrams N
// (also character N-grams of the first --lr-ngram-bytes B (3000) bytes of the raw message),
// --lr-seed N (order of the passes), --lr-repeat N (up to N steps on one message in a row,
// while it is outside the --lr-thick margin: the "train until learned" of an online TELL),
// --lr-nb A (features scaled by their naive-Bayes log ratio with smoothing A, Wang & Manning's
// NBSVM, counts from the fold's training messages; --lr-nb-norm 0: 1/sqrt(n), 1: unit length
// of the scaled vector, 2: none; --lr-nb-init W: starting weight; --lr-nb-combine: plain LR
// plus the NB-scaled one, which then takes Fisher's place in the "LR + a*logit" lines).
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "bayes/bayes.h"
#include "bayes/bayes_store.h"
#include "bayes/classifier.h"
#include "bayes/logistic.h"
#include "bayes/tokenizer.h"
#include "core/clock.h"
#include "mail/message.h"
#include "state/store.h"

using namespace spamward;

namespace {

struct Row {
  std::string path;
  bool spam = false;
  bool train = false;
};

std::vector<Row> read_split(const std::string& file) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error("cannot read " + file);
  std::vector<Row> rows;
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string path, label, split;
    std::getline(f, path, '\t');
    std::getline(f, label, '\t');
    std::getline(f, split, '\t');
    if (path.empty()) continue;
    rows.push_back({path, label == "spam", split == "train"});
  }
  return rows;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct Scored {
  double p;
  double score;  // BAYES_* symbol score (0 when none)
  bool spam;
};

// Spam recall when at most `max_fp` ham may be at or over the threshold.
double recall_at_fp(const std::vector<Scored>& s, size_t max_fp, double* threshold) {
  std::vector<double> ham, spam;
  for (const auto& x : s) (x.spam ? spam : ham).push_back(x.p);
  std::sort(ham.begin(), ham.end(), std::greater<>());
  // The threshold must be over the (max_fp+1)-th highest ham.
  double bar = ham.size() > max_fp ? ham[max_fp] : -1.0;
  size_t caught = 0;
  for (double p : spam) caught += p > bar;
  if (threshold) *threshold = bar;
  return spam.empty() ? 0 : 100.0 * caught / spam.size();
}

struct Report {
  double r01 = 0, r05 = 0, t01 = 0, t05 = 0;
  size_t fp_tag = 0, spam_tag = 0, n_ham = 0, n_spam = 0;
};

Report summarize(const std::vector<Scored>& results) {
  Report r;
  for (const auto& x : results) {
    (x.spam ? r.n_spam : r.n_ham)++;
    if (x.score >= 6.0) (x.spam ? r.spam_tag : r.fp_tag)++;
  }
  r.r01 = recall_at_fp(results, r.n_ham / 1000, &r.t01);
  r.r05 = recall_at_fp(results, r.n_ham * 5 / 1000, &r.t05);
  return r;
}

// Writes the --dump file (if asked) and prints the pooled cross-validation report.
Report report_cv(const std::vector<Scored>& results, const std::vector<std::string>& paths, int k,
                 const std::string& dump, const char* score_name) {
  if (!dump.empty()) {
    std::ofstream out(dump);
    for (size_t i = 0; i < results.size(); ++i) {
      out << (results[i].spam ? "spam" : "ham") << '\t' << results[i].p << '\t' << results[i].score
          << '\t' << paths[i] << '\n';
    }
  }
  Report r = summarize(results);
  std::printf("cross-validation, %d folds of the train split (%zu ham + %zu spam, pooled):\n", k,
              r.n_ham, r.n_spam);
  std::printf("  at tag: false positives %zu of %zu ham (%.3f%%), spam recall %.2f%%\n", r.fp_tag,
              r.n_ham, 100.0 * r.fp_tag / r.n_ham, 100.0 * r.spam_tag / r.n_spam);
  std::printf("  recall at FP <= 0.1%% (<= %zu ham): %.2f%% (%s > %.6g)\n", r.n_ham / 1000, r.r01,
              score_name, r.t01);
  std::printf("  recall at FP <= 0.5%% (<= %zu ham): %.2f%% (%s > %.6g)\n", r.n_ham * 5 / 1000,
              r.r05, score_name, r.t05);
  return r;
}

// K-fold cross-validation on the train rows only.
void cross_validate(const std::vector<Row>& rows, const std::string& corpus, int k,
                    const TokenizerOptions& topt, const ClassifierParams& cparams,
                    const BayesScoring& scoring, const std::string& dump) {
  struct Item {
    std::vector<uint64_t> tokens;
    std::vector<uint16_t> groups;
    bool spam;
    int fold;
    std::string path;
  };
  std::vector<Item> items;
  size_t idx[2] = {0, 0};
  for (const auto& r : rows) {
    if (!r.train) continue;
    Message m = parse_message(read_file(corpus + "/" + r.path));
    TokenList t = tokenize(m, topt);
    items.push_back({std::move(t.hashes), std::move(t.groups), r.spam,
                     static_cast<int>(idx[r.spam]++ % k), r.path});
  }
  std::unordered_map<uint64_t, TokenCounts> all;
  LearnedTotals all_totals;
  for (const auto& it : items) {
    (it.spam ? all_totals.spam : all_totals.ham)++;
    for (uint64_t h : it.tokens) (it.spam ? all[h].spam : all[h].ham)++;
  }
  std::vector<Scored> results;
  std::vector<std::string> paths;
  for (int f = 0; f < k; ++f) {
    auto counts = all;
    LearnedTotals totals = all_totals;
    for (const auto& it : items) {
      if (it.fold != f) continue;
      (it.spam ? totals.spam : totals.ham)--;
      for (uint64_t h : it.tokens) (it.spam ? counts[h].spam : counts[h].ham)--;
    }
    std::vector<TokenCounts> c;
    for (const auto& it : items) {
      if (it.fold != f) continue;
      c.clear();
      for (uint64_t h : it.tokens) {
        auto p = counts.find(h);
        c.push_back(p == counts.end() ? TokenCounts{} : p->second);
      }
      Classification cl = classify(it.tokens, c, totals, cparams, it.groups);
      auto sym = bayes_symbol(cl, scoring);
      results.push_back({cl.probability, sym ? sym->score : 0.0, it.spam});
      paths.push_back(it.path);
    }
  }
  report_cv(results, paths, k, dump, "p");
  std::fflush(stdout);
}

// K-fold cross-validation through the Bayes service (the logistic model): per fold a memory
// store, the other folds learned and the model rebuilt, the fold classified.
void cross_validate_service(const std::vector<Row>& rows, const std::string& corpus, int k,
                            const BayesOptions& options, const BayesScoring& scoring,
                            const std::string& dump) {
  struct Item {
    Message message;
    bool spam;
    int fold;
    std::string path;
  };
  std::vector<Item> items;
  size_t idx[2] = {0, 0};
  for (const auto& r : rows) {
    if (!r.train) continue;
    items.push_back({parse_message(read_file(corpus + "/" + r.path)), r.spam,
                     static_cast<int>(idx[r.spam]++ % k), r.path});
  }
  std::vector<Scored> results;
  std::vector<std::string> paths;
  for (int f = 0; f < k; ++f) {
    SystemClock clock;
    auto store = make_memory_store(clock);
    Bayes bayes(*store, clock, options);
    for (const auto& it : items) {
      if (it.fold != f) bayes.learn(it.message, it.spam ? MessageClass::spam : MessageClass::ham);
    }
    bayes.commit();
    bayes.rebuild();
    for (const auto& it : items) {
      if (it.fold != f) continue;
      const Classification c = bayes.classify(it.message, {}).classification;
      auto sym = bayes_symbol(c, scoring);
      results.push_back({c.model == BayesModel::logistic ? c.log_odds : c.probability,
                         sym ? sym->score : 0.0, it.spam});
      paths.push_back(it.path);
    }
  }
  report_cv(results, paths, k, dump, "score");
  // The score the symbol mapping is anchored on (docs/bayes.md): ham and spam quantiles.
  std::vector<double> ham, spam;
  for (const auto& x : results) (x.spam ? spam : ham).push_back(x.p);
  std::sort(ham.begin(), ham.end(), std::greater<>());
  std::sort(spam.begin(), spam.end());
  auto at = [](const std::vector<double>& v, double q) {
    return v.empty() ? 0.0 : v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))];
  };
  std::printf(
      "  highest ham: %.3f %.3f %.3f %.3f %.3f; ham at 0.5%% / 1%% / 2%% from the top: "
      "%.3f / %.3f / %.3f\n",
      at(ham, 0), ham.size() > 1 ? ham[1] : 0, ham.size() > 2 ? ham[2] : 0,
      ham.size() > 3 ? ham[3] : 0, ham.size() > 4 ? ham[4] : 0, at(ham, 0.005), at(ham, 0.01),
      at(ham, 0.02));
  std::printf(
      "  lowest spam: %.3f %.3f %.3f; spam at 0.1%% / 0.5%% / 1%% from the bottom: "
      "%.3f / %.3f / %.3f\n",
      at(spam, 0), spam.size() > 1 ? spam[1] : 0, spam.size() > 2 ? spam[2] : 0, at(spam, 0.001),
      at(spam, 0.005), at(spam, 0.01));
  std::fflush(stdout);
}

// ---- the discriminative-model experiment (--model lr) ----

struct LrOptions {
  LogisticParams params;
  int passes = 20;
  int repeat = 1;  // online steps per message per pass (stops once within the margin)
  int osb = 1;
  size_t ngrams = 0;
  size_t ngram_bytes = 3000;
  uint64_t seed = 1;
  int orders = 1;           // models averaged (RebuildOptions::orders)
  double nb_alpha = 0;      // EXPERIMENT: NB-scaled features (NBSVM) with this smoothing; 0: off
  int nb_norm = 0;          // 0: 1/sqrt(n), 1: 1/||r.x||, 2: none
  double nb_init = 0;       // initial weight of every feature
  bool nb_combine = false;  // the NB-scaled LR takes Fisher's place in the combinations
};

struct LrItem {
  std::vector<uint64_t> features;  // the LR's
  std::vector<uint64_t> tokens;    // the Fisher classifier's
  std::vector<uint16_t> groups;
  bool spam = false;
  int fold = 0;
  std::string path;
};

std::vector<LrItem> load_items(const std::vector<Row>& rows, const std::string& corpus, bool train,
                               int k, const TokenizerOptions& topt, const LrOptions& lo,
                               double* seconds) {
  std::vector<LrItem> items;
  size_t idx[2] = {0, 0};
  auto t0 = std::chrono::steady_clock::now();
  for (const auto& r : rows) {
    if (r.train != train) continue;
    const std::string raw = read_file(corpus + "/" + r.path);
    Message m = parse_message(raw);
    TokenList t = tokenize(m, topt);
    LrItem it;
    if (lo.osb != topt.osb_window) {
      TokenizerOptions o = topt;
      o.osb_window = lo.osb;
      it.features = tokenize(m, o).hashes;
    } else {
      it.features = t.hashes;
    }
    if (lo.ngrams) {
      auto g = char_ngrams(raw, lo.ngrams, lo.ngram_bytes);
      it.features.insert(it.features.end(), g.begin(), g.end());
    }
    it.tokens = std::move(t.hashes);
    it.groups = std::move(t.groups);
    it.spam = r.spam;
    it.fold = k > 0 ? static_cast<int>(idx[r.spam]++ % k) : 0;
    it.path = r.path;
    items.push_back(std::move(it));
  }
  *seconds = seconds_since(t0);
  return items;
}

double logit(double p) {
  p = std::clamp(p, 1e-9, 1 - 1e-9);
  return std::log(p / (1 - p));
}

struct ModelScores {
  std::vector<double> lr, nb;  // LR log-odds, Fisher probability
  std::vector<bool> spam;
  double train_s = 0, classify_s = 0;
  size_t updates = 0, weights = 0, trained = 0, classified = 0;
};

// EXPERIMENT: logistic regression on NB-log-ratio-scaled binary features (Wang & Manning's
// NBSVM): x_t = r_t = log((s_t+a)/(S+2a)) - log((h_t+a)/(H+2a)), counts from `train`.
std::vector<double> nb_scaled_lr(const std::vector<const LrItem*>& train,
                                 const std::vector<const LrItem*>& test, const LrOptions& lo) {
  std::unordered_map<uint64_t, TokenCounts> counts;
  double S = 0, H = 0;
  for (const auto* it : train) {
    (it->spam ? S : H) += 1;
    for (uint64_t h : it->features) (it->spam ? counts[h].spam : counts[h].ham)++;
  }
  const double a = lo.nb_alpha;
  auto r_of = [&](uint64_t h) {
    auto c = counts.find(h);
    if (c == counts.end()) return 0.0;
    return std::log((c->second.spam + a) / (S + 2 * a)) -
           std::log((c->second.ham + a) / (H + 2 * a));
  };
  auto values = [&](const LrItem& it, std::vector<double>& v) {
    v.clear();
    double ss = 0;
    for (uint64_t h : it.features) {
      double r = r_of(h);
      v.push_back(r);
      ss += r * r;
    }
    double norm = lo.nb_norm == 0
                      ? (it.features.empty() ? 1 : 1 / std::sqrt(double(it.features.size())))
                  : lo.nb_norm == 1 ? (ss > 0 ? 1 / std::sqrt(ss) : 1)
                                    : 1;
    for (double& x : v) x *= norm;
  };
  std::unordered_map<uint64_t, double> w;
  double b = 0;
  std::vector<std::vector<double>> xs(train.size());
  for (size_t i = 0; i < train.size(); ++i) values(*train[i], xs[i]);
  std::vector<size_t> order(train.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::mt19937_64 rng(lo.seed);
  auto weight = [&](uint64_t h) -> double& { return w.try_emplace(h, lo.nb_init).first->second; };
  for (int pass = 0; pass < lo.passes; ++pass) {
    std::shuffle(order.begin(), order.end(), rng);
    for (size_t i : order) {
      const auto& f = train[i]->features;
      double z = b;
      for (size_t j = 0; j < f.size(); ++j) z += weight(f[j]) * xs[i][j];
      double y = train[i]->spam ? 1 : 0;
      double err = y - 1 / (1 + std::exp(-z));
      if (std::fabs(err) <= lo.params.thick) continue;
      for (size_t j = 0; j < f.size(); ++j)
        weight(f[j]) = std::clamp(weight(f[j]) + lo.params.rate * err * xs[i][j], -20.0, 20.0);
      b += lo.params.rate * err;
    }
  }
  std::vector<double> out;
  std::vector<double> v;
  for (const auto* it : test) {
    values(*it, v);
    double z = b;
    for (size_t j = 0; j < it->features.size(); ++j) {
      auto p = w.find(it->features[j]);
      z += (p == w.end() ? lo.nb_init : p->second) * v[j];
    }
    out.push_back(z);
  }
  return out;
}

// Trains on the `train` subset (LR: passes in shuffled order; Fisher: counts), scores `test`.
void train_and_score(const std::vector<const LrItem*>& train,
                     const std::vector<const LrItem*>& test, const LrOptions& lo,
                     const ClassifierParams& cparams, ModelScores& out) {
  std::vector<double> nbz;
  if (lo.nb_alpha > 0) {
    nbz = nb_scaled_lr(train, test, lo);
    if (!lo.nb_combine) out.lr.insert(out.lr.end(), nbz.begin(), nbz.end());
  }
  LogisticModel model;
  std::vector<size_t> order(train.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::mt19937_64 rng(lo.seed);
  auto t0 = std::chrono::steady_clock::now();
  for (int pass = 0; pass < lo.passes; ++pass) {
    std::shuffle(order.begin(), order.end(), rng);
    for (size_t i : order) {
      for (int r = 0; r < lo.repeat; ++r)
        if (!model.train(train[i]->features, train[i]->spam, lo.params)) break;
    }
  }
  out.train_s += seconds_since(t0);
  out.trained += train.size() * lo.passes;
  out.updates += model.updates();
  out.weights = model.size();
  std::unordered_map<uint64_t, TokenCounts> counts;
  LearnedTotals totals;
  for (const auto* it : train) {
    (it->spam ? totals.spam : totals.ham)++;
    for (uint64_t h : it->tokens) (it->spam ? counts[h].spam : counts[h].ham)++;
  }
  std::vector<TokenCounts> c;
  t0 = std::chrono::steady_clock::now();
  if (lo.nb_alpha <= 0 || lo.nb_combine)
    for (const auto* it : test) out.lr.push_back(model.score(it->features, lo.params));
  out.classify_s += seconds_since(t0);
  out.classified += test.size();
  for (size_t ti = 0; ti < test.size(); ++ti) {
    const LrItem* it = test[ti];
    c.clear();
    for (uint64_t h : it->tokens) {
      auto p = counts.find(h);
      c.push_back(p == counts.end() ? TokenCounts{} : p->second);
    }
    out.nb.push_back(lo.nb_combine
                         ? 1 / (1 + std::exp(-nbz[ti]))
                         : classify(it->tokens, c, totals, cparams, it->groups).probability);
    out.spam.push_back(it->spam);
  }
}

std::vector<Scored> combine(const ModelScores& m, double alpha, bool nb_only = false) {
  std::vector<Scored> r;
  for (size_t i = 0; i < m.lr.size(); ++i) {
    double z = nb_only ? m.nb[i] : m.lr[i] + alpha * logit(m.nb[i]);
    r.push_back({z, 0.0, m.spam[i]});
  }
  return r;
}

// The (max_fp+1)-th highest ham score: a threshold "score > t" lets at most max_fp ham by.
double ham_bar(const std::vector<Scored>& s, size_t max_fp) {
  std::vector<double> ham;
  for (const auto& x : s)
    if (!x.spam) ham.push_back(x.p);
  std::sort(ham.begin(), ham.end(), std::greater<>());
  return ham.size() > max_fp ? ham[max_fp] : -1e300;
}

void at_threshold(const std::vector<Scored>& s, double t, size_t* fp, size_t* n_ham,
                  double* recall) {
  size_t caught = 0, n_spam = 0;
  *fp = *n_ham = 0;
  for (const auto& x : s) {
    (x.spam ? n_spam : *n_ham)++;
    if (x.p > t) (x.spam ? caught : *fp)++;
  }
  *recall = n_spam ? 100.0 * caught / n_spam : 0;
}

int lr_experiment(const std::vector<Row>& rows, const std::string& corpus, int k, bool cv_only,
                  const TokenizerOptions& topt, const ClassifierParams& cparams,
                  const LrOptions& lo, const std::string& dump) {
  const std::vector<double> alphas = {0.0, 0.1, 0.25, 0.5, 1.0};
  std::printf("model lr: repeat=%d ", lo.repeat);
  std::printf("rate=%g passes=%d thick=%g normalize=%d osb=%d ngrams=%zu/%zu seed=%llu\n",
              lo.params.rate, lo.passes, lo.params.thick, lo.params.normalize ? 1 : 0, lo.osb,
              lo.ngrams, lo.ngram_bytes, static_cast<unsigned long long>(lo.seed));
  double load_s = 0;
  auto train_items = load_items(rows, corpus, true, k > 1 ? k : 0, topt, lo, &load_s);
  size_t nfeat = 0;
  for (const auto& it : train_items) nfeat += it.features.size();
  std::printf(
      "train: %zu messages read+parsed+tokenized in %.2f s (%.0f msg/s), %.0f LR features/msg\n",
      train_items.size(), load_s, train_items.size() / load_s,
      static_cast<double>(nfeat) / train_items.size());
  auto line = [](const char* name, const std::vector<Scored>& s, size_t fp01, size_t fp05) {
    double t01, t05;
    double r01 = recall_at_fp(s, fp01, &t01), r05 = recall_at_fp(s, fp05, &t05);
    std::printf("  %-22s recall at FP<=0.1%%: %6.2f%%   at FP<=0.5%%: %6.2f%%\n", name, r01, r05);
  };
  // CV: the per-alpha thresholds for <= 1 FP per 1,245 ham, applied to the test split.
  std::vector<double> cv_bar(alphas.size(), 0), cv_bar_nb(1, 0);
  if (k > 1) {
    ModelScores ms;
    std::vector<std::string> paths;
    for (int f = 0; f < k; ++f) {
      std::vector<const LrItem*> tr, te;
      for (const auto& it : train_items) (it.fold == f ? te : tr).push_back(&it);
      train_and_score(tr, te, lo, cparams, ms);
      for (auto* it : te) paths.push_back(it->path);
    }
    size_t n_ham = 0;
    for (bool s : ms.spam) n_ham += !s;
    const size_t fp01 = n_ham / 1000, fp05 = n_ham * 5 / 1000;
    const size_t fp_tag = n_ham / 1245;  // <= 1 FP per 1,245 ham
    std::printf("cross-validation, %d folds of the train split (%zu ham + %zu spam, pooled):\n", k,
                n_ham, ms.spam.size() - n_ham);
    line("Fisher (current)", combine(ms, 0, true), fp01, fp05);
    for (size_t a = 0; a < alphas.size(); ++a) {
      char name[64];
      std::snprintf(name, sizeof name, a == 0 ? "LR" : "LR + %.2g*logit(Fisher)", alphas[a]);
      auto s = combine(ms, alphas[a]);
      line(name, s, fp01, fp05);
      cv_bar[a] = ham_bar(s, fp_tag);
    }
    cv_bar_nb[0] = ham_bar(combine(ms, 0, true), fp_tag);
    std::printf(
        "  LR learning %.0f msg-steps/s (%zu updates of %zu steps), scoring %.0f msg/s (tokens "
        "given)\n",
        ms.trained / ms.train_s, ms.updates, ms.trained, ms.classified / ms.classify_s);
    if (!dump.empty()) {
      std::ofstream out(dump + ".cv");
      for (size_t i = 0; i < ms.lr.size(); ++i)
        out << (ms.spam[i] ? "spam" : "ham") << '\t' << ms.lr[i] << '\t' << ms.nb[i] << '\t'
            << paths[i] << '\n';
    }
    std::fflush(stdout);
  }
  if (cv_only) return 0;
  auto test_items = load_items(rows, corpus, false, 0, topt, lo, &load_s);
  std::vector<const LrItem*> tr, te;
  for (const auto& it : train_items) tr.push_back(&it);
  for (const auto& it : test_items) te.push_back(&it);
  ModelScores ms;
  train_and_score(tr, te, lo, cparams, ms);
  size_t n_ham = 0;
  for (bool s : ms.spam) n_ham += !s;
  const size_t fp01 = n_ham / 1000, fp05 = n_ham * 5 / 1000;
  std::printf("test split (%zu ham + %zu spam), trained on train:\n", n_ham,
              ms.spam.size() - n_ham);
  line("Fisher (current)", combine(ms, 0, true), fp01, fp05);
  for (size_t a = 0; a < alphas.size(); ++a) {
    char name[64];
    std::snprintf(name, sizeof name, a == 0 ? "LR" : "LR + %.2g*logit(Fisher)", alphas[a]);
    auto s = combine(ms, alphas[a]);
    line(name, s, fp01, fp05);
    if (k > 1) {
      size_t fp, nh;
      double rec;
      at_threshold(s, cv_bar[a], &fp, &nh, &rec);
      std::printf("  %-22s at the CV threshold (score > %.4g): %zu FP of %zu ham, recall %.2f%%\n",
                  "", cv_bar[a], fp, nh, rec);
    }
  }
  if (k > 1) {
    size_t fp, nh;
    double rec;
    at_threshold(combine(ms, 0, true), cv_bar_nb[0], &fp, &nh, &rec);
    std::printf("  Fisher at its CV threshold (p > %.6g): %zu FP of %zu ham, recall %.2f%%\n",
                cv_bar_nb[0], fp, nh, rec);
  }
  std::printf(
      "  LR learning %.0f msg-steps/s (%zu updates of %zu steps, %zu weights), scoring %.0f msg/s "
      "(tokens given)\n",
      ms.trained / ms.train_s, ms.updates, ms.trained, ms.weights, ms.classified / ms.classify_s);
  std::printf("  test: %zu messages read+parsed+tokenized in %.2f s (%.0f msg/s)\n",
              test_items.size(), load_s, test_items.size() / load_s);
  if (!dump.empty()) {
    std::ofstream out(dump);
    for (size_t i = 0; i < ms.lr.size(); ++i)
      out << (ms.spam[i] ? "spam" : "ham") << '\t' << ms.lr[i] << '\t' << ms.nb[i] << '\t'
          << te[i]->path << '\n';
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string corpus, split, lmdb_dir, redis_url, dump, explain;
  int cv = 0;
  bool cv_only = false;
  std::string model = "logistic";
  LrOptions lo;
  TokenizerOptions topt;
  ClassifierParams cparams;
  BayesScoring scoring;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "accuracy: " << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--corpus") {
      corpus = next();
    } else if (a == "--split") {
      split = next();
    } else if (a == "--lmdb") {
      lmdb_dir = next();
    } else if (a == "--redis") {
      redis_url = next();
    } else if (a == "--dump") {
      dump = next();
    } else if (a == "--explain") {
      explain = next();
    } else if (a == "--cv") {
      cv = std::stoi(next());
    } else if (a == "--cv-only") {
      cv_only = true;
    } else if (a == "--osb") {
      topt.osb_window = std::stoi(next());
    } else if (a == "--html-markup") {
      topt.html_markup = true;
    } else if (a == "--max-tokens") {
      topt.max_tokens = std::stoul(next());
    } else if (a == "--robs") {
      cparams.robinson_s = std::stod(next());
    } else if (a == "--robx") {
      cparams.robinson_x = std::stod(next());
    } else if (a == "--min-dev") {
      cparams.min_dev = std::stod(next());
    } else if (a == "--max-clues") {
      cparams.max_clues = std::stoul(next());
    } else if (a == "--max-group-clues") {
      cparams.max_group_clues = std::stoul(next());
    } else if (a == "--min-learned") {
      cparams.min_learned = std::stoul(next());
    } else if (a == "--model") {
      model = next();
    } else if (a == "--lr-rate") {
      lo.params.rate = std::stod(next());
    } else if (a == "--lr-passes") {
      lo.passes = std::stoi(next());
    } else if (a == "--lr-thick") {
      lo.params.thick = std::stod(next());
    } else if (a == "--lr-nb") {
      lo.nb_alpha = std::stod(next());
    } else if (a == "--lr-nb-norm") {
      lo.nb_norm = std::stoi(next());
    } else if (a == "--lr-nb-combine") {
      lo.nb_combine = true;
    } else if (a == "--lr-nb-init") {
      lo.nb_init = std::stod(next());
    } else if (a == "--lr-raw") {
      lo.params.normalize = false;
    } else if (a == "--lr-repeat") {
      lo.repeat = std::stoi(next());
    } else if (a == "--lr-osb") {
      lo.osb = std::stoi(next());
    } else if (a == "--lr-ngrams") {
      lo.ngrams = std::stoul(next());
    } else if (a == "--lr-ngram-bytes") {
      lo.ngram_bytes = std::stoul(next());
    } else if (a == "--lr-orders") {
      lo.orders = std::stoi(next());
    } else if (a == "--lr-seed") {
      lo.seed = std::stoull(next());
    } else {
      std::cerr << "accuracy: unknown option " << a
                << " (see the comment at the top of bench/accuracy.cpp)\n";
      return 2;
    }
  }
  if (corpus.empty()) {
    std::cerr
        << "usage: accuracy --corpus DIR [--split FILE] [--lmdb DIR | --redis URL] [--dump FILE]\n";
    return 2;
  }
  if (split.empty()) {
    split = std::filesystem::exists(corpus + "/../SPLIT.tsv") ? corpus + "/../SPLIT.tsv"
                                                              : corpus + "/SPLIT.tsv";
  }

  try {
    auto rows = read_split(split);
    if (model == "lr") return lr_experiment(rows, corpus, cv, cv_only, topt, cparams, lo, dump);
    if (model != "fisher" && model != "logistic") {
      std::cerr << "accuracy: --model is logistic, fisher or lr\n";
      return 2;
    }
    BayesOptions options;
    options.model = model == "logistic" ? BayesModel::logistic : BayesModel::fisher;
    options.online_steps = false;  // as `spamward learn`: one rebuild at the end
    options.min_learned = cparams.min_learned;
    options.tokenizer = topt;
    options.params = cparams;
    options.rebuild.params = lo.params;
    options.rebuild.passes = lo.passes;
    options.rebuild.seed = lo.seed;
    options.rebuild.orders = lo.orders;
    options.rebuild.min_learned = cparams.min_learned;
    if (cv > 1) {
      if (options.model == BayesModel::logistic) {
        cross_validate_service(rows, corpus, cv, options, scoring, cv_only ? dump : "");
      } else {
        cross_validate(rows, corpus, cv, topt, cparams, scoring, cv_only ? dump : "");
      }
      if (cv_only) return 0;
    }
    SystemClock clock;
    std::unique_ptr<Store> store;
    if (!redis_url.empty()) {
      RedisOptions o;
      o.url = redis_url;
      store = open_redis_store(o, clock);
    } else if (lmdb_dir.empty()) {
      store = make_memory_store(clock);
    } else {
      LmdbOptions o;
      o.path = lmdb_dir;
      store = open_lmdb_store(o, clock);
    }
    Bayes bayes(*store, clock, options);

    // Learning: read, parse, tokenize, count; then commit and wait until durable.
    size_t learned = 0, n_train_ham = 0, n_train_spam = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (const auto& r : rows) {
      if (!r.train) continue;
      Message m = parse_message(read_file(corpus + "/" + r.path));
      bayes.learn(m, r.spam ? MessageClass::spam : MessageClass::ham);
      ++learned;
      (r.spam ? n_train_spam : n_train_ham)++;
    }
    bayes.commit();
    store->flush();
    const double learn_s = seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    const RebuildResult rebuilt = bayes.rebuild();
    store->flush();
    const double rebuild_s = seconds_since(t0);

    if (!explain.empty()) {  // the Fisher clues of one message, after training
      BayesStore counts_db(*store, clock);
      TokenizerOptions o = topt;
      o.keep_text = true;
      Message m = parse_message(read_file(explain));
      TokenList tokens = tokenize(m, o);
      auto counts = counts_db.lookup(tokens.hashes);
      Classification c =
          classify(tokens.hashes, counts, counts_db.totals(), cparams, tokens.groups);
      std::printf("%s: p=%.6f, %zu clues of %zu tokens\n", explain.c_str(), c.probability,
                  c.clues_used, tokens.hashes.size());
      std::vector<std::pair<double, size_t>> order;
      const LearnedTotals t = counts_db.totals();
      for (size_t i = 0; i < tokens.hashes.size(); ++i) {
        double f = robinson_f(counts[i], t, cparams);
        if ((counts[i].spam || counts[i].ham) && std::fabs(f - 0.5) >= cparams.min_dev)
          order.push_back({f, i});
      }
      std::sort(order.begin(), order.end());
      for (auto& [f, i] : order) {
        std::printf("  %.4f  s=%u h=%u  %s\n", f, counts[i].spam, counts[i].ham,
                    tokens.texts[i].c_str());
      }
      return 0;
    }

    // Classifying.
    std::vector<Scored> results;
    std::vector<std::string> paths;
    t0 = std::chrono::steady_clock::now();
    for (const auto& r : rows) {
      if (r.train) continue;
      Message m = parse_message(read_file(corpus + "/" + r.path));
      const Classification c = bayes.classify(m, {}).classification;
      auto sym = bayes_symbol(c, scoring);
      results.push_back({c.model == BayesModel::logistic ? c.log_odds : c.probability,
                         sym ? sym->score : 0.0, r.spam});
      paths.push_back(r.path);
    }
    const double classify_s = seconds_since(t0);

    size_t n_ham = 0, n_spam = 0;
    for (const auto& x : results) (x.spam ? n_spam : n_ham)++;

    std::printf("corpus: %s (split %s)\n", corpus.c_str(), split.c_str());
    std::printf("trained: %zu ham + %zu spam; tested: %zu ham + %zu spam\n", n_train_ham,
                n_train_spam, n_ham, n_spam);
    std::printf(
        "options: osb=%d max_tokens=%zu robs=%g robx=%g min_dev=%g max_clues=%zu "
        "max_group_clues=%zu\n",
        topt.osb_window, topt.max_tokens, cparams.robinson_s, cparams.robinson_x, cparams.min_dev,
        cparams.max_clues, cparams.max_group_clues);
    if (options.model == BayesModel::logistic) {
      std::printf(
          "model: logistic (rate %g, thick %g, %d passes, seed %llu, %d orders), %s on %llu spam + "
          "%llu ham, %llu weights\n",
          lo.params.rate, lo.params.thick, lo.passes, static_cast<unsigned long long>(lo.seed),
          lo.orders, rebuilt.built ? "trained" : "NOT trained",
          static_cast<unsigned long long>(rebuilt.spam),
          static_cast<unsigned long long>(rebuilt.ham),
          static_cast<unsigned long long>(rebuilt.weights));
    } else {
      std::printf("model: fisher\n");
    }

    // Actions of the Bayes score alone at the default thresholds (DESIGN §3.3).
    const double greylist = 3.0, tag = 6.0, reject = 15.0;
    size_t ham_at[4] = {}, spam_at[4] = {};  // accept, greylist, tag, reject-level score
    for (const auto& x : results) {
      int a = x.score >= reject ? 3 : x.score >= tag ? 2 : x.score >= greylist ? 1 : 0;
      (x.spam ? spam_at : ham_at)[a]++;
    }
    std::printf("\nBayes score alone at the default thresholds (greylist 3, tag 6, reject 15):\n");
    std::printf("  %-9s %8s %8s\n", "action", "ham", "spam");
    const char* names[4] = {"accept", "greylist", "tag", "reject*"};
    for (int a = 0; a < 4; ++a) std::printf("  %-9s %8zu %8zu\n", names[a], ham_at[a], spam_at[a]);
    std::printf("  (*a score at reject level; never a reject alone: one family)\n");
    std::printf("  at tag: false positives %zu of %zu ham (%.3f%%), spam recall %.2f%%\n",
                ham_at[2] + ham_at[3], n_ham, 100.0 * (ham_at[2] + ham_at[3]) / n_ham,
                100.0 * (spam_at[2] + spam_at[3]) / n_spam);
    std::printf("  at greylist or over: ham %zu, spam %zu (%.2f%%)\n",
                ham_at[1] + ham_at[2] + ham_at[3], spam_at[1] + spam_at[2] + spam_at[3],
                100.0 * (spam_at[1] + spam_at[2] + spam_at[3]) / n_spam);

    const bool lr = options.model == BayesModel::logistic;
    std::printf("\n%s >= t:\n  %-10s %6s %8s %8s\n", lr ? "log-odds z" : "probability", "t", "ham",
                "FP%", "recall%");
    const std::vector<double> bars =
        lr ? std::vector<double>{-2, -1, 0, 0.5, 1, 1.5, 2, 3}
           : std::vector<double>{0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999, 0.999999};
    for (double p : bars) {
      size_t h = 0, s = 0;
      for (const auto& x : results) (x.spam ? s : h) += x.p >= p;
      std::printf("  %-10g %6zu %8.3f %8.2f\n", p, h, 100.0 * h / n_ham, 100.0 * s / n_spam);
    }
    const size_t fp01 = n_ham / 1000, fp05 = n_ham * 5 / 1000;
    double t01 = 0, t05 = 0;
    const double r01 = recall_at_fp(results, fp01, &t01);
    const double r05 = recall_at_fp(results, fp05, &t05);
    std::printf("\nrecall at FP <= 0.1%% (<= %zu ham): %.2f%% (%s > %.6g)\n", fp01, r01,
                lr ? "z" : "p", t01);
    std::printf("recall at FP <= 0.5%% (<= %zu ham): %.2f%% (%s > %.6g)\n", fp05, r05,
                lr ? "z" : "p", t05);

    std::printf("\nspeed (one process, one thread, reading + parsing + tokenizing included):\n");
    std::printf("  learning:       %zu msg in %.2f s = %.0f msg/s\n", learned, learn_s,
                learned / learn_s);
    if (lr) std::printf("  model rebuild:  %.2f s (%d passes)\n", rebuild_s, lo.passes);
    std::printf("  classification: %zu msg in %.2f s = %.0f msg/s\n", results.size(), classify_s,
                results.size() / classify_s);
    std::printf("  database: %llu tokens, %lld token entries + %lld learned-message entries",
                static_cast<unsigned long long>(bayes.token_count()),
                static_cast<long long>(store->count("bayes_tokens")),
                static_cast<long long>(store->count("bayes_learned")));
    if (lr) {
      std::printf(", %lld weights", static_cast<long long>(store->count("bayes_weights")));
    }
    if (!lmdb_dir.empty()) {
      struct stat st {};
      if (stat((lmdb_dir + "/data.mdb").c_str(), &st) == 0) {
        std::printf(", %.1f MiB on disk (data.mdb, allocated %.1f MiB)", st.st_size / 1048576.0,
                    st.st_blocks * 512 / 1048576.0);
      }
    }
    std::printf("\n");

    if (!dump.empty()) {
      std::ofstream out(dump);
      for (size_t i = 0; i < results.size(); ++i) {
        out << (results[i].spam ? "spam" : "ham") << '\t' << results[i].p << '\t'
            << results[i].score << '\t' << paths[i] << '\n';
      }
    }
  } catch (const std::exception& e) {
    std::cerr << "accuracy: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
