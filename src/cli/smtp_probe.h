// `spamward probe backscatter HOST[:PORT]` (DESIGN §3.2): an SMTP client that tells whether a
// server accepts mail for a recipient that does not exist. A server that accepts such mail and
// bounces it later sends the bounce to whatever sender the spammer forged: backscatter.
//
// The dialogue: connect, expect 220; EHLO (HELO when EHLO is refused); MAIL FROM:<from>; a
// control RCPT TO:<postmaster@domain> (RFC 5321 §4.5.1 requires every domain to accept it, so a
// refusal means this server does not take mail for `domain`); RCPT TO:<unknown recipient>;
// then RSET and QUIT. It never sends DATA, so it never sends a message.
//
// Verdict from the unknown recipient's reply: 5xx safe, 2xx vulnerable, anything else (4xx,
// greylisting, a refused control, a bad greeting, a timeout, a closed connection, a malformed
// reply) unknown. ProbeVerdict's value is the process exit code: 0, 1, 2.
//
// Limits: every reply line is at most SmtpReplyLimits::max_line_bytes (CRLF included), a reply
// has at most max_lines lines, and the connect and every reply wait at most
// ProbeOptions::timeout. Server input that breaks a limit or the reply syntax ends the probe
// with "unknown"; nothing the server sends can make it allocate without bound or hang.
//
// Blocking POSIX sockets with poll() for the timeouts; no shell, no threads. The host name is
// resolved with getaddrinfo(), which has the system resolver's own timeouts.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace spamward::cli {

// ---------------------------------------------------------------------------------------
// SMTP replies (RFC 5321 §4.2)

struct SmtpReplyLimits {
  size_t max_line_bytes = 2000;  // one reply line, its CRLF included
  size_t max_lines = 100;        // lines of one (multi-line) reply
};

struct SmtpReply {
  int code = 0;                    // 200..559: first digit 2-5, second 0-5
  std::vector<std::string> lines;  // the text of each line, after the code and '-' or ' '
  int first_digit() const { return code / 100; }
  // All lines joined with " / ", for one-line messages (control bytes not yet escaped).
  std::string text() const;
};

// Incremental parser: feed() what the socket gave, next() the complete replies in order.
// A line ends with CRLF (a bare LF is accepted too, a CR alone is not a line end). A line is
// "CODE-text" (more lines follow), "CODE text" or "CODE" (the last line); every line of a reply
// carries the same code. NUL bytes, a CR inside a line, a bad code, a line over
// max_line_bytes or a reply of more than max_lines lines are errors: error() says which, and it
// sticks: next() still returns the replies completed before the bad line, then nothing more,
// and feed() ignores its input. So how the bytes are split never changes the result. Besides
// the replies not yet taken, the parser holds at most (max_line_bytes + 6) * (max_lines + 1)
// bytes, whatever is fed.
class SmtpReplyParser {
 public:
  explicit SmtpReplyParser(SmtpReplyLimits limits = {}) : limits_(limits) {}
  void feed(std::string_view bytes);
  bool next(SmtpReply& out);
  const std::string& error() const { return error_; }
  // Bytes received but not yet returned by next(): a partial line, or complete lines of a
  // reply that is not complete yet, or replies not yet taken.
  size_t buffered() const;

 private:
  void fail(std::string why);
  void line_done();  // raw_ holds one line with its LF: add it to the reply being built

  SmtpReplyLimits limits_;
  std::string raw_;                 // bytes of the line not yet complete
  SmtpReply building_;              // the reply whose lines have been seen so far
  std::deque<SmtpReply> complete_;  // replies ready for next()
  std::string error_;
};

// One reply line's text made safe for a terminal: control bytes and bytes over 0x7e become
// \xNN, and it is cut at max_chars with "...".
std::string printable(std::string_view text, size_t max_chars = 200);

// ---------------------------------------------------------------------------------------
// HOST[:PORT]

struct HostPort {
  std::string host;  // a name, an IPv4 address or an IPv6 address (no brackets)
  uint16_t port = 25;
};

// "host", "host:port", "192.0.2.1:25", "[2001:db8::1]:25", "[::1]", and a bare IPv6 address
// ("2001:db8::1", port 25). nullopt with `error` set for anything else (empty host, a port
// that is not 1-65535, stray brackets, spaces or control bytes).
std::optional<HostPort> parse_host_port(std::string_view text, std::string* error);

// ---------------------------------------------------------------------------------------
// The probe

enum class ProbeVerdict { safe = 0, vulnerable = 1, unknown = 2 };

struct ProbeOptions {
  HostPort target;
  // The domain whose unknown recipient is tried. Empty: the host name the server gives in its
  // 220 greeting ("220 mx.example.org ESMTP" -> mx.example.org), else the target host when it
  // is a name; when neither is a domain name the probe ends "unknown" and asks for --domain.
  std::string domain;
  // The nonexistent recipient. Empty: spamward-probe-<12 random hex digits>@domain.
  std::string rcpt;
  // EHLO/HELO name. Empty: this machine's host name when it is fully qualified, else the
  // address literal of the local end of the connection ("[192.0.2.1]", "[IPv6:2001:db8::1]").
  std::string helo;
  // MAIL FROM. Empty: postmaster@<helo name>. Not the null sender <>: many servers treat
  // bounces differently (BATV checks, stricter recipient checks), which would skew the test.
  std::string from;
  std::chrono::milliseconds timeout{30000};  // connect, and every reply
  SmtpReplyLimits limits;
  // Called with each transcript line as it happens: "connected to ...", "C: EHLO ...",
  // "S: 250 ...". May be empty.
  std::function<void(const std::string&)> trace;
};

struct ProbeResult {
  ProbeVerdict verdict = ProbeVerdict::unknown;
  std::string summary;              // the one-line verdict
  std::vector<std::string> advice;  // what it means and what to do, one paragraph a line
  std::vector<std::string> transcript;
  std::string domain, rcpt;  // what was used (empty when the probe ended before)
};

// Why an option value cannot go into an SMTP command, or "" when it can. `kind` is "domain",
// "address" (local@domain, no angle brackets) or "helo" (a domain or an address literal).
// Refused: empty, over 255 bytes, spaces, control bytes, bytes over 0x7e, '<' and '>'.
std::string smtp_argument_problem(std::string_view value, std::string_view kind);

// Runs the dialogue above. Never throws for anything the network or the server does; the
// options must have passed smtp_argument_problem() (the command checks them; a bad one is
// reported as unknown here).
ProbeResult run_backscatter_probe(const ProbeOptions& options);

// "spamward-probe-" + 12 random lower-case hex digits.
std::string random_probe_local_part();

}  // namespace spamward::cli
