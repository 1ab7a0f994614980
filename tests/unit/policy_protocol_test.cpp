// Postfix policy protocol: parser limits and edge cases, request -> Transaction mapping, and
// the reply table of DESIGN §3.5 (policy column).
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "server/policy_protocol.h"

namespace spamward {
namespace {

// A request as Postfix 3.8 sends it at RCPT (all 31 attributes), without the final empty line.
const std::string kFullRequestLines =
    "request=smtpd_access_policy\n"
    "protocol_state=RCPT\n"
    "protocol_name=ESMTP\n"
    "helo_name=mail.example.net\n"
    "queue_id=8045F2AB23\n"
    "sender=alice@example.net\n"
    "recipient=bob@example.org\n"
    "recipient_count=0\n"
    "client_address=192.0.2.10\n"
    "client_name=mail.example.net\n"
    "reverse_client_name=mail.example.net\n"
    "instance=123.456.7\n"
    "sasl_method=plain\n"
    "sasl_username=alice\n"
    "sasl_sender=\n"
    "size=12345\n"
    "ccert_subject=solaris9.porcupine.org\n"
    "ccert_issuer=Wietse+20Venema\n"
    "ccert_fingerprint=C2:9D:F4:87:71:73:73:D9:18:E7:C2:F3:C1:DA:6E:04\n"
    "ccert_pubkey_fingerprint=68:B3:29:DA:98:93:E3:40:99:C7:D8:AD:5C:B9:C9:40\n"
    "encryption_protocol=TLSv1.3\n"
    "encryption_cipher=TLS_AES_256_GCM_SHA384\n"
    "encryption_keysize=256\n"
    "etrn_domain=\n"
    "stress=\n"
    "client_port=41234\n"
    "policy_context=submission\n"
    "server_address=198.51.100.1\n"
    "server_port=25\n"
    "compatibility_level=3.6\n"
    "mail_version=3.7.11\n";
const std::string kFullRequest = kFullRequestLines + "\n";

// Feeds everything (restarting after each complete request) and returns the requests seen and
// the final status.
struct FeedResult {
  std::vector<PolicyRequest> requests;
  PolicyParser::Status status = PolicyParser::Status::incomplete;
  PolicyError error = PolicyError::none;
  size_t consumed = 0;
};

FeedResult feed_all(std::string_view bytes, PolicyParserLimits limits = {}, size_t chunk = 0) {
  PolicyParser parser(limits);
  FeedResult r;
  size_t pos = 0;
  while (pos < bytes.size()) {
    size_t n = chunk ? std::min(chunk, bytes.size() - pos) : bytes.size() - pos;
    std::string_view piece = bytes.substr(pos, n);
    size_t used = parser.feed(piece);
    pos += used;
    if (parser.status() == PolicyParser::Status::complete) {
      r.requests.push_back(parser.request());
      parser.next();
    } else if (parser.status() == PolicyParser::Status::error) {
      break;
    } else {
      EXPECT_EQ(used, piece.size()) << "an incomplete parse must take every byte";
    }
  }
  r.status = parser.status();
  r.error = parser.error();
  r.consumed = pos;
  return r;
}

TEST(PolicyParser, ParsesAFullPostfixRequest) {
  auto r = feed_all(kFullRequest);
  ASSERT_EQ(r.requests.size(), 1u);
  EXPECT_EQ(r.status, PolicyParser::Status::incomplete);
  const auto& req = r.requests[0];
  EXPECT_EQ(req.size(), 31u);
  EXPECT_EQ(req.value("request"), "smtpd_access_policy");
  EXPECT_EQ(req.value("client_address"), "192.0.2.10");
  EXPECT_EQ(req.value("sasl_sender"), "");
  EXPECT_TRUE(req.get("sasl_sender").has_value());
  EXPECT_FALSE(req.get("no_such_attribute").has_value());
  EXPECT_EQ(req.value("ccert_fingerprint"), "C2:9D:F4:87:71:73:73:D9:18:E7:C2:F3:C1:DA:6E:04");
}

TEST(PolicyParser, SplitAcrossReadsAtEveryByte) {
  for (size_t chunk : {1u, 2u, 3u, 7u, 64u, 500u}) {
    auto r = feed_all(kFullRequest + kFullRequest, {}, chunk);
    ASSERT_EQ(r.requests.size(), 2u) << "chunk " << chunk;
    for (const auto& req : r.requests) {
      EXPECT_EQ(req.size(), 31u);
      EXPECT_EQ(req.value("mail_version"), "3.7.11");
      EXPECT_EQ(req.value("helo_name"), "mail.example.net");
    }
  }
}

TEST(PolicyParser, StopsAfterEachRequestLeavingPipelinedBytes) {
  PolicyParser parser;
  std::string two = "a=1\n\nb=2\n\n";
  size_t used = parser.feed(two);
  EXPECT_EQ(used, 5u);
  ASSERT_EQ(parser.status(), PolicyParser::Status::complete);
  EXPECT_EQ(parser.request().value("a"), "1");
  EXPECT_EQ(parser.feed("x"), 0u) << "no bytes taken until next()";
  parser.next();
  EXPECT_FALSE(parser.started());
  EXPECT_EQ(parser.feed(std::string_view(two).substr(used)), 5u);
  ASSERT_EQ(parser.status(), PolicyParser::Status::complete);
  EXPECT_EQ(parser.request().value("b"), "2");
  EXPECT_FALSE(parser.request().get("a").has_value()) << "requests do not leak into each other";
}

TEST(PolicyParser, ToleratesCrLf) {
  std::string crlf;
  for (char c : kFullRequest) {
    if (c == '\n') crlf += '\r';
    crlf += c;
  }
  auto r = feed_all(crlf, {}, 5);
  ASSERT_EQ(r.requests.size(), 1u);
  EXPECT_EQ(r.requests[0].value("protocol_state"), "RCPT") << "no trailing \\r in values";
  EXPECT_EQ(r.requests[0].value("mail_version"), "3.7.11");
}

TEST(PolicyParser, ValueMayContainEqualsAndCarriageReturnInside) {
  auto r = feed_all("ccert_subject=CN=a=b\nx=1\r2\n\n");
  ASSERT_EQ(r.requests.size(), 1u);
  EXPECT_EQ(r.requests[0].value("ccert_subject"), "CN=a=b");
  EXPECT_EQ(r.requests[0].value("x"), "1\r2");
}

TEST(PolicyParser, LastValueWins) {
  auto r = feed_all("sender=a@x\nsender=b@y\n\n");
  ASSERT_EQ(r.requests.size(), 1u);
  EXPECT_EQ(r.requests[0].value("sender"), "b@y");
  EXPECT_EQ(r.requests[0].size(), 2u);
  EXPECT_EQ(from_policy_request(r.requests[0]).sender, "b@y");
}

TEST(PolicyParser, StartedTracksTheFirstByte) {
  PolicyParser parser;
  EXPECT_FALSE(parser.started());
  parser.feed("r");
  EXPECT_TRUE(parser.started());
  EXPECT_EQ(parser.status(), PolicyParser::Status::incomplete);
}

TEST(PolicyParser, LineLengthLimitIsExact) {
  PolicyParserLimits limits;
  limits.max_line = 16;
  std::string ok = "n=" + std::string(14, 'v');  // 16 bytes
  EXPECT_EQ(feed_all(ok + "\n\n", limits).requests.size(), 1u);
  EXPECT_EQ(feed_all(ok + "\r\n\r\n", limits).requests.size(), 1u) << "\\r is not counted";
  auto r = feed_all(ok + "v\n\n", limits);
  EXPECT_EQ(r.status, PolicyParser::Status::error);
  EXPECT_EQ(r.error, PolicyError::line_too_long);
  EXPECT_TRUE(r.requests.empty());
}

TEST(PolicyParser, OneMebibyteLineFailsEarly) {
  std::string line(1 << 20, 'a');
  PolicyParser parser;
  size_t used = parser.feed(line);
  EXPECT_EQ(parser.status(), PolicyParser::Status::error);
  EXPECT_EQ(parser.error(), PolicyError::line_too_long);
  EXPECT_LE(used, 2048u + 2u) << "the parser must not buffer past the limit";
  // Fed in small pieces, the same.
  auto r = feed_all(line, {}, 100);
  EXPECT_EQ(r.error, PolicyError::line_too_long);
  EXPECT_LE(r.consumed, 2048u + 100u);
}

TEST(PolicyParser, ErrorAndPositionDoNotDependOnReadSizes) {
  PolicyParserLimits limits;
  limits.max_line = 8;
  limits.max_request_bytes = 30;
  // The line limit is hit (byte 10) before the NUL (byte 12) and before the request limit.
  std::string line_first = std::string("a=34567890x") + '\0' + "yz\n\n";
  // The request limit is hit (the 31st byte) before anything else.
  std::string big_first = "a=1\nb=2\nc=3\nd=4\ne=5\nf=6\ng=7\nh=8\n\n";
  for (size_t chunk : {0u, 1u, 2u, 5u}) {
    auto r = feed_all(line_first, limits, chunk);
    EXPECT_EQ(r.error, PolicyError::line_too_long) << chunk;
    EXPECT_EQ(r.consumed, 10u) << chunk;
    auto b = feed_all(big_first, limits, chunk);
    EXPECT_EQ(b.error, PolicyError::request_too_big) << chunk;
    EXPECT_EQ(b.consumed, 31u) << chunk;
  }
}

TEST(PolicyParser, AttributeCountLimitIsExact) {
  PolicyParserLimits limits;
  limits.max_attributes = 64;
  std::string req;
  for (int i = 0; i < 64; ++i) req += "a" + std::to_string(i) + "=v\n";
  EXPECT_EQ(feed_all(req + "\n", limits).requests.size(), 1u);
  auto r = feed_all(req + "x=y\n\n", limits);
  EXPECT_EQ(r.error, PolicyError::too_many_attributes);
}

TEST(PolicyParser, TenThousandAttributesAreRefused) {
  std::string req;
  for (int i = 0; i < 10000; ++i) req += "a=b\n";
  auto r = feed_all(req + "\n");
  EXPECT_EQ(r.status, PolicyParser::Status::error);
  EXPECT_EQ(r.error, PolicyError::too_many_attributes);
  EXPECT_LE(r.consumed, 65u * 4u);
}

TEST(PolicyParser, RequestSizeLimitIsExact) {
  PolicyParserLimits limits;
  limits.max_request_bytes = 100;
  limits.max_attributes = 1000;
  // 9 lines of 10 bytes + "n=12345678\n"... build exactly 100 bytes including the final "\n".
  std::string req;
  for (int i = 0; i < 9; ++i) req += "n=3456789\n";  // 10 bytes each
  req += "n=345678\n";                               // 9 bytes
  ASSERT_EQ(req.size() + 1, 100u);
  EXPECT_EQ(feed_all(req + "\n", limits).requests.size(), 1u);
  auto r = feed_all("n=3" + req + "\n", limits);
  EXPECT_EQ(r.error, PolicyError::request_too_big);
  // The limit is per request, not per connection.
  auto two = feed_all(req + "\n" + req + "\n", limits);
  EXPECT_EQ(two.requests.size(), 2u);
  EXPECT_EQ(two.status, PolicyParser::Status::incomplete);
}

TEST(PolicyParser, MalformedLines) {
  EXPECT_EQ(feed_all("no_equals\n\n").error, PolicyError::missing_equals);
  EXPECT_EQ(feed_all("=value\n\n").error, PolicyError::empty_name);
  EXPECT_EQ(feed_all("\n").error, PolicyError::empty_request);
  EXPECT_EQ(feed_all("\r\n").error, PolicyError::empty_request);
  EXPECT_EQ(feed_all(std::string("a=b\0c\n\n", 8)).error, PolicyError::nul_byte);
  EXPECT_EQ(feed_all(std::string("\0", 1)).error, PolicyError::nul_byte);
  // An error is sticky until next().
  PolicyParser parser;
  parser.feed("junk\n");
  ASSERT_EQ(parser.status(), PolicyParser::Status::error);
  EXPECT_EQ(parser.feed("a=b\n\n"), 0u);
  parser.next();
  parser.feed("a=b\n\n");
  EXPECT_EQ(parser.status(), PolicyParser::Status::complete);
}

TEST(PolicyParser, BinaryGarbageNeverCrashesAndStaysBounded) {
  uint32_t x = 12345;
  for (int round = 0; round < 200; ++round) {
    std::string junk;
    for (int i = 0; i < 5000; ++i) {
      x = x * 1664525u + 1013904223u;
      junk += static_cast<char>(x >> 24);
    }
    PolicyParser parser;
    size_t used = parser.feed(junk);
    EXPECT_LE(used, junk.size());
    if (parser.status() == PolicyParser::Status::complete) {
      EXPECT_GT(parser.request().size(), 0u);
    }
  }
}

TEST(PolicyParser, ErrorNamesAreStable) {
  EXPECT_EQ(to_string(PolicyError::line_too_long), "line_too_long");
  EXPECT_EQ(to_string(PolicyError::nul_byte), "nul_byte");
  PolicyParserLimits limits;
  EXPECT_EQ(describe(PolicyError::line_too_long, limits), "line longer than 2048 bytes");
  EXPECT_EQ(describe(PolicyError::missing_equals, limits), "line without '='");
}

// ---------------------------------------------------------------------------------------------

TEST(PolicyRequestMapping, AllPostfixAttributesAreKnownAndMapped) {
  std::set<std::string_view> names(kPolicyAttributes.begin(), kPolicyAttributes.end());
  EXPECT_EQ(names.size(), kPolicyAttributes.size()) << "no duplicates";
  EXPECT_EQ(names.size(), 31u);
  auto r = feed_all(kFullRequest);
  ASSERT_EQ(r.requests.size(), 1u);
  for (size_t i = 0; i < r.requests[0].size(); ++i) {
    EXPECT_TRUE(names.count(r.requests[0].name_at(i))) << r.requests[0].name_at(i);
  }

  Transaction tx = from_policy_request(r.requests[0]);
  EXPECT_EQ(tx.stage, Stage::rcpt);
  EXPECT_EQ(tx.protocol, "ESMTP");
  EXPECT_EQ(tx.helo, "mail.example.net");
  EXPECT_EQ(tx.queue_id, "8045F2AB23");
  EXPECT_EQ(tx.instance, "123.456.7");
  EXPECT_EQ(tx.id, "8045F2AB23");
  EXPECT_EQ(tx.sender, "alice@example.net");
  EXPECT_EQ(tx.recipient, "bob@example.org");
  EXPECT_TRUE(tx.recipients.empty()) << "at RCPT the recipient is being decided, not accepted";
  EXPECT_EQ(tx.recipient_count, 0);
  ASSERT_TRUE(tx.client_address.has_value());
  EXPECT_EQ(tx.client_address->to_string(), "192.0.2.10");
  EXPECT_EQ(tx.client_name, "mail.example.net");
  EXPECT_EQ(tx.reverse_client_name, "mail.example.net");
  EXPECT_EQ(tx.sasl_username, "alice");
  EXPECT_TRUE(tx.authenticated());
  EXPECT_EQ(tx.size, 12345);
  ASSERT_TRUE(tx.server_address.has_value());
  EXPECT_EQ(tx.server_address->to_string(), "198.51.100.1");
  EXPECT_EQ(tx.server_port, 25);
}

TEST(PolicyRequestMapping, IdFallsBackToInstance) {
  auto tx = from_policy_request(PolicyRequest::from_lines("queue_id=\ninstance=abc.1\n"));
  EXPECT_EQ(tx.id, "abc.1");
  auto none = from_policy_request(PolicyRequest::from_lines("protocol_state=CONNECT\n"));
  EXPECT_EQ(none.id, "");
}

TEST(PolicyRequestMapping, UnknownAttributesAreIgnored) {
  auto base = from_policy_request(PolicyRequest::from_lines(kFullRequestLines));
  auto extra = from_policy_request(PolicyRequest::from_lines(
      "future_attribute=1\n" + kFullRequestLines + "another_new_one=x=y\n"));
  EXPECT_EQ(extra.id, base.id);
  EXPECT_EQ(extra.sender, base.sender);
  EXPECT_EQ(extra.client_address, base.client_address);
  EXPECT_EQ(extra.stage, base.stage);
}

TEST(PolicyRequestMapping, Stages) {
  struct Case {
    const char* state;
    Stage stage;
  };
  for (auto c :
       {Case{"CONNECT", Stage::connect}, Case{"EHLO", Stage::helo}, Case{"HELO", Stage::helo},
        Case{"MAIL", Stage::mail}, Case{"RCPT", Stage::rcpt}, Case{"DATA", Stage::data},
        Case{"END-OF-MESSAGE", Stage::eom}, Case{"VRFY", Stage::rcpt}, Case{"ETRN", Stage::connect},
        Case{"rcpt", Stage::rcpt}, Case{"End-Of-Message", Stage::eom}}) {
    auto tx = from_policy_request(
        PolicyRequest::from_lines(std::string("protocol_state=") + c.state + "\n"));
    EXPECT_EQ(tx.stage, c.stage) << c.state;
    EXPECT_EQ(parse_protocol_state(c.state), c.stage) << c.state;
  }
  EXPECT_FALSE(parse_protocol_state("BDAT").has_value());
  EXPECT_EQ(from_policy_request(PolicyRequest::from_lines("protocol_state=BDAT\n")).stage,
            Stage::connect);
  EXPECT_EQ(from_policy_request(PolicyRequest::from_lines("a=b\n")).stage, Stage::connect);
}

TEST(PolicyRequestMapping, FieldEdgeCases) {
  auto tx = from_policy_request(PolicyRequest::from_lines(
      "protocol_state=DATA\nsender=<>\nrecipient=one@example.org\nrecipient_count=1\n"
      "client_address=2001:db8::1\nclient_name=unknown\nreverse_client_name=unknown\n"
      "size=lots\nserver_address=not-an-ip\nserver_port=99999\n"));
  EXPECT_EQ(tx.sender, "") << "a bounce";
  EXPECT_EQ(tx.recipients, std::vector<std::string>{"one@example.org"});
  ASSERT_TRUE(tx.client_address.has_value());
  EXPECT_TRUE(tx.client_address->is_v6());
  EXPECT_EQ(tx.client_name, "unknown") << "kept as given; checks interpret it";
  EXPECT_EQ(tx.reverse_client_name, "unknown");
  EXPECT_EQ(tx.size, 0);
  EXPECT_FALSE(tx.server_address.has_value());
  EXPECT_EQ(tx.server_port, 0);

  auto bad = from_policy_request(PolicyRequest::from_lines("client_address=999.1.1.1\n"));
  EXPECT_FALSE(bad.client_address.has_value());
  auto wrapped = from_policy_request(PolicyRequest::from_lines("sender=<a@b.example>\n"));
  EXPECT_EQ(wrapped.sender, "a@b.example");
  auto mapped = from_policy_request(PolicyRequest::from_lines("client_address=::ffff:192.0.2.7\n"));
  ASSERT_TRUE(mapped.client_address.has_value());
  EXPECT_TRUE(mapped.client_address->is_v4());
}

// ---------------------------------------------------------------------------------------------

Verdict verdict(Action applied) {
  Verdict v;
  v.action = applied;
  v.applied = applied;
  v.reason = "score 20.0, families dnsbl+rfc";
  return v;
}

const Stage kAllStages[] = {Stage::connect, Stage::helo, Stage::mail,
                            Stage::rcpt,    Stage::data, Stage::eom};

TEST(PolicyReply, AcceptIsDunnoEverywhere) {
  for (Stage s : kAllStages) {
    EXPECT_EQ(format_policy_reply(verdict(Action::accept), s), "action=DUNNO\n\n");
  }
}

TEST(PolicyReply, TagPrependsOnlyForWholeMessageStages) {
  for (Stage s : kAllStages) {
    std::string want = s == Stage::data || s == Stage::eom ? "action=PREPEND X-Spam-Flag: YES\n\n"
                                                           : "action=DUNNO\n\n";
    EXPECT_EQ(format_policy_reply(verdict(Action::tag), s), want) << to_string(s);
  }
}

TEST(PolicyReply, RefusalsAtEveryStage) {
  for (Stage s : kAllStages) {
    EXPECT_EQ(
        format_policy_reply(verdict(Action::greylist), s).rfind("action=DEFER_IF_PERMIT 4.7.1 ", 0),
        0u);
    EXPECT_EQ(format_policy_reply(verdict(Action::tempfail), s).rfind("action=450 4.7.1 ", 0), 0u);
    EXPECT_EQ(format_policy_reply(verdict(Action::reject), s).rfind("action=REJECT 5.7.1 ", 0), 0u);
  }
  EXPECT_EQ(format_policy_reply(verdict(Action::reject), Stage::rcpt),
            "action=REJECT 5.7.1 Message refused by spamward: score 20.0, families dnsbl+rfc\n\n");
}

TEST(PolicyReply, BanAndUnknownRecipientCodes) {
  Verdict ban = verdict(Action::reject);
  ban.standalone = Standalone::ban;
  ban.permanent_ban = true;
  ban.reply_text = "Banned for repeated spam";
  EXPECT_EQ(format_policy_reply(ban, Stage::rcpt), "action=554 5.7.1 Banned for repeated spam\n\n");

  Verdict temp_ban = verdict(Action::tempfail);
  temp_ban.standalone = Standalone::ban;
  temp_ban.reply_text = "Try later";
  EXPECT_EQ(format_policy_reply(temp_ban, Stage::connect), "action=450 4.7.1 Try later\n\n");

  Verdict unknown = verdict(Action::reject);
  unknown.standalone = Standalone::unknown_recipient;
  unknown.reply_text = "No such user";
  EXPECT_EQ(format_policy_reply(unknown, Stage::rcpt), "action=550 5.1.1 No such user\n\n");

  Verdict deny = verdict(Action::reject);
  deny.standalone = Standalone::denylist;
  EXPECT_EQ(format_policy_reply(deny, Stage::rcpt).rfind("action=REJECT 5.7.1 ", 0), 0u);
}

TEST(PolicyReply, DryRunUsesApplied) {
  Verdict v;
  v.action = Action::reject;
  v.applied = Action::accept;
  v.dry_run = true;
  v.reason = "would reject";
  EXPECT_EQ(format_policy_reply(v, Stage::rcpt), "action=DUNNO\n\n");
  v.action = Action::greylist;
  EXPECT_EQ(format_policy_reply(v, Stage::rcpt), "action=DUNNO\n\n");
}

TEST(PolicyReply, DefaultTextsWhenNoReplyText) {
  Verdict g;
  g.applied = g.action = Action::greylist;
  std::string r = format_policy_reply(g, Stage::rcpt);
  EXPECT_EQ(r, "action=DEFER_IF_PERMIT 4.7.1 Greylisted by spamward, please try again later\n\n");
  Verdict t;
  t.applied = t.action = Action::tempfail;
  EXPECT_NE(format_policy_reply(t, Stage::rcpt).find("spamward"), std::string::npos);
}

TEST(PolicyReply, TextIsSanitisedAndBounded) {
  Verdict v = verdict(Action::reject);
  v.reply_text = "bad\r\naction=DUNNO\n\nmore\ttext";
  std::string r = format_policy_reply(v, Stage::rcpt);
  EXPECT_EQ(r, "action=REJECT 5.7.1 bad  action=DUNNO  more text\n\n");

  v.reply_text = std::string(5000, 'x');
  r = format_policy_reply(v, Stage::rcpt);
  ASSERT_GE(r.size(), 2u);
  EXPECT_EQ(r.substr(r.size() - 2), "\n\n");
  EXPECT_EQ(r.find('\n'), r.size() - 2) << "one line";
  EXPECT_EQ(r.size() - 2, kMaxPolicyReplyLine);

  // A cut never splits a UTF-8 character: "é" is two bytes.
  v.reply_text.clear();
  for (int i = 0; i < 400; ++i) v.reply_text += "\xC3\xA9";
  r = format_policy_reply(v, Stage::rcpt);
  std::string line = r.substr(0, r.size() - 2);
  EXPECT_LE(line.size(), kMaxPolicyReplyLine);
  EXPECT_EQ((line.size() - std::string("action=REJECT 5.7.1 ").size()) % 2, 0u);
  EXPECT_NE(static_cast<unsigned char>(line.back()), 0xC3);

  // Also for a long default text built from the reason.
  Verdict d = verdict(Action::tempfail);
  d.reason = std::string(3000, 'r') + "\n";
  r = format_policy_reply(d, Stage::rcpt);
  EXPECT_EQ(r.find('\n'), r.size() - 2);
  EXPECT_LE(r.size() - 2, kMaxPolicyReplyLine);
}

TEST(PolicyReply, AppendReusesTheBuffer) {
  std::string out = "action=DUNNO\n\n";
  append_policy_reply(verdict(Action::tag), Stage::data, out);
  EXPECT_EQ(out, "action=DUNNO\n\naction=PREPEND X-Spam-Flag: YES\n\n");
}

}  // namespace
}  // namespace spamward
