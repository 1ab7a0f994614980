#include "checks/spf_check.h"

#include <utility>
#include <vector>

namespace spamward {
namespace {

std::string_view symbol_name(SpfCode code) {
  switch (code) {
    case SpfCode::pass:
      return "SPF_PASS";
    case SpfCode::fail:
      return "SPF_FAIL";
    case SpfCode::softfail:
      return "SPF_SOFTFAIL";
    case SpfCode::neutral:
      return "SPF_NEUTRAL";
    case SpfCode::none:
      return "SPF_NONE";
    case SpfCode::permerror:
      return "SPF_PERMERROR";
    case SpfCode::temperror:
      return "SPF_TEMPERROR";
  }
  return "SPF_NONE";
}

std::string detail_of(const SpfIdentity& id, const SpfResult& r) {
  std::string out = (id.is_helo ? "helo " : "mfrom ") + to_lower(id.domain) + ": ";
  if (!r.mechanism.empty()) {
    out += r.mechanism;
  } else if (!r.problem.empty()) {
    out += r.problem;
  } else {
    out += "no mechanism matched";
  }
  if (r.code == SpfCode::fail && !r.explanation.empty()) out += "; " + r.explanation;
  // Details end up in logs and headers: keep them short and on one line.
  constexpr size_t kMaxDetail = 300;
  if (out.size() > kMaxDetail) out.resize(kMaxDetail);
  for (char& c : out) {
    if (c < 0x20 || c > 0x7e) c = '?';
  }
  return out;
}

class SpfCheck final : public Check {
 public:
  SpfCheck(Resolver& resolver, const Clock* clock, SpfOptions options)
      : resolver_(resolver), clock_(clock), options_(std::move(options)) {}

  std::string_view name() const override { return "spf"; }
  Stage stage() const override { return Stage::mail; }
  Family family() const override { return Family::auth; }

  boost::asio::awaitable<std::vector<Symbol>> run(const Transaction& tx) override {
    std::vector<Symbol> out;
    if (!tx.client_address || tx.authenticated()) co_return out;
    if (tx.sender.empty() && tx.helo.empty()) co_return out;
    SpfIdentity id = spf_identity(tx.sender, tx.helo);
    SpfOptions options = options_;
    if (clock_) options.now_unix = to_unix_ms(clock_->now()) / 1000;
    auto evaluation = check_host(resolver_, *tx.client_address, id.domain, id.sender, tx.helo,
                                 std::move(options));
    SpfResult result = co_await std::move(evaluation);

    Symbol s;
    s.name = std::string(symbol_name(result.code));
    s.family = Family::auth;
    const SymbolInfo* info = find_symbol(s.name);
    s.score = info ? info->default_score : 0.0;
    if (result.code == SpfCode::temperror) s.score = 0.0;
    s.detail = detail_of(id, result);
    out.push_back(std::move(s));
    co_return out;
  }

  void publish(const std::vector<Symbol>& emitted, Transaction& tx) const override {
    for (const auto& s : emitted) {
      // A definite answer for the identity (DMARC: its failure then counts).
      if (s.name.starts_with("SPF_") && s.name != "SPF_TEMPERROR") tx.spf_decided = true;
      // The HELO identity (a bounce) vouches for no sender.
      if (s.name == "SPF_PASS" && !tx.sender.empty()) tx.spf_pass_domain = domain_of(tx.sender);
    }
  }

 private:
  Resolver& resolver_;
  const Clock* clock_;
  SpfOptions options_;
};

}  // namespace

std::unique_ptr<Check> make_spf_check(const Env& env, SpfOptions options) {
  if (!env.resolver) return nullptr;
  return std::make_unique<SpfCheck>(*env.resolver, env.clock, std::move(options));
}

}  // namespace spamward
