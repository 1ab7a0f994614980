// GreylistTable (state/greylist.h) on the in-memory store with a fake clock.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "state/greylist.h"

using namespace spamward;
using namespace std::chrono_literals;

namespace {

class GreylistTest : public testing::Test {
 protected:
  GreylistKey key(std::string recipient = "bob@example.net",
                  std::string sender = "alice@example.org", std::string network = "192.0.2.0/24") {
    return {std::move(network), std::move(sender), std::move(recipient)};
  }

  // One attempt in a fresh transaction, as a retrying MTA makes it.
  GreylistAnswer attempt(const GreylistKey& k, bool peek = false) {
    return table_.attempt(k, entities_, "tx" + std::to_string(++tx_counter_), peek);
  }

  // Defers `k`, waits min_delay and passes it: one successful retry.
  void pass(const GreylistKey& k) {
    ASSERT_EQ(attempt(k).outcome, GreylistOutcome::deferred_new);
    clock_.advance(config_.min_delay);
    ASSERT_EQ(attempt(k).outcome, GreylistOutcome::passed_now);
  }

  FakeClock clock_;
  std::unique_ptr<Store> store_ = make_memory_store(clock_);
  GreylistConfig config_;
  GreylistTable table_{*store_, clock_, config_};
  std::vector<std::string> entities_{"192.0.2.0/24"};
  int tx_counter_ = 0;
};

TEST_F(GreylistTest, ACorrectMtaRetryingAfterFiveMinutesPasses) {
  const TimePoint start = clock_.now();
  GreylistAnswer first = attempt(key());
  EXPECT_EQ(first.outcome, GreylistOutcome::deferred_new);
  EXPECT_TRUE(deferred(first.outcome));
  EXPECT_EQ(first.first_seen, start);
  EXPECT_EQ(first.retry_at, start + 5min);
  EXPECT_EQ(first.early_retries, 0);
  EXPECT_FALSE(first.hammering);
  EXPECT_FALSE(first.hammered);

  clock_.advance(5min);
  GreylistAnswer retry = attempt(key());
  EXPECT_EQ(retry.outcome, GreylistOutcome::passed_now);
  EXPECT_FALSE(deferred(retry.outcome));
  EXPECT_EQ(retry.first_seen, start);

  auto entity = table_.entity("192.0.2.0/24");
  ASSERT_TRUE(entity);
  EXPECT_EQ(entity->successful_retries, 1);
  EXPECT_EQ(entity->last_success, start + 5min);
  EXPECT_FALSE(entity->auto_allowed_until);
  EXPECT_TRUE(table_.ever_passed(entities_));
}

TEST_F(GreylistTest, MinDelayIsInclusive) {
  attempt(key());
  clock_.advance(5min - 1ms);
  EXPECT_EQ(attempt(key()).outcome, GreylistOutcome::deferred_early);
  clock_.advance(1ms);
  EXPECT_EQ(attempt(key()).outcome, GreylistOutcome::passed_now);
}

TEST_F(GreylistTest, LaterAttemptsOfAPassedTripletPassBeforeAndCountOnce) {
  pass(key());
  for (int i = 0; i < 3; ++i) {
    clock_.advance(1h);
    GreylistAnswer a = attempt(key());
    EXPECT_EQ(a.outcome, GreylistOutcome::passed_before);
  }
  EXPECT_EQ(table_.entity("192.0.2.0/24")->successful_retries, 1);
}

TEST_F(GreylistTest, AutoAllowedAfterAutoAllowAfterDistinctTripletsAndNotBefore) {
  ASSERT_EQ(config_.auto_allow_after, 3);
  pass(key("r1@example.net"));
  pass(key("r2@example.net"));
  EXPECT_FALSE(table_.auto_allowed_until("192.0.2.0/24"));
  EXPECT_FALSE(table_.entity("192.0.2.0/24")->auto_allowed_until);
  pass(key("r3@example.net"));
  const TimePoint third_pass = clock_.now();
  auto until = table_.auto_allowed_until("192.0.2.0/24");
  ASSERT_TRUE(until);
  EXPECT_EQ(*until, third_pass + config_.auto_allow_ttl);
  auto entity = table_.entity("192.0.2.0/24");
  ASSERT_TRUE(entity);
  EXPECT_EQ(entity->successful_retries, 3);
  EXPECT_EQ(entity->auto_allowed_until, until);
  // Other networks earn nothing from it.
  EXPECT_FALSE(table_.auto_allowed_until("198.51.100.0/24"));

  // It lapses auto_allow_ttl after the last success, and the entity is forgotten.
  clock_.advance(config_.auto_allow_ttl - 1ms);
  EXPECT_TRUE(table_.auto_allowed_until("192.0.2.0/24"));
  clock_.advance(1ms);
  EXPECT_FALSE(table_.auto_allowed_until("192.0.2.0/24"));
  EXPECT_FALSE(table_.entity("192.0.2.0/24"));
}

TEST_F(GreylistTest, OneTripletPassingRepeatedlyIsNotAutoAllowed) {
  pass(key());
  for (int i = 0; i < 5; ++i) attempt(key());
  EXPECT_FALSE(table_.auto_allowed_until("192.0.2.0/24"));
}

TEST_F(GreylistTest, EveryEntityGivenIsCredited) {
  entities_ = {"192.0.2.0/24", "spf:example.org"};
  pass(key("r1@example.net"));
  EXPECT_EQ(table_.entity("192.0.2.0/24")->successful_retries, 1);
  EXPECT_EQ(table_.entity("spf:example.org")->successful_retries, 1);
  std::vector<std::string> spf_only{"spf:example.org"};
  EXPECT_TRUE(table_.ever_passed(spf_only));
  std::vector<std::string> other{"198.51.100.0/24"};
  EXPECT_FALSE(table_.ever_passed(other));
}

TEST_F(GreylistTest, AnEarlyRetryIsDeferredAndDoesNotCount) {
  const TimePoint start = clock_.now();
  attempt(key());
  clock_.advance(1min);
  GreylistAnswer early = attempt(key());
  EXPECT_EQ(early.outcome, GreylistOutcome::deferred_early);
  EXPECT_EQ(early.early_retries, 1);
  EXPECT_EQ(early.first_seen, start);  // the clock does not restart
  EXPECT_EQ(early.retry_at, start + 5min);
  EXPECT_FALSE(early.hammering);
  EXPECT_FALSE(table_.entity("192.0.2.0/24"));
  EXPECT_FALSE(table_.ever_passed(entities_));
  clock_.advance(1min);
  EXPECT_EQ(attempt(key()).early_retries, 2);
}

TEST_F(GreylistTest, AfterMaxWaitTheEntryIsGoneAndTheNextAttemptIsNew) {
  attempt(key());
  EXPECT_EQ(store_->count("greylist"), 1);
  clock_.advance(config_.max_wait);
  EXPECT_EQ(store_->count("greylist"), 0);
  EXPECT_TRUE(table_.triplets("192.0.2.0/24").empty());
  GreylistAnswer again = attempt(key());
  EXPECT_EQ(again.outcome, GreylistOutcome::deferred_new);
  EXPECT_EQ(again.first_seen, clock_.now());
  EXPECT_FALSE(table_.entity("192.0.2.0/24"));
}

TEST_F(GreylistTest, APassedTripletIsRefreshedByUseAndForgottenAfterTtl) {
  pass(key());
  clock_.advance(30 * 24h);
  EXPECT_EQ(attempt(key()).outcome, GreylistOutcome::passed_before);
  clock_.advance(30 * 24h);  // 60 days after passing, 30 after last use
  EXPECT_EQ(attempt(key()).outcome, GreylistOutcome::passed_before);
  clock_.advance(config_.auto_allow_ttl);
  EXPECT_EQ(attempt(key()).outcome, GreylistOutcome::deferred_new);
}

TEST_F(GreylistTest, ABotRetryingEveryTenSecondsIsHammeringAtTheTenthEarlyRetry) {
  ASSERT_EQ(config_.hammering, 10);
  const TimePoint start = clock_.now();
  ASSERT_EQ(attempt(key()).outcome, GreylistOutcome::deferred_new);
  std::vector<int64_t> hammering_at;
  for (int retry = 1; retry <= 45; ++retry) {
    clock_.advance(10s);
    GreylistAnswer a = attempt(key());
    // Never passes, even from retry 30 on (300 s after the first attempt).
    ASSERT_EQ(a.outcome, GreylistOutcome::deferred_early) << retry;
    EXPECT_EQ(a.early_retries, retry);
    EXPECT_EQ(a.hammered, retry >= 10) << retry;
    if (a.hammering) hammering_at.push_back(retry);
    EXPECT_EQ(a.retry_at, start + (retry >= 10 ? config_.max_wait : config_.min_delay)) << retry;
  }
  EXPECT_EQ(hammering_at, (std::vector<int64_t>{10, 20, 30, 40}));
  auto listed = table_.triplets("192.0.2.0/24");
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_TRUE(listed[0].hammered);
  EXPECT_FALSE(listed[0].passed);
  EXPECT_EQ(listed[0].early_retries, 45);
  EXPECT_FALSE(table_.entity("192.0.2.0/24"));

  // Forgotten max_wait after its first attempt, like any unpassed triplet.
  clock_.set(start + config_.max_wait);
  GreylistAnswer fresh = attempt(key());
  EXPECT_EQ(fresh.outcome, GreylistOutcome::deferred_new);
  EXPECT_FALSE(fresh.hammered);
}

TEST_F(GreylistTest, NoHammeringFromANetworkThatEverPassed) {
  pass(key("earlier@example.net"));
  ASSERT_EQ(attempt(key()).outcome, GreylistOutcome::deferred_new);
  for (int retry = 1; retry <= 25; ++retry) {
    clock_.advance(10s);
    GreylistAnswer a = attempt(key());
    EXPECT_FALSE(a.hammering) << retry;
    EXPECT_FALSE(a.hammered) << retry;
    EXPECT_EQ(a.early_retries, retry);
  }
  clock_.advance(5min);
  EXPECT_EQ(attempt(key()).outcome, GreylistOutcome::passed_now);
}

TEST_F(GreylistTest, HammeringCanBeTurnedOff) {
  config_.hammering = 0;
  GreylistTable table(*store_, clock_, config_);
  table.attempt(key(), entities_, "");
  for (int retry = 1; retry <= 20; ++retry) {
    clock_.advance(10s);
    GreylistAnswer a = table.attempt(key(), entities_, "");
    EXPECT_FALSE(a.hammering);
    EXPECT_FALSE(a.hammered);
  }
}

TEST_F(GreylistTest, AutoAllowCanBeTurnedOff) {
  config_.auto_allow_after = 0;
  GreylistTable table(*store_, clock_, config_);
  for (const char* rcpt : {"r1@example.net", "r2@example.net", "r3@example.net"}) {
    table.attempt(key(rcpt), entities_, "");
    clock_.advance(5min);
    ASSERT_EQ(table.attempt(key(rcpt), entities_, "").outcome, GreylistOutcome::passed_now);
  }
  EXPECT_EQ(table.entity("192.0.2.0/24")->successful_retries, 3);
  EXPECT_FALSE(table.auto_allowed_until("192.0.2.0/24"));
}

TEST_F(GreylistTest, TheSameTransactionCountsOnce) {
  GreylistAnswer rcpt = table_.attempt(key(), entities_, "tx-A");
  GreylistAnswer data = table_.attempt(key(), entities_, "tx-A");
  EXPECT_EQ(data.outcome, GreylistOutcome::deferred_new);
  EXPECT_EQ(data.first_seen, rcpt.first_seen);

  clock_.advance(1min);
  EXPECT_EQ(table_.attempt(key(), entities_, "tx-B").early_retries, 1);
  clock_.advance(1s);
  GreylistAnswer again = table_.attempt(key(), entities_, "tx-B");
  EXPECT_EQ(again.outcome, GreylistOutcome::deferred_early);
  EXPECT_EQ(again.early_retries, 1);

  clock_.advance(5min);
  EXPECT_EQ(table_.attempt(key(), entities_, "tx-C").outcome, GreylistOutcome::passed_now);
  EXPECT_EQ(table_.attempt(key(), entities_, "tx-C").outcome, GreylistOutcome::passed_now);
  EXPECT_EQ(table_.entity("192.0.2.0/24")->successful_retries, 1);
  EXPECT_EQ(table_.attempt(key(), entities_, "tx-D").outcome, GreylistOutcome::passed_before);
}

TEST_F(GreylistTest, TheSameTransactionReplaysWithoutRepeatingHammering) {
  table_.attempt(key(), entities_, "tx-0");
  GreylistAnswer tenth;
  for (int retry = 1; retry <= 10; ++retry) {
    clock_.advance(10s);
    tenth = table_.attempt(key(), entities_, "tx-" + std::to_string(retry));
  }
  ASSERT_TRUE(tenth.hammering);
  GreylistAnswer replay = table_.attempt(key(), entities_, "tx-10");
  EXPECT_FALSE(replay.hammering);  // the offence was reported once, to the first call
  EXPECT_TRUE(replay.hammered);
  EXPECT_EQ(replay.early_retries, 10);
  EXPECT_EQ(table_.triplets("192.0.2.0/24").at(0).early_retries, 10);
}

TEST_F(GreylistTest, AnEmptyTransactionIdCountsEveryCall) {
  table_.attempt(key(), entities_, "");
  table_.attempt(key(), entities_, "");
  EXPECT_EQ(table_.attempt(key(), entities_, "").early_retries, 2);
}

TEST_F(GreylistTest, PeekWritesNothing) {
  GreylistAnswer peeked = attempt(key(), /*peek=*/true);
  EXPECT_EQ(peeked.outcome, GreylistOutcome::deferred_new);
  EXPECT_EQ(store_->count("greylist"), 0);
  EXPECT_EQ(attempt(key()).outcome, GreylistOutcome::deferred_new);

  clock_.advance(1min);
  EXPECT_EQ(attempt(key(), true).early_retries, 1);
  EXPECT_EQ(attempt(key(), true).early_retries, 1);  // the peek above did not count

  clock_.advance(5min);
  EXPECT_EQ(attempt(key(), true).outcome, GreylistOutcome::passed_now);
  EXPECT_EQ(store_->count("greylist_net"), 0);
  EXPECT_FALSE(table_.triplets("192.0.2.0/24").at(0).passed);
  EXPECT_EQ(attempt(key()).outcome, GreylistOutcome::passed_now);
  EXPECT_EQ(store_->count("greylist_net"), 1);
}

TEST_F(GreylistTest, PeekReportsHammeringWithoutMarking) {
  attempt(key());
  for (int retry = 1; retry <= 9; ++retry) {
    clock_.advance(10s);
    attempt(key());
  }
  GreylistAnswer peeked = attempt(key(), true);
  EXPECT_TRUE(peeked.hammering);
  EXPECT_FALSE(table_.triplets("192.0.2.0/24").at(0).hammered);
  EXPECT_TRUE(attempt(key()).hammering);
  EXPECT_TRUE(table_.triplets("192.0.2.0/24").at(0).hammered);
}

TEST_F(GreylistTest, TripletsListsOneNetworkEntity) {
  const TimePoint start = clock_.now();
  attempt(key("a@example.net"));
  clock_.advance(1min);
  attempt(key("a@example.net"));
  pass(key("b@example.net"));
  attempt(key("c@example.net", "x@example.org", "198.51.100.0/24"));
  attempt(key("d@example.net", "x@example.org", "spf:example.org"));
  attempt(key("e@example.net", "x@example.org", "spf:example.org.uk"));

  auto listed = table_.triplets("192.0.2.0/24");
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].key.network, "192.0.2.0/24");
  EXPECT_EQ(listed[0].key.sender, "alice@example.org");
  EXPECT_EQ(listed[0].key.recipient, "a@example.net");
  EXPECT_EQ(listed[0].first_seen, start);
  EXPECT_EQ(listed[0].last_seen, start + 1min);
  EXPECT_EQ(listed[0].early_retries, 1);
  EXPECT_FALSE(listed[0].passed);
  EXPECT_FALSE(listed[0].hammered);
  EXPECT_EQ(listed[1].key.recipient, "b@example.net");
  EXPECT_TRUE(listed[1].passed);

  auto spf = table_.triplets("spf:example.org");
  ASSERT_EQ(spf.size(), 1u);
  EXPECT_EQ(spf[0].key.recipient, "d@example.net");
  EXPECT_EQ(table_.triplets("192.0.2.0/24", 1).size(), 1u);
  EXPECT_TRUE(table_.triplets("203.0.113.0/24").empty());
}

TEST_F(GreylistTest, EntityReportsAnUnknownEntityAsAbsent) {
  EXPECT_FALSE(table_.entity("192.0.2.0/24"));
  EXPECT_FALSE(table_.entity(""));
  EXPECT_FALSE(table_.auto_allowed_until("192.0.2.0/24"));
}

TEST_F(GreylistTest, UndecodableValuesAreTreatedAsAbsent) {
  const std::string triplet_key = key().text();
  for (std::string garbage :
       {std::string(), std::string("x"), std::string("\x01"), std::string(60, '\xff'),
        std::string("\x02") + std::string(40, '\0')}) {
    store_->put("greylist", triplet_key, garbage);
    store_->put("greylist_net", "192.0.2.0/24", garbage);
    EXPECT_FALSE(table_.entity("192.0.2.0/24"));
    EXPECT_FALSE(table_.auto_allowed_until("192.0.2.0/24"));
    EXPECT_FALSE(table_.ever_passed(entities_));
    EXPECT_TRUE(table_.triplets("192.0.2.0/24").empty());
    EXPECT_EQ(attempt(key()).outcome, GreylistOutcome::deferred_new);
  }
  // A valid record cut short is garbage too; the next pass starts the entity over.
  auto value = store_->get("greylist", triplet_key);
  ASSERT_TRUE(value);
  store_->put("greylist", triplet_key, value->substr(0, value->size() - 1));
  EXPECT_EQ(attempt(key()).outcome, GreylistOutcome::deferred_new);
  clock_.advance(5min);
  EXPECT_EQ(attempt(key()).outcome, GreylistOutcome::passed_now);
  EXPECT_EQ(table_.entity("192.0.2.0/24")->successful_retries, 1);
}

TEST_F(GreylistTest, AHugeKeyIsStillGreylistedAndListed) {
  const std::string sender(5000, 's');
  const GreylistKey huge = key("bob@example.net", sender);
  EXPECT_EQ(attempt(huge).outcome, GreylistOutcome::deferred_new);
  clock_.advance(1min);
  EXPECT_EQ(attempt(huge).outcome, GreylistOutcome::deferred_early);
  // A key that differs only past the cut is another triplet.
  EXPECT_EQ(attempt(key("bob@example.net", sender + "t")).outcome, GreylistOutcome::deferred_new);
  clock_.advance(5min);
  EXPECT_EQ(attempt(huge).outcome, GreylistOutcome::passed_now);
  auto listed = table_.triplets("192.0.2.0/24");
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].key.sender.size(), 255u);
  EXPECT_EQ(listed[0].key.recipient, "bob@example.net");
}

TEST(GreylistKey, TextJoinsTheFieldsWithUnitSeparators) {
  GreylistKey k{"192.0.2.0/24", "alice@example.org", "bob@example.net"};
  EXPECT_EQ(k.text(),
            "192.0.2.0/24\x1f"
            "alice@example.org\x1f"
            "bob@example.net");
}

TEST(GreylistOutcome, HasNames) {
  EXPECT_EQ(to_string(GreylistOutcome::deferred_new), "deferred_new");
  EXPECT_EQ(to_string(GreylistOutcome::deferred_early), "deferred_early");
  EXPECT_EQ(to_string(GreylistOutcome::passed_now), "passed_now");
  EXPECT_EQ(to_string(GreylistOutcome::passed_before), "passed_before");
}

}  // namespace

TEST_F(GreylistTest, ABusyAutoAllowedNetworkKeepsItsExemption) {
  pass(key("r1@example.net"));
  pass(key("r2@example.net"));
  pass(key("r3@example.net"));
  auto earned = table_.auto_allowed_until("192.0.2.0/24");
  ASSERT_TRUE(earned);
  // Renewed on use, at most once a day: within the day nothing moves.
  clock_.advance(std::chrono::hours(1));
  table_.renew_auto_allow("192.0.2.0/24");
  EXPECT_EQ(table_.auto_allowed_until("192.0.2.0/24"), earned);
  // Mail every 20 days keeps the 35-day exemption alive indefinitely.
  for (int i = 0; i < 5; ++i) {
    clock_.advance(std::chrono::hours(24 * 20));
    table_.renew_auto_allow("192.0.2.0/24");
    auto until = table_.auto_allowed_until("192.0.2.0/24");
    ASSERT_TRUE(until) << "round " << i;
    EXPECT_EQ(*until, clock_.now() + config_.auto_allow_ttl);
  }
  // A network that is not auto-allowed gains nothing from a renewal.
  table_.renew_auto_allow("198.51.100.0/24");
  EXPECT_FALSE(table_.auto_allowed_until("198.51.100.0/24"));
}

TEST_F(GreylistTest, OutOfRangeStoredTimesAndCountsAreAbsent) {
  // Found by state_decode_fuzz: values whose times or counts are near INT64_MAX made the
  // arithmetic on them overflow.
  auto i64 = [](int64_t v) {
    std::string out;
    for (int i = 0; i < 8; ++i)
      out += static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff);
    return out;
  };
  const int64_t huge = INT64_MAX;
  const int64_t now = to_unix_ms(clock_.now());
  // version 1, flags, first_seen, last_seen, early, outcome, answer flags, last early, tx.
  auto triplet = [&](uint8_t flags, int64_t first, int64_t early) {
    return std::string("\x01") + static_cast<char>(flags) + i64(first) + i64(first) + i64(early) +
           std::string("\x00\x00", 2) + i64(0) + std::string("\x02tx", 3);
  };
  for (const auto& value : {triplet(0, huge, 0), triplet(0, now, huge), triplet(1, huge, 0)}) {
    store_->put("greylist", key().text(), value);
    EXPECT_EQ(attempt(key()).outcome, GreylistOutcome::deferred_new);
  }
  store_->put("greylist_net", "192.0.2.0/24", std::string("\x01") + i64(huge) + i64(now) + i64(0));
  EXPECT_FALSE(table_.entity("192.0.2.0/24"));
}
