#include "bayes/logistic.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

namespace spamward {

namespace {

double sigmoid(double z) {
  return 1.0 / (1.0 + std::exp(-z));
}

uint64_t mix64(uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

double logistic_feature_value(size_t n, const LogisticParams& p) {
  return p.normalize && n ? 1.0 / std::sqrt(static_cast<double>(n)) : 1.0;
}

double logistic_score(std::span<const float> weights, float bias, const LogisticParams& p) {
  double s = 0;
  for (float w : weights) s += w;
  return bias + s * logistic_feature_value(weights.size(), p);
}

bool logistic_step(std::span<float> weights, float& bias, bool spam, const LogisticParams& p) {
  const double y = spam ? 1.0 : 0.0;
  const double err = y - sigmoid(logistic_score(weights, bias, p));
  if (std::fabs(err) <= p.thick) return false;
  const float step = static_cast<float>(p.rate * err * logistic_feature_value(weights.size(), p));
  const float bound = static_cast<float>(p.max_weight);
  for (float& w : weights) w = std::clamp(w + step, -bound, bound);
  bias = std::clamp(bias + static_cast<float>(p.rate * err), -bound, bound);
  return true;
}

double LogisticModel::score(std::span<const uint64_t> features, const LogisticParams& p) const {
  double s = 0;
  for (uint64_t f : features) {
    auto it = weights_.find(f);
    if (it != weights_.end()) s += it->second;
  }
  return bias_ + s * logistic_feature_value(features.size(), p);
}

double LogisticModel::probability(std::span<const uint64_t> features,
                                  const LogisticParams& p) const {
  return sigmoid(score(features, p));
}

bool LogisticModel::train(std::span<const uint64_t> features, bool spam, const LogisticParams& p) {
  std::vector<float> w(features.size());
  for (size_t i = 0; i < features.size(); ++i) {
    auto it = weights_.find(features[i]);
    if (it != weights_.end()) w[i] = it->second;
  }
  if (!logistic_step(w, bias_, spam, p)) return false;
  for (size_t i = 0; i < features.size(); ++i) weights_[features[i]] = w[i];
  ++updates_;
  return true;
}

void LogisticModel::blend(const LogisticModel& other, float share) {
  for (auto& [f, w] : weights_) w *= 1.0f - share;
  for (const auto& [f, w] : other.weights_) weights_[f] += w * share;
  bias_ = bias_ * (1.0f - share) + other.bias_ * share;
  updates_ += other.updates_;
}

LogisticModel train_logistic(std::span<const LogisticExample> examples, int passes, uint64_t seed,
                             const LogisticParams& p, int orders) {
  if (orders > 1) {
    LogisticModel mean = train_logistic(examples, passes, seed, p);
    for (int i = 1; i < orders; ++i) {
      mean.blend(train_logistic(examples, passes, seed + static_cast<uint64_t>(i), p),
                 1.0f / static_cast<float>(i + 1));
    }
    return mean;
  }
  LogisticModel model;
  std::vector<size_t> order(examples.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::mt19937_64 rng(seed);
  for (int pass = 0; pass < passes; ++pass) {
    std::shuffle(order.begin(), order.end(), rng);
    for (size_t i : order) model.train(examples[i].features, examples[i].spam, p);
  }
  return model;
}

std::vector<uint64_t> char_ngrams(std::string_view raw, size_t n, size_t max_bytes) {
  std::string s;
  s.reserve(std::min(raw.size(), max_bytes));
  for (char c : raw.substr(0, max_bytes)) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u == ' ' || u == '\t' || u == '\r' || u == '\n') {
      if (!s.empty() && s.back() == ' ') continue;
      s.push_back(' ');
    } else {
      s.push_back(static_cast<char>(u >= 'A' && u <= 'Z' ? u + 32 : u));
    }
  }
  std::vector<uint64_t> out;
  if (n == 0 || n > 8 || s.size() < n) return out;
  out.reserve(s.size());
  for (size_t i = 0; i + n <= s.size(); ++i) {
    uint64_t k = 0;
    for (size_t j = 0; j < n; ++j) k = (k << 8) | static_cast<unsigned char>(s[i + j]);
    out.push_back(mix64(k ^ (0xc4a7ULL << 48) ^ (static_cast<uint64_t>(n) << 40)));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace spamward
