// The logistic model (bayes/logistic.h) and how BayesStore and Bayes keep it: online steps,
// reproducible rebuilds from the stored token lists, the weight slots, the fallback to Fisher,
// expiry of token lists, and the BAYES_* mapping of its log-odds.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bayes/bayes.h"
#include "bayes/bayes_store.h"
#include "bayes/logistic.h"
#include "core/clock.h"
#include "mail/message.h"
#include "state/store.h"

using namespace spamward;
using namespace std::chrono_literals;

namespace {

std::string digest(int i, char cls) {
  std::string d = std::to_string(i) + cls;
  return std::string(64 - d.size(), '0') + d;  // 64 hex digits when d is; else kept as is
}

// Spam messages share tokens 1..20, ham 101..120; each also has tokens of its own.
std::vector<uint64_t> tokens_of(int i, bool spam) {
  std::vector<uint64_t> t;
  const uint64_t base = spam ? 1 : 101;
  for (uint64_t k = 0; k < 20; ++k) {
    if ((k + static_cast<uint64_t>(i)) % 3 != 0) t.push_back(base + k);  // a varying subset
  }
  t.push_back(10'000 + static_cast<uint64_t>(i) * 2 + (spam ? 1 : 0));
  return t;
}

struct ModelStore {
  FakeClock clock;
  std::unique_ptr<Store> store = make_memory_store(clock);
  BayesStore db{*store, clock};
  RebuildOptions options = [] {
    RebuildOptions o;
    o.min_learned = 5;
    return o;
  }();

  void teach(int n, bool spam, int from = 0) {
    for (int i = from; i < from + n; ++i) {
      db.learn(digest(i, spam ? 's' : 'h'), tokens_of(i, spam),
               spam ? MessageClass::spam : MessageClass::ham);
    }
  }
  double z(const std::vector<uint64_t>& tokens) {
    auto w = db.model_weights(tokens);
    if (!w) return NAN;
    return logistic_score(w->weights, w->bias, options.params);
  }
};

Message message_with(const std::string& subject, const std::string& body) {
  return parse_message("From: a@example.org\r\nTo: b@example.net\r\nSubject: " + subject +
                       "\r\nMessage-ID: <" + subject + "@example.org>\r\n\r\n" + body + "\r\n");
}

}  // namespace

TEST(Logistic, StepOnExplicitWeightsMatchesTheModel) {
  LogisticParams p;
  LogisticModel model;
  std::vector<uint64_t> f = {7, 8, 9};
  ASSERT_TRUE(model.train(f, true, p));
  std::vector<float> w(3, 0.0f);
  float bias = 0;
  ASSERT_TRUE(logistic_step(w, bias, true, p));
  for (size_t i = 0; i < f.size(); ++i) EXPECT_FLOAT_EQ(model.weights().at(f[i]), w[i]);
  EXPECT_FLOAT_EQ(model.bias(), bias);
  // From p = 0.5, one step of rate 1 moves z by (1 - 0.5) * (3 * (1/sqrt 3)^2 + 1) = 1.0.
  EXPECT_NEAR(logistic_score(w, bias, p), 1.0, 1e-6);
  EXPECT_NEAR(model.score(f, p), 1.0, 1e-6);
}

TEST(Logistic, NoStepInsideTheMarginAndWeightsAreBounded) {
  LogisticParams p;
  p.thick = 0.1;
  p.max_weight = 2;
  std::vector<float> w = {2.0f, 2.0f};
  float bias = 2.0f;  // z = 2 + 4/sqrt(2) ~ 4.8: p ~ 0.99, inside the margin for spam
  EXPECT_FALSE(logistic_step(w, bias, true, p));
  ASSERT_TRUE(logistic_step(w, bias, false, p));  // far outside for ham
  EXPECT_LT(w[0], 2.0f);
  std::vector<float> big = {1.9f};
  float b = 1.9f;
  p.thick = 0;
  for (int i = 0; i < 50; ++i) logistic_step(big, b, true, p);
  EXPECT_LE(big[0], 2.0f);
  EXPECT_LE(b, 2.0f);
}

TEST(Logistic, TrainingIsReproducibleBySeedAndSeparatesTheClasses) {
  std::vector<std::vector<uint64_t>> lists;
  std::vector<LogisticExample> examples;
  for (int i = 0; i < 40; ++i) lists.push_back(tokens_of(i, i % 2 == 0));
  for (int i = 0; i < 40; ++i) examples.push_back({lists[i], i % 2 == 0});
  LogisticParams p;
  LogisticModel a = train_logistic(examples, 20, 7, p);
  LogisticModel b = train_logistic(examples, 20, 7, p);
  EXPECT_EQ(a.weights(), b.weights());
  EXPECT_EQ(a.bias(), b.bias());
  for (int i = 0; i < 40; ++i) {
    const double z = a.score(lists[i], p);
    if (i % 2 == 0) {
      EXPECT_GT(z, 0) << i;
    } else {
      EXPECT_LT(z, 0) << i;
    }
  }
}

TEST(BayesModel, NoModelUntilMinLearnedRecordsOfEachClass) {
  ModelStore m;
  EXPECT_FALSE(m.db.model_weights(tokens_of(0, true)));
  EXPECT_EQ(m.db.step(tokens_of(0, true), MessageClass::spam, m.options.params), 0);
  m.teach(5, true);
  m.teach(4, false);
  RebuildResult r = m.db.rebuild(m.options);
  EXPECT_FALSE(r.built);
  EXPECT_EQ(r.spam, 5u);
  EXPECT_EQ(r.ham, 4u);
  EXPECT_FALSE(m.db.model_info().present);
  m.teach(1, false, 4);
  r = m.db.rebuild(m.options);
  ASSERT_TRUE(r.built);
  EXPECT_EQ(r.generation, 1u);
  EXPECT_GT(r.weights, 0u);
  const ModelInfo info = m.db.model_info();
  EXPECT_TRUE(info.present);
  EXPECT_EQ(info.messages, 10u);
  EXPECT_EQ(info.weights, r.weights);
  EXPECT_GT(m.z(tokens_of(50, true)), 0);
  EXPECT_LT(m.z(tokens_of(50, false)), 0);
}

TEST(BayesModel, RebuildSwitchesSlotsAndKeepsOnlyThePreviousModel) {
  ModelStore m;
  m.teach(6, true);
  m.teach(6, false);
  const RebuildResult first = m.db.rebuild(m.options);
  ASSERT_TRUE(first.built);
  m.store->flush();
  EXPECT_EQ(m.store->count("bayes_weights"), static_cast<int64_t>(first.weights));
  const double z_before = m.z(tokens_of(60, true));
  m.teach(6, true, 6);
  const RebuildResult second = m.db.rebuild(m.options);
  ASSERT_TRUE(second.built);
  EXPECT_EQ(second.generation, 2u);
  m.store->flush();
  // The previous model stays in the other slot until the next rebuild writes there (a
  // concurrent rebuild elsewhere may be writing into it).
  EXPECT_EQ(m.store->count("bayes_weights"), static_cast<int64_t>(first.weights + second.weights));
  EXPECT_NE(m.z(tokens_of(60, true)), z_before);
  // The same data and seed give the same model (a rebuild is reproducible).
  const double z_now = m.z(tokens_of(60, true));
  const RebuildResult third = m.db.rebuild(m.options);
  EXPECT_DOUBLE_EQ(m.z(tokens_of(60, true)), z_now);
  m.store->flush();  // the first model's slot was overwritten: two models remain, never more
  EXPECT_EQ(m.store->count("bayes_weights"), static_cast<int64_t>(second.weights + third.weights));
  // Forgetting under min_learned removes the model and its weights.
  for (int i = 0; i < 6; ++i) m.db.forget(digest(i, 'h'), tokens_of(i, false));
  EXPECT_FALSE(m.db.rebuild(m.options).built);
  m.store->flush();
  EXPECT_FALSE(m.db.model_info().present);
  EXPECT_EQ(m.store->count("bayes_weights"), 0);
}

TEST(BayesModel, RecordsWithoutTokensCountButDoNotTrain) {
  ModelStore m;
  m.teach(5, true);
  m.teach(5, false);
  m.db.commit();
  // A record as written before the model: class and day only.
  std::string old_record = "s";
  old_record.append(4, '\0');
  m.store->put("bayes_learned", "/" + std::string(32, '\x07'), old_record);
  const RebuildResult r = m.db.rebuild(m.options);
  EXPECT_TRUE(r.built);
  EXPECT_EQ(r.spam, 5u);  // the old record is not trained on
  // Learning such a message again as the same class changes no counts.
  EXPECT_EQ(m.db.learn(digest(0, 's'), tokens_of(0, true), MessageClass::spam),
            LearnOutcome::already_learned);
}

TEST(BayesModel, OnlineStepsMoveAMessageTowardItsClass) {
  ModelStore m;
  m.teach(6, true);
  m.teach(6, false);
  ASSERT_TRUE(m.db.rebuild(m.options).built);
  // A hammy message an admin says is spam.
  const std::vector<uint64_t> t = tokens_of(70, false);
  const double before = m.z(t);
  ASSERT_LT(before, 0);
  const int steps = m.db.step(t, MessageClass::spam, m.options.params, 10);
  EXPECT_GT(steps, 0);
  EXPECT_LE(steps, 10);
  EXPECT_GT(m.z(t), before);
  EXPECT_EQ(m.db.model_info().steps, static_cast<uint64_t>(steps));
  // Once inside the margin, no more steps.
  while (m.db.step(t, MessageClass::spam, m.options.params, 10) > 0) {
  }
  EXPECT_GT(1.0 / (1.0 + std::exp(-m.z(t))), 1.0 - m.options.params.thick - 1e-6);
  EXPECT_EQ(m.db.step(t, MessageClass::spam, m.options.params, 10), 0);
}

TEST(BayesModel, InMemoryWeightsFollowOwnStepsAndOtherWritersRebuilds) {
  ModelStore m;
  m.teach(6, true);
  m.teach(6, false);
  ASSERT_TRUE(m.db.rebuild(m.options).built);
  // A second object on the same store stands for another process (the CLI, a second daemon).
  BayesStore other(*m.store, m.clock);
  const std::vector<uint64_t> t = tokens_of(70, false);
  const double first = m.z(t);  // loads this object's copy
  EXPECT_DOUBLE_EQ(first, logistic_score(other.model_weights(t)->weights,
                                         other.model_weights(t)->bias, m.options.params));
  // Own steps keep the copy current: it answers what the store holds.
  ASSERT_GT(m.db.step(t, MessageClass::spam, m.options.params, 3), 0);
  auto mine = m.db.model_weights(t);
  auto stored = other.model_weights(t);  // reloads from the store: the steps count changed
  ASSERT_TRUE(mine && stored);
  EXPECT_EQ(mine->weights, stored->weights);
  EXPECT_EQ(mine->bias, stored->bias);
  EXPECT_GT(m.z(t), first);
  // Another writer's steps and rebuilds are seen at the next classification.
  ASSERT_GT(other.step(t, MessageClass::ham, m.options.params, 10), 0);
  EXPECT_EQ(m.db.model_weights(t)->weights, other.model_weights(t)->weights);
  m.teach(6, true, 100);
  m.db.commit();
  ASSERT_TRUE(other.rebuild(m.options).built);
  EXPECT_EQ(m.db.model_weights(t)->weights, other.model_weights(t)->weights);
  EXPECT_EQ(m.db.model_info().generation, 2u);
}

TEST(BayesModel, RebuildUsesOnlyTokensThatSurviveExpiry) {
  ModelStore m;
  m.teach(6, true);
  m.teach(6, false);
  m.clock.advance(std::chrono::hours(24 * 100));
  ExpiryPolicy policy;  // each message's own token is in one message and 100 days old
  const ExpiryResult expired = m.db.expire(policy);
  EXPECT_EQ(expired.removed_stale, 12u);
  ASSERT_TRUE(m.db.rebuild(m.options).built);
  auto w = m.db.model_weights(std::vector<uint64_t>{10'000, 10'001, 1});
  ASSERT_TRUE(w);
  EXPECT_EQ(w->weights[0], 0.0f);  // expired: no weight
  EXPECT_EQ(w->weights[1], 0.0f);
  EXPECT_NE(w->weights[2], 0.0f);
}

TEST(BayesModel, ExpiryKeepsTheNewestTokenLists) {
  ModelStore m;
  m.teach(4, true);
  m.db.commit();  // a record's day is the day it is written
  m.clock.advance(std::chrono::hours(48));
  m.teach(4, true, 4);
  m.teach(4, false);
  ExpiryPolicy policy;
  policy.max_token_lists = 8;
  const ExpiryResult r = m.db.expire(policy);
  EXPECT_EQ(r.token_lists_dropped, 4u);
  m.options.min_learned = 4;
  const RebuildResult rebuilt = m.db.rebuild(m.options);
  EXPECT_EQ(rebuilt.spam, 4u);  // the four older spam lost their lists ...
  EXPECT_EQ(rebuilt.ham, 4u);
  // ... but are still known: never counted twice.
  EXPECT_EQ(m.db.learned_as(digest(0, 's')), MessageClass::spam);
  EXPECT_EQ(m.db.totals().spam, 8u);
}

TEST(BayesModel, SurvivesReopeningOnLmdb) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("spamward-model-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  FakeClock clock;
  RebuildOptions options;
  options.min_learned = 5;
  double z = 0;
  {
    LmdbOptions o;
    o.path = dir.string();
    auto store = open_lmdb_store(o, clock);
    BayesStore db(*store, clock);
    for (int i = 0; i < 6; ++i) {
      db.learn(digest(i, 's'), tokens_of(i, true), MessageClass::spam);
      db.learn(digest(i, 'h'), tokens_of(i, false), MessageClass::ham);
    }
    ASSERT_TRUE(db.rebuild(options).built);
    auto w = db.model_weights(tokens_of(80, true));
    ASSERT_TRUE(w);
    z = logistic_score(w->weights, w->bias, options.params);
    store->flush();
  }
  LmdbOptions o;
  o.path = dir.string();
  auto store = open_lmdb_store(o, clock);
  BayesStore db(*store, clock);
  auto w = db.model_weights(tokens_of(80, true));
  ASSERT_TRUE(w);
  EXPECT_DOUBLE_EQ(logistic_score(w->weights, w->bias, options.params), z);
  EXPECT_EQ(db.model_info().generation, 1u);
  store.reset();
  std::filesystem::remove_all(dir);
}

TEST(BayesModel, ServiceClassifiesWithTheModelAndFallsBackToFisher) {
  FakeClock clock;
  auto store = make_memory_store(clock);
  BayesOptions options;
  options.min_learned = 3;
  Bayes bayes(*store, clock, options);
  for (int i = 0; i < 4; ++i) {
    bayes.learn(message_with("s" + std::to_string(i), "cheap pills casino prize winner"),
                MessageClass::spam);
    bayes.learn(message_with("h" + std::to_string(i), "agenda budget quarterly meeting notes"),
                MessageClass::ham);
  }
  bayes.commit();
  const Message spam = message_with("new", "cheap casino pills");
  // No rebuild yet: Fisher over the counts.
  BayesResult r = bayes.classify(spam, {});
  ASSERT_TRUE(r.classification.active);
  EXPECT_EQ(r.classification.model, BayesModel::fisher);
  ASSERT_TRUE(bayes.rebuild().built);
  r = bayes.classify(spam, {});
  ASSERT_TRUE(r.classification.active);
  EXPECT_EQ(r.classification.model, BayesModel::logistic);
  EXPECT_GT(r.classification.log_odds, 0);
  EXPECT_GT(r.classification.clues_used, 0u);
  EXPECT_LT(
      bayes.classify(message_with("new2", "quarterly budget agenda"), {}).classification.log_odds,
      0);
  // model = fisher never uses the model.
  BayesOptions fisher = options;
  fisher.model = BayesModel::fisher;
  Bayes plain(*store, clock, fisher);
  EXPECT_EQ(plain.classify(spam, {}).classification.model, BayesModel::fisher);
  EXPECT_FALSE(plain.rebuild().built);
}

TEST(BayesModel, ServiceStepsOnLearningAndRebuildsWhatChanged) {
  FakeClock clock;
  auto store = make_memory_store(clock);
  BayesOptions options;
  options.min_learned = 3;
  options.per_domain = true;
  Bayes bayes(*store, clock, options);
  for (const std::string ns : {"", "example.org"}) {
    for (int i = 0; i < 4; ++i) {
      bayes.learn(message_with(ns + "s" + std::to_string(i), "cheap pills casino prize winner"),
                  MessageClass::spam, ns);
      bayes.learn(message_with(ns + "h" + std::to_string(i), "agenda budget quarterly meeting"),
                  MessageClass::ham, ns);
    }
  }
  bayes.rebuild_changed(true);
  EXPECT_EQ(bayes.model_info("").generation, 1u);
  EXPECT_EQ(bayes.model_info("example.org").generation, 1u);
  // A hammy-looking message taught as spam: one online step or more, at once.
  const Message odd = message_with("odd", "quarterly budget agenda pills");
  const double before = bayes.classify(odd, {}).classification.log_odds;
  EXPECT_EQ(bayes.learn(odd, MessageClass::spam), LearnOutcome::learned);
  EXPECT_GT(bayes.classify(odd, {}).classification.log_odds, before);
  EXPECT_GT(bayes.model_info("").steps, 0u);
  // Only the global database changed since: only it is rebuilt.
  bayes.rebuild_changed();
  EXPECT_EQ(bayes.model_info("").generation, 2u);
  EXPECT_EQ(bayes.model_info("").steps, 0u);
  EXPECT_EQ(bayes.model_info("example.org").generation, 1u);
  bayes.rebuild_changed();  // nothing changed
  EXPECT_EQ(bayes.model_info("").generation, 2u);
  // Without online steps (the bulk learners) learning leaves the model as it is.
  BayesOptions bulk = options;
  bulk.online_steps = false;
  Bayes learner(*store, clock, bulk);
  learner.learn(message_with("odd2", "quarterly budget agenda casino"), MessageClass::spam);
  EXPECT_EQ(learner.model_info("").steps, 0u);
}

TEST(BayesModel, SymbolGrowsWithTheLogOdds) {
  BayesScoring s;
  Classification c;
  c.active = true;
  c.model = BayesModel::logistic;
  c.clues_used = 10;
  auto at = [&](double z) {
    c.log_odds = z;
    c.probability = 1.0 / (1.0 + std::exp(-z));
    return bayes_symbol(c, s);
  };
  EXPECT_FALSE(at((s.z_spam_from + s.z_ham_below) / 2));  // the uncertain middle
  auto low = at(s.z_spam_from);
  ASSERT_TRUE(low);
  EXPECT_EQ(low->name, "BAYES_SPAM");
  EXPECT_DOUBLE_EQ(low->score, s.spam_min);
  EXPECT_DOUBLE_EQ(at(s.z_spam_full)->score, s.spam_max);
  EXPECT_DOUBLE_EQ(at(s.z_spam_full + 10)->score, s.spam_max);
  EXPECT_LT(at(s.z_spam_from + 0.1)->score, at(s.z_spam_from + 0.5)->score);
  auto ham = at(s.z_ham_full - 1);
  ASSERT_TRUE(ham);
  EXPECT_EQ(ham->name, "BAYES_HAM");
  EXPECT_DOUBLE_EQ(ham->score, s.ham_max);
  EXPECT_NE(ham->detail.find("z="), std::string::npos);
  c.clues_used = 0;  // no known token: no evidence
  EXPECT_FALSE(at(s.z_spam_full));
}

// Several hosts (here: BayesStore objects on one Store) rebuild the same database at the same
// time, as the daemons of a cluster sharing Redis may. Whatever the interleaving, once both
// are done the live slot must hold every weight of its model: no rebuild may erase weights
// another is writing (a model missing them would stay until the next rebuild, an hour later).
TEST(BayesModel, ConcurrentRebuildsByTwoHostsLeaveAWholeModel) {
  FakeClock clock;
  std::unique_ptr<Store> store = make_memory_store(clock);
  BayesStore a(*store, clock), b(*store, clock), reader(*store, clock);
  RebuildOptions options;
  options.min_learned = 5;
  std::vector<uint64_t> all;
  for (int i = 0; i < 40; ++i) {
    for (bool spam : {true, false}) {
      auto t = tokens_of(i, spam);
      a.learn(digest(i, spam ? 's' : 'h'), t, spam ? MessageClass::spam : MessageClass::ham);
      all.insert(all.end(), t.begin(), t.end());
    }
  }
  a.commit();
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  for (int round = 0; round < 300; ++round) {
    std::atomic<int> ready = 0;
    std::vector<std::thread> hosts;
    // The second host starts a little later each round, so that its rebuild meets every
    // phase of the first one's (reading, training, writing, switching, cleaning up).
    const auto lag = std::chrono::microseconds(round % 30 * 20);
    for (BayesStore* db : {&a, &b}) {
      const auto delay = db == &b ? lag : std::chrono::microseconds(0);
      hosts.emplace_back([db, delay, &options, &ready] {
        ++ready;
        while (ready.load() < 2) {  // start together, then wait out the delay
        }
        const auto start = std::chrono::steady_clock::now();
        while (std::chrono::steady_clock::now() - start < delay) {
        }
        db->rebuild(options);
      });
    }
    for (auto& t : hosts) t.join();
    const ModelInfo info = reader.model_info();
    ASSERT_TRUE(info.present);
    auto weights = reader.model_weights(all);
    ASSERT_TRUE(weights);
    const auto nonzero = std::count_if(weights->weights.begin(), weights->weights.end(),
                                       [](float w) { return w != 0.0f; });
    ASSERT_EQ(static_cast<uint64_t>(nonzero), info.weights) << "round " << round;
  }
}
