#include "bayes/tokenizer.h"

#include <libpsl.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/uscript.h>
#include <unicode/utf8.h>

#include <algorithm>
#include <array>
#include <bit>
#include <string>
#include <unordered_map>
#include <vector>

#include "bayes/token_hash.h"
#include "core/strings.h"
#include "mail/charset.h"
#include "mail/mailbox.h"

namespace spamward {
namespace {

// Header fields that filters (and mailbox software) add. Matched case-insensitively; a
// trailing '*' matches any rest of the name.
constexpr std::array kIgnoredHeaders = {
    // Filters' verdicts and reports: never the sender's evidence.
    "x-spam*",
    "x-spamward*",
    "x-bogosity",
    "x-virus*",
    "authentication-results",
    "arc-authentication-results",
    "received-spf",
    "x-dspam*",
    "x-rspamd*",
    "x-amavis*",
    "x-quarantine-id",
    "x-greylist",
    "x-policyd*",
    "x-mailscanner*",
    "x-antivirus*",
    "x-barracuda*",
    "x-proofpoint*",
    "x-ironport*",
    "x-sophos*",
    "x-cmae*",
    "x-ham-report",
    "x-asg*",
    "x-crm114*",
    "x-spamassassin*",
    "x-filtered-by*",
    "x-scanned-by",
    "x-razor*",
    "x-pyzor*",
    "x-dcc*",
    "x-junk*",
    "x-microsoft-antispam*",
    "x-forefront*",
    "x-ms-exchange-organization-scl",
    "x-learned*",
    // Mailbox bookkeeping that mail stores and readers add after delivery (it records what the
    // reader did, e.g. moved it to Junk, so it would teach the filter its own answer).
    "status",
    "x-status",
    "x-keywords",
    "x-uid",
    "x-imap",
    "x-imapbase",
    "x-mozilla*",
    "x-evolution*",
    "content-length",
    "lines",
    "x-label",
    "x-folder",
    "x-kmail*",
    "delivery-date",
    "x-original-to",
    "delivered-to",
    "x-gmail-labels",
};

// ignored_header() indexes the patterns by their first three characters.
constexpr bool three_characters_before_any_star() {
  for (std::string_view p : kIgnoredHeaders) {
    if (p.size() < 3 || p.find('*') < 3) return false;
  }
  return true;
}
static_assert(three_characters_before_any_star());

// Fields whose whole (short) value is a useful token besides its words.
constexpr std::array kWholeValueHeaders = {
    "x-mailer",
    "user-agent",
    "x-mimeole",
    "x-msmail-priority",
    "x-priority",
    "importance",
    "precedence",
    "organization",
    "list-id",
    "mailing-list",
    "x-mailing-list",
    "mime-version",
    "content-transfer-encoding",
    "x-originating-ip",
    "x-library",
};

bool name_matches(std::string_view name, std::string_view pattern) {
  if (pattern.ends_with('*')) {
    pattern.remove_suffix(1);
    return name.size() >= pattern.size() && iequals(name.substr(0, pattern.size()), pattern);
  }
  return iequals(name, pattern);
}

const psl_ctx_t* public_suffixes() {
  // Loaded once, read-only afterwards, never freed (as in auth/dmarc.cpp).
  static const psl_ctx_t* ctx = [] {
    const psl_ctx_t* c = psl_latest(nullptr);
    return c ? c : psl_builtin();
  }();
  return ctx;
}

std::string registrable_domain(std::string_view host) {
  std::string h = to_lower(host);
  while (!h.empty() && h.back() == '.') h.pop_back();
  if (h.empty() || h.find('\0') != std::string::npos) return h;
  if (const psl_ctx_t* ctx = public_suffixes()) {
    // The same hosts recur in message after message (Received lines, senders, links), and the
    // suffix lookup is a tenth of tokenizing: remember recent answers, per thread.
    constexpr size_t kCacheEntries = 8192;
    thread_local std::unordered_map<std::string, std::string> cache;
    if (auto it = cache.find(h); it != cache.end()) return it->second;
    const char* r = psl_registrable_domain(ctx, h.c_str());
    std::string domain = r ? std::string(r) : h;
    if (cache.size() >= kCacheEntries) cache.clear();
    cache.emplace(std::move(h), domain);
    return domain;
  }
  size_t last = h.rfind('.');
  if (last == std::string::npos || last == 0) return h;
  size_t before = h.rfind('.', last - 1);
  return before == std::string::npos ? h : h.substr(before + 1);
}

// Index of the highest set bit + 1: 0 -> 0, 1 -> 1, 2..3 -> 2, 4..7 -> 3, ...
int log2_bucket(uint64_t n) {
  return static_cast<int>(std::bit_width(n));
}

// The character classes of `s`, runs collapsed: "a1b2c3d4@x" -> "a9a9a9a9@a". Tells
// machine-made identifiers (Message-ID left parts, MIME boundaries) apart by their making.
std::string shape_of(std::string_view s, size_t max = 24) {
  std::string out;
  for (unsigned char c : s) {
    char k;
    if (c >= '0' && c <= '9') {
      k = '9';
    } else if (c >= 'a' && c <= 'z') {
      k = 'a';
    } else if (c >= 'A' && c <= 'Z') {
      k = 'A';
    } else if (c >= 0x80) {
      k = 'u';
    } else {
      k = static_cast<char>(c);
    }
    if (out.empty() || out.back() != k) out += k;
    if (out.size() >= max) break;
  }
  return out;
}

bool is_ascii_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// Scripts written without spaces: each character is a word of its own.
bool unspaced_script(UChar32 c) {
  if (c < 0x0E00) return false;  // below Thai, the first of these scripts: no lookup
  UErrorCode err = U_ZERO_ERROR;
  UScriptCode s = uscript_getScript(c, &err);
  return s == USCRIPT_HAN || s == USCRIPT_HIRAGANA || s == USCRIPT_KATAKANA || s == USCRIPT_THAI ||
         s == USCRIPT_LAO || s == USCRIPT_KHMER || s == USCRIPT_MYANMAR;
}

bool word_char(UChar32 c) {
  if (c < 0x80) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  }
  int8_t t = u_charType(c);
  return u_isalnum(c) || t == U_NON_SPACING_MARK || t == U_COMBINING_SPACING_MARK ||
         t == U_ENCLOSING_MARK;
}

// Characters kept inside a word when word characters stand on both sides: "e-mail",
// "don't", "19.99", "1,000", "user@example.org", "snake_case".
bool joiner(UChar32 c) {
  return c == '.' || c == '-' || c == '\'' || c == '_' || c == '@' || c == ',' || c == 0x2019;
}

// A set of 64-bit token hashes: open addressing with linear probing in one array, because
// a node-based set costs an allocation per distinct token (a twelfth of tokenizing).
class HashSet64 {
 public:
  explicit HashSet64(size_t capacity_pow2 = 1024) : slots_(capacity_pow2, 0) {}

  // True when `h` was not in the set yet.
  bool insert(uint64_t h) {
    if (h == 0) {  // 0 marks an empty slot; remembered apart
      const bool fresh = !has_zero_;
      has_zero_ = true;
      return fresh;
    }
    if ((size_ + 1) * 2 > slots_.size()) grow();
    if (!place(slots_, h)) return false;
    ++size_;
    return true;
  }

 private:
  // Token hashes are SipHash outputs, already uniform; the multiply spreads any other input.
  static size_t slot_of(uint64_t h, size_t mask) {
    return static_cast<size_t>((h * 0x9e3779b97f4a7c15ULL) >> 20) & mask;
  }
  static bool place(std::vector<uint64_t>& slots, uint64_t h) {
    const size_t mask = slots.size() - 1;
    for (size_t i = slot_of(h, mask);; i = (i + 1) & mask) {
      if (slots[i] == h) return false;
      if (slots[i] == 0) {
        slots[i] = h;
        return true;
      }
    }
  }
  void grow() {
    std::vector<uint64_t> bigger(slots_.size() * 2, 0);
    for (uint64_t h : slots_)
      if (h != 0) place(bigger, h);
    slots_.swap(bigger);
  }

  std::vector<uint64_t> slots_;
  size_t size_ = 0;
  bool has_zero_ = false;
};

class Builder {
 public:
  explicit Builder(const TokenizerOptions& o) : o_(o) { out_.hashes.reserve(1024); }

  // Adds a token by its text; returns its hash.
  uint64_t add(std::string_view text) {
    uint64_t h = token_hash(text);
    add_hash(h, text);
    return h;
  }
  void add_hash(uint64_t h, std::string_view text) {
    if (out_.hashes.size() >= o_.max_tokens) {
      out_.limited = true;
      return;
    }
    if (!seen_.insert(h)) return;
    out_.hashes.push_back(h);
    out_.groups.push_back(group_);
    if (o_.keep_text) out_.texts.emplace_back(text);
  }
  bool full() const { return out_.hashes.size() >= o_.max_tokens; }
  void set_group(uint16_t g) { group_ = g; }
  void set_limited() { out_.limited = true; }
  TokenList& out() { return out_; }
  const TokenizerOptions& options() const { return o_; }

 private:
  const TokenizerOptions& o_;
  HashSet64 seen_;
  TokenList out_;
  uint16_t group_ = 0;
};

// The group of a header field's tokens: 1 for the presence tokens of all fields
// ("header:NAME"), else 2 + a hash of the name (never 0 or 1).
uint16_t field_group(std::string_view name) {
  uint32_t h = 2166136261u;
  for (char c : name) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
  return static_cast<uint16_t>(2 + h % 65000);
}
constexpr uint16_t kPresenceGroup = 1;

// Turns normalised text into words and OSB pairs, all carrying `prefix` ("" for the body).
class WordStream {
 public:
  WordStream(Builder& b, std::string prefix) : b_(b), prefix_(std::move(prefix)) {
    window_ = std::clamp(b.options().osb_window, 1, 8);
  }

  void feed(std::string_view normalized) {
    const auto* s = reinterpret_cast<const uint8_t*>(normalized.data());
    const int32_t n = static_cast<int32_t>(std::min<size_t>(normalized.size(), INT32_MAX));
    int32_t i = 0;
    int32_t word_start = -1, word_end = -1;  // word_end: after its last word character
    int bang = 0;
    while (i < n) {
      int32_t at = i;
      UChar32 c;
      U8_NEXT(s, i, n, c);
      if (c < 0) c = 0xFFFD;
      if (c == '!') {
        ++bang;
      } else if (bang) {
        if (bang >= 2) emit_plain(bang >= 3 ? "!!!" : "!!");
        bang = 0;
      }
      if (word_char(c)) {
        if (unspaced_script(c)) {
          if (word_start >= 0) emit_word(normalized, word_start, word_end);
          word_start = -1;
          emit_word(normalized, at, i);
          continue;
        }
        if (word_start < 0) word_start = at;
        word_end = i;
        continue;
      }
      if (word_start >= 0 && joiner(c) && word_end == at) continue;  // maybe inside a word
      if (c == '$' && word_start < 0) {  // "$100": the sign is part of the amount
        word_start = at;
        word_end = at;  // not yet a word
        continue;
      }
      if (word_start >= 0) emit_word(normalized, word_start, word_end);
      word_start = -1;
    }
    if (bang >= 2) emit_plain(bang >= 3 ? "!!!" : "!!");
    if (word_start >= 0) emit_word(normalized, word_start, word_end);
  }

  size_t words() const { return words_; }

 private:
  void emit_word(std::string_view text, int32_t start, int32_t end) {
    if (end <= start) return;
    std::string_view w = text.substr(start, end - start);
    if (w == "$") return;
    // One ASCII letter is no word ("a", "I", list markers); one CJK character is.
    if (w.size() == 1 && is_ascii_alpha(w[0])) return;
    if (w.size() > b_.options().max_token_bytes) {
      emit_plain("meta:long-word:" + std::to_string(log2_bucket(w.size())));
      return;
    }
    ++words_;
    std::string digits_only;
    if (w.size() > 6 &&
        std::all_of(w.begin(), w.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      // Long numbers (order ids, phone numbers) are noise one by one; their length is not.
      digits_only = "#digits:" + std::to_string(w.size());
      w = digits_only;
    }
    std::string text_form = prefix_;
    text_form += w;
    uint64_t h = b_.add(text_form);
    // Orthogonal sparse bigrams: this word with each of the window-1 words before it.
    for (int d = 1; d < window_ && d <= static_cast<int>(recent_.size()); ++d) {
      const auto& [prev_hash, prev_text] = recent_[recent_.size() - d];
      uint64_t ph = token_pair_hash(prev_hash, h, static_cast<uint8_t>(d));
      if (b_.options().keep_text) {
        b_.add_hash(ph, prev_text + " <" + std::to_string(d) + "> " + text_form);
      } else {
        b_.add_hash(ph, {});
      }
    }
    if (window_ > 1) {
      if (recent_.size() >= static_cast<size_t>(window_ - 1)) recent_.erase(recent_.begin());
      recent_.emplace_back(h, b_.options().keep_text ? text_form : std::string());
    }
  }

  void emit_plain(const std::string& text) { b_.add(prefix_ + text); }

  Builder& b_;
  std::string prefix_;
  int window_ = 5;
  size_t words_ = 0;
  std::vector<std::pair<uint64_t, std::string>> recent_;
};

std::string lower_trimmed(std::string_view v, size_t max) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return normalize_text(v.substr(0, max));
}

void address_tokens(Builder& b, std::string_view field, std::string_view value, bool names) {
  auto boxes = parse_mailbox_list(value, 20);
  for (const auto& m : boxes) {
    std::string addr = to_lower(m.address);
    size_t at = addr.rfind('@');
    if (at != std::string::npos && at + 1 < addr.size()) {
      std::string dom = addr.substr(at + 1);
      if (names) b.add(std::string(field) + ":addr:" + addr);
      b.add(std::string(field) + ":dom:" + dom);
      b.add(std::string(field) + ":org:" + registrable_domain(dom));
      if (names) b.add(std::string(field) + ":local-shape:" + shape_of(addr.substr(0, at), 12));
    } else {
      b.add(std::string(field) + ":no-address");
    }
    if (names) {
      if (m.display.empty()) {
        b.add(std::string(field) + ":no-name");
      } else {
        WordStream ws(b, std::string(field) + ":name:");
        ws.feed(normalize_text(m.display.substr(0, 256)));
      }
    }
  }
  if (boxes.empty()) b.add(std::string(field) + ":empty");
  if (!names) b.add(std::string(field) + ":count:" + std::to_string(log2_bucket(boxes.size())));
}

bool looks_like_ipv4(std::string_view s) {
  int dots = 0;
  for (char c : s) {
    if (c == '.') {
      ++dots;
    } else if (c < '0' || c > '9') {
      return false;
    }
  }
  return dots == 3;
}

void received_tokens(Builder& b, std::string_view value) {
  // Host names and IPv4 addresses named in the field: "from mx.example.org (mx.example.org
  // [192.0.2.1]) by mail.example.net ...". The dates and queue ids are noise.
  size_t i = 0;
  int kept = 0;
  while (i < value.size() && kept < 12) {
    while (i < value.size() && !(std::isalnum(static_cast<unsigned char>(value[i])))) ++i;
    size_t start = i;
    while (i < value.size() && (std::isalnum(static_cast<unsigned char>(value[i])) ||
                                value[i] == '.' || value[i] == '-'))
      ++i;
    std::string_view w = value.substr(start, i - start);
    while (!w.empty() && (w.back() == '.' || w.back() == '-')) w.remove_suffix(1);
    if (w.find('.') == std::string_view::npos || w.size() > 80) continue;
    if (looks_like_ipv4(w)) {
      b.add("received:ip:" + std::string(w.substr(0, w.rfind('.'))));
      ++kept;
    } else if (std::any_of(w.begin(), w.end(), [](char c) { return is_ascii_alpha(c); })) {
      std::string host = to_lower(w);
      b.add("received:host:" + host);
      b.add("received:org:" + registrable_domain(host));
      ++kept;
    }
  }
}

void url_tokens(Builder& b, const Message& m) {
  b.add("meta:urls:" + std::to_string(log2_bucket(m.urls.size())));
  for (const auto& host : m.url_hosts) {
    if (b.full()) return;
    if (host.size() > 253) continue;
    if (looks_like_ipv4(host) || host.starts_with('[')) {
      b.add("url:ip-host");
      continue;
    }
    if (host.find("xn--") != std::string::npos) b.add("url:idn");
    b.add("url:host:" + host);
    b.add("url:org:" + registrable_domain(host));
  }
}

void header_tokens(Builder& b, const Message& m) {
  const size_t maxv = b.options().max_header_bytes;
  int received = 0;
  size_t counted = 0;
  for (const auto& h : m.headers) {
    if (b.full()) return;
    if (ignored_header(h.name)) continue;
    ++counted;
    const std::string name = to_lower(h.name.substr(0, 64));
    std::string_view value = std::string_view(h.value).substr(0, maxv);
    b.set_group(field_group(name));
    if (name == "subject") {
      b.set_group(0);  // words, like the body's
      WordStream ws(b, "subject:");
      ws.feed(normalize_text(value));
      if (value.empty()) b.add("subject:empty");
      // Shouting is lost by case folding; keep it as a fact.
      size_t upper = 0, lower = 0;
      for (char c : value) {
        upper += (c >= 'A' && c <= 'Z');
        lower += (c >= 'a' && c <= 'z');
      }
      if (upper >= 4 && upper > 3 * lower) b.add("subject:mostly-upper");
    } else if (name == "from" || name == "reply-to" || name == "sender") {
      address_tokens(b, name, value, true);
    } else if (name == "to" || name == "cc") {
      address_tokens(b, name, value, false);
    } else if (name == "return-path") {
      std::string v = to_lower(value);
      size_t at = v.rfind('@');
      if (at == std::string::npos) {
        b.add("return-path:" + v.substr(0, 16));
      } else {
        std::string dom = v.substr(at + 1);
        while (!dom.empty() && (dom.back() == '>' || dom.back() == ' ')) dom.pop_back();
        b.add("return-path:org:" + registrable_domain(dom));
      }
    } else if (name == "received") {
      if (++received <= 8) received_tokens(b, value);
    } else if (name == "message-id") {
      std::string v = to_lower(value);
      size_t at = v.rfind('@');
      if (at == std::string::npos) {
        b.add("message-id:no-at");
      } else {
        std::string dom = v.substr(at + 1);
        while (!dom.empty() && (dom.back() == '>' || dom.back() == ' ')) dom.pop_back();
        b.add("message-id:dom:" + dom.substr(0, 128));
        size_t lt = v.find('<');
        size_t left = lt == std::string::npos ? 0 : lt + 1;
        b.add("message-id:shape:" + shape_of(std::string_view(value).substr(left, at - left)));
      }
    } else if (name == "content-type") {
      std::string v = to_lower(value.substr(0, 256));
      b.add("content-type:" + v.substr(0, v.find(';')));
      if (size_t p = v.find("charset="); p != std::string::npos) {
        std::string cs = v.substr(p + 8, 24);
        cs.erase(std::remove(cs.begin(), cs.end(), '"'), cs.end());
        b.add("content-type:charset:" + cs.substr(0, cs.find(';')));
      }
      if (size_t p = to_lower(value).find("boundary="); p != std::string::npos) {
        b.add("content-type:boundary:" + shape_of(value.substr(p + 9, 70)));
      }
    } else if (name == "date") {
      // The zone and the form a sender's software writes ("Mon, 2 Sep 2002 ..." or not).
      std::string v(value.substr(0, 64));
      size_t sp = v.find_last_of(' ');
      if (sp != std::string::npos) b.add("date:zone:" + v.substr(sp + 1, 8));
      b.add("date:shape:" + shape_of(v, 16));
    } else {
      // Any other field: that it is present, and its first words.
      b.set_group(kPresenceGroup);
      b.add("header:" + name);
      b.set_group(field_group(name));
      bool whole = std::any_of(kWholeValueHeaders.begin(), kWholeValueHeaders.end(),
                               [&](const char* w) { return name == w; });
      if (whole) b.add(name + "=" + lower_trimmed(value, 64));
      // Words only of fields a sender's software or a list writes as text; the words of
      // arbitrary X- fields (dates, ids, hops) are many tokens saying one thing.
      if (whole || name == "list-id") {
        WordStream ws(b, name + ":");
        ws.feed(normalize_text(value.substr(0, 200)));
      }
    }
  }
  b.set_group(0);
  b.add("meta:headers:" + std::to_string(log2_bucket(counted)));
  if (m.header_8bit) b.add("meta:header-8bit");
}

void part_tokens(Builder& b, const Message& m) {
  bool plain = false, html = false;
  b.add("meta:parts:" + std::to_string(log2_bucket(m.parts.size())));
  for (const auto& p : m.parts) {
    if (b.full()) return;
    b.add("part:type:" + p.content_type.substr(0, 64));
    if (!p.transfer_encoding.empty()) b.add("part:cte:" + p.transfer_encoding.substr(0, 32));
    if (!p.charset.empty()) b.add("part:charset:" + p.charset.substr(0, 32));
    if (p.charset_guessed) b.add("meta:charset-guessed");
    if (p.attachment) {
      b.add("attachment:type:" + p.content_type.substr(0, 64));
      std::string f = to_lower(p.filename);
      size_t dot = f.rfind('.');
      if (dot != std::string::npos && f.size() - dot <= 8) {
        b.add("attachment:ext:" + f.substr(dot + 1));
      }
      b.add("attachment:size:" + std::to_string(log2_bucket(p.decoded_size)));
    } else if (p.content_type == "text/plain") {
      plain = true;
    } else if (p.content_type == "text/html" || p.html) {
      html = true;
    }
  }
  if (html && !plain) b.add("meta:html-only");
  if (html && plain) b.add("meta:html-and-text");
  for (size_t i = 0; i < m.defects.size() && i < 8; ++i) {
    std::string d = m.defects[i].substr(0, 40);
    std::erase_if(d, [](char c) { return c >= '0' && c <= '9'; });
    b.add("meta:defect:" + d);
  }
  if (m.truncated) b.add("meta:truncated");
  // The size without the ignored fields, so a filter's headers do not move the bucket.
  size_t size = m.raw_body.size();
  for (const auto& h : m.headers) size += ignored_header(h.name) ? 0 : h.raw.size();
  b.add("meta:size:" + std::to_string(log2_bucket(size)));
}

// HTML markup: the message's text does not show it, but how a mail is made up (font
// colours and sizes, tables, images, forms, hidden text) says much about who made it. The tags
// are read from the raw body (7bit, 8bit and quoted-printable parts; a base64 HTML part
// shows no tags here), as "html:TAG" and "html:TAG:ATTRIBUTE", with the values of a few
// presentational attributes.
void html_tokens(Builder& b, const Message& m) {
  if (std::none_of(m.parts.begin(), m.parts.end(), [](const BodyPart& p) { return p.html; })) {
    return;
  }
  std::string_view body = std::string_view(m.raw_body).substr(0, b.options().max_text_bytes);
  size_t tags = 0;
  auto lower_word = [](std::string_view s, size_t& i, size_t max) {
    std::string w;
    while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '-')) {
      if (w.size() < max) w += static_cast<char>(std::tolower(static_cast<unsigned char>(s[i])));
      ++i;
    }
    return w;
  };
  for (size_t i = body.find('<'); i != std::string_view::npos && !b.full() && tags < 2000;
       i = body.find('<', i)) {
    ++i;
    if (i < body.size() && body[i] == '/') ++i;
    std::string tag = lower_word(body, i, 16);
    if (tag.empty() || !std::isalpha(static_cast<unsigned char>(tag[0]))) continue;
    ++tags;
    const std::string prefix = "html:" + tag;
    b.add(prefix);
    // Attributes up to '>' (a bounded look: a tag is not a novel).
    size_t end = body.find('>', i);
    if (end == std::string_view::npos || end - i > 512) end = std::min(body.size(), i + 512);
    while (i < end) {
      while (i < end && !std::isalpha(static_cast<unsigned char>(body[i]))) ++i;
      std::string attr = lower_word(body, i, 16);
      if (attr.empty()) break;
      b.add(prefix + ":" + attr);
      // The value, for presentational attributes: "=3D" is a quoted-printable '='.
      size_t v = i;
      if (body.substr(v, 3) == "=3D" || body.substr(v, 3) == "=3d") {
        v += 3;
      } else if (v < end && body[v] == '=') {
        ++v;
      } else {
        continue;
      }
      if (attr != "color" && attr != "bgcolor" && attr != "size" && attr != "face" &&
          attr != "align" && attr != "border" && attr != "width") {
        continue;
      }
      while (v < end && (body[v] == '"' || body[v] == '\'' || body[v] == ' ')) ++v;
      std::string value;
      while (v < end && value.size() < 24 && body[v] != '"' && body[v] != '\'' && body[v] != ' ' &&
             body[v] != '>') {
        value += static_cast<char>(std::tolower(static_cast<unsigned char>(body[v])));
        ++v;
      }
      b.add(prefix + ":" + attr + "=" + value);
      i = v;
    }
  }
  b.add("meta:html-tags:" + std::to_string(log2_bucket(tags)));
}

void body_tokens(Builder& b, const Message& m) {
  size_t budget = b.options().max_text_bytes;
  WordStream ws(b, "");
  for (const auto& p : m.parts) {
    if (p.text.empty() || b.full()) continue;
    if (budget == 0) {
      b.set_limited();
      break;
    }
    std::string_view text = p.text;
    if (text.size() > budget) {
      // Cut at a character boundary so the last word is not mangled into U+FFFD.
      size_t cut = budget;
      while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
      text = text.substr(0, cut);
      b.set_limited();
    }
    budget -= text.size();
    ws.feed(normalize_text(text));
  }
  b.out().words = ws.words();
  b.add("meta:words:" + std::to_string(log2_bucket(ws.words())));
}

}  // namespace

bool ignored_header(std::string_view name) {
  // Every message has dozens of fields and the list has dozens of patterns: look only at the
  // patterns that share the name's first three characters (all patterns have three or more
  // before any '*'), found by binary search on those characters packed into a number.
  const auto key_of = [](std::string_view s) {
    uint32_t k = 0;
    for (size_t i = 0; i < 3; ++i) {
      unsigned char c = static_cast<unsigned char>(s[i]);
      k = (k << 8) | (c >= 'A' && c <= 'Z' ? c + 32u : c);
    }
    return k;
  };
  using Entry = std::pair<uint32_t, const char*>;
  static const std::vector<Entry> index = [&] {
    std::vector<Entry> ix;
    for (const char* p : kIgnoredHeaders) ix.emplace_back(key_of(p), p);
    std::sort(ix.begin(), ix.end(),
              [](const Entry& a, const Entry& b) { return a.first < b.first; });
    return ix;
  }();
  if (name.size() < 3) return false;
  const uint32_t key = key_of(name);
  auto it = std::lower_bound(index.begin(), index.end(), key,
                             [](const Entry& e, uint32_t k) { return e.first < k; });
  for (; it != index.end() && it->first == key; ++it) {
    if (name_matches(name, it->second)) return true;
  }
  return false;
}

std::string normalize_text(std::string_view utf8) {
  if (is_ascii(utf8)) return to_lower(utf8);  // NFKC_Casefold of ASCII is its lower case
  UErrorCode err = U_ZERO_ERROR;
  const icu::Normalizer2* nfkc_cf = icu::Normalizer2::getNFKCCasefoldInstance(err);
  if (U_FAILURE(err) || nfkc_cf == nullptr) return to_lower(utf8);
  icu::UnicodeString in = icu::UnicodeString::fromUTF8(icu::StringPiece(
      utf8.data(), static_cast<int32_t>(std::min<size_t>(utf8.size(), INT32_MAX))));
  icu::UnicodeString out = nfkc_cf->normalize(in, err);
  if (U_FAILURE(err)) return to_lower(utf8);
  std::string result;
  out.toUTF8String(result);
  return result;
}

TokenList tokenize(const Message& message, const TokenizerOptions& options) {
  Builder b(options);
  header_tokens(b, message);
  part_tokens(b, message);
  url_tokens(b, message);
  if (options.html_markup) html_tokens(b, message);
  body_tokens(b, message);
  return std::move(b.out());
}

}  // namespace spamward
