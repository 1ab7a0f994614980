#include "engine/greylist_gate.h"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "core/duration.h"
#include "engine/engine.h"
#include "mail/address.h"

namespace spamward {

namespace {

bool has_symbol(const std::vector<Symbol>& symbols, std::string_view name) {
  for (const auto& s : symbols)
    if (s.name == name) return true;
  return false;
}

bool dnswl_listed(const std::vector<Symbol>& symbols) {
  for (const auto& s : symbols)
    if (s.name.starts_with("DNSWL_")) return true;
  return false;
}

// The forward-confirmed client name the MTA gave ("unknown" or empty: none).
std::string_view verified_name(const Transaction& tx) {
  if (tx.client_name.empty() || tx.client_name == "unknown") return {};
  return tx.client_name;
}

std::string utc_time(TimePoint t) {
  auto seconds = std::chrono::time_point_cast<std::chrono::seconds>(t);
  return fmt::format("{:%H:%M:%S} UTC", seconds);
}

// "5 minutes", "45 seconds": how long a sender must wait, rounded up to what a human reads.
std::string wait_text(Duration wait) {
  int64_t s = (wait.count() + 999) / 1000;
  if (s < 1) s = 1;
  if (s < 120) return fmt::format("{} second{}", s, s == 1 ? "" : "s");
  int64_t m = (s + 59) / 60;
  if (m < 120) return fmt::format("{} minutes", m);
  return fmt::format("{} hours", (m + 59) / 60);
}

}  // namespace

std::shared_ptr<const GreylistCompatList> load_greylist_compat(const Config& config) {
  const auto& path = config.greylist.compat_list;
  if (path.empty()) {
    return std::shared_ptr<const GreylistCompatList>(&GreylistCompatList::builtin(),
                                                     [](const GreylistCompatList*) {});
  }
  auto fail = [&](const std::string& problem) {
    return ConfigError(config.source, config.greylist.compat_list_line, "greylist.compat_list",
                       problem);
  };
  std::ifstream in(path, std::ios::binary);
  if (!in) throw fail("cannot read " + path);
  std::ostringstream text;
  text << in.rdbuf();
  if (text.str().size() > 4 * 1024 * 1024) throw fail(path + " is larger than 4 MiB");
  try {
    return std::make_shared<const GreylistCompatList>(GreylistCompatList::parse(text.str(), path));
  } catch (const std::invalid_argument& e) {
    throw fail(e.what());
  }
}

GreylistGate::GreylistGate(const Config& config, const Env& env,
                           std::shared_ptr<const GreylistCompatList> compat)
    : config_(config), env_(env), compat_(std::move(compat)) {
  if (env_.store && env_.clock)
    table_ = std::make_unique<GreylistTable>(*env_.store, *env_.clock, config_.greylist);
}

GreylistDecision GreylistGate::apply(const Transaction& tx, std::string_view spf_pass_domain,
                                     const std::vector<Symbol>& symbols, double score, bool refused,
                                     GreylistProgress& progress, bool read_only) {
  read_only = read_only || env_.read_only;
  GreylistDecision out;
  const auto& gc = config_.greylist;
  auto deferral_text = [&] {
    auto now = env_.clock->now();
    Duration wait = progress.retry_at > now ? Duration(progress.retry_at - now) : Duration(0);
    return fmt::format("Greylisted, please try again in {} (after {})", wait_text(wait),
                       utc_time(progress.retry_at));
  };
  // A transaction deferred at RCPT stays deferred as a whole (the policy server at DATA).
  if (progress.deferred && tx.stage > Stage::rcpt) {
    out.defer = true;
    out.reply_text = deferral_text();
    out.symbols.push_back(known_symbol("GREYLIST", "a recipient of this message was deferred"));
    return out;
  }
  if (!table_ || !tx.client_address || gc.mode == "off" || refused) return out;
  if (gc.mode == "selective" && score < config_.actions.greylist) return out;
  if (tx.authenticated() || has_symbol(symbols, "ALLOWLIST") || dnswl_listed(symbols)) return out;
  if (compat_) {
    if (auto entry = compat_->match(*tx.client_address, verified_name(tx))) return out;
  }

  const IpAddress& client = *tx.client_address;
  Prefix network(client, client.is_v4() ? gc.ipv4_prefix : gc.ipv6_prefix);
  std::vector<std::string> entities{network.to_string()};
  std::string sender_domain = domain_of(tx.sender);
  // SPF vouches for the sender's own domain (for a bounce: the HELO domain it checked).
  std::string spf_domain = to_lower(spf_pass_domain);
  bool spf_keyed = !spf_domain.empty() && (tx.sender.empty() || spf_domain == sender_domain);
  if (spf_keyed) entities.push_back("spf:" + spf_domain);

  for (const auto& entity : entities) {
    if (auto until = table_->auto_allowed_until(entity)) {
      if (!read_only) table_->renew_auto_allow(entity);
      out.symbols.push_back(
          known_symbol("GREYLIST_AUTO_ALLOWED",
                       fmt::format("{} until {:%Y-%m-%d}", entity,
                                   std::chrono::time_point_cast<std::chrono::seconds>(*until))));
      return out;
    }
  }

  // The recipients to attempt now: the current one at RCPT, else every one not yet gated.
  std::vector<std::string> recipients;
  auto consider = [&](const std::string& r) {
    if (r.empty() || progress.gated.contains(to_lower(r))) return;
    if (matches_exempt_recipient(r)) return;
    recipients.push_back(to_lower(r));
  };
  if (tx.stage == Stage::rcpt) {
    consider(tx.recipient);
  } else if (tx.stage > Stage::rcpt) {
    for (const auto& r : tx.recipients) consider(r);
  }
  if (recipients.empty()) {
    // Nothing new to attempt: a later stage of a message whose triplets passed says so too.
    if (!progress.deferred && !progress.passed_detail.empty())
      out.symbols.push_back(known_symbol("GREYLIST_PASSED", progress.passed_detail));
    return out;
  }

  GreylistKey key;
  key.network = spf_keyed ? entities.back() : entities.front();
  key.sender = normalize_sender(tx.sender);
  const std::string& tx_id = tx.instance.empty() ? tx.id : tx.instance;
  int passed = 0;
  std::string passed_detail;
  for (const auto& r : recipients) {
    key.recipient = r;
    GreylistAnswer answer = table_->attempt(key, entities, tx_id, read_only);
    if (!read_only) progress.gated.insert(r);
    if (deferred(answer.outcome)) {
      if (!progress.deferred || answer.retry_at > progress.retry_at)
        progress.retry_at = answer.retry_at;
      progress.deferred = true;
      out.symbols.push_back(known_symbol(
          "GREYLIST",
          fmt::format("{} {} -> {}: {}{}", key.network, key.sender, r, to_string(answer.outcome),
                      answer.early_retries ? fmt::format(", {} early retries", answer.early_retries)
                                           : std::string())));
    } else {
      ++passed;
      if (passed_detail.empty())
        passed_detail =
            fmt::format("{} {} -> {}: {}", key.network, key.sender, r, to_string(answer.outcome));
    }
    if (answer.hammering && !read_only && !config_.actions.dry_run && env_.reputation) {
      auto detail = fmt::format("{} early retries of {} {} -> {}", answer.early_retries,
                                key.network, key.sender, r);
      Ban ban = env_.reputation->record_offence(client, OffenceKind::hammering, detail);
      spdlog::warn("greylist: hammering from {} ({}); banned until {}", client.to_string(), detail,
                   utc_time(ban.until));
    }
  }
  if (progress.deferred) {
    out.defer = true;
    out.reply_text = deferral_text();
  } else if (passed > 0) {
    out.symbols.push_back(known_symbol("GREYLIST_PASSED", passed_detail));
    if (progress.passed_detail.empty()) progress.passed_detail = passed_detail;
  }
  return out;
}

bool GreylistGate::matches_exempt_recipient(std::string_view recipient) const {
  return matches_exempt(config_.exempt.recipients, recipient);
}

}  // namespace spamward
