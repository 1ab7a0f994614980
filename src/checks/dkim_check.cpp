#include "checks/dkim_check.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "auth/dkim_keys.h"
#include "core/strings.h"
#include "mail/date.h"

namespace spamward {
namespace {

constexpr double kListMaxScore = 0.5;  // DKIM_INVALID on list mail (List-Id)
constexpr size_t kMaxDetail = 300;

Symbol make_symbol(std::string_view name, std::string detail, double cap = -1.0) {
  Symbol s;
  s.name = std::string(name);
  s.family = Family::auth;
  const SymbolInfo* info = find_symbol(s.name);
  s.score = info ? info->default_score : 0.0;
  if (cap >= 0.0) {
    s.max_score = cap;
    s.score = std::min(s.score, cap);
  }
  s.detail = std::move(detail);
  return s;
}

std::string ignored_note(size_t ignored) {
  if (ignored == 0) return "";
  return " (" + std::to_string(ignored) + " more signature" + (ignored == 1 ? "" : "s") +
         " ignored)";
}

class DkimCheck final : public Check {
 public:
  DkimCheck(Resolver& resolver, const Clock* clock, DkimLimits limits)
      : resolver_(resolver), clock_(clock), limits_(limits) {}

  std::string_view name() const override { return "dkim"; }
  Stage stage() const override { return Stage::eom; }
  Family family() const override { return Family::auth; }

  // No message, or no signature: answered without a coroutine.
  std::optional<std::vector<Symbol>> run_now(const Transaction& tx) override {
    if (!tx.message) return std::vector<Symbol>{};
    for (const auto& h : tx.message->headers) {
      if (dkim_field_is(h.raw, "DKIM-Signature")) return std::nullopt;
    }
    return std::vector<Symbol>{make_symbol("DKIM_NONE", "no signature")};
  }

  boost::asio::awaitable<std::vector<Symbol>> run(const Transaction& tx) override {
    std::vector<Symbol> out;
    std::shared_ptr<const Message> message = tx.message;  // kept alive across the lookups
    if (!message) co_return out;
    std::string id = tx.id;
    int64_t now = reference_time(*message);
    auto verification = verify_dkim(resolver_, message, now, limits_);
    DkimVerification v = co_await std::move(verification);
    out = judge(v, *message, id);
    co_return out;
  }

  void publish(const std::vector<Symbol>& emitted, Transaction& tx) const override {
    for (const auto& s : emitted) {
      // Every signature failed for good, or there was none usable (DMARC: no aligned pass).
      if (s.name == "DKIM_INVALID" || s.name == "DKIM_NONE") tx.dkim_decided = true;
      if (s.name != "DKIM_VALID") continue;
      tx.dkim_valid_domains.clear();
      size_t start = 0;
      while (start < s.detail.size()) {
        size_t end = s.detail.find(',', start);
        if (end == std::string::npos) end = s.detail.size();
        if (end > start) tx.dkim_valid_domains.push_back(s.detail.substr(start, end - start));
        start = end + 1;
      }
    }
  }

 private:
  // Seconds since the epoch at which x= is judged; 0 (no expiry check) without a clock.
  int64_t reference_time(const Message& m) const {
    auto received = m.headers_named("Received");
    if (!received.empty()) {
      if (auto newest = received_date(received.front()->value)) {
        return to_unix_ms(*newest) / 1000;
      }
    }
    return clock_ ? to_unix_ms(clock_->now()) / 1000 : 0;
  }

  static std::vector<Symbol> judge(const DkimVerification& v, const Message& m,
                                   const std::string& id) {
    std::vector<std::string> passed;
    std::vector<std::string> failed;
    std::vector<std::string> unknown;
    bool testing_only = false;
    for (const auto& r : v.results) {
      std::string d = r.domain.empty() ? "?" : r.domain;
      switch (r.status) {
        case DkimStatus::pass:
          if (std::find(passed.begin(), passed.end(), r.domain) == passed.end()) {
            passed.push_back(r.domain);
          }
          break;
        case DkimStatus::temperror:
          unknown.push_back("d=" + d + " s=" + r.selector + ": " + r.reason);
          break;
        case DkimStatus::fail:
        case DkimStatus::permerror:
          if (r.body_mismatch && m.truncated) {
            unknown.push_back("d=" + d + ": " + r.reason + " on a truncated message");
          } else if (r.testing) {
            testing_only = true;
          } else {
            failed.push_back("d=" + d + ": " + r.reason);
          }
          break;
      }
    }
    std::vector<Symbol> out;
    if (!passed.empty()) {
      out.push_back(make_symbol("DKIM_VALID", join(passed)));
      return out;
    }
    if (!unknown.empty()) {
      // Fail open: what did not answer might have passed.
      spdlog::info("dkim (id={}): {}; no DKIM symbol (failing open)", id,
                   printable(join(unknown, "; "), kMaxDetail));
      return out;
    }
    if (!failed.empty()) {
      std::string detail = printable(join(failed, "; "), kMaxDetail) + ignored_note(v.ignored);
      bool list = m.header("List-Id") != nullptr;
      if (list) detail += " (mailing list)";
      out.push_back(make_symbol("DKIM_INVALID", std::move(detail), list ? kListMaxScore : -1.0));
      return out;
    }
    out.push_back(make_symbol(
        "DKIM_NONE", testing_only ? "only test-mode signatures failed" : "no usable signature"));
    return out;
  }

  Resolver& resolver_;
  const Clock* clock_;
  DkimLimits limits_;
};

}  // namespace

std::unique_ptr<Check> make_dkim_check(const Env& env, DkimLimits limits) {
  if (!env.resolver) return nullptr;
  return std::make_unique<DkimCheck>(*env.resolver, env.clock, limits);
}

}  // namespace spamward
