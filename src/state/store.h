// Store: the durable key-value state under greylisting, reputation, admin lists and Bayes.
//
// Contract (every backend):
// - Data lives in named tables ("allow", "deny", "greylist", ...); keys and values are bytes.
// - Writes go to one writer that commits them in batches. A write is *committed* once its
//   batch's transaction commits; after that it survives kill -9 at any moment. flush()
//   blocks until everything queued so far is committed.
// - Reads see committed data and, in the same process, the writes still queued (read your
//   own writes), so a read-modify-write on the event loop never sees stale data.
// - An entry may carry an expiry time (Clock time). From then on it is invisible to get()
//   and scan(), and a periodic sweep deletes it.
// - Errors (disk full, corrupt file) throw StoreError; callers fail open.
// - The store records its format version; opening a store of another version migrates it
//   or throws StoreError with a message that says what to do.
// - Thread-safe: any thread may call any method.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"

namespace spamward {

class StoreError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Store {
 public:
  virtual ~Store() = default;

  virtual std::optional<std::string> get(std::string_view table, std::string_view key) = 0;
  // get() of several keys of one table at once; out[i] answers keys[i]. Backends may share
  // one read transaction (LMDB: a Bayes message looks up a thousand tokens).
  virtual std::vector<std::optional<std::string>> get_many(std::string_view table,
                                                           const std::vector<std::string>& keys) {
    std::vector<std::optional<std::string>> out;
    out.reserve(keys.size());
    for (const auto& k : keys) out.push_back(get(table, k));
    return out;
  }
  virtual void put(std::string_view table, std::string_view key, std::string_view value,
                   std::optional<TimePoint> expires_at = std::nullopt) = 0;
  virtual void erase(std::string_view table, std::string_view key) = 0;
  virtual void flush() = 0;

  // Visits live entries whose key starts with `prefix`, in key order, until `visit` returns
  // false.
  using Visitor = std::function<bool(std::string_view key, std::string_view value)>;
  virtual void scan(std::string_view table, std::string_view prefix, const Visitor& visit) = 0;

  // Number of live entries in a table (for metrics and `spamward ip`).
  virtual int64_t count(std::string_view table) = 0;

  // Deletes expired entries now; returns how many. Backends also run it periodically.
  virtual int64_t sweep_expired() = 0;
};

struct LmdbOptions {
  std::string path;                       // a directory; created if absent
  int64_t map_size = int64_t{1} << 32;    // 4 GiB of address space, grown on demand
  Duration batch_interval = Duration(5);  // how long the writer gathers writes
  Duration sweep_interval = std::chrono::minutes(1);
};

// Throws StoreError.
std::unique_ptr<Store> open_lmdb_store(const LmdbOptions& options, const Clock& clock);

struct RedisOptions {
  std::string url;                       // redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]
  std::string key_prefix = "spamward:";  // every key this store touches starts with it
  Duration connect_timeout = std::chrono::seconds(1);
  Duration io_timeout = std::chrono::seconds(1);   // per call: a stalled Redis fails the call
  Duration retry_after = std::chrono::seconds(1);  // after a failure, calls fail at once
  size_t max_connections = 8;
  Duration batch_interval = Duration(5);
  Duration sweep_interval = std::chrono::minutes(1);
  // false (the daemon): open even when Redis cannot be reached, so that mail flows with the
  // store-backed checks failing open; the format version is checked once Redis answers.
  // true (one-shot commands): a Redis that does not answer is an error at once.
  bool require_connection = true;
};

// Redis backend (state/redis_store.cpp): the same contract, with durability as configured in
// Redis (docs/redis.md), shared by every spamward that points at the same database. Throws
// StoreError (bad url; Redis unreachable when require_connection; another format version).
std::unique_ptr<Store> open_redis_store(const RedisOptions& options, const Clock& clock);

// In-memory store with the same semantics (no durability), for unit tests.
std::unique_ptr<Store> make_memory_store(const Clock& clock);

inline constexpr int kStoreFormatVersion = 1;

}  // namespace spamward
