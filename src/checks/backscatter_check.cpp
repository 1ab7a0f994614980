#include "checks/backscatter_check.h"

#include <string>
#include <utility>

#include "auth/batv.h"
#include "core/strings.h"

namespace spamward {
namespace {

bool is_exempt_local_part(std::string_view address) {
  size_t at = address.rfind('@');
  std::string_view local = at == std::string_view::npos ? address : address.substr(0, at);
  return iequals(local, "postmaster") || iequals(local, "abuse");
}

class BackscatterCheck final : public SyncCheck {
 public:
  BackscatterCheck(const Clock& clock, std::vector<std::string> keys, Duration max_age)
      : clock_(clock), keys_(std::move(keys)), max_age_(max_age) {}

  std::string_view name() const override { return "backscatter"; }
  Stage stage() const override { return Stage::rcpt; }
  Family family() const override { return Family::behaviour; }

 protected:
  std::vector<Symbol> evaluate(const Transaction& tx) const override {
    std::vector<Symbol> out;
    if (!tx.sender.empty() || tx.authenticated()) return out;
    std::string_view recipient = tx.recipient;
    if (recipient.size() >= 2 && recipient.front() == '<' && recipient.back() == '>') {
      recipient = recipient.substr(1, recipient.size() - 2);
    }
    if (recipient.empty() || is_exempt_local_part(recipient)) return out;
    BatvResult result = batv_verify(recipient, keys_, clock_.now(), max_age_);
    switch (result.status) {
      case BatvStatus::valid:
        break;
      case BatvStatus::untagged:
        out.push_back(known_symbol("BACKSCATTER", "bounce to untagged address"));
        break;
      case BatvStatus::expired:
        out.push_back(known_symbol("BACKSCATTER", "expired BATV tag"));
        break;
      case BatvStatus::bad_signature:
        out.push_back(known_symbol("BACKSCATTER", "bad BATV signature"));
        break;
      case BatvStatus::malformed:
        out.push_back(known_symbol("BACKSCATTER", "malformed BATV tag"));
        break;
    }
    return out;
  }

  const Clock& clock_;
  std::vector<std::string> keys_;
  Duration max_age_;
};

}  // namespace

std::unique_ptr<Check> make_backscatter_check(const Config& config, const Env& env) {
  if (config.batv.keys.empty() || env.clock == nullptr) return nullptr;
  return std::make_unique<BackscatterCheck>(*env.clock, config.batv.keys, config.batv.max_age);
}

}  // namespace spamward
