// IMAP learning source (bayes/imap_source.h) without a network: modified UTF-7, command
// quoting, the response parser (literals, any split, limits, hostile input), the response
// shapes, the password-file check, the progress rules and store, and whole learning runs
// against a scripted fake server. The real-server test is tests/integration/test_imap_source.py.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include "bayes/imap_source.h"
#include "core/clock.h"
#include "state/store.h"

namespace spamward {
namespace {

using namespace std::string_literals;

// ---------------------------------------------------------------------------------------
// modified UTF-7 and quoting

TEST(ImapUtf7, EncodesAsRfc3501) {
  EXPECT_EQ(imap_utf7_encode("INBOX"), "INBOX");
  EXPECT_EQ(imap_utf7_encode("Ümlaut"), "&ANw-mlaut");  // as Dovecot names it
  EXPECT_EQ(imap_utf7_encode("Tom & Jerry"), "Tom &- Jerry");
  // RFC 3501 §5.1.3's example.
  EXPECT_EQ(
      imap_utf7_encode("~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"),
      "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
  EXPECT_EQ(imap_utf7_encode("\xf0\x9f\x98\x80"), "&2D3eAA-");  // U+1F600: a surrogate pair
  EXPECT_EQ(imap_utf7_encode("a\tb"), "a&AAk-b");               // controls are encoded too
  EXPECT_EQ(imap_utf7_encode(""), "");
}

TEST(ImapUtf7, RefusesInvalidUtf8) {
  EXPECT_FALSE(imap_utf7_encode("\xff"));
  EXPECT_FALSE(imap_utf7_encode("\xc3"));              // truncated
  EXPECT_FALSE(imap_utf7_encode("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(imap_utf7_encode("\xed\xa0\x80"));      // a surrogate
  EXPECT_FALSE(imap_utf7_encode("\xf4\x90\x80\x80"));  // over U+10FFFF
}

TEST(ImapUtf7, DecodeRoundTripsAndRejectsMalformed) {
  for (std::string s : {"Ümlaut"s, "Tom & Jerry"s, "日本語/台北"s, "\xf0\x9f\x98\x80 x"s, "a&b&&c"s,
                        "Ham/Ünread"s, "é"s}) {
    auto e = imap_utf7_encode(s);
    ASSERT_TRUE(e) << s;
    EXPECT_EQ(imap_utf7_decode(*e), s) << *e;
  }
  EXPECT_FALSE(imap_utf7_decode("&ANw"));      // unterminated
  EXPECT_FALSE(imap_utf7_decode("&AN/-"));     // '/' is not modified BASE64
  EXPECT_FALSE(imap_utf7_decode("&ANx-"));     // non-zero padding bits
  EXPECT_FALSE(imap_utf7_decode("&2D0-"));     // a lone high surrogate
  EXPECT_FALSE(imap_utf7_decode("&AEE-"));     // "A" encoded: must stand for itself
  EXPECT_FALSE(imap_utf7_decode("\xc3\x9c"));  // raw 8-bit
}

TEST(ImapQuoting, QuotesAndRefusesLineBreaks) {
  EXPECT_EQ(imap_quoted("Junk"), "\"Junk\"");
  EXPECT_EQ(imap_quoted(""), "\"\"");
  EXPECT_EQ(imap_quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(imap_quoted("with space"), "\"with space\"");
  EXPECT_FALSE(imap_quoted("a\r\nb"));
  EXPECT_FALSE(imap_quoted("a\nb"));
  EXPECT_FALSE(imap_quoted("a\rb"));
  EXPECT_FALSE(imap_quoted("a\0b"s));
  EXPECT_FALSE(imap_quoted("\xc3\x9c"));
}

TEST(ImapQuoting, MailboxArgument) {
  EXPECT_EQ(imap_mailbox_argument("Junk"), "\"Junk\"");
  EXPECT_EQ(imap_mailbox_argument("Ham/Ünread"), "\"Ham/&ANw-nread\"");
  EXPECT_EQ(imap_mailbox_argument("Say \"hi\""), "\"Say \\\"hi\\\"\"");
  EXPECT_EQ(imap_mailbox_argument("Not Spam"), "\"Not Spam\"");
  EXPECT_THROW(imap_mailbox_argument("Junk\r\nA1 DELETE INBOX"), ImapError);
  EXPECT_THROW(imap_mailbox_argument("Junk\n"), ImapError);
  EXPECT_THROW(imap_mailbox_argument(""), ImapError);
  EXPECT_THROW(imap_mailbox_argument("\xff"), ImapError);
  EXPECT_THROW(imap_mailbox_argument("a\tb"), ImapError);
  EXPECT_NE(imap_folder_problem("x\ny").find("line break"), std::string::npos);
  EXPECT_EQ(imap_folder_problem("Ümlaut"), "");
}

// ---------------------------------------------------------------------------------------
// the response parser

std::vector<ImapResponse> parse_all(std::string_view wire, size_t step, ImapLimits limits = {},
                                    std::string* error = nullptr) {
  ImapResponseParser p(limits);
  std::vector<ImapResponse> out;
  for (size_t i = 0; i < wire.size(); i += step) {
    p.feed(wire.substr(i, step));
    ImapResponse r;
    while (p.next(r)) out.push_back(r);
  }
  if (error) *error = p.error();
  return out;
}

TEST(ImapParser, KindsTagsAndText) {
  auto rs =
      parse_all("* OK [UIDVALIDITY 42] UIDs valid\r\n+ go on\r\nSW1 OK done\r\n* 3 EXISTS\n", 1000);
  ASSERT_EQ(rs.size(), 4u);
  EXPECT_EQ(rs[0].kind, ImapResponse::Kind::untagged);
  EXPECT_EQ(rs[0].text, "OK [UIDVALIDITY 42] UIDs valid");
  EXPECT_EQ(rs[1].kind, ImapResponse::Kind::continuation);
  EXPECT_EQ(rs[1].text, "go on");
  EXPECT_EQ(rs[2].kind, ImapResponse::Kind::tagged);
  EXPECT_EQ(rs[2].tag, "SW1");
  EXPECT_EQ(rs[2].text, "OK done");
  EXPECT_EQ(rs[3].text, "3 EXISTS");  // a bare LF line end is accepted
}

TEST(ImapParser, LiteralsHoldAnyBytesAndAnySplitGivesTheSame) {
  // The message's lines look like responses, our tag, and a literal announcement.
  std::string body = "From: a@b\r\n\r\nSW2 OK fake\r\n* BYE fake\r\n{5}\r\n\0x\r\n"s;
  std::string wire = "* 7 FETCH (UID 9 BODY[] {" + std::to_string(body.size()) + "}\r\n" + body +
                     " FLAGS (\\Seen))\r\nSW2 OK Fetch completed\r\n";
  auto whole = parse_all(wire, wire.size());
  ASSERT_EQ(whole.size(), 2u);
  ASSERT_EQ(whole[0].literals.size(), 1u);
  EXPECT_EQ(whole[0].literals[0], body);
  EXPECT_EQ(whole[0].text, "7 FETCH (UID 9 BODY[] \0 FLAGS (\\Seen))"s);
  EXPECT_FALSE(whole[0].truncated);
  for (size_t step = 1; step < 40; ++step) {
    auto split = parse_all(wire, step);
    ASSERT_EQ(split.size(), 2u) << step;
    EXPECT_EQ(split[0].literals, whole[0].literals) << step;
    EXPECT_EQ(split[0].text, whole[0].text) << step;
    EXPECT_EQ(split[1].tag, "SW2");
  }
}

TEST(ImapParser, EmptyAndSeveralLiterals) {
  auto rs = parse_all("* 1 FETCH (BODY[] {0}\r\n ENVELOPE (NIL {2}\r\nab {3+}\r\ncde))\r\n", 3);
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].literals, (std::vector<std::string>{"", "ab", "cde"}));
  EXPECT_EQ(rs[0].literal_sizes, (std::vector<uint64_t>{0, 2, 3}));
}

TEST(ImapParser, BracesThatAreNoLiteralAreText) {
  auto rs = parse_all("* OK hello {world}\r\n", 5);
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].text, "OK hello {world}");
  EXPECT_TRUE(rs[0].literals.empty());
}

TEST(ImapParser, LongLiteralIsCutAndTheStreamStaysInStep) {
  ImapLimits l;
  l.max_literal_bytes = 10;
  std::string wire = "* 1 FETCH (BODY[] {26}\r\nabcdefghijklmnopqrstuvwxyz)\r\nSW1 OK x\r\n";
  for (size_t step : {1u, 4u, 100u}) {
    auto rs = parse_all(wire, step, l);
    ASSERT_EQ(rs.size(), 2u);
    EXPECT_EQ(rs[0].literals[0], "abcdefghij");
    EXPECT_EQ(rs[0].literal_sizes[0], 26u);
    EXPECT_TRUE(rs[0].truncated);
    EXPECT_EQ(rs[1].tag, "SW1");
  }
}

TEST(ImapParser, LimitsAndMalformedInputAreErrors) {
  ImapLimits l;
  l.max_line_bytes = 100;
  std::string err;
  auto rs = parse_all("* " + std::string(200, 'x') + "\r\n", 7, l, &err);
  EXPECT_TRUE(rs.empty());
  EXPECT_NE(err.find("longer than 100"), std::string::npos) << err;

  // An endless line without a line end is bounded too.
  ImapResponseParser p(l);
  for (int i = 0; i < 1000; ++i) p.feed(std::string(50, 'y'));
  EXPECT_TRUE(p.failed());
  EXPECT_LE(p.buffered(), 200u);

  parse_all("* OK a\0b\r\n"s, 3, {}, &err);
  EXPECT_NE(err.find("NUL"), std::string::npos);
  parse_all("* 1 FETCH (BODY[] {99999999999999999999}\r\n", 3, {}, &err);
  EXPECT_NE(err.find("literal"), std::string::npos);
  parse_all("NOTAG\r\n", 3, {}, &err);
  EXPECT_NE(err.find("malformed"), std::string::npos);
  parse_all("(bad OK\r\n", 3, {}, &err);
  EXPECT_NE(err.find("malformed"), std::string::npos);
  ImapLimits few;
  few.max_literals = 2;
  parse_all("* X {1}\r\na {1}\r\nb {1}\r\nc\r\n", 2, few, &err);
  EXPECT_NE(err.find("literals"), std::string::npos);
  // After an error nothing more comes out.
  ImapResponseParser q;
  q.feed("* OK \0\r\n* OK fine\r\n"s);
  ImapResponse r;
  EXPECT_FALSE(q.next(r));
}

// ---------------------------------------------------------------------------------------
// response shapes

ImapResponse one(std::string_view wire) {
  auto rs = parse_all(wire, wire.size());
  if (rs.size() != 1) throw std::runtime_error("expected one response");
  return rs[0];
}

TEST(ImapShapes, Status) {
  auto s = parse_imap_status("OK [UIDVALIDITY 3857529045] UIDs valid");
  EXPECT_EQ(s.status, "OK");
  EXPECT_EQ(s.code, "UIDVALIDITY 3857529045");
  EXPECT_EQ(s.text, "UIDs valid");
  EXPECT_EQ(parse_imap_status("no Mailbox doesn't exist").status, "NO");
  EXPECT_EQ(parse_imap_status("3 EXISTS").status, "");
  EXPECT_EQ(parse_imap_status("BYE").status, "BYE");
}

TEST(ImapShapes, Search) {
  EXPECT_EQ(parse_imap_search(" 1 2 4294967295"), (std::vector<uint32_t>{1, 2, 4294967295u}));
  EXPECT_TRUE(parse_imap_search("").empty());
  EXPECT_THROW(parse_imap_search(" 1 0"), ImapError);
  EXPECT_THROW(parse_imap_search(" 4294967296"), ImapError);
  EXPECT_THROW(parse_imap_search(" 1:3"), ImapError);
  EXPECT_THROW(parse_imap_search(" -1"), ImapError);
  EXPECT_THROW(parse_imap_search(" 99999999999999999999999"), ImapError);
}

TEST(ImapShapes, Fetch) {
  auto f = parse_imap_fetch(
      one("* 12 FETCH (UID 40 RFC822.SIZE 5 FLAGS (\\Seen $Junk) BODY[]<0> {5}\r\nhello)\r\n"));
  ASSERT_TRUE(f);
  EXPECT_EQ(f->sequence, 12u);
  EXPECT_EQ(f->uid, 40u);
  EXPECT_EQ(f->size, 5u);
  EXPECT_EQ(f->body, "hello");
  EXPECT_FALSE(f->body_truncated);

  // Values we do not ask for are skipped, lists with literals and sections included.
  f = parse_imap_fetch(
      one("* 1 FETCH (ENVELOPE (\"date\" {3}\r\nsub ((NIL NIL \"a\" \"b\")) NIL) "
          "BODY[HEADER.FIELDS (SUBJECT)] {4}\r\nxxxx BODY[] \"quoted \\\"body\\\"\" UID 7)\r\n"));
  ASSERT_TRUE(f);
  EXPECT_EQ(f->uid, 7u);
  EXPECT_EQ(f->body, "quoted \"body\"");

  f = parse_imap_fetch(one("* 1 FETCH (UID 3 BODY[] NIL)\r\n"));
  ASSERT_TRUE(f);
  EXPECT_FALSE(f->body);

  EXPECT_FALSE(parse_imap_fetch(one("* 3 EXISTS\r\n")));
  EXPECT_FALSE(parse_imap_fetch(one("* OK fine\r\n")));
  EXPECT_FALSE(parse_imap_fetch(one("SW1 OK 1 FETCH\r\n")));
  EXPECT_THROW(parse_imap_fetch(one("* 1 FETCH UID 3\r\n")), ImapError);
  EXPECT_THROW(parse_imap_fetch(one("* 1 FETCH (UID 0)\r\n")), ImapError);
  EXPECT_THROW(parse_imap_fetch(one("* 1 FETCH (UID 4294967296)\r\n")), ImapError);
  EXPECT_THROW(parse_imap_fetch(one("* 1 FETCH (UID)\r\n")), ImapError);
  EXPECT_THROW(parse_imap_fetch(one("* 1 FETCH (UID 3 BODY[] (x))\r\n")), ImapError);
  EXPECT_THROW(parse_imap_fetch(one("* 1 FETCH (UID 3 FLAGS (\\Seen\r\n")), ImapError);
  EXPECT_THROW(parse_imap_fetch(one("* 1 FETCH (UID 3 BODY[] \"open\r\n")), ImapError);
  EXPECT_THROW(parse_imap_fetch(one("* 1 FETCH (BODY[TEXT 3)\r\n")), ImapError);
  EXPECT_THROW(parse_imap_fetch(one("* 0 FETCH (UID 3)\r\n")), ImapError);
  std::string deep = "* 1 FETCH (X " + std::string(100, '(') + std::string(100, ')') + ")\r\n";
  EXPECT_THROW(parse_imap_fetch(one(deep)), ImapError);

  ImapLimits l;
  l.max_literal_bytes = 3;
  auto rs = parse_all("* 1 FETCH (UID 3 BODY[] {5}\r\nhello)\r\n", 100, l);
  ASSERT_EQ(rs.size(), 1u);
  f = parse_imap_fetch(rs[0]);
  EXPECT_EQ(f->body, "hel");
  EXPECT_TRUE(f->body_truncated);
}

// ---------------------------------------------------------------------------------------
// password file

class PasswordFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        std::filesystem::temp_directory_path() / ("spamward-imap-pw-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text, mode_t mode) {
    auto p = (dir_ / name).string();
    std::ofstream(p, std::ios::binary) << text;
    ::chmod(p.c_str(), mode);
    return p;
  }
  static std::string error_of(const std::string& path) {
    try {
      read_imap_password_file(path);
    } catch (const ImapError& e) {
      return e.what();
    }
    return "";
  }
  std::filesystem::path dir_;
};

TEST_F(PasswordFile, ReadsTheFirstLine) {
  EXPECT_EQ(read_imap_password_file(write("a", "s3cret pw \"x\"\r\nignored\n", 0600)),
            "s3cret pw \"x\"");
  EXPECT_EQ(read_imap_password_file(write("b", "nonewline", 0400)), "nonewline");
}

TEST_F(PasswordFile, RefusesFilesOthersCanRead) {
  auto p = write("c", "pw\n", 0644);
  std::string e = error_of(p);
  EXPECT_NE(e.find("mode 0644"), std::string::npos) << e;
  EXPECT_NE(e.find(p), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos);
  EXPECT_NE(error_of(write("d", "pw\n", 0640)).find("mode 0640"), std::string::npos);
  EXPECT_NE(error_of(write("e", "pw\n", 0604)).find("mode 0604"), std::string::npos);
  EXPECT_NE(error_of(write("f", "pw\n", 0610)).find("mode 0610"), std::string::npos);
}

TEST_F(PasswordFile, RefusesOtherOwnersAndOddFiles) {
  if (::geteuid() == 0) {
    auto p = write("g", "pw\n", 0600);
    ASSERT_EQ(::chown(p.c_str(), 12345, 12345), 0);
    EXPECT_NE(error_of(p).find("owned by uid 12345"), std::string::npos) << error_of(p);
  }
  EXPECT_NE(error_of((dir_ / "missing").string()).find("cannot open"), std::string::npos);
  EXPECT_NE(error_of(dir_.string()).find("not a regular file"), std::string::npos);
  EXPECT_NE(error_of(write("h", "\npw\n", 0600)).find("empty"), std::string::npos);
  EXPECT_NE(error_of(write("i", "", 0600)).find("empty"), std::string::npos);
  EXPECT_NE(error_of(write("j", std::string(2000, 'p'), 0600)).find("longer"), std::string::npos);
  EXPECT_NE(error_of(write("k", "a\0b\n"s, 0600)).find("NUL"), std::string::npos);
  EXPECT_NE(error_of("").find("no password_file"), std::string::npos);
}

// ---------------------------------------------------------------------------------------
// progress

TEST(ImapProgressRules, Plan) {
  auto p = plan_imap_folder(std::nullopt, 7);
  EXPECT_EQ(p.from_uid, 1u);
  EXPECT_FALSE(p.restart);
  p = plan_imap_folder(ImapProgress{7, 41}, 7);
  EXPECT_EQ(p.from_uid, 42u);
  EXPECT_FALSE(p.restart);
  p = plan_imap_folder(ImapProgress{6, 41}, 7);
  EXPECT_EQ(p.from_uid, 1u);
  EXPECT_TRUE(p.restart);
  p = plan_imap_folder(ImapProgress{7, 4294967295u}, 7);
  EXPECT_FALSE(p.from_uid);
}

TEST(ImapProgressRules, UidsToFetch) {
  // "UID SEARCH UID 42:*" answers the highest UID even when it is below 42.
  EXPECT_TRUE(imap_uids_to_fetch({41}, 41).empty());
  EXPECT_EQ(imap_uids_to_fetch({50, 43, 41, 43, 42}, 41), (std::vector<uint32_t>{42, 43, 50}));
  EXPECT_EQ(imap_uids_to_fetch({3, 1, 2}, 0), (std::vector<uint32_t>{1, 2, 3}));
}

TEST(ImapProgressRules, KeyAndStore) {
  EXPECT_EQ(imap_progress_key("imaps://h:993/", "alice", "Junk"),
            imap_progress_key("imaps://h:993", "alice", "Junk"));
  EXPECT_NE(imap_progress_key("imaps://h", "alice", "Junk"),
            imap_progress_key("imaps://h", "alice", "junk"));
  EXPECT_NE(imap_progress_key("imaps://h", "a", "b\nc"),
            imap_progress_key("imaps://h", "a\nb", "c"))
      << "keys are unambiguous";

  FakeClock clock;
  auto store = make_memory_store(clock);
  StoreImapProgress progress(*store);
  const std::string key = imap_progress_key("imaps://h", "alice", "Junk");
  EXPECT_FALSE(progress.load(key));
  progress.save(key, {3857529045u, 17});
  EXPECT_EQ(progress.load(key), (ImapProgress{3857529045u, 17}));
  EXPECT_EQ(store->get("imap_progress", key), "1 3857529045 17");
  for (std::string bad : {"", "1", "1 x 3", "2 5 6", "1 0 5", "1 5 99999999999", "1 5 -1"}) {
    store->put("imap_progress", key, bad);
    EXPECT_FALSE(progress.load(key)) << bad;
  }
}

// ---------------------------------------------------------------------------------------
// whole runs against a scripted server

struct FakeFolder {
  uint32_t uidvalidity = 1000;
  std::map<uint32_t, std::string> messages;  // uid -> raw
  std::map<uint32_t, std::string> flags;
  uint32_t uidnext = 1;
  void add(std::string raw, std::string f = "") {
    flags[uidnext] = std::move(f);
    messages[uidnext++] = std::move(raw);
  }
};

// A tiny IMAP server: answers EXAMINE, UID SEARCH UID n:*, UID FETCH and LOGOUT as Dovecot
// does, in random-sized pieces; records every command. Hooks let a test break it.
class FakeServer final : public ImapTransport {
 public:
  std::map<std::string, FakeFolder> folders;  // by mailbox argument as sent (quoted mUTF-7)
  std::vector<std::string> commands;
  std::function<std::string(const std::string& tag, const std::string& cmd)> override_reply;
  std::string extra_before_fetch;  // sent before each FETCH answer (unsolicited responses)
  bool below_mark_in_search = true;

  // A new connection: nothing of the last one is left to read.
  void reconnect() {
    pending_command_.clear();
    out_.clear();
    selected_ = nullptr;
  }
  void send(std::string_view bytes) override {
    pending_command_ += bytes;
    size_t nl;
    while ((nl = pending_command_.find("\r\n")) != std::string::npos) {
      std::string line = pending_command_.substr(0, nl);
      pending_command_.erase(0, nl + 2);
      commands.push_back(line);
      answer(line);
    }
  }
  size_t receive(char* buffer, size_t size) override {
    if (out_.empty()) return 0;  // closed
    std::uniform_int_distribution<size_t> d(1, 64);
    size_t n = std::min({size, out_.size(), d(rng_)});
    std::copy_n(out_.begin(), n, buffer);
    out_.erase(out_.begin(), out_.begin() + static_cast<long>(n));
    return n;
  }

 private:
  void reply(const std::string& s) { out_.insert(out_.end(), s.begin(), s.end()); }
  void answer(const std::string& line) {
    size_t sp = line.find(' ');
    std::string tag = line.substr(0, sp), cmd = line.substr(sp + 1);
    if (override_reply) {
      std::string r = override_reply(tag, cmd);
      if (!r.empty()) return reply(r);
    }
    std::smatch m;
    if (std::regex_match(cmd, m, std::regex("EXAMINE (.*)"))) {
      auto it = folders.find(m[1]);
      if (it == folders.end()) return reply(tag + " NO Mailbox doesn't exist: x\r\n");
      selected_ = &it->second;
      reply("* FLAGS (\\Seen)\r\n* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n* " +
            std::to_string(selected_->messages.size()) + " EXISTS\r\n* OK [UIDVALIDITY " +
            std::to_string(selected_->uidvalidity) + "] UIDs valid\r\n* OK [UIDNEXT " +
            std::to_string(selected_->uidnext) + "] next\r\n" + tag +
            " OK [READ-ONLY] Examine completed.\r\n");
    } else if (std::regex_match(cmd, m, std::regex("UID SEARCH UID (\\d+):\\*"))) {
      uint32_t from = static_cast<uint32_t>(std::stoul(m[1]));
      std::string r = "* SEARCH";
      for (auto& [uid, _] : selected_->messages)
        if (uid >= from) r += " " + std::to_string(uid);
      if (r == "* SEARCH" && below_mark_in_search && !selected_->messages.empty())
        r += " " + std::to_string(selected_->messages.rbegin()->first);  // RFC 3501 "*"
      reply(r + "\r\n" + tag + " OK Search completed.\r\n");
    } else if (std::regex_match(
                   cmd, m,
                   std::regex("UID FETCH (\\d+) \\(RFC822.SIZE BODY.PEEK\\[\\]<0.(\\d+)>\\)"))) {
      uint32_t uid = static_cast<uint32_t>(std::stoul(m[1]));
      size_t max = std::stoul(m[2]);
      reply(extra_before_fetch);
      auto it = selected_->messages.find(uid);
      if (it != selected_->messages.end()) {
        std::string part = it->second.substr(0, max);
        reply("* " + std::to_string(std::distance(selected_->messages.begin(), it) + 1) +
              " FETCH (UID " + std::to_string(uid) + " RFC822.SIZE " +
              std::to_string(it->second.size()) + " BODY[]<0> {" + std::to_string(part.size()) +
              "}\r\n" + part + ")\r\n");
      }
      reply(tag + " OK Fetch completed.\r\n");
    } else if (cmd == "LOGOUT") {
      reply("* BYE Logging out\r\n" + tag + " OK Logout completed.\r\n");
    } else {
      reply(tag + " BAD Error in IMAP command\r\n");
    }
  }

  std::string pending_command_;
  std::deque<char> out_;
  FakeFolder* selected_ = nullptr;
  std::mt19937 rng_{42};
};

class MemoryProgress final : public ImapProgressStore {
 public:
  std::map<std::string, ImapProgress> saved;
  std::optional<ImapProgress> load(const std::string& key) override {
    auto it = saved.find(key);
    if (it == saved.end()) return std::nullopt;
    return it->second;
  }
  void save(const std::string& key, const ImapProgress& p) override { saved[key] = p; }
};

struct Learned {
  std::string raw;
  bool spam;
  std::string folder;
  uint32_t uid;
};

class ImapRun : public ::testing::Test {
 protected:
  void SetUp() override {
    account.url = "imaps://mail.example.test/";
    account.user = "alice";
    account.spam_folders = {"Junk"};
    account.ham_folders = {"Ham/Ünread"};
    server.folders["\"Junk\""].uidvalidity = 1000;
    server.folders["\"Ham/&ANw-nread\""].uidvalidity = 2000;
  }
  FakeFolder& junk() { return server.folders["\"Junk\""]; }
  FakeFolder& ham() { return server.folders["\"Ham/&ANw-nread\""]; }

  std::vector<ImapFolderReport> run(std::function<bool(const Learned&)> decide = nullptr) {
    server.reconnect();
    ImapSession session(server);
    auto sink = [&](const std::string& raw, bool spam, const std::string& folder, uint32_t uid) {
      learned.push_back({raw, spam, folder, uid});
      return decide ? decide(learned.back()) : true;
    };
    auto reports = learn_imap_folders(session, account, progress, sink, options);
    session.logout();
    return reports;
  }

  ImapAccount account;
  FakeServer server;
  MemoryProgress progress;
  ImapOptions options;
  std::vector<Learned> learned;
};

TEST_F(ImapRun, FetchesEverythingOnceThenOnlyNewMail) {
  junk().add("Subject: s1\r\n\r\nSW4 OK injected\r\n* 1 FETCH (UID 9 BODY[] {3}\r\n");
  junk().add("Subject: s2\r\n\r\nbody\r\n", "\\Seen");
  ham().add("Subject: h1\r\n\r\nhello\r\n");

  auto reports = run();
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_EQ(reports[0].folder, "Junk");
  EXPECT_TRUE(reports[0].is_spam);
  EXPECT_EQ(reports[0].fetched, 2u);
  EXPECT_EQ(reports[0].learned, 2u);
  EXPECT_EQ(reports[0].progress, (ImapProgress{1000, 2}));
  EXPECT_EQ(reports[1].folder, "Ham/Ünread");
  EXPECT_FALSE(reports[1].is_spam);
  EXPECT_EQ(reports[1].progress, (ImapProgress{2000, 1}));
  ASSERT_EQ(learned.size(), 3u);
  EXPECT_EQ(learned[0].raw, junk().messages[1]);
  EXPECT_EQ(learned[0].uid, 1u);
  EXPECT_TRUE(learned[0].spam);
  EXPECT_EQ(learned[2].folder, "Ham/Ünread");
  EXPECT_FALSE(learned[2].spam);

  // Read-only and PEEK only: never SELECT, never a FETCH that sets \Seen, never STORE.
  for (const auto& c : server.commands) {
    EXPECT_EQ(c.find("SELECT"), std::string::npos) << c;
    EXPECT_EQ(c.find("STORE"), std::string::npos) << c;
    if (c.find("FETCH") != std::string::npos) {
      EXPECT_NE(c.find("BODY.PEEK[]"), std::string::npos) << c;
    }
  }
  EXPECT_NE(std::find(server.commands.begin(), server.commands.end(), "SW1 EXAMINE \"Junk\""),
            server.commands.end());

  learned.clear();
  server.commands.clear();
  reports = run();
  EXPECT_TRUE(learned.empty());
  EXPECT_EQ(reports[0].fetched, 0u);
  EXPECT_EQ(reports[0].progress, (ImapProgress{1000, 2}));
  for (const auto& c : server.commands) EXPECT_EQ(c.find("FETCH"), std::string::npos) << c;

  junk().add("Subject: s3\r\n\r\n");
  junk().add("Subject: s4\r\n\r\n");
  reports = run();
  ASSERT_EQ(learned.size(), 2u);
  EXPECT_EQ(learned[0].uid, 3u);
  EXPECT_EQ(learned[1].uid, 4u);
  EXPECT_EQ(reports[0].progress, (ImapProgress{1000, 4}));
}

TEST_F(ImapRun, SearchAnswerBelowTheMarkIsNotFetchedAgain) {
  junk().add("a");
  junk().add("b");
  run();
  learned.clear();
  junk().uidnext = 10;  // UIDNEXT moved on (an expunged append) but no message is new
  run();
  EXPECT_TRUE(learned.empty());
}

TEST_F(ImapRun, UidvalidityChangeStartsOver) {
  junk().add("a");
  junk().add("b");
  run();
  learned.clear();
  junk().uidvalidity = 1001;
  auto reports = run();
  EXPECT_TRUE(reports[0].restarted);
  EXPECT_EQ(learned.size(), 2u);
  EXPECT_EQ(reports[0].progress, (ImapProgress{1001, 2}));
  learned.clear();
  reports = run();
  EXPECT_FALSE(reports[0].restarted);
  EXPECT_TRUE(learned.empty());
}

TEST_F(ImapRun, SinkDecidesAndAThrowKeepsTheProgressMade) {
  for (int i = 0; i < 5; ++i) junk().add("m" + std::to_string(i));
  // false: not learned, but progress moves on.
  auto reports = run([](const Learned& l) { return l.uid % 2 == 0; });
  EXPECT_EQ(reports[0].fetched, 5u);
  EXPECT_EQ(reports[0].learned, 2u);

  for (int i = 5; i < 10; ++i) junk().add("m" + std::to_string(i));
  learned.clear();
  EXPECT_THROW(run([](const Learned& l) -> bool {
                 if (l.uid == 8) throw std::runtime_error("learner failed");
                 return true;
               }),
               std::runtime_error);
  EXPECT_EQ(progress.saved[imap_progress_key(account.url, "alice", "Junk")].last_uid, 7u);
  learned.clear();
  run();
  ASSERT_EQ(learned.size(), 3u);
  EXPECT_EQ(learned[0].uid, 8u);
}

TEST_F(ImapRun, MissingFolderIsReportedAndTheOthersGoOn) {
  account.spam_folders = {"Nope", "Junk"};
  junk().add("a");
  auto reports = run();
  ASSERT_EQ(reports.size(), 3u);
  EXPECT_NE(reports[0].error.find("EXAMINE Nope refused: NO"), std::string::npos);
  EXPECT_EQ(reports[1].fetched, 1u);
}

TEST_F(ImapRun, UnsolicitedAndVanishedMessagesAreHandled) {
  junk().add("a");
  junk().add("b");
  junk().add("c");
  server.extra_before_fetch =
      "* 1 FETCH (FLAGS (\\Seen))\r\n* 2 EXPUNGE\r\n* 9 FETCH (UID 77 BODY[] {1}\r\nz)\r\n";
  server.override_reply = [&](const std::string& tag, const std::string& cmd) -> std::string {
    if (cmd.starts_with("UID FETCH 2 ")) return tag + " OK Fetch completed (gone).\r\n";
    return "";
  };
  auto reports = run();
  ASSERT_EQ(learned.size(), 2u);
  EXPECT_EQ(learned[0].raw, "a");
  EXPECT_EQ(learned[1].raw, "c");
  EXPECT_EQ(reports[0].progress.last_uid, 3u);
}

TEST_F(ImapRun, LargeMessagesAreCut) {
  options.max_message_bytes = 10;
  junk().add(std::string(100, 'x'));
  auto reports = run();
  ASSERT_EQ(learned.size(), 1u);
  EXPECT_EQ(learned[0].raw, std::string(10, 'x'));
  EXPECT_EQ(reports[0].truncated, 1u);
}

TEST_F(ImapRun, BadServerInputIsAnErrorNotACrash) {
  junk().add("a");
  // (command it answers, reply): every one must end the run with an ImapError. "{tag}" is
  // replaced by the command's tag.
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"*", "* BYE server shutting down\r\n"},
      {"*", "XX OK wrong tag\r\n"},
      {"*", "garbage\r\n"},
      {"*", "* 1 FETCH (UID 1 BODY[] {5}\r\nab"},  // then the connection closes
      {"*", "* 1 FETCH (UID 1 BODY[] {99999999999999999999}\r\n"},
      {"*", "{tag} MAYBE\r\n"},
      {"*", "+ more please\r\n"},
      {"*", "* OK \0\r\n"s},
      {"EXAMINE", "* OK [UIDVALIDITY 0] zero\r\n{tag} OK\r\n"},
      {"EXAMINE", "{tag} OK no uidvalidity\r\n"},
      {"UID SEARCH", "* SEARCH 1 two 3\r\n{tag} OK\r\n"},
      {"UID FETCH", "* 1 FETCH (UID 1 BODY[] (x))\r\n{tag} OK\r\n"},
      {"UID FETCH", "* 1 FETCH (UID 1 BODY[] \"open\r\n{tag} OK\r\n"},
  };
  for (const auto& [only, b] : bad) {
    for (const char* which : {"EXAMINE", "UID SEARCH", "UID FETCH"}) {
      if (only != "*" && only != which) continue;
      FakeServer s;
      s.folders["\"Junk\""] = junk();
      s.override_reply = [&](const std::string& tag, const std::string& cmd) -> std::string {
        if (!cmd.starts_with(which)) return "";
        std::string r = b;
        for (size_t p; (p = r.find("{tag}")) != std::string::npos;) r.replace(p, 5, tag);
        return r;
      };
      ImapSession session(s);
      MemoryProgress mp;
      ImapAccount a = account;
      a.ham_folders.clear();
      auto sink = [](const std::string&, bool, const std::string&, uint32_t) { return true; };
      EXPECT_THROW(learn_imap_folders(session, a, mp, sink), ImapError) << which << ": " << b;
    }
  }
}

TEST_F(ImapRun, EmptyFolderAsksNothing) {
  auto reports = run();
  EXPECT_EQ(reports[0].progress, (ImapProgress{1000, 0}));
  for (const auto& c : server.commands) EXPECT_EQ(c.find("SEARCH"), std::string::npos) << c;
}

}  // namespace
}  // namespace spamward
