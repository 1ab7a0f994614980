// CaresResolver: the network Resolver, c-ares driven by the Asio event loop (no threads).
//
// How it runs. c-ares reports the sockets it wants watched through its socket-state callback;
// each one is wrapped in a non-owning posix::stream_descriptor (released before c-ares closes
// the fd) and watched with async_wait(wait_read / wait_write), which calls ares_process_fd. A
// steady_timer follows ares_timeout() for c-ares' own retransmits. Everything runs on the
// executor given to the constructor, which must be single-threaded (one thread running the
// io_context, as `serve` and `check` do); query() must be awaited on that same executor.
//
// What query() answers (DnsAnswer::records):
//   A, AAAA  the addresses as text ("192.0.2.1", "2001:db8::1"), in answer order;
//   PTR      the names, lower-cased, without the trailing dot;
//   TXT      one string per record: a record's character-strings joined with nothing in
//            between (RFC 7208 §3.3), bytes as received;
//   MX       the exchange names, lower-cased, without the trailing dot, ordered by preference
//            (lowest first; ties keep answer order). A null MX (RFC 7505, ".") is dropped,
//            so a domain with only a null MX answers nodata.
// status: NOERROR with records -> ok; NXDOMAIN -> nxdomain; NOERROR without records of the
// type -> nodata; no answer within the timeout -> timeout; SERVFAIL, REFUSED, a malformed
// reply, an unreachable server, overload or shutdown -> error. Only ok/nxdomain/nodata are
// answers; a timeout never is (DESIGN §1).
// ttl: ok -> the smallest TTL in the answer section (CNAMEs included); nxdomain/nodata ->
// min(SOA TTL, SOA MINIMUM) from the authority section (RFC 2308 §5), or 0 when no SOA came.
//
// Limits.
//   - Every query completes exactly once, within `timeout` of the call to query(), timing
//     included time spent waiting for a slot. The resolver's own timer enforces this whatever
//     c-ares is doing; a late reply to a query that timed out is dropped.
//   - At most max_in_flight queries are out on the network. Later queries wait in a FIFO
//     queue of at most max_queued; past that, query() answers error at once (overload). A
//     query that timed out keeps its slot until c-ares gives up on it too (about `timeout`
//     later), so a dead server is not flooded with retransmits.
//
// Lifetime. Destroy the resolver before its io_context. Destroying it with queries pending
// completes each of them with error ("shutdown"); their coroutines resume later and never
// touch the destroyed resolver.
//
// Metrics (when given):
//   spamward_dns_queries_total{type}     queries sent to the DNS servers (cache misses)
//   spamward_dns_timeouts_total          queries that got no answer within the timeout
//   spamward_dns_errors_total{status}    servfail, refused, formerr, notimp, badresp,
//                                        connrefused, overload, shutdown, other
//   spamward_dns_seconds{type}           latency histogram of network queries (incl. queueing)
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "core/config.h"
#include "core/metrics.h"
#include "dns/dns_cache.h"
#include "dns/resolver.h"

namespace spamward {

struct CaresOptions {
  // "IP" or "IP@PORT" (IPv6 with or without [brackets]); empty: /etc/resolv.conf.
  std::vector<std::string> servers;
  std::chrono::milliseconds timeout{2000};
  size_t max_in_flight = 512;
  size_t max_queued = 4096;
};

// One parsed `[dns] servers` entry.
struct DnsServer {
  int family = 0;               // AF_INET or AF_INET6
  unsigned char address[16]{};  // network byte order; the first 4 bytes for AF_INET
  uint16_t port = 53;
};
std::optional<DnsServer> parse_dns_server(std::string_view text);

class CaresResolver final : public Resolver {
 public:
  // Throws std::invalid_argument for a server that does not parse, std::runtime_error when
  // c-ares cannot start (no memory, unreadable resolv.conf).
  CaresResolver(boost::asio::any_io_executor executor, CaresOptions options, Metrics* metrics);
  ~CaresResolver() override;
  CaresResolver(const CaresResolver&) = delete;
  CaresResolver& operator=(const CaresResolver&) = delete;

  boost::asio::awaitable<DnsAnswer> query(std::string name, DnsType type) override;

  size_t in_flight() const;       // queries out on the network (timed-out ones included)
  size_t queued() const;          // queries waiting for a slot
  size_t peak_in_flight() const;  // the most in_flight() has been

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// What `serve` and `check` use: a CachingResolver over a CaresResolver configured from
// [dns]. Same lifetime rule: destroy it before the io_context.
std::unique_ptr<Resolver> make_resolver(boost::asio::any_io_executor executor,
                                        const DnsConfig& config, const Clock& clock,
                                        Metrics* metrics);

}  // namespace spamward
