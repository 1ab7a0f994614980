// TrapServer: the optional minimal SMTP responder on [trap] listen addresses (issue 7,
// docs/trap.md). No MX record points to these addresses, so whoever connects to them on
// port 25 is scanning, not delivering.
//
// Per connection: a client in [network] trusted is told "421 4.3.2" and nothing is recorded
// (monitoring and our own hosts are never trapped). Anyone else gets an offence (kind trap:
// a ban at once, longer if it comes back, exported like every ban; none in dry-run mode), one
// log line "trap: ADDRESS connected to trap address LISTENER", a count in
// spamward_trap_connections_total, the greeting "220 NAME ESMTP", and, after its first command
// line (at most 512 bytes, or 10 s), "421 4.7.0 NAME Service not available, closing
// transmission channel". Nothing else is ever read or accepted: no mail can arrive here.
//
// Limits, the connection cap and the graceful stop are StreamServer's (server/stream_server.h).
// Threading as StreamServer: one thread runs the executor; stop() is thread-safe.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <memory>
#include <string>
#include <vector>

#include "core/ip_address.h"
#include "core/listen_spec.h"
#include "core/metrics.h"
#include "state/reputation.h"

namespace spamward {

namespace detail {
struct TrapServerState;
}

struct TrapOptions {
  std::vector<Prefix> trusted;         // [network] trusted
  bool record_offences = true;         // false in dry-run mode
  std::string hostname = "localhost";  // in the greeting
  int64_t max_connections = 256;
};

class TrapServer {
 public:
  // `reputation` may be null (then nothing is recorded; the log line and count remain).
  TrapServer(boost::asio::any_io_executor ex, Reputation* reputation, TrapOptions options,
             Metrics& metrics);
  ~TrapServer();
  TrapServer(const TrapServer&) = delete;
  TrapServer& operator=(const TrapServer&) = delete;

  void listen(const ListenSpec& spec);  // throws std::runtime_error
  uint16_t port() const;
  void start();
  void stop();
  size_t open_connections() const;

 private:
  std::shared_ptr<detail::TrapServerState> state_;
};

}  // namespace spamward
