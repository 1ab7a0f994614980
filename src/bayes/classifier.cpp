#include "bayes/classifier.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace spamward {

double robinson_f(const TokenCounts& c, const LearnedTotals& totals, const ClassifierParams& p) {
  const double n = static_cast<double>(c.spam) + static_cast<double>(c.ham);
  if (n == 0 || totals.spam == 0 || totals.ham == 0) return p.robinson_x;
  // Frequencies relative to each class's size, so an unbalanced training set does not tilt
  // every token towards the bigger class.
  const double spam_freq = std::min(1.0, c.spam / static_cast<double>(totals.spam));
  const double ham_freq = std::min(1.0, c.ham / static_cast<double>(totals.ham));
  const double pw = spam_freq / (spam_freq + ham_freq);
  return (p.robinson_s * p.robinson_x + n * pw) / (p.robinson_s + n);
}

double chi2_upper_tail(double chi2, int dof) {
  // For even dof = 2k: Q = e^-m * sum_{i<k} m^i / i!, m = chi2 / 2. Summed in log space so
  // that large m (very confident messages) does not underflow to exactly 0 too early.
  if (chi2 <= 0) return 1.0;
  const int k = std::max(1, dof / 2);
  const double m = chi2 / 2.0;
  const double log_m = std::log(m);
  double log_term = -m;  // i = 0
  double log_sum = log_term;
  for (int i = 1; i < k; ++i) {
    log_term += log_m - std::log(static_cast<double>(i));
    // log(e^a + e^b) without overflow.
    const double hi = std::max(log_sum, log_term), lo = std::min(log_sum, log_term);
    log_sum = hi + std::log1p(std::exp(lo - hi));
  }
  return std::min(1.0, std::exp(log_sum));
}

Classification classify(std::span<const uint64_t> tokens, std::span<const TokenCounts> counts,
                        const LearnedTotals& totals, const ClassifierParams& params,
                        std::span<const uint16_t> groups) {
  Classification out;
  out.tokens = tokens.size();
  out.active = totals.spam >= params.min_learned && totals.ham >= params.min_learned &&
               totals.spam > 0 && totals.ham > 0;
  if (!out.active) return out;

  auto stronger = [](const Clue& a, const Clue& b) {
    const double da = std::fabs(a.f - 0.5), db = std::fabs(b.f - 0.5);
    if (da != db) return da > db;
    return a.hash < b.hash;  // a total order: the result never depends on input order
  };
  std::vector<Clue> clues;
  clues.reserve(tokens.size());
  const size_t n = std::min(tokens.size(), counts.size());
  for (size_t i = 0; i < n; ++i) {
    const TokenCounts& c = counts[i];
    if (c.spam == 0 && c.ham == 0) continue;
    const double f = robinson_f(c, totals, params);
    if (std::fabs(f - 0.5) < params.min_dev) continue;
    Clue& clue = clues.emplace_back();
    clue.hash = tokens[i];
    clue.group = i < groups.size() ? groups[i] : uint16_t{0};
    clue.f = f;
    clue.counts = c;
  }
  if (params.max_group_clues > 0 && !groups.empty()) {
    // The strongest `max_group_clues` of each group (group 0: no limit).
    std::sort(clues.begin(), clues.end(), [&](const Clue& a, const Clue& b) {
      if (a.group != b.group) return a.group < b.group;
      return stronger(a, b);
    });
    size_t kept = 0, run = 0;
    for (size_t i = 0; i < clues.size(); ++i) {
      run = (i > 0 && clues[i].group == clues[i - 1].group) ? run + 1 : 1;
      if (clues[i].group == 0 || run <= params.max_group_clues) clues[kept++] = clues[i];
    }
    clues.resize(kept);
  }
  if (clues.size() > params.max_clues) {
    std::nth_element(clues.begin(), clues.begin() + static_cast<ptrdiff_t>(params.max_clues),
                     clues.end(), stronger);
    clues.resize(params.max_clues);
  }
  std::sort(clues.begin(), clues.end(), stronger);

  out.clues_used = clues.size();
  if (clues.empty()) return out;

  // Fisher: -2 sum ln(f) is chi-square with 2n dof when the f are uniform (no signal).
  double ln_spam = 0, ln_ham = 0;
  for (const Clue& c : clues) {
    const double f = std::clamp(c.f, 1e-9, 1.0 - 1e-9);
    ln_ham += std::log(f);      // very negative when the tokens are hammy (f near 0)
    ln_spam += std::log1p(-f);  // very negative when they are spammy (f near 1)
  }
  const int dof = static_cast<int>(2 * clues.size());
  const double spamminess = 1.0 - chi2_upper_tail(-2.0 * ln_spam, dof);  // S
  const double hamminess = 1.0 - chi2_upper_tail(-2.0 * ln_ham, dof);    // H
  out.probability = std::clamp((1.0 + spamminess - hamminess) / 2.0, 0.0, 1.0);
  out.top.assign(clues.begin(),
                 clues.begin() + static_cast<ptrdiff_t>(std::min(params.top_clues, clues.size())));
  return out;
}

namespace {

// Linear in the confidence c = -log10(q) between (c(from), min) and (c(full), max).
double scaled(double q, double from, double full, double min_score, double max_score) {
  const double c = -std::log10(std::max(q, 1e-300));
  const double c_from = -std::log10(from), c_full = -std::log10(full);
  if (c >= c_full || c_full <= c_from) return max_score;
  const double t = std::clamp((c - c_from) / (c_full - c_from), 0.0, 1.0);
  return min_score + t * (max_score - min_score);
}

// Linear in x between (from, min) and (full, max); `full` is farther from 0 than `from` in
// the direction of the anchors.
double linear(double x, double from, double full, double min_score, double max_score) {
  if (full == from) return max_score;
  const double t = std::clamp((x - from) / (full - from), 0.0, 1.0);
  return min_score + t * (max_score - min_score);
}

}  // namespace

std::optional<Symbol> bayes_symbol(const Classification& result, const BayesScoring& s) {
  if (!result.active || result.clues_used == 0) return std::nullopt;
  const double p = result.probability;
  Symbol sym;
  sym.family = Family::content;
  if (result.model == BayesModel::logistic) {
    const double z = result.log_odds;
    sym.detail = fmt::format("z={:.2f} p={:.5f}", z, p);
    if (z >= s.z_spam_from) {
      sym.name = "BAYES_SPAM";
      sym.score = linear(z, s.z_spam_from, s.z_spam_full, s.spam_min, s.spam_max);
    } else if (z <= s.z_ham_below) {
      sym.name = "BAYES_HAM";
      sym.score = linear(z, s.z_ham_below, s.z_ham_full, s.ham_min, s.ham_max);
    } else {
      return std::nullopt;
    }
    sym.score = std::round(sym.score * 100.0) / 100.0;
    return sym;
  }
  sym.detail = fmt::format("p={:.5f}", p);
  if (p >= s.spam_from) {
    sym.name = "BAYES_SPAM";
    sym.score = scaled(1.0 - p, 1.0 - s.spam_from, 1.0 - s.spam_full, s.spam_min, s.spam_max);
  } else if (p <= s.ham_below) {
    sym.name = "BAYES_HAM";
    sym.score = scaled(p, s.ham_below, s.ham_full, s.ham_min, s.ham_max);
  } else {
    return std::nullopt;
  }
  sym.score = std::round(sym.score * 100.0) / 100.0;
  return sym;
}

}  // namespace spamward
