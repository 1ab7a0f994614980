// DnsblHealth: RFC 5782 §5 test points for the configured DNSBLs and DNSWLs, shared by the
// per-list checks of one config (one object per make_checks(), so a SIGHUP reload simply
// builds a fresh one and tests the new lists again).
//
// The test (test_list_health, also what `spamward dnsbl health` prints):
//   - 127.0.0.2 must be listed, 127.0.0.1 must not (IPv6 lists: also ::FFFF:7F00:2 and
//     ::FFFF:7F00:1 in nibble form). "Listed" means what classify_dnsbl_answer() says, so a
//     blocked_codes answer ("query refused") is not a listing.
//   - listing_everything: a test point that must not be listed is listed. Dead lists do this
//     (their zone answers everything), and one such list would score every client.
//   - broken: not listing-everything, but 127.0.0.2 is not listed, or a query got no
//     definitive answer (timeout, SERVFAIL, refused). Some lists lack the 127.0.0.2 entry,
//     so this is a warning only.
//   - healthy: otherwise.
//
// The check's view (usable()):
//   - A list is trusted only after a test whose negative points (127.0.0.1, ::FFFF:7F00:1)
//     got definitive answers that are not listings. Until then (first test pending, or it
//     got no answer) and while it lists everything, its check emits nothing.
//   - The first test of a list runs on its first use, and every caller awaits it ("every
//     process that uses the lists tests their health before first use", DESIGN §3.3).
//     Later tests run in the background when the last one is older than `interval` (after
//     a test without definitive answers: `retry`); callers meanwhile use the last result.
//     So a list is tested at its first use and then at most every `interval` while mail
//     flows; an idle daemon sends no test queries.
//   - Transitions are logged: disabled (lists everything), re-enabled (recovered), a
//     warning when 127.0.0.2 stops being listed, info when the list is healthy again.
//
// Metrics: spamward_dnsbl_healthy{list} (gauge: 1 healthy, 0 broken or listing everything),
//          spamward_dnsbl_health_tests_total{list,status}.
//
// Threading: single-threaded; usable() and test() must be awaited on one executor (the
// daemon's loop). Background tests hold the object by shared_ptr; the Resolver and Clock
// must outlive the io_context's last run (as in `serve` and `check`).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/config.h"
#include "core/metrics.h"
#include "dns/resolver.h"

namespace spamward {

enum class DnsblHealthStatus { healthy, broken, listing_everything };
std::string_view to_string(DnsblHealthStatus s);

struct DnsblHealthReport {
  DnsblHealthStatus status = DnsblHealthStatus::broken;
  // The negative test points got definitive answers and none was a listing: the list's
  // answers may be trusted (a `broken` list can still be trusted: it only lacks 127.0.0.2).
  bool trusted = false;
  // Some test answer was in blocked_codes or outside 127/8: the list refuses our resolver
  // (public resolvers get this), or something rewrites answers.
  bool refused = false;
  // One line per test query: "127.0.0.2: listed 127.0.0.2", "127.0.0.1: nxdomain",
  // "::ffff:127.0.0.1: timeout", "127.0.0.2: not listed (blocked 127.255.255.254)".
  std::vector<std::string> answers;
};

// Queries the test points of one list (concurrently-safe: each query is awaited in turn,
// so at most two or four queries per call).
boost::asio::awaitable<DnsblHealthReport> test_list_health(Resolver& resolver, ListConfig list);

class DnsblHealth : public std::enable_shared_from_this<DnsblHealth> {
 public:
  struct Options {
    Duration interval = std::chrono::minutes(10);  // between tests of a trusted list
    Duration retry = std::chrono::seconds(30);     // after a test without definitive answers
  };

  DnsblHealth(Resolver& resolver, const Clock& clock, Metrics* metrics, Options options);
  DnsblHealth(Resolver& resolver, const Clock& clock, Metrics* metrics)
      : DnsblHealth(resolver, clock, metrics, Options{}) {}

  // Registers a list; `label` is the metric/log label (the list's name). Returns its index.
  size_t add_list(ListConfig list, std::string label);

  // True when list i may be used now (see the header comment). Awaits the list's first test;
  // may start a background re-test. Never throws for DNS trouble.
  boost::asio::awaitable<bool> usable(size_t i);
  // Starts the first test of every list now, in the background on `ex` (the daemon calls it
  // at start, so lists are tested before the first mail; usable() then awaits those tests).
  void test_all(boost::asio::any_io_executor ex);

  // Runs one test of list i now and applies its result (state, logs, gauge).
  boost::asio::awaitable<DnsblHealthReport> test(size_t i);

  // The last applied result, if any (for tests and diagnostics).
  std::optional<DnsblHealthReport> last(size_t i) const;
  bool enabled(size_t i) const;

 private:
  struct ListState {
    ListConfig config;
    std::string label;
    std::optional<DnsblHealthReport> last;
    TimePoint next_test{};
    bool testing = false;
    std::unique_ptr<boost::asio::steady_timer> first_done;  // cancelled when the first test ends
  };
  void apply(ListState& s, const DnsblHealthReport& report);
  void start_background_test(boost::asio::any_io_executor ex, size_t i);

  Resolver& resolver_;
  const Clock& clock_;
  Metrics* metrics_;
  Options options_;
  std::vector<ListState> lists_;
};

}  // namespace spamward
