// Resolver: the asynchronous DNS interface every check uses. Injected (DESIGN §2) so tests
// run on fixture answers; the c-ares implementation on the Asio loop comes with the DNS
// issue. A timeout is reported as such and is never an answer (DESIGN §1).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace spamward {

enum class DnsType { a, aaaa, ptr, txt, mx };

struct DnsAnswer {
  enum class Status { ok, nxdomain, nodata, timeout, error };
  Status status = Status::error;
  std::vector<std::string> records;  // A/AAAA as text addresses, PTR/MX as names, TXT joined
  uint32_t ttl = 0;
  bool ok() const { return status == Status::ok; }
  // An answer the checks may act on: a record, or an authoritative "does not exist".
  bool definitive() const {
    return status == Status::ok || status == Status::nxdomain || status == Status::nodata;
  }
};

class Resolver {
 public:
  virtual ~Resolver() = default;
  virtual boost::asio::awaitable<DnsAnswer> query(std::string name, DnsType type) = 0;
};

// Answers from a fixed table; names not in it are NXDOMAIN. For unit tests and `replay`.
class FixtureResolver final : public Resolver {
 public:
  void set(const std::string& name, DnsType type, DnsAnswer answer) {
    table_[{name, type}] = std::move(answer);
  }
  boost::asio::awaitable<DnsAnswer> query(std::string name, DnsType type) override {
    auto it = table_.find({name, type});
    if (it == table_.end()) co_return DnsAnswer{DnsAnswer::Status::nxdomain, {}, 0};
    co_return it->second;
  }

 private:
  std::map<std::pair<std::string, DnsType>, DnsAnswer> table_;
};

}  // namespace spamward
