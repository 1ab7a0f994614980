#include "auth/authentication_results.h"

#include <unistd.h>

#include <climits>
#include <utility>

#include "core/strings.h"

namespace spamward {
namespace {

constexpr size_t kMaxValue = 255;

bool plain_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '+' || c == '-';
}

// A bare pvalue: a domain name, or local-part@domain of plain characters (RFC 8601 §2.2).
bool plain_value(std::string_view v) {
  if (v.empty() || v.size() > kMaxValue) return false;
  size_t ats = 0;
  for (char c : v) {
    if (c == '@') {
      ++ats;
    } else if (!plain_char(c)) {
      return false;
    }
  }
  return ats <= 1 && v.back() != '@';
}

std::string quoted(std::string_view v) {
  std::string out = "\"";
  for (char ch : v.substr(0, kMaxValue)) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c >= 0x7F) {
      out += '?';
    } else {
      if (ch == '"' || ch == '\\') out += '\\';
      out += ch;
    }
  }
  return out + "\"";
}

std::string value(std::string_view v) {
  return plain_value(v) ? std::string(v) : quoted(v);
}

// Method, result and property names: lower-case tokens of our own making; anything else is
// dropped rather than escaped (RFC 8601 has no quoting for them).
std::string keyword(std::string_view s) {
  std::string out;
  for (char c : to_lower(s.substr(0, 64))) {
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-') {
      out += c;
    }
  }
  return out;
}

std::string_view first_word(std::string_view s) {
  size_t end = s.find_first_of(" :;,");
  return s.substr(0, end);
}

AuthResult result(std::string method, std::string res) {
  AuthResult r;
  r.method = std::move(method);
  r.result = std::move(res);
  return r;
}

void add_spf(const Symbol& s, std::vector<AuthResult>& out) {
  // Detail: "mfrom example.org: ..." or "helo mx.example.org: ...".
  AuthResult r = result("spf", to_lower(std::string_view(s.name).substr(4)));
  std::string_view detail = s.detail;
  std::string_view identity = first_word(detail);
  if ((identity == "mfrom" || identity == "helo") && detail.size() > identity.size()) {
    std::string_view domain = first_word(detail.substr(identity.size() + 1));
    if (!domain.empty()) {
      r.properties.push_back(
          {"smtp", identity == "helo" ? "helo" : "mailfrom", std::string(domain)});
    }
  }
  out.push_back(std::move(r));
}

void add_dkim(const Symbol& s, std::vector<AuthResult>& out) {
  if (s.name == "DKIM_NONE") {
    out.push_back(result("dkim", "none"));
    return;
  }
  if (s.name == "DKIM_VALID") {  // detail: "a.example,b.example"
    std::string_view detail = s.detail;
    size_t start = 0;
    while (start < detail.size()) {
      size_t end = detail.find(',', start);
      if (end == std::string_view::npos) end = detail.size();
      if (end > start) {
        AuthResult r = result("dkim", "pass");
        r.properties.push_back({"header", "d", std::string(detail.substr(start, end - start))});
        out.push_back(std::move(r));
      }
      start = end + 1;
    }
    return;
  }
  // DKIM_INVALID: "d=<domain>: <reason>" per signature, "; " between.
  std::vector<std::string> items;
  std::string_view detail = s.detail;
  size_t start = 0;
  while (start < detail.size()) {
    size_t end = detail.find("; ", start);
    if (end == std::string_view::npos) end = detail.size();
    std::string_view piece = detail.substr(start, end - start);
    if (piece.starts_with("d=") || items.empty()) {
      items.emplace_back(piece);
    } else {
      items.back() += "; ";
      items.back() += piece;
    }
    start = end + 2;
  }
  bool any = false;
  for (const auto& item : items) {
    if (!item.starts_with("d=")) continue;
    size_t colon = item.find(':');
    AuthResult r = result("dkim", "fail");
    r.properties.push_back(
        {"header", "d",
         item.substr(2, colon == std::string::npos ? std::string::npos : colon - 2)});
    if (colon != std::string::npos) {
      size_t begin = item.find_first_not_of(' ', colon + 1);
      if (begin != std::string::npos) r.reason = item.substr(begin);
    }
    out.push_back(std::move(r));
    any = true;
  }
  if (!any) out.push_back(result("dkim", "fail"));
}

void add_dmarc(const Symbol& s, std::vector<AuthResult>& out) {
  // Detail: "<from domain> p=<policy>...".
  AuthResult r = result("dmarc", s.name == "DMARC_PASS" ? "pass" : "fail");
  std::string_view from = first_word(s.detail);
  if (!from.empty()) r.properties.push_back({"header", "from", std::string(from)});
  out.push_back(std::move(r));
}

}  // namespace

std::string render_authentication_results(std::string_view authserv_id,
                                          const std::vector<AuthResult>& results) {
  std::string out = value(authserv_id);
  bool any = false;
  for (const auto& r : results) {
    std::string method = keyword(r.method);
    std::string res = keyword(r.result);
    if (method.empty() || res.empty()) continue;
    any = true;
    out += "; " + method + "=" + res;
    if (!r.reason.empty()) out += " reason=" + quoted(r.reason);
    for (const auto& p : r.properties) {
      std::string type = keyword(p.type);
      std::string property = keyword(p.property);
      if (type.empty() || property.empty()) continue;
      out += " " + type + "." + property + "=" + value(p.value);
    }
  }
  if (!any) out += "; none";
  return out;
}

std::vector<AuthResult> authentication_results_from_symbols(const std::vector<Symbol>& symbols) {
  std::vector<AuthResult> out;
  for (const auto& s : symbols) {
    if (s.name.starts_with("SPF_")) add_spf(s, out);
  }
  for (const auto& s : symbols) {
    if (s.name == "DKIM_VALID" || s.name == "DKIM_INVALID" || s.name == "DKIM_NONE")
      add_dkim(s, out);
  }
  for (const auto& s : symbols) {
    if (s.name == "DMARC_PASS" || s.name == "DMARC_FAIL") add_dmarc(s, out);
  }
  return out;
}

std::string effective_authserv_id(std::string_view configured,
                                  const std::vector<std::string>& our_names) {
  if (!configured.empty()) return std::string(configured);
  if (!our_names.empty() && !our_names.front().empty()) return our_names.front();
  char name[HOST_NAME_MAX + 1] = {};
  if (gethostname(name, sizeof name - 1) == 0 && name[0] != '\0') return name;
  return "localhost";
}

}  // namespace spamward
