// GreylistCompatList: the greylisting compatibility allow-list (DESIGN §1.3, issue 4). It
// names senders known to retry from a pool of servers or to retry badly, for whom greylisting
// would delay or lose mail. A match skips greylisting only; it is not a trust bonus, and
// every other check still scores the mail.
//
// Format (config/greylist-compat.txt is the shipped list, compiled in as builtin()):
// - one entry per line; blank lines and lines starting with '#' are ignored; an entry may be
//   followed by blanks and a '#' comment;
// - an address or CIDR, IPv4 or IPv6 ("192.0.2.0/24", "2001:db8::/32", "192.0.2.7"): the
//   client address;
// - "host.example.org": exactly that client name; "*.example.org": any name below
//   example.org (not example.org itself); "/regex/": an ECMAScript regular expression
//   searched in the name (anchor it with ^ and $ yourself). Names compare case-insensitively
//   and match only the forward-confirmed client name (FCrDNS): a PTR alone is a claim the
//   sender makes about itself.
// - Limits: 10000 entries, 1000 bytes a line, 200 bytes a regular expression.
//
// Immutable after parse(); thread-safe to share.
#pragma once

#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/ip_address.h"

namespace spamward {

class GreylistCompatList {
 public:
  static constexpr size_t kMaxEntries = 10000;
  static constexpr size_t kMaxLineBytes = 1000;
  static constexpr size_t kMaxRegexBytes = 200;

  GreylistCompatList() = default;  // empty: matches nothing

  // Throws std::invalid_argument("SOURCE:LINE: problem") for the first bad line (or
  // "SOURCE: problem" for a whole-file limit).
  static GreylistCompatList parse(std::string_view text, std::string_view source);

  // The shipped list (config/greylist-compat.txt at build time). Parsed on first use.
  static const GreylistCompatList& builtin();

  // The entry, as written in the list, that `client` or `verified_name` matches. Give the
  // client name only when it is forward-confirmed; an empty name matches no name entry.
  // Networks are tried first (one hash lookup per prefix length in the list), then exact
  // names, then wildcards (one lookup per label), then regular expressions in list order.
  std::optional<std::string> match(const IpAddress& client, std::string_view verified_name) const;

  size_t size() const { return entries_; }

 private:
  // Per prefix length present, longest first: network bytes -> entry text.
  using NetworksByLength =
      std::vector<std::pair<int, std::unordered_map<std::string, std::string>>>;

  NetworksByLength v4_, v6_;
  std::unordered_map<std::string, std::string> exact_names_;     // lower-cased name -> entry
  std::unordered_map<std::string, std::string> wildcard_zones_;  // "example.org" -> entry
  std::vector<std::pair<std::regex, std::string>> regexes_;
  size_t entries_ = 0;
};

}  // namespace spamward
