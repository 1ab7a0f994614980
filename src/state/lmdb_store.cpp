// LMDB backend of Store (contract in store.h).
//
// Layout: one LMDB environment per directory; one named sub-database per table, created by
// the first write to it; every value is an 8-byte big-endian expiry (unix ms, 0 = none)
// followed by the caller's bytes (write_queue.h). Table "meta" holds "format_version".
//
// Threads:
// - Callers' reads open a fresh read transaction each (MDB_NOTLS, so any thread may hold
//   several and another process's commits are seen at once), after consulting the overlay of
//   writes still queued (read your own writes).
// - One writer thread per Store commits the queue in batches (state/write_queue.h, shared with
//   the Redis backend); one sweeper thread deletes expired entries.
// - mdb_env_set_mapsize() needs every transaction of the process to be finished, so each
//   transaction runs under a shared lock of `Shared::resize_mu` and a resize takes it
//   exclusively. No user callback ever runs while that lock is held (scan() copies chunks
//   out first), so a visitor may call back into the store without deadlock.
//
// Durability: commits use LMDB's default durable mode (fsync of data and meta page), so a
// write whose flush() returned survives kill -9 and power loss alike. MDB_NOSYNC would
// survive process death (the page cache outlives the process) but not power loss; the
// batching writer makes the fsync cheap enough that we keep the stronger guarantee.
//
// One process, one environment: LMDB forbids opening the same environment twice in one
// process (POSIX locks on the lock file are per process), so Stores opened on the same
// directory share one MDB_env through a process-wide registry (e.g. during a config reload
// the old and the new Store coexist).
#include <lmdb.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <utility>
#include <vector>

#include "state/store.h"
#include "state/write_queue.h"

namespace spamward {
namespace {

constexpr size_t kMaxBatch = 1000;  // writes committed in one transaction at most
constexpr size_t kScanChunk = 256;  // entries copied out per read transaction in scan()
constexpr int kMaxGrowths = 24;     // map doublings tried for one batch
constexpr const char* kMetaTable = "meta";
constexpr const char* kFormatKey = "format_version";

std::string_view view(const MDB_val& v) {
  return {static_cast<const char*>(v.mv_data), v.mv_size};
}

MDB_val val(std::string_view s) {
  return {s.size(), const_cast<char*>(s.data())};
}

// Aborts a transaction unless it was committed.
class Txn {
 public:
  Txn() = default;
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;
  ~Txn() { abort(); }
  MDB_txn** out() { return &txn_; }
  MDB_txn* get() const { return txn_; }
  void abort() {
    if (txn_) mdb_txn_abort(txn_);
    txn_ = nullptr;
  }
  int commit() {
    int rc = mdb_txn_commit(txn_);
    txn_ = nullptr;
    return rc;
  }

 private:
  MDB_txn* txn_ = nullptr;
};

// One MDB_env per directory per process, shared by every Store opened on it.
struct Shared {
  std::string path;
  MDB_env* env = nullptr;
  std::shared_mutex resize_mu;  // shared: a transaction is open; exclusive: resizing
  std::mutex dbi_mu;            // mdb_dbi_open must not run in two transactions at once
  std::map<std::string, MDB_dbi, std::less<>> dbis;

  ~Shared() {
    if (env) mdb_env_close(env);
  }

  [[noreturn]] void fail(std::string_view what, int rc) const {
    throw StoreError("store at " + path + ": " + std::string(what) + ": " + mdb_strerror(rc));
  }

  // Begins a transaction; the caller holds resize_mu shared. Another process may have grown
  // the map beyond ours (MDB_MAP_RESIZED): adopt its size and retry.
  void begin(Txn& txn, unsigned flags, std::shared_lock<std::shared_mutex>& lock) {
    for (;;) {
      int rc = mdb_txn_begin(env, nullptr, flags, txn.out());
      if (rc == 0) return;
      if (rc != MDB_MAP_RESIZED) fail("cannot begin a transaction", rc);
      lock.unlock();
      {
        std::unique_lock exclusive(resize_mu);
        rc = mdb_env_set_mapsize(env, 0);
      }
      lock.lock();
      if (rc != 0) fail("cannot adopt the grown map size", rc);
    }
  }

  // The handle of `table`, opening it (creating it when `create`) in a short transaction of
  // its own; nullopt when it does not exist and !create. Handles live as long as the env.
  std::optional<MDB_dbi> dbi(std::string_view table, bool create) {
    if (table.empty()) throw StoreError("store at " + path + ": empty table name");
    std::lock_guard dbi_lock(dbi_mu);
    if (auto it = dbis.find(table); it != dbis.end()) return it->second;
    std::shared_lock lock(resize_mu);
    for (int attempt = 0;; ++attempt) {
      Txn txn;
      begin(txn, create ? 0u : static_cast<unsigned>(MDB_RDONLY), lock);
      MDB_dbi handle = 0;
      std::string name(table);
      int rc = mdb_dbi_open(txn.get(), name.c_str(), create ? MDB_CREATE : 0u, &handle);
      if (rc == MDB_NOTFOUND && !create) return std::nullopt;
      if (rc == MDB_MAP_FULL && attempt < kMaxGrowths) {
        txn.abort();
        lock.unlock();
        grow();
        lock.lock();
        continue;
      }
      if (rc != 0) fail("cannot open table " + name, rc);
      // A read-only transaction must commit (not abort) for its new handle to be kept.
      rc = txn.commit();
      if (rc == MDB_MAP_FULL && attempt < kMaxGrowths) {
        lock.unlock();
        grow();
        lock.lock();
        continue;
      }
      if (rc != 0) fail("cannot create table " + name, rc);
      dbis.emplace(std::move(name), handle);
      return handle;
    }
  }

  // Doubles the map. The caller holds neither lock nor any transaction.
  void grow() {
    std::unique_lock exclusive(resize_mu);
    MDB_envinfo info;
    mdb_env_info(env, &info);
    size_t size = info.me_mapsize * 2;
    int rc = mdb_env_set_mapsize(env, size);
    if (rc != 0) fail("cannot grow the map to " + std::to_string(size) + " bytes", rc);
    spdlog::info("store at {}: map grown to {} MiB", path, size >> 20);
  }
};

std::shared_ptr<Shared> open_shared(const LmdbOptions& options) {
  // Key the registry by the directory's identity, so "var/x" and "./var/x" are one env; and
  // by pid, so a forked child never reuses the env it inherited (LMDB forbids that).
  struct Key {
    dev_t dev;
    ino_t ino;
    pid_t pid;
    auto operator<=>(const Key&) const = default;
  };
  static std::mutex registry_mu;
  static std::map<Key, std::weak_ptr<Shared>> registry;

  std::error_code ec;
  std::filesystem::create_directories(options.path, ec);
  if (ec)
    throw StoreError("store at " + options.path + ": cannot create directory: " + ec.message());
  struct stat st {};
  if (::stat(options.path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    throw StoreError("store at " + options.path + ": not a directory");
  }
  Key key{st.st_dev, st.st_ino, ::getpid()};

  std::lock_guard lock(registry_mu);
  if (auto it = registry.find(key); it != registry.end()) {
    if (auto shared = it->second.lock()) return shared;
  }
  auto shared = std::make_shared<Shared>();
  shared->path = options.path;
  int rc = mdb_env_create(&shared->env);
  if (rc != 0) shared->fail("cannot create the environment", rc);
  rc = mdb_env_set_maxdbs(shared->env, 64);
  if (rc != 0) shared->fail("cannot set maxdbs", rc);
  rc = mdb_env_set_mapsize(shared->env,
                           static_cast<size_t>(std::max<int64_t>(options.map_size, 1 << 16)));
  if (rc != 0) shared->fail("cannot set the map size", rc);
  // MDB_NOTLS: read transactions are not bound to threads, so a thread may hold several
  // (e.g. a visitor that calls get()) and readers need no per-thread slot bookkeeping.
  rc = mdb_env_open(shared->env, options.path.c_str(), MDB_NOTLS, 0640);
  if (rc != 0) shared->fail("cannot open", rc);
  // Reader slots of processes killed with -9 would pin old pages forever.
  int dead = 0;
  mdb_reader_check(shared->env, &dead);
  registry[key] = shared;
  return shared;
}

class LmdbStore final : public QueuedStore {
 public:
  LmdbStore(const LmdbOptions& options, const Clock& clock)
      : QueuedStore(clock, "store at " + options.path, options.batch_interval, kMaxBatch),
        options_(options),
        shared_(open_shared(options)) {
    check_format_version();
    start(options.sweep_interval);
  }

  ~LmdbStore() override { stop(); }

  int64_t count(std::string_view table) override {
    int64_t n = 0;
    scan(table, "", [&n](std::string_view, std::string_view) {
      ++n;
      return true;
    });
    return n;
  }

  int64_t sweep_expired() override {
    std::vector<std::string> tables = table_names();
    int64_t removed = 0;
    int64_t now = to_unix_ms(clock_.now());
    for (const auto& table : tables) {
      auto dbi = shared_->dbi(table, false);
      if (dbi) removed += sweep_table(*dbi, table, now);
    }
    return removed;
  }

 private:
  std::optional<std::string> committed_get(std::string_view table, std::string_view key,
                                           int64_t now) override {
    auto dbi = shared_->dbi(table, false);
    if (!dbi) return std::nullopt;
    std::shared_lock lock(shared_->resize_mu);
    Txn txn;
    shared_->begin(txn, MDB_RDONLY, lock);
    MDB_val k = val(key), v{};
    int rc = mdb_get(txn.get(), *dbi, &k, &v);
    if (rc == MDB_NOTFOUND) return std::nullopt;
    if (rc != 0) shared_->fail("cannot read " + std::string(table), rc);
    std::string_view raw = view(v);
    if (expired_at(stored_expiry(raw), now)) return std::nullopt;
    return std::string(stored_payload(raw));
  }

  void committed_get_many(std::string_view table, const std::vector<std::string>& keys,
                          const std::vector<bool>& answered, int64_t now,
                          std::vector<std::optional<std::string>>& out) override {
    auto dbi = shared_->dbi(table, false);
    if (!dbi) return;
    std::shared_lock lock(shared_->resize_mu);
    Txn txn;
    shared_->begin(txn, MDB_RDONLY, lock);
    for (size_t i = 0; i < keys.size(); ++i) {
      if (answered[i]) continue;
      MDB_val k = val(keys[i]), v{};
      int rc = mdb_get(txn.get(), *dbi, &k, &v);
      if (rc == MDB_NOTFOUND) continue;
      if (rc != 0) shared_->fail("cannot read " + std::string(table), rc);
      std::string_view raw = view(v);
      if (!expired_at(stored_expiry(raw), now)) out[i] = std::string(stored_payload(raw));
    }
  }

  void committed_scan(std::string_view table, std::string_view prefix, int64_t now,
                      ScanMerge& merge) override {
    auto dbi = shared_->dbi(table, false);
    std::optional<std::string> resume;
    bool first = true;
    while (dbi && (first || resume)) {
      std::vector<std::pair<std::string, std::string>> chunk;
      resume = read_chunk(*dbi, first ? std::string(prefix) : *resume, !first, prefix, now, chunk);
      first = false;
      for (auto& [k, v] : chunk) {
        if (!merge.committed(k, v)) return;
      }
    }
  }

  void check_format_version() {
    auto version = get(kMetaTable, kFormatKey);
    // Another process may be creating the store right now: its version commits before any
    // other table exists, so read it again once tables are seen.
    if (!version && !table_names().empty()) version = get(kMetaTable, kFormatKey);
    if (!version) {
      if (!table_names().empty()) {
        throw StoreError("store at " + options_.path +
                         " has data but no format version; it was not written by spamward: move "
                         "it aside or point [store] path elsewhere");
      }
      // A new store. Written synchronously so that no data ever exists without a version.
      put(kMetaTable, kFormatKey, std::to_string(kStoreFormatVersion), std::nullopt);
      queue_.commit_now();
      return;
    }
    if (*version != std::to_string(kStoreFormatVersion)) {
      throw StoreError("store at " + options_.path + " has format version " + *version +
                       ", this spamward reads version " + std::to_string(kStoreFormatVersion) +
                       ": open it with the newer spamward that wrote it (which can migrate or "
                       "export it), or move it aside to start an empty store");
    }
  }

  // Writes one batch in one transaction, growing the map as needed. Throws StoreError.
  void commit(const std::vector<QueuedWrite>& batch) override {
    if (batch.empty()) return;
    std::map<std::string, MDB_dbi, std::less<>> dbis;
    for (const auto& q : batch) {
      if (!dbis.contains(q.table)) {
        // An erase needs no table: if it does not exist there is nothing to erase.
        auto dbi = shared_->dbi(q.table, !q.op.erase);
        if (dbi) dbis.emplace(q.table, *dbi);
      }
    }
    for (int attempt = 0;; ++attempt) {
      std::shared_lock lock(shared_->resize_mu);
      Txn txn;
      shared_->begin(txn, 0, lock);
      int rc = 0;
      for (const auto& q : batch) {
        auto d = dbis.find(q.table);
        if (d == dbis.end()) continue;
        MDB_val k = val(q.key);
        if (q.op.erase) {
          rc = mdb_del(txn.get(), d->second, &k, nullptr);
          if (rc == MDB_NOTFOUND) rc = 0;
        } else {
          std::string raw = encode_stored(q.op.value, q.op.expiry_ms);
          MDB_val v = val(raw);
          rc = mdb_put(txn.get(), d->second, &k, &v, 0);
        }
        if (rc != 0) break;
      }
      if (rc == 0) rc = txn.commit();
      if (rc == MDB_MAP_FULL && attempt < kMaxGrowths) {
        txn.abort();
        lock.unlock();
        shared_->grow();
        continue;
      }
      if (rc != 0) shared_->fail("cannot commit " + std::to_string(batch.size()) + " writes", rc);
      return;
    }
  }

  // Copies the live entries among the next kScanChunk keys under `prefix`, starting at `from`
  // (after it when `after`). Returns the key to resume after, or nullopt at the end.
  std::optional<std::string> read_chunk(MDB_dbi dbi, const std::string& from, bool after,
                                        std::string_view prefix, int64_t now,
                                        std::vector<std::pair<std::string, std::string>>& out) {
    std::shared_lock lock(shared_->resize_mu);
    Txn txn;
    shared_->begin(txn, MDB_RDONLY, lock);
    MDB_cursor* cursor = nullptr;
    int rc = mdb_cursor_open(txn.get(), dbi, &cursor);
    if (rc != 0) shared_->fail("cannot open a cursor", rc);
    MDB_val k = val(from), v{};
    rc = from.empty() ? mdb_cursor_get(cursor, &k, &v, MDB_FIRST)
                      : mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
    if (rc == 0 && after && view(k) == from) rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT);
    std::optional<std::string> resume;
    for (size_t seen = 0; rc == 0; ++seen) {
      std::string_view key = view(k);
      if (!key.starts_with(prefix)) break;
      std::string_view raw = view(v);
      if (!expired_at(stored_expiry(raw), now)) out.emplace_back(key, stored_payload(raw));
      if (seen + 1 == kScanChunk) {
        resume = std::string(key);
        break;
      }
      rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cursor);
    if (rc != 0 && rc != MDB_NOTFOUND) shared_->fail("cannot scan", rc);
    return resume;
  }

  std::vector<std::string> table_names() {
    std::vector<std::string> names;
    std::shared_lock lock(shared_->resize_mu);
    Txn txn;
    shared_->begin(txn, MDB_RDONLY, lock);
    MDB_dbi main = 0;
    int rc = mdb_dbi_open(txn.get(), nullptr, 0, &main);  // the unnamed DB is always open
    if (rc != 0) shared_->fail("cannot open the main table", rc);
    MDB_cursor* cursor = nullptr;
    rc = mdb_cursor_open(txn.get(), main, &cursor);
    if (rc != 0) shared_->fail("cannot open a cursor", rc);
    MDB_val k{}, v{};
    for (rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
      std::string name(view(k));
      if (name != kMetaTable) names.push_back(std::move(name));
    }
    mdb_cursor_close(cursor);
    return names;
  }

  int64_t sweep_table(MDB_dbi dbi, const std::string& table, int64_t now) {
    // Deletes in one write transaction; the check is made inside it, so an entry renewed
    // by a concurrent commit is never deleted.
    for (int attempt = 0;; ++attempt) {
      std::shared_lock lock(shared_->resize_mu);
      Txn txn;
      shared_->begin(txn, 0, lock);
      MDB_cursor* cursor = nullptr;
      int rc = mdb_cursor_open(txn.get(), dbi, &cursor);
      if (rc != 0) shared_->fail("cannot open a cursor", rc);
      int64_t removed = 0;
      MDB_val k{}, v{};
      for (rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST); rc == 0;
           rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
        if (!expired_at(stored_expiry(view(v)), now)) continue;
        rc = mdb_cursor_del(cursor, 0);
        if (rc != 0) break;
        ++removed;
      }
      mdb_cursor_close(cursor);
      if (rc == MDB_NOTFOUND) rc = 0;
      if (rc == 0) rc = txn.commit();
      if (rc == MDB_MAP_FULL && attempt < kMaxGrowths) {
        txn.abort();
        lock.unlock();
        shared_->grow();
        continue;
      }
      if (rc != 0) shared_->fail("cannot sweep table " + table, rc);
      return removed;
    }
  }

  LmdbOptions options_;
  std::shared_ptr<Shared> shared_;
};

}  // namespace

std::unique_ptr<Store> open_lmdb_store(const LmdbOptions& options, const Clock& clock) {
  return std::make_unique<LmdbStore>(options, clock);
}

}  // namespace spamward
