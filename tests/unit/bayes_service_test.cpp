// Bayes as the daemon uses it (bayes/bayes.h): databases per domain with the global fallback,
// learning once, autolearning that never overrides an admin, and the autolearn rule.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "bayes/bayes.h"
#include "core/clock.h"
#include "mail/message.h"
#include "state/store.h"

using namespace spamward;

namespace {

Symbol sym(std::string name, double score, Family family) {
  Symbol s;
  s.name = std::move(name);
  s.score = score;
  s.family = family;
  return s;
}

Message message_with(const std::string& subject, const std::string& body) {
  return parse_message("From: a@example.org\r\nTo: b@example.net\r\nSubject: " + subject +
                       "\r\nMessage-ID: <" + subject + "@example.org>\r\n\r\n" + body + "\r\n");
}

struct BayesHarness {
  FakeClock clock;
  std::unique_ptr<Store> store = make_memory_store(clock);
  BayesOptions options = [] {
    BayesOptions o;
    o.min_learned = 3;
    return o;
  }();
  std::unique_ptr<Bayes> bayes;

  Bayes& make() {
    bayes = std::make_unique<Bayes>(*store, clock, options);
    return *bayes;
  }
  // Learns n distinct messages of a class with words typical of it.
  void teach(Bayes& b, MessageClass cls, int n, const std::string& ns = {}) {
    for (int i = 0; i < n; ++i) {
      std::string tag = (cls == MessageClass::spam ? "spam" : "ham") + std::to_string(i);
      std::string body = cls == MessageClass::spam
                             ? "cheap pills viagra casino winner prize " + tag
                             : "meeting agenda quarterly report budget review " + tag;
      b.learn(message_with(tag, body), cls, ns);
    }
    b.commit();
  }
};

}  // namespace

TEST(BayesService, InactiveUntilMinLearnedOfBothClasses) {
  BayesHarness h;
  Bayes& b = h.make();
  h.teach(b, MessageClass::spam, 3);
  h.teach(b, MessageClass::ham, 2);
  auto msg = message_with("x", "cheap pills casino");
  EXPECT_FALSE(b.classify(msg, {}).classification.active);
  h.teach(b, MessageClass::ham, 3);
  auto result = b.classify(msg, {});
  EXPECT_TRUE(result.classification.active);
  EXPECT_GT(result.classification.probability, 0.9);
  EXPECT_LT(b.classify(message_with("y", "quarterly budget meeting agenda"), {})
                .classification.probability,
            0.1);
}

TEST(BayesService, RelearningMovesAndNeverCountsTwice) {
  BayesHarness h;
  Bayes& b = h.make();
  auto msg = message_with("once", "some words here");
  EXPECT_EQ(b.learn(msg, MessageClass::spam), LearnOutcome::learned);
  EXPECT_EQ(b.learn(msg, MessageClass::spam), LearnOutcome::already_learned);
  EXPECT_EQ(b.totals().spam, 1u);
  EXPECT_EQ(b.learn(msg, MessageClass::ham), LearnOutcome::moved);
  EXPECT_EQ(b.totals().spam, 0u);
  EXPECT_EQ(b.totals().ham, 1u);
  EXPECT_EQ(b.forget(msg), LearnOutcome::forgotten);
  EXPECT_EQ(b.totals().ham, 0u);
}

TEST(BayesService, AutolearnNeverOverridesManualLearning) {
  BayesHarness h;
  Bayes& b = h.make();
  auto msg = message_with("taught", "the admin says this is ham");
  b.learn(msg, MessageClass::ham);
  bool learned = true;
  b.autolearn(msg, MessageClass::spam, {}, learned);
  EXPECT_FALSE(learned);
  EXPECT_EQ(b.totals().ham, 1u);
  EXPECT_EQ(b.totals().spam, 0u);
  // ... while a manual lesson moves an autolearned message.
  auto other = message_with("auto", "autolearned first");
  b.autolearn(other, MessageClass::spam, {}, learned);
  EXPECT_TRUE(learned);
  EXPECT_EQ(b.learn(other, MessageClass::ham), LearnOutcome::moved);
}

TEST(BayesService, PerDomainDatabasesFallBackToTheGlobalOne) {
  BayesHarness h;
  h.options.per_domain = true;
  Bayes& b = h.make();
  EXPECT_EQ(b.namespace_for({"User@Example.ORG"}), "example.org");
  EXPECT_EQ(b.namespace_for({}), "");
  h.teach(b, MessageClass::spam, 3);
  h.teach(b, MessageClass::ham, 3);
  auto msg = message_with("x", "cheap pills casino");
  // example.org has learned nothing: the global database answers.
  auto result = b.classify(msg, {"u@example.org"});
  EXPECT_TRUE(result.classification.active);
  EXPECT_EQ(result.ns, "");
  h.teach(b, MessageClass::spam, 3, "example.org");
  h.teach(b, MessageClass::ham, 3, "example.org");
  result = b.classify(msg, {"u@example.org"});
  EXPECT_EQ(result.ns, "example.org");
  EXPECT_EQ(b.totals("example.org").spam, 3u);
  EXPECT_EQ(b.totals("").spam, 3u);  // separate counts
}

TEST(BayesService, DatabasesSurviveANewBayesObject) {
  BayesHarness h;
  {
    Bayes& b = h.make();
    h.teach(b, MessageClass::spam, 3);
  }
  Bayes& again = h.make();
  EXPECT_EQ(again.totals().spam, 3u);
}

TEST(Autolearn, SpamNeedsRejectScoreAndTwoNonBayesFamilies) {
  const double reject = 15.0;
  // Over reject, but one family besides Bayes: no.
  EXPECT_FALSE(autolearn_class(
      {sym("RBL_A", 9, Family::dnsbl), sym("BAYES_SPAM", 7, Family::content)}, reject, -1.0));
  // Two families, each at least 1.0, and the total at reject: spam.
  EXPECT_EQ(autolearn_class({sym("RBL_A", 9, Family::dnsbl), sym("RDNS_NONE", 1, Family::rfc),
                             sym("BAYES_SPAM", 5, Family::content)},
                            reject, -1.0),
            MessageClass::spam);
  // A family under 1.0 is not evidence.
  EXPECT_FALSE(autolearn_class({sym("RBL_A", 14.5, Family::dnsbl), sym("HDR_X", 0.5, Family::rfc),
                                sym("BAYES_SPAM", 7, Family::content)},
                               reject, -1.0));
  // The admin test string is never learned.
  EXPECT_FALSE(autolearn_class({sym("GTUBE", 1000, Family::admin), sym("RBL_A", 9, Family::dnsbl),
                                sym("RDNS_NONE", 6, Family::rfc)},
                               reject, -1.0));
}

TEST(Autolearn, HamNeedsAClearlyNegativeScoreWithoutBayes) {
  const double reject = 15.0;
  EXPECT_EQ(autolearn_class({sym("DNSWL_X", -2, Family::dnsbl)}, reject, -1.0), MessageClass::ham);
  // Bayes alone saying ham is not enough: it would teach itself.
  EXPECT_FALSE(autolearn_class({sym("BAYES_HAM", -3, Family::content)}, reject, -1.0));
  EXPECT_FALSE(autolearn_class({}, reject, -1.0));
}

TEST(BayesService, ExplainsTheLogisticModelTokenByToken) {
  BayesHarness h;
  Bayes& b = h.make();
  h.teach(b, MessageClass::spam, 5);
  h.teach(b, MessageClass::ham, 5);
  b.rebuild();
  const Message msg = message_with("x", "cheap pills casino meeting");
  const BayesResult plain = b.classify(msg, {});
  ASSERT_TRUE(plain.classification.active);
  ASSERT_EQ(plain.classification.model, BayesModel::logistic);
  EXPECT_TRUE(plain.classification.top.empty());  // the daemon's path names nothing

  const BayesResult explained = b.classify(msg, {}, 1000);  // every weighted token
  const Classification& c = explained.classification;
  EXPECT_DOUBLE_EQ(c.log_odds, plain.classification.log_odds);
  EXPECT_EQ(explained.totals.spam, 5u);
  EXPECT_EQ(explained.totals.ham, 5u);
  ASSERT_EQ(c.top.size(), c.clues_used);
  // The bias and the listed shares add up to z, strongest first, each named.
  double sum = c.bias;
  for (size_t i = 0; i < c.top.size(); ++i) {
    sum += c.top[i].weight;
    EXPECT_FALSE(c.top[i].text.empty());
    if (i > 0) {
      EXPECT_GE(std::fabs(c.top[i - 1].weight), std::fabs(c.top[i].weight));
    }
  }
  EXPECT_NEAR(sum, c.log_odds, 1e-4);
  auto share_of = [&](const std::string& text) {
    for (const Clue& clue : c.top)
      if (clue.text == text) return clue.weight;
    ADD_FAILURE() << text << " not explained";
    return 0.0;
  };
  EXPECT_GT(share_of("cheap"), 0);
  EXPECT_LT(share_of("meeting"), 0);

  const BayesResult three = b.classify(msg, {}, 3);
  ASSERT_EQ(three.classification.top.size(), 3u);
  EXPECT_EQ(three.classification.top[0].text, c.top[0].text);
}

TEST(BayesService, ExplainsFisherCluesWithTheirCounts) {
  BayesHarness h;
  h.options.model = BayesModel::fisher;
  Bayes& b = h.make();
  h.teach(b, MessageClass::spam, 5);
  h.teach(b, MessageClass::ham, 5);
  const BayesResult r = b.classify(message_with("x", "cheap pills casino"), {}, 2);
  const Classification& c = r.classification;
  ASSERT_TRUE(c.active);
  EXPECT_EQ(c.model, BayesModel::fisher);
  ASSERT_EQ(c.top.size(), 2u);
  for (const Clue& clue : c.top) {
    EXPECT_FALSE(clue.text.empty());
    EXPECT_GT(clue.f, 0.5);
    EXPECT_EQ(clue.counts.spam, 5u);
    EXPECT_EQ(clue.counts.ham, 0u);
  }
}

TEST(BayesService, AnInactiveClassifierReportsWhatIsLearned) {
  BayesHarness h;
  Bayes& b = h.make();
  h.teach(b, MessageClass::spam, 2);
  const BayesResult r = b.classify(message_with("x", "cheap"), {}, 5);
  EXPECT_FALSE(r.classification.active);
  EXPECT_EQ(r.totals.spam, 2u);
  EXPECT_EQ(r.totals.ham, 0u);
  EXPECT_TRUE(r.classification.top.empty());
}
