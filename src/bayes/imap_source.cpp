// IMAP learning source: see imap_source.h for the contract and for why the commands are sent
// on a CONNECT_ONLY libcurl connection rather than as CURLOPT_CUSTOMREQUESTs.
#include "bayes/imap_source.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <mutex>
#include <utility>

#include "mail/charset.h"  // append_utf8
#include "state/store.h"

namespace spamward {

namespace {

constexpr uint64_t kMaxUid = 4294967295u;

// Printable text from the server or the config for an error message: control and non-ASCII
// bytes become '?', long text is cut.
std::string shown(std::string_view s, size_t max = 200) {
  std::string out;
  for (char ch : s.substr(0, max)) {
    auto c = static_cast<unsigned char>(ch);
    out += (c < 0x20 || c >= 0x7f) ? '?' : ch;
  }
  if (s.size() > max) out += "...";
  return out;
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// Decimal digits only, no sign, no overflow, value <= max.
std::optional<uint64_t> parse_number(std::string_view s, uint64_t max) {
  if (s.empty() || s.size() > 20) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (!is_digit(c)) return std::nullopt;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (max - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return out;
}

// --- UTF-8 <-> code points -------------------------------------------------------------

bool decode_utf8(std::string_view s, std::vector<char32_t>& out) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    char32_t cp;
    size_t n;
    if (c < 0x80) {
      cp = c;
      n = 1;
    } else if ((c & 0xE0) == 0xC0) {
      cp = c & 0x1F;
      n = 2;
    } else if ((c & 0xF0) == 0xE0) {
      cp = c & 0x0F;
      n = 3;
    } else if ((c & 0xF8) == 0xF0) {
      cp = c & 0x07;
      n = 4;
    } else {
      return false;
    }
    if (i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr char32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    out.push_back(cp);
    i += n;
  }
  return true;
}

constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == ',') return 63;
  return -1;
}

}  // namespace

// --- modified UTF-7 ----------------------------------------------------------------------

std::optional<std::string> imap_utf7_encode(std::string_view utf8) {
  std::vector<char32_t> cps;
  if (!decode_utf8(utf8, cps)) return std::nullopt;
  std::string out;
  std::vector<uint16_t> units;
  auto flush = [&] {
    if (units.empty()) return;
    out += '&';
    uint32_t bits = 0;
    int nbits = 0;
    for (uint16_t u : units) {
      bits = (bits << 16) | u;
      nbits += 16;
      while (nbits >= 6) {
        nbits -= 6;
        out += kB64[(bits >> nbits) & 0x3F];
      }
      bits &= (1u << nbits) - 1;
    }
    if (nbits > 0) out += kB64[(bits << (6 - nbits)) & 0x3F];
    out += '-';
    units.clear();
  };
  for (char32_t cp : cps) {
    if (cp >= 0x20 && cp <= 0x7E) {
      flush();
      if (cp == '&')
        out += "&-";
      else
        out += static_cast<char>(cp);
    } else if (cp >= 0x10000) {
      char32_t v = cp - 0x10000;
      units.push_back(static_cast<uint16_t>(0xD800 + (v >> 10)));
      units.push_back(static_cast<uint16_t>(0xDC00 + (v & 0x3FF)));
    } else {
      units.push_back(static_cast<uint16_t>(cp));
    }
  }
  flush();
  return out;
}

std::optional<std::string> imap_utf7_decode(std::string_view s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    auto uc = static_cast<unsigned char>(c);
    if (uc < 0x20 || uc > 0x7E) return std::nullopt;
    if (c != '&') {
      out += c;
      ++i;
      continue;
    }
    size_t end = s.find('-', i + 1);
    if (end == std::string_view::npos) return std::nullopt;
    if (end == i + 1) {  // "&-"
      out += '&';
      i = end + 1;
      continue;
    }
    uint32_t bits = 0;
    int nbits = 0;
    std::vector<uint16_t> units;
    for (size_t k = i + 1; k < end; ++k) {
      int v = b64_value(s[k]);
      if (v < 0) return std::nullopt;
      bits = (bits << 6) | static_cast<uint32_t>(v);
      nbits += 6;
      if (nbits >= 16) {
        nbits -= 16;
        units.push_back(static_cast<uint16_t>((bits >> nbits) & 0xFFFF));
        bits &= (1u << nbits) - 1;
      }
    }
    if (nbits >= 6 || bits != 0 || units.empty()) return std::nullopt;  // padding must be zero
    for (size_t k = 0; k < units.size(); ++k) {
      char32_t u = units[k];
      if (u >= 0xD800 && u <= 0xDBFF) {
        if (k + 1 >= units.size() || units[k + 1] < 0xDC00 || units[k + 1] > 0xDFFF)
          return std::nullopt;
        char32_t cp = 0x10000 + ((u - 0xD800) << 10) + (units[k + 1] - 0xDC00);
        append_utf8(out, cp);
        ++k;
      } else if (u >= 0xDC00 && u <= 0xDFFF) {
        return std::nullopt;
      } else if (u >= 0x20 && u <= 0x7E) {
        return std::nullopt;  // printable ASCII must stand for itself
      } else {
        append_utf8(out, u);
      }
    }
    i = end + 1;
    // Two shifts back to back ("&AAA-&BBB-") are not canonical: one shift would do.
    if (i < s.size() && s[i] == '&' && i + 1 < s.size() && s[i + 1] != '-') return std::nullopt;
  }
  return out;
}

std::optional<std::string> imap_quoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    auto uc = static_cast<unsigned char>(c);
    if (uc == 0 || uc == '\r' || uc == '\n' || uc > 0x7F) return std::nullopt;
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string imap_folder_problem(std::string_view folder) {
  if (folder.empty()) return "a folder name is empty";
  for (char ch : folder) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '\r' || c == '\n') return "a folder name contains a line break";
    if (c < 0x20 || c == 0x7F) return "a folder name contains a control character";
  }
  if (folder.size() > 1024) return "a folder name is longer than 1024 bytes";
  std::vector<char32_t> cps;
  if (!decode_utf8(folder, cps)) return "a folder name is not valid UTF-8";
  return "";
}

std::string imap_mailbox_argument(std::string_view folder) {
  std::string problem = imap_folder_problem(folder);
  if (!problem.empty()) throw ImapError("folder \"" + shown(folder) + "\": " + problem);
  auto encoded = imap_utf7_encode(folder);
  auto quoted = encoded ? imap_quoted(*encoded) : std::nullopt;
  if (!quoted) throw ImapError("folder \"" + shown(folder) + "\": cannot be encoded");
  return *quoted;
}

// --- response parser ----------------------------------------------------------------------

void ImapResponseParser::fail(std::string why) {
  if (error_.empty()) error_ = std::move(why);
  line_.clear();
  line_.shrink_to_fit();
  current_ = ImapResponse{};
}

size_t ImapResponseParser::buffered() const {
  size_t n = line_.size() + current_.text.size();
  for (const auto& l : current_.literals) n += l.size();
  return n;
}

void ImapResponseParser::feed(std::string_view data) {
  size_t i = 0;
  while (i < data.size() && error_.empty()) {
    if (in_literal_) {
      size_t take = static_cast<size_t>(std::min<uint64_t>(literal_left_, data.size() - i));
      std::string& lit = current_.literals.back();
      size_t room =
          limits_.max_literal_bytes > lit.size() ? limits_.max_literal_bytes - lit.size() : 0;
      size_t keep = std::min(take, room);
      lit.append(data.data() + i, keep);
      if (keep < take) current_.truncated = true;
      literal_left_ -= take;
      i += take;
      if (literal_left_ == 0) in_literal_ = false;
      continue;
    }
    size_t nl = data.find('\n', i);
    size_t end = nl == std::string_view::npos ? data.size() : nl;
    if (text_bytes_ + line_.size() + (end - i) > limits_.max_line_bytes + 2) {
      fail("the server sent a response line longer than " + std::to_string(limits_.max_line_bytes) +
           " bytes");
      return;
    }
    line_.append(data.data() + i, end - i);
    if (nl == std::string_view::npos) return;
    i = nl + 1;
    end_line();
  }
}

void ImapResponseParser::end_line() {
  std::string line = std::move(line_);
  line_.clear();
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.find('\0') != std::string::npos) {
    fail("the server sent a NUL byte in a response line");
    return;
  }
  // A literal announcement ends the line: "{N}" (or "{N+}", "~{N}" for literal8). A line that
  // ends in braces around something else is plain text.
  if (!line.empty() && line.back() == '}') {
    size_t open = line.rfind('{');
    std::string_view inner;
    if (open != std::string::npos)
      inner = std::string_view(line).substr(open + 1, line.size() - open - 2);
    if (!inner.empty() && inner.back() == '+') inner.remove_suffix(1);
    if (!inner.empty() && std::all_of(inner.begin(), inner.end(), is_digit)) {
      auto n = parse_number(inner, uint64_t{1} << 40);
      if (!n) {
        fail("the server announced a literal of absurd size \"" + shown(line.substr(open), 40) +
             "\"");
        return;
      }
      if (current_.literals.size() >= limits_.max_literals) {
        fail("the server sent more than " + std::to_string(limits_.max_literals) +
             " literals in one response");
        return;
      }
      size_t cut = open;
      if (cut > 0 && line[cut - 1] == '~') --cut;
      line.resize(cut);
      line += '\0';
      current_.text += line;
      text_bytes_ += line.size();
      current_.literals.emplace_back();
      current_.literal_sizes.push_back(*n);
      literal_left_ = *n;
      in_literal_ = *n > 0;
      return;
    }
  }
  current_.text += line;
  ImapResponse r = std::move(current_);
  current_ = ImapResponse{};
  text_bytes_ = 0;
  std::string& t = r.text;
  if (t.starts_with("* ")) {
    r.kind = ImapResponse::Kind::untagged;
    t.erase(0, 2);
  } else if (t == "+" || t.starts_with("+ ")) {
    r.kind = ImapResponse::Kind::continuation;
    t.erase(0, std::min<size_t>(2, t.size()));
  } else {
    size_t sp = t.find(' ');
    std::string_view tag(t.data(), sp == std::string::npos ? t.size() : sp);
    bool ok = sp != std::string::npos && !tag.empty() && tag.size() <= 64 &&
              std::all_of(tag.begin(), tag.end(), [](char c) {
                auto u = static_cast<unsigned char>(c);
                return u > 0x20 && u < 0x7F && c != '(' && c != ')' && c != '{' && c != '%' &&
                       c != '*' && c != '"' && c != '\\' && c != '+';
              });
    if (!ok) {
      fail("the server sent a malformed response line \"" + shown(t, 80) + "\"");
      return;
    }
    r.kind = ImapResponse::Kind::tagged;
    r.tag = std::string(tag);
    t.erase(0, sp + 1);
  }
  ready_.push_back(std::move(r));
}

bool ImapResponseParser::next(ImapResponse& out) {
  if (ready_head_ >= ready_.size()) {
    ready_.clear();
    ready_head_ = 0;
    return false;
  }
  out = std::move(ready_[ready_head_++]);
  if (ready_head_ == ready_.size()) {
    ready_.clear();
    ready_head_ = 0;
  }
  return true;
}

// --- tokenizer ----------------------------------------------------------------------------

namespace {

// ATOM-CHAR, plus '\' and '*' for flags such as \Seen and \*.
bool atom_char(char c) {
  auto u = static_cast<unsigned char>(c);
  return u > 0x20 && u < 0x7F && c != '(' && c != ')' && c != '{' && c != '"' && c != '[' &&
         c != ']';
}

}  // namespace

ImapToken ImapTokenizer::next() {
  const std::string& t = r_.text;
  if (pos_ < t.size() && t[pos_] == ' ') ++pos_;
  ImapToken tok;
  if (pos_ >= t.size()) return tok;  // end
  char c = t[pos_];
  if (c == '(') {
    ++pos_;
    if (++depth_ > 64) throw ImapError("the server sent lists nested too deeply");
    tok.type = ImapToken::Type::lparen;
    return tok;
  }
  if (c == ')') {
    ++pos_;
    --depth_;
    tok.type = ImapToken::Type::rparen;
    return tok;
  }
  if (c == '\0') {
    ++pos_;
    if (literal_ >= r_.literals.size()) throw ImapError("internal: literal index out of range");
    tok.type = ImapToken::Type::literal;
    tok.literal_index = literal_;
    tok.value = r_.literals[literal_++];
    return tok;
  }
  if (c == '"') {
    ++pos_;
    std::string v;
    while (true) {
      if (pos_ >= t.size()) throw ImapError("the server sent an unterminated quoted string");
      char q = t[pos_++];
      if (q == '"') break;
      if (q == '\\') {
        if (pos_ >= t.size() || (t[pos_] != '"' && t[pos_] != '\\'))
          throw ImapError("the server sent a bad escape in a quoted string");
        q = t[pos_++];
      } else if (q == '\0') {
        throw ImapError("the server sent a literal inside a quoted string");
      }
      v += q;
      if (v.size() > (size_t{1} << 20)) throw ImapError("the server sent a huge quoted string");
    }
    tok.type = ImapToken::Type::quoted;
    tok.value = std::move(v);
    return tok;
  }
  // An atom; "[...]" (a section, which may hold spaces and parentheses) and "<...>" are part
  // of it, as in BODY[HEADER.FIELDS (SUBJECT)]<0>.
  size_t start = pos_;
  while (pos_ < t.size()) {
    char a = t[pos_];
    if (a == '[') {
      size_t close = t.find(']', pos_);
      if (close == std::string::npos) throw ImapError("the server sent an unterminated '['");
      if (t.find('\0', pos_) < close) throw ImapError("the server sent a literal inside '[...]'");
      pos_ = close + 1;
      continue;
    }
    if (a == ']' || !atom_char(a)) break;
    ++pos_;
  }
  if (pos_ == start)
    throw ImapError("the server sent an unexpected character '" + shown(std::string(1, c)) + "'");
  tok.value = t.substr(start, pos_ - start);
  if (auto n = parse_number(tok.value, UINT64_MAX)) {
    tok.type = ImapToken::Type::number;
    tok.number = *n;
  } else if (upper(tok.value) == "NIL") {
    tok.type = ImapToken::Type::nil;
  } else {
    tok.type = ImapToken::Type::atom;
  }
  return tok;
}

void ImapTokenizer::skip_value(const ImapToken& first) {
  if (first.type == ImapToken::Type::end || first.type == ImapToken::Type::rparen)
    throw ImapError("the server sent a FETCH item without a value");
  if (first.type != ImapToken::Type::lparen) return;
  int level = 1;
  while (level > 0) {
    ImapToken t = next();
    if (t.type == ImapToken::Type::end) throw ImapError("the server sent an unbalanced list");
    if (t.type == ImapToken::Type::lparen) ++level;
    if (t.type == ImapToken::Type::rparen) --level;
  }
}

std::string_view ImapTokenizer::rest() const {
  std::string_view t(r_.text);
  size_t p = std::min(pos_, t.size());
  if (p < t.size() && t[p] == ' ') ++p;
  return t.substr(p);
}

// --- response shapes ----------------------------------------------------------------------

ImapStatus parse_imap_status(std::string_view text) {
  ImapStatus s;
  size_t sp = text.find(' ');
  std::string word = upper(text.substr(0, sp));
  if (word != "OK" && word != "NO" && word != "BAD" && word != "BYE" && word != "PREAUTH") return s;
  s.status = word;
  std::string_view rest = sp == std::string_view::npos ? std::string_view() : text.substr(sp + 1);
  if (rest.starts_with("[")) {
    size_t close = rest.find(']');
    if (close != std::string_view::npos) {
      s.code = std::string(rest.substr(1, close - 1));
      rest.remove_prefix(close + 1);
      if (rest.starts_with(" ")) rest.remove_prefix(1);
    }
  }
  s.text = std::string(rest);
  return s;
}

std::vector<uint32_t> parse_imap_search(std::string_view rest) {
  std::vector<uint32_t> out;
  size_t i = 0;
  while (i < rest.size()) {
    if (rest[i] == ' ') {
      ++i;
      continue;
    }
    size_t end = rest.find(' ', i);
    if (end == std::string_view::npos) end = rest.size();
    auto n = parse_number(rest.substr(i, end - i), kMaxUid);
    if (!n || *n == 0)
      throw ImapError("the server sent a malformed SEARCH response (\"" +
                      shown(rest.substr(i, end - i), 40) + "\")");
    out.push_back(static_cast<uint32_t>(*n));
    i = end;
  }
  return out;
}

std::optional<ImapFetch> parse_imap_fetch(const ImapResponse& r) {
  if (r.kind != ImapResponse::Kind::untagged) return std::nullopt;
  ImapTokenizer tk(r);
  ImapToken seq = tk.next();
  if (seq.type != ImapToken::Type::number) return std::nullopt;
  ImapToken word = tk.next();
  if (word.type != ImapToken::Type::atom || upper(word.value) != "FETCH") return std::nullopt;
  ImapFetch f;
  if (seq.number == 0 || seq.number > kMaxUid)
    throw ImapError("the server sent a FETCH with sequence number " + std::to_string(seq.number));
  f.sequence = static_cast<uint32_t>(seq.number);
  if (tk.next().type != ImapToken::Type::lparen)
    throw ImapError("the server sent a FETCH response without '('");
  while (true) {
    ImapToken name = tk.next();
    if (name.type == ImapToken::Type::rparen) break;
    if (name.type != ImapToken::Type::atom)
      throw ImapError("the server sent a malformed FETCH response");
    std::string item = upper(name.value);
    ImapToken value = tk.next();
    if (item == "UID") {
      if (value.type != ImapToken::Type::number || value.number == 0 || value.number > kMaxUid)
        throw ImapError("the server sent a FETCH with a bad UID");
      f.uid = static_cast<uint32_t>(value.number);
    } else if (item == "RFC822.SIZE") {
      if (value.type != ImapToken::Type::number)
        throw ImapError("the server sent a FETCH with a bad RFC822.SIZE");
      f.size = value.number;
    } else if (item == "BODY[]" || item.starts_with("BODY[]<")) {
      if (value.type == ImapToken::Type::literal || value.type == ImapToken::Type::quoted) {
        f.body = std::move(value.value);
        if (value.type == ImapToken::Type::literal)
          f.body_truncated = r.literal_sizes[value.literal_index] > f.body->size();
      } else if (value.type != ImapToken::Type::nil) {
        throw ImapError("the server sent a FETCH with a bad BODY[] value");
      }
    } else {
      tk.skip_value(value);
    }
  }
  return f;
}

// --- progress ------------------------------------------------------------------------------

std::string imap_progress_key(std::string_view url, std::string_view user,
                              std::string_view folder) {
  while (url.ends_with("/")) url.remove_suffix(1);
  auto add = [](std::string& key, std::string_view part) {
    for (char c : part) {
      if (c == '%')
        key += "%25";
      else if (c == '\n')
        key += "%0A";
      else
        key += c;
    }
  };
  std::string key;
  add(key, url);
  key += '\n';
  add(key, user);
  key += '\n';
  add(key, folder);
  return key;
}

std::optional<ImapProgress> StoreImapProgress::load(const std::string& key) {
  auto v = store_.get(kTable, key);
  if (!v) return std::nullopt;
  // "1 <uidvalidity> <last_uid>"
  std::string_view s(*v);
  if (!s.starts_with("1 ")) return std::nullopt;
  s.remove_prefix(2);
  size_t sp = s.find(' ');
  if (sp == std::string_view::npos) return std::nullopt;
  auto uv = parse_number(s.substr(0, sp), kMaxUid);
  auto last = parse_number(s.substr(sp + 1), kMaxUid);
  if (!uv || !last || *uv == 0) return std::nullopt;
  return ImapProgress{static_cast<uint32_t>(*uv), static_cast<uint32_t>(*last)};
}

void StoreImapProgress::save(const std::string& key, const ImapProgress& p) {
  store_.put(kTable, key, "1 " + std::to_string(p.uidvalidity) + " " + std::to_string(p.last_uid));
}

ImapFolderPlan plan_imap_folder(const std::optional<ImapProgress>& stored, uint32_t uidvalidity) {
  ImapFolderPlan plan;
  if (!stored) {
    plan.from_uid = 1;
  } else if (stored->uidvalidity != uidvalidity) {
    plan.from_uid = 1;
    plan.restart = true;
  } else if (stored->last_uid < kMaxUid) {
    plan.from_uid = stored->last_uid + 1;
  }
  return plan;
}

std::vector<uint32_t> imap_uids_to_fetch(std::vector<uint32_t> found, uint32_t last_uid) {
  std::erase_if(found, [&](uint32_t u) { return u <= last_uid; });
  std::sort(found.begin(), found.end());
  found.erase(std::unique(found.begin(), found.end()), found.end());
  return found;
}

// --- session --------------------------------------------------------------------------------

ImapSession::ImapSession(ImapTransport& transport, ImapLimits limits)
    : transport_(transport), parser_(limits) {}

ImapResponse ImapSession::read_response() {
  ImapResponse r;
  char buf[65536];
  while (!parser_.next(r)) {
    if (parser_.failed()) throw ImapError(parser_.error());
    if (closed_) throw ImapError("the server closed the connection");
    size_t n = transport_.receive(buf, sizeof buf);
    if (n == 0) {
      closed_ = true;
      continue;
    }
    parser_.feed(std::string_view(buf, n));
  }
  return r;
}

ImapStatus ImapSession::command(std::string_view command,
                                const std::function<void(const ImapResponse&)>& on_untagged) {
  if (command.find_first_of("\r\n") != std::string_view::npos ||
      command.find('\0') != std::string_view::npos)
    throw ImapError("internal: a command with a line break");
  std::string tag = "SW" + std::to_string(next_tag_++);
  transport_.send(tag + " " + std::string(command) + "\r\n");
  while (true) {
    ImapResponse r = read_response();
    if (r.kind == ImapResponse::Kind::tagged) {
      if (r.tag != tag)
        throw ImapError("the server answered tag \"" + shown(r.tag, 40) + "\", expected " + tag);
      ImapStatus s = parse_imap_status(r.text);
      if (s.status != "OK" && s.status != "NO" && s.status != "BAD")
        throw ImapError("the server sent a malformed tagged response \"" + shown(r.text, 80) +
                        "\"");
      return s;
    }
    if (r.kind == ImapResponse::Kind::continuation)
      throw ImapError("the server asked for a continuation nobody sent");
    ImapStatus s = parse_imap_status(r.text);
    if (s.status == "BYE") {
      closed_ = true;
      throw ImapError("the server closed the connection: " + shown(s.text));
    }
    if (on_untagged) on_untagged(r);
  }
}

ImapMailbox ImapSession::examine(std::string_view folder) {
  ImapMailbox box;
  bool have_uidvalidity = false;
  ImapStatus s = command("EXAMINE " + imap_mailbox_argument(folder), [&](const ImapResponse& r) {
    ImapStatus st = parse_imap_status(r.text);
    if (st.status == "OK" && !st.code.empty()) {
      std::string_view code(st.code);
      size_t sp = code.find(' ');
      std::string name = upper(code.substr(0, sp));
      std::string_view arg = sp == std::string_view::npos ? "" : code.substr(sp + 1);
      if (name == "UIDVALIDITY") {
        auto v = parse_number(arg, kMaxUid);
        if (!v || *v == 0)
          throw ImapError("the server sent a bad UIDVALIDITY \"" + shown(arg) + "\"");
        box.uidvalidity = static_cast<uint32_t>(*v);
        have_uidvalidity = true;
      } else if (name == "UIDNEXT") {
        auto v = parse_number(arg, uint64_t{kMaxUid} + 1);
        if (v && *v > 0) box.uidnext = static_cast<uint32_t>(std::min<uint64_t>(*v, kMaxUid));
      }
      return;
    }
    ImapTokenizer tk(r);
    ImapToken n = tk.next();
    ImapToken w = tk.next();
    if (n.type == ImapToken::Type::number && w.type == ImapToken::Type::atom &&
        upper(w.value) == "EXISTS")
      box.exists = static_cast<uint32_t>(std::min<uint64_t>(n.number, kMaxUid));
  });
  if (s.status != "OK")
    throw ImapRefused("EXAMINE " + shown(folder) + " refused: " + s.status + " " + shown(s.text));
  if (!have_uidvalidity)
    throw ImapError("EXAMINE " + shown(folder) + ": the server sent no UIDVALIDITY");
  return box;
}

std::vector<uint32_t> ImapSession::uid_search_from(uint32_t from) {
  std::vector<uint32_t> uids;
  ImapStatus s =
      command("UID SEARCH UID " + std::to_string(from) + ":*", [&](const ImapResponse& r) {
        std::string_view t(r.text);
        if (t.size() >= 6 && upper(t.substr(0, 6)) == "SEARCH" && (t.size() == 6 || t[6] == ' ')) {
          auto more = parse_imap_search(t.substr(6));
          uids.insert(uids.end(), more.begin(), more.end());
        }
      });
  if (s.status != "OK") throw ImapRefused("UID SEARCH refused: " + s.status + " " + shown(s.text));
  return uids;
}

std::optional<ImapMessage> ImapSession::fetch(uint32_t uid, size_t max_bytes) {
  std::optional<ImapMessage> out;
  ImapStatus s = command("UID FETCH " + std::to_string(uid) + " (RFC822.SIZE BODY.PEEK[]<0." +
                             std::to_string(std::max<size_t>(max_bytes, 1)) + ">)",
                         [&](const ImapResponse& r) {
                           auto f = parse_imap_fetch(r);
                           if (!f || f->uid != uid || !f->body)
                             return;  // e.g. an unsolicited flag update
                           ImapMessage m;
                           m.uid = uid;
                           m.raw = std::move(*f->body);
                           if (m.raw.size() > max_bytes) m.raw.resize(max_bytes);
                           m.size = f->size.value_or(m.raw.size());
                           m.truncated = f->body_truncated || m.size > m.raw.size();
                           out = std::move(m);
                         });
  if (s.status != "OK")
    throw ImapRefused("UID FETCH " + std::to_string(uid) + " refused: " + s.status + " " +
                      shown(s.text));
  return out;
}

void ImapSession::logout() noexcept {
  try {
    if (closed_) return;
    const std::string tag = "SW" + std::to_string(next_tag_++);
    transport_.send(tag + " LOGOUT\r\n");
    // The server answers "* BYE" and the tagged OK, then closes; read until either is seen.
    for (int i = 0; i < 16; ++i) {
      ImapResponse r = read_response();
      if (r.kind == ImapResponse::Kind::tagged) break;
    }
  } catch (...) {
    // Whatever happens now, the work is done.
  }
  closed_ = true;
}

// --- learning ---------------------------------------------------------------------------------

std::vector<ImapFolderReport> learn_imap_folders(ImapSession& session, const ImapAccount& account,
                                                 ImapProgressStore& progress,
                                                 const ImapMessageSink& sink,
                                                 const ImapOptions& options) {
  std::vector<ImapFolderReport> reports;
  std::vector<std::pair<std::string, bool>> folders;
  for (const auto& f : account.spam_folders) folders.emplace_back(f, true);
  for (const auto& f : account.ham_folders) folders.emplace_back(f, false);
  for (const auto& [folder, is_spam] : folders) {
    ImapFolderReport rep;
    rep.folder = folder;
    rep.is_spam = is_spam;
    const std::string key = imap_progress_key(account.url, account.user, folder);
    ImapMailbox box;
    try {
      box = session.examine(folder);
    } catch (const ImapRefused& e) {
      // A refused EXAMINE leaves the session usable; anything else (a protocol error) does not.
      rep.error = e.what();
      reports.push_back(std::move(rep));
      continue;
    }
    std::optional<ImapProgress> stored = progress.load(key);
    ImapFolderPlan plan = plan_imap_folder(stored, box.uidvalidity);
    rep.restarted = plan.restart;
    rep.progress = ImapProgress{box.uidvalidity, plan.restart || !stored ? 0u : stored->last_uid};
    if (!stored || plan.restart) progress.save(key, rep.progress);
    // UIDNEXT is only a prediction (some servers get it wrong): SEARCH even when it says
    // nothing is new; an empty folder is certain.
    if (plan.from_uid && box.exists > 0) {
      std::vector<uint32_t> uids =
          imap_uids_to_fetch(session.uid_search_from(*plan.from_uid), rep.progress.last_uid);
      for (uint32_t uid : uids) {
        std::optional<ImapMessage> m = session.fetch(uid, options.max_message_bytes);
        if (m) {
          ++rep.fetched;
          if (m->truncated) ++rep.truncated;
          if (sink(m->raw, is_spam, folder, uid)) ++rep.learned;
        }
        rep.progress.last_uid = uid;
        progress.save(key, rep.progress);
      }
    }
    reports.push_back(std::move(rep));
  }
  return reports;
}

std::string read_imap_password_file(const std::string& path) {
  const std::string where = "password_file " + path;
  if (path.empty()) throw ImapError("no password_file is set for this account");
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) throw ImapError(where + ": cannot open: " + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) throw ImapError(where + ": cannot stat: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw ImapError(where + ": is not a regular file");
  if (st.st_uid != ::geteuid()) {
    throw ImapError(where + ": is owned by uid " + std::to_string(st.st_uid) +
                    ", not by the user spamward runs as (uid " + std::to_string(::geteuid()) +
                    "); chown it");
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    throw ImapError(where + ": mode " + mode +
                    " lets group or others read it; refused (chmod 600 " + path + ")");
  }
  std::string data;
  char buf[1100];
  while (data.size() <= 1026) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw ImapError(where + ": cannot read: " + std::strerror(errno));
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  size_t nl = data.find('\n');
  if (nl == std::string::npos && data.size() > 1024)
    throw ImapError(where + ": the password is longer than 1024 bytes");
  std::string pw = data.substr(0, nl);
  if (!pw.empty() && pw.back() == '\r') pw.pop_back();
  if (pw.empty()) throw ImapError(where + ": the first line (the password) is empty");
  if (pw.size() > 1024) throw ImapError(where + ": the password is longer than 1024 bytes");
  if (pw.find('\0') != std::string::npos) throw ImapError(where + ": the password contains NUL");
  return pw;
}

// --- libcurl --------------------------------------------------------------------------------

namespace {

void curl_init_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

class CurlTransport final : public ImapTransport {
 public:
  CurlTransport(CURL* curl, std::string where, std::chrono::milliseconds timeout)
      : curl_(curl), where_(std::move(where)), timeout_(timeout) {
    curl_socket_t s = CURL_SOCKET_BAD;
    if (curl_easy_getinfo(curl_, CURLINFO_ACTIVESOCKET, &s) != CURLE_OK || s == CURL_SOCKET_BAD)
      throw ImapError(where_ + ": no connection after login");
    socket_ = s;
  }
  ~CurlTransport() override {
    // Our LOGOUT has been sent (or the session failed): shut the socket so that libcurl's own
    // LOGOUT at clean-up fails at once instead of waiting for an answer.
    if (socket_ != CURL_SOCKET_BAD) ::shutdown(socket_, SHUT_RDWR);
    curl_easy_cleanup(curl_);
  }

  void send(std::string_view bytes) override {
    while (!bytes.empty()) {
      size_t sent = 0;
      CURLcode rc = curl_easy_send(curl_, bytes.data(), bytes.size(), &sent);
      if (rc == CURLE_AGAIN) {
        wait(POLLOUT);
        continue;
      }
      if (rc != CURLE_OK) throw ImapError(where_ + ": sending failed: " + curl_easy_strerror(rc));
      bytes.remove_prefix(sent);
    }
  }

  size_t receive(char* buffer, size_t size) override {
    while (true) {
      size_t n = 0;
      CURLcode rc = curl_easy_recv(curl_, buffer, size, &n);
      if (rc == CURLE_AGAIN) {
        wait(POLLIN);
        continue;
      }
      if (rc != CURLE_OK) throw ImapError(where_ + ": receiving failed: " + curl_easy_strerror(rc));
      return n;
    }
  }

 private:
  void wait(short events) {
    struct pollfd p {
      static_cast<int>(socket_), events, 0
    };
    while (true) {
      int r = ::poll(&p, 1, static_cast<int>(timeout_.count()));
      if (r > 0) return;
      if (r == 0)
        throw ImapError(where_ + ": no answer from the server within " +
                        std::to_string(timeout_.count() / 1000) + " s");
      if (errno != EINTR) throw ImapError(where_ + ": poll: " + std::strerror(errno));
    }
  }

  CURL* curl_;
  std::string where_;
  std::chrono::milliseconds timeout_;
  curl_socket_t socket_ = CURL_SOCKET_BAD;
};

}  // namespace

std::unique_ptr<ImapTransport> connect_imap(const ImapAccount& account, const std::string& password,
                                            const ImapOptions& options) {
  curl_init_once();
  std::string url = account.url;
  while (url.ends_with("/")) url.pop_back();
  const std::string where = url + " user " + shown(account.user, 100);
  bool implicit_tls = url.starts_with("imaps://");
  if (!implicit_tls && !url.starts_with("imap://"))
    throw ImapError(where + ": the URL must start with imaps:// or imap://");
  CURL* curl = curl_easy_init();
  if (!curl) throw ImapError(where + ": cannot initialise libcurl");
  char errbuf[CURL_ERROR_SIZE] = {0};
  std::string curl_url = url + "/";
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl, CURLOPT_URL, curl_url.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "imap,imaps");
  curl_easy_setopt(curl, CURLOPT_USERNAME, account.user.c_str());
  curl_easy_setopt(curl, CURLOPT_PASSWORD, password.c_str());
  curl_easy_setopt(curl, CURLOPT_CONNECT_ONLY, 1L);
  curl_easy_setopt(curl, CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_ALL));
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options.timeout.count()));
  curl_easy_setopt(curl, CURLOPT_SERVER_RESPONSE_TIMEOUT,
                   static_cast<long>(std::max<int64_t>(1, options.timeout.count() / 1000)));
  if (options.verbose) curl_easy_setopt(curl, CURLOPT_VERBOSE, 1L);
  if (!account.ca_file.empty()) {
    // CAINFO replaces the default bundle; keep the system's CAs through the hashed directory.
    curl_easy_setopt(curl, CURLOPT_CAINFO, account.ca_file.c_str());
    char* capath = nullptr;
    if (curl_easy_getinfo(curl, CURLINFO_CAPATH, &capath) == CURLE_OK && capath)
      curl_easy_setopt(curl, CURLOPT_CAPATH, capath);
    else
      curl_easy_setopt(curl, CURLOPT_CAPATH, "/etc/ssl/certs");
  }
  CURLcode rc = curl_easy_perform(curl);
  if (rc != CURLE_OK) {
    std::string detail = errbuf[0] ? std::string(errbuf) : curl_easy_strerror(rc);
    std::string why;
    switch (rc) {
      case CURLE_LOGIN_DENIED:
        why = "login denied (wrong user or password?)";
        break;
      case CURLE_PEER_FAILED_VERIFICATION:
        why = "TLS certificate not trusted: " + detail +
              " (for a self-signed server set ca_file to its certificate or CA)";
        break;
      case CURLE_SSL_CACERT_BADFILE:
        why = "cannot use ca_file " + account.ca_file + ": " + detail;
        break;
      case CURLE_USE_SSL_FAILED:
        why =
            "the server offers no STARTTLS, and imap:// is used only with STARTTLS (use "
            "imaps://)";
        break;
      case CURLE_OPERATION_TIMEDOUT:
        why = "timed out connecting or logging in: " + detail;
        break;
      default:
        why = detail;
        break;
    }
    curl_easy_cleanup(curl);
    throw ImapError(where + ": " + why);
  }
  try {
    return std::make_unique<CurlTransport>(curl, where, options.timeout);
  } catch (...) {
    curl_easy_cleanup(curl);
    throw;
  }
}

std::vector<ImapFolderReport> learn_imap_account(const ImapAccount& account,
                                                 ImapProgressStore& progress,
                                                 const ImapMessageSink& sink,
                                                 const ImapOptions& options) {
  for (const auto* list : {&account.spam_folders, &account.ham_folders}) {
    for (const auto& f : *list) {
      std::string problem = imap_folder_problem(f);
      if (!problem.empty())
        throw ImapError("folder \"" + shown(f) + "\" of user " + shown(account.user) + ": " +
                        problem);
    }
  }
  std::string password = read_imap_password_file(account.password_file);
  std::unique_ptr<ImapTransport> transport = connect_imap(account, password, options);
  std::fill(password.begin(), password.end(), '\0');
  ImapOptions o = options;
  // The body literal must fit, whatever the other limits say.
  o.limits.max_literal_bytes = std::max(o.limits.max_literal_bytes, o.max_message_bytes);
  ImapSession session(*transport, o.limits);
  std::string url = account.url;
  while (url.ends_with("/")) url.pop_back();
  try {
    auto reports = learn_imap_folders(session, account, progress, sink, o);
    session.logout();
    return reports;
  } catch (const ImapError& e) {
    std::string what = e.what();
    if (what.starts_with(url)) throw;
    throw ImapError(url + " user " + shown(account.user, 100) + ": " + what);
  }
}

}  // namespace spamward
