// Store contract (state/store.h) for every backend (Redis: a real redis-server the test
// starts, redis_test_support.h), and what only LMDB promises: durability
// across reopen and kill -9, the format version, map growth, several openers of one path.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "redis_test_support.h"
#include "state/store.h"
#include "test_support.h"

using namespace spamward;
using namespace std::chrono_literals;

namespace {

// A fresh directory under the test temp dir, removed afterwards.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = testing::TempDir() + "spamward-store-XXXXXX";
    path_ = mkdtemp(tmpl.data()) ? tmpl : throw std::runtime_error("mkdtemp failed");
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::vector<std::pair<std::string, std::string>> scan_all(Store& store, std::string_view table,
                                                          std::string_view prefix) {
  std::vector<std::pair<std::string, std::string>> out;
  store.scan(table, prefix, [&](std::string_view k, std::string_view v) {
    out.emplace_back(k, v);
    return true;
  });
  return out;
}

using Entries = std::vector<std::pair<std::string, std::string>>;

// ---- The contract, for both backends ----

class StoreContract : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "memory") {
      store_ = make_memory_store(clock_);
    } else if (GetParam() == "redis") {
      spamward::test::shared_redis().flushall();
      RedisOptions options;
      options.url = spamward::test::shared_redis().url();
      options.batch_interval = std::chrono::hours(1);  // as for LMDB below
      store_ = open_redis_store(options, clock_);
    } else {
      LmdbOptions options;
      options.path = dir_.path() + "/store";
      // Long enough that nothing commits unless flush() asks: reads before flush() then
      // really come from the queue.
      options.batch_interval = std::chrono::hours(1);
      store_ = open_lmdb_store(options, clock_);
    }
  }

  FakeClock clock_;
  TempDir dir_;
  std::unique_ptr<Store> store_;
};

TEST_P(StoreContract, PutGetOverwriteErase) {
  Store& s = *store_;
  EXPECT_EQ(s.get("t", "k"), std::nullopt);  // table does not exist yet
  s.put("t", "k", "v1");
  EXPECT_EQ(s.get("t", "k"), "v1");
  s.put("t", "k", "v2");
  EXPECT_EQ(s.get("t", "k"), "v2");
  s.put("other", "k", "x");
  s.flush();
  EXPECT_EQ(s.get("t", "k"), "v2");
  EXPECT_EQ(s.get("other", "k"), "x");
  s.erase("t", "k");
  EXPECT_EQ(s.get("t", "k"), std::nullopt);
  s.flush();
  EXPECT_EQ(s.get("t", "k"), std::nullopt);
  EXPECT_EQ(s.get("other", "k"), "x");
  s.erase("never-created", "k");  // erasing from a missing table is a no-op
  s.flush();
  std::string binary("a\0b\xff", 4);
  s.put("t", binary, binary);
  s.flush();
  EXPECT_EQ(s.get("t", binary), binary);
  s.put("t", "empty", "");
  EXPECT_EQ(s.get("t", "empty"), "");
}

TEST_P(StoreContract, RejectsBadKeys) {
  EXPECT_THROW(store_->put("t", "", "v"), StoreError);
  EXPECT_THROW(store_->put("t", std::string(512, 'k'), "v"), StoreError);
  EXPECT_THROW(store_->put("", "k", "v"), StoreError);
}

TEST_P(StoreContract, ScansPrefixInKeyOrderAndStops) {
  Store& s = *store_;
  for (const char* k : {"a3", "b1", "a1", "ab", "a2"}) s.put("t", k, std::string("v") + k);
  s.flush();
  EXPECT_EQ(scan_all(s, "t", "a"),
            (Entries{{"a1", "va1"}, {"a2", "va2"}, {"a3", "va3"}, {"ab", "vab"}}));
  EXPECT_EQ(scan_all(s, "t", "").size(), 5u);
  EXPECT_TRUE(scan_all(s, "t", "c").empty());
  EXPECT_TRUE(scan_all(s, "missing", "").empty());
  int visited = 0;
  s.scan("t", "", [&](std::string_view, std::string_view) { return ++visited < 2; });
  EXPECT_EQ(visited, 2);
  EXPECT_EQ(s.count("t"), 5);
  EXPECT_EQ(s.count("missing"), 0);
}

// Keys are bytes, ordered as unsigned bytes (memcmp), whatever the backend keeps them in.
TEST_P(StoreContract, ScansBinaryPrefixesInByteOrder) {
  Store& s = *store_;
  const std::string ff("\xff", 1);
  for (const std::string& k : {"a" + ff, "a" + ff + ff, "a" + ff + std::string(1, '\0'),
                               std::string("a\xfe\xff"), std::string("b"), ff + ff}) {
    s.put("t", k, "v");
  }
  s.flush();
  s.put("t", "a" + ff + "q", "queued");  // merged into the same order
  auto keys = [&](std::string_view prefix) {
    std::vector<std::string> out;
    for (auto& [k, v] : scan_all(s, "t", prefix)) out.push_back(k);
    return out;
  };
  EXPECT_EQ(keys("a" + ff), (std::vector<std::string>{"a" + ff, "a" + ff + std::string(1, '\0'),
                                                      "a" + ff + "q", "a" + ff + ff}));
  EXPECT_EQ(keys(ff), (std::vector<std::string>{ff + ff}));
  EXPECT_EQ(keys(ff + ff), (std::vector<std::string>{ff + ff}));
  EXPECT_EQ(keys("").size(), 7u);
  EXPECT_EQ(keys("").front(), "a\xfe\xff");
  EXPECT_EQ(keys("").back(), ff + ff);
}

TEST_P(StoreContract, ScanOfManyEntriesCrossesChunks) {
  Store& s = *store_;
  for (int i = 0; i < 1000; ++i) {
    char key[16];
    std::snprintf(key, sizeof key, "k%05d", i);
    s.put("t", key, std::to_string(i));
  }
  s.flush();
  s.erase("t", "k00500");
  auto all = scan_all(s, "t", "k");
  ASSERT_EQ(all.size(), 999u);
  EXPECT_EQ(all.front().first, "k00000");
  EXPECT_EQ(all[500].first, "k00501");
  EXPECT_EQ(all.back().first, "k00999");
  EXPECT_EQ(s.count("t"), 999);
}

TEST_P(StoreContract, VisitorMayCallBackIntoTheStore) {
  Store& s = *store_;
  s.put("t", "a", "1");
  s.put("t", "b", "2");
  s.flush();
  int seen = 0;
  s.scan("t", "", [&](std::string_view k, std::string_view) {
    EXPECT_TRUE(s.get("t", k));
    s.put("t2", k, "copied");
    ++seen;
    return true;
  });
  s.flush();
  EXPECT_EQ(seen, 2);
  EXPECT_EQ(s.count("t2"), 2);
}

TEST_P(StoreContract, ReadsSeeQueuedWritesBeforeFlush) {
  Store& s = *store_;
  s.put("t", "committed", "c");
  s.put("t", "doomed", "d");
  s.flush();
  s.put("t", "queued", "q");
  s.erase("t", "doomed");
  s.put("t", "committed", "c2");
  EXPECT_EQ(s.get("t", "queued"), "q");
  EXPECT_EQ(s.get("t", "doomed"), std::nullopt);
  EXPECT_EQ(s.get("t", "committed"), "c2");
  EXPECT_EQ(scan_all(s, "t", ""), (Entries{{"committed", "c2"}, {"queued", "q"}}));
  EXPECT_EQ(s.count("t"), 2);
  s.put("fresh-table", "k", "v");
  EXPECT_EQ(s.get("fresh-table", "k"), "v");
  EXPECT_EQ(scan_all(s, "fresh-table", ""), (Entries{{"k", "v"}}));
  s.flush();
  EXPECT_EQ(scan_all(s, "t", ""), (Entries{{"committed", "c2"}, {"queued", "q"}}));
}

// get_many answers as get() would, key by key: committed, queued, erased, absent, expired.
TEST_P(StoreContract, GetManyAnswersAsGetDoes) {
  Store& s = *store_;
  s.put("t", "committed", "c");
  s.put("t", "doomed", "d");
  s.put("t", "short-lived", "x", clock_.now() + std::chrono::seconds(1));
  s.flush();
  s.put("t", "queued", "q");
  s.erase("t", "doomed");
  clock_.advance(std::chrono::seconds(2));
  std::vector<std::string> keys = {"queued", "absent", "committed", "doomed", "short-lived"};
  auto values = s.get_many("t", keys);
  ASSERT_EQ(values.size(), keys.size());
  for (size_t i = 0; i < keys.size(); ++i) EXPECT_EQ(values[i], s.get("t", keys[i])) << keys[i];
  EXPECT_EQ(values[0], "q");
  EXPECT_EQ(values[2], "c");
  EXPECT_EQ(values[1], std::nullopt);
  EXPECT_EQ(values[3], std::nullopt);
  EXPECT_EQ(values[4], std::nullopt);
  EXPECT_TRUE(s.get_many("no-such-table", keys)[0] == std::nullopt);
}

TEST_P(StoreContract, ExpiredEntriesAreInvisibleAndSwept) {
  Store& s = *store_;
  s.put("t", "short", "1", clock_.now() + 10s);
  s.put("t", "long", "2", clock_.now() + 1h);
  s.put("t", "forever", "3");
  s.flush();
  EXPECT_EQ(s.get("t", "short"), "1");
  EXPECT_EQ(s.count("t"), 3);
  clock_.advance(10s);
  EXPECT_EQ(s.get("t", "short"), std::nullopt);
  EXPECT_EQ(scan_all(s, "t", ""), (Entries{{"forever", "3"}, {"long", "2"}}));
  EXPECT_EQ(s.count("t"), 2);
  EXPECT_EQ(s.sweep_expired(), 1);
  EXPECT_EQ(s.sweep_expired(), 0);
  // A queued write with a past expiry is invisible too.
  s.put("t", "stillborn", "x", clock_.now() - 1s);
  EXPECT_EQ(s.get("t", "stillborn"), std::nullopt);
  // Renewing an entry keeps it.
  s.put("t", "long", "2b", clock_.now() + 2h);
  s.flush();
  clock_.advance(1h);
  EXPECT_EQ(s.get("t", "long"), "2b");
  EXPECT_EQ(s.sweep_expired(), 1);  // "stillborn"
  EXPECT_EQ(s.count("t"), 2);
}

TEST_P(StoreContract, ThreadsReadTheirOwnWritesConcurrently) {
  Store& s = *store_;
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        std::string key = std::to_string(t) + "/" + std::to_string(i);
        s.put("t", key, key);
        if (s.get("t", key) != key) ++mismatches;
        if (i % 50 == 0) s.flush();
        if (i % 7 == 0) {
          s.erase("t", key);
          if (s.get("t", key)) ++mismatches;
        }
      }
      s.flush();
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_EQ(s.count("t"), 4 * (200 - 29));  // i % 7 == 0 for 29 of 0..199
}

INSTANTIATE_TEST_SUITE_P(Store, StoreContract, testing::Values("memory", "lmdb", "redis"),
                         [](const auto& info) { return info.param; });

// ---- LMDB only ----

class LmdbStore : public testing::Test {
 protected:
  LmdbOptions options() const {
    LmdbOptions o;
    o.path = dir_.path() + "/store";
    o.batch_interval = 1ms;
    return o;
  }
  std::unique_ptr<Store> open() const { return open_lmdb_store(options(), clock_); }

  FakeClock clock_;
  TempDir dir_;
};

TEST_F(LmdbStore, ReopenSeesFlushedDataAndExpiry) {
  {
    auto s = open();
    s->put("greylist", "k1", "v1");
    s->put("greylist", "k2", "v2", clock_.now() + 1min);
    s->put("t", "k", "v");
    s->erase("t", "k");
    s->flush();
  }
  auto s = open();
  EXPECT_EQ(s->get("greylist", "k1"), "v1");
  EXPECT_EQ(s->get("greylist", "k2"), "v2");
  EXPECT_EQ(s->get("t", "k"), std::nullopt);
  clock_.advance(1min);
  EXPECT_EQ(s->get("greylist", "k2"), std::nullopt);
  EXPECT_EQ(s->get("meta", "format_version"), std::to_string(kStoreFormatVersion));
}

TEST_F(LmdbStore, DestructorCommitsQueuedWrites) {
  {
    LmdbOptions o = options();
    o.batch_interval = std::chrono::hours(1);
    auto s = open_lmdb_store(o, clock_);
    s->put("t", "k", "v");
  }
  EXPECT_EQ(open()->get("t", "k"), "v");
}

TEST_F(LmdbStore, RefusesAnotherFormatVersion) {
  {
    auto s = open();
    s->put("meta", "format_version", "2");
    s->flush();
  }
  try {
    open();
    FAIL() << "opened a version-2 store";
  } catch (const StoreError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("store at " + options().path +
                        " has format version 2, this spamward "
                        "reads version 1"),
              std::string::npos)
        << what;
    EXPECT_NE(what.find("move it aside"), std::string::npos) << what;
  }
}

TEST_F(LmdbStore, ErrorsNameThePath) {
  LmdbOptions o = options();
  o.path = dir_.path() + "/file";
  { std::ofstream(o.path) << "not a directory"; }
  try {
    open_lmdb_store(o, clock_);
    FAIL();
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find(o.path), std::string::npos) << e.what();
  }
}

TEST_F(LmdbStore, GrowsTheMapWhenFull) {
  LmdbOptions o = options();
  o.map_size = 1 << 20;  // 1 MiB; we write about 8 MiB
  std::string value(8000, 'x');
  {
    auto s = open_lmdb_store(o, clock_);
    for (int i = 0; i < 1000; ++i) s->put("big", "k" + std::to_string(i), value);
    s->flush();
    EXPECT_EQ(s->count("big"), 1000);
  }
  auto s = open_lmdb_store(o, clock_);  // reopening with the small size adopts the file's
  EXPECT_EQ(s->count("big"), 1000);
  EXPECT_EQ(s->get("big", "k999"), value);
  s->put("big", "one-more", value);
  s->flush();
  EXPECT_EQ(s->get("big", "one-more"), value);
}

TEST_F(LmdbStore, TwoStoresOnOnePathSeeEachOthersWrites) {
  auto a = open();
  auto b = open();
  a->put("allow", "192.0.2.1", "x");
  a->flush();
  EXPECT_EQ(b->get("allow", "192.0.2.1"), "x");
  b->erase("allow", "192.0.2.1");
  b->flush();
  EXPECT_EQ(a->get("allow", "192.0.2.1"), std::nullopt);
  a.reset();  // closing one must leave the other working
  b->put("allow", "k", "v");
  b->flush();
  EXPECT_EQ(b->get("allow", "k"), "v");
}

TEST_F(LmdbStore, AnotherProcessSeesFlushedWritesAndViceVersa) {
  spamward::test::ChildProcess child([this] {  // forked before this process opens the store
    auto c = open();
    if (c->get("t", "from-parent") != "p") return 3;
    c->put("t", "from-child", "c");
    c->flush();
    return 0;
  });
  auto s = open();
  EXPECT_EQ(s->get("t", "from-child"), std::nullopt);  // the table is missing in this process
  s->put("t", "from-parent", "p");
  s->flush();
  int rc = child.run();
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(s->get("t", "from-child"), "c");  // with no reopen
  EXPECT_EQ(scan_all(*s, "t", ""), (Entries{{"from-child", "c"}, {"from-parent", "p"}}));
}

TEST_F(LmdbStore, SurvivesKillNineWithEveryFlushedWrite) {
  std::mt19937 rng(std::random_device{}());
  std::set<std::string> flushed;
  for (int round = 0; round < 6; ++round) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      try {
        auto s = open();  // the first round creates the store: a kill may land there too
        std::string value(200, 'v');
        for (int i = 0;; ++i) {
          std::string key = "r" + std::to_string(round) + "-" + std::to_string(i);
          s->put("t", key, value + key);
          if (i % 3 == 0) s->erase("t", "r" + std::to_string(round) + "-" + std::to_string(i - 1));
          s->flush();
          std::string line = key + "\n";
          if (write(fds[1], line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
            _exit(2);
          }
        }
      } catch (...) {
        _exit(3);
      }
    }
    close(fds[1]);
    std::string received;
    char buf[4096];
    // Except in the first round (a kill during creation), let the child report a few flushed
    // writes first, however slow the machine (ASan, a loaded CI box): otherwise the rounds
    // may prove nothing. Then drain the pipe until a random moment, and kill.
    if (round > 0) {
      auto patience = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      while (std::count(received.begin(), received.end(), '\n') < 3 &&
             std::chrono::steady_clock::now() < patience) {
        pollfd p{fds[0], POLLIN, 0};
        if (poll(&p, 1, 1000) > 0) {
          ssize_t n = read(fds[0], buf, sizeof buf);
          if (n <= 0) break;
          received.append(buf, static_cast<size_t>(n));
        }
      }
    }
    auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(round == 0 ? 1 : rng() % 150);
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fds[0], POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) > 0) {
        ssize_t n = read(fds[0], buf, sizeof buf);
        if (n <= 0) break;
        received.append(buf, static_cast<size_t>(n));
      }
    }
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the child exited by itself: " << WEXITSTATUS(status);
    for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;)
      received.append(buf, static_cast<size_t>(n));
    close(fds[0]);
    // Only complete lines were reported after their flush() returned.
    size_t start = 0;
    for (size_t nl; (nl = received.find('\n', start)) != std::string::npos; start = nl + 1) {
      flushed.insert(received.substr(start, nl - start));
    }

    auto s = open();  // readable after the kill
    std::string value(200, 'v');
    for (const auto& key : flushed) {
      // A key r-i with i%3==2 is erased together with the write of r-(i+1): gone when that
      // was reported, either way when the child died around that flush.
      auto dash = key.find('-');
      int i = std::stoi(key.substr(dash + 1));
      std::string next = key.substr(0, dash + 1) + std::to_string(i + 1);
      if (i % 3 == 2) {
        if (flushed.contains(next)) {
          EXPECT_EQ(s->get("t", key), std::nullopt) << key;
        }
      } else {
        EXPECT_EQ(s->get("t", key), value + key) << "lost flushed write " << key;
      }
    }
    s->count("t");
  }
  // Most rounds must have flushed something, else the test proves little.
  EXPECT_GT(flushed.size(), 10u);
}

}  // namespace
