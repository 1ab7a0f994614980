// Message: one parsed RFC 5322 / MIME message, as the content checks (header sanity, DKIM,
// DMARC, GTUBE, Bayes) read it. MessageParser builds it from raw bytes fed in chunks (the
// milter's body chunks, a file, an HTTP body); parse_message() is the one-shot form.
//
// Contract:
// - Input is untrusted. Every structure has a hard limit (MessageLimits); past a limit the
//   parser stops that structure, records a defect and sets `truncated`, and never throws or
//   crashes. Memory stays within a small multiple of max_bytes.
// - The raw top-level header fields are kept byte for byte (DKIM signs them), and so is the
//   raw body up to max_bytes (DKIM's body hash).
// - Line ends may be CRLF or bare LF (files on disk); both are accepted everywhere.
// - A leading mbox "From " line is skipped (it is not a header field).
// - Text is UTF-8: RFC 2047 encoded words in header values are decoded, base64 and
//   quoted-printable bodies are decoded, declared charsets are converted with ICU, and
//   undeclared 8-bit text is guessed (UTF-8 if valid, else windows-1252). Invalid sequences
//   become U+FFFD, never an error.
// - text/html parts are turned into text (tags dropped, entities decoded, script and style
//   skipped), and their link targets (href, src) are collected as URLs.
// - URLs found in text and HTML (http, https, ftp, and www.-prefixed hosts) are collected
//   with their host names, lower-cased, unique, in order of appearance.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/strings.h"
#include "mail/mailbox.h"

namespace spamward {

struct MessageLimits {
  size_t max_bytes = 10 * 1024 * 1024;    // raw input considered; the rest is ignored (truncated)
  int max_depth = 20;                     // nested multiparts / message/rfc822
  size_t max_parts = 500;                 // leaf parts kept
  size_t max_headers = 1000;              // header fields per header block
  size_t max_header_bytes = 256 * 1024;   // bytes of one header block
  size_t max_line = 64 * 1024;            // longer lines are cut (a defect), not rejected
  size_t max_decoded = 32 * 1024 * 1024;  // total decoded bytes of all parts
  size_t max_urls = 1000;
};

struct HeaderField {
  std::string name;   // as written (compare case-insensitively)
  std::string raw;    // the whole field as received: name, colon, value, folding, line end
  std::string value;  // unfolded, RFC 2047 words decoded to UTF-8, outer whitespace trimmed
};

struct BodyPart {
  std::string content_type;       // lower-case "type/subtype"; "text/plain" when absent
  std::string charset;            // as declared, lower-case; empty when none
  std::string transfer_encoding;  // lower-case; empty when none
  std::string filename;           // from Content-Disposition or Content-Type name=, decoded
  bool attachment = false;        // Content-Disposition: attachment, or a filename
  bool html = false;              // `text` was converted from HTML
  bool charset_guessed = false;   // 8-bit text with no (or an unknown) charset was guessed
  size_t decoded_size = 0;        // bytes after transfer decoding
  std::string text;               // UTF-8 text of text/* parts; empty for other types
};

struct Message {
  std::vector<HeaderField> headers;    // top-level header block, in order
  std::string raw_body;                // bytes after the header block's blank line (DKIM)
  std::vector<BodyPart> parts;         // leaf parts in document order (one for a simple message)
  std::vector<std::string> urls;       // unique, in order of appearance
  std::vector<std::string> url_hosts;  // lower-case host names of `urls`, unique
  std::vector<std::string> defects;    // what was malformed or cut, one short phrase each
  size_t raw_size = 0;                 // bytes fed in total (including any ignored tail)
  bool truncated = false;              // a limit cut something
  bool header_8bit = false;            // raw bytes >= 0x80 in the top-level header block

  // First top-level field with this name (case-insensitive), or null. (Defined here, inline:
  // the checks use them without the parser.)
  const HeaderField* header(std::string_view name) const {
    for (const auto& h : headers) {
      if (iequals(h.name, name)) return &h;
    }
    return nullptr;
  }
  // All top-level fields with this name, in order.
  std::vector<const HeaderField*> headers_named(std::string_view name) const {
    std::vector<const HeaderField*> out;
    for (const auto& h : headers) {
      if (iequals(h.name, name)) out.push_back(&h);
    }
    return out;
  }
};

// The mailboxes of an address field (From, Sender, Reply-To), split from the raw field before
// RFC 2047 decoding (mail/mailbox.h, parse_mailbox_field); a field built without raw bytes
// (tests, programmatic messages) falls back to its decoded value.
inline std::vector<Mailbox> field_mailboxes(const HeaderField& field, size_t max = 100) {
  return field.raw.empty() ? parse_mailbox_list(field.value, max)
                           : parse_mailbox_field(field.raw, max);
}

class MessageParser {
 public:
  explicit MessageParser(MessageLimits limits = {});
  ~MessageParser();
  MessageParser(const MessageParser&) = delete;
  MessageParser& operator=(const MessageParser&) = delete;

  // Feeds the next bytes of the message (any split, even inside a line or a CRLF).
  void feed(std::string_view chunk);
  // Ends the input and returns the message. The parser is not usable afterwards.
  Message finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

Message parse_message(std::string_view raw, const MessageLimits& limits = {});

}  // namespace spamward
