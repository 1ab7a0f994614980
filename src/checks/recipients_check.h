// The recipients check (issue 7, DESIGN §3.3 [recipients], docs/address-guessing.md): unknown
// recipients and address guessing. Stage rcpt (once per recipient), family behaviour.
//
// Off unless [recipients] valid names a list (state/recipient_list.h). For each recipient:
// - a valid BATV tag is removed first (a bounce to our tagged sender is checked as the
//   sender it stands for);
// - a recipient at a domain the list does not name is not judged;
// - postmaster@ and abuse@ are always valid, as is user+ext@ when user@ is;
// - an unknown recipient emits RCPT_UNKNOWN, which the Engine answers 550 5.1.1 on its own
//   (a fact, not a judgement: DESIGN §1). Unless it is a likely typo of a valid address
//   (detail "typo of ..."), it is noted for the client (state/address_guessing.h), and when
//   the client is guessing (its own threshold, or a campaign) ADDRESS_GUESSING is emitted
//   with the evidence and an offence is recorded (never in dry-run mode or for a read-only
//   evaluation: `spamward check`, the HTTP check API);
// - a valid recipient is noted for the client: it clears suspicion for the window.
// The evaluation for the whole message (no current recipient) emits nothing: the unknown
// recipients were refused one by one.
#pragma once

#include <memory>

#include "core/config.h"
#include "engine/check.h"
#include "engine/env.h"
#include "state/mta_log.h"
#include "state/recipient_list.h"

namespace spamward {

// The [recipients] valid list, read now; null when no source is configured. Throws
// ConfigError naming the list file and line (or the config line of `valid` when the file
// cannot be read), key recipients.valid.
std::shared_ptr<RecipientList> load_recipient_list(const Config& config);

// Null when `list` is null. Guessing is tracked only with env.store and env.clock.
std::unique_ptr<Check> make_recipients_check(const Config& config, const Env& env,
                                             std::shared_ptr<RecipientList> list);

// [recipients] follow_log: the unknown-recipient refusals the MTA itself logged (Postfix,
// Exim; state/mta_log.h) count toward address guessing as if spamward had refused them, with
// the same rules: trusted clients are ignored, and when `list` is given, recipients it calls
// valid or likely typos are not counted. Offences are recorded (not in dry-run mode). Null when
// follow_log is empty or there is no store. The follower is started; its settings are those
// of `config` until it is rebuilt (the daemon rebuilds it at restart).
std::unique_ptr<MtaLogFollower> follow_mta_log(const Config& config, const Env& env,
                                               std::shared_ptr<RecipientList> list);

}  // namespace spamward
