// SPF record syntax (RFC 7208 §4.5, §4.6, §5, §6) and macros (§7): pure functions, no DNS.
// check_host() (auth/spf.h) is built on them; they are public so tests can reach them.
//
// Contract:
// - is_spf_record(): the version test of §4.5: "v=spf1" (any case) followed by a space or
//   the end of the text.
// - parse_spf_record(): the whole record, or an error saying which term is wrong. Terms are
//   separated by one or more spaces (only 0x20); any other byte outside 0x21..0x7E anywhere
//   is an error, so control characters and non-ASCII never reach evaluation.
// - Domain-specs are checked as the grammar says, before expansion: a valid macro-string that
//   ends in a macro or in "." toplabel ["."]. Whether the expanded name is a usable DNS name is
//   the evaluator's business (spf_target_name()).
// - expand_spf_macros() expands a string already accepted by the same mode; it returns nullopt
//   for a syntax error, so an exp= text with a bad macro can be ignored (§6.2).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/ip_address.h"

namespace spamward {

enum class SpfQualifier : char { pass = '+', fail = '-', softfail = '~', neutral = '?' };

enum class SpfMechanismKind { all, include, a, mx, ptr, ip4, ip6, exists };

struct SpfMechanism {
  SpfQualifier qualifier = SpfQualifier::pass;
  SpfMechanismKind kind = SpfMechanismKind::all;
  std::string domain_spec;  // include/a/mx/ptr/exists; empty: the current domain (a/mx/ptr)
  int cidr4 = 32;           // a/mx/ip4
  int cidr6 = 128;          // a/mx/ip6
  std::array<uint8_t, 16> network{};  // ip4 (first 4 bytes) / ip6, network order
  std::string text;                   // the term as written, for reports
};

struct SpfRecord {
  std::vector<SpfMechanism> mechanisms;  // in record order
  std::optional<std::string> redirect;   // domain-spec
  std::optional<std::string> exp;        // domain-spec
};

struct SpfParse {
  std::optional<SpfRecord> record;  // set on success
  std::string error;                // set on failure
};

bool is_spf_record(std::string_view txt);
SpfParse parse_spf_record(std::string_view txt);

// Macro strings have two flavours: a domain-spec (no spaces; c, r, t not allowed, §7.1) and
// an explanation text (spaces allowed; every macro letter).
enum class MacroMode { domain, explanation };

bool valid_macro_string(std::string_view s, MacroMode mode);
bool valid_domain_spec(std::string_view s);
bool uses_p_macro(std::string_view s);  // whether expansion needs the validated name

struct MacroContext {
  std::string sender;         // %{s}
  std::string local_part;     // %{l}
  std::string sender_domain;  // %{o}
  std::string domain;         // %{d}
  IpAddress ip;               // %{i}, %{c}, %{v}
  std::string helo;           // %{h}
  std::string validated;      // %{p}; "unknown" when none
  std::string receiver;       // %{r}
  int64_t now_unix = 0;       // %{t}
};

std::optional<std::string> expand_spf_macros(std::string_view s, const MacroContext& ctx,
                                             MacroMode mode);

// %{i}: dotted quad, or 32 dot-separated upper-case nibbles for IPv6.
std::string spf_dotted_ip(const IpAddress& ip);
// The reverse-lookup name: "4.3.2.1.in-addr.arpa" or the ip6.arpa nibble name.
std::string spf_reverse_name(const IpAddress& ip);

// An expanded domain-spec as a DNS query name (§7.3, §4.3): the trailing dot removed, labels
// dropped from the left until it fits in 253 characters, lower-cased. nullopt when it cannot
// be queried (an empty label, a label over 63 characters, an empty name).
std::optional<std::string> spf_target_name(std::string_view expanded);

}  // namespace spamward
