// The DMARC check (RFC 7489; DESIGN §3.6, issue 5): alignment of the SPF and DKIM results with
// the RFC5322.From domain, scored by the policy the domain publishes, as a soft signal.
//
// Contract:
// - Stage eom, family auth, reads_published(): it runs after the other eom checks have
//   published (it reads the DKIM check's tx.dkim_valid_domains, and SPF's tx.spf_pass_domain
//   from the mail stage).
// - Emits nothing without a message, for an authenticated client (our own user submitting),
//   and unless the message has exactly one From field whose mailboxes all have one domain,
//   a DNS name (several From fields or domains, none, or an address literal: the header
//   check reports those).
// - Policy discovery (RFC 7489 §6.6.3): TXT at _dmarc.<From domain>; only records starting
//   v=DMARC1 count. None (NXDOMAIN, NODATA, no such record): TXT at _dmarc.<organisational
//   domain> when different (auth/dmarc.h), whose sp= (else p=) then applies. Several DMARC
//   records at one name, or an unusable one (auth/dmarc.h), end discovery: no DMARC, no
//   symbol. No record anywhere: no symbol.
// - Fail open (DESIGN §1): a timeout or error of either lookup is not an answer: no symbol,
//   a log line.
// - Alignment, each identifier being aligned, not aligned, or unknown:
//   - SPF: aligned when tx.spf_pass_domain aligns with the From domain under aspf=. Not
//     aligned when the SPF identity (the envelope sender's domain; the HELO name for a bounce)
//     does not align: whatever SPF said, it spoke for another domain; or when it aligns and
//     SPF gave a definite answer other than pass (tx.spf_decided). Otherwise unknown: the
//     identity aligns but SPF did not answer (a timeout, temperror), or there is no identity
//     at all (spamd and `check PATH` without --from).
//   - DKIM: aligned when a d= of tx.dkim_valid_domains aligns under adkim=. Not aligned when
//     no DKIM-Signature that could pass (well-formed, within DkimLimits::max_signatures) has an
//     aligned d=, or when every signature failed for good (tx.dkim_decided: the DKIM check
//     emitted DKIM_INVALID or DKIM_NONE; mail broken by a mailing list then fails, and
//     List-Id caps the score). Otherwise unknown: an aligned signature did not verify and
//     DKIM did not say it failed for good (a key lookup timed out, or another signature
//     passed and the DKIM check names only the passing ones).
// - Exactly one of, when a record applies:
//   - DMARC_PASS (score 0): SPF or DKIM aligned. Detail "<from> p=<policy>: DKIM aligned".
//   - DMARC_FAIL: neither aligned and neither unknown (an unknown could have been a pass).
//     Detail "<from> p=<policy>: neither SPF nor DKIM aligned". Score by the policy that
//     applies (effective_policy(): sp= for a subdomain found through its organisational
//     domain, one step lower when pct < 100):
//       reject      the symbol table default (2.0; [scores] overrides it);
//       quarantine  at most 1.0 (DmarcScores), even after an override;
//       none        at most 0.3, even after an override.
//     Mail with List-Id scores at most 0.5 (lists break alignment). DMARC_FAIL never refuses
//     on its own: it is one family, far below `reject` (DESIGN §1).
//   - nothing, when an identifier is unknown and none aligned.
#pragma once

#include <memory>

#include "auth/dmarc.h"
#include "engine/check.h"
#include "engine/env.h"

namespace spamward {

// The caps on DMARC_FAIL below p=reject (see above).
struct DmarcScores {
  double quarantine = 1.0;
  double none = 0.3;
  double mailing_list = 0.5;
};

// Returns nullptr when env.resolver is null (no DNS configured): the check then does not exist.
std::unique_ptr<Check> make_dmarc_check(const Env& env, DmarcLimits limits = {},
                                        DmarcScores scores = {});

}  // namespace spamward
