// Content-Transfer-Encoding decoders (RFC 2045) for mail/message.h, tolerant of what real
// mail holds: base64 with whitespace, junk and padding in the middle; quoted-printable with
// lower-case hex, stray '=' and trailing whitespace.
//
// Contract: pure, never throw, linear in the input, and append only (output is never more
// bytes than the input).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace spamward {

// Base64 over any number of chunks (a body line by line). Bytes outside the alphabet are
// skipped; '=' ends a group (the bits of an incomplete byte are dropped) and decoding goes
// on after it, so concatenated base64 blocks decode whole.
class Base64Decoder {
 public:
  void decode(std::string_view in, std::string& out);

 private:
  uint32_t bits_ = 0;
  int nbits_ = 0;
};

// One base64 text at once (an RFC 2047 "B" word).
std::string decode_base64(std::string_view in);

// One quoted-printable line, without its line end. Returns true when the line ends with a
// soft line break ('=' at the end, trailing whitespace ignored), i.e. no line break follows
// in the decoded text. Trailing whitespace of the line is dropped (RFC 2045 6.7 (3)).
bool decode_qp_line(std::string_view line, std::string& out);

// An RFC 2047 "Q" encoded text: '_' is a space, "=XX" a byte.
std::string decode_q(std::string_view in);

// Value of a hex digit, or -1.
inline int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace spamward
