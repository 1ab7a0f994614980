// The backscatter probe: SMTP reply parser, HOST[:PORT], and the dialogue (see smtp_probe.h).
#include "cli/smtp_probe.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <tuple>
#include <utility>

namespace spamward::cli {

// ---------------------------------------------------------------------------------------
// SMTP replies

std::string SmtpReply::text() const {
  std::string out;
  for (const std::string& line : lines) {
    if (!out.empty()) out += " / ";
    out += line;
  }
  return out;
}

void SmtpReplyParser::fail(std::string why) {
  if (error_.empty()) error_ = std::move(why);
  raw_.clear();
  building_ = {};  // the replies completed before stay available: the result is split-independent
}

void SmtpReplyParser::feed(std::string_view bytes) {
  size_t pos = 0;
  while (pos < bytes.size() && error_.empty()) {
    size_t nl = bytes.find('\n', pos);
    size_t len = nl == std::string_view::npos ? bytes.size() - pos : nl - pos + 1;
    if (raw_.size() + len > limits_.max_line_bytes) {
      fail("reply line longer than " + std::to_string(limits_.max_line_bytes) + " bytes");
      return;
    }
    raw_.append(bytes.substr(pos, len));
    pos += len;
    if (nl != std::string_view::npos) line_done();
  }
}

void SmtpReplyParser::line_done() {
  std::string_view line(raw_);
  line.remove_suffix(1);  // LF
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.find('\0') != std::string_view::npos) return fail("NUL byte in a reply line");
  if (line.find('\r') != std::string_view::npos) return fail("CR inside a reply line");
  if (line.size() < 3) return fail("reply line too short for a reply code");
  char d1 = line[0], d2 = line[1], d3 = line[2];
  if (d1 < '2' || d1 > '5' || d2 < '0' || d2 > '5' || d3 < '0' || d3 > '9') {
    return fail("bad reply code \"" + printable(line.substr(0, 3)) + "\"");
  }
  int code = (d1 - '0') * 100 + (d2 - '0') * 10 + (d3 - '0');
  bool last = true;
  std::string_view text;
  if (line.size() > 3) {
    if (line[3] == '-') {
      last = false;
    } else if (line[3] != ' ') {
      return fail("reply code not followed by a space or '-'");
    }
    text = line.substr(4);
  }
  if (!building_.lines.empty() && building_.code != code) {
    return fail("reply code changes inside a multi-line reply (" + std::to_string(building_.code) +
                " then " + std::to_string(code) + ")");
  }
  if (building_.lines.size() >= limits_.max_lines) {
    return fail("reply of more than " + std::to_string(limits_.max_lines) + " lines");
  }
  building_.code = code;
  building_.lines.emplace_back(text);
  raw_.clear();
  if (last) {
    complete_.push_back(std::move(building_));
    building_ = {};
  }
}

bool SmtpReplyParser::next(SmtpReply& out) {
  if (complete_.empty()) return false;
  out = std::move(complete_.front());
  complete_.pop_front();
  return true;
}

size_t SmtpReplyParser::buffered() const {
  size_t n = raw_.size();
  auto count = [&n](const SmtpReply& r) {
    for (const std::string& l : r.lines) n += l.size() + 6;  // code, separator, CRLF
  };
  count(building_);
  for (const SmtpReply& r : complete_) count(r);
  return n;
}

std::string printable(std::string_view text, size_t max_chars) {
  static const char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : text) {
    if (out.size() >= max_chars) {
      out += "...";
      break;
    }
    if (c >= 0x20 && c <= 0x7e && c != '\\') {
      out += static_cast<char>(c);
    } else if (c == '\\') {
      out += "\\\\";
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 0x0f];
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// HOST[:PORT]

namespace {

bool is_ipv4(const std::string& s) {
  in_addr a{};
  return inet_pton(AF_INET, s.c_str(), &a) == 1;
}
bool is_ipv6(const std::string& s) {
  in6_addr a{};
  return inet_pton(AF_INET6, s.c_str(), &a) == 1;
}

std::optional<uint16_t> parse_port(std::string_view s) {
  if (s.empty() || s.size() > 5) return std::nullopt;
  unsigned v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v == 0 || v > 65535) return std::nullopt;
  return static_cast<uint16_t>(v);
}

// A host name: LDH labels of 1-63 characters, at most 253 in all, a trailing dot allowed.
bool is_host_name(std::string_view s) {
  if (!s.empty() && s.back() == '.') s.remove_suffix(1);
  if (s.empty() || s.size() > 253) return false;
  size_t label = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == '.') {
      if (label == 0 || label > 63) return false;
      if (s[i - 1] == '-' || s[i - label] == '-') return false;
      label = 0;
      continue;
    }
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_';
    if (!ok) return false;
    ++label;
  }
  return true;
}

// A name with at least one dot whose last label is not all digits (so not an IPv4 address).
bool is_domain_name(std::string_view s) {
  if (!is_host_name(s)) return false;
  if (!s.empty() && s.back() == '.') s.remove_suffix(1);
  size_t dot = s.rfind('.');
  if (dot == std::string_view::npos) return false;
  std::string_view last = s.substr(dot + 1);
  for (char c : last) {
    if (c < '0' || c > '9') return true;
  }
  return false;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  if (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

}  // namespace

std::optional<HostPort> parse_host_port(std::string_view text, std::string* error) {
  auto bad = [&](const std::string& why) -> std::optional<HostPort> {
    if (error) *error = why;
    return std::nullopt;
  };
  if (text.empty()) return bad("empty HOST");
  for (unsigned char c : text) {
    if (c <= 0x20 || c >= 0x7f) return bad("HOST[:PORT] has a space or a control byte");
  }
  HostPort out;
  if (text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) return bad("'[' without ']' in HOST[:PORT]");
    out.host = std::string(text.substr(1, close - 1));
    std::string_view rest = text.substr(close + 1);
    if (!is_ipv6(out.host)) return bad("not an IPv6 address in brackets: " + out.host);
    if (!rest.empty()) {
      if (rest.front() != ':') return bad("expected ':PORT' after ']'");
      auto port = parse_port(rest.substr(1));
      if (!port) return bad("bad port \"" + std::string(rest.substr(1)) + "\" (1-65535)");
      out.port = *port;
    }
    return out;
  }
  size_t colon = text.find(':');
  if (colon != std::string_view::npos && text.find(':', colon + 1) != std::string_view::npos) {
    out.host = std::string(text);  // a bare IPv6 address: port 25
    if (!is_ipv6(out.host)) return bad("not an IPv6 address (write [ADDRESS]:PORT): " + out.host);
    return out;
  }
  out.host = std::string(text.substr(0, colon));
  if (text.find_first_of("[]") != std::string_view::npos) return bad("stray bracket in HOST");
  if (colon != std::string_view::npos) {
    auto port = parse_port(text.substr(colon + 1));
    if (!port) return bad("bad port \"" + std::string(text.substr(colon + 1)) + "\" (1-65535)");
    out.port = *port;
  }
  if (out.host.empty()) return bad("empty HOST");
  if (!is_ipv4(out.host) && !is_host_name(out.host)) return bad("not a host name: " + out.host);
  return out;
}

// ---------------------------------------------------------------------------------------
// Option values

std::string smtp_argument_problem(std::string_view value, std::string_view kind) {
  if (value.empty()) return "empty";
  if (value.size() > 255) return "longer than 255 bytes";
  for (unsigned char c : value) {
    if (c <= 0x20 || c >= 0x7f) return "has a space, a control byte or a non-ASCII byte";
    if (c == '<' || c == '>') return "has '<' or '>' (give the bare address)";
  }
  if (kind == "domain") {
    if (!is_domain_name(value)) return "not a domain name";
  } else if (kind == "address") {
    size_t at = value.rfind('@');
    if (at == std::string_view::npos || at == 0) return "not an address (local@domain)";
    std::string_view domain = value.substr(at + 1);
    bool literal = domain.size() > 2 && domain.front() == '[' && domain.back() == ']';
    if (!literal && !is_host_name(domain)) return "its domain is not a domain name";
  } else if (kind == "helo") {
    bool literal = value.size() > 2 && value.front() == '[' && value.back() == ']';
    if (!literal && !is_host_name(value)) return "not a host name or an address literal";
  }
  return "";
}

std::string random_probe_local_part() {
  static const char hex[] = "0123456789abcdef";
  std::random_device rd;
  std::string out = "spamward-probe-";
  for (int i = 0; i < 12; ++i) out += hex[rd() & 0x0f];
  return out;
}

// ---------------------------------------------------------------------------------------
// The dialogue

namespace {

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (left.count() <= 0) return 0;
  if (left.count() > 24 * 3600 * 1000) return 24 * 3600 * 1000;
  return static_cast<int>(left.count());
}

std::string seconds_text(std::chrono::milliseconds t) {
  if (t.count() % 1000 == 0) return std::to_string(t.count() / 1000) + " s";
  return std::to_string(t.count()) + " ms";
}

std::string target_text(const HostPort& t) {
  if (t.host.find(':') != std::string::npos) {
    return "[" + t.host + "]:" + std::to_string(t.port);
  }
  return t.host + ":" + std::to_string(t.port);
}

// One TCP connection with deadlines; every failure is a one-line reason.
class Connection {
 public:
  Connection() = default;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() {
    if (fd_ >= 0) ::close(fd_);
  }

  // "" when connected; else why not.
  std::string open(const HostPort& target, std::chrono::milliseconds timeout) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* list = nullptr;
    std::string port = std::to_string(target.port);
    int rc = ::getaddrinfo(target.host.c_str(), port.c_str(), &hints, &list);
    if (rc != 0) return "cannot resolve " + target.host + ": " + ::gai_strerror(rc);
    std::string why = "no address for " + target.host;
    auto deadline = Clock::now() + timeout;
    for (addrinfo* ai = list; ai; ai = ai->ai_next) {
      why = try_connect(ai, deadline);
      if (why.empty()) break;
    }
    ::freeaddrinfo(list);
    if (!why.empty()) return why;
    return "";
  }

  // The local end as an SMTP address literal: "[192.0.2.1]" or "[IPv6:2001:db8::1]".
  std::string local_literal() const {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "[127.0.0.1]";
    char buf[INET6_ADDRSTRLEN] = {};
    if (ss.ss_family == AF_INET6) {
      auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
      if (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr)) {
        ::inet_ntop(AF_INET, &a6->sin6_addr.s6_addr[12], buf, sizeof buf);
        return "[" + std::string(buf) + "]";
      }
      ::inet_ntop(AF_INET6, &a6->sin6_addr, buf, sizeof buf);
      return "[IPv6:" + std::string(buf) + "]";
    }
    ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, buf, sizeof buf);
    return "[" + std::string(buf) + "]";
  }

  const std::string& peer() const { return peer_; }

  // "" when the whole line (CRLF added) was sent.
  std::string send_line(const std::string& line, std::chrono::milliseconds timeout) {
    std::string data = line + "\r\n";
    auto deadline = Clock::now() + timeout;
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n > 0) {
        off += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        pollfd p{fd_, POLLOUT, 0};
        int r = ::poll(&p, 1, remaining_ms(deadline));
        if (r == 0) return "cannot send within " + seconds_text(timeout);
        if (r < 0 && errno != EINTR) return std::string("poll: ") + std::strerror(errno);
        continue;
      }
      return std::string("send: ") + std::strerror(errno);
    }
    return "";
  }

  // One complete reply, or nullopt with `why` set: timeout, closed, malformed.
  std::optional<SmtpReply> read_reply(SmtpReplyParser& parser, std::chrono::milliseconds timeout,
                                      std::string* why) {
    auto deadline = Clock::now() + timeout;
    char buf[4096];
    for (;;) {
      SmtpReply reply;
      if (parser.next(reply)) return reply;
      if (!parser.error().empty()) {
        *why = "malformed reply: " + parser.error();
        return std::nullopt;
      }
      pollfd p{fd_, POLLIN, 0};
      int r = ::poll(&p, 1, remaining_ms(deadline));
      if (r == 0) {
        *why = "no complete reply within " + seconds_text(timeout);
        return std::nullopt;
      }
      if (r < 0) {
        if (errno == EINTR) continue;
        *why = std::string("poll: ") + std::strerror(errno);
        return std::nullopt;
      }
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0) {
        *why = "the server closed the connection";
        return std::nullopt;
      }
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
        *why = std::string("recv: ") + std::strerror(errno);
        return std::nullopt;
      }
      parser.feed(std::string_view(buf, static_cast<size_t>(n)));
    }
  }

 private:
  std::string try_connect(const addrinfo* ai, Clock::time_point deadline) {
    char host[INET6_ADDRSTRLEN] = {};
    uint16_t port = 0;
    if (ai->ai_family == AF_INET6) {
      auto* a = reinterpret_cast<const sockaddr_in6*>(ai->ai_addr);
      ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
      port = ntohs(a->sin6_port);
    } else {
      auto* a = reinterpret_cast<const sockaddr_in*>(ai->ai_addr);
      ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
      port = ntohs(a->sin_port);
    }
    std::string where = target_text(HostPort{host, port});
    int fd =
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) return "socket: " + std::string(std::strerror(errno));
    int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno != EINPROGRESS) {
      std::string why = "cannot connect to " + where + ": " + std::strerror(errno);
      ::close(fd);
      return why;
    }
    if (rc != 0) {
      for (;;) {
        pollfd p{fd, POLLOUT, 0};
        int r = ::poll(&p, 1, remaining_ms(deadline));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
          ::close(fd);
          return "cannot connect to " + where + ": " +
                 (r == 0 ? std::string("timed out") : std::string(std::strerror(errno)));
        }
        break;
      }
      int err = 0;
      socklen_t len = sizeof err;
      if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      if (err != 0) {
        ::close(fd);
        return "cannot connect to " + where + ": " + std::strerror(err);
      }
    }
    fd_ = fd;
    peer_ = where;
    return "";
  }

  int fd_ = -1;
  std::string peer_;
};

// The host name in a 220 greeting ("220 mx.example.org ESMTP ..."), lower-cased, when it is a
// domain name.
std::string greeting_domain(const SmtpReply& greeting) {
  if (greeting.lines.empty()) return "";
  std::string_view first = greeting.lines.front();
  std::string_view name = first.substr(0, first.find(' '));
  if (!is_domain_name(name)) return "";
  return lower(name);
}

std::string local_fqdn() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "";
  std::string name(buf);
  if (!is_domain_name(name)) return "";
  return lower(name);
}

class Dialogue {
 public:
  Dialogue(const ProbeOptions& options, ProbeResult& result)
      : options_(options), result_(result), parser_(options.limits) {}

  void log(const std::string& line) {
    result_.transcript.push_back(line);
    if (options_.trace) options_.trace(line);
  }

  std::string target() const { return target_text(options_.target); }

  // The probe from connect to the verdict; the caller ends the session.
  void run() {
    log("connecting to " + target() + " (timeout " + seconds_text(options_.timeout) + ")");
    if (std::string why = conn_.open(options_.target, options_.timeout); !why.empty()) {
      log(why);
      return unknown(why, {"Check the host and port, and that this machine may connect to it "
                           "(firewall, port 25 blocked by the provider)."});
    }
    connected_ = true;
    log("connected to " + conn_.peer());

    auto greeting = read("greeting");
    if (!greeting) return;
    if (greeting->code != 220) {
      return unknown("the server did not greet with 220 (" + describe(*greeting) + ")",
                     {"It refuses this client or is not accepting mail now; probe it from "
                      "a host it accepts mail from, or later."});
    }

    std::string domain = options_.domain;
    if (domain.empty() && !options_.rcpt.empty()) {
      domain = lower(options_.rcpt.substr(options_.rcpt.rfind('@') + 1));
    }
    if (domain.empty()) domain = greeting_domain(*greeting);
    if (domain.empty() && is_domain_name(options_.target.host)) {
      domain = lower(options_.target.host);
    }
    if (domain.empty()) {
      return unknown("no domain to test: the greeting names none",
                     {"Give --domain DOMAIN: a domain this server receives mail for."});
    }
    result_.domain = domain;

    std::string helo = options_.helo;
    if (helo.empty()) helo = local_fqdn();
    if (helo.empty()) helo = conn_.local_literal();
    auto ehlo = command("EHLO " + helo);
    if (!ehlo) return;
    if (ehlo->code != 250) {
      if (ehlo->first_digit() != 5) return refused("EHLO " + helo, *ehlo, "give --helo NAME");
      auto h = command("HELO " + helo);
      if (!h) return;
      if (h->code != 250) return refused("HELO " + helo, *h, "give --helo NAME");
    }

    std::string from = options_.from.empty() ? "postmaster@" + helo : options_.from;
    auto mail = command("MAIL FROM:<" + from + ">");
    if (!mail) return;
    mail_sent_ = true;
    if (mail->first_digit() != 2) {
      return refused("MAIL FROM:<" + from + ">", *mail,
                     "give --from ADDRESS with an address of yours it accepts");
    }

    std::string control = "postmaster@" + domain;
    auto c = command("RCPT TO:<" + control + ">");
    if (!c) return;
    if (c->first_digit() == 5) {
      return unknown(
          "the server refused <" + control + "> (" + describe(*c) +
              "), so it does not take mail for " + domain + " here",
          {"Every domain must accept postmaster (RFC 5321 §4.5.1). Give --domain DOMAIN: a "
           "domain this server receives mail for."});
    }
    if (c->first_digit() != 2) {
      return unknown(
          "no usable answer for the control recipient <" + control + "> (" + describe(*c) + ")",
          {"A 4xx is a temporary failure or greylisting: try again later."});
    }

    std::string rcpt =
        options_.rcpt.empty() ? random_probe_local_part() + "@" + domain : options_.rcpt;
    result_.rcpt = rcpt;
    auto r = command("RCPT TO:<" + rcpt + ">");
    if (!r) return;
    if (r->first_digit() == 5) return safe(rcpt, *r);
    if (r->first_digit() == 2) return vulnerable(rcpt, *r);
    unknown("temporary answer for the unknown recipient <" + rcpt + "> (" + describe(*r) + ")",
            {"A 4xx is greylisting or a temporary failure, not a verdict. Greylisting is per "
             "recipient: run again with a fixed --rcpt ADDRESS (one that does not exist) after "
             "the greylisting delay."});
  }

  // RSET (when a transaction was started) and QUIT, when the connection is still sane.
  void finish() {
    if (!connected_ || broken_) return;
    if (mail_sent_) {
      if (!command("RSET")) return;
    }
    command("QUIT");
  }

 private:
  std::optional<SmtpReply> read(const std::string& what) {
    std::string why;
    auto reply = conn_.read_reply(parser_, options_.timeout, &why);
    if (!reply) {
      broken_ = true;
      log(why);
      if (result_.summary.empty()) unknown(what + ": " + why, {});
      return std::nullopt;
    }
    for (size_t i = 0; i < reply->lines.size(); ++i) {
      bool last = i + 1 == reply->lines.size();
      log("S: " + std::to_string(reply->code) + (last ? " " : "-") + printable(reply->lines[i]));
    }
    if (reply->code == 421) broken_ = true;  // the server is closing the connection
    return reply;
  }

  std::optional<SmtpReply> command(const std::string& line) {
    if (broken_) return std::nullopt;
    if (!parser_.error().empty()) {
      broken_ = true;
      log("malformed reply: " + parser_.error());
      if (result_.summary.empty()) unknown("malformed reply: " + parser_.error(), {});
      return std::nullopt;
    }
    if (parser_.buffered() > 0) {
      broken_ = true;
      log("the server sent more than it was asked for");
      if (result_.summary.empty()) {
        unknown("the server sent replies out of turn (before " + line + ")", {});
      }
      return std::nullopt;
    }
    log("C: " + line);
    if (std::string why = conn_.send_line(line, options_.timeout); !why.empty()) {
      broken_ = true;
      log(why);
      if (result_.summary.empty()) unknown(line + ": " + why, {});
      return std::nullopt;
    }
    return read(line);
  }

  static std::string describe(const SmtpReply& r) {
    return std::to_string(r.code) + " " + printable(r.text());
  }

  void refused(const std::string& cmd, const SmtpReply& r, const std::string& hint) {
    std::string what = r.first_digit() == 4 ? "temporarily refused " : "refused ";
    unknown("the server " + what + cmd + " (" + describe(r) + ")",
            {"The test needs the transaction to reach RCPT: " + hint + "."});
  }

  void unknown(const std::string& why, std::vector<std::string> advice) {
    if (!result_.summary.empty()) return;
    result_.verdict = ProbeVerdict::unknown;
    result_.summary = target() + ": could not tell: " + why;
    result_.advice = std::move(advice);
  }

  void safe(const std::string& rcpt, const SmtpReply& r) {
    result_.verdict = ProbeVerdict::safe;
    result_.summary = target() + " refuses unknown recipients in the SMTP dialogue: safe (<" +
                      rcpt + ">: " + describe(r) + ")";
    result_.advice = {
        "It accepted postmaster@" + result_.domain + " and refused the unknown <" + rcpt +
            "> before DATA, so it does not accept mail it would bounce later.",
        "Probe every MX of " + result_.domain +
            ", backup MXes too: a backup MX without the list of valid recipients is the usual "
            "backscatter source."};
  }

  void vulnerable(const std::string& rcpt, const SmtpReply& r) {
    const std::string& d = result_.domain;
    result_.verdict = ProbeVerdict::vulnerable;
    result_.summary = target() + " accepts mail for the unknown recipient <" + rcpt +
                      ">: vulnerable, a backscatter source (" + describe(r) + ")";
    result_.advice = {
        "A server that accepts mail for a recipient that does not exist must bounce it later, "
        "to the envelope sender; spammers forge that sender, so the bounce goes to an innocent "
        "third party (backscatter), and lists such as ips.backscatterer.org list the server.",
        "Fix: refuse unknown recipients during the SMTP dialogue (550 5.1.1). Give the server "
        "the list of valid recipients. Postfix: local_recipient_maps for local domains (keep "
        "its default), relay_recipient_maps for relay_domains, virtual_mailbox_maps or "
        "virtual_alias_maps for virtual domains, and smtpd_reject_unlisted_recipient = yes "
        "(the default). Exim: verify = recipient in the RCPT ACL. Or let spamward refuse them: "
        "[recipients] valid (docs/configuration.md).",
        "A backup MX needs the same list (or recipient verification, Postfix "
        "reject_unverified_recipient); without it, it accepts what the primary refuses and "
        "bounces it.",
        "If " + d +
            " has a deliberate catch-all mailbox (every address is delivered), this is not "
            "backscatter, but it invites dictionary spam: every guessed address gets delivered.",
        "A server that refuses such mail only after DATA does not bounce either; this probe "
        "never sends DATA, so it cannot see that."};
  }

  const ProbeOptions& options_;
  ProbeResult& result_;
  SmtpReplyParser parser_;
  Connection conn_;
  bool connected_ = false;
  bool broken_ = false;
  bool mail_sent_ = false;
};

}  // namespace

ProbeResult run_backscatter_probe(const ProbeOptions& options) {
  ProbeResult result;
  for (auto [value, kind, name] :
       {std::tuple{&options.domain, "domain", "--domain"},
        std::tuple{&options.rcpt, "address", "--rcpt"}, std::tuple{&options.helo, "helo", "--helo"},
        std::tuple{&options.from, "address", "--from"}}) {
    if (value->empty()) continue;
    if (std::string why = smtp_argument_problem(*value, kind); !why.empty()) {
      result.summary = std::string(name) + " " + printable(*value) + ": " + why;
      return result;
    }
  }
  Dialogue dialogue(options, result);
  dialogue.run();
  dialogue.finish();
  return result;
}

}  // namespace spamward::cli
