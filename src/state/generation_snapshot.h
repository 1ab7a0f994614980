// GenerationSnapshot: an in-memory snapshot of some store tables, rebuilt when the store's
// generation key changes.
//
// Contract:
// - Writers (in this process or another one sharing the store) put a new random value under
//   the generation key after each change. Readers call get(): at most once per `interval`
//   (or at once after invalidate()), one caller re-reads the generation; when it differs
//   from the current snapshot's, `load(generation)` builds a new snapshot. Other callers keep
//   using the current snapshot meanwhile, so a lookup costs a shared_ptr copy.
// - Loads are serialised, so an older load never replaces a newer one.
// - A StoreError while re-checking keeps the previous snapshot (logged, retried on the next
//   call); with no previous snapshot it propagates.
// - Snapshot is any type with a `std::string generation` member.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

#include "state/store.h"

namespace spamward {

template <class Snapshot>
class GenerationSnapshot {
 public:
  // `what` names the data in the log line a store error gives ("admin lists").
  GenerationSnapshot(Store& store, std::string_view table, std::string_view key,
                     std::chrono::milliseconds interval, std::string_view what)
      : store_(store), table_(table), key_(key), interval_(interval), what_(what) {}

  // What a re-check did.
  struct Reload {
    bool reloaded = false;      // a new snapshot was loaded
    bool had_previous = false;  // ... and it replaced an earlier one (not the first load)
  };

  // The snapshot to use now; re-checks the generation when due. `load` is called as
  // load(std::string generation) and returns std::shared_ptr<const Snapshot>. When `reload`
  // is given, it receives what the re-check did (nothing when none was due).
  template <class Load>
  std::shared_ptr<const Snapshot> get(Load&& load, Reload* reload = nullptr) {
    using namespace std::chrono;
    int64_t now = duration_cast<nanoseconds>(steady_clock::now().time_since_epoch()).count();
    int64_t due = next_check_ns_.load();
    // One thread re-checks; the others keep using the current snapshot meanwhile.
    bool check = now >= due && next_check_ns_.compare_exchange_strong(
                                   due, now + duration_cast<nanoseconds>(interval_).count());
    std::shared_ptr<const Snapshot> current = this->current();
    if (!check && current) return current;
    return recheck(load, reload);
  }

  // Re-reads the generation now, whether due or not (same rules as get()).
  template <class Load>
  std::shared_ptr<const Snapshot> recheck(Load&& load, Reload* reload = nullptr) {
    Reload result;
    std::lock_guard loading(load_mu_);
    std::shared_ptr<const Snapshot> current = this->current();
    try {
      std::string generation = store_.get(table_, key_).value_or("");
      if (current && current->generation == generation) {
        if (reload) *reload = result;
        return current;
      }
      std::shared_ptr<const Snapshot> fresh = load(std::move(generation));
      {
        std::lock_guard lock(mu_);
        snapshot_ = fresh;
      }
      result.reloaded = true;
      result.had_previous = current != nullptr;
      if (reload) *reload = result;
      return fresh;
    } catch (const StoreError& e) {
      if (!current) throw;
      invalidate();  // retry on the next lookup
      spdlog::warn("{}: keeping the previous snapshot: {}", what_, e.what());
      if (reload) *reload = result;
      return current;
    }
  }

  // The current snapshot without any re-check (null before the first load).
  std::shared_ptr<const Snapshot> current() const {
    std::lock_guard lock(mu_);
    return snapshot_;
  }

  // Makes the next get() re-check the generation.
  void invalidate() { next_check_ns_.store(0); }

 private:
  Store& store_;
  const std::string table_;
  const std::string key_;
  const std::chrono::milliseconds interval_;
  const std::string what_;
  std::atomic<int64_t> next_check_ns_{0};  // steady clock; 0 = check now
  mutable std::mutex mu_;                  // guards snapshot_ (not held while loading)
  std::mutex load_mu_;                     // serialises loads
  std::shared_ptr<const Snapshot> snapshot_;
};

}  // namespace spamward
