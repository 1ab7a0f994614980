// The HTTP check API (DESIGN §3.4, §3.5 HTTP): POST /api/v1/check.
//
// Contract:
// - The request body is one raw message (RFC 5322; an mbox "From " line is skipped). Its
//   envelope comes from query parameters `ip`, `helo`, `hostname`, `from`, `rcpt` (repeatable)
//   or, when a parameter is absent, from the request headers of the same names (rspamd's
//   spelling: `IP`, `Helo`, `Hostname`, `From`, `Rcpt`; several recipients comma-separated).
//   All are optional; without `ip`, the checks that need a client address add nothing.
// - The answer is 200 with the §3.4 JSON object ("file": null). A malformed `ip` or query
//   string is 400 with a one-line reason. An empty body is scored as an empty message.
// - It changes no state, like `spamward check`: greylisting only peeks, no offence or clean
//   mail is recorded. So it needs no admin token (HttpServer read_only route).
// - The message is parsed with `limits` (max_bytes: [limits] max_message_bytes); the HTTP
//   server's body limit must be at least that large.
#pragma once

#include "mail/message.h"
#include "server/http_server.h"
#include "server/policy_server.h"  // EngineSource

namespace spamward {

inline constexpr const char* kCheckApiPath = "/api/v1/check";

HttpServer::Handler make_check_handler(EngineSource engine_source, MessageLimits limits);

}  // namespace spamward
