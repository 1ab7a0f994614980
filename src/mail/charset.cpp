#include "mail/charset.h"

#include <unicode/ucnv.h>
#include <unicode/ucnv_cb.h>
#include <unicode/ucnv_err.h>

#include <climits>
#include <cstdint>
#include <cstring>
#include <vector>

namespace spamward {

namespace {

// windows-1252 0x80..0x9F (the rest of the range is Latin-1). The five unassigned bytes map
// to the C1 controls of the same value, as the WHATWG Encoding Standard does.
constexpr char16_t kCp1252High[32] = {
    0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178};

// Length of the well-formed UTF-8 sequence at s[i], or 0 when there is none.
size_t utf8_sequence(std::string_view s, size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) return 1;
  const size_t left = s.size() - i;
  auto cont = [&](size_t k) { return (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80; };
  if (b0 >= 0xC2 && b0 <= 0xDF) return left >= 2 && cont(1) ? 2 : 0;
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (left < 3 || !cont(1) || !cont(2)) return 0;
    const auto b1 = static_cast<unsigned char>(s[i + 1]);
    if (b0 == 0xE0 && b1 < 0xA0) return 0;   // overlong
    if (b0 == 0xED && b1 >= 0xA0) return 0;  // surrogate
    return 3;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (left < 4 || !cont(1) || !cont(2) || !cont(3)) return 0;
    const auto b1 = static_cast<unsigned char>(s[i + 1]);
    if (b0 == 0xF0 && b1 < 0x90) return 0;   // overlong
    if (b0 == 0xF4 && b1 >= 0x90) return 0;  // past U+10FFFF
    return 4;
  }
  return 0;
}

// Index of the first byte >= 0x80 at or after `from`, or s.size().
size_t skip_ascii(std::string_view s, size_t from) {
  size_t i = from;
  while (i + 8 <= s.size()) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    if (w & 0x8080808080808080ULL) break;
    i += 8;
  }
  while (i < s.size() && static_cast<unsigned char>(s[i]) < 0x80) ++i;
  return i;
}

std::string sanitize_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  size_t i = 0;
  while (i < s.size()) {
    const size_t a = skip_ascii(s, i);
    out.append(s.data() + i, a - i);
    i = a;
    if (i >= s.size()) break;
    const size_t n = utf8_sequence(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
  return out;
}

std::string cp1252_to_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size() + s.size() / 4 + 8);
  size_t i = 0;
  while (i < s.size()) {
    const size_t a = skip_ascii(s, i);
    out.append(s.data() + i, a - i);
    i = a;
    if (i >= s.size()) break;
    const auto b = static_cast<unsigned char>(s[i++]);
    append_utf8(out, b < 0xA0 ? kCp1252High[b - 0x80] : b);
  }
  return out;
}

bool any_of(std::string_view name, std::initializer_list<std::string_view> names) {
  for (std::string_view n : names) {
    if (name == n) return true;
  }
  return false;
}

bool starts_with_any(std::string_view name, std::initializer_list<std::string_view> prefixes) {
  for (std::string_view p : prefixes) {
    if (name.starts_with(p)) return true;
  }
  return false;
}

// Lower-cased, trimmed charset name; empty when it is none or not a plausible name (which
// then reads as undeclared).
std::string normalize_name(std::string_view cs) {
  while (!cs.empty() && (cs.front() == ' ' || cs.front() == '\t' || cs.front() == '"')) {
    cs.remove_prefix(1);
  }
  while (!cs.empty() && (cs.back() == ' ' || cs.back() == '\t' || cs.back() == '"')) {
    cs.remove_suffix(1);
  }
  if (cs.size() > 40) return {};
  std::string out;
  out.reserve(cs.size());
  for (char c : cs) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                    c == '.' || c == ':' || c == '+';
    if (!ok) return {};
    out += c;
  }
  return out;
}

enum class Family { kUndeclared, kUtf8, kCp1252, kOther };

Family family_of(std::string_view name) {
  if (name.empty() ||
      any_of(name, {"us-ascii", "ascii", "us", "ansi_x3.4-1968", "iso646-us", "iso-646-us", "646",
                    "unknown", "unknown-8bit", "x-unknown", "default", "x-user-defined", "none",
                    "charset", "7bit", "8bit"})) {
    return Family::kUndeclared;
  }
  if (any_of(name, {"utf-8", "utf8", "unicode-1-1-utf-8", "x-unicode20utf8", "utf-8n"})) {
    return Family::kUtf8;
  }
  if (any_of(name,
             {"iso-8859-1", "iso8859-1", "iso_8859-1", "iso_8859-1:1987", "iso-ir-100", "latin1",
              "latin-1", "l1", "cp819", "ibm819", "csisolatin1", "iso88591", "windows-1252",
              "cp1252", "x-cp1252", "win-1252", "cp-1252", "ms-ansi", "ansi"})) {
    return Family::kCp1252;
  }
  return Family::kOther;
}

// ICU name for a mail charset name (browsers' supersets for the usual mislabels).
std::string_view icu_name(std::string_view name) {
  if (any_of(name, {"gb2312", "gb_2312-80", "gb_2312", "csgb2312", "x-gbk", "chinese", "euc-cn",
                    "x-euc-cn", "iso-ir-58", "cp936"})) {
    return "gbk";
  }
  if (any_of(name, {"euc-kr", "ks_c_5601-1987", "ks_c_5601-1989", "ks_c_5601", "ksc5601",
                    "ksc_5601", "korean", "csksc56011987", "cseuckr", "iso-ir-149", "cp949",
                    "x-windows-949", "windows-949"})) {
    return "windows-949";
  }
  if (any_of(name, {"tis-620", "iso-8859-11", "iso8859-11", "dos-874"})) return "windows-874";
  if (any_of(name, {"iso-8859-9", "iso8859-9", "iso_8859-9", "latin5", "l5"})) {
    return "windows-1254";
  }
  return name;
}

// Charsets in which ASCII bytes (without ESC) mean ASCII, so all-ASCII text needs no
// conversion. UTF-7, UTF-16/32, HZ and EBCDIC are not among them.
bool ascii_compatible(std::string_view name) {
  return starts_with_any(
      name, {"iso-8859", "iso8859", "iso_8859", "iso-2022", "windows-", "cp12",   "win-",  "koi8",
             "gb",       "big5",    "euc",      "shift",    "sjis",     "x-sjis", "ks_c",  "ksc",
             "tis",      "latin",   "x-mac",    "mac",      "cp85",     "cp86",   "ibm85", "ibm86",
             "x-euc",    "x-gbk",   "cp9",      "viscii",   "x-cp"});
}

void to_u_fffd(const void*, UConverterToUnicodeArgs* args, const char*, int32_t,
               UConverterCallbackReason reason, UErrorCode* err) {
  if (reason > UCNV_IRREGULAR) return;  // reset, close, clone: nothing to write
  static const UChar kReplacement = 0xFFFD;
  *err = U_ZERO_ERROR;
  ucnv_cbToUWriteUChars(args, &kReplacement, 1, 0, err);
}

// A few open ICU converters per thread (mail uses a handful of charsets), and the names ICU
// did not know (null), so a repeated unknown name costs no second lookup.
class ConverterCache {
 public:
  ConverterCache() = default;
  ConverterCache(const ConverterCache&) = delete;
  ConverterCache& operator=(const ConverterCache&) = delete;
  ~ConverterCache() {
    for (auto& e : entries_) {
      if (e.cnv != nullptr) ucnv_close(e.cnv);
    }
  }

  UConverter* get(std::string_view name) {
    for (auto& e : entries_) {
      if (e.name == name) return e.cnv;
    }
    std::string key(name);
    UErrorCode err = U_ZERO_ERROR;
    UConverter* cnv = ucnv_open(key.c_str(), &err);
    if (U_FAILURE(err)) {
      if (cnv != nullptr) ucnv_close(cnv);
      cnv = nullptr;
    } else {
      UErrorCode cb_err = U_ZERO_ERROR;
      ucnv_setToUCallBack(cnv, to_u_fffd, nullptr, nullptr, nullptr, &cb_err);
    }
    if (entries_.size() >= kMaxEntries) {
      if (entries_.front().cnv != nullptr) ucnv_close(entries_.front().cnv);
      entries_.erase(entries_.begin());
    }
    entries_.push_back({std::move(key), cnv});
    return cnv;
  }

 private:
  static constexpr size_t kMaxEntries = 32;
  struct Entry {
    std::string name;
    UConverter* cnv;
  };
  std::vector<Entry> entries_;
};

ConverterCache& converters() {
  thread_local ConverterCache cache;
  return cache;
}

// Converts with ICU; false when ICU cannot (unknown charset, input too large for its API).
bool icu_to_utf8(std::string_view bytes, std::string_view name, std::string& out) {
  if (bytes.size() > static_cast<size_t>(INT32_MAX / 4)) return false;
  UConverter* cnv = converters().get(name);
  if (cnv == nullptr) return false;
  const auto in_len = static_cast<int32_t>(bytes.size());
  out.resize(bytes.size() * 3 + 16);
  for (int attempt = 0; attempt < 2; ++attempt) {
    ucnv_reset(cnv);
    UErrorCode err = U_ZERO_ERROR;
    const int32_t n = ucnv_toAlgorithmic(
        UCNV_UTF8, cnv, out.data(), static_cast<int32_t>(out.size()), bytes.data(), in_len, &err);
    if (err == U_BUFFER_OVERFLOW_ERROR && attempt == 0 && n > 0) {
      out.resize(static_cast<size_t>(n));
      continue;
    }
    if (U_FAILURE(err) || n < 0) return false;
    out.resize(static_cast<size_t>(n));
    return true;
  }
  return false;
}

}  // namespace

char32_t cp1252_char(unsigned char b) {
  return b >= 0x80 && b < 0xA0 ? kCp1252High[b - 0x80] : b;
}

bool is_ascii(std::string_view s) {
  return skip_ascii(s, 0) == s.size();
}

bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  while (true) {
    i = skip_ascii(s, i);
    if (i >= s.size()) return true;
    const size_t n = utf8_sequence(s, i);
    if (n == 0) return false;
    i += n;
  }
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp >= 0xD800 && (cp <= 0xDFFF || cp > 0x10FFFF)) cp = 0xFFFD;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::string guess_to_utf8(std::string_view bytes) {
  if (is_valid_utf8(bytes)) return std::string(bytes);
  return cp1252_to_utf8(bytes);
}

std::string to_utf8(std::string_view bytes, std::string_view charset, bool* guessed) {
  if (guessed != nullptr) *guessed = false;
  const std::string name = normalize_name(charset);
  const Family family = family_of(name);
  const bool plain_ascii = is_ascii(bytes);
  if (plain_ascii && family != Family::kOther) return std::string(bytes);
  switch (family) {
    case Family::kUndeclared:
      if (guessed != nullptr) *guessed = true;
      return guess_to_utf8(bytes);
    case Family::kUtf8:
      return is_valid_utf8(bytes) ? std::string(bytes) : sanitize_utf8(bytes);
    case Family::kCp1252:
      return cp1252_to_utf8(bytes);
    case Family::kOther:
      break;
  }
  const std::string_view icu = icu_name(name);
  if (plain_ascii && ascii_compatible(icu) && bytes.find('\x1b') == std::string_view::npos) {
    return std::string(bytes);
  }
  std::string out;
  if (icu_to_utf8(bytes, icu, out)) return out;
  if (guessed != nullptr) *guessed = !plain_ascii;
  return guess_to_utf8(bytes);
}

}  // namespace spamward
