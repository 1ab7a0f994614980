// ExportService (ips/exporter.h): runs the ban exports on its own thread.
//
// Timing: a change is exported `debounce` after the first unexported change (a burst of bans
// becomes one write, and a steady stream cannot postpone it forever); the earliest expiry
// among the exported bans triggers a pass so the file and zones drop it; and every `period`
// a pass rewrites every target even when nothing changed (a deleted file or a flushed nft
// table comes back). Waits use the steady clock; ban times come from the injected Clock.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <tuple>

#include "ips/exporter.h"

namespace spamward {
namespace {

constexpr const char* kFailuresMetric = "spamward_ips_export_failures_total";
constexpr const char* kEntriesMetric = "spamward_ips_exported_entries";
// Woken at an expiry, the service waits this much longer, so the Clock (wall time) has
// surely passed `until` and the pass drops the ban rather than finding it still in force.
constexpr std::chrono::milliseconds kExpirySlack{100};
constexpr std::chrono::seconds kPollInterval{1};

bool same_bans(const std::vector<Ban>& a, const std::vector<Ban>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const Ban& x, const Ban& y) {
    return std::tie(x.target, x.until, x.permanent, x.reason) ==
           std::tie(y.target, y.until, y.permanent, y.reason);
  });
}

}  // namespace

ExportService::ExportService(Reputation& reputation, const Clock& clock, Metrics* metrics,
                             IpsConfig config, std::chrono::milliseconds debounce,
                             std::chrono::milliseconds period)
    : reputation_(reputation),
      clock_(clock),
      metrics_(metrics),
      debounce_(debounce),
      period_(period),
      config_(std::move(config)) {
  if (metrics_) {
    metrics_->describe(kFailuresMetric, Metrics::Type::counter,
                       "Ban exports that failed, by target (file, rbldnsd, nftables).");
    metrics_->describe(kEntriesMetric, Metrics::Type::gauge,
                       "Bans (addresses and networks) in the last export.");
    // Present from the start, so a dashboard sees 0 rather than no series.
    for (const char* target : {"file", "rbldnsd", "nftables"}) {
      metrics_->inc(kFailuresMetric, {{"target", target}}, 0.0);
    }
  }
}

ExportService::~ExportService() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ExportService::start() {
  std::lock_guard lock(mu_);
  if (thread_.joinable()) return;
  dirty_ = true;
  dirty_since_ = SteadyTime{};  // long past: the first pass runs at once
  thread_ = std::thread([this] { run(); });
}

void ExportService::notify() {
  {
    std::lock_guard lock(mu_);
    if (!dirty_) {
      dirty_ = true;
      dirty_since_ = std::chrono::steady_clock::now();
    }
  }
  cv_.notify_all();
}

void ExportService::reconfigure(const IpsConfig& config) {
  {
    std::lock_guard lock(mu_);
    config_ = config;
    if (!dirty_) {
      dirty_ = true;
      dirty_since_ = std::chrono::steady_clock::now();
    }
  }
  cv_.notify_all();
}

void ExportService::export_now() {
  std::vector<Failure> failures = export_once(true);
  if (failures.empty()) return;
  std::string joined;
  for (const Failure& f : failures) {
    if (!joined.empty()) joined += "; ";
    joined += f.message;
  }
  throw ExportError(joined);
}

void ExportService::run() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    auto now = std::chrono::steady_clock::now();
    SteadyTime due = period_start_ + period_;
    if (dirty_) due = std::min(due, dirty_since_ + debounce_);
    if (next_expiry_) {
      // Once the Clock has passed the expiry the pass is due now; before, wake a little
      // after it (the slack is not added again on the next turn, or it would never come).
      Duration remaining = *next_expiry_ - clock_.now();
      due = std::min(due, remaining <= Duration::zero() ? now : now + remaining + kExpirySlack);
    }
    // Another process (`spamward allow` lifting a ban) changes the bans without telling us:
    // poll the generation every second, so its change reaches the exports within about that.
    // A change found this way calls notify() through the Reputation's callback.
    SteadyTime poll_due = last_poll_ + kPollInterval;
    if (now < due && now >= poll_due) {
      last_poll_ = now;
      lock.unlock();
      try {
        reputation_.refresh();
      } catch (const std::exception& e) {
        spdlog::warn("ips: cannot re-read the ban generation: {}", e.what());
      }
      lock.lock();
      continue;
    }
    if (now < due) {
      // Woken early by notify/reconfigure/stop, or timed out: either way, decide again.
      cv_.wait_until(lock, std::min(due, poll_due));
      continue;
    }
    last_poll_ = now;  // export_once() refreshes first
    lock.unlock();
    try {
      for (const Failure& f : export_once(false)) {
        spdlog::warn("ips: {} export failed: {}", f.target, f.message);
      }
    } catch (const std::exception& e) {  // e.g. bad_alloc: keep the thread, try again later
      spdlog::warn("ips: export failed: {}", e.what());
      std::lock_guard retry_lock(mu_);
      period_start_ = std::chrono::steady_clock::now();
    }
    lock.lock();
  }
}

std::vector<ExportService::Failure> ExportService::export_once(bool force) {
  std::lock_guard export_lock(export_mu_);
  std::vector<Failure> failures;

  // Another process (`spamward allow`) may have changed the bans while this one saw no
  // traffic; the refresh notices. It may call notify(), so mu_ is not held here.
  IpsConfig config;
  try {
    reputation_.refresh();
  } catch (const std::exception&) {
    // A failed refresh keeps the previous snapshot; bans() below reports a lasting failure.
  }
  {
    std::lock_guard lock(mu_);
    config = config_;
    dirty_ = false;  // changes from here on set it again and get their own pass
  }

  std::vector<const char*> enabled;
  if (!config.blocklist_file.empty()) enabled.push_back("file");
  if (!config.rbldnsd_dir.empty()) enabled.push_back("rbldnsd");
  if (!config.nft_table.empty()) enabled.push_back("nftables");

  const TimePoint now = clock_.now();
  const SteadyTime steady_now = std::chrono::steady_clock::now();
  std::vector<Ban> selected;
  bool have_bans = false;
  if (!enabled.empty()) {
    try {
      selected = select_exported(reputation_.bans(), config.export_mode, now);
      have_bans = true;
    } catch (const std::exception& e) {
      for (const char* target : enabled) {
        failures.push_back({target, std::string(target) + ": reading the bans: " + e.what()});
      }
    }
  }

  auto export_to = [&](const char* target, const std::string& key, TargetState& state,
                       auto&& write) {
    if (key.empty()) {
      state = TargetState{};
      return;
    }
    if (!have_bans) return;
    if (state.key != key) {
      state = TargetState{};
      state.key = key;
    }
    bool unchanged = state.written && same_bans(state.bans, selected);
    if (unchanged && !force && steady_now - state.written_at < period_) return;
    try {
      write();
      state.written = true;
      state.bans = selected;
      state.written_at = steady_now;
    } catch (const std::exception& e) {
      // Forget what was there: the next pass retries even when nothing changed.
      state.written = false;
      failures.push_back({target, e.what()});
    }
  };

  export_to("file", config.blocklist_file, file_state_,
            [&] { write_blocklist_file(config.blocklist_file, selected); });
  export_to("rbldnsd", config.rbldnsd_dir, rbldnsd_state_,
            [&] { write_rbldnsd_zones(config.rbldnsd_dir, selected, now); });
  if (nft_state_.key != config.nft_table) nft_.reset();  // a new table spec: validate it afresh
  export_to("nftables", config.nft_table, nft_state_, [&] {
    if (!nft_) nft_ = std::make_unique<NftablesExporter>(config.nft_table);
    nft_->apply(selected, now);
  });

  if (metrics_) {
    for (const Failure& f : failures) metrics_->inc(kFailuresMetric, {{"target", f.target}});
    if (have_bans) metrics_->set(kEntriesMetric, {}, static_cast<double>(selected.size()));
  }

  std::optional<TimePoint> next_expiry;
  for (const Ban& ban : selected) {
    if (!next_expiry || ban.until < *next_expiry) next_expiry = ban.until;
  }
  // The period counts from the oldest successful write, so a pass that skipped unchanged
  // targets does not postpone their periodic rewrite. Failed targets retry a period from now.
  SteadyTime oldest_write = steady_now;
  for (const TargetState* state : {&file_state_, &rbldnsd_state_, &nft_state_}) {
    if (state->written) oldest_write = std::min(oldest_write, state->written_at);
  }
  {
    std::lock_guard lock(mu_);
    next_expiry_ = next_expiry;
    period_start_ = oldest_write;
  }
  return failures;
}

}  // namespace spamward
