// Header field text to UTF-8 (RFC 2047 encoded words), for mail/message.h.
//
// Contract:
// - "=?charset?B?...?=" and "=?charset?Q?...?=" words are decoded (B and Q in either case; a
//   "*language" suffix of the charset, RFC 2231, is ignored) wherever they appear, also
//   inside words and quoted strings, as mail clients do.
// - Whitespace between two adjacent encoded words is dropped. Adjacent words in one charset
//   are converted together, so a multi-byte character split across two words survives
//   (except in stateful charsets such as ISO-2022-JP, where each word stands alone).
// - An unknown charset is read as undeclared text (UTF-8 if valid, else windows-1252); so
//   are 8-bit bytes outside encoded words. Invalid sequences become U+FFFD.
// - Anything that is not a well-formed encoded word is kept as written. Linear in the
//   input; never throws.
#pragma once

#include <string>
#include <string_view>

namespace spamward {

std::string decode_rfc2047(std::string_view text);

}  // namespace spamward
