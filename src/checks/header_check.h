// The header sanity check (DESIGN §3.6 HDR_*): RFC 5322 facts about the top-level header of
// the message. Stage eom, family rfc; every symbol is soft (a few tenths to 1.5 points), so
// no header oddity refuses mail on its own (principle 1). Nothing is emitted without a
// message (the policy server) or for an authenticated client (our own users' mail programs).
//
// Symbols (default scores in the symbol table; docs/headers.md is the admin's view):
// - HDR_DATE_MISSING         no Date: field;
// - HDR_DATE_INVALID         a Date: that does not parse (mail/date.h), or several Date: fields;
// - HDR_DATE_FUTURE          Date: more than `future_slack` (24 h) after the reference time;
// - HDR_DATE_PAST            Date: more than `past_slack` (7 days) before the reference time.
//   The reference time is the date of the newest Received header (the hop that received it),
//   else the clock's now, so stored and replayed mail is judged as it arrived (DESIGN §3.6);
// - HDR_MESSAGE_ID_MISSING   no Message-ID: field;
// - HDR_MESSAGE_ID_INVALID   a Message-ID that is not "<left@right>", or several of them;
// - HDR_FROM_MISSING         no From: field;
// - HDR_FROM_INVALID         several From: fields, or none of its mailboxes has a plausible
//                            address;
// - HDR_FROM_DISPLAY_MISMATCH  the display name shows an e-mail address whose domain differs
//                            from the real From domain ("service@paypal.com" <x@evil.example>);
// - HDR_8BIT                 raw 8-bit bytes in the header (RFC 5322 wants RFC 2047 words;
//                            SMTPUTF8 mail is rare and the score small);
// - HDR_RECEIVED_IMPLAUSIBLE more than `max_hops` (40) Received fields, or a hop dated more than
//                            `future_slack` after the hop above it (time runs backwards).
#pragma once

#include <memory>

#include "engine/check.h"
#include "engine/env.h"

namespace spamward {

struct HeaderCheckLimits {
  Duration future_slack = std::chrono::hours(24);
  Duration past_slack = std::chrono::hours(24 * 7);
  size_t max_hops = 40;
};

// env.clock must be set.
std::unique_ptr<Check> make_header_check(const Env& env, HeaderCheckLimits limits = {});

}  // namespace spamward
