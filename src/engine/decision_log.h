// The per-decision log line (DESIGN §3.7): one line per Verdict the Engine returns, with
// everything an admin needs to explain it. Field reference: docs/observability.md.
//
// Text (logfmt-like; spdlog prefixes the time and level):
//   decision id=3F1A2B client=192.0.2.1 helo=mx.example.net from=<a@b> rcpt=<c@d>,<e@f>
//   stage=rcpt action=reject score=16.50 symbols=RBL_X(3.00),DENYLIST(20.00) reason="..."
// JSON: one object per line with the same facts (decision_json; the logger adds "time").
//
// Contract:
// - Everything in a line that came from the network (HELO, addresses, ids, names) is
//   untrusted. No input can end the line, add a field, or inject terminal escapes:
//   * text: a value is written bare only when it is printable ASCII without space, '"', '\\'
//     or '='; otherwise it is quoted, with '"' and '\\' backslash-escaped, and control
//     characters, invalid UTF-8, C1 controls and bidirectional-override characters written
//     as \xNN per byte. In addresses, '<' and '>' are \x-escaped too, so a recipient cannot
//     fake a list separator. An empty value is "".
//   * JSON: strings are JSON-escaped; invalid UTF-8 becomes U+FFFD.
// - The recipient list is the transaction's accepted recipients followed by the one being
//   decided (rcpt stage), when it is not already the last one.
// - Optional text fields appear only when relevant: client_name (MTA-verified name known),
//   dry_run/applied (dry-run mode), trusted, failed_checks, reason. JSON always has them.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "core/verdict.h"
#include "engine/transaction.h"

namespace spamward {

// The text line, without time or level, starting with "decision ".
std::string format_decision_text(const Transaction& tx, const Verdict& v);

// The JSON object, without "time" (the logger adds it as the line is written).
nlohmann::json decision_json(const Transaction& tx, const Verdict& v);

// Writes one line through decision_logger() at info level. `json` should match the
// configured [log] format, so a JSON log holds only JSON objects.
void log_decision(const Transaction& tx, const Verdict& v, bool json);

}  // namespace spamward
