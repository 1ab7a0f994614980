// Envelope-address helpers shared by greylisting, lists and (later) BATV and recipients.
//
// normalize_sender() builds the sender part of a greylist key (DESIGN §3.3 [greylist]): two
// mails from one real sender must give one key even when the sender's MTA varies the
// envelope per message. Pure; never throws; bounded work (linear in the input).
#pragma once

#include <string>
#include <string_view>

namespace spamward {

// Lower-cases `sender` and removes what varies per message:
// - a BATV tag: "prvs=KDDDSSSSSS=local@d" (and the older "prvs=local/KDDDSSSSSS@d"),
//   "btv1==...==local@d", "msprvs1=...=local@d" -> "local@d";
// - SRS: "SRS0=HHH=TT=orig.domain=orig-local@fwd" and
//   "SRS1=HHH=fwd1==HHH=TT=orig.domain=orig-local@fwd2" -> "orig-local@orig.domain";
// - a "+extension" of the local part: "bob+list-42@d" -> "bob@d";
// - VERP-style numbers: every run of digits in the local part becomes "#"
//   ("bounce-12345-678@d" -> "bounce-#-#@d").
// An empty sender (a bounce) gives "<>". A sender without '@' is lower-cased and gets the
// same local-part treatment.
std::string normalize_sender(std::string_view sender);

}  // namespace spamward
