#include "mail/url_extract.h"

#include "mail/charset.h"
#include "mail/transfer_decode.h"

namespace spamward {

namespace {

constexpr size_t kMaxUrlBytes = 4096;
constexpr size_t kMaxHostBytes = 253;

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// Case-insensitive "s starts with p" for a lower-case p.
bool iprefix(std::string_view s, std::string_view p) {
  if (s.size() < p.size()) return false;
  for (size_t i = 0; i < p.size(); ++i) {
    if (lower(s[i]) != p[i]) return false;
  }
  return true;
}

// Length of "http://", "https://" or "ftp://" at the start of s, else 0.
size_t scheme_length(std::string_view s) {
  if (iprefix(s, "http://")) return 7;
  if (iprefix(s, "https://")) return 8;
  if (iprefix(s, "ftp://")) return 6;
  return 0;
}

bool host_char(char c) {
  return is_alnum(c) || c == '.' || c == '-' || c == '_' || static_cast<unsigned char>(c) >= 0x80;
}

bool ends_url(unsigned char c) {
  switch (c) {
    case '<':
    case '>':
    case '"':
    case '`':
    case '{':
    case '}':
    case '|':
    case '\\':
    case '^':
      return true;
    default:
      return c <= 0x20 || c == 0x7F;
  }
}

size_t count(std::string_view s, char c) {
  size_t n = 0;
  for (char x : s) n += x == c;
  return n;
}

// The URL in t starting at `from` (its scheme or "www."); `end` gets where scanning resumes.
std::string_view url_at(std::string_view t, size_t from, size_t& end) {
  size_t j = from;
  while (j < t.size() && !ends_url(static_cast<unsigned char>(t[j]))) ++j;
  end = j;
  std::string_view url = t.substr(from, j - from);
  size_t open_paren = count(url, '('), close_paren = count(url, ')');
  size_t open_bracket = count(url, '['), close_bracket = count(url, ']');
  while (!url.empty()) {
    const char c = url.back();
    if (c == ')' && open_paren < close_paren) {
      --close_paren;
    } else if (c == ']' && open_bracket < close_bracket) {
      --close_bracket;
    } else if (!(c == '.' || c == ',' || c == ';' || c == ':' || c == '!' || c == '?' ||
                 c == '\'' || c == '"' || c == '*')) {
      break;
    }
    url.remove_suffix(1);
  }
  return url;
}

// Word boundary before a URL: not inside a word, a host name, a path or an address.
bool boundary_before(std::string_view t, size_t i) {
  if (i == 0) return true;
  const char c = t[i - 1];
  return !(is_alnum(c) || c == '.' || c == '@' || c == '/' || c == '-' || c == '_' || c == '%' ||
           c == '=' || c == '+');
}

}  // namespace

std::string url_host(std::string_view url) {
  const size_t scheme = scheme_length(url);
  if (scheme == 0 && !iprefix(url, "www.")) return {};
  std::string_view auth = url.substr(scheme);
  auth = auth.substr(0, auth.find_first_of("/?#\\"));
  if (const size_t at = auth.rfind('@'); at != std::string_view::npos) auth.remove_prefix(at + 1);

  std::string host;
  if (!auth.empty() && auth.front() == '[') {
    const size_t close = auth.find(']');
    if (close == std::string_view::npos || close > 64) return {};
    for (char c : auth.substr(1, close - 1)) {
      if (!(hex_value(c) >= 0 || c == ':' || c == '.')) return {};
      host += lower(c);
    }
    return host.find(':') == std::string::npos ? std::string() : host;
  }
  for (size_t i = 0; i < auth.size() && host.size() <= kMaxHostBytes; ++i) {
    char c = auth[i];
    if (c == '%' && i + 2 < auth.size() && hex_value(auth[i + 1]) >= 0 &&
        hex_value(auth[i + 2]) >= 0) {
      c = static_cast<char>(hex_value(auth[i + 1]) * 16 + hex_value(auth[i + 2]));
      i += 2;
    }
    if (!host_char(c)) break;  // a port, or the end of the host
    host += lower(c);
  }
  while (!host.empty() && host.back() == '.') host.pop_back();
  while (!host.empty() && host.front() == '.') host.erase(0, 1);
  if (host.size() > kMaxHostBytes || host.find('.') == std::string::npos) return {};
  if (!is_valid_utf8(host)) return {};  // %XX bytes that are no UTF-8 name
  return host;
}

void UrlCollector::add(std::string url) {
  if (url.size() > kMaxUrlBytes) {
    size_t cut = kMaxUrlBytes;  // on a character boundary
    while (cut > 0 && (static_cast<unsigned char>(url[cut]) & 0xC0) == 0x80) --cut;
    url.resize(cut);
  }
  if (seen_urls_.count(url) != 0) return;
  if (urls_.size() >= max_urls_) {
    truncated_ = true;
    return;
  }
  std::string host = url_host(url);
  if (host.empty()) return;
  seen_urls_.insert(url);
  urls_.push_back(std::move(url));
  if (seen_hosts_.insert(host).second) hosts_.push_back(std::move(host));
}

void UrlCollector::add_text(std::string_view t) {
  const size_t n = t.size();
  size_t i = 0;
  while (i < n) {
    const char c = t[i];
    if (c == ':' && i + 2 < n && t[i + 1] == '/' && t[i + 2] == '/') {
      size_t start = i;
      if (i >= 5 && iprefix(t.substr(i - 5), "https")) {
        start = i - 5;
      } else if (i >= 4 && iprefix(t.substr(i - 4), "http")) {
        start = i - 4;
      } else if (i >= 3 && iprefix(t.substr(i - 3), "ftp")) {
        start = i - 3;
      }
      if (start != i && (start == 0 || !is_alnum(t[start - 1]))) {
        size_t end;
        const std::string_view url = url_at(t, start, end);
        add(std::string(url));
        i = end;
        continue;
      }
    } else if ((c == 'w' || c == 'W') && i + 4 < n && iprefix(t.substr(i), "www.") &&
               boundary_before(t, i)) {
      size_t end;
      const std::string_view url = url_at(t, i, end);
      if (url.size() > 4) {
        std::string full = "http://";
        full += url;
        add(std::move(full));
      }
      i = end;
      continue;
    }
    ++i;
  }
}

void UrlCollector::add_link(std::string_view target) {
  while (!target.empty() && static_cast<unsigned char>(target.front()) <= 0x20) {
    target.remove_prefix(1);
  }
  while (!target.empty() && static_cast<unsigned char>(target.back()) <= 0x20) {
    target.remove_suffix(1);
  }
  const bool www = scheme_length(target) == 0 && iprefix(target, "www.");
  if (scheme_length(target) == 0 && !www) return;
  std::string url;
  if (www) url = "http://";
  for (char c : target.substr(0, kMaxUrlBytes + 4)) {
    if (c != '\t' && c != '\n' && c != '\r') url += c;
  }
  add(std::move(url));
}

}  // namespace spamward
