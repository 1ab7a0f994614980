// The DKIM check (RFC 6376, RFC 8463; DESIGN §3.6): verifies every DKIM-Signature of the
// message at end of message and emits one symbol.
//
// Contract:
// - Stage eom, family auth. Emits nothing without a message (the policy server never has one).
// - Verifies at most DkimLimits::max_signatures (8) signatures, key lookups concurrently; the
//   rest are ignored and the detail says how many.
// - Exactly one of:
//   - DKIM_VALID (score 0): at least one signature passes. Detail: the passing d= domains,
//     lower case, comma-separated (what publish() reads back). A valid signature says who
//     signed, not that the mail is clean: it never lowers the score.
//   - DKIM_INVALID (symbol table score, 1.0): none passes and at least one fails or is a
//     permerror (RFC 6376 PERMFAIL: bad body hash or signature, expired, no key, revoked key,
//     syntax, rsa-sha1, short key...). Detail: "d=<domain>: <reason>" per signature, "; "
//     between. Mailing lists that alter subject or body break signatures routinely, so it
//     scores little, and when the message carries List-Id it scores at most 0.5, even after a
//     [scores] override (Symbol::max_score).
//   - DKIM_NONE (score 0): no DKIM-Signature field, or only failures of keys in testing mode
//     (t=y: RFC 6376 §3.6.1 says treat such mail as unsigned).
// - Fail open (DESIGN §1): a signature whose key lookup timed out or failed (temperror) is
//   not an answer. Unless another signature passes, the check then emits nothing and logs
//   it; it never turns a timeout into DKIM_INVALID. Likewise a body hash mismatch on a
//   truncated message (the milter stops reading past max_message_bytes) is no evidence.
// - Expiry (x=) is judged at the date of the newest Received field, else the clock's now, so
//   stored and replayed mail is judged as it arrived (as the header check does).
// - publish(): on DKIM_VALID, tx.dkim_valid_domains = the passing d= domains (the allow list
//   and DMARC use them).
#pragma once

#include <memory>

#include "auth/dkim.h"
#include "engine/check.h"
#include "engine/env.h"

namespace spamward {

// Returns nullptr when env.resolver is null (no DNS configured): the check then does not exist.
std::unique_ptr<Check> make_dkim_check(const Env& env, DkimLimits limits = {});

}  // namespace spamward
