// The JSON form of a Verdict (DESIGN §3.4), shared by `spamward check --json` and the HTTP
// check API: {"file": null, "action", "score", "families", "symbols": [{name, score, family,
// detail}], "reason"}. Callers set "file" (and "index" for mbox messages) themselves.
// Serialise with error_handler_t::replace: details may hold bytes from the wire.
#pragma once

#include <nlohmann/json.hpp>

#include "core/verdict.h"

namespace spamward {

nlohmann::json verdict_json(const Verdict& v);

}  // namespace spamward
