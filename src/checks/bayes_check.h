// The Bayes check (issue 6; DESIGN §3.6 BAYES_SPAM, BAYES_HAM): the organisation's own
// classifier (bayes/bayes.h) on the parsed message.
//
// Contract:
// - Stage eom, family content. Emits nothing without a message, and nothing while the
//   database in use has fewer than [bayes] min_learned ham and spam (Bayes::classify).
// - Emits at most one of BAYES_SPAM (positive, growing with confidence up to 7.0: Bayes alone
//   can tag, never refuse) and BAYES_HAM (negative, down to -3.0), with the probability and
//   the database in the detail. A [scores] override replaces the scaled score.
// - can_only_lower(): its failure (a store error) caps the verdict at tempfail, since it might
//   have said BAYES_HAM (DESIGN §1). It runs synchronously (LMDB reads are memory-mapped).
// - The Engine's autolearning (engine.cpp) uses the same Bayes object after the verdict.
#pragma once

#include <memory>

#include "bayes/bayes.h"
#include "engine/check.h"

namespace spamward {

// Null when `bayes` is null (no store): the check then does not exist.
std::unique_ptr<Check> make_bayes_check(Bayes* bayes);

}  // namespace spamward
