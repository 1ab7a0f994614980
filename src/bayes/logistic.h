// Logistic regression over hashed binary features: the Bayes classifier's default model
// (docs/bayes.md, "The logistic model"). BayesStore keeps the weights on the Store and
// trains them with the functions below; bench/accuracy measures them.
//
// Contract:
// - A message is a set of 64-bit feature hashes (the tokenizer's TokenList::hashes, plus
//   optional extra features such as char_ngrams()). Each feature present has the value 1, or
//   1/sqrt(n) with `normalize` (n features in the message, so every message has unit
//   length), plus a bias feature that is always 1.
// - score() is w.x + b, the log-odds of spam; probability() its logistic function.
// - train() is one online gradient step of the log loss, w += rate * (y - p) * x, taken
//   only when the message is not yet learned "thickly" enough: |y - p| > thick (0: always).
//   It returns whether it changed anything. Weights are clamped to [-max_weight,
//   max_weight]. The result depends on the order of training (online learning).
// - Weights are floats keyed by the 64-bit hash (as the store would keep them); an unseen
//   feature has weight 0.
// - Defaults: chosen by 5-fold CV on the bench's train split (docs/bayes.md), with 20 passes.
// - Not thread-safe (one writer); score() is const.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace spamward {

struct LogisticParams {
  double rate = 1.0;       // learning rate (with normalize: the step in log-odds of the message)
  double thick = 0.1;      // train only when |y - p| > thick (0: on every message)
  bool normalize = true;   // feature value 1/sqrt(n) instead of 1
  double max_weight = 20;  // |w| bound
};

// The value of each feature present in a message of n distinct features: 1/sqrt(n) with
// `normalize`, else 1. A feature's share of the log-odds is its weight times this.
double logistic_feature_value(size_t n, const LogisticParams& p);

// The log-odds of one message from the weights of its n distinct features (0 for unknown
// ones): b + sum(w) * value(n).
double logistic_score(std::span<const float> weights, float bias, const LogisticParams& p);

// One online step on explicit weights (the store's path): `weights[i]` is the weight of the
// message's i-th distinct feature. Updates them and `bias` in place when the message is
// outside the margin; returns whether it did.
bool logistic_step(std::span<float> weights, float& bias, bool spam, const LogisticParams& p);

class LogisticModel {
 public:
  double score(std::span<const uint64_t> features, const LogisticParams& p) const;
  double probability(std::span<const uint64_t> features, const LogisticParams& p) const;
  bool train(std::span<const uint64_t> features, bool spam, const LogisticParams& p);
  size_t size() const { return weights_.size(); }
  size_t updates() const { return updates_; }
  float bias() const { return bias_; }
  // this = this * (1 - share) + other * share, weight by weight (for averaging models).
  void blend(const LogisticModel& other, float share);
  const std::unordered_map<uint64_t, float>& weights() const { return weights_; }

 private:
  std::unordered_map<uint64_t, float> weights_;
  float bias_ = 0;
  size_t updates_ = 0;
};

// One training example for train_logistic(): a message's distinct features and its class.
struct LogisticExample {
  std::span<const uint64_t> features;
  bool spam = false;
};

// Trains a fresh model with `passes` passes over `examples`, each pass in an order shuffled by
// a generator seeded with `seed` (reproducible), one step per example per pass. With
// `orders` > 1 it trains that many models, with seeds seed, seed+1, ..., and returns their
// average: online training depends on the order, and since the score is linear in the
// weights, the averaged model scores the mean of the models' log-odds (an ensemble at the
// cost of one model).
LogisticModel train_logistic(std::span<const LogisticExample> examples, int passes, uint64_t seed,
                             const LogisticParams& p, int orders = 1);

// Binary character n-grams of the first `max_bytes` bytes of `raw` (lower-cased ASCII,
// runs of white space as one space), as distinct hashes disjoint from token hashes in
// practice (a 64-bit mix of the n bytes and a tag). Sculley & Wachman's ROSVM features.
std::vector<uint64_t> char_ngrams(std::string_view raw, size_t n, size_t max_bytes);

}  // namespace spamward
