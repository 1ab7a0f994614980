// Redis backend of Store (contract in store.h; operators' view in docs/redis.md).
//
// Layout, every key under options.key_prefix (P, default "spamward:"):
// - P t:TABLE  hash KEY -> 8-byte big-endian expiry (unix ms of the injected Clock, 0 = none)
//              + the caller's bytes (write_queue.h): get() is one HGET, get_many() one HMGET
//              per 4096 keys, all pipelined (Bayes asks for ~1,500 tokens per message);
// - P k:TABLE  sorted set of the keys, all with score 0, so ZRANGEBYLEX walks them in byte
//              order (memcmp, as LMDB and std::string order them) for scan();
// - P x:TABLE  sorted set of the keys that expire, scored by their expiry, for the sweep;
// - P tables   set of the table names, for the sweep;
// - table "meta", key "format_version" holds kStoreFormatVersion, like LMDB's.
// A batch of writes keeps the four consistent: it is one MULTI/EXEC, sent pipelined.
//
// Expiry is judged against the injected Clock (tests drive a FakeClock), never by Redis's own
// TTLs: an expired entry is invisible at once and deleted by a sweep (any host's), which runs a
// Lua script that re-reads each candidate's expiry inside Redis, so an entry another host has
// just renewed is never deleted. Redis 7.0 has no per-field expiry, so there is no real-time
// backstop: with every spamward stopped, expired entries wait for the next sweep.
//
// Sharing: every read goes to Redis (no client-side cache beyond this process's queue of
// writes not yet committed), so a commit by one host is seen by every host's next read.
//
// Failures: each call has a deadline (state/redis_client.h); a failed call throws StoreError
// and callers fail open. The daemon may open the store while Redis is down (RedisOptions::
// require_connection = false): the format version is then checked on the first call that
// reaches Redis, and until it passes every call throws.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <optional>
#include <utility>

#include "state/redis_client.h"
#include "state/store.h"
#include "state/write_queue.h"

namespace spamward {
namespace {

constexpr size_t kMaxBatch = 1000;         // writes per MULTI/EXEC
constexpr size_t kScanChunk = 256;         // keys per ZRANGEBYLEX in scan()
constexpr size_t kSweepChunk = 500;        // candidates per sweep script call
constexpr size_t kMaxKeysPerHmget = 4096;  // get_many() splits larger requests
constexpr int kMaxSweepRounds = 1000;      // per table per sweep: the rest waits for the next
constexpr const char* kMetaTable = "meta";
constexpr const char* kFormatKey = "format_version";

// KEYS: the table's hash, key index and expiry index; ARGV[1]: now (unix ms); ARGV[2..]: the
// candidates. Deletes those whose stored expiry (the value's 8-byte header) has passed;
// repairs the expiry index of the others (renewed, erased), so the sweep always progresses.
constexpr const char* kSweepScript = R"lua(
local now = tonumber(ARGV[1])
local removed = 0
for i = 2, #ARGV do
  local key = ARGV[i]
  local raw = redis.call('HGET', KEYS[1], key)
  if not raw then
    redis.call('ZREM', KEYS[2], key)
    redis.call('ZREM', KEYS[3], key)
  else
    local expiry = 0
    if #raw >= 8 then
      for j = 1, 8 do expiry = expiry * 256 + string.byte(raw, j) end
    end
    if expiry ~= 0 and expiry <= now then
      removed = removed + redis.call('HDEL', KEYS[1], key)
      redis.call('ZREM', KEYS[2], key)
      redis.call('ZREM', KEYS[3], key)
    elseif expiry == 0 then
      redis.call('ZREM', KEYS[3], key)
    else
      redis.call('ZADD', KEYS[3], expiry, key)
    end
  end
end
return removed
)lua";

// A store that exists but is not ours to read: opening must fail, even for the daemon.
class FormatError : public StoreError {
 public:
  using StoreError::StoreError;
};

RedisClientOptions client_options(const RedisOptions& o) {
  RedisClientOptions c;
  c.connect_timeout = o.connect_timeout;
  c.io_timeout = o.io_timeout;
  c.retry_after = o.retry_after;
  c.max_connections = o.max_connections;
  c.log_transitions = !o.require_connection;  // the daemon logs; a command reports and exits
  return c;
}

// The smallest string above every string that starts with `prefix`, or nullopt when there is
// none (empty prefix, or all 0xff bytes).
std::optional<std::string> prefix_successor(std::string_view prefix) {
  std::string s(prefix);
  while (!s.empty() && static_cast<unsigned char>(s.back()) == 0xff) s.pop_back();
  if (s.empty()) return std::nullopt;
  s.back() = static_cast<char>(static_cast<unsigned char>(s.back()) + 1);
  return s;
}

class RedisStore final : public QueuedStore {
 public:
  RedisStore(const RedisOptions& options, const Clock& clock)
      : QueuedStore(clock,
                    "store at " + RedisUrl::parse(options.url).display() + " (keys " +
                        options.key_prefix + "*)",
                    options.batch_interval, kMaxBatch),
        options_(options),
        client_(RedisUrl::parse(options.url), client_options(options)) {
    try {
      ensure_verified();
    } catch (const FormatError&) {
      throw;
    } catch (const StoreError& e) {
      if (options.require_connection) throw;
      spdlog::error("{}; starting anyway: store-backed checks fail open until Redis answers",
                    e.what());
    }
    start(options.sweep_interval);
  }

  ~RedisStore() override { stop(); }

 private:
  std::optional<std::string> committed_get(std::string_view table, std::string_view key,
                                           int64_t now) override {
    ensure_verified();
    RedisReply r = client_.command({"HGET", data_key(table), std::string(key)});
    return live_payload(r, now, "HGET");
  }

  void committed_get_many(std::string_view table, const std::vector<std::string>& keys,
                          const std::vector<bool>& answered, int64_t now,
                          std::vector<std::optional<std::string>>& out) override {
    std::vector<size_t> asked;
    std::vector<RedisCommand> commands;
    for (size_t i = 0; i < keys.size(); ++i) {
      if (answered[i]) continue;
      if (asked.size() % kMaxKeysPerHmget == 0) commands.push_back({"HMGET", data_key(table)});
      commands.back().push_back(keys[i]);
      asked.push_back(i);
    }
    if (asked.empty()) return;
    ensure_verified();
    auto replies = client_.execute(commands);
    size_t n = 0;
    for (const auto& r : replies) {
      for (const auto& value : array(r, "HMGET").elements) {
        if (n == asked.size()) fail("HMGET: more values than keys");
        out[asked[n++]] = live_payload(value, now, "HMGET");
      }
    }
    if (n != asked.size()) fail("HMGET: fewer values than keys");
  }

  void committed_scan(std::string_view table, std::string_view prefix, int64_t now,
                      ScanMerge& merge) override {
    ensure_verified();
    std::string min = prefix.empty() ? "-" : "[" + std::string(prefix);
    auto successor = prefix_successor(prefix);
    std::string max = successor ? "(" + *successor : "+";
    for (;;) {
      // The keys, then their values: the visitor runs with no connection held, so it may
      // call back into the store.
      RedisReply keys = client_.command(
          {"ZRANGEBYLEX", index_key(table), min, max, "LIMIT", "0", std::to_string(kScanChunk)});
      const auto& names = array(keys, "ZRANGEBYLEX").elements;
      if (names.empty()) break;
      RedisCommand hmget = {"HMGET", data_key(table)};
      for (const auto& k : names) hmget.push_back(string(k, "ZRANGEBYLEX"));
      RedisReply values = client_.command(std::move(hmget));
      const auto& raw = array(values, "HMGET").elements;
      if (raw.size() != names.size())
        fail("HMGET: " + std::to_string(raw.size()) + " values for " +
             std::to_string(names.size()) + " keys");
      for (size_t i = 0; i < names.size(); ++i) {
        // Absent: erased by another host between the two commands.
        auto value = live_payload(raw[i], now, "HMGET");
        if (value && !merge.committed(names[i].str, *value)) return;
      }
      if (names.size() < kScanChunk) break;
      min = "(" + names.back().str;
    }
  }

 public:
  int64_t count(std::string_view table) override {
    int64_t now = to_unix_ms(clock_.now());
    PendingMap pending = queue_.pending_under(table, "");
    ensure_verified();
    // One transaction, so the counts and the committed state of the queued keys agree.
    std::vector<RedisCommand> commands = {
        {"MULTI"},
        {"ZCARD", index_key(table)},
        {"ZCOUNT", expiry_key(table), "-inf", std::to_string(now)}};
    if (!pending.empty()) {
      RedisCommand hmget = {"HMGET", data_key(table)};
      for (const auto& [k, op] : pending) hmget.push_back(k);
      commands.push_back(std::move(hmget));
    }
    commands.push_back({"EXEC"});
    auto replies = client_.execute(commands);
    const auto& results = exec_results(replies, "count");
    if (results.size() != commands.size() - 2) fail("EXEC: wrong number of results");
    int64_t n = integer(results[0], "ZCARD") - integer(results[1], "ZCOUNT");
    if (!pending.empty()) {
      const auto& raw = array(results[2], "HMGET").elements;
      if (raw.size() != pending.size()) fail("HMGET: wrong number of values");
      size_t i = 0;
      for (const auto& [k, op] : pending) {
        bool committed_live = live_payload(raw[i++], now, "HMGET").has_value();
        n += (op.live(now) ? 1 : 0) - (committed_live ? 1 : 0);
      }
    }
    return n;
  }

  int64_t sweep_expired() override {
    ensure_verified();
    int64_t now = to_unix_ms(clock_.now());
    RedisReply tables = client_.command({"SMEMBERS", tables_key()});
    int64_t removed = 0;
    for (const auto& t : array(tables, "SMEMBERS").elements) {
      const std::string& table = string(t, "SMEMBERS");
      if (table == kMetaTable) continue;
      for (int round = 0; round < kMaxSweepRounds; ++round) {
        RedisReply due =
            client_.command({"ZRANGEBYSCORE", expiry_key(table), "-inf", std::to_string(now),
                             "LIMIT", "0", std::to_string(kSweepChunk)});
        const auto& keys = array(due, "ZRANGEBYSCORE").elements;
        if (keys.empty()) break;
        RedisCommand eval = {"EVAL",
                             kSweepScript,
                             "3",
                             data_key(table),
                             index_key(table),
                             expiry_key(table),
                             std::to_string(now)};
        for (const auto& k : keys) eval.push_back(string(k, "ZRANGEBYSCORE"));
        removed += integer(client_.command(std::move(eval)), "EVAL");
        if (keys.size() < kSweepChunk) break;
      }
    }
    return removed;
  }

 private:
  std::string data_key(std::string_view table) const { return key("t:", table); }
  std::string index_key(std::string_view table) const { return key("k:", table); }
  std::string expiry_key(std::string_view table) const { return key("x:", table); }
  std::string tables_key() const { return options_.key_prefix + "tables"; }
  std::string key(std::string_view kind, std::string_view table) const {
    std::string k = options_.key_prefix;
    k += kind;
    k += table;
    return k;
  }

  [[noreturn]] void fail(const std::string& what) const { throw StoreError(where_ + ": " + what); }

  const RedisReply& checked(const RedisReply& r, std::string_view command) const {
    if (r.is_error()) fail(std::string(command) + ": " + r.str);
    return r;
  }
  const RedisReply& array(const RedisReply& r, std::string_view command) const {
    if (checked(r, command).type != RedisReply::Type::array)
      fail(std::string(command) + ": not an array");
    return r;
  }
  const std::string& string(const RedisReply& r, std::string_view command) const {
    if (checked(r, command).type != RedisReply::Type::string)
      fail(std::string(command) + ": not a string");
    return r.str;
  }
  int64_t integer(const RedisReply& r, std::string_view command) const {
    if (checked(r, command).type != RedisReply::Type::integer)
      fail(std::string(command) + ": not an integer");
    return r.integer;
  }
  // A stored value as get() answers it: absent (nil), expired, or its payload.
  std::optional<std::string> live_payload(const RedisReply& r, int64_t now,
                                          std::string_view command) const {
    if (checked(r, command).type == RedisReply::Type::nil) return std::nullopt;
    const std::string& raw = string(r, command);
    if (expired_at(stored_expiry(raw), now)) return std::nullopt;
    return std::string(stored_payload(raw));
  }
  // The results of the EXEC that ends `replies` (MULTI, the queued commands, EXEC).
  const std::vector<RedisReply>& exec_results(const std::vector<RedisReply>& replies,
                                              std::string_view what) const {
    for (const auto& r : replies) checked(r, what);  // +QUEUED, or why the command was refused
    const RedisReply& exec = replies.back();
    if (exec.type != RedisReply::Type::array)
      fail(std::string(what) + ": the transaction was aborted");
    for (const auto& r : exec.elements) checked(r, what);
    return exec.elements;
  }

  // Checks the format version once Redis answers (see the header comment).
  void ensure_verified() {
    if (verified_.load(std::memory_order_acquire)) return;
    std::lock_guard lock(verify_mu_);
    if (verified_.load(std::memory_order_relaxed)) return;
    check_format_version();
    verified_.store(true, std::memory_order_release);
  }

  void check_format_version() {
    // One transaction: the version and the tables set are written together, so a store that
    // another host is creating right now is seen either empty or with its version.
    auto replies = client_.execute(
        {{"MULTI"}, {"HGET", data_key(kMetaTable), kFormatKey}, {"SCARD", tables_key()}, {"EXEC"}});
    const auto& results = exec_results(replies, "reading the format version");
    if (results.size() != 2) fail("EXEC: wrong number of results");
    std::optional<std::string> version;
    if (results[0].type != RedisReply::Type::nil) {
      version = std::string(stored_payload(string(results[0], "HGET")));
    }
    if (!version) {
      if (integer(results[1], "SCARD") > 0) {
        throw FormatError(where_ +
                          " has data but no format version; it was not written by spamward: "
                          "point [store] url at another database, or change the key prefix");
      }
      // A new store: the version is committed before any data, synchronously.
      PendingWrite op;
      op.value = std::to_string(kStoreFormatVersion);
      commit_batch({{kMetaTable, kFormatKey, std::move(op)}});
      spdlog::info("{}: new store, format version {}", where_, kStoreFormatVersion);
      return;
    }
    if (*version != std::to_string(kStoreFormatVersion)) {
      throw FormatError(where_ + " has format version " + *version +
                        ", this spamward reads version " + std::to_string(kStoreFormatVersion) +
                        ": run the newer spamward that wrote it (which can migrate or export it), "
                        "or point [store] url at another database to start an empty store");
    }
  }

  // The writer's batches: only into a database whose format version is known to be ours.
  void commit(const std::vector<QueuedWrite>& batch) override {
    ensure_verified();
    commit_batch(batch);
  }

  // One batch as one MULTI/EXEC, pipelined. Throws StoreError.
  void commit_batch(const std::vector<QueuedWrite>& batch) {
    if (batch.empty()) return;
    std::vector<RedisCommand> commands;
    commands.reserve(batch.size() * 3 + 8);
    commands.push_back({"MULTI"});
    std::vector<std::string_view> tables;
    for (const auto& q : batch) {
      if (q.op.erase) {
        commands.push_back({"HDEL", data_key(q.table), q.key});
        commands.push_back({"ZREM", index_key(q.table), q.key});
        commands.push_back({"ZREM", expiry_key(q.table), q.key});
        continue;
      }
      commands.push_back(
          {"HSET", data_key(q.table), q.key, encode_stored(q.op.value, q.op.expiry_ms)});
      commands.push_back({"ZADD", index_key(q.table), "0", q.key});
      if (q.op.expiry_ms != 0) {
        commands.push_back({"ZADD", expiry_key(q.table), std::to_string(q.op.expiry_ms), q.key});
      } else {
        commands.push_back({"ZREM", expiry_key(q.table), q.key});
      }
      if (std::find(tables.begin(), tables.end(), q.table) == tables.end()) {
        tables.push_back(q.table);
      }
    }
    if (!tables.empty()) {
      // Data never exists without a format version, even after Redis lost everything (a
      // restart without persistence) while this process kept writing.
      commands.push_back({"HSETNX", data_key(kMetaTable), kFormatKey,
                          encode_stored(std::to_string(kStoreFormatVersion), 0)});
      RedisCommand sadd = {"SADD", tables_key(), kMetaTable};
      for (auto t : tables) sadd.emplace_back(t);
      commands.push_back(std::move(sadd));
    }
    commands.push_back({"EXEC"});
    exec_results(client_.execute(commands),
                 "committing " + std::to_string(batch.size()) + " writes");
  }

  RedisOptions options_;
  RedisClient client_;
  std::mutex verify_mu_;
  std::atomic<bool> verified_{false};
};

}  // namespace

std::unique_ptr<Store> open_redis_store(const RedisOptions& options, const Clock& clock) {
  return std::make_unique<RedisStore>(options, clock);
}

}  // namespace spamward
