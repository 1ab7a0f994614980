#include "mail/rfc2047.h"

#include "core/strings.h"
#include "mail/charset.h"
#include "mail/transfer_decode.h"

namespace spamward {

namespace {

struct EncodedWord {
  std::string_view charset;  // without a "*language" suffix
  char encoding = 0;         // 'b' or 'q'
  std::string_view text;
  size_t end = 0;  // index just past "?="
};

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

// Parses an encoded word starting at s[at] ("=?"). Each of its three scans stops at the next
// '?', so trying every "=?" of a text stays linear.
bool parse_word(std::string_view s, size_t at, EncodedWord& w) {
  size_t i = at + 2;
  const size_t cs_begin = i;
  while (i < s.size() && s[i] != '?') {
    const char c = s[i];
    if (is_space(c) || c == '=' || static_cast<unsigned char>(c) < 0x21 ||
        static_cast<unsigned char>(c) >= 0x7F || i - cs_begin > 64) {
      return false;
    }
    ++i;
  }
  if (i >= s.size() || i == cs_begin) return false;
  std::string_view charset = s.substr(cs_begin, i - cs_begin);
  if (const size_t star = charset.find('*'); star != std::string_view::npos) {
    charset = charset.substr(0, star);
  }
  ++i;  // '?'
  if (i + 1 >= s.size() || s[i + 1] != '?') return false;
  const char enc = static_cast<char>(s[i] | 0x20);
  if (enc != 'b' && enc != 'q') return false;
  i += 2;
  const size_t text_begin = i;
  while (i < s.size() && s[i] != '?') ++i;
  if (i + 1 >= s.size() || s[i + 1] != '=') return false;
  w.charset = charset;
  w.encoding = enc;
  w.text = s.substr(text_begin, i - text_begin);
  w.end = i + 2;
  return true;
}

bool all_space(std::string_view s) {
  for (char c : s) {
    if (!is_space(c)) return false;
  }
  return true;
}

bool same_charset(std::string_view a, std::string_view b) {
  return iequals(a, b);
}

// Stateful encodings (ISO-2022-*, UTF-7, HZ): each word shifts back to ASCII at its end, and
// ICU rightly flags an escape sequence right after another one, so such words are converted
// one by one.
bool stateful(std::string_view charset) {
  auto starts = [&](std::string_view p) {
    if (charset.size() < p.size()) return false;
    for (size_t i = 0; i < p.size(); ++i) {
      char c = charset[i];
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      if (c != p[i]) return false;
    }
    return true;
  };
  return starts("iso-2022") || starts("utf-7") || starts("hz") || starts("csiso2022");
}

void append_literal(std::string& out, std::string_view text) {
  if (is_ascii(text)) {
    out += text;
  } else {
    out += guess_to_utf8(text);
  }
}

}  // namespace

std::string decode_rfc2047(std::string_view s) {
  if (s.find("=?") == std::string_view::npos) {
    std::string out;
    append_literal(out, s);
    return out;
  }
  std::string out;
  out.reserve(s.size());
  std::string run;  // decoded bytes of adjacent words in one charset, not yet converted
  std::string_view run_charset;
  bool last_was_word = false;
  size_t literal_begin = 0;
  auto flush = [&] {
    if (!run.empty()) out += to_utf8(run, run_charset);
    run.clear();
  };
  size_t i = 0;
  while (true) {
    const size_t at = s.find("=?", i);
    if (at == std::string_view::npos) break;
    EncodedWord w;
    if (!parse_word(s, at, w)) {
      i = at + 1;
      continue;
    }
    const std::string_view literal = s.substr(literal_begin, at - literal_begin);
    if (!(last_was_word && all_space(literal))) {
      flush();
      append_literal(out, literal);
    }
    if (!run.empty() && !same_charset(run_charset, w.charset)) flush();
    run_charset = w.charset;
    run += w.encoding == 'b' ? decode_base64(w.text) : decode_q(w.text);
    if (stateful(run_charset)) flush();
    last_was_word = true;
    literal_begin = i = w.end;
  }
  flush();
  append_literal(out, s.substr(literal_begin));
  return out;
}

}  // namespace spamward
