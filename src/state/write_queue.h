// What the durable Store backends (LMDB, Redis) share beneath the contract of store.h:
//
// - The stored value format: an 8-byte big-endian expiry (unix ms, 0 = none) followed by the
//   caller's bytes. A value shorter than the header (never written by us) has no expiry and
//   no payload.
// - The limits every backend enforces on names (LMDB's: keys of 1..511 bytes), so a store
//   never accepts what another backend would refuse.
// - WriteQueue: writes queue up in memory and one writer thread hands them to the backend's
//   commit function in batches (at most max_batch writes, gathered for batch_interval unless
//   a flush() waits). The queue doubles as an overlay for reads (read your own writes): a
//   queued write answers get() and scan() until its batch is committed or lost. A batch whose
//   commit throws is lost and logged; the next flush() throws StoreError once for it (writes
//   are never retried forever). Destruction (or stop()) commits what is still queued.
// - ScanMerge: the ordered merge of committed entries with queued writes that scan() needs.
// - PeriodicTask: a thread that runs a job every interval (the sweeper).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "state/store.h"

namespace spamward {

inline constexpr size_t kStoredHeaderSize = 8;
inline constexpr size_t kMaxKeySize = 511;  // LMDB's default maximum key size

std::string encode_stored(std::string_view value, int64_t expiry_ms);
int64_t stored_expiry(std::string_view raw);
std::string_view stored_payload(std::string_view raw);
inline bool expired_at(int64_t expiry_ms, int64_t now_ms) {
  return expiry_ms != 0 && expiry_ms <= now_ms;
}
// 0 for none; a real expiry is never 0 (the epoch itself becomes 1 ms).
int64_t expiry_ms_of(const std::optional<TimePoint>& expires_at);
// Throws StoreError("WHERE: ...") for an empty table or a key outside 1..kMaxKeySize bytes.
void check_table_and_key(std::string_view where, std::string_view table, std::string_view key);

struct PendingWrite {
  uint64_t seq = 0;
  bool erase = false;
  int64_t expiry_ms = 0;
  std::string value;

  bool live(int64_t now_ms) const { return !erase && !expired_at(expiry_ms, now_ms); }
};

struct QueuedWrite {
  std::string table;
  std::string key;
  PendingWrite op;
};

using PendingMap = std::map<std::string, PendingWrite, std::less<>>;

class WriteQueue {
 public:
  // Commits one batch (in order; a later write of a key wins) or throws.
  using Commit = std::function<void(const std::vector<QueuedWrite>&)>;

  WriteQueue(Duration batch_interval, size_t max_batch, Commit commit);
  ~WriteQueue();
  WriteQueue(const WriteQueue&) = delete;
  WriteQueue& operator=(const WriteQueue&) = delete;

  // Starts the writer thread. Before it, commit_now() commits synchronously (a backend's
  // constructor writes its format version that way).
  void start();
  void commit_now();
  // Commits what is queued and joins the writer (the store is closing: nothing writes after
  // this). Idempotent.
  void stop();

  void enqueue(std::string_view table, std::string_view key, PendingWrite op);
  // Store::put() and Store::erase(): the names checked (check_table_and_key), then queued.
  void put(std::string_view where, std::string_view table, std::string_view key,
           std::string_view value, const std::optional<TimePoint>& expires_at);
  void erase(std::string_view where, std::string_view table, std::string_view key);
  // True when a write of (table, key) is queued; `value` is then what get() answers.
  bool answer(std::string_view table, std::string_view key, int64_t now_ms,
              std::optional<std::string>& value) const;
  // answer() for many keys: sets answered[i] and out[i] for the queued ones.
  void answer_many(std::string_view table, const std::vector<std::string>& keys, int64_t now_ms,
                   std::vector<std::optional<std::string>>& out, std::vector<bool>& answered) const;
  // A copy of the queued writes of `table` under `prefix`. Taken before reading committed
  // data, so that a write missing from the copy was committed before the read began.
  PendingMap pending_under(std::string_view table, std::string_view prefix) const;

  // Blocks until everything queued so far is committed; throws StoreError when a batch
  // failed since the last flush() that reported one.
  void flush();

 private:
  void writer_loop();
  void finish_batch(const std::vector<QueuedWrite>& batch);
  const PendingWrite* find(std::string_view table, std::string_view key) const;

  Duration batch_interval_;
  size_t max_batch_;
  Commit commit_;

  mutable std::mutex mu_;            // guards everything below
  std::condition_variable cv_;       // writer: work, flush, stop
  std::condition_variable done_cv_;  // flush(): a batch finished
  std::vector<QueuedWrite> queue_;
  std::map<std::string, PendingMap, std::less<>> overlay_;
  uint64_t next_seq_ = 1;
  uint64_t done_seq_ = 0;
  int flush_waiters_ = 0;
  uint64_t failures_ = 0;
  uint64_t failures_seen_by_flush_ = 0;
  std::string last_failure_;
  bool stopping_ = false;
  std::thread writer_;
};

// Feeds scan()'s visitor with committed entries (offered in key order, live ones only) merged
// with the queued writes, which win over committed entries of the same key.
class ScanMerge {
 public:
  ScanMerge(PendingMap pending, int64_t now_ms, const Store::Visitor& visit)
      : pending_(std::move(pending)), it_(pending_.begin()), now_(now_ms), visit_(visit) {}

  // Offers a live committed entry; false once the visitor has stopped.
  bool committed(std::string_view key, std::string_view value);
  // No more committed entries: visits the queued ones left; false when the visitor stopped.
  bool finish();

 private:
  bool emit_before(const std::string_view* bound);

  PendingMap pending_;
  PendingMap::const_iterator it_;
  int64_t now_;
  const Store::Visitor& visit_;
};

// Runs `job` every `interval` on a thread of its own until destroyed; logs what it throws.
class PeriodicTask {
 public:
  PeriodicTask(Duration interval, std::string what, std::function<void()> job);
  ~PeriodicTask();
  PeriodicTask(const PeriodicTask&) = delete;
  PeriodicTask& operator=(const PeriodicTask&) = delete;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace spamward
