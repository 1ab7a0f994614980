// Milter protocol codec: frame limits, command decoding, negotiation, macros -> Transaction
// facts, header reconstruction, and the replies of DESIGN §3.5 (milter column).
#include <gtest/gtest.h>

#include <deque>
#include <string>
#include <vector>

#include "server/milter_protocol.h"

namespace spamward {
namespace {

std::string be32(uint32_t v) {
  std::string s;
  s += static_cast<char>(v >> 24);
  s += static_cast<char>(v >> 16);
  s += static_cast<char>(v >> 8);
  s += static_cast<char>(v);
  return s;
}

std::string frame(char cmd, std::string_view data = {}) {
  std::string out;
  append_frame(out, cmd, data);
  return out;
}

// Splits a reply stream into (code, data) frames; fails the test on a malformed stream.
std::vector<std::pair<char, std::string>> frames(std::string_view s) {
  std::vector<std::pair<char, std::string>> out;
  MilterFrameReader r;
  while (!s.empty()) {
    size_t used = r.feed(s);
    s.remove_prefix(used);
    if (r.status() != MilterFrameReader::Status::complete) {
      ADD_FAILURE() << "incomplete or bad frame";
      break;
    }
    out.emplace_back(r.command(), std::string(r.data()));
    r.next();
  }
  return out;
}

using namespace std::string_literals;

// Decoded views point into their input: keep test inputs alive for the whole test run.
std::string_view kept(std::string s) {
  static std::deque<std::string> arena;
  arena.push_back(std::move(s));
  return arena.back();
}

TEST(MilterFrameReader, ReadsFramesSplitAnywhere) {
  std::string wire = frame('H', "mx.example.net\0"s) + frame('A');
  MilterFrameReader r;
  std::vector<std::pair<char, std::string>> got;
  for (char ch : wire) {
    ASSERT_EQ(r.feed(std::string_view(&ch, 1)), 1u);
    if (r.status() == MilterFrameReader::Status::complete) {
      got.emplace_back(r.command(), std::string(r.data()));
      r.next();
    }
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].first, 'H');
  EXPECT_EQ(got[0].second, "mx.example.net\0"s);
  EXPECT_EQ(got[1].first, 'A');
  EXPECT_EQ(got[1].second, "");
  EXPECT_FALSE(r.started());
}

TEST(MilterFrameReader, StopsAtTheEndOfOneFrame) {
  std::string wire = frame('N') + frame('E');
  MilterFrameReader r;
  EXPECT_EQ(r.feed(wire), 5u);
  EXPECT_EQ(r.command(), 'N');
  EXPECT_EQ(r.feed(wire.substr(5)), 0u) << "nothing more until next()";
  r.next();
  EXPECT_EQ(r.feed(wire.substr(5)), 5u);
  EXPECT_EQ(r.command(), 'E');
}

TEST(MilterFrameReader, AcceptsPostfixBodyChunksAndRefusesOversizedFrames) {
  // Postfix sends 65,535-byte body chunks; a 64 KiB one passes even with a tiny limit.
  MilterFrameReader small(100);
  std::string chunk(65536, 'x');
  std::string wire = frame('B', chunk);
  EXPECT_EQ(small.feed(wire), wire.size());
  EXPECT_EQ(small.status(), MilterFrameReader::Status::complete);
  EXPECT_EQ(small.data().size(), chunk.size());

  MilterFrameReader r;  // default: 1 MiB
  std::string big = be32((1u << 20) + 1) + "B";
  EXPECT_EQ(r.feed(big), 4u) << "refused as soon as the length is known";
  EXPECT_EQ(r.status(), MilterFrameReader::Status::error);
  EXPECT_EQ(r.error(), MilterError::frame_too_large);
  EXPECT_EQ(r.declared_length(), (1u << 20) + 1);
  EXPECT_EQ(to_string(r.error()), "frame_too_large");

  MilterFrameReader exact;
  std::string max_frame = frame('B', std::string((1u << 20) - 1, 'y'));
  EXPECT_EQ(exact.feed(max_frame), max_frame.size());
  EXPECT_EQ(exact.status(), MilterFrameReader::Status::complete);

  MilterFrameReader zero;
  zero.feed(be32(0));
  EXPECT_EQ(zero.error(), MilterError::empty_frame);
  zero.next();
  EXPECT_EQ(zero.status(), MilterFrameReader::Status::incomplete);
  zero.feed(frame('Q'));
  EXPECT_EQ(zero.command(), 'Q');
}

TEST(MilterDecode, Optneg) {
  auto o = decode_optneg(be32(6) + be32(0x1ff) + be32(0x1fffff));
  ASSERT_TRUE(o);
  EXPECT_EQ(o->version, 6u);
  EXPECT_EQ(o->actions, 0x1ffu);
  EXPECT_EQ(o->protocol, 0x1fffffu);
  EXPECT_FALSE(decode_optneg(be32(6) + be32(1)));
}

TEST(MilterDecode, Connect) {
  auto c =
      decode_connect(kept("mx.example.net\0"s
                          "4"
                          "\x9c\x40"
                          "192.0.2.1\0"s));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->hostname, "mx.example.net");
  EXPECT_EQ(c->family, '4');
  EXPECT_EQ(c->port, 40000);
  EXPECT_EQ(c->address, "192.0.2.1");

  auto u = decode_connect(kept("localhost\0U"s));
  ASSERT_TRUE(u);
  EXPECT_EQ(u->family, 'U');
  EXPECT_EQ(u->address, "");

  EXPECT_FALSE(decode_connect("no-nul"));
  EXPECT_FALSE(decode_connect("host\0"s));  // no family
  EXPECT_FALSE(
      decode_connect("host\0"
                     "4"
                     "\x01"s));  // short port
  EXPECT_FALSE(
      decode_connect("host\0"
                     "4"
                     "\x01\x02"
                     "1.2.3.4"s));  // no final NUL
}

TEST(MilterDecode, MacrosStringsHeaders) {
  auto m =
      decode_macros(kept("C{daemon_addr}\0"
                         "192.0.2.25\0"
                         "j\0mx.example.org\0"s));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->stage, 'C');
  ASSERT_EQ(m->macros.size(), 2u);
  EXPECT_EQ(m->macros[0].first, "{daemon_addr}");
  EXPECT_EQ(m->macros[1].second, "mx.example.org");
  EXPECT_TRUE(decode_macros("M"));  // a stage without macros
  EXPECT_FALSE(decode_macros(""));
  EXPECT_FALSE(decode_macros("Cname\0value"s));
  EXPECT_FALSE(decode_macros("Cname\0"s));

  auto args = decode_strings(kept("<a@example.net>\0SIZE=1234\0BODY=8BITMIME\0"s));
  ASSERT_TRUE(args);
  ASSERT_EQ(args->size(), 3u);
  EXPECT_EQ(declared_size(*args), 1234);
  EXPECT_FALSE(decode_strings("<a@example.net>"));
  EXPECT_FALSE(decode_strings(""));

  auto h = decode_header(kept("Subject\0 hello\n\tworld\0"s));
  ASSERT_TRUE(h);
  EXPECT_EQ(h->name, "Subject");
  EXPECT_EQ(h->value, " hello\n\tworld");
  EXPECT_FALSE(decode_header("Subject\0hello"s));
  EXPECT_FALSE(decode_header("Subject\0hello\0extra\0"s));
}

TEST(MilterNegotiate, PostfixOfferGetsEveryEventSkipLeadingSpaceAndMacroLists) {
  auto n = negotiate({6, 0x1ff, 0x1fffff});
  ASSERT_TRUE(n);
  EXPECT_EQ(n->version, 6u);
  EXPECT_EQ(n->actions,
            milter::kActAddHeaders | milter::kActChangeHeaders | milter::kActSetSymList);
  EXPECT_EQ(n->protocol,
            milter::kProtoSkip | milter::kProtoHeaderLeadSpace | milter::kProtoNoReplyWanted)
      << "no NO* bits (every event), and no reply where spamward always continues";
  EXPECT_FALSE(n->replies_to(milter::kConnect));
  EXPECT_FALSE(n->replies_to(milter::kHeader));
  EXPECT_TRUE(n->replies_to(milter::kMail));
  EXPECT_TRUE(n->replies_to(milter::kBody));  // SKIP is a reply to a body chunk
  // An MTA that does not offer them: a reply to everything.
  auto plain = negotiate({6, 0x1ff, milter::kProtoSkip});
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->no_reply, 0u);
  EXPECT_TRUE(plain->replies_to(milter::kConnect));
  EXPECT_TRUE(n->skip && n->leading_space && n->macro_lists && n->add_headers && n->change_headers);

  std::string reply;
  append_optneg_reply(reply, *n);
  auto f = frames(reply);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].first, 'O');
  const std::string& d = f[0].second;
  ASSERT_GE(d.size(), 12u);
  EXPECT_EQ(d.substr(0, 12), be32(6) + be32(n->actions) + be32(n->protocol));
  // Macro lists: stage number, then a NUL-terminated list; the connect list names
  // {daemon_addr} and {daemon_port}.
  EXPECT_EQ(d.substr(12, 4), be32(milter::kMacroConnect));
  EXPECT_NE(d.find("{daemon_addr} {daemon_port}"), std::string::npos);
  EXPECT_NE(d.find(be32(milter::kMacroEnvFrom) + "i {auth_authen}"), std::string::npos);
  EXPECT_EQ(d.back(), '\0');
}

TEST(MilterNegotiate, OlderVersionsAndPoorOffers) {
  auto v2 = negotiate({2, milter::kActAddHeaders, 0x7f});
  ASSERT_TRUE(v2);
  EXPECT_EQ(v2->version, 2u);
  EXPECT_FALSE(v2->skip);
  EXPECT_FALSE(v2->macro_lists);
  EXPECT_FALSE(v2->change_headers);
  EXPECT_EQ(v2->actions, milter::kActAddHeaders);
  std::string reply;
  append_optneg_reply(reply, *v2);
  EXPECT_EQ(reply.size(), 4u + 1 + 12) << "no macro lists before version 6";

  auto v8 = negotiate({8, 0x1ff, 0x1fffff});
  ASSERT_TRUE(v8);
  EXPECT_EQ(v8->version, 6u) << "never more than we speak";
  EXPECT_FALSE(negotiate({1, 0x1ff, 0x7f}));
}

TEST(MilterMacros, BracesStagesAndTransactionReset) {
  MilterMacros m;
  m.set(
      *decode_macros("C{daemon_addr}\0"
                     "192.0.2.25\0"
                     "j\0mx\0"s));
  m.set(
      *decode_macros("Mi\0"
                     "ABC123\0"
                     "{auth_authen}\0alice\0"s));
  EXPECT_EQ(m.get("{daemon_addr}").value_or("-"), "192.0.2.25");
  EXPECT_EQ(m.get("daemon_addr").value_or("-"), "192.0.2.25");
  EXPECT_EQ(m.get("{i}").value_or("-"), "ABC123");
  EXPECT_FALSE(m.get("{client_ptr}"));
  m.clear_transaction();
  EXPECT_FALSE(m.get("i"));
  EXPECT_TRUE(m.get("j")) << "connect macros outlive a message";
  // Bounded: a hostile MTA cannot grow a stage's macros or values without end.
  std::string many = "H";
  for (int i = 0; i < 200; ++i)
    many += "n" + std::to_string(i) + "\0"s + std::string(5000, 'v') + "\0"s;
  m.set(*decode_macros(many));
  EXPECT_TRUE(m.get("n0"));
  EXPECT_EQ(m.get("n0")->size(), kMaxMacroValue);
  EXPECT_FALSE(m.get("n199"));
}

TEST(MilterFacts, PostfixConnect) {
  MilterMacros m;
  m.set(
      *decode_macros("C{daemon_addr}\0"
                     "192.0.2.25\0"
                     "{daemon_port}\0"
                     "25\0"s));
  Transaction tx;
  auto c =
      decode_connect(kept("[198.51.100.7]\0"
                          "4"
                          "\x9c\x40"
                          "198.51.100.7\0"s));
  apply_connect_facts(*c, m, tx);
  ASSERT_TRUE(tx.client_address);
  EXPECT_EQ(tx.client_address->to_string(), "198.51.100.7");
  EXPECT_EQ(tx.client_name, "") << "bracketed: unknown, so spamward looks the PTR up itself";
  EXPECT_EQ(tx.reverse_client_name, "");
  ASSERT_TRUE(tx.server_address);
  EXPECT_EQ(tx.server_address->to_string(), "192.0.2.25");
  EXPECT_EQ(tx.server_port, 25);

  Transaction named;
  auto n =
      decode_connect(kept("mx.example.net\0"
                          "6"
                          "\x9c\x40"
                          "2001:db8::25\0"s));
  apply_connect_facts(*n, MilterMacros{}, named);
  ASSERT_TRUE(named.client_address);
  EXPECT_TRUE(named.client_address->is_v6());
  EXPECT_EQ(named.client_name, "mx.example.net");
  EXPECT_FALSE(named.server_address);
  EXPECT_EQ(named.server_port, 0);

  // With {client_name} and {client_ptr}, Postfix's own lookups are used as they are.
  MilterMacros pm;
  pm.set(*decode_macros("C{client_name}\0unknown\0{client_ptr}\0ptr.example.net\0"s));
  Transaction forged;
  apply_connect_facts(*c, pm, forged);
  EXPECT_EQ(forged.client_name, "unknown");
  EXPECT_EQ(forged.reverse_client_name, "ptr.example.net");

  Transaction v6prefix;
  auto p =
      decode_connect(kept("[IPv6:2001:db8::1]\0"
                          "6"
                          "\x00\x19"
                          "IPv6:2001:db8::1\0"s));
  apply_connect_facts(*p, MilterMacros{}, v6prefix);
  ASSERT_TRUE(v6prefix.client_address);
  EXPECT_EQ(v6prefix.client_address->to_string(), "2001:db8::1");

  Transaction unix_client;
  auto l =
      decode_connect(kept("localhost\0"
                          "L"
                          "\x00\x00"
                          "/var/run/x\0"s));
  apply_connect_facts(*l, MilterMacros{}, unix_client);
  EXPECT_FALSE(unix_client.client_address);
}

TEST(MilterFacts, SendmailClientResolve) {
  auto c =
      decode_connect(kept("ptr.example.net\0"
                          "4"
                          "\x9c\x40"
                          "198.51.100.7\0"s));
  auto facts = [&](const char* resolve) {
    MilterMacros m;
    m.set(*decode_macros("C{client_resolve}\0"s + resolve + "\0"s));
    Transaction tx;
    apply_connect_facts(*c, m, tx);
    return std::pair{tx.client_name, tx.reverse_client_name};
  };
  EXPECT_EQ(facts("OK"),
            (std::pair<std::string, std::string>{"ptr.example.net", "ptr.example.net"}));
  EXPECT_EQ(facts("FORGED"), (std::pair<std::string, std::string>{"unknown", "ptr.example.net"}));
  EXPECT_EQ(facts("FAIL"), (std::pair<std::string, std::string>{"unknown", "unknown"}));
  EXPECT_EQ(facts("TEMP"), (std::pair<std::string, std::string>{"", ""}))
      << "a temporary failure is not an answer";
}

TEST(MilterFacts, EnvelopeMacrosAndAddresses) {
  MilterMacros m;
  m.set(
      *decode_macros("Mi\0"
                     "4F2A1B\0"
                     "{auth_authen}\0alice\0"s));
  Transaction tx;
  tx.id = "milter-1";
  apply_envelope_macros(m, tx);
  EXPECT_EQ(tx.queue_id, "4F2A1B");
  EXPECT_EQ(tx.id, "4F2A1B");
  EXPECT_EQ(tx.sasl_username, "alice");
  EXPECT_EQ(strip_angle_brackets("<a@example.net>"), "a@example.net");
  EXPECT_EQ(strip_angle_brackets("<>"), "");
  EXPECT_EQ(strip_angle_brackets(" b@example.org "), "b@example.org");
  EXPECT_EQ(declared_size({"<a@b>", "size=99x"}), 0);
}

TEST(MilterHeaders, LineReconstruction) {
  EXPECT_EQ(header_line("Subject", "hello", false), "Subject: hello\r\n");
  EXPECT_EQ(header_line("Subject", " hello", true), "Subject: hello\r\n");
  EXPECT_EQ(header_line("Subject", "\thello", true), "Subject:\thello\r\n") << "bytes kept";
  EXPECT_EQ(header_line("To", "a@b,\n\tc@d", false), "To: a@b,\r\n\tc@d\r\n");
  EXPECT_EQ(header_line("To", "a@b,\r\n c@d", false), "To: a@b,\r\n c@d\r\n");
  EXPECT_EQ(header_line("X", "\xff\xfe", false), "X: \xff\xfe\r\n");
}

TEST(MilterHeaders, SpamHeaderDeletionsByIndexPerName) {
  SpamHeaderTracker t;
  for (const char* name : {"X-Spam-Flag", "Subject", "x-spam-flag", "X-Spamward-Symbols", "X-Spam",
                           "X-Spamassassin-ish", "X-Spam-Score"})
    t.observe(name);
  EXPECT_EQ(t.count(), 4u) << "X-Spam-Flag twice, X-Spamward-Symbols, X-Spam-Score";
  std::string out;
  t.append_deletions(out);
  auto f = frames(out);
  ASSERT_EQ(f.size(), 4u);
  for (const auto& [code, data] : f) EXPECT_EQ(code, 'm');
  // x-spam-flag: index 2 first, then 1, under the name as first seen; empty value = delete.
  EXPECT_EQ(f[0].second, be32(2) + "X-Spam-Flag\0\0"s);
  EXPECT_EQ(f[1].second, be32(1) + "X-Spam-Flag\0\0"s);
  EXPECT_EQ(f[2].second, be32(1) + "X-Spam-Score\0\0"s);
  EXPECT_EQ(f[3].second, be32(1) + "X-Spamward-Symbols\0\0"s);

  SpamHeaderTracker many;
  for (size_t i = 0; i < SpamHeaderTracker::kMaxNames + 5; ++i)
    many.observe("X-Spam-" + std::to_string(i));
  EXPECT_TRUE(many.overflowed());
  EXPECT_EQ(many.count(), SpamHeaderTracker::kMaxNames);
}

TEST(MilterReplies, ReplyCodeTextIsSanitised) {
  std::string out;
  append_reply_code(out, "550", "5.7.1", "100% spam\r\nX-Injected: yes");
  auto f = frames(out);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].first, 'y');
  EXPECT_EQ(f[0].second, "550 5.7.1 100%% spam  X-Injected: yes\0"s);

  // (The texts are built by append: GCC 12 warns falsely on string + literal here.)
  std::string long_text(1000, 'a');
  long_text.append("\xc3\xa9");
  out.clear();
  append_reply_code(out, "451", "4.7.1", long_text);
  f = frames(out);
  EXPECT_EQ(f[0].second.size(), 10 + kMaxMilterReplyText + 1);

  std::string cut_text(kMaxMilterReplyText - 1, 'a');
  cut_text.append("\xc3\xa9");
  out.clear();
  append_reply_code(out, "451", "4.7.1", cut_text);
  f = frames(out);
  EXPECT_EQ(f[0].second.size(), 10 + kMaxMilterReplyText - 1 + 1) << "no half character";
}

Verdict verdict(Action applied, double score = 1.0) {
  Verdict v;
  v.action = v.applied = applied;
  v.score = score;
  v.reason = "because";
  return v;
}

std::string refusal(const Verdict& v, Stage stage) {
  std::string out;
  if (!append_refusal(v, stage, out)) return "";
  auto f = frames(out);
  EXPECT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].first, 'y');
  return f[0].second.substr(0, f[0].second.size() - 1);
}

TEST(MilterReplies, RefusalsPerAction) {
  EXPECT_EQ(refusal(verdict(Action::accept), Stage::rcpt), "");
  EXPECT_EQ(refusal(verdict(Action::tag), Stage::eom), "");

  Verdict grey = verdict(Action::greylist);
  grey.reply_text = "Greylisted, please retry in 5 minutes";
  EXPECT_EQ(refusal(grey, Stage::rcpt), "") << "never per recipient";
  EXPECT_EQ(refusal(grey, Stage::data), "451 4.7.1 Greylisted, please retry in 5 minutes");
  EXPECT_EQ(refusal(grey, Stage::eom), "451 4.7.1 Greylisted, please retry in 5 minutes");

  EXPECT_EQ(refusal(verdict(Action::tempfail), Stage::connect),
            "450 4.7.1 Temporarily refused by spamward: because");
  Verdict reject = verdict(Action::reject);
  reject.reply_text = "Access denied by the site's administrator";
  EXPECT_EQ(refusal(reject, Stage::rcpt), "550 5.7.1 Access denied by the site's administrator");
  reject.permanent_ban = true;
  EXPECT_EQ(refusal(reject, Stage::connect).substr(0, 10), "554 5.7.1 ");
  Verdict unknown = verdict(Action::reject);
  unknown.standalone = Standalone::unknown_recipient;
  unknown.reason.clear();
  EXPECT_EQ(refusal(unknown, Stage::rcpt), "550 5.1.1 Recipient refused by spamward: unknown user");

  Verdict dry = verdict(Action::reject, 20);
  dry.dry_run = true;
  dry.applied = Action::tag;
  EXPECT_EQ(refusal(dry, Stage::eom), "") << "dry run: headers only";
}

TEST(MilterReplies, EndOfMessageEdits) {
  MilterNegotiated n = *negotiate({6, 0x1ff, 0x1fffff});
  SpamHeaderTracker incoming;
  incoming.observe("X-Spam-Flag");
  Verdict v = verdict(Action::tag, 7.5);
  v.symbols.push_back({"RBL_EXAMPLE", 3.0, Family::dnsbl, "127.0.0.2", false});
  v.symbols.push_back({"HELO_BARE_IP", 4.5, Family::rfc, "", false});
  std::string out;
  append_eom_edits(&v, incoming, n, out);
  auto f = frames(out);
  ASSERT_EQ(f.size(), 4u);
  EXPECT_EQ(f[0].second, be32(1) + "X-Spam-Flag\0\0"s) << "forged header deleted first";
  EXPECT_EQ(f[1].second, "X-Spam-Flag\0 YES\0"s) << "leading space negotiated";
  EXPECT_EQ(f[2].second, "X-Spam-Score\0 7.50\0"s);
  EXPECT_EQ(f[3].second, "X-Spamward-Symbols\0 RBL_EXAMPLE(3.00), HELO_BARE_IP(4.50)\0"s);
  EXPECT_EQ(symbols_header_value(v), "RBL_EXAMPLE(3.00), HELO_BARE_IP(4.50)");

  // Accept: no flag. Without HDR_LEADSPC, values go without the space.
  MilterNegotiated plain = *negotiate({6, 0x1ff, 0});
  Verdict accept = verdict(Action::accept, 0);
  out.clear();
  append_eom_edits(&accept, SpamHeaderTracker{}, plain, out);
  f = frames(out);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].second,
            "X-Spam-Score\0"
            "0.00\0"s);
  EXPECT_EQ(f[1].second, "X-Spamward-Symbols\0none\0"s);

  // Engine failure: deletions only.
  out.clear();
  append_eom_edits(nullptr, incoming, n, out);
  f = frames(out);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].first, 'm');

  // The MTA offered no header actions: nothing.
  MilterNegotiated none = *negotiate({6, 0, 0});
  out.clear();
  append_eom_edits(&v, incoming, none, out);
  EXPECT_EQ(out, "");

  // Long symbol lists are folded ("\n\t"), lines under 80 characters.
  Verdict many = verdict(Action::accept, 1);
  for (int i = 0; i < 20; ++i)
    many.symbols.push_back({"SYMBOL_NUMBER_" + std::to_string(i), 0.1, Family::rfc, "", false});
  out.clear();
  append_eom_edits(&many, SpamHeaderTracker{}, plain, out);
  f = frames(out);
  std::string value = f[1].second.substr(f[1].second.find('\0') + 1);
  value.pop_back();  // the final NUL
  EXPECT_NE(value.find(",\n\tSYMBOL_NUMBER_"), std::string::npos);
  size_t start = 0;
  std::string line_text = "X-Spamward-Symbols: " + value;
  for (size_t pos = 0; pos <= line_text.size(); ++pos) {
    if (pos == line_text.size() || line_text[pos] == '\n') {
      EXPECT_LE(pos - start, 79u) << line_text.substr(start, pos - start);
      start = pos + 1;
    }
  }
}

// BATV signing (issue 7): SMFIF_CHGFROM is requested only when asked for and offered at v6.
TEST(MilterNegotiate, ChangeFromOnlyWhenSigningAndOffered) {
  EXPECT_EQ(milter::kActChangeFrom, 0x40u) << "SMFIF_CHGFROM in libmilter's mfapi.h";
  auto plain = negotiate({6, 0x1ff, 0x1fffff});
  ASSERT_TRUE(plain);
  EXPECT_FALSE(plain->change_from);
  EXPECT_EQ(plain->actions & milter::kActChangeFrom, 0u);
  auto signing = negotiate({6, 0x1ff, 0x1fffff}, true);
  ASSERT_TRUE(signing);
  EXPECT_TRUE(signing->change_from);
  EXPECT_EQ(signing->actions, milter::kActAddHeaders | milter::kActChangeHeaders |
                                  milter::kActSetSymList | milter::kActChangeFrom);
  auto not_offered = negotiate({6, milter::kActAddHeaders, 0x1fffff}, true);
  ASSERT_TRUE(not_offered);
  EXPECT_FALSE(not_offered->change_from);
  EXPECT_EQ(not_offered->actions & milter::kActChangeFrom, 0u);
  auto v2 = negotiate({2, 0x1ff, 0x7f}, true);
  ASSERT_TRUE(v2);
  EXPECT_FALSE(v2->change_from) << "SMFIR_CHGFROM is a version 6 reply";
}

TEST(MilterReplies, ChangeFromFrame) {
  std::string out;
  ASSERT_TRUE(append_change_from(out, "prvs=0682658838=alice@example.org"));
  auto f = frames(out);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].first, 'e');
  EXPECT_EQ(f[0].second, "<prvs=0682658838=alice@example.org>\0"s);
  std::string bad;
  EXPECT_FALSE(append_change_from(bad, "a@b\r\nRSET"));
  EXPECT_FALSE(append_change_from(bad, "a\0@b"s));
  EXPECT_TRUE(bad.empty());
}

// Authentication-Results (RFC 8601, [headers]): incoming fields are remembered with their
// authserv-id; those naming ours are deleted by index (highest first), others stay.
TEST(MilterHeaders, AuthResultsDeletionsOnlyForOurAuthservId) {
  AuthResultsTracker t;
  t.observe("Authentication-Results", " mx.example.org; spf=pass smtp.mailfrom=a.example");
  t.observe("Subject", " mx.example.org; none");
  t.observe("authentication-results", " other.example; dkim=pass header.d=a.example");
  t.observe("Authentication-Results", " (forged)\n\tMX.Example.ORG; dmarc=pass");
  t.observe("Authentication-Results", " \"mx.example.org\"; none");
  t.observe("Authentication-Results", " mx.example.org.evil; none");
  t.observe("Authentication-Results-Original", " mx.example.org; none");
  EXPECT_EQ(t.count(), 5u);
  std::string out;
  EXPECT_EQ(t.append_deletions(out, "mx.example.org"), 3u);
  auto f = frames(out);
  ASSERT_EQ(f.size(), 3u);
  for (const auto& [code, data] : f) EXPECT_EQ(code, 'm');
  // The name as first seen; indexes 4, 3, 1 (2 is other.example, 5 another id).
  EXPECT_EQ(f[0].second, be32(4) + "Authentication-Results\0\0"s);
  EXPECT_EQ(f[1].second, be32(3) + "Authentication-Results\0\0"s);
  EXPECT_EQ(f[2].second, be32(1) + "Authentication-Results\0\0"s);

  out.clear();
  EXPECT_EQ(t.append_deletions(out, "elsewhere.example"), 0u);
  EXPECT_EQ(out, "");

  AuthResultsTracker many;
  for (size_t i = 0; i < AuthResultsTracker::kMaxFields + 10; ++i)
    many.observe("Authentication-Results", "mx.example.org; none");
  EXPECT_EQ(many.count(), AuthResultsTracker::kMaxFields);
  many.clear();
  EXPECT_EQ(many.count(), 0u);
}

TEST(MilterReplies, AuthenticationResultsEdits) {
  MilterNegotiated n = *negotiate({6, 0x1ff, 0x1fffff});
  AuthResultsTracker incoming;
  incoming.observe("Authentication-Results", " other.example; spf=fail");
  incoming.observe("Authentication-Results", " mx.example.org; dkim=pass header.d=forged.example");
  std::string out;
  append_authentication_results_edits(incoming, "mx.example.org",
                                      "mx.example.org; spf=pass smtp.mailfrom=example.net", n, out);
  auto f = frames(out);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].first, 'm');
  EXPECT_EQ(f[0].second, be32(2) + "Authentication-Results\0\0"s) << "ours deleted first";
  EXPECT_EQ(f[1].first, 'h');
  EXPECT_EQ(f[1].second,
            "Authentication-Results\0 mx.example.org; spf=pass smtp.mailfrom=example.net\0"s);

  // Off (no authserv-id): nothing at all, not even deletions.
  out.clear();
  append_authentication_results_edits(incoming, "", "x; none", n, out);
  EXPECT_EQ(out, "");

  // No value (the engine failed): deletions only. No CHGHEADER: the addition only.
  out.clear();
  append_authentication_results_edits(incoming, "mx.example.org", "", n, out);
  f = frames(out);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].first, 'm');
  MilterNegotiated add_only = *negotiate({6, milter::kActAddHeaders, 0});
  out.clear();
  append_authentication_results_edits(incoming, "mx.example.org", "mx.example.org; none", add_only,
                                      out);
  f = frames(out);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].second, "Authentication-Results\0mx.example.org; none\0"s);

  // A long value is folded ("\n\t") at spaces outside quoted strings, lines under 80.
  std::string value = "mx.example.org";
  for (int i = 0; i < 6; ++i)
    value += "; dkim=fail reason=\"signature did not verify at all\" header.d=d" +
             std::to_string(i) + ".example";
  out.clear();
  append_authentication_results_edits(AuthResultsTracker{}, "mx.example.org", value, add_only, out);
  f = frames(out);
  ASSERT_EQ(f.size(), 1u);
  std::string got = f[0].second.substr(f[0].second.find('\0') + 1);
  got.pop_back();
  EXPECT_NE(got.find("\n\t"), std::string::npos);
  EXPECT_EQ(got.find("did\n\t"), std::string::npos) << "never inside a quoted string";
  std::string unfolded;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] == '\n' && i + 1 < got.size() && got[i + 1] == '\t') {
      unfolded += ' ';
      ++i;
    } else {
      unfolded += got[i];
    }
  }
  EXPECT_EQ(unfolded, value);
  std::string line_text = "Authentication-Results: " + got;
  size_t start = 0;
  for (size_t pos = 0; pos <= line_text.size(); ++pos) {
    if (pos == line_text.size() || line_text[pos] == '\n') {
      EXPECT_LE(pos - start, 79u) << line_text.substr(start, pos - start);
      start = pos + 1;
    }
  }
}

}  // namespace
}  // namespace spamward
