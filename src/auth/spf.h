// SPF (RFC 7208): check_host(), asynchronous on the injected Resolver.
//
// Contract:
// - check_host() implements RFC 7208 §4-§7 for one identity: the result (none, neutral, pass,
//   fail, softfail, temperror, permerror), the mechanism that matched, and for `fail` the
//   explanation (the record's exp= text, or SpfOptions::default_explanation).
// - Only TXT records are used (RFC 7208 §3.1: type SPF is not queried). A TXT lookup that
//   times out or fails is temperror; NXDOMAIN or no "v=spf1" record is none; more than one
//   "v=spf1" record is permerror.
// - The whole record is syntax-checked before any mechanism runs (§4.6): any error, an unknown
//   mechanism, a malformed macro, a bad CIDR length, a non-printable or non-ASCII byte, a
//   repeated redirect=/exp= is permerror. Unknown modifiers are ignored.
// - Limits (§4.6.4), all counted over one check_host() call including its includes and
//   redirects: at most `max_dns_terms` terms that query DNS (include, a, mx, ptr, exists,
//   redirect), at most `max_void_lookups` of their lookups answering NXDOMAIN or no records,
//   at most `max_mx_names` MX names (more is permerror), the first `max_ptr_names` PTR names
//   only. Beyond those: a record longer than `max_record_length` is permerror, and
//   include/redirect nesting deeper than `max_depth` is permerror, so hostile DNS can
//   neither make us loop nor make us send an unbounded number of queries.
// - A DNS timeout or server failure while a mechanism needs the answer is temperror: a timeout
//   is not an answer (DESIGN §1). exp= problems (DNS, syntax, several records) never change the
//   result; they fall back to the default explanation.
// - A malformed <domain> (an empty or over-long label, a name over 253 characters, a single
//   label, an address literal) is none, without any query (§4.3).
// - The client address is IPv4 or IPv6; IpAddress has already folded v4-mapped addresses to
//   IPv4, so they match ip4: and A records only (§5).
// - Macros (§7) follow the RFC, with two choices: %{i} of an IPv6 address gives upper-case
//   nibbles, as the reference implementation (pyspf) does (DNS does not care about case), and
//   %{p} costs at most 1 + max_ptr_names queries, made once per check_host() call and not
//   counted against max_dns_terms (RFC 7208 §7.3 discourages %{p} rather than limiting it).
//
// Never throws for bad records or bad DNS data; an exception out of the Resolver propagates.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/ip_address.h"
#include "dns/resolver.h"

namespace spamward {

enum class SpfCode { none, neutral, pass, fail, softfail, temperror, permerror };

std::string_view to_string(SpfCode code);  // "none", "neutral", "pass", ...

struct SpfResult {
  SpfCode code = SpfCode::none;
  // The directive that decided, as written ("-all", "ip4:192.0.2.0/24", "include:x.example").
  // Empty when no mechanism matched (the default neutral) or on none/temperror/permerror.
  std::string mechanism;
  // The domain whose record held that mechanism (after redirects), or the domain checked.
  std::string domain;
  // fail only: the exp= text (RFC 7208 §6.2), or the expanded default explanation.
  std::string explanation;
  // none/temperror/permerror: what went wrong, for logs and symbol details.
  std::string problem;
};

struct SpfOptions {
  int max_dns_terms = 10;           // RFC 7208 §4.6.4: MUST be at most 10
  int max_void_lookups = 2;         // RFC 7208 §4.6.4: SHOULD be 2
  int max_mx_names = 10;            // more MX names than this is permerror
  int max_ptr_names = 10;           // PTR names beyond this are ignored
  size_t max_record_length = 4096;  // longer "v=spf1" records are permerror
  int max_depth = 10;               // include/redirect nesting
  size_t max_explanation_length = 512;
  // Expanded like an exp= text (macros allowed) when a fail has no usable exp=.
  std::string default_explanation = "%{d} does not authorize %{c} to send mail for %{o}";
  std::string receiver = "unknown";  // %{r}: our host name
  std::optional<int64_t> now_unix;   // %{t}; unset: the system clock
};

// RFC 7208 §4: evaluates `domain`'s policy for mail from `sender` (local@domain; an empty local
// part means "postmaster") sent by `ip`, which said HELO `helo`.
// Every parameter is taken by value: the awaitable starts lazily, so a reference to a caller's
// temporary would dangle by the time the body runs. `resolver` must outlive the awaitable.
boost::asio::awaitable<SpfResult> check_host(Resolver& resolver, IpAddress ip, std::string domain,
                                             std::string sender, std::string helo,
                                             SpfOptions options);

// Which identity to check (RFC 7208 §2.3, §2.4): the MAIL FROM domain, or when MAIL FROM is
// empty (a bounce) the HELO name with sender postmaster@helo.
struct SpfIdentity {
  std::string domain;
  std::string sender;
  bool is_helo = false;
};
SpfIdentity spf_identity(std::string_view mail_from, std::string_view helo);

}  // namespace spamward
