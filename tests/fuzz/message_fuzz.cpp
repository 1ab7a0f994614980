// libFuzzer target for MessageParser (mail/message.h) and the helpers it drives: charset
// conversion (ICU), RFC 2047 words, MIME parameters (RFC 2231), base64 and quoted-printable,
// HTML to text, URL extraction.
//
// Input: byte 0 picks the limits (defaults, or tiny ones so every limit path runs), bytes 1-2
// where the message is split, the rest is the message. Besides the sanitizers, it checks the
// properties the header promises:
// - feeding the message in three chunks (split anywhere, even inside a CRLF) gives the same
//   Message as one feed() and as one byte at a time (for short inputs);
// - raw_size is the input size; no list exceeds its limit; the decoded sizes stay within
//   max_decoded; header values, part texts, URLs and hosts are valid UTF-8; hosts are
//   lower-case;
// - with no defect, the raw header fields are the start of the input (after an mbox "From "
//   line) and raw_body is its end, byte for byte;
// - decode_rfc2047 always gives valid UTF-8; html_to_text does for valid UTF-8 input.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "mail/charset.h"
#include "mail/html_text.h"
#include "mail/message.h"
#include "mail/rfc2047.h"

namespace {

using namespace spamward;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

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

MessageLimits pick_limits(uint8_t selector) {
  MessageLimits lim;
  if (selector & 1) {
    lim.max_bytes = 64 + (selector >> 1) * 64;
    lim.max_depth = (selector >> 1) % 4;
    lim.max_parts = 1 + (selector >> 2) % 6;
    lim.max_headers = 1 + (selector >> 3) % 8;
    lim.max_header_bytes = 64 + (selector >> 1) * 8;
    lim.max_line = 8 + (selector >> 2) * 4;
    lim.max_decoded = 16 + (selector >> 1) * 16;
    lim.max_urls = 1 + (selector >> 4);
  }
  return lim;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const MessageLimits lim = pick_limits(data[0]);
  const size_t split_a = data[1], split_b = data[2];
  const std::string_view raw(reinterpret_cast<const char*>(data + 3), size - 3);

  Message m;
  try {
    m = parse_message(raw, lim);
  } catch (...) {
    check(false);  // documented as never throwing
  }
  const std::string want = dump(m);

  // Three chunks.
  {
    const size_t a = raw.empty() ? 0 : split_a * raw.size() / 256;
    const size_t b = a + (raw.size() - a) * split_b / 256;
    MessageParser p(lim);
    p.feed(raw.substr(0, a));
    p.feed(raw.substr(a, b - a));
    p.feed(raw.substr(b));
    check(dump(p.finish()) == want);
  }
  if (raw.size() <= 512) {
    MessageParser p(lim);
    for (char c : raw) p.feed(std::string_view(&c, 1));
    check(dump(p.finish()) == want);
  }

  check(m.raw_size == raw.size());
  check(m.headers.size() <= lim.max_headers);
  check(m.parts.size() <= lim.max_parts);
  check(m.urls.size() <= lim.max_urls);
  check(m.url_hosts.size() <= m.urls.size());
  check(m.raw_body.size() <= lim.max_bytes);
  size_t decoded = 0;
  for (const auto& p : m.parts) {
    decoded += p.decoded_size;
    check(is_valid_utf8(p.text) && is_valid_utf8(p.filename));
  }
  check(decoded <= lim.max_decoded);
  for (const auto& h : m.headers) check(is_valid_utf8(h.value));
  for (const auto& u : m.urls) check(is_valid_utf8(u));
  for (const auto& h : m.url_hosts) {
    check(is_valid_utf8(h) && !h.empty());
    for (char c : h) check(!(c >= 'A' && c <= 'Z'));
  }
  for (const auto& d : m.defects) check(!d.empty());

  if (m.defects.empty()) {
    std::string_view rest = raw;
    if (rest.starts_with("From ")) {
      const size_t nl = rest.find('\n');
      rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    }
    std::string head;
    for (const auto& h : m.headers) head += h.raw;
    check(rest.starts_with(head));
    check(rest.ends_with(m.raw_body));
  }

  check(is_valid_utf8(decode_rfc2047(raw.substr(0, 4096))));
  if (is_valid_utf8(raw)) check(is_valid_utf8(html_to_text(raw)));
  return 0;
}
