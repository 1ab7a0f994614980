#include "checks/trap_check.h"

#include "checks/reputation_check.h"

#include <algorithm>
#include <map>
#include <mutex>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace spamward {

namespace {

constexpr std::chrono::hours kRefresh{1};

class TrapCheck final : public Check {
 public:
  TrapCheck(const Config& config, const Env& env)
      : fixed_(config.trap.mx_addresses),
        domains_(config.trap.mx_domains),
        resolver_(env.resolver),
        clock_(env.clock),
        reputation_(env.reputation),
        record_(!config.actions.dry_run && !env.read_only) {}

  std::string_view name() const override { return "trap"; }
  Stage stage() const override { return Stage::mail; }
  Family family() const override { return Family::behaviour; }

  std::optional<std::vector<Symbol>> run_now(const Transaction& tx) override {
    if (!applies(tx)) return std::vector<Symbol>{};
    std::vector<IpAddress> ours;
    if (!domains_.empty()) {
      std::lock_guard lock(mu_);
      if (stale()) return std::nullopt;  // resolve first (run)
      ours = resolved_;
    }
    return judge(tx, ours);
  }

  boost::asio::awaitable<std::vector<Symbol>> run(const Transaction& tx) override {
    if (!applies(tx)) co_return std::vector<Symbol>{};
    auto resolving = resolve();  // named first: GCC PR 100611
    co_await std::move(resolving);
    std::vector<IpAddress> ours;
    {
      std::lock_guard lock(mu_);
      ours = resolved_;
    }
    co_return judge(tx, ours);
  }

 private:
  bool applies(const Transaction& tx) const {
    return tx.client_address && tx.server_address && tx.server_port == 25 && !tx.authenticated();
  }

  bool stale() const {
    if (!resolver_ || !clock_) return false;  // nothing to resolve with: fixed addresses only
    return learned_.size() < domains_.size() || clock_->now() >= next_refresh_;
  }

  // The MX hosts' addresses of every domain; a domain whose lookups fail keeps what it had.
  boost::asio::awaitable<void> resolve() {
    {
      std::lock_guard lock(mu_);
      if (!stale()) co_return;
    }
    std::map<std::string, std::vector<IpAddress>> fresh;
    for (const auto& domain : domains_) {
      auto mx_query = resolver_->query(domain, DnsType::mx);
      DnsAnswer mx = co_await std::move(mx_query);
      std::vector<std::string> hosts;
      if (mx.ok()) {
        for (const auto& r : mx.records) {
          // "10 mx.example.org" or the bare name, depending on the resolver.
          std::string host = r.substr(r.find(' ') == std::string::npos ? 0 : r.find(' ') + 1);
          if (!host.empty() && host.back() == '.') host.pop_back();
          if (!host.empty() && host != ".") hosts.push_back(host);
        }
      } else if (mx.status == DnsAnswer::Status::nodata) {
        hosts.push_back(domain);  // implicit MX (RFC 5321 §5.1)
      } else {
        spdlog::warn("trap: cannot resolve the MX of {} ({}); keeping what was known", domain,
                     mx.status == DnsAnswer::Status::timeout ? "timeout" : "no answer");
        continue;
      }
      bool failed = false;
      std::vector<IpAddress> addresses;
      for (const auto& host : hosts) {
        for (DnsType type : {DnsType::a, DnsType::aaaa}) {
          auto address_query = resolver_->query(host, type);
          DnsAnswer answer = co_await std::move(address_query);
          if (!answer.definitive()) failed = true;
          for (const auto& text : answer.records)
            if (auto a = IpAddress::parse(text)) addresses.push_back(*a);
        }
      }
      if (failed && addresses.empty()) continue;
      fresh[domain] = std::move(addresses);
    }
    std::lock_guard lock(mu_);
    for (auto& [domain, addresses] : fresh) learned_[domain] = std::move(addresses);
    resolved_ = fixed_;
    for (const auto& [domain, addresses] : learned_)
      resolved_.insert(resolved_.end(), addresses.begin(), addresses.end());
    // Until every domain answered, try again at the next use (a minute apart at most).
    next_refresh_ =
        clock_->now() + (learned_.size() < domains_.size() ? Duration(std::chrono::minutes(1))
                                                           : Duration(kRefresh));
  }

  std::vector<Symbol> judge(const Transaction& tx, const std::vector<IpAddress>& resolved) {
    std::vector<Symbol> out;
    const IpAddress& reached = *tx.server_address;
    auto is = [&](const IpAddress& a) { return a == reached; };
    if (std::any_of(fixed_.begin(), fixed_.end(), is) ||
        std::any_of(resolved.begin(), resolved.end(), is))
      return out;
    if (!domains_.empty()) {
      std::lock_guard lock(mu_);
      if (learned_.size() < domains_.size()) return out;  // cannot tell yet: fail open
    }
    std::string where = fmt::format("{}:{}", reached.to_string(), tx.server_port);
    out.push_back(known_symbol("TRAP_NON_MX", "connected to " + where + ", which no MX points to"));
    if (!reputation_ || !record_ || tx.read_only) return out;
    if (reputation_->ban_for(*tx.client_address)) return out;  // the ban answers already
    Ban ban =
        reputation_->record_offence(*tx.client_address, OffenceKind::trap, "connected to " + where);
    spdlog::info("trap: {} connected to {}, which no MX points to; banned for {}",
                 tx.client_address->to_string(), where, ban_length_text(ban));
    out.push_back(banned_symbol(ban));
    return out;
  }

  const std::vector<IpAddress> fixed_;
  const std::vector<std::string> domains_;
  Resolver* resolver_;
  const Clock* clock_;
  Reputation* reputation_;
  const bool record_;
  std::mutex mu_;  // guards what follows
  std::map<std::string, std::vector<IpAddress>> learned_;
  std::vector<IpAddress> resolved_;
  TimePoint next_refresh_{};
};

}  // namespace

std::unique_ptr<Check> make_trap_check(const Config& config, const Env& env) {
  if (config.trap.mx_addresses.empty() && config.trap.mx_domains.empty()) return nullptr;
  // Domains need a resolver; with neither addresses nor a resolver there is nothing to compare.
  if (config.trap.mx_addresses.empty() && !env.resolver) return nullptr;
  return std::make_unique<TrapCheck>(config, env);
}

}  // namespace spamward
