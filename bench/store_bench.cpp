// store_bench: the Store backends side by side (Google Benchmark): get() of one key, get_many()
// of 1,500 keys (one Bayes message), and put() + flush() of 1,000 writes, on LMDB and on Redis.
// Both start from 100,000 entries (27-byte keys, 40-byte values, an expiry, like greylist
// entries). It starts its own redis-server on a free loopback port with the persistence
// docs/redis.md recommends (appendonly yes, appendfsync everysec), and reports Redis's memory
// per entry. Results and the command are in bench/RESULTS.md.
//
// Run: build/store_bench [--benchmark_filter=REGEX]
//      SPAMWARD_BENCH_REDIS_URL=redis://HOST:PORT/DB build/store_bench   (an existing Redis,
//      which it FLUSHDBs: never point it at data you need)
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "redis_test_support.h"  // tests/unit: the private redis-server
#include "state/redis_client.h"
#include "state/store.h"

namespace {

using namespace spamward;

constexpr int kEntries = 100000;
constexpr int kManyKeys = 1500;
constexpr int kPutBatch = 1000;

std::string key_of(int i) {
  char k[32];
  std::snprintf(k, sizeof k, "192.0.2.%03d|s%07d@x.test", i % 256, i);  // 27 bytes
  return k;
}

struct Backends {
  SystemClock clock;
  std::unique_ptr<spamward::test::RedisServer> redis_process;
  std::string redis_url;
  std::filesystem::path lmdb_dir;
  std::unique_ptr<Store> lmdb;
  std::unique_ptr<Store> redis;
  double redis_bytes_per_entry = 0;

  Backends() {
    if (const char* url = std::getenv("SPAMWARD_BENCH_REDIS_URL")) {
      redis_url = url;
    } else {
      redis_process = std::make_unique<spamward::test::RedisServer>(
          std::vector<std::string>{"--appendonly", "yes", "--appendfsync", "everysec"});
      redis_url = redis_process->url();
    }
    RedisClient admin(RedisUrl::parse(redis_url), {});
    admin.command({"FLUSHDB"});
    int64_t before = used_memory(admin);
    lmdb_dir =
        std::filesystem::temp_directory_path() / ("store_bench-lmdb-" + std::to_string(getpid()));
    LmdbOptions lo;
    lo.path = lmdb_dir.string();
    lmdb = open_lmdb_store(lo, clock);
    RedisOptions ro;
    ro.url = redis_url;
    redis = open_redis_store(ro, clock);
    std::string value(40, 'v');
    auto expiry = clock.now() + std::chrono::hours(48);
    for (Store* s : {lmdb.get(), redis.get()}) {
      for (int i = 0; i < kEntries; ++i) s->put("bench", key_of(i), value, expiry);
      s->flush();
    }
    redis_bytes_per_entry =
        static_cast<double>(used_memory(admin) - before) / static_cast<double>(kEntries);
  }
  ~Backends() {
    lmdb.reset();
    redis.reset();
    std::error_code ec;
    std::filesystem::remove_all(lmdb_dir, ec);
  }

  static int64_t used_memory(RedisClient& c) {
    std::string info = c.command({"INFO", "memory"}).str;
    auto at = info.find("used_memory:");
    return at == std::string::npos ? 0 : std::stoll(info.substr(at + 12));
  }

  Store& get(const std::string& name) { return name == "lmdb" ? *lmdb : *redis; }
};

Backends& backends() {
  static Backends b;
  return b;
}

void BM_Get(benchmark::State& state, const std::string& backend) {
  Store& s = backends().get(backend);
  std::mt19937 rng(1);
  for (auto _ : state) {
    auto v = s.get("bench", key_of(static_cast<int>(rng() % kEntries)));
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
}

// One Bayes message's lookups: 1,500 keys, about half of them stored.
void BM_GetMany(benchmark::State& state, const std::string& backend) {
  Store& s = backends().get(backend);
  std::mt19937 rng(2);
  std::vector<std::string> keys(kManyKeys);
  for (auto _ : state) {
    state.PauseTiming();
    for (auto& k : keys) k = key_of(static_cast<int>(rng() % (2 * kEntries)));
    state.ResumeTiming();
    auto v = s.get_many("bench", keys);
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations() * kManyKeys);
  if (backend == "redis")
    state.counters["redis_bytes_per_entry"] = backends().redis_bytes_per_entry;
}

// 1,000 writes queued, then flush(): what the writer commits for a busy daemon.
void BM_PutFlush(benchmark::State& state, const std::string& backend) {
  Store& s = backends().get(backend);
  std::mt19937 rng(3);
  std::string value(40, 'w');
  auto expiry = backends().clock.now() + std::chrono::hours(48);
  for (auto _ : state) {
    for (int i = 0; i < kPutBatch; ++i) {
      s.put("bench", key_of(static_cast<int>(rng() % kEntries)), value, expiry);
    }
    s.flush();
  }
  state.SetItemsProcessed(state.iterations() * kPutBatch);
}

}  // namespace

int main(int argc, char** argv) {
  for (const std::string backend : {"lmdb", "redis"}) {
    // Wall time: a Redis call mostly waits for the network, which CPU time would not show.
    benchmark::RegisterBenchmark(("get/" + backend).c_str(), BM_Get, backend)
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark(("get_many_1500/" + backend).c_str(), BM_GetMany, backend)
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark(("put_1000_flush/" + backend).c_str(), BM_PutFlush, backend)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
