// Online logistic regression over hashed binary features: an EXPERIMENT beside the Fisher
// classifier (docs/bayes.md, "Discriminative model experiment"). Nothing in the daemon uses
// it yet; bench/accuracy --model lr measures it.
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

class LogisticModel {
 public:
  double score(std::span<const uint64_t> features, const LogisticParams& p) const;
  double probability(std::span<const uint64_t> features, const LogisticParams& p) const;
  bool train(std::span<const uint64_t> features, bool spam, const LogisticParams& p);
  size_t size() const { return weights_.size(); }
  size_t updates() const { return updates_; }

 private:
  std::unordered_map<uint64_t, float> weights_;
  float bias_ = 0;
  size_t updates_ = 0;
};

// Binary character n-grams of the first `max_bytes` bytes of `raw` (lower-cased ASCII,
// runs of white space as one space), as distinct hashes disjoint from token hashes in
// practice (a 64-bit mix of the n bytes and a tag). Sculley & Wachman's ROSVM features.
std::vector<uint64_t> char_ngrams(std::string_view raw, size_t n, size_t max_bytes);

}  // namespace spamward
