// The HELO check (DESIGN §3.6): the name the client gave in HELO/EHLO. Stage helo, family rfc.
// docs/rdns-helo.md is the admin's view.
//
// Symbols (default scores from the symbol table, all soft; at most one of the first two):
// - HELO_BARE_IP     an IPv4 or IPv6 address not in [brackets] (RFC 5321 §4.1.3 wants the
//                    address-literal form);
// - HELO_NOT_FQDN    anything else that is not a syntactically valid host name with at least
//                    one dot (labels of letters, digits and inner hyphens, 1..63 characters,
//                    253 in all, a top label that is not all digits). An address literal
//                    ("[192.0.2.1]", "[IPv6:2001:db8::1]") is fine and never "not FQDN"; a
//                    malformed one ("[foo]") is;
// - HELO_FORGED      the name or address equals one of [network] our_names (case-insensitive,
//                    trailing dot and [brackets] ignored, addresses compared as addresses),
//                    unless the client's own address is one of our_names (ourselves talking
//                    to ourselves). Trusted clients never get here: the Engine skips them;
// - HELO_NO_RESOLVE  a valid FQDN whose A lookup answers NXDOMAIN. Only NXDOMAIN: nodata
//                    means the name exists, and a timeout or error is not an answer (DESIGN
//                    §1) and adds nothing. Only when env.resolver is set, and not on top of
//                    HELO_FORGED.
// Nothing is emitted for an empty HELO (not given), for an authenticated client (our users'
// laptops HELO with whatever they like), or for a loopback client.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/check.h"
#include "engine/env.h"

namespace spamward {

// The syntax rule of HELO_NOT_FQDN for a name that is neither an address nor a literal.
bool is_fqdn_hostname(std::string_view name);

// `our_names` as in [network] our_names. `env.resolver` may be null: then no HELO_NO_RESOLVE.
std::unique_ptr<Check> make_helo_check(const Env& env, std::vector<std::string> our_names);

}  // namespace spamward
