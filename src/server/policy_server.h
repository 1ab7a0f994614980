// PolicyServer: the Postfix policy delegation server (check_policy_service, SMTPD_POLICY_README).
// It translates requests to Transactions, asks the current Engine, and answers per DESIGN §3.5;
// it never scores anything itself.
//
// Contract:
// - One coroutine per connection, many requests per persistent connection, answered in order.
//   TCP and unix sockets share one code path (generic stream sockets).
// - Every input is bounded (DESIGN §3.5 Limits). A connection is closed, with one log line
//   "policy: closing connection from PEER: REASON" and a count in
//   spamward_protocol_errors_total{server="policy",reason}, when it sends
//     - a line, request or attribute count over the limits, a line without '=', a NUL byte,
//       an empty request, or a request type other than smtpd_access_policy;
//     - no byte for idle_timeout between requests (logged at info: Postfix closes idle
//       policy connections itself after smtpd_policy_service_max_idle, 300 s by default);
//     - a request that is not complete within request_timeout of its first byte (slowloris),
//       or does not read its reply within request_timeout.
//   Other connections are never affected: nothing here blocks the loop.
// - Over max_connections, a new connection is accepted and closed at once (Postfix then
//   applies smtpd_policy_service_default_action); the log line for that is rate-limited.
// - One message delivery, one transaction: requests with the same `instance` over one
//   connection share an EvaluationState (Postfix sends all requests of a delivery over one
//   connection and changes `instance` for the next delivery). Checks of earlier stages run
//   once per message, and a recipient greylisted at RCPT defers the whole message at DATA
//   (DESIGN §3.5). At DATA and END-OF-MESSAGE, the message's recipients are those answered
//   without refusal at RCPT. A request without `instance` gets a fresh state.
// - Fail open: when the engine throws or there is no engine, the answer is action=DUNNO and a
//   log line says why.
// - Metrics: gauge spamward_open_connections{server="policy"}, counter
//   spamward_protocol_errors_total{server="policy",reason}.
//
// Threading: the executor must not run two handlers at once (an io_context run by one thread,
// or a strand): connection state is not locked. stop() may be called from any thread (it
// dispatches to the executor); open_connections() and port() are thread-safe. The destructor
// closes everything directly, so destroy the server only when the executor is not running
// handlers on another thread (e.g. after io_context::run() returned), and before the
// io_context itself.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include "core/duration.h"
#include "core/listen_spec.h"
#include "core/metrics.h"
#include "engine/engine.h"

namespace spamward {

namespace detail {
struct PolicyServerState;  // shared with the coroutines, so they may outlive the server object
}

struct PolicyLimits {
  size_t max_line = 2048;                               // bytes per attribute line
  size_t max_attributes = 64;                           // lines per request
  size_t max_request_bytes = 16384;                     // bytes per request
  Duration idle_timeout = std::chrono::seconds(300);    // between requests
  Duration request_timeout = std::chrono::seconds(10);  // first byte to last; also per reply write
  int64_t max_connections = 2000;  // open at once; further ones are closed at accept
};

// The current engine (config reloads swap it). A request keeps the engine it started with.
// May return null (no engine yet): requests are then answered DUNNO.
using EngineSource = std::function<std::shared_ptr<Engine>()>;

class PolicyServer {
 public:
  PolicyServer(boost::asio::any_io_executor ex, EngineSource engine, PolicyLimits limits,
               Metrics& metrics);
  ~PolicyServer();
  PolicyServer(const PolicyServer&) = delete;
  PolicyServer& operator=(const PolicyServer&) = delete;

  // Binds now; throws std::runtime_error("cannot listen on SPEC: REASON"). May be called more
  // than once (several sockets). For a unix socket, a stale socket file is removed first (but
  // not a live one, nor a file that is not a socket) and the socket gets mode 0660.
  void listen(const ListenSpec& spec);

  // The bound port of the first TCP listener (the kernel's pick for port 0); 0 if none.
  uint16_t port() const;

  // Starts accepting on every listener (coroutines on the executor).
  void start();

  // Stops accepting and closes idle connections now; a connection with a request in progress
  // finishes it (reply included) and then closes. Idempotent.
  void stop();

  size_t open_connections() const;

 private:
  std::shared_ptr<detail::PolicyServerState> state_;
};

}  // namespace spamward
