// The Sendmail milter protocol, version 6 (as Sendmail 8.14+ and Postfix 2.6+ speak it), without
// I/O: an incremental frame reader with hard limits, command decoding, option negotiation, the
// mapping of MTA facts (connect data, macros) to a Transaction, the reconstruction of header
// lines for the message parser, and the encoding of every reply spamward sends, including the
// translation of a Verdict per DESIGN §3.5 (milter column).
//
// Wire format (both directions): a frame is a 4-byte big-endian length, then that many bytes:
// one command (MTA -> filter, SMFIC_*) or reply (filter -> MTA, SMFIR_*) code and its data.
// Strings in the data are NUL-terminated; numbers are 32-bit big-endian (ports 16-bit).
//
// Contract:
// - Nothing here trusts its input: decoders return nullopt for malformed data (a missing NUL,
//   a short number), never read past the data, and never throw.
// - MilterFrameReader refuses a length of 0 and a length over `max_frame` as soon as the
//   4 length bytes are in, before buffering anything; a frame of at least 64 KiB is always
//   accepted (Postfix sends 65,535-byte body chunks; Sendmail with SMFIP_MDS_1M up to 1 MiB).
// - Reply texts (SMFIR_REPLYCODE, header values) are sanitised: control characters become
//   spaces, '%' is doubled (Sendmail uses the text as a format string; Postfix undoes the
//   doubling), and a reply line is cut at kMaxMilterReplyText bytes on a UTF-8 boundary.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/verdict.h"
#include "engine/transaction.h"

namespace spamward {

namespace milter {

// Commands (MTA -> filter).
inline constexpr char kAbort = 'A';
inline constexpr char kBody = 'B';
inline constexpr char kConnect = 'C';
inline constexpr char kMacro = 'D';
inline constexpr char kBodyEob = 'E';
inline constexpr char kHelo = 'H';
inline constexpr char kQuitNc = 'K';
inline constexpr char kHeader = 'L';
inline constexpr char kMail = 'M';
inline constexpr char kEoh = 'N';
inline constexpr char kOptneg = 'O';
inline constexpr char kQuit = 'Q';
inline constexpr char kRcpt = 'R';
inline constexpr char kData = 'T';
inline constexpr char kUnknown = 'U';

// Replies (filter -> MTA).
inline constexpr char kReplyAccept = 'a';
inline constexpr char kReplyContinue = 'c';
inline constexpr char kReplyReject = 'r';
inline constexpr char kReplyTempfail = 't';
inline constexpr char kReplySkip = 's';
inline constexpr char kReplyCode = 'y';
inline constexpr char kReplyAddHeader = 'h';
inline constexpr char kReplyChangeHeader = 'm';
inline constexpr char kReplyChangeFrom = 'e';  // SMFIR_CHGFROM: new envelope sender
inline constexpr char kReplyOptneg = 'O';

// Actions the filter may take (SMFIF_*), offered by the MTA, requested by the filter.
inline constexpr uint32_t kActAddHeaders = 0x01;
inline constexpr uint32_t kActChangeHeaders = 0x10;
inline constexpr uint32_t kActChangeFrom = 0x40;  // SMFIF_CHGFROM (version 6)
inline constexpr uint32_t kActSetSymList = 0x100;

// Protocol steps (SMFIP_*). The NO* bits are events the filter asks the MTA to leave out
// (spamward wants every event); the NR_* bits are events it will not reply to. spamward asks for
// no reply to CONNECT, HELO, UNKNOWN, each header and end of headers, where it always continues
// (a refusal decided at CONNECT or HELO is answered at MAIL): a message then costs about 5
// round trips instead of one per header field.
inline constexpr uint32_t kProtoNoReplyHeader = 0x80;        // SMFIP_NR_HDR
inline constexpr uint32_t kProtoSkip = 0x400;                // the MTA understands SMFIR_SKIP
inline constexpr uint32_t kProtoNoReplyConnect = 0x1000;     // SMFIP_NR_CONN
inline constexpr uint32_t kProtoNoReplyHelo = 0x2000;        // SMFIP_NR_HELO
inline constexpr uint32_t kProtoNoReplyUnknown = 0x20000;    // SMFIP_NR_UNKN
inline constexpr uint32_t kProtoNoReplyEoh = 0x40000;        // SMFIP_NR_EOH
inline constexpr uint32_t kProtoHeaderLeadSpace = 0x100000;  // header values keep their space
inline constexpr uint32_t kProtoNoReplyWanted = kProtoNoReplyHeader | kProtoNoReplyConnect |
                                                kProtoNoReplyHelo | kProtoNoReplyUnknown |
                                                kProtoNoReplyEoh;

// Macro stages of the negotiation's macro lists (SMFIM_*).
inline constexpr uint32_t kMacroConnect = 0;
inline constexpr uint32_t kMacroHelo = 1;
inline constexpr uint32_t kMacroEnvFrom = 2;
inline constexpr uint32_t kMacroEnvRcpt = 3;
inline constexpr uint32_t kMacroData = 4;
inline constexpr uint32_t kMacroEom = 5;
inline constexpr uint32_t kMacroEoh = 6;

inline constexpr uint32_t kVersion = 6;     // the highest protocol version spamward speaks
inline constexpr uint32_t kMinVersion = 2;  // Postfix's milter_protocol = 2 is the oldest

}  // namespace milter

// Frame sizes are the length field: the command byte plus its data.
inline constexpr size_t kMinMilterFrame = 64 * 1024 + 1;   // a 64 KiB body chunk: always accepted
inline constexpr size_t kDefaultMaxMilterFrame = 1 << 20;  // 1 MiB
inline constexpr size_t kMaxMilterReplyText = 480;         // bytes of reply text after the code

enum class MilterError {
  none,
  frame_too_large,     // length field over max_frame
  empty_frame,         // length field 0 (no command byte)
  bad_negotiation,     // SMFIC_OPTNEG malformed, or a version older than 2
  malformed_command,   // a command's data does not parse (missing NUL, short number)
  unknown_command,     // a command code this protocol version does not define
  unexpected_command,  // a command before option negotiation
};

// Stable snake_case names: the `reason` label of spamward_protocol_errors_total{server="milter"}.
std::string_view to_string(MilterError e);

// Incremental frame reader: feed it bytes as they arrive; it stops at the end of each frame.
class MilterFrameReader {
 public:
  enum class Status { incomplete, complete, error };

  // `max_frame` is raised to kMinMilterFrame when lower: 64 KiB body chunks must pass.
  explicit MilterFrameReader(size_t max_frame = kDefaultMaxMilterFrame);

  // Consumes a prefix of `bytes`; returns how many bytes it used. Stops right after a complete
  // frame or at an error; feeding again then does nothing until next().
  size_t feed(std::string_view bytes);

  Status status() const { return status_; }
  MilterError error() const { return error_; }
  size_t max_frame() const { return max_frame_; }
  // The frame's length field (valid once 4 bytes are in; for error messages).
  uint32_t declared_length() const { return length_; }
  // Valid when complete: the command code and its data (until next()).
  char command() const { return frame_.empty() ? '\0' : frame_[0]; }
  std::string_view data() const;
  // True once any byte of the current frame has arrived.
  bool started() const { return header_fill_ > 0; }

  // Prepares for the next frame, keeping buffer capacity (and clears an error).
  void next();

 private:
  size_t max_frame_;
  Status status_ = Status::incomplete;
  MilterError error_ = MilterError::none;
  unsigned char header_[4] = {};
  size_t header_fill_ = 0;
  uint32_t length_ = 0;
  std::string frame_;  // command byte + data
};

// ---------------------------------------------------------------------------------------------
// Command decoding. Every view points into the frame data given.

struct MilterOptneg {
  uint32_t version = 0;
  uint32_t actions = 0;
  uint32_t protocol = 0;
};
std::optional<MilterOptneg> decode_optneg(std::string_view data);

struct MilterConnect {
  std::string_view hostname;  // "[192.0.2.1]" (bracketed) when the MTA has no verified name
  char family = 'U';          // '4', '6', 'L' (unix), 'U' (unknown: no port or address follow)
  uint16_t port = 0;
  std::string_view address;  // "192.0.2.1", "2001:db8::1" (an "IPv6:" prefix is tolerated)
};
std::optional<MilterConnect> decode_connect(std::string_view data);

// SMFIC_MACRO: the command code the macros belong to, then name/value pairs.
struct MilterMacroFrame {
  char stage = '\0';
  std::vector<std::pair<std::string_view, std::string_view>> macros;
};
std::optional<MilterMacroFrame> decode_macros(std::string_view data);

// A sequence of NUL-terminated strings (HELO, MAIL, RCPT with ESMTP arguments, UNKNOWN). At
// least one string; a missing final NUL is malformed.
std::optional<std::vector<std::string_view>> decode_strings(std::string_view data);

struct MilterHeader {
  std::string_view name;
  std::string_view value;
};
std::optional<MilterHeader> decode_header(std::string_view data);

// ---------------------------------------------------------------------------------------------
// Negotiation

struct MilterNegotiated {
  uint32_t version = 0;        // min(MTA's, 6)
  uint32_t actions = 0;        // what spamward requests of the offered actions
  uint32_t protocol = 0;       // the protocol bits spamward asks for (SKIP, HDR_LEADSPC if offered)
  bool skip = false;           // SMFIR_SKIP may be sent
  bool leading_space = false;  // header values carry (and must carry) their leading space
  bool add_headers = false;    // SMFIR_ADDHEADER allowed
  bool change_headers = false;  // SMFIR_CHGHEADER allowed
  bool change_from = false;     // SMFIR_CHGFROM allowed (BATV signing)
  bool macro_lists = false;     // the reply carries spamward's macro lists
  uint32_t no_reply = 0;        // the NR_* bits agreed (offered by the MTA, version 6)

  // False for a command the MTA does not wait for a reply to (an agreed NR_* bit).
  bool replies_to(char command) const;
};

// Decides the reply to the MTA's offer; nullopt when the version is older than 2.
// `want_change_from` (BATV signing is configured): also request SMFIF_CHGFROM when the MTA
// offers it at version 6; otherwise spamward never asks for it.
std::optional<MilterNegotiated> negotiate(const MilterOptneg& offer, bool want_change_from = false);

// The macro names spamward asks for per macro stage (SMFIM_*), space-separated. Postfix then
// sends exactly these (and omits the ones it does not know); without the lists (Sendmail
// without SMFIF_SETSYMLIST) the MTA's configured macros arrive instead.
const std::vector<std::pair<uint32_t, std::string_view>>& requested_macro_lists();

// The SMFIC_OPTNEG reply frame.
void append_optneg_reply(std::string& out, const MilterNegotiated& n);

// ---------------------------------------------------------------------------------------------
// Macros and transaction facts

// The macros received so far, by the stage (command code) they were sent for. Names are kept
// without braces ("{daemon_addr}" -> "daemon_addr"; "i" stays "i").
class MilterMacros {
 public:
  void set(const MilterMacroFrame& frame);
  // The newest value of `name` (with or without braces) from any stage, or nullopt.
  std::optional<std::string_view> get(std::string_view name) const;
  // Forgets the macros of MAIL and later stages (a transaction ended: abort, new MAIL).
  void clear_transaction();
  void clear();

 private:
  // By stage command code: connect, helo, mail, rcpt, data, eoh, eom (later stages win).
  std::map<int, std::map<std::string, std::string, std::less<>>> by_stage_;
  static int rank(char stage);
};

// Limits on what a connection may store in macros (a hostile MTA cannot grow memory).
inline constexpr size_t kMaxMacrosPerStage = 64;
inline constexpr size_t kMaxMacroValue = 1024;

// Fills the client facts of `tx` from the connect data and the macros (DESIGN §3.5 "Where client
// facts come from"):
//   client_address      <- the connect address (family 4 or 6; "IPv6:" prefix stripped)
//   client_name         <- {client_name} when given (Postfix: the verified name or "unknown");
//                          else the connect hostname unless bracketed ("[1.2.3.4]": unknown,
//                          left empty so the rDNS check looks it up). With Sendmail's
//                          {client_resolve}: OK keeps the hostname, FORGED and FAIL give
//                          "unknown", TEMP leaves it empty.
//   reverse_client_name <- {client_ptr} when given; with {client_resolve} FORGED the hostname,
//                          FAIL "unknown"
//   server_address/port <- {daemon_addr} (or {if_addr}), {daemon_port}
void apply_connect_facts(const MilterConnect& connect, const MilterMacros& macros, Transaction& tx);
// Envelope facts available from MAIL on: queue id (macro i), {auth_authen}.
void apply_envelope_macros(const MilterMacros& macros, Transaction& tx);

// "<a@b>" -> "a@b"; "<>" -> "" (a bounce). Surrounding spaces are dropped.
std::string strip_angle_brackets(std::string_view address);
// The SIZE=n ESMTP argument of MAIL, or 0.
int64_t declared_size(const std::vector<std::string_view>& mail_args);

// The header line as the message parser wants it: "Name: value\r\n" (or "Name:value\r\n" when
// the value kept its leading space, SMFIP_HDR_LEADSPC). The value's bytes are kept; bare LF
// (Postfix and Sendmail send folded lines joined by "\n") becomes CRLF. A CR or LF in the name
// (no MTA sends one) becomes a space.
std::string header_line(std::string_view name, std::string_view value, bool leading_space);

// Remembers the incoming X-Spam-* and X-Spamward-* header fields, per name (case-insensitive),
// so they can be deleted by index before spamward adds its own (DESIGN §3.5 Headers).
class SpamHeaderTracker {
 public:
  static bool is_spam_header(std::string_view name);
  // Counts one incoming header field (only X-Spam-*/X-Spamward-* names are counted).
  void observe(std::string_view name);
  // SMFIR_CHGHEADER frames with an empty value, one per counted field, highest index first
  // per name (so a deletion never shifts the index of a later one).
  void append_deletions(std::string& out) const;
  size_t count() const { return total_; }
  bool overflowed() const { return overflowed_; }  // more distinct names than kMaxNames
  void clear();

  static constexpr size_t kMaxNames = 64;

 private:
  struct Entry {
    std::string name;  // as first seen
    uint32_t count = 0;
  };
  std::map<std::string, Entry, std::less<>> by_lower_name_;
  size_t total_ = 0;
  bool overflowed_ = false;
};

// Remembers the incoming Authentication-Results fields (RFC 8601) with the authserv-id each
// names, by index, so that the ones carrying our own authserv-id can be deleted before
// spamward adds its own (RFC 8601 §5); fields with other authserv-ids stay. At most
// kMaxFields are remembered; later ones are never deleted.
class AuthResultsTracker {
 public:
  static constexpr std::string_view kName = "Authentication-Results";
  static constexpr size_t kMaxFields = 256;
  // Counts one incoming header field (only Authentication-Results, case-insensitive).
  void observe(std::string_view name, std::string_view value);
  // SMFIR_CHGHEADER frames with an empty value, one per remembered field whose authserv-id
  // equals `authserv_id` (case-insensitive), highest index first. Returns how many.
  size_t append_deletions(std::string& out, std::string_view authserv_id) const;
  size_t count() const { return ids_.size(); }
  void clear();

 private:
  std::string name_;              // as first seen
  std::vector<std::string> ids_;  // the authserv-id of field i + 1
};

// ---------------------------------------------------------------------------------------------
// Replies

void append_frame(std::string& out, char code, std::string_view data = {});
// SMFIR_REPLYCODE "CODE ENHANCED TEXT" (TEXT sanitised as described above).
void append_reply_code(std::string& out, std::string_view code, std::string_view enhanced,
                       std::string_view text);
void append_add_header(std::string& out, std::string_view name, std::string_view value,
                       bool leading_space);
void append_change_header(std::string& out, uint32_t index, std::string_view name,
                          std::string_view value, bool leading_space);
// SMFIR_CHGFROM: the new envelope sender as "<address>", without ESMTP arguments. An address
// with a NUL, CR or LF (never one spamward made) appends nothing and returns false.
bool append_change_from(std::string& out, std::string_view address);

// The refusal for a verdict per DESIGN §3.5, appended as one SMFIR_REPLYCODE frame, when
// `verdict.applied` refuses at `stage`; returns false (appending nothing) when the MTA should
// go on. A dry-run verdict never refuses (`applied` says so).
//   greylist   -> 451 4.7.1 TEXT, only at DATA and end of message: at RCPT it returns false, so
//                 that the whole message is deferred once at DATA (the Engine keeps the
//                 deferral in the EvaluationState); before RCPT greylisting does not occur
//   tempfail   -> 450 4.7.1 TEXT (a ban, or a capped reject)
//   reject     -> 550 5.7.1 TEXT; a permanent ban 554 5.7.1; an unknown recipient 550 5.1.1
// TEXT is verdict.reply_text, else a default built from verdict.reason.
bool append_refusal(const Verdict& verdict, Stage stage, std::string& out);

// The end-of-message header edits for an accepted message: deletions of the incoming
// X-Spam-*/X-Spamward-* fields (when CHGHEADER was negotiated), then (when ADDHEADER was)
//   X-Spam-Flag: YES          when verdict.applied is tag
//   X-Spam-Score: 4.50
//   X-Spamward-Symbols: RBL_EXAMPLE(3.00), HELO_BARE_IP(1.50)   ("none" when there are none;
//                        long lists are folded)
// `verdict` null (the engine failed: fail open) adds nothing, but still deletes.
void append_eom_edits(const Verdict* verdict, const SpamHeaderTracker& incoming,
                      const MilterNegotiated& n, std::string& out);

// The Authentication-Results edits of an accepted message when [headers]
// authentication_results is on (`authserv_id` non-empty; the caller leaves trusted clients
// out): deletions of the incoming fields carrying `authserv_id` (when CHGHEADER was
// negotiated), then, when ADDHEADER was and `value` is not empty (the caller renders it with
// auth/authentication_results.h; empty when the engine failed),
//   Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=example.net; ...
// folded past 78 columns.
void append_authentication_results_edits(const AuthResultsTracker& incoming,
                                         std::string_view authserv_id, std::string_view value,
                                         const MilterNegotiated& n, std::string& out);

// The value of X-Spamward-Symbols for a verdict (unfolded; for tests and logs).
std::string symbols_header_value(const Verdict& verdict);

}  // namespace spamward
