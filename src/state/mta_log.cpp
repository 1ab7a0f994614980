#include "state/mta_log.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <exception>
#include <utility>
#include <vector>

#include "core/strings.h"

namespace spamward {

namespace {

using Sv = std::string_view;
constexpr Sv::size_type npos = Sv::npos;

// Longer recipients are no mailbox (RFC 5321 caps a path at 256 octets) and no event.
constexpr size_t kMaxRecipient = 1024;
// Host names in the client part (Postfix's, or Exim's verified name).
constexpr size_t kMaxHostName = 255;
// "[addr]" contents: the longest IPv6 text, with an "IPv6:" prefix, fits.
constexpr size_t kMaxAddressText = 64;

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_upper(char c) {
  return c >= 'A' && c <= 'Z';
}
bool is_alnum(char c) {
  return is_digit(c) || is_alpha(c);
}

bool consume(Sv& s, Sv prefix) {
  if (s.substr(0, prefix.size()) != prefix) return false;
  s.remove_prefix(prefix.size());
  return true;
}

bool consume_char(Sv& s, char c) {
  if (s.empty() || s.front() != c) return false;
  s.remove_prefix(1);
  return true;
}

// Exactly `n` digits.
bool consume_digits(Sv& s, size_t n) {
  if (s.size() < n) return false;
  for (size_t i = 0; i < n; ++i) {
    if (!is_digit(s[i])) return false;
  }
  s.remove_prefix(n);
  return true;
}

// One or more digits, at most `max`.
bool consume_some_digits(Sv& s, size_t max) {
  size_t n = 0;
  while (n < s.size() && is_digit(s[n])) ++n;
  if (n == 0 || n > max) return false;
  s.remove_prefix(n);
  return true;
}

// A non-empty token up to the next space (the space is left).
bool take_token(Sv& s, Sv& token) {
  const size_t end = s.find(' ');
  token = s.substr(0, end);
  if (token.empty()) return false;
  s.remove_prefix(token.size());
  return true;
}

// Letters, digits, '.', '-', '_': what Postfix's valid_hostname() and DNS names allow, and
// never a space or a bracket, so a name cannot pose as another part of the line.
bool is_host_name(Sv s) {
  if (s.empty() || s.size() > kMaxHostName) return false;
  for (char c : s) {
    if (!is_alnum(c) && c != '.' && c != '-' && c != '_') return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------
// Prefixes

// "HH:MM:SS" with an optional fraction.
bool consume_clock(Sv& s) {
  if (!consume_digits(s, 2) || !consume_char(s, ':') || !consume_digits(s, 2) ||
      !consume_char(s, ':') || !consume_digits(s, 2)) {
    return false;
  }
  if (consume_char(s, '.') && !consume_some_digits(s, 9)) return false;
  return true;
}

// "Dec  3 10:00:00 " (BSD syslog, RFC 3164; also "Dec 03" and "Dec 3").
bool consume_syslog_time(Sv& s) {
  Sv t = s;
  if (t.size() < 6 || !is_upper(t[0]) || !is_alpha(t[1]) || !is_alpha(t[2]) || t[3] != ' ') {
    return false;
  }
  t.remove_prefix(4);
  if (t[0] == ' ' && is_digit(t[1])) {
    t.remove_prefix(2);
  } else if (is_digit(t[0])) {
    t.remove_prefix(is_digit(t[1]) ? 2 : 1);
  } else {
    return false;
  }
  if (!consume_char(t, ' ') || !consume_clock(t) || !consume_char(t, ' ')) return false;
  s = t;
  return true;
}

// "YYYY-MM-DD"
bool consume_date(Sv& s) {
  return consume_digits(s, 4) && consume_char(s, '-') && consume_digits(s, 2) &&
         consume_char(s, '-') && consume_digits(s, 2);
}

// "2026-12-03T10:00:00.123456+00:00 " (RFC 3339, rsyslog) or journalctl's "...+0000 ".
bool consume_rfc3339_time(Sv& s) {
  Sv t = s;
  if (!consume_date(t) || !consume_char(t, 'T') || !consume_clock(t)) return false;
  size_t n = 0;
  while (n < t.size() && n < 8 &&
         (is_digit(t[n]) || t[n] == '+' || t[n] == '-' || t[n] == ':' || t[n] == 'Z')) {
    ++n;
  }
  t.remove_prefix(n);
  if (!consume_char(t, ' ')) return false;
  s = t;
  return true;
}

// Exim's own "2026-12-03 10:00:00[.mmm][ +0100][ [pid]] " (log_selector millisec, log_timezone,
// pid). False (and `s` untouched) when `s` does not start with a date.
bool consume_exim_time(Sv& s) {
  Sv t = s;
  if (!consume_date(t) || !consume_char(t, ' ') || !consume_clock(t) || !consume_char(t, ' ')) {
    return false;
  }
  Sv zone = t;
  if ((consume_char(zone, '+') || consume_char(zone, '-')) && consume_digits(zone, 4) &&
      consume_char(zone, ' ')) {
    t = zone;
  }
  Sv pid = t;
  if (consume_char(pid, '[') && consume_some_digits(pid, 10) && consume_char(pid, ']') &&
      consume_char(pid, ' ')) {
    t = pid;
  }
  s = t;
  return true;
}

// "host program[pid]: " after a syslog timestamp; gives the program.
bool consume_host_and_tag(Sv& s, Sv& program) {
  Sv host;
  if (!take_token(s, host) || !consume_char(s, ' ')) return false;
  size_t n = 0;
  while (n < s.size() && n < 128 && s[n] != '[' && s[n] != ':' && s[n] != ' ') ++n;
  program = s.substr(0, n);
  if (program.empty()) return false;
  s.remove_prefix(n);
  if (consume_char(s, '[') && !(consume_some_digits(s, 10) && consume_char(s, ']'))) return false;
  return consume(s, ": ");
}

// "postfix/smtpd", "postfix/smtps/smtpd", "postfix-out/smtpd": Postfix's syslog_name first,
// the smtpd server last.
bool is_postfix_smtpd(Sv program) {
  const size_t first = program.find('/');
  const size_t last = program.rfind('/');
  if (first == npos) return false;
  return program.substr(0, 7) == "postfix" && program.substr(last + 1) == "smtpd";
}

bool is_exim(Sv program) {
  return program == "exim" || program == "exim4";
}

// ---------------------------------------------------------------------------------------
// Postfix

constexpr std::array<Sv, 4> kPostfixTables = {
    "local recipient table",
    "virtual mailbox table",
    "virtual alias table",
    "relay recipient table",
};

// "QUEUEID: reject: RCPT from NAME[IP]: 550 5.1.1 <RCPT>: Recipient address rejected: User
// unknown in TABLE; from=<S> to=<RCPT> proto=P helo=<H>"
std::optional<UnknownRecipientEvent> parse_postfix(Sv m) {
  // The queue id: NOQUEUE, or a short (hex) or long (base-52) one.
  const size_t colon = m.find(':');
  if (colon == npos || colon == 0 || colon > 32) return std::nullopt;
  for (char c : m.substr(0, colon)) {
    if (!is_alnum(c)) return std::nullopt;
  }
  m.remove_prefix(colon);
  if (!consume(m, ": reject: RCPT from ")) return std::nullopt;

  // The client, before any text the client chose.
  const size_t open = m.find('[');
  if (open == npos || !is_host_name(m.substr(0, open))) return std::nullopt;
  m.remove_prefix(open + 1);
  const size_t close = m.find(']');
  if (close == npos || close > kMaxAddressText) return std::nullopt;
  auto client = IpAddress::parse(m.substr(0, close));
  if (!client) return std::nullopt;
  m.remove_prefix(close);
  if (!consume(m, "]: ")) return std::nullopt;

  // 5XX 5.1.1: a permanent refusal, for a bad mailbox.
  if (m.empty() || m.front() != '5' || !consume_digits(m, 3) || !consume(m, " 5.1.1 <")) {
    return std::nullopt;
  }
  constexpr Sv kRejected = ">: Recipient address rejected: User unknown in ";
  const size_t end = m.find(kRejected);
  if (end == npos || end == 0 || end > kMaxRecipient) return std::nullopt;
  const Sv recipient = m.substr(0, end);
  m.remove_prefix(end + kRejected.size());
  bool table = false;
  for (Sv t : kPostfixTables) {
    if (consume(m, t)) {
      table = true;
      break;
    }
  }
  if (!table || !consume(m, "; from=<")) return std::nullopt;

  // The recipient again, in to=<...>: the first " to=<" after the sender must hold it whole.
  const size_t to = m.find(" to=<");
  if (to == npos) return std::nullopt;
  m.remove_prefix(to + 5);
  if (!consume(m, recipient) || !consume_char(m, '>')) return std::nullopt;
  if (!m.empty() && m.front() != ' ') return std::nullopt;

  UnknownRecipientEvent event{*client, std::string(recipient), {}};
  // " proto=ESMTP helo=<H>": the HELO is the rest of the line. It is informational, so a
  // different tail only leaves it empty.
  Sv proto;
  if (consume(m, " proto=") && take_token(m, proto) && consume(m, " helo=<") && !m.empty() &&
      m.back() == '>') {
    event.helo = std::string(m.substr(0, m.size() - 1));
  }
  return event;
}

// ---------------------------------------------------------------------------------------
// Exim

constexpr std::array<Sv, 3> kEximReasons = {"Unknown user", "Unrouteable address",
                                            "No such user here"};

// Fields between the host and "rejected": " KEY=VALUE" each, VALUE being <...>, "..." or a
// token. Anything else (a HELO or sender that reaches here) makes the line no event.
bool are_exim_fields(Sv s) {
  while (!s.empty()) {
    if (!consume_char(s, ' ')) return false;
    size_t k = 0;
    while (k < s.size() && k < 8 && is_upper(s[k])) ++k;
    if (k == 0 || k >= s.size() || s[k] != '=') return false;
    s.remove_prefix(k + 1);
    if (!s.empty() && (s.front() == '<' || s.front() == '"')) {
      const char closer = s.front() == '<' ? '>' : '"';
      const size_t end = s.find(closer, 1);
      if (end == npos) return false;
      s.remove_prefix(end + 1);
      if (!s.empty() && s.front() != ' ') return false;
    } else {
      s.remove_prefix(std::min(s.find(' '), s.size()));
    }
  }
  return true;
}

// "H=[NAME ][(HELO) ][IP][:PORT][ FIELDS] rejected RCPT <RCPT>: REASON"
std::optional<UnknownRecipientEvent> parse_exim(Sv m) {
  if (!consume(m, "H=")) return std::nullopt;
  constexpr Sv kMarker = " rejected RCPT ";
  const size_t marker = m.find(kMarker);
  if (marker == npos || m.find(kMarker, marker + 1) != npos) return std::nullopt;
  Sv host = m.substr(0, marker);
  Sv tail = m.substr(marker + kMarker.size());

  // The reason ends the line.
  const size_t sep = tail.rfind(": ");
  if (sep == npos) return std::nullopt;
  const Sv reason = tail.substr(sep + 2);
  bool known = false;
  for (Sv r : kEximReasons) known = known || iequals(reason, r);
  if (!known) return std::nullopt;
  Sv recipient = tail.substr(0, sep);
  if (!recipient.empty() && recipient.front() == '<') {
    if (recipient.size() < 3 || recipient.back() != '>') return std::nullopt;
    recipient = recipient.substr(1, recipient.size() - 2);
  } else if (recipient.find(' ') != npos) {
    return std::nullopt;  // old Exims log the bare address, which has no space
  }
  if (recipient.empty() || recipient.size() > kMaxRecipient ||
      recipient.find_first_of("<>") != npos) {
    return std::nullopt;
  }

  // The address: the one '[' that opens the host part or follows a space in it.
  size_t open = npos;
  for (size_t i = 0; i < host.size(); ++i) {
    if (host[i] == '[' && (i == 0 || host[i - 1] == ' ')) {
      if (open != npos) return std::nullopt;  // a HELO or sender with " [": ambiguous
      open = i;
    }
  }
  if (open == npos) return std::nullopt;
  Sv name_helo = host.substr(0, open);
  Sv rest = host.substr(open + 1);
  const size_t close = rest.find(']');
  if (close == npos || close > kMaxAddressText) return std::nullopt;
  auto client = IpAddress::parse(rest.substr(0, close));
  if (!client) return std::nullopt;
  rest.remove_prefix(close + 1);
  if (consume_char(rest, ':') && !consume_some_digits(rest, 5)) return std::nullopt;
  if (!are_exim_fields(rest)) return std::nullopt;

  // "", "NAME ", "(HELO) " or "NAME (HELO) ".
  Sv helo;
  if (!name_helo.empty()) {
    if (name_helo.back() != ' ') return std::nullopt;
    name_helo.remove_suffix(1);
    if (!name_helo.empty() && name_helo.back() == ')') {
      const size_t paren = name_helo.front() == '(' ? 0 : name_helo.find(" (");
      if (paren == npos) return std::nullopt;
      if (paren > 0 && !is_host_name(name_helo.substr(0, paren))) return std::nullopt;
      const size_t helo_at = paren == 0 ? 1 : paren + 2;
      if (helo_at >= name_helo.size()) return std::nullopt;
      helo = name_helo.substr(helo_at, name_helo.size() - 1 - helo_at);
    } else if (!is_host_name(name_helo)) {
      return std::nullopt;
    }
  }
  return UnknownRecipientEvent{*client, std::string(recipient), std::string(helo)};
}

}  // namespace

std::optional<UnknownRecipientEvent> parse_mta_log_line(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  Sv program;
  bool tagged = false;
  if (consume(line, "MESSAGE=")) {
    // journald export: the message alone
  } else if (consume_syslog_time(line) || consume_rfc3339_time(line)) {
    if (!consume_host_and_tag(line, program)) return std::nullopt;
    tagged = true;
  }
  if (tagged) {
    if (is_postfix_smtpd(program)) return parse_postfix(line);
    if (!is_exim(program)) return std::nullopt;
    consume_exim_time(line);  // Exim's syslog_timestamp
    return parse_exim(line);
  }
  if (consume_exim_time(line)) return parse_exim(line);
  if (line.substr(0, 2) == "H=") return parse_exim(line);
  return parse_postfix(line);
}

// ---------------------------------------------------------------------------------------
// MtaLogFollower

namespace {
constexpr size_t kReadChunk = 64 * 1024;
}

MtaLogFollower::MtaLogFollower(std::string path,
                               std::function<void(const UnknownRecipientEvent&)> on_event,
                               std::chrono::milliseconds poll_interval)
    : path_(std::move(path)), on_event_(std::move(on_event)), poll_interval_(poll_interval) {}

MtaLogFollower::~MtaLogFollower() {
  stop();
}

void MtaLogFollower::start() {
  if (thread_.joinable()) return;
  stopping_ = false;
  close_file();
  problem_.clear();
  // Opened here, not on the thread, so that a line appended right after start() is read.
  // A missing file is opened by a later poll, from its beginning.
  open_file(true);
  thread_ = std::thread([this] { run(); });
}

void MtaLogFollower::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  close_file();
}

void MtaLogFollower::run() {
  while (!stopping_) {
    try {
      poll();
    } catch (const std::exception& e) {  // e.g. bad_alloc: keep following, try again later
      note_problem(std::string("error: ") + e.what());
    }
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, poll_interval_, [this] { return stopping_.load(); });
  }
}

void MtaLogFollower::poll() {
  if (fd_ < 0 && !open_file(false)) return;

  struct stat st {};
  if (::fstat(fd_, &st) == 0 && static_cast<uint64_t>(st.st_size) < offset_) {
    // Truncated (copytruncate): what is there now is new.
    if (::lseek(fd_, 0, SEEK_SET) == 0) {
      offset_ = 0;
      partial_.clear();
      skipping_ = false;
    }
  }
  if (!drain()) {
    close_file();
    return;
  }

  struct stat now {};
  if (::stat(path_.c_str(), &now) != 0) return;  // moved away, no new file yet: keep the old
  if (static_cast<uint64_t>(now.st_dev) == dev_ && static_cast<uint64_t>(now.st_ino) == ino_) {
    return;
  }
  // Rotated: the old file was read to its end above; an unfinished last line in it will not
  // be finished by a writer that has moved on.
  close_file();
  if (open_file(false)) {
    if (!drain()) close_file();
  }
}

bool MtaLogFollower::open_file(bool at_end) {
  close_file();
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    note_problem(std::string("cannot open: ") + std::strerror(errno));
    return false;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    note_problem("not a regular file");
    return false;
  }
  const off_t start = at_end ? st.st_size : 0;
  if (::lseek(fd, start, SEEK_SET) != start) {
    ::close(fd);
    note_problem(std::string("cannot seek: ") + std::strerror(errno));
    return false;
  }
  fd_ = fd;
  dev_ = static_cast<uint64_t>(st.st_dev);
  ino_ = static_cast<uint64_t>(st.st_ino);
  offset_ = static_cast<uint64_t>(start);
  partial_.clear();
  skipping_ = false;
  if (!problem_.empty()) {
    spdlog::info("follow_log: following {}", path_);
    problem_.clear();
  }
  return true;
}

void MtaLogFollower::close_file() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  partial_.clear();
  skipping_ = false;
}

bool MtaLogFollower::drain() {
  std::vector<char> buf(kReadChunk);
  while (!stopping_) {
    const ssize_t n = ::read(fd_, buf.data(), buf.size());
    if (n == 0) return true;
    if (n < 0) {
      if (errno == EINTR) continue;
      note_problem(std::string("cannot read: ") + std::strerror(errno));
      return false;
    }
    offset_ += static_cast<uint64_t>(n);
    feed(buf.data(), static_cast<size_t>(n));
  }
  return true;
}

void MtaLogFollower::feed(const char* data, size_t size) {
  while (size > 0) {
    const char* nl = static_cast<const char*>(std::memchr(data, '\n', size));
    const size_t len = nl ? static_cast<size_t>(nl - data) : size;
    if (skipping_) {
      if (nl) skipping_ = false;  // the overlong line ends here
    } else if (partial_.size() + len > kMaxLineBytes) {
      // Too long: counted once, dropped up to its newline without buffering it.
      ++lines_skipped_;
      partial_.clear();
      skipping_ = nl == nullptr;
    } else if (nl && partial_.empty()) {
      handle_line(std::string_view(data, len));
    } else if (nl) {
      partial_.append(data, len);
      handle_line(partial_);
      partial_.clear();
    } else {
      partial_.append(data, len);
    }
    if (!nl) return;
    data = nl + 1;
    size -= len + 1;
  }
}

void MtaLogFollower::handle_line(std::string_view line) {
  ++lines_read_;
  auto event = parse_mta_log_line(line);
  if (!event) return;
  ++events_;
  if (!on_event_) return;
  try {
    on_event_(*event);
  } catch (const std::exception& e) {
    spdlog::warn("follow_log: handling an event from {} failed: {}", path_, e.what());
  }
}

void MtaLogFollower::note_problem(const std::string& problem) {
  if (problem == problem_) return;
  problem_ = problem;
  spdlog::warn("follow_log: {}: {}; retrying every {} ms", path_, problem, poll_interval_.count());
}

}  // namespace spamward
