#include "auth/spf_record.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "core/strings.h"

namespace spamward {
namespace {

bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_alnum(char c) {
  return is_alpha(c) || is_digit(c);
}
char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower(c);
  return out;
}

// RFC 7208 §7.1 toplabel: ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum / "-" )
// alphanum ). Together: alphanumerics and dashes, alphanumeric at both ends, and a letter or
// a dash somewhere (so an all-numeric label, a common "a:192.0.2.1" mistake, is refused).
bool is_toplabel(std::string_view label) {
  if (label.empty() || !is_alnum(label.front()) || !is_alnum(label.back())) return false;
  bool alpha_or_dash = false;
  for (char c : label) {
    if (!is_alnum(c) && c != '-') return false;
    if (is_alpha(c) || c == '-') alpha_or_dash = true;
  }
  return alpha_or_dash;
}

// A CIDR length: "0" or digits without a leading zero, at most `max`.
std::optional<int> parse_cidr(std::string_view digits, int max) {
  if (digits.empty() || digits.size() > 3) return std::nullopt;
  if (!std::all_of(digits.begin(), digits.end(), is_digit)) return std::nullopt;
  if (digits.size() > 1 && digits[0] == '0') return std::nullopt;
  int v = 0;
  for (char c : digits) v = v * 10 + (c - '0');
  if (v > max) return std::nullopt;
  return v;
}

// RFC 7208 ip4-network: four dotted decimal octets, no leading zeros, no omitted parts.
bool parse_ip4(std::string_view s, std::array<uint8_t, 16>& out) {
  out = {};
  for (int part = 0; part < 4; ++part) {
    size_t n = 0;
    while (n < s.size() && is_digit(s[n])) ++n;
    if (n == 0 || n > 3 || (n > 1 && s[0] == '0')) return false;
    int v = 0;
    for (size_t i = 0; i < n; ++i) v = v * 10 + (s[i] - '0');
    if (v > 255) return false;
    out[static_cast<size_t>(part)] = static_cast<uint8_t>(v);
    s.remove_prefix(n);
    if (part < 3) {
      if (s.empty() || s[0] != '.') return false;
      s.remove_prefix(1);
    }
  }
  return s.empty();
}

bool parse_ip6(std::string_view s, std::array<uint8_t, 16>& out) {
  if (s.empty() || s.size() > 45) return false;  // the longest IPv6 text form
  for (char c : s) {
    if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') return false;
  }
  std::string text(s);
  return inet_pton(AF_INET6, text.c_str(), out.data()) == 1;
}

// Splits a trailing dual-cidr-length ("/n", "//n", "/n//m") off `body`: returns the length of
// the part before it, and sets the lengths found. nullopt when a CIDR length is malformed.
std::optional<size_t> split_dual_cidr(std::string_view body, SpfMechanism& m) {
  size_t pos = body.size();
  auto digits_before = [&](size_t end) {
    size_t i = end;
    while (i > 0 && is_digit(body[i - 1])) --i;
    return i;
  };
  size_t i = digits_before(pos);
  if (i < pos && i >= 2 && body[i - 1] == '/' && body[i - 2] == '/') {
    auto v = parse_cidr(body.substr(i, pos - i), 128);
    if (!v) return std::nullopt;
    m.cidr6 = *v;
    pos = i - 2;
    i = digits_before(pos);
  }
  if (i < pos && i >= 1 && body[i - 1] == '/') {
    auto v = parse_cidr(body.substr(i, pos - i), 32);
    if (!v) return std::nullopt;
    m.cidr4 = *v;
    pos = i - 1;
  }
  return pos;
}

// Walks a macro-string (§7.1), checking it and, with a context, expanding it.
std::optional<std::string> run_macros(std::string_view s, const MacroContext* ctx, MacroMode mode,
                                      size_t* trailing_literal_start = nullptr);

std::string url_escape(std::string_view s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    if (is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += c;
    } else {
      auto b = static_cast<unsigned char>(c);
      out += '%';
      out += kHex[b >> 4];
      out += kHex[b & 15];
    }
  }
  return out;
}

std::string letter_value(char letter, const MacroContext& ctx) {
  switch (letter) {
    case 's':
      return ctx.sender;
    case 'l':
      return ctx.local_part;
    case 'o':
      return ctx.sender_domain;
    case 'd':
      return ctx.domain;
    case 'i':
      return spf_dotted_ip(ctx.ip);
    case 'p':
      return ctx.validated.empty() ? "unknown" : ctx.validated;
    case 'v':
      return ctx.ip.is_v4() ? "in-addr" : "ip6";
    case 'h':
      return ctx.helo;
    case 'c':
      return ctx.ip.to_string();
    case 'r':
      return ctx.receiver.empty() ? "unknown" : ctx.receiver;
    case 't':
      return std::to_string(ctx.now_unix);
  }
  return {};
}

// §7.3 transformers: split on the delimiters, optionally reverse, keep the rightmost `keep`
// parts (0: all), join with ".".
std::string transform(std::string_view value, size_t keep, bool reverse, std::string_view delims) {
  if (delims.empty()) delims = ".";
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (size_t i = 0; i <= value.size(); ++i) {
    if (i == value.size() || delims.find(value[i]) != std::string_view::npos) {
      parts.push_back(value.substr(start, i - start));
      start = i + 1;
    }
  }
  if (reverse) std::reverse(parts.begin(), parts.end());
  size_t first = (keep > 0 && keep < parts.size()) ? parts.size() - keep : 0;
  std::string out;
  for (size_t i = first; i < parts.size(); ++i) {
    if (i > first) out += '.';
    out += parts[i];
  }
  return out;
}

std::optional<std::string> run_macros(std::string_view s, const MacroContext* ctx, MacroMode mode,
                                      size_t* trailing_literal_start) {
  std::string out;
  size_t literal_start = 0;
  size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    if (c != '%') {
      bool ok = mode == MacroMode::domain ? (c >= 0x21 && c <= 0x7e) : (c >= 0x20 && c <= 0x7e);
      if (!ok) return std::nullopt;
      if (ctx) out += c;
      ++i;
      continue;
    }
    if (i + 1 >= s.size()) return std::nullopt;
    char n = s[i + 1];
    if (n == '%' || n == '_' || n == '-') {
      if (ctx) out += n == '%' ? "%" : n == '_' ? " " : "%20";
      i += 2;
      literal_start = i;
      continue;
    }
    if (n != '{') return std::nullopt;
    size_t close = s.find('}', i + 2);
    if (close == std::string_view::npos) return std::nullopt;
    std::string_view body = s.substr(i + 2, close - i - 2);
    if (body.empty()) return std::nullopt;
    char letter = lower(body[0]);
    std::string_view allowed = mode == MacroMode::domain ? "slodipvh" : "slodipvhcrt";
    if (allowed.find(letter) == std::string_view::npos) return std::nullopt;
    size_t k = 1;
    size_t keep = 0;
    size_t ndigits = 0;
    while (k < body.size() && is_digit(body[k])) {
      // Values past 128 parts all mean "every part" (RFC 7208 §7.3 asks for at least 128);
      // capping keeps the arithmetic small whatever the record says.
      keep = std::min<size_t>(keep * 10 + static_cast<size_t>(body[k] - '0'), 1000);
      ++ndigits;
      ++k;
    }
    if (ndigits > 0 && keep == 0) return std::nullopt;  // §7.3: the value MUST be at least 1
    bool reverse = false;
    if (k < body.size() && lower(body[k]) == 'r') {
      reverse = true;
      ++k;
    }
    std::string_view delims = body.substr(k);
    for (char d : delims) {
      if (std::string_view(".-+,/_=").find(d) == std::string_view::npos) return std::nullopt;
    }
    if (ctx) {
      std::string v = transform(letter_value(letter, *ctx), keep, reverse, delims);
      bool upper = body[0] >= 'A' && body[0] <= 'Z';
      out += upper ? url_escape(v) : v;
    }
    i = close + 1;
    literal_start = i;
  }
  if (trailing_literal_start) *trailing_literal_start = literal_start;
  return out;
}

}  // namespace

bool is_spf_record(std::string_view txt) {
  return txt.size() >= 6 && iequals(txt.substr(0, 6), "v=spf1") &&
         (txt.size() == 6 || txt[6] == ' ');
}

bool valid_macro_string(std::string_view s, MacroMode mode) {
  return run_macros(s, nullptr, mode).has_value();
}

bool valid_domain_spec(std::string_view s) {
  if (s.empty()) return false;
  size_t literal_start = 0;
  if (!run_macros(s, nullptr, MacroMode::domain, &literal_start)) return false;
  if (literal_start == s.size()) return true;  // ends in a macro-expand
  std::string_view lit = s.substr(literal_start);
  if (lit.back() == '.') lit.remove_suffix(1);
  size_t dot = lit.rfind('.');
  if (dot == std::string_view::npos) return false;
  return is_toplabel(lit.substr(dot + 1));
}

bool uses_p_macro(std::string_view s) {
  for (size_t i = 0; i + 2 < s.size(); ++i) {
    if (s[i] != '%') continue;
    if (s[i + 1] == '{' && lower(s[i + 2]) == 'p') return true;
    ++i;  // "%%", "%_", "%-": the next character is not a macro start
  }
  return false;
}

std::optional<std::string> expand_spf_macros(std::string_view s, const MacroContext& ctx,
                                             MacroMode mode) {
  return run_macros(s, &ctx, mode);
}

SpfParse parse_spf_record(std::string_view txt) {
  SpfParse result;
  auto fail = [&](std::string why) {
    result.error = std::move(why);
    return result;
  };
  if (!is_spf_record(txt)) return fail("not a v=spf1 record");
  for (char c : txt) {
    if (c != ' ' && (c < 0x21 || c > 0x7e)) {
      return fail("control or non-ASCII character in record");
    }
  }
  SpfRecord rec;
  std::string_view rest = txt.substr(6);
  while (!rest.empty()) {
    if (rest.front() == ' ') {
      rest.remove_prefix(1);
      continue;
    }
    size_t end = std::min(rest.find(' '), rest.size());
    std::string_view term = rest.substr(0, end);
    rest.remove_prefix(end);

    // A modifier is name "=" ...; a name runs over ALPHA / DIGIT / "-" / "_" / ".".
    size_t n = 0;
    while (n < term.size() &&
           (is_alnum(term[n]) || term[n] == '-' || term[n] == '_' || term[n] == '.')) {
      ++n;
    }
    if (n < term.size() && term[n] == '=') {
      std::string_view name = term.substr(0, n);
      std::string_view value = term.substr(n + 1);
      if (name.empty() || !is_alpha(name[0]))
        return fail("invalid modifier name: " + std::string(term));
      // Known modifiers are never "unknown" when their value is bad (the suite's erratum):
      // a bad redirect=/exp= is an error, not an ignored modifier.
      if (iequals(name, "redirect") || iequals(name, "exp")) {
        auto& slot = iequals(name, "redirect") ? rec.redirect : rec.exp;
        if (slot) return fail("repeated modifier: " + std::string(term));
        if (!valid_domain_spec(value)) return fail("invalid domain-spec: " + std::string(term));
        slot = std::string(value);
      } else if (!valid_macro_string(value, MacroMode::explanation)) {
        return fail("invalid modifier value: " + std::string(term));
      }
      continue;
    }

    SpfMechanism m;
    m.text = std::string(term);
    std::string_view t = term;
    if (std::string_view("+-~?").find(t.front()) != std::string_view::npos) {
      m.qualifier = static_cast<SpfQualifier>(t.front());
      t.remove_prefix(1);
    }
    size_t len = 0;
    while (len < t.size() && is_alnum(t[len])) ++len;
    std::string name = lower(t.substr(0, len));
    std::string_view arg = t.substr(len);
    auto bad = [&]() { return fail("invalid mechanism: " + std::string(term)); };

    if (name == "all") {
      m.kind = SpfMechanismKind::all;
      if (!arg.empty()) return bad();
    } else if (name == "include" || name == "exists") {
      m.kind = name == "include" ? SpfMechanismKind::include : SpfMechanismKind::exists;
      if (arg.empty() || arg[0] != ':' || !valid_domain_spec(arg.substr(1))) return bad();
      m.domain_spec = std::string(arg.substr(1));
    } else if (name == "a" || name == "mx") {
      m.kind = name == "a" ? SpfMechanismKind::a : SpfMechanismKind::mx;
      bool has_domain = !arg.empty() && arg[0] == ':';
      std::string_view body = has_domain ? arg.substr(1) : arg;
      auto split = split_dual_cidr(body, m);
      if (!split) return bad();
      if (has_domain) {
        std::string_view spec = body.substr(0, *split);
        if (!valid_domain_spec(spec)) return bad();
        m.domain_spec = std::string(spec);
      } else if (*split != 0) {
        return bad();
      }
    } else if (name == "ptr") {
      m.kind = SpfMechanismKind::ptr;
      if (!arg.empty()) {
        if (arg[0] != ':' || !valid_domain_spec(arg.substr(1))) return bad();
        m.domain_spec = std::string(arg.substr(1));
      }
    } else if (name == "ip4" || name == "ip6") {
      bool v4 = name == "ip4";
      m.kind = v4 ? SpfMechanismKind::ip4 : SpfMechanismKind::ip6;
      if (arg.empty() || arg[0] != ':') return bad();
      std::string_view body = arg.substr(1);
      size_t slash = std::min(body.find('/'), body.size());
      std::string_view address = body.substr(0, slash);
      bool ok = v4 ? parse_ip4(address, m.network) : parse_ip6(address, m.network);
      if (!ok) return bad();
      if (slash < body.size()) {
        auto v = parse_cidr(body.substr(slash + 1), v4 ? 32 : 128);
        if (!v) return bad();
        (v4 ? m.cidr4 : m.cidr6) = *v;
      }
    } else {
      return fail("unknown mechanism: " + std::string(term));
    }
    rec.mechanisms.push_back(std::move(m));
  }
  result.record = std::move(rec);
  return result;
}

std::string spf_dotted_ip(const IpAddress& ip) {
  if (ip.is_v4()) return ip.to_string();
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (uint8_t b : ip.bytes()) {
    if (!out.empty()) out += '.';
    out += kHex[b >> 4];
    out += '.';
    out += kHex[b & 15];
  }
  return out;
}

std::string spf_reverse_name(const IpAddress& ip) {
  std::string out;
  const auto& b = ip.bytes();
  if (ip.is_v4()) {
    for (int i = 3; i >= 0; --i) out += std::to_string(b[static_cast<size_t>(i)]) + ".";
    return out + "in-addr.arpa";
  }
  static const char* kHex = "0123456789abcdef";
  for (int i = 15; i >= 0; --i) {
    uint8_t v = b[static_cast<size_t>(i)];
    out += kHex[v & 15];
    out += '.';
    out += kHex[v >> 4];
    out += '.';
  }
  return out + "ip6.arpa";
}

std::optional<std::string> spf_target_name(std::string_view expanded) {
  std::string_view n = expanded;
  if (!n.empty() && n.back() == '.') n.remove_suffix(1);
  // §7.3: over 253 characters, drop labels from the left until it fits.
  while (n.size() > 253) {
    size_t dot = n.find('.');
    if (dot == std::string_view::npos) return std::nullopt;
    n.remove_prefix(dot + 1);
  }
  if (n.empty()) return std::nullopt;
  size_t start = 0;
  for (size_t i = 0; i <= n.size(); ++i) {
    if (i == n.size() || n[i] == '.') {
      size_t label = i - start;
      if (label == 0 || label > 63) return std::nullopt;
      start = i + 1;
    }
  }
  return lower(n);
}

}  // namespace spamward
