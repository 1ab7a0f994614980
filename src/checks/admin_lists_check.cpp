#include "checks/admin_lists_check.h"

#include <algorithm>
#include <string>
#include <utility>

namespace spamward {
namespace {

// Which facts a check matches and what vouching it needs.
enum class Match {
  client,              // tx.client_address against network entries
  sender,              // tx.sender as written
  sender_spf,          // tx.sender, when SPF passed for its domain
  sender_dkim_no_spf,  // tx.sender, when DKIM vouches and SPF did not
};

bool spf_vouches(const Transaction& tx, const std::string& domain) {
  return !domain.empty() && to_lower(tx.spf_pass_domain) == domain;
}

bool dkim_vouches(const Transaction& tx, const std::string& domain) {
  return !domain.empty() &&
         std::any_of(tx.dkim_valid_domains.begin(), tx.dkim_valid_domains.end(),
                     [&](const std::string& d) { return to_lower(d) == domain; });
}

class AdminListCheck final : public Check {
 public:
  AdminListCheck(std::string_view name, Stage stage, ListKind kind, Match match,
                 std::shared_ptr<AdminLists> lists)
      : name_(name), stage_(stage), kind_(kind), match_(match), lists_(std::move(lists)) {
    std::string_view symbol = kind == ListKind::allow ? "ALLOWLIST" : "DENYLIST";
    symbol_.name = std::string(symbol);
    symbol_.family = Family::admin;
    const SymbolInfo* info = find_symbol(symbol);
    symbol_.score = info ? info->default_score : (kind == ListKind::allow ? -20.0 : 20.0);
  }

  std::string_view name() const override { return name_; }
  Stage stage() const override { return stage_; }
  // The DKIM-vouched variant needs the DKIM check's result of the same (eom) stage.
  bool reads_published() const override { return match_ == Match::sender_dkim_no_spf; }
  Family family() const override { return Family::admin; }
  bool can_only_lower() const override { return kind_ == ListKind::allow; }

  // The lists are an in-memory snapshot: always answered synchronously.
  std::optional<std::vector<Symbol>> run_now(const Transaction& tx) override {
    std::vector<Symbol> out;
    if (auto entry = lookup(tx)) {
      Symbol s = symbol_;
      s.detail = std::move(*entry);
      out.push_back(std::move(s));
    }
    return out;
  }
  boost::asio::awaitable<std::vector<Symbol>> run(const Transaction& tx) override {
    co_return *run_now(tx);
  }

 private:
  std::optional<std::string> lookup(const Transaction& tx) const {
    if (match_ == Match::client) {
      if (!tx.client_address) return std::nullopt;
      return lists_->match_client(kind_, *tx.client_address);
    }
    if (tx.sender.empty()) return std::nullopt;  // a bounce has no sender to match
    std::string domain = domain_of(tx.sender);
    if (match_ == Match::sender_spf && !spf_vouches(tx, domain)) return std::nullopt;
    if (match_ == Match::sender_dkim_no_spf &&
        (spf_vouches(tx, domain) || !dkim_vouches(tx, domain))) {
      return std::nullopt;
    }
    return lists_->match_sender(kind_, tx.sender);
  }

  std::string name_;
  Stage stage_;
  ListKind kind_;
  Match match_;
  std::shared_ptr<AdminLists> lists_;
  Symbol symbol_;
};

}  // namespace

std::unique_ptr<Check> make_allowlist_check(std::shared_ptr<AdminLists> lists) {
  return std::make_unique<AdminListCheck>("allowlist", Stage::connect, ListKind::allow,
                                          Match::client, std::move(lists));
}

std::unique_ptr<Check> make_denylist_check(std::shared_ptr<AdminLists> lists) {
  return std::make_unique<AdminListCheck>("denylist", Stage::connect, ListKind::deny, Match::client,
                                          std::move(lists));
}

std::unique_ptr<Check> make_denylist_sender_check(std::shared_ptr<AdminLists> lists) {
  return std::make_unique<AdminListCheck>("denylist_sender", Stage::mail, ListKind::deny,
                                          Match::sender, std::move(lists));
}

std::unique_ptr<Check> make_allowlist_sender_check(std::shared_ptr<AdminLists> lists) {
  return std::make_unique<AdminListCheck>("allowlist_sender", Stage::rcpt, ListKind::allow,
                                          Match::sender_spf, std::move(lists));
}

std::unique_ptr<Check> make_allowlist_sender_dkim_check(std::shared_ptr<AdminLists> lists) {
  return std::make_unique<AdminListCheck>("allowlist_sender_dkim", Stage::eom, ListKind::allow,
                                          Match::sender_dkim_no_spf, std::move(lists));
}

std::vector<std::unique_ptr<Check>> make_admin_list_checks(std::shared_ptr<AdminLists> lists) {
  std::vector<std::unique_ptr<Check>> checks;
  checks.push_back(make_allowlist_check(lists));
  checks.push_back(make_denylist_check(lists));
  checks.push_back(make_denylist_sender_check(lists));
  checks.push_back(make_allowlist_sender_check(lists));
  checks.push_back(make_allowlist_sender_dkim_check(std::move(lists)));
  return checks;
}

}  // namespace spamward
