// The Authentication-Results header field (RFC 8601) from spamward's SPF, DKIM and DMARC
// results, for the milter or spamd PROCESS to add, e.g.
//   mx.example.org; spf=pass smtp.mailfrom=example.net; dkim=pass header.d=example.net;
//   dmarc=pass header.from=example.net
//
// Contract:
// - render_authentication_results() returns the field's value, unfolded, without the
//   "Authentication-Results:" name and without a line end; callers fold it if they must.
// - Everything in it is safe to put in a header, whatever the input (hostile From domains,
//   reasons quoted from DNS): property values and the authserv-id are written bare when they
//   are a plain domain or address ([A-Za-z0-9._+-] with at most one '@'), else as a quoted
//   string with '"' and '\' escaped; control and non-ASCII bytes become '?', and each value is
//   cut at 255 bytes. Methods, results and property names keep only [a-z0-9._-] (lower case);
//   a result whose method or result is then empty is left out. A reason is always quoted.
// - No results: "<authserv-id>; none" (RFC 8601 §2.2).
// - authentication_results_from_symbols() reads the symbols of the SPF, DKIM and DMARC checks
//   (their details are documented in checks/spf_check.h, dkim_check.h, dmarc_check.h):
//     SPF_<R>       spf=<r> smtp.mailfrom=<domain> (smtp.helo=<name> for the HELO identity)
//     DKIM_VALID    dkim=pass header.d=<d>, one per passing domain
//     DKIM_INVALID  dkim=fail header.d=<d> reason="...", one per failing signature
//     DKIM_NONE     dkim=none
//     DMARC_PASS    dmarc=pass header.from=<domain>   (DMARC_FAIL: dmarc=fail)
//   in that order; other symbols are ignored. No DMARC symbol (no record, or not judged): no
//   dmarc entry.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/symbol.h"

namespace spamward {

struct AuthResultProperty {
  std::string type;      // "smtp", "header"
  std::string property;  // "mailfrom", "helo", "d", "from"
  std::string value;
};

struct AuthResult {
  std::string method;  // "spf", "dkim", "dmarc"
  std::string result;  // "pass", "fail", "none", ...
  std::string reason;  // optional
  std::vector<AuthResultProperty> properties;
};

std::string render_authentication_results(std::string_view authserv_id,
                                          const std::vector<AuthResult>& results);

std::vector<AuthResult> authentication_results_from_symbols(const std::vector<Symbol>& symbols);

// The authserv-id of [headers]: `configured` when set, else the first of [network] our_names,
// else this host's name ("localhost" when it has none).
std::string effective_authserv_id(std::string_view configured,
                                  const std::vector<std::string>& our_names);

// Header-only below: the milter and spamd protocol codecs use these without linking the
// renderer.

// The authserv-id an incoming Authentication-Results value names: its first token after
// CFWS (comments skipped), unquoted when a quoted string, cut at 255 bytes; "" when none.
// For RFC 8601 §5: fields carrying our own authserv-id are removed before ours is added.
inline std::string authserv_id_of(std::string_view v) {
  size_t i = 0;
  // CFWS: white space, line breaks and (nested) comments.
  int depth = 0;
  while (i < v.size()) {
    char c = v[i];
    if (depth > 0) {
      if (c == '\\') {
        ++i;
      } else if (c == '(') {
        ++depth;
      } else if (c == ')') {
        --depth;
      }
      ++i;
    } else if (c == '(') {
      ++depth;
      ++i;
    } else if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      ++i;
    } else {
      break;
    }
  }
  std::string out;
  if (i < v.size() && v[i] == '"') {
    for (++i; i < v.size() && v[i] != '"' && out.size() < 255; ++i) {
      if (v[i] == '\\' && i + 1 < v.size()) ++i;
      out += v[i];
    }
    return out;
  }
  for (; i < v.size() && out.size() < 255; ++i) {
    char c = v[i];
    if (c == ';' || c == '(' || c == '"' || c == ' ' || c == '\t' || c == '\r' || c == '\n') break;
    out += c;
  }
  return out;
}

// `value` folded for a header: a space outside a quoted string becomes `fold` (e.g. "\r\n\t"),
// before a result ("; " ends the one before) that would pass column 78, else before a word
// that would; `column` is where the value starts (after "Authentication-Results: "). A word
// longer than a line is never broken.
inline std::string fold_header_value(std::string_view value, size_t column, std::string_view fold) {
  constexpr size_t kFoldColumn = 78;
  // The words: split at spaces outside quoted strings.
  std::vector<std::string_view> words;
  bool quoted_string = false;
  size_t start = 0;
  for (size_t i = 0; i <= value.size(); ++i) {
    if (i == value.size() || (value[i] == ' ' && !quoted_string)) {
      words.push_back(value.substr(start, i - start));
      start = i + 1;
    } else if (quoted_string && value[i] == '\\' && i + 1 < value.size()) {
      ++i;
    } else if (value[i] == '"') {
      quoted_string = !quoted_string;
    }
  }
  std::string out;
  size_t col = column;
  for (size_t w = 0; w < words.size(); ++w) {
    if (w > 0) {
      // A word after one ending with ';' starts a result: keep the result on one line when it
      // fits, so measure up to the end of the result.
      size_t need = words[w].size();
      if (words[w - 1].ends_with(';')) {
        for (size_t k = w; k + 1 < words.size() && !words[k].ends_with(';'); ++k)
          need += 1 + words[k + 1].size();
        if (need > kFoldColumn - 8) need = words[w].size();  // longer than a line anyway
      }
      if (col + 1 + need > kFoldColumn) {
        out += fold;
        col = 8;
      } else {
        out += ' ';
        ++col;
      }
    }
    out += words[w];
    col += words[w].size();
  }
  return out;
}

}  // namespace spamward
