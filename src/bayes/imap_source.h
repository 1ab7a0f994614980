// Learning from IMAP folders (`spamward learn-imap`, DESIGN §3.2, [[imap]] in §3.3).
//
// For one [[imap]] account: log in (libcurl: imaps://, or imap:// with STARTTLS required), and
// for each spam and ham folder EXAMINE it (read-only: nothing on the server changes, no \Seen,
// no \Recent lost), read UIDVALIDITY, `UID SEARCH UID <last+1>:*`, then
// `UID FETCH <uid> (RFC822.SIZE BODY.PEEK[]<0.max>)` for each new UID in ascending order and
// hand the raw message to a sink. Progress per (account url, user, folder) is UIDVALIDITY and
// the highest UID handed to the sink, kept in an ImapProgressStore, so a second run fetches only
// mail that arrived since; a changed UIDVALIDITY starts that folder over.
//
// Why not CURLOPT_CUSTOMREQUEST for the commands: libcurl (7.88) passes a custom command's
// untagged lines to the write callback but drops literal data, so FETCH bodies never arrive;
// it reads the response line by line without knowing literal sizes, so a message line that
// starts with "* " or with curl's tag is taken as a response (a spammer could end the command
// early or inject responses); and its fetch-by-URL form (";UID=n") sends BODY[], which sets
// \Seen. So libcurl does what it is good at — connect, TLS and certificate checks, STARTTLS,
// capability and SASL login — with CURLOPT_CONNECT_ONLY, and this file speaks the IMAP commands
// above on that connection (curl_easy_send/recv) with its own parser, which knows literal
// sizes and applies limits.
//
// Everything below the "libcurl" marker is independent of curl and of the network, so it is
// unit-tested and fuzzed: modified UTF-7, command quoting, the response parser, the progress
// rules, and the whole session over an ImapTransport (tests use a scripted fake server).
//
// Errors: ImapError, whose what() is one line that says what and where (account, folder).
// Bad server input (malformed lines, oversized responses, a wrong literal) is an ImapError,
// never a crash or an unbounded allocation.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"

namespace spamward {

class Store;

class ImapError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The server answered a command NO or BAD (e.g. EXAMINE of a folder that does not exist).
// The session stays usable.
class ImapRefused : public ImapError {
 public:
  using ImapError::ImapError;
};

// ---------------------------------------------------------------------------------------
// Names and quoting

// Modified UTF-7 (RFC 3501 §5.1.3) of a UTF-8 mailbox name: 0x20-0x7e stand for themselves
// ("&" is "&-"), everything else is "&" + modified BASE64 of UTF-16BE (',' for '/', no
// padding) + "-". nullopt when `utf8` is not valid UTF-8 (overlong forms, surrogates and
// code points over U+10FFFF are invalid).
std::optional<std::string> imap_utf7_encode(std::string_view utf8);

// The inverse; nullopt for anything that is not canonical modified UTF-7 (bytes outside
// 0x20-0x7e, an unterminated or empty shift, bad BASE64, non-zero padding bits, a lone
// surrogate, an encoded printable ASCII character).
std::optional<std::string> imap_utf7_decode(std::string_view mutf7);

// An IMAP quoted string: `s` in double quotes with '"' and '\' escaped. nullopt when `s`
// cannot be sent as one: CR, LF, NUL or any byte over 0x7f.
std::optional<std::string> imap_quoted(std::string_view s);

// Why a folder name from the config cannot be used, or "" when it can: empty, control
// characters (CR and LF above all: they would end the command), invalid UTF-8.
std::string imap_folder_problem(std::string_view folder);

// The mailbox argument for EXAMINE: modified UTF-7 of `folder`, quoted. Throws ImapError
// (with imap_folder_problem's reason) for a name that cannot be used.
std::string imap_mailbox_argument(std::string_view folder);

// ---------------------------------------------------------------------------------------
// The response parser (framing): bytes from the server -> whole responses.

struct ImapLimits {
  // One response's text outside its literals. A SEARCH over a large folder is one line
  // (a million UIDs take about 8 MB).
  size_t max_line_bytes = size_t{16} << 20;
  // A literal is kept up to this size; the rest is read and dropped, and the response is
  // marked truncated. FETCH asks for at most max_message_bytes, so only a server that ignores
  // the partial range hits this.
  size_t max_literal_bytes = size_t{10} << 20;
  // Literals in one response.
  size_t max_literals = 64;
};

struct ImapResponse {
  enum class Kind { untagged, tagged, continuation };
  Kind kind = Kind::untagged;
  std::string tag;  // tagged: the tag; otherwise empty
  // The response text after "* ", "TAG " or "+ ", without CRLF. Each literal ("{N}" and its
  // N bytes) is replaced by one NUL byte (NUL cannot occur in IMAP text, the parser refuses
  // it), whose data is the next entry of `literals`.
  std::string text;
  std::vector<std::string> literals;
  std::vector<uint64_t> literal_sizes;  // as announced by the server
  bool truncated = false;               // some literal was longer than max_literal_bytes
};

class ImapResponseParser {
 public:
  explicit ImapResponseParser(ImapLimits limits = {}) : limits_(limits) {}

  // Consumes all of `data` (any split). After an error the rest is ignored.
  void feed(std::string_view data);
  // Moves the oldest complete response into `out`; false when none is complete.
  bool next(ImapResponse& out);

  bool failed() const { return !error_.empty(); }
  const std::string& error() const { return error_; }  // one line, "" when none
  // Bytes of an unfinished response held now (for tests: bounded by the limits).
  size_t buffered() const;

 private:
  void fail(std::string why);
  void end_line();

  ImapLimits limits_;
  std::string error_;
  std::string line_;       // current physical line, up to '\n'
  ImapResponse current_;   // the response being assembled
  size_t text_bytes_ = 0;  // text of current_ so far (for max_line_bytes)
  uint64_t literal_left_ = 0;
  bool in_literal_ = false;
  std::vector<ImapResponse> ready_;
  size_t ready_head_ = 0;
};

// Tokens of a response text, for the few shapes read below.
struct ImapToken {
  enum class Type { atom, number, quoted, literal, nil, lparen, rparen, end };
  Type type = Type::end;
  std::string value;    // atom (with any [section] and <partial>), quoted (unescaped), literal data
  uint64_t number = 0;  // number: its value
  size_t literal_index = 0;  // literal: its index in ImapResponse::literals
};

class ImapTokenizer {
 public:
  explicit ImapTokenizer(const ImapResponse& r) : r_(r) {}
  // The next token; throws ImapError on malformed text. Consumes one space before the token.
  ImapToken next();
  // Skips one value (an nstring, number, atom or a balanced parenthesised list).
  void skip_value(const ImapToken& first);
  // The rest of the text from here (for status texts).
  std::string_view rest() const;

 private:
  const ImapResponse& r_;
  size_t pos_ = 0;
  size_t literal_ = 0;
  int depth_ = 0;
};

// Tagged and untagged status responses: "OK [CODE args] text", "NO ...", "BAD ...", "BYE ...".
struct ImapStatus {
  std::string status;  // "OK", "NO", "BAD", "BYE", "PREAUTH" (upper case); "" when not a status
  std::string code;    // response code without brackets, e.g. "UIDVALIDITY 3857529045"
  std::string text;    // human-readable text after the code
};
ImapStatus parse_imap_status(std::string_view text);

// The UIDs of "SEARCH n n n" ("SEARCH" already recognised: pass the text after it). Throws
// ImapError for anything but numbers 1..4294967295 separated by spaces.
std::vector<uint32_t> parse_imap_search(std::string_view rest);

// What a FETCH response carries that we use. nullopt when `r` is not a FETCH response.
struct ImapFetch {
  uint32_t sequence = 0;
  std::optional<uint32_t> uid;
  std::optional<uint64_t> size;     // RFC822.SIZE
  std::optional<std::string> body;  // BODY[] or BODY[]<0> (NIL: absent)
  bool body_truncated = false;      // the parser cut the literal (over max_literal_bytes)
};
std::optional<ImapFetch> parse_imap_fetch(const ImapResponse& r);  // throws ImapError

// ---------------------------------------------------------------------------------------
// Incremental progress

struct ImapProgress {
  uint32_t uidvalidity = 0;
  uint32_t last_uid = 0;  // highest UID handed to the sink (0: none yet)
  bool operator==(const ImapProgress&) const = default;
};

// Where progress is kept. Keys come from imap_progress_key().
class ImapProgressStore {
 public:
  virtual ~ImapProgressStore() = default;
  virtual std::optional<ImapProgress> load(const std::string& key) = 0;
  virtual void save(const std::string& key, const ImapProgress& progress) = 0;
};

// The key of one folder: the account URL without a trailing '/', the user and the folder name
// as configured, each with '%' and '\n' written %25 and %0A, joined by '\n'.
std::string imap_progress_key(std::string_view url, std::string_view user, std::string_view folder);

// ImapProgressStore on the Store, table "imap_progress"; the value is
// "1 <uidvalidity> <last_uid>". An unreadable value counts as no progress (the folder is
// learned again; the learner never counts a message twice).
class StoreImapProgress final : public ImapProgressStore {
 public:
  explicit StoreImapProgress(Store& store) : store_(store) {}
  std::optional<ImapProgress> load(const std::string& key) override;
  void save(const std::string& key, const ImapProgress& progress) override;
  static constexpr std::string_view kTable = "imap_progress";

 private:
  Store& store_;
};

// The first UID to ask for, given what was stored and the folder's UIDVALIDITY now: 1 (and
// restart) when nothing was stored or the UIDVALIDITY changed, else last_uid + 1. nullopt when
// last_uid is already the largest possible UID.
struct ImapFolderPlan {
  std::optional<uint32_t> from_uid;
  bool restart = false;  // stored progress existed with another UIDVALIDITY
};
ImapFolderPlan plan_imap_folder(const std::optional<ImapProgress>& stored, uint32_t uidvalidity);

// The UIDs to fetch from a SEARCH answer: those over `last_uid`, ascending, without
// duplicates ("UID SEARCH UID n:*" also returns the highest UID when it is below n).
std::vector<uint32_t> imap_uids_to_fetch(std::vector<uint32_t> found, uint32_t last_uid);

// ---------------------------------------------------------------------------------------
// The session: IMAP commands over a transport

// A logged-in connection. send() sends all bytes; receive() blocks until some bytes arrive
// and returns how many (0: the server closed the connection). Both throw ImapError (timeout,
// network, TLS).
class ImapTransport {
 public:
  virtual ~ImapTransport() = default;
  virtual void send(std::string_view bytes) = 0;
  virtual size_t receive(char* buffer, size_t size) = 0;
};

struct ImapMailbox {
  uint32_t uidvalidity = 0;
  std::optional<uint32_t> uidnext;
  uint32_t exists = 0;
};

struct ImapMessage {
  uint32_t uid = 0;
  std::string raw;         // at most max_bytes
  uint64_t size = 0;       // the size the server reports (RFC822.SIZE)
  bool truncated = false;  // raw is the first max_bytes bytes of a larger message
};

class ImapSession {
 public:
  ImapSession(ImapTransport& transport, ImapLimits limits = {});

  // EXAMINE (read-only). Throws ImapRefused for a NO or BAD answer (e.g. no such folder),
  // naming the folder; ImapError for anything else.
  ImapMailbox examine(std::string_view folder);
  // "UID SEARCH UID from:*"; the UIDs as the server answers them.
  std::vector<uint32_t> uid_search_from(uint32_t from);
  // "UID FETCH uid (RFC822.SIZE BODY.PEEK[]<0.max_bytes>)"; nullopt when the message is gone.
  std::optional<ImapMessage> fetch(uint32_t uid, size_t max_bytes);
  // "LOGOUT"; errors are ignored (the work is done).
  void logout() noexcept;

  // Runs one command and returns its tagged status; untagged responses go to `on_untagged`.
  // A BYE, or a tagged reply with another tag, is an ImapError.
  ImapStatus command(std::string_view command,
                     const std::function<void(const ImapResponse&)>& on_untagged);

 private:
  ImapResponse read_response();

  ImapTransport& transport_;
  ImapResponseParser parser_;
  uint64_t next_tag_ = 1;
  bool closed_ = false;
};

// ---------------------------------------------------------------------------------------
// Learning one account

// One [[imap]] table (core/config.h): url, user, password_file, spam_folders, ham_folders,
// ca_file. The loader has validated it; learn_imap_account checks folder names again anyway.
using ImapAccount = ImapConfig;

struct ImapOptions {
  size_t max_message_bytes = size_t{10} << 20;  // larger messages: the first bytes are learned
  std::chrono::milliseconds timeout{60'000};    // connect, and each wait for the server
  ImapLimits limits;                            // max_literal_bytes is raised to fit
  bool verbose = false;  // libcurl's trace on stderr, for debugging only: it shows the login
                         // (SASL PLAIN is the password in base64)
};

// Receives each new message: (raw bytes, is_spam, folder as configured, UID). Returns true
// when it learned the message and false when it chose not to (e.g. already learned); either
// way progress moves past it. To stop, throw: progress stays at the last message handled.
using ImapMessageSink = std::function<bool(const std::string& raw, bool is_spam,
                                           const std::string& folder, uint32_t uid)>;

struct ImapFolderReport {
  std::string folder;
  bool is_spam = false;
  uint64_t fetched = 0;    // new messages handed to the sink
  uint64_t learned = 0;    // of those, the sink returned true
  uint64_t truncated = 0;  // of those, cut at max_message_bytes
  bool restarted = false;  // UIDVALIDITY changed since the last run: learned from the start
  ImapProgress progress;   // after this run
  std::string error;       // "" when the folder was learned; else why not (e.g. no such folder)
};

// Learns the new mail of every folder of `account` on an open session (spam folders first,
// then ham). Progress is saved after every message handed to the sink, so an interrupted run
// goes on where it stopped. A folder the server refuses (NO to EXAMINE) is reported in its
// ImapFolderReport and the others go on; anything else throws ImapError (what the sink throws
// passes through unchanged).
std::vector<ImapFolderReport> learn_imap_folders(ImapSession& session, const ImapAccount& account,
                                                 ImapProgressStore& progress,
                                                 const ImapMessageSink& sink,
                                                 const ImapOptions& options = {});

// Reads the password: the first line of the file, without its line end. Throws ImapError
// (one line, naming the file) unless the file is a regular file owned by the effective user
// with no permission bits for group or others (0600 or stricter), and the password is
// non-empty, at most 1024 bytes, without NUL.
std::string read_imap_password_file(const std::string& path);

// ---------------------------------------------------------------------------------------
// libcurl

// Connects and logs in (libcurl, CURLOPT_CONNECT_ONLY): imaps://, or imap:// with STARTTLS
// required (CURLUSESSL_ALL); the peer certificate and host name are always verified, against
// the system CAs plus ca_file. Throws ImapError: "imaps://host:993 user alice: login denied
// (wrong user or password)", "...: TLS certificate not trusted: ... (set ca_file ...)", ...
std::unique_ptr<ImapTransport> connect_imap(const ImapAccount& account, const std::string& password,
                                            const ImapOptions& options = {});

// The whole run for one account: reads the password file, connects, learns every folder,
// logs out. Throws ImapError for what stops the account (password file, connection, login,
// protocol); per-folder refusals are in the reports.
std::vector<ImapFolderReport> learn_imap_account(const ImapAccount& account,
                                                 ImapProgressStore& progress,
                                                 const ImapMessageSink& sink,
                                                 const ImapOptions& options = {});

}  // namespace spamward
