// The SpamAssassin spamc/spamd protocol (SPAMC/1.5), without I/O: an incremental request parser
// with hard limits, and every reply spamward sends, including the translation of a Verdict per
// DESIGN §3.5 (spamd column). Answers follow SpamAssassin's spamd (spamd/spamd.raw) so that
// `spamc` and Exim's `spam =` condition work unchanged.
//
// Wire format. A request is "COMMAND SPAMC/x.y\r\n", header lines "Name: value\r\n", an empty
// line, then the message (Content-length bytes, or up to the client's half-close when the
// header is absent). Protocol 1.0 has no headers: the message follows the request line. PING
// has no message; before protocol 1.5 it has no empty line either. SKIP has nothing after
// the request line. Bare "\n" is accepted for "\r\n" everywhere. One request per connection:
// the server answers and closes, as spamd does.
//
// Replies (spamd's exact shapes; `t` is the tag threshold, DESIGN §3.5):
//   CHECK             SPAMD/1.1 0 EX_OK / Spam: True ; 15.0 / 6.0 / (empty line)
//   SYMBOLS, REPORT,  SPAMD/1.1 0 EX_OK / Content-length: N / Spam: ... / (empty line) / body
//   REPORT_IFSPAM     (before protocol 1.3: no Content-length; REPORT_IFSPAM says Yes/No where
//                     the others say True/False, as spamd does; its body is empty for ham)
//   PROCESS, HEADERS  SPAMD/1.1 0 EX_OK / Content-length: N / Spam: ... / (empty line) / the
//                     message (HEADERS: its header block and the empty line only) with the
//                     incoming X-Spam-* and X-Spamward-* fields removed and ours added
//                     (and Authentication-Results, see SpamdAuthResults)
//                     (before 1.3 there is no Spam: line; before 1.2 no Content-length)
//   PING              SPAMD/1.5 0 PONG
//   TELL              SPAMD/1.1 0 EX_OK / DidSet: local / DidRemove: local / (empty line)
//   an error          SPAMD/1.0 CODE TEXT, one line and no empty line (sysexits codes: 76
//                     EX_PROTOCOL for malformed or over-limit input, 69 EX_UNAVAILABLE for a
//                     refused TELL, 65 EX_DATAERR for a message too large to PROCESS). spamc
//                     then reports a failure (with -x, -c, -L) or passes the message through.
// `Spam:` is True exactly when the verdict's applied action is tag, tempfail or reject
// (greylist and accept: False). A null verdict (the engine failed or there is none: fail
// open) answers False with score 0, and PROCESS removes the incoming X-Spam-* fields but
// adds nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/verdict.h"

namespace spamward {

enum class SpamdCommand {
  check,
  symbols,
  report,
  report_ifspam,
  process,
  headers,
  ping,
  skip,
  tell
};

std::string_view to_string(SpamdCommand c);
// Exact, upper-case command names as spamc sends them; nullopt otherwise.
std::optional<SpamdCommand> parse_spamd_command(std::string_view name);

// sysexits.h codes spamd answers with.
inline constexpr int kSpamdExOk = 0;
inline constexpr int kSpamdExDataErr = 65;
inline constexpr int kSpamdExUnavailable = 69;
inline constexpr int kSpamdExSoftware = 70;
inline constexpr int kSpamdExProtocol = 76;

// Bounds on one request. spamc sends a request line, at most four headers (User,
// Content-length, Compress, and for TELL Message-class, Set or Remove) and the message.
struct SpamdParserLimits {
  size_t max_line = 1024;               // request line and each header line, without the line end
  size_t max_headers = 64;              // header lines
  size_t max_message_bytes = 10485760;  // message bytes kept ([limits] max_message_bytes); the
                                        // rest of a longer message is read and counted only
  uint64_t max_content_length = 256ull << 20;  // a larger declared length is refused (spamc's
                                               // own ceiling is 256 MiB)
};

enum class SpamdError {
  none,
  line_too_long,            // request line or header line over max_line
  too_many_headers,         // more than max_headers header lines
  nul_byte,                 // a NUL byte in the request line or headers
  bad_request_line,         // not "COMMAND SPAMC/x.y"
  unknown_command,          // a command spamd does not know
  bad_header,               // a header line without ':'
  bad_content_length,       // Content-length is not a number
  content_length_too_big,   // Content-length over max_content_length
  content_length_mismatch,  // the client closed before Content-length bytes arrived
  bad_user,                 // control characters in User
  bad_message_class,        // Message-class other than spam or ham
  compression_unsupported,  // Compress: zlib (or anything): not supported by this build
  eof_in_headers,           // the client closed in the middle of the request line or headers
};

// Stable snake_case names, used as the `reason` label of spamward_protocol_errors_total.
std::string_view to_string(SpamdError e);

// One parsed request.
struct SpamdRequest {
  SpamdCommand command = SpamdCommand::check;
  int major = 1;  // SPAMC/major.minor
  int minor = 0;
  std::optional<uint64_t> content_length;
  std::string user;                        // User: (printable bytes only)
  std::optional<bool> message_class_spam;  // Message-class: spam (true) / ham (false)
  bool set_local = false, set_remote = false, remove_local = false, remove_remote = false;
  std::string message;        // the first max_message_bytes bytes of the message
  uint64_t message_size = 0;  // bytes of the message received in total

  bool truncated() const { return message_size > message.size(); }
  bool version_at_least(int maj, int min) const {
    return major > maj || (major == maj && minor >= min);
  }
};

// Incremental parser: feed it bytes as they arrive and feed_eof() when the client half-closes.
// It stops consuming once the request is complete (bytes after a Content-length body are left
// to the caller, which ignores them) or at the first error; limits are checked as bytes arrive.
class SpamdParser {
 public:
  enum class Status { incomplete, complete, error };

  explicit SpamdParser(SpamdParserLimits limits = {});

  // Consumes a prefix of `bytes`; returns how many bytes it used.
  size_t feed(std::string_view bytes);
  // The client closed its sending side: completes a message without Content-length, or fails
  // (content_length_mismatch, eof_in_headers).
  void feed_eof();

  Status status() const { return status_; }
  SpamdError error() const { return error_; }
  // A sentence for the log and the error reply, e.g. "Content-Length mismatch: Expected 20
  // bytes, got 7 bytes" (printable ASCII, bounded).
  const std::string& error_text() const { return error_text_; }
  const SpamdRequest& request() const { return request_; }
  SpamdRequest& request() { return request_; }
  // True once any byte has arrived.
  bool started() const { return started_; }
  const SpamdParserLimits& limits() const { return limits_; }

 private:
  enum class State { request_line, headers, body, done };
  Status fail(SpamdError e, std::string text);
  bool finish_line();  // false on error
  bool request_line(std::string_view line);
  bool header_line(std::string_view line);
  void start_body();
  void complete();

  SpamdParserLimits limits_;
  SpamdRequest request_;
  Status status_ = Status::incomplete;
  SpamdError error_ = SpamdError::none;
  std::string error_text_;
  State state_ = State::request_line;
  bool started_ = false;
  std::string line_;  // the current line, without its line end
  size_t header_count_ = 0;
};

// What a verdict means on the spamd wire.
struct SpamdOutcome {
  bool spam = false;     // applied action is tag, tempfail or reject
  double score = 0.0;    // the verdict's score (0 when failing open)
  double threshold = 0;  // the tag threshold
};
SpamdOutcome spamd_outcome(const Verdict* verdict, double tag_threshold);

// "15.0": one decimal, as spamd prints it, never "-0.0"; rounded towards the verdict's side
// of the threshold, so a client comparing score >= threshold (Exim does) agrees with `spam`.
std::string spamd_score_text(const SpamdOutcome& o);
// The value of the Spam: reply header, e.g. "True ; 15.0 / 6.0" ("Yes"/"No" when yes_no).
std::string spamd_spam_header_value(const SpamdOutcome& o, bool yes_no = false);

// One error line: "SPAMD/1.0 76 Bad header line: (TEXT)\r\n" for EX_PROTOCOL and "SPAMD/1.0 69
// Service Unavailable: TEXT\r\n" for EX_UNAVAILABLE (spamd's wording), "SPAMD/1.0 65
// EX_DATAERR: TEXT\r\n" and "SPAMD/1.0 70 EX_SOFTWARE: TEXT\r\n" for ours. TEXT is made
// printable and cut to 300 bytes.
std::string format_spamd_error(int code, std::string_view text);
// The error reply for a parser error (EX_PROTOCOL with the parser's error text).
std::string format_spamd_error(const SpamdParser& parser);

inline constexpr std::string_view kSpamdPong = "SPAMD/1.5 0 PONG\r\n";

// [headers] authentication_results for PROCESS and HEADERS: the incoming
// Authentication-Results fields whose authserv-id is `authserv_id` (case-insensitive) are
// removed and `value` (unfolded, rendered by auth/authentication_results.h) is added as
// "Authentication-Results: VALUE" after X-Spam-Status, folded past 78 columns. An empty
// authserv_id turns both off (the default, and trusted clients); an empty value adds nothing.
struct SpamdAuthResults {
  std::string authserv_id;
  std::string value;
};

// The reply to CHECK, SYMBOLS, REPORT, REPORT_IFSPAM, PROCESS or HEADERS for `verdict` (null:
// fail open) with the tag threshold `tag_threshold`. PROCESS of a truncated message (over
// max_message_bytes), and HEADERS when the header block itself was cut, answer an EX_DATAERR
// error instead: spamward never returns part of a message (spamc then passes the original
// through unchanged).
std::string format_spamd_reply(const SpamdRequest& request, const Verdict* verdict,
                               double tag_threshold, const SpamdAuthResults& auth_results = {});

// The reply to an accepted TELL.
std::string format_spamd_tell_reply(bool did_set_local, bool did_remove_local);

// The body of SYMBOLS: the symbols' names, sorted, comma-separated, no line end.
std::string spamd_symbols_body(const Verdict* verdict);
// The body of REPORT: a summary sentence, then SpamAssassin's table (" pts rule name
// description", one line per symbol, highest score first; descriptions from the symbol
// reference, with the symbol's detail; wrapped at 78 columns). Lines end with "\n".
std::string spamd_report_body(const Verdict* verdict, const SpamdOutcome& o);

// The message with the incoming X-Spam-* and X-Spamward-* header fields (and their folded
// lines) removed and ours added at the end of the header block, in the message's own line end
// style (the first line's):
//   X-Spam-Flag: YES                 when spam
//   X-Spam-Score: 15.00
//   X-Spamward-Symbols: GTUBE(1000.00), HDR_MISSING_DATE(1.00)   ("none" when none)
//   X-Spam-Status: Yes, score=1000.0 required=6.0 tests=GTUBE,HDR_MISSING_DATE
// (long values are folded). A null verdict adds nothing. headers_only: the header block and
// its empty line only (HEADERS). Every other byte is kept as it was.
// With auth_results (see SpamdAuthResults) the Authentication-Results fields too.
std::string spamd_rewrite_message(std::string_view message, const Verdict* verdict,
                                  const SpamdOutcome& o, bool headers_only,
                                  const SpamdAuthResults& auth_results = {});

// True for X-Spam-* and X-Spamward-* (case-insensitive).
bool is_spamd_owned_header(std::string_view name);

}  // namespace spamward
