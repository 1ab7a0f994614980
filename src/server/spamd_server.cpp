#include "server/spamd_server.h"

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

#include "core/config.h"

namespace spamward {

namespace asio = boost::asio;
using generic_stream = asio::generic::stream_protocol;
using SteadyClock = std::chrono::steady_clock;

namespace {

constexpr std::string_view kOpenConnections = "spamward_open_connections";
constexpr std::string_view kProtocolErrors = "spamward_protocol_errors_total";
constexpr std::string_view kRequests = "spamward_spamd_requests_total";
constexpr size_t kReadBufferSize = 16384;
constexpr auto kLogInterval = std::chrono::seconds(10);
// After the answer: how long, and how much, the client may still send before the close.
constexpr auto kLingerTime = std::chrono::seconds(1);
constexpr size_t kLingerBytes = 1 << 20;

const Labels& server_labels() {
  static const Labels labels = {{"server", "spamd"}};
  return labels;
}

// At most one line per kLogInterval; the next one says how many were suppressed.
class RateLimitedLog {
 public:
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

struct SpamdListener {
  explicit SpamdListener(const asio::any_io_executor& ex) : acceptor(ex) {}
  asio::basic_socket_acceptor<generic_stream> acceptor;
  std::string name;  // ListenSpec text, for logs
  bool is_unix = false;
};

struct SpamdConnection {
  SpamdConnection(generic_stream::socket s, std::shared_ptr<const SpamdListener> l,
                  SpamdParserLimits pl)
      : socket(std::move(s)), timer(socket.get_executor()), listener(std::move(l)), parser(pl) {}

  // What the connection is doing decides which deadline applies (see watchdog()).
  enum class Phase { waiting, reading, evaluating, writing, lingering };

  generic_stream::socket socket;
  asio::steady_timer timer;
  std::shared_ptr<const SpamdListener> listener;
  SteadyClock::time_point accepted = SteadyClock::now();
  Phase phase = Phase::waiting;
  SteadyClock::time_point phase_start = accepted;
  bool closed = false;
  SpamdParser parser;
  std::string reply;
  std::array<char, kReadBufferSize> buffer;

  // Moves to a phase and wakes the watchdog, whose deadline may now be earlier.
  void set_phase(Phase p) {
    phase = p;
    phase_start = SteadyClock::now();
    timer.cancel();
  }
};

struct SpamdServerState {
  SpamdServerState(asio::any_io_executor e, EngineSource src, SpamdLimits l, Metrics& m,
                   LearnerSource learn)
      : ex(std::move(e)), engine(std::move(src)), learner(std::move(learn)), limits(l), metrics(m) {
    parser_limits.max_line = l.max_line;
    parser_limits.max_headers = l.max_headers;
    parser_limits.max_message_bytes =
        static_cast<size_t>(std::max<int64_t>(l.max_message_bytes, 0));
    parser_limits.max_content_length =
        std::max<uint64_t>(l.max_content_length, parser_limits.max_message_bytes);
  }

  asio::any_io_executor ex;
  EngineSource engine;
  LearnerSource learner;
  SpamdLimits limits;
  SpamdParserLimits parser_limits;
  Metrics& metrics;

  std::vector<std::shared_ptr<SpamdListener>> listeners;
  std::atomic<uint16_t> tcp_port{0};
  std::unordered_set<std::shared_ptr<SpamdConnection>> connections;  // executor only
  std::atomic<size_t> open{0};
  bool started = false;
  bool stopping = false;
  uint64_t next_id = 0;
  RateLimitedLog overload_log;
  RateLimitedLog accept_log;
  RateLimitedLog engine_log;
  RateLimitedLog tell_log;

  void count_error(std::string_view reason) {
    metrics.inc(kProtocolErrors, {{"server", "spamd"}, {"reason", std::string(reason)}});
  }
  void update_gauge() {
    metrics.set(kOpenConnections, server_labels(), static_cast<double>(open.load()));
  }

  static void close(SpamdConnection& c) {
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
    // A request in progress is finished (serve() closes after the answer).
    for (const auto& c : connections) {
      if (c->phase == SpamdConnection::Phase::waiting) close(*c);
    }
  }
};

}  // namespace detail

using detail::SpamdConnection;
using detail::SpamdListener;
using detail::SpamdServerState;
using Phase = SpamdConnection::Phase;

namespace {

std::optional<asio::ip::tcp::endpoint> to_tcp(const generic_stream::endpoint& ep) {
  if (ep.protocol().family() != AF_INET && ep.protocol().family() != AF_INET6) return std::nullopt;
  asio::ip::tcp::endpoint tcp;
  if (ep.size() > tcp.capacity()) return std::nullopt;
  std::memcpy(tcp.data(), ep.data(), ep.size());
  tcp.resize(ep.size());
  return tcp;
}

std::string peer_name(const SpamdConnection& c) {
  boost::system::error_code ec;
  auto ep = c.socket.remote_endpoint(ec);
  if (ec) return "unknown peer";
  if (auto tcp = to_tcp(ep)) {
    if (tcp->address().is_v6()) {
      return "[" + tcp->address().to_string() + "]:" + std::to_string(tcp->port());
    }
    return tcp->address().to_string() + ":" + std::to_string(tcp->port());
  }
  return "client on " + c.listener->name;
}

// Logs, counts and closes (no answer: for timeouts, where the client is not listening).
void close_with(SpamdServerState& s, SpamdConnection& c, std::string_view reason_label,
                const std::string& why, bool quiet = false) {
  if (c.closed) return;
  if (quiet) {
    spdlog::info("spamd: closing connection from {}: {}", peer_name(c), why);
  } else {
    spdlog::warn("spamd: closing connection from {}: {}", peer_name(c), why);
  }
  s.count_error(reason_label);
  SpamdServerState::close(c);
}

// Enforces the deadline of the connection's current phase; set_phase() wakes it early.
asio::awaitable<void> watchdog(std::shared_ptr<SpamdServerState> s,
                               std::shared_ptr<SpamdConnection> c) {
  const auto token = asio::as_tuple(asio::use_awaitable);
  while (!c->closed) {
    SteadyClock::time_point deadline = SteadyClock::time_point::max();
    switch (c->phase) {
      case Phase::waiting:
        deadline = c->accepted + s->limits.first_byte_timeout;
        break;
      case Phase::reading:
        deadline = c->accepted + s->limits.request_timeout;
        break;
      case Phase::writing:
        deadline = c->phase_start + s->limits.request_timeout;
        break;
      case Phase::lingering:
        deadline = c->phase_start + kLingerTime;
        break;
      case Phase::evaluating:
        break;  // bounded by the engine's stage deadline
    }
    if (SteadyClock::now() >= deadline) {
      switch (c->phase) {
        case Phase::waiting:
          close_with(*s, *c, "first_byte_timeout",
                     "no request within " + format_duration(s->limits.first_byte_timeout),
                     /*quiet=*/true);
          break;
        case Phase::reading:
          close_with(*s, *c, "request_timeout",
                     "request not complete within " + format_duration(s->limits.request_timeout));
          break;
        case Phase::writing:
          close_with(*s, *c, "write_timeout",
                     "reply not read within " + format_duration(s->limits.request_timeout));
          break;
        default:
          SpamdServerState::close(*c);  // lingering: the answer is out
          break;
      }
      co_return;
    }
    c->timer.expires_at(deadline);
    auto [ec] = co_await c->timer.async_wait(token);
    (void)ec;  // cancelled by set_phase() or the close; the loop re-reads the phase
  }
}

// Asks the engine; nullopt when it is missing or threw (fail open, logged).
asio::awaitable<std::optional<Verdict>> evaluate(SpamdServerState& s,
                                                 std::shared_ptr<Engine> engine,
                                                 const Transaction& tx) {
  try {
    if (!engine) {
      uint64_t suppressed = 0;
      if (s.engine_log.allow(suppressed)) {
        spdlog::error("spamd: no engine available; answering 'not spam' (fail open){}",
                      suppressed_note(suppressed));
      }
      co_return std::nullopt;
    }
    auto evaluation = engine->evaluate(tx);  // named first: GCC PR 100611
    Verdict verdict = co_await std::move(evaluation);
    co_return verdict;
  } catch (const std::exception& e) {
    spdlog::error("spamd: evaluating {} failed: {}; answering 'not spam' (fail open)", tx.id,
                  e.what());
  }
  co_return std::nullopt;
}

std::shared_ptr<const Message> parse_request_message(const SpamdServerState& s,
                                                     const SpamdRequest& request) {
  MessageLimits limits;
  limits.max_bytes = s.parser_limits.max_message_bytes;
  return std::make_shared<const Message>(parse_message(request.message, limits));
}

// The answer to a TELL (DESIGN §3.5: refused unless [spamd] allow_tell).
asio::awaitable<std::string> answer_tell(std::shared_ptr<SpamdServerState> s,
                                         std::shared_ptr<SpamdConnection> c,
                                         std::shared_ptr<Engine> engine) {
  const SpamdRequest& request = c->parser.request();
  if (!engine || !engine->config().spamd.allow_tell) {
    uint64_t suppressed = 0;
    if (s->tell_log.allow(suppressed)) {
      spdlog::warn("spamd: TELL from {} (user '{}') refused: [spamd] allow_tell is off{}",
                   peer_name(*c), printable(request.user), suppressed_note(suppressed));
    }
    co_return format_spamd_error(kSpamdExUnavailable,
                                 "TELL commands are not enabled ([spamd] allow_tell = false)");
  }
  if ((request.set_local && request.remove_local) ||
      (request.set_remote && request.remove_remote)) {
    co_return format_spamd_error(kSpamdExProtocol,
                                 "Unable to set and remove in the same operation.");
  }
  if (request.set_local && !request.message_class_spam) {
    co_return format_spamd_error(kSpamdExProtocol, "Set: local needs a Message-class header");
  }
  std::shared_ptr<SpamdLearner> learner = s->learner ? s->learner() : nullptr;
  if (!learner) {
    co_return format_spamd_error(kSpamdExUnavailable,
                                 "learning is not available in this build (no Bayes learner)");
  }
  auto message = parse_request_message(*s, request);
  bool did_set = false, did_remove = false;
  std::string error;
  try {
    if (request.set_local) {
      auto learning = learner->learn(message, *request.message_class_spam);  // GCC PR 100611
      did_set = co_await std::move(learning);
    }
    if (request.remove_local) {
      auto forgetting = learner->forget(message);
      did_remove = co_await std::move(forgetting);
    }
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (!error.empty()) {
    spdlog::error("spamd: TELL from {} failed: {}", peer_name(*c), error);
    co_return format_spamd_error(kSpamdExSoftware, "learning failed: " + error);
  }
  spdlog::info("spamd: TELL from {} (user '{}'): {}{}{}", peer_name(*c), printable(request.user),
               did_set ? (*request.message_class_spam ? "learned as spam" : "learned as ham")
                       : (request.set_local ? "already learned" : ""),
               request.set_local && request.remove_local ? ", " : "",
               did_remove ? "forgotten" : (request.remove_local ? "not learned before" : ""));
  co_return format_spamd_tell_reply(did_set, did_remove);
}

// Writes c->reply (if any), then closes gracefully: our side first, then the client's bytes
// are read and dropped until its close (at most kLingerTime, kLingerBytes).
asio::awaitable<void> answer_and_close(std::shared_ptr<SpamdServerState> s,
                                       std::shared_ptr<SpamdConnection> c) {
  const auto token = asio::as_tuple(asio::use_awaitable);
  if (c->closed) co_return;
  if (!c->reply.empty()) {
    c->set_phase(Phase::writing);
    auto out = asio::buffer(c->reply);
    auto [wec, written] = co_await asio::async_write(c->socket, out, token);
    (void)written;
    if (wec || c->closed) {
      if (!c->closed) {
        spdlog::debug("spamd: write error to {}: {}", peer_name(*c), wec.message());
        SpamdServerState::close(*c);
      }
      co_return;
    }
  }
  c->set_phase(Phase::lingering);
  boost::system::error_code ec;
  c->socket.shutdown(asio::socket_base::shutdown_send, ec);
  size_t drained = 0;
  while (!c->closed && drained < kLingerBytes) {
    auto buf = asio::buffer(c->buffer);
    auto [rec, n] = co_await c->socket.async_read_some(buf, token);
    if (rec) break;
    drained += n;
  }
  SpamdServerState::close(*c);
}

asio::awaitable<void> serve(std::shared_ptr<SpamdServerState> s,
                            std::shared_ptr<SpamdConnection> c) {
  const auto token = asio::as_tuple(asio::use_awaitable);
  SpamdParser& parser = c->parser;

  // Read the request.
  while (parser.status() == SpamdParser::Status::incomplete) {
    auto buf = asio::buffer(c->buffer);
    auto [ec, n] = co_await c->socket.async_read_some(buf, token);
    if (c->closed) co_return;
    if (ec == asio::error::eof) {
      if (!parser.started()) {  // a port probe: nothing to answer
        SpamdServerState::close(*c);
        co_return;
      }
      parser.feed_eof();
      break;
    }
    if (ec) {
      if (parser.started()) {
        close_with(*s, *c, "truncated_request",
                   "read error in the middle of a request: " + ec.message());
      } else {
        spdlog::debug("spamd: read error from {}: {}", peer_name(*c), ec.message());
        SpamdServerState::close(*c);
      }
      co_return;
    }
    if (c->phase == Phase::waiting) c->set_phase(Phase::reading);
    // The parser stops consuming once the request is complete; bytes after a Content-length
    // body are ignored.
    parser.feed(std::string_view(c->buffer.data(), n));
  }

  if (parser.status() == SpamdParser::Status::error) {
    spdlog::warn("spamd: closing connection from {}: {}", peer_name(*c), parser.error_text());
    s->count_error(to_string(parser.error()));
    c->reply = format_spamd_error(parser);
    auto closing = answer_and_close(s, c);
    co_await std::move(closing);
    co_return;
  }

  const SpamdRequest& request = parser.request();
  s->metrics.inc(kRequests, {{"command", std::string(to_string(request.command))}});
  c->set_phase(Phase::evaluating);
  std::shared_ptr<Engine> engine;
  try {
    if (s->engine) engine = s->engine();
  } catch (const std::exception& e) {
    spdlog::error("spamd: cannot get the engine: {}", e.what());
  }
  const double threshold = engine ? engine->config().actions.tag : ActionsConfig{}.tag;

  switch (request.command) {
    case SpamdCommand::skip:
      spdlog::debug("spamd: SKIP from {}", peer_name(*c));
      c->reply.clear();
      break;
    case SpamdCommand::ping:
      c->reply.assign(kSpamdPong);
      break;
    case SpamdCommand::tell: {
      auto telling = answer_tell(s, c, engine);  // named first: GCC PR 100611
      c->reply = co_await std::move(telling);
      break;
    }
    default: {
      Transaction tx;
      tx.id = "spamd-" + std::to_string(++s->next_id);
      tx.stage = Stage::eom;
      tx.size = static_cast<int64_t>(request.message_size);
      tx.message = parse_request_message(*s, request);
      if (request.truncated()) {
        spdlog::info(
            "spamd: message {} is larger than max_message_bytes ({}): scoring its first {} "
            "bytes",
            tx.id, s->parser_limits.max_message_bytes, request.message.size());
      }
      auto evaluation = evaluate(*s, engine, tx);  // named first: GCC PR 100611
      std::optional<Verdict> verdict = co_await std::move(evaluation);
      c->reply = format_spamd_reply(request, verdict ? &*verdict : nullptr, threshold);
      spdlog::debug(
          "spamd: {} {} from {} user='{}' {} bytes: {}", to_string(request.command), tx.id,
          peer_name(*c), printable(request.user), request.message_size,
          spamd_spam_header_value(spamd_outcome(verdict ? &*verdict : nullptr, threshold)));
      break;
    }
  }
  engine.reset();  // a reload may free the old engine
  auto closing = answer_and_close(s, c);
  co_await std::move(closing);
}

// Runs serve() and always unregisters the connection, whatever happened.
asio::awaitable<void> run_connection(std::shared_ptr<SpamdServerState> s,
                                     std::shared_ptr<SpamdConnection> c) {
  try {
    auto session = serve(s, c);
    co_await std::move(session);
  } catch (const std::exception& e) {
    spdlog::error("spamd: connection from {} failed: {}", peer_name(*c), e.what());
  }
  SpamdServerState::close(*c);
  s->connections.erase(c);
  s->open.fetch_sub(1);
  s->update_gauge();
}

void log_exception(std::exception_ptr e, const char* what) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    spdlog::error("spamd: {} failed: {}", what, ex.what());
  } catch (...) {
    spdlog::error("spamd: {} failed", what);
  }
}

asio::awaitable<void> accept_loop(std::shared_ptr<SpamdServerState> s,
                                  std::shared_ptr<SpamdListener> l) {
  const auto token = asio::as_tuple(asio::use_awaitable);
  asio::steady_timer backoff(s->ex);
  while (!s->stopping) {
    auto [ec, socket] = co_await l->acceptor.async_accept(token);
    if (s->stopping || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      uint64_t suppressed = 0;
      if (s->accept_log.allow(suppressed)) {
        spdlog::error("spamd: accept on {} failed: {}{}", l->name, ec.message(),
                      suppressed_note(suppressed));
      }
      backoff.expires_after(std::chrono::milliseconds(50));
      auto [wait_ec] = co_await backoff.async_wait(token);
      (void)wait_ec;
      continue;
    }
    if (static_cast<int64_t>(s->open.load()) >= s->limits.max_connections) {
      s->count_error("max_connections");
      uint64_t suppressed = 0;
      if (s->overload_log.allow(suppressed)) {
        spdlog::warn("spamd: closing new connection on {}: {} connections open (max_connections){}",
                     l->name, s->open.load(), suppressed_note(suppressed));
      }
      boost::system::error_code cec;
      socket.close(cec);
      continue;
    }
    if (!l->is_unix) {
      boost::system::error_code opt_ec;
      socket.set_option(asio::ip::tcp::no_delay(true), opt_ec);
    }
    auto c = std::make_shared<SpamdConnection>(std::move(socket), l, s->parser_limits);
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
  if (::lstat(path.c_str(), &st) != 0) return;
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

SpamdServer::SpamdServer(asio::any_io_executor ex, EngineSource engine, SpamdLimits limits,
                         Metrics& metrics, LearnerSource learner)
    : state_(std::make_shared<SpamdServerState>(std::move(ex), std::move(engine), limits, metrics,
                                                std::move(learner))) {
  metrics.describe(kOpenConnections, Metrics::Type::gauge,
                   "Connections currently open, by protocol server.");
  metrics.describe(kProtocolErrors, Metrics::Type::counter,
                   "Connections closed for malformed or over-limit input, timeouts or overload, "
                   "by server and reason.");
  metrics.describe(kRequests, Metrics::Type::counter,
                   "spamd protocol requests read in full, by command (CHECK, PROCESS, ...).");
  metrics.set(kOpenConnections, server_labels(), 0);
}

SpamdServer::~SpamdServer() {
  state_->stop_now();
  for (const auto& c : state_->connections) SpamdServerState::close(*c);
}

void SpamdServer::listen(const ListenSpec& spec) {
  const std::string name = spec.to_string();
  auto l = std::make_shared<SpamdListener>(state_->ex);
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
    ::unlink(spec.path.c_str());
    fail(why);
  }
  l->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) fail(ec.message());
  if (!spec.is_unix) {
    auto local = l->acceptor.local_endpoint(ec);
    if (auto tcp = ec ? std::nullopt : to_tcp(local)) {
      if (spec.port == 0) {
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

uint16_t SpamdServer::port() const {
  return state_->tcp_port.load();
}

void SpamdServer::start() {
  if (state_->started || state_->stopping) return;
  state_->started = true;
  for (const auto& l : state_->listeners) {
    auto loop = accept_loop(state_, l);
    asio::co_spawn(state_->ex, std::move(loop),
                   [](std::exception_ptr e) { log_exception(e, "accept loop"); });
  }
}

void SpamdServer::stop() {
  auto s = state_;
  asio::dispatch(s->ex, [s] { s->stop_now(); });
}

size_t SpamdServer::open_connections() const {
  return state_->open.load();
}

}  // namespace spamward
