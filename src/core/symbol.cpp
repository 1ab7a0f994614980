#include "core/symbol.h"

#include <algorithm>

namespace spamward {

std::string_view to_string(Family f) {
  switch (f) {
    case Family::dnsbl:
      return "dnsbl";
    case Family::rfc:
      return "rfc";
    case Family::auth:
      return "auth";
    case Family::content:
      return "content";
    case Family::behaviour:
      return "behaviour";
    case Family::admin:
      return "admin";
  }
  return "?";
}

std::optional<Family> parse_family(std::string_view s) {
  for (Family f : {Family::dnsbl, Family::rfc, Family::auth, Family::content, Family::behaviour,
                   Family::admin}) {
    if (to_string(f) == s) return f;
  }
  return std::nullopt;
}

const std::vector<SymbolInfo>& known_symbols() {
  // Default scores are deliberately soft: only several families together reach `reject`.
  static const std::vector<SymbolInfo> kSymbols = {
      {"ALLOWLIST", Family::admin, -20.0,
       "client or authenticated sender is on the admin allow list; accepted"},
      {"DENYLIST", Family::admin, 20.0,
       "client or sender is on the admin deny list; refused on its own"},
      {"GTUBE", Family::admin, 1000.0, "the GTUBE test string; refused, as an admin test"},
      {"RDNS_NONE", Family::rfc, 1.0, "no reverse DNS (PTR) for the client; at most 0.1 for IPv6"},
      {"RDNS_DYNAMIC", Family::rfc, 1.0, "reverse DNS looks like a dynamic/residential address"},
      {"FCRDNS_MISMATCH", Family::rfc, 0.5, "reverse DNS does not resolve back to the client"},
      {"HELO_NOT_FQDN", Family::rfc, 0.5, "HELO is not a fully qualified domain name"},
      {"HELO_BARE_IP", Family::rfc, 0.5, "HELO is an address not in [brackets]"},
      {"HELO_FORGED", Family::rfc, 2.0, "HELO claims one of our own names or addresses"},
      {"HELO_NO_RESOLVE", Family::rfc, 0.3, "HELO name does not resolve"},
      {"HDR_DATE_MISSING", Family::rfc, 0.5, "no Date header"},
      {"HDR_DATE_INVALID", Family::rfc, 0.5,
       "a Date header that does not parse, or several of them"},
      {"HDR_DATE_FUTURE", Family::rfc, 1.0,
       "Date more than 24 hours after the message was received"},
      {"HDR_DATE_PAST", Family::rfc, 0.5, "Date more than 7 days before the message was received"},
      {"HDR_MESSAGE_ID_MISSING", Family::rfc, 0.5, "no Message-ID header"},
      {"HDR_MESSAGE_ID_INVALID", Family::rfc, 0.3,
       "a Message-ID that is not <left@right>, or several of them"},
      {"HDR_FROM_MISSING", Family::rfc, 1.0, "no From header"},
      {"HDR_FROM_INVALID", Family::rfc, 1.0, "several From headers, or no plausible address in it"},
      {"HDR_FROM_DISPLAY_MISMATCH", Family::rfc, 1.5,
       "the From display name shows an address of another domain"},
      {"HDR_8BIT", Family::rfc, 0.3, "raw 8-bit bytes in the header (not RFC 2047 encoded)"},
      {"HDR_RECEIVED_IMPLAUSIBLE", Family::rfc, 1.0,
       "too many Received hops, or their dates run backwards"},
      {"SPF_PASS", Family::auth, 0.0, "SPF pass for the envelope sender"},
      {"SPF_FAIL", Family::auth, 2.0,
       "SPF fail: the sender's domain says this client may not send"},
      {"SPF_SOFTFAIL", Family::auth, 1.0, "SPF softfail"},
      {"SPF_NEUTRAL", Family::auth, 0.0, "SPF neutral"},
      {"SPF_NONE", Family::auth, 0.0, "no SPF record"},
      {"SPF_PERMERROR", Family::auth, 0.5, "SPF record is broken"},
      {"SPF_TEMPERROR", Family::auth, 0.0, "SPF lookup failed temporarily (never scored)"},
      {"DKIM_VALID", Family::auth, 0.0, "a valid DKIM signature"},
      {"DKIM_INVALID", Family::auth, 1.0, "a DKIM signature that does not verify"},
      {"DKIM_NONE", Family::auth, 0.0, "no DKIM signature"},
      {"DMARC_PASS", Family::auth, 0.0, "DMARC alignment passes"},
      {"DMARC_FAIL", Family::auth, 2.0, "DMARC alignment fails"},
      {"BAYES_SPAM", Family::content, 7.0,
       "Bayes classifier says spam; scaled by confidence, full score when sure"},
      {"BAYES_HAM", Family::content, -3.0,
       "Bayes classifier says ham; scaled by confidence, full score when sure"},
      {"GREYLIST", Family::behaviour, 0.0, "new triplet, deferred by greylisting"},
      {"GREYLIST_PASSED", Family::behaviour, 0.0, "retried correctly after greylisting"},
      {"GREYLIST_AUTO_ALLOWED", Family::behaviour, 0.0,
       "network earned greylisting exemption by retrying"},
      {"REPUTATION_BANNED", Family::behaviour, 0.0,
       "client is banned for repeated offences; refused on its own"},
      {"REPUTATION_OFFENDER", Family::behaviour, 2.0, "client has recent offences"},
      {"RCPT_UNKNOWN", Family::behaviour, 0.0, "recipient does not exist; refused with 550 5.1.1"},
      {"ADDRESS_GUESSING", Family::behaviour, 5.0, "client tries many unknown recipients"},
      {"TRAP_NON_MX", Family::behaviour, 5.0, "client connected to an address no MX points to"},
      {"BACKSCATTER", Family::behaviour, 5.0, "bounce to an address we never sent from"},
  };
  return kSymbols;
}

std::string list_symbol_name(std::string_view prefix, std::string_view list_name) {
  std::string out(prefix);
  for (char c : list_name) {
    if (c == '-') {
      out += '_';
    } else if (c >= 'a' && c <= 'z') {
      out += static_cast<char>(c - 'a' + 'A');
    } else {
      out += c;
    }
  }
  return out;
}

const SymbolInfo* find_symbol(std::string_view name) {
  const auto& all = known_symbols();
  auto it =
      std::find_if(all.begin(), all.end(), [&](const SymbolInfo& s) { return s.name == name; });
  return it == all.end() ? nullptr : &*it;
}

Symbol known_symbol(std::string_view name, std::string detail, double cap) {
  Symbol s;
  s.name = std::string(name);
  const SymbolInfo* info = find_symbol(s.name);
  s.score = info ? info->default_score : 0.0;
  s.family = info ? info->family : Family::rfc;
  if (cap >= 0.0) {
    s.score = std::min(s.score, cap);
    s.max_score = cap;  // holds against [scores] overrides too
  }
  s.detail = std::move(detail);
  return s;
}

}  // namespace spamward
