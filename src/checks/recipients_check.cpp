#include "checks/recipients_check.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "auth/batv.h"
#include "core/strings.h"
#include "state/address_guessing.h"

namespace spamward {

namespace {

AddressGuessingOptions guessing_options(const Config& config, const Env& env) {
  AddressGuessingOptions options;
  options.threshold = config.recipients.guess_threshold;
  options.window = config.recipients.guess_window;
  options.ipv4_prefix = config.reputation.ipv4_prefix;
  options.ipv6_prefix = config.reputation.ipv6_prefix;
  options.record_offences = !config.actions.dry_run && !env.read_only;
  return options;
}

class RecipientsCheck final : public SyncCheck {
 public:
  RecipientsCheck(const Config& config, const Env& env, std::shared_ptr<RecipientList> list)
      : list_(std::move(list)),
        clock_(env.clock),
        batv_keys_(config.batv.keys),
        batv_max_age_(config.batv.max_age) {
    if (env.store && env.clock) {
      guessing_ = std::make_unique<AddressGuessing>(*env.store, *env.clock,
                                                    guessing_options(config, env), env.reputation);
    }
    read_only_ = env.read_only;
  }

  std::string_view name() const override { return "recipients"; }
  Stage stage() const override { return Stage::rcpt; }
  Family family() const override { return Family::behaviour; }

  std::vector<Symbol> evaluate(const Transaction& tx) const override {
    std::vector<Symbol> out;
    if (tx.recipient.empty()) return out;
    std::string recipient = tx.recipient;
    if (!batv_keys_.empty() && clock_ && batv_is_tagged(recipient)) {
      BatvResult tag = batv_verify(recipient, batv_keys_, clock_->now(), batv_max_age_);
      if (tag.status == BatvStatus::valid) recipient = tag.address;
    }
    RecipientLookup lookup = list_->current()->classify(recipient);
    const bool may_note = guessing_ && tx.client_address && !read_only_ && !tx.read_only;
    if (lookup.status == RecipientStatus::not_ours) return out;
    if (lookup.status == RecipientStatus::valid) {
      if (may_note) guessing_->note_valid(*tx.client_address);
      return out;
    }
    if (!lookup.typo_of.empty()) {
      out.push_back(known_symbol("RCPT_UNKNOWN", printable(recipient, 128) + " (typo of " +
                                                     printable(lookup.typo_of, 128) + "?)"));
      return out;
    }
    out.push_back(known_symbol("RCPT_UNKNOWN", printable(recipient, 128)));
    if (may_note) {
      GuessVerdict verdict = guessing_->note_unknown(*tx.client_address, recipient);
      if (verdict.guessing) out.push_back(known_symbol("ADDRESS_GUESSING", verdict.evidence));
    }
    return out;
  }

 private:
  std::shared_ptr<RecipientList> list_;
  const Clock* clock_;
  std::vector<std::string> batv_keys_;
  Duration batv_max_age_;
  std::unique_ptr<AddressGuessing> guessing_;
  bool read_only_ = false;
};

}  // namespace

std::shared_ptr<RecipientList> load_recipient_list(const Config& config) {
  std::string path = recipient_list_path(config.recipients.valid);
  if (path.empty()) return nullptr;
  try {
    return std::make_shared<RecipientList>(path);
  } catch (const RecipientListError& e) {
    if (e.line() == 0)
      throw ConfigError(config.source, config.recipients.valid_line, "recipients.valid",
                        path + ": " + e.what());
    throw ConfigError(path, e.line(), "recipients.valid", e.what());
  }
}

std::unique_ptr<Check> make_recipients_check(const Config& config, const Env& env,
                                             std::shared_ptr<RecipientList> list) {
  if (!list) return nullptr;
  return std::make_unique<RecipientsCheck>(config, env, std::move(list));
}

std::unique_ptr<MtaLogFollower> follow_mta_log(const Config& config, const Env& env,
                                               std::shared_ptr<RecipientList> list) {
  if (config.recipients.follow_log.empty() || !env.store || !env.clock) return nullptr;
  auto guessing = std::make_shared<AddressGuessing>(*env.store, *env.clock,
                                                    guessing_options(config, env), env.reputation);
  auto trusted = config.network.trusted;
  auto on_event = [guessing, trusted, list](const UnknownRecipientEvent& event) {
    for (const auto& p : trusted)
      if (p.contains(event.client)) return;
    if (list) {
      RecipientLookup lookup = list->current()->classify(event.recipient);
      if (lookup.status == RecipientStatus::valid || !lookup.typo_of.empty()) return;
    }
    try {
      guessing->note_unknown(event.client, event.recipient);
    } catch (const std::exception& e) {
      spdlog::warn("recipients: cannot note an unknown recipient from the MTA's log: {}", e.what());
    }
  };
  auto follower = std::make_unique<MtaLogFollower>(config.recipients.follow_log, on_event);
  follower->start();
  spdlog::info("recipients: following {} for unknown-recipient refusals",
               config.recipients.follow_log);
  return follower;
}

}  // namespace spamward
