// Bayes tokenizer (bayes/tokenizer.h) and token hash (bayes/token_hash.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "bayes/token_hash.h"
#include "bayes/tokenizer.h"
#include "mail/message.h"

using namespace spamward;

namespace {

std::vector<std::string> texts(std::string_view raw, TokenizerOptions o = {}) {
  o.keep_text = true;
  return tokenize(parse_message(raw), o).texts;
}

bool has(const std::vector<std::string>& v, std::string_view t) {
  return std::find(v.begin(), v.end(), t) != v.end();
}

bool has_prefix(const std::vector<std::string>& v, std::string_view p) {
  return std::any_of(v.begin(), v.end(), [&](const std::string& s) { return s.starts_with(p); });
}

const char kPlain[] =
    "From: Alice Example <alice@mail.example.co.uk>\n"
    "To: bob@example.org, carol@example.net\n"
    "Subject: Cheap pills today\n"
    "Message-ID: <abc123@mail.example.co.uk>\n"
    "Received: from mx.sender.example.com (mx.sender.example.com [192.0.2.7]) by mx.example.org\n"
    "X-Mailer: Fancy Mailer 3.1\n"
    "X-Spam-Status: Yes, score=99 poisonword\n"
    "X-Spam-Flag: YES\n"
    "X-Spamward-Symbols: BAYES_SPAM\n"
    "X-Bogosity: Spam, tests=bogofilter\n"
    "X-Virus-Scanned: poisonvirus\n"
    "Authentication-Results: mx.example.org; spf=pass poisonauth\n"
    "X-DSPAM-Result: Spam\n"
    "X-Rspamd-Score: 20\n"
    "Status: RO\n"
    "X-Keywords: Junk\n"
    "Content-Type: text/plain; charset=us-ascii\n"
    "\n"
    "Buy cheap pills now at http://shop.pills.example.co.uk/buy today!!!\n";

}  // namespace

TEST(TokenHash, SipHashReferenceVectors) {
  // SipHash-2-4, key 00..0f: the reference implementation's vectors for inputs 00..(n-1).
  EXPECT_EQ(token_hash(""), 0x726fdb47dd0e0e31ULL);
  std::string m;
  for (int i = 0; i < 15; ++i) m.push_back(static_cast<char>(i));
  EXPECT_EQ(token_hash(m), 0xa129ca6149be45e5ULL);
  m.clear();
  for (int i = 0; i < 8; ++i) m.push_back(static_cast<char>(i));
  EXPECT_EQ(token_hash(m), 0x93f5f5799a932462ULL);
  // Pinned values of real tokens: a change here orphans every stored database.
  EXPECT_EQ(token_hash("viagra"), token_hash(std::string("viagra")));
  EXPECT_NE(token_hash("viagra"), token_hash("Viagra"));
  EXPECT_NE(token_pair_hash(1, 2, 1), token_pair_hash(2, 1, 1));
  EXPECT_NE(token_pair_hash(1, 2, 1), token_pair_hash(1, 2, 2));
}

TEST(BayesTokenizer, BodyWordsHeadersUrlsAndMeta) {
  auto t = texts(kPlain);
  EXPECT_TRUE(has(t, "cheap"));
  EXPECT_TRUE(has(t, "pills"));
  EXPECT_FALSE(has(t, "Buy"));  // case folded
  EXPECT_TRUE(has(t, "buy"));
  EXPECT_TRUE(has(t, "!!!"));
  EXPECT_TRUE(has(t, "subject:cheap"));
  EXPECT_TRUE(has(t, "from:addr:alice@mail.example.co.uk"));
  EXPECT_TRUE(has(t, "from:org:example.co.uk"));  // registrable domain through libpsl
  EXPECT_TRUE(has(t, "from:name:alice"));
  EXPECT_TRUE(has(t, "to:dom:example.org"));
  EXPECT_TRUE(has(t, "to:count:2"));
  EXPECT_TRUE(has(t, "received:host:mx.sender.example.com"));
  EXPECT_TRUE(has(t, "received:org:example.com"));
  EXPECT_TRUE(has(t, "received:ip:192.0.2"));
  EXPECT_TRUE(has(t, "message-id:dom:mail.example.co.uk"));
  EXPECT_TRUE(has(t, "x-mailer=fancy mailer 3.1"));
  EXPECT_TRUE(has(t, "url:host:shop.pills.example.co.uk"));
  EXPECT_TRUE(has(t, "url:org:example.co.uk"));
  EXPECT_TRUE(has(t, "content-type:text/plain"));
  EXPECT_TRUE(has_prefix(t, "meta:size:"));
  EXPECT_TRUE(has(t, "part:type:text/plain"));
}

TEST(BayesTokenizer, FilterAndMailboxHeadersAreNotEvidence) {
  for (const char* name : {"X-Spam-Status", "x-spam-flag", "X-Spamward-Symbols", "X-Bogosity",
                           "X-Virus-Scanned", "Authentication-Results", "X-DSPAM-Result",
                           "X-Rspamd-Score", "Status", "X-Keywords", "Received-SPF"}) {
    EXPECT_TRUE(ignored_header(name)) << name;
  }
  EXPECT_FALSE(ignored_header("Subject"));
  EXPECT_FALSE(ignored_header("X-Mailer"));
  EXPECT_FALSE(ignored_header("X-Spa"));

  auto t = texts(kPlain);
  for (const auto& s : t) {
    EXPECT_EQ(s.find("poison"), std::string::npos) << s;
    EXPECT_EQ(s.find("spam"), std::string::npos) << s;
    EXPECT_EQ(s.find("bogosity"), std::string::npos) << s;
    EXPECT_EQ(s.find("virus"), std::string::npos) << s;
    EXPECT_EQ(s.find("authentication-results"), std::string::npos) << s;
    EXPECT_EQ(s.find("keywords"), std::string::npos) << s;
    EXPECT_EQ(s.find("dspam"), std::string::npos) << s;
    EXPECT_EQ(s.find("rspamd"), std::string::npos) << s;
  }
  // The same message without those fields gives exactly the same tokens.
  std::string bare;
  std::string_view rest = kPlain;
  while (!rest.empty()) {
    size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl + 1);
    rest.remove_prefix(nl + 1);
    size_t colon = line.find(':');
    if (colon != std::string_view::npos && line.find(' ') > colon &&
        ignored_header(line.substr(0, colon))) {
      continue;
    }
    bare += line;
  }
  auto a = tokenize(parse_message(kPlain)).hashes;
  auto b = tokenize(parse_message(bare)).hashes;
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  EXPECT_EQ(a, b);
}

TEST(BayesTokenizer, OrthogonalSparseBigrams) {
  TokenizerOptions o;
  o.osb_window = 5;
  auto t = texts("Subject: xy\n\nalpha beta gamma delta epsilon zeta\n", o);
  EXPECT_TRUE(has(t, "alpha <1> beta"));
  EXPECT_TRUE(has(t, "alpha <2> gamma"));
  EXPECT_TRUE(has(t, "alpha <4> epsilon"));
  EXPECT_FALSE(has(t, "alpha <5> zeta"));  // outside the window of 5 words
  EXPECT_TRUE(has(t, "beta <4> zeta"));
  EXPECT_TRUE(has(t, "subject:xy"));
  // Off by default (see TokenizerOptions::osb_window).
  auto plain = texts("Subject: x\n\nalpha beta gamma\n");
  EXPECT_FALSE(has_prefix(plain, "alpha <"));
  EXPECT_TRUE(has(plain, "alpha"));
}

TEST(BayesTokenizer, NfkcAndCaseFolding) {
  EXPECT_EQ(normalize_text("FREE"), "free");
  EXPECT_EQ(normalize_text("\xEF\xBC\xA6\xEF\xBC\xB2\xEF\xBC\xA5\xEF\xBC\xA5"),
            "free");  // fullwidth
  EXPECT_EQ(normalize_text("fr\xC2\xAD"
                           "ee"),
            "free");  // soft hyphen removed
  EXPECT_EQ(normalize_text("Stra\xC3\x9F"
                           "e"),
            "strasse");  // ß case-folds to ss
  EXPECT_EQ(normalize_text("\xEF\xAC\x81"
                           "nance"),
            "finance");  // ﬁ ligature
  EXPECT_EQ(normalize_text("\xCE\xA3\xCE\x9F\xCE\xA6\xCE\x9F\xCE\xA3"),
            "\xCF\x83\xCE\xBF\xCF\x86\xCE\xBF\xCF\x83");  // ΣΟΦΟΣ -> σοφοσ
  auto t = texts(
      "Content-Type: text/plain; charset=utf-8\n\n\xEF\xBC\xA6\xEF\xBC\xB2\xEF\xBC\xA5\xEF\xBC\xA5 "
      "money\n");
  EXPECT_TRUE(has(t, "free"));
  auto cjk = texts("Content-Type: text/plain; charset=utf-8\n\n\xE4\xBD\xA0\xE5\xA5\xBD\n");
  EXPECT_TRUE(has(cjk, "\xE4\xBD\xA0"));  // one Han character, one word
  EXPECT_TRUE(has(cjk, "\xE5\xA5\xBD"));
}

TEST(BayesTokenizer, HtmlIsTextAndAttachmentsAreMeta) {
  const char* raw =
      "From: a@example.org\n"
      "Content-Type: multipart/mixed; boundary=XYZ\n"
      "\n"
      "--XYZ\n"
      "Content-Type: text/html\n"
      "\n"
      "<html><body><p>Hello <b>winner</b></p><a "
      "href=\"http://win.example.net/x\">here</a></body></html>\n"
      "--XYZ\n"
      "Content-Type: application/octet-stream; name=\"invoice.exe\"\n"
      "Content-Disposition: attachment; filename=\"invoice.exe\"\n"
      "Content-Transfer-Encoding: base64\n"
      "\n"
      "TVqQAAMAAAAEAAAA\n"
      "--XYZ--\n";
  auto t = texts(raw);
  EXPECT_TRUE(has(t, "winner"));
  EXPECT_FALSE(has(t, "body"));  // tags are not words
  EXPECT_TRUE(has(t, "meta:html-only"));
  EXPECT_TRUE(has(t, "attachment:ext:exe"));
  EXPECT_TRUE(has(t, "attachment:type:application/octet-stream"));
  EXPECT_TRUE(has(t, "url:host:win.example.net"));
}

TEST(BayesTokenizer, SameMessageSameTokens) {
  auto a = tokenize(parse_message(kPlain));
  auto b = tokenize(parse_message(kPlain));
  EXPECT_EQ(a.hashes, b.hashes);
  EXPECT_FALSE(a.hashes.empty());
  auto sorted = a.hashes;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end());  // distinct
}

TEST(BayesTokenizer, HostileInputIsBounded) {
  // A huge word, a flood of distinct words, and a long header: limits hold.
  std::string raw = "Subject: " + std::string(100000, 'x') + "\n\n";
  raw.append(5000, 'a');  // (not string + string: GCC 12 warns falsely)
  raw += '\n';
  for (int i = 0; i < 200000; ++i) raw += "w" + std::to_string(i) + " ";
  TokenizerOptions o;
  o.max_tokens = 1000;
  o.keep_text = true;
  Message m = parse_message(raw);
  TokenList t = tokenize(m, o);
  EXPECT_LE(t.hashes.size(), 1000u);
  EXPECT_TRUE(t.limited);
  for (const auto& s : t.texts) EXPECT_LE(s.size(), 200u) << s.substr(0, 50);
  EXPECT_TRUE(has(t.texts, "meta:long-word:13"));  // 5000 letters: not a token, a length bucket

  // Text past max_text_bytes is not read.
  TokenizerOptions small;
  small.max_text_bytes = 100;
  small.keep_text = true;
  auto s =
      tokenize(parse_message("Subject: s\n\n" + std::string(200, ' ') + "latewords here\n"), small);
  EXPECT_FALSE(has(s.texts, "latewords"));
  EXPECT_TRUE(s.limited);
}

TEST(BayesTokenizer, HeaderFieldTokensShareAGroup) {
  TokenizerOptions o;
  o.keep_text = true;
  TokenList t = tokenize(parse_message(kPlain), o);
  ASSERT_EQ(t.groups.size(), t.hashes.size());
  auto group_of = [&](std::string_view text) -> int {
    for (size_t i = 0; i < t.texts.size(); ++i) {
      if (t.texts[i] == text) return t.groups[i];
    }
    ADD_FAILURE() << "no token " << text;
    return -1;
  };
  // One field: one group, whatever its tokens say.
  EXPECT_NE(group_of("from:addr:alice@mail.example.co.uk"), 0);
  EXPECT_EQ(group_of("from:addr:alice@mail.example.co.uk"), group_of("from:org:example.co.uk"));
  EXPECT_EQ(group_of("received:host:mx.sender.example.com"), group_of("received:ip:192.0.2"));
  EXPECT_NE(group_of("from:org:example.co.uk"), group_of("received:ip:192.0.2"));
  // The presence of a field is a group apart from its value; the same field in another
  // message is the same group.
  EXPECT_NE(group_of("header:x-mailer"), 0);
  EXPECT_NE(group_of("x-mailer=fancy mailer 3.1"), group_of("header:x-mailer"));
  TokenList t2 = tokenize(parse_message("From: x@mail.example.co.uk\n\nhello\n"), o);
  for (size_t i = 0; i < t2.texts.size(); ++i) {
    if (t2.texts[i] == "from:org:example.co.uk") {
      EXPECT_EQ(t2.groups[i], group_of("from:org:example.co.uk"));
    }
  }
  // Subject and body words, URL and meta tokens are independent clues (group 0).
  EXPECT_EQ(group_of("subject:cheap"), 0);
  EXPECT_EQ(group_of("cheap"), 0);
  EXPECT_EQ(group_of("url:host:shop.pills.example.co.uk"), 0);
  EXPECT_EQ(group_of("part:type:text/plain"), 0);
}
