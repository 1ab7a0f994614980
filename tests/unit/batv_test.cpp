// BATV prvs tags (auth/batv.h): Exim-compatible signing and verification.
//
// The known answers below were computed independently of this code, with Python's hmac
// following Exim's prvs_hmac_sha1 (HMAC-SHA1 over K + DDD + address, first 3 bytes in hex):
//   python3 -c 'import hmac,hashlib
//   def tag(key,k,ddd,addr): return "prvs=%s%s%s=%s"%(k,ddd,hmac.new(key.encode(),
//       (k+ddd+addr).encode(),hashlib.sha1).hexdigest()[:6],addr)
//   print(1700000000//86400)                                             # 19675
//   print(tag("spamward-test-key-0001","0","682","alice@example.org"))   # prvs=0682658838=...
//   print(tag("spamward-test-key-0002","1","682","alice@example.org"))   # prvs=16822cc485=...
//   print(tag("spamward-test-key-0001","0","682","Alice@Example.ORG"))   # prvs=0682c4b56d=...
//   print(tag("spamward-test-key-0001","0","002","bob@example.org"))'    # prvs=00023e7e86=...
// FakeClock's default start is 1,700,000,000 s: day 19675, so with max_age 7d DDD = 682.
#include "auth/batv.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

using namespace spamward;

namespace {

constexpr int64_t kDayMs = 86'400'000;
const Duration kWeek = std::chrono::hours(24 * 7);
const std::string kKey1 = "spamward-test-key-0001";
const std::string kKey2 = "spamward-test-key-0002";

// local@example.org of exactly `size` bytes (built without operator+, whose inlined copy
// trips GCC 12's -Warray-bounds false positive).
std::string address_of_size(size_t size, char local) {
  std::string out(size, local);
  const std::string_view domain = "@example.org";
  out.replace(size - domain.size(), domain.size(), domain);
  return out;
}

TimePoint day_start(int64_t day) {
  return from_unix_ms(day * kDayMs);
}

TEST(Batv, SignsAsEximDoes) {
  FakeClock clock;
  EXPECT_EQ(batv_sign("alice@example.org", {kKey1}, clock.now(), kWeek),
            "prvs=0682658838=alice@example.org");
  // The address is signed byte for byte, case included.
  EXPECT_EQ(batv_sign("Alice@Example.ORG", {kKey1}, clock.now(), kWeek),
            "prvs=0682c4b56d=Alice@Example.ORG");
  // Any time of the same day gives the same tag.
  EXPECT_EQ(batv_sign("alice@example.org", {kKey1}, day_start(19675), kWeek),
            "prvs=0682658838=alice@example.org");
  EXPECT_EQ(batv_sign("alice@example.org", {kKey1}, from_unix_ms(19676 * kDayMs - 1), kWeek),
            "prvs=0682658838=alice@example.org");
}

TEST(Batv, VerifiesKnownAnswers) {
  FakeClock clock;
  BatvResult r = batv_verify("prvs=0682658838=alice@example.org", {kKey1}, clock.now(), kWeek);
  EXPECT_EQ(r.status, BatvStatus::valid);
  EXPECT_EQ(r.address, "alice@example.org");
  EXPECT_EQ(batv_verify("prvs=0682c4b56d=Alice@Example.ORG", {kKey1}, clock.now(), kWeek).status,
            BatvStatus::valid);
  // The tag is bound to the address: another local part or case is a bad signature.
  EXPECT_EQ(batv_verify("prvs=0682658838=alicf@example.org", {kKey1}, clock.now(), kWeek).status,
            BatvStatus::bad_signature);
  EXPECT_EQ(batv_verify("prvs=0682658838=Alice@example.org", {kKey1}, clock.now(), kWeek).status,
            BatvStatus::bad_signature);
  // And to its day and key number (both are hashed).
  EXPECT_EQ(batv_verify("prvs=0681658838=alice@example.org", {kKey1}, clock.now(), kWeek).status,
            BatvStatus::bad_signature);
  EXPECT_EQ(batv_verify("prvs=1682658838=alice@example.org", {kKey1}, clock.now(), kWeek).status,
            BatvStatus::bad_signature);
  BatvResult bad = batv_verify("prvs=0682000000=alice@example.org", {kKey1}, clock.now(), kWeek);
  EXPECT_EQ(bad.status, BatvStatus::bad_signature);
  EXPECT_EQ(bad.address, "alice@example.org");
}

TEST(Batv, RoundTripsAndLeavesEmptyOrTaggedAlone) {
  FakeClock clock;
  std::string tagged = batv_sign("bob+ext@sub.example.org", {kKey1}, clock.now(), kWeek);
  EXPECT_TRUE(batv_is_tagged(tagged));
  BatvResult r = batv_verify(tagged, {kKey1}, clock.now(), kWeek);
  EXPECT_EQ(r.status, BatvStatus::valid);
  EXPECT_EQ(r.address, "bob+ext@sub.example.org");
  EXPECT_EQ(batv_sign("", {kKey1}, clock.now(), kWeek), "");
  EXPECT_EQ(batv_sign(tagged, {kKey1}, clock.now(), kWeek), tagged);
  EXPECT_EQ(batv_sign("PRVS=0682658838=alice@example.org", {kKey1}, clock.now(), kWeek),
            "PRVS=0682658838=alice@example.org");
  // Not local@domain: unchanged.
  EXPECT_EQ(batv_sign("no-at-sign", {kKey1}, clock.now(), kWeek), "no-at-sign");
  EXPECT_EQ(batv_sign("@example.org", {kKey1}, clock.now(), kWeek), "@example.org");
  EXPECT_EQ(batv_sign("alice@", {kKey1}, clock.now(), kWeek), "alice@");
}

TEST(Batv, KeyRotationKeepsKeyNumbersWhenAKeyIsPrepended) {
  FakeClock clock;
  // One key: number 0. An admin prepends a new key: the new one is number 1 and signs; the
  // old one keeps number 0, so tags made before the rotation still verify.
  const std::vector<std::string> before = {kKey1};
  const std::vector<std::string> after = {kKey2, kKey1};
  EXPECT_EQ(batv_sign("alice@example.org", after, clock.now(), kWeek),
            "prvs=16822cc485=alice@example.org");
  EXPECT_EQ(batv_verify("prvs=0682658838=alice@example.org", after, clock.now(), kWeek).status,
            BatvStatus::valid);
  EXPECT_EQ(batv_verify("prvs=16822cc485=alice@example.org", after, clock.now(), kWeek).status,
            BatvStatus::valid);
  // The old key set does not know the new key.
  EXPECT_EQ(batv_verify("prvs=16822cc485=alice@example.org", before, clock.now(), kWeek).status,
            BatvStatus::bad_signature);
  // After the old key is removed, its tags no longer verify.
  EXPECT_EQ(batv_verify("prvs=0682658838=alice@example.org", {kKey2}, clock.now(), kWeek).status,
            BatvStatus::bad_signature);
  // Eleven keys: numbers wrap at 10, and every key is still tried.
  std::vector<std::string> many;
  for (int i = 0; i < 11; ++i) many.push_back("spamward-rotation-key-" + std::to_string(i));
  std::string t = batv_sign("carol@example.org", many, clock.now(), kWeek);
  EXPECT_EQ(t.substr(0, 6), "prvs=0") << "(11 - 1) % 10";
  EXPECT_EQ(batv_verify(t, many, clock.now(), kWeek).status, BatvStatus::valid);
  EXPECT_EQ(batv_verify(t, {many.back()}, clock.now(), kWeek).status, BatvStatus::bad_signature);
}

TEST(Batv, ExpiresAcrossTheMod1000Wrap) {
  // Signed on day 19995 with max_age 7d: DDD = (19995 + 7) % 1000 = 2 (known answer above).
  const std::string tagged = "prvs=00023e7e86=bob@example.org";
  EXPECT_EQ(batv_sign("bob@example.org", {kKey1}, day_start(19995) + std::chrono::hours(5), kWeek),
            tagged);
  for (int64_t day = 19995; day <= 20002; ++day) {
    EXPECT_EQ(batv_verify(tagged, {kKey1}, day_start(day), kWeek).status, BatvStatus::valid) << day;
  }
  // The last second of day 20002 still passes; day 20003 (DDD 003) is past the tag's day.
  EXPECT_EQ(batv_verify(tagged, {kKey1}, from_unix_ms(20003 * kDayMs - 1), kWeek).status,
            BatvStatus::valid);
  BatvResult expired = batv_verify(tagged, {kKey1}, day_start(20003), kWeek);
  EXPECT_EQ(expired.status, BatvStatus::expired);
  EXPECT_EQ(expired.address, "bob@example.org");
  EXPECT_EQ(batv_verify(tagged, {kKey1}, day_start(20500), kWeek).status, BatvStatus::expired);
  // More than max_age ahead of today (day 19994: 8 days ahead) is not valid either.
  EXPECT_EQ(batv_verify(tagged, {kKey1}, day_start(19994), kWeek).status, BatvStatus::expired);
  // A shorter max_age at verification shortens the window.
  EXPECT_EQ(batv_verify(tagged, {kKey1}, day_start(19995), std::chrono::hours(48)).status,
            BatvStatus::expired);
  EXPECT_EQ(batv_verify(tagged, {kKey1}, day_start(20000), std::chrono::hours(48)).status,
            BatvStatus::valid);
}

TEST(Batv, CaseInsensitivePrefixAndHex) {
  FakeClock clock;
  for (const char* a : {"PRVS=0682658838=alice@example.org", "Prvs=0682658838=alice@example.org",
                        "prvs=0682658838=alice@example.org"}) {
    EXPECT_TRUE(batv_is_tagged(a)) << a;
    EXPECT_EQ(batv_verify(a, {kKey1}, clock.now(), kWeek).status, BatvStatus::valid) << a;
  }
  BatvResult upper = batv_verify("prvs=0682C4B56D=Alice@Example.ORG", {kKey1}, clock.now(), kWeek);
  EXPECT_EQ(upper.status, BatvStatus::valid);
  EXPECT_EQ(upper.address, "Alice@Example.ORG");
}

TEST(Batv, UntaggedAndMalformed) {
  FakeClock clock;
  for (const char* a : {"alice@example.org", "", "prvsalice@example.org", "prv=1@example.org",
                        "bounce-prvs=0682658838=alice@example.org"}) {
    BatvResult r = batv_verify(a, {kKey1}, clock.now(), kWeek);
    EXPECT_EQ(r.status, BatvStatus::untagged) << a;
    EXPECT_EQ(r.address, a);
    EXPECT_FALSE(batv_is_tagged(a)) << a;
  }
  for (const char* a : {
           "prvs=", "prvs=0682658838=",
           "prvs=0682658838=alice",              // no domain
           "prvs=0682658838=@example.org",       // empty local part
           "prvs=0682658838=alice@",             // empty domain
           "prvs=068265883=alice@example.org",   // short hash
           "prvs=06826588g8=alice@example.org",  // not hex
           "prvs=x682658838=alice@example.org",  // key number not a digit
           "prvs=06a2658838=alice@example.org",  // day not digits
           "prvs=0682658838alice@example.org",   // no '=' after the tag
           "prvs=alice/0682658838@example.org",  // the older form: not what we sign
       }) {
    BatvResult r = batv_verify(a, {kKey1}, clock.now(), kWeek);
    EXPECT_EQ(r.status, BatvStatus::malformed) << a;
    EXPECT_EQ(r.address, a);
    EXPECT_FALSE(batv_is_tagged(a)) << a;
  }
  // Over 512 bytes: malformed, tagged or not.
  std::string long_local(520, 'a');
  EXPECT_EQ(batv_verify(long_local + "@example.org", {kKey1}, clock.now(), kWeek).status,
            BatvStatus::malformed);
  std::string long_tagged = "prvs=0682658838=" + long_local + "@example.org";
  EXPECT_EQ(batv_verify(long_tagged, {kKey1}, clock.now(), kWeek).status, BatvStatus::malformed);
  EXPECT_FALSE(batv_is_tagged(long_tagged));
  EXPECT_EQ(batv_sign(long_local + "@example.org", {kKey1}, clock.now(), kWeek),
            long_local + "@example.org");
  // Signing never makes an address over 512 bytes: 496 + 16 bytes of tag is the most.
  const std::string at_limit = address_of_size(496, 'c');
  ASSERT_EQ(at_limit.size(), 496u);
  std::string signed_at_limit = batv_sign(at_limit, {kKey1}, clock.now(), kWeek);
  EXPECT_EQ(signed_at_limit.size(), 512u);
  EXPECT_EQ(batv_verify(signed_at_limit, {kKey1}, clock.now(), kWeek).status, BatvStatus::valid);
  EXPECT_EQ(batv_sign("c" + at_limit, {kKey1}, clock.now(), kWeek), "c" + at_limit);
  // Exactly 512 bytes is fine.
  const std::string fits = address_of_size(512, 'b');
  ASSERT_EQ(fits.size(), 512u);
  EXPECT_EQ(batv_verify(fits, {kKey1}, clock.now(), kWeek).status, BatvStatus::untagged);
  // A tag with '=' and '@' inside the local part keeps them (the last '@' splits).
  std::string odd = batv_sign("a=b@c@example.org", {kKey1}, clock.now(), kWeek);
  BatvResult r = batv_verify(odd, {kKey1}, clock.now(), kWeek);
  EXPECT_EQ(r.status, BatvStatus::valid);
  EXPECT_EQ(r.address, "a=b@c@example.org");
  // No keys at all: a tag cannot be verified.
  EXPECT_EQ(batv_verify("prvs=0682658838=alice@example.org", {}, clock.now(), kWeek).status,
            BatvStatus::bad_signature);
}

TEST(Batv, StatusNames) {
  EXPECT_EQ(to_string(BatvStatus::bad_signature), "bad_signature");
  EXPECT_EQ(to_string(BatvStatus::expired), "expired");
}

}  // namespace
