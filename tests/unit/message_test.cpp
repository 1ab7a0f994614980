// MessageParser (mail/message.h) and its helpers: charset.h, rfc2047.h, mime_header.h,
// transfer_decode.h, html_text.h, url_extract.h.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mail/charset.h"
#include "mail/html_text.h"
#include "mail/message.h"
#include "mail/mime_header.h"
#include "mail/rfc2047.h"
#include "mail/transfer_decode.h"
#include "mail/url_extract.h"

using namespace spamward;

namespace {

// Every field of a Message, for comparing two parses.
std::string dump(const Message& m) {
  std::string s;
  for (const auto& h : m.headers) s += "H[" + h.name + "|" + h.raw + "|" + h.value + "]\n";
  s += "B[" + m.raw_body + "]\n";
  for (const auto& p : m.parts) {
    s += "P[" + p.content_type + "|" + p.charset + "|" + p.transfer_encoding + "|" + p.filename +
         "|" + std::to_string(p.attachment) + std::to_string(p.html) +
         std::to_string(p.charset_guessed) + "|" + std::to_string(p.decoded_size) + "|" + p.text +
         "]\n";
  }
  for (const auto& u : m.urls) s += "U[" + u + "]\n";
  for (const auto& h : m.url_hosts) s += "D[" + h + "]\n";
  for (const auto& d : m.defects) s += "X[" + d + "]\n";
  s += std::to_string(m.raw_size) + " " + std::to_string(m.truncated) + " " +
       std::to_string(m.header_8bit) + "\n";
  return s;
}

std::string crlf(std::string_view lf) {
  std::string out;
  for (char c : lf) {
    if (c == '\n') out += '\r';
    out += c;
  }
  return out;
}

bool has_defect(const Message& m, std::string_view what) {
  for (const auto& d : m.defects) {
    if (d.find(what) != std::string::npos) return true;
  }
  return false;
}

const char kMultipart[] =
    "From: Alice <alice@example.org>\n"
    "To: bob@example.net\n"
    "Subject: =?utf-8?B?R3LDvMOfZSBhdXMgS8O2bG4g4oKs?=\n"
    "MIME-Version: 1.0\n"
    "Content-Type: multipart/mixed;\n"
    "\tboundary=\"outer\"\n"
    "\n"
    "This is the preamble.\n"
    "--outer\n"
    "Content-Type: multipart/alternative; boundary=inner\n"
    "\n"
    "--inner\n"
    "Content-Type: text/plain; charset=iso-8859-1\n"
    "Content-Transfer-Encoding: quoted-printable\n"
    "\n"
    "Caf=E9 cr=\n"
    "=E8me, see http://www.example.com/a?b=3D1.\n"
    "--inner\n"
    "Content-Type: text/html; charset=utf-8\n"
    "\n"
    "<html><head><style>p {color:red}</style><script>var x='<p>no</p>';</script></head>\n"
    "<body><p>Hello&nbsp;&amp; welcome</p><a href=\"https://Click.Example.ORG/x\">here</a>"
    "</body></html>\n"
    "--inner--\n"
    "\n"
    "--outer\n"
    "Content-Type: application/pdf; name=\"doc.pdf\"\n"
    "Content-Disposition: attachment; filename=\"report.pdf\"\n"
    "Content-Transfer-Encoding: base64\n"
    "\n"
    "JVBERi0xLjQK\n"
    "--outer--\n"
    "epilogue\n";

// --- whole messages ------------------------------------------------------------------------

TEST(MessageParser, SimpleMessage) {
  const std::string raw =
      "From: a@example.org\nSubject: hello\n  world\nX-Empty:\n\nBody line 1\nBody line 2\n";
  const Message m = parse_message(raw);
  ASSERT_EQ(m.headers.size(), 3u);
  EXPECT_EQ(m.headers[0].name, "From");
  EXPECT_EQ(m.headers[0].value, "a@example.org");
  EXPECT_EQ(m.headers[1].raw, "Subject: hello\n  world\n");
  EXPECT_EQ(m.headers[1].value, "hello  world");
  EXPECT_EQ(m.headers[2].value, "");
  EXPECT_EQ(m.raw_body, "Body line 1\nBody line 2\n");
  ASSERT_EQ(m.parts.size(), 1u);
  EXPECT_EQ(m.parts[0].content_type, "text/plain");
  EXPECT_EQ(m.parts[0].text, "Body line 1\nBody line 2");
  EXPECT_EQ(m.raw_size, raw.size());
  EXPECT_FALSE(m.truncated);
  EXPECT_FALSE(m.header_8bit);
  EXPECT_TRUE(m.defects.empty());
}

TEST(MessageParser, HeaderLookupIsCaseInsensitive) {
  const Message m = parse_message("Received: a\nreceived: b\nSUBJECT: s\n\nx\n");
  ASSERT_NE(m.header("subject"), nullptr);
  EXPECT_EQ(m.header("Subject")->value, "s");
  EXPECT_EQ(m.headers_named("RECEIVED").size(), 2u);
  EXPECT_EQ(m.header("X-Missing"), nullptr);
}

TEST(MessageParser, CrlfAndLfGiveTheSameText) {
  const Message lf = parse_message(kMultipart);
  const Message cr = parse_message(crlf(kMultipart));
  ASSERT_EQ(lf.parts.size(), cr.parts.size());
  for (size_t i = 0; i < lf.parts.size(); ++i) {
    EXPECT_EQ(lf.parts[i].text, cr.parts[i].text) << i;
    EXPECT_EQ(lf.parts[i].content_type, cr.parts[i].content_type) << i;
  }
  ASSERT_EQ(lf.headers.size(), cr.headers.size());
  for (size_t i = 0; i < lf.headers.size(); ++i) {
    EXPECT_EQ(lf.headers[i].value, cr.headers[i].value);
    EXPECT_EQ(crlf(lf.headers[i].raw), cr.headers[i].raw);  // raw keeps the CRLF
  }
  EXPECT_EQ(crlf(lf.raw_body), cr.raw_body);
  EXPECT_EQ(lf.urls, cr.urls);
}

TEST(MessageParser, RawHeaderBytesArePreservedExactly) {
  const std::string header =
      "DKIM-Signature: v=1; a=rsa-sha256;\r\n"
      "\tb=abc\r\n"
      "\t def ;\r\n"
      "Subject :  odd  spacing \r\n"
      "X-Long: a\r\n"
      "   \r\n"
      "  b\r\n";
  const std::string raw = header + "\r\nbody\r\n";
  const Message m = parse_message(raw);
  std::string joined;
  for (const auto& h : m.headers) joined += h.raw;
  EXPECT_EQ(joined, header);
  ASSERT_EQ(m.headers.size(), 3u);
  EXPECT_EQ(m.headers[0].value, "v=1; a=rsa-sha256;\tb=abc\t def ;");
  EXPECT_EQ(m.headers[1].name, "Subject");
  EXPECT_EQ(m.headers[1].value, "odd  spacing");
  EXPECT_EQ(m.raw_body, "body\r\n");
}

TEST(MessageParser, MboxFromLineIsSkipped) {
  const Message m = parse_message(
      "From alice@example.org  Thu Aug 22 12:36:23 2002\n"
      "From: alice@example.org\n\nhi\n");
  ASSERT_EQ(m.headers.size(), 1u);
  EXPECT_EQ(m.headers[0].name, "From");
  EXPECT_EQ(m.parts[0].text, "hi");
  EXPECT_TRUE(m.defects.empty());
}

TEST(MessageParser, FeedingInPiecesEqualsOneShot) {
  for (const std::string& raw : {std::string(kMultipart), crlf(kMultipart)}) {
    const std::string want = dump(parse_message(raw));
    for (size_t cut = 0; cut <= raw.size(); ++cut) {
      MessageParser p;
      p.feed(std::string_view(raw).substr(0, cut));
      p.feed(std::string_view(raw).substr(cut));
      ASSERT_EQ(dump(p.finish()), want) << "split at " << cut;
    }
    MessageParser bytewise;
    for (char c : raw) bytewise.feed(std::string_view(&c, 1));
    EXPECT_EQ(dump(bytewise.finish()), want);
  }
}

TEST(MessageParser, NestedMultipart) {
  const Message m = parse_message(kMultipart);
  EXPECT_EQ(m.header("subject")->value, "Grüße aus Köln €");
  ASSERT_EQ(m.parts.size(), 3u);

  const BodyPart& plain = m.parts[0];
  EXPECT_EQ(plain.content_type, "text/plain");
  EXPECT_EQ(plain.charset, "iso-8859-1");
  EXPECT_EQ(plain.transfer_encoding, "quoted-printable");
  EXPECT_EQ(plain.text, "Café crème, see http://www.example.com/a?b=1.");
  EXPECT_FALSE(plain.attachment);

  const BodyPart& html = m.parts[1];
  EXPECT_TRUE(html.html);
  EXPECT_EQ(html.text, "Hello & welcome\nhere");

  const BodyPart& pdf = m.parts[2];
  EXPECT_EQ(pdf.content_type, "application/pdf");
  EXPECT_EQ(pdf.filename, "report.pdf");  // Content-Disposition wins over name=
  EXPECT_TRUE(pdf.attachment);
  EXPECT_EQ(pdf.decoded_size, 9u);  // "%PDF-1.4\n"
  EXPECT_TRUE(pdf.text.empty());

  EXPECT_EQ(m.urls, (std::vector<std::string>{"http://www.example.com/a?b=1",
                                              "https://Click.Example.ORG/x"}));
  EXPECT_EQ(m.url_hosts, (std::vector<std::string>{"www.example.com", "click.example.org"}));
  EXPECT_TRUE(m.defects.empty()) << dump(m);
  EXPECT_TRUE(m.raw_body.starts_with("This is the preamble.\n--outer\n"));
  EXPECT_TRUE(m.raw_body.ends_with("--outer--\nepilogue\n"));
}

TEST(MessageParser, MissingCloseBoundaryIsTolerated) {
  const Message m = parse_message(
      "Content-Type: multipart/mixed; boundary=b1\n\n"
      "--b1\nContent-Type: multipart/alternative; boundary=b2\n\n"
      "--b2\n\ninner text\n"
      "--b1\n\nsecond\n");
  ASSERT_EQ(m.parts.size(), 2u);
  EXPECT_EQ(m.parts[0].text, "inner text");
  EXPECT_EQ(m.parts[1].text, "second");
  EXPECT_TRUE(has_defect(m, "missing close boundary"));
  EXPECT_FALSE(m.truncated);
}

TEST(MessageParser, MultipartWithoutPartsIsReadAsText) {
  // The declared boundary never appears (seen in spam): the body is what clients show.
  const Message m = parse_message(
      "Content-Type: multipart/alternative; boundary=\"=Multipart Boundary 1\"\n\n"
      "--= Multipart Boundary 1\nContent-Type: text/plain\n\nBuy now at www.spam.example\n");
  ASSERT_EQ(m.parts.size(), 1u);
  EXPECT_EQ(m.parts[0].text,
            "--= Multipart Boundary 1\nContent-Type: text/plain\n\nBuy now at www.spam.example");
  EXPECT_EQ(m.url_hosts, std::vector<std::string>{"www.spam.example"});
  EXPECT_TRUE(has_defect(m, "without parts"));
}

TEST(MessageParser, PreambleAndEpilogueAreIgnored) {
  const Message m = parse_message(
      "Content-Type: multipart/mixed; boundary=\"=_x\"\n\npreamble http://pre.example.com/\n"
      "--=_x\n\none\n--=_x  \n\ntwo\n--=_x--\nepilogue http://epi.example.com/\n");
  ASSERT_EQ(m.parts.size(), 2u);
  EXPECT_EQ(m.parts[0].text, "one");
  EXPECT_EQ(m.parts[1].text, "two");
  EXPECT_TRUE(m.urls.empty());
}

TEST(MessageParser, MessageRfc822PartsAreLeafParts) {
  const Message m = parse_message(
      "Subject: outer\nContent-Type: multipart/mixed; boundary=b\n\n"
      "--b\n\nSee the forwarded mail.\n"
      "--b\nContent-Type: message/rfc822\n\n"
      "Subject: inner\nContent-Type: multipart/alternative; boundary=c\n\n"
      "--c\nContent-Type: text/plain\n\ninner plain\n"
      "--c\nContent-Type: text/html\n\n<b>inner</b> html\n"
      "--c--\n"
      "--b--\n");
  ASSERT_EQ(m.parts.size(), 3u);
  EXPECT_EQ(m.parts[0].text, "See the forwarded mail.");
  EXPECT_EQ(m.parts[1].text, "inner plain");
  EXPECT_EQ(m.parts[2].text, "inner html");
  ASSERT_EQ(m.headers.size(), 2u);  // the inner header block is not the message's
  EXPECT_EQ(m.header("subject")->value, "outer");
  EXPECT_TRUE(m.defects.empty()) << dump(m);
}

TEST(MessageParser, DigestPartsDefaultToMessages) {
  const Message m = parse_message(
      "Content-Type: multipart/digest; boundary=d\n\n"
      "--d\n\nSubject: one\n\nfirst\n--d\n\nSubject: two\n\nsecond\n--d--\n");
  ASSERT_EQ(m.parts.size(), 2u);
  EXPECT_EQ(m.parts[0].text, "first");
  EXPECT_EQ(m.parts[1].text, "second");
}

TEST(MessageParser, Base64ToleratesWhitespaceAndJunk) {
  const Message m = parse_message(
      "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: BASE64\n\n"
      "R3LDvMOf ZSBh\n  dXMg*S8O2\tbG4g!\n4oKs\n\n");
  ASSERT_EQ(m.parts.size(), 1u);
  EXPECT_EQ(m.parts[0].transfer_encoding, "base64");
  EXPECT_EQ(m.parts[0].text, "Grüße aus Köln €");
  EXPECT_EQ(m.parts[0].decoded_size, std::string("Grüße aus Köln €").size());
}

TEST(MessageParser, QuotedPrintableSoftBreaks) {
  const Message m = parse_message(
      "Content-Transfer-Encoding: quoted-printable\nContent-Type: text/plain; charset=utf-8\n\n"
      "A long line that was wr=\napped, with =C3=A9 and =3d and a stray = sign.  \n"
      "Trailing soft break with spaces =  \nend\n");
  EXPECT_EQ(m.parts[0].text,
            "A long line that was wrapped, with é and = and a stray = sign.\n"
            "Trailing soft break with spaces end");
}

TEST(MessageParser, UndeclaredEightBitIsGuessed) {
  const Message latin1 = parse_message("Subject: test\n\nCaf\xe9 cr\xe8me \x80 5\n");
  EXPECT_EQ(latin1.parts[0].text, "Café crème € 5");
  EXPECT_TRUE(latin1.parts[0].charset_guessed);

  const Message utf8 = parse_message("Subject: test\n\nCaf\xc3\xa9\n");
  EXPECT_EQ(utf8.parts[0].text, "Café");
  EXPECT_TRUE(utf8.parts[0].charset_guessed);

  const Message ascii = parse_message("Content-Type: text/plain; charset=us-ascii\n\nplain\n");
  EXPECT_FALSE(ascii.parts[0].charset_guessed);
}

TEST(MessageParser, DeclaredCharsetsAreConverted) {
  const Message koi =
      parse_message("Content-Type: text/plain; charset=\"KOI8-R\"\n\n\xf0\xd2\xc9\xd7\xc5\xd4!\n");
  EXPECT_EQ(koi.parts[0].charset, "koi8-r");
  EXPECT_EQ(koi.parts[0].text, "Привет!");
  EXPECT_FALSE(koi.parts[0].charset_guessed);

  const Message cp = parse_message(
      "Content-Type: text/plain; charset=windows-1251\nContent-Transfer-Encoding: 8bit\n\n"
      "\xcf\xf0\xe8\xe2\xe5\xf2\n");
  EXPECT_EQ(cp.parts[0].text, "Привет");

  const Message unknown =
      parse_message("Content-Type: text/plain; charset=x-no-such-charset\n\nCaf\xe9\n");
  EXPECT_EQ(unknown.parts[0].text, "Café");
  EXPECT_TRUE(unknown.parts[0].charset_guessed);

  const Message bad_utf8 =
      parse_message("Content-Type: text/plain; charset=utf-8\n\nok \xff\xfe end\n");
  EXPECT_EQ(bad_utf8.parts[0].text, "ok \xEF\xBF\xBD\xEF\xBF\xBD end");
}

TEST(MessageParser, HtmlMetaCharsetWhenTheHeaderHasNone) {
  const Message m = parse_message(
      "Content-Type: text/html\n\n<html><head><meta http-equiv=\"Content-Type\" "
      "content=\"text/html; charset=koi8-r\"></head><body>\xf0\xd2\xc9\xd7\xc5\xd4</body>\n");
  EXPECT_EQ(m.parts[0].text, "Привет");
  EXPECT_FALSE(m.parts[0].charset_guessed);
  EXPECT_EQ(m.parts[0].charset, "");  // as declared in the MIME header
  EXPECT_EQ(sniff_html_charset("<META charset = 'Big5'>"), "Big5");
  EXPECT_EQ(sniff_html_charset("<meta name=x><p>charset=koi8-r"), "");
}

TEST(MessageParser, HeaderEightBit) {
  const Message m = parse_message("Subject: Caf\xe9\n\nbody \xe9\n");
  EXPECT_TRUE(m.header_8bit);
  EXPECT_EQ(m.header("subject")->value, "Café");
  EXPECT_FALSE(parse_message("Subject: x\n\nbody \xe9\n").header_8bit);
}

TEST(MessageParser, Rfc2231Filename) {
  const Message m = parse_message(
      "Content-Type: multipart/mixed; boundary=b\n\n"
      "--b\nContent-Type: application/octet-stream\n"
      "Content-Disposition: attachment; filename*=utf-8''%E2%82%AC%20rates.xls\n\nx\n"
      "--b\nContent-Type: application/octet-stream;\n name*0*=iso-8859-1''caf%E9;\n"
      " name*1=\".txt\"\n\nx\n"
      "--b\nContent-Type: application/zip; name=\"=?utf-8?Q?r=C3=A9sum=C3=A9.zip?=\"\n\nx\n"
      "--b\nContent-Disposition: inline\n\nnot an attachment\n"
      "--b--\n");
  ASSERT_EQ(m.parts.size(), 4u);
  EXPECT_EQ(m.parts[0].filename, "€ rates.xls");
  EXPECT_TRUE(m.parts[0].attachment);
  EXPECT_EQ(m.parts[1].filename, "café.txt");
  EXPECT_EQ(m.parts[2].filename, "résumé.zip");
  EXPECT_TRUE(m.parts[2].attachment);
  EXPECT_EQ(m.parts[3].filename, "");
  EXPECT_FALSE(m.parts[3].attachment);
}

TEST(MessageParser, HeaderWithoutBlankLine) {
  const Message m = parse_message("Subject: x\nThis is body text\nmore\n");
  ASSERT_EQ(m.headers.size(), 1u);
  EXPECT_EQ(m.parts[0].text, "This is body text\nmore");
  EXPECT_EQ(m.raw_body, "This is body text\nmore\n");
  EXPECT_TRUE(has_defect(m, "blank line"));
}

TEST(MessageParser, EmptyAndHeaderOnlyInput) {
  const Message empty = parse_message("");
  EXPECT_TRUE(empty.headers.empty());
  EXPECT_EQ(empty.parts.size(), 1u);
  const Message headers = parse_message("Subject: only");
  ASSERT_EQ(headers.headers.size(), 1u);
  EXPECT_EQ(headers.headers[0].raw, "Subject: only");
  EXPECT_EQ(headers.parts.size(), 1u);
}

TEST(MessageParser, UrlsAreCollected) {
  const Message m = parse_message(
      "Subject: x\n\n"
      "Visit http://user:pw@Shop.Example.COM:8080/buy?x=1, or www.Example.net/path.\n"
      "Again HTTP://shop.example.com:8080/other and (https://paren.example.org/a_(b)).\n"
      "Mail me at joe@www.example.org; ftp://files.example.org/f.zip\n"
      "Not URLs: http:// nothing, xhttp://bad.example.com, http://nodot/\n");
  EXPECT_EQ(m.urls, (std::vector<std::string>{
                        "http://user:pw@Shop.Example.COM:8080/buy?x=1",
                        "http://www.Example.net/path",
                        "HTTP://shop.example.com:8080/other",
                        "https://paren.example.org/a_(b)",
                        "ftp://files.example.org/f.zip",
                    }));
  EXPECT_EQ(m.url_hosts, (std::vector<std::string>{"shop.example.com", "www.example.net",
                                                   "paren.example.org", "files.example.org"}));
}

// --- limits --------------------------------------------------------------------------------

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

TEST(MessageLimits, DeepNesting) {
  std::string raw;
  for (int i = 0; i < 100; ++i) {
    raw += "Content-Type: multipart/mixed; boundary=\"b" + std::to_string(i) + "\"\n\n--b" +
           std::to_string(i) + "\n";
  }
  raw += "Content-Type: text/plain\n\ndeep text\n";
  for (int i = 99; i >= 0; --i) raw += "--b" + std::to_string(i) + "--\n";
  const auto start = std::chrono::steady_clock::now();
  const Message m = parse_message(raw);
  EXPECT_LT(seconds_since(start), 2.0);
  EXPECT_TRUE(m.truncated);
  EXPECT_TRUE(has_defect(m, "max_depth"));
  ASSERT_EQ(m.parts.size(), 1u);
  EXPECT_EQ(m.parts[0].content_type, "multipart/mixed");  // the one too deep, kept opaque

  MessageLimits deep;
  deep.max_depth = 200;
  const Message all = parse_message(raw, deep);
  EXPECT_FALSE(all.truncated);
  ASSERT_EQ(all.parts.size(), 1u);
  EXPECT_EQ(all.parts[0].text, "deep text");
}

TEST(MessageLimits, ManyParts) {
  std::string raw = "Content-Type: multipart/mixed; boundary=b\n\n";
  for (int i = 0; i < 10000; ++i)
    raw += "--b\nContent-Type: text/plain\n\npart " + std::to_string(i) + "\n";
  raw += "--b--\n";
  const auto start = std::chrono::steady_clock::now();
  const Message m = parse_message(raw);
  EXPECT_LT(seconds_since(start), 2.0);
  EXPECT_TRUE(m.truncated);
  EXPECT_TRUE(has_defect(m, "max_parts"));
  ASSERT_EQ(m.parts.size(), MessageLimits{}.max_parts);
  EXPECT_EQ(m.parts.back().text, "part 499");
}

TEST(MessageLimits, ManyHeaders) {
  std::string raw;
  for (int i = 0; i < 100000; ++i) raw += "X-H: " + std::to_string(i) + "\n";
  raw += "\nbody\n";
  const auto start = std::chrono::steady_clock::now();
  const Message m = parse_message(raw);
  EXPECT_LT(seconds_since(start), 2.0);
  EXPECT_TRUE(m.truncated);
  EXPECT_EQ(m.headers.size(), MessageLimits{}.max_headers);
  EXPECT_EQ(m.parts[0].text, "body");  // the body is still found

  MessageLimits small;
  small.max_header_bytes = 1000;
  const Message cut = parse_message(raw, small);
  EXPECT_TRUE(has_defect(cut, "max_header_bytes"));
  EXPECT_LT(cut.headers.size(), 200u);
}

TEST(MessageLimits, LongLine) {
  const std::string raw = "Subject: x\n\n" + std::string(10 * 1024 * 1024, 'a') + "\nafter\n";
  MessageLimits lim;
  lim.max_bytes = 20 * 1024 * 1024;
  for (size_t chunk : {raw.size(), size_t{4096}, size_t{65537}}) {
    const auto start = std::chrono::steady_clock::now();
    MessageParser p(lim);
    for (size_t i = 0; i < raw.size(); i += chunk) p.feed(std::string_view(raw).substr(i, chunk));
    const Message m = p.finish();
    EXPECT_LT(seconds_since(start), 2.0);
    EXPECT_TRUE(m.truncated);
    EXPECT_TRUE(has_defect(m, "max_line"));
    EXPECT_EQ(m.parts[0].text.size(), MessageLimits{}.max_line + 6);  // cut line, "\nafter"
    EXPECT_TRUE(m.parts[0].text.ends_with("a\nafter"));
    EXPECT_EQ(m.raw_size, raw.size());
  }
}

TEST(MessageLimits, MaxBytesAndDecoded) {
  MessageLimits lim;
  lim.max_bytes = 30;
  const Message m = parse_message("Subject: x\n\n0123456789012345678901234567890123456789\n", lim);
  EXPECT_TRUE(m.truncated);
  EXPECT_EQ(m.raw_body, "012345678901234567");
  EXPECT_EQ(m.raw_size, 53u);

  MessageLimits dec;
  dec.max_decoded = 5;
  const Message d = parse_message("Subject: x\n\n0123456789\n", dec);
  EXPECT_TRUE(d.truncated);
  EXPECT_EQ(d.parts[0].text, "01234");
}

TEST(MessageLimits, MaxUrls) {
  std::string raw = "Subject: x\n\n";
  for (int i = 0; i < 50; ++i) raw += "http://h" + std::to_string(i) + ".example.com/\n";
  MessageLimits lim;
  lim.max_urls = 10;
  const Message m = parse_message(raw, lim);
  EXPECT_EQ(m.urls.size(), 10u);
  EXPECT_TRUE(m.truncated);
}

// Inputs built to make a careless parser quadratic: each takes milliseconds (the bound is
// loose for sanitizer builds on a busy machine; a quadratic path takes minutes here).
TEST(MessageLimits, HostileInputsStayLinear) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"closing parens", "Subject: x\n\nhttp://a.example/" + std::string(2'000'000, ')')},
      {"trailing dots", "Subject: x\n\nwww.a.example" + std::string(2'000'000, '.')},
      {"attributes", "Content-Type: text/html\n\n<a " +
                         [] {
                           std::string a;
                           for (int i = 0; i < 100'000; ++i) a += "href=http://x.example/ ";
                           return a;
                         }() +
                         ">"},
      {"references", "Content-Type: text/html\n\n" +
                         [] {
                           std::string a;
                           for (int i = 0; i < 100'000; ++i) a += "&amp&#x41&nbspx";
                           return a;
                         }()},
      {"bogus comments", "Content-Type: text/html\n\n" +
                             [] {
                               std::string a;
                               for (int i = 0; i < 300'000; ++i) a += "<!";
                               return a;
                             }()},
      {"script end tags", "Content-Type: text/html\n\n<script>" +
                              [] {
                                std::string a;
                                for (int i = 0; i < 300'000; ++i) a += "</scrip";
                                return a;
                              }()},
      {"encoded words", "Subject: " +
                            [] {
                              std::string a;
                              for (int i = 0; i < 20'000; ++i) a += "=?utf-8?q?a=?=?b?Q?";
                              return a;
                            }() +
                            "\n\nx\n"},
      {"parameters", "Content-Type: text/plain" +
                         [] {
                           std::string a;
                           for (int i = 0; i < 20'000; ++i)
                             a += "; n*" + std::to_string(i % 900) + "*=%41";
                           return a;
                         }() +
                         "\n\nx\n"},
      {"boundary lines",
       [] {
         std::string a;
         for (int i = 0; i < 20; ++i) {
           a += "Content-Type: multipart/mixed; boundary=" + std::string(60, 'a' + i) + "\n\n--" +
                std::string(60, 'a' + i) + "\n";
         }
         for (int i = 0; i < 50'000; ++i) a += "--" + std::string(59, 'a') + "\n";
         return a;
       }()},
  };
  for (const auto& [name, raw] : cases) {
    const auto start = std::chrono::steady_clock::now();
    const Message m = parse_message(raw);
    EXPECT_LT(seconds_since(start), 10.0) << name;
    EXPECT_FALSE(m.parts.empty()) << name;
  }
}

// The helpers see whole part bodies (up to max_decoded), not lines: the same shapes unsplit.
TEST(MessageLimits, HelpersStayLinear) {
  std::string parens = "see http://a.example/" + std::string(1'000'000, ')');
  std::string refs, comments, attrs, words;
  for (int i = 0; i < 100'000; ++i) refs += "&amp&#x41&nbspx&notin";
  for (int i = 0; i < 500'000; ++i) comments += "<!";
  attrs = "<a ";
  for (int i = 0; i < 50'000; ++i) attrs += "href=http://x.example/ ";
  for (int i = 0; i < 50'000; ++i) words += "=?utf-8?q?a=?=?b?Q?";
  const auto start = std::chrono::steady_clock::now();
  UrlCollector urls(1000);
  urls.add_text(parens);
  EXPECT_EQ(urls.urls(), std::vector<std::string>{"http://a.example/"});
  EXPECT_EQ(html_to_text(refs).size(), 100'000u * 8);  // "&A x¬in" per round (legacy &not)
  EXPECT_EQ(html_to_text(comments), "");
  size_t links = 0;
  html_to_text(attrs + ">", [&](std::string_view) { ++links; });
  EXPECT_EQ(links, 50'000u);
  EXPECT_FALSE(decode_rfc2047(words).empty());
  EXPECT_LT(seconds_since(start), 10.0);
}

// --- helpers -------------------------------------------------------------------------------

TEST(Rfc2047, DecodesWords) {
  EXPECT_EQ(decode_rfc2047("=?utf-8?B?R3LDvMOfZQ==?="), "Grüße");
  EXPECT_EQ(decode_rfc2047("=?ISO-8859-1?q?Caf=E9_cr=E8me?= ok"), "Café crème ok");
  // Adjacent words: the whitespace between them goes; text between words stays.
  EXPECT_EQ(decode_rfc2047("=?utf-8?Q?a?= \r\n =?utf-8?Q?b?=  c =?utf-8?Q?d?="), "ab  c d");
  // A character split across two words.
  EXPECT_EQ(decode_rfc2047("=?utf-8?Q?=E6=97?= =?UTF-8?Q?=A5=E6=9C=AC=E8=AA=9E?="), "日本語");
  // Stateful ISO-2022-JP words each end in ASCII: converted one by one.
  EXPECT_EQ(decode_rfc2047("=?iso-2022-jp?B?GyRCRnxLXBsoQg==?=\r\n =?ISO-2022-JP?B?GyRCOGwbKEI=?="),
            "日本語");
  EXPECT_EQ(decode_rfc2047("=?utf-8*en?Q?lang?="), "lang");
  EXPECT_EQ(decode_rfc2047("=?x-unknown?Q?Caf=E9?="), "Café");
  EXPECT_EQ(decode_rfc2047("=?koi8-r?B?8NLJ18XU?="), "Привет");
  // Not encoded words: kept.
  EXPECT_EQ(decode_rfc2047("=?utf-8?X?abc?= =? =?utf-8?Q?open"),
            "=?utf-8?X?abc?= =? =?utf-8?Q?open");
  EXPECT_EQ(decode_rfc2047("plain"), "plain");
}

TEST(Charset, ValidatesAndConverts) {
  EXPECT_TRUE(is_valid_utf8("Grüße €"));
  EXPECT_FALSE(is_valid_utf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(is_valid_utf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_EQ(to_utf8("\x93quoted\x94", "iso-8859-1"), "“quoted”");
  EXPECT_EQ(to_utf8("\xa4", "ISO-8859-15"), "€");
  EXPECT_EQ(to_utf8("\xc4\xe3", "gb2312"), "你");
  EXPECT_EQ(to_utf8("+AGEAYgBj-", "utf-7"), "abc");
  EXPECT_EQ(to_utf8(std::string_view("a\0b\0", 4), "utf-16le"), "ab");
  bool guessed = true;
  EXPECT_EQ(to_utf8("plain", "x-bogus", &guessed), "plain");
  EXPECT_FALSE(guessed);
}

TEST(MimeHeader, ParsesParameters) {
  const MimeHeaderValue v = parse_mime_header(
      " Text/HTML (comment) ; CharSet=\"UTF-8\"; name=my file.htm ; x=\"a\\\"b\"");
  EXPECT_EQ(v.value, "text/html");
  ASSERT_NE(v.param("charset"), nullptr);
  EXPECT_EQ(*v.param("charset"), "UTF-8");
  EXPECT_EQ(*v.param("name"), "my file.htm");
  EXPECT_EQ(*v.param("x"), "a\"b");
  const MimeHeaderValue missing_semicolon =
      parse_mime_header("text/plain charset=us-ascii format=flowed");
  EXPECT_EQ(*missing_semicolon.param("charset"), "us-ascii");
  EXPECT_EQ(*missing_semicolon.param("format"), "flowed");
  const MimeHeaderValue cont =
      parse_mime_header("attachment; filename*1=\"b\"; filename*0=\"a\"; filename*2*=%41");
  EXPECT_EQ(*cont.param("filename"), "abA");
}

TEST(TransferDecode, QuotedPrintableLine) {
  std::string out;
  EXPECT_TRUE(decode_qp_line("a=3Db=3d=XY=", out));  // soft break at the end
  EXPECT_EQ(out, "a=b==XY");
}

TEST(HtmlText, TextAndLinks) {
  std::vector<std::string> links;
  const std::string text = html_to_text(
      "<!DOCTYPE html><html><head><title>T</title><style>.a{}</style></head>"
      "<body background='http://bg.example.com/i.gif'><!-- hidden <p>comment</p> -->"
      "<div>One &lt;two&gt; &copy 2002 &#8364;&#x41;&#150;</div>"
      "V&shy;i&#8203;agra <a href=\"http://x.example.com/?a=1&amp;b=2\">link</a>"
      "<SCRIPT type=text/javascript>document.write('<p>no</p>')</SCRIPT >"
      "<table><tr><td>c1</td><td>c2</td></tr></table>a < b <img src=//cdn.example.com/x.png>"
      "<p>unterminated <a href=\"",
      [&](std::string_view l) { links.emplace_back(l); });
  EXPECT_EQ(text, "T\nOne <two> © 2002 €A–\nViagra link\nc1 c2\na < b\nunterminated");
  EXPECT_EQ(links,
            (std::vector<std::string>{"http://bg.example.com/i.gif",
                                      "http://x.example.com/?a=1&b=2", "//cdn.example.com/x.png"}));
}

TEST(UrlExtract, Hosts) {
  EXPECT_EQ(url_host("http://User@WWW.Example.COM.:80/x"), "www.example.com");
  EXPECT_EQ(url_host("https://[2001:DB8::1]:443/"), "2001:db8::1");
  EXPECT_EQ(url_host("http://%77%77%77.example.com/"), "www.example.com");
  EXPECT_EQ(url_host("www.example.org"), "www.example.org");
  EXPECT_EQ(url_host("http://bücher.example/"), "bücher.example");
  EXPECT_EQ(url_host("mailto:a@b.c"), "");
  EXPECT_EQ(url_host("http://nodot/"), "");
}

// --- the development corpus ----------------------------------------------------------------

struct CorpusFile {
  std::string path;
  std::string data;
};

// Reads a .tar.gz through gzip(1): regular files only.
std::vector<CorpusFile> read_tar_gz(const std::string& path) {
  std::vector<CorpusFile> files;
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(("gzip -dc '" + path + "'").c_str(), "r"),
                                             pclose);
  if (!pipe) return files;
  std::string tar;
  char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe.get())) > 0) tar.append(buf, n);
  size_t off = 0;
  while (off + 512 <= tar.size()) {
    const char* h = tar.data() + off;
    if (h[0] == '\0') break;
    const std::string name(h, strnlen(h, 100));
    const size_t size = std::strtoull(std::string(h + 124, 12).c_str(), nullptr, 8);
    const char type = h[156];
    off += 512;
    if ((type == '0' || type == '\0') && off + size <= tar.size()) {
      files.push_back({name, tar.substr(off, size)});
    }
    off += (size + 511) / 512 * 512;
  }
  return files;
}

TEST(MessageCorpus, ParsesEveryMessage) {
  const std::string dir = SPAMWARD_SOURCE_DIR "/../shared/corpus/";
  const std::vector<CorpusFile> ham = read_tar_gz(dir + "ham.tar.gz");
  const std::vector<CorpusFile> spam = read_tar_gz(dir + "spam.tar.gz");
  if (ham.empty() || spam.empty()) GTEST_SKIP() << "corpus not found under " << dir;
  EXPECT_EQ(ham.size() + spam.size(), 6045u);

  struct Tally {
    size_t messages = 0, with_text = 0, with_urls = 0, multipart = 0, html = 0;
  };
  size_t bytes = 0;
  double seconds = 0;
  auto run = [&](const std::vector<CorpusFile>& files, Tally& t) {
    for (const CorpusFile& f : files) {
      const auto start = std::chrono::steady_clock::now();
      const Message m = parse_message(f.data);
      seconds += seconds_since(start);
      bytes += f.data.size();
      ++t.messages;
      // Only a weblog digest with over 1000 links reaches a limit.
      EXPECT_TRUE(!m.truncated || has_defect(m, "max_urls")) << f.path;
      bool text = false;
      for (const BodyPart& p : m.parts) {
        text |= p.text.find_first_not_of(" \t\n") != std::string::npos;
        t.html += p.html;
        ASSERT_TRUE(is_valid_utf8(p.text)) << f.path;
      }
      for (const HeaderField& h : m.headers) ASSERT_TRUE(is_valid_utf8(h.value)) << f.path;
      t.with_text += text;
      t.with_urls += !m.urls.empty();
      t.multipart += m.parts.size() > 1;
      // The raw header fields and the raw body rebuild the message.
      std::string head;
      for (const HeaderField& h : m.headers) head += h.raw;
      std::string_view rest = f.data;
      if (rest.starts_with("From ")) rest.remove_prefix(rest.find('\n') + 1);
      EXPECT_TRUE(rest.starts_with(head)) << f.path;
      EXPECT_TRUE(rest.ends_with(m.raw_body)) << f.path;
      EXPECT_EQ(m.raw_size, f.data.size());
    }
  };
  Tally h, s;
  run(ham, h);
  run(spam, s);
  std::printf("corpus: %zu messages, %.1f MB in %.2f s: %.0f messages/s, %.1f MB/s\n",
              h.messages + s.messages, static_cast<double>(bytes) / 1e6, seconds,
              static_cast<double>(h.messages + s.messages) / seconds,
              static_cast<double>(bytes) / 1e6 / seconds);
  std::printf("ham: %zu with text, %zu with URLs, %zu multipart, %zu html parts\n", h.with_text,
              h.with_urls, h.multipart, h.html);
  std::printf("spam: %zu with text, %zu with URLs, %zu multipart, %zu html parts\n", s.with_text,
              s.with_urls, s.multipart, s.html);
  EXPECT_GT(h.with_text, h.messages * 98 / 100);
  EXPECT_GT(s.with_text, s.messages * 95 / 100);
  EXPECT_GT(s.with_urls, s.messages * 80 / 100);
  EXPECT_GT(s.html, s.messages / 3);
}

}  // namespace
