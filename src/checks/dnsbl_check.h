// DNSBL and DNSWL checks (RFC 5782; DESIGN §3.3 [[dnsbl]]/[[dnswl]], §3.6): one Check per
// configured list, stage connect, family dnsbl, async on env.resolver.
//
// Contract:
// - [[dnsbl]] "name": emits RBL_<NAME> (upper-cased, '-' as '_') when the client is listed,
//   scored by classify_dnsbl_answer() (codes map, else weight; several codes: the highest).
//   [[dnswl]]: DNSWL_<NAME> with that score subtracted (negative), and can_only_lower().
//   Detail: the listing codes, e.g. "127.0.0.2" or "127.0.0.2,127.0.0.10".
// - Queries nothing, emits nothing: no client address, an authenticated client, a loopback
//   client, an IPv6 client of a list without `ipv6 = true`, a list that DnsblHealth does not
//   trust (lists everything, or its first test got no DNS answer).
// - DNS trouble adds nothing (DESIGN §1): NXDOMAIN/NODATA is "not listed"; a timeout or
//   error is not an answer. A DNSBL then simply emits nothing. A DNSWL throws instead, so
//   that the Engine counts the fail-open and caps the verdict at tempfail: mail is never
//   refused for want of its allow-list answer.
// - An answer that is not a listing (in blocked_codes, or outside 127.0.0.0/8) adds nothing,
//   counts spamward_dnsbl_alerts_total{list,reason="blocked"|"not_127"} and logs a warning
//   at most once a minute per list (with how many were not logged).
// - Metrics per list (label list=<name>), kept so that list precision can later be
//   estimated against learned ham (docs/dnsbl.md):
//     spamward_dnsbl_queries_total{list}, spamward_dnsbl_hits_total{list},
//     spamward_dnsbl_errors_total{list} (timeouts and errors),
//     spamward_dnsbl_seconds{list} (latency histogram of the lookups, cache hits included).
#pragma once

#include <memory>
#include <vector>

#include "checks/dnsbl_health.h"
#include "core/config.h"
#include "engine/check.h"
#include "engine/env.h"

namespace spamward {

// One check per [[dnsbl]] then [[dnswl]] list, in config order, sharing `health` (made here
// when null). Empty when env.resolver is null or no list is configured.
std::vector<std::unique_ptr<Check>> make_dnsbl_checks(
    const Config& config, const Env& env, std::shared_ptr<DnsblHealth> health = nullptr);

}  // namespace spamward
