#include "checks/reputation_check.h"

#include <fmt/chrono.h>
#include <fmt/format.h>

namespace spamward {

namespace {

class ReputationCheck final : public SyncCheck {
 public:
  explicit ReputationCheck(Reputation& reputation) : reputation_(reputation) {}

  std::string_view name() const override { return "reputation"; }
  Stage stage() const override { return Stage::connect; }
  Family family() const override { return Family::behaviour; }

  std::vector<Symbol> evaluate(const Transaction& tx) const override {
    std::vector<Symbol> out;
    if (!tx.client_address) return out;
    if (auto ban = reputation_.ban_for(*tx.client_address)) {
      out.push_back(banned_symbol(*ban));
      return out;
    }
    double count = reputation_.offence_count(*tx.client_address);
    if (count >= 0.5) {
      out.push_back(known_symbol("REPUTATION_OFFENDER",
                                 fmt::format("{:.1f} recent offences (decayed)", count)));
    }
    return out;
  }

 private:
  Reputation& reputation_;
};

}  // namespace

Symbol banned_symbol(const Ban& ban) {
  Symbol s = known_symbol(
      "REPUTATION_BANNED",
      fmt::format("{} until {:%Y-%m-%d %H:%M:%S} UTC, offence {}{}{}", ban.target.to_string(),
                  std::chrono::time_point_cast<std::chrono::seconds>(ban.until), ban.offence_number,
                  ban.reason.empty() ? "" : ": ", ban.reason));
  s.permanent = ban.permanent;
  return s;
}

std::unique_ptr<Check> make_reputation_check(const Env& env) {
  if (!env.reputation) return nullptr;
  return std::make_unique<ReputationCheck>(*env.reputation);
}

}  // namespace spamward
