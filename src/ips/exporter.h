// Ban exports (DESIGN §3.3 [ips], issue 4): the ban set written where firewalls and other
// servers can use it.
//
// - blocklist_file: one address or CIDR per line, sorted, written atomically (a temporary
//   file in the same directory, fsync, rename), so a reader never sees a partial list.
// - rbldnsd_dir: "spamward.ip4set" and "spamward.ip6trie" zone files (same atomic write), so
//   other servers can query our bans as a DNSBL (answer 127.0.0.2, TXT says why).
// - nft_table ("inet spamward", "ip filter", ...): sets "banned4" (ipv4_addr) and "banned6"
//   (ipv6_addr), both with flags interval,timeout, are created when absent (table included)
//   and resynchronised through libnftables (no shell): flushed and refilled in one
//   transaction, each element with a timeout equal to its remaining ban. spamward never
//   adds rules: the docs show the rule to add (tcp dport 25 only). An "ip" table gets only
//   banned4 and an "ip6" table only banned6 (a set of the other family could never match).
//
// Which bans: export "permanent" (the default) exports 5xx-level bans only; "all" every ban.
//
// ExportService runs the exports on its own thread: after a ban change (debounced by
// `debounce`), when the next exported ban expires (the file and zones must drop it), and
// every `period` as a safety net. Before each pass it calls reputation.refresh(), so bans
// lifted by another process are noticed without traffic. A target whose bans are the same as
// at its last successful write is skipped until `period` has passed. Failures are logged
// (one warning each) and counted (spamward_ips_export_failures_total{target}); the next
// change or period retries. Never blocks the caller. The constructor registers nothing on
// the Reputation: the daemon wires reputation.on_change -> notify(), and the Reputation must
// outlive the service.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "core/config.h"
#include "core/metrics.h"
#include "state/reputation.h"

namespace spamward {

class ExportError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The bans to export under `mode`, merged (a network ban hides the bans inside it) and sorted
// (IPv4 first, then by address).
std::vector<Ban> select_exported(const std::vector<Ban>& bans, std::string_view mode,
                                 TimePoint now);

// Each throws ExportError naming the path or table and the reason.
void write_blocklist_file(const std::string& path, const std::vector<Ban>& bans);
void write_rbldnsd_zones(const std::string& dir, const std::vector<Ban>& bans, TimePoint now);

// nftables through libnftables. `table` is "FAMILY NAME" or "NAME" (family inet).
class NftablesExporter {
 public:
  explicit NftablesExporter(std::string table);  // throws ExportError for a bad table spec
  ~NftablesExporter();
  void apply(const std::vector<Ban>& bans, TimePoint now);  // throws ExportError
  // The nft script apply() runs (for tests and logs).
  std::string script(const std::vector<Ban>& bans, TimePoint now) const;

 private:
  std::string family_;
  std::string name_;
};

class ExportService {
 public:
  ExportService(Reputation& reputation, const Clock& clock, Metrics* metrics, IpsConfig config,
                std::chrono::milliseconds debounce = std::chrono::milliseconds(200),
                std::chrono::milliseconds period = std::chrono::seconds(60));
  ~ExportService();  // stops the thread

  void start();                               // first export at once
  void notify();                              // the ban set changed
  void reconfigure(const IpsConfig& config);  // SIGHUP
  // Runs one export on the caller's thread (tests, `spamward ip --export`), rewriting every
  // target even when unchanged. Failures are counted but not logged: it throws ExportError
  // with every failure joined ("; "). Safe while the thread runs (one export at a time).
  void export_now();

 private:
  using SteadyTime = std::chrono::steady_clock::time_point;
  // What one target (file, rbldnsd, nftables) last exported, to skip identical rewrites.
  struct TargetState {
    std::string key;  // the path or table it was written to; a new key starts over
    bool written = false;
    std::vector<Ban> bans;
    SteadyTime written_at{};
  };
  struct Failure {
    const char* target;  // metrics label: "file" | "rbldnsd" | "nftables"
    std::string message;
  };

  void run();
  // One pass over the configured targets; `force` rewrites identical content too.
  std::vector<Failure> export_once(bool force);

  Reputation& reputation_;
  const Clock& clock_;
  Metrics* metrics_;
  std::chrono::milliseconds debounce_;
  std::chrono::milliseconds period_;

  std::mutex mu_;  // guards the members up to thread_
  std::condition_variable cv_;
  IpsConfig config_;
  bool dirty_ = true;
  bool stopping_ = false;
  SteadyTime dirty_since_{};              // first change not yet exported (debounce counts from it)
  std::optional<TimePoint> next_expiry_;  // earliest `until` among the bans last exported
  SteadyTime period_start_{};             // the periodic pass is due `period` after this
  SteadyTime last_poll_{};                // last generation poll (kPollInterval)
  std::thread thread_;

  std::mutex export_mu_;  // one export at a time (the thread, export_now); guards below
  TargetState file_state_;
  TargetState rbldnsd_state_;
  TargetState nft_state_;
  std::unique_ptr<NftablesExporter> nft_;
};

}  // namespace spamward
