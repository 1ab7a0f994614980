// The BACKSCATTER check (issue 7 part 3, DESIGN §3.3 [batv], §3.6): a bounce (null envelope
// sender) to one of our addresses that does not carry a valid, unexpired BATV tag is a bounce
// of a message we never sent, i.e. backscatter from a forged sender (auth/batv.h).
// Stage rcpt, family behaviour. docs/backscatter.md is the admin's view.
//
// - Exists only when [batv] keys are set (make_backscatter_check returns null otherwise) and
//   env.clock is set.
// - Looks only at a bounce: tx.sender empty, tx.recipient non-empty, the client not
//   authenticated (our users' own read receipts and DSNs go out with a null sender too).
// - Skips postmaster@ and abuse@ (any domain, case-insensitive): double bounces and abuse
//   reports to them are legitimate and untagged.
// - Verifies tx.recipient (surrounding <> ignored): valid emits nothing; otherwise
//   BACKSCATTER with a detail: "bounce to untagged address", "expired BATV tag",
//   "bad BATV signature", "malformed BATV tag".
// The Engine refuses BACKSCATTER on its own only with [batv] enforce (engine/decide.cpp);
// without it the symbol only scores.
#pragma once

#include <memory>

#include "core/config.h"
#include "engine/check.h"
#include "engine/env.h"

namespace spamward {

std::unique_ptr<Check> make_backscatter_check(const Config& config, const Env& env);

}  // namespace spamward
