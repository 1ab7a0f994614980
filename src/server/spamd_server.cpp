#include "server/spamd_server.h"

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "auth/authentication_results.h"
#include "core/config.h"
#include "core/strings.h"
#include "server/stream_server.h"

namespace spamward {

namespace asio = boost::asio;

namespace {

constexpr std::string_view kRequests = "spamward_spamd_requests_total";
constexpr size_t kReadBufferSize = 16384;
// After the answer: how long, and how much, the client may still send before the close.
constexpr auto kLingerTime = std::chrono::seconds(1);
constexpr size_t kLingerBytes = 1 << 20;
// The watchdog sleeps at most this long; set_phase() wakes it for an earlier deadline.
constexpr auto kWatchdogCap = std::chrono::seconds(60);

}  // namespace

namespace detail {

struct SpamdConnection final : StreamConnection {
  SpamdConnection(Socket s, std::shared_ptr<const StreamListener> l, const SpamdLimits& limits,
                  SpamdParserLimits pl)
      : StreamConnection(std::move(s), std::move(l)), limits(limits), parser(pl) {}

  // What the connection is doing decides which deadline applies.
  enum class Phase { waiting, reading, evaluating, writing, lingering };

  bool idle() const override { return phase == Phase::waiting; }
  TimePoint deadline() const override {
    switch (phase) {
      case Phase::waiting:
        return accepted + limits.first_byte_timeout;
      case Phase::reading:
        return accepted + limits.request_timeout;
      case Phase::writing:
        return phase_start + limits.request_timeout;
      case Phase::lingering:
        return phase_start + kLingerTime;
      case Phase::evaluating:
        break;  // bounded by the engine's stage deadline
    }
    return TimePoint::max();
  }
  void expire(StreamServer& server) override {
    switch (phase) {
      case Phase::waiting:
        server.close_with(*this, "first_byte_timeout",
                          "no request within " + format_duration(limits.first_byte_timeout),
                          /*quiet=*/true);
        break;
      case Phase::reading:
        server.close_with(*this, "request_timeout",
                          "request not complete within " + format_duration(limits.request_timeout));
        break;
      case Phase::writing:
        server.close_with(*this, "write_timeout",
                          "reply not read within " + format_duration(limits.request_timeout));
        break;
      default:
        close();  // lingering: the answer is out
        break;
    }
  }

  // Moves to a phase and wakes the watchdog, whose deadline may now be earlier.
  void set_phase(Phase p) {
    phase = p;
    phase_start = std::chrono::steady_clock::now();
    wake();
  }

  const SpamdLimits& limits;  // the server's, which outlives its connections
  TimePoint accepted = std::chrono::steady_clock::now();
  Phase phase = Phase::waiting;
  TimePoint phase_start = accepted;
  SpamdParser parser;
  std::string reply;
  std::array<char, kReadBufferSize> buffer;
};

struct SpamdServerState final : StreamServer {
  SpamdServerState(asio::any_io_executor e, EngineSource src, SpamdLimits l, Metrics& m,
                   LearnerSource learn)
      : StreamServer(std::move(e), "spamd", m, l.max_connections, kWatchdogCap),
        engine(std::move(src)),
        learner(std::move(learn)),
        limits(l) {
    parser_limits.max_line = l.max_line;
    parser_limits.max_headers = l.max_headers;
    parser_limits.max_message_bytes =
        static_cast<size_t>(std::max<int64_t>(l.max_message_bytes, 0));
    parser_limits.max_content_length =
        std::max<uint64_t>(l.max_content_length, parser_limits.max_message_bytes);
  }

  EngineSource engine;
  LearnerSource learner;
  SpamdLimits limits;
  SpamdParserLimits parser_limits;
  uint64_t next_id = 0;
  RateLimitedLog tell_log;

 protected:
  std::shared_ptr<StreamConnection> make_connection(
      StreamConnection::Socket socket, std::shared_ptr<const StreamListener> listener) override {
    return std::make_shared<SpamdConnection>(std::move(socket), std::move(listener), limits,
                                             parser_limits);
  }
  asio::awaitable<void> serve(std::shared_ptr<StreamConnection> c) override;
};

}  // namespace detail

using detail::SpamdConnection;
using detail::SpamdServerState;
using Phase = SpamdConnection::Phase;

namespace {

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
                   c->peer_name(), printable(request.user), suppressed_note(suppressed));
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
    spdlog::error("spamd: TELL from {} failed: {}", c->peer_name(), error);
    co_return format_spamd_error(kSpamdExSoftware, "learning failed: " + error);
  }
  spdlog::info("spamd: TELL from {} (user '{}'): {}{}{}", c->peer_name(), printable(request.user),
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
        spdlog::debug("spamd: write error to {}: {}", c->peer_name(), wec.message());
        c->close();
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
  c->close();
}

asio::awaitable<void> serve_spamd(std::shared_ptr<SpamdServerState> s,
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
        c->close();
        co_return;
      }
      parser.feed_eof();
      break;
    }
    if (ec) {
      if (parser.started()) {
        s->close_with(*c, "truncated_request",
                      "read error in the middle of a request: " + ec.message());
      } else {
        spdlog::debug("spamd: read error from {}: {}", c->peer_name(), ec.message());
        c->close();
      }
      co_return;
    }
    if (c->phase == Phase::waiting) c->set_phase(Phase::reading);
    // The parser stops consuming once the request is complete; bytes after a Content-length
    // body are ignored.
    parser.feed(std::string_view(c->buffer.data(), n));
  }

  if (parser.status() == SpamdParser::Status::error) {
    spdlog::warn("spamd: closing connection from {}: {}", c->peer_name(), parser.error_text());
    s->count_error(to_string(parser.error()));
    c->reply = format_spamd_error(parser);
    auto closing = answer_and_close(s, c);
    co_await std::move(closing);
    co_return;
  }

  const SpamdRequest& request = parser.request();
  s->metrics().inc(kRequests, {{"command", std::string(to_string(request.command))}});
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
      spdlog::debug("spamd: SKIP from {}", c->peer_name());
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
      SpamdAuthResults auth_results;  // [headers] authentication_results; trusted: nothing
      if ((request.command == SpamdCommand::process || request.command == SpamdCommand::headers) &&
          engine && engine->config().headers.authentication_results &&
          !(verdict && verdict->trusted)) {
        const Config& config = engine->config();
        auth_results.authserv_id =
            effective_authserv_id(config.headers.authserv_id, config.network.our_names);
        if (verdict) {
          auth_results.value = render_authentication_results(
              auth_results.authserv_id, authentication_results_from_symbols(verdict->symbols));
        }
      }
      c->reply =
          format_spamd_reply(request, verdict ? &*verdict : nullptr, threshold, auth_results);
      spdlog::debug(
          "spamd: {} {} from {} user='{}' {} bytes: {}", to_string(request.command), tx.id,
          c->peer_name(), printable(request.user), request.message_size,
          spamd_spam_header_value(spamd_outcome(verdict ? &*verdict : nullptr, threshold)));
      break;
    }
  }
  engine.reset();  // a reload may free the old engine
  auto closing = answer_and_close(s, c);
  co_await std::move(closing);
}

}  // namespace

asio::awaitable<void> SpamdServerState::serve(std::shared_ptr<StreamConnection> c) {
  return serve_spamd(std::static_pointer_cast<SpamdServerState>(shared_from_this()),
                     std::static_pointer_cast<SpamdConnection>(std::move(c)));
}

SpamdServer::SpamdServer(asio::any_io_executor ex, EngineSource engine, SpamdLimits limits,
                         Metrics& metrics, LearnerSource learner)
    : state_(std::make_shared<SpamdServerState>(std::move(ex), std::move(engine), limits, metrics,
                                                std::move(learner))) {
  metrics.describe(kRequests, Metrics::Type::counter,
                   "spamd protocol requests read in full, by command (CHECK, PROCESS, ...).");
}

SpamdServer::~SpamdServer() {
  state_->shutdown_now();
}

void SpamdServer::listen(const ListenSpec& spec) {
  state_->listen(spec);
}

uint16_t SpamdServer::port() const {
  return state_->port();
}

void SpamdServer::start() {
  state_->start();
}

void SpamdServer::stop() {
  state_->stop();
}

size_t SpamdServer::open_connections() const {
  return state_->open_connections();
}

}  // namespace spamward
