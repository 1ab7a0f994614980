#include "mail/mime_header.h"

#include <algorithm>

#include "mail/charset.h"
#include "mail/transfer_decode.h"

namespace spamward {

namespace {

constexpr size_t kMaxParams = 64;
constexpr int kMaxSection = 999;

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

bool is_token_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '*' || c == '.' || c == '+' || c == '!' || c == '#' || c == '$' ||
         c == '%' || c == '&' || c == '\'' || c == '^' || c == '`' || c == '{' || c == '}' ||
         c == '|' || c == '~';
}

void lower_in_place(std::string& s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
}

// Skips whitespace and (nested) comments.
void skip_cfws(std::string_view s, size_t& i) {
  while (i < s.size()) {
    if (is_space(s[i])) {
      ++i;
    } else if (s[i] == '(') {
      int depth = 0;
      while (i < s.size()) {
        const char c = s[i++];
        if (c == '\\') {
          ++i;
        } else if (c == '(') {
          ++depth;
        } else if (c == ')' && --depth == 0) {
          break;
        }
      }
    } else {
      break;
    }
  }
  if (i > s.size()) i = s.size();
}

// After whitespace at s[i]: does "token=" follow (a parameter whose ';' is missing)?
bool param_follows(std::string_view s, size_t i) {
  while (i < s.size() && is_space(s[i])) ++i;
  const size_t begin = i;
  while (i < s.size() && is_token_char(s[i])) ++i;
  return i > begin && i < s.size() && s[i] == '=';
}

std::string percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

struct Section {
  int index;
  bool extended;
  std::string value;
};

struct Extended {
  std::string name;  // base name, without '*...'
  std::vector<Section> sections;
};

// Joins RFC 2231 sections in order and decodes them to UTF-8.
std::string assemble(std::vector<Section>& sections) {
  std::stable_sort(sections.begin(), sections.end(),
                   [](const Section& a, const Section& b) { return a.index < b.index; });
  std::string bytes;
  std::string charset;
  int expected = 0;
  for (const Section& sec : sections) {
    if (sec.index != expected) {
      if (sec.index < expected) continue;  // a duplicate index: the first one counts
      break;                               // a gap: the rest is unreachable
    }
    ++expected;
    std::string_view v = sec.value;
    if (sec.extended) {
      if (sec.index == 0) {
        const size_t q1 = v.find('\'');
        const size_t q2 = q1 == std::string_view::npos ? q1 : v.find('\'', q1 + 1);
        if (q2 != std::string_view::npos) {
          charset = std::string(v.substr(0, q1));
          v = v.substr(q2 + 1);
        }
      }
      bytes += percent_decode(v);
    } else {
      bytes += v;
    }
  }
  return to_utf8(bytes, charset);
}

}  // namespace

const std::string* MimeHeaderValue::param(std::string_view name) const {
  for (const auto& [n, v] : params) {
    if (n == name) return &v;
  }
  return nullptr;
}

MimeHeaderValue parse_mime_header(std::string_view s) {
  MimeHeaderValue out;
  size_t i = 0;
  skip_cfws(s, i);
  const size_t vbegin = i;
  while (i < s.size() && s[i] != ';' && !is_space(s[i]) && s[i] != '(') ++i;
  out.value = std::string(s.substr(vbegin, i - vbegin));
  lower_in_place(out.value);

  std::vector<Extended> extended;
  size_t seen = 0;
  while (i < s.size() && seen < kMaxParams * 2) {
    while (i < s.size() && (s[i] == ';' || is_space(s[i]))) ++i;
    skip_cfws(s, i);
    if (i >= s.size()) break;
    if (s[i] == ';') continue;
    const size_t nbegin = i;
    while (i < s.size() && s[i] != '=' && s[i] != ';' && !is_space(s[i])) ++i;
    std::string name(s.substr(nbegin, i - nbegin));
    while (i < s.size() && is_space(s[i])) ++i;
    if (i >= s.size() || s[i] != '=') {
      while (i < s.size() && s[i] != ';') ++i;  // not a parameter: skipped
      continue;
    }
    ++i;  // '='
    while (i < s.size() && is_space(s[i])) ++i;
    std::string value;
    if (i < s.size() && s[i] == '"') {
      ++i;
      while (i < s.size() && s[i] != '"') {
        if (s[i] == '\\' && i + 1 < s.size()) ++i;
        value += s[i++];
      }
      if (i < s.size()) ++i;  // closing quote
    } else {
      const size_t begin = i;
      while (i < s.size() && s[i] != ';') {
        if (is_space(s[i]) && param_follows(s, i)) break;
        ++i;
      }
      size_t end = i;
      while (end > begin && is_space(s[end - 1])) --end;
      value = std::string(s.substr(begin, end - begin));
    }
    ++seen;
    if (name.empty()) continue;
    lower_in_place(name);

    const size_t star = name.find('*');
    if (star == std::string::npos) {
      if (out.params.size() < kMaxParams && out.param(name) == nullptr) {
        out.params.emplace_back(std::move(name), std::move(value));
      }
      continue;
    }
    // RFC 2231: name*, name*N, name*N*.
    std::string base = name.substr(0, star);
    std::string_view rest = std::string_view(name).substr(star + 1);
    Section sec{0, false, std::move(value)};
    if (rest.empty()) {
      sec.extended = true;
    } else {
      int index = 0;
      size_t k = 0;
      while (k < rest.size() && rest[k] >= '0' && rest[k] <= '9' && index <= kMaxSection) {
        index = index * 10 + (rest[k] - '0');
        ++k;
      }
      if (k == 0 || index > kMaxSection) continue;
      if (k < rest.size()) {
        if (rest.substr(k) != "*") continue;
        sec.extended = true;
      }
      sec.index = index;
    }
    auto it = std::find_if(extended.begin(), extended.end(),
                           [&](const Extended& e) { return e.name == base; });
    if (it == extended.end()) {
      if (extended.size() >= kMaxParams) continue;
      extended.push_back({std::move(base), {}});
      it = extended.end() - 1;
    }
    if (it->sections.size() <= static_cast<size_t>(kMaxSection)) {
      it->sections.push_back(std::move(sec));
    }
  }

  for (Extended& e : extended) {
    std::string value = assemble(e.sections);
    auto it = std::find_if(out.params.begin(), out.params.end(),
                           [&](const auto& p) { return p.first == e.name; });
    if (it != out.params.end()) {
      it->second = std::move(value);
    } else if (out.params.size() < kMaxParams) {
      out.params.emplace_back(std::move(e.name), std::move(value));
    }
  }
  return out;
}

}  // namespace spamward
