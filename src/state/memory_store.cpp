// In-memory Store (contract in store.h) for unit tests: writes apply at once, so reads see
// them and flush() has nothing to wait for; nothing survives the object. Expired entries are
// invisible at once and deleted by sweep_expired(); there is no sweeper thread, because tests
// drive time with a FakeClock and call sweep_expired() themselves.
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "state/store.h"

namespace spamward {
namespace {

class MemoryStore final : public Store {
 public:
  explicit MemoryStore(const Clock& clock) : clock_(clock) {}

  std::optional<std::string> get(std::string_view table, std::string_view key) override {
    int64_t now = to_unix_ms(clock_.now());
    std::lock_guard lock(mu_);
    auto t = tables_.find(table);
    if (t == tables_.end()) return std::nullopt;
    auto it = t->second.find(key);
    if (it == t->second.end() || expired(it->second, now)) return std::nullopt;
    return it->second.value;
  }

  void put(std::string_view table, std::string_view key, std::string_view value,
           std::optional<TimePoint> expires_at) override {
    check(table, key);
    std::lock_guard lock(mu_);
    auto& t = tables_[std::string(table)];
    Entry entry{std::string(value), expires_at ? std::max<int64_t>(1, to_unix_ms(*expires_at)) : 0};
    if (auto it = t.find(key); it != t.end()) {
      it->second = std::move(entry);
    } else {
      t.emplace(std::string(key), std::move(entry));
    }
  }

  void erase(std::string_view table, std::string_view key) override {
    check(table, key);
    std::lock_guard lock(mu_);
    auto t = tables_.find(table);
    if (t == tables_.end()) return;
    if (auto it = t->second.find(key); it != t->second.end()) t->second.erase(it);
  }

  void flush() override {}

  void scan(std::string_view table, std::string_view prefix, const Visitor& visit) override {
    // Copied out first so that a visitor may call back into the store.
    std::vector<std::pair<std::string, std::string>> live;
    {
      int64_t now = to_unix_ms(clock_.now());
      std::lock_guard lock(mu_);
      auto t = tables_.find(table);
      if (t == tables_.end()) return;
      for (auto it = t->second.lower_bound(prefix);
           it != t->second.end() && it->first.starts_with(prefix); ++it) {
        if (!expired(it->second, now)) live.emplace_back(it->first, it->second.value);
      }
    }
    for (const auto& [k, v] : live) {
      if (!visit(k, v)) return;
    }
  }

  int64_t count(std::string_view table) override {
    int64_t now = to_unix_ms(clock_.now());
    std::lock_guard lock(mu_);
    auto t = tables_.find(table);
    if (t == tables_.end()) return 0;
    int64_t n = 0;
    for (const auto& [k, e] : t->second) n += expired(e, now) ? 0 : 1;
    return n;
  }

  int64_t sweep_expired() override {
    int64_t now = to_unix_ms(clock_.now());
    std::lock_guard lock(mu_);
    int64_t removed = 0;
    for (auto& [name, t] : tables_) {
      removed += static_cast<int64_t>(
          std::erase_if(t, [&](const auto& kv) { return expired(kv.second, now); }));
    }
    return removed;
  }

 private:
  struct Entry {
    std::string value;
    int64_t expiry_ms = 0;  // unix ms; 0 = never
  };

  static bool expired(const Entry& e, int64_t now) {
    return e.expiry_ms != 0 && e.expiry_ms <= now;
  }

  // The same limits as the LMDB backend, so tests catch what production would refuse.
  static void check(std::string_view table, std::string_view key) {
    if (table.empty()) throw StoreError("memory store: empty table name");
    if (key.empty() || key.size() > 511) {
      throw StoreError("memory store: key length " + std::to_string(key.size()) +
                       " out of range 1..511 in table " + std::string(table));
    }
  }

  const Clock& clock_;
  std::mutex mu_;
  std::map<std::string, std::map<std::string, Entry, std::less<>>, std::less<>> tables_;
};

}  // namespace

std::unique_ptr<Store> make_memory_store(const Clock& clock) {
  return std::make_unique<MemoryStore>(clock);
}

}  // namespace spamward
