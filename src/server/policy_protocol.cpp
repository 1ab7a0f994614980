#include "server/policy_protocol.h"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <unordered_map>

namespace spamward {

std::string_view to_string(PolicyError e) {
  switch (e) {
    case PolicyError::none:
      return "none";
    case PolicyError::line_too_long:
      return "line_too_long";
    case PolicyError::too_many_attributes:
      return "too_many_attributes";
    case PolicyError::missing_equals:
      return "missing_equals";
    case PolicyError::empty_name:
      return "empty_name";
    case PolicyError::request_too_big:
      return "request_too_big";
    case PolicyError::nul_byte:
      return "nul_byte";
    case PolicyError::empty_request:
      return "empty_request";
  }
  return "unknown";
}

std::string describe(PolicyError e, const PolicyParserLimits& limits) {
  switch (e) {
    case PolicyError::none:
      return "no error";
    case PolicyError::line_too_long:
      return "line longer than " + std::to_string(limits.max_line) + " bytes";
    case PolicyError::too_many_attributes:
      return "more than " + std::to_string(limits.max_attributes) + " attributes in a request";
    case PolicyError::missing_equals:
      return "line without '='";
    case PolicyError::empty_name:
      return "attribute without a name";
    case PolicyError::request_too_big:
      return "request larger than " + std::to_string(limits.max_request_bytes) + " bytes";
    case PolicyError::nul_byte:
      return "NUL byte in request";
    case PolicyError::empty_request:
      return "empty request";
  }
  return "unknown error";
}

// ---------------------------------------------------------------------------------------------
// PolicyRequest

std::optional<std::string_view> PolicyRequest::get(std::string_view name) const {
  for (size_t i = fields_.size(); i-- > 0;) {
    if (name_at(i) == name) return value_at(i);
  }
  return std::nullopt;
}

std::string_view PolicyRequest::name_at(size_t i) const {
  const Field& f = fields_[i];
  return std::string_view(text_).substr(f.name_offset, f.name_size);
}

std::string_view PolicyRequest::value_at(size_t i) const {
  const Field& f = fields_[i];
  return std::string_view(text_).substr(f.value_offset, f.value_size);
}

void PolicyRequest::clear() {
  text_.clear();
  fields_.clear();
}

PolicyRequest PolicyRequest::from_lines(std::string_view text) {
  PolicyRequest r;
  while (!text.empty()) {
    auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    auto eq = line.find('=');
    if (line.empty() || eq == std::string_view::npos) continue;
    auto base = static_cast<uint32_t>(r.text_.size());
    r.text_.append(line);
    r.fields_.push_back({base, static_cast<uint32_t>(eq), static_cast<uint32_t>(base + eq + 1),
                         static_cast<uint32_t>(line.size() - eq - 1)});
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// PolicyParser

PolicyParser::PolicyParser(PolicyParserLimits limits) : limits_(limits) {
  // Field offsets are 32-bit; a request limit beyond 4 GiB would be absurd anyway.
  limits_.max_request_bytes = std::min<size_t>(limits_.max_request_bytes, UINT32_MAX);
  // One typical Postfix request fits; grows (up to max_request_bytes) only for unusual ones.
  request_.text_.reserve(std::min<size_t>(limits_.max_request_bytes, 1024));
  request_.fields_.reserve(std::min<size_t>(limits_.max_attributes, 40));
}

PolicyParser::Status PolicyParser::fail(PolicyError e) {
  error_ = e;
  status_ = Status::error;
  return status_;
}

void PolicyParser::next() {
  request_.clear();
  status_ = Status::incomplete;
  error_ = PolicyError::none;
  started_ = false;
  request_bytes_ = 0;
  line_start_ = 0;
}

size_t PolicyParser::feed(std::string_view bytes) {
  if (status_ != Status::incomplete) return 0;
  size_t pos = 0;
  while (pos < bytes.size()) {
    const char* begin = bytes.data() + pos;
    const size_t left = bytes.size() - pos;
    const auto* nl = static_cast<const char*>(std::memchr(begin, '\n', left));
    const size_t chunk = nl ? static_cast<size_t>(nl - begin) : left;
    started_ = true;

    // The first offending byte, if any: a NUL, the byte that makes the line longer than
    // max_line + 1 (room for the "\r" of "\r\n", which is not part of the line; a line without
    // it is checked exactly in finish_line()), or the byte (the '\n' included) that makes the
    // request too big. Positions are absolute, so the error and the count returned do not
    // depend on how the bytes were split into reads.
    size_t stop = SIZE_MAX;
    PolicyError error = PolicyError::none;
    if (const void* nul = std::memchr(begin, '\0', chunk)) {
      stop = static_cast<size_t>(static_cast<const char*>(nul) - begin);
      error = PolicyError::nul_byte;
    }
    const size_t line_so_far = request_.text_.size() - line_start_;
    if (line_so_far + chunk > limits_.max_line + 1) {
      const size_t at = limits_.max_line + 1 - line_so_far;
      if (at < stop) {
        stop = at;
        error = PolicyError::line_too_long;
      }
    }
    const size_t with_newline = chunk + (nl ? 1 : 0);
    if (request_bytes_ + with_newline > limits_.max_request_bytes) {
      const size_t at = limits_.max_request_bytes - request_bytes_;
      if (at < stop) {
        stop = at;
        error = PolicyError::request_too_big;
      }
    }
    if (error != PolicyError::none) {
      fail(error);
      return pos + stop + 1;  // up to and including the offending byte
    }
    request_bytes_ += with_newline;
    request_.text_.append(begin, chunk);
    pos += chunk;
    if (!nl) break;
    ++pos;  // the '\n'
    if (!finish_line() || status_ == Status::complete) return pos;
  }
  return pos;
}

bool PolicyParser::finish_line() {
  std::string& text = request_.text_;
  if (text.size() > line_start_ && text.back() == '\r') text.pop_back();
  const size_t size = text.size() - line_start_;
  if (size == 0) {
    if (request_.fields_.empty()) {
      fail(PolicyError::empty_request);
      return false;
    }
    status_ = Status::complete;
    return true;
  }
  if (size > limits_.max_line) {
    fail(PolicyError::line_too_long);
    return false;
  }
  if (request_.fields_.size() >= limits_.max_attributes) {
    fail(PolicyError::too_many_attributes);
    return false;
  }
  std::string_view line = std::string_view(text).substr(line_start_);
  const size_t eq = line.find('=');
  if (eq == std::string_view::npos) {
    fail(PolicyError::missing_equals);
    return false;
  }
  if (eq == 0) {
    fail(PolicyError::empty_name);
    return false;
  }
  // Offsets fit in 32 bits: max_request_bytes (clamped in the constructor) bounds the text.
  const auto base = static_cast<uint32_t>(line_start_);
  request_.fields_.push_back({base, static_cast<uint32_t>(eq), static_cast<uint32_t>(base + eq + 1),
                              static_cast<uint32_t>(size - eq - 1)});
  line_start_ = text.size();
  return true;
}

// ---------------------------------------------------------------------------------------------
// Request -> Transaction

const std::vector<std::string_view> kPolicyAttributes = {
    "request",
    "protocol_state",
    "protocol_name",
    "helo_name",
    "queue_id",
    "sender",
    "recipient",
    "recipient_count",
    "client_address",
    "client_name",
    "reverse_client_name",
    "instance",
    "sasl_method",
    "sasl_username",
    "sasl_sender",
    "size",
    "ccert_subject",
    "ccert_issuer",
    "ccert_fingerprint",
    "ccert_pubkey_fingerprint",
    "encryption_protocol",
    "encryption_cipher",
    "encryption_keysize",
    "etrn_domain",
    "stress",
    "client_port",
    "policy_context",
    "server_address",
    "server_port",
    "compatibility_level",
    "mail_version",
};

namespace {

template <typename Int>
Int parse_number(std::string_view s) {
  Int value = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || ptr != s.data() + s.size()) return 0;
  return value;
}

enum class Attr {
  protocol_state,
  protocol_name,
  helo_name,
  queue_id,
  sender,
  recipient,
  recipient_count,
  client_address,
  client_name,
  reverse_client_name,
  instance,
  sasl_username,
  size,
  server_address,
  server_port,
};

const std::unordered_map<std::string_view, Attr>& attribute_table() {
  static const std::unordered_map<std::string_view, Attr> table = {
      {"protocol_state", Attr::protocol_state},
      {"protocol_name", Attr::protocol_name},
      {"helo_name", Attr::helo_name},
      {"queue_id", Attr::queue_id},
      {"sender", Attr::sender},
      {"recipient", Attr::recipient},
      {"recipient_count", Attr::recipient_count},
      {"client_address", Attr::client_address},
      {"client_name", Attr::client_name},
      {"reverse_client_name", Attr::reverse_client_name},
      {"instance", Attr::instance},
      {"sasl_username", Attr::sasl_username},
      {"size", Attr::size},
      {"server_address", Attr::server_address},
      {"server_port", Attr::server_port},
  };
  return table;
}

}  // namespace

std::optional<Stage> parse_protocol_state(std::string_view state) {
  if (iequals(state, "RCPT")) return Stage::rcpt;
  if (iequals(state, "DATA")) return Stage::data;
  if (iequals(state, "END-OF-MESSAGE")) return Stage::eom;
  if (iequals(state, "MAIL")) return Stage::mail;
  if (iequals(state, "CONNECT")) return Stage::connect;
  if (iequals(state, "EHLO") || iequals(state, "HELO")) return Stage::helo;
  // VRFY names a recipient, so the recipient checks are the relevant ones; ETRN has no
  // envelope at all, so only the client can be judged.
  if (iequals(state, "VRFY")) return Stage::rcpt;
  if (iequals(state, "ETRN")) return Stage::connect;
  return std::nullopt;
}

Transaction from_policy_request(const PolicyRequest& request) {
  Transaction tx;
  const auto& table = attribute_table();
  // One pass in arrival order: a repeated name simply overwrites, so the last value wins.
  for (size_t i = 0; i < request.size(); ++i) {
    auto it = table.find(request.name_at(i));
    if (it == table.end()) continue;  // known-but-not-carried or unknown: ignored
    const std::string_view v = request.value_at(i);
    switch (it->second) {
      case Attr::protocol_state:
        tx.stage = parse_protocol_state(v).value_or(Stage::connect);
        break;
      case Attr::protocol_name:
        tx.protocol.assign(v);
        break;
      case Attr::helo_name:
        tx.helo.assign(v);
        break;
      case Attr::queue_id:
        tx.queue_id.assign(v);
        break;
      case Attr::sender: {
        std::string_view s = v;
        if (s.size() >= 2 && s.front() == '<' && s.back() == '>') s = s.substr(1, s.size() - 2);
        tx.sender.assign(s);
        break;
      }
      case Attr::recipient:
        tx.recipient.assign(v);
        break;
      case Attr::recipient_count:
        tx.recipient_count = parse_number<int64_t>(v);
        break;
      case Attr::client_address:
        tx.client_address = IpAddress::parse(v);
        break;
      case Attr::client_name:
        tx.client_name.assign(v);
        break;
      case Attr::reverse_client_name:
        tx.reverse_client_name.assign(v);
        break;
      case Attr::instance:
        tx.instance.assign(v);
        break;
      case Attr::sasl_username:
        tx.sasl_username.assign(v);
        break;
      case Attr::size:
        tx.size = parse_number<int64_t>(v);
        break;
      case Attr::server_address:
        tx.server_address = IpAddress::parse(v);
        break;
      case Attr::server_port: {
        int port = parse_number<int>(v);
        tx.server_port = port >= 0 && port <= 65535 ? port : 0;
        break;
      }
    }
  }
  // At DATA and END-OF-MESSAGE Postfix names the recipient only when there is exactly one; it
  // is then the transaction's whole recipient list.
  if ((tx.stage == Stage::data || tx.stage == Stage::eom) && !tx.recipient.empty()) {
    tx.recipients.push_back(tx.recipient);
  }
  tx.id = !tx.queue_id.empty() ? tx.queue_id : tx.instance;
  return tx;
}

// ---------------------------------------------------------------------------------------------
// Verdict -> reply

namespace {

// Appends `text` with control characters turned into spaces, without letting the line that
// starts at `line_begin` exceed kMaxPolicyReplyLine bytes. A cut never splits a UTF-8
// sequence.
void append_text(std::string& out, size_t line_begin, std::string_view text) {
  const size_t room = kMaxPolicyReplyLine > out.size() - line_begin
                          ? kMaxPolicyReplyLine - (out.size() - line_begin)
                          : 0;
  size_t n = text.size();
  if (n > room) {
    n = room;
    // Back off over continuation bytes (10xxxxxx) so the cut lands on a character start.
    while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
  }
  const size_t start = out.size();
  out.append(text.data(), n);
  for (size_t i = start; i < out.size(); ++i) {
    auto c = static_cast<unsigned char>(out[i]);
    if (c < 0x20 || c == 0x7F) out[i] = ' ';
  }
}

void append_refusal(std::string& out, size_t line_begin, std::string_view code, const Verdict& v,
                    std::string_view fallback_prefix, std::string_view fallback_without_reason) {
  out += code;
  if (!v.reply_text.empty()) {
    append_text(out, line_begin, v.reply_text);
  } else if (!v.reason.empty()) {
    append_text(out, line_begin, fallback_prefix);
    append_text(out, line_begin, v.reason);
  } else {
    append_text(out, line_begin, fallback_without_reason);
  }
}

}  // namespace

void append_policy_reply(const Verdict& v, Stage stage, std::string& out) {
  const size_t line_begin = out.size();
  switch (v.applied) {
    case Action::accept:
      out += "action=DUNNO";
      break;
    case Action::tag:
      // Only a DATA or END-OF-MESSAGE decision covers the whole message; at RCPT a PREPEND
      // would be added once per recipient.
      out += stage == Stage::data || stage == Stage::eom ? "action=PREPEND X-Spam-Flag: YES"
                                                         : "action=DUNNO";
      break;
    case Action::greylist:
      append_refusal(out, line_begin, "action=DEFER_IF_PERMIT 4.7.1 ", v,
                     "Greylisted by spamward, please try again later: ",
                     "Greylisted by spamward, please try again later");
      break;
    case Action::tempfail:
      append_refusal(out, line_begin, "action=450 4.7.1 ", v, "Temporarily refused by spamward: ",
                     "Temporarily refused by spamward, please try again later");
      break;
    case Action::reject:
      if (v.permanent_ban) {
        append_refusal(out, line_begin, "action=554 5.7.1 ", v, "Message refused by spamward: ",
                       "Message refused by spamward: client banned");
      } else if (v.standalone == Standalone::unknown_recipient) {
        append_refusal(out, line_begin, "action=550 5.1.1 ", v, "Recipient refused by spamward: ",
                       "Recipient refused by spamward: unknown user");
      } else {
        append_refusal(out, line_begin, "action=REJECT 5.7.1 ", v,
                       "Message refused by spamward: ", "Message refused by spamward");
      }
      break;
  }
  out += "\n\n";
}

std::string format_policy_reply(const Verdict& verdict, Stage stage) {
  std::string out;
  append_policy_reply(verdict, stage, out);
  return out;
}

}  // namespace spamward
