// Helpers the unit tests share: literal addresses, canned DNS answers, a counting resolver,
// and running one awaitable to its end. Test-only.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/ip_address.h"
#include "dns/resolver.h"

namespace spamward::test {

// An address the test writes literally; a typo throws rather than testing nothing.
inline IpAddress ip(const char* text) {
  auto a = IpAddress::parse(text);
  if (!a) throw std::invalid_argument(text);
  return *a;
}

inline DnsAnswer ok(std::vector<std::string> records) {
  return {DnsAnswer::Status::ok, std::move(records), 300};
}
inline DnsAnswer timeout() {
  return {DnsAnswer::Status::timeout, {}, 0};
}

// A FixtureResolver that also counts the queries it answers, to check limits bound the work.
class CountingResolver final : public Resolver {
 public:
  FixtureResolver fixture;
  int queries = 0;
  boost::asio::awaitable<DnsAnswer> query(std::string name, DnsType type) override {
    ++queries;
    auto inner = fixture.query(std::move(name), type);  // named first: GCC PR 100611
    DnsAnswer a = co_await std::move(inner);
    co_return a;
  }
};

// Runs `task` on a private io_context to its end; rethrows what it threw.
template <typename T>
T run_sync(boost::asio::awaitable<T> task) {
  boost::asio::io_context io;
  T result{};
  std::exception_ptr error;
  boost::asio::co_spawn(io, std::move(task), [&](std::exception_ptr e, T r) {
    error = e;
    result = std::move(r);
  });
  io.run();
  if (error) std::rethrow_exception(error);
  return result;
}

}  // namespace spamward::test
