// Symbols: the only output of a check. A symbol has a name users grep for (DESIGN §3.6), a
// score, one family, and a detail that explains it (e.g. the DNSBL answer).
//
// Families drive the rule that no single technique refuses mail alone: a reject needs
// `reject_min_families` families that each add at least 1.0 (DESIGN §1). The `admin` family
// holds the admin's own decisions (allow/deny lists, GTUBE); it never counts as evidence.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace spamward {

enum class Family { dnsbl, rfc, auth, content, behaviour, admin };

std::string_view to_string(Family f);
std::optional<Family> parse_family(std::string_view s);

struct Symbol {
  std::string name;
  double score = 0.0;
  Family family = Family::rfc;
  std::string detail;
  // REPUTATION_BANNED only: the ban is past `permanent_after` offences (5xx, not 4xx).
  bool permanent = false;
  // An upper bound that holds even after a [scores] override (e.g. RDNS_NONE for an IPv6
  // client: a missing IPv6 reverse is common and scores at most 0.1). Negative: none.
  double max_score = -1.0;
  // For a symbol scored by confidence (BAYES_*): the fraction, in [0, 1], of its full score
  // this emission carries. A [scores] override then sets the full score and keeps the
  // fraction. Negative: not scaled (an override replaces the score).
  double scale = -1.0;
};

// What the symbol reference documents about a known symbol.
struct SymbolInfo {
  std::string_view name;
  Family family;
  double default_score;
  std::string_view description;
};

// Every fixed-name symbol spamward can emit. Per-list names (RBL_<NAME>, DNSWL_<NAME>) are
// derived from the config and are not in this table.
const std::vector<SymbolInfo>& known_symbols();

// RBL_<NAME> / DNSWL_<NAME> for a configured list: the name upper-cased, '-' as '_'
// (DESIGN §3.6). The config loader and the DNSBL check must agree, so this is the one spelling.
std::string list_symbol_name(std::string_view prefix, std::string_view list_name);
const SymbolInfo* find_symbol(std::string_view name);

// A symbol of the known table with its default score and family (an unknown name gets score
// 0, family rfc). `cap` >= 0 sets max_score and caps the score.
Symbol known_symbol(std::string_view name, std::string detail, double cap = -1.0);

}  // namespace spamward
