#include "checks/bayes_check.h"

#include <fmt/format.h>

#include <algorithm>

namespace spamward {
namespace {

class BayesCheck final : public Check {
 public:
  explicit BayesCheck(Bayes& bayes) : bayes_(bayes) {}

  std::string_view name() const override { return "bayes"; }
  Stage stage() const override { return Stage::eom; }
  Family family() const override { return Family::content; }
  bool can_only_lower() const override { return true; }

  boost::asio::awaitable<std::vector<Symbol>> run(const Transaction& tx) override {
    co_return evaluate(tx);
  }
  std::optional<std::vector<Symbol>> run_now(const Transaction& tx) override {
    return evaluate(tx);
  }

 private:
  std::vector<Symbol> evaluate(const Transaction& tx) {
    std::vector<Symbol> out;
    if (!tx.message) return out;
    std::vector<std::string> recipients = tx.recipients;
    if (recipients.empty() && !tx.recipient.empty()) recipients.push_back(tx.recipient);
    BayesResult result = bayes_.classify(*tx.message, recipients);
    const BayesScoring& scoring = bayes_.options().scoring;
    if (auto symbol = bayes_symbol(result.classification, scoring)) {
      // Scored by confidence: an override of BAYES_* sets the full score (scoring's maximum).
      const double full = symbol->name == "BAYES_SPAM" ? scoring.spam_max : scoring.ham_max;
      if (full != 0.0) symbol->scale = std::clamp(symbol->score / full, 0.0, 1.0);
      if (!result.ns.empty()) symbol->detail += fmt::format(" db={}", result.ns);
      out.push_back(std::move(*symbol));
    }
    return out;
  }

  Bayes& bayes_;
};

}  // namespace

std::unique_ptr<Check> make_bayes_check(Bayes* bayes) {
  if (!bayes) return nullptr;
  return std::make_unique<BayesCheck>(*bayes);
}

}  // namespace spamward
