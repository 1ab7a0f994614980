// SpamdServer: spamward as a SpamAssassin spamd (protocol SPAMC/1.5; codec in
// server/spamd_protocol.h), for `spamc` and Exim's `spam =` ACL condition. It parses the
// message, asks the current Engine at end of message and answers per DESIGN §3.5 (spamd
// column); it never scores anything itself.
//
// Contract:
// - One coroutine per connection and one request per connection, as spamd: the request is
//   read whole, answered, and the connection closed (the server shuts down its sending side,
//   then reads what the client still sends, for at most a second, so that closing with unread
//   bytes never resets the connection before the client has read the answer).
// - There are no SMTP facts over spamd (no client address, HELO or envelope): the
//   Transaction has stage eom, the parsed message, and nothing else, so only content checks
//   (header sanity, GTUBE, later DKIM and Bayes) apply; greylisting, reputation and offences
//   need a client address and never happen here. The `User:` header is logged, not used.
// - Commands: CHECK, SYMBOLS, REPORT, REPORT_IFSPAM, PROCESS, HEADERS (scored), PING (PONG),
//   SKIP (closed without an answer), TELL (learning, see SpamdLearner). TELL is refused with
//   EX_UNAVAILABLE "TELL commands are not enabled" unless the current config has
//   [spamd] allow_tell; when allowed but no learner is set, it answers EX_UNAVAILABLE
//   "learning is not available in this build".
// - Limits (DESIGN §3.5): request line and header lines (SpamdParserLimits), a declared
//   Content-length over max_content_length, a malformed request line or header, and a message
//   shorter than its Content-length (the client closed early) get one EX_PROTOCOL error line,
//   one log line "spamd: closing connection from PEER: REASON" and a count in
//   spamward_protocol_errors_total{server="spamd",reason}. Other connections are never
//   affected. A message over max_message_bytes is read to its end and its first
//   max_message_bytes are scored (never refused for its size); PROCESS of such a message answers
//   EX_DATAERR (spamc then passes the original through: spamward never returns part of a
//   message).
// - Timeouts: first_byte_timeout from accept to the first byte, request_timeout from accept
//   to the last byte of the request (slowloris); the reply write has request_timeout too.
//   A connection past a deadline is closed with a log line and counted.
// - Over max_connections, a new connection is accepted and closed at once.
// - Fail open: when the engine throws or there is none, the answer is "Spam: False ; 0.0 / t"
//   (PROCESS: the message with the incoming X-Spam-* fields removed, nothing added) and a
//   log line says why.
// - Metrics: gauge spamward_open_connections{server="spamd"}, counters
//   spamward_protocol_errors_total{server="spamd",reason} and
//   spamward_spamd_requests_total{command}.
//
// Threading: as PolicyServer (one thread or a strand runs the executor; stop() may be called
// from any thread; destroy it after the executor stopped running its handlers).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include "core/duration.h"
#include "core/listen_spec.h"
#include "core/metrics.h"
#include "engine/engine.h"
#include "mail/message.h"
#include "server/policy_server.h"  // EngineSource
#include "server/spamd_protocol.h"

namespace spamward {

namespace detail {
struct SpamdServerState;  // shared with the coroutines, so they may outlive the server object
}

// What TELL needs from the Bayes classifier (issue 6 implements it). spamc -L spam|ham sends
// "Message-class: spam|ham" with "Set: local"; -L forget sends "Remove: local". Reporting to
// remote databases (spamc -C, "Set: remote") is not supported and never reported as done.
class SpamdLearner {
 public:
  virtual ~SpamdLearner() = default;
  // Learns the message as spam or ham; true when that changed the database (learned, or moved
  // from the other class), false when it was already learned as such. May throw: the client
  // then gets EX_SOFTWARE.
  virtual boost::asio::awaitable<bool> learn(std::shared_ptr<const Message> message, bool spam) = 0;
  // Forgets the message; true when it had been learned.
  virtual boost::asio::awaitable<bool> forget(std::shared_ptr<const Message> message) = 0;
};

// The current learner (may follow config reloads); null or an empty function: none.
using LearnerSource = std::function<std::shared_ptr<SpamdLearner>()>;

struct SpamdLimits {
  size_t max_line = 1024;                                  // request and header lines
  size_t max_headers = 64;                                 // header lines per request
  int64_t max_message_bytes = 10485760;                    // [limits] max_message_bytes
  uint64_t max_content_length = 256ull << 20;              // larger declared lengths: error
  Duration first_byte_timeout = std::chrono::seconds(30);  // accept to first byte
  Duration request_timeout = std::chrono::seconds(120);    // accept to last byte; reply write
  int64_t max_connections = 2000;  // open at once; further ones are closed at accept
};

class SpamdServer {
 public:
  SpamdServer(boost::asio::any_io_executor ex, EngineSource engine, SpamdLimits limits,
              Metrics& metrics, LearnerSource learner = {});
  ~SpamdServer();
  SpamdServer(const SpamdServer&) = delete;
  SpamdServer& operator=(const SpamdServer&) = delete;

  // Binds now; throws std::runtime_error("cannot listen on SPEC: REASON"). A stale unix socket
  // file is replaced (never a live one or a non-socket); the socket gets mode 0660.
  void listen(const ListenSpec& spec);
  // The bound port of the first TCP listener (the kernel's pick for port 0); 0 if none.
  uint16_t port() const;
  void start();
  // Stops accepting and closes connections that have not sent a byte; a request being read or
  // answered is finished first. Idempotent.
  void stop();
  size_t open_connections() const;

 private:
  std::shared_ptr<detail::SpamdServerState> state_;
};

}  // namespace spamward
