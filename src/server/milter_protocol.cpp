#include "server/milter_protocol.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

#include "auth/authentication_results.h"
#include "core/strings.h"

namespace spamward {

std::string_view to_string(MilterError e) {
  switch (e) {
    case MilterError::none:
      return "none";
    case MilterError::frame_too_large:
      return "frame_too_large";
    case MilterError::empty_frame:
      return "empty_frame";
    case MilterError::bad_negotiation:
      return "bad_negotiation";
    case MilterError::malformed_command:
      return "malformed_command";
    case MilterError::unknown_command:
      return "unknown_command";
    case MilterError::unexpected_command:
      return "unexpected_command";
  }
  return "unknown";
}

// ---------------------------------------------------------------------------------------------
// MilterFrameReader

MilterFrameReader::MilterFrameReader(size_t max_frame)
    : max_frame_(std::max(max_frame, kMinMilterFrame)) {}

size_t MilterFrameReader::feed(std::string_view bytes) {
  if (status_ != Status::incomplete) return 0;
  size_t used = 0;
  while (header_fill_ < 4 && used < bytes.size()) header_[header_fill_++] = bytes[used++];
  if (header_fill_ < 4) return used;
  if (frame_.empty() && length_ == 0) {
    length_ = (uint32_t{header_[0]} << 24) | (uint32_t{header_[1]} << 16) |
              (uint32_t{header_[2]} << 8) | uint32_t{header_[3]};
    if (length_ == 0) {
      status_ = Status::error;
      error_ = MilterError::empty_frame;
      return used;
    }
    if (length_ > max_frame_) {
      status_ = Status::error;
      error_ = MilterError::frame_too_large;
      return used;
    }
    // Grows as the data arrives: a peer that announces 1 MiB and sends nothing holds little.
    frame_.reserve(std::min<size_t>(length_, kMinMilterFrame));
  }
  const size_t want = length_ - frame_.size();
  const size_t take = std::min(want, bytes.size() - used);
  frame_.append(bytes.data() + used, take);
  used += take;
  if (frame_.size() == length_) status_ = Status::complete;
  return used;
}

std::string_view MilterFrameReader::data() const {
  if (frame_.empty()) return {};
  return std::string_view(frame_).substr(1);
}

void MilterFrameReader::next() {
  status_ = Status::incomplete;
  error_ = MilterError::none;
  header_fill_ = 0;
  length_ = 0;
  frame_.clear();
  // A huge frame's buffer is not kept for the connection's lifetime.
  if (frame_.capacity() > 2 * kMinMilterFrame) frame_.shrink_to_fit();
}

// ---------------------------------------------------------------------------------------------
// Decoding

namespace {

uint32_t get32(std::string_view d, size_t at) {
  auto b = [&](size_t i) { return uint32_t{static_cast<unsigned char>(d[at + i])}; };
  return (b(0) << 24) | (b(1) << 16) | (b(2) << 8) | b(3);
}

void put32(std::string& out, uint32_t v) {
  out += static_cast<char>((v >> 24) & 0xff);
  out += static_cast<char>((v >> 16) & 0xff);
  out += static_cast<char>((v >> 8) & 0xff);
  out += static_cast<char>(v & 0xff);
}

// The NUL-terminated string at `pos`; advances pos past the NUL. nullopt without a NUL.
std::optional<std::string_view> take_string(std::string_view d, size_t& pos) {
  if (pos > d.size()) return std::nullopt;
  size_t nul = d.find('\0', pos);
  if (nul == std::string_view::npos) return std::nullopt;
  std::string_view s = d.substr(pos, nul - pos);
  pos = nul + 1;
  return s;
}

}  // namespace

std::optional<MilterOptneg> decode_optneg(std::string_view data) {
  if (data.size() < 12) return std::nullopt;
  return MilterOptneg{get32(data, 0), get32(data, 4), get32(data, 8)};
}

std::optional<MilterConnect> decode_connect(std::string_view data) {
  MilterConnect c;
  size_t pos = 0;
  auto host = take_string(data, pos);
  if (!host || pos >= data.size()) return std::nullopt;
  c.hostname = *host;
  c.family = data[pos++];
  if (c.family == 'U') return c;  // unknown family: nothing follows
  if (pos + 2 > data.size()) return std::nullopt;
  c.port = static_cast<uint16_t>((static_cast<unsigned char>(data[pos]) << 8) |
                                 static_cast<unsigned char>(data[pos + 1]));
  pos += 2;
  auto address = take_string(data, pos);
  if (!address) return std::nullopt;
  c.address = *address;
  return c;
}

std::optional<MilterMacroFrame> decode_macros(std::string_view data) {
  if (data.empty()) return std::nullopt;
  MilterMacroFrame f;
  f.stage = data[0];
  size_t pos = 1;
  while (pos < data.size()) {
    auto name = take_string(data, pos);
    if (!name) return std::nullopt;
    auto value = take_string(data, pos);
    if (!value) return std::nullopt;
    f.macros.emplace_back(*name, *value);
  }
  return f;
}

std::optional<std::vector<std::string_view>> decode_strings(std::string_view data) {
  if (data.empty() || data.back() != '\0') return std::nullopt;
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos < data.size()) {
    auto s = take_string(data, pos);
    if (!s) return std::nullopt;
    out.push_back(*s);
  }
  return out;
}

std::optional<MilterHeader> decode_header(std::string_view data) {
  size_t pos = 0;
  auto name = take_string(data, pos);
  if (!name) return std::nullopt;
  auto value = take_string(data, pos);
  if (!value || pos != data.size()) return std::nullopt;
  return MilterHeader{*name, *value};
}

// ---------------------------------------------------------------------------------------------
// Negotiation

std::optional<MilterNegotiated> negotiate(const MilterOptneg& offer, bool want_change_from) {
  if (offer.version < milter::kMinVersion) return std::nullopt;
  MilterNegotiated n;
  n.version = std::min(offer.version, milter::kVersion);
  n.add_headers = (offer.actions & milter::kActAddHeaders) != 0;
  n.change_headers = (offer.actions & milter::kActChangeHeaders) != 0;
  n.macro_lists = n.version >= 6 && (offer.actions & milter::kActSetSymList) != 0;
  n.actions = (offer.actions & (milter::kActAddHeaders | milter::kActChangeHeaders)) |
              (n.macro_lists ? milter::kActSetSymList : 0);
  n.change_from =
      want_change_from && n.version >= 6 && (offer.actions & milter::kActChangeFrom) != 0;
  if (n.change_from) n.actions |= milter::kActChangeFrom;
  if (n.version >= 6) {
    n.skip = (offer.protocol & milter::kProtoSkip) != 0;
    n.leading_space = (offer.protocol & milter::kProtoHeaderLeadSpace) != 0;
  }
  if (n.version >= 6) n.no_reply = offer.protocol & milter::kProtoNoReplyWanted;
  n.protocol = (n.skip ? milter::kProtoSkip : 0) |
               (n.leading_space ? milter::kProtoHeaderLeadSpace : 0) | n.no_reply;
  return n;
}

bool MilterNegotiated::replies_to(char command) const {
  switch (command) {
    case milter::kConnect:
      return (no_reply & milter::kProtoNoReplyConnect) == 0;
    case milter::kHelo:
      return (no_reply & milter::kProtoNoReplyHelo) == 0;
    case milter::kHeader:
      return (no_reply & milter::kProtoNoReplyHeader) == 0;
    case milter::kEoh:
      return (no_reply & milter::kProtoNoReplyEoh) == 0;
    case milter::kUnknown:
      return (no_reply & milter::kProtoNoReplyUnknown) == 0;
    default:
      return true;
  }
}

const std::vector<std::pair<uint32_t, std::string_view>>& requested_macro_lists() {
  // Postfix replaces ALL its lists with these when any is sent: every stage that needs a
  // macro names it. `i` (queue id) from MAIL on: Postfix assigns it at MAIL.
  static const std::vector<std::pair<uint32_t, std::string_view>> lists = {
      {milter::kMacroConnect,
       "j _ {daemon_name} {daemon_addr} {daemon_port} {if_addr} {client_name} {client_ptr} "
       "{client_resolve}"},
      {milter::kMacroHelo, "{tls_version}"},
      {milter::kMacroEnvFrom, "i {auth_authen} {auth_type}"},
      {milter::kMacroEnvRcpt, "i"},
      {milter::kMacroData, "i"},
      {milter::kMacroEom, "i"},
  };
  return lists;
}

void append_optneg_reply(std::string& out, const MilterNegotiated& n) {
  std::string data;
  put32(data, n.version);
  put32(data, n.actions);
  put32(data, n.protocol);
  if (n.macro_lists) {
    for (const auto& [stage, names] : requested_macro_lists()) {
      put32(data, stage);
      data.append(names);
      data += '\0';
    }
  }
  append_frame(out, milter::kReplyOptneg, data);
}

// ---------------------------------------------------------------------------------------------
// Macros and facts

namespace {

std::string_view without_braces(std::string_view name) {
  if (name.size() >= 2 && name.front() == '{' && name.back() == '}')
    return name.substr(1, name.size() - 2);
  return name;
}

}  // namespace

int MilterMacros::rank(char stage) {
  switch (stage) {
    case milter::kConnect:
      return 0;
    case milter::kHelo:
      return 1;
    case milter::kMail:
      return 2;
    case milter::kRcpt:
      return 3;
    case milter::kData:
      return 4;
    case milter::kHeader:
    case milter::kEoh:
      return 5;
    case milter::kBody:
    case milter::kBodyEob:
      return 6;
    default:
      return 7;  // unknown commands, abort: kept with the transaction's macros
  }
}

void MilterMacros::set(const MilterMacroFrame& frame) {
  auto& stage = by_stage_[rank(frame.stage)];
  for (const auto& [raw_name, value] : frame.macros) {
    std::string_view name = without_braces(raw_name);
    if (name.empty()) continue;
    auto it = stage.find(name);
    if (it == stage.end()) {
      if (stage.size() >= kMaxMacrosPerStage) continue;
      it = stage.emplace(std::string(name), std::string()).first;
    }
    it->second.assign(value.substr(0, kMaxMacroValue));
  }
}

std::optional<std::string_view> MilterMacros::get(std::string_view name) const {
  name = without_braces(name);
  for (auto it = by_stage_.rbegin(); it != by_stage_.rend(); ++it) {
    auto found = it->second.find(name);
    if (found != it->second.end()) return std::string_view(found->second);
  }
  return std::nullopt;
}

void MilterMacros::clear_transaction() {
  by_stage_.erase(by_stage_.lower_bound(rank(milter::kMail)), by_stage_.end());
}

void MilterMacros::clear() {
  by_stage_.clear();
}

void apply_connect_facts(const MilterConnect& connect, const MilterMacros& macros,
                         Transaction& tx) {
  tx.client_address.reset();
  if (connect.family == '4' || connect.family == '6') {
    std::string_view a = connect.address;
    if (a.size() > 5 && iequals(a.substr(0, 5), "IPv6:")) a.remove_prefix(5);
    tx.client_address = IpAddress::parse(a);
  }
  const bool bracketed = connect.hostname.empty() || connect.hostname.front() == '[';
  tx.client_name.clear();
  tx.reverse_client_name.clear();
  auto resolve = macros.get("client_resolve");
  if (resolve) {
    // Sendmail: the hostname is the PTR; {client_resolve} says whether it is verified.
    if (*resolve == "OK") {
      if (!bracketed) tx.client_name = tx.reverse_client_name = std::string(connect.hostname);
    } else if (*resolve == "FORGED") {
      tx.client_name = "unknown";
      auto ptr = macros.get("client_ptr");
      tx.reverse_client_name = ptr && !ptr->empty()
                                   ? std::string(*ptr)
                                   : (bracketed ? "unknown" : std::string(connect.hostname));
    } else if (*resolve == "FAIL") {
      tx.client_name = tx.reverse_client_name = "unknown";
    }
    // TEMP or anything else: both stay empty, spamward looks the PTR up itself.
  } else {
    // Postfix: {client_name} is verified or "unknown", {client_ptr} the PTR or "unknown".
    if (auto name = macros.get("client_name"); name && !name->empty()) {
      tx.client_name = std::string(*name);
    } else if (!bracketed) {
      tx.client_name = std::string(connect.hostname);
    }
    if (auto ptr = macros.get("client_ptr"); ptr && !ptr->empty())
      tx.reverse_client_name = std::string(*ptr);
  }
  tx.server_address.reset();
  auto daemon_addr = macros.get("daemon_addr");
  if (!daemon_addr || daemon_addr->empty()) daemon_addr = macros.get("if_addr");
  if (daemon_addr) {
    std::string_view a = *daemon_addr;
    if (a.size() > 5 && iequals(a.substr(0, 5), "IPv6:")) a.remove_prefix(5);
    tx.server_address = IpAddress::parse(a);
  }
  tx.server_port = 0;
  if (auto port = macros.get("daemon_port")) {
    int p = 0;
    auto [ptr, ec] = std::from_chars(port->data(), port->data() + port->size(), p);
    if (ec == std::errc() && ptr == port->data() + port->size() && p > 0 && p <= 65535)
      tx.server_port = p;
  }
}

void apply_envelope_macros(const MilterMacros& macros, Transaction& tx) {
  if (auto id = macros.get("i"); id && !id->empty()) {
    tx.queue_id = std::string(*id);
    tx.id = tx.queue_id;
  }
  if (auto user = macros.get("auth_authen"); user && !user->empty())
    tx.sasl_username = std::string(*user);
}

std::string strip_angle_brackets(std::string_view a) {
  while (!a.empty() && (a.front() == ' ' || a.front() == '\t')) a.remove_prefix(1);
  while (!a.empty() && (a.back() == ' ' || a.back() == '\t')) a.remove_suffix(1);
  if (a.size() >= 2 && a.front() == '<' && a.back() == '>') a = a.substr(1, a.size() - 2);
  return std::string(a);
}

int64_t declared_size(const std::vector<std::string_view>& args) {
  for (size_t i = 1; i < args.size(); ++i) {
    std::string_view a = args[i];
    if (a.size() > 5 && iequals(a.substr(0, 5), "SIZE=")) {
      int64_t n = 0;
      auto [ptr, ec] = std::from_chars(a.data() + 5, a.data() + a.size(), n);
      if (ec == std::errc() && ptr == a.data() + a.size() && n >= 0) return n;
    }
  }
  return 0;
}

std::string header_line(std::string_view name, std::string_view value, bool leading_space) {
  std::string out;
  out.reserve(name.size() + value.size() + 8);
  // MTAs never send a line end inside a name; if one did, it must not start a new line.
  for (char c : name) out += c == '\r' || c == '\n' ? ' ' : c;
  out += leading_space ? ":" : ": ";
  for (size_t i = 0; i < value.size(); ++i) {
    char c = value[i];
    if (c == '\n' && (i == 0 || value[i - 1] != '\r')) out += '\r';
    out += c;
  }
  out += "\r\n";
  return out;
}

bool SpamHeaderTracker::is_spam_header(std::string_view name) {
  auto starts = [&](std::string_view prefix) {
    return name.size() > prefix.size() && iequals(name.substr(0, prefix.size()), prefix);
  };
  if (!starts("X-Spam-") && !starts("X-Spamward-")) return false;
  // A field name is printable ASCII without ':' (RFC 5322 §3.6.8); MTAs send nothing else.
  for (char ch : name) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 33 || c > 126 || c == ':') return false;
  }
  return true;
}

void SpamHeaderTracker::observe(std::string_view name) {
  if (!is_spam_header(name)) return;
  std::string lower = to_lower(name);
  auto it = by_lower_name_.find(lower);
  if (it == by_lower_name_.end()) {
    if (by_lower_name_.size() >= kMaxNames) {
      overflowed_ = true;
      return;
    }
    it = by_lower_name_.emplace(std::move(lower), Entry{std::string(name), 0}).first;
  }
  ++it->second.count;
  ++total_;
}

void SpamHeaderTracker::append_deletions(std::string& out) const {
  for (const auto& [lower, entry] : by_lower_name_) {
    for (uint32_t i = entry.count; i >= 1; --i) append_change_header(out, i, entry.name, "", false);
  }
}

void SpamHeaderTracker::clear() {
  by_lower_name_.clear();
  total_ = 0;
  overflowed_ = false;
}

void AuthResultsTracker::observe(std::string_view name, std::string_view value) {
  if (!iequals(name, kName) || ids_.size() >= kMaxFields) return;
  if (name_.empty()) name_ = std::string(name);
  ids_.push_back(authserv_id_of(value));
}

size_t AuthResultsTracker::append_deletions(std::string& out, std::string_view authserv_id) const {
  size_t n = 0;
  for (size_t i = ids_.size(); i >= 1; --i) {
    if (!iequals(ids_[i - 1], authserv_id)) continue;
    append_change_header(out, static_cast<uint32_t>(i), name_, "", false);
    ++n;
  }
  return n;
}

void AuthResultsTracker::clear() {
  name_.clear();
  ids_.clear();
}

// ---------------------------------------------------------------------------------------------
// Replies

namespace {

// `text` for a reply or header value: control characters become spaces, '%' is doubled, and
// at most `max` bytes of the original text are kept (cut on a UTF-8 character boundary).
void append_sanitised(std::string& out, std::string_view text, size_t max) {
  size_t n = text.size();
  if (n > max) {
    n = max;
    while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
  }
  for (size_t i = 0; i < n; ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c == '%') {
      out += "%%";
    } else if (c < 0x20 || c == 0x7F) {
      out += ' ';
    } else {
      out += static_cast<char>(c);
    }
  }
}

// A header value may carry folding ("\n\t"); anything else control becomes a space.
std::string header_value(std::string_view value, bool leading_space) {
  std::string out;
  if (leading_space) out += ' ';
  for (size_t i = 0; i < value.size(); ++i) {
    auto c = static_cast<unsigned char>(value[i]);
    bool fold = c == '\n' && i + 1 < value.size() && (value[i + 1] == '\t' || value[i + 1] == ' ');
    out += (c < 0x20 && c != '\t' && !fold) || c == 0x7F ? ' ' : static_cast<char>(c);
  }
  return out;
}

}  // namespace

void append_frame(std::string& out, char code, std::string_view data) {
  put32(out, static_cast<uint32_t>(data.size() + 1));
  out += code;
  out.append(data);
}

void append_reply_code(std::string& out, std::string_view code, std::string_view enhanced,
                       std::string_view text) {
  std::string data;
  data.append(code);
  data += ' ';
  data.append(enhanced);
  data += ' ';
  append_sanitised(data, text, kMaxMilterReplyText);
  data += '\0';
  append_frame(out, milter::kReplyCode, data);
}

void append_add_header(std::string& out, std::string_view name, std::string_view value,
                       bool leading_space) {
  std::string data(name);
  data += '\0';
  data += header_value(value, leading_space);
  data += '\0';
  append_frame(out, milter::kReplyAddHeader, data);
}

void append_change_header(std::string& out, uint32_t index, std::string_view name,
                          std::string_view value, bool leading_space) {
  std::string data;
  put32(data, index);
  data.append(name);
  data += '\0';
  // An empty value deletes the field; a leading space would turn it into a change.
  if (!value.empty()) data += header_value(value, leading_space);
  data += '\0';
  append_frame(out, milter::kReplyChangeHeader, data);
}

bool append_change_from(std::string& out, std::string_view address) {
  if (address.find_first_of(std::string_view("\0\r\n", 3)) != std::string_view::npos) {
    return false;
  }
  std::string data;
  data.reserve(address.size() + 3);
  data += '<';
  data.append(address);
  data += '>';
  data += '\0';
  append_frame(out, milter::kReplyChangeFrom, data);
  return true;
}

bool append_refusal(const Verdict& v, Stage stage, std::string& out) {
  auto text = [&](std::string_view fallback_prefix, std::string_view fallback) {
    if (!v.reply_text.empty()) return v.reply_text;
    if (!v.reason.empty()) return std::string(fallback_prefix) + v.reason;
    return std::string(fallback);
  };
  switch (v.applied) {
    case Action::accept:
    case Action::tag:
      return false;
    case Action::greylist:
      // The whole message is deferred once, at DATA (or end of message when the content
      // raised the score); a deferral at RCPT would split a multi-recipient message.
      if (stage < Stage::data) return false;
      append_reply_code(out, "451", "4.7.1",
                        text("Greylisted by spamward, please try again later: ",
                             "Greylisted by spamward, please try again later"));
      return true;
    case Action::tempfail:
      append_reply_code(out, "450", "4.7.1",
                        text("Temporarily refused by spamward: ",
                             "Temporarily refused by spamward, please try again later"));
      return true;
    case Action::reject:
      if (v.permanent_ban) {
        append_reply_code(
            out, "554", "5.7.1",
            text("Message refused by spamward: ", "Message refused by spamward: client banned"));
      } else if (v.standalone == Standalone::unknown_recipient) {
        append_reply_code(
            out, "550", "5.1.1",
            text("Recipient refused by spamward: ", "Recipient refused by spamward: unknown user"));
      } else {
        append_reply_code(out, "550", "5.7.1",
                          text("Message refused by spamward: ", "Message refused by spamward"));
      }
      return true;
  }
  return false;
}

std::string symbols_header_value(const Verdict& v) {
  if (v.symbols.empty()) return "none";
  std::string out;
  for (const auto& s : v.symbols) {
    if (!out.empty()) out += ", ";
    out += fmt::format("{}({:.2f})", s.name, s.score);
  }
  return out;
}

void append_eom_edits(const Verdict* v, const SpamHeaderTracker& incoming,
                      const MilterNegotiated& n, std::string& out) {
  if (n.change_headers) incoming.append_deletions(out);
  if (!v || !n.add_headers) return;
  if (v->applied == Action::tag) append_add_header(out, "X-Spam-Flag", "YES", n.leading_space);
  append_add_header(out, "X-Spam-Score", fmt::format("{:.2f}", v->score), n.leading_space);
  // Folded before a symbol that would take the line past 78 characters.
  std::string value;
  size_t line = std::string_view("X-Spamward-Symbols: ").size();
  if (v->symbols.empty()) value = "none";
  for (size_t i = 0; i < v->symbols.size(); ++i) {
    std::string item =
        fmt::format("{}({:.2f})", printable(v->symbols[i].name, 200), v->symbols[i].score);
    if (i > 0) {
      value += ',';
      ++line;
      if (line + 1 + item.size() > 78) {
        value += "\n\t";
        line = 1;
      } else {
        value += ' ';
        ++line;
      }
    }
    value += item;
    line += item.size();
  }
  append_add_header(out, "X-Spamward-Symbols", value, n.leading_space);
}

void append_authentication_results_edits(const AuthResultsTracker& incoming,
                                         std::string_view authserv_id, std::string_view value,
                                         const MilterNegotiated& n, std::string& out) {
  if (authserv_id.empty()) return;
  if (n.change_headers) incoming.append_deletions(out, authserv_id);
  if (value.empty() || !n.add_headers) return;
  append_add_header(out, AuthResultsTracker::kName,
                    fold_header_value(value, AuthResultsTracker::kName.size() + 2, "\n\t"),
                    n.leading_space);
}

}  // namespace spamward
