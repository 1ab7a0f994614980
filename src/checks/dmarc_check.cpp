#include "checks/dmarc_check.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "auth/dkim.h"
#include "core/strings.h"
#include "mail/mailbox.h"

namespace spamward {
namespace {

// "_dmarc." + name must stay a DNS name (253 bytes).
constexpr size_t kMaxDomain = 253 - 7;

// A lower-case DNS name with at least two labels: LDH and '_', labels of 1..63 bytes. (An
// internationalised From domain would need IDNA first: such mail gets no DMARC symbol.)
bool plausible_dns_name(std::string_view d) {
  if (d.empty() || d.size() > kMaxDomain || d.find('.') == std::string_view::npos) return false;
  size_t label = 0;
  for (char c : d) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok || ++label > 63) return false;
  }
  return label > 0;
}

// The one RFC5322.From domain, or empty (RFC 7489 §6.6.1: several domains, or none, are not
// evaluated here).
std::string from_domain(const Message& m) {
  auto froms = m.headers_named("From");
  if (froms.size() != 1) return "";
  std::string domain;
  for (const auto& mb : field_mailboxes(*froms.front(), 20)) {
    if (!mb.valid) continue;
    size_t at = mb.address.rfind('@');
    if (at == std::string::npos) return "";
    std::string d = normalize_domain(std::string_view(mb.address).substr(at + 1));
    if (domain.empty()) {
      domain = std::move(d);
    } else if (d != domain) {
      return "";
    }
  }
  return plausible_dns_name(domain) ? domain : "";
}

enum class Evidence { aligned, not_aligned, unknown };

// The facts the judgement needs, copied from the transaction before the first suspension.
struct Facts {
  std::string id;
  std::string spf_identity;  // envelope sender's domain, or HELO name for a bounce
  std::string spf_pass_domain;
  std::vector<std::string> dkim_valid_domains;
  std::vector<std::string> dkim_signed_domains;  // d= of the signatures that could pass
  bool spf_decided = false;                      // SPF answered for the identity (not a timeout)
  bool dkim_decided = false;  // every signature failed for good (or none was usable)
  bool mailing_list = false;
};

Evidence spf_evidence(const Facts& f, const std::string& from, DmarcAlignment mode) {
  if (dmarc_aligned(f.spf_pass_domain, from, mode)) return Evidence::aligned;
  if (f.spf_identity.empty()) return Evidence::unknown;
  // The identity aligns, yet no aligned pass: a failure when SPF answered; unknown when it
  // did not (a timeout might have been a pass).
  if (dmarc_aligned(f.spf_identity, from, mode) && !f.spf_decided) return Evidence::unknown;
  return Evidence::not_aligned;
}

Evidence dkim_evidence(const Facts& f, const std::string& from, DmarcAlignment mode) {
  for (const auto& d : f.dkim_valid_domains) {
    if (dmarc_aligned(d, from, mode)) return Evidence::aligned;
  }
  if (f.dkim_decided) return Evidence::not_aligned;  // every signature failed for good
  for (const auto& d : f.dkim_signed_domains) {
    // An aligned signature that did not verify, and DKIM did not say it failed for good: its
    // key lookup timed out, or it was not judged (the DKIM check missed the deadline).
    if (dmarc_aligned(d, from, mode)) return Evidence::unknown;
  }
  return Evidence::not_aligned;
}

// Outcome of one _dmarc lookup.
struct Lookup {
  enum class State { found, none, stop, unknown } state = State::unknown;
  DmarcRecord record;
  std::string why;  // for logs: why stop / unknown
};

class DmarcCheck final : public Check {
 public:
  DmarcCheck(Resolver& resolver, DmarcLimits limits, DmarcScores scores)
      : resolver_(resolver), limits_(limits), scores_(scores) {}

  std::string_view name() const override { return "dmarc"; }
  Stage stage() const override { return Stage::eom; }
  Family family() const override { return Family::auth; }
  bool reads_published() const override { return true; }

  // Nothing to judge: answered without a coroutine.
  std::optional<std::vector<Symbol>> run_now(const Transaction& tx) override {
    if (!tx.message || tx.authenticated() || from_domain(*tx.message).empty()) {
      return std::vector<Symbol>{};
    }
    return std::nullopt;
  }

  boost::asio::awaitable<std::vector<Symbol>> run(const Transaction& tx) override {
    std::vector<Symbol> out;
    if (!tx.message || tx.authenticated()) co_return out;
    std::string from = from_domain(*tx.message);
    if (from.empty()) co_return out;
    Facts facts = facts_of(tx);

    auto first_lookup = lookup(from);  // named first: GCC PR 100611
    Lookup found = co_await std::move(first_lookup);
    std::string org;
    if (found.state == Lookup::State::none) {
      org = organizational_domain(from);
      if (org != from) {
        auto org_lookup = lookup(org);
        found = co_await std::move(org_lookup);
      }
    }
    switch (found.state) {
      case Lookup::State::found:
        break;
      case Lookup::State::none:
        co_return out;  // no DMARC record: no symbol
      case Lookup::State::stop:
        spdlog::debug("dmarc (id={}): {}: {}; no DMARC symbol", facts.id, from, found.why);
        co_return out;
      case Lookup::State::unknown:
        spdlog::info("dmarc (id={}): {}: {}; no DMARC symbol (failing open)", facts.id, from,
                     found.why);
        co_return out;
    }
    bool fallback = !org.empty() && org != from;
    out = judge(facts, from, fallback ? org : "", found.record);
    co_return out;
  }

 private:
  Facts facts_of(const Transaction& tx) const {
    Facts f;
    f.id = tx.id;
    f.spf_identity = tx.sender.empty() ? normalize_domain(tx.helo) : domain_of(tx.sender);
    f.spf_pass_domain = tx.spf_pass_domain;
    f.dkim_valid_domains = tx.dkim_valid_domains;
    f.spf_decided = tx.spf_decided;
    f.dkim_decided = tx.dkim_decided;
    DkimLimits dkim_limits;
    size_t signatures = 0;
    for (const auto& h : tx.message->headers) {
      if (!dkim_field_is(h.raw, "DKIM-Signature")) continue;
      if (++signatures > dkim_limits.max_signatures) break;  // the DKIM check ignores the rest
      auto parsed = parse_dkim_signature(h.raw, dkim_limits);
      if (parsed.signature) f.dkim_signed_domains.push_back(parsed.signature->domain);
    }
    f.mailing_list = tx.message->header("List-Id") != nullptr;
    return f;
  }

  boost::asio::awaitable<Lookup> lookup(std::string domain) {
    Lookup out;
    auto query = resolver_.query("_dmarc." + domain, DnsType::txt);
    DnsAnswer answer = co_await std::move(query);
    if (!answer.definitive()) {
      out.state = Lookup::State::unknown;
      out.why = std::string("_dmarc.") + domain +
                (answer.status == DnsAnswer::Status::timeout ? " timed out" : " lookup failed");
      co_return out;
    }
    std::vector<const std::string*> records;
    for (const auto& r : answer.records) {
      if (is_dmarc_record(r)) records.push_back(&r);
    }
    if (records.empty()) {
      out.state = Lookup::State::none;
      co_return out;
    }
    out.state = Lookup::State::stop;
    if (records.size() > 1) {
      out.why = "_dmarc." + domain + " has " + std::to_string(records.size()) + " DMARC records";
      co_return out;
    }
    DmarcRecordParse parsed = parse_dmarc_record(*records.front(), limits_);
    if (!parsed.record) {
      out.why = "_dmarc." + domain + ": " + parsed.error;
      co_return out;
    }
    out.state = Lookup::State::found;
    out.record = *parsed.record;
    co_return out;
  }

  std::vector<Symbol> judge(const Facts& f, const std::string& from, const std::string& org,
                            const DmarcRecord& record) const {
    std::vector<Symbol> out;
    DmarcPolicy policy = effective_policy(record, !org.empty());
    std::string detail = printable(from, 255) + " p=" + std::string(to_string(policy));
    if (!org.empty()) detail += " (policy of " + printable(org, 255) + ")";
    if (record.percent < 100) detail += " pct=" + std::to_string(record.percent);

    Evidence spf = spf_evidence(f, from, record.spf_alignment);
    Evidence dkim = dkim_evidence(f, from, record.dkim_alignment);
    if (spf == Evidence::aligned || dkim == Evidence::aligned) {
      const char* which = spf == dkim                ? "SPF and DKIM aligned"
                          : spf == Evidence::aligned ? "SPF aligned"
                                                     : "DKIM aligned";
      out.push_back(known_symbol("DMARC_PASS", detail + ": " + which));
      return out;
    }
    if (spf == Evidence::unknown || dkim == Evidence::unknown) {
      spdlog::debug("dmarc (id={}): {}: {} could not be confirmed; no DMARC symbol", f.id, detail,
                    spf == dkim                ? "aligned SPF and DKIM identities"
                    : spf == Evidence::unknown ? "an aligned SPF identity"
                                               : "an aligned DKIM signature");
      return out;
    }
    double cap = -1.0;
    if (policy == DmarcPolicy::quarantine) cap = scores_.quarantine;
    if (policy == DmarcPolicy::none) cap = scores_.none;
    detail += ": neither SPF nor DKIM aligned";
    if (f.mailing_list) {
      cap = cap < 0.0 ? scores_.mailing_list : std::min(cap, scores_.mailing_list);
      detail += " (mailing list)";
    }
    out.push_back(known_symbol("DMARC_FAIL", std::move(detail), cap));
    return out;
  }

  Resolver& resolver_;
  DmarcLimits limits_;
  DmarcScores scores_;
};

}  // namespace

std::unique_ptr<Check> make_dmarc_check(const Env& env, DmarcLimits limits, DmarcScores scores) {
  if (!env.resolver) return nullptr;
  return std::make_unique<DmarcCheck>(*env.resolver, limits, scores);
}

}  // namespace spamward
