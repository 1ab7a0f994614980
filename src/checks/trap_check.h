// The trap check (issue 7, DESIGN §3.3 [trap], docs/trap.md): a client that delivers to one
// of our addresses that no MX record points to is scanning, not delivering. Stage mail (the
// milter knows authentication by then), family behaviour.
//
// Off unless [trap] mx_addresses or mx_domains is set. Our MX addresses are mx_addresses plus
// the A and AAAA addresses of the MX hosts of each of mx_domains (a domain without MX records
// is its own MX, RFC 5321 §5.1), resolved on first use and again after an hour; a lookup that
// fails keeps the previous answer, and while the MX addresses of a domain were never learned
// the check adds nothing (fail open: DESIGN §1).
//
// Only port 25 counts, and only an unauthenticated client (trusted networks never reach a
// check): submission users, monitoring and our own hosts are never trapped. The address and
// port the client reached come from the MTA (policy: server_address and server_port; milter:
// {daemon_addr} and {daemon_port}); when either is unknown nothing is judged.
//
// A trapped client gets TRAP_NON_MX and an offence (kind trap), so a ban starts at once and
// grows if it comes back; the ban is answered at once through REPUTATION_BANNED. No offence is
// recorded in dry-run mode, for a read-only evaluation, or when the client is already banned
// (a banned client's later transactions are refused by the ban itself).
#pragma once

#include <memory>

#include "core/config.h"
#include "engine/check.h"
#include "engine/env.h"

namespace spamward {

// Null when the trap is off.
std::unique_ptr<Check> make_trap_check(const Config& config, const Env& env);

}  // namespace spamward
