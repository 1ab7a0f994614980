// DNSBL/DNSWL names and answers (RFC 5782), pure functions: no I/O, no state.
//
// Query names (RFC 5782 §2.1, §2.4):
//   IPv4  the four octets reversed, then the zone: 192.0.2.1 + bl.example -> 1.2.0.192.bl.example
//   IPv6  the 32 nibbles of the expanded address, reversed, dot-separated, then the zone:
//         2001:db8::1 -> 1.0.0.0.(...).8.b.d.0.1.0.0.2.bl.example
//   A trailing dot on the zone is ignored; the name carries none.
//
// Answers (RFC 5782 §2.3): one list's A records for one query are judged here.
//   - a listing: an IPv4 address in 127.0.0.0/8 that is not in the list's blocked_codes;
//     its score is the `codes` entry for that exact address, else the list's weight; when
//     several codes come back, the highest score wins;
//   - not a listing, and worth an alert: an answer outside 127.0.0.0/8 (a resolver that
//     rewrites NXDOMAIN, a wildcard, a hijack) or one in blocked_codes (the list refusing to
//     answer us: "query via public resolver", "volume exceeded"). Such answers never score.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"
#include "core/ip_address.h"

namespace spamward {

// The name to query for `address` in `zone`.
std::string dnsbl_query_name(const IpAddress& address, std::string_view zone);
// The IPv6 form from raw bytes, for addresses IpAddress would fold to IPv4 (the RFC 5782 §5
// test points ::FFFF:7F00:2 and ::FFFF:7F00:1 are queried in nibble form).
std::string dnsbl_query_name_v6(const std::array<uint8_t, 16>& bytes, std::string_view zone);

struct DnsblAnswer {
  bool listed = false;
  double score = 0.0;                // the highest score among the listing codes (> 0)
  std::vector<std::string> codes;    // the listing codes, in answer order
  std::vector<std::string> blocked;  // answers in blocked_codes
  std::vector<std::string> not_127;  // answers outside 127.0.0.0/8 (or not IPv4 at all)
  bool alert() const { return !blocked.empty() || !not_127.empty(); }
};

// Judges the A records of one answer for one list (see the header comment).
DnsblAnswer classify_dnsbl_answer(const ListConfig& list, const std::vector<std::string>& records);

}  // namespace spamward
