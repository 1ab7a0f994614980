// normalize_sender (mail/address.h): the sender part of greylist keys.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "mail/address.h"

using namespace spamward;

namespace {

TEST(NormalizeSender, LowerCasesAPlainAddress) {
  EXPECT_EQ(normalize_sender("Alice.Smith@Example.ORG"), "alice.smith@example.org");
  EXPECT_EQ(normalize_sender("<Bob@Example.org>"), "bob@example.org");  // brackets dropped
  EXPECT_EQ(normalize_sender("bob@example.org."), "bob@example.org");   // root dot dropped
}

TEST(NormalizeSender, BouncesAreAngleBrackets) {
  EXPECT_EQ(normalize_sender(""), "<>");
  EXPECT_EQ(normalize_sender("<>"), "<>");
}

TEST(NormalizeSender, StripsBatvTags) {
  EXPECT_EQ(normalize_sender("prvs=1234abcdef=bob@example.org"), "bob@example.org");
  EXPECT_EQ(normalize_sender("PRVS=0ABC123456=Bob@Example.org"), "bob@example.org");
  // The older form, tag last.
  EXPECT_EQ(normalize_sender("prvs=bob/1234abcdef@example.org"), "bob@example.org");
  EXPECT_EQ(normalize_sender("btv1==0f3a9c21b7e==bob@example.org"), "bob@example.org");
  EXPECT_EQ(normalize_sender("msprvs1=17811abcdef01=bounces-x@example.org"),
            "bounces-x@example.org");
  // Two signatures of one sender on different days give one key.
  EXPECT_EQ(normalize_sender("prvs=4012abcdef=bob@example.org"),
            normalize_sender("prvs=4013fedcba=bob@example.org"));
}

TEST(NormalizeSender, LeavesWhatOnlyLooksLikeBatvAlone) {
  // "smith" is no tag: the '=' is part of the local part. Digits still fold.
  EXPECT_EQ(normalize_sender("prvs=bob=smith@example.org"), "prvs=bob=smith@example.org");
  EXPECT_EQ(normalize_sender("prvs=@example.org"), "prvs=@example.org");
  EXPECT_EQ(normalize_sender("btv1==@example.org"), "btv#==@example.org");
}

TEST(NormalizeSender, DecodesSrs0) {
  EXPECT_EQ(normalize_sender("SRS0=HHH=TT=orig.example=alice@forwarder.example"),
            "alice@orig.example");
  EXPECT_EQ(normalize_sender("srs0=x9Zq=4K=Orig.Example=Alice@fwd.example"), "alice@orig.example");
  // libsrs2 also writes '+' or '-' after SRS0.
  EXPECT_EQ(normalize_sender("SRS0+abcd=4k=orig.example=alice@fwd.example"), "alice@orig.example");
  // An original local part may contain '='.
  EXPECT_EQ(normalize_sender("SRS0=abcd=4k=orig.example=a=b@fwd.example"), "a=b@orig.example");
}

TEST(NormalizeSender, DecodesSrs1) {
  EXPECT_EQ(normalize_sender("SRS1=HHH=fwd1.example==HHH=TT=orig.example=alice@fwd2.example"),
            "alice@orig.example");
}

TEST(NormalizeSender, LeavesMalformedSrsAlone) {
  EXPECT_EQ(normalize_sender("SRS0=abcd@fwd.example"), "srs#=abcd@fwd.example");
  EXPECT_EQ(normalize_sender("SRS0=abcd=4k=orig.example=@fwd.example"),
            "srs#=abcd=#k=orig.example=@fwd.example");
  EXPECT_EQ(normalize_sender("SRS1=abcd=fwd1.example@fwd2.example"),
            "srs#=abcd=fwd#.example@fwd2.example");
}

TEST(NormalizeSender, StripsBatvInsideSrsAndAroundIt) {
  // A BATV-signing sender whose mail a forwarder rewrote with SRS.
  EXPECT_EQ(normalize_sender("SRS0=abcd=4k=orig.example=prvs=1234abcdef=alice@fwd.example"),
            "alice@orig.example");
  // A forwarder that signs its own SRS address.
  EXPECT_EQ(normalize_sender("prvs=1234abcdef=SRS0=abcd=4k=orig.example=alice@fwd.example"),
            "alice@orig.example");
}

TEST(NormalizeSender, StripsPlusExtensions) {
  EXPECT_EQ(normalize_sender("bob+list@example.org"), "bob@example.org");
  EXPECT_EQ(normalize_sender("bob+list-42@example.org"), "bob@example.org");
  EXPECT_EQ(normalize_sender("bob+a+b@example.org"), "bob@example.org");
  // A local part that starts with '+' would become empty: it is kept.
  EXPECT_EQ(normalize_sender("+bob@example.org"), "+bob@example.org");
}

TEST(NormalizeSender, FoldsVerpNumbers) {
  EXPECT_EQ(normalize_sender("bounce-12345-678@example.org"), "bounce-#-#@example.org");
  EXPECT_EQ(normalize_sender("bounce-99-1@example.org"),
            normalize_sender("bounce-12345-678@example.org"));
  EXPECT_EQ(normalize_sender("42@example.org"), "#@example.org");
  // The domain keeps its digits: it names the sender, not the message.
  EXPECT_EQ(normalize_sender("a1@mx2.example.org"), "a#@mx2.example.org");
}

TEST(NormalizeSender, TreatsASenderWithoutAtLikeALocalPart) {
  EXPECT_EQ(normalize_sender("MAILER-DAEMON"), "mailer-daemon");
  EXPECT_EQ(normalize_sender("Bob+x-77"), "bob");
  EXPECT_EQ(normalize_sender("prvs=1234abcdef=bob"), "bob");
  EXPECT_EQ(normalize_sender("user123"), "user#");
}

TEST(NormalizeSender, KeepsAnEmptyLocalPart) {
  EXPECT_EQ(normalize_sender("@Example.org"), "@example.org");
  EXPECT_EQ(normalize_sender("a@"), "a@");
}

TEST(NormalizeSender, UsesTheLastAt) {
  EXPECT_EQ(normalize_sender("\"a@b\"@Example.org"), "\"a@b\"@example.org");
}

TEST(NormalizeSender, HostileInputIsLinearAndBounded) {
  // 1 MiB of each shape an attacker might try; each must keep its shape. Linear: a quadratic
  // pass over 1 MiB would be ~10^12 steps and never finish within ctest's timeout (no timing
  // is asserted here: a loaded CI machine must not fail it).
  const size_t n = size_t{1} << 20;
  std::string digits(n, '7');
  EXPECT_EQ(normalize_sender(digits + "@example.org"), "#@example.org");
  std::string equals = "prvs=" + std::string(n, '=') + "@example.org";
  EXPECT_EQ(normalize_sender(equals), equals);
  std::string srs = "SRS1=" + std::string(n, '=') + "@example.org";
  EXPECT_EQ(normalize_sender(srs).size(), srs.size());
  std::string ats(n, '@');
  EXPECT_EQ(normalize_sender(ats), ats);
  std::string pluses = "a" + std::string(n, '+');
  EXPECT_EQ(normalize_sender(pluses), "a");
}

TEST(NormalizeSender, KeepsBytesOutsideAscii) {
  EXPECT_EQ(normalize_sender("J\xC3\x9CRGEN@Example.org"), "j\xC3\x9Crgen@example.org");
  EXPECT_EQ(normalize_sender(std::string("a\0b@x", 5)), std::string("a\0b@x", 5));
}

}  // namespace
