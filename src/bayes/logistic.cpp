#include "bayes/logistic.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace spamward {

namespace {

double value(size_t n, const LogisticParams& p) {
  return p.normalize && n ? 1.0 / std::sqrt(static_cast<double>(n)) : 1.0;
}

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

double LogisticModel::score(std::span<const uint64_t> features, const LogisticParams& p) const {
  double s = 0;
  for (uint64_t f : features) {
    auto it = weights_.find(f);
    if (it != weights_.end()) s += it->second;
  }
  return bias_ + s * value(features.size(), p);
}

double LogisticModel::probability(std::span<const uint64_t> features,
                                  const LogisticParams& p) const {
  return sigmoid(score(features, p));
}

bool LogisticModel::train(std::span<const uint64_t> features, bool spam, const LogisticParams& p) {
  const double y = spam ? 1.0 : 0.0;
  const double err = y - probability(features, p);
  if (std::fabs(err) <= p.thick) return false;
  const double v = value(features.size(), p);
  const float step = static_cast<float>(p.rate * err * v);
  const float bound = static_cast<float>(p.max_weight);
  for (uint64_t f : features) {
    float& w = weights_[f];
    w = std::clamp(w + step, -bound, bound);
  }
  bias_ = std::clamp(bias_ + static_cast<float>(p.rate * err), -bound, bound);
  ++updates_;
  return true;
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
