// Bayes classifier (bayes/classifier.h): Robinson's f(w), Fisher combining, min_learned,
// and the BAYES_SPAM / BAYES_HAM symbols.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "bayes/classifier.h"

using namespace spamward;

namespace {

const LearnedTotals kTrained{1000, 1000};

Classification run(const std::vector<TokenCounts>& counts, LearnedTotals totals = kTrained,
                   ClassifierParams p = {}) {
  std::vector<uint64_t> tokens;
  for (size_t i = 0; i < counts.size(); ++i) tokens.push_back(i + 1);
  return classify(tokens, counts, totals, p);
}

}  // namespace

TEST(BayesClassifier, RobinsonF) {
  ClassifierParams p;
  EXPECT_DOUBLE_EQ(robinson_f({0, 0}, kTrained, p), p.robinson_x);
  // Seen in 10 spam and no ham: n = 10, p(w) = 1 -> (s x + 10) / (s + 10).
  EXPECT_NEAR(robinson_f({10, 0}, kTrained, p), (p.robinson_s * 0.5 + 10) / (p.robinson_s + 10),
              1e-12);
  EXPECT_NEAR(robinson_f({5, 5}, kTrained, p), 0.5, 1e-12);
  // Frequencies are relative to class sizes: 10 of 100 spam vs 10 of 1000 ham is spammy.
  EXPECT_GT(robinson_f({10, 10}, {100, 1000}, p), 0.85);
  // A token seen once is weaker evidence than one seen a hundred times.
  EXPECT_LT(robinson_f({1, 0}, kTrained, p), robinson_f({100, 0}, kTrained, p));
}

TEST(BayesClassifier, ChiSquareTail) {
  EXPECT_DOUBLE_EQ(chi2_upper_tail(0, 4), 1.0);
  EXPECT_NEAR(chi2_upper_tail(2.0, 2), std::exp(-1.0), 1e-12);      // dof 2: e^{-x/2}
  EXPECT_NEAR(chi2_upper_tail(4.0, 4), 3 * std::exp(-2.0), 1e-12);  // (1 + m) e^{-m}, m = 2
  EXPECT_GT(chi2_upper_tail(2000, 300), 0.0);                       // no early underflow
  EXPECT_LT(chi2_upper_tail(2000, 300), 1e-100);
}

TEST(BayesClassifier, SpamHamAndUndecided) {
  std::vector<TokenCounts> spammy(20, TokenCounts{200, 1});
  std::vector<TokenCounts> hammy(20, TokenCounts{1, 200});
  std::vector<TokenCounts> neutral(20, TokenCounts{100, 100});
  auto s = run(spammy), h = run(hammy), n = run(neutral);
  ASSERT_TRUE(s.active);
  EXPECT_GT(s.probability, 0.99);
  EXPECT_LT(h.probability, 0.01);
  EXPECT_NEAR(n.probability, 0.5, 1e-9);
  EXPECT_EQ(n.clues_used, 0u);  // inside min_dev: no evidence
  EXPECT_EQ(s.clues_used, 20u);
  EXPECT_EQ(s.top.size(), 10u);
  // Unknown tokens are no evidence.
  auto unknown = run(std::vector<TokenCounts>(50));
  EXPECT_EQ(unknown.clues_used, 0u);
  EXPECT_DOUBLE_EQ(unknown.probability, 0.5);
}

TEST(BayesClassifier, OnlyTheStrongestCluesCount) {
  ClassifierParams p;
  p.max_clues = 5;
  std::vector<TokenCounts> c(5, TokenCounts{300, 0});
  for (int i = 0; i < 30; ++i) c.push_back({0, 20});  // weaker ham evidence, but more of it
  auto r = run(c, kTrained, p);
  EXPECT_EQ(r.clues_used, 5u);
  EXPECT_GT(r.probability, 0.9);
  ASSERT_FALSE(r.top.empty());
  EXPECT_GT(r.top.front().f, 0.99);
  EXPECT_EQ(r.top.front().counts.spam, 300u);
}

TEST(BayesClassifier, InactiveBelowMinLearned) {
  std::vector<TokenCounts> spammy(20, TokenCounts{150, 0});
  ClassifierParams p;  // min_learned 200
  EXPECT_FALSE(run(spammy, {199, 5000}, p).active);
  EXPECT_FALSE(run(spammy, {5000, 199}, p).active);
  EXPECT_FALSE(bayes_symbol(run(spammy, {199, 5000}, p)).has_value());
  EXPECT_TRUE(run(spammy, {200, 200}, p).active);
  p.min_learned = 0;  // even then, an empty class gives no verdict
  EXPECT_FALSE(run(spammy, {0, 100}, p).active);
}

TEST(BayesClassifier, SymbolsGrowWithConfidence) {
  auto at = [](double p) {
    Classification c;
    c.active = true;
    c.clues_used = 10;
    c.probability = p;
    return bayes_symbol(c);
  };
  EXPECT_FALSE(at(0.5).has_value());
  EXPECT_FALSE(at(0.85).has_value());
  auto low = at(0.91), mid = at(0.99), high = at(0.9999), top = at(1.0);
  ASSERT_TRUE(low && mid && high && top);
  EXPECT_EQ(low->name, "BAYES_SPAM");
  EXPECT_EQ(low->family, Family::content);
  EXPECT_LT(low->score, mid->score);
  EXPECT_LT(mid->score, high->score);
  EXPECT_DOUBLE_EQ(high->score, top->score);
  // Bayes alone can tag (6.0) but never reaches reject (15.0).
  BayesScoring d;
  EXPECT_GE(top->score, 6.0);
  EXPECT_LT(top->score, 15.0);
  EXPECT_DOUBLE_EQ(top->score, d.spam_max);
  EXPECT_LT(at(0.97)->score, 6.0);  // not tag-level at modest confidence

  auto h1 = at(0.09), h2 = at(0.01), h3 = at(0.0);
  ASSERT_TRUE(h1 && h2 && h3);
  EXPECT_EQ(h1->name, "BAYES_HAM");
  EXPECT_LT(h1->score, 0.0);
  EXPECT_GT(h1->score, h2->score);
  EXPECT_GT(h2->score, h3->score);
  EXPECT_DOUBLE_EQ(h3->score, d.ham_max);
  EXPECT_NE(h3->detail.find("p="), std::string::npos);

  Classification inactive;
  inactive.probability = 1.0;
  EXPECT_FALSE(bayes_symbol(inactive).has_value());
}

TEST(BayesClassifier, OneClueOfEachHeaderGroup) {
  // A spam sent through a mailing list: six header tokens of one group say "list X" (hammy),
  // three body words say spam. With every clue counted the list outvotes the body; with one
  // clue per group (the default) the body decides.
  std::vector<uint64_t> tokens;
  std::vector<TokenCounts> counts;
  std::vector<uint16_t> groups;
  for (uint64_t i = 0; i < 6; ++i) {
    tokens.push_back(100 + i);
    counts.push_back({20, 400});
    groups.push_back(7);
  }
  for (uint64_t i = 0; i < 3; ++i) {
    tokens.push_back(200 + i);
    counts.push_back({300, 15});
    groups.push_back(0);
  }
  ClassifierParams all;
  all.max_group_clues = 0;
  auto flat = classify(tokens, counts, kTrained, all, groups);
  auto grouped = classify(tokens, counts, kTrained, ClassifierParams{}, groups);
  EXPECT_EQ(flat.clues_used, 9u);
  EXPECT_EQ(grouped.clues_used, 4u);
  EXPECT_LT(flat.probability, 0.5);
  EXPECT_GT(grouped.probability, 0.7);
  // Without groups every clue counts, as before.
  EXPECT_EQ(classify(tokens, counts, kTrained).clues_used, 9u);
}
