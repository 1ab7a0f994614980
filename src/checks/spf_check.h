// The SPF check (RFC 7208; DESIGN §3.6): one symbol per transaction for the envelope sender,
// or for the HELO identity (postmaster@helo) when the sender is empty (a bounce).
//
// Contract:
// - Stage mail, family auth. Emits exactly one of SPF_PASS, SPF_FAIL, SPF_SOFTFAIL,
//   SPF_NEUTRAL, SPF_NONE, SPF_PERMERROR, SPF_TEMPERROR with the symbol table's default score
//   ([scores] overrides are the Engine's job). SPF_TEMPERROR always scores 0: a DNS timeout is
//   not an answer (DESIGN §1).
// - Detail: "<identity> <domain>: <what decided>", e.g. "mfrom example.org: -all; <exp text>",
//   "helo mx.example.org: ip4:192.0.2.0/24", "mfrom example.org: more than 10 DNS-querying terms".
// - Emits nothing when there is nothing to judge: no client address, an authenticated client
//   (our own user submitting; SPF judges the path from the sender's domain, not our users),
//   or neither a sender nor a HELO name.
// - publish(): on SPF_PASS for the MAIL FROM identity, sets tx.spf_pass_domain to the sender's
//   domain (lower case) so that later checks (allow-list sender entries, greylisting) can rely
//   on it. A HELO pass vouches for the host, not for a sender, and is not published.
// - SPF is an anomaly signal only: a pass proves little (score 0) and a fail adds a few soft
//   points; no SPF result refuses mail on its own (DESIGN §1).
#pragma once

#include <memory>
#include <string>

#include "auth/spf.h"
#include "engine/check.h"
#include "engine/env.h"

namespace spamward {

// Returns nullptr when env.resolver is null (no DNS configured): the check then does not
// exist, rather than existing and emitting nothing. env.clock, when set, gives %{t}.
// `options.receiver` should be our host name (%{r} in explanations).
std::unique_ptr<Check> make_spf_check(const Env& env, SpfOptions options = {});

}  // namespace spamward
