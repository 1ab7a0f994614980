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

}  // namespace spamward
