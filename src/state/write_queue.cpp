#include "state/write_queue.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <utility>

namespace spamward {

std::string encode_stored(std::string_view value, int64_t expiry_ms) {
  std::string out(kStoredHeaderSize + value.size(), '\0');
  auto ms = static_cast<uint64_t>(expiry_ms);
  for (int i = 7; i >= 0; --i) {
    out[static_cast<size_t>(i)] = static_cast<char>(ms & 0xff);
    ms >>= 8;
  }
  if (!value.empty()) std::memcpy(out.data() + kStoredHeaderSize, value.data(), value.size());
  return out;
}

int64_t stored_expiry(std::string_view raw) {
  if (raw.size() < kStoredHeaderSize) return 0;
  uint64_t ms = 0;
  for (size_t i = 0; i < kStoredHeaderSize; ++i) {
    ms = (ms << 8) | static_cast<unsigned char>(raw[i]);
  }
  return static_cast<int64_t>(ms);
}

std::string_view stored_payload(std::string_view raw) {
  return raw.size() < kStoredHeaderSize ? std::string_view() : raw.substr(kStoredHeaderSize);
}

int64_t expiry_ms_of(const std::optional<TimePoint>& expires_at) {
  return expires_at ? std::max<int64_t>(1, to_unix_ms(*expires_at)) : 0;
}

void check_table_and_key(std::string_view where, std::string_view table, std::string_view key) {
  if (table.empty()) throw StoreError(std::string(where) + ": empty table name");
  if (key.empty() || key.size() > kMaxKeySize) {
    throw StoreError(std::string(where) + ": key length " + std::to_string(key.size()) +
                     " out of range 1.." + std::to_string(kMaxKeySize) + " in table " +
                     std::string(table));
  }
}

// ---- WriteQueue ----

WriteQueue::WriteQueue(Duration batch_interval, size_t max_batch, Commit commit)
    : batch_interval_(batch_interval), max_batch_(max_batch), commit_(std::move(commit)) {}

WriteQueue::~WriteQueue() {
  stop();
}

void WriteQueue::start() {
  writer_ = std::thread([this] { writer_loop(); });
}

void WriteQueue::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (writer_.joinable()) writer_.join();
}

void WriteQueue::commit_now() {
  std::vector<QueuedWrite> batch;
  {
    std::lock_guard lock(mu_);
    batch.swap(queue_);
  }
  // Unlike the writer, a failure here reaches the caller (it is opening the store).
  try {
    commit_(batch);
  } catch (...) {
    std::lock_guard lock(mu_);
    finish_batch(batch);
    throw;
  }
  std::lock_guard lock(mu_);
  finish_batch(batch);
}

const PendingWrite* WriteQueue::find(std::string_view table, std::string_view key) const {
  auto t = overlay_.find(table);
  if (t == overlay_.end()) return nullptr;
  auto it = t->second.find(key);
  return it == t->second.end() ? nullptr : &it->second;
}

void WriteQueue::enqueue(std::string_view table, std::string_view key, PendingWrite op) {
  bool wake;
  {
    std::lock_guard lock(mu_);
    op.seq = next_seq_++;
    auto& t = overlay_[std::string(table)];
    if (auto it = t.find(key); it != t.end()) {
      it->second = op;
    } else {
      t.emplace(std::string(key), op);
    }
    queue_.push_back({std::string(table), std::string(key), std::move(op)});
    wake = queue_.size() == 1 || queue_.size() >= max_batch_;
  }
  if (wake) cv_.notify_all();
}

void WriteQueue::put(std::string_view where, std::string_view table, std::string_view key,
                     std::string_view value, const std::optional<TimePoint>& expires_at) {
  check_table_and_key(where, table, key);
  PendingWrite op;
  op.value = std::string(value);
  op.expiry_ms = expiry_ms_of(expires_at);
  enqueue(table, key, std::move(op));
}

void WriteQueue::erase(std::string_view where, std::string_view table, std::string_view key) {
  check_table_and_key(where, table, key);
  PendingWrite op;
  op.erase = true;
  enqueue(table, key, std::move(op));
}

bool WriteQueue::answer(std::string_view table, std::string_view key, int64_t now_ms,
                        std::optional<std::string>& value) const {
  std::lock_guard lock(mu_);
  const PendingWrite* op = find(table, key);
  if (!op) return false;
  if (op->live(now_ms)) {
    value = op->value;
  } else {
    value.reset();
  }
  return true;
}

void WriteQueue::answer_many(std::string_view table, const std::vector<std::string>& keys,
                             int64_t now_ms, std::vector<std::optional<std::string>>& out,
                             std::vector<bool>& answered) const {
  std::lock_guard lock(mu_);
  if (!overlay_.contains(table)) return;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (const PendingWrite* op = find(table, keys[i])) {
      answered[i] = true;
      if (op->live(now_ms)) out[i] = op->value;
    }
  }
}

PendingMap WriteQueue::pending_under(std::string_view table, std::string_view prefix) const {
  PendingMap out;
  std::lock_guard lock(mu_);
  if (auto t = overlay_.find(table); t != overlay_.end()) {
    for (auto it = t->second.lower_bound(prefix);
         it != t->second.end() && it->first.starts_with(prefix); ++it) {
      out.emplace(it->first, it->second);
    }
  }
  return out;
}

void WriteQueue::flush() {
  std::unique_lock lock(mu_);
  uint64_t target = next_seq_ - 1;
  uint64_t failures_before = failures_seen_by_flush_;
  flush_waiters_++;
  cv_.notify_all();
  done_cv_.wait(lock, [&] { return done_seq_ >= target; });
  flush_waiters_--;
  if (failures_ > failures_before) {
    failures_seen_by_flush_ = failures_;
    throw StoreError(last_failure_);
  }
}

void WriteQueue::writer_loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, nothing left
    // Gather for batch_interval unless a flush waits, the batch is full, or we stop.
    auto deadline = std::chrono::steady_clock::now() + batch_interval_;
    cv_.wait_until(lock, deadline,
                   [&] { return stopping_ || flush_waiters_ > 0 || queue_.size() >= max_batch_; });
    std::vector<QueuedWrite> batch;
    if (queue_.size() <= max_batch_) {
      batch.swap(queue_);
    } else {
      auto cut = queue_.begin() + static_cast<std::ptrdiff_t>(max_batch_);
      batch.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(cut));
      queue_.erase(queue_.begin(), cut);
    }
    lock.unlock();
    std::string error;
    try {
      commit_(batch);
    } catch (const std::exception& e) {
      error = e.what();
    }
    lock.lock();
    if (!error.empty()) {
      // The batch is lost; forget its overlay entries too, so reads show what is stored.
      spdlog::error("{} ({} writes lost)", error, batch.size());
      failures_++;
      last_failure_ = error;
    }
    finish_batch(batch);
  }
}

// Under mu_: the batch is committed (or lost); drop the overlay entries it made durable.
void WriteQueue::finish_batch(const std::vector<QueuedWrite>& batch) {
  for (const auto& q : batch) {
    auto t = overlay_.find(q.table);
    if (t == overlay_.end()) continue;
    auto it = t->second.find(q.key);
    if (it != t->second.end() && it->second.seq == q.op.seq) t->second.erase(it);
    if (t->second.empty()) overlay_.erase(t);
  }
  if (!batch.empty()) done_seq_ = std::max(done_seq_, batch.back().op.seq);
  done_cv_.notify_all();
}

// ---- ScanMerge ----

bool ScanMerge::emit_before(const std::string_view* bound) {
  for (; it_ != pending_.end() && (!bound || std::string_view(it_->first) < *bound); ++it_) {
    if (!it_->second.live(now_)) continue;
    if (!visit_(it_->first, it_->second.value)) return false;
  }
  return true;
}

bool ScanMerge::committed(std::string_view key, std::string_view value) {
  if (stopped_) return false;
  if (!emit_before(&key)) return !(stopped_ = true);
  if (it_ != pending_.end() && it_->first == key) {  // the queued write wins
    const PendingWrite& op = it_->second;
    ++it_;
    if (op.live(now_) && !visit_(key, op.value)) stopped_ = true;
    return !stopped_;
  }
  if (!visit_(key, value)) stopped_ = true;
  return !stopped_;
}

bool ScanMerge::finish() {
  if (stopped_) return false;
  if (!emit_before(nullptr)) stopped_ = true;
  return !stopped_;
}

// ---- PeriodicTask ----

PeriodicTask::PeriodicTask(Duration interval, std::string what, std::function<void()> job) {
  thread_ = std::thread([this, interval, what = std::move(what), job = std::move(job)] {
    std::unique_lock lock(mu_);
    for (;;) {
      if (cv_.wait_for(lock, interval, [&] { return stopping_; })) return;
      lock.unlock();
      try {
        job();
      } catch (const std::exception& e) {
        spdlog::warn("{} failed: {}", what, e.what());
      }
      lock.lock();
    }
  });
}

PeriodicTask::~PeriodicTask() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

QueuedStore::QueuedStore(const Clock& clock, std::string where, Duration batch_interval,
                         size_t max_batch)
    : clock_(clock),
      where_(std::move(where)),
      queue_(batch_interval, max_batch,
             [this](const std::vector<QueuedWrite>& batch) { commit(batch); }) {}

void QueuedStore::start(Duration sweep_interval) {
  queue_.start();
  sweeper_.emplace(sweep_interval, "sweeping expired entries", [this] { sweep_expired(); });
}

void QueuedStore::stop() {
  sweeper_.reset();
  queue_.stop();
}

std::optional<std::string> QueuedStore::get(std::string_view table, std::string_view key) {
  const int64_t now = to_unix_ms(clock_.now());
  std::optional<std::string> queued;
  if (queue_.answer(table, key, now, queued)) return queued;
  return committed_get(table, key, now);
}

std::vector<std::optional<std::string>> QueuedStore::get_many(
    std::string_view table, const std::vector<std::string>& keys) {
  std::vector<std::optional<std::string>> out(keys.size());
  std::vector<bool> answered(keys.size(), false);
  const int64_t now = to_unix_ms(clock_.now());
  queue_.answer_many(table, keys, now, out, answered);
  if (std::find(answered.begin(), answered.end(), false) != answered.end()) {
    committed_get_many(table, keys, answered, now, out);
  }
  return out;
}

void QueuedStore::put(std::string_view table, std::string_view key, std::string_view value,
                      std::optional<TimePoint> expires_at) {
  queue_.put(where_, table, key, value, expires_at);
}

void QueuedStore::erase(std::string_view table, std::string_view key) {
  queue_.erase(where_, table, key);
}

void QueuedStore::flush() {
  queue_.flush();
}

void QueuedStore::scan(std::string_view table, std::string_view prefix, const Visitor& visit) {
  const int64_t now = to_unix_ms(clock_.now());
  // The queued writes are copied before the committed data is read: a write missing from the
  // copy was committed before, hence is seen by the committed read.
  ScanMerge merge(queue_.pending_under(table, prefix), now, visit);
  committed_scan(table, prefix, now, merge);
  if (!merge.stopped()) merge.finish();
}

}  // namespace spamward
