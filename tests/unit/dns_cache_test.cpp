// DnsCache on a FakeClock (TTL expiry, negative caching, timeouts never cached, the LRU bound)
// and CachingResolver over a scripted upstream (hits, coalescing, metrics).
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/metrics.h"
#include "dns/dns_cache.h"

namespace spamward {
namespace {

using namespace std::chrono_literals;
using S = DnsAnswer::Status;

DnsAnswer answer(S status, std::vector<std::string> records, uint32_t ttl) {
  return DnsAnswer{status, std::move(records), ttl};
}

TEST(DnsCache, HonoursTtlAndCountsDown) {
  FakeClock clock;
  DnsCache cache(clock);
  cache.put("a.example.org", DnsType::a, answer(S::ok, {"192.0.2.1"}, 60));

  auto hit = cache.get("a.example.org", DnsType::a);
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->status, S::ok);
  EXPECT_EQ(hit->records, std::vector<std::string>{"192.0.2.1"});
  EXPECT_EQ(hit->ttl, 60u);

  clock.advance(59'500ms);
  hit = cache.get("a.example.org", DnsType::a);
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->ttl, 1u);  // rounded up: a fresh entry never reports 0

  clock.advance(500ms);
  EXPECT_FALSE(cache.get("a.example.org", DnsType::a));
  EXPECT_EQ(cache.size(), 0u);  // the expired entry is gone, not just hidden
}

TEST(DnsCache, KeyIsCaseInsensitiveAndTypeSpecific) {
  FakeClock clock;
  DnsCache cache(clock);
  cache.put("Mail.Example.ORG.", DnsType::mx, answer(S::ok, {"mx.example.org"}, 300));
  EXPECT_TRUE(cache.get("mail.example.org", DnsType::mx));
  EXPECT_FALSE(cache.get("mail.example.org", DnsType::a));
  EXPECT_FALSE(cache.get("mail.example.net", DnsType::mx));
}

TEST(DnsCache, CapsPositiveTtl) {
  FakeClock clock;
  DnsCacheOptions options;
  options.max_ttl = 1h;
  DnsCache cache(clock, options);
  cache.put("long.example.org", DnsType::txt, answer(S::ok, {"x"}, 7 * 86400));
  EXPECT_EQ(cache.get("long.example.org", DnsType::txt)->ttl, 3600u);
  clock.advance(1h);
  EXPECT_FALSE(cache.get("long.example.org", DnsType::txt));
}

TEST(DnsCache, ZeroTtlIsNotCached) {
  FakeClock clock;
  DnsCache cache(clock);
  cache.put("zero.example.org", DnsType::a, answer(S::ok, {"192.0.2.1"}, 0));
  EXPECT_FALSE(cache.get("zero.example.org", DnsType::a));
}

TEST(DnsCache, NegativeAnswersUseSoaTtlCapped) {
  FakeClock clock;
  DnsCacheOptions options;
  options.max_negative_ttl = 600s;
  DnsCache cache(clock, options);
  cache.put("gone.example.org", DnsType::a, answer(S::nxdomain, {}, 120));   // SOA says 120 s
  cache.put("empty.example.org", DnsType::a, answer(S::nodata, {}, 86400));  // capped to 600 s

  auto gone = cache.get("gone.example.org", DnsType::a);
  ASSERT_TRUE(gone);
  EXPECT_EQ(gone->status, S::nxdomain);
  EXPECT_EQ(gone->ttl, 120u);
  EXPECT_EQ(cache.get("empty.example.org", DnsType::a)->ttl, 600u);

  clock.advance(120s);
  EXPECT_FALSE(cache.get("gone.example.org", DnsType::a));
  auto empty = cache.get("empty.example.org", DnsType::a);
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->status, S::nodata);
  clock.advance(480s);
  EXPECT_FALSE(cache.get("empty.example.org", DnsType::a));
}

TEST(DnsCache, NegativeAnswerWithoutSoaGetsFixedLifetime) {
  FakeClock clock;
  DnsCacheOptions options;
  options.negative_ttl = 300s;
  DnsCache cache(clock, options);
  cache.put("nosoa.example.org", DnsType::txt, answer(S::nxdomain, {}, 0));
  EXPECT_EQ(cache.get("nosoa.example.org", DnsType::txt)->ttl, 300u);
  clock.advance(299s);
  EXPECT_TRUE(cache.get("nosoa.example.org", DnsType::txt));
  clock.advance(1s);
  EXPECT_FALSE(cache.get("nosoa.example.org", DnsType::txt));
}

TEST(DnsCache, TimeoutsAndErrorsAreNeverCached) {
  FakeClock clock;
  DnsCache cache(clock);
  cache.put("slow.example.org", DnsType::a, answer(S::timeout, {}, 300));
  cache.put("broken.example.org", DnsType::a, answer(S::error, {}, 300));
  EXPECT_FALSE(cache.get("slow.example.org", DnsType::a));
  EXPECT_FALSE(cache.get("broken.example.org", DnsType::a));
  EXPECT_EQ(cache.size(), 0u);

  // Nor does a timeout evict a good answer already there.
  cache.put("flaky.example.org", DnsType::a, answer(S::ok, {"192.0.2.7"}, 300));
  cache.put("flaky.example.org", DnsType::a, answer(S::timeout, {}, 0));
  auto hit = cache.get("flaky.example.org", DnsType::a);
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->status, S::ok);
}

TEST(DnsCache, LruBoundEvictsLeastRecentlyUsed) {
  FakeClock clock;
  DnsCacheOptions options;
  options.max_entries = 3;
  DnsCache cache(clock, options);
  for (const char* n : {"one", "two", "three"}) cache.put(n, DnsType::a, answer(S::ok, {n}, 300));
  ASSERT_TRUE(cache.get("one", DnsType::a));  // "one" is now the most recent; "two" the least
  cache.put("four", DnsType::a, answer(S::ok, {"four"}, 300));
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_FALSE(cache.get("two", DnsType::a));
  EXPECT_TRUE(cache.get("one", DnsType::a));
  EXPECT_TRUE(cache.get("three", DnsType::a));
  EXPECT_TRUE(cache.get("four", DnsType::a));

  // Replacing an entry does not grow the cache.
  cache.put("four", DnsType::a, answer(S::ok, {"4"}, 300));
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_EQ(cache.get("four", DnsType::a)->records, std::vector<std::string>{"4"});
}

// ---- CachingResolver --------------------------------------------------------------------

// Answers from a table after `delay`, counting the queries it was asked.
class ScriptedResolver final : public Resolver {
 public:
  std::map<std::pair<std::string, DnsType>, DnsAnswer> table;
  std::chrono::milliseconds delay{0};
  int calls = 0;

  boost::asio::awaitable<DnsAnswer> query(std::string name, DnsType type) override {
    ++calls;
    if (delay.count() > 0) {
      auto ex = co_await boost::asio::this_coro::executor;
      boost::asio::steady_timer timer(ex, delay);
      auto wait = timer.async_wait(boost::asio::use_awaitable);
      co_await std::move(wait);
    }
    auto it = table.find({name, type});
    if (it == table.end()) co_return DnsAnswer{S::timeout, {}, 0};
    co_return it->second;
  }
};

// A free coroutine, not a lambda: its parameters live in the frame (a lambda's captures
// would die with the lambda object while the coroutine is suspended).
boost::asio::awaitable<void> ask(Resolver& resolver, std::string name, DnsType type,
                                 DnsAnswer& out) {
  auto q = resolver.query(std::move(name), type);
  out = co_await std::move(q);
}

// Runs `n` concurrent queries to completion and returns their answers.
std::vector<DnsAnswer> run_queries(Resolver& resolver, const std::string& name, DnsType type,
                                   int n) {
  boost::asio::io_context io;
  std::vector<DnsAnswer> out(static_cast<size_t>(n));
  for (auto& slot : out) {
    auto task = ask(resolver, name, type, slot);
    boost::asio::co_spawn(io, std::move(task), boost::asio::detached);
  }
  io.run();
  return out;
}

TEST(DnsCachingResolver, SecondQueryIsACacheHit) {
  FakeClock clock;
  Metrics metrics;
  auto upstream = std::make_unique<ScriptedResolver>();
  ScriptedResolver* script = upstream.get();
  script->table[{"a.example.org", DnsType::a}] = answer(S::ok, {"192.0.2.1"}, 60);
  CachingResolver resolver(std::move(upstream), clock, &metrics);

  auto first = run_queries(resolver, "A.Example.org.", DnsType::a, 1);
  EXPECT_EQ(first[0].records, std::vector<std::string>{"192.0.2.1"});
  EXPECT_EQ(script->calls, 1);
  EXPECT_EQ(metrics.value("spamward_dns_cache_hits_total"), 0);

  auto second = run_queries(resolver, "a.example.org", DnsType::a, 1);
  EXPECT_EQ(second[0].records, std::vector<std::string>{"192.0.2.1"});
  EXPECT_EQ(script->calls, 1);
  EXPECT_EQ(metrics.value("spamward_dns_cache_hits_total"), 1);

  clock.advance(61s);  // expired: back to the network
  run_queries(resolver, "a.example.org", DnsType::a, 1);
  EXPECT_EQ(script->calls, 2);
}

TEST(DnsCachingResolver, TimeoutsGoBackToTheNetwork) {
  FakeClock clock;
  auto upstream = std::make_unique<ScriptedResolver>();
  ScriptedResolver* script = upstream.get();  // no table entry: every answer is a timeout
  CachingResolver resolver(std::move(upstream), clock, nullptr);
  EXPECT_EQ(run_queries(resolver, "slow.example.org", DnsType::txt, 1)[0].status, S::timeout);
  EXPECT_EQ(run_queries(resolver, "slow.example.org", DnsType::txt, 1)[0].status, S::timeout);
  EXPECT_EQ(script->calls, 2);
  EXPECT_EQ(resolver.cache().size(), 0u);
}

TEST(DnsCachingResolver, ConcurrentIdenticalQueriesShareOneUpstreamQuery) {
  FakeClock clock;
  Metrics metrics;
  auto upstream = std::make_unique<ScriptedResolver>();
  ScriptedResolver* script = upstream.get();
  script->delay = 20ms;
  script->table[{"mx.example.org", DnsType::mx}] = answer(S::ok, {"mx1.example.org"}, 300);
  CachingResolver resolver(std::move(upstream), clock, &metrics);

  auto answers = run_queries(resolver, "mx.example.org", DnsType::mx, 10);
  EXPECT_EQ(script->calls, 1);
  EXPECT_EQ(metrics.value("spamward_dns_coalesced_total"), 9);
  for (const auto& a : answers) {
    EXPECT_EQ(a.status, S::ok);
    EXPECT_EQ(a.records, std::vector<std::string>{"mx1.example.org"});
  }
}

TEST(DnsCachingResolver, CoalescedTimeoutReachesEveryWaiterAndIsNotCached) {
  FakeClock clock;
  auto upstream = std::make_unique<ScriptedResolver>();
  ScriptedResolver* script = upstream.get();
  script->delay = 20ms;
  CachingResolver resolver(std::move(upstream), clock, nullptr);
  auto answers = run_queries(resolver, "down.example.org", DnsType::a, 5);
  EXPECT_EQ(script->calls, 1);
  for (const auto& a : answers) EXPECT_EQ(a.status, S::timeout);
  run_queries(resolver, "down.example.org", DnsType::a, 1);
  EXPECT_EQ(script->calls, 2);
}

}  // namespace
}  // namespace spamward
