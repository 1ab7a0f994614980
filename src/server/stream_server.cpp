#include "server/stream_server.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <cstring>
#include <exception>
#include <optional>
#include <stdexcept>

#include <spdlog/spdlog.h>

namespace spamward {

namespace asio = boost::asio;
using generic_stream = asio::generic::stream_protocol;
using SteadyClock = std::chrono::steady_clock;

namespace {

constexpr std::string_view kOpenConnections = "spamward_open_connections";
constexpr std::string_view kProtocolErrors = "spamward_protocol_errors_total";

std::optional<asio::ip::tcp::endpoint> to_tcp(const generic_stream::endpoint& ep) {
  if (ep.protocol().family() != AF_INET && ep.protocol().family() != AF_INET6) return std::nullopt;
  asio::ip::tcp::endpoint tcp;
  if (ep.size() > tcp.capacity()) return std::nullopt;
  std::memcpy(tcp.data(), ep.data(), ep.size());
  tcp.resize(ep.size());
  return tcp;
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

bool RateLimitedLog::allow(uint64_t& suppressed) {
  auto now = SteadyClock::now();
  if (logged_ && now - last_ < interval_) {
    ++suppressed_;
    return false;
  }
  logged_ = true;
  last_ = now;
  suppressed = suppressed_;
  suppressed_ = 0;
  return true;
}

std::string suppressed_note(uint64_t n) {
  return n ? " (" + std::to_string(n) + " similar lines suppressed)" : std::string();
}

void open_stream_listener(StreamListener& l, const ListenSpec& spec) {
  const std::string name = spec.to_string();
  l.name = name;
  l.is_unix = spec.is_unix;
  auto fail = [&](const std::string& why) {
    throw std::runtime_error("cannot listen on " + name + ": " + why);
  };
  if (spec.is_unix) prepare_unix_path(spec.path, name);
  generic_stream::endpoint endpoint;
  try {
    endpoint = spec.endpoint();
  } catch (const std::exception& e) {
    fail(e.what());
  }
  boost::system::error_code ec;
  l.acceptor.open(endpoint.protocol(), ec);
  if (ec) fail(ec.message());
  if (!spec.is_unix) {
    l.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (ec) fail(ec.message());
  }
  l.acceptor.bind(endpoint, ec);
  if (ec) fail(ec.message());
  if (spec.is_unix && ::chmod(spec.path.c_str(), 0660) != 0) {
    std::string why = std::string("chmod 0660: ") + std::strerror(errno);
    ::unlink(spec.path.c_str());  // ours: bound a moment ago
    fail(why);
  }
  l.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) fail(ec.message());
  if (!spec.is_unix && spec.port == 0) {  // name the port the kernel picked, for log lines
    ListenSpec bound = spec;
    bound.port = bound_port(l);
    l.name = bound.to_string();
  }
}

uint16_t bound_port(const StreamListener& l) {
  if (l.is_unix) return 0;
  boost::system::error_code ec;
  auto local = l.acceptor.local_endpoint(ec);
  if (ec) return 0;
  auto tcp = to_tcp(local);
  return tcp ? tcp->port() : 0;
}

StreamConnection::StreamConnection(Socket s, std::shared_ptr<const StreamListener> l)
    : socket(std::move(s)), timer(socket.get_executor()), listener(std::move(l)) {}

void StreamConnection::close() {
  if (closed) return;
  closed = true;
  boost::system::error_code ec;
  socket.shutdown(asio::socket_base::shutdown_both, ec);
  socket.close(ec);
  timer.cancel();
}

std::string StreamConnection::peer_name() const {
  boost::system::error_code ec;
  auto ep = socket.remote_endpoint(ec);
  if (ec) return "unknown peer";
  if (auto tcp = to_tcp(ep)) {
    if (tcp->address().is_v6()) {
      return "[" + tcp->address().to_string() + "]:" + std::to_string(tcp->port());
    }
    return tcp->address().to_string() + ":" + std::to_string(tcp->port());
  }
  // Unix clients are normally unnamed; the socket they came in on says more.
  return "client on " + listener->name;
}

PhasedConnection::PhasedConnection(Socket s, std::shared_ptr<const StreamListener> l,
                                   Duration idle_timeout, Duration io_timeout,
                                   std::string_view unit)
    : StreamConnection(std::move(s), std::move(l)),
      idle_timeout_(idle_timeout),
      io_timeout_(io_timeout),
      unit_(unit) {}

StreamConnection::TimePoint PhasedConnection::deadline() const {
  switch (phase) {
    case Phase::idle:
      return phase_start + idle_timeout_;
    case Phase::reading:
    case Phase::writing:
      return phase_start + io_timeout_;
    case Phase::evaluating:
      break;  // bounded by the engine's stage deadline
  }
  return TimePoint::max();
}

void PhasedConnection::expire(StreamServer& server) {
  switch (phase) {
    case Phase::idle:
      server.close_with(*this, "idle_timeout", "idle for " + format_duration(idle_timeout_),
                        /*quiet=*/true);
      break;
    case Phase::reading:
      server.close_with(
          *this, std::string(unit_) + "_timeout",
          std::string(unit_) + " not complete within " + format_duration(io_timeout_));
      break;
    default:
      server.close_with(*this, "write_timeout",
                        "reply not read within " + format_duration(io_timeout_));
      break;
  }
}

StreamServer::StreamServer(asio::any_io_executor ex, std::string name, Metrics& metrics,
                           int64_t max_connections, Duration watchdog_cap)
    : ex_(std::move(ex)),
      name_(std::move(name)),
      metrics_(metrics),
      max_connections_(max_connections),
      watchdog_cap_(watchdog_cap) {
  metrics_.describe(kOpenConnections, Metrics::Type::gauge,
                    "Connections currently open, by protocol server.");
  metrics_.describe(kProtocolErrors, Metrics::Type::counter,
                    "Connections closed for malformed or over-limit input, timeouts or overload, "
                    "by server and reason.");
  update_gauge();
}

void StreamServer::listen(const ListenSpec& spec) {
  auto l = std::make_shared<StreamListener>(ex_);
  open_stream_listener(*l, spec);
  if (uint16_t port = bound_port(*l)) {
    uint16_t none = 0;
    tcp_port_.compare_exchange_strong(none, port);
  }
  listeners_.push_back(std::move(l));
}

uint16_t StreamServer::port() const {
  return tcp_port_.load();
}

void StreamServer::start() {
  if (started_ || stopping_) return;
  started_ = true;
  for (const auto& l : listeners_) {
    auto loop = accept_loop(shared_from_this(), l);
    asio::co_spawn(ex_, std::move(loop), [self = shared_from_this()](std::exception_ptr e) {
      self->log_exception(e, "accept loop");
    });
  }
}

void StreamServer::stop() {
  auto s = shared_from_this();
  asio::dispatch(ex_, [s] { s->stop_now(); });
}

void StreamServer::stop_now() {
  stopping_ = true;
  for (auto& l : listeners_) {
    boost::system::error_code ec;
    l->acceptor.close(ec);
  }
  // Connections with a request in progress finish it; serve() closes them after the reply.
  for (const auto& c : connections_) {
    if (c->idle()) c->close();
  }
}

void StreamServer::shutdown_now() {
  stop_now();
  for (const auto& c : connections_) c->close();
}

void StreamServer::count_error(std::string_view reason) {
  metrics_.inc(kProtocolErrors, {{"server", name_}, {"reason", std::string(reason)}});
}

void StreamServer::update_gauge() {
  metrics_.set(kOpenConnections, {{"server", name_}}, static_cast<double>(open_.load()));
}

void StreamServer::close_with(StreamConnection& c, std::string_view reason, const std::string& why,
                              bool quiet) {
  if (c.closed) return;
  if (quiet) {
    spdlog::info("{}: closing connection from {}: {}", name_, c.peer_name(), why);
  } else {
    spdlog::warn("{}: closing connection from {}: {}", name_, c.peer_name(), why);
  }
  count_error(reason);
  c.close();
}

void StreamServer::log_exception(std::exception_ptr e, const char* what) const {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    spdlog::error("{}: {} failed: {}", name_, what, ex.what());
  } catch (...) {
    spdlog::error("{}: {} failed", name_, what);
  }
}

asio::awaitable<void> StreamServer::watchdog(std::shared_ptr<StreamServer> s,
                                             std::shared_ptr<StreamConnection> c) {
  const auto token = asio::as_tuple(asio::use_awaitable);
  while (!c->closed) {
    const auto now = SteadyClock::now();
    const auto deadline = c->deadline();
    if (now >= deadline) {
      c->expire(*s);
      c->close();  // in case expire() only logged
      co_return;
    }
    // Sleep until the deadline, but at most the cap: a phase that starts later cannot have an
    // earlier deadline than now + cap unless the connection wakes us.
    const auto wake = deadline - now < s->watchdog_cap_ ? deadline : now + s->watchdog_cap_;
    c->timer.expires_at(wake);
    auto [ec] = co_await c->timer.async_wait(token);
    (void)ec;  // cancelled by wake() or the close; the loop re-reads the phase
  }
}

asio::awaitable<void> StreamServer::run_connection(std::shared_ptr<StreamServer> s,
                                                   std::shared_ptr<StreamConnection> c) {
  try {
    auto session = s->serve(c);  // named first: GCC PR 100611
    co_await std::move(session);
  } catch (const std::exception& e) {
    spdlog::error("{}: connection from {} failed: {}", s->name_, c->peer_name(), e.what());
  }
  c->close();
  s->connections_.erase(c);
  s->open_.fetch_sub(1);
  s->update_gauge();
}

asio::awaitable<void> StreamServer::accept_loop(std::shared_ptr<StreamServer> s,
                                                std::shared_ptr<StreamListener> l) {
  const auto token = asio::as_tuple(asio::use_awaitable);
  asio::steady_timer backoff(s->ex_);
  while (!s->stopping_) {
    auto [ec, socket] = co_await l->acceptor.async_accept(token);
    if (s->stopping_ || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      uint64_t suppressed = 0;
      if (s->accept_log_.allow(suppressed)) {
        spdlog::error("{}: accept on {} failed: {}{}", s->name_, l->name, ec.message(),
                      suppressed_note(suppressed));
      }
      // Out of descriptors or buffers: retrying at once would spin the loop.
      backoff.expires_after(std::chrono::milliseconds(50));
      auto [wait_ec] = co_await backoff.async_wait(token);
      (void)wait_ec;
      continue;
    }
    if (static_cast<int64_t>(s->open_.load()) >= s->max_connections_) {
      s->count_error("max_connections");
      uint64_t suppressed = 0;
      if (s->overload_log_.allow(suppressed)) {
        spdlog::warn("{}: closing new connection on {}: {} connections open (max_connections){}",
                     s->name_, l->name, s->open_.load(), suppressed_note(suppressed));
      }
      boost::system::error_code cec;
      socket.close(cec);
      continue;
    }
    if (!l->is_unix) {
      boost::system::error_code opt_ec;
      socket.set_option(asio::ip::tcp::no_delay(true), opt_ec);  // small replies, no Nagle wait
    }
    auto c = s->make_connection(std::move(socket), l);
    s->connections_.insert(c);
    s->open_.fetch_add(1);
    s->update_gauge();
    auto session = run_connection(s, c);
    asio::co_spawn(s->ex_, std::move(session),
                   [s](std::exception_ptr e) { s->log_exception(e, "connection"); });
    auto dog = watchdog(s, c);
    asio::co_spawn(s->ex_, std::move(dog),
                   [s](std::exception_ptr e) { s->log_exception(e, "connection watchdog"); });
  }
}

}  // namespace spamward
