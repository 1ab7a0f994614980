// Structured MIME header values (RFC 2045 Content-Type, RFC 2183 Content-Disposition) with
// RFC 2231 parameter extensions, for mail/message.h.
//
// Contract:
// - `value` is the leading token (e.g. "text/html", "attachment"), lower-cased, without
//   whitespace or comments; parameter names are lower-cased; parameter values are unquoted
//   (backslash escapes removed) and otherwise kept as written.
// - RFC 2231: "name*=charset'lang'%XX..." is percent-decoded and converted to UTF-8;
//   continuations "name*0", "name*1*", ... are joined in order (up to the first missing
//   index); an extended or continued form wins over the plain "name=".
// - Lenient as mail clients are: a missing ';' before a parameter is tolerated, an unquoted
//   value runs to the next ';' (so it may hold spaces), a parameter without '=' is skipped.
//   At most 64 parameters are kept. Never throws; linear in the input.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace spamward {

struct MimeHeaderValue {
  std::string value;
  std::vector<std::pair<std::string, std::string>> params;

  // The value of parameter `name` (lower-case), or null.
  const std::string* param(std::string_view name) const;
};

MimeHeaderValue parse_mime_header(std::string_view unfolded);

}  // namespace spamward
