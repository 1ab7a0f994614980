// DnsCache and CachingResolver: the answer cache in front of the network resolver.
//
// DnsCache is a plain LRU map (name, type) -> answer with expiry times read from the injected
// Clock, so unit tests drive it with a FakeClock:
//   - ok answers live for their TTL (the smallest TTL of the answer RRset, as the resolver
//     reports it), capped at max_ttl; a TTL of 0 is honoured by not caching;
//   - nxdomain/nodata answers live for their negative TTL (RFC 2308: the SOA in the authority
//     section, which the resolver reports as ttl), capped at max_negative_ttl; when the
//     answer carries no SOA (ttl 0) a fixed negative_ttl applies;
//   - timeouts and errors are never stored (DESIGN §1: a timeout is not an answer);
//   - at most max_entries answers; the least recently used goes first.
//
// CachingResolver puts a DnsCache in front of another Resolver and coalesces concurrent
// identical queries into one upstream query. Like the rest of the event loop it assumes a
// single-threaded executor: no locks.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/clock.h"
#include "core/metrics.h"
#include "dns/resolver.h"

namespace spamward {

struct DnsCacheOptions {
  size_t max_entries = 100'000;
  std::chrono::seconds max_ttl{86'400};          // positive answers: at most a day
  std::chrono::seconds negative_ttl{300};        // nxdomain/nodata without a SOA
  std::chrono::seconds max_negative_ttl{3'600};  // nxdomain/nodata with a SOA: at most an hour
};

// The canonical form of a query name: lower-case ASCII, without a trailing dot. DNS names
// compare case-insensitively (RFC 4343), so "Example.ORG." and "example.org" share an entry.
std::string dns_canonical_name(std::string_view name);

// "A", "AAAA", "PTR", "TXT", "MX" (metric labels, logs).
const char* to_string(DnsType type);

class DnsCache {
 public:
  explicit DnsCache(const Clock& clock, DnsCacheOptions options = {});

  // The cached answer while it is fresh, its ttl set to the seconds it has left (rounded
  // up, so never 0); nullopt when absent or expired. A hit refreshes the LRU position.
  std::optional<DnsAnswer> get(std::string_view name, DnsType type);

  // Stores a definitive answer (ok, nxdomain, nodata) for the lifetime described above;
  // timeouts, errors and zero-lifetime answers are ignored. Replaces an existing entry.
  void put(std::string_view name, DnsType type, const DnsAnswer& answer);

  size_t size() const { return index_.size(); }
  void clear();

 private:
  struct Entry {
    std::string key;
    DnsAnswer answer;
    TimePoint expires;
  };
  static std::string key_of(std::string_view name, DnsType type);

  const Clock& clock_;
  DnsCacheOptions options_;
  std::list<Entry> lru_;  // most recently used first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
};

// A Resolver that answers from a DnsCache when it can and asks `upstream` otherwise.
// Concurrent queries for the same (name, type) wait for the one upstream query already under
// way (coalescing); they all get its answer. The upstream is expected to bound each query by
// its own timeout (CaresResolver does), so a waiter never waits longer than the first asker.
//
// Metrics (when given): spamward_dns_cache_hits_total, spamward_dns_coalesced_total.
//
// Destroying a CachingResolver destroys the upstream first, which completes its pending
// queries; coroutines still suspended in query() then resume without touching freed memory
// (they hold the shared state, not `this`).
class CachingResolver final : public Resolver {
 public:
  CachingResolver(std::unique_ptr<Resolver> upstream, const Clock& clock, Metrics* metrics,
                  DnsCacheOptions options = {});
  ~CachingResolver() override;
  CachingResolver(const CachingResolver&) = delete;
  CachingResolver& operator=(const CachingResolver&) = delete;

  boost::asio::awaitable<DnsAnswer> query(std::string name, DnsType type) override;

  const DnsCache& cache() const;
  Resolver& upstream() { return *upstream_; }

 private:
  struct State;
  struct Flight;
  std::shared_ptr<State> state_;
  std::unique_ptr<Resolver> upstream_;
};

}  // namespace spamward
