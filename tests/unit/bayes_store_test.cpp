// BayesStore (bayes/bayes_store.h): counts, relearning without double counting, forgetting,
// namespaces, expiry and its size bound, and the learned-message digest.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "bayes/bayes_store.h"
#include "bayes/tokenizer.h"
#include "mail/message.h"
#include "state/store.h"

using namespace spamward;
using namespace std::chrono_literals;

namespace {

const std::string kDigestA(64, 'a');
const std::string kDigestB(64, 'b');

class BayesStoreTest : public ::testing::Test {
 protected:
  FakeClock clock;
  std::unique_ptr<Store> store = make_memory_store(clock);
};

}  // namespace

TEST_F(BayesStoreTest, LearnCountsOnce) {
  BayesStore db(*store, clock);
  std::vector<uint64_t> t = {1, 2, 3, 3};  // a repeated token counts once
  EXPECT_EQ(db.learn(kDigestA, t, MessageClass::spam), LearnOutcome::learned);
  EXPECT_EQ(db.learn(kDigestA, t, MessageClass::spam), LearnOutcome::already_learned);
  db.commit();
  EXPECT_EQ(db.totals().spam, 1u);
  EXPECT_EQ(db.totals().ham, 0u);
  auto c = db.lookup(std::vector<uint64_t>{1, 3, 99});
  EXPECT_EQ(c[0].spam, 1u);
  EXPECT_EQ(c[1].spam, 1u);
  EXPECT_EQ(c[2].spam + c[2].ham, 0u);
  EXPECT_EQ(db.token_count(), 3u);
  EXPECT_EQ(db.learned_as(kDigestA), MessageClass::spam);
  EXPECT_FALSE(db.learned_as(kDigestB).has_value());
}

TEST_F(BayesStoreTest, RelearnMovesBetweenClasses) {
  BayesStore db(*store, clock);
  std::vector<uint64_t> a = {1, 2}, b = {2, 3};
  db.learn(kDigestA, a, MessageClass::spam);
  db.learn(kDigestB, b, MessageClass::ham);
  db.commit();
  EXPECT_EQ(db.learn(kDigestA, a, MessageClass::ham), LearnOutcome::moved);
  EXPECT_EQ(db.totals().spam, 0u);
  EXPECT_EQ(db.totals().ham, 2u);
  auto c = db.lookup(std::vector<uint64_t>{1, 2, 3});
  EXPECT_EQ(c[0].spam, 0u);
  EXPECT_EQ(c[0].ham, 1u);
  EXPECT_EQ(c[1].ham, 2u);
  EXPECT_EQ(c[1].spam, 0u);
  // And back, across a commit and a fresh object (state is in the Store).
  db.commit();
  BayesStore again(*store, clock);
  EXPECT_EQ(again.learned_as(kDigestA), MessageClass::ham);
  EXPECT_EQ(again.learn(kDigestA, a, MessageClass::spam), LearnOutcome::moved);
  EXPECT_EQ(again.learn(kDigestA, a, MessageClass::spam), LearnOutcome::already_learned);
  again.commit();
  EXPECT_EQ(again.totals().spam, 1u);
  EXPECT_EQ(again.totals().ham, 1u);
  auto d = again.lookup(std::vector<uint64_t>{1, 2});
  EXPECT_EQ(d[0].spam, 1u);
  EXPECT_EQ(d[0].ham, 0u);
  EXPECT_EQ(d[1].spam, 1u);
  EXPECT_EQ(d[1].ham, 1u);
}

TEST_F(BayesStoreTest, ForgetRemovesAndNeverGoesNegative) {
  BayesStore db(*store, clock);
  std::vector<uint64_t> a = {1, 2};
  db.learn(kDigestA, a, MessageClass::spam);
  EXPECT_EQ(db.forget(kDigestA, a), LearnOutcome::forgotten);
  EXPECT_EQ(db.forget(kDigestA, a), LearnOutcome::not_learned);
  db.commit();
  EXPECT_EQ(db.totals().spam, 0u);
  EXPECT_EQ(db.token_count(), 0u);  // tokens at zero are deleted
  EXPECT_EQ(store->count("bayes_tokens"), 0);
  // A relearn with other tokens (e.g. a new tokenizer) clamps at zero.
  db.learn(kDigestB, std::vector<uint64_t>{5}, MessageClass::ham);
  db.commit();
  EXPECT_EQ(db.learn(kDigestB, std::vector<uint64_t>{6}, MessageClass::spam), LearnOutcome::moved);
  auto c = db.lookup(std::vector<uint64_t>{5, 6});
  EXPECT_EQ(c[0].ham, 1u);  // not among the tokens given: left as it was
  EXPECT_EQ(c[1].spam, 1u);
  EXPECT_EQ(c[1].ham, 0u);  // 0 - 1 clamps at 0 (an unsigned count never wraps)
  EXPECT_EQ(db.totals().ham, 0u);
  EXPECT_EQ(db.totals().spam, 1u);
}

TEST_F(BayesStoreTest, NamespacesAreSeparate) {
  BayesStore global(*store, clock), a(*store, clock, "a.example"), b(*store, clock, "b.example");
  a.learn(kDigestA, std::vector<uint64_t>{1}, MessageClass::spam);
  a.commit();
  EXPECT_EQ(a.totals().spam, 1u);
  EXPECT_EQ(b.totals().spam, 0u);
  EXPECT_EQ(global.totals().spam, 0u);
  EXPECT_EQ(b.lookup(std::vector<uint64_t>{1})[0].spam, 0u);
  EXPECT_FALSE(b.learned_as(kDigestA).has_value());
  EXPECT_EQ(b.learn(kDigestA, std::vector<uint64_t>{1}, MessageClass::ham), LearnOutcome::learned);
}

TEST_F(BayesStoreTest, BufferedWritesAreVisibleAndCommittedWhenFull) {
  BayesStore db(*store, clock, "", /*max_buffered_tokens=*/10);
  db.learn(kDigestA, std::vector<uint64_t>{1, 2, 3}, MessageClass::spam);
  EXPECT_EQ(db.lookup(std::vector<uint64_t>{1})[0].spam, 1u);  // before commit
  EXPECT_EQ(store->count("bayes_tokens"), 0);
  std::vector<uint64_t> many;
  for (uint64_t i = 100; i < 120; ++i) many.push_back(i);
  db.learn(kDigestB, many, MessageClass::ham);  // passes the buffer bound: written
  EXPECT_EQ(store->count("bayes_tokens"), 23);
}

TEST_F(BayesStoreTest, ExpiryRemovesRareStaleTokensAndKeepsTheBound) {
  BayesStore db(*store, clock);
  // Token 1 in 5 messages (common), tokens 1000.. once each (rare).
  for (int i = 0; i < 5; ++i) {
    std::string d = std::string(63, 'c') + static_cast<char>('0' + i);
    db.learn(d, std::vector<uint64_t>{1, 1000 + static_cast<uint64_t>(i)}, MessageClass::spam);
  }
  db.commit();
  clock.advance(std::chrono::hours(24 * 90));  // 90 days later
  // Recent rare tokens.
  for (int i = 0; i < 5; ++i) {
    std::string d = std::string(63, 'd') + static_cast<char>('0' + i);
    db.learn(d, std::vector<uint64_t>{2000 + static_cast<uint64_t>(i)}, MessageClass::ham);
  }
  db.commit();
  EXPECT_EQ(db.token_count(), 11u);

  ExpiryPolicy p;
  p.rare_count = 1;
  p.stale_days = 60;
  p.max_tokens = 100;
  auto r = db.expire(p);
  EXPECT_EQ(r.removed_stale, 5u);  // the old single-message tokens
  EXPECT_EQ(r.remaining, 6u);
  EXPECT_EQ(db.token_count(), 6u);
  EXPECT_EQ(db.lookup(std::vector<uint64_t>{1000})[0].spam, 0u);
  EXPECT_EQ(db.lookup(std::vector<uint64_t>{1})[0].spam, 5u);

  p.max_tokens = 3;  // the size bound: least useful go first; the common token stays
  r = db.expire(p);
  EXPECT_EQ(r.removed_for_size, 3u);
  EXPECT_EQ(r.remaining, 3u);
  EXPECT_EQ(store->count("bayes_tokens"), 3);
  EXPECT_EQ(db.token_count(), 3u);
  EXPECT_EQ(db.lookup(std::vector<uint64_t>{1})[0].spam, 5u);
  EXPECT_EQ(db.totals().spam, 5u);  // learned totals are untouched
}

TEST_F(BayesStoreTest, WorksOnLmdb) {
  std::string dir = testing::TempDir() + "spamward-bayes-XXXXXX";
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  {
    LmdbOptions o;
    o.path = dir;
    auto lmdb = open_lmdb_store(o, clock);
    BayesStore db(*lmdb, clock, "example.org");
    db.learn(kDigestA, std::vector<uint64_t>{7, 8}, MessageClass::spam);
    db.commit();
    lmdb->flush();
  }
  {
    LmdbOptions o;
    o.path = dir;
    auto lmdb = open_lmdb_store(o, clock);
    BayesStore db(*lmdb, clock, "example.org");
    EXPECT_EQ(db.totals().spam, 1u);
    EXPECT_EQ(db.lookup(std::vector<uint64_t>{8})[0].spam, 1u);
    EXPECT_EQ(db.learn(kDigestA, std::vector<uint64_t>{7, 8}, MessageClass::spam),
              LearnOutcome::already_learned);
  }
  std::filesystem::remove_all(dir);
}

TEST(LearnedMessageDigest, IgnoresAddedHeadersAndLineEnds) {
  const std::string base =
      "From: a@example.org\nTo: b@example.org\nSubject: hello\nDate: Mon, 2 Sep 2002 10:00:00 "
      "+0000\n"
      "Message-ID: <1@example.org>\n\nbody line\n";
  const std::string relayed =
      "Received: from x by y; Mon, 2 Sep 2002 10:00:01 +0000\nX-Spam-Status: No\nStatus: RO\n" +
      base + "\n\n";
  std::string crlf;
  for (char c : base) {
    if (c == '\n') crlf += '\r';
    crlf += c;
  }
  const std::string d = learned_message_digest(parse_message(base));
  EXPECT_EQ(d.size(), 64u);
  EXPECT_EQ(learned_message_digest(parse_message(relayed)), d);
  EXPECT_EQ(learned_message_digest(parse_message(crlf)), d);
  std::string other = base;
  other.replace(other.find("body"), 4, "BODY");
  EXPECT_NE(learned_message_digest(parse_message(other)), d);
  std::string other_subject = base;
  other_subject.replace(other_subject.find("hello"), 5, "howdy");
  EXPECT_NE(learned_message_digest(parse_message(other_subject)), d);
}
