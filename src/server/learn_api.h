// Learning through the daemon: the HTTP learn API (POST /api/v1/learn/spam and
// /api/v1/learn/ham) and the spamd TELL learner, both on one Bayes object (bayes/bayes.h).
//
// Contract (HTTP):
// - The body is one raw message. It is learned as the path says into the global database,
//   or into a recipient domain's with `?domain=D` (or `?rcpt=ADDRESS`, whose domain is used)
//   when [bayes] per_domain is on. `?forget=1` removes it instead.
// - These routes change state, so the HTTP server asks for the admin token (401 without or
//   with a wrong one; 403 when none is configured).
// - 200 with {"outcome": "learned|moved|already_learned|forgotten|not_learned",
//   "class": "spam|ham", "database": "global|DOMAIN", "learned": {"spam": N, "ham": N}};
//   400 for a malformed query; 500 with the reason when the store fails.
// - Learned changes are committed at once (the Store then makes them durable).
// Contract (spamd): SpamdLearner on the same rules; TELL learns into the global database.
#pragma once

#include <memory>

#include "bayes/bayes.h"
#include "mail/message.h"
#include "server/http_server.h"
#include "server/spamd_server.h"

namespace spamward {

inline constexpr const char* kLearnSpamPath = "/api/v1/learn/spam";
inline constexpr const char* kLearnHamPath = "/api/v1/learn/ham";

HttpServer::Handler make_learn_handler(Bayes& bayes, MessageClass cls, MessageLimits limits);

std::shared_ptr<SpamdLearner> make_spamd_learner(Bayes& bayes);

}  // namespace spamward
