// BATV (Bounce Address Tag Validation, draft-levine-smtp-batv) in the "prvs" scheme, exactly as
// Exim's ${prvs{...}} and ${prvscheck{...}} make and check it, so that a site can sign with
// spamward and check with Exim or the other way round (issue 7, DESIGN §3.3 [batv]).
//
// Contract:
// - A tagged address is "prvs=KDDDSSSSSS=local@domain":
//   - K     the key number, one digit. keys[i] has number (keys.size()-1-i) % 10, so the number
//           of a key stays the same when an admin PREPENDS a new key to rotate;
//   - DDD   the expiry day: (days since the epoch at signing + max_age in whole days) mod 1000,
//           three digits;
//   - SSSSSS the first 3 bytes, in lower-case hex, of HMAC-SHA1(key, K + DDD + "local@domain")
//           (the address byte for byte as it was signed, case included).
// - batv_sign() signs with keys[0]. It returns the address unchanged when it is empty (the null
//   sender), already tagged, not of the form local@domain (non-empty parts, the last '@'
//   splits), or when the tagged form would be over 512 bytes. keys must be non-empty.
//   max_age counts in whole days (at least 1, at most 999).
// - batv_verify() never throws:
//   - malformed: over 512 bytes, or the local part starts with "prvs=" (any case) but does not
//     have the shape above; address is then the input;
//   - untagged: no prvs= tag (this includes the empty sender); address is the input;
//   - bad_signature: tagged, but no key computes its hash (every key is tried, with the tag's
//     own K; a key with another number may sign after >10 rotations). address: untagged form;
//   - expired: a key computes the hash, but the tag's day is before today, or more than
//     max_age beyond it (DDD wraps at 1000: a day d counts as "ahead by (d - today) mod 1000
//     days", which is valid from 0 to max_age inclusive). address: untagged form;
//   - valid: address is the untagged form.
//   "prvs=" and the hex digits are case-insensitive; the hash compare is constant-time.
// - batv_is_tagged() is the syntactic part only: the local part starts with "prvs="
//   (case-insensitive) followed by one digit, three digits, six hex digits, '=', a non-empty
//   local part, '@' and a non-empty domain, in at most 512 bytes. No key is needed.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "core/duration.h"

namespace spamward {

inline constexpr size_t kBatvMaxAddress = 512;

enum class BatvStatus { untagged, valid, expired, bad_signature, malformed };
std::string_view to_string(BatvStatus s);

struct BatvResult {
  BatvStatus status = BatvStatus::untagged;
  std::string address;  // without the tag when tagged (any status but malformed), else the input
};

// prvs=KDDDSSSSSS=local@domain as Exim's ${prvs...} makes it; signs with keys[0]. Returns the
// address unchanged when it is empty (null sender) or already tagged. keys non-empty.
std::string batv_sign(std::string_view address, const std::vector<std::string>& keys, TimePoint now,
                      Duration max_age);
BatvResult batv_verify(std::string_view address, const std::vector<std::string>& keys,
                       TimePoint now, Duration max_age);
// Syntactic: local part starts with prvs= (case-insensitive) and has the shape.
bool batv_is_tagged(std::string_view address);

}  // namespace spamward
