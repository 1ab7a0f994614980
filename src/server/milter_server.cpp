#include "server/milter_server.h"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "auth/authentication_results.h"
#include "auth/batv.h"
#include "core/strings.h"
#include "mail/message.h"
#include "server/stream_server.h"

namespace spamward {

namespace asio = boost::asio;

namespace {

constexpr std::string_view kTruncated = "spamward_milter_truncated_total";
// Per connection (max_connections of them); a 65,535-byte Postfix body chunk takes 4 reads.
constexpr size_t kReadBufferSize = 16384;
// Postfix accepts at most smtpd_recipient_limit (1000) recipients per message.
constexpr size_t kMaxRecipients = 1000;

std::string command_name(char c) {
  switch (c) {
    case milter::kAbort:
      return "ABORT";
    case milter::kBody:
      return "BODY";
    case milter::kConnect:
      return "CONNECT";
    case milter::kMacro:
      return "MACRO";
    case milter::kBodyEob:
      return "EOM";
    case milter::kHelo:
      return "HELO";
    case milter::kQuitNc:
      return "QUIT_NC";
    case milter::kHeader:
      return "HEADER";
    case milter::kMail:
      return "MAIL";
    case milter::kEoh:
      return "EOH";
    case milter::kOptneg:
      return "OPTNEG";
    case milter::kQuit:
      return "QUIT";
    case milter::kRcpt:
      return "RCPT";
    case milter::kData:
      return "DATA";
    case milter::kUnknown:
      return "UNKNOWN";
    default:
      return fmt::format("0x{:02x}", static_cast<unsigned char>(c));
  }
}

}  // namespace

namespace detail {

// One message (MAIL .. end of message or abort).
struct MilterMessage {
  Transaction tx;
  std::shared_ptr<EvaluationState> state;
  std::vector<std::string> accepted;  // recipients not refused at RCPT
  std::unique_ptr<MessageParser> parser;
  SpamHeaderTracker spam_headers;
  size_t stored = 0;       // bytes fed to the parser
  int64_t seen = 0;        // bytes of headers and body received
  size_t headers = 0;      // header fields received
  bool truncated = false;  // past max_message_bytes
  bool header_warned = false;
  // The incoming Authentication-Results fields ([headers] authentication_results).
  AuthResultsTracker auth_results;
};

struct MilterConnection final : PhasedConnection {
  MilterConnection(Socket s, std::shared_ptr<const StreamListener> l, const MilterLimits& limits)
      : PhasedConnection(std::move(s), std::move(l), limits.idle_timeout, limits.frame_timeout,
                         "frame"),
        reader(limits.max_frame),
        buffer(kReadBufferSize) {}

  MilterFrameReader reader;
  std::vector<char> buffer;
  std::string out;

  bool negotiated = false;
  MilterNegotiated negotiation;
  MilterMacros macros;
  // The SMTP session: client facts and HELO, and the check results of CONNECT and HELO that
  // every message of the session starts from.
  Transaction session;
  std::shared_ptr<EvaluationState> connect_state;  // after CONNECT
  std::shared_ptr<EvaluationState> helo_state;     // after HELO (a copy of connect_state)
  std::optional<MilterMessage> message;
  uint64_t messages = 0;
};

struct MilterServerState final : StreamServer {
  MilterServerState(asio::any_io_executor e, EngineSource src, MilterLimits l, Metrics& m)
      : StreamServer(std::move(e), "milter", m, l.max_connections,
                     std::min(l.frame_timeout, l.idle_timeout)),
        engine(std::move(src)),
        limits(l) {}

  EngineSource engine;
  MilterLimits limits;
  uint64_t next_id = 0;

 protected:
  std::shared_ptr<StreamConnection> make_connection(
      StreamConnection::Socket socket, std::shared_ptr<const StreamListener> listener) override {
    return std::make_shared<MilterConnection>(std::move(socket), std::move(listener), limits);
  }
  asio::awaitable<void> serve(std::shared_ptr<StreamConnection> c) override;
};

}  // namespace detail

using detail::MilterConnection;
using detail::MilterMessage;
using detail::MilterServerState;
using Phase = PhasedConnection::Phase;

namespace {

// ---------------------------------------------------------------------------------------------
// Events

// Asks the engine; nullopt when it is missing or threw (fail open, logged).
asio::awaitable<std::optional<Verdict>> evaluate(MilterServerState& s, const Transaction& tx,
                                                 std::shared_ptr<EvaluationState> state) {
  std::shared_ptr<Engine> engine;
  try {
    if (s.engine) engine = s.engine();
    if (!engine) {
      uint64_t suppressed = 0;
      if (s.engine_log.allow(suppressed)) {
        spdlog::error("milter: no engine available; answering CONTINUE (fail open){}",
                      suppressed_note(suppressed));
      }
      co_return std::nullopt;
    }
    auto evaluation = engine->evaluate(tx, *state);  // named first: GCC PR 100611
    Verdict verdict = co_await std::move(evaluation);
    co_return verdict;
  } catch (const std::exception& e) {
    spdlog::error("milter: evaluating {} at {} failed: {}; answering CONTINUE (fail open)", tx.id,
                  to_string(tx.stage), e.what());
  }
  co_return std::nullopt;
}

// Starts a message on the session's facts (MAIL, or a command of the envelope that came
// without one).
MilterMessage& begin_message(MilterServerState& s, MilterConnection& c) {
  c.message.emplace();
  MilterMessage& m = *c.message;
  m.tx = c.session;
  m.tx.id = "milter-" + std::to_string(++s.next_id);
  const auto& base = c.helo_state ? c.helo_state : c.connect_state;
  m.state = base ? std::make_shared<EvaluationState>(*base) : std::make_shared<EvaluationState>();
  ++c.messages;
  return m;
}

MilterMessage& current_message(MilterServerState& s, MilterConnection& c) {
  if (!c.message) begin_message(s, c);
  return *c.message;
}

void end_message(MilterConnection& c) {
  c.message.reset();
  c.macros.clear_transaction();
}

MessageParser& parser_of(MilterServerState& s, MilterMessage& m) {
  if (!m.parser) {
    MessageLimits limits;
    limits.max_bytes = static_cast<size_t>(std::max<int64_t>(s.limits.max_message_bytes, 0));
    limits.max_headers = s.limits.max_headers;
    m.parser = std::make_unique<MessageParser>(limits);
  }
  return *m.parser;
}

// Stores what fits under max_message_bytes; returns false once the limit is reached.
bool store(MilterServerState& s, MilterMessage& m, std::string_view bytes) {
  m.seen += static_cast<int64_t>(bytes.size());
  if (m.truncated) return false;
  const size_t limit = static_cast<size_t>(std::max<int64_t>(s.limits.max_message_bytes, 0));
  const size_t room = limit > m.stored ? limit - m.stored : 0;
  const size_t take = std::min(room, bytes.size());
  if (take > 0) {
    parser_of(s, m).feed(bytes.substr(0, take));
    m.stored += take;
  }
  if (take < bytes.size()) {
    m.truncated = true;
    s.metrics().inc(kTruncated);
    spdlog::info(
        "milter: message {} is larger than max_message_bytes ({}): scoring its first {} bytes",
        m.tx.id, limit, m.stored);
    return false;
  }
  return true;
}

// delayed_refusal: a refusal the Engine decides at CONNECT or HELO (a deny entry, a ban) is
// answered at MAIL, where the MAIL evaluation decides it again from the same results (they are
// in the message's EvaluationState), as Postfix's own smtpd_delay_reject does. An MTA turns a
// connect- or HELO-stage rejection into its own text ("554 ... not accepting connections"),
// so the sender would never see why; at MAIL it gets spamward's reply text.
//
// Replies to a verdict at a stage before the end of message: the refusal, or CONTINUE.
// Returns true when the command was refused.
bool reply_for(const std::optional<Verdict>& v, Stage stage, std::string& out) {
  if (v && append_refusal(*v, stage, out)) return true;
  append_frame(out, milter::kReplyContinue);
  return false;
}

// Whether the current config signs envelope senders (asks for SMFIF_CHGFROM).
bool batv_configured(MilterServerState& s) {
  try {
    std::shared_ptr<Engine> engine = s.engine ? s.engine() : nullptr;
    return engine && !engine->config().batv.keys.empty();
  } catch (const std::exception& e) {
    spdlog::warn("milter: no engine for the negotiation: {}", e.what());
  }
  return false;
}

// The SMFIR_CHGFROM of an accepted message, when BATV signing applies (batv_signed_sender).
void append_batv_signature(MilterServerState& s, MilterConnection& c, const Transaction& tx) {
  if (!c.negotiation.change_from) return;
  try {
    std::shared_ptr<Engine> engine = s.engine ? s.engine() : nullptr;
    if (!engine) return;
    SystemClock system_clock;
    const Clock& clock = engine->env().clock ? *engine->env().clock : system_clock;
    auto tagged = batv_signed_sender(engine->config(), tx, clock.now());
    if (tagged && !append_change_from(c.out, *tagged)) {
      spdlog::warn("milter: message {}: cannot send the BATV-signed sender; left as it is", tx.id);
    }
  } catch (const std::exception& e) {
    spdlog::warn("milter: message {}: BATV signing failed: {}; sender left as it is", tx.id,
                 e.what());
  }
}

// The Authentication-Results edits of an accepted message ([headers] authentication_results):
// none for a trusted client (nothing was checked, and its fields are its own); otherwise the
// incoming fields carrying our authserv-id go, and ours is added when there is a verdict.
void append_authentication_results(MilterServerState& s, MilterConnection& c,
                                   const MilterMessage& m, const Verdict* verdict) {
  try {
    std::shared_ptr<Engine> engine = s.engine ? s.engine() : nullptr;
    if (!engine || !engine->config().headers.authentication_results) return;
    const Config& config = engine->config();
    bool trusted = verdict && verdict->trusted;
    if (!verdict && m.tx.client_address) {
      for (const auto& p : config.network.trusted)
        trusted = trusted || p.contains(*m.tx.client_address);
    }
    if (trusted) return;
    const std::string id =
        effective_authserv_id(config.headers.authserv_id, config.network.our_names);
    const std::string value = verdict
                                  ? render_authentication_results(
                                        id, authentication_results_from_symbols(verdict->symbols))
                                  : std::string();
    append_authentication_results_edits(m.auth_results, id, value, c.negotiation, c.out);
  } catch (const std::exception& e) {
    spdlog::warn("milter: message {}: cannot add Authentication-Results: {}", m.tx.id, e.what());
  }
}

// Handles one complete frame; appends the replies to c.out. Returns false when the connection
// must close (c.closed is then set, or the MTA said QUIT).
asio::awaitable<bool> handle(std::shared_ptr<MilterServerState> sp,
                             std::shared_ptr<MilterConnection> cp) {
  MilterServerState& s = *sp;
  MilterConnection& c = *cp;
  const char cmd = c.reader.command();
  const std::string_view data = c.reader.data();
  auto malformed = [&]() {
    s.close_with(c, to_string(MilterError::malformed_command),
                 "malformed " + command_name(cmd) + " command");
    return false;
  };

  if (!c.negotiated && cmd != milter::kOptneg) {
    s.close_with(c, to_string(MilterError::unexpected_command),
                 command_name(cmd) + " before option negotiation");
    co_return false;
  }

  switch (cmd) {
    case milter::kOptneg: {
      auto offer = decode_optneg(data);
      auto agreed = offer ? negotiate(*offer, batv_configured(s)) : std::nullopt;
      if (!agreed) {
        s.close_with(c, to_string(MilterError::bad_negotiation),
                     offer ? "unsupported milter protocol version " + std::to_string(offer->version)
                           : std::string("malformed option negotiation"));
        co_return false;
      }
      c.negotiated = true;
      c.negotiation = *agreed;
      append_optneg_reply(c.out, c.negotiation);
      co_return true;
    }

    case milter::kMacro: {
      auto frame = decode_macros(data);
      if (!frame) co_return malformed();
      // MAIL's macros come first in a new message: the last message's are stale.
      if (frame->stage == milter::kMail) c.macros.clear_transaction();
      c.macros.set(*frame);
      co_return true;  // no reply
    }

    case milter::kConnect: {
      auto connect = decode_connect(data);
      if (!connect) co_return malformed();
      c.message.reset();
      c.session = Transaction{};
      apply_connect_facts(*connect, c.macros, c.session);
      c.session.stage = Stage::connect;
      c.session.report = Transaction::Report::never;
      c.session.id = "milter-" + std::to_string(++s.next_id);
      c.connect_state = std::make_shared<EvaluationState>();
      c.helo_state.reset();
      auto evaluation = evaluate(s, c.session, c.connect_state);
      auto verdict = co_await std::move(evaluation);
      (void)verdict;  // a refusal is answered at MAIL: see delayed_refusal()
      if (c.negotiation.replies_to(milter::kConnect)) append_frame(c.out, milter::kReplyContinue);
      co_return true;
    }

    case milter::kHelo: {
      auto args = decode_strings(data);
      if (!args) co_return malformed();
      c.message.reset();  // HELO after MAIL: the MTA aborts the message
      c.session.helo = std::string((*args)[0]);
      c.session.stage = Stage::helo;
      c.session.report = Transaction::Report::never;
      if (!c.connect_state) c.connect_state = std::make_shared<EvaluationState>();
      // A second HELO (after STARTTLS) starts again from the CONNECT results.
      c.helo_state = std::make_shared<EvaluationState>(*c.connect_state);
      auto evaluation = evaluate(s, c.session, c.helo_state);
      auto verdict = co_await std::move(evaluation);
      (void)verdict;  // a refusal is answered at MAIL: see delayed_refusal()
      if (c.negotiation.replies_to(milter::kHelo)) append_frame(c.out, milter::kReplyContinue);
      co_return true;
    }

    case milter::kMail: {
      auto args = decode_strings(data);
      if (!args) co_return malformed();
      MilterMessage& m = begin_message(s, c);
      m.tx.sender = strip_angle_brackets((*args)[0]);
      m.tx.size = declared_size(*args);
      apply_envelope_macros(c.macros, m.tx);
      m.tx.stage = Stage::mail;
      m.tx.report = Transaction::Report::refusals;
      auto state = m.state;
      auto evaluation = evaluate(s, m.tx, state);
      auto verdict = co_await std::move(evaluation);
      if (reply_for(verdict, Stage::mail, c.out)) end_message(c);
      co_return true;
    }

    case milter::kRcpt: {
      auto args = decode_strings(data);
      if (!args) co_return malformed();
      MilterMessage& m = current_message(s, c);
      apply_envelope_macros(c.macros, m.tx);
      m.tx.stage = Stage::rcpt;
      m.tx.report = Transaction::Report::refusals;
      m.tx.recipient = strip_angle_brackets((*args)[0]);
      m.tx.recipients = m.accepted;
      m.tx.recipient_count = static_cast<int64_t>(m.accepted.size());
      auto state = m.state;
      Transaction tx = m.tx;  // the message may end (ABORT cannot interleave, but be safe)
      auto evaluation = evaluate(s, tx, state);
      auto verdict = co_await std::move(evaluation);
      if (!reply_for(verdict, Stage::rcpt, c.out) && c.message &&
          c.message->accepted.size() < kMaxRecipients) {
        c.message->accepted.push_back(tx.recipient);
      }
      co_return true;
    }

    case milter::kData: {
      MilterMessage& m = current_message(s, c);
      apply_envelope_macros(c.macros, m.tx);
      m.tx.stage = Stage::data;
      m.tx.report = Transaction::Report::refusals;
      m.tx.recipient.clear();
      m.tx.recipients = m.accepted;
      m.tx.recipient_count = static_cast<int64_t>(m.accepted.size());
      auto state = m.state;
      auto evaluation = evaluate(s, m.tx, state);
      auto verdict = co_await std::move(evaluation);
      if (reply_for(verdict, Stage::data, c.out)) end_message(c);
      co_return true;
    }

    case milter::kHeader: {
      auto header = decode_header(data);
      if (!header) co_return malformed();
      MilterMessage& m = current_message(s, c);
      m.spam_headers.observe(header->name);
      m.auth_results.observe(header->name, header->value);
      if (m.spam_headers.overflowed() && !m.header_warned) {
        m.header_warned = true;
        spdlog::warn(
            "milter: message {} has more than {} distinct X-Spam-* header names; the "
            "rest are not removed",
            m.tx.id, SpamHeaderTracker::kMaxNames);
        s.count_error("too_many_headers");
      }
      if (++m.headers > s.limits.max_headers) {
        if (!m.header_warned) {
          m.header_warned = true;
          spdlog::warn(
              "milter: message {} has more than {} header fields; the rest are not "
              "stored",
              m.tx.id, s.limits.max_headers);
          s.count_error("too_many_headers");
        }
        m.seen += static_cast<int64_t>(data.size());
      } else {
        store(s, m, header_line(header->name, header->value, c.negotiation.leading_space));
      }
      if (c.negotiation.replies_to(milter::kHeader)) append_frame(c.out, milter::kReplyContinue);
      co_return true;
    }

    case milter::kEoh: {
      MilterMessage& m = current_message(s, c);
      store(s, m, "\r\n");
      if (c.negotiation.replies_to(milter::kEoh)) append_frame(c.out, milter::kReplyContinue);
      co_return true;
    }

    case milter::kBody: {
      MilterMessage& m = current_message(s, c);
      const bool was_truncated = m.truncated;
      if (!store(s, m, data) && !was_truncated && c.negotiation.skip) {
        append_frame(c.out, milter::kReplySkip);
      } else {
        append_frame(c.out, milter::kReplyContinue);
      }
      co_return true;
    }

    case milter::kBodyEob: {
      MilterMessage& m = current_message(s, c);
      if (!data.empty()) store(s, m, data);  // libmilter accepts a last chunk with EOB
      apply_envelope_macros(c.macros, m.tx);
      auto parsed = m.parser ? m.parser->finish() : MessageParser().finish();
      m.parser.reset();
      m.tx.message = std::make_shared<const Message>(std::move(parsed));
      m.tx.stage = Stage::eom;
      m.tx.report = Transaction::Report::always;
      m.tx.recipient.clear();
      m.tx.recipients = m.accepted;
      m.tx.recipient_count = static_cast<int64_t>(m.accepted.size());
      m.tx.size = m.seen;
      auto state = m.state;
      auto evaluation = evaluate(s, m.tx, state);
      auto verdict = co_await std::move(evaluation);
      if (!c.message) co_return true;  // cannot happen: one command at a time
      if (!(verdict && append_refusal(*verdict, Stage::eom, c.out))) {
        append_eom_edits(verdict ? &*verdict : nullptr, c.message->spam_headers, c.negotiation,
                         c.out);
        append_authentication_results(s, c, *c.message, verdict ? &*verdict : nullptr);
        append_batv_signature(s, c, m.tx);
        append_frame(c.out, milter::kReplyAccept);
      }
      end_message(c);
      co_return true;
    }

    case milter::kAbort:
      end_message(c);
      co_return true;  // no reply

    case milter::kUnknown:
      if (!decode_strings(data)) co_return malformed();
      if (c.negotiation.replies_to(milter::kUnknown)) append_frame(c.out, milter::kReplyContinue);
      co_return true;

    case milter::kQuitNc:
      // The SMTP session ended; the MTA reuses this connection for the next one.
      c.message.reset();
      c.macros.clear();
      c.session = Transaction{};
      c.connect_state.reset();
      c.helo_state.reset();
      co_return true;  // no reply

    case milter::kQuit:
      c.close();
      co_return false;

    default:
      s.close_with(c, to_string(MilterError::unknown_command),
                   "unknown command " + command_name(cmd));
      co_return false;
  }
}

asio::awaitable<void> serve_milter(std::shared_ptr<MilterServerState> s,
                                   std::shared_ptr<MilterConnection> c) {
  const auto token = asio::as_tuple(asio::use_awaitable);
  size_t begin = 0;
  size_t end = 0;
  MilterFrameReader& reader = c->reader;

  while (!c->closed) {
    while (reader.status() == MilterFrameReader::Status::incomplete) {
      if (begin == end) {
        auto buf = asio::buffer(c->buffer);
        auto [ec, n] = co_await c->socket.async_read_some(buf, token);
        if (ec || c->closed) {
          if (!c->closed) {
            if (reader.started()) {
              s->close_with(*c, "truncated_frame",
                            ec == asio::error::eof
                                ? std::string("connection closed in the middle of a frame")
                                : "read error in the middle of a frame: " + ec.message());
            } else {
              if (ec != asio::error::eof && ec != asio::error::connection_reset)
                spdlog::debug("milter: read error from {}: {}", c->peer_name(), ec.message());
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
      begin += reader.feed(std::string_view(c->buffer.data() + begin, end - begin));
    }
    if (reader.status() == MilterFrameReader::Status::error) {
      std::string why = reader.error() == MilterError::frame_too_large
                            ? "frame of " + std::to_string(reader.declared_length()) +
                                  " bytes is over the limit of " +
                                  std::to_string(reader.max_frame())
                            : std::string("frame with length 0");
      s->close_with(*c, to_string(reader.error()), why);
      co_return;
    }

    c->enter(Phase::evaluating);
    c->out.clear();
    auto handling = handle(s, c);
    bool go_on = co_await std::move(handling);
    if (!go_on || c->closed) {
      c->close();
      co_return;
    }
    reader.next();

    if (!c->out.empty()) {
      c->enter(Phase::writing);
      auto out = asio::buffer(c->out);
      auto [wec, written] = co_await asio::async_write(c->socket, out, token);
      (void)written;
      if (wec || c->closed) {
        if (!c->closed) {
          spdlog::debug("milter: write error to {}: {}", c->peer_name(), wec.message());
          c->close();
        }
        co_return;
      }
      // A large reply buffer (many header edits) is not kept between messages.
      if (c->out.capacity() > 65536) std::string().swap(c->out);
    }
    if (s->stopping() && begin == end) {
      c->close();
      co_return;
    }
    c->enter(begin < end ? Phase::reading : Phase::idle);
  }
}

}  // namespace

asio::awaitable<void> MilterServerState::serve(std::shared_ptr<StreamConnection> c) {
  return serve_milter(std::static_pointer_cast<MilterServerState>(shared_from_this()),
                      std::static_pointer_cast<MilterConnection>(std::move(c)));
}

std::optional<std::string> batv_signed_sender(const Config& config, const Transaction& tx,
                                              TimePoint now) {
  try {
    if (config.batv.keys.empty() || tx.sender.empty() || batv_is_tagged(tx.sender)) {
      return std::nullopt;
    }
    bool allowed = tx.authenticated();
    if (!allowed && tx.client_address) {
      for (const auto& p : config.network.trusted) {
        if (p.contains(*tx.client_address)) {
          allowed = true;
          break;
        }
      }
    }
    if (!allowed) return std::nullopt;
    std::string tagged = batv_sign(tx.sender, config.batv.keys, now, config.batv.max_age);
    if (tagged == tx.sender) {
      spdlog::warn("milter: message {}: cannot BATV-sign the sender {}; left as it is", tx.id,
                   printable(tx.sender, 128));
      return std::nullopt;
    }
    return tagged;
  } catch (const std::exception& e) {
    spdlog::warn("milter: message {}: BATV signing failed: {}; sender left as it is", tx.id,
                 e.what());
  }
  return std::nullopt;
}

MilterServer::MilterServer(asio::any_io_executor ex, EngineSource engine, MilterLimits limits,
                           Metrics& metrics)
    : state_(
          std::make_shared<MilterServerState>(std::move(ex), std::move(engine), limits, metrics)) {
  metrics.describe(kTruncated, Metrics::Type::counter,
                   "Messages larger than [limits] max_message_bytes: the milter scored their "
                   "first max_message_bytes bytes.");
  metrics.inc(kTruncated, {}, 0);
}

MilterServer::~MilterServer() {
  state_->shutdown_now();
}

void MilterServer::listen(const ListenSpec& spec) {
  state_->listen(spec);
}

uint16_t MilterServer::port() const {
  return state_->port();
}

void MilterServer::start() {
  state_->start();
}

void MilterServer::stop() {
  state_->stop();
}

size_t MilterServer::open_connections() const {
  return state_->open_connections();
}

}  // namespace spamward
