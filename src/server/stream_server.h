// StreamServer: what the policy, milter and spamd servers share, so each of them holds only
// its protocol. It owns the listening sockets (TCP and unix), the accept loop, the set of open
// connections, one session coroutine and one watchdog per connection, the open-connections
// gauge, the protocol-error counter and the graceful stop.
//
// Contract:
// - A protocol server derives its shared state from StreamServer and its connection from
//   StreamConnection, and supplies make_connection() and serve(). serve() runs once per
//   accepted connection; whatever it does (returns or throws), the connection is then closed
//   and unregistered. The state is held by shared_ptr: the coroutines keep it alive, so they
//   may outlive the protocol server's public object.
// - listen(spec) binds now or throws std::runtime_error("cannot listen on SPEC: REASON"). It
//   may be called more than once. For a unix socket a stale socket file is removed first (never
//   a live one, nor a file that is not a socket) and the socket gets mode 0660.
// - Over max_connections a new connection is accepted and closed at once, counted as
//   protocol error "max_connections"; that log line, and accept failures, are rate-limited.
// - Watchdog: a connection names the deadline of its current phase (deadline(); time_point
//   max() when none applies) and what happens when it passes (expire()). The watchdog sleeps
//   until the deadline, but at most watchdog_cap, so a connection may change phase without
//   waking it (no timer operation per request); a connection that moves its deadline earlier
//   than the cap allows calls wake().
// - stop() (any thread) stops accepting and closes idle() connections; a connection in the
//   middle of a request finishes it and closes itself (serve() checks stopping()).
//   shutdown_now() (for destructors) closes everything at once.
// - Metrics: gauge spamward_open_connections{server}, counter
//   spamward_protocol_errors_total{server,reason}.
//
// Threading: one thread (or a strand) runs the executor's handlers; stop(), port() and
// open_connections() are thread-safe, everything else runs on the executor.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "core/duration.h"
#include "core/listen_spec.h"
#include "core/metrics.h"

namespace spamward {

// At most one line per interval; the next allowed line says how many were suppressed. For
// events a flood can repeat (overload, accept failures, a missing engine).
class RateLimitedLog {
 public:
  explicit RateLimitedLog(std::chrono::steady_clock::duration interval = std::chrono::seconds(10))
      : interval_(interval) {}
  // True when a line may be written now; `suppressed` is how many were dropped since the last.
  bool allow(uint64_t& suppressed);

 private:
  std::chrono::steady_clock::duration interval_;
  bool logged_ = false;
  std::chrono::steady_clock::time_point last_;
  uint64_t suppressed_ = 0;
};

// " (N similar lines suppressed)", or "" for 0.
std::string suppressed_note(uint64_t n);

struct StreamListener {
  explicit StreamListener(const boost::asio::any_io_executor& ex) : acceptor(ex) {}
  boost::asio::basic_socket_acceptor<boost::asio::generic::stream_protocol> acceptor;
  std::string name;  // ListenSpec text (with the kernel's port for port 0), for logs
  bool is_unix = false;
};

class StreamServer;

class StreamConnection {
 public:
  using Socket = boost::asio::generic::stream_protocol::socket;
  using TimePoint = std::chrono::steady_clock::time_point;

  StreamConnection(Socket s, std::shared_ptr<const StreamListener> l);
  virtual ~StreamConnection() = default;
  StreamConnection(const StreamConnection&) = delete;
  StreamConnection& operator=(const StreamConnection&) = delete;

  // True when no request is in progress, so stop() may close the connection at once.
  virtual bool idle() const = 0;
  // When the current phase's deadline falls; max() when none applies.
  virtual TimePoint deadline() const = 0;
  // Called once deadline() has passed: log, count and close (usually server.close_with()).
  virtual void expire(StreamServer& server) = 0;

  // Shuts the socket down and closes it, cancelling its pending operations; the coroutines
  // see `closed` and end quietly. Idempotent.
  void close();
  // Wakes the watchdog to re-read deadline() (after a move to an earlier deadline).
  void wake() { timer.cancel(); }
  // "ADDRESS:PORT", "[V6]:PORT", or "client on LISTENER" for unix clients.
  std::string peer_name() const;

  Socket socket;
  boost::asio::steady_timer timer;  // the watchdog's
  std::shared_ptr<const StreamListener> listener;
  bool closed = false;
};

// A connection that serves one request after another (policy requests, milter frames). Idle
// between requests: idle_timeout (closed quietly, "idle_timeout"). Reading a request, and
// writing its reply: io_timeout each ("<unit>_timeout", "write_timeout"). Evaluating: no
// deadline here (the engine's stage deadline bounds it). Its server's watchdog cap must be at
// most min(idle_timeout, io_timeout), since enter() does not wake the watchdog.
class PhasedConnection : public StreamConnection {
 public:
  enum class Phase { idle, reading, evaluating, writing };

  // `unit` names what is read ("request", "frame") in log lines and the timeout reason.
  PhasedConnection(Socket s, std::shared_ptr<const StreamListener> l, Duration idle_timeout,
                   Duration io_timeout, std::string_view unit);

  bool idle() const override { return phase == Phase::idle; }
  TimePoint deadline() const override;
  void expire(StreamServer& server) override;

  void enter(Phase p) {
    phase = p;
    phase_start = std::chrono::steady_clock::now();
  }

  Phase phase = Phase::idle;
  TimePoint phase_start = std::chrono::steady_clock::now();

 private:
  Duration idle_timeout_;
  Duration io_timeout_;
  std::string_view unit_;
};

class StreamServer : public std::enable_shared_from_this<StreamServer> {
 public:
  // `name` is the server label ("policy", "milter", "spamd") of logs and metrics.
  StreamServer(boost::asio::any_io_executor ex, std::string name, Metrics& metrics,
               int64_t max_connections, Duration watchdog_cap);
  virtual ~StreamServer() = default;
  StreamServer(const StreamServer&) = delete;
  StreamServer& operator=(const StreamServer&) = delete;

  void listen(const ListenSpec& spec);
  uint16_t port() const;  // the first TCP listener's bound port; 0 if none
  void start();
  void stop();
  void shutdown_now();
  size_t open_connections() const { return open_.load(); }

  const std::string& name() const { return name_; }
  const boost::asio::any_io_executor& executor() const { return ex_; }
  bool stopping() const { return stopping_; }
  Metrics& metrics() { return metrics_; }

  void count_error(std::string_view reason);
  // Logs "NAME: closing connection from PEER: WHY" (warning, or info when quiet), counts
  // `reason` and closes. Nothing when the connection is already closed.
  void close_with(StreamConnection& c, std::string_view reason, const std::string& why,
                  bool quiet = false);

  RateLimitedLog engine_log;  // "no engine available" lines

 protected:
  virtual std::shared_ptr<StreamConnection> make_connection(
      StreamConnection::Socket socket, std::shared_ptr<const StreamListener> listener) = 0;
  virtual boost::asio::awaitable<void> serve(std::shared_ptr<StreamConnection> c) = 0;

 private:
  static boost::asio::awaitable<void> accept_loop(std::shared_ptr<StreamServer> s,
                                                  std::shared_ptr<StreamListener> l);
  static boost::asio::awaitable<void> run_connection(std::shared_ptr<StreamServer> s,
                                                     std::shared_ptr<StreamConnection> c);
  static boost::asio::awaitable<void> watchdog(std::shared_ptr<StreamServer> s,
                                               std::shared_ptr<StreamConnection> c);
  void stop_now();
  void update_gauge();
  void log_exception(std::exception_ptr e, const char* what) const;

  boost::asio::any_io_executor ex_;
  std::string name_;
  Metrics& metrics_;
  int64_t max_connections_;
  Duration watchdog_cap_;
  std::vector<std::shared_ptr<StreamListener>> listeners_;
  std::atomic<uint16_t> tcp_port_{0};
  std::unordered_set<std::shared_ptr<StreamConnection>> connections_;  // executor only
  std::atomic<size_t> open_{0};
  bool started_ = false;
  bool stopping_ = false;
  RateLimitedLog overload_log_;
  RateLimitedLog accept_log_;
};

// Binds and listens on `spec` (the unix-socket rules above); throws std::runtime_error("cannot
// listen on SPEC: REASON"). Shared with the HTTP server.
void open_stream_listener(StreamListener& listener, const ListenSpec& spec);
// The port a listener is bound to, for TCP; 0 for a unix socket.
uint16_t bound_port(const StreamListener& listener);

}  // namespace spamward
