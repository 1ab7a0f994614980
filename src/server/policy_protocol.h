// The Postfix SMTP access policy delegation protocol (Postfix SMTPD_POLICY_README), without I/O:
// an incremental request parser with hard limits, the mapping of a request to a Transaction,
// and the reply for a Verdict (DESIGN §3.5, policy column).
//
// Wire format: a request is a sequence of "name=value" lines ended by an empty line; the reply
// is one "action=..." line, also ended by an empty line. Many requests share one connection.
//
// Everything here is pure and allocation-frugal: a PolicyParser keeps its buffers between
// requests, so a long-lived connection parses without allocating once warmed up.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/verdict.h"
#include "engine/transaction.h"

namespace spamward {

// Bounds on one request. Postfix 3.x sends about 31 attributes and well under 2 KiB in all;
// the defaults leave room for long certificate subjects and future attributes while keeping a
// hostile client's cost per connection small.
struct PolicyParserLimits {
  size_t max_line = 2048;            // bytes of one attribute line, without its "\n" or "\r\n"
  size_t max_attributes = 64;        // lines per request (duplicates count)
  size_t max_request_bytes = 16384;  // bytes of one request including line ends
};

enum class PolicyError {
  none,
  line_too_long,        // a line is longer than max_line
  too_many_attributes,  // more than max_attributes lines
  missing_equals,       // a non-empty line without '='
  empty_name,           // a line starting with '='
  request_too_big,      // more than max_request_bytes before the empty line
  nul_byte,             // a NUL byte anywhere
  empty_request,        // an empty line with no attribute before it
};

// Stable snake_case names, used as the `reason` label of spamward_protocol_errors_total.
std::string_view to_string(PolicyError e);
// A sentence for log lines, e.g. "line longer than 2048 bytes".
std::string describe(PolicyError e, const PolicyParserLimits& limits);

// One parsed request. Views returned by get() point into the request and stay valid until the
// parser that produced it is fed again or reset.
class PolicyRequest {
 public:
  // The value of the last line with this name (Postfix never repeats a name; when a client does,
  // the last value wins). nullopt when absent. Names are matched exactly (Postfix sends them
  // in lower case).
  std::optional<std::string_view> get(std::string_view name) const;
  // get(name) or "" when absent.
  std::string_view value(std::string_view name) const { return get(name).value_or(""); }
  // Number of lines, duplicates included.
  size_t size() const { return fields_.size(); }
  // The i-th line's name and value, in arrival order.
  std::string_view name_at(size_t i) const;
  std::string_view value_at(size_t i) const;

  void clear();
  // Builds a request from text (for tests and callers that already have whole lines); the
  // text is "name=value" lines without the final empty line. No limits apply.
  static PolicyRequest from_lines(std::string_view text);

 private:
  friend class PolicyParser;
  struct Field {
    uint32_t name_offset;
    uint32_t name_size;
    uint32_t value_offset;
    uint32_t value_size;
  };
  std::string text_;  // the request's lines, line ends stripped, back to back
  std::vector<Field> fields_;
};

// Incremental parser: feed it bytes as they arrive; it stops at the end of each request so the
// caller can answer it before the next one (pipelined bytes stay with the caller).
//
// Line ends are "\n"; a "\r" right before it is dropped ("\r\n" tolerated). A value may contain
// '=' (only the first one splits) and any byte except NUL and line ends. Limits are checked as
// bytes arrive, so a 1 MiB line fails after max_line bytes, not after buffering it.
class PolicyParser {
 public:
  enum class Status { incomplete, complete, error };

  explicit PolicyParser(PolicyParserLimits limits = {});

  // Consumes a prefix of `bytes` and returns how many bytes it used. It stops right after the
  // empty line that completes a request (status() == complete) or at the first error
  // (status() == error); in both cases feeding again does nothing until next()/reset().
  size_t feed(std::string_view bytes);

  Status status() const { return status_; }
  PolicyError error() const { return error_; }
  // Valid when status() == complete.
  const PolicyRequest& request() const { return request_; }
  // True once any byte of the current request has arrived (the caller's request timer starts).
  bool started() const { return started_; }

  // After a complete request: prepare for the next one, keeping buffer capacity. Also clears
  // an error (the server closes the connection instead, but tests and fuzzers reuse parsers).
  void next();

  const PolicyParserLimits& limits() const { return limits_; }

 private:
  Status fail(PolicyError e);
  bool finish_line();  // false on error

  PolicyParserLimits limits_;
  PolicyRequest request_;
  Status status_ = Status::incomplete;
  PolicyError error_ = PolicyError::none;
  bool started_ = false;
  size_t request_bytes_ = 0;  // bytes of the current request consumed so far
  size_t line_start_ = 0;     // offset in request_.text_ where the current line begins
};

// Maps a request to the shared transaction model. Every attribute Postfix 3.8 sends is known:
//   request                -> (checked by the server: must be "smtpd_access_policy" if present)
//   protocol_state         -> stage: CONNECT connect, EHLO/HELO helo, MAIL mail, RCPT rcpt,
//                             DATA data, END-OF-MESSAGE eom; VRFY is judged as rcpt (it names
//                             a recipient), ETRN as connect (no envelope). Absent or unknown:
//                             connect, the stage with the fewest checks (fewest refusals).
//   protocol_name          -> protocol
//   helo_name              -> helo
//   queue_id, instance     -> queue_id, instance; id = queue_id if set, else instance
//   sender                 -> sender ("<>" and "<a@b>" unwrapped; empty for bounces)
//   recipient              -> recipient; at data/eom (where Postfix names the recipient only
//                             when there is exactly one) it is also recipients[0]
//   recipient_count, size  -> recipient_count, size (non-numbers: 0)
//   client_address         -> client_address (IpAddress::parse; invalid: absent)
//   client_name, reverse_client_name -> as given, "unknown" included (checks interpret it)
//   sasl_username          -> sasl_username
//   server_address, server_port -> server_address (invalid: absent), server_port
//   sasl_method, sasl_sender, ccert_subject, ccert_issuer, ccert_fingerprint,
//   ccert_pubkey_fingerprint, encryption_protocol, encryption_cipher, encryption_keysize,
//   etrn_domain, stress, policy_context, client_port, compatibility_level, mail_version
//                          -> recognised, not carried: the Transaction has no field for them
//                             and no check needs them (kPolicyAttributes lists them all).
// Unknown attributes are ignored: Postfix adds new ones over time (DESIGN §3.5).
Transaction from_policy_request(const PolicyRequest& request);

// Every attribute name Postfix 3.8 sends in an smtpd_access_policy request.
extern const std::vector<std::string_view> kPolicyAttributes;

// "RCPT" -> rcpt etc. as above; nullopt for an unknown state. Case-insensitive.
std::optional<Stage> parse_protocol_state(std::string_view state);

// The reply line for a verdict at a stage, per DESIGN §3.5 (uses verdict.applied, so dry-run
// replies never refuse):
//   accept                -> action=DUNNO
//   tag                   -> action=DUNNO; at data/eom action=PREPEND X-Spam-Flag: YES
//   greylist              -> action=DEFER_IF_PERMIT 4.7.1 TEXT
//   tempfail              -> action=450 4.7.1 TEXT
//   reject                -> action=REJECT 5.7.1 TEXT; a permanent ban: action=554 5.7.1 TEXT;
//                            an unknown recipient: action=550 5.1.1 TEXT
// TEXT is verdict.reply_text, or a default built from verdict.reason. Control characters
// (CR, LF, ...) become spaces and the line is cut to at most kMaxPolicyReplyLine bytes (at a
// UTF-8 character boundary), so one SMTP reply line stays under 512 bytes.
// The result includes the terminating "\n\n".
std::string format_policy_reply(const Verdict& verdict, Stage stage);
// Same, appended to `out` (lets a connection reuse one buffer).
void append_policy_reply(const Verdict& verdict, Stage stage, std::string& out);

inline constexpr size_t kMaxPolicyReplyLine = 511;  // bytes, without the "\n"
inline constexpr std::string_view kPolicyDunno = "action=DUNNO\n\n";

}  // namespace spamward
