// The reverse-DNS check (DESIGN §3.5, §3.6): FCrDNS of the client address and a heuristic for
// dynamic/residential names. Stage connect, family rfc. docs/rdns-helo.md is the admin's view.
//
// Where the facts come from (DESIGN §3.5): the MTA's own lookups first.
// - reverse_client_name "unknown"                 -> RDNS_NONE
// - reverse_client_name a name, client_name "unknown" -> FCRDNS_MISMATCH (a PTR that does not
//   resolve back to the client), plus RDNS_DYNAMIC when the PTR name looks dynamic
// - both names                                     -> no FCrDNS symbol; RDNS_DYNAMIC may apply
// - reverse_client_name empty but client_name a name -> taken as confirmed (an MTA that gives
//   only the verified name)
// "[...]" forms (a milter's "[192.0.2.1]", XCLIENT's "[UNAVAILABLE]") mean "unknown".
// Only when the MTA gave no usable facts does the check look the PTR up itself through
// env.resolver (nothing at all when there is no resolver): PTR of the address, then A (IPv4)
// or AAAA (IPv6) of at most kMaxPtrNames of the PTR names; the name is confirmed when one of
// those answers contains the client address.
//
// Failure contract (DESIGN §1): a timeout or error is not an answer. A PTR lookup that fails
// emits nothing; NXDOMAIN/nodata is RDNS_NONE. A forward lookup that fails before any name
// is confirmed stops the check without FCRDNS_MISMATCH (RDNS_DYNAMIC may still be emitted, as
// it needs only the PTR name).
//
// Scores are the symbol table's defaults, all soft. RDNS_NONE for an IPv6 client scores at
// most 0.1: a missing IPv6 reverse is common among legitimate servers (DESIGN §1.4). The cap
// is carried as Symbol::max_score, so a [scores] RDNS_NONE override cannot lift it.
//
// Nothing is emitted without a client address, for an authenticated client (our own user
// submitting from wherever they are), or for a loopback client.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "core/ip_address.h"
#include "engine/check.h"
#include "engine/env.h"

namespace spamward {

// The PTR names tried for forward confirmation; a PTR RRset with more names is unusual and a
// spammer could use it to make us do work.
inline constexpr size_t kMaxPtrNames = 3;
// The cap on RDNS_NONE for an IPv6 client.
inline constexpr double kRdnsNoneV6MaxScore = 0.1;

// The RDNS_DYNAMIC heuristic. Returns a short reason ("embeds the address",
// "dynamic label 'dsl'") when `name` (a PTR name of `address`) looks like a name an ISP
// gives a dynamic or residential line, or "" when it does not. Conservative by design: a false
// positive on a real mail server costs more than a miss. Rules (docs/rdns-helo.md):
// 1. Embedded address (IPv4 only): the four octets appear as four consecutive numeric tokens,
//    in either order (192-0-2-10, 10.2.0.192, ip192_0_2_10), or as one 12-digit zero-padded
//    token (192000002010), or as 8 hex digits inside one label (c000020a). Fewer octets never
//    count.
// 2. Dynamic label: in the host part (the labels left of the registered domain, which is
//    approximated as the last two labels, three under a ccTLD second level like co.uk), a
//    label part (labels split at '-', '_' and letter/digit boundaries) is one of dynamic, dyn,
//    dynip, pool, dsl, adsl, vdsl, xdsl, cable, dhcp, ppp, pppoe, dialup, dial, client,
//    clients, customer, cust, broadband, residential, or "host"/"ip" directly followed by
//    "-" and a number; and the first label has a digit (the per-line number such names carry);
//    and the first label does not name a mail role (mail, mx, smtp, mta, relay, out, outbound,
//    mailout, mailer, gw, gateway, ...). So "mail.dsl-provider.example", "mx1.dsl-shop.example"
//    and "smtp-out.provider.example" never match.
std::string dynamic_name_reason(std::string_view name, const IpAddress& address);

// Always returns a check. When env.resolver is null, the lookup fallback is skipped (the MTA's
// facts still count).
std::unique_ptr<Check> make_rdns_check(const Env& env);

}  // namespace spamward
