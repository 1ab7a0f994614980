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
// - QueuedStore: the half of the Store contract that is the same for both backends (reads
//   consult the queue first, writes go through it, scans merge, a sweeper runs); a backend
//   supplies the committed reads and the commit of a batch.
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
  // The visitor has returned false: nothing more is offered to it.
  bool stopped() const { return stopped_; }

 private:
  bool emit_before(const std::string_view* bound);

  PendingMap pending_;
  PendingMap::const_iterator it_;
  int64_t now_;
  const Store::Visitor& visit_;
  bool stopped_ = false;
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

// The durable backends' common half of the Store contract (template method): get(),
// get_many() and scan() answer from the write queue first and ask the backend's committed_*
// reads for the rest; put(), erase() and flush() go through the queue. A backend implements
// commit() and the committed_* reads. Its constructor calls start() once it can commit, and
// its destructor calls stop() before anything else: the writer and sweeper threads call into
// the backend, which must still exist.
class QueuedStore : public Store {
 public:
  std::optional<std::string> get(std::string_view table, std::string_view key) final;
  std::vector<std::optional<std::string>> get_many(std::string_view table,
                                                   const std::vector<std::string>& keys) final;
  void put(std::string_view table, std::string_view key, std::string_view value,
           std::optional<TimePoint> expires_at) final;
  void erase(std::string_view table, std::string_view key) final;
  // Throws StoreError when a batch failed to commit since the last flush() that reported a
  // failure: the writes of a failed batch are lost (and logged), never retried forever.
  void flush() final;
  void scan(std::string_view table, std::string_view prefix, const Visitor& visit) final;

 protected:
  // `where` names the store in errors ("store at /var/lib/spamward").
  QueuedStore(const Clock& clock, std::string where, Duration batch_interval, size_t max_batch);
  // Starts the writer thread and a sweeper calling sweep_expired() every `sweep_interval`.
  void start(Duration sweep_interval);
  // Stops the sweeper, commits what is queued, joins the writer. Idempotent.
  void stop();

  // Commits one batch in order, or throws (the batch is then lost and logged).
  virtual void commit(const std::vector<QueuedWrite>& batch) = 0;
  // The committed, live value of (table, key), or nullopt.
  virtual std::optional<std::string> committed_get(std::string_view table, std::string_view key,
                                                   int64_t now_ms) = 0;
  // Sets out[i] to the committed, live value of keys[i] for every i not answered[i].
  virtual void committed_get_many(std::string_view table, const std::vector<std::string>& keys,
                                  const std::vector<bool>& answered, int64_t now_ms,
                                  std::vector<std::optional<std::string>>& out) = 0;
  // Offers the committed, live entries under `prefix` to merge.committed() in key order until
  // it returns false. No connection or transaction may be held while it runs (the visitor may
  // call back into the store).
  virtual void committed_scan(std::string_view table, std::string_view prefix, int64_t now_ms,
                              ScanMerge& merge) = 0;

  const Clock& clock_;
  const std::string where_;
  WriteQueue queue_;

 private:
  std::optional<PeriodicTask> sweeper_;
};

}  // namespace spamward
