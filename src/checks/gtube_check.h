// The GTUBE check (DESIGN §3.6): the Generic Test for Unsolicited Bulk Email string, which
// admins send to see the refusal path work end to end, as SpamAssassin and rspamd honour it.
// Stage eom, family admin. It emits GTUBE when the string occurs in a decoded text part or in
// the raw body; the Engine then refuses the message on its own (DESIGN §1), whatever the
// protocol (milter, spamd, HTTP, `check`). Authenticated and trusted clients are not exempt:
// the test must work from anywhere (trusted clients are never checked at all, by the Engine).
#pragma once

#include <memory>
#include <string_view>

#include "engine/check.h"
#include "mail/message.h"

namespace spamward {

inline constexpr std::string_view kGtube =
    "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

bool contains_gtube(const Message& message);

std::unique_ptr<Check> make_gtube_check();

}  // namespace spamward
