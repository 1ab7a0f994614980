#include "server/spamd_protocol.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <vector>

#include <fmt/format.h>

#include "auth/authentication_results.h"
#include "core/strings.h"
#include "core/symbol.h"

namespace spamward {

namespace {

constexpr size_t kMaxErrorText = 300;
constexpr size_t kMaxListed = 200;  // symbols listed per header, body or report
constexpr size_t kFoldColumn = 78;
constexpr size_t kReportDescColumn = 28;  // " pts rule name (22)          "

bool icontains(std::string_view haystack, std::string_view needle) {
  if (needle.size() > haystack.size()) return false;
  for (size_t i = 0; i + needle.size() <= haystack.size(); ++i) {
    if (iequals(haystack.substr(i, needle.size()), needle)) return true;
  }
  return false;
}

bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// "1.5" -> {1, 5}; digits only, at most three per part.
bool parse_version(std::string_view v, int& major, int& minor) {
  size_t dot = v.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot > 3 || v.size() - dot - 1 == 0 ||
      v.size() - dot - 1 > 3)
    return false;
  auto digits = [](std::string_view s, int& out) {
    for (char c : s)
      if (c < '0' || c > '9') return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
  };
  return digits(v.substr(0, dot), major) && digits(v.substr(dot + 1), minor);
}

std::string one_decimal(double x) {
  std::string s = fmt::format("{:.1f}", x);
  if (s == "-0.0") s = "0.0";
  return s;
}

bool is_spam_action(Action a) {
  return a == Action::tag || a == Action::tempfail || a == Action::reject;
}

// Appends items to a header value, folding (EOL + TAB) before an item that would take the
// line past kFoldColumn. `col` is the current column.
class Folder {
 public:
  Folder(std::string& out, std::string_view eol, size_t col) : out_(out), eol_(eol), col_(col) {}
  // Appends `sep` (e.g. "," or ", ") before every item but the first; a trailing space of
  // `sep` becomes the fold when the item does not fit.
  void item(std::string_view text, std::string_view sep) {
    if (!first_) {
      std::string_view lead = sep;
      bool space = !lead.empty() && lead.back() == ' ';
      if (space) lead.remove_suffix(1);
      out_ += lead;
      col_ += lead.size();
      if (col_ + 1 + text.size() > kFoldColumn) {
        out_ += eol_;
        out_ += '\t';
        col_ = 8;
      } else if (space) {
        out_ += ' ';
        ++col_;
      }
    }
    first_ = false;
    out_ += text;
    col_ += text.size();
  }

 private:
  std::string& out_;
  std::string_view eol_;
  size_t col_;
  bool first_ = true;
};

std::vector<const Symbol*> sorted_by_name(const Verdict& v) {
  std::vector<const Symbol*> out;
  for (const auto& s : v.symbols) out.push_back(&s);
  std::stable_sort(out.begin(), out.end(),
                   [](const Symbol* a, const Symbol* b) { return a->name < b->name; });
  return out;
}

// Greedy word wrap of `text` starting at column `col`; continuation lines are indented by
// `indent` spaces. Appends the text and a final "\n".
void wrap_text(std::string& out, std::string_view text, size_t col, size_t indent) {
  bool first_word = true;
  while (!text.empty()) {
    size_t space = text.find(' ');
    std::string_view word = text.substr(0, space);
    text = space == std::string_view::npos ? std::string_view() : text.substr(space + 1);
    if (word.empty()) continue;
    if (!first_word && col + 1 + word.size() > kFoldColumn) {
      out += '\n';
      out.append(indent, ' ');
      col = indent;
    } else if (!first_word) {
      out += ' ';
      ++col;
    }
    out += word;
    col += word.size();
    first_word = false;
  }
  out += '\n';
}

}  // namespace

std::string_view to_string(SpamdCommand c) {
  switch (c) {
    case SpamdCommand::check:
      return "CHECK";
    case SpamdCommand::symbols:
      return "SYMBOLS";
    case SpamdCommand::report:
      return "REPORT";
    case SpamdCommand::report_ifspam:
      return "REPORT_IFSPAM";
    case SpamdCommand::process:
      return "PROCESS";
    case SpamdCommand::headers:
      return "HEADERS";
    case SpamdCommand::ping:
      return "PING";
    case SpamdCommand::skip:
      return "SKIP";
    case SpamdCommand::tell:
      return "TELL";
  }
  return "?";
}

std::optional<SpamdCommand> parse_spamd_command(std::string_view name) {
  for (SpamdCommand c : {SpamdCommand::check, SpamdCommand::symbols, SpamdCommand::report,
                         SpamdCommand::report_ifspam, SpamdCommand::process, SpamdCommand::headers,
                         SpamdCommand::ping, SpamdCommand::skip, SpamdCommand::tell}) {
    if (name == to_string(c)) return c;
  }
  return std::nullopt;
}

std::string_view to_string(SpamdError e) {
  switch (e) {
    case SpamdError::none:
      return "none";
    case SpamdError::line_too_long:
      return "line_too_long";
    case SpamdError::too_many_headers:
      return "too_many_headers";
    case SpamdError::nul_byte:
      return "nul_byte";
    case SpamdError::bad_request_line:
      return "bad_request_line";
    case SpamdError::unknown_command:
      return "unknown_command";
    case SpamdError::bad_header:
      return "bad_header";
    case SpamdError::bad_content_length:
      return "bad_content_length";
    case SpamdError::content_length_too_big:
      return "content_length_too_big";
    case SpamdError::content_length_mismatch:
      return "content_length_mismatch";
    case SpamdError::bad_user:
      return "bad_user";
    case SpamdError::bad_message_class:
      return "bad_message_class";
    case SpamdError::compression_unsupported:
      return "compression_unsupported";
    case SpamdError::eof_in_headers:
      return "eof_in_headers";
  }
  return "unknown";
}

// ---------------------------------------------------------------------------------------------
// Parser

SpamdParser::SpamdParser(SpamdParserLimits limits) : limits_(limits) {}

SpamdParser::Status SpamdParser::fail(SpamdError e, std::string text) {
  status_ = Status::error;
  error_ = e;
  error_text_ = printable(text, kMaxErrorText);
  state_ = State::done;
  return status_;
}

void SpamdParser::complete() {
  status_ = Status::complete;
  state_ = State::done;
}

void SpamdParser::start_body() {
  state_ = State::body;
  if (request_.content_length && *request_.content_length == 0) complete();
}

size_t SpamdParser::feed(std::string_view bytes) {
  if (status_ != Status::incomplete) return 0;
  if (!bytes.empty()) started_ = true;
  size_t used = 0;
  while (used < bytes.size() && status_ == Status::incomplete) {
    std::string_view rest = bytes.substr(used);
    if (state_ == State::body) {
      size_t take = rest.size();
      if (request_.content_length) {
        uint64_t want = *request_.content_length - request_.message_size;
        if (want < take) take = static_cast<size_t>(want);
      }
      size_t room = limits_.max_message_bytes > request_.message.size()
                        ? limits_.max_message_bytes - request_.message.size()
                        : 0;
      request_.message.append(rest.substr(0, std::min(take, room)));
      request_.message_size += take;
      used += take;
      if (request_.content_length && request_.message_size == *request_.content_length) complete();
      continue;
    }
    // The request line or a header line.
    size_t nl = rest.find('\n');
    std::string_view part = nl == std::string_view::npos ? rest : rest.substr(0, nl);
    // Whichever comes first in the byte stream fails: a NUL, or the byte past the limit (one
    // more byte than the limit may be the '\r' of "\r\n"), so any split fails alike.
    const size_t allowed = limits_.max_line + 1 - line_.size();
    if (size_t nul = part.find('\0'); nul != std::string_view::npos && nul < allowed) {
      fail(SpamdError::nul_byte, "NUL byte in the request line or headers");
      return used;
    }
    if (part.size() > allowed) {
      fail(SpamdError::line_too_long, fmt::format("line longer than {} bytes", limits_.max_line));
      return used;
    }
    line_.append(part);
    used += part.size();
    if (nl == std::string_view::npos) break;
    ++used;  // the '\n'
    if (!line_.empty() && line_.back() == '\r') line_.pop_back();
    if (line_.size() > limits_.max_line) {
      fail(SpamdError::line_too_long, fmt::format("line longer than {} bytes", limits_.max_line));
      break;
    }
    if (!finish_line()) break;
    line_.clear();
  }
  return used;
}

bool SpamdParser::finish_line() {
  if (state_ == State::request_line) {
    if (!request_line(line_)) return false;
    const SpamdCommand c = request_.command;
    if (c == SpamdCommand::skip) {
      complete();
    } else if (c == SpamdCommand::ping) {
      // Protocol 1.5 added an empty line after PING (SpamAssassin bug 6187).
      if (request_.version_at_least(1, 5)) {
        state_ = State::headers;
      } else {
        complete();
      }
    } else if (!request_.version_at_least(1, 1) && c != SpamdCommand::tell) {
      start_body();  // protocol 1.0: no headers
    } else {
      state_ = State::headers;
    }
    return true;
  }
  // A header line, or the empty line that ends them.
  if (line_.empty()) {
    if (request_.command == SpamdCommand::ping) {
      complete();
    } else {
      start_body();
    }
    return true;
  }
  if (++header_count_ > limits_.max_headers) {
    fail(SpamdError::too_many_headers,
         fmt::format("more than {} header lines", limits_.max_headers));
    return false;
  }
  return header_line(line_);
}

bool SpamdParser::request_line(std::string_view line) {
  size_t space = line.find(' ');
  if (space == std::string_view::npos) {
    fail(SpamdError::bad_request_line,
         "request line is not 'COMMAND SPAMC/x.y': " + std::string(line.substr(0, 100)));
    return false;
  }
  std::string_view name = line.substr(0, space);
  std::string_view proto = trim(line.substr(space + 1));
  auto command = parse_spamd_command(name);
  if (!command) {
    fail(SpamdError::unknown_command, "unknown command '" + std::string(name.substr(0, 60)) + "'");
    return false;
  }
  if (!proto.starts_with("SPAMC/") ||
      !parse_version(proto.substr(6), request_.major, request_.minor)) {
    fail(SpamdError::bad_request_line,
         "bad protocol version '" + std::string(proto.substr(0, 60)) + "'");
    return false;
  }
  request_.command = *command;
  return true;
}

bool SpamdParser::header_line(std::string_view line) {
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) {
    fail(SpamdError::bad_header, "header not in 'Name: value' format");
    return false;
  }
  std::string_view name = line.substr(0, colon);
  std::string_view value = trim(line.substr(colon + 1));
  if (iequals(name, "Content-length")) {
    bool digits =
        !value.empty() && value.size() <= 20 &&
        std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
    uint64_t n = 0;
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (!digits || (ec != std::errc() && ec != std::errc::result_out_of_range) ||
        p != value.data() + value.size()) {
      fail(SpamdError::bad_content_length, "Content-Length contains non-numeric bytes");
      return false;
    }
    if (ec == std::errc::result_out_of_range || n > limits_.max_content_length) {
      fail(SpamdError::content_length_too_big,
           fmt::format("Content-length {} is over the limit of {} bytes",
                       std::string(value.substr(0, 20)), limits_.max_content_length));
      return false;
    }
    request_.content_length = n;
  } else if (iequals(name, "User")) {
    if (std::any_of(value.begin(), value.end(),
                    [](char c) { return static_cast<unsigned char>(c) < 0x20; })) {
      fail(SpamdError::bad_user, "User header contains control chars");
      return false;
    }
    request_.user.assign(value);
  } else if (iequals(name, "Message-class")) {
    if (iequals(value, "spam")) {
      request_.message_class_spam = true;
    } else if (iequals(value, "ham")) {
      request_.message_class_spam = false;
    } else {
      fail(SpamdError::bad_message_class, "Message-class header contains invalid class");
      return false;
    }
  } else if (iequals(name, "Set")) {
    request_.set_local = icontains(value, "local");
    request_.set_remote = icontains(value, "remote");
  } else if (iequals(name, "Remove")) {
    request_.remove_local = icontains(value, "local");
    request_.remove_remote = icontains(value, "remote");
  } else if (iequals(name, "Compress")) {
    fail(SpamdError::compression_unsupported,
         "compression not supported by spamward (Compress: " + std::string(value.substr(0, 40)) +
             "); use spamc without -z");
    return false;
  }
  // Other headers are ignored, as the protocol asks.
  return true;
}

void SpamdParser::feed_eof() {
  if (status_ != Status::incomplete) return;
  switch (state_) {
    case State::request_line:
      fail(SpamdError::eof_in_headers, "closed before headers");
      break;
    case State::headers:
      fail(SpamdError::eof_in_headers, "EOF during headers");
      break;
    case State::body:
      if (request_.content_length && request_.message_size < *request_.content_length) {
        fail(SpamdError::content_length_mismatch,
             fmt::format("Content-Length mismatch: Expected {} bytes, got {} bytes",
                         *request_.content_length, request_.message_size));
      } else {
        complete();
      }
      break;
    case State::done:
      break;
  }
}

// ---------------------------------------------------------------------------------------------
// Replies

SpamdOutcome spamd_outcome(const Verdict* verdict, double tag_threshold) {
  SpamdOutcome o;
  o.threshold = tag_threshold;
  if (verdict) {
    o.spam = is_spam_action(verdict->applied);
    o.score = verdict->score;
  }
  return o;
}

std::string spamd_score_text(const SpamdOutcome& o) {
  const double threshold = std::strtod(one_decimal(o.threshold).c_str(), nullptr);
  std::string text = one_decimal(o.score);
  const double shown = std::strtod(text.c_str(), nullptr);
  if (!o.spam && shown >= threshold && o.score < threshold) {
    text = one_decimal(std::floor(o.score * 10.0) / 10.0);
  } else if (o.spam && shown < threshold && o.score >= threshold) {
    text = one_decimal(std::ceil(o.score * 10.0) / 10.0);
  }
  return text;
}

std::string spamd_spam_header_value(const SpamdOutcome& o, bool yes_no) {
  std::string_view word = yes_no ? (o.spam ? "Yes" : "No") : (o.spam ? "True" : "False");
  return fmt::format("{} ; {} / {}", word, spamd_score_text(o), one_decimal(o.threshold));
}

std::string format_spamd_error(int code, std::string_view text) {
  std::string safe = printable(text, kMaxErrorText);
  switch (code) {
    case kSpamdExProtocol:
      return fmt::format("SPAMD/1.0 {} Bad header line: ({})\r\n", code, safe);
    case kSpamdExUnavailable:
      return fmt::format("SPAMD/1.0 {} Service Unavailable: {}\r\n", code, safe);
    case kSpamdExDataErr:
      return fmt::format("SPAMD/1.0 {} EX_DATAERR: {}\r\n", code, safe);
    case kSpamdExSoftware:
      return fmt::format("SPAMD/1.0 {} EX_SOFTWARE: {}\r\n", code, safe);
    default:
      return fmt::format("SPAMD/1.0 {} Error: {}\r\n", code, safe);
  }
}

std::string format_spamd_error(const SpamdParser& parser) {
  return format_spamd_error(kSpamdExProtocol, parser.error_text());
}

std::string format_spamd_tell_reply(bool did_set_local, bool did_remove_local) {
  std::string out = "SPAMD/1.1 0 EX_OK\r\n";
  if (did_set_local) out += "DidSet: local\r\n";
  if (did_remove_local) out += "DidRemove: local\r\n";
  out += "\r\n";
  return out;
}

bool is_spamd_owned_header(std::string_view name) {
  return istarts_with(name, "X-Spam-") || istarts_with(name, "X-Spamward-");
}

std::string spamd_symbols_body(const Verdict* verdict) {
  std::string out;
  if (!verdict) return out;
  size_t n = 0;
  for (const Symbol* s : sorted_by_name(*verdict)) {
    if (++n > kMaxListed) break;
    if (!out.empty()) out += ',';
    out += printable(s->name, 200);
  }
  return out;
}

std::string spamd_report_body(const Verdict* verdict, const SpamdOutcome& o) {
  std::string out;
  if (!verdict) {
    out += "spamward could not evaluate this message (internal error); it was not scored\n";
    out += "(fail open).\n";
    return out;
  }
  std::string action(to_string(verdict->action));
  if (verdict->dry_run && verdict->applied != verdict->action)
    action += fmt::format(" (dry run: {})", to_string(verdict->applied));
  std::string summary = fmt::format(
      "spamward judged this message {}: action {}, score {}, tag threshold {}.",
      o.spam ? "spam" : "not spam", action, spamd_score_text(o), one_decimal(o.threshold));
  wrap_text(out, summary, 0, 0);
  if (!verdict->reason.empty()) wrap_text(out, "Reason: " + printable(verdict->reason, 300), 0, 2);
  out += fmt::format("\nContent analysis details:   ({} points, {} required)\n\n",
                     spamd_score_text(o), one_decimal(o.threshold));
  out += " pts rule name              description\n";
  out += "---- ---------------------- --------------------------------------------------\n";
  std::vector<const Symbol*> order;
  for (const auto& s : verdict->symbols) order.push_back(&s);
  std::stable_sort(order.begin(), order.end(), [](const Symbol* a, const Symbol* b) {
    return a->score != b->score ? a->score > b->score : a->name < b->name;
  });
  size_t n = 0;
  for (const Symbol* s : order) {
    if (++n > kMaxListed) break;
    std::string line = fmt::format("{:>4} {:<22} ", one_decimal(s->score), printable(s->name, 100));
    std::string desc;
    if (const SymbolInfo* info = find_symbol(s->name)) desc = printable(info->description, 300);
    if (!s->detail.empty()) {
      std::string detail = printable(s->detail, 200);
      if (desc.empty()) {
        desc = detail;
      } else if (desc.find(detail) == std::string::npos) {  // not "no Date header (no Date header)"
        desc += " (" + detail + ")";
      }
    }
    out += line;
    wrap_text(out, desc, line.size(), kReportDescColumn);
  }
  return out;
}

std::string spamd_rewrite_message(std::string_view message, const Verdict* verdict,
                                  const SpamdOutcome& o, bool headers_only,
                                  const SpamdAuthResults& auth_results) {
  std::string eol = "\n";
  if (size_t first = message.find('\n');
      first != std::string_view::npos && first > 0 && message[first - 1] == '\r')
    eol = "\r\n";

  std::string out;
  out.reserve((headers_only ? std::min<size_t>(message.size(), 65536) : message.size()) + 1024);
  size_t pos = 0;
  size_t header_end = std::string_view::npos;  // where the empty line starts
  size_t blank_end = 0;                        // and where it ends
  bool skipping = false;
  while (pos < message.size()) {
    size_t nl = message.find('\n', pos);
    size_t end = nl == std::string_view::npos ? message.size() : nl + 1;
    std::string_view line = message.substr(pos, end - pos);
    std::string_view content = line;
    if (!content.empty() && content.back() == '\n') content.remove_suffix(1);
    if (!content.empty() && content.back() == '\r') content.remove_suffix(1);
    if (content.empty() && nl != std::string_view::npos) {
      header_end = pos;
      blank_end = end;
      break;
    }
    const bool continuation = !content.empty() && (content[0] == ' ' || content[0] == '\t');
    if (!continuation) {
      size_t colon = content.find(':');
      skipping =
          colon != std::string_view::npos && is_spamd_owned_header(trim(content.substr(0, colon)));
      if (colon != std::string_view::npos && !auth_results.authserv_id.empty() &&
          iequals(trim(content.substr(0, colon)), "Authentication-Results")) {
        // The authserv-id may follow on a continuation line: read the whole field.
        std::string value(content.substr(colon + 1));
        for (size_t next = end; next < message.size() && value.size() < 1024;) {
          if (message[next] != ' ' && message[next] != '\t') break;
          size_t next_nl = message.find('\n', next);
          size_t next_end = next_nl == std::string_view::npos ? message.size() : next_nl + 1;
          value += ' ';
          value.append(message.substr(next, next_end - next));
          next = next_end;
        }
        skipping = iequals(authserv_id_of(value), auth_results.authserv_id);
      }
    }
    if (!skipping) out.append(line);
    pos = end;
  }
  if (!out.empty() && out.back() != '\n') out += eol;  // a last header line without its end

  if (verdict) {
    if (o.spam) out += "X-Spam-Flag: YES" + eol;
    out += fmt::format("X-Spam-Score: {:.2f}", verdict->score) + eol;

    std::string value = "X-Spamward-Symbols: ";
    {
      Folder fold(value, eol, value.size());
      if (verdict->symbols.empty()) fold.item("none", "");
      size_t n = 0;
      for (const auto& s : verdict->symbols) {
        if (++n > kMaxListed) break;
        fold.item(fmt::format("{}({:.2f})", printable(s.name, 100), s.score), ", ");
      }
    }
    out += value + eol;

    value = fmt::format("X-Spam-Status: {}, score={} required={} tests=", o.spam ? "Yes" : "No",
                        spamd_score_text(o), one_decimal(o.threshold));
    {
      Folder fold(value, eol, value.size());
      if (verdict->symbols.empty()) fold.item("none", "");
      size_t n = 0;
      for (const Symbol* s : sorted_by_name(*verdict)) {
        if (++n > kMaxListed) break;
        fold.item(printable(s->name, 100), ",");
      }
    }
    out += value + eol;
  }
  if (!auth_results.authserv_id.empty() && !auth_results.value.empty()) {
    constexpr std::string_view kName = "Authentication-Results: ";
    out +=
        std::string(kName) + fold_header_value(auth_results.value, kName.size(), eol + "\t") + eol;
  }

  if (header_end != std::string_view::npos) {
    if (headers_only) {
      out.append(message.substr(header_end, blank_end - header_end));
    } else {
      out.append(message.substr(header_end));
    }
  } else if (headers_only) {
    out += eol;  // no empty line in the message: end the header block all the same
  }
  return out;
}

std::string format_spamd_reply(const SpamdRequest& request, const Verdict* verdict,
                               double tag_threshold, const SpamdAuthResults& auth_results) {
  const SpamdOutcome o = spamd_outcome(verdict, tag_threshold);
  const std::string spam_line =
      "Spam: " + spamd_spam_header_value(o, request.command == SpamdCommand::report_ifspam) +
      "\r\n";
  const bool v13 = request.version_at_least(1, 3);
  switch (request.command) {
    case SpamdCommand::check:
      return "SPAMD/1.1 0 EX_OK\r\n" + spam_line + "\r\n";
    case SpamdCommand::symbols:
    case SpamdCommand::report:
    case SpamdCommand::report_ifspam: {
      std::string body;
      if (request.command == SpamdCommand::symbols) {
        body = spamd_symbols_body(verdict);
        if (!v13) body += "\r\n";
      } else if (request.command == SpamdCommand::report || o.spam) {
        body = spamd_report_body(verdict, o);
      }
      if (v13) {
        return fmt::format("SPAMD/1.1 0 EX_OK\r\nContent-length: {}\r\n{}\r\n{}", body.size(),
                           spam_line, body);
      }
      return "SPAMD/1.1 0 EX_OK\r\n" + spam_line + "\r\n" + body;
    }
    case SpamdCommand::process:
    case SpamdCommand::headers: {
      const bool headers_only = request.command == SpamdCommand::headers;
      if (request.truncated()) {
        // PROCESS must return the whole message; HEADERS only its header block.
        bool header_block_complete = request.message.find("\n\n") != std::string::npos ||
                                     request.message.find("\n\r\n") != std::string::npos ||
                                     request.message.starts_with("\n") ||
                                     request.message.starts_with("\r\n");
        if (!headers_only || !header_block_complete) {
          return format_spamd_error(
              kSpamdExDataErr,
              fmt::format("message of {} bytes is over the limit of {} bytes ([limits] "
                          "max_message_bytes); not processed",
                          request.message_size, request.message.size()));
        }
      }
      std::string rewritten =
          spamd_rewrite_message(request.message, verdict, o, headers_only, auth_results);
      if (v13) {
        return fmt::format("SPAMD/1.1 0 EX_OK\r\nContent-length: {}\r\n{}\r\n{}", rewritten.size(),
                           spam_line, rewritten);
      }
      if (request.version_at_least(1, 2)) {
        return fmt::format("SPAMD/1.1 0 EX_OK\r\nContent-length: {}\r\n\r\n{}", rewritten.size(),
                           rewritten);
      }
      return "SPAMD/1.0 0 EX_OK\r\n" + rewritten;
    }
    case SpamdCommand::ping:
      return std::string(kSpamdPong);
    case SpamdCommand::skip:
    case SpamdCommand::tell:
      break;
  }
  return format_spamd_error(
      kSpamdExSoftware, "internal error: no reply for " + std::string(to_string(request.command)));
}

}  // namespace spamward
