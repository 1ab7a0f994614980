// The reputation check (DESIGN §1 principle 2, issue 4): the first thing a connection meets.
//
// - REPUTATION_BANNED: the client (or its network) is banned now. The Engine refuses it on its
//   own: 4xx, or 5xx once the ban is permanent (Symbol::permanent). Detail: what is banned,
//   until when, and why.
// - REPUTATION_OFFENDER: not banned, but the client has recent offences (a decayed count of
//   at least 0.5); a soft behaviour signal (+2.0 by default).
//
// Stage connect, answered synchronously (run_now): the ban lookup is an O(1) hash lookup on
// Reputation's in-memory snapshot; the offender lookup is one store read, made only when
// there is no ban. Registered only when the Env has a Reputation. A StoreError fails open.
#pragma once

#include <memory>

#include "core/symbol.h"
#include "engine/check.h"
#include "engine/env.h"
#include "state/reputation.h"

namespace spamward {

std::unique_ptr<Check> make_reputation_check(const Env& env);

// REPUTATION_BANNED for `ban` (the detail and permanence above). Also for checks that start a
// ban themselves (the trap), so their transaction gets the ban's answer at once.
Symbol banned_symbol(const Ban& ban);

}  // namespace spamward
