// The Bayes part of `spamward check --explain`: which tokens made the classifier's answer,
// as text for a terminal and as JSON for `--json` (the "bayes" member of a message's object).
//
// Contract:
// - Input is a BayesResult from Bayes::classify() with `explain` > 0 (clues with texts).
// - An inactive classifier is explained too: how many messages are learned and how many it
//   needs (`min_learned` of each class).
// - The logistic model lists each token's share of the log-odds z (positive: towards spam);
//   the shares, plus the bias, plus those of the tokens not listed, add up to z. Fisher lists
//   its strongest clues with Robinson's f(w) and the token's learned counts.
// - Token texts come from the message and may hold any bytes; JSON output replaces invalid
//   UTF-8 (the caller dumps with error_handler_t::replace), text output prints them as they are.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <ostream>

#include "bayes/bayes.h"

namespace spamward::cli {

void print_bayes_explanation(std::ostream& out, const BayesResult& result, uint64_t min_learned);
nlohmann::json bayes_explanation_json(const BayesResult& result, uint64_t min_learned);

}  // namespace spamward::cli
