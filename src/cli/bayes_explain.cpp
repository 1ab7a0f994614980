#include "cli/bayes_explain.h"

#include <fmt/format.h>

namespace spamward::cli {

namespace {

const char* model_name(BayesModel model) {
  return model == BayesModel::logistic ? "logistic" : "fisher";
}

std::string database_name(const std::string& ns) {
  return ns.empty() ? "global database" : "database of " + ns;
}

}  // namespace

void print_bayes_explanation(std::ostream& out, const BayesResult& result, uint64_t min_learned) {
  const Classification& c = result.classification;
  if (!c.active) {
    out << fmt::format("bayes:  inactive ({}: {} spam and {} ham learned; it needs {} of each)\n",
                       database_name(result.ns), result.totals.spam, result.totals.ham,
                       min_learned);
    return;
  }
  if (c.model == BayesModel::logistic) {
    out << fmt::format(
        "bayes:  logistic model, {}: z={:.3f} p={:.5f} (bias {:+.3f}; {} of {} tokens have a "
        "weight; the strongest shares of z:)\n",
        database_name(result.ns), c.log_odds, c.probability, c.bias, c.clues_used, c.tokens);
    for (const Clue& clue : c.top) out << fmt::format("  {:+.4f}  {}\n", clue.weight, clue.text);
    return;
  }
  out << fmt::format("bayes:  Fisher, {}: p={:.5f} ({} clues of {} tokens; the strongest:)\n",
                     database_name(result.ns), c.probability, c.clues_used, c.tokens);
  for (const Clue& clue : c.top) {
    out << fmt::format("  f={:.4f}  spam {:>5} ham {:>5}  {}\n", clue.f, clue.counts.spam,
                       clue.counts.ham, clue.text);
  }
}

nlohmann::json bayes_explanation_json(const BayesResult& result, uint64_t min_learned) {
  const Classification& c = result.classification;
  nlohmann::json j;
  j["active"] = c.active;
  j["database"] = result.ns;
  j["learned"] = {{"spam", result.totals.spam}, {"ham", result.totals.ham}};
  if (!c.active) {
    j["min_learned"] = min_learned;
    return j;
  }
  j["model"] = model_name(c.model);
  j["p"] = c.probability;
  j["tokens"] = c.tokens;
  j["clues_used"] = c.clues_used;
  nlohmann::json clues = nlohmann::json::array();
  if (c.model == BayesModel::logistic) {
    j["z"] = c.log_odds;
    j["bias"] = c.bias;
    for (const Clue& clue : c.top) clues.push_back({{"token", clue.text}, {"weight", clue.weight}});
  } else {
    for (const Clue& clue : c.top) {
      clues.push_back({{"token", clue.text},
                       {"f", clue.f},
                       {"spam", clue.counts.spam},
                       {"ham", clue.counts.ham}});
    }
  }
  j["clues"] = std::move(clues);
  return j;
}

}  // namespace spamward::cli
