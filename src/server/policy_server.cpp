#include "server/policy_server.h"

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

#include "core/strings.h"
#include "server/policy_protocol.h"
#include "server/stream_server.h"

namespace spamward {

namespace asio = boost::asio;

namespace {

// Postfix requests are ~700 bytes; one read usually takes a whole request.
constexpr size_t kReadBufferSize = 4096;

}  // namespace

namespace detail {

struct Connection final : PhasedConnection {
  Connection(Socket s, std::shared_ptr<const StreamListener> l, const PolicyLimits& limits,
             PolicyParserLimits pl)
      : PhasedConnection(std::move(s), std::move(l), limits.idle_timeout, limits.request_timeout,
                         "request"),
        parser(pl) {}

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

struct PolicyServerState final : StreamServer {
  PolicyServerState(asio::any_io_executor e, EngineSource src, PolicyLimits l, Metrics& m)
      : StreamServer(std::move(e), "policy", m, l.max_connections,
                     std::min(l.request_timeout, l.idle_timeout)),
        engine(std::move(src)),
        limits(l),
        parser_limits{l.max_line, l.max_attributes, l.max_request_bytes} {}

  EngineSource engine;
  PolicyLimits limits;
  PolicyParserLimits parser_limits;
  uint64_t next_id = 0;

 protected:
  std::shared_ptr<StreamConnection> make_connection(
      StreamConnection::Socket socket, std::shared_ptr<const StreamListener> listener) override {
    return std::make_shared<Connection>(std::move(socket), std::move(listener), limits,
                                        parser_limits);
  }
  asio::awaitable<void> serve(std::shared_ptr<StreamConnection> c) override;
};

}  // namespace detail

using detail::Connection;
using detail::PolicyServerState;
using Phase = PhasedConnection::Phase;

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

asio::awaitable<void> serve_policy(std::shared_ptr<PolicyServerState> s,
                                   std::shared_ptr<Connection> c) {
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
              s->close_with(*c, "truncated_request",
                            ec == asio::error::eof
                                ? std::string("connection closed in the middle of a request")
                                : "read error in the middle of a request: " + ec.message());
            } else {
              if (ec != asio::error::eof && ec != asio::error::connection_reset) {
                spdlog::debug("policy: read error from {}: {}", c->peer_name(), ec.message());
              }
              c->close();
            }
          }
          co_return;
        }
        begin = 0;
        end = n;
        if (c->phase == Phase::idle) {
          c->enter(Phase::reading);
        }
      }
      begin += parser.feed(std::string_view(c->buffer.data() + begin, end - begin));
    }
    if (parser.status() == PolicyParser::Status::error) {
      s->close_with(*c, to_string(parser.error()), describe(parser.error(), parser.limits()));
      co_return;
    }

    // Answer it.
    const PolicyRequest& request = parser.request();
    if (auto type = request.get("request"); type && *type != "smtpd_access_policy") {
      s->close_with(*c, "bad_request", "unsupported request type '" + printable(*type) + "'");
      co_return;
    }
    c->enter(Phase::evaluating);
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

    c->enter(Phase::writing);
    auto out = asio::buffer(c->reply);
    auto [wec, written] = co_await asio::async_write(c->socket, out, token);
    (void)written;
    if (wec || c->closed) {
      if (!c->closed) {
        spdlog::debug("policy: write error to {}: {}", c->peer_name(), wec.message());
        c->close();
      }
      co_return;
    }

    parser.next();
    if (s->stopping()) {
      c->close();
      co_return;
    }
    // Bytes already buffered (a pipelining client) start the next request right away.
    c->enter(begin < end ? Phase::reading : Phase::idle);
  }
}

}  // namespace

asio::awaitable<void> PolicyServerState::serve(std::shared_ptr<StreamConnection> c) {
  return serve_policy(std::static_pointer_cast<PolicyServerState>(shared_from_this()),
                      std::static_pointer_cast<Connection>(std::move(c)));
}

PolicyServer::PolicyServer(asio::any_io_executor ex, EngineSource engine, PolicyLimits limits,
                           Metrics& metrics)
    : state_(
          std::make_shared<PolicyServerState>(std::move(ex), std::move(engine), limits, metrics)) {}

PolicyServer::~PolicyServer() {
  state_->shutdown_now();
}

void PolicyServer::listen(const ListenSpec& spec) {
  state_->listen(spec);
}

uint16_t PolicyServer::port() const {
  return state_->port();
}

void PolicyServer::start() {
  state_->start();
}

void PolicyServer::stop() {
  state_->stop();
}

size_t PolicyServer::open_connections() const {
  return state_->open_connections();
}

}  // namespace spamward
