// What the Redis backend promises beyond the Store contract (store_test.cpp runs that): hosts
// sharing one Redis see each other's commits; a dead or stalled Redis fails calls within the
// deadline and the store recovers when it returns; the daemon may start while Redis is down;
// the format version; AUTH and SELECT; and the RESP reader's limits and the url syntax.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "redis_test_support.h"
#include "state/redis_client.h"
#include "state/redis_reply.h"
#include "state/store.h"
#include "state/write_queue.h"

using namespace spamward;
using namespace std::chrono_literals;
using spamward::test::RedisServer;
using spamward::test::shared_redis;

namespace {

using SteadyClock = std::chrono::steady_clock;

RedisOptions options_for(const std::string& url) {
  RedisOptions o;
  o.url = url;
  o.batch_interval = 1ms;
  o.connect_timeout = 500ms;
  o.io_timeout = 500ms;
  o.retry_after = 200ms;
  return o;
}

// Milliseconds `f` took; it must throw StoreError.
template <class F>
int64_t ms_to_throw(F f) {
  auto start = SteadyClock::now();
  EXPECT_THROW(f(), StoreError);
  return std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - start).count();
}

// Retries `f` until it stops throwing StoreError (the store reconnects after retry_after).
template <class F>
auto eventually(F f) {
  auto deadline = SteadyClock::now() + 10s;
  for (;;) {
    try {
      return f();
    } catch (const StoreError&) {
      if (SteadyClock::now() > deadline) throw;
      std::this_thread::sleep_for(50ms);
    }
  }
}

RedisReply call(const std::string& url, RedisCommand command) {
  RedisClient client(RedisUrl::parse(url), {});
  return client.command(std::move(command));
}

class RedisStoreTest : public testing::Test {
 protected:
  void SetUp() override { shared_redis().flushall(); }
  std::unique_ptr<Store> open() { return open_redis_store(options_for(url_), clock_); }

  FakeClock clock_;
  std::string url_ = shared_redis().url();
};

TEST_F(RedisStoreTest, TwoStoresOnOneRedisSeeEachOthersCommits) {
  auto a = open();
  auto b = open();  // another host
  a->put("deny", "192.0.2.1", "x");
  a->put("greylist", "k1", "v1", clock_.now() + 1min);
  a->flush();
  EXPECT_EQ(b->get("deny", "192.0.2.1"), "x");
  EXPECT_EQ(b->get_many("greylist", {"k0", "k1"}),
            (std::vector<std::optional<std::string>>{std::nullopt, "v1"}));
  EXPECT_EQ(b->count("greylist"), 1);
  b->erase("deny", "192.0.2.1");
  b->put("greylist", "k2", "v2");
  b->flush();
  EXPECT_EQ(a->get("deny", "192.0.2.1"), std::nullopt);
  std::vector<std::string> keys;
  a->scan("greylist", "k", [&](std::string_view k, std::string_view) {
    keys.emplace_back(k);
    return true;
  });
  EXPECT_EQ(keys, (std::vector<std::string>{"k1", "k2"}));
  clock_.advance(1min);  // both hosts judge expiry by the same clock
  EXPECT_EQ(b->get("greylist", "k1"), std::nullopt);
  EXPECT_EQ(a->count("greylist"), 1);
  EXPECT_EQ(b->sweep_expired(), 1);
  EXPECT_EQ(a->sweep_expired(), 0);
}

TEST_F(RedisStoreTest, SweepKeepsWhatAnotherHostRenewed) {
  auto a = open();
  auto b = open();
  a->put("t", "k", "old", clock_.now() + 10s);
  a->flush();
  // The expiry index still says "due" (as if b's commit raced with a's sweep); the script
  // re-reads the value itself.
  b->put("t", "k", "renewed", clock_.now() + 1h);
  b->flush();
  ASSERT_EQ(call(url_, {"ZADD", "spamward:x:t", "1", "k"}).integer, 0);  // score made stale
  clock_.advance(20s);
  EXPECT_EQ(a->sweep_expired(), 0);
  EXPECT_EQ(a->get("t", "k"), "renewed");
  EXPECT_EQ(call(url_, {"ZSCORE", "spamward:x:t", "k"}).str,
            std::to_string(to_unix_ms(clock_.now() - 20s + 1h)));  // repaired
}

TEST_F(RedisStoreTest, GetManyOfManyKeysCrossesCommands) {
  auto s = open();
  std::vector<std::string> keys;
  for (int i = 0; i < 10000; ++i) {
    keys.push_back("tok" + std::to_string(i));
    if (i % 3 == 0) s->put("bayes", keys.back(), std::to_string(i));
  }
  s->flush();
  s->put("bayes", "tok1", "queued");
  auto values = s->get_many("bayes", keys);
  ASSERT_EQ(values.size(), keys.size());
  for (int i = 0; i < 10000; ++i) {
    if (i == 1) {
      EXPECT_EQ(values[1], "queued");
    } else if (i % 3 == 0) {
      EXPECT_EQ(values[static_cast<size_t>(i)], std::to_string(i));
    } else {
      EXPECT_EQ(values[static_cast<size_t>(i)], std::nullopt) << i;
    }
  }
}

TEST_F(RedisStoreTest, WritesTheFormatVersionAndRefusesAnother) {
  {
    auto s = open();
    EXPECT_EQ(s->get("meta", "format_version"), std::to_string(kStoreFormatVersion));
    s->put("meta", "format_version", "2");
    s->flush();
  }
  for (bool daemon : {false, true}) {
    RedisOptions o = options_for(url_);
    o.require_connection = !daemon;  // even the daemon refuses: Redis answered, wrongly
    try {
      open_redis_store(o, clock_);
      FAIL() << "opened a version-2 store";
    } catch (const StoreError& e) {
      std::string what = e.what();
      EXPECT_NE(what.find("store at redis://127.0.0.1:" + std::to_string(shared_redis().port()) +
                          "/0 (keys spamward:*) has format version 2, this spamward reads "
                          "version 1"),
                std::string::npos)
          << what;
    }
  }
}

TEST_F(RedisStoreTest, RefusesDataWithoutVersionButIgnoresOtherKeys) {
  call(url_, {"SET", "someone-else", "x"});  // other applications' keys are not ours
  open();
  shared_redis().flushall();
  call(url_, {"SADD", "spamward:tables", "greylist"});
  try {
    open();
    FAIL() << "opened a store with data and no version";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("has data but no format version"), std::string::npos)
        << e.what();
  }
}

TEST_F(RedisStoreTest, KeyPrefixSeparatesStores) {
  RedisOptions o = options_for(url_);
  o.key_prefix = "other:";
  auto a = open();
  auto b = open_redis_store(o, clock_);
  a->put("t", "k", "a");
  a->flush();
  EXPECT_EQ(b->get("t", "k"), std::nullopt);
  EXPECT_EQ(call(url_, {"HEXISTS", "other:t:meta", "format_version"}).integer, 1);
}

TEST(RedisStoreServer, KilledRedisFailsFastAndTheStoreRecovers) {
  RedisServer server;
  FakeClock clock;
  auto s = open_redis_store(options_for(server.url()), clock);
  s->put("t", "k", "v");
  s->flush();
  EXPECT_EQ(s->get("t", "k"), "v");
  server.kill();
  EXPECT_LT(ms_to_throw([&] { s->get("t", "k"); }), 1000);
  EXPECT_LT(ms_to_throw([&] { s->get_many("t", {"k"}); }), 1000);  // fails fast now
  EXPECT_LT(ms_to_throw([&] { s->count("t"); }), 1000);
  s->put("t", "lost", "x");
  EXPECT_LT(ms_to_throw([&] { s->flush(); }), 2000);  // the batch is lost, and said so
  ASSERT_TRUE(server.start());                        // empty: no persistence in the test
  eventually([&] { return s->get("t", "k"); });
  s->put("t", "k2", "v2");
  s->flush();
  EXPECT_EQ(s->get("t", "k2"), "v2");
  // The format version came back with the first commit, so a new opener accepts the data.
  EXPECT_EQ(open_redis_store(options_for(server.url()), clock)->get("t", "k2"), "v2");
}

TEST(RedisStoreServer, StalledRedisFailsWithinTheDeadline) {
  RedisServer server;
  FakeClock clock;
  auto s = open_redis_store(options_for(server.url()), clock);
  s->put("t", "k", "v");
  s->flush();
  server.pause();
  int64_t took = ms_to_throw([&] { s->get("t", "k"); });
  EXPECT_GE(took, 400);
  EXPECT_LT(took, 1500);
  EXPECT_LT(ms_to_throw([&] { s->get("t", "k"); }), 100) << "fails fast during retry_after";
  server.resume();
  EXPECT_EQ(eventually([&] { return s->get("t", "k"); }), "v");
}

TEST(RedisStoreServer, DaemonOpensWhileRedisIsDownAndCatchesUp) {
  RedisServer server;
  server.kill();
  FakeClock clock;
  RedisOptions o = options_for(server.url());
  EXPECT_THROW(open_redis_store(o, clock), StoreError);  // a command fails at once
  o.require_connection = false;
  auto s = open_redis_store(o, clock);
  EXPECT_THROW(s->get("t", "k"), StoreError);
  ASSERT_TRUE(server.start());
  eventually([&] { return s->get("t", "k"); });
  EXPECT_EQ(s->get("meta", "format_version"), std::to_string(kStoreFormatVersion));
}

TEST(RedisStoreServer, AuthAndDatabaseSelection) {
  RedisServer server({"--requirepass", "s3cr@t"});
  FakeClock clock;
  std::string base = "redis://:s3cr%40t@127.0.0.1:" + std::to_string(server.port());
  {
    auto s = open_redis_store(options_for(base + "/3"), clock);
    s->put("t", "k", "v");
    s->flush();
  }
  RedisClient db3(RedisUrl::parse(base + "/3"), {});
  RedisClient db0(RedisUrl::parse(base), {});
  EXPECT_EQ(db3.command({"HEXISTS", "spamward:t:t", "k"}).integer, 1);
  EXPECT_EQ(db0.command({"EXISTS", "spamward:t:t"}).integer, 0);
  std::string wrong = "redis://:wrong-password@127.0.0.1:" + std::to_string(server.port());
  try {
    open_redis_store(options_for(wrong), clock);
    FAIL() << "a wrong password was accepted";
  } catch (const StoreError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("AUTH refused"), std::string::npos) << what;
    EXPECT_EQ(what.find("wrong-password"), std::string::npos) << "the password leaked: " << what;
  }
  try {
    open_redis_store(options_for("redis://127.0.0.1:" + std::to_string(server.port())), clock);
    FAIL() << "no password was accepted";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("NOAUTH"), std::string::npos) << e.what();
  }
}

TEST_F(RedisStoreTest, ResolvesHostNames) {
  // "localhost" may resolve to ::1 first, where nothing listens: the next address is tried.
  RedisClient client(RedisUrl::parse("redis://localhost:" + std::to_string(shared_redis().port())),
                     {});
  EXPECT_EQ(client.command({"PING"}).str, "PONG");
}

// ---- url syntax ----

TEST(RedisUrl, ParsesEveryPart) {
  auto u = RedisUrl::parse("redis://127.0.0.1");
  EXPECT_EQ(u.host, "127.0.0.1");
  EXPECT_EQ(u.port, 6379);
  EXPECT_EQ(u.db, 0);
  EXPECT_EQ(u.password, "");
  u = RedisUrl::parse("redis://:pa%3Ass@redis.example.org:6380/5");
  EXPECT_EQ(u.host, "redis.example.org");
  EXPECT_EQ(u.port, 6380);
  EXPECT_EQ(u.db, 5);
  EXPECT_EQ(u.user, "");
  EXPECT_EQ(u.password, "pa:ss");
  u = RedisUrl::parse("redis://spamward:p@ss@[2001:db8::1]:7000/");
  EXPECT_EQ(u.user, "spamward");
  EXPECT_EQ(u.password, "p@ss");
  EXPECT_EQ(u.host, "2001:db8::1");
  EXPECT_EQ(u.port, 7000);
  EXPECT_EQ(u.db, 0);
  EXPECT_EQ(u.display(), "redis://[2001:db8::1]:7000/0");
  EXPECT_EQ(RedisUrl::parse("redis://[::1]/2").display(), "redis://[::1]:6379/2");
}

TEST(RedisUrl, RefusesBadUrlsWithoutEchoingThePassword) {
  for (const char* bad :
       {"http://127.0.0.1", "redis://", "redis:///0", "redis://host:0", "redis://host:65536",
        "redis://host:", "redis://host:x", "redis://host/x", "redis://host/-1", "redis://::1",
        "redis://[::1", "redis://[nothost]", "redis://[::1]x", "redis://user@host",
        "redis://:@host", "redis://host?db=1", "redis://:%zz@host", "redis://host/99999999999"}) {
    EXPECT_THROW(RedisUrl::parse(bad), StoreError) << bad;
  }
  try {
    RedisUrl::parse("redis://:hunter2@host:99999");
    FAIL();
  } catch (const StoreError& e) {
    EXPECT_EQ(std::string(e.what()).find("hunter2"), std::string::npos) << e.what();
  }
}

// ---- RESP ----

std::vector<RedisReply> parse_all(RespReader& reader, std::string_view bytes, size_t step) {
  std::vector<RedisReply> out;
  for (size_t i = 0; i < bytes.size(); i += step) {
    reader.feed(bytes.substr(i, step));
    while (auto r = reader.next()) out.push_back(std::move(*r));
  }
  return out;
}

TEST(RespReader, ParsesEveryTypeInAnySplitAndRoundTrips) {
  // A NUL and a CR LF inside a bulk string: binary-safe.
  std::string bytes("+OK\r\n-ERR bad\r\n:-42\r\n$5\r\na\0\r\nb\r\n$-1\r\n*-1\r\n*0\r\n", 46);
  bytes += "*3\r\n$1\r\nx\r\n*2\r\n:1\r\n$0\r\n\r\n$-1\r\n";
  for (size_t step : {size_t{1}, size_t{3}, bytes.size()}) {
    RespReader reader;
    auto replies = parse_all(reader, bytes, step);
    ASSERT_EQ(replies.size(), 8u) << step;
    EXPECT_EQ(replies[0].type, RedisReply::Type::status);
    EXPECT_EQ(replies[0].str, "OK");
    EXPECT_TRUE(replies[1].is_error());
    EXPECT_EQ(replies[1].str, "ERR bad");
    EXPECT_EQ(replies[2].integer, -42);
    EXPECT_EQ(replies[3].str, std::string("a\0\r\nb", 5));
    EXPECT_EQ(replies[4].type, RedisReply::Type::nil);
    EXPECT_EQ(replies[5].type, RedisReply::Type::nil);
    EXPECT_EQ(replies[6].type, RedisReply::Type::array);
    EXPECT_TRUE(replies[6].elements.empty());
    ASSERT_EQ(replies[7].elements.size(), 3u);
    EXPECT_EQ(replies[7].elements[1].elements[1].str, "");
    std::string again;
    for (const auto& r : replies) append_reply(again, r);
    RespReader second;
    EXPECT_EQ(parse_all(second, again, 7), replies);
  }
}

TEST(RespReader, EnforcesItsLimits) {
  RespLimits limits;
  limits.max_bulk = 10;
  limits.max_elements = 5;
  limits.max_buffered = 100;
  {
    RespReader r(limits);
    r.feed("$11\r\nhello world\r\n");
    EXPECT_THROW(r.next(), StoreError);
    EXPECT_THROW(r.next(), StoreError) << "unusable after an error";
  }
  {
    RespReader r(limits);
    r.feed("*6\r\n");
    EXPECT_THROW(r.next(), StoreError);
  }
  {
    RespReader r(limits);  // 3 + 3 nested elements and the roots: over 5 in one reply
    r.feed("*2\r\n*2\r\n:1\r\n:2\r\n*2\r\n:3\r\n:4\r\n");
    EXPECT_THROW(r.next(), StoreError);
  }
  {
    RespReader r(limits);  // the element count is per reply, not per reader
    for (int i = 0; i < 10; ++i) {
      r.feed("*2\r\n:1\r\n:2\r\n");
      ASSERT_TRUE(r.next());
    }
  }
  {
    RespReader r(limits);
    r.feed("$99999\r\n");
    EXPECT_THROW(r.feed(std::string(100, 'x')), StoreError);
  }
  {
    // A length whose arithmetic overflows in hiredis: refused, or waited for until the
    // buffer limit refuses it; never read out of bounds.
    RespReader r(limits);
    r.feed("$9223372036854775807\r\nx\r\n");
    bool refused = false;
    try {
      EXPECT_FALSE(r.next());
    } catch (const StoreError&) {
      refused = true;
    }
    if (!refused) {
      EXPECT_THROW(r.feed(std::string(100, 'x')), StoreError);
    }
  }
  {
    RespReader r;
    r.feed("*-5\r\n");
    EXPECT_THROW(r.next(), StoreError);
  }
  {
    RespReader r;
    r.feed("?what\r\n");
    EXPECT_THROW(r.next(), StoreError);
  }
}

TEST(RespReader, EncodesCommandsBinarySafe) {
  EXPECT_EQ(encode_command({"HSET", "k", std::string("\0\r\n", 3)}),
            std::string("*3\r\n$4\r\nHSET\r\n$1\r\nk\r\n$3\r\n\0\r\n\r\n", 30));
}

TEST(WriteQueueCodec, StoredValuesCarryTheirExpiry) {
  std::string raw = encode_stored("payload", 0x0102030405060708);
  EXPECT_EQ(raw.size(), kStoredHeaderSize + 7);
  EXPECT_EQ(stored_expiry(raw), 0x0102030405060708);
  EXPECT_EQ(stored_payload(raw), "payload");
  EXPECT_EQ(stored_expiry("short"), 0);
  EXPECT_EQ(stored_payload("short"), "");
  EXPECT_EQ(expiry_ms_of(std::nullopt), 0);
  EXPECT_EQ(expiry_ms_of(from_unix_ms(0)), 1);
}

}  // namespace
