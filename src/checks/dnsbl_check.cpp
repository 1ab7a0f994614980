#include "checks/dnsbl_check.h"
#include "core/strings.h"

#include <spdlog/spdlog.h>
#include <chrono>
#include <stdexcept>
#include <utility>

#include "dns/dnsbl.h"

namespace spamward {
namespace {

constexpr Duration kAlertLogInterval = std::chrono::minutes(1);

class DnsblCheck final : public Check {
 public:
  DnsblCheck(ListConfig list, bool allow_list, Resolver& resolver, const Clock& clock,
             Metrics* metrics, std::shared_ptr<DnsblHealth> health, size_t index)
      : list_(std::move(list)),
        allow_list_(allow_list),
        name_((allow_list ? "dnswl_" : "dnsbl_") + list_.name),
        symbol_(list_symbol_name(allow_list ? "DNSWL_" : "RBL_", list_.name)),
        resolver_(resolver),
        clock_(clock),
        metrics_(metrics),
        health_(std::move(health)),
        index_(index) {}

  std::string_view name() const override { return name_; }
  Stage stage() const override { return Stage::connect; }
  Family family() const override { return Family::dnsbl; }
  bool can_only_lower() const override { return allow_list_; }

  std::optional<std::vector<Symbol>> run_now(const Transaction& tx) override {
    // Nothing to look up: answer without a coroutine.
    if (!tx.client_address || tx.authenticated() || tx.client_address->is_loopback())
      return std::vector<Symbol>{};
    if (tx.client_address->is_v6() && !list_.ipv6) return std::vector<Symbol>{};
    return std::nullopt;
  }

  boost::asio::awaitable<std::vector<Symbol>> run(const Transaction& tx) override {
    std::vector<Symbol> out;
    if (auto now = run_now(tx)) co_return *now;
    const IpAddress client = *tx.client_address;

    auto usable_op = health_->usable(index_);
    const bool usable = co_await std::move(usable_op);
    if (!usable) {
      auto last = health_->last(index_);
      bool lists_everything = last && last->status == DnsblHealthStatus::listing_everything;
      if (allow_list_ && !lists_everything) {
        throw std::runtime_error(symbol_ + ": list health unknown (no DNS answer to its test)");
      }
      co_return out;  // disabled (lists everything) or untested: adds nothing
    }

    const Labels labels{{"list", list_.name}};
    if (metrics_) metrics_->inc("spamward_dnsbl_queries_total", labels);
    const auto started = std::chrono::steady_clock::now();
    auto query = resolver_.query(dnsbl_query_name(client, list_.zone), DnsType::a);
    DnsAnswer answer = co_await std::move(query);
    if (metrics_) {
      std::chrono::duration<double> took = std::chrono::steady_clock::now() - started;
      metrics_->observe("spamward_dnsbl_seconds", labels, took.count());
    }
    if (!answer.definitive()) {
      if (metrics_) metrics_->inc("spamward_dnsbl_errors_total", labels);
      if (allow_list_) {
        throw std::runtime_error(
            symbol_ + ": DNS " +
            (answer.status == DnsAnswer::Status::timeout ? "timeout" : "error"));
      }
      co_return out;  // a timeout is not an answer
    }
    if (!answer.ok()) co_return out;  // NXDOMAIN/NODATA: not listed

    DnsblAnswer c = classify_dnsbl_answer(list_, answer.records);
    if (c.alert()) alert(c, client);
    if (!c.listed) co_return out;
    if (metrics_) metrics_->inc("spamward_dnsbl_hits_total", labels);
    Symbol s;
    s.name = symbol_;
    s.score = allow_list_ ? -c.score : c.score;
    s.family = Family::dnsbl;
    s.detail = join(c.codes);
    out.push_back(std::move(s));
    co_return out;
  }

 private:
  void alert(const DnsblAnswer& c, const IpAddress& client) {
    if (metrics_) {
      if (!c.blocked.empty())
        metrics_->inc("spamward_dnsbl_alerts_total", {{"list", list_.name}, {"reason", "blocked"}});
      if (!c.not_127.empty())
        metrics_->inc("spamward_dnsbl_alerts_total", {{"list", list_.name}, {"reason", "not_127"}});
    }
    // A blocked resolver answers every query so: one line a minute is enough to notice.
    const TimePoint now = clock_.now();
    if (logged_once_ && now < next_log_) {
      ++suppressed_;
      return;
    }
    std::string what = !c.blocked.empty()
                           ? "answered a blocked code " + join(c.blocked) +
                                 " (the list refuses our resolver: use a local recursive resolver, "
                                 "see docs/dnsbl.md)"
                           : "answered outside 127.0.0.0/8: " + join(c.not_127) +
                                 " (a resolver rewriting answers?)";
    spdlog::warn(
        "dnsbl {} ({}) {} for client {}; ignored, no score{}", list_.name, list_.zone, what,
        client.to_string(),
        suppressed_ ? " (" + std::to_string(suppressed_) + " more since the last line)" : "");
    logged_once_ = true;
    suppressed_ = 0;
    next_log_ = now + kAlertLogInterval;
  }

  ListConfig list_;
  bool allow_list_;
  std::string name_;
  std::string symbol_;
  Resolver& resolver_;
  const Clock& clock_;
  Metrics* metrics_;
  std::shared_ptr<DnsblHealth> health_;
  size_t index_;
  bool logged_once_ = false;
  TimePoint next_log_{};
  int64_t suppressed_ = 0;
};

void describe_metrics(Metrics& m) {
  m.describe("spamward_dnsbl_queries_total", Metrics::Type::counter,
             "DNSBL/DNSWL lookups of client addresses, per list");
  m.describe("spamward_dnsbl_hits_total", Metrics::Type::counter,
             "DNSBL/DNSWL lookups that found a listing, per list");
  m.describe("spamward_dnsbl_errors_total", Metrics::Type::counter,
             "DNSBL/DNSWL lookups without a DNS answer (timeout, error), per list");
  m.describe("spamward_dnsbl_alerts_total", Metrics::Type::counter,
             "DNSBL/DNSWL answers that are not listings (blocked codes, outside 127/8)");
  m.describe("spamward_dnsbl_seconds", Metrics::Type::histogram,
             "DNSBL/DNSWL lookup latency, per list",
             {0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5});
}

const Clock& fallback_clock() {
  static const SystemClock clock;
  return clock;
}

}  // namespace

std::vector<std::unique_ptr<Check>> make_dnsbl_checks(const Config& config, const Env& env,
                                                      std::shared_ptr<DnsblHealth> health) {
  std::vector<std::unique_ptr<Check>> out;
  if (!env.resolver || (config.dnsbl.empty() && config.dnswl.empty())) return out;
  const Clock& clock = env.clock ? *env.clock : fallback_clock();
  if (!health) health = std::make_shared<DnsblHealth>(*env.resolver, clock, env.metrics);
  if (env.metrics) describe_metrics(*env.metrics);
  for (bool allow : {false, true}) {
    for (const ListConfig& list : allow ? config.dnswl : config.dnsbl) {
      size_t index = health->add_list(list, list.name);
      out.push_back(std::make_unique<DnsblCheck>(list, allow, *env.resolver, clock, env.metrics,
                                                 health, index));
    }
  }
  // A daemon gives its loop: test every list at start rather than at the first mail.
  if (env.executor) health->test_all(env.executor);
  return out;
}

}  // namespace spamward
