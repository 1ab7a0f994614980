// The bounce-origin check (issue 7 part 3, optional DSN part; docs/backscatter.md): a bounce
// (null envelope sender) whose attached original names a Message-ID we never sent is
// backscatter. Stage eom, family behaviour. It works with or without BATV signing.
//
// - Our sent Message-IDs: the Engine remembers the Message-ID of every message from an
//   authenticated or trusted client that reaches end of message (state/sent_messages.h,
//   kept [batv] max_age).
// - Judged only once remembering has gone on for a full max_age (remembering_since), so a
//   bounce of a mail sent before spamward remembered is never taken for backscatter.
// - A bounce: tx.sender empty and a message. The original's Message-IDs are the
//   "Message-ID:" header lines inside the body (the attached message/rfc822 or
//   text/rfc822-headers part of a DSN; at most 8 are read). None found (an auto-reply, a
//   DSN without the original): nothing. One of them ours: nothing. None ours: BACKSCATTER
//   "bounce of a message we never sent (Message-ID <...>)".
// - With [batv] keys set, a bounce to an untagged address already scored BACKSCATTER at RCPT;
//   this check then adds nothing when a recipient is untagged (no double count).
// - Never for authenticated clients; nothing in a read-only evaluation changes.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "engine/check.h"
#include "engine/env.h"

namespace spamward {

// Null without env.store and env.clock.
std::unique_ptr<Check> make_bounce_origin_check(const Config& config, const Env& env);

}  // namespace spamward
