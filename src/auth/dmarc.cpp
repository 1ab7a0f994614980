#include "auth/dmarc.h"

#include <libpsl.h>

#include <utility>
#include <vector>

#include "core/strings.h"

namespace spamward {
namespace {

bool is_wsp(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_wsp(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_wsp(s.back())) s.remove_suffix(1);
  return s;
}

// tag-name of RFC 6376 §3.2 (DMARC uses the same tag-list syntax): ALPHA *(ALPHA/DIGIT/"_").
bool valid_tag_name(std::string_view name) {
  if (name.empty() || !is_alpha(name.front())) return false;
  for (char c : name) {
    if (!is_alpha(c) && !is_digit(c) && c != '_') return false;
  }
  return true;
}

std::optional<DmarcPolicy> parse_policy(std::string_view v) {
  if (iequals(v, "none")) return DmarcPolicy::none;
  if (iequals(v, "quarantine")) return DmarcPolicy::quarantine;
  if (iequals(v, "reject")) return DmarcPolicy::reject;
  return std::nullopt;
}

DmarcAlignment parse_alignment(std::string_view v) {
  return iequals(v, "s") ? DmarcAlignment::strict : DmarcAlignment::relaxed;
}

int parse_percent(std::string_view v) {
  if (v.empty() || v.size() > 10) return 100;
  long n = 0;
  for (char c : v) {
    if (!is_digit(c)) return 100;
    n = n * 10 + (c - '0');
  }
  return n > 100 ? 100 : static_cast<int>(n);
}

// At least one URI with a scheme (ALPHA *(ALPHA / DIGIT / "+" / "-" / ".") ":" and more) in
// a comma-separated rua= list: "syntactically valid" as far as the record's fate needs.
bool has_valid_uri(std::string_view list) {
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string_view::npos) end = list.size();
    std::string_view uri = trim(list.substr(start, end - start));
    size_t colon = uri.find(':');
    if (colon != std::string_view::npos && colon > 0 && colon + 1 < uri.size() &&
        is_alpha(uri.front())) {
      bool scheme_ok = true;
      for (char c : uri.substr(0, colon)) {
        if (!is_alpha(c) && !is_digit(c) && c != '+' && c != '-' && c != '.') scheme_ok = false;
      }
      if (scheme_ok) return true;
    }
    start = end + 1;
  }
  return false;
}

struct PublicSuffixList {
  const psl_ctx_t* ctx = nullptr;
  std::string_view source = "none";
};

// Loaded once (a function-local static: thread-safe initialisation) and never freed: the
// context is read-only afterwards and may be used by any thread until the process exits.
const PublicSuffixList& public_suffix_list() {
  static const PublicSuffixList list = [] {
    PublicSuffixList l;
    if (const psl_ctx_t* latest = psl_latest(nullptr)) {
      l.ctx = latest;
      l.source = "psl_latest";
    } else if (const psl_ctx_t* builtin = psl_builtin()) {
      l.ctx = builtin;
      l.source = "psl_builtin";
    }
    return l;
  }();
  return list;
}

}  // namespace

std::string_view to_string(DmarcPolicy p) {
  switch (p) {
    case DmarcPolicy::none:
      return "none";
    case DmarcPolicy::quarantine:
      return "quarantine";
    case DmarcPolicy::reject:
      return "reject";
  }
  return "?";
}

bool is_dmarc_record(std::string_view txt) {
  size_t i = 0;
  while (i < txt.size() && is_wsp(txt[i])) ++i;
  if (i >= txt.size() || (txt[i] != 'v' && txt[i] != 'V')) return false;
  ++i;
  while (i < txt.size() && is_wsp(txt[i])) ++i;
  if (i >= txt.size() || txt[i] != '=') return false;
  ++i;
  while (i < txt.size() && is_wsp(txt[i])) ++i;
  if (txt.substr(i, 6) != "DMARC1") return false;
  i += 6;
  while (i < txt.size() && is_wsp(txt[i])) ++i;
  return i == txt.size() || txt[i] == ';';
}

DmarcRecordParse parse_dmarc_record(std::string_view txt, const DmarcLimits& limits) {
  DmarcRecordParse out;
  if (txt.size() > limits.max_record) {
    out.error = "record longer than " + std::to_string(limits.max_record) + " bytes";
    return out;
  }
  if (!is_dmarc_record(txt)) {
    out.error = "not a v=DMARC1 record";
    return out;
  }
  // Tags after v=, first occurrence kept.
  std::vector<std::pair<std::string, std::string_view>> tags;
  size_t count = 0;
  size_t start = txt.find(';');
  while (start != std::string_view::npos && start < txt.size()) {
    ++start;
    size_t end = txt.find(';', start);
    std::string_view segment = trim(
        txt.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    start = end;
    if (segment.empty()) continue;
    if (++count + 1 > limits.max_tags) {  // + 1: v= counts too
      out.error = "more than " + std::to_string(limits.max_tags) + " tags";
      return out;
    }
    size_t eq = segment.find('=');
    if (eq == std::string_view::npos) continue;  // a syntax error: ignored (§6.3)
    std::string_view name = trim(segment.substr(0, eq));
    if (!valid_tag_name(name)) continue;
    std::string lower = to_lower(name);
    bool seen = false;
    for (const auto& t : tags) seen = seen || t.first == lower;
    if (!seen) tags.emplace_back(std::move(lower), trim(segment.substr(eq + 1)));
  }
  auto tag = [&](std::string_view name) -> std::optional<std::string_view> {
    for (const auto& t : tags) {
      if (t.first == name) return t.second;
    }
    return std::nullopt;
  };

  DmarcRecord r;
  auto p = tag("p");
  std::optional<DmarcPolicy> policy = p ? parse_policy(*p) : std::nullopt;
  auto sp = tag("sp");
  std::optional<DmarcPolicy> subdomain_policy = sp ? parse_policy(*sp) : std::nullopt;
  bool sp_invalid = sp && !subdomain_policy;
  if (!policy || sp_invalid) {
    auto rua = tag("rua");
    if (!rua || !has_valid_uri(*rua)) {
      out.error = !p ? "no p= tag" : !policy ? "invalid p= value" : "invalid sp= value";
      return out;
    }
    // RFC 7489 §6.6.3: act as if the record said p=none.
    r.policy = DmarcPolicy::none;
    r.subdomain_policy = DmarcPolicy::none;
    r.policy_defaulted = true;
  } else {
    r.policy = *policy;
    r.subdomain_policy = subdomain_policy;
  }
  if (auto v = tag("adkim")) r.dkim_alignment = parse_alignment(*v);
  if (auto v = tag("aspf")) r.spf_alignment = parse_alignment(*v);
  if (auto v = tag("pct")) r.percent = parse_percent(*v);
  out.record = r;
  return out;
}

DmarcPolicy effective_policy(const DmarcRecord& record, bool from_subdomain_fallback) {
  DmarcPolicy p =
      from_subdomain_fallback && record.subdomain_policy ? *record.subdomain_policy : record.policy;
  if (record.percent < 100) {
    if (p == DmarcPolicy::reject) return DmarcPolicy::quarantine;
    if (p == DmarcPolicy::quarantine) return DmarcPolicy::none;
  }
  return p;
}

std::string normalize_domain(std::string_view domain) {
  while (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
  return to_lower(domain);
}

std::string organizational_domain(std::string_view domain) {
  std::string d = normalize_domain(domain);
  // A NUL is in no DNS name (and would cut the C string libpsl reads).
  if (d.empty() || d.find('\0') != std::string::npos) return d;
  const PublicSuffixList& list = public_suffix_list();
  if (list.ctx) {
    // libpsl returns a pointer into its argument, or null for a public suffix itself.
    const char* registrable = psl_registrable_domain(list.ctx, d.c_str());
    if (!registrable) return d;
    return std::string(registrable);
  }
  // No list at all (not expected on Debian): the last two labels.
  size_t last = d.rfind('.');
  if (last == std::string::npos || last == 0) return d;
  size_t before = d.rfind('.', last - 1);
  return before == std::string::npos ? d : d.substr(before + 1);
}

std::string_view public_suffix_source() {
  return public_suffix_list().source;
}

bool dmarc_aligned(std::string_view a, std::string_view b, DmarcAlignment mode) {
  std::string x = normalize_domain(a);
  std::string y = normalize_domain(b);
  if (x.empty() || y.empty()) return false;
  if (x == y) return true;
  if (mode == DmarcAlignment::strict) return false;
  return organizational_domain(x) == organizational_domain(y);
}

}  // namespace spamward
