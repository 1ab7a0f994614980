#include "server/policy_server.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <cstring>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <vector>

#include <spdlog/spdlog.h>

#include "server/policy_protocol.h"

namespace spamward {

namespace asio = boost::asio;
using generic_stream = asio::generic::stream_protocol;
using SteadyClock = std::chrono::steady_clock;

namespace {

constexpr std::string_view kOpenConnections = "spamward_open_connections";
constexpr std::string_view kProtocolErrors = "spamward_protocol_errors_total";
// Postfix requests are ~700 bytes; one read usually takes a whole request.
constexpr size_t kReadBufferSize = 4096;
constexpr auto kLogInterval = std::chrono::seconds(10);

const Labels& server_labels() {
  static const Labels labels = {{"server", "policy"}};
  return labels;
}

// At most one line per kLogInterval; the next one says how many were suppressed. For events a
// flood can repeat (over max_connections, accept failures, a missing engine).
class RateLimitedLog {
 public:
  // Returns true when a line may be written now; `suppressed` is how many were dropped since.
  bool allow(uint64_t& suppressed) {
    auto now = SteadyClock::now();
    if (logged_ && now - last_ < kLogInterval) {
      ++suppressed_;
      return false;
    }
    logged_ = true;
    last_ = now;
    suppressed = suppressed_;
    suppressed_ = 0;
    return true;
  }

 private:
  bool logged_ = false;
  SteadyClock::time_point last_;
  uint64_t suppressed_ = 0;
};

std::string suppressed_note(uint64_t n) {
  return n ? " (" + std::to_string(n) + " similar lines suppressed)" : std::string();
}

}  // namespace

namespace detail {

struct Listener {
  explicit Listener(const asio::any_io_executor& ex) : acceptor(ex) {}
  asio::basic_socket_acceptor<generic_stream> acceptor;
  std::string name;  // ListenSpec text, for logs
  bool is_unix = false;
};

struct Connection {
  Connection(generic_stream::socket s, std::shared_ptr<const Listener> l, PolicyParserLimits pl)
      : socket(std::move(s)), timer(socket.get_executor()), listener(std::move(l)), parser(pl) {}

  // What the connection is doing decides which deadline applies (see watchdog()).
  enum class Phase { idle, reading, evaluating, writing };

  generic_stream::socket socket;
  asio::steady_timer timer;
  std::shared_ptr<const Listener> listener;
  Phase phase = Phase::idle;
  SteadyClock::time_point phase_start = SteadyClock::now();
  bool closed = false;
  PolicyParser parser;
  std::string reply;
  // Postfix sends every request of one message delivery over one connection, with one
  // `instance` value; a new value means the previous delivery is over (SMTPD_POLICY_README).
  // So the transaction's state (check results, greylisted recipients) lives here.
  std::string instance;
  std::shared_ptr<EvaluationState> state;
  std::optional<IpAddress> state_client;
  std::vector<std::string> accepted_recipients;  // RCPT answers that were not refusals
  std::array<char, kReadBufferSize> buffer;
};

struct PolicyServerState {
  PolicyServerState(asio::any_io_executor e, EngineSource src, PolicyLimits l, Metrics& m)
      : ex(std::move(e)),
        engine(std::move(src)),
        limits(l),
        parser_limits{l.max_line, l.max_attributes, l.max_request_bytes},
        metrics(m) {}

  asio::any_io_executor ex;
  EngineSource engine;
  PolicyLimits limits;
  PolicyParserLimits parser_limits;
  Metrics& metrics;

  std::vector<std::shared_ptr<Listener>> listeners;
  std::atomic<uint16_t> tcp_port{0};
  std::unordered_set<std::shared_ptr<Connection>> connections;  // executor only
  std::atomic<size_t> open{0};
  bool started = false;
  bool stopping = false;
  uint64_t next_id = 0;
  RateLimitedLog overload_log;
  RateLimitedLog accept_log;
  RateLimitedLog engine_log;

  void count_error(std::string_view reason) {
    metrics.inc(kProtocolErrors, {{"server", "policy"}, {"reason", std::string(reason)}});
  }
  void update_gauge() {
    metrics.set(kOpenConnections, server_labels(), static_cast<double>(open.load()));
  }

  // Closes the socket (cancelling its pending operations); the connection's coroutines see
  // `closed` and end quietly.
  static void close(Connection& c) {
    if (c.closed) return;
    c.closed = true;
    boost::system::error_code ec;
    c.socket.shutdown(asio::socket_base::shutdown_both, ec);
    c.socket.close(ec);
    c.timer.cancel();
  }

  void stop_now() {
    stopping = true;
    for (auto& l : listeners) {
      boost::system::error_code ec;
      l->acceptor.close(ec);
    }
    // Connections with a request in progress finish it; serve() closes them after the reply.
    for (const auto& c : connections) {
      if (c->phase == Connection::Phase::idle) close(*c);
    }
  }
};

}  // namespace detail

using detail::Connection;
using detail::Listener;
using detail::PolicyServerState;

namespace {

// Postfix accepts at most smtpd_recipient_limit (1000) recipients per message.
constexpr size_t kMaxRememberedRecipients = 1000;

// The evaluation state of the delivery `tx` belongs to: the connection's, while the instance
// stays the same; a fresh one for a new instance or a request without one. At DATA and
// END-OF-MESSAGE Postfix names the recipient only when there is exactly one, so the message's
// recipients are the ones accepted at RCPT.
std::shared_ptr<EvaluationState> transaction_state(Connection& c, Transaction& tx) {
  if (tx.instance.empty()) return std::make_shared<EvaluationState>();
  // A different client cannot be the same delivery, whatever the instance says (a test
  // tool or a buggy client reusing one value).
  if (!c.state || c.instance != tx.instance || c.state_client != tx.client_address) {
    c.instance = tx.instance;
    c.state_client = tx.client_address;
    c.state = std::make_shared<EvaluationState>();
    c.accepted_recipients.clear();
  }
  if (tx.stage > Stage::rcpt && tx.recipients.size() < c.accepted_recipients.size())
    tx.recipients = c.accepted_recipients;
  return c.state;
}

std::optional<asio::ip::tcp::endpoint> to_tcp(const generic_stream::endpoint& ep) {
  if (ep.protocol().family() != AF_INET && ep.protocol().family() != AF_INET6) return std::nullopt;
  asio::ip::tcp::endpoint tcp;
  if (ep.size() > tcp.capacity()) return std::nullopt;
  std::memcpy(tcp.data(), ep.data(), ep.size());
  tcp.resize(ep.size());
  return tcp;
}

std::string peer_name(const Connection& c) {
  boost::system::error_code ec;
  auto ep = c.socket.remote_endpoint(ec);
  if (ec) return "unknown peer";
  if (auto tcp = to_tcp(ep)) {
    if (tcp->address().is_v6()) {
      return "[" + tcp->address().to_string() + "]:" + std::to_string(tcp->port());
    }
    return tcp->address().to_string() + ":" + std::to_string(tcp->port());
  }
  // Unix clients are normally unnamed; the socket they came in on says more.
  return "client on " + c.listener->name;
}

// Logs, counts and closes. `reason_label` is the metric label, `why` the log text.
void close_with(PolicyServerState& s, Connection& c, std::string_view reason_label,
                const std::string& why, bool quiet = false) {
  if (c.closed) return;
  if (quiet) {
    spdlog::info("policy: closing connection from {}: {}", peer_name(c), why);
  } else {
    spdlog::warn("policy: closing connection from {}: {}", peer_name(c), why);
  }
  s.count_error(reason_label);
  PolicyServerState::close(c);
}

// Enforces the idle and request deadlines without touching a timer per request: the
// connection only records its phase and when it began; this coroutine wakes at the earliest
// moment any deadline could fall due. While idle or evaluating it sleeps at most
// min(request_timeout, idle_timeout), which no deadline of a phase starting later can
// undercut; while reading or writing it sleeps until that phase's exact deadline.
asio::awaitable<void> watchdog(std::shared_ptr<PolicyServerState> s,
                               std::shared_ptr<Connection> c) {
  const auto token = asio::as_tuple(asio::use_awaitable);
  const Duration cap = std::min(s->limits.request_timeout, s->limits.idle_timeout);
  while (!c->closed) {
    const auto now = SteadyClock::now();
    SteadyClock::time_point deadline = SteadyClock::time_point::max();
    switch (c->phase) {
      case Connection::Phase::idle:
        deadline = c->phase_start + s->limits.idle_timeout;
        break;
      case Connection::Phase::reading:
      case Connection::Phase::writing:
        deadline = c->phase_start + s->limits.request_timeout;
        break;
      case Connection::Phase::evaluating:
        break;  // bounded by the engine's stage deadline
    }
    if (now >= deadline) {
      switch (c->phase) {
        case Connection::Phase::idle:
          close_with(*s, *c, "idle_timeout", "idle for " + format_duration(s->limits.idle_timeout),
                     /*quiet=*/true);
          break;
        case Connection::Phase::reading:
          close_with(*s, *c, "request_timeout",
                     "request not complete within " + format_duration(s->limits.request_timeout));
          break;
        default:
          close_with(*s, *c, "write_timeout",
                     "reply not read within " + format_duration(s->limits.request_timeout));
          break;
      }
      co_return;
    }
    const auto wake = deadline - now < cap ? deadline : now + cap;
    c->timer.expires_at(wake);
    auto [ec] = co_await c->timer.async_wait(token);
    (void)ec;  // cancelled when the connection ends; the loop condition sees `closed`
  }
}

asio::awaitable<void> serve(std::shared_ptr<PolicyServerState> s, std::shared_ptr<Connection> c) {
  const auto token = asio::as_tuple(asio::use_awaitable);
  size_t begin = 0;  // unparsed bytes are buffer[begin, end)
  size_t end = 0;
  PolicyParser& parser = c->parser;

  while (!c->closed) {
    // Read one request.
    while (parser.status() == PolicyParser::Status::incomplete) {
      if (begin == end) {
        auto buf = asio::buffer(c->buffer);
        auto [ec, n] = co_await c->socket.async_read_some(buf, token);
        if (ec || c->closed) {
          if (!c->closed) {
            if (parser.started()) {
              close_with(*s, *c, "truncated_request",
                         ec == asio::error::eof
                             ? std::string("connection closed in the middle of a request")
                             : "read error in the middle of a request: " + ec.message());
            } else {
              if (ec != asio::error::eof && ec != asio::error::connection_reset) {
                spdlog::debug("policy: read error from {}: {}", peer_name(*c), ec.message());
              }
              PolicyServerState::close(*c);
            }
          }
          co_return;
        }
        begin = 0;
        end = n;
        if (c->phase == Connection::Phase::idle) {
          c->phase = Connection::Phase::reading;
          c->phase_start = SteadyClock::now();
        }
      }
      begin += parser.feed(std::string_view(c->buffer.data() + begin, end - begin));
    }
    if (parser.status() == PolicyParser::Status::error) {
      close_with(*s, *c, to_string(parser.error()), describe(parser.error(), parser.limits()));
      co_return;
    }

    // Answer it.
    const PolicyRequest& request = parser.request();
    if (auto type = request.get("request"); type && *type != "smtpd_access_policy") {
      close_with(*s, *c, "bad_request", "unsupported request type '" + printable(*type) + "'");
      co_return;
    }
    c->phase = Connection::Phase::evaluating;
    Transaction tx = from_policy_request(request);
    if (tx.id.empty()) tx.id = "policy-" + std::to_string(++s->next_id);
    c->reply.clear();
    std::shared_ptr<Engine> engine;
    try {
      if (s->engine) engine = s->engine();
      if (engine) {
        std::shared_ptr<EvaluationState> state = transaction_state(*c, tx);
        auto evaluation = engine->evaluate(tx, *state);
        Verdict verdict = co_await std::move(evaluation);
        if (tx.stage == Stage::rcpt && verdict.applied <= Action::tag && !tx.recipient.empty() &&
            c->accepted_recipients.size() < kMaxRememberedRecipients)
          c->accepted_recipients.push_back(tx.recipient);
        append_policy_reply(verdict, tx.stage, c->reply);
      } else {
        uint64_t suppressed = 0;
        if (s->engine_log.allow(suppressed)) {
          spdlog::error("policy: no engine available; answering DUNNO (fail open){}",
                        suppressed_note(suppressed));
        }
        c->reply.assign(kPolicyDunno);
      }
    } catch (const std::exception& e) {
      spdlog::error("policy: evaluating {} failed: {}; answering DUNNO (fail open)", tx.id,
                    e.what());
      c->reply.assign(kPolicyDunno);
    }
    engine.reset();  // a reload may free the old engine while this connection idles
    if (c->closed) co_return;

    c->phase = Connection::Phase::writing;
    c->phase_start = SteadyClock::now();
    auto out = asio::buffer(c->reply);
    auto [wec, written] = co_await asio::async_write(c->socket, out, token);
    (void)written;
    if (wec || c->closed) {
      if (!c->closed) {
        spdlog::debug("policy: write error to {}: {}", peer_name(*c), wec.message());
        PolicyServerState::close(*c);
      }
      co_return;
    }

    parser.next();
    if (s->stopping) {
      PolicyServerState::close(*c);
      co_return;
    }
    // Bytes already buffered (a pipelining client) start the next request right away.
    c->phase = begin < end ? Connection::Phase::reading : Connection::Phase::idle;
    c->phase_start = SteadyClock::now();
  }
}

// Runs serve() and always unregisters the connection, whatever happened.
asio::awaitable<void> run_connection(std::shared_ptr<PolicyServerState> s,
                                     std::shared_ptr<Connection> c) {
  try {
    auto session = serve(s, c);
    co_await std::move(session);
  } catch (const std::exception& e) {
    spdlog::error("policy: connection from {} failed: {}", peer_name(*c), e.what());
  }
  PolicyServerState::close(*c);
  s->connections.erase(c);
  s->open.fetch_sub(1);
  s->update_gauge();
}

void log_exception(std::exception_ptr e, const char* what) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    spdlog::error("policy: {} failed: {}", what, ex.what());
  } catch (...) {
    spdlog::error("policy: {} failed", what);
  }
}

asio::awaitable<void> accept_loop(std::shared_ptr<PolicyServerState> s,
                                  std::shared_ptr<Listener> l) {
  const auto token = asio::as_tuple(asio::use_awaitable);
  asio::steady_timer backoff(s->ex);
  while (!s->stopping) {
    auto [ec, socket] = co_await l->acceptor.async_accept(token);
    if (s->stopping || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      uint64_t suppressed = 0;
      if (s->accept_log.allow(suppressed)) {
        spdlog::error("policy: accept on {} failed: {}{}", l->name, ec.message(),
                      suppressed_note(suppressed));
      }
      // Out of descriptors or buffers: retrying at once would spin the loop.
      backoff.expires_after(std::chrono::milliseconds(50));
      auto [wait_ec] = co_await backoff.async_wait(token);
      (void)wait_ec;
      continue;
    }
    if (static_cast<int64_t>(s->open.load()) >= s->limits.max_connections) {
      s->count_error("max_connections");
      uint64_t suppressed = 0;
      if (s->overload_log.allow(suppressed)) {
        spdlog::warn(
            "policy: closing new connection on {}: {} connections open (max_connections){}",
            l->name, s->open.load(), suppressed_note(suppressed));
      }
      boost::system::error_code cec;
      socket.close(cec);
      continue;
    }
    if (!l->is_unix) {
      boost::system::error_code opt_ec;
      socket.set_option(asio::ip::tcp::no_delay(true), opt_ec);  // small replies, no Nagle wait
    }
    auto c = std::make_shared<Connection>(std::move(socket), l, s->parser_limits);
    s->connections.insert(c);
    s->open.fetch_add(1);
    s->update_gauge();
    auto session = run_connection(s, c);
    asio::co_spawn(s->ex, std::move(session),
                   [](std::exception_ptr e) { log_exception(e, "connection"); });
    auto dog = watchdog(s, c);
    asio::co_spawn(s->ex, std::move(dog),
                   [](std::exception_ptr e) { log_exception(e, "connection watchdog"); });
  }
}

// A unix socket path may hold a socket left by a previous run (stale: nobody accepts on it).
// Remove only that; never a regular file, and never a socket another process is serving.
void prepare_unix_path(const std::string& path, const std::string& spec) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;  // absent: nothing to do
  if (!S_ISSOCK(st.st_mode)) {
    throw std::runtime_error("cannot listen on " + spec + ": " + path +
                             " exists and is not a socket");
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), std::min(path.size(), sizeof(addr.sun_path) - 1));
    int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    int err = rc == 0 ? 0 : errno;
    ::close(fd);
    // Connected, or a full backlog (EAGAIN): a live server owns it.
    if (rc == 0 || err == EAGAIN || err == EINPROGRESS) {
      throw std::runtime_error("cannot listen on " + spec +
                               ": another process is accepting connections on " + path);
    }
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    throw std::runtime_error("cannot listen on " + spec + ": cannot remove stale socket " + path +
                             ": " + std::strerror(errno));
  }
}

}  // namespace

PolicyServer::PolicyServer(asio::any_io_executor ex, EngineSource engine, PolicyLimits limits,
                           Metrics& metrics)
    : state_(
          std::make_shared<PolicyServerState>(std::move(ex), std::move(engine), limits, metrics)) {
  metrics.describe(kOpenConnections, Metrics::Type::gauge,
                   "Connections currently open, by protocol server.");
  metrics.describe(kProtocolErrors, Metrics::Type::counter,
                   "Connections closed for malformed or over-limit input, timeouts or overload, "
                   "by server and reason.");
  metrics.set(kOpenConnections, server_labels(), 0);
}

PolicyServer::~PolicyServer() {
  state_->stop_now();
  for (const auto& c : state_->connections) PolicyServerState::close(*c);
}

void PolicyServer::listen(const ListenSpec& spec) {
  const std::string name = spec.to_string();
  auto l = std::make_shared<Listener>(state_->ex);
  l->name = name;
  l->is_unix = spec.is_unix;
  if (spec.is_unix) prepare_unix_path(spec.path, name);
  const auto endpoint = spec.endpoint();
  boost::system::error_code ec;
  auto fail = [&](const std::string& why) {
    throw std::runtime_error("cannot listen on " + name + ": " + why);
  };
  l->acceptor.open(endpoint.protocol(), ec);
  if (ec) fail(ec.message());
  if (!spec.is_unix) {
    l->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (ec) fail(ec.message());
  }
  l->acceptor.bind(endpoint, ec);
  if (ec) fail(ec.message());
  if (spec.is_unix && ::chmod(spec.path.c_str(), 0660) != 0) {
    std::string why = std::string("chmod 0660: ") + std::strerror(errno);
    ::unlink(spec.path.c_str());  // ours: bound a moment ago
    fail(why);
  }
  l->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) fail(ec.message());
  if (!spec.is_unix) {
    auto local = l->acceptor.local_endpoint(ec);
    if (auto tcp = ec ? std::nullopt : to_tcp(local)) {
      if (spec.port == 0) {  // name the port the kernel picked, for log lines
        ListenSpec bound = spec;
        bound.port = tcp->port();
        l->name = bound.to_string();
      }
      uint16_t none = 0;
      state_->tcp_port.compare_exchange_strong(none, tcp->port());
    }
  }
  state_->listeners.push_back(std::move(l));
}

uint16_t PolicyServer::port() const {
  return state_->tcp_port.load();
}

void PolicyServer::start() {
  if (state_->started || state_->stopping) return;
  state_->started = true;
  for (const auto& l : state_->listeners) {
    auto loop = accept_loop(state_, l);
    asio::co_spawn(state_->ex, std::move(loop),
                   [](std::exception_ptr e) { log_exception(e, "accept loop"); });
  }
}

void PolicyServer::stop() {
  auto s = state_;
  asio::dispatch(s->ex, [s] { s->stop_now(); });
}

size_t PolicyServer::open_connections() const {
  return state_->open.load();
}

}  // namespace spamward
