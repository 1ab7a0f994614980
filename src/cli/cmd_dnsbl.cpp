// `spamward dnsbl health`: the RFC 5782 §5 test points of every configured [[dnsbl]] and
// [[dnswl]], queried through the configured [dns] servers, as the daemon would query them.
// Output, per list: "dnsbl NAME (ZONE): healthy|broken|listing-everything", then one
// indented line per test query with the answer seen. Exit 0 when every list is healthy,
// 1 when one is not, 2 for a bad config.
#include <boost/asio/io_context.hpp>
#include <iostream>

#include "checks/dnsbl_health.h"
#include "cli/commands.h"
#include "cli/run_to_completion.h"
#include "core/config.h"
#include "dns/cares_resolver.h"

namespace spamward::cli {

int cmd_dnsbl_health(const std::string& config_path) {
  Config config;
  try {
    config = load_config(config_path);
  } catch (const ConfigError& e) {
    std::cerr << "spamward: config error: " << e.what() << "\n";
    return 2;
  }
  if (config.dnsbl.empty() && config.dnswl.empty()) {
    std::cout << "no [[dnsbl]] or [[dnswl]] lists configured in " << config_path << "\n";
    return 0;
  }

  SystemClock clock;
  Metrics metrics;             // private: this command reports nothing to the daemon's metrics
  boost::asio::io_context io;  // before the resolver: it must outlive it
  std::unique_ptr<Resolver> resolver;
  try {
    resolver = make_resolver(io.get_executor(), config.dns, clock, &metrics);
  } catch (const std::exception& e) {
    std::cerr << "spamward: dnsbl health: " << e.what() << "\n";
    return 1;
  }

  bool all_healthy = true;
  auto body = [&]() -> boost::asio::awaitable<void> {
    for (const char* kind : {"dnsbl", "dnswl"}) {
      for (const ListConfig& list : std::string(kind) == "dnsbl" ? config.dnsbl : config.dnswl) {
        auto test = test_list_health(*resolver, list);  // named first: GCC PR 100611
        DnsblHealthReport report = co_await std::move(test);
        if (report.status != DnsblHealthStatus::healthy) all_healthy = false;
        std::cout << kind << " " << list.name << " (" << list.zone
                  << "): " << to_string(report.status) << "\n";
        for (const std::string& line : report.answers) std::cout << "  " << line << "\n";
      }
    }
  };
  try {
    run_to_completion(io, body());
  } catch (const std::exception& e) {
    std::cerr << "spamward: dnsbl health: " << e.what() << "\n";
    return 1;
  }
  return all_healthy ? 0 : 1;
}

}  // namespace spamward::cli
