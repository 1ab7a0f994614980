// The admin allow and deny lists as checks (DESIGN §1, §3.2). They only emit symbols; the
// Engine treats DENYLIST as a standalone refusal and ALLOWLIST as accept.
//
// Why five small checks rather than one: a check has one stage, and its facts arrive at
// different stages.
// - "allowlist" / "denylist" (stage connect): the client address against network entries,
//   so a milter can answer at connect. allowlist is can_only_lower, so its failure caps the
//   verdict at tempfail instead of letting an allowed client be refused.
// - "denylist_sender" (stage mail): "@domain" / "user@domain" entries as written; a forged
//   sender on the deny list is refused too, which is what the admin asked for.
// - "allowlist_sender" (stage rcpt) and "allowlist_sender_dkim" (stage eom): allow-list
//   sender entries count only when authentication vouches for the sender's domain, so a
//   forged sender never inherits trust. SPF is known after MAIL (so by RCPT, the first stage
//   the policy server usually evaluates); DKIM only at end of message. The eom check emits
//   only when SPF did not vouch, so one transaction gets ALLOWLIST at most once from them.
//   "Vouches" means exact domain equality: tx.spf_pass_domain == the sender's domain, or the
//   domain is in tx.dkim_valid_domains (strict alignment; no public-suffix guesswork).
//
// Each symbol's detail is the matching entry (e.g. "192.0.2.0/24", "@example.org").
// Scores are the symbol table's defaults (ALLOWLIST -20, DENYLIST 20); [scores] may
// override them. A StoreError propagates, so the Engine fails open and counts it.
#pragma once

#include <memory>
#include <vector>

#include "engine/check.h"
#include "state/admin_lists.h"

namespace spamward {

std::unique_ptr<Check> make_allowlist_check(std::shared_ptr<AdminLists> lists);
std::unique_ptr<Check> make_denylist_check(std::shared_ptr<AdminLists> lists);
std::unique_ptr<Check> make_denylist_sender_check(std::shared_ptr<AdminLists> lists);
std::unique_ptr<Check> make_allowlist_sender_check(std::shared_ptr<AdminLists> lists);
std::unique_ptr<Check> make_allowlist_sender_dkim_check(std::shared_ptr<AdminLists> lists);

// All five, in that order, sharing one AdminLists (one cache): what the registry adds.
std::vector<std::unique_ptr<Check>> make_admin_list_checks(std::shared_ptr<AdminLists> lists);

}  // namespace spamward
