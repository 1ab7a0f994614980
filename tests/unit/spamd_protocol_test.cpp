// spamd protocol codec: request parsing with its limits (any split, CRLF or LF), and the
// replies of DESIGN §3.5 (spamd column) in SpamAssassin spamd's exact shapes.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "server/spamd_protocol.h"

namespace spamward {
namespace {

using namespace std::string_literals;

// Feeds `wire` in one piece (and EOF when asked); returns the parser.
SpamdParser parse(std::string_view wire, bool eof = false, SpamdParserLimits limits = {}) {
  SpamdParser p(limits);
  p.feed(wire);
  if (eof) p.feed_eof();
  return p;
}

std::string request(std::string_view command, std::string_view message,
                    std::string_view extra_headers = "", std::string_view version = "1.5") {
  return std::string(command) + " SPAMC/" + std::string(version) +
         "\r\nContent-length: " + std::to_string(message.size()) + "\r\n" +
         std::string(extra_headers) + "\r\n" + std::string(message);
}

Verdict verdict(Action action, double score, std::vector<Symbol> symbols = {}) {
  Verdict v;
  v.action = v.applied = action;
  v.score = score;
  v.symbols = std::move(symbols);
  v.reason = "test reason";
  return v;
}

SpamdRequest request_of(SpamdCommand c, std::string message, int major = 1, int minor = 5) {
  SpamdRequest r;
  r.command = c;
  r.major = major;
  r.minor = minor;
  r.message_size = message.size();
  r.message = std::move(message);
  return r;
}

// Splits a reply into its header lines (without CRLF) and its body.
struct Reply {
  std::vector<std::string> lines;
  std::string body;
};
Reply split(const std::string& wire) {
  Reply r;
  size_t end = wire.find("\r\n\r\n");
  EXPECT_NE(end, std::string::npos) << wire;
  if (end == std::string::npos) return r;
  std::string head = wire.substr(0, end);
  size_t pos = 0;
  while (pos <= head.size()) {
    size_t nl = head.find("\r\n", pos);
    if (nl == std::string::npos) nl = head.size();
    r.lines.push_back(head.substr(pos, nl - pos));
    pos = nl + 2;
  }
  r.body = wire.substr(end + 4);
  return r;
}

const std::string kMessage =
    "Received: from mx.example.net by mail.example.org; Mon, 1 Jan 2024 10:00:00 +0000\r\n"
    "From: Alice <alice@example.net>\r\n"
    "X-Spam-Flag: YES\r\n"
    "To: bob@example.org\r\n"
    "X-Spam-Status: No, score=-100\r\n"
    "\tfolded=continuation\r\n"
    "x-spamward-symbols: FORGED(0.00)\r\n"
    "X-Spammy-Looking: kept\r\n"
    "Subject: hello\r\n"
    "\r\n"
    "Body line 1\r\n"
    "X-Spam-Flag: YES (in the body: kept)\r\n";

// ---------------------------------------------------------------------------------------------
// Parsing

TEST(SpamdParser, ParsesACheckRequestAndLeavesTrailingBytes) {
  std::string wire = request("CHECK", "Subject: x\r\n\r\nhi\r\n", "User: nobody\r\n") + "EXTRA";
  SpamdParser p;
  size_t used = p.feed(wire);
  ASSERT_EQ(p.status(), SpamdParser::Status::complete) << p.error_text();
  EXPECT_EQ(used, wire.size() - 5);  // bytes after the Content-length body are not consumed
  const SpamdRequest& r = p.request();
  EXPECT_EQ(r.command, SpamdCommand::check);
  EXPECT_EQ(r.major, 1);
  EXPECT_EQ(r.minor, 5);
  EXPECT_EQ(r.user, "nobody");
  ASSERT_TRUE(r.content_length);
  EXPECT_EQ(*r.content_length, 18u);
  EXPECT_EQ(r.message, "Subject: x\r\n\r\nhi\r\n");
  EXPECT_FALSE(r.truncated());
}

TEST(SpamdParser, AnySplitGivesTheSameRequest) {
  const std::string wire = request("PROCESS", kMessage, "User: u\r\nX-Unknown: ignored\r\n");
  for (size_t chunk : {1u, 2u, 3u, 7u, 64u}) {
    SpamdParser p;
    for (size_t i = 0; i < wire.size(); i += chunk) {
      std::string_view piece = std::string_view(wire).substr(i, chunk);
      ASSERT_EQ(p.feed(piece), piece.size()) << "chunk " << chunk << " at " << i;
    }
    ASSERT_EQ(p.status(), SpamdParser::Status::complete) << chunk;
    EXPECT_EQ(p.request().command, SpamdCommand::process);
    EXPECT_EQ(p.request().message, kMessage);
    EXPECT_EQ(p.request().user, "u");
  }
}

TEST(SpamdParser, AcceptsBareLineFeedsAndAnyHeaderCase) {
  SpamdParser p = parse("SYMBOLS SPAMC/1.3\ncontent-LENGTH:   3\nuser:\tx y\n\nabc");
  ASSERT_EQ(p.status(), SpamdParser::Status::complete) << p.error_text();
  EXPECT_EQ(p.request().command, SpamdCommand::symbols);
  EXPECT_EQ(p.request().message, "abc");
  EXPECT_EQ(p.request().user, "x y");
}

TEST(SpamdParser, PingSkipAndOldProtocols) {
  // spamc 3.2+ sends an empty line after PING (protocol 1.5); before, the line alone.
  SpamdParser ping15 = parse("PING SPAMC/1.5\r\n");
  EXPECT_EQ(ping15.status(), SpamdParser::Status::incomplete);
  ping15.feed("\r\n");
  EXPECT_EQ(ping15.status(), SpamdParser::Status::complete);
  EXPECT_EQ(parse("PING SPAMC/1.2\r\n").status(), SpamdParser::Status::complete);
  SpamdParser skip = parse("SKIP SPAMC/1.5\r\n");
  ASSERT_EQ(skip.status(), SpamdParser::Status::complete);
  EXPECT_EQ(skip.request().command, SpamdCommand::skip);

  // Protocol 1.0: no headers, the message runs to the client's half-close.
  SpamdParser old = parse("PROCESS SPAMC/1.0\r\nSubject: x\r\n\r\nbody");
  EXPECT_EQ(old.status(), SpamdParser::Status::incomplete);
  old.feed_eof();
  ASSERT_EQ(old.status(), SpamdParser::Status::complete);
  EXPECT_EQ(old.request().message, "Subject: x\r\n\r\nbody");
  EXPECT_FALSE(old.request().content_length);
}

TEST(SpamdParser, WithoutContentLengthTheMessageEndsAtEof) {
  SpamdParser p = parse("CHECK SPAMC/1.5\r\n\r\nSubject: x\r\n\r\nbody");
  EXPECT_EQ(p.status(), SpamdParser::Status::incomplete);
  p.feed_eof();
  ASSERT_EQ(p.status(), SpamdParser::Status::complete);
  EXPECT_EQ(p.request().message, "Subject: x\r\n\r\nbody");
}

TEST(SpamdParser, ZeroContentLengthCompletesAtTheEmptyLine) {
  SpamdParser p = parse("CHECK SPAMC/1.5\r\nContent-length: 0\r\n\r\n");
  ASSERT_EQ(p.status(), SpamdParser::Status::complete);
  EXPECT_EQ(p.request().message, "");
}

TEST(SpamdParser, TellHeaders) {
  SpamdParser p = parse(request("TELL", "Subject: x\r\n\r\n",
                                "Message-class: spam\r\nSet: local\r\nRemove: remote\r\n"));
  ASSERT_EQ(p.status(), SpamdParser::Status::complete) << p.error_text();
  const SpamdRequest& r = p.request();
  EXPECT_EQ(r.command, SpamdCommand::tell);
  ASSERT_TRUE(r.message_class_spam);
  EXPECT_TRUE(*r.message_class_spam);
  EXPECT_TRUE(r.set_local);
  EXPECT_FALSE(r.set_remote);
  EXPECT_FALSE(r.remove_local);
  EXPECT_TRUE(r.remove_remote);
  SpamdParser ham = parse(request("TELL", "x", "Message-class: HAM\r\nSet: local,remote\r\n"));
  ASSERT_EQ(ham.status(), SpamdParser::Status::complete);
  EXPECT_FALSE(*ham.request().message_class_spam);
  EXPECT_TRUE(ham.request().set_remote);
}

TEST(SpamdParser, KeepsTheFirstMaxMessageBytesAndCountsTheRest) {
  SpamdParserLimits limits;
  limits.max_message_bytes = 10;
  std::string message(25, 'x');
  SpamdParser p = parse(request("CHECK", message), false, limits);
  ASSERT_EQ(p.status(), SpamdParser::Status::complete);
  EXPECT_EQ(p.request().message, std::string(10, 'x'));
  EXPECT_EQ(p.request().message_size, 25u);
  EXPECT_TRUE(p.request().truncated());
}

struct BadInput {
  const char* name;
  std::string wire;
  bool eof;
  SpamdError error;
};

TEST(SpamdParser, MalformedAndOverLimitInputFails) {
  const std::vector<BadInput> cases = {
      {"garbage", "GET / HTTP/1.1\r\n\r\n", false, SpamdError::unknown_command},
      {"no space", "HELLO\r\n", false, SpamdError::bad_request_line},
      {"lower-case command", "check SPAMC/1.5\r\n", false, SpamdError::unknown_command},
      {"no protocol", "CHECK SPAMD/1.5\r\n", false, SpamdError::bad_request_line},
      {"bad version", "CHECK SPAMC/one\r\n", false, SpamdError::bad_request_line},
      {"header without colon", "CHECK SPAMC/1.5\r\nContent-length 5\r\n", false,
       SpamdError::bad_header},
      {"non-numeric length", "CHECK SPAMC/1.5\r\nContent-length: 12a\r\n", false,
       SpamdError::bad_content_length},
      {"negative length", "CHECK SPAMC/1.5\r\nContent-length: -1\r\n", false,
       SpamdError::bad_content_length},
      {"huge length", "CHECK SPAMC/1.5\r\nContent-length: 99999999999999999999999\r\n", false,
       SpamdError::bad_content_length},
      {"length over the limit", "CHECK SPAMC/1.5\r\nContent-length: 268435457\r\n", false,
       SpamdError::content_length_too_big},
      {"user with control chars", "CHECK SPAMC/1.5\r\nUser: a\x01z\r\n", false,
       SpamdError::bad_user},
      {"message class", "TELL SPAMC/1.5\r\nMessage-class: eggs\r\n", false,
       SpamdError::bad_message_class},
      {"compression", "CHECK SPAMC/1.5\r\nCompress: zlib\r\n", false,
       SpamdError::compression_unsupported},
      {"NUL", "CHECK SPAMC/1.5\r\nUser: a\0b\r\n"s, false, SpamdError::nul_byte},
      {"short message", "CHECK SPAMC/1.5\r\nContent-length: 20\r\n\r\nonly seven", true,
       SpamdError::content_length_mismatch},
      {"eof in headers", "CHECK SPAMC/1.5\r\nUser: x\r\n", true, SpamdError::eof_in_headers},
      {"eof in request line", "CHE", true, SpamdError::eof_in_headers},
  };
  for (const auto& c : cases) {
    SpamdParser p = parse(c.wire, c.eof);
    EXPECT_EQ(p.status(), SpamdParser::Status::error) << c.name;
    EXPECT_EQ(p.error(), c.error) << c.name << ": " << p.error_text();
    EXPECT_FALSE(p.error_text().empty()) << c.name;
    EXPECT_EQ(p.feed("more"), 0u) << c.name;  // nothing more is consumed after an error
  }
  SpamdParser mismatch = parse("CHECK SPAMC/1.5\r\nContent-length: 20\r\n\r\nonly seven", true);
  EXPECT_EQ(mismatch.error_text(), "Content-Length mismatch: Expected 20 bytes, got 10 bytes");
}

TEST(SpamdParser, ALongLineFailsBeforeItIsBuffered) {
  SpamdParser p;
  std::string line = "CHECK SPAMC/1.5\r\nUser: " + std::string(1 << 20, 'a');
  size_t used = p.feed(line);
  EXPECT_EQ(p.status(), SpamdParser::Status::error);
  EXPECT_EQ(p.error(), SpamdError::line_too_long);
  EXPECT_EQ(used, 17u);  // the request line; the long line is not consumed
  // Exactly at the limit is fine.
  SpamdParserLimits limits;
  limits.max_line = 20;
  EXPECT_EQ(parse("CHECK SPAMC/1.5\r\nUser: 12345678901234\r\n\r\n", true, limits).status(),
            SpamdParser::Status::complete);
  EXPECT_EQ(parse("CHECK SPAMC/1.5\r\nUser: 123456789012345\r\n\r\n", false, limits).error(),
            SpamdError::line_too_long);
}

TEST(SpamdParser, TooManyHeaders) {
  std::string wire = "CHECK SPAMC/1.5\r\n";
  for (int i = 0; i < 65; ++i) wire += "X-H: 1\r\n";
  SpamdParser p = parse(wire);
  EXPECT_EQ(p.error(), SpamdError::too_many_headers);
  std::string ok = "CHECK SPAMC/1.5\r\n";
  for (int i = 0; i < 64; ++i) ok += "X-H: 1\r\n";
  EXPECT_EQ(parse(ok + "\r\n", true).status(), SpamdParser::Status::complete);
}

// ---------------------------------------------------------------------------------------------
// Verdict mapping and replies

TEST(SpamdReply, SpamIsTrueExactlyForTagTempfailAndReject) {
  struct Case {
    Action applied;
    bool spam;
  };
  for (Case c :
       {Case{Action::accept, false}, Case{Action::tag, true}, Case{Action::greylist, false},
        Case{Action::tempfail, true}, Case{Action::reject, true}}) {
    Verdict v = verdict(c.applied, 7.0);
    EXPECT_EQ(spamd_outcome(&v, 6.0).spam, c.spam) << to_string(c.applied);
    std::string wire = format_spamd_reply(request_of(SpamdCommand::check, "x"), &v, 6.0);
    EXPECT_EQ(wire, std::string("SPAMD/1.1 0 EX_OK\r\nSpam: ") + (c.spam ? "True" : "False") +
                        " ; 7.0 / 6.0\r\n\r\n");
  }
  // Dry run: what is applied counts, not what would have been done.
  Verdict dry = verdict(Action::reject, 20.0);
  dry.dry_run = true;
  dry.applied = Action::tag;
  EXPECT_TRUE(spamd_outcome(&dry, 6.0).spam);
  dry.applied = Action::accept;
  EXPECT_FALSE(spamd_outcome(&dry, 6.0).spam);
  // Fail open.
  EXPECT_EQ(format_spamd_reply(request_of(SpamdCommand::check, "x"), nullptr, 6.0),
            "SPAMD/1.1 0 EX_OK\r\nSpam: False ; 0.0 / 6.0\r\n\r\n");
}

TEST(SpamdReply, ScoreTextAgreesWithTheVerdictForClientsThatCompare) {
  // Exim decides spam by score >= threshold on the printed numbers.
  EXPECT_EQ(spamd_score_text({false, 5.96, 6.0}), "5.9");
  EXPECT_EQ(spamd_score_text({true, 6.0, 6.0}), "6.0");
  EXPECT_EQ(spamd_score_text({true, 1000.0, 6.0}), "1000.0");
  EXPECT_EQ(spamd_score_text({false, -0.01, 6.0}), "0.0");
  EXPECT_EQ(spamd_score_text({false, -20.0, 6.0}), "-20.0");
  EXPECT_EQ(spamd_score_text({false, 2.25, 6.0}), "2.2");  // plain rounding otherwise (%.1f)
  EXPECT_EQ(spamd_spam_header_value({true, 15.0, 6.0}, true), "Yes ; 15.0 / 6.0");
}

TEST(SpamdReply, SymbolsIsSortedCommaSeparatedWithContentLength) {
  Verdict v = verdict(Action::tag, 8.0,
                      {{"RBL_EXAMPLE", 3.0, Family::dnsbl, "127.0.0.2"},
                       {"HDR_MISSING_DATE", 5.0, Family::rfc, ""}});
  Reply r = split(format_spamd_reply(request_of(SpamdCommand::symbols, "x"), &v, 6.0));
  ASSERT_EQ(r.lines.size(), 3u);
  EXPECT_EQ(r.lines[0], "SPAMD/1.1 0 EX_OK");
  EXPECT_EQ(r.lines[1], "Content-length: 28");
  EXPECT_EQ(r.lines[2], "Spam: True ; 8.0 / 6.0");
  EXPECT_EQ(r.body, "HDR_MISSING_DATE,RBL_EXAMPLE");  // no line end from protocol 1.3 on
}

TEST(SpamdReply, SymbolsContentLengthIsExact) {
  Verdict v = verdict(Action::accept, 1.0, {{"A", 1.0, Family::rfc, ""}});
  Reply r = split(format_spamd_reply(request_of(SpamdCommand::symbols, "x"), &v, 6.0));
  ASSERT_EQ(r.lines.size(), 3u);
  EXPECT_EQ(r.lines[1], "Content-length: " + std::to_string(r.body.size()));
  EXPECT_EQ(r.body, "A");
  // Before protocol 1.3: no Content-length, and the line ends with CRLF.
  std::string old = format_spamd_reply(request_of(SpamdCommand::symbols, "x", 1, 2), &v, 6.0);
  EXPECT_EQ(old, "SPAMD/1.1 0 EX_OK\r\nSpam: False ; 1.0 / 6.0\r\n\r\nA\r\n");
}

TEST(SpamdReply, ReportListsEverySymbolWithPointsAndDescription) {
  Verdict v = verdict(Action::reject, 1001.0,
                      {{"GTUBE", 1000.0, Family::admin, "the GTUBE test string"},
                       {"HDR_MISSING_DATE", 1.0, Family::rfc, ""}});
  Reply r = split(format_spamd_reply(request_of(SpamdCommand::report, "x"), &v, 6.0));
  ASSERT_EQ(r.lines.size(), 3u);
  EXPECT_EQ(r.lines[1], "Content-length: " + std::to_string(r.body.size()));
  EXPECT_EQ(r.lines[2], "Spam: True ; 1001.0 / 6.0");
  EXPECT_NE(r.body.find("Content analysis details:   (1001.0 points, 6.0 required)"),
            std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find(" pts rule name              description\n"), std::string::npos);
  EXPECT_NE(r.body.find("1000.0 GTUBE"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find(" 1.0 HDR_MISSING_DATE       "), std::string::npos) << r.body;
  EXPECT_LT(r.body.find("GTUBE  "), r.body.find("HDR_MISSING_DATE")) << "highest score first";
  EXPECT_NE(r.body.find("action reject"), std::string::npos);
  EXPECT_NE(r.body.find("Reason: test reason"), std::string::npos);
  for (size_t pos = 0, nl; (nl = r.body.find('\n', pos)) != std::string::npos; pos = nl + 1)
    EXPECT_LE(nl - pos, 78u) << r.body.substr(pos, nl - pos);
}

TEST(SpamdReply, ReportIfSpamSaysYesOrNoAndIsEmptyForHam) {
  Verdict ham = verdict(Action::accept, 1.0);
  Reply r = split(format_spamd_reply(request_of(SpamdCommand::report_ifspam, "x"), &ham, 6.0));
  ASSERT_EQ(r.lines.size(), 3u);
  EXPECT_EQ(r.lines[1], "Content-length: 0");
  EXPECT_EQ(r.lines[2], "Spam: No ; 1.0 / 6.0");
  EXPECT_EQ(r.body, "");
  Verdict spam = verdict(Action::tag, 7.0);
  Reply s = split(format_spamd_reply(request_of(SpamdCommand::report_ifspam, "x"), &spam, 6.0));
  ASSERT_EQ(s.lines.size(), 3u);
  EXPECT_EQ(s.lines[2], "Spam: Yes ; 7.0 / 6.0");
  EXPECT_NE(s.body.find("Content analysis details"), std::string::npos);
}

TEST(SpamdReply, ProcessRemovesIncomingSpamHeadersAndAddsOurs) {
  Verdict v = verdict(Action::tag, 7.5,
                      {{"HDR_MISSING_DATE", 2.5, Family::rfc, ""},
                       {"RBL_EXAMPLE", 5.0, Family::dnsbl, "127.0.0.2"}});
  Reply r = split(format_spamd_reply(request_of(SpamdCommand::process, kMessage), &v, 6.0));
  ASSERT_EQ(r.lines.size(), 3u);
  EXPECT_EQ(r.lines[1], "Content-length: " + std::to_string(r.body.size()));
  EXPECT_EQ(r.lines[2], "Spam: True ; 7.5 / 6.0");
  const std::string expected =
      "Received: from mx.example.net by mail.example.org; Mon, 1 Jan 2024 10:00:00 +0000\r\n"
      "From: Alice <alice@example.net>\r\n"
      "To: bob@example.org\r\n"
      "X-Spammy-Looking: kept\r\n"
      "Subject: hello\r\n"
      "X-Spam-Flag: YES\r\n"
      "X-Spam-Score: 7.50\r\n"
      "X-Spamward-Symbols: HDR_MISSING_DATE(2.50), RBL_EXAMPLE(5.00)\r\n"
      "X-Spam-Status: Yes, score=7.5 required=6.0 tests=HDR_MISSING_DATE,RBL_EXAMPLE\r\n"
      "\r\n"
      "Body line 1\r\n"
      "X-Spam-Flag: YES (in the body: kept)\r\n";
  EXPECT_EQ(r.body, expected);
}

TEST(SpamdReply, ProcessKeepsBareLineFeedsAndSaysNoForHam) {
  std::string message = "Subject: a\nX-Spam-Flag: YES\n\nbody\n";
  Verdict v = verdict(Action::accept, 0.0);
  Reply r = split(format_spamd_reply(request_of(SpamdCommand::process, message), &v, 6.0));
  EXPECT_EQ(r.body,
            "Subject: a\nX-Spam-Score: 0.00\nX-Spamward-Symbols: none\n"
            "X-Spam-Status: No, score=0.0 required=6.0 tests=none\n\nbody\n");
}

TEST(SpamdReply, HeadersReturnsOnlyTheHeaderBlock) {
  Verdict v = verdict(Action::accept, 1.0, {{"X", 1.0, Family::rfc, ""}});
  Reply r = split(format_spamd_reply(request_of(SpamdCommand::headers, kMessage), &v, 6.0));
  ASSERT_EQ(r.lines.size(), 3u);
  EXPECT_EQ(r.lines[1], "Content-length: " + std::to_string(r.body.size()));
  EXPECT_TRUE(r.body.ends_with("tests=X\r\n\r\n")) << r.body;
  EXPECT_EQ(r.body.find("Body line"), std::string::npos);
  EXPECT_EQ(r.body.find("X-Spam-Flag"), std::string::npos);
}

TEST(SpamdReply, OldProtocolVersionsGetTheirOwnShapes) {
  Verdict v = verdict(Action::accept, 1.0);
  std::string message = "Subject: a\r\n\r\nb";
  std::string v12 = format_spamd_reply(request_of(SpamdCommand::process, message, 1, 2), &v, 6.0);
  EXPECT_TRUE(v12.starts_with("SPAMD/1.1 0 EX_OK\r\nContent-length: ")) << v12;
  EXPECT_EQ(v12.find("Spam:"), std::string::npos);
  std::string v10 = format_spamd_reply(request_of(SpamdCommand::process, message, 1, 0), &v, 6.0);
  EXPECT_TRUE(v10.starts_with("SPAMD/1.0 0 EX_OK\r\nSubject: a\r\n")) << v10;
  // Exim sends REPORT SPAMC/1.2 and parses "SPAMD/%7s 0 EX_OK\r\nSpam: %*s ; %lf / %lf\r\n\r\n".
  std::string exim = format_spamd_reply(request_of(SpamdCommand::report, message, 1, 2), &v, 6.0);
  EXPECT_TRUE(exim.starts_with("SPAMD/1.1 0 EX_OK\r\nSpam: False ; 1.0 / 6.0\r\n\r\n")) << exim;
}

TEST(SpamdReply, FailOpenRemovesForgedHeadersAndAddsNothing) {
  Reply r = split(format_spamd_reply(request_of(SpamdCommand::process, kMessage), nullptr, 6.0));
  ASSERT_EQ(r.lines.size(), 3u);
  EXPECT_EQ(r.lines[2], "Spam: False ; 0.0 / 6.0");
  EXPECT_EQ(r.body.find("X-Spam-Status"), std::string::npos);
  EXPECT_EQ(r.body.find("X-Spam-Score"), std::string::npos);
  EXPECT_EQ(r.body.find("folded=continuation"), std::string::npos);
  EXPECT_NE(r.body.find("Subject: hello\r\n\r\nBody line 1"), std::string::npos) << r.body;
  EXPECT_EQ(split(format_spamd_reply(request_of(SpamdCommand::symbols, "x"), nullptr, 6.0)).body,
            "");
}

TEST(SpamdReply, ATruncatedMessageIsNeverReturnedInPart) {
  SpamdRequest r = request_of(SpamdCommand::process, "Subject: a\r\n\r\nbody");
  r.message_size = 1000;  // more arrived than was kept
  Verdict v = verdict(Action::accept, 0.0);
  std::string wire = format_spamd_reply(r, &v, 6.0);
  EXPECT_TRUE(wire.starts_with("SPAMD/1.0 65 ")) << wire;
  EXPECT_TRUE(wire.ends_with("\r\n"));
  EXPECT_EQ(wire.find("\r\n"), wire.size() - 2) << "one line";
  // HEADERS needs only the header block, which is complete here.
  r.command = SpamdCommand::headers;
  EXPECT_TRUE(format_spamd_reply(r, &v, 6.0).starts_with("SPAMD/1.1 0 EX_OK\r\n"));
  r.message = "Subject: a\r\nX-Long: ";  // the header block itself was cut
  EXPECT_TRUE(format_spamd_reply(r, &v, 6.0).starts_with("SPAMD/1.0 65 "));
}

TEST(SpamdReply, MessagesWithoutEmptyLineOrHeaders) {
  Verdict v = verdict(Action::accept, 0.0);
  SpamdOutcome o = spamd_outcome(&v, 6.0);
  std::string only_headers = spamd_rewrite_message("Subject: a\r\nX-Spam-Flag: YES", &v, o, false);
  EXPECT_TRUE(only_headers.starts_with("Subject: a\r\nX-Spam-Score: 0.00\r\n")) << only_headers;
  EXPECT_EQ(only_headers.find("X-Spam-Flag"), std::string::npos);
  std::string headers = spamd_rewrite_message("Subject: a\n", &v, o, true);
  EXPECT_TRUE(headers.ends_with("tests=none\n\n")) << headers;
  std::string body_only = spamd_rewrite_message("\r\nbody\r\n", &v, o, false);
  EXPECT_TRUE(body_only.starts_with("X-Spam-Score: 0.00\r\n")) << body_only;
  EXPECT_TRUE(body_only.ends_with("\r\n\r\nbody\r\n")) << body_only;
  EXPECT_EQ(spamd_rewrite_message("", nullptr, o, false), "");
}

TEST(SpamdReply, LongSymbolListsAreFolded) {
  std::vector<Symbol> symbols;
  for (int i = 0; i < 30; ++i)
    symbols.push_back({"RBL_LIST_NUMBER_" + std::to_string(i), 0.5, Family::dnsbl, ""});
  Verdict v = verdict(Action::tag, 15.0, symbols);
  std::string out = spamd_rewrite_message("Subject: a\r\n\r\n", &v, spamd_outcome(&v, 6.0), true);
  size_t lines = 0;
  for (size_t pos = 0, nl; (nl = out.find("\r\n", pos)) != std::string::npos; pos = nl + 2) {
    EXPECT_LE(nl - pos, 78u) << out.substr(pos, nl - pos);
    EXPECT_EQ(out.find('\n', pos), nl + 1) << "only CRLF line ends";
    ++lines;
  }
  EXPECT_GT(lines, 10u);
  EXPECT_NE(out.find(",\r\n\tRBL_LIST_NUMBER_"), std::string::npos) << out;
}

TEST(SpamdReply, ErrorsAreOneSanitisedLine) {
  std::string e = format_spamd_error(kSpamdExProtocol, "bad\r\nInjected: yes");
  EXPECT_EQ(e, "SPAMD/1.0 76 Bad header line: (bad??Injected: yes)\r\n");
  EXPECT_EQ(format_spamd_error(kSpamdExUnavailable, "TELL commands are not enabled"),
            "SPAMD/1.0 69 Service Unavailable: TELL commands are not enabled\r\n");
  std::string longer = format_spamd_error(kSpamdExProtocol, std::string(5000, 'a'));
  EXPECT_LT(longer.size(), 400u);
  SpamdParser p = parse("NOPE SPAMC/1.5\r\n");
  EXPECT_EQ(format_spamd_error(p), "SPAMD/1.0 76 Bad header line: (unknown command 'NOPE')\r\n");
}

TEST(SpamdReply, PongAndTell) {
  EXPECT_EQ(kSpamdPong, "SPAMD/1.5 0 PONG\r\n");
  EXPECT_EQ(format_spamd_reply(request_of(SpamdCommand::ping, ""), nullptr, 6.0), kSpamdPong);
  EXPECT_EQ(format_spamd_tell_reply(true, false), "SPAMD/1.1 0 EX_OK\r\nDidSet: local\r\n\r\n");
  EXPECT_EQ(format_spamd_tell_reply(false, true), "SPAMD/1.1 0 EX_OK\r\nDidRemove: local\r\n\r\n");
  EXPECT_EQ(format_spamd_tell_reply(false, false), "SPAMD/1.1 0 EX_OK\r\n\r\n");
}

TEST(SpamdReply, OwnedHeaderNames) {
  EXPECT_TRUE(is_spamd_owned_header("X-Spam-Flag"));
  EXPECT_TRUE(is_spamd_owned_header("x-spam-status"));
  EXPECT_TRUE(is_spamd_owned_header("X-SPAMWARD-Symbols"));
  EXPECT_FALSE(is_spamd_owned_header("X-Spammy"));
  EXPECT_FALSE(is_spamd_owned_header("X-Spam"));
  EXPECT_FALSE(is_spamd_owned_header("Subject"));
}

// [headers] authentication_results (RFC 8601): PROCESS and HEADERS drop the incoming
// Authentication-Results fields carrying our authserv-id (any case, folded or not, the id
// possibly on a continuation line), keep the others, and add ours after X-Spam-Status.
TEST(SpamdReply, ProcessReplacesOurAuthenticationResultsOnly) {
  const std::string message =
      "Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=forged.example\r\n"
      "Authentication-Results: other.example; dkim=pass header.d=a.example\r\n"
      "Subject: hi\r\n"
      "authentication-results:\r\n"
      "\t(forged) MX.EXAMPLE.ORG;\r\n"
      "\tdmarc=pass header.from=forged.example\r\n"
      "Authentication-Results: mx.example.org.evil; none\r\n"
      "\r\n"
      "Authentication-Results: mx.example.org; in the body: kept\r\n";
  Verdict v = verdict(Action::accept, 0.0);
  SpamdAuthResults ar{"mx.example.org", "mx.example.org; dkim=pass header.d=example.net"};
  Reply r = split(format_spamd_reply(request_of(SpamdCommand::process, message), &v, 6.0, ar));
  ASSERT_EQ(r.lines.size(), 3u);
  EXPECT_EQ(r.lines[1], "Content-length: " + std::to_string(r.body.size()));
  EXPECT_EQ(r.body,
            "Authentication-Results: other.example; dkim=pass header.d=a.example\r\n"
            "Subject: hi\r\n"
            "Authentication-Results: mx.example.org.evil; none\r\n"
            "X-Spam-Score: 0.00\r\n"
            "X-Spamward-Symbols: none\r\n"
            "X-Spam-Status: No, score=0.0 required=6.0 tests=none\r\n"
            "Authentication-Results: mx.example.org; dkim=pass header.d=example.net\r\n"
            "\r\n"
            "Authentication-Results: mx.example.org; in the body: kept\r\n");

  // HEADERS too; a bare-LF message gets LF folds; long values are folded under 80 columns.
  std::string long_value = "mx.example.org";
  for (int i = 0; i < 5; ++i)
    long_value += "; dkim=pass header.d=signer-number-" + std::to_string(i) + ".example.net";
  Reply h = split(format_spamd_reply(
      request_of(SpamdCommand::headers, "Authentication-Results: mx.example.org; none\nA: b\n\nx"),
      &v, 6.0, SpamdAuthResults{"mx.example.org", long_value}));
  EXPECT_EQ(h.body.find("mx.example.org; none"), std::string::npos) << h.body;
  size_t at = h.body.find("Authentication-Results: mx.example.org;");
  ASSERT_NE(at, std::string::npos) << h.body;
  EXPECT_NE(h.body.find("\n\tdkim=pass", at), std::string::npos) << h.body;
  EXPECT_EQ(h.body.find('\r'), std::string::npos);
  EXPECT_TRUE(h.body.ends_with("\n\n")) << h.body;
  size_t start = 0;
  for (size_t pos = 0; pos < h.body.size(); ++pos) {
    if (h.body[pos] == '\n') {
      EXPECT_LE(pos - start, 79u) << h.body.substr(start, pos - start);
      start = pos + 1;
    }
  }

  // Off (no authserv-id, the default): incoming fields all stay, nothing is added.
  Reply off = split(format_spamd_reply(request_of(SpamdCommand::process, message), &v, 6.0));
  EXPECT_NE(off.body.find("forged.example\r\n"), std::string::npos);
  EXPECT_EQ(off.body.find("header.d=example.net"), std::string::npos);
  // Fail open (no verdict, no value): ours are still removed, nothing is added.
  Reply failed = split(format_spamd_reply(request_of(SpamdCommand::process, message), nullptr, 6.0,
                                          SpamdAuthResults{"mx.example.org", ""}));
  EXPECT_EQ(failed.body.find("forged.example"), std::string::npos) << failed.body;
  EXPECT_NE(failed.body.find("other.example"), std::string::npos);
  EXPECT_EQ(failed.body.find("header.d=example.net"), std::string::npos);
}

}  // namespace
}  // namespace spamward
