// Charset conversion to UTF-8 for message text (mail/message.h): declared charsets are
// converted with ICU, undeclared 8-bit text is guessed (UTF-8 if valid, else windows-1252).
//
// Contract:
// - Never throws for any input; invalid or unmappable sequences become U+FFFD.
// - Charset names are matched case-insensitively, with the usual mail aliases: ISO-8859-1
//   and US-ASCII with 8-bit bytes are read as windows-1252 (as browsers do), gb2312 as GBK,
//   euc-kr and ks_c_5601-1987 as windows-949.
// - Pure text that is all ASCII is copied as it is for every ASCII-compatible charset (no
//   ICU call), so the common case costs one scan.
// - ICU converters are cached per thread; every function is safe to call from many threads.
#pragma once

#include <string>
#include <string_view>

namespace spamward {

// True when `s` is well-formed UTF-8 (no overlong forms, surrogates or values past U+10FFFF).
bool is_valid_utf8(std::string_view s);

// True when every byte of `s` is below 0x80.
bool is_ascii(std::string_view s);

// The code point of windows-1252 byte `b` (Latin-1 except 0x80..0x9F).
char32_t cp1252_char(unsigned char b);

// Appends the UTF-8 form of code point `cp` (U+FFFD for a surrogate or a value past U+10FFFF).
void append_utf8(std::string& out, char32_t cp);

// `bytes` in `charset` (as declared, any case; empty when none) as UTF-8. `guessed` (when
// not null) is set to whether the charset was guessed: 8-bit text with no charset, with
// US-ASCII, or with a charset ICU does not know.
std::string to_utf8(std::string_view bytes, std::string_view charset, bool* guessed = nullptr);

// Undeclared text as UTF-8: kept when it is valid UTF-8, else read as windows-1252.
std::string guess_to_utf8(std::string_view bytes);

}  // namespace spamward
