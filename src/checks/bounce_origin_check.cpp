#include "checks/bounce_origin_check.h"

#include "auth/batv.h"
#include "core/strings.h"
#include "state/sent_messages.h"

namespace spamward {

namespace {

class BounceOriginCheck final : public SyncCheck {
 public:
  BounceOriginCheck(const Config& config, const Env& env)
      : sent_(*env.store, *env.clock, config.batv.max_age),
        clock_(*env.clock),
        keep_(config.batv.max_age),
        batv_keys_(config.batv.keys) {}

  std::string_view name() const override { return "bounce_origin"; }
  Stage stage() const override { return Stage::eom; }
  Family family() const override { return Family::behaviour; }

 protected:
  std::vector<Symbol> evaluate(const Transaction& tx) const override {
    std::vector<Symbol> out;
    if (!tx.sender.empty() || !tx.message || tx.authenticated()) return out;
    if (!batv_keys_.empty()) {
      for (const auto& r : tx.recipients)
        if (batv_verify(r, batv_keys_, clock_.now(), keep_).status != BatvStatus::valid)
          return out;  // the RCPT-stage check scored it already
    }
    auto ids = message_ids_in_body(tx.message->raw_body);
    if (ids.empty()) return out;
    auto since = sent_.remembering_since();
    if (!since || clock_.now() - *since < keep_) return out;
    for (const auto& id : ids)
      if (sent_.was_sent(id)) return out;
    out.push_back(known_symbol("BACKSCATTER", "bounce of a message we never sent (Message-ID " +
                                                  printable(ids.front(), 128) + ")"));
    return out;
  }

 private:
  mutable SentMessages sent_;
  const Clock& clock_;
  Duration keep_;
  std::vector<std::string> batv_keys_;
};

}  // namespace

std::unique_ptr<Check> make_bounce_origin_check(const Config& config, const Env& env) {
  if (!env.store || !env.clock) return nullptr;
  return std::make_unique<BounceOriginCheck>(config, env);
}

}  // namespace spamward
