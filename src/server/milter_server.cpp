#include "server/milter_server.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

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

#include "core/strings.h"
#include "mail/message.h"

namespace spamward {

namespace asio = boost::asio;
using generic_stream = asio::generic::stream_protocol;
using SteadyClock = std::chrono::steady_clock;

namespace {

constexpr std::string_view kOpenConnections = "spamward_open_connections";
constexpr std::string_view kProtocolErrors = "spamward_protocol_errors_total";
constexpr std::string_view kTruncated = "spamward_milter_truncated_total";
// Per connection (max_connections of them); a 65,535-byte Postfix body chunk takes 4 reads.
constexpr size_t kReadBufferSize = 16384;
constexpr auto kLogInterval = std::chrono::seconds(10);
// Postfix accepts at most smtpd_recipient_limit (1000) recipients per message.
constexpr size_t kMaxRecipients = 1000;

const Labels& server_labels() {
  static const Labels labels = {{"server", "milter"}};
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

struct MilterListener {
  explicit MilterListener(const asio::any_io_executor& ex) : acceptor(ex) {}
  asio::basic_socket_acceptor<generic_stream> acceptor;
  std::string name;  // ListenSpec text, for logs
  bool is_unix = false;
};

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
};

struct MilterConnection {
  MilterConnection(generic_stream::socket s, std::shared_ptr<const MilterListener> l,
                   size_t max_frame)
      : socket(std::move(s)),
        timer(socket.get_executor()),
        listener(std::move(l)),
        reader(max_frame),
        buffer(kReadBufferSize) {}

  enum class Phase { idle, reading, evaluating, writing };

  generic_stream::socket socket;
  asio::steady_timer timer;
  std::shared_ptr<const MilterListener> listener;
  Phase phase = Phase::idle;
  SteadyClock::time_point phase_start = SteadyClock::now();
  bool closed = false;
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

struct MilterServerState {
  MilterServerState(asio::any_io_executor e, EngineSource src, MilterLimits l, Metrics& m)
      : ex(std::move(e)), engine(std::move(src)), limits(l), metrics(m) {}

  asio::any_io_executor ex;
  EngineSource engine;
  MilterLimits limits;
  Metrics& metrics;

  std::vector<std::shared_ptr<MilterListener>> listeners;
  std::atomic<uint16_t> tcp_port{0};
  std::unordered_set<std::shared_ptr<MilterConnection>> connections;  // executor only
  std::atomic<size_t> open{0};
  bool started = false;
  bool stopping = false;
  uint64_t next_id = 0;
  RateLimitedLog overload_log;
  RateLimitedLog accept_log;
  RateLimitedLog engine_log;

  void count_error(std::string_view reason) {
    metrics.inc(kProtocolErrors, {{"server", "milter"}, {"reason", std::string(reason)}});
  }
  void update_gauge() {
    metrics.set(kOpenConnections, server_labels(), static_cast<double>(open.load()));
  }

  static void close(MilterConnection& c) {
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
    for (const auto& c : connections) {
      if (c->phase == MilterConnection::Phase::idle) close(*c);
    }
  }
};

}  // namespace detail

using detail::MilterConnection;
using detail::MilterListener;
using detail::MilterMessage;
using detail::MilterServerState;

namespace {

std::optional<asio::ip::tcp::endpoint> to_tcp(const generic_stream::endpoint& ep) {
  if (ep.protocol().family() != AF_INET && ep.protocol().family() != AF_INET6) return std::nullopt;
  asio::ip::tcp::endpoint tcp;
  if (ep.size() > tcp.capacity()) return std::nullopt;
  std::memcpy(tcp.data(), ep.data(), ep.size());
  tcp.resize(ep.size());
  return tcp;
}

std::string peer_name(const MilterConnection& c) {
  boost::system::error_code ec;
  auto ep = c.socket.remote_endpoint(ec);
  if (ec) return "unknown peer";
  if (auto tcp = to_tcp(ep)) {
    if (tcp->address().is_v6())
      return "[" + tcp->address().to_string() + "]:" + std::to_string(tcp->port());
    return tcp->address().to_string() + ":" + std::to_string(tcp->port());
  }
  return "client on " + c.listener->name;
}

void close_with(MilterServerState& s, MilterConnection& c, std::string_view reason_label,
                const std::string& why, bool quiet = false) {
  if (c.closed) return;
  if (quiet) {
    spdlog::info("milter: closing connection from {}: {}", peer_name(c), why);
  } else {
    spdlog::warn("milter: closing connection from {}: {}", peer_name(c), why);
  }
  s.count_error(reason_label);
  MilterServerState::close(c);
}

// As PolicyServer's watchdog: wakes when a deadline of the current phase may fall due.
asio::awaitable<void> watchdog(std::shared_ptr<MilterServerState> s,
                               std::shared_ptr<MilterConnection> c) {
  const auto token = asio::as_tuple(asio::use_awaitable);
  const Duration cap = std::min(s->limits.frame_timeout, s->limits.idle_timeout);
  while (!c->closed) {
    const auto now = SteadyClock::now();
    SteadyClock::time_point deadline = SteadyClock::time_point::max();
    switch (c->phase) {
      case MilterConnection::Phase::idle:
        deadline = c->phase_start + s->limits.idle_timeout;
        break;
      case MilterConnection::Phase::reading:
      case MilterConnection::Phase::writing:
        deadline = c->phase_start + s->limits.frame_timeout;
        break;
      case MilterConnection::Phase::evaluating:
        break;  // bounded by the engine's stage deadline
    }
    if (now >= deadline) {
      switch (c->phase) {
        case MilterConnection::Phase::idle:
          close_with(*s, *c, "idle_timeout",
                     "no command for " + format_duration(s->limits.idle_timeout), true);
          break;
        case MilterConnection::Phase::reading:
          close_with(*s, *c, "frame_timeout",
                     "frame not complete within " + format_duration(s->limits.frame_timeout));
          break;
        default:
          close_with(*s, *c, "write_timeout",
                     "reply not read within " + format_duration(s->limits.frame_timeout));
          break;
      }
      co_return;
    }
    const auto wake = deadline - now < cap ? deadline : now + cap;
    c->timer.expires_at(wake);
    auto [ec] = co_await c->timer.async_wait(token);
    (void)ec;
  }
}

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
    s.metrics.inc(kTruncated);
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

// Handles one complete frame; appends the replies to c.out. Returns false when the connection
// must close (c.closed is then set, or the MTA said QUIT).
asio::awaitable<bool> handle(std::shared_ptr<MilterServerState> sp,
                             std::shared_ptr<MilterConnection> cp) {
  MilterServerState& s = *sp;
  MilterConnection& c = *cp;
  const char cmd = c.reader.command();
  const std::string_view data = c.reader.data();
  auto malformed = [&]() {
    close_with(s, c, to_string(MilterError::malformed_command),
               "malformed " + command_name(cmd) + " command");
    return false;
  };

  if (!c.negotiated && cmd != milter::kOptneg) {
    close_with(s, c, to_string(MilterError::unexpected_command),
               command_name(cmd) + " before option negotiation");
    co_return false;
  }

  switch (cmd) {
    case milter::kOptneg: {
      auto offer = decode_optneg(data);
      auto agreed = offer ? negotiate(*offer) : std::nullopt;
      if (!agreed) {
        close_with(s, c, to_string(MilterError::bad_negotiation),
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
      c.session.id = "milter-" + std::to_string(++s.next_id);
      c.connect_state = std::make_shared<EvaluationState>();
      c.helo_state.reset();
      auto evaluation = evaluate(s, c.session, c.connect_state);
      auto verdict = co_await std::move(evaluation);
      (void)verdict;  // a refusal is answered at MAIL: see delayed_refusal()
      append_frame(c.out, milter::kReplyContinue);
      co_return true;
    }

    case milter::kHelo: {
      auto args = decode_strings(data);
      if (!args) co_return malformed();
      c.message.reset();  // HELO after MAIL: the MTA aborts the message
      c.session.helo = std::string((*args)[0]);
      c.session.stage = Stage::helo;
      if (!c.connect_state) c.connect_state = std::make_shared<EvaluationState>();
      // A second HELO (after STARTTLS) starts again from the CONNECT results.
      c.helo_state = std::make_shared<EvaluationState>(*c.connect_state);
      auto evaluation = evaluate(s, c.session, c.helo_state);
      auto verdict = co_await std::move(evaluation);
      (void)verdict;  // a refusal is answered at MAIL: see delayed_refusal()
      append_frame(c.out, milter::kReplyContinue);
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
      append_frame(c.out, milter::kReplyContinue);
      co_return true;
    }

    case milter::kEoh: {
      MilterMessage& m = current_message(s, c);
      store(s, m, "\r\n");
      append_frame(c.out, milter::kReplyContinue);
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
      append_frame(c.out, milter::kReplyContinue);
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
      MilterServerState::close(c);
      co_return false;

    default:
      close_with(s, c, to_string(MilterError::unknown_command),
                 "unknown command " + command_name(cmd));
      co_return false;
  }
}

asio::awaitable<void> serve(std::shared_ptr<MilterServerState> s,
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
              close_with(*s, *c, "truncated_frame",
                         ec == asio::error::eof
                             ? std::string("connection closed in the middle of a frame")
                             : "read error in the middle of a frame: " + ec.message());
            } else {
              if (ec != asio::error::eof && ec != asio::error::connection_reset)
                spdlog::debug("milter: read error from {}: {}", peer_name(*c), ec.message());
              MilterServerState::close(*c);
            }
          }
          co_return;
        }
        begin = 0;
        end = n;
        if (c->phase == MilterConnection::Phase::idle) {
          c->phase = MilterConnection::Phase::reading;
          c->phase_start = SteadyClock::now();
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
      close_with(*s, *c, to_string(reader.error()), why);
      co_return;
    }

    c->phase = MilterConnection::Phase::evaluating;
    c->out.clear();
    auto handling = handle(s, c);
    bool go_on = co_await std::move(handling);
    if (!go_on || c->closed) {
      MilterServerState::close(*c);
      co_return;
    }
    reader.next();

    if (!c->out.empty()) {
      c->phase = MilterConnection::Phase::writing;
      c->phase_start = SteadyClock::now();
      auto out = asio::buffer(c->out);
      auto [wec, written] = co_await asio::async_write(c->socket, out, token);
      (void)written;
      if (wec || c->closed) {
        if (!c->closed) {
          spdlog::debug("milter: write error to {}: {}", peer_name(*c), wec.message());
          MilterServerState::close(*c);
        }
        co_return;
      }
      // A large reply buffer (many header edits) is not kept between messages.
      if (c->out.capacity() > 65536) std::string().swap(c->out);
    }
    if (s->stopping && begin == end) {
      MilterServerState::close(*c);
      co_return;
    }
    c->phase = begin < end ? MilterConnection::Phase::reading : MilterConnection::Phase::idle;
    c->phase_start = SteadyClock::now();
  }
}

asio::awaitable<void> run_connection(std::shared_ptr<MilterServerState> s,
                                     std::shared_ptr<MilterConnection> c) {
  try {
    auto session = serve(s, c);
    co_await std::move(session);
  } catch (const std::exception& e) {
    spdlog::error("milter: connection from {} failed: {}", peer_name(*c), e.what());
  }
  MilterServerState::close(*c);
  s->connections.erase(c);
  s->open.fetch_sub(1);
  s->update_gauge();
}

void log_exception(std::exception_ptr e, const char* what) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    spdlog::error("milter: {} failed: {}", what, ex.what());
  } catch (...) {
    spdlog::error("milter: {} failed", what);
  }
}

asio::awaitable<void> accept_loop(std::shared_ptr<MilterServerState> s,
                                  std::shared_ptr<MilterListener> l) {
  const auto token = asio::as_tuple(asio::use_awaitable);
  asio::steady_timer backoff(s->ex);
  while (!s->stopping) {
    auto [ec, socket] = co_await l->acceptor.async_accept(token);
    if (s->stopping || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      uint64_t suppressed = 0;
      if (s->accept_log.allow(suppressed)) {
        spdlog::error("milter: accept on {} failed: {}{}", l->name, ec.message(),
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
        spdlog::warn(
            "milter: closing new connection on {}: {} connections open (max_connections){}",
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
    auto c = std::make_shared<MilterConnection>(std::move(socket), l, s->limits.max_frame);
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

// As PolicyServer: remove a stale socket file, never a live socket or another file.
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

MilterServer::MilterServer(asio::any_io_executor ex, EngineSource engine, MilterLimits limits,
                           Metrics& metrics)
    : state_(
          std::make_shared<MilterServerState>(std::move(ex), std::move(engine), limits, metrics)) {
  metrics.describe(kOpenConnections, Metrics::Type::gauge,
                   "Connections currently open, by protocol server.");
  metrics.describe(kProtocolErrors, Metrics::Type::counter,
                   "Connections closed for malformed or over-limit input, timeouts or overload, "
                   "by server and reason.");
  metrics.describe(kTruncated, Metrics::Type::counter,
                   "Messages larger than [limits] max_message_bytes: the milter scored their "
                   "first max_message_bytes bytes.");
  metrics.set(kOpenConnections, server_labels(), 0);
  metrics.inc(kTruncated, {}, 0);
}

MilterServer::~MilterServer() {
  state_->stop_now();
  for (const auto& c : state_->connections) MilterServerState::close(*c);
}

void MilterServer::listen(const ListenSpec& spec) {
  const std::string name = spec.to_string();
  auto l = std::make_shared<MilterListener>(state_->ex);
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

uint16_t MilterServer::port() const {
  return state_->tcp_port.load();
}

void MilterServer::start() {
  if (state_->started || state_->stopping) return;
  state_->started = true;
  for (const auto& l : state_->listeners) {
    auto loop = accept_loop(state_, l);
    asio::co_spawn(state_->ex, std::move(loop),
                   [](std::exception_ptr e) { log_exception(e, "accept loop"); });
  }
}

void MilterServer::stop() {
  auto s = state_;
  asio::dispatch(s->ex, [s] { s->stop_now(); });
}

size_t MilterServer::open_connections() const {
  return state_->open.load();
}

}  // namespace spamward
