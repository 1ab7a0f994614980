#include "checks/dnsbl_health.h"
#include "core/strings.h"

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "dns/dnsbl.h"

namespace spamward {

namespace asio = boost::asio;

namespace {

// The RFC 5782 §5 test points. IPv6 lists are tested in nibble form on the v4-mapped
// addresses, which IpAddress would fold to IPv4: hence raw bytes.
std::array<uint8_t, 16> mapped(uint8_t last) {
  return {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0x7f, 0, 0, last};
}

struct Point {
  std::string label;  // how the report names it
  std::string qname;
  bool must_list;  // 127.0.0.2 must be listed; 127.0.0.1 must not
};

// Results of the test queries, filled by concurrently spawned queries, so a dead server
// costs one timeout per test, not one per test point.
struct Pending {
  Pending(asio::any_io_executor ex, size_t n)
      : done(ex, asio::steady_timer::time_point::max()), left(n), answers(n) {}
  asio::steady_timer done;
  size_t left;
  std::vector<DnsAnswer> answers;
};

asio::awaitable<void> query_into(Resolver& resolver, std::string name, std::shared_ptr<Pending> p,
                                 size_t k) {
  DnsAnswer answer;
  try {
    auto q = resolver.query(std::move(name), DnsType::a);
    answer = co_await std::move(q);
  } catch (const std::exception&) {
    answer.status = DnsAnswer::Status::error;
  }
  p->answers[k] = std::move(answer);
  if (--p->left == 0) p->done.cancel();
}

std::string status_text(DnsAnswer::Status s) {
  switch (s) {
    case DnsAnswer::Status::ok:
      return "ok";
    case DnsAnswer::Status::nxdomain:
      return "nxdomain";
    case DnsAnswer::Status::nodata:
      return "nodata";
    case DnsAnswer::Status::timeout:
      return "timeout";
    case DnsAnswer::Status::error:
      return "error";
  }
  return "error";
}

asio::awaitable<void> run_test(std::shared_ptr<DnsblHealth> self, size_t i) {
  auto t = self->test(i);
  co_await std::move(t);
}

}  // namespace

std::string_view to_string(DnsblHealthStatus s) {
  switch (s) {
    case DnsblHealthStatus::healthy:
      return "healthy";
    case DnsblHealthStatus::broken:
      return "broken";
    case DnsblHealthStatus::listing_everything:
      return "listing-everything";
  }
  return "broken";
}

asio::awaitable<DnsblHealthReport> test_list_health(Resolver& resolver, ListConfig list) {
  std::vector<Point> points = {
      {"127.0.0.2", dnsbl_query_name(*IpAddress::parse("127.0.0.2"), list.zone), true},
      {"127.0.0.1", dnsbl_query_name(*IpAddress::parse("127.0.0.1"), list.zone), false},
  };
  if (list.ipv6) {
    points.push_back({"::ffff:7f00:2", dnsbl_query_name_v6(mapped(2), list.zone), true});
    points.push_back({"::ffff:7f00:1", dnsbl_query_name_v6(mapped(1), list.zone), false});
  }
  auto ex = co_await asio::this_coro::executor;
  auto pending = std::make_shared<Pending>(ex, points.size());
  for (size_t k = 0; k < points.size(); ++k) {
    asio::co_spawn(ex, query_into(resolver, points[k].qname, pending, k), asio::detached);
  }
  if (pending->left > 0) {
    boost::system::error_code ec;
    auto wait = pending->done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    co_await std::move(wait);
  }

  DnsblHealthReport report;
  bool lists_world = false, positive_missing = false, negative_unknown = false,
       positive_unknown = false;
  for (size_t k = 0; k < points.size(); ++k) {
    const DnsAnswer& a = pending->answers[k];
    std::string line = points[k].label + ": ";
    bool listed = false;
    if (a.ok()) {
      DnsblAnswer c = classify_dnsbl_answer(list, a.records);
      listed = c.listed;
      if (c.listed) {
        line += "listed " + join(c.codes);
      } else {
        line += "not listed";
      }
      if (c.alert()) {
        report.refused = true;
        std::vector<std::string> odd = c.blocked;
        odd.insert(odd.end(), c.not_127.begin(), c.not_127.end());
        line += (c.blocked.empty() ? " (answer outside 127/8: " : " (blocked answer: ") +
                join(odd) + ")";
      }
    } else if (a.definitive()) {
      line += status_text(a.status) + " (not listed)";
    } else {
      line += status_text(a.status);
    }
    report.answers.push_back(std::move(line));
    if (points[k].must_list) {
      if (!a.definitive()) positive_unknown = true;
      if (!listed) positive_missing = true;
    } else {
      if (!a.definitive()) negative_unknown = true;
      if (listed) lists_world = true;
    }
  }
  report.trusted = !lists_world && !negative_unknown;
  if (lists_world) {
    report.status = DnsblHealthStatus::listing_everything;
  } else if (positive_missing || positive_unknown || negative_unknown) {
    report.status = DnsblHealthStatus::broken;
  } else {
    report.status = DnsblHealthStatus::healthy;
  }
  co_return report;
}

DnsblHealth::DnsblHealth(Resolver& resolver, const Clock& clock, Metrics* metrics, Options options)
    : resolver_(resolver), clock_(clock), metrics_(metrics), options_(options) {
  if (metrics_) {
    metrics_->describe("spamward_dnsbl_healthy", Metrics::Type::gauge,
                       "1 when the list passed its last RFC 5782 health test, else 0");
    metrics_->describe("spamward_dnsbl_health_tests_total", Metrics::Type::counter,
                       "RFC 5782 health tests of a DNSBL/DNSWL by outcome");
  }
}

size_t DnsblHealth::add_list(ListConfig list, std::string label) {
  ListState s;
  s.config = std::move(list);
  s.label = std::move(label);
  lists_.push_back(std::move(s));
  return lists_.size() - 1;
}

std::optional<DnsblHealthReport> DnsblHealth::last(size_t i) const {
  return lists_.at(i).last;
}

bool DnsblHealth::enabled(size_t i) const {
  const auto& s = lists_.at(i);
  return s.last && s.last->trusted;
}

void DnsblHealth::start_background_test(asio::any_io_executor ex, size_t i) {
  lists_[i].testing = true;  // set now, so concurrent callers do not start another
  asio::co_spawn(ex, run_test(shared_from_this(), i), asio::detached);
}

void DnsblHealth::test_all(asio::any_io_executor ex) {
  for (size_t i = 0; i < lists_.size(); ++i) {
    if (lists_[i].last || lists_[i].testing) continue;
    lists_[i].first_done =
        std::make_unique<asio::steady_timer>(ex, asio::steady_timer::time_point::max());
    start_background_test(ex, i);
  }
}

asio::awaitable<bool> DnsblHealth::usable(size_t i) {
  auto self = shared_from_this();  // background tests and waiters keep it alive
  auto ex = co_await asio::this_coro::executor;
  if (!lists_.at(i).last) {
    if (!lists_[i].testing) {
      lists_[i].first_done =
          std::make_unique<asio::steady_timer>(ex, asio::steady_timer::time_point::max());
      start_background_test(ex, i);
    }
    if (!lists_[i].last && lists_[i].first_done) {
      boost::system::error_code ec;
      auto wait = lists_[i].first_done->async_wait(asio::redirect_error(asio::use_awaitable, ec));
      co_await std::move(wait);
    }
  } else if (!lists_[i].testing && clock_.now() >= lists_[i].next_test) {
    start_background_test(ex, i);
  }
  co_return enabled(i);
}

asio::awaitable<DnsblHealthReport> DnsblHealth::test(size_t i) {
  auto self = shared_from_this();
  lists_.at(i).testing = true;
  ListConfig config = lists_[i].config;
  DnsblHealthReport report;
  try {
    auto t = test_list_health(resolver_, std::move(config));
    report = co_await std::move(t);
  } catch (const std::exception& e) {
    // Not a DNS answer: nothing learned, so the list stays untrusted until the retry.
    report = DnsblHealthReport{};
    report.answers.push_back(std::string("error: ") + e.what());
  }
  apply(lists_[i], report);
  lists_[i].testing = false;
  if (lists_[i].first_done) {
    // Wakes the callers awaiting the first test; their completions are queued already, so
    // the timer can go (it must not outlive its io_context in tests).
    lists_[i].first_done->cancel();
    lists_[i].first_done.reset();
  }
  co_return report;
}

void DnsblHealth::apply(ListState& s, const DnsblHealthReport& report) {
  const std::string answers = join(report.answers);
  const std::optional<DnsblHealthReport> prev = s.last;
  const bool indeterminate =
      !report.trusted && report.status != DnsblHealthStatus::listing_everything;
  const std::string& name = s.label;

  if (report.status == DnsblHealthStatus::listing_everything) {
    if (!prev || prev->status != DnsblHealthStatus::listing_everything) {
      spdlog::error(
          "dnsbl {} ({}) lists everything [{}]: disabled, it adds nothing until it recovers", name,
          s.config.zone, answers);
    }
  } else if (prev && prev->status == DnsblHealthStatus::listing_everything && report.trusted) {
    spdlog::warn("dnsbl {} ({}) recovered, no longer lists everything [{}]: re-enabled", name,
                 s.config.zone, answers);
  } else if (indeterminate) {
    if (!prev || prev->trusted || prev->status == DnsblHealthStatus::listing_everything) {
      spdlog::warn(
          "dnsbl {} ({}) health test got no DNS answer [{}]: it adds nothing until a test "
          "answers",
          name, s.config.zone, answers);
    }
  } else if (report.status == DnsblHealthStatus::broken && report.refused) {
    if (!prev || prev->status != DnsblHealthStatus::broken || !prev->refused) {
      spdlog::warn(
          "dnsbl {} ({}) refuses our queries [{}]: its answers are not listings; use a "
          "local recursive resolver (docs/dnsbl.md)",
          name, s.config.zone, answers);
    }
  } else if (report.status == DnsblHealthStatus::broken) {
    if (!prev || prev->status != DnsblHealthStatus::broken || !prev->trusted) {
      spdlog::warn(
          "dnsbl {} ({}) does not list the test point 127.0.0.2 [{}]: its listings still "
          "count, but check the zone name",
          name, s.config.zone, answers);
    }
  } else if (!prev || prev->status != DnsblHealthStatus::healthy) {
    spdlog::info("dnsbl {} ({}) healthy [{}]", name, s.config.zone, answers);
  }

  s.last = report;
  s.next_test = clock_.now() + (indeterminate ? options_.retry : options_.interval);
  if (metrics_) {
    metrics_->set("spamward_dnsbl_healthy", {{"list", name}},
                  report.status == DnsblHealthStatus::healthy ? 1.0 : 0.0);
    metrics_->inc("spamward_dnsbl_health_tests_total",
                  {{"list", name}, {"status", std::string(to_string(report.status))}});
  }
}

}  // namespace spamward
